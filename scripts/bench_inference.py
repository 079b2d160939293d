"""Inference latency and throughput: `Recommender.recommend` with PyTorch eager vs ONNX Runtime, and the HTTP server.

A 2-layer, 64-dimensional SeqBERT over a 12,000-item catalog (random weights: latency does not depend on
training) is saved to a temporary folder, exported to ONNX, then measured end to end (raw event dicts →
tokenizer → scores → top-k → external ids):

- one user per call (history of ``--history`` events): p50 / p99 latency over ``--iterations`` calls;
- batches of ``--batch-size`` users (histories of 1..2x``--history`` events): users per second;
- ``seqbert serve`` in a subprocess on loopback, ``--clients`` concurrent keep-alive clients posting
  one-user ``/recommend`` requests for ``--server-seconds``: requests per second and latency percentiles.

Usage::

    python scripts/bench_inference.py                      # everything, prints a Markdown table + JSON
    python scripts/bench_inference.py --threads 1 --skip-server --json results.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

import seqbert
from seqbert.inference import Recommender

EVENT_TYPES = ("view", "click", "search", "cart", "fav", "purchase")


def build_folder(folder: Path, items: list[str], hidden: int, layers: int, max_length: int, seed: int = 0) -> Path:
    """A masked-behavior model folder with random weights over ``items`` (speed does not depend on training)."""
    tokenizer = seqbert.BehaviorTokenizer(items=items, max_length=max_length)
    config = seqbert.SeqBertConfig(
        vocab_size=tokenizer.vocab_size,
        num_special_tokens=tokenizer.num_special_tokens,
        num_behaviors=tokenizer.num_behaviors,
        num_time_buckets=tokenizer.num_time_buckets,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=4 * hidden,
        max_position_embeddings=max_length,
    )
    torch.manual_seed(seed)
    seqbert.SeqBertForMaskedBehaviorModeling(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_users(n: int, length: int | tuple[int, int], num_items: int, seed: int) -> list[list[dict]]:
    rng = np.random.default_rng(seed)
    users = []
    for _ in range(n):
        size = length if isinstance(length, int) else int(rng.integers(length[0], length[1] + 1))
        start = 1_700_000_000 + int(rng.integers(0, 10_000_000))
        gaps = np.cumsum(rng.integers(1, 3_600, size=size))
        users.append(
            [
                {"item_id": f"i{int(item):06d}", "event_type": EVENT_TYPES[int(kind)], "timestamp": start + int(gap)}
                for item, kind, gap in zip(rng.integers(0, num_items, size), rng.integers(0, 6, size), gaps)
            ]
        )
    return users


def latency(recommender: Recommender, users: list, iterations: int, k: int) -> dict:
    for user in users[:20]:  # warm-up
        recommender.recommend(user, k=k)
    times = []
    for i in range(iterations):
        start = time.perf_counter()
        recommender.recommend(users[i % len(users)], k=k)
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "calls": iterations,
    }


def throughput(recommender: Recommender, batches: list, k: int) -> dict:
    recommender.recommend(batches[0], k=k)  # warm-up
    start = time.perf_counter()
    users = 0
    for batch in batches:
        recommender.recommend(batch, k=k)
        users += len(batch)
    seconds = time.perf_counter() - start
    return {"users_per_s": users / seconds, "ms_per_batch": 1000 * seconds / len(batches), "batches": len(batches)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_load(folder: Path, users: list, seconds: float, clients: int, k: int, threads: int | None) -> dict:
    """Start `seqbert serve` on loopback, hammer /recommend with `clients` keep-alive clients for `seconds`."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "seqbert.cli",
        "--log-level",
        "WARNING",
        "serve",
        str(folder),
        "--port",
        str(port),
        "--max-lifetime",
        str(seconds + 180),
    ]
    if threads:
        command += ["--threads", str(threads)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.2)
        bodies = [json.dumps({"events": user, "k": k}).encode() for user in users]
        for body in bodies[:20]:  # warm-up
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("POST", "/recommend", body=body, headers={"Content-Type": "application/json"})
            assert connection.getresponse().read() and True
        latencies: list[list[float]] = [[] for _ in range(clients)]
        errors = [0] * clients
        stop = time.monotonic() + seconds

        def client(index: int) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            i = index
            while time.monotonic() < stop:
                start = time.perf_counter()
                connection.request(
                    "POST", "/recommend", body=bodies[i % len(bodies)], headers={"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    errors[index] += 1
                latencies[index].append(time.perf_counter() - start)
                i += clients

        started = time.monotonic()
        workers = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.monotonic() - started
        ms = np.array([t for per in latencies for t in per]) * 1000
        return {
            "requests_per_s": len(ms) / elapsed,
            "requests": int(len(ms)),
            "errors": int(sum(errors)),
            "clients": clients,
            "seconds": round(elapsed, 1),
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
        }
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-items", type=int, default=12_000)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=200, help="Model/tokenizer max length (events + mask).")
    parser.add_argument("--history", type=int, default=50, help="Events per user for the single-user latency.")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=1000, help="Single-user calls per backend.")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--threads", type=int, help="torch and ONNX Runtime intra-op threads (default: torch's).")
    parser.add_argument("--server-seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--json", help="Also write the results to this JSON file.")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    from seqbert.export import OnnxNextItemModel, export_onnx

    results: dict = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": threads,
            "python": platform.python_version(),
        },
        "model": {
            "num_items": args.num_items,
            "hidden_size": args.hidden_size,
            "layers": args.layers,
            "max_length": args.max_length,
            "history_events": args.history,
            "k": args.k,
        },
        "date": time.strftime("%Y-%m-%d"),
        "command": "python scripts/bench_inference.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        items = [f"i{i:06d}" for i in range(args.num_items)]
        folder = build_folder(Path(tmp) / "model", items, args.hidden_size, args.layers, args.max_length)
        onnx_path = export_onnx(folder, Path(tmp) / "model.onnx")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        eager = Recommender.from_pretrained(str(folder))
        onnx = Recommender(
            OnnxNextItemModel(onnx_path, max_position_embeddings=args.max_length, session_options=options),
            eager.tokenizer,
        )
        single_users = make_users(200, args.history, args.num_items, seed=1)
        batches = [
            make_users(args.batch_size, (1, 2 * args.history), args.num_items, seed=100 + b)
            for b in range(args.batches)
        ]
        for name, recommender in (("pytorch", eager), ("onnxruntime", onnx)):
            results[name] = {
                "single_user": latency(recommender, single_users, args.iterations, args.k),
                f"batch_{args.batch_size}": throughput(recommender, batches, args.k),
            }
            print(name, json.dumps(results[name]), flush=True)
        if not args.skip_server:
            results["server"] = server_load(
                folder, single_users, args.server_seconds, args.clients, args.k, args.threads
            )
            print("server", json.dumps(results["server"]), flush=True)

    batch_key = f"batch_{args.batch_size}"
    print("\n| backend | single-user p50 (ms) | p99 (ms) | batch of %d: users/s |" % args.batch_size)
    print("|---|---|---|---|")
    for name in ("pytorch", "onnxruntime"):
        r = results[name]
        print(
            f"| {name} | {r['single_user']['p50_ms']:.2f} | {r['single_user']['p99_ms']:.2f} | {r[batch_key]['users_per_s']:,.0f} |"
        )
    if "server" in results:
        s = results["server"]
        print(
            f"\nserver: {s['requests_per_s']:.0f} requests/s with {s['clients']} clients over {s['seconds']} s "
            f"(p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, {s['errors']} errors)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
