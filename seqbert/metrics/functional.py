"""Functional metrics API: pure numpy functions that return plain Python floats.

This is the import path for training code, scripts and tests. Each metric has exactly one
implementation, kept next to the evaluate module that reports it so that each module folder is
self-contained (loadable by path offline, publishable to the Hub as is):

- ranking maths in ``seqbert/metrics/ranking/ranking_math.py``;
- classification maths in ``seqbert/metrics/classification/classification_math.py``.

Both are re-exported here unchanged. :func:`bootstrap_interval`, which no evaluate module reports,
is implemented here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from .classification.classification_math import (
    bootstrap_classification_intervals,
    brier,
    calibrated_report,
    classification_metrics,
    expected_calibration_error,
    fit_temperature,
    grouped_auc,
    grouped_auc_details,
    log_loss,
    pr_auc,
    probabilities_to_logits,
    roc_auc,
    temperature_scale,
)
from .ranking.ranking_math import ranking_metrics, ranks_from_scores


# Upper bound on the number of resampled elements materialised at once by bootstrap_interval.
_MAX_RESAMPLE_ELEMENTS = 1 << 22


def bootstrap_interval(
    metric_fn: Callable[..., float],
    *arrays: ArrayLike,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    vectorized: bool = False,
) -> tuple[float, float]:
    r"""Percentile bootstrap confidence interval of ``metric_fn(*arrays)``.

    Rows (the first axis, shared by all arrays) are resampled with replacement ``n_resamples``
    times; the interval is the :math:`(\alpha/2,\ 1-\alpha/2)` quantile pair of the resampled
    statistics :math:`\hat\theta^{*}_1, \dots, \hat\theta^{*}_B`:

    .. math::

        \bigl[\, Q_{\alpha/2}(\hat\theta^{*}),\; Q_{1-\alpha/2}(\hat\theta^{*}) \,\bigr]

    The resample indices are drawn in vectorised blocks from ``numpy.random.default_rng(seed)``, so
    the result is deterministic for a seed. With ``vectorized=True``, ``metric_fn`` receives each
    block at once (every array gains a leading resample axis) and must return one value per resample;
    otherwise it is called once per resample. Errors raised by ``metric_fn`` (for example
    :func:`roc_auc` on a single-class resample) propagate.

    Args:
        metric_fn: statistic of the arrays, returning a float.
        *arrays: one or more arrays with the same length along the first axis.
        n_resamples: number of bootstrap resamples B.
        alpha: 1 - confidence level, in ``(0, 1)``.
        seed: seed of the random generator.
        vectorized: whether ``metric_fn`` accepts a leading resample axis.

    Returns:
        ``(low, high)``.

    Example:
        >>> low, high = bootstrap_interval(np.mean, np.arange(100.0), n_resamples=200)
        >>> bool(low < 49.5 < high)
        True
    """
    if not arrays:
        raise ValueError("bootstrap_interval needs at least one array to resample.")
    arrays = tuple(np.asarray(array) for array in arrays)
    for position, array in enumerate(arrays):
        if array.ndim == 0:
            raise ValueError(f"array {position} is a scalar; arrays must have a first (row) axis.")
    n = arrays[0].shape[0]
    lengths = [array.shape[0] for array in arrays]
    if any(length != n for length in lengths):
        raise ValueError(f"all arrays must have the same number of rows, got {lengths}.")
    if n == 0:
        raise ValueError("arrays are empty: there is nothing to resample.")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive int, got {n_resamples!r}.")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}.")

    rng = np.random.default_rng(seed)
    elements_per_resample = max(1, sum(array.size for array in arrays))
    block = max(1, _MAX_RESAMPLE_ELEMENTS // elements_per_resample)
    statistics = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        indices = rng.integers(0, n, size=(stop - start, n))
        if vectorized:
            values = np.asarray(metric_fn(*(array[indices] for array in arrays)), dtype=np.float64)
            if values.shape != (stop - start,):
                raise ValueError(
                    f"a vectorized metric_fn must return one value per resample, shape ({stop - start},); "
                    f"got {values.shape}."
                )
            statistics[start:stop] = values
        else:
            for offset, rows in enumerate(indices):
                statistics[start + offset] = metric_fn(*(array[rows] for array in arrays))
    low, high = np.quantile(statistics, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


__all__ = [
    "bootstrap_classification_intervals",
    "bootstrap_interval",
    "brier",
    "calibrated_report",
    "classification_metrics",
    "expected_calibration_error",
    "fit_temperature",
    "grouped_auc",
    "grouped_auc_details",
    "log_loss",
    "pr_auc",
    "probabilities_to_logits",
    "ranking_metrics",
    "ranks_from_scores",
    "roc_auc",
    "temperature_scale",
]
