"""Packed batches (padding skipped) compute what the padded layout computes, outputs and gradients."""

from __future__ import annotations

import pytest
import torch

import seqbert.modeling_seqbert as modeling
from seqbert import SeqBertConfig, SeqBertForMaskedBehaviorModeling, SeqBertForSequenceClassification
from seqbert.export import NextItemScorer
from seqbert.modeling_seqbert import PackedBatch

VOCAB, LENGTH, BATCH = 60, 20, 40


@pytest.fixture(autouse=True)
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _small_groups(monkeypatch):
    """Groups of 7 rows, so a batch of 40 spans several groups (one of them partial)."""
    monkeypatch.setattr(modeling, "PACK_ROWS_PER_GROUP", 7)


def config(**overrides) -> SeqBertConfig:
    return SeqBertConfig(
        vocab_size=VOCAB, hidden_size=32, num_attention_heads=4, intermediate_size=64, max_position_embeddings=LENGTH,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **overrides,
    )  # fmt: skip


def batch(padding: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Mostly short rows and a few long ones, padded on the left, the right, or at random positions."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 5, (BATCH,), generator=generator)
    lengths[::9] = torch.randint(10, LENGTH + 1, (len(lengths[::9]),), generator=generator)
    positions = torch.arange(LENGTH)[None, :]
    if padding == "left":
        mask = positions >= LENGTH - lengths[:, None]
    elif padding == "right":
        mask = positions < lengths[:, None]
    else:  # scattered: each row keeps a random subset of positions
        mask = torch.rand(BATCH, LENGTH, generator=generator).argsort(-1).argsort(-1) < lengths[:, None]
    mask = mask.long()
    return {
        "input_ids": torch.randint(5, VOCAB, (BATCH, LENGTH), generator=generator) * mask,
        "behavior_ids": torch.randint(2, 8, (BATCH, LENGTH), generator=generator) * mask,
        "time_ids": torch.randint(2, 26, (BATCH, LENGTH), generator=generator) * mask,
        "attention_mask": mask,
    }


def padded_layout(monkeypatch) -> None:
    """Force the padded computation (packing is never worthwhile)."""
    monkeypatch.setattr(modeling, "PACK_MIN_PADDING_SHARE", 2.0)


def test_mostly_padded_batches_are_packed_and_full_ones_not():
    inputs = batch("left")
    assert PackedBatch.worthwhile(inputs["attention_mask"])
    assert not PackedBatch.worthwhile(torch.ones(4, 6, dtype=torch.long))


def test_pack_unpack_round_trip():
    mask = batch("scattered")["attention_mask"]
    packed = PackedBatch(mask, causal=False)
    values = torch.randn(BATCH, LENGTH, 3)
    assert packed.pack(values).shape == (int(mask.sum()), 3)
    torch.testing.assert_close(packed.unpack(packed.pack(values)), values * mask[..., None])


@pytest.mark.parametrize("padding", ["left", "right", "scattered"])
@pytest.mark.parametrize("causal", [False, True])
def test_encoder_outputs_equal_padded_layout(monkeypatch, padding, causal):
    torch.manual_seed(0)
    model = SeqBertForMaskedBehaviorModeling(config()).eval()
    inputs = batch(padding)
    with torch.no_grad():
        packed = model.seqbert(**inputs, causal=causal, output_hidden_states=True)
        padded_layout(monkeypatch)
        padded = model.seqbert(**inputs, causal=causal, output_hidden_states=True)
    real = inputs["attention_mask"].bool()
    for packed_states, padded_states in zip(packed.hidden_states, padded.hidden_states):
        torch.testing.assert_close(packed_states[real], padded_states[real], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed.last_hidden_state[real], padded.last_hidden_state[real], rtol=1e-5, atol=1e-5)
    assert (packed.last_hidden_state[~real] == 0).all()  # no head reads padding positions


def test_training_loss_and_gradients_equal_padded_layout(monkeypatch):
    """The joint objective (Cloze + left-to-right next item), as pretraining computes it."""
    torch.manual_seed(0)
    model = SeqBertForMaskedBehaviorModeling(config(next_item_loss_weight=2.0)).train()
    inputs = batch("left", seed=1)
    real = inputs["attention_mask"].bool()
    labels = torch.where(real & (torch.rand(BATCH, LENGTH) < 0.4), inputs["input_ids"], -100)
    # Each real event's label is the next event; padding and each row's last event have none.
    next_labels = torch.where(real, inputs["input_ids"].roll(-1, dims=1), -100)
    next_labels[:, -1] = -100
    arguments = {**inputs, "labels": labels, **{f"next_item_{k}": v for k, v in inputs.items()}}
    arguments["next_item_labels"] = next_labels

    def loss_and_gradients():
        model.zero_grad()
        loss = model(**arguments).loss
        loss.backward()
        return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    packed_loss, packed_gradients = loss_and_gradients()
    padded_layout(monkeypatch)
    padded_loss, padded_gradients = loss_and_gradients()
    torch.testing.assert_close(packed_loss, padded_loss, rtol=1e-5, atol=1e-6)
    assert packed_gradients.keys() == padded_gradients.keys()
    for name, gradient in packed_gradients.items():
        torch.testing.assert_close(gradient, padded_gradients[name], rtol=1e-4, atol=1e-6, msg=name)


def test_classifier_with_candidate_inputs_equals_padded_layout(monkeypatch):
    """Extra per-token embeddings (candidate match) are packed with the ids."""
    torch.manual_seed(0)
    model = SeqBertForSequenceClassification(config(num_labels=2, candidate_match=True)).eval()
    inputs = batch("left", seed=2)
    inputs["candidate_match_ids"] = torch.randint(1, 4, (BATCH, LENGTH)) * inputs["attention_mask"]
    with torch.no_grad():
        packed = model(**inputs).logits
        padded_layout(monkeypatch)
        padded = model(**inputs).logits
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-5)


def test_tracing_keeps_the_padded_layout(monkeypatch):
    """Tracing (ONNX export) needs static shapes: the traced graph is the padded one and still exact."""
    torch.manual_seed(0)
    model = SeqBertForMaskedBehaviorModeling(config()).eval()
    inputs = batch("left")
    calls = []
    monkeypatch.setattr(PackedBatch, "attend", lambda *args: calls.append(1))
    arguments = tuple(inputs[k] for k in ("input_ids", "behavior_ids", "time_ids", "attention_mask"))
    with torch.no_grad():
        traced = torch.jit.trace(NextItemScorer(model), arguments, check_trace=False)
    assert not calls
    monkeypatch.undo()
    with torch.no_grad():
        torch.testing.assert_close(traced(*arguments), model.next_item_scores(*arguments), rtol=1e-5, atol=1e-5)
