"""One serving process: its uvicorn server, its signal handling (SIGTERM / SIGINT drain, then exit 0), its lifetime
limit and its torch threads."""

import gc
import logging
import os
import signal
import threading
import time

logger = logging.getLogger("seqbert.serve")  # the log name of the server since it was one module


def _uvicorn_server(app, *, host: str, port: int, log_level: str):
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_keep_alive=5))


class _QuietExit:
    """While serving: SIGTERM / SIGINT end uvicorn's graceful shutdown and then a normal return (exit status 0),
    instead of uvicorn re-raising the signal to kill the process once it has drained."""

    def __enter__(self):
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, lambda number, frame: None)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _stop_after(server, seconds: float | None) -> None:
    if seconds is None:
        return

    def stop_later() -> None:
        time.sleep(seconds)
        logger.info("Stopping after %.0f s (--max-lifetime).", seconds)
        server.should_exit = True

    threading.Thread(target=stop_later, daemon=True).start()


def freeze_startup_objects() -> None:
    """Exempt every object alive once the model is loaded (the model, tokenizer, vocabulary, libraries: about 450k
    objects for a 12k-item model) from garbage collection. A full collection walks all of them: 150-280 ms on the
    2-core machine, a pause that every request in flight waits through, and under load one came every few seconds.
    Objects that requests create are still collected as usual."""
    gc.collect()
    gc.freeze()


def default_threads(workers: int = 1) -> int:
    """torch threads per worker: its share of the cores less the one its event loop needs (at least 1). On the
    shared 2-core machine (other jobs running), 2 torch threads beside the busy event loop took 7 to 10 times the
    CPU time per request of 1 (32 clients, 2026-12-07)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // workers - 1)


__all__ = ["default_threads", "freeze_startup_objects"]
