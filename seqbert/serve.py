"""An HTTP service for a saved model folder (FastAPI + uvicorn; ``pip install 'seqbert[serve]'``).

Endpoints:

- ``GET /health`` → ``{"status": "ok", "kind": "recommender" | "classifier", "num_items": ..., "queue_depth": ...,
  "batches": {...}, ...}`` (never needs the API key, never queued);
- ``POST /recommend`` (masked-behavior folders) with ``{"events": [...], "k": 10, "exclude_seen": false,
  "candidates": null}`` → ``{"items": [{"item_id", "score"}...], "unknown_events": n, "unknown_candidates": [...]}``;
- ``POST /predict`` (classifier folders) with ``{"events": [...], "query_timestamp": null}`` →
  ``{"label": "purchase", "probability": p, "unknown_events": n, "query_timestamp": t}``.

Each event is ``{"item_id": str, "event_type": str, "timestamp": int unix seconds}``, checked with the rules of
``seqbert prepare`` (:func:`seqbert.data.canonical.timestamp_problem`, the event-type aliases recorded with the
model: :func:`seqbert.data.canonical.recorded_event_aliases`).

How requests are computed (``batching``):

- ``True`` (default): *dynamic micro-batching*. Requests wait in a bounded queue (``max_queue``); one inference
  thread takes up to ``max_batch_size`` of them at a time (waiting at most ``max_batch_delay_ms`` after the oldest
  arrived for the batch to fill) and scores them in one forward pass, through the batch path of
  :class:`~seqbert.inference.Recommender` / :class:`~seqbert.inference.Classifier`. Each response is what a
  single-request call returns (tested). The HTTP event loop keeps parsing and answering meanwhile.
- ``False``: the server before micro-batching, kept for comparison: each request is scored alone, one forward
  pass at a time behind a lock, with no bound on waiting requests and no timeout.

Errors are JSON with a ``detail`` list: 400 malformed JSON, 401 missing or wrong API key, 404 the endpoint of
the other model kind, 413 body over ``max_body_bytes``, 422 what pydantic, the event rules or the tokenizer
reject (missing fields, wrong types, unknown event types, bad timestamps, more than ``max_events`` events,
``k`` above ``max_k``...), 503 with ``Retry-After`` when the queue is full or a request waited
``request_timeout`` seconds without being started, 504 when its forward pass outlasted ``request_timeout``.
"""

# No `from __future__ import annotations`: FastAPI must see the request models of `create_app` as classes.

import asyncio
import collections
import hmac
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_MAX_EVENTS = 1_000
DEFAULT_MAX_K = 1_000
DEFAULT_MAX_CANDIDATES = 10_000
DEFAULT_MAX_BODY_BYTES = 1_000_000
DEFAULT_MAX_BATCH_SIZE = 32
"""Most requests scored in one forward pass."""
DEFAULT_MAX_BATCH_DELAY_MS = 0.0
"""How long a batch may wait to fill after its oldest request arrived. 0: take what is queued whenever the
inference thread is free (on CPU the cost of a forward pass grows with the batch, so waiting gains little;
under load, batches fill while the previous one computes)."""
DEFAULT_MAX_QUEUE = 128
"""Most requests waiting for the inference thread; beyond it, 503 at once."""
DEFAULT_REQUEST_TIMEOUT_S = 10.0
RETRY_AFTER_S = 1
BATCHED_PATHS = ("/recommend", "/predict")
BATCH_SIZE_BINS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""Upper edges of the batch-size histogram of ``/health``."""
STARTUP_FAILURE_EXIT_CODE = 3


def _require_fastapi():
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "Serving needs the `serve` extra: pip install 'seqbert[serve]' (fastapi, uvicorn)."
        ) from error


def folder_kind(folder: str | Path) -> str:
    """``"classifier"`` for a sequence-classification folder, else ``"recommender"``."""
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    architectures = config.get("architectures") or []
    return "classifier" if any("SequenceClassification" in name for name in architectures) else "recommender"


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` exposes the server to this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The warning to print when ``host`` is reachable from other machines and no API key protects it."""
    if api_key or is_loopback(host):
        return None
    return (
        f"seqbert serve is listening on {host}, which other machines can reach, WITHOUT an API key: anyone who can "
        "connect can query the model. Set a key with --api-key-env NAME (the variable NAME holds it), or bind "
        "127.0.0.1 behind a proxy that authenticates."
    )


