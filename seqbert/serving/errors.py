"""Error answers shared by the middlewares, the event rules and the micro-batcher."""

RETRY_AFTER_S = 1


_QUEUE_FULL = {"msg": "The server is at capacity (request queue full); retry after the Retry-After seconds."}


class _RequestError(Exception):
    def __init__(self, status: int, detail: list[dict], headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status, self.detail, self.headers = status, detail, headers
