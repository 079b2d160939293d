"""Hand-made recency / frequency features of a history, for tabular baselines (no torch)."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset

from .arrow import element_positions, list_offsets, to_arrow
from .schema import EVENT_TYPES

SECONDS_PER_DAY = 86_400.0


def recency_frequency_features(histories: Dataset) -> tuple[np.ndarray, list[str]]:
    """Per row: log event count, log count per event type, log days since the last event and
    since the first, log distinct items and the number of sessions (needs ``cutoff`` and
    ``session_index`` columns, as written by ``user_purchase_labels``)."""
    table = to_arrow(histories)
    offsets = list_offsets(table.column("timestamps"))
    rows, _ = element_positions(offsets)
    n = table.num_rows
    lengths = np.diff(offsets).astype(np.float64)
    timestamps = table.column("timestamps").combine_chunks().flatten().to_numpy()
    cutoff = table.column("cutoff").to_numpy().astype(np.float64)
    types = table.column("event_types").combine_chunks().flatten()
    columns, names = [np.log1p(lengths)], ["log_events"]
    for event_type in EVENT_TYPES:
        is_type = pc.equal(types, event_type).to_numpy(zero_copy_only=False)
        columns.append(np.log1p(np.bincount(rows[is_type], minlength=n)))
        names.append(f"log_{event_type}s")
    nonempty = lengths > 0
    last = np.where(nonempty, timestamps[np.maximum(offsets[1:] - 1, 0)] if len(timestamps) else 0, cutoff)
    first = np.where(nonempty, timestamps[np.minimum(offsets[:-1], max(len(timestamps) - 1, 0))] if len(timestamps) else 0, cutoff)
    columns += [np.log1p((cutoff - last) / SECONDS_PER_DAY), np.log1p((cutoff - first) / SECONDS_PER_DAY)]
    names += ["log_days_since_last", "log_days_since_first"]
    items = table.column("item_ids").combine_chunks().flatten()
    codes = items.dictionary_encode().indices.to_numpy(zero_copy_only=False).astype(np.int64)
    distinct_pairs = np.unique(rows.astype(np.int64) * (int(codes.max(initial=0)) + 1) + codes)
    distinct_rows = distinct_pairs // (int(codes.max(initial=0)) + 1)
    columns.append(np.log1p(np.bincount(distinct_rows, minlength=n)))
    names.append("log_distinct_items")
    if "session_index" in table.column_names:
        sessions = table.column("session_index").combine_chunks().flatten().to_numpy()
        last_session = np.where(nonempty, sessions[np.maximum(offsets[1:] - 1, 0)] if len(sessions) else 0, -1)
        columns.append(np.log1p(last_session + 1.0))
        names.append("log_sessions")
    return np.stack(columns, axis=1).astype(np.float32), names


__all__ = ["recency_frequency_features"]
