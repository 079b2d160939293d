"""Classifier.predict_proba and the behavior-classification pipeline score every task's rows from raw events
exactly as fine-tuning's evaluation (and scripts/bench_purchase.py) scores them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seqbert import BehaviorTokenizer, SeqBertForSequenceClassification
from seqbert.inference import Classifier, InvalidEventsError
from seqbert.prepared import PreparedData
from seqbert.training import finetune

from .synthetic_prepared import prepare_synthetic_temporal

TINY = ["--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "24"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return prepare_synthetic_temporal(tmp_path_factory.mktemp("classifier"), num_users=150, seed=9)


def raw_events(rows) -> list[list[dict]]:
    return [
        [{"item_id": i, "event_type": e, "timestamp": t, "category": c}
         for i, e, t, c in zip(row["item_ids"], row["event_types"], row["timestamps"], row["categories"])]
        for row in rows
    ]  # fmt: skip


CASES = [
    ("user-purchase", []), ("item-conversion", []), ("click", []),
    ("user-purchase", ["--tabular_features", "--utc_offset_hours", "8"]), ("click", ["--tabular_features", "--utc_offset_hours", "8"]),
    # prior corrections (a share of the negatives, class weights) are folded into the saved classifier's bias
    ("item-conversion", ["--train_negative_rate", "0.3", "--class_weighting"]),
    # from a checkpoint with a longer context than fine-tuning encodes: inference must keep fine-tuning's length
    ("click", ["--model_name_or_path", "PRETRAINED"]),
]  # fmt: skip


@pytest.fixture(scope="module")
def pretrained(prepared, tmp_path_factory) -> Path:
    from seqbert import SeqBertConfig, SeqBertForMaskedBehaviorModeling

    tokenizer = PreparedData.load(prepared).tokenizer
    torch.manual_seed(0)
    config = SeqBertConfig(
        vocab_size=tokenizer.vocab_size, num_special_tokens=tokenizer.num_special_tokens, num_behaviors=tokenizer.num_behaviors,
        num_time_buckets=tokenizer.num_time_buckets, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=24, max_position_embeddings=40,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("pretrained")
    SeqBertForMaskedBehaviorModeling(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("task", "options"), CASES)
def test_raw_event_scoring_equals_the_evaluation_path(prepared, pretrained, tmp_path, task, options):
    tabular = "--tabular_features" in options
    options = [str(pretrained) if option == "PRETRAINED" else option for option in options]
    output = tmp_path / task
    finetune.main([
        "--data_dir", str(prepared), "--output_dir", str(output), "--task", task, "--max_steps", "3", "--seed", "0",
        "--max_length", "12", "--per_device_batch_size", "32", "--bootstrap_resamples", "0", "--report_to", "jsonl",
        "--no_tabular_baseline", "--num_train_cutoffs", "2", "--learning_rate", "1e-2", *TINY,
        *options,
    ])  # fmt: skip
    data = PreparedData.load(prepared)
    labelled, _ = finetune.label_splits(data, None, task, num_train_cutoffs=2)
    test = labelled["test"]
    evaluated = torch.sigmoid(torch.as_tensor(np.load(output / "predictions.npz")["test_logits"])).numpy()

    model = SeqBertForSequenceClassification.from_pretrained(output).eval()
    tokenizer = BehaviorTokenizer.from_pretrained(output)
    assert bool(model.config.num_tabular_features) == tabular
    np.testing.assert_allclose(finetune.predict_task_rows(model, tokenizer, test, sequences=data.sequences), evaluated, atol=1e-5)
    if tabular:
        from seqbert.data.features import labelled_features

        raw = labelled_features(data.sequences, test, utc_offset_seconds=8 * 3600)[0]
        tabular_inputs = {"tabular_features": raw}
        with pytest.raises(ValueError, match="pass the event log"):
            finetune.predict_task_rows(model, tokenizer, test)
    else:
        tabular_inputs = {}

    classifier = Classifier.from_pretrained(str(output))
    candidates = dict(tabular_inputs)
    if task != "user-purchase":
        candidates.update(candidates=test["candidate_item_id"], candidate_categories=test["candidate_category"],
                          candidate_events=test["candidate_events"])  # fmt: skip
    probabilities = classifier.predict_proba(raw_events(test), test["cutoff"], **candidates)
    np.testing.assert_allclose(probabilities, evaluated, atol=1e-5)
    capped = finetune.query_gaps(test) > model.config.max_query_gap_seconds
    if task == "user-purchase":
        assert capped.any()  # the cap is exercised: later cutoffs have longer gaps than training saw

    if tabular:
        return  # the pipeline scores raw events alone; tabular models go through Classifier / predict_task_rows
    from transformers import pipeline

    classify = pipeline("behavior-classification", model=str(output), device="cpu")
    row = test[0]
    extra = {} if task == "user-purchase" else {"candidate": row["candidate_item_id"], "candidate_category": row["candidate_category"],
                                                 "candidate_events": row["candidate_events"]}  # fmt: skip
    result = classify(raw_events([row])[0], query_timestamp=row["cutoff"], top_k=None, **extra)
    positive = model.config.id2label[1]
    assert {r["label"]: r["score"] for r in result}[positive] == pytest.approx(evaluated[0], abs=1e-5)
    if task != "user-purchase":
        with pytest.raises(InvalidEventsError, match="pass candidates"):
            classifier.predict_proba(raw_events([row])[0], row["cutoff"])


def test_a_checkpoint_with_another_vocabulary_is_refused(prepared, tmp_path):
    other = prepare_synthetic_temporal(tmp_path / "other", num_users=60, seed=10)  # another log: other item ids
    from seqbert import SeqBertConfig, SeqBertForMaskedBehaviorModeling

    tokenizer = PreparedData.load(other).tokenizer
    config = SeqBertConfig(vocab_size=tokenizer.vocab_size, num_special_tokens=tokenizer.num_special_tokens,
                           num_behaviors=tokenizer.num_behaviors, num_time_buckets=tokenizer.num_time_buckets,
                           hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24)  # fmt: skip
    folder = tmp_path / "pretrained-elsewhere"
    SeqBertForMaskedBehaviorModeling(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    with pytest.raises(ValueError, match="another vocabulary"):
        finetune.main(["--data_dir", str(prepared), "--output_dir", str(tmp_path / "out"), "--task", "click",
                       "--model_name_or_path", str(folder), "--max_steps", "1", "--no_tabular_baseline", *TINY])  # fmt: skip
