"""GAUC bookkeeping, temperature scaling, bootstrap intervals and the calibrated report (hand-computed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.test_metrics import offline  # noqa: F401  (fixture: no network during evaluate.load)

from seqbert import metrics


def test_gauc_skips_and_counts_single_class_users():
    # user a: pos 0.9 vs neg 0.2, 0.95 -> 1/2; user b: pos 0.3 vs neg 0.8 -> 0; user c: only positives; d: only negatives.
    labels = [1, 0, 0, 1, 0, 1, 1, 0]
    scores = [0.9, 0.2, 0.95, 0.3, 0.8, 0.5, 0.6, 0.1]
    groups = ["a", "a", "a", "b", "b", "c", "c", "d"]
    details = metrics.grouped_auc_details(labels, scores, groups)
    assert details == {"gauc": pytest.approx((3 * 0.5 + 2 * 0.0) / 5), "groups_used": 2, "groups_skipped": 2, "samples_used": 5}
    assert metrics.grouped_auc(labels, scores, groups) == (details["gauc"], 2)


def test_classification_metrics_hand_case():
    out = metrics.classification_metrics([0, 1, 1, 0], [0.2, 0.7, 0.4, 0.4], groups=["a", "a", "b", "b"])
    assert out["roc_auc"] == 0.875  # 3 wins + 1 tie of 4 pairs
    assert out["gauc"] == 0.75 and out["gauc_groups_skipped"] == 0
    assert out["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.7) + math.log(0.4) + math.log(0.6)) / 4)
    assert out["brier"] == pytest.approx((0.04 + 0.09 + 0.36 + 0.16) / 4)
    assert out["ece"] == pytest.approx((0.2 + 0.2 + 0.3) / 4)  # bins 2, 4 (two samples), 7
    single = metrics.classification_metrics([0, 0], [0.1, 0.2])
    assert math.isnan(single["roc_auc"]) and math.isnan(single["pr_auc"])


def test_temperature_scaling_helpers():
    assert metrics.probabilities_to_logits([0.5, 0.8]).tolist() == pytest.approx([0.0, math.log(4.0)])
    assert metrics.temperature_scale([math.log(4.0)], 2.0).tolist() == pytest.approx([2 / 3])
    with pytest.raises(ValueError, match="positive"):
        metrics.temperature_scale([0.0], 0.0)


def test_calibrated_report_fits_validation_and_keeps_ranking():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 1.5, 4000)
    labels = (rng.random(4000) < 1 / (1 + np.exp(-true_logits))).astype(int)
    overconfident = 3.0 * true_logits  # a model 3x too sure
    report = metrics.calibrated_report(labels[:2000], overconfident[:2000], labels[2000:], overconfident[2000:], n_resamples=50)
    assert report["temperature"] == pytest.approx(3.0, rel=0.15)
    assert report["calibrated"]["roc_auc"] == report["uncalibrated"]["roc_auc"]
    assert report["calibrated"]["ece"] < 0.03 < report["uncalibrated"]["ece"]
    assert report["calibrated"]["log_loss"] < report["uncalibrated"]["log_loss"]
    low, high = report["intervals"]["roc_auc"]
    assert low < report["calibrated"]["roc_auc"] < high
    assert set(report["intervals"]) == {"roc_auc", "pr_auc", "log_loss", "brier", "ece", "ece_uncalibrated"}


def test_bootstrap_intervals_match_the_generic_bootstrap():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    probs = np.clip(0.3 * labels + rng.random(300) * 0.7, 0, 1)
    fast = metrics.bootstrap_classification_intervals(labels, probs, n_resamples=100, seed=5)
    for name, fn in [("roc_auc", metrics.roc_auc), ("brier", metrics.brier), ("log_loss", metrics.log_loss),
                     ("pr_auc", metrics.pr_auc), ("ece", metrics.expected_calibration_error)]:  # fmt: skip
        assert fast[name] == pytest.approx(metrics.bootstrap_interval(fn, labels, probs, n_resamples=100, seed=5)), name
    assert fast == metrics.bootstrap_classification_intervals(labels, probs, n_resamples=100, seed=5)


def test_bootstrap_gauc_matches_loop():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 200)
    probs = rng.random(200)
    groups = rng.integers(0, 20, 200)
    fast = metrics.bootstrap_classification_intervals(labels, probs, groups, n_resamples=60, seed=9)
    looped = metrics.bootstrap_interval(lambda y, p, g: metrics.grouped_auc(y, p, g)[0], labels, probs, groups, n_resamples=60, seed=9)
    assert fast["gauc"] == pytest.approx(looped)


def test_evaluate_module_optional_outputs(offline):
    module = metrics.load("classification", keep_in_memory=True)
    references, predictions = [0, 1, 1, 0, 1, 0], [0.1, 0.8, 0.6, 0.4, 0.3, 0.05]
    results = module.compute(
        references=references, predictions=predictions, groups=[1, 1, 2, 2, 3, 3],
        validation_predictions=predictions, validation_references=references, n_resamples=30,
    )  # fmt: skip
    assert results["gauc"] == metrics.grouped_auc(references, predictions, [1, 1, 2, 2, 3, 3])[0]
    temperature = metrics.fit_temperature(metrics.probabilities_to_logits(predictions), references)
    assert results["temperature"] == temperature
    calibrated = metrics.temperature_scale(metrics.probabilities_to_logits(predictions), temperature)
    assert results["calibrated_ece"] == metrics.expected_calibration_error(references, calibrated)
    assert results["roc_auc_low"] <= results["roc_auc"] <= results["roc_auc_high"]
