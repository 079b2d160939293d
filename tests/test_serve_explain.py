"""`seqbert serve` with `"explain": true`: /recommend and /predict add the per-event attributions of the answer's top-1
item / probability (or of `explain_item`), computed in the inference thread after the request's micro-batch; the
scores and items are exactly those of the same request without `explain`; timeouts and the queue bound hold for
explanations too. Tiny models, real loopback HTTP; every server stops."""

from __future__ import annotations

import importlib.util
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="serving needs the `serve` extra (pip install 'seqbert[serve]')")
pytest.importorskip("uvicorn", reason="serving needs the `serve` extra (pip install 'seqbert[serve]')")
pytest.importorskip("captum", reason="explanations need the `explain` extra (pip install 'seqbert[explain]')")

from seqbert.inference import Classifier, Recommender

from .test_inference import EVENTS, ITEMS, build_model_folders, random_users
from .test_serve import request
from .test_serve_batching import Gate, Running, request_with_headers, wait_for


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return build_model_folders(tmp_path_factory.mktemp("models"), seed=5)


@pytest.fixture(scope="module")
def recommender(folders):
    return Recommender.from_pretrained(str(folders[0]))


def without_explanation(answer: dict) -> dict:
    return {key: value for key, value in answer.items() if key != "explanation"}


def assert_explains(explanation: dict, events: list[dict], expected) -> None:
    """One attribution per input event, each the sum of its parts, equal to the Python API's explanation."""
    assert len(explanation["events"]) == len(events) and explanation["dropped_events"] == 0
    assert sorted(e["timestamp"] for e in explanation["events"]) == sorted(e["timestamp"] for e in events)
    for event in explanation["events"]:
        assert event["attribution"] == pytest.approx(sum(event["parts"].values()), abs=1e-6)
    assert explanation["target"] == expected.target and explanation["method"] == "integrated_gradients"
    np.testing.assert_allclose([e["attribution"] for e in explanation["events"]], expected.attributions, atol=1e-5)
    assert abs(explanation["completeness_residual"]) <= 0.01 * max(abs(explanation["logit"] - explanation["baseline_logit"]), 1e-3)


class ExplainGate:
    """Holds the inference thread at the start of each explanation until ``open()``."""

    def __init__(self, service):
        self.entered, self.released = threading.Event(), threading.Event()
        original = service._explained

        def gated(job, scored):
            self.entered.set()
            assert self.released.wait(60), "gate never opened"
            return original(job, scored)

        service._explained = gated

    def open(self) -> None:
        self.released.set()


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "lock"])
def test_recommend_explains_the_top_item_and_keeps_the_answer(folders, recommender, batching):
    body = {"events": EVENTS, "k": 5, "exclude_seen": True}
    with Running(folders[0], batching=batching) as running:
        status, plain = request(running.port, "POST", "/recommend", body)
        assert status == 200 and "explanation" not in plain  # explain=false: the answer as before
        status, explained = request(running.port, "POST", "/recommend", {**body, "explain": True})
        assert status == 200, explained
        assert without_explanation(explained) == plain  # the very same items and scores
        top = plain["items"][0]
        explanation = explained["explanation"]
        assert explanation["prediction"] == pytest.approx(top["score"], abs=1e-5)
        assert explanation["rank"] == 1 and explanation["unknown_events"] == 1  # "brand-new" is not in the catalog
        assert_explains(explanation, EVENTS, recommender.explain(EVENTS, top["item_id"]))

        # explain_item: any catalog item, recommended or not (it implies explain).
        item = ITEMS[20]
        status, answer = request(running.port, "POST", "/recommend", {**body, "explain_item": item})
        assert status == 200 and without_explanation(answer) == plain
        column = recommender.items.index(item)
        assert answer["explanation"]["prediction"] == pytest.approx(float(recommender.score(EVENTS)[0, column]), abs=1e-5)
        assert_explains(answer["explanation"], EVENTS, recommender.explain(EVENTS, item))
        status, answer = request(running.port, "POST", "/recommend", {**body, "explain_item": "not-in-catalog"})
        assert status == 422 and answer["detail"][0]["loc"] == ["body", "explain_item"]
        assert "not-in-catalog" in answer["detail"][0]["msg"]

        # Nothing to explain when nothing is recommended; a cold-start user has no event to attribute.
        status, answer = request(running.port, "POST", "/recommend", {"events": EVENTS, "candidates": ["nope"], "explain": True})
        assert status == 200 and answer["items"] == [] and answer["explanation"] is None
        status, answer = request(running.port, "POST", "/recommend", {"events": [], "k": 3, "explain": True})
        assert status == 200 and answer["explanation"]["events"] == [] and answer["explanation"]["target"] == answer["items"][0]["item_id"]

        assert request(running.port, "POST", "/recommend", body) == (200, plain)  # explaining left the model as it was
        health = running.health()
    assert health["explain"] is True and health["explanations_waiting"] == 0
    assert health["explanations"]["count"] == (4 if batching else 0) and health["errors_500"] == 0