def _json_response(status: int, detail: list[dict], headers: list[tuple[bytes, bytes]] = ()) -> tuple[dict, dict]:
    body = json.dumps({"detail": detail}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class _BodyLimit:
    """ASGI middleware: 413 for request bodies over ``limit`` bytes (declared or streamed), before any parsing.

    The body is read here (at most ``limit`` bytes are buffered) and replayed to the application. Before
    a 413, the rest of the body, up to ``DRAIN_FACTOR x limit`` bytes in all, is read and discarded
    (never buffered), so that a client still sending gets the response rather than a reset connection
    (uvicorn delivers no more body once a response is complete); beyond that the connection is closed.
    """

    DRAIN_FACTOR = 16

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            if int(declared) <= self.DRAIN_FACTOR * self.limit:
                await self._drain(receive, 0)
            return await self._reject(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                if message.get("more_body", False):
                    await self._drain(receive, size)
                return await self._reject(send)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _drain(self, receive, size: int) -> None:
        while size <= self.DRAIN_FACTOR * self.limit:
            message = await receive()
            if message["type"] != "http.request":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _reject(self, send):
        start, body = _json_response(
            413, [{"msg": f"Request body is larger than {self.limit} bytes."}], [(b"connection", b"close")]
        )
        await send(start)
        await send(body)


class _ApiKey:
    """ASGI middleware: every path except ``/health`` needs ``Authorization: Bearer <key>`` (401 otherwise).

    The key is compared in constant time (:func:`hmac.compare_digest`) and appears in no log or response.
    """

    def __init__(self, app, key: str):
        self.app, self.expected = app, f"Bearer {key}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") == "/health":
            return await self.app(scope, receive, send)
        given = b""
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                given = value
                break
        if hmac.compare_digest(given, self.expected):
            return await self.app(scope, receive, send)
        message = "Missing API key: send `Authorization: Bearer <key>`." if not given else "Invalid API key."
        start, body = _json_response(401, [{"msg": message}], [(b"www-authenticate", b"Bearer")])
        await send(start)
        await send(body)
        return None


class _Backpressure:
    """ASGI middleware: 503 + ``Retry-After`` for a scoring request while the queue is full, before its body is
    parsed (so that refusing stays cheap however many clients push)."""

    def __init__(self, app, service: "_Service"):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("path") in BATCHED_PATHS and self.service.queue_full():
            self.service.stats.requests += 1
            self.service.stats.rejected_queue_full += 1
            start, body = _json_response(503, [_QUEUE_FULL], [(b"retry-after", str(RETRY_AFTER_S).encode())])
            await send(start)
            await send(body)
            return None
        return await self.app(scope, receive, send)


_QUEUE_FULL = {"msg": "The server is at capacity (request queue full); retry after the Retry-After seconds."}


# ---------------------------------------------------------------------------------------------------------------
# Event rules (those of `seqbert prepare`)
# ---------------------------------------------------------------------------------------------------------------


def _utc(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "out of range"


class EventRules:
    """Checks one request's events with the rules of ``seqbert prepare``: timestamps (unix seconds, not negative,
    not before 1990, at most a day in the future) and event types through the aliases prepare applied to the
    model's data (``split_protocol.json``: defaults, ``--dataset-format``, ``--event-alias``; case-insensitive).

    Args:
        event_types: the tokenizer's event types; aliases: raw name → canonical type (stripped, lower-case).
    """

    def __init__(self, event_types: list[str], aliases: dict[str, str]):
        from .data.canonical import timestamp_problem

        self._problem = timestamp_problem
        self.event_types = list(event_types)
        known = set(self.event_types)
        self.aliases = {raw: canonical for raw, canonical in aliases.items() if canonical in known}
        self.aliases.update({name: name for name in self.event_types})
        self._exact = {name: name for name in self.event_types}

    @classmethod
    def for_folder(cls, folder: str | Path, event_types: list[str]) -> "EventRules":
        from .data.canonical import recorded_event_aliases

        protocol_file = Path(folder) / "split_protocol.json"
        protocol = json.loads(protocol_file.read_text(encoding="utf-8")) if protocol_file.is_file() else None
        return cls(event_types, recorded_event_aliases(protocol))

    def accepted_names(self) -> list[str]:
        """Every accepted event-type name (canonical types first, then the aliases, sorted)."""
        return self.event_types + sorted(set(self.aliases) - set(self.event_types))

    def timestamp_error(self, value: int, loc: list, now: float) -> dict | None:
        """The 422 detail of a timestamp that breaks prepare's rule, else ``None``."""
        problem = self._problem(value, now)
        if problem is None:
            return None
        hint = ""
        if self._problem(value // 1000, now) is None:
            hint = " It looks like milliseconds: divide by 1000."
        return {
            "loc": loc,
            "msg": f"timestamp {value} {problem} (read as unix seconds: {_utc(value)}); `seqbert prepare` rejects it "
            f"too. Send unix seconds from 1990-01-01 to 1 day from now.{hint}",
            "type": "timestamp_out_of_range",
        }

    def check(self, events: list, now: float | None = None) -> list[dict]:
        """Raw events (the request's pydantic models) → dicts with canonical event types; raises
        :class:`_RequestError` (422) listing the bad fields."""
        now = time.time() if now is None else now
        exact, aliases = self._exact, self.aliases
        out, unknown, empty = [], {}, []
        for index, event in enumerate(events):
            raw, item = event.event_type, event.item_id
            event_type = exact.get(raw) or aliases.get(raw.strip().lower())
            if event_type is None:
                unknown.setdefault(raw, index)
            if type(item) is not str:
                item = str(item)
            elif not item:
                empty.append(index)
            out.append({"item_id": item, "event_type": event_type, "timestamp": event.timestamp})
        errors = [
            {"loc": ["body", "events", index, "item_id"], "type": "missing",
             "msg": "item_id is empty (`seqbert prepare` drops events without an item)."}
            for index in empty
        ]  # fmt: skip
        times = [event["timestamp"] for event in out]
        # The rule is a range: when the earliest and the latest timestamps pass, all do.
        if times and (self._problem(min(times), now) or self._problem(max(times), now)):
            for index, value in enumerate(times):
                error = self.timestamp_error(value, ["body", "events", index, "timestamp"], now)
                if error is not None:
                    errors.append(error)
        if unknown:
            names = list(unknown)
            errors.insert(0, {
                "loc": ["body", "events", unknown[names[0]], "event_type"],
                "type": "unknown_event_type",
                "msg": f"Unknown event types {names[:10]}; this model knows {self.event_types} and accepts these "
                f"names for them (case-insensitive, as `seqbert prepare` maps them): {self.accepted_names()}.",
            })  # fmt: skip
        if errors:
            raise _RequestError(422, errors[:20])
        return out


class _RequestError(Exception):
    def __init__(self, status: int, detail: list[dict], headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status, self.detail, self.headers = status, detail, headers


# ---------------------------------------------------------------------------------------------------------------
# Micro-batching
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Job:
    """One request: what it asks, and the future its response goes to."""

    events: list[dict]
    future: asyncio.Future
    arrival: float
    k: int = 10
    exclude_seen: bool = False
    candidates: list[str] | None = None
    query_timestamp: int | None = None
    started: bool = False


@dataclass
class _Stats:
    """Counters of ``/health`` (event-loop thread only, so no locking)."""

    requests: int = 0  # valid scoring requests, refused ones included
    rejected_queue_full: int = 0
    timeouts_queued: int = 0
    timeouts_computing: int = 0
    errors: int = 0
    batches: int = 0
    batched_requests: int = 0
    largest_batch: int = 0
    batch_seconds: float = 0.0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(BATCH_SIZE_BINS) + 1))

    def add_batch(self, size: int, seconds: float) -> None:
        self.batches += 1
        self.batched_requests += size
        self.largest_batch = max(self.largest_batch, size)
        self.batch_seconds += seconds
        self.histogram[next((i for i, edge in enumerate(BATCH_SIZE_BINS) if size <= edge), len(BATCH_SIZE_BINS))] += 1

    def to_dict(self) -> dict[str, Any]:
        labels = [f"<={edge}" for edge in BATCH_SIZE_BINS] + [f">{BATCH_SIZE_BINS[-1]}"]
        return {
            "requests": self.requests,
            "rejected_503_queue_full": self.rejected_queue_full,
            "timed_out_503_queued": self.timeouts_queued,
            "timed_out_504_computing": self.timeouts_computing,
            "errors_500": self.errors,
            "batches": {
                "count": self.batches,
                "mean_size": self.batched_requests / self.batches if self.batches else 0.0,
                "largest": self.largest_batch,
                "mean_ms": 1000 * self.batch_seconds / self.batches if self.batches else 0.0,
                "size_histogram": {label: n for label, n in zip(labels, self.histogram) if n},
            },
        }


class _Service:
    """The model, its event rules, and how requests reach it: the micro-batcher or the single lock."""

    def __init__(
        self,
        engine: Any,
        kind: str,
        *,
        batching: bool,
        max_batch_size: int,
        max_batch_delay_ms: float,
        max_queue: int,
        request_timeout: float,
    ):
        if max_batch_size < 1 or max_queue < 1 or max_batch_delay_ms < 0 or request_timeout <= 0:
            raise ValueError(
                f"max_batch_size ({max_batch_size}) and max_queue ({max_queue}) must be >= 1, max_batch_delay_ms "
                f"({max_batch_delay_ms}) >= 0 and request_timeout ({request_timeout}) > 0."
            )
        self.engine, self.kind, self.batching = engine, kind, batching
        self.max_batch_size, self.max_queue = int(max_batch_size), int(max_queue)
        self.delay = float(max_batch_delay_ms) / 1000
        self.request_timeout = float(request_timeout)
        self.stats = _Stats()
        self.queue: collections.deque[_Job] = collections.deque()
        self.in_flight = 0
        self.waiting_on_lock = 0
        self._lock = threading.Lock()  # batching off: one forward pass at a time
        self._count_lock = threading.Lock()  # batching off: waiting_on_lock changes in several threads
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task | None = None
        self._not_empty: asyncio.Event | None = None
        self._full: asyncio.Event | None = None

    # ------------------------------------------------------------------ state
    def queue_full(self) -> bool:
        return self.batching and len(self.queue) >= self.max_queue

    def health(self) -> dict[str, Any]:
        return {
            "batching": {
                "mode": "batched" if self.batching else "lock",
                "max_batch_size": self.max_batch_size if self.batching else 1,
                "max_batch_delay_ms": 1000 * self.delay if self.batching else 0.0,
                "max_queue": self.max_queue if self.batching else None,
                "request_timeout_s": self.request_timeout if self.batching else None,
            },
            "queue_depth": len(self.queue) if self.batching else self.waiting_on_lock,
            "in_flight": self.in_flight,
            **self.stats.to_dict(),
        }

    # ------------------------------------------------------------------ entry point
    async def submit(self, job: _Job) -> dict[str, Any]:
        """The response body of one request (raises :class:`_RequestError` for 422 / 503 / 504)."""
        self.stats.requests += 1
        if not self.batching:
            return await self._run_locked(job)
        if len(self.queue) >= self.max_queue:
            self.stats.rejected_queue_full += 1
            raise _RequestError(503, [_QUEUE_FULL], {"Retry-After": str(RETRY_AFTER_S)})
        self._start()
        self.queue.append(job)
        self._not_empty.set()
        if len(self.queue) >= self.max_batch_size:
            self._full.set()
        remaining = job.arrival + self.request_timeout - time.perf_counter()
        try:
            result = await asyncio.wait_for(job.future, max(remaining, 0.0))
        except asyncio.TimeoutError:  # TimeoutError from Python 3.11 on
            if not job.started:  # still queued: it will never be computed
                self.queue.remove(job)
                self.stats.timeouts_queued += 1
                raise _RequestError(
                    503, [{"msg": f"Not started within the request timeout ({self.request_timeout:g} s): the server "
                           "is overloaded; retry after the Retry-After seconds."}],
                    {"Retry-After": str(RETRY_AFTER_S)},
                ) from None  # fmt: skip
            self.stats.timeouts_computing += 1
            raise _RequestError(
                504, [{"msg": f"Scoring did not finish within the request timeout ({self.request_timeout:g} s)."}]
            ) from None
        if isinstance(result, BaseException):
            raise result
        return result

    async def _run_locked(self, job: _Job) -> dict[str, Any]:
        """Batching off: score this request alone in a worker thread, one at a time (the server before batching)."""
        from starlette.concurrency import run_in_threadpool

        def locked() -> Any:
            with self._lock:
                with self._count_lock:
                    self.waiting_on_lock -= 1
                self.in_flight = 1
                try:
                    return self._compute([job])[0]
                finally:
                    self.in_flight = 0

        with self._count_lock:
            self.waiting_on_lock += 1
        result = await run_in_threadpool(locked)
        if isinstance(result, BaseException):
            raise result
        return result

    # ------------------------------------------------------------------ the batcher
    def _start(self) -> None:
        if self._task is not None:
            return
        from torch import get_num_threads, set_num_threads

        threads = get_num_threads()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="seqbert-inference", initializer=set_num_threads,
                                            initargs=(threads,))  # fmt: skip
        self._not_empty, self._full = asyncio.Event(), asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._batches(), name="seqbert-batcher")

    async def _batches(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.queue:
                self._not_empty.clear()
                await self._not_empty.wait()
            if len(self.queue) < self.max_batch_size and self.delay > 0:
                wait = self.queue[0].arrival + self.delay - time.perf_counter()
                if wait > 0:
                    self._full.clear()
                    try:
                        await asyncio.wait_for(self._full.wait(), wait)
                    except asyncio.TimeoutError:
                        pass
                if not self.queue:  # every waiting request timed out meanwhile
                    continue
            jobs = [self.queue.popleft() for _ in range(min(self.max_batch_size, len(self.queue)))]
            for job in jobs:
                job.started = True
            self.in_flight = len(jobs)
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self._compute, jobs)
            except Exception as error:
                logger.exception("Batch of %d failed", len(jobs))
                results = [error] * len(jobs)
            self.stats.add_batch(len(jobs), time.perf_counter() - start)
            self.in_flight = 0
            for job, result in zip(jobs, results):
                if not job.future.done():  # a timed-out request's future is cancelled
                    job.future.set_result(result)

    async def close(self) -> None:
        """Stop the batcher (after uvicorn has drained the connections, i.e. every queued request was answered)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # ------------------------------------------------------------------ scoring (inference thread)
    def _compute(self, jobs: list[_Job]) -> list[Any]:
        """Response bodies (or exceptions) of ``jobs``, scored in one forward pass; if the batch fails, each job
        alone, so that one bad request cannot fail the others."""
        compute = self._recommend if self.kind == "recommender" else self._predict
        try:
            return compute(jobs)
        except Exception as error:  # noqa: BLE001
            if len(jobs) == 1:
                return [self._as_http_error(error)]
        results = []
        for job in jobs:
            try:
                results.extend(compute([job]))
            except Exception as error:  # noqa: BLE001
                results.append(self._as_http_error(error))
        return results

    def _as_http_error(self, error: Exception) -> _RequestError:
        from .inference import InvalidEventsError

        if isinstance(error, InvalidEventsError):
            return _RequestError(422, [{"loc": ["body", "events"], "msg": str(error)}])
        logger.error("Scoring failed: %s: %s", type(error).__name__, error)
        self.stats.errors += 1
        return _RequestError(500, [{"msg": f"Scoring failed ({type(error).__name__}); see the server log."}])

    def _recommend(self, jobs: list[_Job]) -> list[dict[str, Any]]:
        from .inference import EncodedEvents, score_next_items

        recommender = self.engine
        encoded = recommender.encode([job.events for job in jobs])
        scores = score_next_items(recommender.model, encoded.inputs).float().cpu()
        # Rank per (k, exclude_seen) group: Recommender.rank applies one k and one exclude_seen to its rows.
        groups: dict[tuple[int, bool], list[int]] = {}
        for row, job in enumerate(jobs):
            groups.setdefault((job.k, job.exclude_seen), []).append(row)
        results: list[Any] = [None] * len(jobs)
        for (k, exclude_seen), rows in groups.items():
            subset = EncodedEvents(
                {}, False, [encoded.item_token_ids[r] for r in rows], [encoded.unknown_events[r] for r in rows],
                [encoded.last_timestamps[r] for r in rows],
            )  # fmt: skip
            candidates = [jobs[r].candidates for r in rows]
            ranked = recommender.rank(
                scores if len(rows) == len(jobs) else scores[rows], subset, k, exclude_seen=exclude_seen,
                candidates=None if all(c is None for c in candidates) else candidates,
            )  # fmt: skip
            for row, recommendations in zip(rows, ranked):
                results[row] = recommendations.to_dict()
        return results

    def _predict(self, jobs: list[_Job]) -> list[dict[str, Any]]:
        classifier = self.engine
        # A missing query_timestamp means the user's last event (0 without events), as Classifier.predict does.
        queries = [
            job.query_timestamp if job.query_timestamp is not None
            else max((event["timestamp"] for event in job.events), default=0)
            for job in jobs
        ]  # fmt: skip
        encoded = classifier.encode([job.events for job in jobs], queries)
        probabilities = classifier._probabilities(encoded.inputs).cpu().tolist()
        return [
            {  # query_timestamp: the one given, else the last event's (None without events), as Classifier.predict
                "label": classifier.label_name,
                "probability": float(probability),
                "unknown_events": encoded.unknown_events[row],
                "query_timestamp": job.query_timestamp if job.query_timestamp is not None
                else encoded.last_timestamps[row],
            }
            for row, (job, probability) in enumerate(zip(jobs, probabilities))
        ]


# ---------------------------------------------------------------------------------------------------------------
# The application
# ---------------------------------------------------------------------------------------------------------------


def create_app(
    folder: str | Path,
    *,
    max_events: int = DEFAULT_MAX_EVENTS,
    max_k: int = DEFAULT_MAX_K,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    device: str = "cpu",
    batching: bool = True,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    max_batch_delay_ms: float = DEFAULT_MAX_BATCH_DELAY_MS,
    max_queue: int = DEFAULT_MAX_QUEUE,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
    api_key: str | None = None,
):
    """The FastAPI application serving ``folder`` (a masked-behavior or a classifier folder).

    Args:
        batching: micro-batching (default) or, ``False``, one request per forward pass behind a lock (the server
            before micro-batching; no queue bound, no timeout).
        max_batch_size, max_batch_delay_ms, max_queue, request_timeout: the micro-batcher (see the module doc).
        api_key: when given, every endpoint except ``/health`` needs ``Authorization: Bearer <api_key>``.
    """
    _require_fastapi()
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, StrictBool

    from .inference import Classifier, Recommender

    kind = folder_kind(folder)
    engine = (
        Classifier.from_pretrained(str(folder), device=device)
        if kind == "classifier"
        else Recommender.from_pretrained(str(folder), device=device)
    )
    tokenizer = engine.tokenizer
    event_types = list(tokenizer.event_types)
    rules = EventRules.for_folder(folder, event_types)
    service = _Service(
        engine, kind, batching=batching, max_batch_size=max_batch_size, max_batch_delay_ms=max_batch_delay_ms,
        max_queue=max_queue, request_timeout=request_timeout,
    )  # fmt: skip

    class Event(BaseModel):
        model_config = ConfigDict(extra="ignore")
        item_id: str | int = Field(description="External item id (the catalog's own id).")
        event_type: str = Field(description=f"One of {event_types} or an alias of one (case-insensitive).")
        timestamp: int = Field(description="Unix seconds (1990-01-01 to 1 day from now).")

    class RecommendRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        events: list[Event] = Field(max_length=max_events, description="One user's events, any order.")
        k: int = Field(10, ge=1, le=max_k)
        exclude_seen: StrictBool = False
        candidates: list[str | int] | None = Field(None, max_length=max_candidates)

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        events: list[Event] = Field(max_length=max_events, description="One user's events, any order.")
        query_timestamp: int | None = Field(None, description="Prediction time (unix s); default: the last event's.")

    @asynccontextmanager
    async def lifespan(app):
        yield
        await service.close()

    app = FastAPI(title="seqbert", description=f"SeqBERT {kind} served from {Path(folder).name}.", lifespan=lifespan)
    app.state.service = service
    app.add_middleware(_BodyLimit, limit=max_body_bytes)
    app.add_middleware(_Backpressure, service=service)
    if api_key:
        app.add_middleware(_ApiKey, key=api_key)  # outermost: nothing is read before the key is checked

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError):
        errors = error.errors()
        status = 400 if any(e.get("type") == "json_invalid" for e in errors) else 422
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]
        return JSONResponse(status_code=status, content={"detail": detail})

    async def respond(job: _Job) -> JSONResponse:
        try:
            return JSONResponse(await service.submit(job))
        except _RequestError as error:
            return JSONResponse(status_code=error.status, content={"detail": error.detail}, headers=error.headers)

    def new_job(events: list[dict], **options: Any) -> _Job:
        return _Job(events, asyncio.get_running_loop().create_future(), time.perf_counter(), **options)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "kind": kind,
            "model": Path(folder).name,
            "num_items": len(tokenizer.items),
            "event_types": event_types,
            "event_type_names": rules.accepted_names(),
            "max_events": max_events,
            "max_k": max_k,
            "pid": os.getpid(),
            **service.health(),
        }

    @app.post("/recommend")
    async def recommend(body: RecommendRequest):
        if kind != "recommender":
            raise HTTPException(status_code=404, detail=[{"msg": "This server runs a classifier: use POST /predict."}])
        try:
            events = rules.check(body.events)
        except _RequestError as error:
            return JSONResponse(status_code=error.status, content={"detail": error.detail})
        candidates = [str(c) for c in body.candidates] if body.candidates is not None else None
        return await respond(new_job(events, k=body.k, exclude_seen=body.exclude_seen, candidates=candidates))

    @app.post("/predict")
    async def predict(body: PredictRequest):
        if kind != "classifier":
            raise HTTPException(
                status_code=404, detail=[{"msg": "This server runs a recommender: use POST /recommend."}]
            )
        try:
            now = time.time()
            events = rules.check(body.events, now)
            if body.query_timestamp is not None:
                error = rules.timestamp_error(body.query_timestamp, ["body", "query_timestamp"], now)
                if error is not None:
                    raise _RequestError(422, [error])
        except _RequestError as error:
            return JSONResponse(status_code=error.status, content={"detail": error.detail})
        return await respond(new_job(events, query_timestamp=body.query_timestamp))

    return app


# ---------------------------------------------------------------------------------------------------------------
# Running it: one process, or N worker processes on SO_REUSEPORT sockets
# ---------------------------------------------------------------------------------------------------------------


def _uvicorn_server(app, *, host: str, port: int, log_level: str):
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_keep_alive=5))


class _QuietExit:
    """While serving: SIGTERM / SIGINT end uvicorn's graceful shutdown and then a normal return (exit status 0),
    instead of uvicorn re-raising the signal to kill the process once it has drained."""

    def __enter__(self):
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, lambda number, frame: None)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _stop_after(server, seconds: float | None) -> None:
    if seconds is None:
        return

    def stop_later() -> None:
        time.sleep(seconds)
        logger.info("Stopping after %.0f s (--max-lifetime).", seconds)
        server.should_exit = True

    threading.Thread(target=stop_later, daemon=True).start()


def default_threads(workers: int = 1) -> int:
    """torch threads per worker: its share of the cores less the one its event loop needs (at least 1). On the
    shared 2-core machine (other jobs running), 2 torch threads beside the busy event loop took 7 to 10 times the
    CPU time per request of 1 (32 clients, 2026-12-07)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // workers - 1)


