#!/usr/bin/env python
"""Same effective batch, 1 vs 2 processes: does data-parallel pretraining give the same model quality?

For every seed, pretrains the masked-behavior model twice on the same prepared data and settings:

* one process: ``accelerate launch --cpu --num_processes 1`` with ``--per_device_batch_size B``;
* two processes: ``ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2`` with ``--per_device_batch_size B/2``
  (``accelerate launch --cpu --num_processes 2`` silently starts one process on some machines; the run
  asserts the count with ``--expected_num_processes``).

Both train the same number of epochs with the same seed (so the same Cloze masks: they are a function
of seed, epoch and row ids, not of the process count). Each run's ``results.json`` gives validation and
test metrics (full catalog). Prints one JSON line per run, then one per process count with mean ± std
over seeds, and the difference of the means next to the seed-to-seed spread, and writes a markdown table.

Example::

    python scripts/bench_multiprocess.py /tmp/speed/prepared --work-dir /tmp/mp --seeds 0 1 --epochs 8 \\
        --batch-size 256 --markdown /tmp/mp/table.md -- --hidden_size 64 --max_length 50
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

METRICS = ("ndcg@10", "hr@10")


def launch_command(processes: int, port: int) -> list[str]:
    """The launcher for ``processes`` CPU processes, running ``seqbert.training.pretrain``."""
    if processes == 1:
        return [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--num_cpu_threads_per_process", "1",
                "-m", "seqbert.training.pretrain"]  # fmt: skip
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port", str(port),
            "-m", "seqbert.training.pretrain"]  # fmt: skip


def run_one(args: argparse.Namespace, processes: int, seed: int) -> dict:
    """Train one configuration; its summary metrics, wall seconds and the command line."""
    if args.batch_size % processes:
        raise SystemExit(f"--batch-size {args.batch_size} is not divisible by {processes} processes.")
    output = args.work_dir / f"p{processes}_seed{seed}"
    options = ["--data_dir", str(args.data_dir), "--output_dir", str(output), "--overwrite_output_dir", "--num_epochs", str(args.epochs),
               "--per_device_batch_size", str(args.batch_size // processes), "--seed", str(seed),
               "--expected_num_processes", str(processes), "--mixed_precision", "no", "--report_to", "none",
               "--logging_steps", "1000000", *args.pretrain_options]  # fmt: skip
    command = [*launch_command(processes, args.master_port), *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "ACCELERATE_USE_CPU": "1"}
    started = time.perf_counter()
    with (args.work_dir / f"p{processes}_seed{seed}.log").open("w") as log:
        returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, check=False).returncode
    if returncode != 0:
        raise SystemExit(f"run failed (exit {returncode}); see {log.name}")
    summary = json.loads((output / "results.json").read_text())
    if summary["num_processes"] != processes:
        raise SystemExit(f"{output}: expected {processes} processes, the run had {summary['num_processes']}.")
    return {
        "processes": processes,
        "per_device_batch_size": args.batch_size // processes,
        "effective_batch_size": args.batch_size,
        "seed": seed,
        "epochs": summary["epochs_completed"],
        "global_step": summary["global_step"],
        "wall_seconds": round(time.perf_counter() - started, 1),
        "validation": {m: summary["metrics"]["validation"]["seqbert"][m] for m in METRICS},
        "test": {m: summary["metrics"]["test"]["seqbert"][m] for m in METRICS},
        "command": " ".join(command[command.index("-m", 2) :] if processes == 1 else command[1:]),
    }


def aggregate(runs: list[dict]) -> list[dict]:
    """Mean ± std over seeds per process count, for every split × metric."""
    rows = []
    for processes in sorted({r["processes"] for r in runs}):
        group = [r for r in runs if r["processes"] == processes]
        row = {"processes": processes, "seeds": [r["seed"] for r in group]}
        for split in ("validation", "test"):
            for metric in METRICS:
                values = np.array([r[split][metric] for r in group])
                row[f"{split}_{metric}"] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
        rows.append(row)
    return rows


def comparison(rows: list[dict]) -> dict:
    """Difference of the 2- and 1-process means next to the larger seed standard deviation."""
    one, two = rows[0], rows[-1]
    return {
        key: {"difference": two[key]["mean"] - one[key]["mean"], "seed_std": max(one[key]["std"], two[key]["std"])}
        for key in one
        if isinstance(one[key], dict)
    }


def markdown(runs: list[dict], rows: list[dict]) -> str:
    lines = ["| processes × per-device batch | seed | epochs | val NDCG@10 | test NDCG@10 | test HR@10 | wall s |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(
            f"| {r['processes']} × {r['per_device_batch_size']} | {r['seed']} | {r['epochs']} | {r['validation']['ndcg@10']:.4f} | "
            f"{r['test']['ndcg@10']:.4f} | {r['test']['hr@10']:.4f} | {r['wall_seconds']:.0f} |"
        )
    for row in rows:
        cells = [f"{row[k]['mean']:.4f} ± {row[k]['std']:.4f}" for k in ("validation_ndcg@10", "test_ndcg@10", "test_hr@10")]
        lines.append(f"| **{row['processes']} process(es), mean ± std** | {len(row['seeds'])} seeds | | " + " | ".join(cells) + " | |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, help="Prepared-data folder (from `seqbert prepare`).")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/bench_multiprocess"), help="Model folders and logs go here.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="Seeds; every seed runs with 1 and with 2 processes.")
    parser.add_argument("--epochs", type=int, default=8, help="Training epochs for every run (same for both process counts).")
    parser.add_argument("--batch-size", type=int, default=256, help="Effective batch: the 1-process batch, split evenly over 2 processes.")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="Process counts to compare (the first is the reference).")
    parser.add_argument("--master-port", type=int, default=29541, help="torchrun rendezvous port for multi-process runs.")
    parser.add_argument("--markdown", type=Path, default=None, help="Also write the markdown table here.")
    parser.epilog = "Everything after a bare `--` is passed verbatim to seqbert.training.pretrain (model size, masking, ...)."
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.pretrain_options = argv[split + 1 :]
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in args.seeds:
        for processes in args.processes:
            runs.append(run_one(args, processes, seed))
            print(json.dumps(runs[-1]), flush=True)
    rows = aggregate(runs)
    for row in rows:
        print(json.dumps({"aggregate": row}), flush=True)
    result = {"runs": runs, "aggregate": rows, "difference_vs_first": comparison(rows)}
    print(json.dumps({"difference_vs_first": result["difference_vs_first"]}), flush=True)
    table = markdown(runs, rows)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)
    return result


if __name__ == "__main__":
    main()
