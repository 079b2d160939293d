"""How requests reach the model: dynamic micro-batching from a bounded queue with timeouts (or one request at a time
behind a lock), explanations as their own jobs in the inference thread, and the counters of ``/health``."""

import asyncio
import collections
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .errors import _QUEUE_FULL, RETRY_AFTER_S, _expected_wait_too_long, _RequestError

logger = logging.getLogger("seqbert.serve")  # the log name of the server since it was one module

BATCH_SIZE_BINS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""Upper edges of the batch-size histogram of ``/health``."""
EWMA_WEIGHT = 0.2
"""Weight of the newest batch (explanation) in the running mean of their durations that the expected wait uses."""


def _running_mean(mean: float | None, value: float) -> float:
    return value if mean is None else (1 - EWMA_WEIGHT) * mean + EWMA_WEIGHT * value


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
    explain: bool = False
    explain_item: str | None = None
    started: bool = False
    scored: dict | None = None  # the response body, while its explanation waits


@dataclass
class _Stats:
    """Counters of ``/health`` (event-loop thread only, so no locking)."""

    requests: int = 0  # valid scoring requests, refused ones included
    rejected_queue_full: int = 0
    rejected_expected_wait: int = 0
    timeouts_queued: int = 0
    timeouts_computing: int = 0
    errors: int = 0
    batches: int = 0
    batched_requests: int = 0
    largest_batch: int = 0
    batch_seconds: float = 0.0
    explanations: int = 0
    explain_seconds: float = 0.0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(BATCH_SIZE_BINS) + 1))

    def add_batch(self, size: int, seconds: float) -> None:
        self.batches += 1
        self.batched_requests += size
        self.largest_batch = max(self.largest_batch, size)
        self.batch_seconds += seconds
        self.histogram[next((i for i, edge in enumerate(BATCH_SIZE_BINS) if size <= edge), len(BATCH_SIZE_BINS))] += 1

    def add_explanation(self, seconds: float) -> None:
        self.explanations += 1
        self.explain_seconds += seconds

    def to_dict(self) -> dict[str, Any]:
        labels = [f"<={edge}" for edge in BATCH_SIZE_BINS] + [f">{BATCH_SIZE_BINS[-1]}"]
        return {
            "requests": self.requests,
            "rejected_503_queue_full": self.rejected_queue_full,
            "rejected_503_expected_wait": self.rejected_expected_wait,
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
            "explanations": {
                "count": self.explanations,
                "mean_ms": 1000 * self.explain_seconds / self.explanations if self.explanations else 0.0,
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
        max_queue_wait_ms: float = 0.0,
    ):
        if min(max_batch_size, max_queue) < 1 or min(max_batch_delay_ms, max_queue_wait_ms) < 0 or request_timeout <= 0:
            raise ValueError(
                f"max_batch_size ({max_batch_size}) and max_queue ({max_queue}) must be >= 1, max_batch_delay_ms "
                f"({max_batch_delay_ms}) and max_queue_wait_ms ({max_queue_wait_ms}) >= 0 and request_timeout "
                f"({request_timeout}) > 0."
            )
        self.engine, self.kind, self.batching = engine, kind, batching
        self.max_batch_size, self.max_queue = int(max_batch_size), int(max_queue)
        self.delay = float(max_batch_delay_ms) / 1000
        self.max_queue_wait = float(max_queue_wait_ms) / 1000  # 0: no bound on the expected wait
        self.request_timeout = float(request_timeout)
        self.batch_seconds: float | None = None  # running means of recent durations (EWMA_WEIGHT)
        self.explain_seconds: float | None = None
        self.running_since: float | None = None  # start of the batch or explanation in the inference thread
        self.running_explanation = False
        self.stats = _Stats()
        self.queue: collections.deque[_Job] = collections.deque()
        self.explaining: collections.deque[_Job] = collections.deque()  # scored, waiting for their explanation
        self.in_flight = 0
        self.waiting_on_lock = 0
        self._lock = threading.Lock()  # batching off: one forward pass at a time
        self._count_lock = threading.Lock()  # batching off: waiting_on_lock changes in several threads
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task | None = None
        self._not_empty: asyncio.Event | None = None
        self._full: asyncio.Event | None = None

    # ------------------------------------------------------------------ state
    def refusal(self) -> _RequestError | None:
        """The 503 for a new scoring request arriving now, counted, or ``None`` to admit it: refused when
        ``max_queue`` requests wait already, or when it is expected to wait more than ``max_queue_wait_ms`` before
        its forward pass starts (see :meth:`expected_wait`)."""
        if not self.batching:
            return None
        if self.waiting() >= self.max_queue:
            self.stats.rejected_queue_full += 1
            return _RequestError(503, [_QUEUE_FULL], {"Retry-After": str(RETRY_AFTER_S)})
        if self.max_queue_wait > 0:
            wait = self.expected_wait()
            if wait > self.max_queue_wait:
                self.stats.rejected_expected_wait += 1
                detail = _expected_wait_too_long(wait, self.max_queue_wait)
                return _RequestError(503, [detail], {"Retry-After": str(RETRY_AFTER_S)})
        return None

    def expected_wait(self) -> float:
        """Seconds a request arriving now would wait before its forward pass starts: the rest of the batch (or
        explanation) being computed, then the full batches queued ahead of it and the explanations waiting, each at
        the running mean of recent durations. 0 before the first batch."""
        if self.batch_seconds is None:
            return 0.0
        explain = self.explain_seconds or 0.0
        wait = (len(self.queue) // self.max_batch_size) * self.batch_seconds + len(self.explaining) * explain
        if self.running_since is not None:
            expected = explain if self.running_explanation else self.batch_seconds
            wait += max(0.0, expected - (time.perf_counter() - self.running_since))
        return wait

    def waiting(self) -> int:
        """Requests waiting for the inference thread: to be scored, or scored and waiting for their explanation."""
        return len(self.queue) + len(self.explaining)

    def health(self) -> dict[str, Any]:
        return {
            "batching": {
                "mode": "batched" if self.batching else "lock",
                "max_batch_size": self.max_batch_size if self.batching else 1,
                "max_batch_delay_ms": 1000 * self.delay if self.batching else 0.0,
                "max_queue": self.max_queue if self.batching else None,
                "max_queue_wait_ms": 1000 * self.max_queue_wait if self.batching else None,
                "request_timeout_s": self.request_timeout if self.batching else None,
            },
            "queue_depth": self.waiting() if self.batching else self.waiting_on_lock,
            "expected_wait_ms": round(1000 * self.expected_wait(), 3) if self.batching else None,
            "explanations_waiting": len(self.explaining),
            "in_flight": self.in_flight,
            **self.stats.to_dict(),
        }

    # ------------------------------------------------------------------ entry point
    async def submit(self, job: _Job) -> dict[str, Any]:
        """The response body of one request (raises :class:`_RequestError` for 422 / 503 / 504)."""
        self.stats.requests += 1
        if not self.batching:
            return await self._run_locked(job)
        refused = self.refusal()
        if refused is not None:
            raise refused
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
            if job in self.explaining:  # scored, its explanation not started: it never will be
                self.explaining.remove(job)
            self.stats.timeouts_computing += 1
            what = "Scoring and its explanation" if job.explain else "Scoring"
            raise _RequestError(
                504, [{"msg": f"{what} did not finish within the request timeout ({self.request_timeout:g} s)."}]
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
                    result = self._compute([job])[0]
                    if job.explain and isinstance(result, dict):
                        result = self._explained(job, result)
                    return result
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
        explain_next = False
        while True:
            while not self.queue and not self.explaining:
                self._not_empty.clear()
                await self._not_empty.wait()
            # Batches and explanations take turns, so that neither kind of request waits behind many of the other.
            if self.explaining and (explain_next or not self.queue):
                explain_next = False
                await self._explain_next(loop)
                continue
            explain_next = True
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
            start = self.running_since = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self._compute, jobs)
            except Exception as error:
                logger.exception("Batch of %d failed", len(jobs))
                results = [error] * len(jobs)
            seconds = time.perf_counter() - start
            self.stats.add_batch(len(jobs), seconds)
            self.batch_seconds = _running_mean(self.batch_seconds, seconds)
            self.in_flight, self.running_since = 0, None
            for job, result in zip(jobs, results):
                if job.future.done():  # a timed-out request's future is cancelled
                    continue
                if job.explain and isinstance(result, dict):
                    job.scored = result  # answered once explained, by _explain_next
                    self.explaining.append(job)
                else:
                    job.future.set_result(result)

    async def _explain_next(self, loop: asyncio.AbstractEventLoop) -> None:
        """Explain the oldest scored request that wants it, in the inference thread (outside any batch: it needs
        gradients), and answer it."""
        job = self.explaining.popleft()
        if job.future.done():  # timed out meanwhile
            return
        self.in_flight, self.running_explanation = 1, True
        start = self.running_since = time.perf_counter()
        try:
            result = await loop.run_in_executor(self._executor, self._explained, job, job.scored)
        except Exception as error:
            logger.exception("Explanation failed")
            result = error
        seconds = time.perf_counter() - start
        self.stats.add_explanation(seconds)
        self.explain_seconds = _running_mean(self.explain_seconds, seconds)
        self.in_flight, self.running_since, self.running_explanation = 0, None, False
        if not job.future.done():
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

    def _explained(self, job: _Job, scored: dict[str, Any]) -> Any:
        """``scored`` (the request's response body) with its ``"explanation"``, or the error to answer instead."""
        try:
            if self.kind == "classifier":
                explanation = self.engine.explain(job.events, query_timestamp=job.query_timestamp)
            else:
                item = job.explain_item
                if item is None and scored["items"]:
                    item = scored["items"][0]["item_id"]
                explanation = None if item is None else self.engine.explain(job.events, item)
        except Exception as error:  # noqa: BLE001
            return self._as_http_error(error)
        return {**scored, "explanation": None if explanation is None else explanation.to_dict()}

    def _as_http_error(self, error: Exception) -> _RequestError:
        from ..inference import InvalidEventsError

        if isinstance(error, InvalidEventsError):
            return _RequestError(422, [{"loc": ["body", "events"], "msg": str(error)}])
        logger.error("Scoring failed: %s: %s", type(error).__name__, error)
        self.stats.errors += 1
        return _RequestError(500, [{"msg": f"Scoring failed ({type(error).__name__}); see the server log."}])

    def _recommend(self, jobs: list[_Job]) -> list[dict[str, Any]]:
        from ..inference import EncodedEvents, score_next_items

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
