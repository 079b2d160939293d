#!/usr/bin/env python
"""Benchmark the Spark path of data preparation (seqbert.data.spark.prepare_spark) on one machine.

What is measured: a synthetic log of ``--events`` events (scripts/bench_prepare.py's generator, written
once as parquet and cached in ``--work-dir``) is prepared by ``prepare_spark`` with Spark in local mode
(``--master``, default ``local[<all cores>]``) in a fresh Python process, which starts its own JVM.
Recorded: the wall time of that process from start to exit (JVM start, ``spark.read.parquet``,
cleaning, sequences, splits, vocabulary, parquet shards: everything), split into the JVM start and the
preparation, and the peak resident memory of the whole process tree (the Python driver plus the JVM,
RSS summed over the tree, sampled every 0.2 s: a sampled peak, it can miss a short spike). With
``--baseline`` the same log is also prepared by ``seqbert prepare`` (``prepare_file``, one Python process)
and measured the same way.

What it is: on one machine Spark is expected to be *slower* than ``seqbert prepare`` and to use more
memory (a JVM, shuffles through local disk, generic sorts instead of numpy's); the point of the Spark
path is that the same code runs on a cluster, where the events never have to fit one machine.

One json line per run is appended to ``--jsonl`` (default benchmarks/spark_prepare.jsonl) with the
machine, versions, command and figures.

Examples::

    python scripts/bench_spark_prepare.py                                   # 50M events, leave-one-out
    python scripts/bench_spark_prepare.py --events 1000000 --baseline       # quick, with seqbert prepare beside
    python scripts/bench_spark_prepare.py --events 5000000 --split temporal --driver-memory 12g
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="See the module docstring for what is measured.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--events", type=int, default=50_000_000, help="Events in the synthetic log.")
    parser.add_argument("--num-items", type=int, default=50_000, help="Catalog size of the synthetic log.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the synthetic log.")
    parser.add_argument(
        "--split", choices=("leave_one_out", "temporal"), default="leave_one_out", help="Split protocol."
    )
    parser.add_argument("--master", default=f"local[{os.cpu_count() or 1}]", help="Spark master URL.")
    parser.add_argument("--driver-memory", default="6g", help="spark.driver.memory (local mode: the one JVM's heap).")
    parser.add_argument(
        "--shuffle-partitions", type=int, default=None,
        help="spark.sql.shuffle.partitions (default: max(2 x cores, events / 2M)).",
    )  # fmt: skip
    parser.add_argument("--rows-per-shard", type=int, default=100_000, help="Users per output parquet file.")
    parser.add_argument(
        "--baseline", action="store_true", help="Also run `seqbert prepare` (prepare_file) on the log."
    )
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "seqbert-bench-spark",
                        help="Where the synthetic log is cached and the prepared folders are written.")  # fmt: skip
    parser.add_argument("--keep-output", action="store_true", help="Keep the prepared folders (removed by default).")
    parser.add_argument("--generate-workers", type=int, default=max(1, (os.cpu_count() or 1)),
                        help="Processes generating the synthetic log.")  # fmt: skip
    parser.add_argument("--jsonl", type=Path, default=ROOT / "benchmarks" / "spark_prepare.jsonl",
                        help="Append one json line per run here.")  # fmt: skip
    parser.add_argument("--worker", choices=("spark", "prepare"), help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _options(args: argparse.Namespace) -> Any:
    from seqbert.prepare import PrepareOptions

    return PrepareOptions(split=args.split)


def shuffle_partitions(args: argparse.Namespace) -> int:
    return args.shuffle_partitions or max(2 * (os.cpu_count() or 1), args.events // 2_000_000)


# ============================================================================================ workers
def worker(args: argparse.Namespace) -> None:
    """In the child process: run one preparation and print a json line of timings."""
    started = time.perf_counter()
    if args.worker == "prepare":
        from seqbert.prepare import prepare_file

        prepare_file(args.input, _options(args), output_dir=args.output)
        print(json.dumps({"jvm_start_s": 0.0, "prepare_s": time.perf_counter() - started}), flush=True)
        return
    from pyspark.sql import SparkSession

    from seqbert.data.spark import prepare_spark, quiet_pandas_check

    quiet_pandas_check()
    spark = (
        SparkSession.builder.master(args.master)
        .appName("seqbert-bench-spark-prepare")
        .config("spark.driver.memory", args.driver_memory)
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions(args)))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    jvm = time.perf_counter() - started
    prepare_spark(
        spark.read.parquet(str(args.input)), _options(args), args.output, source_name=args.input.name,
        rows_per_shard=args.rows_per_shard,
    )  # fmt: skip
    prepare = time.perf_counter() - started - jvm
    spark.stop()
    print(json.dumps({"jvm_start_s": jvm, "prepare_s": prepare}), flush=True)


def tree_rss(pid: int) -> tuple[int, dict[str, int]]:
    """RSS summed over the process ``pid`` and its descendants, and per process name."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, {}
    total, by_name = 0, {}
    for process in processes:
        try:
            rss = process.memory_info().rss
            name = process.name()
        except psutil.Error:
            continue
        total += rss
        by_name[name] = by_name.get(name, 0) + rss
    return total, by_name


