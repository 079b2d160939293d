"""Causal (SASRec-style) attention, next-item collator, sampled softmax with log-Q, and the benchmark's
labelled evaluation variants (sampled metrics, history removed, bootstrap intervals)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seqbert import SeqBertConfig, SeqBertForMaskedBehaviorModeling
from seqbert.collators import DataCollatorForNextItemPrediction, DataCollatorWithLeftPadding, pad_left
from seqbert.evaluation import (
    collect_rank_variants,
    collect_ranks,
    model_scorer,
    pessimistic_ranks,
    popularity_negatives,
    ranking_intervals,
    sampled_ranks,
)
from seqbert.metrics.functional import ranking_metrics
from seqbert.modeling_seqbert import attention_allowed, drop_trailing_mask

SPECIAL = 5
MASK = 1


def tiny_model(**overrides) -> SeqBertForMaskedBehaviorModeling:
    torch.manual_seed(0)
    config = SeqBertConfig(
        vocab_size=SPECIAL + 40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **overrides,
    )  # fmt: skip
    return SeqBertForMaskedBehaviorModeling(config).eval()


def batch_of(rows: list[list[int]], length: int = 8) -> dict[str, torch.Tensor]:
    ids = pad_left(rows, length)
    mask = (ids != 0).long()
    return {"input_ids": ids, "behavior_ids": mask * 2, "time_ids": mask * 3, "attention_mask": mask}


def test_causal_positions_never_see_later_events():
    rows = [[6, 7, 8, 9, 10], [11, 12]]
    changed = [[6, 7, 8, 9, 30], [11, 31]]  # only the last event differs
    for attention_type, leaks in (("causal", False), ("bidirectional", True)):
        model = tiny_model(attention_type=attention_type)
        before = model.seqbert(**batch_of(rows)).last_hidden_state
        after = model.seqbert(**batch_of(changed)).last_hidden_state
        earlier = torch.zeros(2, 8, dtype=torch.bool)
        earlier[0, 3:7] = True  # first row: real positions 3..6 precede the changed position 7
        assert torch.allclose(before[earlier], after[earlier], atol=1e-6) is not leaks


def test_causal_left_padding_gives_finite_outputs():
    model = tiny_model(attention_type="causal")
    hidden = model.seqbert(**batch_of([[6], [6, 7, 8, 9, 10, 11, 12, 13]])).last_hidden_state
    assert torch.isfinite(hidden).all()
    allowed = attention_allowed(torch.tensor([[0, 0, 1, 1]]), causal=True)[0, 0]
    assert allowed.diagonal().all()  # a padding query attends at least to itself (no empty softmax row)
    assert not allowed[2, 3] and allowed[3, 2]


def test_causal_scores_from_the_last_event_as_in_training():
    model = tiny_model(attention_type="causal")
    history = [6, 7, 8]
    with_mask = batch_of([history + [MASK]])
    without = batch_of([history])
    scores = model.next_item_scores(**with_mask)
    hidden = model.seqbert(**without).last_hidden_state[:, -1]
    expected = model.head.item_logits(model.head.transform(hidden))
    torch.testing.assert_close(scores, expected)
    dropped = drop_trailing_mask(with_mask["input_ids"], with_mask["attention_mask"], MASK)
    assert dropped[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 0]


def test_next_item_collator_shifts_targets():
    features = [
        {"input_ids": [6, 7, 8], "behavior_ids": [2, 3, 4], "time_ids": [2, 3, 3]},
        {"input_ids": [9, 4], "behavior_ids": [2, 2], "time_ids": [2, 3]},  # 4 = [UNK]: not a target
    ]
    batch = DataCollatorForNextItemPrediction(num_special_tokens=SPECIAL)(features)
    assert batch["input_ids"].shape[1] % 8 == 0
    assert batch["input_ids"][0, -2:].tolist() == [6, 7]
    assert batch["labels"][0, -2:].tolist() == [7, 8]
    assert batch["behavior_labels"][0, -2:].tolist() == [3, 4]
    assert (batch["labels"][1] == -100).all()
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()


def test_pad_left_matches_a_python_loop():
    rng = np.random.default_rng(0)
    rows = [rng.integers(1, 50, size=rng.integers(0, 9)).tolist() for _ in range(30)]
    expected = torch.zeros(30, 10, dtype=torch.long)
    for index, row in enumerate(rows):
        if row:
            expected[index, 10 - len(row) :] = torch.tensor(row)
    assert torch.equal(pad_left(rows, 10), expected)


def test_sampled_softmax_is_the_corrected_formula():
    model = tiny_model(loss_type="sampled", num_negatives=7)
    head = model.head
    transformed = torch.randn(3, 16)
    targets = torch.tensor([0, 5, 39])
    torch.manual_seed(123)
    loss = head.sampled_item_loss(transformed, targets, 7, None)
    torch.manual_seed(123)
    negatives = torch.randint(0, 40, (7,))
    weight, bias = head.decoder.weight[SPECIAL:], head.bias[SPECIAL:]
    correction = math.log(7) - math.log(40)  # log(K * Q) with uniform Q = 1/40
    positive = (transformed * weight[targets]).sum(-1) + bias[targets]  # the target is not corrected
    negative = transformed @ weight[negatives].T + bias[negatives] - correction
    negative = negative.masked_fill(negatives[None] == targets[:, None], float("-inf"))
    expected = F.cross_entropy(torch.cat([positive[:, None], negative], 1), torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(loss, expected)


def test_sampled_softmax_label_smoothing_skips_accidental_hits():
    """Regression: with label smoothing, a negative equal to a row's target (removed as -inf) made
    F.cross_entropy's smoothing term infinite, so every sampled run with --label_smoothing logged an infinite
    loss (taobao histories, 64k items). Smoothing now spreads over the row's real candidates: without hits it
    is exactly F.cross_entropy's, with hits it stays finite and equals the formula over the kept candidates."""
    model = tiny_model(loss_type="sampled", num_negatives=40)
    head = model.head
    transformed = torch.randn(3, 16)
    targets = torch.tensor([0, 5, 39])
    weight, bias = head.decoder.weight[SPECIAL:], head.bias[SPECIAL:]
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        loss = head.sampled_item_loss(transformed, targets, 40, None, label_smoothing=0.1)
        torch.manual_seed(seed)
        negatives = torch.randint(0, 40, (40,))
        hits = negatives[None] == targets[:, None]
        assert hits.any()  # 40 draws over 40 items: some row always meets its target
        positive = (transformed * weight[targets]).sum(-1) + bias[targets]
        negative = transformed @ weight[negatives].T + bias[negatives] - (math.log(40) - math.log(40))
        expected = []
        for row in range(3):
            logits = torch.cat([positive[row : row + 1], negative[row][~hits[row]]])
            expected.append(F.cross_entropy(logits[None], torch.zeros(1, dtype=torch.long), label_smoothing=0.1))
        assert torch.isfinite(loss)
        torch.testing.assert_close(loss, torch.stack(expected).mean())


