"""``seqbert serve``'s public import path: the HTTP service lives in the :mod:`seqbert.serving` package (one module
per part: app, middlewares, event rules, micro-batching, processes); this module re-exports its public names.
Standard library only at import, like the package (``seqbert.cli`` imports it to build its parser)."""

from .serving import (
    DEFAULT_MAX_BATCH_DELAY_MS,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CANDIDATES,
    DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_K,
    DEFAULT_MAX_QUEUE,
    DEFAULT_REQUEST_TIMEOUT_S,
    EventRules,
    create_app,
    default_threads,
    exposure_warning,
    folder_kind,
    is_loopback,
    serve,
)

__all__ = [
    "DEFAULT_MAX_BATCH_DELAY_MS",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CANDIDATES",
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
