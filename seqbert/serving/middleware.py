"""ASGI middlewares of the application: body size limit (413), API key (401) and backpressure (503 while the queue
is full), each answering before the request body is parsed."""

import hmac
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .batching import _Service

BATCHED_PATHS = ("/recommend", "/predict")


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
    """ASGI middleware: 503 + ``Retry-After`` for a scoring request the service refuses (queue full, or its expected
    wait too long), before its body is parsed (so that refusing stays cheap however many clients push)."""

    def __init__(self, app, service: "_Service"):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("path") in BATCHED_PATHS:
            refused = self.service.refusal()
            if refused is not None:
                self.service.stats.requests += 1
                headers = [(name.lower().encode(), value.encode()) for name, value in refused.headers.items()]
                start, body = _json_response(refused.status, refused.detail, headers)
                await send(start)
                await send(body)
                return None
        return await self.app(scope, receive, send)