def test_sampled_softmax_with_popularity_proposal_approaches_full_softmax():
    model = tiny_model(loss_type="sampled", num_negatives=20000)
    counts = torch.arange(40) ** 2
    model.set_negative_proposal(counts, power=1.0)
    assert torch.isclose(model.negative_log_proposal.exp().sum(), torch.tensor(1.0))
    transformed = torch.randn(4, 16)
    targets = torch.tensor([1, 2, 3, 30])
    torch.manual_seed(0)
    sampled = model.head.sampled_item_loss(transformed, targets, 20000, model.negative_log_proposal)
    full = F.cross_entropy(model.head.item_logits(transformed), targets)
    # With many samples the log-Q-corrected estimate converges to the full softmax loss.
    assert abs(sampled.item() - full.item()) < 0.05


def test_sampled_training_never_scores_the_catalog_and_eval_is_full():
    model = tiny_model(loss_type="sampled", num_negatives=8)
    batch = batch_of([[6, 7, 8, 9]])
    labels = torch.full_like(batch["input_ids"], -100)
    labels[0, -1] = 9
    batch["input_ids"][0, -1] = MASK
    model.train()
    out = model(**batch, labels=labels)
    assert out.logits is None and torch.isfinite(out.loss)
    out.loss.backward()
    assert model.seqbert.embeddings.item_embeddings.weight.grad is not None
    model.eval()
    assert model(**batch, labels=labels).logits.shape == (1, SPECIAL + 40)


