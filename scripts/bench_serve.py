"""Load test of `seqbert serve` on loopback: the server before micro-batching (`lock`) against micro-batching.

The model is the one of ``bench_inference.py`` (2 layers, 64 dimensions, 12,000 items, random weights: speed does
not depend on training), saved to a temporary folder. Each server variant runs ``seqbert serve`` in a subprocess
on 127.0.0.1 and is measured in three phases, every one bounded in time and in requests:

1. closed loop: ``--clients`` concurrent keep-alive clients (default 1, 8, 32, 128), each sending its next
   ``/recommend`` as soon as the previous one is answered (a 503: after its ``Retry-After`` seconds, as a
   production client does), ``--seconds`` per level after ``--warmup-seconds``:
   requests per second, p50 / p99 latency, 503s and other 5xx;
2. overload: an open-loop arrival rate of ``--overload-factor`` x the variant's measured capacity (its best
   requests/s of phase 1) for ``--overload-seconds``, on at most ``--max-connections`` connections (a request
   due while every connection is busy is not sent, and counted as ``client_skipped``): share of 503s (each
   checked for ``Retry-After``), p50 / p99 of the accepted requests (from sending; ``p99_from_schedule_ms`` also
   counts how late the client sent), other 5xx;
3. soak (the better micro-batching variant, ``--soak-variant``): ``--soak-fraction`` x its capacity for
   ``--soak-minutes`` on a fresh server; the server's resident memory (its worker processes included) after
   ``--soak-warmup-seconds`` and at the end, and every error (any 503 included).

Each line also holds ``server``: what the server itself counted over the phase (batches, mean batch size and
milliseconds, refusals), read from its ``/health``.

Every response is checked against its own request: the request bodies are ``--users`` distinct users (``--history``
events each, with a mix of k, exclude_seen and candidate lists), and each 200 must hold the items and scores
(within 1e-4; near-ties may swap) that ``Recommender.recommend`` returns for that user in this process. A wrong,
missing or unparsable answer counts as an error. The checks run after each timed window (during the soak, every
20,000 answers), so that checking does not take the cores from the server while latency is measured; a body
identical to one already found right for the same request is not parsed again, so a check takes milliseconds and
never stalls an open-loop schedule (a one-second stall made the client send a burst the server had to refuse). The load
generator is this script's own asyncio HTTP/1.1 client, on uvloop when it is installed:
``wrk`` (Debian) can neither check each response against its request nor hold a fixed arrival rate, ``oha`` is not
packaged, and locust needs far more CPU per request. It shares the machine's cores with the server.

Writes ``--output`` (default ``benchmarks/serve_load.jsonl``, replaced): one line per (variant, clients) with
``variant``, ``clients``, ``requests_per_second``, ``p50_ms``, ``p99_ms``, ``rejected_503``, ``other_5xx`` (plus
``phase``, ``requests``, ``errors``...), one per variant for the overload phase (``phase: "overload"``), and one
with ``variant: "soak"``, ``rss_start_mib``, ``rss_end_mib``, ``errors``. Prints a Markdown table.

Usage::

    python scripts/bench_serve.py                       # the full run: about 20 minutes (10 of them the soak)
    python scripts/bench_serve.py --quick --output /tmp/serve_quick.jsonl   # a 1-2 minute smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import build_folder, make_users

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    # name: (extra `seqbert serve` options, workers)
    "lock": (["--batching", "off"], 1),
    "batched": (["--batching", "on"], 1),
    "batched-w2": (["--batching", "on", "--workers", "2", "--threads", "1"], 2),
}
SCORE_TOLERANCE = 1e-4
CHECK_EVERY = 20_000  # answers held before checking them (memory bound of a long phase)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    model = parser.add_argument_group("model and requests")
    model.add_argument("--num-items", type=int, default=12_000, help="Catalog size.")
    model.add_argument("--hidden-size", type=int, default=64, help="Model width.")
    model.add_argument("--layers", type=int, default=2, help="Transformer layers.")
    model.add_argument("--max-length", type=int, default=200, help="Model / tokenizer max length.")
    model.add_argument("--history", type=int, default=50, help="Events per request.")
    model.add_argument("--users", type=int, default=512, help="Distinct request bodies (cycled).")
    model.add_argument("--seed", type=int, default=0, help="Seed of the model weights and of the users.")
    servers = parser.add_argument_group("servers")
    servers.add_argument("--variants", nargs="+", default=["lock", "batched", "batched-w2"], choices=list(VARIANTS),
                         help="lock: `--batching off` (the server before micro-batching); batched: micro-batching, "
                         "one process; batched-w2: micro-batching, 2 worker processes with 1 torch thread each.")
    servers.add_argument("--soak-variant", default="auto", choices=["auto", *(v for v in VARIANTS if v != "lock")],
                         help="The variant soaked; auto: the micro-batching variant with the most requests/s at 32 "
                         "clients (or the most clients measured).")
    servers.add_argument("--server-threads", type=int, default=None,
                         help="--threads of the one-process variants lock and batched (None: `seqbert serve`'s "
                         "default, torch's choice for lock and the cores less one for batched).")
    servers.add_argument("--server-option", action="append", default=[], metavar="OPTION",
                         help="Extra `seqbert serve` option for the micro-batching variants, e.g. "
                         "--server-option=--max-batch-delay-ms=2 (repeatable).")
    load = parser.add_argument_group("load")
    load.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 128],
                      help="Closed-loop concurrency levels.")
    load.add_argument("--seconds", type=float, default=20.0, help="Measured seconds per closed-loop level.")
    load.add_argument("--warmup-seconds", type=float, default=3.0, help="Unmeasured seconds before each level.")
    load.add_argument("--overload-factor", type=float, default=3.0, help="Overload arrival rate / measured capacity.")
    load.add_argument("--overload-seconds", type=float, default=20.0, help="Seconds of the overload phase.")
    load.add_argument("--max-connections", type=int, default=1024,
                      help="Open-loop connection limit (above what the servers queue: 128 per worker by default).")
    load.add_argument("--soak-minutes", type=float, default=10.0, help="Soak duration (0: no soak).")
    load.add_argument("--soak-fraction", type=float, default=0.7, help="Soak arrival rate / measured capacity.")
    load.add_argument("--soak-warmup-seconds", type=float, default=20.0, help="Load before the soak's first RSS.")
    load.add_argument("--client-timeout", type=float, default=30.0, help="Seconds before a request counts as lost.")
    load.add_argument("--max-requests", type=int, default=2_000_000, help="Most requests of any one phase.")
    parser.add_argument("--quick", action="store_true", help="Smoke test: clients 1 8, 2 s levels, 1 s warm-up, 4 s "
                        "overload, 20 s soak, 64 users (overrides those options).")  # fmt: skip
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "serve_load.jsonl"),
                        help="JSON lines written here (replaced).")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.seconds, args.warmup_seconds = [1, 8], 2.0, 1.0
        args.overload_seconds, args.soak_minutes, args.soak_warmup_seconds, args.users = 4.0, 1 / 3, 5.0, 64
    return args


# ---------------------------------------------------------------------------------------------------------------
# Requests and their expected answers
# ---------------------------------------------------------------------------------------------------------------


def request_bodies(args: argparse.Namespace, items: list[str]) -> list[dict]:
    """Distinct /recommend bodies: fixed-length histories with a mix of k, exclude_seen and candidates."""
    rng = np.random.default_rng(args.seed + 1)
    bodies = []
    for index, events in enumerate(make_users(args.users, args.history, len(items), seed=args.seed + 2)):
        body = {"events": events, "k": (5, 10, 20)[index % 3], "exclude_seen": index % 4 == 1}
        if index % 10 == 3:
            body["candidates"] = [items[int(i)] for i in rng.integers(0, len(items), 50)] + ["not-in-catalog"]
        bodies.append(body)
    return bodies


def expected_answers(folder: Path, bodies: list[dict]) -> list[dict]:
    """What ``Recommender.recommend`` returns for each body, one call per user (the single-request path)."""
    from seqbert.inference import Recommender

    recommender = Recommender.from_pretrained(str(folder))
    answers = []
    for body in bodies:
        result = recommender.recommend(body["events"], k=body["k"], exclude_seen=body["exclude_seen"],
                                       candidates=body.get("candidates"))  # fmt: skip
        answers.append({"items": result.item_ids, "scores": result.scores, "unknown_events": result.unknown_events,
                        "unknown_candidates": result.unknown_candidates})  # fmt: skip
    return answers


def matches(payload: bytes, expected: dict) -> bool:
    """Whether a 200's body is the answer to its own request (same items and scores; near-ties may swap)."""
    try:
        got = json.loads(payload)
        items = [entry["item_id"] for entry in got["items"]]
        scores = [entry["score"] for entry in got["items"]]
    except (ValueError, KeyError, TypeError):
        return False
    if got.get("unknown_events") != expected["unknown_events"] or len(items) != len(expected["items"]):
        return False
    if got.get("unknown_candidates") != expected["unknown_candidates"]:
        return False
    if not np.allclose(scores, expected["scores"], rtol=0, atol=SCORE_TOLERANCE):
        return False
    # Another item than expected is only a tie swap: an expected item with the same score, or (last position) an
    # item tied with the expected last one from outside the list.
    known = dict(zip(expected["items"], expected["scores"]))
    for position, (item, score) in enumerate(zip(items, scores)):
        if item == expected["items"][position]:
            continue
        if item in known:
            if abs(known[item] - score) > SCORE_TOLERANCE:
                return False
        elif position != len(items) - 1:
            return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# A minimal HTTP/1.1 keep-alive client
