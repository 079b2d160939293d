"""Binary-classification maths: ROC-AUC, PR-AUC, log loss, Brier score, ECE, GAUC, temperature scaling.

This file is the only implementation of these metrics. It depends on numpy alone and imports nothing
else from seqbert, because it ships inside the ``classification`` evaluate module folder:
``classification.py`` imports it with a single-dot relative import, which is the form evaluate copies
next to the module (it does not follow imports made by this file). ``seqbert.metrics.functional``
re-exports it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _vector(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}.")
    if array.size == 0:
        raise ValueError(f"{name} is empty.")
    return array


def _binary_labels(labels: ArrayLike) -> np.ndarray:
    labels = _vector(labels, "labels")
    if labels.dtype.kind not in "biuf":
        raise ValueError(f"labels must be 0/1 (or bool), got dtype {labels.dtype}.")
    bad = np.flatnonzero((labels != 0) & (labels != 1))
    if bad.size:
        raise ValueError(f"labels must be 0 or 1, got {labels[bad[0]].item()!r} at position {int(bad[0])}.")
    return labels.astype(np.float64)


def _real(values: ArrayLike, name: str, size: int) -> np.ndarray:
    values = _vector(values, name)
    if values.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {values.dtype}.")
    if values.shape[0] != size:
        raise ValueError(f"{name} has {values.shape[0]} entries but labels has {size}.")
    values = values.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"{name} must be finite, got {values[bad[0]].item()!r} at position {int(bad[0])}.")
    return values


def _probabilities(probs: ArrayLike, size: int) -> np.ndarray:
    probs = _real(probs, "probs", size)
    bad = np.flatnonzero((probs < 0.0) | (probs > 1.0))
    if bad.size:
        raise ValueError(f"probs must lie in [0, 1], got {probs[bad[0]].item()!r} at position {int(bad[0])}.")
    return probs


def _auc_per_group(
    labels: np.ndarray, scores: np.ndarray, group_index: np.ndarray, num_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tie-aware Mann-Whitney AUC of each group: (auc, group size, whether the group has both classes)."""
    order = np.lexsort((scores, group_index))
    groups, ordered_scores, ordered_labels = group_index[order], scores[order], labels[order]
    sizes = np.bincount(groups, minlength=num_groups)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    position = np.arange(groups.size) - starts[groups] + 1  # 1-based rank inside the group
    # Runs of equal (group, score) share the average of the ranks they span.
    new_run = np.ones(groups.size, dtype=bool)
    new_run[1:] = (groups[1:] != groups[:-1]) | (ordered_scores[1:] != ordered_scores[:-1])
    run_id = np.cumsum(new_run) - 1
    run_average = position[new_run] + (np.bincount(run_id) - 1) / 2.0
    average_rank = run_average[run_id]

    positives = np.bincount(groups, weights=ordered_labels, minlength=num_groups)
    negatives = sizes - positives
    positive_rank_sum = np.bincount(groups, weights=average_rank * ordered_labels, minlength=num_groups)
    usable = (positives > 0) & (negatives > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (positive_rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)
    return auc, sizes, usable


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    r"""Area under the ROC curve, via the tie-aware Mann-Whitney U statistic.

    .. math::

        \mathrm{AUC} = \frac{\sum_{i:\,y_i=1} R_i - n_+(n_+ + 1)/2}{n_+\, n_-}

    where :math:`R_i` is the average rank (1 = lowest score, ties share their mean rank) of sample
    :math:`i`. Plain: the probability that a random positive scores above a random negative, ties
    counting one half.

    Args:
        labels: ``(n,)`` 0/1 labels; both classes must be present.
        scores: ``(n,)`` real scores or probabilities, higher means more likely positive.

    Example:
        >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
    """
    labels = _binary_labels(labels)
    scores = _real(scores, "scores", labels.size)
    auc, _, usable = _auc_per_group(labels, scores, np.zeros(labels.size, dtype=np.int64), 1)
    if not usable[0]:
        raise ValueError(
            f"roc_auc needs both classes in labels, got only {int(labels[0])} ({labels.size} samples)."
        )
    return float(auc[0])


def pr_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    r"""Area under the precision-recall curve, as average precision (no interpolation).

    .. math::

        \mathrm{AP} = \sum_k (R_k - R_{k-1})\, P_k

    over the distinct score thresholds in decreasing order, with precision :math:`P_k` and recall
    :math:`R_k` at threshold :math:`k` and :math:`R_0 = 0`. Tied scores enter at the same threshold.

    Args:
        labels: ``(n,)`` 0/1 labels; at least one positive.
        scores: ``(n,)`` real scores or probabilities.

    Example:
        >>> round(pr_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
        0.8333
    """
    labels = _binary_labels(labels)
    scores = _real(scores, "scores", labels.size)
    if not labels.any():
        raise ValueError(f"pr_auc needs at least one positive label, got none in {labels.size} samples.")
    order = np.argsort(-scores, kind="mergesort")
    ordered_scores, ordered_labels = scores[order], labels[order]
    threshold_end = np.concatenate((np.flatnonzero(np.diff(ordered_scores)), [labels.size - 1]))
    true_positives = np.cumsum(ordered_labels)[threshold_end]
    predicted_positives = threshold_end + 1.0
    precision = true_positives / predicted_positives
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def log_loss(labels: ArrayLike, probs: ArrayLike, eps: float = 1e-15) -> float:
    r"""Mean binary cross-entropy (negative log-likelihood), in nats.

    .. math::

        \mathcal{L} = -\frac{1}{n}\sum_i \bigl[y_i \log p_i + (1 - y_i)\log(1 - p_i)\bigr]

    with :math:`p_i` clipped to :math:`[\epsilon, 1 - \epsilon]` so a confident mistake costs a
    large but finite amount.

    Args:
        labels: ``(n,)`` 0/1 labels.
        probs: ``(n,)`` predicted probabilities of the positive class, in ``[0, 1]``.
        eps: clipping constant in ``(0, 0.5)``.

    Example:
        >>> round(log_loss([1, 0], [0.9, 0.2]), 4)
        0.1643
    """
    labels = _binary_labels(labels)
    probs = _probabilities(probs, labels.size)
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must lie in (0, 0.5), got {eps!r}.")
    probs = np.clip(probs, eps, 1.0 - eps)
    return float(-np.mean(np.where(labels == 1.0, np.log(probs), np.log1p(-probs))))


def brier(labels: ArrayLike, probs: ArrayLike) -> float:
    r"""Brier score: mean squared error of the predicted probabilities.

    .. math::

        \mathrm{BS} = \frac{1}{n}\sum_i (p_i - y_i)^2

    Example:
        >>> round(brier([1, 0], [0.9, 0.2]), 4)
        0.025
    """
    labels = _binary_labels(labels)
    probs = _probabilities(probs, labels.size)
    return float(np.mean((probs - labels) ** 2))


def expected_calibration_error(labels: ArrayLike, probs: ArrayLike, n_bins: int = 10) -> float:
    r"""Expected calibration error over equal-width probability bins.

    .. math::

        \mathrm{ECE} = \sum_{b=1}^{B} \frac{n_b}{n}\,\bigl|\bar y_b - \bar p_b\bigr|

    where bin :math:`b` holds the samples with :math:`p \in [(b-1)/B,\, b/B)` (the last bin also
    holds :math:`p = 1`), :math:`\bar y_b` is their positive rate and :math:`\bar p_b` their mean
    predicted probability. Empty bins contribute nothing.

    Args:
        labels: ``(n,)`` 0/1 labels.
        probs: ``(n,)`` predicted probabilities of the positive class.
        n_bins: number of bins B.

    Example:
        >>> round(expected_calibration_error([0, 1, 1, 1], [0.05, 0.15, 0.85, 0.95], n_bins=2), 4)
        0.25
    """
    labels = _binary_labels(labels)
    probs = _probabilities(probs, labels.size)
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}.")
    bins = np.minimum((probs * n_bins).astype(np.int64), n_bins - 1)
    positives = np.bincount(bins, weights=labels, minlength=n_bins)
    confidence = np.bincount(bins, weights=probs, minlength=n_bins)
    # Each bin's |sum(y) - sum(p)| / n equals (n_b / n) * |mean(y) - mean(p)|.
    return float(np.abs(positives - confidence).sum() / labels.size)


