"""Fine-tuning for item-conversion and click: candidate as the query token, outputs, reload, raw-event API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seqbert.prepared import PreparedData
from seqbert.training import finetune

from .synthetic_prepared import prepare_synthetic_temporal

TINY = ["--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "24"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return prepare_synthetic_temporal(tmp_path_factory.mktemp("tasks"), num_users=200, seed=5)


def test_candidate_is_the_query_token(prepared):
    data = PreparedData.load(prepared)
    labelled, cutoffs = finetune.label_splits(data, None, "item-conversion")
    assert cutoffs["train_cutoff"] == cutoffs["validation_cutoff"] - cutoffs["horizon_seconds"]
    rows = labelled["test"].select(range(min(20, labelled["test"].num_rows)))
    encoded = finetune.encode_task_rows(rows, data.tokenizer, 16)
    plain = finetune.encode_task_rows(rows.remove_columns(["candidate_item_id", "candidate_category"]), data.tokenizer, 16)
    candidates = data.tokenizer.item_token_ids(rows["candidate_item_id"])
    for row, base, candidate in zip(encoded, plain, candidates):
        assert row["input_ids"][-1] == candidate and base["input_ids"][-1] == data.tokenizer.mask_token_id
        assert row["input_ids"][:-1] == base["input_ids"][:-1]
        assert row["behavior_ids"] == base["behavior_ids"] and row["time_ids"] == base["time_ids"]


def test_click_finetune_end_to_end(prepared, tmp_path):
    output = tmp_path / "click"
    summary = finetune.main([
        "--data_dir", str(prepared), "--output_dir", str(output), "--task", "click", "--max_steps", "4",
        "--max_length", "16", "--per_device_batch_size", "32", "--bootstrap_resamples", "20", "--report_to", "jsonl", *TINY,
    ])  # fmt: skip
    counts = summary["label_counts"]
    assert 0 < counts["test"]["positives"] < counts["test"]["examples"] <= 5 * counts["test"]["positives"]
    assert summary["query_token"] == "candidate item" and "gauc" in summary["calibration"]["seqbert"]["calibrated"]
    saved = json.loads((output / "results.json").read_text())
    assert saved["cutoffs"] == summary["cutoffs"]
    assert {"logistic_regression", "lightgbm"} <= set(saved["metrics"]["test"])
    assert "Click Prediction" in (output / "README.md").read_text()

    from transformers import AutoModelForSequenceClassification

    import seqbert  # noqa: F401  (registers the Auto classes)
    from seqbert import BehaviorTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(output).eval()
    assert model.config.finetuning_task == "click"
    assert model.config.candidate_match and model.config.candidate_popularity  # the item-task defaults, saved
    assert summary["candidate_inputs"] == {"candidate_match": True, "candidate_popularity": True}
    tokenizer = BehaviorTokenizer.from_pretrained(output)
    predictions = np.load(output / "predictions.npz")
    data = PreparedData.load(prepared)
    labelled, _ = finetune.label_splits(data, None, "click")
    test = labelled["test"].select(range(8))
    histories = [
        [{"item_id": i, "event_type": e, "timestamp": t, "category": c}
         for i, e, t, c in zip(row["item_ids"], row["event_types"], row["timestamps"], row["categories"])]
        for row in test
    ]  # fmt: skip
    probs = finetune.predict_candidates(
        model, tokenizer, histories, test["candidate_item_id"], test["cutoff"],
        candidate_categories=test["candidate_category"], candidate_events=test["candidate_events"],
    )  # fmt: skip
    expected = torch.sigmoid(torch.as_tensor(predictions["test_logits"][:8])).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_array_equal(predictions["test_labels"][:8], test["label"])


def test_query_gap_is_capped_at_the_longest_training_gap(prepared):
    """Regression (issue 5): the query token's time id is log2(gap to the cutoff). Later cutoffs admit
    longer gaps than the training cutoff, so validation / test rows used to carry gap buckets that
    fine-tuning never saw (on the Taobao slice: bucket 15 on 26 % of test rows, all long-inactive
    users); their untrained embedding scored exactly the least likely converters highest, and
    SeqBERT's test ROC-AUC came out consistently below 0.5."""
    from datasets import Dataset

    data = PreparedData.load(prepared)
    tokenizer = data.tokenizer
    rows = Dataset.from_dict({
        "user_id": ["a", "b", "c"], "item_ids": [["x"], ["x", "y"], []], "event_types": [["view"], ["view", "view"], []],
        "timestamps": [[0], [0, 50], []], "cutoff": [100, 10_000, 10_000], "label": [0, 1, 0],
    })  # fmt: skip
    np.testing.assert_array_equal(finetune.query_gaps(rows), [100, 9_950, -1])
    capped = finetune.encode_task_rows(rows, tokenizer, 16, max_query_gap=100)
    raw = finetune.encode_task_rows(rows, tokenizer, 16)
    bucket_100 = int(tokenizer.gap_bucket_ids(np.array([100]))[0])
    assert [row["time_ids"][-1] for row in capped][:2] == [bucket_100, bucket_100]
    assert raw[1]["time_ids"][-1] > bucket_100  # uncapped: a bucket the 100 s training gap never produces
    assert capped[2]["time_ids"] == raw[2]["time_ids"]  # empty history: untouched
    for a, b in zip(capped, raw):  # only the query's time id changes
        assert a["input_ids"] == b["input_ids"] and a["behavior_ids"] == b["behavior_ids"]
        assert a["time_ids"][:-1] == b["time_ids"][:-1] and a["labels"] == b["labels"]

    # On prepared data: no validation / test query time id beyond the longest training one.
    labelled, _ = finetune.label_splits(data, None, "user-purchase")
    encoded, cap = finetune.encode_splits(labelled, tokenizer, 16)
    assert cap == int(finetune.query_gaps(labelled["train"]).max())
    longest = max(row["time_ids"][-1] for row in encoded["train"])
    for split in ("validation", "test"):
        assert max(row["time_ids"][-1] for row in encoded[split]) <= longest, split
        assert encoded[split]["labels"] == labelled[split]["label"]  # row order unchanged


