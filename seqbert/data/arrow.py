"""Small vectorised Arrow helpers shared by the data pipeline (no per-event Python loops)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
from datasets import Dataset
from datasets.fingerprint import generate_random_fingerprint
from datasets.table import InMemoryTable


def to_arrow(dataset: Dataset) -> pa.Table:
    """The dataset's rows as a pyarrow Table (respecting any selection/shuffle indices)."""
    if dataset._indices is not None:
        dataset = dataset.flatten_indices()
    return dataset.data.table


def from_arrow(table: pa.Table) -> Dataset:
    """Wrap a pyarrow Table as an in-memory ``datasets.Dataset`` (no copy).

    A random fingerprint: otherwise ``datasets`` pickles the whole table to hash it, which cost
    ~6.6 s and ~1.4 GiB of peak memory on a 10M-event prepare (scripts/bench_prepare.py). In-memory
    datasets are not cached on disk, so nothing relies on a content fingerprint here.
    """
    return Dataset(InMemoryTable(table), fingerprint=generate_random_fingerprint())


def contiguous(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One array: the only chunk as it is (``combine_chunks`` copies even a single chunk)."""
    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def list_offsets(column: pa.ChunkedArray | pa.ListArray) -> np.ndarray:
    """Offsets (length rows + 1) of a list column, made contiguous from zero."""
    offsets = contiguous(column).offsets.to_numpy()
    return offsets - offsets[0]


def filter_rows(table: pa.Table, keep: np.ndarray) -> pa.Table:
    """``table.filter(keep)``. When few rows are dropped, the runs of kept rows are sliced and
    concatenated into contiguous columns (copies of whole buffers instead of a per-row selection)."""
    bounds = np.flatnonzero(np.diff(keep, prepend=False, append=False))
    starts, ends = bounds[0::2].tolist(), bounds[1::2].tolist()
    if len(starts) > max(64, len(keep) // 1024):
        return table.filter(pa.array(keep))

    def runs(column: pa.ChunkedArray) -> pa.Array:
        pieces = [chunk for start, end in zip(starts, ends) for chunk in column.slice(start, end - start).chunks]
        return pa.concat_arrays(pieces) if pieces else pa.array([], type=column.type)

    # Two threads: the copy is mostly first-touch page faults, which both cores can serve.
    with ThreadPoolExecutor(2) as pool:
        return pa.Table.from_arrays(list(pool.map(runs, table.columns)), schema=table.schema)


def item_counts(column: pa.ChunkedArray | pa.Array) -> pa.StructArray:
    """``pc.value_counts`` of a flat or list column (``values``, ``counts``; nulls are a value),
    through Arrow's hash group-by, which is faster for many distinct strings."""
    values = contiguous(column)
    if pa.types.is_list(values.type):
        values = values.flatten()
    grouped = pa.table({"values": values}).group_by("values", use_threads=False).aggregate([([], "count_all")])
    return pa.StructArray.from_arrays(
        [contiguous(grouped.column("values")), contiguous(grouped.column("count_all"))], names=["values", "counts"]
    )


def element_positions(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For flat list elements: (row index, position within the row)."""
    lengths = np.diff(offsets)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    positions = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
    return rows, positions


def filter_list_elements(table: pa.Table, columns: list[str], keep: np.ndarray) -> pa.Table:
    """Keep the flat elements where ``keep`` is true in every list column; all rows stay.

    All ``columns`` must be parallel lists (same lengths per row).
    """
    offsets = list_offsets(table.column(columns[0]))
    rows, _ = element_positions(offsets)
    new_lengths = np.bincount(rows[keep], minlength=len(offsets) - 1)
    new_offsets = pa.array(np.concatenate([[0], np.cumsum(new_lengths)]).astype(np.int32))
    mask = pa.array(keep)
    for name in columns:
        values = contiguous(table.column(name)).flatten().filter(mask)
        table = table.set_column(table.schema.get_field_index(name), name, pa.ListArray.from_arrays(new_offsets, values))
    return table


def prefix_mask(offsets: np.ndarray, rows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Boolean mask over the flat list elements: the first ``lengths[j]`` elements of row ``rows[j]``.

    No per-element row/position arrays: one ``np.repeat`` of an alternating True/False pattern by
    (kept, not kept) run lengths, row after row (rows may repeat, their longest prefix counts, or
    be empty; ``lengths`` must not exceed the row lengths).
    """
    row_lengths = np.diff(offsets)
    kept = np.zeros(len(row_lengths), dtype=np.int64)
    if len(rows) < 2 or bool(np.all(rows[1:] > rows[:-1])):
        kept[rows] = lengths
    else:
        np.maximum.at(kept, rows, lengths)
    runs = np.empty(2 * len(row_lengths), dtype=np.int64)
    runs[0::2] = kept
    runs[1::2] = row_lengths - kept
    pattern = np.zeros(len(runs), dtype=bool)
    pattern[0::2] = True
    return np.repeat(pattern, runs)


def take_prefixes(
    table: pa.Table, rows: np.ndarray, lengths: np.ndarray, columns: list[str] | None = None
) -> pa.Table:
    """Rows ``rows`` (ascending) of ``table``, each list column cut to its first ``lengths[j]`` elements.

    Same result as ``table.take(rows)`` then keeping a prefix of each row's lists, but every flat
    list column is filtered once (no copy of the taken rows first). ``columns`` are the parallel
    list columns (default: every list column); other columns are taken row-wise.
    """
    if columns is None:
        columns = [name for name in table.column_names if pa.types.is_list(table.schema.field(name).type)]
    rows = np.asarray(rows, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = list_offsets(table.column(columns[0])) if columns else None
    if columns:
        mask = pa.array(prefix_mask(offsets, rows, lengths))
        new_offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    index = pa.array(rows)

    def cut(name: str) -> pa.Array | pa.ChunkedArray:
        column = table.column(name)
        if name in columns:
            return pa.ListArray.from_arrays(new_offsets, contiguous(column).flatten().filter(mask))
        return column.take(index)

    with ThreadPoolExecutor(2) as pool:  # Arrow's filter and take release the GIL
        arrays = list(pool.map(cut, table.column_names))
    return pa.Table.from_arrays(arrays, names=table.column_names)


def shared_rows(table: pa.Table, rows: np.ndarray, max_runs: int | None = None) -> pa.Table | None:
    """Rows ``rows`` (ascending) of ``table`` as zero-copy slices: one chunk per run of consecutive rows.

    ``None`` when the rows fall into more than ``max_runs`` runs (default: one per 16 rows, at least
    64), where so many small chunks would cost more than a copy. The table itself when every row is
    selected.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == table.num_rows:
        return table
    bounds = np.flatnonzero(np.diff(rows, prepend=-2) != 1)  # where a run of consecutive rows starts
    limit = max(64, len(rows) // 16) if max_runs is None else max_runs
    if len(bounds) > limit:
        return None
    if not len(rows):
        return table.slice(0, 0)
    starts, stops = rows[bounds], rows[np.append(bounds[1:], len(rows)) - 1] + 1
    return pa.concat_tables([table.slice(start, stop - start) for start, stop in zip(starts.tolist(), stops.tolist())])


def take_list_elements(table: pa.Table, columns: list[str], flat_index: np.ndarray) -> dict[str, pa.Array]:
    """One flat element per row (``flat_index[row]``) from each list column."""
    index = pa.array(flat_index)
    return {name: contiguous(table.column(name)).flatten().take(index) for name in columns}


__all__ = [
    "contiguous",
    "element_positions",
    "filter_list_elements",
    "filter_rows",
    "from_arrow",
    "item_counts",
    "list_offsets",
    "prefix_mask",
    "shared_rows",
    "take_list_elements",
    "take_prefixes",
    "to_arrow",
]