def grouped_auc(labels: ArrayLike, scores: ArrayLike, groups: ArrayLike) -> tuple[float, int]:
    r"""Group AUC (GAUC): per-group ROC-AUC averaged with group-size weights.

    .. math::

        \mathrm{GAUC} = \frac{\sum_{g \in G} n_g\, \mathrm{AUC}_g}{\sum_{g \in G} n_g}

    where :math:`G` holds the groups (for example users or sessions) that contain both classes and
    :math:`n_g` is the number of samples in group :math:`g`. Single-class groups are skipped.

    Args:
        labels: ``(n,)`` 0/1 labels.
        scores: ``(n,)`` real scores.
        groups: ``(n,)`` group keys (ints or strings).

    Returns:
        ``(gauc, groups_used)``: the weighted AUC and how many groups entered it.

    Example:
        >>> grouped_auc([0, 1, 0, 1, 1], [0.2, 0.9, 0.8, 0.3, 0.5], ["a", "a", "b", "b", "c"])
        (0.5, 2)
    """
    labels = _binary_labels(labels)
    scores = _real(scores, "scores", labels.size)
    groups = _vector(groups, "groups")
    if groups.shape[0] != labels.size:
        raise ValueError(f"groups has {groups.shape[0]} entries but labels has {labels.size}.")
    keys, group_index = np.unique(groups, return_inverse=True)
    auc, sizes, usable = _auc_per_group(labels, scores, group_index.reshape(-1), keys.size)
    if not usable.any():
        raise ValueError(f"grouped_auc needs a group with both classes; none of the {keys.size} groups has one.")
    weights = sizes[usable].astype(np.float64)
    return float(np.sum(weights * auc[usable]) / weights.sum()), int(usable.sum())


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def fit_temperature(logits: ArrayLike, labels: ArrayLike, bounds: tuple[float, float] = (1e-3, 1e3)) -> float:
    r"""Temperature :math:`T` that minimises the binary NLL of :math:`\sigma(z / T)` (temperature scaling).

    .. math::

        T^\star = \arg\min_{T \in [T_{lo}, T_{hi}]} \; \frac{1}{n}\sum_i \log\bigl(1 + e^{-s_i z_i / T}\bigr),
        \qquad s_i = 2y_i - 1

    The loss is convex in :math:`\beta = 1/T`, so the minimiser is the root of its derivative, found
    by Newton steps kept inside a shrinking bracket (bisection whenever Newton would leave it). If the
    root lies outside the bounds, the nearest bound is the constrained minimiser and is returned:
    ``bounds[1]`` when the logits carry no positive signal, ``bounds[0]`` when they separate the
    classes perfectly.

    Args:
        logits: ``(n,)`` uncalibrated logits.
        labels: ``(n,)`` 0/1 labels; both classes must be present.
        bounds: ``(T_lo, T_hi)`` with ``0 < T_lo < T_hi``.

    Example:
        >>> round(fit_temperature([-2.0, 2.0, 2.0, -2.0], [0, 1, 0, 1]), 1)
        1000.0
    """
    labels = _binary_labels(labels)
    logits = _real(logits, "logits", labels.size)
    if labels.min() == labels.max():
        raise ValueError(f"fit_temperature needs both classes in labels, got only {int(labels[0])}.")
    low_t, high_t = (float(b) for b in bounds)
    if not 0.0 < low_t < high_t < np.inf:
        raise ValueError(f"bounds must satisfy 0 < low < high < inf, got {bounds!r}.")

    signed = (2.0 * labels - 1.0) * logits

    def slope_and_curvature(beta: float) -> tuple[float, float]:
        p_wrong = _sigmoid(-beta * signed)
        return float(np.mean(-signed * p_wrong)), float(np.mean(logits**2 * p_wrong * (1.0 - p_wrong)))

    low, high = 1.0 / high_t, 1.0 / low_t  # the bracket, in beta
    if slope_and_curvature(low)[0] >= 0.0:
        return high_t
    if slope_and_curvature(high)[0] <= 0.0:
        return low_t
    beta = min(max(1.0, low), high)
    for _ in range(200):
        slope, curvature = slope_and_curvature(beta)
        if slope > 0.0:
            high = beta
        else:
            low = beta
        newton = beta - slope / curvature if curvature > 0.0 else np.nan
        next_beta = newton if low < newton < high else 0.5 * (low + high)
        if abs(next_beta - beta) <= 1e-12 * beta or high - low <= 1e-12 * high:
            beta = next_beta
            break
        beta = next_beta
    return float(1.0 / beta)