def test_new_config_fields_round_trip(tmp_path):
    model = tiny_model(attention_type="causal", loss_type="sampled", num_negatives=64)
    model.save_pretrained(tmp_path)
    loaded = SeqBertForMaskedBehaviorModeling.from_pretrained(tmp_path)
    assert (loaded.config.attention_type, loaded.config.loss_type, loaded.config.num_negatives) == ("causal", "sampled", 64)
    with pytest.raises(ValueError, match="attention_type"):
        SeqBertConfig(attention_type="sideways")
    with pytest.raises(ValueError, match="loss_type"):
        SeqBertConfig(loss_type="magic")


def test_sampled_ranks_hand_case():
    scores = torch.tensor([[0.1, 0.5, 0.9, 0.5], [1.0, 0.0, 0.0, 0.0]])
    negatives = torch.tensor([[0, 2, 3], [1, 2, 3]])
    # row 0: target 1 (0.5) vs 0.1, 0.9, 0.5 (tie counts against) -> rank 3; row 1: best -> rank 1.
    assert sampled_ranks(scores, torch.tensor([1, 0]), negatives).tolist() == [3, 1]
    assert sampled_ranks(scores, torch.tensor([-1, 0]), negatives).tolist() == [4, 1]


def test_popularity_negatives_exclude_the_target_and_are_deterministic():
    counts = np.array([1, 100, 5, 50, 2, 30, 8, 0])
    targets = np.array([1, 3, -1, 7])
    first = popularity_negatives(counts, targets, num_negatives=4, seed=3)
    assert np.array_equal(first, popularity_negatives(counts, targets, num_negatives=4, seed=3))
    for row, target in zip(first, targets):
        assert len(set(row)) == 4 and target not in row


def test_rank_variants_agree_with_the_default_evaluator():
    model = tiny_model()
    rng = np.random.default_rng(1)
    features = [
        {"input_ids": rng.integers(SPECIAL, SPECIAL + 40, size=rng.integers(1, 6)).tolist() + [MASK],
         "target_ids": int(rng.integers(-1, 40))}
        for _ in range(20)
    ]  # fmt: skip
    for feature in features:
        feature["behavior_ids"] = [2] * len(feature["input_ids"])
        feature["time_ids"] = [3] * len(feature["input_ids"])
    batches = [DataCollatorWithLeftPadding()(features[i : i + 8]) for i in range(0, 20, 8)]
    negatives = popularity_negatives(np.ones(40), np.array([f["target_ids"] for f in features]), 10)
    variants = collect_rank_variants(model_scorer(model), batches, num_special_tokens=SPECIAL, sampled_negatives=negatives)
    full, _ = collect_ranks(model_scorer(model), batches, num_special_tokens=SPECIAL)
    removed, _ = collect_ranks(model_scorer(model), batches, num_special_tokens=SPECIAL, exclude_history=True)
    assert np.array_equal(variants["full"], full) and np.array_equal(variants["history_removed"], removed)
    assert variants["sampled"].max() <= 11 and (variants["sampled"] <= variants["full"]).all()


def test_ranking_intervals_bracket_the_estimate():
    ranks = np.random.default_rng(0).integers(1, 52, size=500)
    point = ranking_metrics(ranks, num_items=50)
    intervals = ranking_intervals(ranks, num_items=50, n_resamples=300)
    for name in ("ndcg@10", "hr@10", "mrr@10", "mrr"):
        low, high = intervals[name]
        assert low <= point[name] <= high and high - low < 0.2


