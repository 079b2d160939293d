"""The FastAPI application: request models, endpoints, error handlers and middlewares around a
:class:`~seqbert.serving.batching._Service`."""

# No `from __future__ import annotations`: FastAPI must see the request models of `create_app` as classes.

import asyncio
import gc
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

from .batching import _Job, _Service
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
from .errors import _RequestError
from .middleware import _ApiKey, _Backpressure, _BodyLimit
from .rules import EventRules


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
    max_queue_wait_ms: float = DEFAULT_MAX_QUEUE_WAIT_MS,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
    api_key: str | None = None,
):
    """The FastAPI application serving ``folder`` (a masked-behavior or a classifier folder).

    Args:
        batching: micro-batching (default) or, ``False``, one request per forward pass behind a lock (the server
            before micro-batching; no queue bound, no timeout).
        max_batch_size, max_batch_delay_ms, max_queue, max_queue_wait_ms, request_timeout: the micro-batcher (see
            :mod:`seqbert.serving`).
        api_key: when given, every endpoint except ``/health`` needs ``Authorization: Bearer <api_key>``.
    """
    _require_fastapi()
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, StrictBool

    from ..inference import Classifier, Recommender

    kind = folder_kind(folder)
    engine = (
        Classifier.from_pretrained(str(folder), device=device)
        if kind == "classifier"
        else Recommender.from_pretrained(str(folder), device=device)
    )
    tokenizer = engine.tokenizer
    event_types = list(tokenizer.event_types)
    can_explain = importlib.util.find_spec("captum") is not None
    rules = EventRules.for_folder(folder, event_types)
    service = _Service(
        engine, kind, batching=batching, max_batch_size=max_batch_size, max_batch_delay_ms=max_batch_delay_ms,
        max_queue=max_queue, max_queue_wait_ms=max_queue_wait_ms, request_timeout=request_timeout,
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
        explain: StrictBool = Field(False, description="Add the top-1 item's per-event attributions (`explanation`).")
        explain_item: str | int | None = Field(
            None, description="Explain this catalog item's score instead of the top-1 item's (implies `explain`)."
        )

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        events: list[Event] = Field(max_length=max_events, description="One user's events, any order.")
        query_timestamp: int | None = Field(None, description="Prediction time (unix s); default: the last event's.")
        explain: StrictBool = Field(False, description="Add the probability's per-event attributions (`explanation`).")

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

    def explain_unavailable() -> JSONResponse:
        detail = [{"msg": "This server cannot explain: install the explain extra (pip install 'seqbert[explain]', "
                   "Captum) and restart it."}]  # fmt: skip
        return JSONResponse(status_code=501, content={"detail": detail})

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
            "explain": can_explain,
            "pid": os.getpid(),
            "gc_frozen_objects": gc.get_freeze_count(),  # the start-up objects `seqbert serve` keeps out of GC
            **service.health(),
        }

    @app.post("/recommend")
    async def recommend(body: RecommendRequest):
        if kind != "recommender":
            raise HTTPException(status_code=404, detail=[{"msg": "This server runs a classifier: use POST /predict."}])
        explain_item = None if body.explain_item is None else str(body.explain_item)
        explain = body.explain or explain_item is not None
        if explain and not can_explain:
            return explain_unavailable()
        try:
            events = rules.check(body.events)
            if explain_item is not None and tokenizer.item_token_ids([explain_item])[0] < tokenizer.num_special_tokens:
                raise _RequestError(422, [{"loc": ["body", "explain_item"], "type": "unknown_item",
                                           "msg": f"explain_item {explain_item!r} is not in the model's catalog."}])  # fmt: skip
        except _RequestError as error:
            return JSONResponse(status_code=error.status, content={"detail": error.detail})
        candidates = [str(c) for c in body.candidates] if body.candidates is not None else None
        return await respond(new_job(events, k=body.k, exclude_seen=body.exclude_seen, candidates=candidates,
                                     explain=explain, explain_item=explain_item))  # fmt: skip

    @app.post("/predict")
    async def predict(body: PredictRequest):
        if kind != "classifier":
            raise HTTPException(
                status_code=404, detail=[{"msg": "This server runs a recommender: use POST /recommend."}]
            )
        if body.explain and not can_explain:
            return explain_unavailable()
        try:
            now = time.time()
            events = rules.check(body.events, now)
            if body.query_timestamp is not None:
                error = rules.timestamp_error(body.query_timestamp, ["body", "query_timestamp"], now)
                if error is not None:
                    raise _RequestError(422, [error])
        except _RequestError as error:
            return JSONResponse(status_code=error.status, content={"detail": error.detail})
        return await respond(new_job(events, query_timestamp=body.query_timestamp, explain=body.explain))

    return app


__all__ = ["create_app", "folder_kind"]
