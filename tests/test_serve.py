"""Tests for `seqbert serve`: a real server on loopback (a subprocess through the CLI, and in-process for the
classifier), real HTTP requests including malformed and oversized ones. Bounded: every server stops."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="serving needs the `serve` extra (pip install 'seqbert[serve]')")
pytest.importorskip("uvicorn", reason="serving needs the `serve` extra (pip install 'seqbert[serve]')")

from seqbert.inference import Classifier, Recommender

from .test_inference import EVENTS, ITEMS, build_model_folders

MAX_EVENTS, MAX_K, MAX_BODY = 50, 20, 20_000
STARTUP_TIMEOUT = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | dict | list | None = None,
    *,
    chunked: bool = False,
    timeout: float = 30,
):
    """(status, parsed JSON body) of one HTTP request to 127.0.0.1:port."""
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"}
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
            chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]
            connection.request(method, path, body=iter(chunks), headers=headers, encode_chunked=True)
        else:
            connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        return response.status, json.loads(payload) if payload else None
    finally:
        connection.close()


def wait_until_healthy(port: int, process: subprocess.Popen | None = None, log: Path | None = None) -> dict:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()[-3000:] if log else ''}")
        try:
            status, health = request(port, "GET", "/health", timeout=2)
            if status == 200:
                return health
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"server not healthy after {STARTUP_TIMEOUT} s:\n{log.read_text()[-3000:] if log else ''}")


def _run_in_thread(app, port):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return build_model_folders(tmp_path_factory.mktemp("models"), seed=2)


@pytest.fixture(
    scope="module", params=["in-process", "in-process-lock", pytest.param("subprocess", marks=pytest.mark.slow)]
)
def server(request, folders, tmp_path_factory):
    """A recommender server on loopback: uvicorn in a thread of this process (fast; micro-batching, or one request
    at a time behind a lock as before micro-batching), or `seqbert serve` in a subprocess through the CLI (what users
    run; it stops itself after --max-lifetime at the latest)."""
    port = free_port()
    if request.param.startswith("in-process"):
        from seqbert.serve import create_app

        app = create_app(folders[0], max_events=MAX_EVENTS, max_k=MAX_K, max_body_bytes=MAX_BODY,
                         batching=request.param == "in-process")  # fmt: skip
        uvicorn_server, thread = _run_in_thread(app, port)
        try:
            yield port, wait_until_healthy(port)
        finally:
            uvicorn_server.should_exit = True
            thread.join(timeout=20)
        return
    log = tmp_path_factory.mktemp("server") / "server.log"
    command = [
        sys.executable,
        "-m",
        "seqbert.cli",
        "--log-level",
        "WARNING",
        "serve",
        str(folders[0]),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-events",
        str(MAX_EVENTS),
        "--max-k",
        str(MAX_K),
        "--max-body-bytes",
        str(MAX_BODY),
        "--max-lifetime",
        "300",
        "--threads",
        "1",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    try:
        health = wait_until_healthy(port, process, log)
        yield port, health
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def events_body(n: int, event_type: str = "view") -> list[dict]:
    return [
        {"item_id": ITEMS[i % len(ITEMS)], "event_type": event_type, "timestamp": 1_700_000_000 + i} for i in range(n)
    ]


def test_health(server):
    _, health = server
    assert health["status"] == "ok" and health["kind"] == "recommender" and health["queue_depth"] == 0
    assert health["num_items"] == len(ITEMS) and health["max_events"] == MAX_EVENTS and health["max_k"] == MAX_K
    if health["pid"] != os.getpid():  # `seqbert serve` keeps its start-up objects out of GC (no pauses of ~0.2 s)
        assert health["gc_frozen_objects"] > 10_000


def test_recommend_matches_the_python_api(server, folders):
    port, _ = server
    status, body = request(port, "POST", "/recommend", {"events": EVENTS, "k": 5, "exclude_seen": True})
    assert status == 200, body
    expected = Recommender.from_pretrained(str(folders[0])).recommend(EVENTS, k=5, exclude_seen=True)
    assert [item["item_id"] for item in body["items"]] == expected.item_ids
    assert [item["score"] for item in body["items"]] == pytest.approx(expected.scores, abs=1e-5)
    assert body["unknown_events"] == 1 and body["unknown_candidates"] == []
    status, body = request(port, "POST", "/recommend", {"events": EVENTS, "candidates": ["i00001", 7, "nope"]})
    assert status == 200 and [i["item_id"] for i in body["items"]] == ["i00001"]
    assert body["unknown_candidates"] == ["7", "nope"]
    status, body = request(port, "POST", "/recommend", {"events": []})  # cold start: no history at all
    assert status == 200 and len(body["items"]) == 10


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        (b'{"events": [{"item_id": "i00001", "event_type": "view", "timestamp": 1}', 400, "JSON"),
        (b"not json at all", 400, "JSON"),
        ({"k": 3}, 422, "events"),
        ({"events": [{"item_id": "i00001", "timestamp": 1}]}, 422, "event_type"),
        ({"events": [{"item_id": "i00001", "event_type": "view", "timestamp": "soon"}]}, 422, "timestamp"),
        ({"events": events_body(2, "teleport")}, 422, "Unknown event types ['teleport']"),
        ({"events": events_body(MAX_EVENTS + 1)}, 422, f"at most {MAX_EVENTS}"),
        ({"events": events_body(1), "k": MAX_K + 1}, 422, f"less than or equal to {MAX_K}"),
        ({"events": events_body(1), "k": 0}, 422, "greater than or equal to 1"),
        ({"events": events_body(1), "surprise": 1}, 422, "surprise"),
        ([EVENTS], 422, "body"),
    ],
)
def test_bad_requests_get_clear_4xx(server, payload, status, needle):
    port, _ = server
    got, body = request(port, "POST", "/recommend", payload)
    assert got == status, body
    assert needle in json.dumps(body["detail"])


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_body_is_413(server, chunked):
    port, _ = server
    body = json.dumps({"events": events_body(10), "padding": "x" * MAX_BODY}).encode()
    status, payload = request(port, "POST", "/recommend", body, chunked=chunked)
    assert status == 413 and "larger than" in payload["detail"][0]["msg"]
    assert request(port, "GET", "/health")[0] == 200  # still serving


def test_huge_declared_body_is_refused_without_reading_it(server):
    port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000000\r\n\r\n{"
        )
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 413 and b"larger than" in response.read()


def test_wrong_endpoint_for_the_model_kind(server):
    port, _ = server
    status, body = request(port, "POST", "/predict", {"events": EVENTS})
    assert status == 404 and "/recommend" in body["detail"][0]["msg"]


def test_classifier_predict(folders):
    from seqbert.serve import create_app

    port = free_port()
    server, thread = _run_in_thread(create_app(folders[1], max_events=MAX_EVENTS), port)
    try:
        assert wait_until_healthy(port)["kind"] == "classifier"
        classifier = Classifier.from_pretrained(str(folders[1]))
        query = 1_700_900_000
        status, body = request(port, "POST", "/predict", {"events": EVENTS, "query_timestamp": query})
        assert status == 200, body
        assert body["label"] == "purchase" and body["unknown_events"] == 1 and body["query_timestamp"] == query
        assert body["probability"] == pytest.approx(classifier.predict_proba(EVENTS, query_timestamp=query), abs=1e-6)
        status, body = request(port, "POST", "/predict", {"events": EVENTS})
        assert status == 200 and body["query_timestamp"] == max(e["timestamp"] for e in EVENTS)
        assert request(port, "POST", "/predict", {"events": EVENTS, "query_timestamp": "later"})[0] == 422
        assert request(port, "POST", "/recommend", {"events": EVENTS})[0] == 404
    finally:
        server.should_exit = True
        thread.join(timeout=20)
    assert not thread.is_alive()


def test_serve_stops_by_itself(folders):
    from seqbert.serve import serve

    start = time.monotonic()
    import torch

    threads = torch.get_num_threads()  # serve() sets the process's torch threads: keep this process's
    serve(folders[0], host="127.0.0.1", port=free_port(), max_lifetime_seconds=1.0, log_level="warning",
          threads=threads)  # fmt: skip
    assert time.monotonic() - start < 30
