"""Next-item evaluation shared by the model, the baselines and inference: full ranking, pessimistic ties.

A *scorer* maps a padded batch to item scores of shape `(batch_size, num_items)` where column ``j``
is token id ``j + num_special_tokens``. Every model and baseline goes through
:func:`evaluate_scorer`, so their numbers are comparable by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from .inference import score_next_items
from .metrics.functional import bootstrap_interval, ranking_metrics
from .modeling_seqbert import add_history_scores

Scorer = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
# The repeat-aware term of a batch's scores: (item columns, score offsets), see ``SeqBertRepeatBias``.
History = tuple[torch.Tensor, torch.Tensor]
DEFAULT_KS = (5, 10, 20)


def pessimistic_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of each target among all items, counting every tie against it.

    ``targets`` are item columns; ``-1`` (target unknown to the catalog) ranks ``num_items + 1``,
    a guaranteed miss that still counts in the denominator. A constant scorer therefore gets rank
    ``num_items`` for every target, i.e. metrics of ~0, never a lucky optimistic tie.
    """
    known = targets >= 0
    target_scores = scores.gather(1, targets.clamp(min=0)[:, None])
    # NaN scores count against the target too; a NaN target score is a miss.
    ranks = ((scores >= target_scores) | scores.isnan()).sum(1)
    known &= ~target_scores.squeeze(1).isnan()
    return torch.where(known, ranks, torch.full_like(ranks, scores.shape[1] + 1))


def mask_history(scores: torch.Tensor, input_ids: torch.Tensor, num_special_tokens: int) -> torch.Tensor:
    """Scores with every item already in the input history set to ``-inf`` (a labelled variant)."""
    # Index only real items: a scatter that also writes False for padding/[MASK] (clamped onto
    # column 0) would race with the True of item column 0 and could leave it unmasked.
    rows, positions = torch.nonzero(input_ids >= num_special_tokens, as_tuple=True)
    seen = torch.zeros_like(scores, dtype=torch.bool)
    seen[rows, input_ids[rows, positions] - num_special_tokens] = True
    return scores.masked_fill(seen, float("-inf"))


