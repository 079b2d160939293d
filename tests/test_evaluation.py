"""Tests for seqbert.evaluation (full ranking, pessimistic ties) and seqbert.baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqbert.baselines import MarkovRecommender, PopularityRecommender
from seqbert.evaluation import collect_ranks, evaluate_scorer, mask_history, model_scorer, pessimistic_ranks
from seqbert.metrics import ranking_metrics, ranks_from_scores

NUM_SPECIAL = 5
MASK = 1


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ---------------------------------------------------------------------------------------------
# pessimistic_ranks / mask_history
# ---------------------------------------------------------------------------------------------


def test_pessimistic_ranks_hand_cases():
    scores = torch.tensor(
        [
            [0.1, 0.9, 0.5, 0.5],  # target 2 ties with item 3: both count -> rank 3
            [0.2, 0.2, 0.2, 0.2],  # constant: rank = num_items
            [1.0, 2.0, 3.0, 4.0],  # unknown target -> num_items + 1
            [1.0, 2.0, 3.0, 4.0],  # best item -> rank 1
            [4.0, 3.0, 2.0, 1.0],  # worst item -> rank 4
            [0.0, float("-inf"), 0.0, 5.0],
        ]
    )
    targets = torch.tensor([2, 0, -1, 3, 3, 1])
    assert pessimistic_ranks(scores, targets).tolist() == [3, 4, 5, 1, 4, 4]
    assert pessimistic_ranks(scores, torch.tensor([1, 3, 0, 0, 0, 3])).tolist() == [1, 4, 4, 4, 1, 1]


def test_pessimistic_ranks_match_numpy_on_random_scores():
    g = torch.Generator().manual_seed(0)
    # Integer-valued scores in a small range: lots of ties.
    scores = torch.randint(0, 6, (200, 30), generator=g).float()
    targets = torch.randint(-1, 30, (200,), generator=g)
    expected = ranks_from_scores(scores.numpy(), targets.numpy())
    assert pessimistic_ranks(scores, targets).numpy().tolist() == expected.tolist()
    continuous = torch.randn(200, 30, generator=g)
    assert (
        pessimistic_ranks(continuous, targets).numpy().tolist()
        == ranks_from_scores(continuous.numpy(), targets.numpy()).tolist()
    )


def test_mask_history_hand_case():
    scores = torch.arange(12, dtype=torch.float32).view(2, 6)
    input_ids = torch.tensor(
        [
            [0, 0, 5, 7, 7, MASK],  # items 0 and 2, padding and an appended [MASK]
            [4, 10, 2, 3, 0, MASK],  # [UNK] and other specials are ignored; item 5
        ]
    )
    masked = mask_history(scores, input_ids, NUM_SPECIAL)
    inf = float("-inf")
    assert masked.tolist() == [[inf, 1, inf, 3, 4, 5], [6, 7, 8, 9, 10, inf]]
    assert scores[0, 0] == 0  # not in place


def test_mask_history_item_zero_before_padding_or_mask():
    # Item column 0 (token id 5) followed by many pads / [MASK]s must still be masked.
    input_ids = torch.tensor([[5] + [0] * 40 + [MASK], [MASK] * 41 + [5]])
    masked = mask_history(torch.zeros(2, 3), input_ids, NUM_SPECIAL)
    assert torch.isneginf(masked[:, 0]).all()
    assert (masked[:, 1:] == 0).all()


# ---------------------------------------------------------------------------------------------
# evaluate_scorer
# ---------------------------------------------------------------------------------------------


def batches_for(targets: torch.Tensor, batch_size: int, history: torch.Tensor | None = None):
    out = []
    for start in range(0, len(targets), batch_size):
        rows = slice(start, start + batch_size)
        ids = history[rows] if history is not None else torch.full((len(targets[rows]), 3), MASK)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "target_ids": targets[rows]})
    return out


def test_constant_scorer_scores_zero():
    num_items = 200
    targets = torch.arange(100) % num_items
    batches = batches_for(targets, 16)
    results = evaluate_scorer(
        lambda b: torch.zeros(len(b["target_ids"]), num_items), batches, num_special_tokens=NUM_SPECIAL
    )
    for k in (5, 10, 20):
        assert results[f"ndcg@{k}"] == 0.0 and results[f"hr@{k}"] == 0.0 and results[f"mrr@{k}"] == 0.0
    assert results["mrr"] == pytest.approx(1 / num_items)
    assert results["count"] == 100


def test_oracle_scorer_scores_one():
    num_items = 50
    targets = torch.randint(0, num_items, (37,), generator=torch.Generator().manual_seed(1))
    batches = batches_for(targets, 8)

    def oracle(batch):
        return torch.nn.functional.one_hot(batch["target_ids"], num_items).float()

    results = evaluate_scorer(oracle, batches, num_special_tokens=NUM_SPECIAL, ks=(1, 10))
    assert {k: v for k, v in results.items() if k != "count"} == {
        "ndcg@1": 1.0,
        "ndcg@10": 1.0,
        "hr@1": 1.0,
        "hr@10": 1.0,
        "mrr@1": 1.0,
        "mrr@10": 1.0,
        "mrr": 1.0,
    }
    assert results["count"] == 37


def test_evaluate_scorer_equals_numpy_metrics():
    g = torch.Generator().manual_seed(2)
    n, num_items = 90, 40
    all_scores = torch.randint(0, 8, (n, num_items), generator=g).float()
    targets = torch.randint(-1, num_items, (n,), generator=g)
    history = torch.randint(0, NUM_SPECIAL + num_items, (n, 6), generator=g)
    history[:, -1] = MASK
    batches = batches_for(targets, 16, history)
    offsets = iter(range(0, n, 16))

    def scorer(batch):
        start = next(offsets)
        return all_scores[start : start + len(batch["target_ids"])]

    ks = (1, 5, 10)
    got = evaluate_scorer(scorer, batches, num_special_tokens=NUM_SPECIAL, ks=ks)
    expected = ranking_metrics(ranks_from_scores(all_scores.numpy(), targets.numpy()), ks=ks, num_items=num_items)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key

    # With the history excluded: numpy's `exclude` mask of the same items (excluded targets are misses).
    exclude = np.zeros((n, num_items), dtype=bool)
    for row, ids in enumerate(history.tolist()):
        for token in ids:
            if token >= NUM_SPECIAL:
                exclude[row, token - NUM_SPECIAL] = True
    assert exclude[np.arange(n), targets.clamp(min=0).numpy()][targets.numpy() >= 0].any()  # the case is exercised
    offsets = iter(range(0, n, 16))
    ranks, size = collect_ranks(scorer, batches, num_special_tokens=NUM_SPECIAL, exclude_history=True)
    assert size == num_items
    assert ranks.tolist() == ranks_from_scores(all_scores.numpy(), targets.numpy(), exclude=exclude).tolist()


def test_collect_ranks_gather_and_empty():
    targets = torch.tensor([0, 1, 2])
    calls = []

    def gather(tensor):
        calls.append(tensor.clone())
        return torch.cat([tensor, tensor])

    ranks, num_items = collect_ranks(
        lambda b: torch.eye(3)[b["target_ids"]], batches_for(targets, 2), num_special_tokens=NUM_SPECIAL, gather=gather
    )
    assert ranks.tolist() == [1, 1, 1, 1, 1, 1] and num_items == 3 and len(calls) == 2
    ranks, num_items = collect_ranks(lambda b: b, [], num_special_tokens=NUM_SPECIAL)
    assert ranks.shape == (0,) and num_items == 0


def test_model_scorer_calls_next_item_scores():
    class Fake:
        def next_item_scores(self, input_ids, behavior_ids, time_ids, attention_mask):
            return (input_ids + behavior_ids + time_ids + attention_mask).float()

    batch = {
        name: torch.full((1, 2), value)
        for name, value in (("input_ids", 1), ("behavior_ids", 2), ("time_ids", 3), ("attention_mask", 4))
    }
    assert model_scorer(Fake())(batch).tolist() == [[10.0, 10.0]]


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------

# Token ids: 5=A 6=B 7=C 8=D 9=E (vocab 10).
TRAIN = [[5, 6, 7, 6], [6, 7, 4, 8], [7, 5], [9], []]


def test_popularity_counts():
    pop = PopularityRecommender(TRAIN, vocab_size=10, num_special_tokens=NUM_SPECIAL)
    # A=2, B=3, C=3, D=1, E=1; [UNK] (4) is not counted.
    assert pop.counts.tolist() == [2.0, 3.0, 3.0, 1.0, 1.0]
    batch = {
        "input_ids": torch.tensor([[0, 5, MASK], [6, 7, MASK]]),
        "attention_mask": torch.ones(2, 3, dtype=torch.long),
    }
    scores = pop(batch)
    assert scores.shape == (2, 5) and scores.tolist() == [[2.0, 3.0, 3.0, 1.0, 1.0]] * 2
    # Pessimistic ties: B and C tie at the top, both rank 2.
    assert pessimistic_ranks(scores, torch.tensor([1, 2])).tolist() == [2, 2]


def test_markov_transitions_hand_case():
    markov = MarkovRecommender(TRAIN, vocab_size=10, num_special_tokens=NUM_SPECIAL)
    # Transitions: A->B, B->C (x2), C->B, C->A; none through [UNK] (C->UNK, UNK->D) and none across
    # row boundaries (B->B from row 0 to row 1, D->C from row 1 to row 2, A->E from row 2 to row 3).
    transitions = {(int(s), int(t)): float(c) for s, t, c in zip(markov.sources, markov.targets, markov.counts)}
    assert transitions == {(0, 1): 1.0, (1, 2): 2.0, (2, 1): 1.0, (2, 0): 1.0}

    batch = {
        "input_ids": torch.tensor(
            [
                [0, 0, 5, MASK],  # last item A -> B
                [0, 5, 7, MASK],  # last item C -> A and B (tied counts), then popularity back-off
                [0, 0, 9, MASK],  # E has no outgoing transition: pure popularity
                [0, 0, 0, MASK],  # empty history: pure popularity
                [0, 5, 4, MASK],  # last token [UNK]: pure popularity
            ]
        ),
        "attention_mask": torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1], [0, 1, 1, 1]]),
    }
    scores = markov(batch)
    assert scores.shape == (5, 5)
    popularity = torch.tensor([2.0, 3.0, 3.0, 1.0, 1.0])
    backoff = 1e-3 * popularity / 3.0
    torch.testing.assert_close(scores[0], backoff + torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(scores[1], backoff + torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0]))
    for row in (2, 3, 4):
        torch.testing.assert_close(scores[row], backoff)
    # Ordering: transitions first, ties among transitions broken by popularity, then popularity.
    assert torch.argsort(scores[1], descending=True, stable=True).tolist() == [1, 0, 2, 3, 4]
    assert torch.argsort(scores[0], descending=True, stable=True)[:2].tolist() == [1, 2]
    assert scores[0, 1] > scores[0, 2] > scores[0, 0] > scores[0, 3]


def test_markov_no_transition_across_boundaries():
    markov = MarkovRecommender([[5, 6], [7, 8], [9]], vocab_size=10, num_special_tokens=NUM_SPECIAL)
    pairs = set(zip(markov.sources.tolist(), markov.targets.tolist()))
    assert pairs == {(0, 1), (2, 3)}  # not B->C (row 0 -> row 1) nor D->E
    # Trailing / leading empty rows are fine.
    markov = MarkovRecommender([[], [5, 6], []], vocab_size=10, num_special_tokens=NUM_SPECIAL)
    assert set(zip(markov.sources.tolist(), markov.targets.tolist())) == {(0, 1)}


def test_baselines_through_the_evaluator():
    # Sequences follow A -> B -> C -> D -> E; Markov predicts the next item exactly, popularity does not.
    train = [[5, 6, 7, 8, 9]] * 5 + [[9, 9, 9]]
    markov = MarkovRecommender(train, vocab_size=10, num_special_tokens=NUM_SPECIAL)
    pop = PopularityRecommender(train, vocab_size=10, num_special_tokens=NUM_SPECIAL)
    ids = torch.tensor([[0, 5, MASK], [5, 6, MASK], [6, 7, MASK], [7, 8, MASK]])
    batch = {"input_ids": ids, "attention_mask": (ids != 0).long(), "target_ids": torch.tensor([1, 2, 3, 4])}
    assert evaluate_scorer(markov, [batch], num_special_tokens=NUM_SPECIAL, ks=(1,))["hr@1"] == 1.0
    pop_hr = evaluate_scorer(pop, [batch], num_special_tokens=NUM_SPECIAL, ks=(1,))["hr@1"]
    assert pop_hr == 0.25  # only E (the most popular) is a top-1 hit


def test_nan_scores_are_ranked_pessimistically():
    import torch

    from seqbert.evaluation import pessimistic_ranks

    scores = torch.tensor([[0.9, float("nan"), 0.1, 0.5], [float("nan"), 0.2, 0.3, 0.4]])
    ranks = pessimistic_ranks(scores, torch.tensor([0, 0]))
    assert ranks.tolist() == [2, 5]  # a NaN competitor counts against the target; a NaN target misses
