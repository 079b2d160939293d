"""The bidirectional model's auxiliary left-to-right next-item loss (--next_item_loss_weight): the
collator's extra targets, the loss the model adds, the pretraining command with it, and the
"mask+causal" next-item query that scores with both passes (--next_item_query)."""

from __future__ import annotations

import json

import pytest
import torch

from seqbert import SeqBertConfig, SeqBertForMaskedBehaviorModeling, cli
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


def as_causal(model: SeqBertForMaskedBehaviorModeling) -> SeqBertForMaskedBehaviorModeling:
    """The same weights loaded as a causal (SASRec-style) model."""
    config = SeqBertConfig(**{**model.config.to_dict(), "attention_type": "causal", "next_item_loss_weight": 0.0,
                              "next_item_query": "mask"})  # fmt: skip
    causal = SeqBertForMaskedBehaviorModeling(config).eval()
    causal.load_state_dict(model.state_dict())
    return causal


def query_batch() -> dict[str, torch.Tensor]:
    """ROWS with the appended [MASK] (id 1), left-padded, as the tokenizer encodes histories for inference."""
    width = max(len(row) for row in ROWS) + 1
    input_ids = torch.zeros(len(ROWS), width, dtype=torch.long)
    for i, row in enumerate(ROWS):
        input_ids[i, width - len(row) - 1 :] = torch.tensor([*row, 1])
    attention_mask = (input_ids != 0).long()
    return {"input_ids": input_ids, "behavior_ids": attention_mask * 2, "time_ids": attention_mask * 3,
            "attention_mask": attention_mask}  # fmt: skip


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
    causal = as_causal(model)
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


def test_causal_and_mask_causal_queries_match_the_causal_model_with_the_same_weights():
    model = tiny_model(next_item_loss_weight=1.0).eval()
    batch = query_batch()
    bidirectional = model.next_item_queries(**batch)
    causal = as_causal(model).next_item_queries(**batch)
    assert not torch.allclose(bidirectional, causal, atol=1e-3)
    model.set_next_item_query("causal")
    assert torch.allclose(model.next_item_queries(**batch), causal, atol=1e-6)
    model.set_next_item_query("mask+causal")
    assert torch.allclose(model.next_item_queries(**batch), (bidirectional + causal) / 2, atol=1e-6)
    # Scores are linear in the query: the mean of both passes' logits.
    weights, bias = model.item_output_weights(), model.item_output_bias()
    expected = ((bidirectional @ weights.T + bias) + (causal @ weights.T + bias)) / 2
    assert torch.allclose(model.next_item_scores(**batch), expected, atol=1e-5)


def test_next_item_query_is_validated_and_saved(tmp_path):
    with pytest.raises(ValueError, match="must be one of"):
        SeqBertConfig(next_item_query="last")
    for query in ("causal", "mask+causal"):
        with pytest.raises(ValueError, match="bidirectional model only"):
            SeqBertConfig(attention_type="causal", next_item_query=query)
    model = tiny_model()
    with pytest.raises(ValueError, match="must be one of"):
        model.set_next_item_query("last")
    model.set_next_item_query("mask+causal")
    model.save_pretrained(tmp_path)
    assert SeqBertForMaskedBehaviorModeling.from_pretrained(tmp_path).config.next_item_query == "mask+causal"
    assert tiny_model().config.next_item_query == "mask"  # BERT4Rec's query by default


def test_pretrain_trains_and_logs_the_auxiliary_loss(tmp_path, capsys):
    prepared = prepare_synthetic_temporal(tmp_path / "data", num_users=120, seed=5)
    output = tmp_path / "model"
    summary = pretrain.main([
        "--data_dir", str(prepared), "--output_dir", str(output), "--max_length", "16", "--max_steps", "4",
        "--per_device_batch_size", "16", "--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "2",
        "--intermediate_size", "24", "--next_item_loss_weight", "0.5", "--logging_steps", "1",
        "--next_item_query", "mask+causal",
    ])  # fmt: skip
    assert summary["global_step"] == 4
    config = json.loads((output / "config.json").read_text())
    assert config["next_item_loss_weight"] == 0.5 and config["next_item_query"] == "mask+causal"
    # `seqbert evaluate` ranks with the folder's query unless told otherwise, and says which.
    capsys.readouterr()
    for option, query in (([], "mask+causal"), (["--next-item-query", "mask"], "mask")):
        assert cli.main(["evaluate", str(output), "--data-dir", str(prepared), "--split", "validation", *option]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["next_item_query"] == query and 0 <= result["metrics"]["seqbert"]["ndcg@10"] <= 1
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