@torch.no_grad()
def collect_ranks(
    scorer: Scorer,
    batches: Iterable[Mapping[str, torch.Tensor]],
    *,
    num_special_tokens: int,
    exclude_history: bool = False,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[np.ndarray, int]:
    """Ranks of ``batch["target_ids"]`` for every batch, and the catalog size they were ranked in.

    ``gather`` merges processes (``accelerator.gather_for_metrics``: no duplicated tail).
    """
    ranks, num_items = [], 0
    for batch in batches:
        scores = scorer(batch).float()
        num_items = scores.shape[1]
        targets = batch["target_ids"]
        if exclude_history:
            scores = mask_history(scores, batch["input_ids"], num_special_tokens)
        batch_ranks = pessimistic_ranks(scores, targets)
        if exclude_history:
            # An excluded target is a miss (rank num_items + 1), as with `exclude` in
            # `ranks_from_scores`; its -inf score alone would rank it num_items.
            in_history = (batch["input_ids"] == (targets + num_special_tokens)[:, None]).any(1) & (targets >= 0)
            batch_ranks = batch_ranks.masked_fill(in_history, num_items + 1)
        if gather is not None:
            batch_ranks = gather(batch_ranks)
        ranks.append(batch_ranks.cpu())
    return (torch.cat(ranks).numpy() if ranks else np.zeros(0, dtype=np.int64)), num_items


def evaluate_scorer(
    scorer: Scorer,
    batches: Iterable[Mapping[str, torch.Tensor]],
    *,
    num_special_tokens: int,
    ks: Sequence[int] = DEFAULT_KS,
    exclude_history: bool = False,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Full-ranking NDCG@K, HR@K, MRR@K and MRR of a scorer over all batches."""
    ranks, num_items = collect_ranks(
        scorer, batches, num_special_tokens=num_special_tokens, exclude_history=exclude_history, gather=gather
    )
    return ranking_metrics(ranks, ks=ks, num_items=num_items or None)


def sampled_ranks(scores: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """1-based rank of each target among itself and its row of sampled ``negatives`` (item columns),
    ties counted against it. The *sampled* metrics some papers report: labelled as such, never the default.
    An unknown target (-1) ranks ``negatives.shape[1] + 1``, a miss."""
    known = targets >= 0
    target_scores = scores.gather(1, targets.clamp(min=0)[:, None])
    negative_scores = scores.gather(1, negatives)
    ranks = 1 + ((negative_scores >= target_scores) | negative_scores.isnan()).sum(1)
    return torch.where(known & ~target_scores.squeeze(1).isnan(), ranks, negatives.shape[1] + 1)


def popularity_negatives(
    item_counts: np.ndarray, targets: np.ndarray, num_negatives: int = 100, seed: int = 0
) -> np.ndarray:
    """``(len(targets), num_negatives)`` item columns drawn ∝ ``item_counts`` without replacement per row,
    never the row's target; seeded, so every model is ranked against the same negatives."""
    rng = np.random.default_rng(seed)
    log_p = np.log(item_counts.astype(np.float64) + 1e-12)
    out = np.empty((len(targets), num_negatives), dtype=np.int64)
    for start in range(0, len(targets), 1024):  # Gumbel top-k = sampling without replacement, in row blocks
        rows = np.arange(start, min(start + 1024, len(targets)))
        keys = log_p[None, :] + rng.gumbel(size=(len(rows), len(log_p)))
        known = targets[rows] >= 0
        keys[np.flatnonzero(known), targets[rows][known]] = -np.inf
        out[rows] = np.argpartition(-keys, num_negatives - 1, axis=1)[:, :num_negatives]
    return out


@torch.no_grad()
def collect_rank_variants(
    scorer: Scorer,
    batches: Iterable[Mapping[str, torch.Tensor]],
    *,
    num_special_tokens: int,
    sampled_negatives: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One scoring pass, three labelled rank arrays (single process, batches in dataset order):
    ``full`` (all items, history kept, the default protocol), ``history_removed`` (items in the input
    set to -inf; a target in the history is a miss) and, with ``sampled_negatives`` (one row per query),
    ``sampled`` (target vs its sampled negatives)."""
    variants: dict[str, list[torch.Tensor]] = {"full": [], "history_removed": [], "sampled": []}
    offset = 0
    for batch in batches:
        scores = scorer(batch).float()
        targets = batch["target_ids"].to(scores.device)
        input_ids = batch["input_ids"].to(scores.device)
        num_items = scores.shape[1]
        variants["full"].append(pessimistic_ranks(scores, targets).cpu())
        removed = pessimistic_ranks(mask_history(scores, input_ids, num_special_tokens), targets)
        in_history = (input_ids == (targets + num_special_tokens)[:, None]).any(1) & (targets >= 0)
        variants["history_removed"].append(removed.masked_fill(in_history, num_items + 1).cpu())
        if sampled_negatives is not None:
            rows = torch.as_tensor(sampled_negatives[offset : offset + len(targets)], device=scores.device)
            variants["sampled"].append(sampled_ranks(scores, targets, rows).cpu())
        offset += len(targets)
    return {name: torch.cat(ranks).numpy() for name, ranks in variants.items() if ranks}


def sample_users(num_users: int, max_users: int | None, seed: int) -> tuple[np.ndarray | None, str]:
    """Sorted row indices of a uniform sample of ``max_users`` of ``num_users`` evaluation users (without
    replacement), and the label to record with its metrics. Drawn from ``seed`` alone, before any sharding,
    so every epoch and every process count ranks the same users. ``None`` (all users) when ``max_users``
    is None or not smaller than ``num_users``."""
    if max_users is not None and max_users < 1:
        raise ValueError(f"max_users must be >= 1 (or None for all users), got {max_users}.")
    if max_users is None or max_users >= num_users:
        return None, "all users"
    indices = np.sort(np.random.default_rng(seed).choice(num_users, size=max_users, replace=False))
    return indices, f"uniform without replacement, {max_users} of {num_users} users, seed {seed}"


def ranking_intervals(
    ranks: np.ndarray, *, ks: Sequence[int] = DEFAULT_KS, num_items: int | None = None,
    n_resamples: int = 1000, alpha: float = 0.05, seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap ``(low, high)`` interval of every metric of :func:`ranking_metrics` (users resampled)."""
    ranks = np.asarray(ranks, dtype=np.int64)
    found = ranks <= num_items if num_items is not None else np.ones(ranks.shape, dtype=bool)
    per_query: dict[str, np.ndarray] = {}
    for k in ks:
        hit = found & (ranks <= k)
        per_query[f"ndcg@{k}"] = np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0)
        per_query[f"hr@{k}"] = hit.astype(np.float64)
        per_query[f"mrr@{k}"] = np.where(hit, 1.0 / ranks, 0.0)
    per_query["mrr"] = np.where(found, 1.0 / ranks, 0.0)
    return {
        name: bootstrap_interval(lambda x: x.mean(-1), values, n_resamples=n_resamples, alpha=alpha, seed=seed, vectorized=True)
        for name, values in per_query.items()
    }


def _item_chunks(num_items: int, chunk_size: int) -> range:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    return range(0, num_items, chunk_size)


@torch.no_grad()
def chunked_target_ranks(
    queries: torch.Tensor, item_weight: torch.Tensor, item_bias: torch.Tensor | None, targets: torch.Tensor,
    *, chunk_size: int = 65_536, history: History | None = None,
) -> torch.Tensor:
    """:func:`pessimistic_ranks` of ``queries @ item_weight.T + item_bias`` without the `(batch, items)`
    matrix: two passes over item chunks (memory `batch × chunk_size`). Pass 1 reads each target's
    score out of its own chunk, so it is bit-identical to the scores the counting pass compares
    against; pass 2 counts, per row, the items scoring at least as high (ties and NaN against the target).
    The last chunk pass 1 scored is kept and counted first in pass 2, so a catalog of one chunk is
    scored once; a larger one costs one chunk less than twice the unchunked work. Items whose scores
    tie exactly in the unchunked matrix may differ in the last bit across chunks of different shapes
    (the kernel rounds by shape). ``history`` (``model.next_item_history``) adds the repeat-aware term."""
    num_items = item_weight.shape[0]
    known = targets >= 0
    target_scores = torch.full((queries.shape[0],), float("nan"), device=queries.device)
    kept: tuple[int, torch.Tensor] | None = None
    for start in _item_chunks(num_items, chunk_size):
        stop = min(start + chunk_size, num_items)
        inside = known & (targets >= start) & (targets < stop)
        if inside.any():
            kept = scores = None  # at most one chunk of scores alive at a time
            # All rows, as in pass 2: a GEMM of another shape may round the target's score differently.
            scores = _chunk_scores(queries, item_weight, item_bias, start, stop, history)
            column = (targets - start).clamp(0, stop - start - 1)[:, None]
            target_scores = torch.where(inside, scores.gather(1, column).squeeze(1), target_scores)
            kept = (start, scores)
    scores = None

    def count(scores: torch.Tensor) -> torch.Tensor:
        return ((scores >= target_scores[:, None]) | scores.isnan()).sum(1)

    # The chunk still in memory first, then the others (the counts add up in any order).
    ranks = torch.zeros(queries.shape[0], dtype=torch.long, device=queries.device)
    kept_start = None
    if kept is not None:
        kept_start, ranks = kept[0], ranks + count(kept[1])
        kept = None
    for start in _item_chunks(num_items, chunk_size):
        if start != kept_start:
            stop = min(start + chunk_size, num_items)
            ranks += count(_chunk_scores(queries, item_weight, item_bias, start, stop, history))
    valid = known & ~target_scores.isnan()
    return torch.where(valid, ranks, torch.full_like(ranks, num_items + 1))


@torch.no_grad()
def chunked_topk(
    queries: torch.Tensor, item_weight: torch.Tensor, item_bias: torch.Tensor | None, k: int,
    *, chunk_size: int = 65_536, history: History | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` ``(scores, item columns)`` per row over item chunks (memory `batch × (chunk + k)`);
    equal scores are ordered by item column, so results do not depend on the chunk size. ``history``
    (``model.next_item_history``) adds the repeat-aware term."""
    num_items = item_weight.shape[0]
    k = min(int(k), num_items)
    best_scores = queries.new_full((queries.shape[0], 0), float("-inf"))
    best_columns = torch.zeros((queries.shape[0], 0), dtype=torch.long, device=queries.device)
    for start in _item_chunks(num_items, chunk_size):
        stop = min(start + chunk_size, num_items)
        scores = _chunk_scores(queries, item_weight, item_bias, start, stop, history).float()
        columns = torch.arange(start, stop, device=queries.device).repeat(scores.shape[0], 1)
        scores = torch.cat([best_scores, scores], 1)
        columns = torch.cat([best_columns, columns], 1)
        # Columns are ascending within each row here; a stable sort by score keeps that order for ties.
        order = scores.sort(dim=1, descending=True, stable=True).indices[:, :k]
        best_scores, best_columns = scores.gather(1, order), columns.gather(1, order)
        resort = best_columns.sort(dim=1, stable=True).indices  # keep ascending columns for the next merge
        best_scores, best_columns = best_scores.gather(1, resort), best_columns.gather(1, resort)
    order = best_scores.sort(dim=1, descending=True, stable=True).indices
    return best_scores.gather(1, order), best_columns.gather(1, order)


def _chunk_scores(
    queries: torch.Tensor, item_weight: torch.Tensor, item_bias: torch.Tensor | None, start: int, stop: int,
    history: History | None = None,
) -> torch.Tensor:
    scores = queries @ item_weight[start:stop].T
    if item_bias is not None:
        scores = scores + item_bias[start:stop]
    scores = scores.float()
    return scores if history is None else add_history_scores(scores, history, start)


@torch.no_grad()
def collect_ranks_chunked(
    model: torch.nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    *,
    chunk_size: int = 65_536,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[np.ndarray, int]:
    """:func:`collect_ranks` for a masked-behavior model over a catalog too large to score at once:
    the same pessimistic full ranking, item chunk by item chunk (history kept; the model's repeat-aware term
    included, as in :meth:`next_item_scores`)."""
    weight, bias = model.item_output_weights(), model.item_output_bias()
    ranks = []
    for batch in batches:
        queries = model.next_item_queries(batch["input_ids"], batch["behavior_ids"], batch["time_ids"], batch["attention_mask"])
        history = model.next_item_history(batch["input_ids"], batch["behavior_ids"], batch["attention_mask"])
        targets = batch["target_ids"].to(queries.device)
        batch_ranks = chunked_target_ranks(queries, weight, bias, targets, chunk_size=chunk_size, history=history)
        if gather is not None:
            batch_ranks = gather(batch_ranks)
        ranks.append(batch_ranks.cpu())
    return (torch.cat(ranks).numpy() if ranks else np.zeros(0, dtype=np.int64)), int(weight.shape[0])


def model_scorer(model: torch.nn.Module) -> Scorer:
    """Scorer of a masked-behavior model: scores at the appended ``[MASK]`` position.

    It is :func:`seqbert.inference.score_next_items`, the function ``Recommender`` serves with, so the
    offline metrics describe exactly the ranking users get.
    """

    def score(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return score_next_items(model, batch)

    return score


__all__ = [
    "DEFAULT_KS", "Scorer", "chunked_target_ranks", "chunked_topk", "collect_rank_variants", "collect_ranks",
    "collect_ranks_chunked", "evaluate_scorer", "mask_history", "model_scorer",
    "pessimistic_ranks", "popularity_negatives", "ranking_intervals", "sample_users", "sampled_ranks",
]
