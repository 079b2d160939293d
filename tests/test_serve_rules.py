"""`seqbert serve` checks events with the rules of `seqbert prepare` (one implementation: seqbert.data.canonical):
timestamps (negative, before 1990, far future → 422 naming the field) and event types through the aliases recorded
with the model (accepted; unknown ones → 422 listing the accepted names)."""

from __future__ import annotations

import json
import shutil
import time

import pytest

pytest.importorskip("fastapi", reason="serving needs the `serve` extra (pip install 'seqbert[serve]')")
pytest.importorskip("uvicorn", reason="serving needs the `serve` extra (pip install 'seqbert[serve]')")

from seqbert.data.canonical import recorded_event_aliases, timestamp_problem
from seqbert.data.errors import EventDataError
from seqbert.data.readers import read_events
from seqbert.data.schema import DEFAULT_EVENT_ALIASES
from seqbert.inference import Recommender

from .test_inference import EVENTS, build_model_folders
from .test_serve import request
from .test_serve_batching import Running

NOW = 1_800_000_000


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    pretrained, classifier = build_model_folders(root, seed=4)
    # A folder whose data was prepared with `--dataset-format taobao --event-alias seen=view` (as pretrain records it).
    aliased = root / "aliased"
    shutil.copytree(pretrained, aliased)
    protocol = {"kind": "leave_one_out", "source": {"path": "UserBehavior.csv", "dataset_format": "taobao",
                                                   "read_options": {"event_aliases": {"Seen": "view"}}}}  # fmt: skip
    (aliased / "split_protocol.json").write_text(json.dumps(protocol))
    return pretrained, classifier, aliased


def test_timestamp_rule():
    assert timestamp_problem(1_700_000_000, NOW) is None
    assert timestamp_problem(-5, NOW) == "is negative"
    assert timestamp_problem(86_400, NOW) == "is before 1990-01-01"
    assert timestamp_problem(NOW + 86_400, NOW) is None
    assert timestamp_problem(NOW + 86_401, NOW) == "is more than 1 day in the future"
    assert timestamp_problem(time.time() + 10 * 86_400) is not None  # default: now


def test_prepare_rejects_what_the_server_rejects(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,event_type,timestamp\nu1,i1,view,1700000000\nu1,i2,view,-5\n")
    with pytest.raises(EventDataError, match="is negative"):
        read_events(path)
    path.write_text("user_id,item_id,event_type,timestamp\nu1,i1,VIEW,1700000000\nu1,i2,pv,1700000001\n")
    assert read_events(path)["event_type"] == ["view", "view"]


def test_recorded_aliases():
    assert recorded_event_aliases(None) == {**DEFAULT_EVENT_ALIASES, **recorded_event_aliases({})}
    aliases = recorded_event_aliases({"source": {"dataset_format": "retailrocket",
                                                 "read_options": {"event_aliases": {" Seen ": "VIEW"}}}})  # fmt: skip
    assert aliases["seen"] == "view" and aliases["transaction"] == "purchase" and aliases["pv"] == "view"
    assert recorded_event_aliases({"source": {"dataset_format": "no-such-format"}})["buy"] == "purchase"


def events_with(**changes) -> list[dict]:
    events = [dict(event) for event in EVENTS]
    events[1].update(changes)
    return events


@pytest.mark.parametrize(
    ("timestamp", "needle"),
    [
        (-1, "is negative"),
        (0, "is before 1990-01-01"),
        (315_532_800, "is before 1990-01-01"),  # 1980
        (4_102_444_800, "is more than 1 day in the future"),  # 2100
        (1_700_000_000_000, "It looks like milliseconds"),
    ],
)
def test_bad_timestamps_are_422_naming_the_field(folders, timestamp, needle):
    with Running(folders[0]) as running:
        status, body = request(running.port, "POST", "/recommend", {"events": events_with(timestamp=timestamp)})
    assert status == 422, body
    assert body["detail"][0]["loc"] == ["body", "events", 1, "timestamp"]
    assert needle in body["detail"][0]["msg"] and str(timestamp) in body["detail"][0]["msg"]


def test_aliases_are_accepted_and_unknown_types_listed(folders):
    expected = Recommender.from_pretrained(str(folders[0])).recommend(EVENTS, k=5).item_ids
    with Running(folders[0]) as running:
        for raw in ("VIEW", " View ", "pv", "views"):  # EVENTS[1] is a view
            status, body = request(running.port, "POST", "/recommend", {"events": events_with(event_type=raw), "k": 5})
            assert status == 200 and [item["item_id"] for item in body["items"]] == expected, raw
        status, body = request(running.port, "POST", "/recommend", {"events": events_with(event_type="seen")})
        assert status == 422
        detail = body["detail"][0]
        assert detail["loc"] == ["body", "events", 1, "event_type"] and "Unknown event types ['seen']" in detail["msg"]
        assert "'pv'" in detail["msg"] and "'addtocart'" in detail["msg"]  # the accepted names are listed
        assert "pv" in running.health()["event_type_names"]
        status, body = request(running.port, "POST", "/recommend", {"events": events_with(item_id="")})
        assert status == 422 and body["detail"][0]["loc"] == ["body", "events", 1, "item_id"]


def test_the_aliases_recorded_for_the_model(folders):
    with Running(folders[2]) as running:
        for raw in ("seen", "SEEN", "pv"):
            assert request(running.port, "POST", "/recommend", {"events": events_with(event_type=raw)})[0] == 200
        assert "seen" in running.health()["event_type_names"]


def test_predict_checks_the_query_timestamp(folders):
    with Running(folders[1]) as running:
        status, body = request(running.port, "POST", "/predict", {"events": EVENTS, "query_timestamp": -1})
        assert status == 422 and body["detail"][0]["loc"] == ["body", "query_timestamp"]
        assert "is negative" in body["detail"][0]["msg"]
        status, body = request(running.port, "POST", "/predict", {"events": events_with(event_type="PV")})
        assert status == 200 and 0 < body["probability"] < 1
