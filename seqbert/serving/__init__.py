"""An HTTP service for a saved model folder (FastAPI + uvicorn; ``pip install 'seqbert[serve]'``).

Endpoints:

- ``GET /health`` → ``{"status": "ok", "kind": "recommender" | "classifier", "num_items": ..., "queue_depth": ...,
  "batches": {...}, ...}`` (never needs the API key, never queued);
- ``POST /recommend`` (masked-behavior folders) with ``{"events": [...], "k": 10, "exclude_seen": false,
  "candidates": null}`` → ``{"items": [{"item_id", "score"}...], "unknown_events": n, "unknown_candidates": [...]}``;
- ``POST /predict`` (classifier folders) with ``{"events": [...], "query_timestamp": null}`` →
  ``{"label": "purchase", "probability": p, "unknown_events": n, "query_timestamp": t}``.

Explanations (``pip install 'seqbert[explain]'``): ``"explain": true`` adds ``"explanation"``, the
:meth:`seqbert.explain.Explanation.to_dict` of :meth:`~seqbert.inference.Classifier.explain` (the probability, at the
request's ``query_timestamp``) or of :meth:`~seqbert.inference.Recommender.explain` (the top-1 item of the answer;
``null`` when the answer has no item). ``"explain_item": "<item id>"`` explains that catalog item's score instead
(any item, recommended or not; it implies ``explain``). One item only: explaining each of the k items would cost k
explanations. The scores and items are those of the same request without ``explain``: the request is scored in its
micro-batch as any other, then explained on its own in the inference thread (attributions need gradients), within
the same ``request_timeout``; while waiting for its explanation it counts in the queue bound.

Each event is ``{"item_id": str, "event_type": str, "timestamp": int unix seconds}``, checked with the rules of
``seqbert prepare`` (:func:`seqbert.data.canonical.timestamp_problem`, the event-type aliases recorded with the
model: :func:`seqbert.data.canonical.recorded_event_aliases`).

How requests are computed (``batching``):

- ``True`` (default): *dynamic micro-batching*. Requests wait in a bounded queue (``max_queue`` requests, and
  ``max_queue_wait_ms`` of expected wait: the batches ahead at the running mean of their durations); one inference
  thread takes up to ``max_batch_size`` of them at a time (waiting at most ``max_batch_delay_ms`` after the oldest
  arrived for the batch to fill) and scores them in one forward pass, through the batch path of
  :class:`~seqbert.inference.Recommender` / :class:`~seqbert.inference.Classifier`. Each response is what a
  single-request call returns (tested). The HTTP event loop keeps parsing and answering meanwhile.
- ``False``: the server before micro-batching, kept for comparison: each request is scored alone, one forward
  pass at a time behind a lock, with no bound on waiting requests and no timeout.

Errors are JSON with a ``detail`` list: 400 malformed JSON, 401 missing or wrong API key, 404 the endpoint of
the other model kind, 413 body over ``max_body_bytes``, 422 what pydantic, the event rules or the tokenizer
reject (missing fields, wrong types, unknown event types, bad timestamps, more than ``max_events`` events,
``k`` above ``max_k``, an ``explain_item`` not in the catalog...), 501 for ``explain`` without Captum installed, 503
with ``Retry-After`` when the queue is full, its expected wait too long, or a request waited ``request_timeout``
seconds without being started, 504 when its forward pass (and explanation) outlasted ``request_timeout``.

Modules: :mod:`~seqbert.serving.app` (the FastAPI application and its request models),
:mod:`~seqbert.serving.middleware` (body limit, API key, backpressure), :mod:`~seqbert.serving.rules` (the event
rules), :mod:`~seqbert.serving.batching` (the micro-batcher, its jobs and counters), :mod:`~seqbert.serving.errors`,
:mod:`~seqbert.serving.defaults`, :mod:`~seqbert.serving.security` (loopback, exposure warning, the key's variable),
:mod:`~seqbert.serving.process` (one uvicorn process), :mod:`~seqbert.serving.workers` (several processes) and
:mod:`~seqbert.serving.launch` (:func:`serve`). ``seqbert.serve`` re-exports the public names. Importing any of them
needs the standard library only: FastAPI, uvicorn and torch are imported when a server is built.
"""

from .app import create_app, folder_kind
from .defaults import (
    DEFAULT_MAX_BATCH_DELAY_MS,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CANDIDATES,
    DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_K,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_QUEUE_WAIT_MS,
    DEFAULT_REQUEST_TIMEOUT_S,
)
from .launch import serve
from .process import default_threads
from .rules import EventRules
from .security import exposure_warning, is_loopback

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
    "EventRules",
    "create_app",
    "default_threads",
    "exposure_warning",
    "folder_kind",
    "is_loopback",
    "serve",
]
