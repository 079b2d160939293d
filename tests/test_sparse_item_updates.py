"""--sparse_item_updates: sparse item-table gradients (same values as dense), SparseAdam on touched rows only,
clipping with sparse gradients, and a pretraining run that checkpoints and resumes with the combined optimizer."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator

from seqbert import SeqBertConfig, SeqBertForMaskedBehaviorModeling
from seqbert.training import pretrain
from seqbert.training.loop import CombinedOptimizer, clip_gradients, make_optimizer
from tests.test_eval_user_sampling import TINY, prepared  # noqa: F401  (module fixture)


def tiny_model(sparse: bool, categories: bool = False) -> SeqBertForMaskedBehaviorModeling:
    torch.manual_seed(0)
    config = SeqBertConfig(
        vocab_size=205, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=12, loss_type="sampled", num_negatives=16, num_item_categories=3 if categories else 0,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    model = SeqBertForMaskedBehaviorModeling(config).train()
    if categories:
        model.seqbert.embeddings.set_item_categories(torch.randint(0, 4, (205,)))
    if sparse:
        pretrain.use_sparse_item_updates(model)
    return model


def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, 60, (4, 12), generator=generator)  # rows >= 60 are never in the input
    labels = torch.full_like(input_ids, -100)
    labels[:, -1] = input_ids[:, -1]
    return {
        "input_ids": input_ids.masked_fill(labels != -100, 4), "behavior_ids": torch.ones_like(input_ids),
        "time_ids": torch.ones_like(input_ids), "attention_mask": torch.ones_like(input_ids), "labels": labels,
    }  # fmt: skip


def backward(model: SeqBertForMaskedBehaviorModeling) -> torch.Tensor:
    torch.manual_seed(5)  # the same negatives for both models
    loss = model(**batch()).loss
    loss.backward()
    return loss


@pytest.mark.parametrize("categories", [False, True])
def test_sparse_gradient_equals_the_dense_one(categories):
    dense, sparse = tiny_model(False, categories), tiny_model(True, categories)
    assert backward(dense).item() == pytest.approx(backward(sparse).item(), abs=1e-6)
    table = sparse.seqbert.embeddings.item_embeddings.weight
    assert table is sparse.head.decoder.weight and table.grad.is_sparse
    torch.testing.assert_close(table.grad.to_dense(), dense.seqbert.embeddings.item_embeddings.weight.grad)
    for (name, a), b in zip(dense.named_parameters(), sparse.parameters()):
        if a is not dense.seqbert.embeddings.item_embeddings.weight:
            torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_sparse_adam_moves_only_touched_rows():
    model = tiny_model(True)
    optimizer = make_optimizer(model, SimpleNamespace(learning_rate=0.1, weight_decay=0.01))
    assert isinstance(optimizer, CombinedOptimizer)
    adamw, sparse_adam = optimizer.optimizers
    table = model.seqbert.embeddings.item_embeddings.weight
    assert isinstance(sparse_adam, torch.optim.SparseAdam) and sparse_adam.param_groups[0]["params"] == [table]
    assert all(p is not table for group in adamw.param_groups for p in group["params"])
    before = table.detach().clone()
    backward(model)
    touched = table.grad.coalesce().indices()[0]
    optimizer.step()
    changed = (table.detach() != before).any(1)
    assert changed[touched].all() and changed.sum() == len(touched) < table.shape[0]


def test_clipping_sparse_gradients_matches_dense_clipping():
    dense, sparse = tiny_model(False), tiny_model(True)
    backward(dense), backward(sparse)
    accelerator = Accelerator(cpu=True)
    clip_gradients(accelerator, dense, 0.05)
    clip_gradients(accelerator, sparse, 0.05)
    clipped = 0
    for a, b in zip(dense.parameters(), sparse.parameters()):
        assert (a.grad is None) == (b.grad is None)
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad.to_dense() if b.grad.is_sparse else b.grad)
            clipped += a.grad.square().sum()
    assert float(clipped) ** 0.5 == pytest.approx(0.05, rel=1e-4)  # the norm was above 0.05: clipped to it


def test_pretraining_with_sparse_updates_checkpoints_and_resumes(prepared, tmp_path):  # noqa: F811
    common = [
        "--data_dir", str(prepared), "--output_dir", str(tmp_path / "model"), "--max_length", "16",
        "--per_device_batch_size", "32", "--loss_type", "sampled", "--num_negatives", "32", "--sparse_item_updates",
        "--checkpointing_steps", "2", "--max_eval_users", "20", *TINY,
    ]  # fmt: skip
    first = pretrain.main([*common, "--max_steps", "2", "--warmup_ratio", "0"])
    assert first["global_step"] == 2
    resumed = pretrain.main([*common, "--max_steps", "4", "--warmup_ratio", "0", "--resume_from", "latest"])
    assert resumed["global_step"] == 4
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["loss_type"] == "sampled"
    SeqBertForMaskedBehaviorModeling.from_pretrained(tmp_path / "model")
    with pytest.raises(ValueError, match="--loss_type sampled"):
        pretrain.use_sparse_item_updates(SeqBertForMaskedBehaviorModeling(SeqBertConfig(vocab_size=20, hidden_size=8)))