def _api_key_from_env(name: str | None) -> str | None:
    if name is None:
        return None
    key = os.environ.get(name, "")
    if not key:
        raise ValueError(f"--api-key-env {name}: the environment variable {name} is not set or empty.")
    return key


def serve(
    folder: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    threads: int | None = None,
    api_key_env: str | None = None,
    max_lifetime_seconds: float | None = None,
    log_level: str = "info",
    **app_options: Any,
) -> None:
    """Run the service with uvicorn until SIGTERM / SIGINT (or for ``max_lifetime_seconds``), then drain and return.

    Args:
        workers: processes serving the same port (Linux: one ``SO_REUSEPORT`` socket each, so the kernel spreads
            connections evenly; elsewhere one shared socket). Each loads the model.
        threads: torch intra-op threads per process (default: :func:`default_threads`; with ``batching=False`` and
            one worker, torch's choice, as before micro-batching).
        api_key_env: name of the environment variable holding the API key (the key itself is never an argument,
            so it appears in no process list or log).
        app_options: :func:`create_app` options.
    """
    _require_fastapi()
    api_key = _api_key_from_env(api_key_env)
    warning = exposure_warning(host, api_key)
    if warning:
        logger.warning(warning)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}.")
    if threads is None and (workers > 1 or app_options.get("batching", True)):
        threads = default_threads(workers)
    if workers > 1:
        return _serve_workers(folder, host, port, workers, threads, api_key_env, max_lifetime_seconds, log_level,
                              app_options)  # fmt: skip
    if threads:
        import torch

        torch.set_num_threads(threads)
    app = create_app(folder, api_key=api_key, **app_options)
    _log_start(folder, host, port, 1, api_key_env, app.state.service)
    server = _uvicorn_server(app, host=host, port=port, log_level=log_level)
    _stop_after(server, max_lifetime_seconds)
    with _QuietExit():
        server.run()
    logger.info("Stopped: every accepted request was answered.")
    return None


