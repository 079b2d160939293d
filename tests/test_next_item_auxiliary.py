"""The bidirectional model's auxiliary left-to-right next-item loss (--next_item_loss_weight): the
collator's extra targets, the loss the model adds, and the pretraining command with it."""

from __future__ import annotations

import json

import pytest
import torch

from seqbert import SeqBertConfig, SeqBertForMaskedBehaviorModeling
from seqbert.collators import (
    DataCollatorForMaskedBehaviorModeling,
    DataCollatorForNextItemPrediction,
    DataCollatorWithNextItemTargets,
)
from seqbert.training import pretrain
from seqbert.training.loop import read_log

from .synthetic_prepared import prepare_synthetic_temporal

SPECIAL = 5
VOCAB = SPECIAL + 40


def features(rows: list[list[int]]) -> list[dict[str, list[int]]]:
    return [
        {"input_ids": row, "behavior_ids": [2 + i % 3 for i in range(len(row))], "time_ids": [3] * len(row), "row_id": k}
        for k, row in enumerate(rows)
    ]


def collator(seed: int = 0) -> DataCollatorWithNextItemTargets:
    cloze = DataCollatorForMaskedBehaviorModeling(
        num_special_tokens=SPECIAL, vocab_size=VOCAB, mask_token_id=1, mask_prob=0.4, seed=seed
    )
    return DataCollatorWithNextItemTargets(cloze, DataCollatorForNextItemPrediction(num_special_tokens=SPECIAL))


def tiny_model(**overrides) -> SeqBertForMaskedBehaviorModeling:
    torch.manual_seed(0)
    config = SeqBertConfig(
        vocab_size=VOCAB, num_special_tokens=SPECIAL, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        **overrides,
    )  # fmt: skip
    return SeqBertForMaskedBehaviorModeling(config)


ROWS = [[6, 7, 8, 9, 10], [11, 12], [13, 14, 15, 16, 17, 18, 19]]


def test_collator_adds_the_unmasked_rows_as_next_item_targets():
    rows = features(ROWS)
    batch = collator()(rows)
    alone = DataCollatorForNextItemPrediction(num_special_tokens=SPECIAL)(rows)
    for name in ("input_ids", "behavior_ids", "time_ids", "attention_mask", "labels"):
        assert torch.equal(batch[f"next_item_{name}"], alone[name]), name
    assert "next_item_behavior_labels" not in batch
    # The Cloze part is exactly what the Cloze collator alone gives (same seed, same rows).
    cloze = collator().cloze(rows)
    for name, value in cloze.items():
        assert torch.equal(batch[name], value), name
    # Every event after the first of each row is a next-item target, in order.
    labels = batch["next_item_labels"]
    assert [labels[i][labels[i] != -100].tolist() for i in range(len(ROWS))] == [row[1:] for row in ROWS]


def test_collator_delegates_epoch_and_state_to_the_cloze_collator():
    wrapped = collator(seed=3)
    wrapped.set_epoch(4)
    assert wrapped.cloze.epoch == 4
    assert wrapped.state_dict() == wrapped.cloze.state_dict()
    known = torch.tensor([0, 1, 5]).numpy()
    assert (wrapped.expected_labels_per_row(known) == wrapped.cloze.expected_labels_per_row(known)).all()


def test_auxiliary_loss_is_the_causal_models_loss_with_the_same_weights():
    batch = collator()(features(ROWS))
    model = tiny_model(next_item_loss_weight=0.5).eval()
    out = model(**batch)
    # The same weights as a causal model, on the next-item part of the batch alone.
    causal = SeqBertForMaskedBehaviorModeling(SeqBertConfig(**{**model.config.to_dict(), "attention_type": "causal",
                                                               "next_item_loss_weight": 0.0})).eval()  # fmt: skip
    causal.load_state_dict(model.state_dict())
    next_only = {name.removeprefix("next_item_"): value for name, value in batch.items() if name.startswith("next_item_")}
    expected = causal(**next_only).item_loss
    assert torch.allclose(out.next_item_loss, expected, atol=1e-6)
    cloze_only = {name: value for name, value in batch.items() if not name.startswith("next_item_")}
    base = model(**cloze_only)
    assert base.next_item_loss is None
    assert torch.allclose(out.loss, base.loss + 0.5 * expected, atol=1e-6)


def test_auxiliary_loss_is_off_by_default_and_trains_every_layer():
    batch = collator()(features(ROWS))
    off = tiny_model()(**batch)
    assert off.next_item_loss is None
    model = tiny_model(next_item_loss_weight=1.0).train()
    out = model(**batch)
    out.next_item_loss.backward()
    for name, parameter in model.seqbert.named_parameters():
        if name.startswith("layers."):
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_auxiliary_loss_is_refused_for_the_causal_model():
    with pytest.raises(ValueError, match="bidirectional model only"):
        SeqBertConfig(attention_type="causal", next_item_loss_weight=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        SeqBertConfig(next_item_loss_weight=-1.0)


def test_pretrain_trains_and_logs_the_auxiliary_loss(tmp_path):
    prepared = prepare_synthetic_temporal(tmp_path / "data", num_users=120, seed=5)
    output = tmp_path / "model"
    summary = pretrain.main([
        "--data_dir", str(prepared), "--output_dir", str(output), "--max_length", "16", "--max_steps", "4",
        "--per_device_batch_size", "16", "--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "2",
        "--intermediate_size", "24", "--next_item_loss_weight", "0.5", "--logging_steps", "1",
    ])  # fmt: skip
    assert summary["global_step"] == 4
    assert json.loads((output / "config.json").read_text())["next_item_loss_weight"] == 0.5
    logged = [record for record in read_log(output) if "next_item_loss" in record]
    assert len(logged) == 4 and all(record["next_item_loss"] > 0 for record in logged)
    # Continuing from the folder: this run's option decides the objective (here: off again).
    pretrain.main([
        "--data_dir", str(prepared), "--output_dir", str(tmp_path / "continued"), "--max_length", "16", "--max_steps", "1",
        "--per_device_batch_size", "16", "--init_from", str(output),
    ])  # fmt: skip
    assert json.loads((tmp_path / "continued" / "config.json").read_text())["next_item_loss_weight"] == 0.0
    assert not any("next_item_loss" in record for record in read_log(tmp_path / "continued"))
    with pytest.raises(ValueError, match="label_weighting batch only"):
        pretrain.main([
            "--data_dir", str(prepared), "--output_dir", str(tmp_path / "refused"), "--max_steps", "1",
            "--next_item_loss_weight", "0.5", "--label_weighting", "dataset",
        ])  # fmt: skip
