"""Tests for seqbert.plots: every plot writes a readable PNG of the expected size, without a display."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from seqbert import plots


def _png_size(path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def _training_log() -> list[dict]:
    records = []
    for step in range(0, 300, 10):
        records.append({"step": step, "epoch": step / 100, "loss": 5.0 * math.exp(-step / 100) + 1.0})
        if step % 50 == 0:
            records.append({"step": step, "val_ndcg@10": 0.3 * (1 - math.exp(-step / 120))})
    records.append({"step": 300, "loss": float("nan")})  # skipped
    records.append({"epoch": 3.0, "loss": 1.0})  # no "step": skipped
    return records


def test_plot_curves(tmp_path):
    path = plots.plot_curves(
        _training_log(),
        x="step",
        ys=["loss", "val_ndcg@10"],
        path=tmp_path / "sub" / "curves.png",
        title="Pretraining",
    )
    assert path == tmp_path / "sub" / "curves.png"
    width, height = _png_size(path)
    assert (width, height) == (round(7.0 * plots.DPI), round((1.0 + 2.4 * 2) * plots.DPI))


def test_plot_curves_with_a_metric_that_has_no_data(tmp_path):
    path = plots.plot_curves(_training_log(), x="step", ys=["grad_norm"], path=tmp_path / "empty.png")
    assert _png_size(path) == (round(7.0 * plots.DPI), round(3.4 * plots.DPI))


def test_plot_curves_needs_a_metric(tmp_path):
    with pytest.raises(ValueError, match="ys"):
        plots.plot_curves(_training_log(), x="step", ys=[], path=tmp_path / "x.png")


def test_plot_metric_bars(tmp_path):
    rows = [
        {"model": "seqbert", "split": "validation", "NDCG@10": 0.40},
        {"model": "seqbert", "split": "test", "NDCG@10": 0.38},
        {"model": "popularity", "split": "test", "NDCG@10": 0.05},
        {"model": "markov", "split": "test", "HR@10": 0.3},  # no NDCG@10: skipped
    ]
    path = plots.plot_metric_bars(rows, metric="NDCG@10", path=tmp_path / "bars.png")
    assert _png_size(path) == (round(7.0 * plots.DPI), round((1.2 + 0.45 * 3) * plots.DPI))


def test_plot_metric_bars_without_the_metric(tmp_path):
    with pytest.raises(ValueError, match="NDCG@10"):
        plots.plot_metric_bars([{"model": "a", "HR@10": 0.1}], metric="NDCG@10", path=tmp_path / "x.png")


def test_plot_reliability(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.beta(2, 5, size=2000)
    labels = (rng.random(2000) < probs).astype(int)
    path = plots.plot_reliability(labels, probs, n_bins=10, path=tmp_path / "reliability.png", title="Test split")
    assert _png_size(path) == (round(6.0 * plots.DPI), round(7.0 * plots.DPI))


@pytest.mark.parametrize(
    ("labels", "probs", "n_bins", "message"),
    [
        ([], [], 10, "non-empty"),
        ([0, 1], [0.5], 10, "equal length"),
        ([0, 2], [0.5, 0.5], 10, "labels must be 0 or 1"),
        ([0, 1], [0.5, 1.5], 10, r"\[0, 1\]"),
        ([0, 1], [0.5, float("nan")], 10, r"\[0, 1\]"),
        ([0, 1], [0.5, 0.5], 0, "n_bins"),
    ],
)
def test_plot_reliability_rejects_bad_input(tmp_path, labels, probs, n_bins, message):
    with pytest.raises(ValueError, match=message):
        plots.plot_reliability(labels, probs, n_bins=n_bins, path=tmp_path / "x.png")


def test_dpi_is_at_least_100():
    assert plots.DPI >= 100
