"""``serve``: run the service in this process, or in worker processes, until SIGTERM / SIGINT."""

import logging
from pathlib import Path
from typing import Any

from . import process
from .app import _require_fastapi, create_app
from .batching import _Service
from .process import _QuietExit, _stop_after, _uvicorn_server, default_threads
from .security import _api_key_from_env, exposure_warning
from .workers import _serve_workers

logger = logging.getLogger("seqbert.serve")  # the log name of the server since it was one module


def serve(
    folder: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    threads: int | None = None,
    api_key_env: str | None = None,
    max_lifetime_seconds: float | None = None,
    log_level: str = "info",
    **app_options: Any,
) -> None:
    """Run the service with uvicorn until SIGTERM / SIGINT (or for ``max_lifetime_seconds``), then drain and return.

    Args:
        workers: processes serving the same port (Linux: one ``SO_REUSEPORT`` socket each, so the kernel spreads
            connections evenly; elsewhere one shared socket). Each loads the model.
        threads: torch intra-op threads per process (default: :func:`default_threads`; with ``batching=False`` and
            one worker, torch's choice, as before micro-batching).
        api_key_env: name of the environment variable holding the API key (the key itself is never an argument,
            so it appears in no process list or log).
        app_options: :func:`create_app` options.
    """
    _require_fastapi()
    api_key = _api_key_from_env(api_key_env)
    warning = exposure_warning(host, api_key)
    if warning:
        logger.warning(warning)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}.")
    if threads is None and (workers > 1 or app_options.get("batching", True)):
        threads = default_threads(workers)
    if workers > 1:
        return _serve_workers(folder, host, port, workers, threads, api_key_env, max_lifetime_seconds, log_level,
                              app_options)  # fmt: skip
    if threads:
        import torch

        torch.set_num_threads(threads)
    app = create_app(folder, api_key=api_key, **app_options)
    process.freeze_startup_objects()
    _log_start(folder, host, port, 1, api_key_env, app.state.service)
    server = _uvicorn_server(app, host=host, port=port, log_level=log_level)
    _stop_after(server, max_lifetime_seconds)
    with _QuietExit():
        server.run()
    logger.info("Stopped: every accepted request was answered.")
    return None


def _log_start(folder, host, port, workers, api_key_env, service: _Service) -> None:
    mode = "one request at a time (lock)"
    if service.batching:
        mode = (
            f"micro-batching (max batch {service.max_batch_size}, delay {1000 * service.delay:g} ms, "
            f"queue {service.max_queue}, expected wait {1000 * service.max_queue_wait:g} ms, "
            f"timeout {service.request_timeout:g} s)"
        )
    auth = f"bearer key from ${api_key_env}" if api_key_env else "none"
    logger.info("Serving %s on http://%s:%d: %s, %d worker(s), auth: %s", folder, host, port, mode, workers, auth)


__all__ = ["serve"]