def test_explained_and_plain_requests_share_one_batch(folders, recommender):
    users = random_users(5, seed=21, min_len=1, max_len=12)
    bodies = [
        {"events": users[0], "k": 3, "explain": True},
        {"events": users[1], "k": 4},
        {"events": users[2], "k": 2, "exclude_seen": True, "explain": True},
        {"events": users[3], "k": 5, "candidates": ITEMS[:10], "explain_item": ITEMS[30]},
        {"events": users[4], "k": 1},
    ]
    # The batch waits (up to 30 s) until all the requests are queued, so that they are scored in one forward pass.
    with Running(folders[0], max_batch_size=len(bodies), max_batch_delay_ms=30_000) as running:
        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(lambda body: request(running.port, "POST", "/recommend", body), bodies))
        health = running.health()
    assert health["batches"]["count"] == 1 and health["batches"]["largest"] == len(bodies), health
    assert health["explanations"]["count"] == 3 and health["explanations"]["mean_ms"] > 0
    for body, (status, answer) in zip(bodies, answers):
        assert status == 200, answer
        expected = recommender.recommend(body["events"], k=body["k"], exclude_seen=body.get("exclude_seen", False),
                                         candidates=body.get("candidates"))  # fmt: skip
        assert [item["item_id"] for item in answer["items"]] == expected.item_ids
        np.testing.assert_allclose([item["score"] for item in answer["items"]], expected.scores, rtol=0, atol=1e-6)
        if not (body.get("explain") or body.get("explain_item")):
            assert "explanation" not in answer
            continue
        item = body.get("explain_item") or expected.item_ids[0]
        assert answer["explanation"]["target"] == item
        assert_explains(answer["explanation"], body["events"], recommender.explain(body["events"], item))


def test_predict_explains_the_probability(folders):
    classifier = Classifier.from_pretrained(str(folders[1]))
    query = 1_700_900_000
    with Running(folders[1]) as running:
        for body in ({"events": EVENTS, "query_timestamp": query}, {"events": EVENTS}):
            status, plain = request(running.port, "POST", "/predict", body)
            assert status == 200 and "explanation" not in plain
            status, answer = request(running.port, "POST", "/predict", {**body, "explain": True})
            assert status == 200, answer
            assert without_explanation(answer) == plain
            explanation = answer["explanation"]
            assert explanation["prediction"] == pytest.approx(answer["probability"], abs=1e-6)
            assert_explains(explanation, EVENTS, classifier.explain(EVENTS, query_timestamp=body.get("query_timestamp")))
            assert explanation["target"] == "purchase"
        status, answer = request(running.port, "POST", "/predict", {"events": EVENTS, "explain_item": ITEMS[0]})
        assert status == 422  # a classifier explains its probability: no explain_item


def test_explanations_respect_the_timeout_and_the_queue_bound(folders):
    body = {"events": EVENTS, "k": 3, "explain": True}
    with Running(folders[0], max_batch_size=1, request_timeout=0.5) as running:
        gate = ExplainGate(running.service)
        status, payload, _ = request_with_headers(running.port, "POST", "/recommend", body)
        assert status == 504 and "explanation did not finish" in payload["detail"][0]["msg"]
        gate.open()
        wait_for(lambda: running.health()["in_flight"] == 0)
        health = running.health()
        assert health["timed_out_504_computing"] == 1 and health["explanations_waiting"] == 0
        assert request(running.port, "POST", "/recommend", {"events": EVENTS})[0] == 200  # and the server goes on
    # Two requests scored in one batch: one explaining (held), the other waiting for its explanation counts in the
    # queue bound, so that with one more request queued the server is at capacity.
    plain = {"events": EVENTS, "k": 3}
    with Running(folders[0], max_batch_size=2, max_queue=2) as running, ThreadPoolExecutor(4) as pool:
        scoring, explaining = Gate(running.service), ExplainGate(running.service)
        first = pool.submit(request, running.port, "POST", "/recommend", plain)
        assert scoring.entered.wait(30)  # held in its forward pass while the two explain requests queue
        explained = [pool.submit(request, running.port, "POST", "/recommend", body) for _ in range(2)]
        wait_for(lambda: running.health()["queue_depth"] == 2)
        scoring.open()
        assert explaining.entered.wait(30)
        wait_for(lambda: running.health()["explanations_waiting"] == 1)
        queued = pool.submit(request, running.port, "POST", "/recommend", plain)
        wait_for(lambda: running.health()["queue_depth"] == 2)
        status, payload, headers = request_with_headers(running.port, "POST", "/recommend", plain)
        assert status == 503 and "retry-after" in headers and "capacity" in payload["detail"][0]["msg"]
        explaining.open()
        assert first.result(timeout=60)[0] == 200 and queued.result(timeout=60)[0] == 200
        for future in explained:
            status, answer = future.result(timeout=60)
            assert status == 200 and answer["explanation"]["target"] == answer["items"][0]["item_id"]
        health = running.health()
    assert health["rejected_503_queue_full"] == 1 and health["explanations"]["count"] == 2
    assert health["batches"]["count"] == 3 and health["queue_depth"] == 0


def test_explain_without_captum_is_501(folders, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "captum" else find_spec(name, *a))
    with Running(folders[0]) as running:
        assert running.health()["explain"] is False
        status, answer = request(running.port, "POST", "/recommend", {"events": EVENTS, "explain": True})
        assert status == 501 and "seqbert[explain]" in answer["detail"][0]["msg"]
        assert request(running.port, "POST", "/recommend", {"events": EVENTS})[0] == 200