# ---------------------------------------------------------------------------------------------------------------


class Connection:
    """One keep-alive connection: ``request(raw)`` → ``(status, headers, body)``."""

    def __init__(self, port: int):
        self.port, self.reader, self.writer, self.last_used = port, None, None, 0.0

    async def request(self, raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        if self.writer is None or time.monotonic() - self.last_used > 4.0:  # the server closes idle ones after 5 s
            self.close()
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")  # status line and headers in one read: less client CPU
        status_line, *lines = head[:-4].split(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get(b"content-length", b"0")))
        self.last_used = time.monotonic()
        if headers.get(b"connection") == b"close":
            self.close()
        return status, headers, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def run_client(coroutine):
    """Run a load phase on uvloop when installed (less client CPU per request), else on asyncio's loop; the objects
    alive before it (bodies, expected answers, libraries) are kept out of the client's garbage collections."""
    gc.collect()
    gc.freeze()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def raw_request(body: dict) -> bytes:
    payload = json.dumps(body).encode()
    return (
        b"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )


class Tally:
    """Outcomes of one phase (a plain class: tests load this script without registering it as a module)."""

    def __init__(self, answers: list[dict]):
        self.answers = answers  # the expected answer of each request index
        self.latencies: list[float] = []  # seconds from sending to the answer, 200s only
        self.late: list[float] = []  # seconds from when the request was due to the answer (open loop), 200s only
        self.statuses: Counter = Counter()
        self.wrong = 0  # 200s that do not answer their own request
        self.lost = 0  # no response (connection error, client timeout)
        self.missing_retry_after = 0
        self.client_skipped = 0  # due while every connection was busy (open loop)
        self.sent = 0
        self.unchecked: list[tuple[int, bytes]] = []  # 200s not yet checked: (request index, body)
        self.verified: set[tuple[int, bytes]] = set()  # (request index, body) pairs already checked and right

    def record(self, status: int, headers: dict, index: int, payload: bytes, seconds: float, late: float) -> None:
        self.statuses[status] += 1
        if status == 200:
            self.latencies.append(seconds)
            self.late.append(late)
            if (index, payload) not in self.verified:  # a body seen before for this request was checked already
                self.unchecked.append((index, payload))
                if len(self.unchecked) >= CHECK_EVERY:
                    self.check()
        elif status == 503 and b"retry-after" not in headers:
            self.missing_retry_after += 1

    def check(self) -> None:
        """Check the answers received since the last check against their own requests. A body identical to one
        already found right for the same request is right too; only new bodies are parsed and compared, so that
        checking during a long phase takes milliseconds, not the second that would stall the client's schedule."""
        for index, payload in self.unchecked:
            key = (index, payload)
            if key in self.verified:
                continue
            if matches(payload, self.answers[index]):
                self.verified.add(key)
            else:
                self.wrong += 1
        self.unchecked.clear()

    def summary(self, elapsed: float) -> dict:
        self.check()
        ms = np.asarray(self.latencies) * 1000
        late = np.asarray(self.late) * 1000
        ok = self.statuses[200]
        rejected = self.statuses[503]
        other_5xx = sum(n for status, n in self.statuses.items() if status >= 500 and status != 503)
        other_4xx = sum(n for status, n in self.statuses.items() if 400 <= status < 500)
        return {
            "requests_per_second": round(ok / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
            "p99_from_schedule_ms": round(float(np.percentile(late, 99)), 2) if len(late) else None,
            "rejected_503": rejected,
            "other_5xx": other_5xx,
            "requests": self.sent,
            "ok": ok,
            "errors": self.wrong + self.lost + other_5xx + other_4xx + self.missing_retry_after,
            "wrong_answers": self.wrong,
            "lost": self.lost,
            "other_4xx": other_4xx,
            "503_without_retry_after": self.missing_retry_after,
            "seconds": round(elapsed, 2),
        }


async def one_request(connection: Connection, index: int, raws: list[bytes], tally: Tally, due: float,
                      timeout: float) -> float | None:  # fmt: skip
    """Send request ``index`` now and record its outcome (``due``: when it should have been sent). The seconds the
    server asked to wait before retrying (a 503's ``Retry-After``, else 0), or ``None`` when the connection broke."""
    sent = time.perf_counter()
    tally.sent += 1
    try:
        status, headers, payload = await asyncio.wait_for(connection.request(raws[index]), timeout)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ValueError):
        tally.lost += 1
        connection.close()
        return None
    now = time.perf_counter()
    tally.record(status, headers, index, payload, now - sent, now - due)
    retry_after = headers.get(b"retry-after", b"0") if status == 503 else b"0"
    return float(retry_after) if retry_after.isdigit() else 0.0


async def closed_loop(port: int, clients: int, raws: list[bytes], answers: list[dict], warmup: float, seconds: float,
                      timeout: float, max_requests: int) -> dict:  # fmt: skip
    """``clients`` connections, each sending its next request when the previous one is answered, or after the
    ``Retry-After`` seconds of a 503, as a production client does (one that retries at once turns each refusal into
    another request to refuse)."""
    tally, warm = Tally(answers), Tally(answers)
    start = time.perf_counter()
    measure_from, stop = start + warmup, start + warmup + seconds

    async def client(offset: int) -> None:
        connection, index = Connection(port), offset
        while time.perf_counter() < stop and tally.sent < max_requests:
            sent = time.perf_counter()
            target = tally if sent >= measure_from else warm
            retry_after = await one_request(connection, index % len(raws), raws, target, sent, timeout)
            index += clients
            if retry_after:
                await asyncio.sleep(min(retry_after, max(0.0, stop - time.perf_counter())))
        connection.close()

    await asyncio.gather(*(client(offset) for offset in range(clients)))
    result = tally.summary(max(time.perf_counter() - measure_from, 1e-9))
    result["errors"] += warm.wrong + warm.lost  # a wrong answer during warm-up is still wrong
    return result


async def open_loop(port: int, rate: float, seconds: float, raws: list[bytes], answers: list[dict],
                    max_connections: int, timeout: float, max_requests: int, offset: int = 0,
                    on_tick=None) -> dict:  # fmt: skip
    """Requests due at ``rate`` per second for ``seconds`` (not waiting for answers), on a pool of at most
    ``max_connections`` connections; a request due while all are busy is skipped (``client_skipped``)."""
    tally, idle, opened, pending = Tally(answers), [], 0, set()
    start = time.perf_counter()

    async def send(connection: Connection, index: int, due: float) -> None:
        if await one_request(connection, index % len(raws), raws, tally, due, timeout) is not None:
            idle.append(connection)
        else:
            idle.append(Connection(port))

    due_index = 0
    while True:
        now = time.perf_counter()
        if now - start >= seconds or tally.sent + tally.client_skipped >= max_requests:
            break
        while start + due_index / rate <= now:
            due = start + due_index / rate
            if idle:
                connection = idle.pop()
            elif opened < max_connections:
                connection, opened = Connection(port), opened + 1
            else:
                tally.client_skipped += 1
                due_index += 1
                continue
            task = asyncio.ensure_future(send(connection, offset + due_index, due))
            pending.add(task)
            task.add_done_callback(pending.discard)
            due_index += 1
        if on_tick is not None:
            on_tick(now - start)
        await asyncio.sleep(min(0.001, max(0.0, start + due_index / rate - time.perf_counter())))
    sending = time.perf_counter() - start
    if pending:
        await asyncio.wait(pending, timeout=timeout + 5)
    for connection in idle:
        connection.close()
    result = tally.summary(time.perf_counter() - start)  # answers per second until the last one came
    result.update(offered_rps=round(rate, 1), sent_rps=round(tally.sent / sending, 1),
                  client_skipped=tally.client_skipped, connections=opened)  # fmt: skip
    total = tally.sent or 1
    result["share_503"] = round(tally.statuses[503] / total, 4)
    return result


# ---------------------------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``seqbert serve`` in a subprocess on 127.0.0.1 (stops by itself after ``lifetime`` seconds at the latest)."""

    def __init__(self, folder: Path, options: list[str], lifetime: float, log: Path):
        self.port = free_port()
        command = [sys.executable, "-m", "seqbert.cli", "--log-level", "WARNING", "serve", str(folder), "--host",
                   "127.0.0.1", "--port", str(self.port), "--max-lifetime", str(int(lifetime)), *options]  # fmt: skip
        self.command = command
        self.log = log
        with open(log, "ab") as handle:
            self.process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)

    def wait_healthy(self, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                return self.health()
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"server not healthy after {timeout} s")

    def health(self) -> dict:
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/health")
            response = connection.getresponse()
            return json.loads(response.read())
        finally:
            connection.close()

    def rss_mib(self) -> float:
        """Resident memory of the server and its worker processes."""
        import psutil

        process = psutil.Process(self.process.pid)
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total / 2**20

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)


