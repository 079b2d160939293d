"""An HTTP service for a saved model folder (FastAPI + uvicorn; ``pip install 'seqbert[serve]'``).

Endpoints:

- ``GET /health`` → ``{"status": "ok", "kind": "recommender" | "classifier", "num_items": ..., ...}``
- ``POST /recommend`` (masked-behavior folders) with ``{"events": [...], "k": 10, "exclude_seen": false,
  "candidates": null}`` → ``{"items": [{"item_id", "score"}...], "unknown_events": n, "unknown_candidates": [...]}``
- ``POST /predict`` (classifier folders) with ``{"events": [...], "query_timestamp": null}`` →
  ``{"label": "purchase", "probability": p, "unknown_events": n, "query_timestamp": t}``

Each event is ``{"item_id": str, "event_type": str, "timestamp": int unix seconds}``. Errors are JSON with
a ``detail`` list: 400 malformed JSON, 413 body over ``max_body_bytes``, 404 for the endpoint of the other
model kind, 422 for everything pydantic or the tokenizer rejects (missing fields, wrong types, unknown
event types, more than ``max_events`` events, ``k`` above ``max_k``...).
"""

# No `from __future__ import annotations`: FastAPI must see the request models of `create_app` as classes.

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_MAX_EVENTS = 1_000
DEFAULT_MAX_K = 1_000
DEFAULT_MAX_CANDIDATES = 10_000
DEFAULT_MAX_BODY_BYTES = 1_000_000


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
        body = json.dumps({"detail": [{"msg": f"Request body is larger than {self.limit} bytes."}]}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def create_app(
    folder: str | Path,
    *,
    max_events: int = DEFAULT_MAX_EVENTS,
    max_k: int = DEFAULT_MAX_K,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    device: str = "cpu",
):
    """The FastAPI application serving ``folder`` (a masked-behavior or a classifier folder)."""
    _require_fastapi()
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, StrictBool

    from .inference import Classifier, InvalidEventsError, Recommender

    kind = folder_kind(folder)
    engine = (
        Classifier.from_pretrained(str(folder), device=device)
        if kind == "classifier"
        else Recommender.from_pretrained(str(folder), device=device)
    )
    tokenizer = engine.tokenizer
    event_types = list(tokenizer.event_types)
    lock = threading.Lock()  # one forward pass at a time: torch already uses every core for each

    class Event(BaseModel):
        model_config = ConfigDict(extra="ignore")
        item_id: str | int = Field(description="External item id (the catalog's own id).")
        event_type: str = Field(description=f"One of {event_types}.")
        timestamp: int = Field(description="Unix seconds.")

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

    app = FastAPI(title="seqbert", description=f"SeqBERT {kind} served from {Path(folder).name}.")
    app.add_middleware(_BodyLimit, limit=max_body_bytes)

    def _check_event_types(events: list[Event]) -> None:
        unknown = sorted({event.event_type for event in events} - set(event_types))
        if unknown:
            raise HTTPException(
                status_code=422,
                detail=[
                    {
                        "loc": ["body", "events"],
                        "msg": f"Unknown event types {unknown[:10]}; this model knows {event_types}.",
                    }
                ],
            )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError):
        errors = error.errors()
        status = 400 if any(e.get("type") == "json_invalid" for e in errors) else 422
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]
        return JSONResponse(status_code=status, content={"detail": detail})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "kind": kind,
            "model": Path(folder).name,
            "num_items": len(tokenizer.items),
            "event_types": event_types,
            "max_events": max_events,
            "max_k": max_k,
        }

    @app.post("/recommend")
    def recommend(body: RecommendRequest) -> dict[str, Any]:
        if kind != "recommender":
            raise HTTPException(status_code=404, detail=[{"msg": "This server runs a classifier: use POST /predict."}])
        _check_event_types(body.events)
        events = [event.model_dump() for event in body.events]
        candidates = [str(c) for c in body.candidates] if body.candidates is not None else None
        try:
            with lock:
                result = engine.recommend(events, k=body.k, exclude_seen=body.exclude_seen, candidates=candidates)
        except InvalidEventsError as error:
            raise HTTPException(status_code=422, detail=[{"loc": ["body", "events"], "msg": str(error)}]) from None
        return result.to_dict()

    @app.post("/predict")
    def predict(body: PredictRequest) -> dict[str, Any]:
        if kind != "classifier":
            raise HTTPException(
                status_code=404, detail=[{"msg": "This server runs a recommender: use POST /recommend."}]
            )
        _check_event_types(body.events)
        events = [event.model_dump() for event in body.events]
        try:
            with lock:
                prediction = engine.predict(events, query_timestamp=body.query_timestamp)
        except InvalidEventsError as error:
            raise HTTPException(status_code=422, detail=[{"loc": ["body", "events"], "msg": str(error)}]) from None
        return {
            "label": engine.label_name,
            "probability": prediction.probability,
            "unknown_events": prediction.unknown_events,
            "query_timestamp": prediction.query_timestamp,
        }

    return app


def serve(
    folder: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_lifetime_seconds: float | None = None,
    log_level: str = "info",
    **app_options: Any,
) -> None:
    """Run the service with uvicorn until interrupted (or for ``max_lifetime_seconds``, then exit cleanly)."""
    _require_fastapi()
    import uvicorn

    app = create_app(folder, **app_options)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_keep_alive=5))
    if max_lifetime_seconds is not None:

        def _stop_later() -> None:
            time.sleep(max_lifetime_seconds)
            logger.info("Stopping after %.0f s (--max-lifetime).", max_lifetime_seconds)
            server.should_exit = True

        threading.Thread(target=_stop_later, daemon=True).start()
    server.run()


__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_EVENTS", "DEFAULT_MAX_K", "create_app", "folder_kind", "serve"]
