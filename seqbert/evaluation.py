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
from .metrics.functional import ranking_metrics

Scorer = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
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


def model_scorer(model: torch.nn.Module) -> Scorer:
    """Scorer of a masked-behavior model: scores at the appended ``[MASK]`` position.

    It is :func:`seqbert.inference.score_next_items`, the function ``Recommender`` serves with, so the
    offline metrics describe exactly the ranking users get.
    """

    def score(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return score_next_items(model, batch)

    return score


__all__ = ["DEFAULT_KS", "Scorer", "collect_ranks", "evaluate_scorer", "mask_history", "model_scorer", "pessimistic_ranks"]
