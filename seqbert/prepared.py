"""The prepared-data folder: what ``seqbert prepare`` writes and the training scripts read.

Layout::

    prepared/
      dataset/            DatasetDict (train / validation / test), see seqbert.data.splits
      sequences/          every user's full sequence (fine-tuning labels are cut from it by time)
      tokenizer/          BehaviorTokenizer trained on the train split only
      protocol.json       split protocol + input content hash
      statistics.json     users, items, events per type, length percentiles
      drop_report.json    rows dropped by cleaning, per reason

or, written with ``PreparedData.save(folder, shards=N)`` / ``seqbert prepare --output-shards N`` (and by
the Spark path), the parquet-shard layout::

    prepared/
      dataset/train/part-00000.parquet ...       the same rows, columns and Arrow types, cut into
      dataset/validation/part-00000.parquet ...  consecutive shards (concatenated in name order they are
      dataset/test/part-00000.parquet ...        the split's rows in order)
      sequences/part-00000.parquet ...
      tokenizer/, statistics.json, drop_report.json as above
      protocol.json       as above, plus "layout": "parquet" and "shards": {"dataset/train": [{"file":
                          "part-00000.parquet", "rows": 1234}, ...], "dataset/validation": [...],
                          "dataset/test": [...], "sequences": [...]} (per folder, its files in order)

``PreparedData.load`` reads either layout. Parquet cannot be memory-mapped as Arrow (it is encoded and
compressed), so its shards are decoded with pyarrow into in-memory tables; training with ``--streaming``
reads the train shards one at a time instead (seqbert.training.streaming).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict, load_from_disk
from datasets.fingerprint import Hasher
from datasets.table import InMemoryTable

from .tokenization_seqbert import BehaviorTokenizer

JSON_FILES = ("protocol", "statistics", "drop_report")
SPLIT_NAMES = ("train", "validation", "test")
PARQUET_LAYOUT = "parquet"
"""``protocol["layout"]`` of a folder of parquet shards (absent: the Arrow ``save_to_disk`` layout)."""
SHARD_FILE = "part-{:05d}.parquet"


def _shard_ranges(num_rows: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` consecutive row ranges of near-equal size (empty ones dropped, at least one kept)."""
    edges = [num_rows * index // shards for index in range(shards + 1)]
    ranges = [(start, stop) for start, stop in pairwise(edges) if stop > start]
    return ranges or [(0, 0)]


def _shard_key(name: str) -> str:
    """Where a split's shards are, relative to the folder (also its key in ``protocol["shards"]``)."""
    return "sequences" if name == "sequences" else f"dataset/{name}"


def shard_records(protocol: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The shard records (``file``, ``rows``) of split ``name`` (or ``"sequences"``) in a parquet layout's protocol."""
    shards = protocol["shards"]
    for key in (_shard_key(name), name):
        if key in shards:
            return shards[key]
    raise KeyError(f"protocol.json lists no shards of {name!r} (it lists {', '.join(sorted(shards))}).")


def _write_shards(dataset: Dataset, folder: Path, relative: str, shards: int) -> list[dict[str, Any]]:
    """``dataset``'s rows as parquet files ``folder/relative/part-NNNNN.parquet``; their records (file, rows)."""
    target = folder / relative
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("part-*.parquet"):
        stale.unlink()
    table = _arrow_rows(dataset)
    # The datasets features travel in the schema metadata, so the loaded Dataset has the same features.
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **dataset.features.arrow_schema.metadata})
    records = []
    for index, (start, stop) in enumerate(_shard_ranges(table.num_rows, shards)):
        name = SHARD_FILE.format(index)
        pq.write_table(table.slice(start, stop - start), target / name)
        records.append({"file": name, "rows": stop - start})
    return records


def shard_files(folder: str | Path, protocol: dict[str, Any], name: str) -> list[Path]:
    """The parquet files of split ``name`` (or ``"sequences"``), in order: each record's ``file`` in the split's
    folder (or, failing that, relative to the prepared folder)."""
    folder = Path(folder)
    paths = []
    for record in shard_records(protocol, name):
        path = folder / _shard_key(name) / record["file"]
        paths.append(path if path.exists() or not (folder / record["file"]).exists() else folder / record["file"])
    return paths


