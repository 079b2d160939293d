"""Several worker processes on one port: sockets bound by the parent (``SO_REUSEPORT`` on Linux), spawned workers,
signals passed on, a worker that dies replaced."""

import logging
import os
import signal
import socket
import sys
import threading
import time

from . import process
from .app import create_app
from .process import _QuietExit, _uvicorn_server
from .security import _api_key_from_env

logger = logging.getLogger("seqbert.serve")  # the log name of the server since it was one module

STARTUP_FAILURE_EXIT_CODE = 3


def _listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on (host, port): one ``SO_REUSEPORT`` socket per worker on Linux (the kernel
    balances connections across them), else a single shared one. Bound here, in the parent, so that a busy port
    fails at once and connections queue while the workers load the model."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    reuse_port = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
    sockets: list[socket.socket] = []
    try:
        for _ in range(count if reuse_port else 1):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]  # port 0: the others join the one the first got
            sock.listen(2048)
            sock.set_inheritable(True)
            sockets.append(sock)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets if reuse_port else sockets * count


def _worker_main(sock, folder, threads, api_key_env, log_level, app_options, ready) -> None:
    """One worker process: load the model, then serve ``sock`` until SIGTERM (graceful, like one process)."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
                        level=log_level.upper())  # fmt: skip
    try:
        if threads:
            import torch

            torch.set_num_threads(threads)
        app = create_app(folder, api_key=_api_key_from_env(api_key_env), **app_options)
        process.freeze_startup_objects()
    except BaseException:
        logger.exception("Worker %d could not start", os.getpid())
        sys.exit(STARTUP_FAILURE_EXIT_CODE)
    ready.set()
    server = _uvicorn_server(app, host="", port=0, log_level=log_level)
    with _QuietExit():
        server.run(sockets=[sock])


def _serve_workers(folder, host, port, workers, threads, api_key_env, max_lifetime_seconds, log_level, app_options):
    """Pre-bound sockets, ``workers`` spawned processes serving them; SIGTERM / SIGINT (or the lifetime) are passed
    on to every worker as SIGTERM, and a worker that dies after starting is replaced."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # a fresh interpreter each: no forked torch thread pools
    sockets = _listening_sockets(host, port, workers)
    bound = sockets[0].getsockname()[1]
    stop = threading.Event()

    def start(index: int):
        ready = context.Event()
        process = context.Process(
            target=_worker_main, name=f"seqbert-serve-{index}",
            args=(sockets[index], str(folder), threads, api_key_env, log_level, app_options, ready),
        )  # fmt: skip
        process.start()
        return process, ready

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda number, frame: stop.set())
    processes = [start(i) for i in range(workers)]
    logger.info("Serving %s on http://%s:%d with %d worker processes (%s threads each), pids %s", folder, host, bound,
                workers, threads or "torch's", [p.pid for p, _ in processes])  # fmt: skip
    deadline = None if max_lifetime_seconds is None else time.monotonic() + max_lifetime_seconds
    failed = False
    try:
        while not stop.wait(0.2):
            if deadline is not None and time.monotonic() >= deadline:
                logger.info("Stopping after %.0f s (--max-lifetime).", max_lifetime_seconds)
                break
            for index, (process, ready) in enumerate(processes):
                if process.is_alive():
                    continue
                if not ready.is_set():
                    logger.error("Worker %d (pid %s) failed to start (exit code %s): stopping.", index, process.pid,
                                 process.exitcode)  # fmt: skip
                    failed = True
                    stop.set()
                    break
                logger.warning("Worker %d (pid %s) died (exit code %s): starting a new one.", index, process.pid,
                               process.exitcode)  # fmt: skip
                processes[index] = start(index)
    finally:
        # Close this process's copies of the listening sockets first: once each worker closes its own, the port
        # refuses new connections (rather than queueing them on a socket nobody accepts from).
        for sock in set(sockets):
            sock.close()
        for process, _ in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        for process, _ in processes:
            process.join(timeout=60)
            if process.is_alive():
                logger.error("Worker pid %s did not stop within 60 s: killing it.", process.pid)
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed:
        raise ValueError("a worker failed to start; see its log above.")
    logger.info("Stopped %d workers: every accepted request was answered.", workers)
