#!/usr/bin/env python
"""End to end at catalog scale: synthetic log → ``seqbert prepare`` → sampled-softmax pretraining.

Default scale: 1,000,000 users × 1,000,000 items (≈ 13 events per user, power-law item popularity),
pretrained with a sampled softmax (8,192 negatives, log-Q correction), validated on a seeded sample of
users ranked over the full catalog in item chunks. Each stage runs in its own process, so its peak RSS
(from ``wait4``'s rusage) is its own; a stage killed by the kernel (out of memory) is reported with its
signal. Prints one JSON line per stage: wall seconds, peak RSS, exit status, the 1-minute load average
before and after, and the stage's figures (events and items; prepared rows; training sequences/s and
tokens/s without validation, validation seconds, metrics on the sampled users).

Examples::

    python scripts/bench_million.py --work-dir /tmp/million                       # the 1M × 1M run
    python scripts/bench_million.py --users 20000 --items 20000 --work-dir /tmp/m  # smoke test, ~1 minute
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("generate", "prepare", "pretrain")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("synthetic log (seqbert.data.synthetic.SyntheticConfig)")
    data.add_argument("--users", type=int, default=1_000_000, help="Users in the generated log.")
    data.add_argument("--items", type=int, default=1_000_000, help="Catalog size of the generator (items never drawn "
                      "or only in held-out events are not in the model's vocabulary; the prepare line reports it).")
    data.add_argument("--categories", type=int, default=1000, help="Item categories (popularity is Zipf within each).")
    data.add_argument("--zipf-exponent", type=float, default=0.8,
                      help="Within-category popularity of the rank-r item ∝ r ** -exponent (power law).")
    data.add_argument("--sessions-per-user", type=float, default=2.0, help="Mean sessions per user (heavy-tailed).")
    data.add_argument("--session-length", type=float, default=6.0,
                      help="Mean browsing steps per session (with the funnel events: ≈ 13 events per user by default).")
    data.add_argument("--seed", type=int, default=0, help="Generator seed.")
    prep = parser.add_argument_group("prepare")
    prep.add_argument("--split", default="leave_one_out", choices=["leave_one_out", "temporal"],
                      help="Evaluation protocol of `seqbert prepare` (leave_one_out: every user is validated and tested).")
    prep.add_argument("--max-length", type=int, default=50, help="Longest model input (appended mask included).")
    train = parser.add_argument_group("pretrain (seqbert.training.pretrain)")
    train.add_argument("--hidden-size", type=int, default=64, help="Hidden width.")
    train.add_argument("--layers", type=int, default=2, help="Transformer layers.")
    train.add_argument("--heads", type=int, default=2, help="Attention heads.")
    train.add_argument("--batch-size", type=int, default=256, help="Training sequences per step.")
    train.add_argument("--num-negatives", type=int, default=8192, help="Shared negatives of the sampled softmax.")
    train.add_argument("--eval-batch-size", type=int, default=256, help="Users per evaluation batch.")
    train.add_argument("--eval-item-chunk-size", type=int, default=65_536, help="Items per chunk of the full-catalog ranking.")
    train.add_argument("--max-eval-users", type=int, default=20_000,
                       help="Validation users (seeded uniform sample; 0: all users).")
    train.add_argument("--max-test-users", type=int, default=None,
                       help="Test users of the final evaluation (seeded uniform sample; 0: all; default: --max-eval-users).")
    train.add_argument("--max-steps", type=int, default=None, help="Stop training after this many steps.")
    train.add_argument("--time-budget-minutes", type=float, default=10.0,
                       help="Training wall-time budget, validation included (the final evaluation comes after it).")
    train.add_argument("--sparse-item-updates", action="store_true",
                       help="Pretrain with --sparse_item_updates (SparseAdam on the item-table rows a step touches).")
    train.add_argument("--pretrain-option", action="append", default=[], metavar="OPTION",
                       help="Extra option passed to the pretraining script as is (repeatable), e.g. "
                       "--pretrain-option=--sparse_item_updates.")
    run = parser.add_argument_group("run")
    run.add_argument("--work-dir", default="bench_million", help="Folder for the log, the prepared data and the model.")
    run.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES,
                     help="Stages to run; a skipped stage's output is reused from --work-dir.")
    run.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS (torch threads) of every stage's process.")
    run.add_argument("--generate-only", action="store_true",
                     help="Only write the synthetic log into --work-dir in this process: what the generate stage "
                     "runs as its own subprocess.")
    return parser.parse_args(argv)


def generate(args: argparse.Namespace) -> dict:
    """Write ``events.parquet`` into the work folder; its row, user and item counts."""
    import pyarrow.compute as pc

    from seqbert.data.synthetic import SyntheticConfig, generate_events, write_events

    config = SyntheticConfig(
        num_users=args.users, num_items=args.items, num_categories=args.categories, zipf_exponent=args.zipf_exponent,
        mean_sessions_per_user=args.sessions_per_user, mean_session_length=args.session_length, seed=args.seed,
    )  # fmt: skip
    table = generate_events(config)
    path = write_events(table, Path(args.work_dir) / "events.parquet")
    return {
        "events": table.num_rows, "users": pc.count_distinct(table["user_id"]).as_py(),
        "items": pc.count_distinct(table["item_id"]).as_py(), "file_mib": round(path.stat().st_size / 2**20, 1),
    }  # fmt: skip


def run_stage(name: str, command: list[str], threads: int) -> dict:
    """Run one stage in its own process; wall time, peak RSS (rusage of that child) and exit status."""
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                   "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    process = subprocess.Popen(command, env=environment, stdout=sys.stderr)  # stdout: this script's JSON lines only
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "stage": name, "seconds": round(time.monotonic() - started, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        "returncode": process.returncode,
        "killed_by_signal": -process.returncode if process.returncode < 0 else None,  # SIGKILL (9): likely the OOM killer
        "load_1min_before": round(load_before, 2), "load_1min_after": round(os.getloadavg()[0], 2),
        "threads": threads, "command": " ".join(command),
    }  # fmt: skip


def pretrain_command(args: argparse.Namespace, data_dir: Path, output_dir: Path) -> list[str]:
    max_test_users = args.max_eval_users if args.max_test_users is None else args.max_test_users
    command = [
        sys.executable, "-m", "seqbert.training.pretrain", "--data_dir", str(data_dir), "--output_dir", str(output_dir),
        "--overwrite_output_dir", "--hidden_size", str(args.hidden_size), "--num_hidden_layers", str(args.layers),
        "--num_attention_heads", str(args.heads), "--intermediate_size", str(4 * args.hidden_size),
        "--max_length", str(args.max_length), "--per_device_batch_size", str(args.batch_size),
        "--eval_batch_size", str(args.eval_batch_size), "--loss_type", "sampled", "--num_negatives", str(args.num_negatives),
        "--eval_item_chunk_size", str(args.eval_item_chunk_size), "--num_epochs", "1", "--logging_steps", "10",
        "--time_budget_minutes", str(args.time_budget_minutes), "--report_to", "jsonl",
    ]  # fmt: skip
    if args.max_eval_users:
        command += ["--max_eval_users", str(args.max_eval_users)]
    if max_test_users:
        command += ["--max_test_users", str(max_test_users)]
    if args.max_steps is not None:
        command += ["--max_steps", str(args.max_steps)]
    if args.sparse_item_updates:
        command.append("--sparse_item_updates")
    return [*command, *args.pretrain_option]


def pretrain_figures(output_dir: Path) -> dict:
    """The figures of the pretraining run that the benchmark reports, from its results.json and logs."""
    from seqbert.training.loop import read_log  # imported here: the stages, not this process, load torch

    results = json.loads((output_dir / "results.json").read_text())
    keys = (
        "global_step", "train_seconds", "train_sequences_per_second", "train_tokens_per_second", "validation_seconds",
        "final_evaluation_seconds", "data_wait_fraction", "validation_users", "validation_user_sampling",
        "test_users", "test_user_sampling", "peak_rss_mib",
    )  # fmt: skip
    metrics = {
        split: {name: {k: round(v, 5) for k, v in values.items() if k in ("ndcg@10", "hr@10")} for name, values in per_model.items()}
        for split, per_model in results["metrics"].items()
    }
    config = json.loads((output_dir / "config.json").read_text())
    validations = [
        {"step": r["step"], "seconds": r["validation_seconds"], "users": r["val_count"], "ndcg@10": round(r["val_ndcg@10"], 5)}
        for r in read_log(output_dir) if "val_ndcg@10" in r
    ]  # fmt: skip
    return {
        **{key: results.get(key) for key in keys},
        "catalog_items": config["vocab_size"] - config["num_special_tokens"], "validations": validations, "metrics": metrics,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    if args.generate_only:
        (work / "generate.json").write_text(json.dumps(generate(args)) + "\n")
        return []
    events, prepared, model = work / "events.parquet", work / "prepared", work / "model"
    commands = {
        "generate": [sys.executable, str(Path(__file__).resolve()), *(argv if argv is not None else sys.argv[1:]), "--generate-only"],
        "prepare": [sys.executable, "-m", "seqbert.cli", "prepare", str(events), "--output-dir", str(prepared),
                    "--split", args.split, "--max-length", str(args.max_length)],
        "pretrain": pretrain_command(args, prepared, model),
    }  # fmt: skip
    lines = []
    for stage in STAGES:
        if stage not in args.stages:
            continue
        line = run_stage(stage, commands[stage], args.threads)
        if line["returncode"] == 0:
            line.update(stage_figures(stage, work))
        print(json.dumps(line), flush=True)
        lines.append(line)
        if line["returncode"] != 0:
            break
    return lines


def stage_figures(stage: str, work: Path) -> dict:
    """What each finished stage produced (read from its output files)."""
    if stage == "generate":
        return json.loads((work / "generate.json").read_text())
    if stage == "prepare":
        statistics = json.loads((work / "prepared" / "statistics.json").read_text())
        vocabulary = json.loads((work / "prepared" / "tokenizer" / "item_vocab.json").read_text())
        counts = {split: {k: v for k, v in values.items() if k in ("users", "items", "events")} for split, values in statistics.items()}
        return {"prepared": counts, "vocabulary_items": len(vocabulary)}
    return pretrain_figures(work / "model")


if __name__ == "__main__":
    main()