def read_shards(folder: str | Path, protocol: dict[str, Any], name: str) -> Dataset:
    """A split of the parquet layout as an in-memory Dataset (the shards decoded by pyarrow, concatenated in order).

    Not ``Dataset.from_parquet``: that converts the files into a second, Arrow copy in the datasets cache
    (a full extra write of the data on every new folder) to memory-map it; here the decoded table is used as is.
    """
    records = shard_records(protocol, name)
    files = shard_files(folder, protocol, name)
    table = pa.concat_tables([pq.read_table(path) for path in files])
    for path, record in zip(files, records, strict=True):
        if pq.ParquetFile(path).metadata.num_rows != record["rows"]:
            raise ValueError(f"{path} holds {pq.ParquetFile(path).metadata.num_rows} rows; protocol.json records {record['rows']}.")
    stats = [(record["file"], record["rows"], path.stat().st_size, path.stat().st_mtime_ns) for path, record in zip(files, records)]
    return Dataset(InMemoryTable(table), fingerprint=Hasher.hash({"parquet_shards": stats}))


@dataclass
class PreparedData:
    """Splits, full sequences, tokenizer and the records describing how they were made."""

    splits: DatasetDict
    sequences: Dataset | None  # None when loaded with ``sequences=False``
    tokenizer: BehaviorTokenizer
    protocol: dict[str, Any] = field(default_factory=dict)
    statistics: dict[str, Any] = field(default_factory=dict)
    drop_report: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: str | Path, *, shards: int | None = None) -> Path:
        """Write the folder: the Arrow ``save_to_disk`` layout, or with ``shards`` every split and the sequences
        as that many parquet shards each (module docstring); protocol.json then records the layout and shards."""
        if shards is not None and shards < 1:
            raise ValueError(f"shards must be >= 1, got {shards}.")
        if self.sequences is None:
            raise ValueError("These prepared data were loaded without their sequences (sequences=False); load them all to save.")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        protocol = {key: value for key, value in self.protocol.items() if key not in ("layout", "shards")}
        if shards is None:
            self.splits.save_to_disk(str(folder / "dataset"))
            self.sequences.save_to_disk(str(folder / "sequences"))
        else:
            if (folder / "dataset" / "dataset_dict.json").exists():  # an Arrow layout written earlier
                for name in ("dataset", "sequences"):
                    shutil.rmtree(folder / name, ignore_errors=True)
            records = {_shard_key(name): _write_shards(split, folder, _shard_key(name), shards) for name, split in self.splits.items()}
            records["sequences"] = _write_shards(self.sequences, folder, "sequences", shards)
            protocol = {**protocol, "layout": PARQUET_LAYOUT, "shards": records}
        self.tokenizer.save_pretrained(str(folder / "tokenizer"))
        for name in JSON_FILES:
            value = protocol if name == "protocol" else getattr(self, name)
            (folder / f"{name}.json").write_text(json.dumps(value, indent=2, default=str) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, splits: Iterable[str] | None = None, sequences: bool = True) -> PreparedData:
        """Read a prepared folder of either layout. ``splits`` (default: all) and ``sequences`` choose what is read:
        the Arrow layout is memory-mapped, so leaving parts out saves little there, but the parquet layout is
        decoded into memory (``--streaming`` training leaves out the train split and the sequences)."""
        folder = Path(folder)
        missing = [name for name in ("dataset", "sequences", "tokenizer") if not (folder / name).exists()]
        if missing:
            raise FileNotFoundError(
                f"{folder} is not a prepared-data folder (missing {', '.join(missing)}). "
                "Create one with `seqbert prepare EVENTS_FILE --output-dir FOLDER`."
            )
        records = {
            name: json.loads((folder / f"{name}.json").read_text()) if (folder / f"{name}.json").exists() else {}
            for name in JSON_FILES
        }
        protocol = records["protocol"]
        if protocol.get("layout") == PARQUET_LAYOUT:
            names = [key.removeprefix("dataset/") for key in protocol["shards"] if key != "sequences"]
            names = [name for name in names if splits is None or name in splits]
            dataset = DatasetDict({name: read_shards(folder, protocol, name) for name in names})
            full = read_shards(folder, protocol, "sequences") if sequences else None
        else:
            dataset = load_from_disk(str(folder / "dataset"))
            if splits is not None:
                dataset = DatasetDict({name: dataset[name] for name in dataset if name in splits})
            full = load_from_disk(str(folder / "sequences")) if sequences else None
        return cls(
            splits=dataset,
            sequences=full,
            tokenizer=BehaviorTokenizer.from_pretrained(str(folder / "tokenizer")),
            **records,
        )