def test_saved_predictions_are_the_labelled_rows_in_order(prepared, tmp_path):
    """Row alignment (checked while debugging issue 5): predictions.npz holds the labelled rows' labels and
    user ids in order, the run records the query-gap cap, and recency alone (minus the query gap of the
    same rows) ranks the test labels above chance."""
    output = tmp_path / "purchase"
    summary = finetune.main([
        "--data_dir", str(prepared), "--output_dir", str(output), "--task", "user-purchase", "--max_steps", "2",
        "--max_length", "16", "--per_device_batch_size", "32", "--bootstrap_resamples", "0", "--report_to", "jsonl",
        "--no_tabular_baseline", *TINY,
    ])  # fmt: skip
    data = PreparedData.load(prepared)
    labelled, _ = finetune.label_splits(data, None, "user-purchase")
    assert summary["max_query_gap_seconds"] == int(finetune.query_gaps(labelled["train"]).max())
    saved = np.load(output / "predictions.npz")
    for split in ("validation", "test"):
        np.testing.assert_array_equal(saved[f"{split}_labels"], labelled[split]["label"])
        expected_groups = [f"{user}@{cutoff}" for user, cutoff in zip(labelled[split]["user_id"], labelled[split]["cutoff"])]
        np.testing.assert_array_equal(saved[f"{split}_groups"], expected_groups)  # GAUC groups: user and cutoff
    from seqbert.metrics.functional import roc_auc

    test = labelled["test"]
    y = np.asarray(test["label"])
    if 0 < y.sum() < len(y):
        assert roc_auc(y, -finetune.query_gaps(test).astype(float)) > 0.5


def test_freeze_encoder_trains_only_the_head(prepared, tmp_path):
    """--freeze_encoder: after 1 or 3 steps the encoder is still its (seeded) initial weights, the head is not."""
    from safetensors.torch import load_file

    weights = {}
    for steps in (1, 3):
        output = tmp_path / f"frozen{steps}"
        finetune.main([
            "--data_dir", str(prepared), "--output_dir", str(output), "--task", "click", "--max_steps", str(steps),
            "--max_length", "16", "--per_device_batch_size", "32", "--bootstrap_resamples", "0", "--freeze_encoder",
            "--learning_rate", "1e-2", "--no_tabular_baseline", "--report_to", "none", *TINY,
        ])  # fmt: skip
        weights[steps] = load_file(output / "model.safetensors")
    encoder = [name for name in weights[1] if name.startswith("seqbert.")]
    head = [name for name in weights[1] if not name.startswith("seqbert.")]
    assert encoder and head
    for name in encoder:
        torch.testing.assert_close(weights[1][name], weights[3][name], rtol=0, atol=0, msg=name)
    assert any(not torch.equal(weights[1][name], weights[3][name]) for name in head)
