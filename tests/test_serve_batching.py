"""`seqbert serve` under load, over real loopback HTTP: micro-batched answers equal single-request answers, the bounded
queue answers 503 + Retry-After, timeouts answer 503 / 504, the API key, SIGTERM drains in-flight requests, and
several worker processes. The inference thread is held on a gate (an event) where a test needs requests to wait,
so that nothing depends on timing; every server stops."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="serving needs the `serve` extra (pip install 'seqbert[serve]')")
pytest.importorskip("uvicorn", reason="serving needs the `serve` extra (pip install 'seqbert[serve]')")

from seqbert.inference import Classifier, Recommender

from .test_inference import EVENTS, ITEMS, build_model_folders, random_users
from .test_serve import _run_in_thread, free_port, request, wait_until_healthy

KEY = "s3cr3t-key-do-not-log-0123456789"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return build_model_folders(tmp_path_factory.mktemp("models"), seed=3)


class Running:
    """An in-process server (uvicorn in a thread) and its app's service, stopped on exit."""

    def __init__(self, folder, **options):
        from seqbert.serve import create_app

        self.app = create_app(folder, **options)
        self.service = self.app.state.service
        self.port = free_port()
        self.server, self.thread = _run_in_thread(self.app, self.port)
        wait_until_healthy(self.port)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()

    def health(self) -> dict:
        return request(self.port, "GET", "/health")[1]


