"""scripts/bench_explain.py end to end on tiny random models over synthetic prepared folders (a few rows)."""

from __future__ import annotations

import json

import torch

import seqbert
from seqbert.data.synthetic import SyntheticConfig, generate_events, write_events
from seqbert.prepare import PrepareOptions, prepare_file
from seqbert.prepared import PreparedData

from .script_modules import load_script
from .synthetic_prepared import prepare_synthetic_temporal
from .test_inference import tiny_config

KEYS = {"model", "k", "drop_top", "drop_random", "drop_recent", "rows", "seconds_per_explanation"}


def save_model(model, tokenizer, folder):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_bench_explain_writes_its_lines_and_plots(tmp_path):
    events = write_events(generate_events(SyntheticConfig(num_users=40, num_items=30, seed=2)), tmp_path / "events.parquet")
    loo = prepare_file(events, PrepareOptions(max_length=16, min_user_events=3), output_dir=tmp_path / "loo").tokenizer
    temporal = prepare_synthetic_temporal(tmp_path / "temporal", num_users=40, seed=3, num_items=30)
    torch.manual_seed(0)
    recommender = save_model(seqbert.SeqBertForMaskedBehaviorModeling(tiny_config(loo)), loo, tmp_path / "mlm")
    tokenizer = PreparedData.load(temporal).tokenizer
    config = tiny_config(tokenizer, num_labels=2, finetuning_task="user-purchase")
    classifier = save_model(seqbert.SeqBertForSequenceClassification(config), tokenizer, tmp_path / "clf")
    output = tmp_path / "out" / "faithfulness.jsonl"
    output.parent.mkdir()
    output.write_text('{"stale": true}\n')  # replaced, never appended to
    bench = load_script("bench_explain")
    lines = bench.main([
        "--next-item-model", str(recommender), "--next-item-data", str(tmp_path / "loo"), "--classifier-model", str(classifier),
        "--classifier-data", str(temporal), "--horizon-days", "3", "--rows", "6", "--max-k", "3", "--draws", "2",
        "--plot", str(tmp_path / "out" / "curves.png"), "--example-dir", str(tmp_path / "out"),
    ] + ["--output", str(output)])  # fmt: skip
    saved = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(saved) == len(lines) == 4 and all(KEYS <= set(line) for line in saved)  # k = 1, 3 per model
    assert {(line["model"], line["k"]) for line in saved} == {(m, k) for m in ("beauty-next-item", "taobao-user-purchase") for k in (1, 3)}
    assert all(line["residual_share_of_change_p95"] < 0.01 for line in saved)
    for name in ("curves.png", "explain_example_beauty-next-item.png", "explain_example_taobao-user-purchase.png"):
        assert (tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG"
