"""scripts/bench_speed.py: conversion of a prepared folder to RecBole atomic files (no RecBole needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seqbert.cli import main
from seqbert.prepared import PreparedData

from .script_modules import load_script


def load_bench():
    return load_script("bench_speed")


SEQUENCES = {"1": ["a", "b", "c", "d"], "2": ["b", "c", "e"], "3": ["e", "a", "b", "c", "d", "f"]}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("speed")
    source = root / "tiny.txt"
    source.write_text("".join(f"{user} {' '.join(items)}\n" for user, items in SEQUENCES.items()))
    out = root / "prepared"
    args = ["prepare", str(source), "--dataset-format", "amazon_s3rec", "--split", "leave_one_out",
            "--min-user-events", "1", "--min-item-support", "1", "--output-dir", str(out)]  # fmt: skip
    assert main(args) == 0
    return out


def read_inter(path: str) -> tuple[str, list[list[str]]]:
    lines = Path(path).read_text().splitlines()
    return lines[0], [line.split("\t") for line in lines[1:]]


def test_atomic_file_reproduces_the_leave_one_out_split(prepared, tmp_path):
    bench = load_bench()
    info = bench.convert_to_atomic(prepared, tmp_path / "data", "tiny")
    assert info["path"] == str(tmp_path / "data" / "tiny" / "tiny.inter")
    header, rows = read_inter(info["path"])
    assert header == "user_id:token\titem_id:token\ttimestamp:float"
    by_user: dict[str, list[tuple[str, float]]] = {}
    for user, item, stamp in rows:
        by_user.setdefault(user, []).append((item, float(stamp)))
    data = PreparedData.load(prepared)
    train = {row["user_id"]: row["item_ids"] for row in data.splits["train"]}
    validation = {row["user_id"]: row["target_item_id"] for row in data.splits["validation"]}
    test = {row["user_id"]: row["target_item_id"] for row in data.splits["test"]}
    assert set(by_user) == set(SEQUENCES)
    for user, events in by_user.items():
        items = [item for item, _ in events]
        stamps = [stamp for _, stamp in events]
        assert items == SEQUENCES[user]  # train events, then validation target, then test target
        # RecBole's LS valid_and_test split (time order per user): last = test, second-to-last = validation.
        assert items[:-2] == train[user] and items[-2] == validation[user] and items[-1] == test[user]
        assert all(a < b for a, b in zip(stamps, stamps[1:]))  # strictly increasing: time sort keeps order
    assert info["users"] == 3 and info["rows"] == sum(map(len, SEQUENCES.values()))
    assert info["items"] == len({i for s in SEQUENCES.values() for i in s})
    assert info["train_events"] == sum(len(s) - 2 for s in SEQUENCES.values())
    assert info["train_prefixes"] == sum(len(s) - 3 for s in SEQUENCES.values())


def test_rejects_a_split_that_is_not_leave_one_out(prepared, tmp_path):
    bench = load_bench()
    copy = tmp_path / "prepared"
    copy.mkdir()
    protocol = json.loads((prepared / "protocol.json").read_text())
    (copy / "protocol.json").write_text(json.dumps({**protocol, "kind": "temporal"}))
    with pytest.raises(ValueError, match="leave_one_out"):
        bench.convert_to_atomic(copy, tmp_path / "data")


def test_config_matches_the_seqbert_model_size(tmp_path):
    bench = load_bench()
    args = bench.parse_args([str(tmp_path)])
    config = bench.recbole_config(args)
    assert (config["hidden_size"], config["n_layers"], config["n_heads"], config["inner_size"]) == (64, 2, 2, 256)
    assert (config["MAX_ITEM_LIST_LENGTH"], config["train_batch_size"], config["hidden_dropout_prob"]) == (50, 256, 0.2)
    assert config["loss_type"] == "CE" and config["train_neg_sample_args"] is None
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"} and config["eval_args"]["mode"] == "full"
    text = bench._yaml(config)
    assert "train_neg_sample_args: ~" in text and "  split:\n    LS: \"valid_and_test\"" in text


def test_seqbert_run_records_a_history_removed_validation_curve(prepared, tmp_path):
    """The seqbert child runs the real pretraining and logs both protocols after every epoch."""
    bench = load_bench()
    args = bench.parse_args([str(prepared), "--work-dir", str(tmp_path), "--epochs", "1", "--seqbert-epochs", "2",
                             "--hidden-size", "8", "--num-heads", "1", "--inner-size", "16", "--batch-size", "2"])  # fmt: skip
    record = bench.bench_seqbert(args, "bidirectional", tmp_path)
    assert "error" not in record, Path(record["log"]).read_text()[-2000:]
    assert record["epochs"] == 2 and len(record["curve"]) == 2
    seconds = [point["train_seconds"] for point in record["curve"]]
    assert 0 < seconds[0] < seconds[1]
    assert 0 < record["curve"][0]["train_cpu_seconds"] < record["curve"][1]["train_cpu_seconds"]
    for point in record["curve"]:
        assert 0.0 <= point["ndcg@10"] <= 1.0 and 0.0 <= point["ndcg@10_history_removed"] <= 1.0
    assert record["val_ndcg10_history_removed"] == max(p["ndcg@10_history_removed"] for p in record["curve"])


def test_equal_quality_finds_the_first_validation_at_recbole_quality():
    bench = load_bench()
    recbole = {"system": "RecBole 1.2.1", "model": "BERT4Rec",
               "curve": bench.recbole_curve([{"train_seconds": 100.0, "train_cpu_seconds": 90.0, "ndcg@10": 0.02},
                                             {"train_seconds": 100.0, "train_cpu_seconds": 90.0, "ndcg@10": 0.03}])}  # fmt: skip
    curve = [{"train_seconds": s, "train_cpu_seconds": s - 2, "ndcg@10": 0.0, "ndcg@10_history_removed": q}
             for s, q in [(10, 0.01), (20, 0.031), (30, 0.05)]]  # fmt: skip
    seqbert = {"system": "seqbert", "model": "bidirectional (Cloze)", "curve": curve}
    (row,) = bench.equal_quality([recbole, seqbert])
    assert row["target_val_ndcg10_history_removed"] == 0.03 and row["recbole_train_seconds"] == 200.0
    assert row["seqbert_train_seconds"] == 20 and row["seqbert_validation_index"] == 2
    assert row["recbole_train_cpu_seconds"] == 180.0 and row["seqbert_train_cpu_seconds"] == 18
    assert row["speedup"] == pytest.approx(10.0) and row["speedup_wall"] == pytest.approx(10.0)
    assert row["seqbert_best_val_ndcg10_history_removed"] == 0.05
    slow = {**seqbert, "curve": curve[:1]}
    (row,) = bench.equal_quality([recbole, slow])
    assert row["seqbert_train_seconds"] is None and row["speedup"] is None
    assert "not reached" in bench.equal_quality_table([row])


def test_training_curve_excludes_evaluation_time():
    bench = load_bench()
    evals = [{"started_at": 10.0, "seconds": 5.0, "ndcg@10": 0.1}, {"started_at": 25.0, "seconds": 5.0, "ndcg@10": 0.2}]
    assert [p["train_seconds"] for p in bench.training_curve(evals)] == [10.0, 20.0]
    evals = [{**e, "started_at_cpu": e["started_at"] - 1, "cpu_seconds": 4.0} for e in evals]
    assert [p["train_cpu_seconds"] for p in bench.training_curve(evals)] == [9.0, 20.0]