def server_delta(before: dict, after: dict) -> dict | None:
    """What the server counted between two /health answers: batches (number, mean size, mean ms) and refusals.
    ``None`` when another worker process answered the second time."""
    if before.get("pid") != after.get("pid"):
        return None
    first, last = before["batches"], after["batches"]
    count = last["count"] - first["count"]
    keys = ("requests", "rejected_503_queue_full", "rejected_503_expected_wait", "timed_out_503_queued",
            "timed_out_504_computing", "errors_500")
    delta = {key: after.get(key, 0) - before.get(key, 0) for key in keys}
    delta["batches"] = count
    for key, name in (("mean_size", "mean_batch_size"), ("mean_ms", "mean_batch_ms")):
        if count > 0:
            delta[name] = round((last["count"] * last[key] - first["count"] * first[key]) / count, 2)
    return delta


def variant_options(name: str, args: argparse.Namespace) -> list[str]:
    options, workers = VARIANTS[name]
    options = list(options)
    if workers == 1 and args.server_threads:
        options += ["--threads", str(args.server_threads)]
    if name != "lock":
        options += args.server_option
    return options


# ---------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------


def run_variant(name: str, folder: Path, raws: list[bytes], answers: list[dict], args, log: Path) -> list[dict]:
    level_seconds = len(args.clients) * (args.warmup_seconds + args.seconds + args.client_timeout)
    server = Server(folder, variant_options(name, args), level_seconds + args.overload_seconds + 600, log)
    lines = []
    try:
        server.wait_healthy()
        base = {"variant": name, "workers": VARIANTS[name][1], "server_options": variant_options(name, args)}
        for clients in args.clients:
            before = server.health()
            result = run_client(closed_loop(server.port, clients, raws, answers, args.warmup_seconds, args.seconds,
                                             args.client_timeout, args.max_requests))  # fmt: skip
            lines.append({**base, "phase": "closed_loop", "clients": clients, **result,
                          "server": server_delta(before, server.health())})  # fmt: skip
            print(json.dumps(lines[-1]), flush=True)
        capacity = max(line["requests_per_second"] for line in lines)
        if args.overload_seconds > 0 and capacity > 0:
            rate = args.overload_factor * capacity
            before = server.health()
            result = run_client(open_loop(server.port, rate, args.overload_seconds, raws, answers,
                                           args.max_connections, args.client_timeout, args.max_requests))  # fmt: skip
            lines.append({**base, "phase": "overload", "clients": result["connections"], "capacity_rps": capacity,
                          "overload_factor": args.overload_factor, **result,
                          "server": server_delta(before, server.health())})  # fmt: skip
            print(json.dumps(lines[-1]), flush=True)
    finally:
        code = server.stop()
    if code != 0:
        print(f"warning: {name} server exited with {code} (log: {log})", file=sys.stderr)
    return lines


