#!/usr/bin/env python
"""Pretraining streamed from parquet shards (``--streaming``) against in-memory pretraining on the same data.

Makes (or takes) a prepared folder of parquet shards, then pretrains on it twice with the same options, each
run a fresh launcher process: in memory (the train split decoded and encoded up front) and ``--streaming``
(one shard at a time, the next one read and encoded in a background thread). Both runs see the same batches
(seqbert.training.streaming), so they do the same work; the report compares

* ``train_sequences_per_second``: training sequences per second of training-step wall time, validation excluded
  (the target: streamed within 10 % of in memory);
* ``peak_rss_mib``: the peak resident memory of the (rank-0) training process, ``ru_maxrss``, from start to the
  end of the final evaluation (both runs load the validation and test splits; only the in-memory run holds the
  train split);
* ``startup_seconds``: launch to the first training step (in memory: load + encode the split; streamed: the
  pass over the shards' item lists).

Writes one JSON line per run and a comparison line (streamed / in memory) to ``--output`` (appended), with the
date, commit, machine and the exact command.

``--max-steps`` stops both runs early: for the memory of data too large to train an epoch of here.

Example (about 12 minutes on a loaded 2-core CPU)::

    python scripts/bench_streaming.py --users 60000 --items 20000 --shards 8 --work-dir /tmp/bench_streaming \\
        -- --hidden_size 64 --max_length 50
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_OUTPUT = REPO / "benchmarks" / "streaming_training.jsonl"


def make_sharded_folder(args: argparse.Namespace) -> Path:
    """A synthetic log of ``--users`` users prepared (temporal split) into ``--shards`` parquet shards per split."""
    from seqbert.data.synthetic import SyntheticConfig, generate_events, write_events
    from seqbert.prepare import PrepareOptions, prepare_file

    folder = args.work_dir / f"prepared_u{args.users}_i{args.items}_s{args.shards}"
    if (folder / "protocol.json").exists():
        return folder
    events = write_events(
        generate_events(SyntheticConfig(num_users=args.users, num_items=args.items, seed=args.data_seed)),
        args.work_dir / f"events_u{args.users}_i{args.items}.parquet",
    )
    prepared = prepare_file(events, PrepareOptions(split="temporal", min_user_events=2))
    prepared.save(folder, shards=args.shards)
    return folder


def launch_command(processes: int, port: int) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "seqbert.training.pretrain"]  # fmt: skip
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port", str(port),
            "-m", "seqbert.training.pretrain"]  # fmt: skip


def run_one(args: argparse.Namespace, data_dir: Path, mode: str) -> dict:
    """One pretraining run (``mode`` memory or streaming); its throughput, memory and times from results.json."""
    output = args.work_dir / f"run_{mode}"
    options = ["--data_dir", str(data_dir), "--output_dir", str(output), "--overwrite_output_dir",
               "--num_epochs", str(args.epochs), "--per_device_batch_size", str(args.batch_size), "--seed", str(args.seed),
               "--expected_num_processes", str(args.processes), "--eval_every_epochs", str(args.epochs + 1),
               "--report_to", "jsonl", "--logging_steps", "1000000", *args.pretrain_options]  # fmt: skip
    if args.max_steps is not None:
        options += ["--max_steps", str(args.max_steps)]
    if mode == "streaming":
        options.append("--streaming")
    command = [*launch_command(args.processes, args.master_port), *options]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "ACCELERATE_USE_CPU": "1", "TQDM_DISABLE": "1"}
    started = time.perf_counter()
    with (args.work_dir / f"run_{mode}.log").open("w") as log:
        returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, check=False).returncode
    wall = time.perf_counter() - started
    if returncode:
        raise SystemExit(f"{mode} run failed (exit {returncode}); see {args.work_dir / f'run_{mode}.log'}")
    summary = json.loads((output / "results.json").read_text())
    before_training = wall - summary["wall_seconds"] - summary["final_evaluation_seconds"]
    return {
        "mode": mode,
        "processes": summary["num_processes"],
        "train_sequences": summary["train_sequences"],
        "train_shards": summary.get("train_shards"),
        "global_step": summary["global_step"],
        "epochs_completed": summary["epochs_completed"],
        "train_seconds": summary["train_seconds"],
        "train_sequences_per_second": summary["train_sequences_per_second"],
        "data_wait_fraction": summary["data_wait_fraction"],
        "peak_rss_mib": summary["peak_rss_mib"],
        "startup_seconds": round(before_training, 1),
        "run_wall_seconds": round(wall, 1),
        "test_ndcg@10": summary["metrics"]["test"]["seqbert"]["ndcg@10"],
        "command": shlex.join(command),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="A prepared folder of parquet shards (`seqbert prepare --output-shards N`). Default: make "
                        "one from the synthetic generator (--users, --items, --shards) under --work-dir.")  # fmt: skip
    parser.add_argument("--users", type=int, default=60000, help="Synthetic users (without --data-dir).")
    parser.add_argument("--items", type=int, default=20000, help="Synthetic catalog size (without --data-dir).")
    parser.add_argument("--shards", type=int, default=8, help="Parquet shards per split (without --data-dir).")
    parser.add_argument("--data-seed", type=int, default=0, help="Seed of the synthetic log (without --data-dir).")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/bench_streaming"),
                        help="Prepared data, model folders and run logs go here.")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=1, help="Training epochs of each run (validation only at the end).")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="Stop both runs after this many optimizer steps (a memory measurement on data too large to "
                        "train an epoch of; sequences/s then covers those steps only). Default: the whole epoch(s).")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=128, help="--per_device_batch_size of both runs.")
    parser.add_argument("--seed", type=int, default=0, help="Training seed of both runs.")
    parser.add_argument("--processes", type=int, default=1,
                        help="Training processes (1: accelerate launch; more: ACCELERATE_USE_CPU=1 torchrun).")  # fmt: skip
    parser.add_argument("--master-port", type=int, default=29583, help="torchrun rendezvous port (--processes > 1).")
    parser.add_argument("--order", nargs=2, choices=["memory", "streaming"], default=["memory", "streaming"],
                        help="Which run goes first (on a shared machine, alternate to see the drift of its load).")  # fmt: skip
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON lines are appended here.")
    parser.epilog = "Everything after a bare `--` is passed verbatim to seqbert.training.pretrain (model size, max_length, ...)."
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.pretrain_options = argv[split + 1 :]
    args.argv = argv
    if sorted(args.order) != ["memory", "streaming"]:
        parser.error("--order takes memory and streaming, once each.")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    data_dir = args.data_dir or make_sharded_folder(args)
    git = ["git", "rev-parse", "--short", "HEAD"]
    commit = subprocess.run(git, check=False, capture_output=True, text=True, cwd=REPO).stdout.strip()
    context = {
        "benchmark": "streaming_training",
        "date": datetime.date.today().isoformat(),
        "commit": commit or None,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "bench_command": shlex.join(["python", "scripts/bench_streaming.py", *args.argv]),
        "data_dir": str(data_dir),
    }
    runs = [run_one(args, data_dir, mode) for mode in args.order]
    memory, streamed = sorted(runs, key=lambda run: run["mode"])
    comparison = {
        **context,
        "comparison": "streaming / memory",
        "sequences_per_second_ratio": round(streamed["train_sequences_per_second"] / memory["train_sequences_per_second"], 3),
        "peak_rss_ratio": round(streamed["peak_rss_mib"] / memory["peak_rss_mib"], 3),
        "same_test_ndcg@10": streamed["test_ndcg@10"] == memory["test_ndcg@10"],
    }
    lines = [{**context, **run} for run in runs] + [comparison]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("a") as handle:
        for line in lines:
            handle.write(json.dumps(line) + "\n")
            print(json.dumps(line), flush=True)
    return {"runs": runs, "comparison": comparison}


if __name__ == "__main__":
    main()
