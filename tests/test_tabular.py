"""The tabular baselines (seqbert.tabular): robust to shifted features, one path for finetune and the benchmark."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from seqbert.metrics.functional import log_loss
from seqbert.prepared import PreparedData
from seqbert.tabular import ShiftRobustScaler, fit_on_features, fit_tabular_baselines
from seqbert.training import finetune

from .synthetic_prepared import prepare_synthetic_temporal

TINY = ["--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "24"]


def shifted_split(seed: int = 0, n: int = 3000) -> tuple[dict, dict, list[str]]:
    """A temporal split where two signal features keep their distribution, one feature is constant in training
    and varies later (a "days since ..." clock that starts at the training cutoff), and one is near-constant in
    training (a single positive row is non-zero) and non-zero on a third of the later rows, unrelated to the label."""
    rng = np.random.default_rng(seed)
    features, labels = {}, {}
    for split in ("train", "validation", "test"):
        signal = rng.normal(size=(n, 2))
        y = (rng.random(n) < 1 / (1 + np.exp(-(signal @ [1.0, -0.5] - 1.5)))).astype(np.int64)
        constant = np.zeros(n) if split == "train" else rng.uniform(1, 30, size=n)
        rare = np.zeros(n)
        if split == "train":
            rare[np.flatnonzero(y)[0]] = 1.0
        else:
            rare[rng.random(n) < 1 / 3] = rng.uniform(1, 5)
        features[split], labels[split] = np.column_stack([signal, constant, rare]), y
    return features, labels, ["signal_a", "signal_b", "days_since_start", "rare_flag"]


def naive_standardised_logistic(x_train, y_train, x_test, l2: float = 1e-3) -> np.ndarray:
    """The old baseline's transform (train mean / std clamped at 1e-6, no clipping), fitted without regularisation
    search: what the card compared against before this change."""
    mean, std = x_train.mean(0), np.maximum(x_train.std(0), 1e-6)
    from seqbert.tabular import _logistic_fit

    weight, bias = _logistic_fit((x_train - mean) / std, y_train.astype(float), l2)
    z = np.clip((x_test - mean) / std @ weight + bias, -700, 700)
    return 1 / (1 + np.exp(-z))


def test_baselines_stay_near_the_base_rate_under_shift(caplog):
    features, labels, names = shifted_split()
    base_rate = labels["train"].mean()
    base_loss = log_loss(labels["test"], np.full(len(labels["test"]), base_rate))
    with caplog.at_level(logging.INFO, logger="seqbert.tabular"):
        results = fit_on_features(features, labels, names, seed=0)
    for name, result in results.items():
        assert log_loss(labels["test"], result.probabilities["test"]) <= 1.1 * base_loss, name
        assert result.dropped_features == ["days_since_start", "rare_flag"]
        assert "days_since_start" not in result.feature_names
    assert "dropped 2 near-constant training features: days_since_start, rare_flag" in caplog.text
    # The naive transform saturates on the rare feature: this is the failure the test guards against.
    naive = naive_standardised_logistic(features["train"], labels["train"], features["test"])
    assert log_loss(labels["test"], np.clip(naive, 1e-15, 1 - 1e-15)) > 2 * base_loss


def test_scaler_clips_and_names_shifted_features():
    rng = np.random.default_rng(1)
    train = np.column_stack([rng.normal(size=500), rng.normal(size=500)])
    later = train.copy()
    later[:100, 1] = 1e6  # 20 % of rows far outside the training range
    scaler = ShiftRobustScaler(clip=5.0).fit(train, ["steady", "drifting"])
    transformed = scaler.transform(later)
    assert np.abs(transformed).max() <= 5.0
    assert scaler.shift_warnings(later) == ["drifting (20% of rows)"]
    assert scaler.shift_warnings(train) == []


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return prepare_synthetic_temporal(tmp_path_factory.mktemp("tabular"), num_users=200, seed=7)


@pytest.mark.parametrize("head_features", [[], ["--tabular_features"]])
def test_finetune_and_benchmark_share_one_baseline_path(prepared, tmp_path, head_features):
    """`seqbert finetune`'s baselines are the benchmark's: the same rows, features and models give the same
    probabilities (predictions.npz keeps the finetune run's), also when the features computed for the model's
    head are reused for the baselines."""
    output = tmp_path / "click"
    summary = finetune.main([
        "--data_dir", str(prepared), "--output_dir", str(output), "--task", "click", "--max_steps", "2",
        "--max_length", "16", "--per_device_batch_size", "32", "--bootstrap_resamples", "20", "--report_to", "jsonl",
        "--num_train_cutoffs", "2", "--seed", "0", *head_features, *TINY,
    ])  # fmt: skip
    saved = np.load(output / "predictions.npz")
    data = PreparedData.load(prepared)
    labelled, _ = finetune.label_splits(data, None, "click", num_train_cutoffs=2)
    bench = fit_tabular_baselines(data.sequences, labelled, seed=0)
    for name in ("logistic_regression", "lightgbm"):
        for split in ("validation", "test"):
            np.testing.assert_allclose(saved[f"{split}_{name}_probabilities"], bench[name].probabilities[split], rtol=1e-9, atol=1e-12)
        assert summary["tabular_baselines"][name]["features"] == bench[name].feature_names
    card = (output / "README.md").read_text()
    assert "Temperature scaling is fitted on validation" in card and "| logistic_regression |" in card


def test_card_flags_a_baseline_worse_than_the_base_rate():
    cutoffs = finetune.task_cutoffs({"kind": "temporal", "validation_start": 200_000, "test_start": 286_400}, None)
    report = {"calibrated": {"roc_auc": 0.6, "log_loss": 0.5, "ece": 0.01}, "uncalibrated": {"ece": 0.2},
              "intervals": {"roc_auc": (0.55, 0.65)}}  # fmt: skip
    counts = {split: {"examples": 100, "positives": 10} for split in ("train", "validation", "test")}
    notes = finetune.comparison_notes(cutoffs, counts, {"seqbert": report, "lightgbm": report},
                                      {"seqbert": 0.30, "lightgbm": 6.3}, base_rate_log_loss=0.33)  # fmt: skip
    assert "Warning: lightgbm's validation log loss (6.3000) is worse than predicting the training base rate (0.3300)" in notes
    assert "Warning: seqbert" not in notes
    assert "| lightgbm | 0.6000 [0.5500, 0.6500] | 0.5000 | 0.2000 → 0.0100 |" in notes


def test_logistic_regression_separates_toy_set():
    from seqbert.tabular import LogisticRegressionModel

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    x[:, 2] = 7.0  # constant: dropped by the scaler, never a division by zero
    labels = (x[:, 0] - 2 * x[:, 1] > 0).astype(np.int64)
    scaler = ShiftRobustScaler().fit(x, ["a", "b", "constant"])
    assert scaler.dropped == ["constant"]
    z = scaler.transform(x)
    model = LogisticRegressionModel().fit(z[:200], labels[:200], z[200:], labels[200:])
    proba = model.predict_proba(z)
    assert proba.shape == (400,) and np.isfinite(proba).all()
    assert ((proba > 0.5) == labels.astype(bool)).mean() > 0.97
    weight = model.weight / scaler.std  # back to raw units: the direction (1, -2)
    assert weight[0] > 0 and weight[1] < 0 and weight[1] / weight[0] == pytest.approx(-2.0, rel=0.2)
    assert model.params["l2"] <= 1e-3  # separable data: validation picks weak regularisation