def grouped_auc_details(labels: ArrayLike, scores: ArrayLike, groups: ArrayLike) -> dict[str, float | int]:
    r""":func:`grouped_auc` with the bookkeeping a report needs: how many groups (users) entered the
    average and how many were skipped because all their samples share one class.

    Returns:
        ``{"gauc", "groups_used", "groups_skipped", "samples_used"}``.

    Example:
        >>> grouped_auc_details([0, 1, 0, 1, 1], [0.2, 0.9, 0.8, 0.3, 0.5], ["a", "a", "b", "b", "c"])
        {'gauc': 0.5, 'groups_used': 2, 'groups_skipped': 1, 'samples_used': 4}
    """
    labels = _binary_labels(labels)
    scores = _real(scores, "scores", labels.size)
    groups = _vector(groups, "groups")
    if groups.shape[0] != labels.size:
        raise ValueError(f"groups has {groups.shape[0]} entries but labels has {labels.size}.")
    keys, group_index = np.unique(groups, return_inverse=True)
    auc, sizes, usable = _auc_per_group(labels, scores, group_index.reshape(-1), keys.size)
    if not usable.any():
        raise ValueError(f"grouped_auc needs a group with both classes; none of the {keys.size} groups has one.")
    weights = sizes[usable].astype(np.float64)
    return {
        "gauc": float(np.sum(weights * auc[usable]) / weights.sum()),
        "groups_used": int(usable.sum()),
        "groups_skipped": int(keys.size - usable.sum()),
        "samples_used": int(weights.sum()),
    }