EVENTS_PER_CHUNK = 1 << 20
"""Encoding works on row ranges of about this many events (bounded temporary memory, two threads)."""


def _arrow_rows(dataset: Dataset) -> pa.Table:
    """The dataset's rows as an Arrow table (zero-copy unless an indices mapping must be applied)."""
    return dataset.with_format("arrow")[:] if dataset.num_rows else dataset.data.table.slice(0, 0)


def _row_chunks(table: pa.Table) -> list[tuple[int, int]]:
    """(start, stop) row ranges of about ``EVENTS_PER_CHUNK`` events each (by the item lists)."""
    lengths = pc.list_value_length(table.column("item_ids")).to_numpy(zero_copy_only=False)
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if len(ends) else 0
    bounds = np.searchsorted(ends, np.arange(EVENTS_PER_CHUNK, total, EVENTS_PER_CHUNK), side="left") + 1
    bounds = np.unique(np.clip(np.concatenate([[0], bounds, [table.num_rows]]), 0, table.num_rows))
    return [(int(a), int(b)) for a, b in pairwise(bounds) if b > a] or [(0, 0)]


def _encode_chunks(table: pa.Table, encode: Callable[[pa.Table], pa.Table], threads: int | None) -> Iterator[pa.Table]:
    """``encode`` applied to row ranges of ``table``, in order; ``threads`` ranges at a time (numpy
    and Arrow release the GIL), so at most that many encoded ranges are pending."""
    ranges = _row_chunks(table)
    threads = max(1, min(threads or os.cpu_count() or 1, len(ranges), 4))
    if threads == 1:
        for start, stop in ranges:
            yield encode(table.slice(start, stop - start))
        return
    with ThreadPoolExecutor(threads) as pool:
        for first in range(0, len(ranges), threads):
            group = [table.slice(start, stop - start) for start, stop in ranges[first : first + threads]]
            yield from pool.map(encode, group)


def _collect(parts: Iterable[pa.Table], fingerprint: str, cache_file: str | Path | None, row_ids: bool = False) -> Dataset:
    """Encoded parts → an in-memory Dataset, or (``cache_file``) an Arrow file on disk, memory-mapped."""
    rows = 0
    tables = []
    writer = None
    try:
        for part in parts:
            if row_ids:
                part = part.append_column("row_id", pa.array(np.arange(rows, rows + part.num_rows, dtype=np.int64)))
            rows += part.num_rows
            if cache_file is None:
                tables.append(part)
                continue
            if writer is None:
                writer = pa.ipc.new_stream(str(cache_file), part.schema)
            writer.write_table(part)
    finally:
        if writer is not None:
            writer.close()
    if cache_file is None:
        return Dataset(InMemoryTable(pa.concat_tables(tables)), fingerprint=fingerprint)
    return Dataset.from_file(str(cache_file))


def _fingerprint(dataset: Dataset, transform: str, tokenizer: BehaviorTokenizer, **params: Any) -> str:
    """Deterministic fingerprint (parent + transform + vocabulary + options): datasets would otherwise
    hash the whole result table."""
    # The item list is digested with hashlib: pickling 200k strings through datasets' Hasher took ~0.7 s.
    items = hashlib.sha256(json.dumps(tokenizer.items).encode("utf-8")).hexdigest()
    vocabulary = (
        len(tokenizer.items), items, tokenizer.event_types, tokenizer.num_gap_buckets, tokenizer.unseen_items,
        tokenizer.num_hash_buckets,
    )
    return Hasher.hash({"parent": dataset._fingerprint, "transform": transform, "vocabulary": vocabulary, **params})


def _encoded_columns(encoding: Any) -> dict[str, pa.Array]:
    return {name: encoding[name] for name in ("input_ids", "behavior_ids", "time_ids", "attention_mask")}