def _log_start(folder, host, port, workers, api_key_env, service: _Service) -> None:
    mode = "one request at a time (lock)"
    if service.batching:
        mode = (
            f"micro-batching (max batch {service.max_batch_size}, delay {1000 * service.delay:g} ms, "
            f"queue {service.max_queue}, timeout {service.request_timeout:g} s)"
        )
    auth = f"bearer key from ${api_key_env}" if api_key_env else "none"
    logger.info("Serving %s on http://%s:%d: %s, %d worker(s), auth: %s", folder, host, port, mode, workers, auth)


def _listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on (host, port): one ``SO_REUSEPORT`` socket per worker on Linux (the kernel
    balances connections across them), else a single shared one. Bound here, in the parent, so that a busy port
    fails at once and connections queue while the workers load the model."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    reuse_port = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
    sockets: list[socket.socket] = []
    try:
        for _ in range(count if reuse_port else 1):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]  # port 0: the others join the one the first got
            sock.listen(2048)
            sock.set_inheritable(True)
            sockets.append(sock)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets if reuse_port else sockets * count


def _worker_main(sock, folder, threads, api_key_env, log_level, app_options, ready) -> None:
    """One worker process: load the model, then serve ``sock`` until SIGTERM (graceful, like one process)."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
                        level=log_level.upper())  # fmt: skip
    try:
        if threads:
            import torch

            torch.set_num_threads(threads)
        app = create_app(folder, api_key=_api_key_from_env(api_key_env), **app_options)
    except BaseException:
        logger.exception("Worker %d could not start", os.getpid())
        sys.exit(STARTUP_FAILURE_EXIT_CODE)
    ready.set()
    server = _uvicorn_server(app, host="", port=0, log_level=log_level)
    with _QuietExit():
        server.run(sockets=[sock])


def _serve_workers(folder, host, port, workers, threads, api_key_env, max_lifetime_seconds, log_level, app_options):
    """Pre-bound sockets, ``workers`` spawned processes serving them; SIGTERM / SIGINT (or the lifetime) are passed
    on to every worker as SIGTERM, and a worker that dies after starting is replaced."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # a fresh interpreter each: no forked torch thread pools
    sockets = _listening_sockets(host, port, workers)
    bound = sockets[0].getsockname()[1]
    stop = threading.Event()

    def start(index: int):
        ready = context.Event()
        process = context.Process(
            target=_worker_main, name=f"seqbert-serve-{index}",
            args=(sockets[index], str(folder), threads, api_key_env, log_level, app_options, ready),
        )  # fmt: skip
        process.start()
        return process, ready

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda number, frame: stop.set())
    processes = [start(i) for i in range(workers)]
    logger.info("Serving %s on http://%s:%d with %d worker processes (%s threads each), pids %s", folder, host, bound,
                workers, threads or "torch's", [p.pid for p, _ in processes])  # fmt: skip
    deadline = None if max_lifetime_seconds is None else time.monotonic() + max_lifetime_seconds
    failed = False
    try:
        while not stop.wait(0.2):
            if deadline is not None and time.monotonic() >= deadline:
                logger.info("Stopping after %.0f s (--max-lifetime).", max_lifetime_seconds)
                break
            for index, (process, ready) in enumerate(processes):
                if process.is_alive():
                    continue
                if not ready.is_set():
                    logger.error("Worker %d (pid %s) failed to start (exit code %s): stopping.", index, process.pid,
                                 process.exitcode)  # fmt: skip
                    failed = True
                    stop.set()
                    break
                logger.warning("Worker %d (pid %s) died (exit code %s): starting a new one.", index, process.pid,
                               process.exitcode)  # fmt: skip
                processes[index] = start(index)
    finally:
        # Close this process's copies of the listening sockets first: once each worker closes its own, the port
        # refuses new connections (rather than queueing them on a socket nobody accepts from).
        for sock in set(sockets):
            sock.close()
        for process, _ in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        for process, _ in processes:
            process.join(timeout=60)
            if process.is_alive():
                logger.error("Worker pid %s did not stop within 60 s: killing it.", process.pid)
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed:
        raise ValueError("a worker failed to start; see its log above.")
    logger.info("Stopped %d workers: every accepted request was answered.", workers)


__all__ = [
    "DEFAULT_MAX_BATCH_DELAY_MS",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_MAX_K",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "EventRules",
    "create_app",
    "default_threads",
    "exposure_warning",
    "folder_kind",
    "is_loopback",
    "serve",
]