def probabilities_to_logits(probs: ArrayLike, eps: float = 1e-7) -> np.ndarray:
    r"""Log-odds :math:`\log(p / (1 - p))` of probabilities clipped to :math:`[\epsilon, 1 - \epsilon]`
    (so a model that only outputs probabilities can be temperature-scaled).

    Example:
        >>> probabilities_to_logits([0.5, 0.75]).round(4).tolist()
        [0.0, 1.0986]
    """
    probs = np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0 - eps)
    return np.log(probs) - np.log1p(-probs)


def temperature_scale(logits: ArrayLike, temperature: float) -> np.ndarray:
    r"""Calibrated probabilities :math:`\sigma(z / T)` of logits :math:`z` (see :func:`fit_temperature`).

    Example:
        >>> temperature_scale([0.0, 2.0], 2.0).round(4).tolist()
        [0.5, 0.7311]
    """
    if not temperature > 0.0:
        raise ValueError(f"temperature must be positive, got {temperature!r}.")
    return _sigmoid(np.asarray(logits, dtype=np.float64) / float(temperature))


def classification_metrics(
    labels: ArrayLike, probs: ArrayLike, groups: ArrayLike | None = None, n_bins: int = 10, eps: float = 1e-15
) -> dict[str, float]:
    """Every binary metric of one prediction set: ranking first (``roc_auc``, ``pr_auc`` and, with
    ``groups``, ``gauc`` plus ``gauc_groups_used`` / ``gauc_groups_skipped``), then probabilistic
    accuracy (``log_loss``, ``brier``) and calibration (``ece`` over ``n_bins`` equal-width bins).
    Ranking metrics are NaN when only one class is present.

    Example:
        >>> out = classification_metrics([0, 1, 1, 0], [0.2, 0.7, 0.4, 0.4], groups=["a", "a", "b", "b"])
        >>> {name: round(value, 4) for name, value in out.items()}  # doctest: +NORMALIZE_WHITESPACE
        {'roc_auc': 0.875, 'pr_auc': 0.8333, 'gauc': 0.75, 'gauc_groups_used': 2, 'gauc_groups_skipped': 0,
         'log_loss': 0.5017, 'brier': 0.1625, 'ece': 0.175}
    """
    labels = _binary_labels(labels)
    probs = _probabilities(probs, labels.size)
    both = 0.0 < labels.mean() < 1.0
    out: dict[str, float] = {
        "roc_auc": roc_auc(labels, probs) if both else float("nan"),
        "pr_auc": pr_auc(labels, probs) if labels.any() else float("nan"),
    }
    if groups is not None:
        try:
            details = grouped_auc_details(labels, probs, groups)
        except ValueError:
            details = {"gauc": float("nan"), "groups_used": 0, "groups_skipped": int(np.unique(np.asarray(groups)).size)}
        out.update(gauc=details["gauc"], gauc_groups_used=details["groups_used"], gauc_groups_skipped=details["groups_skipped"])
    out.update(
        log_loss=log_loss(labels, probs, eps=eps),
        brier=brier(labels, probs),
        ece=expected_calibration_error(labels, probs, n_bins=n_bins),
    )
    return out