def measure(kind: str, path: Path, output: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one worker in a child process; wall time and the sampled peak RSS of its process tree."""
    command = [sys.executable, __file__, "--worker", kind, "--input", str(path), "--output", str(output),
               "--events", str(args.events), "--split", args.split, "--master", args.master,
               "--driver-memory", args.driver_memory, "--shuffle-partitions", str(shuffle_partitions(args)),
               "--rows-per-shard", str(args.rows_per_shard)]  # fmt: skip
    shutil.rmtree(output, ignore_errors=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    peak, peak_by_name, done = 0, {}, threading.Event()

    def sample() -> None:
        nonlocal peak, peak_by_name
        while not done.is_set():
            total, by_name = tree_rss(child.pid)
            if total > peak:
                peak, peak_by_name = total, by_name
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = child.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"{kind} worker failed with exit code {child.returncode}")
    timings = json.loads(stdout.strip().splitlines()[-1])
    protocol = json.loads((output / "protocol.json").read_text())
    result = {
        "implementation": "spark" if kind == "spark" else "seqbert prepare",
        "wall_s": round(wall, 2),
        "jvm_start_s": round(timings["jvm_start_s"], 2),
        "prepare_s": round(timings["prepare_s"], 2),
        "events_per_s": round(args.events / wall),
        "peak_rss_bytes": peak,
        "peak_rss_by_process": peak_by_name,
        "rows": protocol["rows"],
        "output_bytes": sum(p.stat().st_size for p in output.rglob("*") if p.is_file()),
    }
    log(
        f"{result['implementation']}: {wall:.1f}s wall ({result['jvm_start_s']:.1f}s JVM start), "
        f"peak RSS of the process tree {peak / 2**30:.2f} GiB, rows {protocol['rows']}"
    )
    if not args.keep_output:
        shutil.rmtree(output, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    from bench_prepare import generate_log, machine_info, versions

    path = generate_log(
        args.events, "parquet", args.work_dir, num_items=args.num_items, seed=args.seed, columns="all",
        workers=args.generate_workers, regenerate=False,
    )  # fmt: skip
    runs = [measure("spark", path, args.work_dir / "prepared-spark", args)]
    if args.baseline:
        runs.append(measure("prepare", path, args.work_dir / "prepared-seqbert", args))
    if args.baseline:
        spark_rows, prepare_rows = runs[0]["rows"], runs[1]["rows"]
        if spark_rows != prepare_rows:
            raise SystemExit(f"the two preparations differ: spark {spark_rows} != seqbert prepare {prepare_rows}")
    import pyspark

    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr.splitlines()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=ROOT, check=False).stdout.strip() or None  # fmt: skip
    except OSError:
        commit = None
    record = {
        "benchmark": "spark_prepare",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "command": "python scripts/bench_spark_prepare.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "versions": {**versions(), "pyspark": pyspark.__version__, "java": java[0] if java else None},
        "events": args.events,
        "input_bytes": path.stat().st_size,
        "split": args.split,
        "master": args.master,
        "driver_memory": args.driver_memory,
        "shuffle_partitions": shuffle_partitions(args),
        "runs": runs,
        "note": "one machine, local mode: Spark is expected to be slower than seqbert prepare here; "
        "the Spark path is for logs beyond one machine",
    }
    args.jsonl.parent.mkdir(parents=True, exist_ok=True)
    with args.jsonl.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    log(f"appended to {args.jsonl}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