def run_soak(
    name: str, capacity: float, folder: Path, raws: list[bytes], answers: list[dict], args, log: Path
) -> dict:
    seconds = 60 * args.soak_minutes
    server = Server(folder, variant_options(name, args), args.soak_warmup_seconds + seconds + 600, log)
    rate = args.soak_fraction * capacity
    try:
        server.wait_healthy()
        rss_loaded = server.rss_mib()
        before = server.health()
        warm = run_client(open_loop(server.port, rate, args.soak_warmup_seconds, raws, answers, args.max_connections,
                                     args.client_timeout, args.max_requests))  # fmt: skip
        rss_start = server.rss_mib()
        samples = []

        def sample(elapsed: float) -> None:
            if not samples or elapsed - samples[-1][0] >= 30:
                samples.append((round(elapsed, 1), round(server.rss_mib(), 1)))

        result = run_client(open_loop(server.port, rate, seconds, raws, answers, args.max_connections,
                                       args.client_timeout, args.max_requests, offset=7, on_tick=sample))  # fmt: skip
        rss_end = server.rss_mib()
        health = server.health()
    finally:
        code = server.stop()
    errors = result["errors"] + warm["errors"] + result["rejected_503"] + result["client_skipped"]
    return {
        "variant": "soak", "server_variant": name, "server_options": variant_options(name, args),
        "minutes": round(seconds / 60, 2), "offered_rps": round(rate, 1), "capacity_rps": capacity,
        "rss_loaded_mib": round(rss_loaded, 1), "rss_start_mib": round(rss_start, 1), "rss_end_mib": round(rss_end, 1),
        "rss_growth": round(rss_end / rss_start - 1, 4), "errors": errors, "exit_code": code,
        "requests": result["requests"], "ok": result["ok"], "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"],
        "rejected_503": result["rejected_503"], "other_5xx": result["other_5xx"], "lost": result["lost"],
        "wrong_answers": result["wrong_answers"], "client_skipped": result["client_skipped"],
        "rss_samples_mib": samples, "server": server_delta(before, health),
    }  # fmt: skip


