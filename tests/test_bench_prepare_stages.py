"""scripts/bench_prepare_stages.py: every prepare stage timed in one process, for old and new code."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from seqbert import prepare
from seqbert.data.readers import read_events
from seqbert.data.sequences import build_sequences
from seqbert.data.splits import leave_one_out

from .script_modules import load_script

T0 = 1_700_000_000


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "events.csv"
    rows = [f"u{u},i{(u * 7 + k) % 11},view,{T0 + 60 * k}" for u in range(6) for k in range(3 + u % 3)]
    path.write_text("user_id,item_id,event_type,timestamp\n" + "\n".join(rows) + "\n")
    return path


def test_every_stage_is_timed_and_written(log, tmp_path, capsys):
    out = tmp_path / "stages.json"
    load_script("bench_prepare_stages").main([str(log), "--repeats", "2", "--json", str(out)])
    report = json.loads(out.read_text())
    assert list(report["stages"]) == ["read", "clean", "sequences", "split", "vocabulary + statistics", "tokenize"]
    for figures in report["stages"].values():
        assert len(figures["runs_s"]) == 2 and 0 < figures["min_s"] <= figures["median_s"] <= figures["max_s"]
    assert set(json.loads(capsys.readouterr().out.strip().splitlines()[-1])) == set(report["stages"])


def test_versions_without_the_combined_stage_run_the_two_functions(log):
    script = load_script("bench_prepare_stages")
    sequences = build_sequences(read_events(log))
    train = leave_one_out(sequences)[0]["train"]
    options = prepare.PrepareOptions()
    old = SimpleNamespace(train_vocabulary=prepare.train_vocabulary, prefix_statistics=prepare.prefix_statistics)
    tokenizer, (everything, train_statistics) = script.vocabulary_and_statistics_stage(old, sequences, train, options)()
    new_tokenizer, new_statistics = script.vocabulary_and_statistics_stage(prepare, sequences, train, options)()
    assert tokenizer.items == new_tokenizer.items
    assert new_statistics == {"all": everything, "train": train_statistics}


def test_bad_arguments_are_refused(log, tmp_path):
    script = load_script("bench_prepare_stages")
    with pytest.raises(SystemExit):
        script.parse_args([str(log), "--repeats", "0"])
    with pytest.raises(SystemExit):
        script.parse_args([str(tmp_path / "missing.csv")])
