"""Throughput of the batch commands: `seqbert recommend` (top-k per user) and `seqbert embed` over a synthetic log.

Steps:

1. ``--num-users`` synthetic users (:mod:`seqbert.data.synthetic`) are written to a csv log.
2. A small model folder is saved next to it, as the inference tests and ``bench_inference.py`` build one: a
   tokenizer over the log's items and random weights (hidden size 64, 2 layers, max_length 50 by default;
   throughput does not depend on training).
3. ``python -m seqbert.cli recommend`` (``--k``) and ``embed`` run over the whole log, each in its own
   process. Each one's wall time (process start to exit: imports, reading and grouping the log, scoring,
   writing parquet) and peak RSS (``os.wait4``) are measured.

One JSON line per command goes to ``--output`` (the file is replaced) and to stdout. Pin the threads with the
environment, e.g. ``OMP_NUM_THREADS=1 python scripts/bench_batch_scoring.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--num-users", type=int, default=100_000, help="Synthetic users in the log.")
    parser.add_argument("--num-items", type=int, default=1000, help="Synthetic catalog size.")
    parser.add_argument("--k", type=int, default=100, help="Items per user for `seqbert recommend`.")
    parser.add_argument("--batch-size", type=int, default=1024, help="--batch-size of both commands.")
    parser.add_argument("--hidden-size", type=int, default=64, help="Model hidden size.")
    parser.add_argument("--layers", type=int, default=2, help="Transformer layers.")
    parser.add_argument(
        "--max-length", type=int, default=50, help="Longest encoded history (appended [MASK] included)."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the synthetic log and the random weights.")
    parser.add_argument(
        "--workdir", help="Folder for the log, model and outputs (default: a temporary folder, removed)."
    )
    parser.add_argument(
        "--output",
        default=str(ROOT / "benchmarks" / "batch_scoring.jsonl"),
        help="JSON lines file to write (replaced).",
    )
    parser.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)  # the child that makes the inputs
    return parser.parse_args(argv)


SETUP_OPTIONS = ("num_users", "num_items", "hidden_size", "layers", "max_length", "seed")


def write_log(path: Path, num_users: int, num_items: int, seed: int) -> dict:
    import pyarrow.compute as pc

    from seqbert.data.synthetic import SyntheticConfig, generate_events, write_events

    events = generate_events(SyntheticConfig(num_users=num_users, num_items=num_items, seed=seed))
    write_events(events, path)
    return {"events": events.num_rows, "items": sorted(pc.unique(events.column("item_id")).to_pylist())}


def build_model(folder: Path, items: list[str], hidden_size: int, layers: int, max_length: int, seed: int) -> Path:
    """A masked-behavior folder with random weights over ``items`` (bench_inference's, as tests/test_inference.py
    builds one)."""
    from bench_inference import build_folder

    return build_folder(folder, items, hidden_size, layers, max_length, seed=seed)


def run_command(command: list[str]) -> dict:
    """Run one CLI command to completion: wall time, peak RSS of that process, and the seconds it reports."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage (ru_maxrss in KiB on Linux)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-4000:]}")
    reported = re.search(r"Wrote .*: (\d+) rows for (\d+) users in ([\d.]+) s", stdout)
    return {
        "wall_s": round(wall, 2),
        "command_s": float(reported.group(3)),  # model load, read + group the log, score, write (no Python startup)
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "rows": int(reported.group(1)),
        "users": int(reported.group(2)),
    }


def setup(work: Path, args: argparse.Namespace) -> dict:
    """Write the log and the model folder under ``work``; what the JSON lines record about them."""
    import torch

    start = time.perf_counter()
    log = write_log(work / "events.csv", args.num_users, args.num_items, args.seed)
    build_model(work / "model", log["items"], args.hidden_size, args.layers, args.max_length, args.seed)
    print(f"log and model: {log['events']} events in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return {
        "events": log["events"],
        "items": len(log["items"]),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.setup_only:
        print(json.dumps(setup(Path(args.workdir), args)))
        return
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(args.workdir or temporary)
        work.mkdir(parents=True, exist_ok=True)
        # The log and model are made in a child process: this one stays small (no torch), because Linux
        # starts a child's peak RSS at its parent's (fork / exec keep the high-water mark).
        options = [f"--{name.replace('_', '-')}={getattr(args, name)}" for name in SETUP_OPTIONS]
        made = subprocess.run(
            [sys.executable, __file__, "--setup-only", f"--workdir={work}", *options],
            check=True, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        made = json.loads(made.stdout.strip().splitlines()[-1])
        model, events = str(work / "model"), str(work / "events.csv")
        common = ["--events", events, "--batch-size", str(args.batch_size), "--no-progress", "--overwrite"]
        base = [sys.executable, "-m", "seqbert.cli", "--log-level", "WARNING"]
        commands = {
            "recommend": [
                *base,
                "recommend",
                model,
                *common,
                "--output",
                str(work / "recs.parquet"),
                "--k",
                str(args.k),
            ],
            "embed": [*base, "embed", model, *common, "--output", str(work / "users.parquet")],
        }
        described = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "num_users": args.num_users,
            "events": made["events"],
            "items": made["items"],
            "hidden_size": args.hidden_size,
            "layers": args.layers,
            "max_length": args.max_length,
            "batch_size": args.batch_size,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "torch_threads": made["torch_threads"],
            "cpu_count": os.cpu_count(),
            "load_average_1m_at_start": round(os.getloadavg()[0], 2),  # > cpu_count: other jobs shared the cores
            "machine": platform.machine(),
            "torch": made["torch"],
        }
        lines = []
        for name, command in commands.items():
            print(f"running: seqbert {' '.join(command[5:])}", file=sys.stderr)
            measured = run_command(command)
            row = {
                "benchmark": "batch_scoring",
                "command": name,
                **({"k": args.k} if name == "recommend" else {}),
                "users_per_s": round(measured["users"] / measured["wall_s"], 1),
                "users_per_s_in_command": round(measured["users"] / measured["command_s"], 1),
                **measured,
                **described,
            }
            lines.append(json.dumps(row))
            print(lines[-1])
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"Wrote {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
