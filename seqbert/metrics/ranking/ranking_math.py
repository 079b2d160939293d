"""Ranking maths for next-item recommendation: pessimistic ranks, NDCG@K, HR@K, MRR@K and MRR.

This file is the only implementation of these metrics. It depends on numpy alone and imports nothing
else from seqbert, because it ships inside the ``ranking`` evaluate module folder: ``ranking.py``
imports it with a single-dot relative import, which is the form evaluate copies next to the module
(it does not follow imports made by this file). ``seqbert.metrics.functional`` re-exports it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike


# Upper bound on the temporary (rows x catalog) boolean block built while ranking.
_MAX_BLOCK_ELEMENTS = 1 << 24


def ranks_from_scores(scores: ArrayLike, targets: ArrayLike, exclude: ArrayLike | None = None) -> np.ndarray:
    r"""1-based pessimistic rank of each target item among the catalog.

    .. math::

        r_u = \bigl|\{\, i \notin E_u : s_{u,i} \ge s_{u,t_u} \,\}\bigr|

    Plain: the rank is the number of candidate items whose score is greater than *or equal to* the
    target's score, the target included. Ties count against the target, so a model that gives every
    item the same score gets rank ``V`` for every query and all metrics are close to 0.

    Args:
        scores: ``(n, V)`` real scores, higher is better. NaN is rejected.
        targets: ``(n,)`` integer target item index in ``[0, V)``, or ``-1`` for a target unknown to
            the catalog, which gets rank ``V + 1`` (always a miss, never dropped).
        exclude: optional ``(n, V)`` boolean mask of items removed from the candidates (for example
            the user's history). Excluded items never outrank the target. An excluded target is a
            miss (rank ``V + 1``), as if the recommender had filtered it out; this is RecBole's
            full-sort convention.

    Returns:
        ``(n,)`` int64 ranks in ``[1, V + 1]``.

    Example:
        >>> ranks_from_scores([[0.1, 0.9, 0.5], [0.2, 0.2, 0.2]], [2, 0]).tolist()
        [2, 3]
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (n, num_items), got shape {scores.shape}.")
    if scores.dtype.kind not in "fiub":
        raise ValueError(f"scores must be numeric, got dtype {scores.dtype}.")
    if scores.dtype.kind != "f":
        scores = scores.astype(np.float64)
    n, num_items = scores.shape
    if num_items == 0:
        raise ValueError("scores has 0 columns: the catalog must hold at least one item.")
    nan_rows = np.flatnonzero(np.isnan(scores).any(axis=1))
    if nan_rows.size:
        raise ValueError(f"scores contains NaN (first in row {int(nan_rows[0])}).")

    targets = np.asarray(targets)
    if targets.shape != (n,):
        raise ValueError(f"targets must have shape ({n},) to match scores, got {targets.shape}.")
    if n and targets.dtype.kind not in "iu":
        raise ValueError(f"targets must be integer item indices, got dtype {targets.dtype}.")
    targets = targets.astype(np.int64)
    bad = np.flatnonzero((targets < -1) | (targets >= num_items))
    if bad.size:
        raise ValueError(
            f"targets must lie in [0, {num_items}) or be -1 (unknown item); got {int(targets[bad[0]])} "
            f"at position {int(bad[0])}."
        )

    if exclude is not None:
        exclude = np.asarray(exclude)
        if exclude.shape != scores.shape:
            raise ValueError(f"exclude must have the shape of scores {scores.shape}, got {exclude.shape}.")
        if exclude.dtype != np.bool_:
            if exclude.dtype.kind not in "iu" or not np.isin(exclude, (0, 1)).all():
                raise ValueError(f"exclude must be a boolean mask, got dtype {exclude.dtype} with non-0/1 values.")
            exclude = exclude.astype(bool)

    rows = np.arange(n)
    known = targets >= 0
    safe_targets = np.where(known, targets, 0)
    target_scores = scores[rows, safe_targets]
    ranks = np.empty(n, dtype=np.int64)
    step = max(1, _MAX_BLOCK_ELEMENTS // num_items)
    for start in range(0, n, step):
        block = slice(start, start + step)
        at_least_as_good = scores[block] >= target_scores[block, None]
        if exclude is not None:
            at_least_as_good &= ~exclude[block]
        ranks[block] = at_least_as_good.sum(axis=1)

    missed = ~known
    if exclude is not None:
        missed |= exclude[rows, safe_targets]
    ranks[missed] = num_items + 1
    return ranks


def _cutoffs(ks: int | Iterable[int]) -> list[int]:
    cutoffs = [ks] if isinstance(ks, (int, np.integer)) else list(ks)
    if not cutoffs:
        raise ValueError("ks must hold at least one cut-off.")
    for k in cutoffs:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"every cut-off in ks must be a positive int, got {k!r}.")
    if len(set(cutoffs)) != len(cutoffs):
        raise ValueError(f"ks must not repeat a cut-off, got {cutoffs}.")
    return [int(k) for k in cutoffs]


def ranking_metrics(
    ranks: ArrayLike, ks: int | Iterable[int] = (5, 10, 20), num_items: int | None = None
) -> dict[str, float]:
    r"""NDCG@K, HR@K, MRR@K for each cut-off K, plus full MRR, from one relevant item per query.

    With :math:`r_u` the 1-based rank of query :math:`u`'s target and :math:`n` queries:

    .. math::

        \mathrm{HR@K} = \frac{1}{n}\sum_u \mathbb{1}[r_u \le K] \qquad
        \mathrm{NDCG@K} = \frac{1}{n}\sum_u \frac{\mathbb{1}[r_u \le K]}{\log_2(r_u + 1)} \qquad
        \mathrm{MRR@K} = \frac{1}{n}\sum_u \frac{\mathbb{1}[r_u \le K]}{r_u}

    The ideal DCG is 1 (a single relevant item at rank 1), so NDCG@K is the mean of
    ``1 / log2(rank + 1)`` over hits. Full ``mrr`` is the mean of ``1 / rank``. When ``num_items``
    (the catalog size V) is given, a rank above V (an unknown or excluded target) is a miss for every
    metric, even when K > V; without it, such a rank is only a miss at cut-offs K <= V.

    Args:
        ranks: ``(n,)`` 1-based ranks, for example from :func:`ranks_from_scores`.
        ks: one cut-off or several (positive ints).
        num_items: catalog size V. When given, every rank must be at most ``V + 1``.

    Returns:
        ``ndcg@K``, ``hr@K``, ``mrr@K`` for each K, ``mrr`` and ``count`` (the number of queries).

    Example:
        >>> ranking_metrics([1, 4], ks=[3])
        {'ndcg@3': 0.5, 'hr@3': 0.5, 'mrr@3': 0.5, 'mrr': 0.625, 'count': 2}
    """
    ranks = np.asarray(ranks)
    if ranks.ndim != 1:
        raise ValueError(f"ranks must be 1-D, got shape {ranks.shape}.")
    if ranks.size == 0:
        raise ValueError("ranks is empty: there is nothing to average.")
    if ranks.dtype.kind == "f":
        not_integral = np.flatnonzero(~np.isfinite(ranks) | (ranks != np.round(ranks)))
        if not_integral.size:
            raise ValueError(f"ranks must be whole numbers, got {ranks[not_integral[0]].item()!r}.")
    elif ranks.dtype.kind not in "iu":
        raise ValueError(f"ranks must be integers, got dtype {ranks.dtype}.")
    ranks = ranks.astype(np.int64)
    too_small = np.flatnonzero(ranks < 1)
    if too_small.size:
        raise ValueError(f"ranks are 1-based, got {int(ranks[too_small[0]])} at position {int(too_small[0])}.")
    cutoffs = _cutoffs(ks)

    found = np.ones(ranks.shape, dtype=bool)
    if num_items is not None:
        if isinstance(num_items, bool) or not isinstance(num_items, (int, np.integer)) or num_items < 1:
            raise ValueError(f"num_items must be a positive int, got {num_items!r}.")
        too_large = np.flatnonzero(ranks > num_items + 1)
        if too_large.size:
            raise ValueError(
                f"ranks must be at most num_items + 1 = {num_items + 1}, got {int(ranks[too_large[0]])} "
                f"at position {int(too_large[0])}."
            )
        found = ranks <= num_items

    reciprocal = 1.0 / ranks
    discount = 1.0 / np.log2(ranks + 1.0)
    hits = {k: (ranks <= k) & found for k in cutoffs}
    results: dict[str, float] = {}
    for k in cutoffs:
        results[f"ndcg@{k}"] = float(np.mean(np.where(hits[k], discount, 0.0)))
    for k in cutoffs:
        results[f"hr@{k}"] = float(np.mean(hits[k]))
    for k in cutoffs:
        results[f"mrr@{k}"] = float(np.mean(np.where(hits[k], reciprocal, 0.0)))
    results["mrr"] = float(np.mean(np.where(found, reciprocal, 0.0)))
    results["count"] = int(ranks.size)
    return results


__all__ = ["ranking_metrics", "ranks_from_scores"]
