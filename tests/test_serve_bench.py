"""scripts/bench_serve.py: the answer check, and a tiny end-to-end run writing the JSON lines (no timings checked;
the `lock` variant's server is tested in test_serve.py)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi", reason="serving needs the `serve` extra (pip install 'seqbert[serve]')")
pytest.importorskip("uvicorn", reason="serving needs the `serve` extra (pip install 'seqbert[serve]')")

from .script_modules import load_script

EXPECTED = {"items": ["a", "b", "c"], "scores": [3.0, 2.0, 2.0], "unknown_events": 1, "unknown_candidates": []}


def answer(items, scores, unknown_events=1, unknown_candidates=()):
    entries = [{"item_id": item, "score": score} for item, score in zip(items, scores)]
    body = {"items": entries, "unknown_events": unknown_events, "unknown_candidates": list(unknown_candidates)}
    return json.dumps(body).encode()


def test_an_answer_must_be_its_own_requests():
    matches = load_script("bench_serve").matches
    assert matches(answer(["a", "b", "c"], [3.0, 2.0, 2.0]), EXPECTED)
    assert matches(answer(["a", "c", "b"], [3.0, 2.0, 2.0 + 1e-6]), EXPECTED)  # a tie swapped
    assert matches(answer(["a", "b", "z"], [3.0, 2.0, 2.0]), EXPECTED)  # tied with the last one, from outside
    assert not matches(answer(["a", "z", "c"], [3.0, 2.0, 2.0]), EXPECTED)
    assert not matches(answer(["a", "b", "c"], [3.0, 2.0, 1.9]), EXPECTED)
    assert not matches(answer(["a", "b"], [3.0, 2.0]), EXPECTED)
    assert not matches(answer(["a", "b", "c"], [3.0, 2.0, 2.0], unknown_events=0), EXPECTED)
    assert not matches(answer(["a", "b", "c"], [3.0, 2.0, 2.0], unknown_candidates=["x"]), EXPECTED)
    assert not matches(b"{not json", EXPECTED)


@pytest.mark.slow
def test_a_tiny_run_writes_every_line(tmp_path, capsys):
    output = tmp_path / "serve_load.jsonl"
    output.write_text("an older run\n")
    bench = load_script("bench_serve")
    bench.main(["--num-items", "60", "--history", "5", "--users", "12", "--variants", "batched", "--clients",
                "1", "3", "--seconds", "0.5", "--warmup-seconds", "0.2", "--overload-seconds", "0.5",
                "--soak-minutes", "0.02", "--soak-warmup-seconds", "0.3", "--output", str(output)])  # fmt: skip
    lines = [json.loads(line) for line in output.read_text().splitlines()]  # replaced, not appended
    keys = {"variant", "clients", "requests_per_second", "p50_ms", "p99_ms", "rejected_503", "other_5xx"}
    closed = [line for line in lines if line.get("phase") == "closed_loop"]
    assert [(line["variant"], line["clients"]) for line in closed] == [("batched", 1), ("batched", 3)]
    for line in closed + [line for line in lines if line.get("phase") == "overload"]:
        assert keys <= set(line) and line["other_5xx"] == 0 and line["wrong_answers"] == 0 and line["lost"] == 0
    assert [line["variant"] for line in lines if line.get("phase") == "overload"] == ["batched"]
    soak = [line for line in lines if line["variant"] == "soak"]
    assert len(soak) == 1 and {"rss_start_mib", "rss_end_mib", "errors"} <= set(soak[0])
    assert soak[0]["server_variant"] == "batched" and soak[0]["rss_start_mib"] > 0
    assert "| variant | phase | clients |" in capsys.readouterr().out


def test_a_body_already_checked_for_its_request_is_not_parsed_again(monkeypatch):
    bench = load_script("bench_serve")
    parsed = []
    real = bench.matches
    monkeypatch.setattr(bench, "matches", lambda payload, expected: parsed.append(payload) or real(payload, expected))
    right, wrong = answer(["a", "b", "c"], [3.0, 2.0, 2.0]), answer(["a", "z", "c"], [3.0, 2.0, 2.0])
    tally = bench.Tally([EXPECTED, {**EXPECTED, "items": ["x", "y", "z"]}])
    for index, payload in [(0, right), (0, right), (1, right), (0, wrong), (0, wrong)]:
        tally.record(200, {}, index, payload, 0.01, 0.01)
    tally.check()
    assert tally.wrong == 3  # request 1's answer is another request's body; a wrong body stays wrong every time
    for _ in range(3):
        tally.record(200, {}, 0, right, 0.01, 0.01)
    tally.check()
    assert tally.wrong == 3 and parsed.count(right) == 2  # once for request 0, once for request 1