def test_pessimistic_and_sampled_ranks_agree_when_negatives_are_everything_else():
    scores = torch.randn(5, 6)
    targets = torch.tensor([0, 1, 2, 3, 5])
    others = torch.stack([torch.tensor([j for j in range(6) if j != t]) for t in targets.tolist()])
    assert torch.equal(sampled_ranks(scores, targets, others), pessimistic_ranks(scores, targets))


@pytest.mark.parametrize("chunk_size", [1, 7, 16, 1000])
def test_chunked_ranks_equal_full_ranks(chunk_size):
    from seqbert.evaluation import chunked_target_ranks

    # Small integers: every score is exact in float32 whatever the kernel's summation order, so ties stay
    # exact across chunks (with random floats a GEMM may round tied items differently per chunk: the
    # docstring's caveat, seen on some hosts).
    generator = torch.Generator().manual_seed(0)
    queries, weight = (torch.randint(-4, 5, shape, generator=generator).float() for shape in ((9, 4), (40, 4)))
    bias = torch.randint(-4, 5, (40,), generator=generator).float()
    weight[5] = weight[17]  # exact ties between items, in different chunks
    bias[5] = bias[17]
    targets = torch.tensor([0, 5, 17, 39, -1, 3, 17, 22, 5])
    full = pessimistic_ranks(queries @ weight.T + bias, targets)
    assert torch.equal(chunked_target_ranks(queries, weight, bias, targets, chunk_size=chunk_size), full)


@pytest.mark.parametrize("chunk_size, expected_calls", [(1000, 1), (16, 2 * 3 - 1)])
def test_chunked_ranks_score_the_kept_chunk_once(monkeypatch, chunk_size, expected_calls):
    """Pass 2 reuses the last chunk pass 1 scored: a one-chunk catalog is scored once, not twice."""
    from seqbert import evaluation

    calls = []
    original = evaluation._chunk_scores
    monkeypatch.setattr(evaluation, "_chunk_scores", lambda *a: calls.append(a[3]) or original(*a))
    torch.manual_seed(0)
    queries, weight, bias = torch.randn(9, 4), torch.randn(40, 4), torch.randn(40)
    targets = torch.tensor([0, 5, 17, 39, -1, 3, 17, 22, 5])  # a target in each of the 3 chunks of 16
    ranks = evaluation.chunked_target_ranks(queries, weight, bias, targets, chunk_size=chunk_size)
    assert len(calls) == expected_calls
    assert torch.equal(ranks, pessimistic_ranks(queries @ weight.T + bias, targets))


@pytest.mark.parametrize("chunk_size", [1, 5, 16, 1000])
def test_chunked_topk_is_exact_and_breaks_ties_by_column(chunk_size):
    from seqbert.evaluation import chunked_topk

    torch.manual_seed(1)
    queries, weight = torch.randn(6, 3), torch.randn(30, 3)
    weight[[4, 11, 25]] = weight[2].clone()  # four items with identical scores
    scores, columns = chunked_topk(queries, weight, None, 8, chunk_size=chunk_size)
    full = queries @ weight.T
    for row in range(6):
        order = sorted(range(30), key=lambda j: (-full[row, j].item(), j))[:8]
        assert columns[row].tolist() == order
        torch.testing.assert_close(scores[row], full[row, order])


def test_collect_ranks_chunked_matches_the_scorer_path():
    from seqbert.evaluation import collect_ranks_chunked

    model = tiny_model(attention_type="causal")
    features = [
        {"input_ids": [6 + i % 30, 7 + i % 20, MASK], "behavior_ids": [2, 2, 2], "time_ids": [3, 3, 3], "target_ids": i % 40 - 1}
        for i in range(25)
    ]
    batches = [DataCollatorWithLeftPadding()(features[i : i + 10]) for i in range(0, 25, 10)]
    chunked, num_items = collect_ranks_chunked(model, batches, chunk_size=7)
    full, _ = collect_ranks(model_scorer(model), batches, num_special_tokens=SPECIAL)
    assert num_items == 40 and np.array_equal(chunked, full)