class Gate:
    """Holds the inference thread at the start of each forward pass until ``open()``."""

    def __init__(self, service, method: str = "_recommend"):
        self.entered, self.released = threading.Event(), threading.Event()
        original = getattr(service, method)

        def gated(jobs):
            self.entered.set()
            assert self.released.wait(60), "gate never opened"
            return original(jobs)

        setattr(service, method, gated)

    def open(self) -> None:
        self.released.set()


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def request_with_headers(port, method, path, body=None, headers=None, timeout=60):
    """(status, JSON body, response headers) of one request."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=payload, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def mixed_requests() -> list[dict]:
    """Users of different lengths (none, 1, ..., more than max_length), k, exclude_seen and candidates."""
    users = random_users(6, seed=11, min_len=1, max_len=30)
    return [
        {"events": [], "k": 4},
        {"events": EVENTS, "k": 5, "exclude_seen": True},
        {"events": users[0][:1], "k": 1},
        {"events": users[1], "k": 10, "candidates": ["i00001", "a/b", "not-in-catalog", "i00003", "i00001", 7]},
        {"events": users[2], "k": len(ITEMS), "exclude_seen": True},
        {"events": users[3], "k": 3, "candidates": []},
        {"events": users[4], "k": 7, "exclude_seen": True, "candidates": ["i00002", "é", "sku 1", "i00004", "i5"]},
        {"events": users[5], "k": 10},
    ]


def test_batched_answers_equal_single_request_answers(folders):
    bodies = mixed_requests()
    single = Recommender.from_pretrained(str(folders[0]))
    # The batch waits (up to 30 s) until all the requests are queued, so that they are scored in one forward pass.
    with Running(folders[0], max_batch_size=len(bodies), max_batch_delay_ms=30_000) as running:
        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(lambda body: request(running.port, "POST", "/recommend", body), bodies))
        health = running.health()
    assert health["batches"]["count"] == 1 and health["batches"]["largest"] == len(bodies), health
    for body, (status, answer) in zip(bodies, answers):
        assert status == 200, answer
        candidates = [str(c) for c in body["candidates"]] if "candidates" in body else None
        expected = single.recommend(body["events"], k=body["k"], exclude_seen=body.get("exclude_seen", False),
                                    candidates=candidates)  # fmt: skip
        assert [item["item_id"] for item in answer["items"]] == expected.item_ids, body
        np.testing.assert_allclose([item["score"] for item in answer["items"]], expected.scores, rtol=0, atol=1e-6)
        assert answer["unknown_events"] == expected.unknown_events
        assert answer["unknown_candidates"] == expected.unknown_candidates


def test_batched_predictions_equal_single_predictions(folders):
    users = random_users(4, seed=12, min_len=1, max_len=25)
    bodies = [
        {"events": users[0]},
        {"events": users[1], "query_timestamp": 1_700_500_000},
        {"events": EVENTS, "query_timestamp": 1_700_000_600},
        {"events": users[2] + users[3], "query_timestamp": 1_710_000_000},  # a gap beyond the longest bucket
        {"events": []},
    ]
    single = Classifier.from_pretrained(str(folders[1]))
    with Running(folders[1], max_batch_size=len(bodies), max_batch_delay_ms=30_000) as running:
        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(lambda body: request(running.port, "POST", "/predict", body), bodies))
        assert running.health()["batches"]["largest"] == len(bodies)
    for body, (status, answer) in zip(bodies, answers):
        assert status == 200, answer
        expected = single.predict(body["events"], query_timestamp=body.get("query_timestamp"))
        assert answer["probability"] == pytest.approx(expected.probability, abs=1e-6)
        assert answer["unknown_events"] == expected.unknown_events
        assert answer["query_timestamp"] == expected.query_timestamp and answer["label"] == "purchase"


def test_full_queue_answers_503_with_retry_after_at_once(folders):
    body = {"events": EVENTS, "k": 3}
    expected = Recommender.from_pretrained(str(folders[0])).recommend(EVENTS, k=3).item_ids
    with Running(folders[0], max_batch_size=1, max_queue=2) as running, ThreadPoolExecutor(3) as pool:
        gate = Gate(running.service)
        first = pool.submit(request, running.port, "POST", "/recommend", body)
        assert gate.entered.wait(30)  # the first request is in its forward pass, held there
        queued = [pool.submit(request, running.port, "POST", "/recommend", body) for _ in range(2)]
        wait_for(lambda: running.health()["queue_depth"] == 2)
        started = time.monotonic()
        status, payload, headers = request_with_headers(running.port, "POST", "/recommend", body)
        assert status == 503 and int(headers["retry-after"]) >= 1 and "capacity" in payload["detail"][0]["msg"]
        assert time.monotonic() - started < 10  # at once, not after the queued requests (held until the gate opens)
        health = running.health()
        assert health["queue_depth"] == 2 and health["in_flight"] == 1 and health["rejected_503_queue_full"] == 1
        assert request(running.port, "GET", "/health")[0] == 200  # health is never queued
        gate.open()
        for future in [first, *queued]:
            status, answer = future.result(timeout=60)
            assert status == 200 and [item["item_id"] for item in answer["items"]] == expected
        health = running.health()
    assert health["queue_depth"] == 0 and health["requests"] == 4 and health["batches"]["count"] == 3


def test_a_request_expected_to_wait_too_long_is_refused_at_once(folders):
    body = {"events": EVENTS, "k": 3}
    with Running(folders[0], max_batch_size=1, max_queue=100, max_queue_wait_ms=200) as running:
        with ThreadPoolExecutor(4) as pool:
            gate = Gate(running.service)
            first = pool.submit(request, running.port, "POST", "/recommend", body)
            assert gate.entered.wait(30)
            time.sleep(1.0)
            gate.open()  # the first batch took about 1 s: the running mean of batch times starts there
            assert first.result(timeout=60)[0] == 200
            gate = Gate(running.service)
            second = pool.submit(request, running.port, "POST", "/recommend", body)
            assert gate.entered.wait(30)  # a batch of about 1 s has just started
            health = running.health()
            assert health["queue_depth"] == 0 and health["expected_wait_ms"] > 200
            started = time.monotonic()
            status, payload, headers = request_with_headers(running.port, "POST", "/recommend", body)
            assert time.monotonic() - started < 10  # at once, not after the batch
            assert status == 503 and int(headers["retry-after"]) >= 1
            message = payload["detail"][0]["msg"]
            assert "expected wait" in message and "--max-queue-wait-ms 200" in message
            gate.open()
            assert second.result(timeout=60)[0] == 200
        health = running.health()
    assert health["rejected_503_expected_wait"] == 1 and health["rejected_503_queue_full"] == 0
    assert health["requests"] == 3 and health["batches"]["count"] == 2 and health["queue_depth"] == 0


def test_request_timeout_answers_503_when_queued_and_504_when_computing(folders):
    body = {"events": EVENTS, "k": 3}
    with Running(folders[0], max_batch_size=1, request_timeout=0.5) as running, ThreadPoolExecutor(2) as pool:
        gate = Gate(running.service)
        computing = pool.submit(request_with_headers, running.port, "POST", "/recommend", body)
        assert gate.entered.wait(30)
        queued = pool.submit(request_with_headers, running.port, "POST", "/recommend", body)
        status, payload, _ = computing.result(timeout=30)  # held in its forward pass past the timeout
        assert status == 504 and "did not finish" in payload["detail"][0]["msg"]
        status, payload, headers = queued.result(timeout=30)
        assert status == 503 and "retry-after" in headers and "Not started" in payload["detail"][0]["msg"]
        gate.open()
        wait_for(lambda: running.health()["in_flight"] == 0)
        health = running.health()
        assert health["timed_out_504_computing"] == 1 and health["timed_out_503_queued"] == 1
        assert health["queue_depth"] == 0 and health["batches"]["count"] == 1  # the timed-out queued one never ran
        assert request(running.port, "POST", "/recommend", body)[0] == 200  # and the server goes on


def test_lock_variant_scores_one_request_at_a_time(folders):
    bodies = mixed_requests()
    single = Recommender.from_pretrained(str(folders[0]))
    with Running(folders[0], batching=False) as running:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda body: request(running.port, "POST", "/recommend", body), bodies))
        health = running.health()
    assert health["batching"]["mode"] == "lock" and health["batches"]["count"] == 0
    for body, (status, answer) in zip(bodies, answers):
        candidates = [str(c) for c in body["candidates"]] if "candidates" in body else None
        expected = single.recommend(body["events"], k=body["k"], exclude_seen=body.get("exclude_seen", False),
                                    candidates=candidates)  # fmt: skip
        assert status == 200 and [item["item_id"] for item in answer["items"]] == expected.item_ids


def test_health_reports_queue_and_batches(folders):
    with Running(folders[0], max_batch_size=4, max_batch_delay_ms=3, max_queue=9) as running:
        for _ in range(3):
            assert request(running.port, "POST", "/recommend", {"events": EVENTS})[0] == 200
        health = running.health()
    assert health["batching"] == {"mode": "batched", "max_batch_size": 4, "max_batch_delay_ms": 3.0, "max_queue": 9,
                                  "max_queue_wait_ms": 100.0, "request_timeout_s": 10.0}  # fmt: skip
    assert health["queue_depth"] == 0 and health["in_flight"] == 0 and health["requests"] == 3
    batches = health["batches"]
    assert batches["count"] == 3 and batches["mean_size"] == 1.0 and batches["size_histogram"] == {"<=1": 3}
    assert batches["mean_ms"] > 0 and health["pid"] == os.getpid()


# ---------------------------------------------------------------------------------------------------------------
# API key
# ---------------------------------------------------------------------------------------------------------------


def test_api_key_is_required_except_for_health_and_never_logged(folders, caplog):
    body = {"events": EVENTS, "k": 2}
    with caplog.at_level(logging.DEBUG), Running(folders[0], api_key=KEY) as running:
        port = running.port
        status, payload, headers = request_with_headers(port, "POST", "/recommend", body)
        assert status == 401 and headers["www-authenticate"] == "Bearer" and "Missing" in payload["detail"][0]["msg"]
        for wrong in (f"Bearer {KEY}x", f"Bearer {KEY[:-1]}", KEY, f"bearer {KEY}", "Bearer "):
            status, payload, _ = request_with_headers(port, "POST", "/recommend", body, {"Authorization": wrong})
            assert status == 401 and KEY not in json.dumps(payload)
        assert request_with_headers(port, "GET", "/openapi.json")[0] == 401
        assert request_with_headers(port, "GET", "/docs")[0] == 401
        status, payload, _ = request_with_headers(port, "POST", "/recommend", body, {"Authorization": f"Bearer {KEY}"})
        assert status == 200 and len(payload["items"]) == 2
        assert request_with_headers(port, "GET", "/health")[0] == 200  # load balancers probe without the key
    assert KEY not in caplog.text


def test_exposure_warning():
    from seqbert.serve import exposure_warning, is_loopback

    for host in ("127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"):
        assert is_loopback(host) and exposure_warning(host, None) is None
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"):
        assert not is_loopback(host)
        assert "WITHOUT an API key" in exposure_warning(host, None) and exposure_warning(host, KEY) is None


def test_serve_warns_on_a_public_address_without_a_key(folders, monkeypatch, caplog):
    import seqbert.serve as serving
    import seqbert.serving.launch

    class NoServer:  # nothing is bound: the test stops before uvicorn would listen
        def __init__(self, app, **options):
            self.options = options

        def run(self):
            return None

    monkeypatch.setattr(seqbert.serving.launch, "_uvicorn_server", NoServer)  # where serve() starts uvicorn
    threads = torch.get_num_threads()  # serve() sets the process's torch threads: keep this process's
    with caplog.at_level(logging.WARNING, logger="seqbert.serve"):
        serving.serve(folders[0], host="0.0.0.0", port=free_port(), threads=threads)
    assert "WITHOUT an API key" in caplog.text
    caplog.clear()
    monkeypatch.setenv("SEQBERT_TEST_KEY", KEY)
    with caplog.at_level(logging.INFO, logger="seqbert.serve"):
        serving.serve(folders[0], host="0.0.0.0", port=free_port(), api_key_env="SEQBERT_TEST_KEY", threads=threads)
    assert "WITHOUT" not in caplog.text and "SEQBERT_TEST_KEY" in caplog.text and KEY not in caplog.text
    monkeypatch.delenv("SEQBERT_TEST_KEY")
    with pytest.raises(ValueError, match="SEQBERT_TEST_KEY"):
        serving.serve(folders[0], api_key_env="SEQBERT_TEST_KEY")


# ---------------------------------------------------------------------------------------------------------------
# Real processes: SIGTERM drains, workers
# ---------------------------------------------------------------------------------------------------------------


def start_cli_server(folder: Path, log: Path, *options: str, env: dict | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [sys.executable, "-m", "seqbert.cli", "--log-level", "DEBUG", "serve", str(folder), "--host",
               "127.0.0.1", "--port", str(port), "--max-lifetime", "300", *options]  # fmt: skip
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", **(env or {})}
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=environment)
    return process, port


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests_then_exits(folders, tmp_path):
    log = tmp_path / "server.log"
    process, port = start_cli_server(
        folders[0], log, "--api-key-env", "SEQBERT_TEST_KEY", "--max-batch-size", "64", "--max-batch-delay-ms",
        "6000", env={"SEQBERT_TEST_KEY": KEY},
    )  # fmt: skip
    try:
        wait_until_healthy(port, process, log)
        auth = {"Authorization": f"Bearer {KEY}"}
        bodies = mixed_requests()[:5]
        single = Recommender.from_pretrained(str(folders[0]))
        with ThreadPoolExecutor(len(bodies)) as pool:
            # Queued for up to 6 s (the batch waits to fill): in flight when SIGTERM comes.
            futures = [pool.submit(request_with_headers, port, "POST", "/recommend", body, auth) for body in bodies]
            wait_for(lambda: request(port, "GET", "/health")[1]["queue_depth"] == len(bodies))
            process.send_signal(signal.SIGTERM)
            wait_for(lambda: refuses_connections(port), timeout=10)  # stops accepting at once...
            assert not any(future.done() for future in futures)  # ...while the queued requests are still waiting
            answers = [future.result(timeout=60) for future in futures]
        assert process.wait(timeout=60) == 0
    finally:
        stop(process)
    for body, (status, answer, _) in zip(bodies, answers):
        assert status == 200, answer
        candidates = [str(c) for c in body["candidates"]] if "candidates" in body else None
        expected = single.recommend(body["events"], k=body["k"], exclude_seen=body.get("exclude_seen", False),
                                    candidates=candidates)  # fmt: skip
        assert [item["item_id"] for item in answer["items"]] == expected.item_ids
    text = log.read_text()
    assert "Stopped: every accepted request was answered" in text
    assert KEY not in text and "SEQBERT_TEST_KEY" in text  # the variable's name is logged, never the key


@pytest.mark.slow
def test_workers_share_the_port_and_drain_on_sigterm(folders, tmp_path):
    log = tmp_path / "workers.log"
    process, port = start_cli_server(folders[0], log, "--workers", "2", "--threads", "1", "--max-batch-size", "64",
                                     "--max-batch-delay-ms", "6000")  # fmt: skip
    try:
        wait_until_healthy(port, process, log)
        depths: dict[int, int] = {}  # pid -> the queue depth it last reported

        def poll_health() -> None:
            status, health = request(port, "GET", "/health")  # a new connection each time: either worker answers
            if status == 200:
                depths[health["pid"]] = health["queue_depth"]

        wait_for(lambda: poll_health() or len(depths) == 2, timeout=120)
        assert process.pid not in depths
        body = {"events": EVENTS, "k": 4, "exclude_seen": True}
        expected = Recommender.from_pretrained(str(folders[0])).recommend(EVENTS, k=4, exclude_seen=True).item_ids
        with ThreadPoolExecutor(8) as pool:
            # Each worker's batch waits up to 6 s to fill: the requests are in flight when SIGTERM comes.
            futures = [pool.submit(request, port, "POST", "/recommend", body) for _ in range(8)]
            wait_for(lambda: poll_health() or sum(depths.values()) == 8)  # each worker's latest word
            process.send_signal(signal.SIGTERM)
            wait_for(lambda: refuses_connections(port), timeout=10)
            assert not any(future.done() for future in futures)
            answers = [future.result(timeout=60) for future in futures]
        assert process.wait(timeout=90) == 0
    finally:
        stop(process)
    assert all(status == 200 and [i["item_id"] for i in answer["items"]] == expected for status, answer in answers)
    for pid in depths:  # the workers are gone too
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "Stopped 2 workers" in log.read_text()
