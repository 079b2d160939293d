"""Non-neural baselines, fitted on the training split and scored by the same evaluator.

Next item: popularity and Markov scorers on token ids from the same tokenizer, so their catalog is
exactly the model's. The classification baselines (purchase / conversion / click) are in
:mod:`seqbert.tabular`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from datasets import Dataset

from .modeling_seqbert import last_token_index
from .tokenization_seqbert import BehaviorTokenizer


def _flatten(sequences: Iterable[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ids and offsets of the sequences."""
    rows = [np.asarray(sequence, dtype=np.int64) for sequence in sequences]
    offsets = np.concatenate([[0], np.cumsum([len(row) for row in rows])]).astype(np.int64)
    return (np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)), offsets


class PopularityRecommender:
    """Scores every item by its number of occurrences in the training sequences (a true count)."""

    def __init__(self, train_input_ids: Iterable[Sequence[int]], *, vocab_size: int, num_special_tokens: int):
        flat, _ = _flatten(train_input_ids)
        counts = np.bincount(flat[flat >= num_special_tokens], minlength=vocab_size)[num_special_tokens:]
        self.counts = torch.as_tensor(counts, dtype=torch.float32)

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.counts.to(batch["input_ids"].device).expand(batch["input_ids"].shape[0], -1)


class MarkovRecommender:
    """First-order item-to-item transitions (``a`` directly followed by ``b`` in training), with
    popularity as a small back-off so unseen transitions still rank by popularity.

    Scores for a batch are built from the transition rows of each sequence's last real item
    (the one before the appended ``[MASK]``), never materialising an items x items matrix.
    """

    def __init__(
        self,
        train_input_ids: Iterable[Sequence[int]],
        *,
        vocab_size: int,
        num_special_tokens: int,
        backoff: float = 1e-3,
    ):
        sequences = list(train_input_ids)
        flat, offsets = _flatten(sequences)
        self.num_special_tokens = num_special_tokens
        num_items = vocab_size - num_special_tokens
        same_row = np.ones(len(flat), dtype=bool)
        row_starts = offsets[1:-1]
        # No transition across sequence boundaries (trailing empty rows start at len(flat): skip them).
        same_row[row_starts[row_starts < len(flat)]] = False
        source, target = flat[:-1], flat[1:]
        valid = same_row[1:] & (source >= num_special_tokens) & (target >= num_special_tokens)
        pairs = (source[valid] - num_special_tokens) * num_items + (target[valid] - num_special_tokens)
        keys, counts = np.unique(pairs, return_counts=True)
        self.sources, self.targets = keys // num_items, keys % num_items
        self.counts = counts.astype(np.float32)
        self.row_starts = np.searchsorted(self.sources, np.arange(num_items + 1))
        popularity = PopularityRecommender(sequences, vocab_size=vocab_size, num_special_tokens=num_special_tokens)
        self.backoff_scores = backoff * popularity.counts / max(float(popularity.counts.max()), 1.0)

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        batch_size = input_ids.shape[0]
        # The event before the appended mask is at last_token_index - 1.
        previous = input_ids[torch.arange(batch_size), (last_token_index(attention_mask) - 1).clamp(min=0)]
        items = (previous - self.num_special_tokens).cpu().numpy()
        scores = self.backoff_scores.expand(batch_size, -1).clone()
        known = items >= 0
        starts = np.where(known, self.row_starts[items.clip(min=0)], 0)
        ends = np.where(known, self.row_starts[items.clip(min=0) + 1], 0)
        lengths = ends - starts
        rows = np.repeat(np.arange(batch_size), lengths)
        flat = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) if lengths.sum() else np.zeros(0, int)
        scores[torch.as_tensor(rows), torch.as_tensor(self.targets[flat])] += torch.as_tensor(self.counts[flat])
        return scores.to(input_ids.device)


def fit_next_item_baselines(train_split: Dataset, tokenizer: BehaviorTokenizer) -> dict[str, Callable]:
    """Popularity and Markov scorers fitted on every training event (not only the model's window),
    with the model's own catalog: what every next-item comparison in seqbert reports."""
    from .prepared import encode_for_pretraining

    longest = max((len(row) for row in train_split["item_ids"]), default=0) + 1
    train_ids = encode_for_pretraining(train_split, tokenizer, longest)["input_ids"]
    catalog = {"vocab_size": tokenizer.vocab_size, "num_special_tokens": tokenizer.num_special_tokens}
    return {"popularity": PopularityRecommender(train_ids, **catalog), "markov": MarkovRecommender(train_ids, **catalog)}


def fit_next_item_baselines_from_shards(files: Iterable, tokenizer: BehaviorTokenizer, *, backoff: float = 1e-3) -> dict[str, Callable]:
    """The scorers of :func:`fit_next_item_baselines` (the same counts), fitted one parquet shard of the train split
    at a time (``--streaming``): item counts and transition counts are summed over the shards."""
    import pyarrow.parquet as pq

    from .prepared import PRETRAINING_COLUMNS, pretraining_encoder

    special, num_items = tokenizer.num_special_tokens, tokenizer.vocab_size - tokenizer.num_special_tokens
    item_counts = np.zeros(num_items, dtype=np.int64)
    keys, counts = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    for path in files:
        table = pq.read_table(path, columns=list(PRETRAINING_COLUMNS))
        if not table.num_rows:
            continue
        longest = int(np.diff(table.column("item_ids").combine_chunks().offsets.to_numpy()).max()) + 1
        ids = pretraining_encoder(tokenizer, longest, None)(table).column("input_ids").combine_chunks()
        offsets = ids.offsets.to_numpy().astype(np.int64)
        flat = ids.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]].astype(np.int64)
        offsets -= offsets[0]
        item_counts += np.bincount(flat[flat >= special] - special, minlength=num_items)
        same_row = np.ones(len(flat), dtype=bool)
        same_row[offsets[1:-1][offsets[1:-1] < len(flat)]] = False
        source, target = flat[:-1], flat[1:]
        valid = same_row[1:] & (source >= special) & (target >= special)
        shard_keys, shard_counts = np.unique((source[valid] - special) * num_items + (target[valid] - special), return_counts=True)
        keys, inverse = np.unique(np.concatenate([keys, shard_keys]), return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate([counts, shard_counts]), minlength=len(keys)).astype(np.int64)
    popularity = object.__new__(PopularityRecommender)
    popularity.counts = torch.as_tensor(item_counts, dtype=torch.float32)
    markov = object.__new__(MarkovRecommender)
    markov.num_special_tokens = special
    markov.sources, markov.targets = keys // num_items, keys % num_items
    markov.counts = counts.astype(np.float32)
    markov.row_starts = np.searchsorted(markov.sources, np.arange(num_items + 1))
    markov.backoff_scores = backoff * popularity.counts / max(float(popularity.counts.max()), 1.0)
    return {"popularity": popularity, "markov": markov}


__all__ = [
    "MarkovRecommender",
    "PopularityRecommender",
    "fit_next_item_baselines",
    "fit_next_item_baselines_from_shards",
]
