"""Sampled-user validation / test (--max_eval_users, --max_test_users): seeded, labelled, exact on its users."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

from seqbert import SeqBertForMaskedBehaviorModeling
from seqbert.baselines import fit_next_item_baselines
from seqbert.collators import DataCollatorWithLeftPadding
from seqbert.evaluation import evaluate_scorer, model_scorer, sample_users
from seqbert.prepared import PreparedData, encode_for_next_item
from seqbert.training import pretrain
from seqbert.training.loop import read_log

from .synthetic_prepared import prepare_synthetic_temporal

TINY = ["--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "24"]


def test_sample_is_seeded_sorted_and_without_replacement():
    indices, label = sample_users(1000, 50, seed=7)
    again, _ = sample_users(1000, 50, seed=7)
    other, _ = sample_users(1000, 50, seed=8)
    np.testing.assert_array_equal(indices, again)
    assert not np.array_equal(indices, other)
    assert len(np.unique(indices)) == 50 and np.all(np.diff(indices) > 0) and 0 <= indices[0] and indices[-1] < 1000
    assert label == "uniform without replacement, 50 of 1000 users, seed 7"
    assert sample_users(1000, None, seed=7) == (None, "all users")
    assert sample_users(1000, 1000, seed=7) == (None, "all users")
    with pytest.raises(ValueError, match="max_users"):
        sample_users(1000, 0, seed=7)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return prepare_synthetic_temporal(tmp_path_factory.mktemp("user_sampling"), num_users=300, seed=11)


def test_pretraining_validates_on_a_labelled_user_sample(prepared, tmp_path):
    output = tmp_path / "model"
    summary = pretrain.main([
        "--data_dir", str(prepared), "--output_dir", str(output), "--max_length", "16", "--num_epochs", "2",
        "--per_device_batch_size", "32", "--max_eval_users", "20", "--max_test_users", "15", "--eval_users_seed", "3",
        "--eval_item_chunk_size", "30", *TINY,
    ])  # fmt: skip
    data = PreparedData.load(prepared)
    num_validation, num_test = data.splits["validation"].num_rows, data.splits["test"].num_rows
    assert num_validation > 20 and num_test > 15
    saved = json.loads((output / "results.json").read_text())
    for record in (summary, saved):
        assert record["validation_users"] == 20 and record["test_users"] == 15
        assert record["validation_user_sampling"] == f"uniform without replacement, 20 of {num_validation} users, seed 3"
        assert record["test_user_sampling"] == f"uniform without replacement, 15 of {num_test} users, seed 3"
    logged = json.loads((output / "logs" / "config.json").read_text())
    assert logged["validation_users"] == 20 and logged["max_eval_users"] == 20
    validations = [r for r in read_log(output) if "val_ndcg@10" in r]
    assert len(validations) == 2 and all(r["val_count"] == 20 for r in validations)

    # The same metrics by hand: the saved model, the same users, the unchunked full-ranking evaluator.
    model = SeqBertForMaskedBehaviorModeling.from_pretrained(output).eval()
    baselines = fit_next_item_baselines(data.splits["train"], data.tokenizer)
    for split, max_users in (("validation", 20), ("test", 15)):
        indices, _ = sample_users(data.splits[split].num_rows, max_users, seed=3)
        rows = encode_for_next_item(data.splits[split].select(indices), data.tokenizer, 16)
        loader = DataLoader(rows, batch_size=7, collate_fn=DataCollatorWithLeftPadding())
        for name, scorer in (("seqbert", model_scorer(model)), ("popularity", baselines["popularity"])):
            expected = evaluate_scorer(scorer, loader, num_special_tokens=data.tokenizer.num_special_tokens)
            assert saved["metrics"][split][name] == pytest.approx(expected, abs=1e-6)


def test_default_is_all_users_and_labelled(prepared, tmp_path):
    summary = pretrain.main([
        "--data_dir", str(prepared), "--output_dir", str(tmp_path / "all"), "--max_length", "16", "--max_steps", "2",
        "--per_device_batch_size", "32", *TINY,
    ])  # fmt: skip
    data = PreparedData.load(prepared)
    assert summary["validation_users"] == data.splits["validation"].num_rows
    assert summary["validation_user_sampling"] == summary["test_user_sampling"] == "all users"
    assert summary["metrics"]["test"]["seqbert"]["count"] == data.splits["test"].num_rows
