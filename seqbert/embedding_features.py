"""A pretrained masked-behavior model as features for a tabular model: the way many teams adopt one.

:func:`pretrained_features` turns labelled task rows (history lists + ``cutoff``, and a
``candidate_item_id`` for item tasks; :mod:`seqbert.data.labels`) into a small dense block that a
gradient-boosted model can take beside its own features (``seqbert.tabular.fit_tabular_baselines(...,
extra_features=...)``):

- per user and cutoff, from the appended ``[MASK]`` whose time id is the gap to the cutoff: the
  probability that the next event is a purchase / cart / fav (the pretraining event-type head), and
  the first ``components`` principal coordinates of the user's next-item query vector;
- per candidate item: the candidate's next-item log-probability over the whole catalog (the model's
  own next-item scores, repeat-aware term included) and its rank percentile, the principal
  coordinates of its output vector, and whether the model knows the item at all.

The principal axes come from the item output matrix (no labels), so nothing is fitted on the rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset

from .collators import DataCollatorWithLeftPadding
from .data.arrow import from_arrow, to_arrow
from .prepared import encode_for_classification

EVENT_TYPE_PROBABILITIES = ("purchase", "cart", "fav")


def _principal_axes(matrix: torch.Tensor, components: int) -> torch.Tensor:
    centered = matrix - matrix.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(centered, full_matrices=False)
    return vh[:components].T


@torch.no_grad()
def pretrained_features(
    model,
    tokenizer,
    rows: Dataset,
    *,
    components: int = 8,
    batch_size: int = 256,
    max_length: int | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Features of labelled rows from a :class:`~seqbert.SeqBertForMaskedBehaviorModeling` (see the module text).

    Returns ``(rows, features)`` float32 and the feature names; rows keep their order.
    """
    model = model.eval()
    table = to_arrow(rows)
    max_length = int(max_length or model.config.max_position_embeddings)
    # One encoder pass per (user, cutoff): item rows repeat the same history for every candidate.
    keys = np.char.add(np.char.add(np.asarray(table.column("user_id").to_pylist(), dtype=str), "@"),
                       table.column("cutoff").to_numpy().astype(str))  # fmt: skip
    unique_keys, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    histories = from_arrow(table.take(pa.array(first)))
    encoded = encode_for_classification(histories, tokenizer, max_length).remove_columns("labels")
    items = model.item_output_weights().float()
    axes = _principal_axes(items, components)
    behavior_ids = {name: tokenizer.behavior_token_ids([name])[0] for name in EVENT_TYPE_PROBABILITIES}
    candidate_columns = None
    if "candidate_item_id" in table.column_names:
        tokens = tokenizer.item_token_ids(table.column("candidate_item_id").combine_chunks())
        candidate_columns = np.asarray(tokens, dtype=np.int64) - tokenizer.num_special_tokens
    collate = DataCollatorWithLeftPadding(pad_to_multiple_of=None)
    user_block = np.zeros((len(unique_keys), len(behavior_ids) + components), dtype=np.float32)
    log_probability = np.zeros(len(keys), dtype=np.float32)
    percentile = np.zeros(len(keys), dtype=np.float32)
    device = next(model.parameters()).device
    for start in range(0, len(unique_keys), batch_size):
        batch = collate(encoded.select(range(start, min(start + batch_size, len(unique_keys)))).to_list())
        inputs = {name: batch[name].to(device) for name in ("input_ids", "behavior_ids", "time_ids", "attention_mask")}
        mask_state = model._last_token_query(**inputs, causal=False)
        behavior = torch.softmax(model.head.behavior_decoder(mask_state).float(), dim=-1)
        queries = model.next_item_queries(**inputs).float()
        user_block[start : start + len(queries), : len(behavior_ids)] = behavior[:, list(behavior_ids.values())].cpu().numpy()
        user_block[start : start + len(queries), len(behavior_ids) :] = (queries @ axes).cpu().numpy()
        if candidate_columns is not None:
            scores = model.next_item_scores(**inputs).float()
            log_softmax = torch.log_softmax(scores, dim=-1)
            in_batch = np.flatnonzero((inverse >= start) & (inverse < start + len(queries)))
            columns = candidate_columns[in_batch]
            known = columns >= 0
            local = torch.as_tensor(inverse[in_batch] - start)
            picked = torch.as_tensor(np.maximum(columns, 0))
            candidate_scores = scores[local, picked]
            above = (scores[local] > candidate_scores[:, None]).float().mean(-1)
            log_probability[in_batch] = np.where(known, log_softmax[local, picked].cpu().numpy(), np.log(1.0 / scores.shape[1]))
            percentile[in_batch] = np.where(known, 1.0 - above.cpu().numpy(), 0.0)
    names = [f"p_next_{name}" for name in behavior_ids] + [f"user_pc{k}" for k in range(components)]
    block = user_block[inverse]
    if candidate_columns is None:
        return block, names
    known = candidate_columns >= 0
    item_coordinates = np.zeros((len(keys), components), dtype=np.float32)
    item_coordinates[known] = (items[candidate_columns[known]] @ axes).cpu().numpy()
    extra = np.column_stack([log_probability, percentile, known.astype(np.float32), item_coordinates])
    names += ["candidate_log_probability", "candidate_rank_percentile", "candidate_known"] + [f"item_pc{k}" for k in range(components)]
    return np.concatenate([block, extra], axis=1).astype(np.float32), names


__all__ = ["EVENT_TYPE_PROBABILITIES", "pretrained_features"]
