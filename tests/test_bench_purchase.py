"""scripts/bench_purchase.py end to end in its small-data mode, on the real Taobao histories in ../shared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .script_modules import load_script

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MAIN = SHARED / "taobao_userbehavior_head983" / "complete_histories_head_983users.csv"
REQUIRED = {"task", "model", "seed", "test_roc_auc", "test_ece_after_temperature", "test_positives", "heldout_users_roc_auc"}


@pytest.mark.slow
@pytest.mark.skipif(not MAIN.exists(), reason="the Taobao histories are not in ../shared/data")
def test_bench_purchase_small_data_mode(tmp_path):
    bench = load_script("bench_purchase")
    output = tmp_path / "results" / "purchase.jsonl"
    output.parent.mkdir()
    output.write_text('{"stale": true}\n')  # a previous run's file is replaced, never appended to
    # Every model but the frozen-encoder fine-tuning (the same code path as seqbert_pretrained plus
    # --freeze_encoder, tested in test_finetune_tasks.py::test_freeze_encoder_trains_only_the_head): three fewer
    # training subprocesses.
    models = [model for model in bench.MODELS if model != "seqbert_pretrained_frozen"]
    lines = bench.main([
        "--work-dir", str(tmp_path / "work"), "--output", str(output), "--max-users", "60", "--seeds", "0",
        "--pretrain-minutes", "0.1", "--finetune-minutes", "0.05", "--hidden-size", "8", "--layers", "1",
        "--max-length", "10", "--bootstrap-resamples", "10", "--train-cutoffs", "3", "--supplement-file", "",
        "--models", *models,
    ])  # fmt: skip
    saved = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(saved) == len(lines) == 3 * len(models) and all(REQUIRED <= set(line) for line in saved)
    assert {(line["task"], line["model"]) for line in saved} == {(t, m) for t in bench.TASKS for m in models}
    for line in saved:
        assert 0 <= line["test_roc_auc"] <= 1 and line["test_positives"] > 0, line["model"]
        if line["task"] == "click":
            assert line["heldout_users_roc_auc"] is not None and 0 <= line["test_candidate_hr@10"] <= 1
    conversion = next(line for line in saved if line["task"] == "item-conversion")
    assert len(conversion["cutoffs"]["test_cutoffs"]) == 3  # pooled test days
    click = next(line for line in saved if line["task"] == "click")
    assert click["cutoffs"]["train_cutoffs"][-1] + 86_400 == click["cutoffs"]["validation_cutoff"]
    assert click["cutoffs"]["validation_cutoff"] == bench.local_midnight("2017-12-02", 8)
    for task in bench.TASKS:
        assert (output.parent / f"purchase_taobao_reliability_{task}.png").stat().st_size > 0
    pretraining = json.loads((tmp_path / "work" / "pretraining.json").read_text())
    assert (output.parent / "purchase_pretraining.jsonl").exists()
    assert set(pretraining["daily"]["validation_ndcg@10"]) == {"seqbert", "popularity", "markov"}
    assert "Targets" in (tmp_path / "work" / "table.md").read_text()
    card = (tmp_path / "work" / "runs" / "click-seqbert_pretrained-0" / "README.md").read_text()
    assert "## Comparison on the benchmark protocol" in card and "| **seqbert_pretrained** |" in card and "| lightgbm |" in card

    # The pretraining-leak diagnostic reads the same work dir.
    diagnostic = load_script("diag_pretraining_leak").main(["--work-dir", str(tmp_path / "work"), "--tasks", "click", "--seeds", "0"])
    assert [line["features"] for line in diagnostic] == ["features", "features + pretrained"]
    assert all(0 <= line["test_roc_auc"] <= 1 for line in diagnostic)