def window_bounds(lengths: np.ndarray, size: int, stride: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training windows over sequences of ``lengths`` events: (row, start, stop) of each window.

    A sequence of at most ``size`` events is one window. A longer one yields its most recent ``size`` events
    and, with a ``stride``, further windows ending ``stride``, ``2 * stride``, ... events earlier, the last one
    at the sequence's start, so every event is inside a window (and, with ``stride < size``, every event but
    the sequence's first is a left-to-right target in one). Windows are listed most recent first, per row.
    """
    if size < 1 or (stride is not None and stride < 1):
        raise ValueError(f"window size and stride must be positive, got {size} and {stride}.")
    lengths = np.asarray(lengths, dtype=np.int64)
    extra = np.zeros_like(lengths) if stride is None else np.where(lengths > size, -(-(lengths - size) // stride), 0)
    counts = 1 + extra
    rows = np.repeat(np.arange(len(lengths)), counts)
    index = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)  # 0 = the most recent window
    stops = np.maximum(lengths[rows] - index * (stride or 0), np.minimum(lengths[rows], size))
    return rows, np.maximum(stops - size, 0), stops


def sliding_windows(table: pa.Table, size: int, stride: int | None) -> pa.Table:
    """Every list column of ``table`` (one value per event, equal lengths per row) cut into the windows of
    :func:`window_bounds`; one output row per window. ``stride=None`` keeps the most recent ``size`` events."""
    first = table.column(0).combine_chunks()
    offsets = first.offsets.to_numpy().astype(np.int64)
    rows, starts, stops = window_bounds(np.diff(offsets), size, stride)
    widths = stops - starts
    new_offsets = np.concatenate([[0], np.cumsum(widths)])
    positions = np.arange(new_offsets[-1]) + np.repeat(offsets[rows] + starts - new_offsets[:-1], widths)
    take = pa.array(positions)
    columns = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        values = column.values.take(take)
        columns[name] = pa.ListArray.from_arrays(pa.array(new_offsets, pa.int32()), values)
    return pa.table(columns)


PRETRAINING_COLUMNS = ("item_ids", "event_types", "timestamps")
"""The columns of a split that pretraining encodes."""


def pretraining_encoder(tokenizer: BehaviorTokenizer, max_length: int, window_stride: int | None) -> Callable[[pa.Table], pa.Table]:
    """The row-wise encoding of :func:`encode_for_pretraining` (without row ids) for one table of split rows; the
    same function encodes a whole split in memory and one shard of a stream (seqbert.training.streaming)."""
    special = tokenizer.num_special_tokens

    def encode(chunk: pa.Table) -> pa.Table:
        longest = int(pc.max(pc.list_value_length(chunk.column("item_ids"))).as_py() or 1)
        encoded = tokenizer.encode_sequences(
            chunk.column("item_ids"), chunk.column("event_types"), chunk.column("timestamps"),
            max_length=max(longest, 1), return_arrow=True,
        )  # fmt: skip
        table = sliding_windows(pa.table(_encoded_columns(encoded)), max_length, window_stride)
        ids = table.column("input_ids").combine_chunks()
        known = np.concatenate([[0], np.cumsum(ids.values.to_numpy(zero_copy_only=False) >= special)])
        offsets = ids.offsets.to_numpy()
        has_known = known[offsets[1:]] > known[offsets[:-1]]
        return table if has_known.all() else table.filter(pa.array(has_known))

    return encode


def pretraining_row_count(item_ids: pa.Array | pa.ChunkedArray, tokenizer: BehaviorTokenizer, max_length: int,
                          window_stride: int | None) -> int:
    """How many rows :func:`encode_for_pretraining` makes of split rows with these ``item_ids`` lists, without
    encoding them: the windows of their lengths that hold at least one known item (one vocabulary look-up)."""
    if isinstance(item_ids, pa.ChunkedArray):
        item_ids = item_ids.combine_chunks()
    if len(item_ids) == 0:
        return 0
    offsets = item_ids.offsets.to_numpy().astype(np.int64)
    flat = item_ids.values.slice(offsets[0], offsets[-1] - offsets[0])
    offsets = offsets - offsets[0]
    known = np.concatenate([[0], np.cumsum(tokenizer.item_token_ids(flat) >= tokenizer.num_special_tokens)])
    rows, starts, stops = window_bounds(np.diff(offsets), max_length, window_stride)
    return int((known[offsets[rows] + stops] > known[offsets[rows] + starts]).sum())


def encode_for_pretraining(
    dataset: Dataset,
    tokenizer: BehaviorTokenizer,
    max_length: int,
    *,
    window_stride: int | None = None,
    threads: int | None = None,
    cache_file: str | Path | None = None,
) -> Dataset:
    """Training rows → unpadded id streams of at most ``max_length`` events, rows without any known item
    removed (they carry no learnable label), and a ``row_id`` column.

    Without ``window_stride`` each user gives one row, their most recent ``max_length`` events. With it, a
    longer sequence gives several rows, windows ``window_stride`` events apart (:func:`window_bounds`), so
    every event of a long history trains. Windows are cut after encoding, so the first event of an older
    window keeps its time gap to the event before it, as the left-truncated row does.

    Vectorised over Arrow columns in chunks of ~1M events (no Python objects per row or event), in
    ``threads`` threads (default: the CPU count, at most 4). With ``cache_file`` the result is
    written there as it is produced and returned memory-mapped (bounded memory for large splits).
    """
    encode = pretraining_encoder(tokenizer, max_length, window_stride)
    fingerprint = _fingerprint(
        dataset, "seqbert.encode_for_pretraining", tokenizer, max_length=max_length, window_stride=window_stride
    )
    # A stable row id lets the masking collator seed each batch from its content (exact resume).
    return _collect(_encode_chunks(_arrow_rows(dataset), encode, threads), fingerprint, cache_file, row_ids=True)


def encode_for_next_item(
    dataset: Dataset, tokenizer: BehaviorTokenizer, max_length: int, *, threads: int | None = None
) -> Dataset:
    """Evaluation rows → history + appended ``[MASK]``, and ``target_ids`` as item columns (-1 = unknown)."""

    def encode(chunk: pa.Table) -> pa.Table:
        encoded = tokenizer.encode_sequences(
            chunk.column("item_ids"), chunk.column("event_types"), chunk.column("timestamps"),
            max_length=max_length, append_mask=True, return_arrow=True,
        )  # fmt: skip
        targets = tokenizer.item_token_ids(chunk.column("target_item_id")) - tokenizer.num_special_tokens
        columns = _encoded_columns(encoded)
        columns["target_ids"] = pa.array(np.where(targets < 0, -1, targets).astype(np.int64))
        return pa.table(columns)

    fingerprint = _fingerprint(dataset, "seqbert.encode_for_next_item", tokenizer, max_length=max_length)
    return _collect(_encode_chunks(_arrow_rows(dataset), encode, threads), fingerprint, None)


def encode_for_classification(
    dataset: Dataset, tokenizer: BehaviorTokenizer, max_length: int, *, threads: int | None = None
) -> Dataset:
    """Labelled history rows → history + appended ``[MASK]`` (the pooled position) and ``labels``.

    The mask carries the gap from the last event to the row's ``cutoff`` (the prediction time), so
    the model sees recency exactly as a tabular model would.
    """

    def encode(chunk: pa.Table) -> pa.Table:
        encoded = tokenizer.encode_sequences(
            chunk.column("item_ids"), chunk.column("event_types"), chunk.column("timestamps"),
            max_length=max_length, append_mask=True, return_arrow=True,
            query_timestamps=chunk.column("cutoff").to_numpy(),
        )  # fmt: skip
        columns = _encoded_columns(encoded)
        columns["labels"] = chunk.column("label")
        return pa.table(columns)

    fingerprint = _fingerprint(dataset, "seqbert.encode_for_classification", tokenizer, max_length=max_length)
    return _collect(_encode_chunks(_arrow_rows(dataset), encode, threads), fingerprint, None)


__all__ = [
    "PARQUET_LAYOUT", "PreparedData", "encode_for_classification", "encode_for_next_item", "encode_for_pretraining",
    "pretraining_encoder", "pretraining_row_count", "read_shards", "shard_files", "shard_records", "sliding_windows", "window_bounds",
]
