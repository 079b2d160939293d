"""Tests for seqbert.metrics: functional maths on hand-computed cases, and the local evaluate modules."""

from __future__ import annotations

import doctest
import inspect
import math
import re
import socket
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import seqbert.metrics as metrics
from seqbert.metrics import functional
from seqbert.metrics.classification import classification_math
from seqbert.metrics.ranking import ranking_math


METRICS_DIR = Path(metrics.__file__).resolve().parent


# ---------------------------------------------------------------------------------------------
# Ranking
# ---------------------------------------------------------------------------------------------


def test_ranking_metrics_hand_computed():
    results = metrics.ranking_metrics([1, 2, 3, 11], ks=(1, 3, 10))
    assert results["count"] == 4
    assert results["hr@1"] == pytest.approx(1 / 4)
    assert results["hr@3"] == pytest.approx(3 / 4)
    assert results["hr@10"] == pytest.approx(3 / 4)
    # NDCG with one relevant item: 1 / log2(rank + 1) for hits; log2(2) = 1, log2(3), log2(4) = 2.
    assert results["ndcg@1"] == pytest.approx(1 / 4)
    assert results["ndcg@3"] == pytest.approx((1 + 1 / math.log2(3) + 1 / 2) / 4)
    assert results["ndcg@10"] == pytest.approx(results["ndcg@3"])
    assert results["mrr@1"] == pytest.approx(1 / 4)
    assert results["mrr@3"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 4)
    assert results["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 11) / 4)
    assert list(results) == [f"{name}@{k}" for name in ("ndcg", "hr", "mrr") for k in (1, 3, 10)] + ["mrr", "count"]
    assert all(type(value) is float for name, value in results.items() if name != "count")


def test_ranks_from_scores_hand_computed():
    scores = np.array([[0.1, 0.9, 0.5, 0.3], [0.7, 0.2, 0.1, 0.0]])
    assert metrics.ranks_from_scores(scores, [2, 0]).tolist() == [2, 1]
    assert metrics.ranks_from_scores(scores, [0, 3]).tolist() == [4, 4]


def test_ties_are_pessimistic():
    scores = np.array([[0.5, 0.5, 0.5, 0.1, 0.9]])
    # Target 0 is tied with items 1 and 2 and beaten by item 4: it gets the worst of the tied ranks.
    assert metrics.ranks_from_scores(scores, [0]).tolist() == [4]
    assert metrics.ranks_from_scores(scores, [3]).tolist() == [5]
    assert metrics.ranks_from_scores(scores, [4]).tolist() == [1]


def test_constant_model_scores_about_zero():
    rng = np.random.default_rng(0)
    num_items = 1000
    targets = rng.integers(0, num_items, size=64)
    ranks = metrics.ranks_from_scores(np.zeros((64, num_items), dtype=np.float32), targets)
    assert (ranks == num_items).all()
    results = metrics.ranking_metrics(ranks, num_items=num_items)
    for name, value in results.items():
        if name == "mrr":
            assert value == pytest.approx(1 / num_items)
        elif name != "count":
            assert value == 0.0, name


def test_oracle_scores_one():
    rng = np.random.default_rng(1)
    num_items = 50
    targets = rng.integers(0, num_items, size=32)
    scores = rng.normal(size=(32, num_items))
    scores[np.arange(32), targets] = 100.0
    ranks = metrics.ranks_from_scores(scores, targets)
    assert (ranks == 1).all()
    results = metrics.ranking_metrics(ranks, ks=(1, 5), num_items=num_items)
    assert all(value == 1.0 for name, value in results.items() if name != "count")


def test_unknown_target_is_a_miss_not_dropped():
    scores = np.array([[0.3, 0.2, 0.1], [0.3, 0.2, 0.1]])
    ranks = metrics.ranks_from_scores(scores, [0, -1])
    assert ranks.tolist() == [1, 4]
    results = metrics.ranking_metrics(ranks, ks=(1, 10), num_items=3)
    assert results["count"] == 2
    assert results["hr@1"] == 0.5
    # K > V: the unknown target is still a miss once the catalog size is known.
    assert results["hr@10"] == 0.5
    assert results["ndcg@10"] == 0.5
    assert results["mrr"] == 0.5


def test_exclude_mask():
    scores = np.array([[0.9, 0.8, 0.7, 0.1]])
    history = np.array([[True, True, False, False]])
    # Excluded items never outrank the target.
    assert metrics.ranks_from_scores(scores, [2], exclude=history).tolist() == [1]
    assert metrics.ranks_from_scores(scores, [3], exclude=history).tolist() == [2]
    # An excluded target is a miss (rank V + 1), as if the recommender had filtered it out.
    assert metrics.ranks_from_scores(scores, [0], exclude=history).tolist() == [5]


def test_ranks_from_scores_matches_a_loop_across_blocks(monkeypatch):
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 5, size=(37, 11)).astype(np.float64)  # many ties
    targets = rng.integers(-1, 11, size=37)
    exclude = rng.random((37, 11)) < 0.2
    monkeypatch.setattr(ranking_math, "_MAX_BLOCK_ELEMENTS", 30)  # force several row blocks
    ranks = metrics.ranks_from_scores(scores, targets, exclude=exclude)
    for row, (target, rank) in enumerate(zip(targets, ranks)):
        if target < 0 or exclude[row, target]:
            assert rank == 12
        else:
            assert rank == sum(scores[row, i] >= scores[row, target] and not exclude[row, i] for i in range(11))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: metrics.ranks_from_scores([[0.1, np.nan]], [0]), "NaN"),
        (lambda: metrics.ranks_from_scores([[0.1, 0.2]], [2]), "got 2"),
        (lambda: metrics.ranks_from_scores([[0.1, 0.2]], [-2]), "got -2"),
        (lambda: metrics.ranks_from_scores([0.1, 0.2], [0]), "2-D"),
        (lambda: metrics.ranks_from_scores([[0.1, 0.2]], [0], exclude=[[True]]), "shape"),
        (lambda: metrics.ranking_metrics([1, 0]), "got 0"),
        (lambda: metrics.ranking_metrics([1.5]), "1.5"),
        (lambda: metrics.ranking_metrics([]), "empty"),
        (lambda: metrics.ranking_metrics([1], ks=(0,)), "got 0"),
        (lambda: metrics.ranking_metrics([1], ks=(5, 5)), "repeat"),
        (lambda: metrics.ranking_metrics([1, 9], num_items=5), "got 9"),
    ],
)
def test_ranking_validation(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------


def _random_binary(seed: int, n: int = 500, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    probs = np.clip(0.3 * labels + rng.uniform(0.0, 0.7, size=n), 0.01, 0.99)
    if ties:
        probs = np.round(probs, 1)
    return labels, probs


@pytest.mark.parametrize("ties", [False, True])
def test_classification_matches_sklearn(ties):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    for seed in range(3):
        labels, probs = _random_binary(seed, ties=ties)
        assert metrics.roc_auc(labels, probs) == pytest.approx(sklearn_metrics.roc_auc_score(labels, probs))
        assert metrics.pr_auc(labels, probs) == pytest.approx(sklearn_metrics.average_precision_score(labels, probs))
        assert metrics.log_loss(labels, probs) == pytest.approx(sklearn_metrics.log_loss(labels, probs))
        assert metrics.brier(labels, probs) == pytest.approx(sklearn_metrics.brier_score_loss(labels, probs))


def test_roc_auc_hand_cases():
    assert metrics.roc_auc([0, 1], [0.2, 0.8]) == 1.0
    assert metrics.roc_auc([0, 1], [0.8, 0.2]) == 0.0
    assert metrics.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5  # ties count one half
    assert metrics.pr_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5  # tied scores share one threshold


def test_single_class_raises():
    with pytest.raises(ValueError, match="both classes"):
        metrics.roc_auc([1, 1, 1], [0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="at least one positive"):
        metrics.pr_auc([0, 0], [0.2, 0.3])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: metrics.roc_auc([0, 2], [0.1, 0.2]), "got 2"),
        (lambda: metrics.brier([0, 1], [0.1, 1.2]), "1.2"),
        (lambda: metrics.log_loss([0, 1], [0.1]), "1 entries"),
        (lambda: metrics.roc_auc([0, 1], [0.1, np.inf]), "inf"),
        (lambda: metrics.log_loss([0, 1], [0.1, 0.2], eps=0.7), "0.7"),
        (lambda: metrics.expected_calibration_error([0, 1], [0.1, 0.2], n_bins=0), "got 0"),
    ],
)
def test_classification_validation(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_log_loss_clips_confident_mistakes():
    assert metrics.log_loss([1], [0.0]) == pytest.approx(-math.log(1e-15))


def test_ece_hand_case():
    labels = [0, 1, 1, 0, 1, 1]
    probs = [0.05, 0.15, 0.55, 0.65, 0.95, 1.0]
    # 2 bins: [0, 0.5) holds (0.05, 0.15) with labels (0, 1): |1/2 - 0.10| = 0.4, weight 2/6;
    # [0.5, 1] holds (0.55, 0.65, 0.95, 1.0) with labels (1, 0, 1, 1): |3/4 - 0.7875| = 0.0375, weight 4/6.
    expected = 2 / 6 * 0.4 + 4 / 6 * 0.0375
    assert metrics.expected_calibration_error(labels, probs, n_bins=2) == pytest.approx(expected)
    # A perfectly calibrated bin contributes nothing.
    assert metrics.expected_calibration_error([0, 1], [0.5, 0.5], n_bins=10) == 0.0


def test_grouped_auc_hand_case():
    labels = [1, 0, 0, 1, 0, 1, 1, 0]
    scores = [0.9, 0.1, 0.5, 0.2, 0.4, 0.3, 0.7, 0.7]
    groups = ["u1", "u1", "u1", "u2", "u2", "u3", "u4", "u4"]
    # u1 (3 samples): the positive beats both negatives -> 1.0.  u2 (2): the positive loses -> 0.0.
    # u3 has one class and is skipped.  u4 (2): a tie -> 0.5.
    gauc, used = metrics.grouped_auc(labels, scores, groups)
    assert used == 3
    assert gauc == pytest.approx((3 * 1.0 + 2 * 0.0 + 2 * 0.5) / 7)
    with pytest.raises(ValueError, match="both classes"):
        metrics.grouped_auc([1, 0], [0.2, 0.3], ["a", "b"])


def test_grouped_auc_matches_per_group_roc_auc():
    rng = np.random.default_rng(3)
    labels, probs = _random_binary(4, n=400, ties=True)
    groups = rng.integers(0, 30, size=400)
    expected_numerator, expected_weight, expected_used = 0.0, 0, 0
    for group in np.unique(groups):
        member = groups == group
        if labels[member].min() != labels[member].max():
            expected_numerator += member.sum() * metrics.roc_auc(labels[member], probs[member])
            expected_weight += member.sum()
            expected_used += 1
    gauc, used = metrics.grouped_auc(labels, probs, groups)
    assert used == expected_used
    assert gauc == pytest.approx(expected_numerator / expected_weight)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def test_temperature_scaling_recovers_temperature_and_reduces_ece():
    rng = np.random.default_rng(5)
    true_logits = rng.normal(0.0, 2.0, size=20_000)
    labels = (rng.random(true_logits.size) < _sigmoid(true_logits)).astype(np.int64)
    overconfident = 2.5 * true_logits
    temperature = metrics.fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(2.5, rel=0.06)
    before = metrics.expected_calibration_error(labels, _sigmoid(overconfident))
    after = metrics.expected_calibration_error(labels, _sigmoid(overconfident / temperature))
    assert after < before / 3
    # The fitted temperature is the NLL minimiser: a grid around it does no better.
    nll = lambda t: metrics.log_loss(labels, _sigmoid(overconfident / t))  # noqa: E731
    assert all(nll(temperature) <= nll(t) + 1e-12 for t in np.linspace(0.8, 1.2, 9) * temperature)


def test_temperature_bounds():
    # Perfectly separated logits want T -> 0; anti-correlated logits want T -> infinity.
    assert metrics.fit_temperature([-1.0, 1.0], [0, 1]) == 1e-3
    assert metrics.fit_temperature([1.0, -1.0], [0, 1], bounds=(0.1, 10.0)) == 10.0
    with pytest.raises(ValueError, match="both classes"):
        metrics.fit_temperature([1.0, 2.0], [1, 1])


def test_bootstrap_interval():
    labels, probs = _random_binary(6, n=300)
    point = metrics.roc_auc(labels, probs)
    low, high = metrics.bootstrap_interval(metrics.roc_auc, labels, probs, n_resamples=200, seed=7)
    assert low < point < high
    assert (low, high) == metrics.bootstrap_interval(metrics.roc_auc, labels, probs, n_resamples=200, seed=7)
    assert (low, high) != metrics.bootstrap_interval(metrics.roc_auc, labels, probs, n_resamples=200, seed=8)
    assert type(low) is float and type(high) is float


def test_bootstrap_vectorized_matches_loop(monkeypatch):
    values = np.random.default_rng(8).normal(size=101)
    monkeypatch.setattr(functional, "_MAX_RESAMPLE_ELEMENTS", 1000)  # several blocks of resamples
    looped = metrics.bootstrap_interval(np.mean, values, n_resamples=50, seed=3)
    vectorized = metrics.bootstrap_interval(
        lambda x: x.mean(axis=-1), values, n_resamples=50, seed=3, vectorized=True
    )
    assert looped == pytest.approx(vectorized)
    with pytest.raises(ValueError, match="same number of rows"):
        metrics.bootstrap_interval(metrics.roc_auc, [0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="alpha"):
        metrics.bootstrap_interval(np.mean, values, alpha=1.5)


# ---------------------------------------------------------------------------------------------
# evaluate modules
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch):
    """Hub and evaluate offline modes on, and any network connection attempt fails the test."""
    import evaluate

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _module_of(evaluation_module) -> ModuleType:
    return sys.modules[type(evaluation_module).__module__]


def test_load_ranking_offline_matches_functional(offline):
    rng = np.random.default_rng(9)
    ranks = rng.integers(1, 202, size=300)
    module = metrics.load("ranking", keep_in_memory=True)
    results = module.compute(ranks=ranks.tolist(), ks=(1, 10, 50), num_items=200)
    assert results == metrics.ranking_metrics(ranks, ks=(1, 10, 50), num_items=200)
    # Defaults and batched input.
    module.add_batch(ranks=ranks[:100])
    module.add_batch(ranks=ranks[100:])
    assert module.compute() == metrics.ranking_metrics(ranks)


def test_load_classification_offline_matches_functional(offline):
    labels, probs = _random_binary(10)
    results = metrics.load("classification", keep_in_memory=True).compute(
        references=labels, predictions=probs, n_bins=15
    )
    assert results == {
        "roc_auc": metrics.roc_auc(labels, probs),
        "pr_auc": metrics.pr_auc(labels, probs),
        "log_loss": metrics.log_loss(labels, probs),
        "brier": metrics.brier(labels, probs),
        "ece": metrics.expected_calibration_error(labels, probs, n_bins=15),
    }
    assert all(type(value) is float for value in results.values())


def test_load_unknown_name():
    with pytest.raises(ValueError, match=r"'nope'.*\['classification', 'ranking'\]"):
        metrics.load("nope")


@pytest.mark.parametrize("name", metrics.METRIC_NAMES)
def test_module_contract(name, offline):
    module = metrics.load(name, keep_in_memory=True)
    compute_parameters = inspect.signature(type(module)._compute).parameters.values()
    assert all(parameter.kind is not inspect.Parameter.VAR_KEYWORD for parameter in compute_parameters)
    for constant in ("_DESCRIPTION", "_KWARGS_DESCRIPTION", "_CITATION"):
        assert getattr(_module_of(module), constant).strip()
    card = (METRICS_DIR / name / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and f"# Metric Card for" in card


@pytest.mark.parametrize("name", metrics.METRIC_NAMES)
def test_module_folder_is_self_contained(name):
    """What evaluate copies (the module plus siblings it imports as ``from .x import``) is all it needs."""
    from evaluate.loading import get_imports

    folder = METRICS_DIR / name
    imports = get_imports(str(folder / f"{name}.py"))
    libraries = {import_name for kind, import_name, _, _ in imports if kind == "library"}
    siblings = [import_name for kind, import_name, _, _ in imports if kind == "internal"]
    assert "seqbert" not in libraries
    assert siblings == [f"{name}_math"]
    for sibling in siblings:
        sibling_imports = get_imports(str(folder / f"{sibling}.py"))
        # evaluate does not follow a sibling's own imports, so the maths may only use libraries.
        assert {import_name for _, import_name, _, _ in sibling_imports} <= {"__future__", "collections", "numpy"}
        assert all(kind == "library" for kind, _, _, _ in sibling_imports)


def test_functional_reexports_the_single_implementation():
    assert functional.ranking_metrics is ranking_math.ranking_metrics
    assert functional.roc_auc is classification_math.roc_auc
    assert set(functional.__all__) <= set(metrics.__all__)


@pytest.mark.parametrize("name", metrics.METRIC_NAMES)
def test_module_doctests(name, offline):
    results = doctest.testmod(_module_of(metrics.load(name)), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert results.failed == 0
    assert results.attempted > 1


@pytest.mark.parametrize("module", [ranking_math, classification_math, functional], ids=lambda m: m.__name__)
def test_functional_doctests(module):
    results = doctest.testmod(module)
    assert results.failed == 0
    assert results.attempted > 0


@pytest.mark.parametrize("name", metrics.METRIC_NAMES)
def test_metric_card_examples(name, offline):
    card = (METRICS_DIR / name / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.DOTALL)
    parser = doctest.DocTestParser()
    test = parser.get_doctest("\n".join(blocks), {}, f"{name}/README.md", str(METRICS_DIR / name / "README.md"), 0)
    assert len(test.examples) > 1
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
