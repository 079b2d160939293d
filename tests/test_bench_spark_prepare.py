"""scripts/bench_spark_prepare.py without running Spark (a run starts a JVM and takes minutes; see the
script's docstring): its options, and the process-tree memory sampler it reports."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from .script_modules import SCRIPTS, load_script


def test_help_and_defaults():
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_spark_prepare.py"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    for flag in ("--events", "--split", "--master", "--driver-memory", "--baseline", "--jsonl", "--work-dir"):
        assert flag in completed.stdout
    bench = load_script("bench_spark_prepare")
    args = bench.parse_args([])
    assert args.events == 50_000_000 and args.split == "leave_one_out" and not args.baseline
    assert args.jsonl.as_posix().endswith("benchmarks/spark_prepare.jsonl")
    assert bench.shuffle_partitions(bench.parse_args(["--events", "100000000"])) == 50


def test_process_tree_memory_is_summed():
    bench = load_script("bench_spark_prepare")
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(50 << 20); time.sleep(30)"])
    try:
        for _ in range(200):  # until the child has touched its 50 MiB
            own = bench.tree_rss(child.pid)[0]
            if own > 50 << 20:
                break
            time.sleep(0.05)
        total, by_name = bench.tree_rss(os.getpid())
        assert own > 50 << 20 and total > own and sum(by_name.values()) == total  # this process + the child
    finally:
        child.kill()
        child.wait()
