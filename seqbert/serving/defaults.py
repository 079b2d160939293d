"""Default limits and micro-batching knobs of ``seqbert serve`` (the CLI's defaults too)."""

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


__all__ = [
    "DEFAULT_MAX_BATCH_DELAY_MS",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CANDIDATES",
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_MAX_K",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_REQUEST_TIMEOUT_S",
]