_BOOTSTRAP_BLOCK_ELEMENTS = 1 << 22


def bootstrap_classification_intervals(
    labels: ArrayLike,
    probs: ArrayLike,
    groups: ArrayLike | None = None,
    n_resamples: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    n_bins: int = 10,
) -> dict[str, tuple[float, float]]:
    r"""Percentile-bootstrap :math:`(1-\alpha)` intervals of ``roc_auc``, ``pr_auc``, ``log_loss``,
    ``brier``, ``ece`` (and ``gauc`` with ``groups``) of one prediction set.

    Rows are resampled with replacement ``n_resamples`` times from ``numpy.random.default_rng(seed)``
    (deterministic per seed); the interval is the :math:`(\alpha/2, 1-\alpha/2)` quantile pair of the
    resampled values. Resamples in which a metric is undefined (one class only; no group with both
    classes) are left out of that metric's quantiles. ROC-AUC and GAUC are computed for a whole block
    of resamples in one tie-aware rank pass.

    Example:
        >>> intervals = bootstrap_classification_intervals([0, 1] * 50, [0.3, 0.6] * 50, n_resamples=50)
        >>> intervals["roc_auc"], intervals["brier"][0] < 0.125 < intervals["brier"][1]
        ((1.0, 1.0), True)
    """
    labels = _binary_labels(labels)
    probs = _probabilities(probs, labels.size)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive int, got {n_resamples!r}.")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}.")
    n = labels.size
    group_index, num_groups = None, 0
    if groups is not None:
        groups = _vector(groups, "groups")
        if groups.shape[0] != n:
            raise ValueError(f"groups has {groups.shape[0]} entries but labels has {n}.")
        keys, group_index = np.unique(groups, return_inverse=True)
        group_index, num_groups = group_index.reshape(-1), keys.size
    rng = np.random.default_rng(seed)
    names = ["roc_auc", "pr_auc", "log_loss", "brier", "ece"] + (["gauc"] if groups is not None else [])
    values = {name: np.full(n_resamples, np.nan) for name in names}
    block = max(1, _BOOTSTRAP_BLOCK_ELEMENTS // n)
    clipped = np.clip(probs, 1e-15, 1.0 - 1e-15)
    bins = np.minimum((probs * n_bins).astype(np.int64), n_bins - 1)
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        size = stop - start
        rows = rng.integers(0, n, size=(size, n))
        y, p = labels[rows], probs[rows]
        resample = np.repeat(np.arange(size), n)
        auc, _, usable = _auc_per_group(y.ravel(), p.ravel(), resample, size)
        values["roc_auc"][start:stop] = np.where(usable, auc, np.nan)
        values["log_loss"][start:stop] = -np.mean(np.where(y == 1.0, np.log(clipped[rows]), np.log1p(-clipped[rows])), axis=1)
        values["brier"][start:stop] = np.mean((p - y) ** 2, axis=1)
        cell = (resample * n_bins + bins[rows].ravel()).astype(np.int64)
        gap = np.bincount(cell, weights=y.ravel(), minlength=size * n_bins) - np.bincount(
            cell, weights=p.ravel(), minlength=size * n_bins
        )
        values["ece"][start:stop] = np.abs(gap.reshape(size, n_bins)).sum(axis=1) / n
        for offset in range(size):
            if y[offset].any():
                values["pr_auc"][start + offset] = pr_auc(y[offset], p[offset])
        if group_index is not None:
            cells = (resample * num_groups + group_index[rows].ravel()).astype(np.int64)
            group_auc, sizes, group_usable = _auc_per_group(y.ravel(), p.ravel(), cells, size * num_groups)
            weights = np.where(group_usable, sizes, 0).reshape(size, num_groups).astype(np.float64)
            weighted = np.where(group_usable, group_auc, 0.0).reshape(size, num_groups) * weights
            with np.errstate(invalid="ignore", divide="ignore"):
                values["gauc"][start:stop] = weighted.sum(axis=1) / weights.sum(axis=1)
    intervals = {}
    for name, samples in values.items():
        samples = samples[np.isfinite(samples)]
        if samples.size == 0:
            intervals[name] = (float("nan"), float("nan"))
            continue
        low, high = np.quantile(samples, [alpha / 2.0, 1.0 - alpha / 2.0])
        intervals[name] = (float(low), float(high))
    return intervals


def calibrated_report(
    labels: ArrayLike,
    logits: ArrayLike,
    validation_labels: ArrayLike,
    validation_logits: ArrayLike,
    groups: ArrayLike | None = None,
    n_bins: int = 10,
    n_resamples: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict:
    r"""Test metrics of logits before and after temperature scaling fitted on validation, with intervals.

    1. :math:`T` = :func:`fit_temperature` on ``(validation_logits, validation_labels)``;
    2. :func:`classification_metrics` of :math:`\sigma(z)` (``uncalibrated``) and of
       :math:`\sigma(z / T)` (``calibrated``) on the test ``labels``: ranking metrics are the same for
       both (a positive temperature keeps the order), log loss, Brier and ECE change;
    3. :func:`bootstrap_classification_intervals` of the calibrated probabilities, plus the interval
       of the uncalibrated ECE (``ece_uncalibrated``).

    Example:
        >>> report = calibrated_report([0, 1, 0, 1], [-4.0, 4.0, 2.0, 1.0], [0, 1, 0, 1], [-4.0, 4.0, 2.0, 1.0],
        ...                            n_resamples=20)
        >>> round(report["temperature"], 3), report["calibrated"]["roc_auc"]
        (2.122, 0.75)
    """
    labels = _binary_labels(labels)
    logits = _real(logits, "logits", labels.size)
    temperature = fit_temperature(validation_logits, validation_labels)
    uncalibrated_probs = _sigmoid(logits)
    calibrated_probs = temperature_scale(logits, temperature)
    intervals = bootstrap_classification_intervals(
        labels, calibrated_probs, groups, n_resamples=n_resamples, alpha=alpha, seed=seed, n_bins=n_bins
    )
    before = bootstrap_classification_intervals(
        labels, uncalibrated_probs, None, n_resamples=n_resamples, alpha=alpha, seed=seed, n_bins=n_bins
    )
    intervals["ece_uncalibrated"] = before["ece"]
    return {
        "temperature": temperature,
        "uncalibrated": classification_metrics(labels, uncalibrated_probs, groups, n_bins=n_bins),
        "calibrated": classification_metrics(labels, calibrated_probs, groups, n_bins=n_bins),
        "intervals": intervals,
    }


__all__ = [
    "bootstrap_classification_intervals",
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
    "roc_auc",
    "temperature_scale",
]