def best_batched(lines: list[dict]) -> str | None:
    """The micro-batching variant with the most requests/s at 32 clients (or at the most clients measured)."""
    closed = [line for line in lines if line["variant"] != "lock" and line["phase"] == "closed_loop"]
    if not closed:
        return None
    level = 32 if any(line["clients"] == 32 for line in closed) else max(line["clients"] for line in closed)
    return max((line for line in closed if line["clients"] == level), key=lambda line: line["requests_per_second"])[
        "variant"
    ]


def markdown(lines: list[dict]) -> str:
    header = "| variant | phase | clients | requests/s | p50 ms | p99 ms | 503 | other 5xx | errors | mean batch |"
    rows = [header, "|---" * 10 + "|"]
    for line in lines:
        if line["variant"] == "soak":
            continue
        phase = line["phase"]
        if phase == "overload":
            phase = (f"{line['overload_factor']:g}x capacity: {line['offered_rps']:,.0f}/s offered, "
                     f"{line['sent_rps']:,.0f}/s sent, {line['client_skipped']} skipped")  # fmt: skip
        rows.append(f"| {line['variant']} | {phase} | {line['clients']} | {line['requests_per_second']:,.0f} | "
                    f"{line['p50_ms']} | {line['p99_ms']} | {line['rejected_503']} | {line['other_5xx']} | "
                    f"{line['errors']} | {(line.get('server') or {}).get('mean_batch_size', '–')} |")  # fmt: skip
    text = "\n".join(rows)
    for line in lines:
        if line["variant"] == "soak":
            text += (f"\n\nSoak ({line['server_variant']}, {line['minutes']:g} min at {line['offered_rps']:,.0f} "
                     f"requests/s): RSS {line['rss_start_mib']} → {line['rss_end_mib']} MiB "
                     f"({100 * line['rss_growth']:+.1f} %), "
                     f"{line['errors']} errors, p99 {line['p99_ms']} ms.")  # fmt: skip
    return text


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    import torch

    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "command": "python scripts/bench_serve.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
    }
    with tempfile.TemporaryDirectory() as tmp:
        items = [f"i{i:06d}" for i in range(args.num_items)]
        folder = build_folder(
            Path(tmp) / "model", items, args.hidden_size, args.layers, args.max_length, seed=args.seed
        )
        bodies = request_bodies(args, items)
        answers = expected_answers(folder, bodies)
        raws = [raw_request(body) for body in bodies]
        log = Path(tmp) / "servers.log"
        lines: list[dict] = []
        try:
            for name in args.variants:
                lines += run_variant(name, folder, raws, answers, args, log)
            if args.soak_minutes > 0:
                soaked = args.soak_variant if args.soak_variant != "auto" else best_batched(lines) or "batched"
                measured = [line["requests_per_second"] for line in lines
                            if line["variant"] == soaked and line["phase"] == "closed_loop"]  # fmt: skip
                if not measured:  # the soaked variant was not measured above: measure its capacity now
                    measured = [line["requests_per_second"] for line in run_variant(soaked, folder, raws, answers,
                                args, log) if line["phase"] == "closed_loop"]  # fmt: skip
                lines.append(run_soak(soaked, max(measured), folder, raws, answers, args, log))
                print(json.dumps(lines[-1]), flush=True)
        except BaseException:
            print(f"server log (last 3000 characters):\n{log.read_text()[-3000:] if log.exists() else ''}",
                  file=sys.stderr)  # fmt: skip
            raise
    lines = [{**line, **meta} for line in lines]
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("".join(json.dumps(line) + "\n" for line in lines))
    print()
    print(markdown(lines))
    print(f"\n{meta['machine']}; {meta['date']}, commit {meta['commit']}. Wrote {output}.")
    return lines


if __name__ == "__main__":
    main()
