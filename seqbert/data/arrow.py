"""Small vectorised Arrow helpers shared by the data pipeline (no per-event Python loops)."""

from __future__ import annotations

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


def list_offsets(column: pa.ChunkedArray | pa.ListArray) -> np.ndarray:
    """Offsets (length rows + 1) of a list column, made contiguous from zero."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    offsets = column.offsets.to_numpy()
    return offsets - offsets[0]


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
        column = table.column(name).combine_chunks()
        values = column.flatten().filter(mask)
        table = table.set_column(table.schema.get_field_index(name), name, pa.ListArray.from_arrays(new_offsets, values))
    return table


def take_list_elements(table: pa.Table, columns: list[str], flat_index: np.ndarray) -> dict[str, pa.Array]:
    """One flat element per row (``flat_index[row]``) from each list column."""
    index = pa.array(flat_index)
    return {name: table.column(name).combine_chunks().flatten().take(index) for name in columns}


__all__ = ["element_positions", "filter_list_elements", "from_arrow", "list_offsets", "take_list_elements", "to_arrow"]
