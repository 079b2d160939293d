"""Error answers shared by the middlewares, the event rules and the micro-batcher."""

RETRY_AFTER_S = 1


_QUEUE_FULL = {"msg": "The server is at capacity (request queue full); retry after the Retry-After seconds."}


def _expected_wait_too_long(wait: float, limit: float) -> dict:
    return {"msg": f"The server is at capacity (expected wait {1000 * wait:.0f} ms, over --max-queue-wait-ms "
                   f"{1000 * limit:g}); retry after the Retry-After seconds."}  # fmt: skip


class _RequestError(Exception):
    def __init__(self, status: int, detail: list[dict], headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status, self.detail, self.headers = status, detail, headers
