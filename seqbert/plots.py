"""PNG plots for model cards and reports: training curves, model comparison bars, reliability diagrams,
explained predictions and their faithfulness curves.

Figures are drawn with matplotlib's object-oriented API on an Agg canvas, so nothing here touches pyplot's
global state or opens a window, whatever the configured backend.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


logger = logging.getLogger(__name__)

DPI = 120
"""Resolution of every saved PNG (dots per inch)."""

_COLOR = "#3b75af"
_BASELINE_COLOR = "#9aa5b1"


def plot_curves(
    records: Sequence[Mapping[str, Any]],
    *,
    x: str,
    ys: Sequence[str],
    path: str | Path,
    title: str = "",
    marked_x: float | None = None,
) -> Path:
    """Plot one subplot per metric in ``ys`` against ``x`` (e.g. a training log: step vs loss, NDCG@10).

    Records missing ``x`` or a given y, or holding a non-finite value, are skipped for that subplot, so
    training-loss and validation records can share one log.

    Args:
        records: Log records, e.g. ``[{"step": 10, "loss": 3.2}, {"step": 20, "val_ndcg@10": 0.1}]``.
        x: The key on the horizontal axis (``"step"``, ``"epoch"``, ``"wall_seconds"``...).
        ys: The keys to plot, one subplot each, sharing the x axis.
        path: Where to write the PNG (parent folders are created).
        title: Figure title.
        marked_x: Draw a vertical line here on every subplot (e.g. the step whose weights were saved).

    Metrics bounded by [0, 1] (``roc_auc``, ``pr_auc``, ``ndcg@K``, ``hr@K``, ``mrr``) keep their axis inside
    [0, 1]; ROC-AUC also shows chance (0.5) as a dashed line.

    Returns:
        The PNG path.

    Raises:
        ValueError: If ``ys`` is empty.
    """
    if not ys:
        raise ValueError("ys must name at least one key to plot.")
    fig = _figure(width=7.0, height=1.0 + 2.4 * len(ys))
    axes = fig.subplots(len(ys), 1, sharex=True, squeeze=False)[:, 0]
    for ax, key in zip(axes, ys):
        points = [(float(r[x]), float(r[key])) for r in records if _finite(r.get(x)) and _finite(r.get(key))]
        if points:
            points.sort()
            xs, values = zip(*points)
            ax.plot(xs, values, color=_COLOR, linewidth=1.5, marker="o" if len(points) <= 30 else None, markersize=3)
        else:
            logger.warning("No finite (%s, %s) pairs to plot.", x, key)
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="gray")
        metric = key.removeprefix("val_").removeprefix("test_")
        if metric == "roc_auc":
            ax.axhline(0.5, linestyle="--", color="gray", linewidth=1, label="chance")
            ax.legend(loc="lower right")
        if metric.split("@")[0] in _UNIT_METRICS:
            low, high = ax.get_ylim()
            ax.set_ylim(max(low, 0.0), min(high, 1.0))
        if marked_x is not None:
            ax.axvline(marked_x, color=_BASELINE_COLOR, linewidth=1.2, linestyle=":", label=f"saved ({x} {marked_x:g})")
            ax.legend(loc="best")
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel(x)
    return _save(fig, path, title)


_UNIT_METRICS = {"roc_auc", "pr_auc", "gauc", "ndcg", "hr", "mrr", "accuracy"}


def plot_metric_bars(
    rows: Sequence[Mapping[str, Any]],
    *,
    metric: str,
    label_key: str = "model",
    path: str | Path,
    title: str = "",
) -> Path:
    """Horizontal bar chart comparing ``metric`` across rows (models, baselines), values written on the bars.

    Rows without a finite ``metric`` are skipped. When a label repeats (one model on several splits), the
    row's ``split`` is added to it. Rows whose label starts with "seqbert" are coloured, the others grey.

    Args:
        rows: Result rows, e.g. ``[{"model": "seqbert", "split": "test", "NDCG@10": 0.41}, ...]``.
        metric: The key to compare.
        label_key: The key naming each bar.
        path: Where to write the PNG.
        title: Figure title (default: ``metric``).

    Returns:
        The PNG path.

    Raises:
        ValueError: If no row has a finite value for ``metric``.
    """
    kept = [r for r in rows if _finite(r.get(metric))]
    if not kept:
        seen = sorted({str(key) for row in rows for key in row})
        raise ValueError(f"No row has a finite value for {metric!r}; keys seen: {seen}.")
    labels = [str(r.get(label_key, "?")) for r in kept]
    repeated = {label for label, n in Counter(labels).items() if n > 1}
    labels = [
        f"{label} ({r['split']})" if label in repeated and r.get("split") is not None else label
        for label, r in zip(labels, kept)
    ]
    values = [float(r[metric]) for r in kept]
    colors = [_COLOR if str(r.get(label_key, "")).lower().startswith("seqbert") else _BASELINE_COLOR for r in kept]

    fig = _figure(width=7.0, height=1.2 + 0.45 * len(kept))
    ax = fig.subplots()
    positions = np.arange(len(kept))
    bars = ax.barh(positions, values, color=colors)
    ax.set_yticks(positions, labels)
    ax.invert_yaxis()  # first row on top
    ax.bar_label(bars, labels=[f"{v:.4f}" for v in values], padding=3, fontsize=9)
    low, high = min(0.0, *values), max(0.0, *values)
    span = (high - low) or 1.0
    ax.set_xlim(low - (0.05 * span if low < 0 else 0.0), high + 0.2 * span)
    ax.set_xlabel(metric)
    ax.set_ylabel(label_key)
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path, title or metric)


def plot_reliability(
    labels: Sequence[float] | np.ndarray,
    probs: Sequence[float] | np.ndarray,
    *,
    n_bins: int = 10,
    path: str | Path,
    title: str = "",
) -> Path:
    """Reliability diagram (observed positive rate per predicted-probability bin) over a histogram of predictions.

    Bins are equal-width on [0, 1]; the legend reports the expected calibration error
    :math:`\\mathrm{ECE} = \\sum_b \\frac{n_b}{N} \\lvert \\bar y_b - \\bar p_b \\rvert`.

    Args:
        labels: Binary outcomes (0 or 1).
        probs: Predicted probabilities of the positive class, in [0, 1].
        n_bins: Number of equal-width bins.
        path: Where to write the PNG.
        title: Figure title.

    Returns:
        The PNG path.

    Raises:
        ValueError: On empty or mismatched inputs, labels other than 0/1, probabilities outside [0, 1],
            or ``n_bins < 1``.
    """
    y = np.asarray(labels, dtype=float).ravel()
    p = np.asarray(probs, dtype=float).ravel()
    if y.size == 0 or y.size != p.size:
        raise ValueError(f"labels and probs must be non-empty and of equal length, got {y.size} and {p.size}.")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"labels must be 0 or 1, got values {np.unique(y)[:10].tolist()}.")
    if not (np.isfinite(p).all() and p.min() >= 0.0 and p.max() <= 1.0):
        raise ValueError(f"probs must lie in [0, 1], got range [{np.nanmin(p)}, {np.nanmax(p)}].")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}.")

    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(p, edges[1:-1], right=True), 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    filled = counts > 0
    mean_prob = np.bincount(bins, weights=p, minlength=n_bins)[filled] / counts[filled]
    positive_rate = np.bincount(bins, weights=y, minlength=n_bins)[filled] / counts[filled]
    ece = float(np.sum(counts[filled] / y.size * np.abs(positive_rate - mean_prob)))

    fig = _figure(width=6.0, height=7.0)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="perfect calibration")
    top.plot(mean_prob, positive_rate, marker="o", color=_COLOR, linewidth=1.5, label=f"model (ECE = {ece:.4f})")
    top.set_xlim(0.0, 1.0)
    top.set_ylim(-0.03, 1.03)  # room for markers at 0 and 1
    top.set_ylabel("observed positive rate")
    top.legend(loc="upper left")
    top.grid(True, alpha=0.3)
    bottom.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=_BASELINE_COLOR, edgecolor="white")
    bottom.set_xlabel("predicted probability")
    bottom.set_ylabel("count")
    bottom.grid(True, axis="y", alpha=0.3)
    return _save(fig, path, title or "Reliability diagram")


def plot_reliability_comparison(
    curves: Mapping[str, tuple[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray]],
    *,
    n_bins: int = 10,
    path: str | Path,
    title: str = "",
) -> Path:
    """Reliability diagrams of several prediction sets on one axis (e.g. a model before and after
    temperature scaling, and a baseline), each labelled with its ECE over ``n_bins`` equal-width bins.

    Args:
        curves: name → ``(labels, probs)``; labels 0/1, probabilities in [0, 1].
        n_bins: number of equal-width bins.
        path: where to write the PNG.
        title: figure title.

    Returns:
        The PNG path.
    """
    if not curves:
        raise ValueError("curves is empty: give at least one (labels, probs) pair.")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}.")
    fig = _figure(width=6.5, height=6.0)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="perfect calibration")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    for name, (labels, probs) in curves.items():
        y = np.asarray(labels, dtype=float).ravel()
        p = np.asarray(probs, dtype=float).ravel()
        if y.size == 0 or y.size != p.size:
            raise ValueError(f"{name}: labels and probs must be non-empty and of equal length, got {y.size} and {p.size}.")
        if not (np.isfinite(p).all() and p.min() >= 0.0 and p.max() <= 1.0):
            raise ValueError(f"{name}: probs must lie in [0, 1].")
        bins = np.clip(np.digitize(p, edges[1:-1], right=True), 0, n_bins - 1)
        counts = np.bincount(bins, minlength=n_bins)
        filled = counts > 0
        mean_prob = np.bincount(bins, weights=p, minlength=n_bins)[filled] / counts[filled]
        positive_rate = np.bincount(bins, weights=y, minlength=n_bins)[filled] / counts[filled]
        ece = float(np.sum(counts[filled] / y.size * np.abs(positive_rate - mean_prob)))
        ax.plot(mean_prob, positive_rate, marker="o", linewidth=1.5, label=f"{name} (ECE = {ece:.4f})")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed positive rate")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(True, alpha=0.3)
    return _save(fig, path, title or "Reliability diagram")


def plot_explanation(explanation: Any, *, path: str | Path, title: str = "", max_events: int = 40) -> Path:
    """One user's timeline with each event coloured by its attribution (:class:`seqbert.explain.Explanation`).

    One row per event, oldest at the top, labelled with its time (UTC), event type and item; the bar is its
    attribution in logit units, coloured on a diverging scale centred on 0 (red raised the prediction, blue
    lowered it, white did nothing). The header gives the prediction, the baseline and the method.

    Args:
        explanation: an ``Explanation`` or its ``to_dict()``.
        path: where to write the PNG.
        title: figure title (default: the explained target).
        max_events: show only the most recent events beyond this many (the header counts the others).

    Returns:
        The PNG path.
    """
    from datetime import datetime, timezone

    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    data = explanation.to_dict() if hasattr(explanation, "to_dict") else dict(explanation)
    events = list(data["events"])[-max_events:] if max_events > 0 else []
    hidden = len(data["events"]) - len(events)
    values = np.array([float(event["attribution"]) for event in events])
    limit = float(np.abs(values).max(initial=0.0)) or 1.0
    norm, cmap = Normalize(-limit, limit), colormaps["RdBu_r"]  # symmetric limits: white is exactly 0

    fig = _figure(width=9.0, height=1.8 + 0.3 * max(len(events), 1))
    ax = fig.subplots()
    if events:
        rows = np.arange(len(events))
        ax.barh(rows, values, color=cmap(norm(values)), edgecolor="#4d4d4d", linewidth=0.4)
        width = max(len(str(e["item_id"])[:24]) for e in events)  # equal-length labels line up
        labels = [
            f"{datetime.fromtimestamp(int(e['timestamp']), tz=timezone.utc):%Y-%m-%d %H:%M}  {str(e['event_type'])[:8]:<8}  "
            f"{str(e['item_id'])[:24]:<{width}}"
            for e in events
        ]
        ax.set_yticks(rows, labels, fontsize=8, family="monospace")
        ax.invert_yaxis()  # oldest on top, like a log
        ax.set_xlim(-1.15 * limit, 1.15 * limit)
    else:
        ax.text(0.5, 0.5, "no events", transform=ax.transAxes, ha="center", va="center", color="gray")
    ax.axvline(0.0, color="gray", linewidth=0.8)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_xlabel("attribution (logit units; > 0 raised the prediction)")
    ax.set_ylabel("event time (UTC), type, item")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="attribution", shrink=min(0.8, 6.0 / max(len(events), 1)))
    kind = (f"probability {data['prediction']:.4f}" if data.get("rank") is None
            else f"score {data['prediction']:.3f} (rank {data['rank']})")  # fmt: skip
    header = (f"{kind}; logit {data['logit']:+.3f} = baseline {data['baseline_logit']:+.3f} + events {values.sum():+.3f}\n"
              f"{data['method'].replace('_', ' ')}")  # fmt: skip
    if hidden:
        header += f"; {hidden} older events not shown"
    ax.set_title(header, fontsize=9)
    return _save(fig, path, title or f"Why {data['target']}")


def plot_deletion_curves(
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    *,
    path: str | Path,
    xlabel: str = "k (events)",
    ylabel: str = "mean change of the prediction",
    title: str = "",
    columns: int = 2,
) -> Path:
    """Faithfulness curves: one subplot per panel (e.g. per model and measure, ``columns`` a row), one line per
    strategy (e.g. removing the top-attributed, random or most recent events), ``{panel: {label: (ks, values)}}``."""
    if not panels:
        raise ValueError("panels is empty: give at least one {label: (xs, ys)} mapping.")
    columns = max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / columns)
    fig = _figure(width=5.5 * columns, height=0.8 + 3.6 * rows)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    for ax, (name, lines) in zip(axes, panels.items()):
        for label, (xs, ys) in lines.items():
            ax.plot(list(xs), list(ys), marker="o", markersize=3, linewidth=1.5, label=label)
        ax.axhline(0.0, color="gray", linewidth=0.8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return _save(fig, path, title)


def _finite(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _figure(*, width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path, title: str) -> Path:
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    logger.info("Wrote plot %s.", path)
    return path


__all__ = [
    "DPI",
    "plot_curves",
    "plot_deletion_curves",
    "plot_explanation",
    "plot_metric_bars",
    "plot_reliability",
    "plot_reliability_comparison",
]
