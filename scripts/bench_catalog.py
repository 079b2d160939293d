#!/usr/bin/env python
"""Memory and throughput against catalog size (e.g. 10k, 100k, 1M items): full vs sampled softmax
training, unchunked vs item-chunked full-catalog evaluation.

Each configuration runs ``scripts/bench_throughput.py`` in its own process, so the peak RSS reported
is that configuration's alone. Prints the JSON lines and writes ``catalog_scaling.png`` (throughput and
peak memory against catalog size) into ``--output-dir``.

Example::

    OMP_NUM_THREADS=1 python scripts/bench_catalog.py --items 10000 100000 1000000 --output-dir benchmarks
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

THROUGHPUT = Path(__file__).with_name("bench_throughput.py")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", nargs="+", type=int, default=[10_000, 100_000, 1_000_000], help="Catalog sizes.")
    parser.add_argument("--full-softmax-max-items", type=int, default=100_000,
                        help="Skip full-softmax training above this size (its logits grow with batch × catalog).")
    parser.add_argument("--batch-size", type=int, default=128, help="Training sequences per step.")
    parser.add_argument("--eval-batch-size", type=int, default=256, help="Users per evaluation batch.")
    parser.add_argument("--eval-users", type=int, default=1024, help="Users ranked per evaluation measurement.")
    parser.add_argument("--item-chunk-size", type=int, default=65_536, help="Items per chunk in chunked evaluation.")
    parser.add_argument("--num-negatives", type=int, default=1024, help="Negatives of the sampled softmax.")
    parser.add_argument("--steps", type=int, default=5, help="Timed training steps per configuration.")
    parser.add_argument("--output-dir", default=".", help="Where catalog_scaling.png and catalog_scaling.jsonl go.")
    return parser.parse_args(argv)


def measure(options: list[str]) -> dict:
    output = subprocess.run([sys.executable, str(THROUGHPUT), *options], check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for items in args.items:
        common = ["--items", str(items)]
        train = [*common, "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", "2"]
        runs = {"train sampled": [*train, "--loss-type", "sampled", "--num-negatives", str(args.num_negatives)]}
        if items <= args.full_softmax_max_items:
            runs["train full"] = [*train, "--loss-type", "full"]
        evaluation = [*common, "--measure", "eval", "--batch-size", str(args.eval_batch_size), "--eval-users", str(args.eval_users)]
        runs["eval unchunked"] = evaluation
        runs["eval chunked"] = [*evaluation, "--item-chunk-size", str(args.item_chunk_size)]
        for label, options in runs.items():
            result = {"config": label, **measure(options)}
            print(json.dumps(result), flush=True)
            results.append(result)
    (out / "catalog_scaling.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    plot(results, out / "catalog_scaling.png")
    return results


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (speed, memory) = plt.subplots(1, 2, figsize=(10, 4))
    for label in dict.fromkeys(r["config"] for r in results):
        rows = sorted((r for r in results if r["config"] == label), key=lambda r: r["items"])
        sizes = [r["items"] for r in rows]
        rate = [r.get("sequences_per_second") or r.get("users_per_second") for r in rows]
        speed.plot(sizes, rate, marker="o", label=label)
        memory.plot(sizes, [r["peak_rss_mib"] / 1024 for r in rows], marker="o", label=label)
    for axis, title, unit in ((speed, "throughput", "sequences (train) or users (eval) per second"),
                              (memory, "peak memory (process RSS)", "GiB")):  # fmt: skip
        axis.set_xscale("log")
        axis.set_xlabel("catalog size (items)")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    speed.set_yscale("log")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
