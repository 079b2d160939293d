"""BehaviorTokenizer: turns behavior event sequences into SeqBERT model inputs.

Self-contained on purpose (imports only numpy, pyarrow and transformers): it is copied into saved
model folders for ``AutoTokenizer.from_pretrained(folder, trust_remote_code=True)``.

Three parallel id streams per event, plus the attention mask:

- ``input_ids``: ``[PAD]=0, [MASK]=1, [CLS]=2, [SEP]=3, [UNK]=4``, then catalog items in
  vocabulary order (external item ids are kept as exact strings in ``item_vocab.json``);
- ``behavior_ids``: ``0`` pad, ``1`` mask, then the event types in ``event_types`` order;
- ``time_ids``: ``0`` pad, ``1`` mask, ``2`` first event (no previous one), then
  ``3 + min(floor(log2(1 + gap_seconds)), num_gap_buckets - 1)`` for the gap to the previous event.

Sequences are truncated on the left (the most recent events are kept) and padded on the left, so
the last position is always the most recent event, or the appended ``[MASK]`` that asks the model
"what comes next".
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from transformers import BatchEncoding, PreTrainedTokenizer

VOCAB_FILES_NAMES = {"vocab_file": "item_vocab.json"}
DEFAULT_EVENT_TYPES = ("view", "click", "search", "cart", "fav", "purchase")
BEHAVIOR_PAD, BEHAVIOR_MASK, NUM_BEHAVIOR_SPECIALS = 0, 1, 2
TIME_PAD, TIME_MASK, TIME_FIRST, NUM_TIME_SPECIALS = 0, 1, 2, 3
SPECIAL_TOKENS = ("[PAD]", "[MASK]", "[CLS]", "[SEP]", "[UNK]")


class BehaviorTokenizer(PreTrainedTokenizer):
    """Tokenizer for behavior sequences (items, event types, time gaps).

    Args:
        vocab_file (`str`, *optional*): JSON list of external item ids in id order.
        items (`Sequence[str]`, *optional*): the item vocabulary directly (instead of ``vocab_file``).
        event_types (`Sequence[str]`): event types in behavior-id order.
        num_gap_buckets (`int`, defaults to 23): log2 time-gap buckets (the last one is open-ended).
        max_length (`int`, defaults to 200): longest encoded sequence, appended mask included.

    Example:

    ```python
    >>> from seqbert import BehaviorTokenizer
    >>> tok = BehaviorTokenizer(items=["sku-1", "sku-2"])
    >>> enc = tok({"item_ids": [["sku-2", "sku-1"]], "event_types": [["view", "cart"]], "timestamps": [[0, 60]]})
    >>> enc["input_ids"], enc["behavior_ids"], enc["time_ids"]
    ([[6, 5]], [[2, 5]], [[2, 8]])
    >>> tok.decode_items([6, 5, 1])
    ['sku-2', 'sku-1', None]
    ```
    """

    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "behavior_ids", "time_ids", "attention_mask"]
    padding_side = "left"
    truncation_side = "left"

    def __init__(
        self,
        vocab_file: str | None = None,
        items: Sequence[str] | None = None,
        event_types: Sequence[str] = DEFAULT_EVENT_TYPES,
        num_gap_buckets: int = 23,
        max_length: int = 200,
        pad_token: str = "[PAD]",
        mask_token: str = "[MASK]",
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        unk_token: str = "[UNK]",
        **kwargs: Any,
    ):
        if items is None:
            if vocab_file is None:
                raise ValueError("BehaviorTokenizer needs `vocab_file` or `items`; use BehaviorTokenizer.train(...).")
            with open(vocab_file, encoding="utf-8") as handle:
                items = json.load(handle)
        items = [str(item) for item in items]
        # str(): from_pretrained passes the specials back as AddedToken objects, which neither hash
        # nor compare equal to their strings (get_vocab keys and the clash check need plain str).
        self._specials = [str(token) for token in (pad_token, mask_token, cls_token, sep_token, unk_token)]
        clashes = sorted(set(items) & set(self._specials))
        if clashes:
            raise ValueError(f"Item ids {clashes} collide with special tokens; rename those items.")
        if len(set(items)) != len(items):
            raise ValueError("The item vocabulary contains duplicate ids.")
        self._items = items
        self._item_array = pa.array(items, type=pa.string())
        self._token_to_id = {token: index for index, token in enumerate(self._specials)}
        self._token_to_id.update({item: index + len(self._specials) for index, item in enumerate(items)})
        self.event_types = list(event_types)
        self._event_array = pa.array(self.event_types, type=pa.string())
        self.num_gap_buckets = int(num_gap_buckets)
        self.max_length = int(max_length)
        kwargs.setdefault("model_max_length", self.max_length)
        super().__init__(
            pad_token=pad_token,
            mask_token=mask_token,
            cls_token=cls_token,
            sep_token=sep_token,
            unk_token=unk_token,
            event_types=self.event_types,
            num_gap_buckets=self.num_gap_buckets,
            max_length=self.max_length,
            **kwargs,
        )

    # ----------------------------------------------------------------- vocabulary
    @classmethod
    def train(
        cls,
        item_sequences: Iterable[Sequence[str]],
        *,
        min_count: int = 1,
        max_size: int | None = None,
        **kwargs: Any,
    ) -> BehaviorTokenizer:
        """Build the item vocabulary from training sequences only.

        Items are ordered by descending count, ties by id string (deterministic). Items seen fewer
        than ``min_count`` times, or beyond the ``max_size`` most frequent, map to ``[UNK]``.
        """
        counts: Counter[str] = Counter()
        for sequence in item_sequences:
            counts.update(str(item) for item in sequence)
        ranked = sorted((item for item, count in counts.items() if count >= min_count), key=lambda i: (-counts[i], i))
        if max_size is not None:
            ranked = ranked[:max_size]
        return cls(items=ranked, **kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self._specials) + len(self._items)

    @property
    def num_special_tokens(self) -> int:
        return len(self._specials)

    @property
    def num_behaviors(self) -> int:
        return NUM_BEHAVIOR_SPECIALS + len(self.event_types)

    @property
    def num_time_buckets(self) -> int:
        return NUM_TIME_SPECIALS + self.num_gap_buckets

    @property
    def items(self) -> list[str]:
        """External item ids in id order (token id = index + ``num_special_tokens``)."""
        return list(self._items)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._token_to_id)

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return text.split()

    def _convert_token_to_id(self, token: str) -> int:
        return self._token_to_id.get(token, self._token_to_id[self._specials[4]])

    def _convert_id_to_token(self, index: int) -> str:
        if 0 <= index < len(self._specials):
            return self._specials[index]
        if index < self.vocab_size:
            return self._items[index - len(self._specials)]
        return self._specials[4]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        name = (filename_prefix + "-" if filename_prefix else "") + VOCAB_FILES_NAMES["vocab_file"]
        path = os.path.join(save_directory, name)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self._items, handle, ensure_ascii=False)
        return (path,)

    # ----------------------------------------------------------------- id streams (vectorised)
    def item_token_ids(self, items: Sequence[str] | pa.Array) -> np.ndarray:
        """Token ids of external item ids; unknown items map to ``[UNK]``."""
        index = pc.index_in(pa.array(items, type=pa.string()), value_set=self._item_array)
        return pc.fill_null(pc.add(index, len(self._specials)), self.unk_token_id).to_numpy(zero_copy_only=False)

    def behavior_token_ids(self, event_types: Sequence[str] | pa.Array) -> np.ndarray:
        """Behavior ids of event types; unknown types raise (they must be mapped when reading data)."""
        values = pa.array(event_types, type=pa.string())
        index = pc.index_in(values, value_set=self._event_array)
        if index.null_count:
            unknown = sorted(set(pc.filter(values, pc.is_null(index)).to_pylist()), key=str)
            raise ValueError(f"Unknown event types {unknown[:10]}; this tokenizer knows {self.event_types}.")
        return pc.add(index, NUM_BEHAVIOR_SPECIALS).to_numpy(zero_copy_only=False)

    def gap_bucket_ids(self, gaps: np.ndarray) -> np.ndarray:
        """Time ids of gaps in seconds: ``3 + min(floor(log2(1 + gap)), num_gap_buckets - 1)``."""
        gaps = np.asarray(gaps, dtype=np.int64).clip(min=0)
        return np.floor(np.log2(1.0 + gaps)).astype(np.int64).clip(max=self.num_gap_buckets - 1) + NUM_TIME_SPECIALS

    def time_bucket_ids(self, timestamps: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Time-gap bucket ids for flat ``timestamps`` split into sequences by ``offsets``."""
        timestamps = np.asarray(timestamps, dtype=np.int64)
        ids = self.gap_bucket_ids(np.diff(timestamps, prepend=timestamps[:1] if len(timestamps) else timestamps))
        starts = np.asarray(offsets[:-1], dtype=np.int64)
        ids[starts[starts < len(ids)]] = TIME_FIRST
        return ids

    def decode_items(self, token_ids: Iterable[int]) -> list[str | None]:
        """External item ids of token ids; ``None`` for special tokens."""
        offset = len(self._specials)
        return [self._items[i - offset] if offset <= i < self.vocab_size else None for i in map(int, token_ids)]

    # ----------------------------------------------------------------- encoding
    def encode_sequences(
        self,
        item_ids: Sequence[Sequence[str]],
        event_types: Sequence[Sequence[str]],
        timestamps: Sequence[Sequence[int]],
        *,
        append_mask: bool = False,
        query_timestamps: Sequence[int] | None = None,
        max_length: int | None = None,
        padding: bool | str = False,
        pad_to_multiple_of: int | None = None,
        return_tensors: str | None = None,
    ) -> BatchEncoding:
        """Encode a batch of event sequences (parallel lists per sequence, oldest event first).

        Args:
            append_mask: append a ``[MASK]`` event after each history (next-item inference,
                classification pooling).
            query_timestamps: with ``append_mask``, the time each prediction is made (one per
                sequence, e.g. a label cutoff): the mask's time id then encodes the gap since the
                last event (recency), instead of the "unknown gap" mask id.
            max_length: keep at most this many tokens per sequence, appended mask included,
                dropping the oldest events. Defaults to the tokenizer's ``max_length``.
            padding: ``False`` (ragged lists), ``True``/``"longest"`` or ``"max_length"``; always left.
            return_tensors: ``None`` (lists), ``"np"`` or ``"pt"`` (requires padding).
        """
        max_length = max_length or self.max_length
        keep = max_length - int(append_mask)
        if keep < 1:
            raise ValueError(f"max_length={max_length} leaves no room for events.")
        lengths = np.fromiter((len(s) for s in item_ids), dtype=np.int64, count=len(item_ids))
        for name, column in (("event_types", event_types), ("timestamps", timestamps)):
            other = np.fromiter((len(s) for s in column), dtype=np.int64, count=len(column))
            if other.shape != lengths.shape or (other != lengths).any():
                raise ValueError(f"`{name}` must have one value per item in every sequence.")
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        flat_items = pa.array([item for seq in item_ids for item in seq], type=pa.string())
        flat_types = pa.array([etype for seq in event_types for etype in seq], type=pa.string())
        flat_times = np.fromiter((t for seq in timestamps for t in seq), dtype=np.int64, count=int(offsets[-1]))
        streams = {
            "input_ids": self.item_token_ids(flat_items),
            "behavior_ids": self.behavior_token_ids(flat_types),
            "time_ids": self.time_bucket_ids(flat_times, offsets),
        }
        # Left truncation: each sequence keeps its last `keep` events.
        starts = np.maximum(offsets[:-1], offsets[1:] - keep)
        tail_times = np.full(len(lengths), TIME_MASK, dtype=np.int64)
        if append_mask and query_timestamps is not None:
            queries = np.asarray(query_timestamps, dtype=np.int64)
            if queries.shape != lengths.shape:
                raise ValueError(f"query_timestamps needs one value per sequence ({len(lengths)}), got {queries.shape}.")
            last = flat_times[np.maximum(offsets[1:] - 1, 0)] if len(flat_times) else np.zeros_like(queries)
            tail_times = np.where(lengths > 0, self.gap_bucket_ids(queries - last), TIME_FIRST)
        encoded: dict[str, list[list[int]]] = {name: [] for name in self.model_input_names}
        for row_index, (start, end) in enumerate(zip(starts.tolist(), offsets[1:].tolist())):
            tail = (self.mask_token_id, BEHAVIOR_MASK, int(tail_times[row_index]))
            for position, name in enumerate(("input_ids", "behavior_ids", "time_ids")):
                row = streams[name][start:end].tolist()
                if append_mask:
                    row.append(tail[position])
                encoded[name].append(row)
            encoded["attention_mask"].append([1] * (end - start + int(append_mask)))
        if padding or return_tensors is not None:
            encoded = self.pad_encoded(
                encoded,
                max_length=max_length if padding == "max_length" else None,
                pad_to_multiple_of=pad_to_multiple_of,
            )
        return BatchEncoding(encoded, tensor_type=return_tensors)

    def pad_encoded(
        self,
        encoded: Mapping[str, Sequence[Sequence[int]]],
        *,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
    ) -> dict[str, list[list[int]]]:
        """Left-pad every id stream to the longest row (or ``max_length``), all with id 0."""
        longest = max((len(row) for row in encoded["input_ids"]), default=0)
        target = max(longest, max_length or 0)
        if pad_to_multiple_of:
            target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
        padded = {}
        for name, rows in encoded.items():
            padded[name] = [[0] * (target - len(row)) + list(row) for row in rows]
        return padded

    def __call__(self, events: Any = None, *args: Any, **kwargs: Any) -> BatchEncoding:
        """Encode behavior data; plain text falls through to the standard tokenizer call.

        Accepts a batch in column form ``{"item_ids": [[...]], "event_types": [[...]],
        "timestamps": [[...]]}`` (what ``datasets.Dataset.map(tokenizer, batched=True)`` passes),
        one user's raw events as a list of dicts with ``item_id``, ``event_type`` and
        ``timestamp``, or a list of such lists.
        """
        if isinstance(events, Mapping) and "item_ids" in events:
            columns = events
            if columns["item_ids"] and isinstance(columns["item_ids"][0], str):
                columns = {key: [value] for key, value in columns.items()}
            return self.encode_sequences(columns["item_ids"], columns["event_types"], columns["timestamps"], **kwargs)
        if isinstance(events, Sequence) and events and not isinstance(events, str):
            batch = [events] if isinstance(events[0], Mapping) else events
            if all(isinstance(sequence, Sequence) and all(isinstance(e, Mapping) for e in sequence) for sequence in batch):
                return self.encode_sequences(*self._columns_from_event_dicts(batch), **kwargs)
        return super().__call__(events, *args, **kwargs)

    @staticmethod
    def _columns_from_event_dicts(
        batch: Sequence[Sequence[Mapping[str, Any]]],
    ) -> tuple[list[list[str]], list[list[str]], list[list[int]]]:
        """Split raw event dicts into sorted parallel columns (stable by timestamp)."""
        items, types, times = [], [], []
        for sequence in batch:
            try:
                ordered = sorted(sequence, key=lambda event: int(event["timestamp"]))
                items.append([str(event["item_id"]) for event in ordered])
                types.append([str(event["event_type"]) for event in ordered])
                times.append([int(event["timestamp"]) for event in ordered])
            except KeyError as missing:
                raise ValueError(
                    f"Each event needs 'item_id', 'event_type' and 'timestamp'; one lacks {missing}."
                ) from None
        return items, types, times


__all__ = ["BehaviorTokenizer"]
