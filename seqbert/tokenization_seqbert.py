"""BehaviorTokenizer: turns behavior event sequences into SeqBERT model inputs.

Self-contained on purpose (imports only numpy, pyarrow and transformers): it is copied into saved
model folders for ``AutoTokenizer.from_pretrained(folder, trust_remote_code=True)``.

Three parallel id streams per event, plus the attention mask:

- ``input_ids``: ``[PAD]=0, [MASK]=1, [CLS]=2, [SEP]=3, [UNK]=4``, then (with
  ``unseen_items="hash"``) ``num_hash_buckets`` hash-bucket tokens ``[HASH_0]`` … for items outside
  the vocabulary, then catalog items in vocabulary order (external item ids are kept as exact
  strings in ``item_vocab.json``). Every id below ``num_special_tokens`` is special: hash buckets
  are embedded like items but never predicted;
- ``behavior_ids``: ``0`` pad, ``1`` mask, then the event types in ``event_types`` order;
- ``time_ids``: ``0`` pad, ``1`` mask, ``2`` first event (no previous one), then
  ``3 + min(floor(log2(1 + gap_seconds)), num_gap_buckets - 1)`` for the gap to the previous event.

Sequences are truncated on the left (the most recent events are kept) and padded on the left, so
the last position is always the most recent event, or the appended ``[MASK]`` that asks the model
"what comes next".

Encoding is vectorised over the flat events of a batch (numpy / pyarrow compute, no Python loop
per event). Batches can be Python lists of lists (``dataset.map(tokenizer, batched=True)``: lists
come back) or Arrow list columns (a ``pyarrow.Table``: ``ListArray`` columns come back, without any
per-row Python object; ``dataset.with_format("arrow").map(tokenizer.encode_table, batched=True,
num_proc=...)`` is the fastest way to tokenize a dataset).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
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
UNSEEN_ITEMS = ("unk", "hash")
HASH_TOKEN = "[HASH_{}]"
"""Token string of hash bucket ``k`` (token id ``len(SPECIAL_TOKENS) + k``)."""

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_ARROW_TYPES = (pa.Array, pa.ChunkedArray)


# --------------------------------------------------------------------------------------------- helpers
def _as_strings(values: Any) -> pa.Array | pa.ChunkedArray:
    """Any sequence or Arrow array of strings as an Arrow (chunked) array of type ``string``."""
    if isinstance(values, _ARROW_TYPES):
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        if not pa.types.is_string(values.type):
            values = values.cast(pa.string())
        return values
    if isinstance(values, np.ndarray) and values.dtype.kind in "OUS":
        values = values.tolist()
    return pa.array(values, type=pa.string())


def stable_hash64(values: Any) -> np.ndarray:
    """A stable 64-bit hash of each string: FNV-1a over its UTF-8 bytes, then the splitmix64 finaliser.

    Deterministic across processes, platforms and versions (unlike Python's ``hash``), and
    vectorised: one numpy pass per byte position over the strings at least that long. Reference::

        h = 0xCBF29CE484222325
        for byte in item.encode("utf-8"):
            h = ((h ^ byte) * 0x100000001B3) % 2**64
        h ^= h >> 30; h = h * 0xBF58476D1CE4E5B9 % 2**64
        h ^= h >> 27; h = h * 0x94D049BB133111EB % 2**64
        h ^= h >> 31

    Null values hash like the empty string.
    """
    values = _as_strings(values)
    if isinstance(values, pa.ChunkedArray):
        parts = [stable_hash64(chunk) for chunk in values.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    buffers = values.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32, count=values.offset + n + 1)[values.offset :].astype(np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, dtype=np.uint8)
    lengths = np.diff(offsets)
    if values.null_count:
        lengths[values.is_null().to_numpy(zero_copy_only=False)] = 0
    order = np.argsort(-lengths, kind="stable")  # longest first: strings longer than j are a prefix
    starts, sorted_lengths = offsets[:-1][order], lengths[order]
    longest = int(sorted_lengths[0])
    longer_than = np.searchsorted(-sorted_lengths, -np.arange(1, longest + 1), side="right")
    hashes = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for position in range(longest):
            active = int(longer_than[position])
            head = hashes[:active]
            head ^= data[starts[:active] + position]
            head *= _FNV_PRIME
        hashes ^= hashes >> np.uint64(30)
        hashes *= _MIX1
        hashes ^= hashes >> np.uint64(27)
        hashes *= _MIX2
        hashes ^= hashes >> np.uint64(31)
    out = np.empty(n, dtype=np.uint64)
    out[order] = hashes
    return out


def _contiguous(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One array: the only chunk as it is (``combine_chunks`` copies even a single chunk)."""
    if isinstance(values, pa.ChunkedArray):
        return values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    return values


def _list_column(column: Any, value_type: pa.DataType, name: str) -> tuple[np.ndarray, Any]:
    """A batch column of sequences → (offsets from 0, flat values as an Arrow array)."""
    column = _contiguous(column)
    if not isinstance(column, pa.Array):
        if isinstance(column, np.ndarray) and column.ndim == 2:
            column = list(column)
        try:
            column = pa.array(column, type=pa.list_(value_type))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            if not pa.types.is_integer(value_type):
                raise
            # e.g. timestamps given as floats or numpy scalars: the same int64 conversion as numpy.
            lengths = np.fromiter((len(s) for s in column), dtype=np.int64, count=len(column))
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            flat = np.fromiter((t for s in column for t in s), dtype=np.int64, count=int(offsets[-1]))
            return offsets, pa.array(flat)
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        raise ValueError(f"`{name}` must hold one list per sequence, got {column.type}.")
    if column.null_count:
        raise ValueError(f"`{name}` has a missing (null) sequence; use an empty list instead.")
    offsets = column.offsets.to_numpy().astype(np.int64)
    return offsets - offsets[0], column.flatten()


def _suffix_mask(lengths: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Boolean mask over flat events: the last ``kept[i]`` of row ``i`` (its length ``lengths[i]``)."""
    runs = np.empty(2 * len(lengths), dtype=np.int64)
    runs[0::2] = lengths - kept
    runs[1::2] = kept
    return np.repeat(np.tile(np.array([False, True]), len(lengths)), runs)


def _lists(flat: np.ndarray, offsets: np.ndarray) -> list[list[int]]:
    """Python lists of lists (one C-level ``tolist`` and one slice per row)."""
    values = flat.tolist()
    bounds = offsets.tolist()
    return [values[start:end] for start, end in pairwise(bounds)]


_ARROW_STREAM_TYPES = {
    "input_ids": np.int32,
    "behavior_ids": np.int16,
    "time_ids": np.int16,
    "attention_mask": np.int8,
}
"""Value types of the Arrow id streams: 9 bytes per event (int64 behavior and time ids took 21)."""
MAX_SMALL_IDS = np.iinfo(np.int16).max
"""Behavior and time ids must stay below this (they are stored as int16)."""


def _list_array(flat: np.ndarray, offsets: np.ndarray, dtype: Any = np.int64) -> pa.Array:
    values = pa.array(flat.astype(dtype, copy=False))
    if len(flat) < 2**31:
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)
    return pa.LargeListArray.from_arrays(pa.array(offsets), values)


class BehaviorTokenizer(PreTrainedTokenizer):
    """Tokenizer for behavior sequences (items, event types, time gaps).

    Args:
        vocab_file (`str`, *optional*): JSON list of external item ids in id order.
        items (`Sequence[str]`, *optional*): the item vocabulary directly (instead of ``vocab_file``).
        event_types (`Sequence[str]`): event types in behavior-id order.
        num_gap_buckets (`int`, defaults to 23): log2 time-gap buckets (the last one is open-ended).
        max_length (`int`, defaults to 200): longest encoded sequence, appended mask included.
        unseen_items (`str`, defaults to ``"unk"``): what items outside the vocabulary become:
            ``"unk"`` → ``[UNK]``; ``"hash"`` → one of ``num_hash_buckets`` special bucket tokens,
            chosen by :func:`stable_hash64` of the item id (so the same unseen item always gets the
            same bucket, in any process or later session).
        num_hash_buckets (`int`, defaults to 0): number of hash buckets (``unseen_items="hash"`` only).
            They take the special ids right after ``[UNK]``, so item ids start at
            ``num_special_tokens = 5 + num_hash_buckets``.

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
        unseen_items: str = "unk",
        num_hash_buckets: int = 0,
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
        item_array = _contiguous(_as_strings(items)) if isinstance(items, _ARROW_TYPES) else None
        if item_array is not None and not item_array.null_count:
            items = item_array.to_pylist()
        else:
            items = [str(item) for item in (items if item_array is None else item_array.to_pylist())]
            item_array = pa.array(items, type=pa.string())
        unseen_items = str(unseen_items).lower()
        num_hash_buckets = int(num_hash_buckets or 0)
        if unseen_items not in UNSEEN_ITEMS:
            raise ValueError(f"unseen_items must be one of {UNSEEN_ITEMS}, got {unseen_items!r}.")
        if unseen_items == "hash" and num_hash_buckets < 1:
            raise ValueError("unseen_items='hash' needs num_hash_buckets >= 1.")
        if unseen_items == "unk" and num_hash_buckets:
            raise ValueError(f"num_hash_buckets={num_hash_buckets} needs unseen_items='hash'.")
        self.unseen_items = unseen_items
        self.num_hash_buckets = num_hash_buckets
        # str(): from_pretrained passes the specials back as AddedToken objects, which neither hash
        # nor compare equal to their strings (get_vocab keys and the clash check need plain str).
        named = [str(token) for token in (pad_token, mask_token, cls_token, sep_token, unk_token)]
        self._specials = named + [HASH_TOKEN.format(k) for k in range(num_hash_buckets)]
        self._token_to_id = {token: index for index, token in enumerate(self._specials)}
        specials = len(self._token_to_id)
        self._token_to_id.update(zip(items, range(len(self._specials), len(self._specials) + len(items))))
        if len(self._token_to_id) != specials + len(items):  # a clash or a duplicate: say which
            clashes = sorted(set(items) & set(self._specials))
            if clashes:
                raise ValueError(f"Item ids {clashes[:10]} collide with special tokens; rename those items.")
            raise ValueError("The item vocabulary contains duplicate ids.")
        self._items = items
        self._item_array = item_array
        self._hash_index: tuple[np.ndarray, np.ndarray] | None = None
        self.event_types = list(event_types)
        if (
            NUM_BEHAVIOR_SPECIALS + len(self.event_types) > MAX_SMALL_IDS
            or NUM_TIME_SPECIALS + int(num_gap_buckets) > MAX_SMALL_IDS
        ):
            raise ValueError(
                f"At most {MAX_SMALL_IDS - NUM_TIME_SPECIALS} event types and gap buckets (ids are int16)."
            )
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
            unseen_items=self.unseen_items,
            num_hash_buckets=self.num_hash_buckets,
            **kwargs,
        )

    # ----------------------------------------------------------------- vocabulary
    @classmethod
    def train(
        cls,
        item_sequences: Iterable[Sequence[str]] | pa.Array | pa.ChunkedArray,
        *,
        min_count: int = 1,
        max_size: int | None = None,
        **kwargs: Any,
    ) -> BehaviorTokenizer:
        """Build the item vocabulary from training sequences only.

        Items are ordered by descending count, ties by id string (deterministic). Items seen fewer
        than ``min_count`` times, or beyond the ``max_size`` most frequent, are not in the
        vocabulary (``min_count`` applies first): they become ``[UNK]`` or a hash bucket.

        ``item_sequences`` is any iterable of sequences of ids, or (fast, vectorised) an Arrow list
        array / chunked array, or a ``datasets`` column such as ``dataset["item_ids"]``.
        """
        items, counts = _count_items(item_sequences)
        return cls.from_item_counts(items, counts, min_count=min_count, max_size=max_size, **kwargs)

    @classmethod
    def from_item_counts(
        cls,
        items: Sequence[str] | pa.Array,
        counts: Sequence[int] | np.ndarray | pa.Array,
        *,
        min_count: int = 1,
        max_size: int | None = None,
        **kwargs: Any,
    ) -> BehaviorTokenizer:
        """The vocabulary of :meth:`train` from item counts (repeated items are summed, e.g. the
        concatenated per-shard counts of a partitioned preparation)."""
        table = pa.table({"item": _as_strings(items), "count": pa.array(counts, type=pa.int64())})
        table = table.filter(pc.is_valid(table.column("item")))
        table = table.group_by("item", use_threads=False).aggregate([("count", "sum")])
        table = table.filter(pc.greater_equal(table.column("count_sum"), int(min_count)))
        # Arrow orders strings by UTF-8 bytes, which is code point order: the same as Python's str order.
        table = table.sort_by([("count_sum", "descending"), ("item", "ascending")])
        if max_size is not None:
            table = table.slice(0, max(int(max_size), 0))
        return cls(items=table.column("item"), **kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self._specials) + len(self._items)

    @property
    def num_special_tokens(self) -> int:
        """Ids below this are special: pad, mask, cls, sep, unk and the hash buckets."""
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
        token_id = self._token_to_id.get(token)
        if token_id is None:
            return int(self.item_token_ids([token])[0])
        return token_id

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

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_hash_index"] = None  # rebuilt on demand; keeps pickles (datasets.map num_proc) small
        return state

    # ----------------------------------------------------------------- id streams (vectorised)
    def _vocab_hash_index(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Sorted item hashes and their vocabulary positions; None if two items share a hash."""
        if self._hash_index is None:
            hashes = stable_hash64(self._item_array)
            order = np.argsort(hashes, kind="stable")
            sorted_hashes = hashes[order]
            if len(sorted_hashes) > 1 and (sorted_hashes[1:] == sorted_hashes[:-1]).any():
                self._hash_index = (np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64))  # unusable
            else:
                self._hash_index = (sorted_hashes, order.astype(np.int64))
        if len(self._hash_index[0]) != len(self._items):
            return None
        return self._hash_index

    def item_positions(self, items: Any) -> np.ndarray:
        """Vocabulary position of each item id (``-1`` when unseen or null), vectorised.

        Large batches use one ``pyarrow.compute.index_in`` (hash table of the vocabulary, rebuilt
        per call); batches much smaller than the vocabulary (``datasets.map`` batches) look items
        up in a sorted array of item hashes instead, which costs nothing per vocabulary item.
        """
        values = _as_strings(items)
        n = len(values)
        if n == 0 or not self._items:
            return np.full(n, -1, dtype=np.int64)
        index = self._vocab_hash_index() if 3 * n < len(self._items) else None
        if index is None:
            found = pc.index_in(values, value_set=self._item_array)
            return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        sorted_hashes, order = index
        hashes = stable_hash64(values)
        slot = np.minimum(np.searchsorted(sorted_hashes, hashes), len(sorted_hashes) - 1)
        hit = np.flatnonzero(sorted_hashes[slot] == hashes)
        positions = np.full(n, -1, dtype=np.int64)
        if len(hit):
            candidates = order[slot[hit]]
            same = pc.equal(values.take(pa.array(hit)), self._item_array.take(pa.array(candidates)))
            same = pc.fill_null(same, False).to_numpy(zero_copy_only=False)
            positions[hit[same]] = candidates[same]
        return positions

    def item_token_ids(self, items: Sequence[str] | pa.Array) -> np.ndarray:
        """Token ids of external item ids; unseen items map to ``[UNK]`` or their hash bucket."""
        values = _as_strings(items)
        positions = self.item_positions(values)
        ids = positions + len(self._specials)
        unseen = positions < 0
        if unseen.any():
            ids[unseen] = self.unk_token_id
            if self.unseen_items == "hash":
                where = np.flatnonzero(unseen)
                missing = values.take(pa.array(where))
                valid = ~np.asarray(missing.is_null().to_numpy(zero_copy_only=False), dtype=bool)
                buckets = stable_hash64(missing) % np.uint64(self.num_hash_buckets)
                ids[where[valid]] = len(SPECIAL_TOKENS) + buckets[valid].astype(np.int64)
        return ids

    def hash_bucket_ids(self, items: Sequence[str] | pa.Array) -> np.ndarray:
        """The hash-bucket token id each item would get if it were unseen (``unseen_items="hash"``)."""
        if self.unseen_items != "hash":
            raise ValueError("This tokenizer has no hash buckets (unseen_items='unk').")
        buckets = stable_hash64(items) % np.uint64(self.num_hash_buckets)
        return len(SPECIAL_TOKENS) + buckets.astype(np.int64)

    def behavior_token_ids(self, event_types: Sequence[str] | pa.Array) -> np.ndarray:
        """Behavior ids of event types; unknown types raise (they must be mapped when reading data)."""
        values = _as_strings(event_types)
        index = pc.index_in(values, value_set=self._event_array)
        if index.null_count:
            unknown = sorted(set(pc.filter(values, pc.is_null(index)).to_pylist()), key=str)
            raise ValueError(f"Unknown event types {unknown[:10]}; this tokenizer knows {self.event_types}.")
        return pc.add(index, NUM_BEHAVIOR_SPECIALS).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)

    def gap_bucket_ids(self, gaps: np.ndarray) -> np.ndarray:
        """Time ids of gaps in seconds: ``3 + min(floor(log2(1 + gap)), num_gap_buckets - 1)``."""
        gaps = np.asarray(gaps, dtype=np.int64).clip(min=0)
        # floor(log2(x)) of x = 1 + gap is frexp's exponent minus one (exact, no logarithm).
        _, exponent = np.frexp(gaps + 1.0)
        ids = exponent.astype(np.int64)
        np.clip(ids - 1, None, self.num_gap_buckets - 1, out=ids)
        ids += NUM_TIME_SPECIALS
        return ids

    def time_bucket_ids(self, timestamps: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Time-gap bucket ids for flat ``timestamps`` split into sequences by ``offsets``."""
        timestamps = np.asarray(timestamps, dtype=np.int64)
        ids = self.gap_bucket_ids(np.diff(timestamps, prepend=timestamps[:1] if len(timestamps) else timestamps))
        starts = np.asarray(offsets[:-1], dtype=np.int64)
        ids[starts[starts < len(ids)]] = TIME_FIRST
        return ids

    def decode_items(self, token_ids: Iterable[int]) -> list[str | None]:
        """External item ids of token ids; ``None`` for special tokens (hash buckets included)."""
        offset = len(self._specials)
        return [self._items[i - offset] if offset <= i < self.vocab_size else None for i in map(int, token_ids)]

    # ----------------------------------------------------------------- encoding
    def encode_sequences(
        self,
        item_ids: Sequence[Sequence[str]] | pa.Array | pa.ChunkedArray,
        event_types: Sequence[Sequence[str]] | pa.Array | pa.ChunkedArray,
        timestamps: Sequence[Sequence[int]] | pa.Array | pa.ChunkedArray,
        *,
        append_mask: bool = False,
        query_timestamps: Sequence[int] | None = None,
        max_length: int | None = None,
        padding: bool | str = False,
        pad_to_multiple_of: int | None = None,
        return_tensors: str | None = None,
        return_arrow: bool | None = None,
    ) -> BatchEncoding:
        """Encode a batch of event sequences (parallel lists per sequence, oldest event first).

        Args:
            item_ids, event_types, timestamps: one sequence per row: Python lists of lists, or
                Arrow list arrays (e.g. the columns of a ``pyarrow.Table`` batch).
            append_mask: append a ``[MASK]`` event after each history (next-item inference,
                classification pooling).
            query_timestamps: with ``append_mask``, the time each prediction is made (one per
                sequence, e.g. a label cutoff): the mask's time id then encodes the gap since the
                last event (recency), instead of the "unknown gap" mask id.
            max_length: keep at most this many tokens per sequence, appended mask included,
                dropping the oldest events. Defaults to the tokenizer's ``max_length``.
            padding: ``False`` (ragged lists), ``True``/``"longest"`` or ``"max_length"``; always left.
            return_tensors: ``None`` (lists), ``"np"`` or ``"pt"`` (requires padding).
            return_arrow: unpadded rows as Arrow ``ListArray`` columns instead of Python lists (values
                int32 for ``input_ids``, int16 for ``behavior_ids`` and ``time_ids``, int8 for
                ``attention_mask``: 9 bytes per event); ``None`` (default): Arrow when ``item_ids`` is an
                Arrow array.
        """
        max_length = max_length or self.max_length
        keep = max_length - int(append_mask)
        if keep < 1:
            raise ValueError(f"max_length={max_length} leaves no room for events.")
        if return_arrow is None:
            return_arrow = isinstance(item_ids, _ARROW_TYPES) and not padding and return_tensors is None
        elif return_arrow and (padding or return_tensors is not None):
            raise ValueError("return_arrow gives unpadded rows: leave padding and return_tensors unset.")

        offsets, flat_items = _list_column(item_ids, pa.string(), "item_ids")
        for name, column, value_type in (
            ("event_types", event_types, pa.string()),
            ("timestamps", timestamps, pa.int64()),
        ):
            other, flat = _list_column(column, value_type, name)
            if other.shape != offsets.shape or (other != offsets).any():
                raise ValueError(f"`{name}` must have one value per item in every sequence.")
            if name == "event_types":
                flat_types = flat
            else:
                if not pa.types.is_int64(flat.type):
                    flat = flat.cast(pa.int64())
                flat_times = flat.to_numpy(zero_copy_only=False)
        lengths = np.diff(offsets)
        streams = {
            "input_ids": self.item_token_ids(flat_items),
            "behavior_ids": self.behavior_token_ids(flat_types),
            "time_ids": self.time_bucket_ids(flat_times, offsets),
        }
        tail = {"input_ids": self.mask_token_id, "behavior_ids": BEHAVIOR_MASK, "time_ids": TIME_MASK}
        if append_mask and query_timestamps is not None:
            queries = np.asarray(query_timestamps, dtype=np.int64)
            if queries.shape != lengths.shape:
                raise ValueError(
                    f"query_timestamps needs one value per sequence ({len(lengths)}), got {queries.shape}."
                )
            last = flat_times[np.maximum(offsets[1:] - 1, 0)] if len(flat_times) else np.zeros_like(queries)
            tail["time_ids"] = np.where(lengths > 0, self.gap_bucket_ids(queries - last), TIME_FIRST)

        # Left truncation (each sequence keeps its last `keep` events), then the optional mask.
        kept = np.minimum(lengths, keep)
        out_lengths = kept + int(append_mask)
        out_offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(out_lengths, out=out_offsets[1:])
        if not append_mask and (kept != lengths).any():
            recent = _suffix_mask(lengths, kept)
            streams = {name: stream[recent] for name, stream in streams.items()}
        elif append_mask:
            kept_offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
            np.cumsum(kept, out=kept_offsets[1:])
            rows = np.repeat(np.arange(len(lengths)), kept)
            source = np.arange(kept_offsets[-1]) + (offsets[1:] - kept - kept_offsets[:-1])[rows]
            target = np.arange(kept_offsets[-1]) + rows
            for name, stream in streams.items():
                out = np.empty(out_offsets[-1], dtype=np.int64)
                out[target] = stream[source]
                out[out_offsets[1:] - 1] = tail[name]
                streams[name] = out
        streams["attention_mask"] = np.ones(out_offsets[-1], dtype=np.int8)

        if padding or return_tensors is not None:
            width = int(out_lengths.max(initial=0))
            if padding == "max_length":
                width = max(width, max_length)
            if pad_to_multiple_of:
                width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
            rows = np.repeat(np.arange(len(lengths)), out_lengths)
            columns = np.arange(out_offsets[-1]) - out_offsets[:-1][rows] + (width - out_lengths)[rows]
            padded = {}
            for name in self.model_input_names:
                matrix = np.zeros((len(lengths), width), dtype=np.int64)
                matrix[rows, columns] = streams[name]
                padded[name] = matrix
            if return_tensors is None:
                return BatchEncoding({name: matrix.tolist() for name, matrix in padded.items()})
            return BatchEncoding(padded, tensor_type=return_tensors)
        if return_arrow:
            return BatchEncoding(
                {
                    name: _list_array(streams[name], out_offsets, _ARROW_STREAM_TYPES[name])
                    for name in self.model_input_names
                }
            )
        return BatchEncoding({name: _lists(streams[name], out_offsets) for name in self.model_input_names})

    def encode_table(self, batch: pa.Table | pa.RecordBatch, **kwargs: Any) -> pa.Table:
        """Encode an Arrow batch with ``item_ids``, ``event_types`` and ``timestamps`` list columns
        into an Arrow table of the unpadded id streams (keyword arguments as :meth:`encode_sequences`).

        This is the function for ``datasets`` in Arrow format, with no Python object per event or
        per row: ``dataset.with_format("arrow").map(tokenizer.encode_table, batched=True, num_proc=4)``.
        """
        encoded = self.encode_sequences(
            batch["item_ids"], batch["event_types"], batch["timestamps"], return_arrow=True, **kwargs
        )
        return pa.table({name: encoded[name] for name in self.model_input_names})

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
        a ``pyarrow.Table`` / ``RecordBatch`` with those list columns (what
        ``dataset.with_format("arrow").map(tokenizer, batched=True)`` passes; Arrow columns come
        back), one user's raw events as a list of dicts with ``item_id``, ``event_type`` and
        ``timestamp``, or a list of such lists.
        """
        if isinstance(events, (pa.Table, pa.RecordBatch)):
            return self.encode_sequences(events["item_ids"], events["event_types"], events["timestamps"], **kwargs)
        if isinstance(events, Mapping) and "item_ids" in events:
            columns = events
            first = columns["item_ids"]
            if not isinstance(first, _ARROW_TYPES) and len(first) and isinstance(first[0], str):
                columns = {key: [value] for key, value in columns.items()}
            return self.encode_sequences(columns["item_ids"], columns["event_types"], columns["timestamps"], **kwargs)
        if isinstance(events, Sequence) and events and not isinstance(events, str):
            batch = [events] if isinstance(events[0], Mapping) else events
            if all(
                isinstance(sequence, Sequence) and all(isinstance(e, Mapping) for e in sequence) for sequence in batch
            ):
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


def _count_items(item_sequences: Any) -> tuple[pa.Array, np.ndarray]:
    """(distinct item ids, counts) of the ids in a collection of sequences; vectorised for Arrow."""
    column = item_sequences
    source, name = getattr(column, "source", None), getattr(column, "column_name", None)
    if name is not None and hasattr(source, "with_format"):  # a datasets Column: read its Arrow data
        column = source.with_format("arrow")[:][name]
    if isinstance(column, _ARROW_TYPES) and (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        flat = pa.chunked_array([chunk.flatten() for chunk in chunks], type=column.type.value_type)
        counted = pc.value_counts(_as_strings(flat))
        values, counts = counted.field("values"), counted.field("counts")
        return values, counts.to_numpy(zero_copy_only=False).astype(np.int64)
    counter: Counter[str] = Counter()
    for sequence in column:
        counter.update(map(str, sequence))
    return pa.array(list(counter), type=pa.string()), np.fromiter(counter.values(), dtype=np.int64, count=len(counter))


__all__ = ["BehaviorTokenizer", "stable_hash64"]
