"""Default limits and micro-batching knobs of ``seqbert serve`` (the CLI's defaults too)."""

DEFAULT_MAX_EVENTS = 1_000
DEFAULT_MAX_K = 1_000
DEFAULT_MAX_CANDIDATES = 10_000
DEFAULT_MAX_BODY_BYTES = 1_000_000
DEFAULT_MAX_BATCH_SIZE = 16
"""Most requests scored in one forward pass. On CPU a forward pass costs about its batch size, so larger batches
add little throughput and lengthen every request's wait: 32 gave 15-19 % more requests/s at 128 clients than 16 but
missed p99 <= 250 ms under 3x overload (289-302 ms against 219 ms; bench_serve.py, 2 workers, 2026-12-07). On a GPU,
raise it."""
DEFAULT_MAX_BATCH_DELAY_MS = 0.0
"""How long a batch may wait to fill after its oldest request arrived. 0: take what is queued whenever the
inference thread is free (on CPU the cost of a forward pass grows with the batch, so waiting gains little;
under load, batches fill while the previous one computes)."""
DEFAULT_MAX_QUEUE = 128
"""Most requests waiting for the inference thread; beyond it, 503 at once."""
DEFAULT_MAX_QUEUE_WAIT_MS = 100.0
"""Longest expected wait for the inference thread a new request is admitted with; beyond it, 503 at once (0: no
bound but ``max_queue``). It keeps the latency of the requests admitted past capacity near this plus one batch."""
DEFAULT_REQUEST_TIMEOUT_S = 10.0


__all__ = [
    "DEFAULT_MAX_BATCH_DELAY_MS",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CANDIDATES",
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_MAX_K",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_QUEUE_WAIT_MS",
    "DEFAULT_REQUEST_TIMEOUT_S",
]
