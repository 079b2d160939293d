"""Events → one behavior sequence per user, time-ordered and sessionized."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from .arrow import from_arrow, list_offsets, to_arrow

SEQUENCE_COLUMNS: dict[str, str] = {
    "item_id": "item_ids",
    "event_type": "event_types",
    "timestamp": "timestamps",
    "category": "categories",
    "price": "prices",
}
"""Event column → per-user list column. ``session_index`` is added by sessionization."""

DEFAULT_SESSION_GAP_SECONDS = 30 * 60


def build_sequences(events: Dataset, *, session_gap_seconds: int | None = DEFAULT_SESSION_GAP_SECONDS) -> Dataset:
    """Group cleaned events into one row per user, sorted stably by (timestamp, original row).

    Returns columns ``user_id`` and parallel lists ``item_ids``, ``event_types``, ``timestamps``,
    ``session_index`` (0-based session number within the user) and, when present in the events,
    ``categories`` and ``prices``. A new session starts after an inactivity gap longer than
    ``session_gap_seconds``, or wherever a given ``session_id`` changes; ``None`` with no
    ``session_id`` column puts each user's events in one session. Users are ordered by id.
    """
    table = to_arrow(events)
    if table.num_rows == 0:
        raise ValueError("No events left to build sequences from (check the drop report).")
    order_keys = [("user_id", "ascending"), ("timestamp", "ascending")]
    if "row_index" in table.column_names:
        order_keys.append(("row_index", "ascending"))
    table = table.sort_by(order_keys)

    users = table.column("user_id").combine_chunks()
    new_user = np.ones(table.num_rows, dtype=bool)
    new_user[1:] = pc.not_equal(users[1:], users[:-1]).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(new_user)
    offsets = pa.array(np.append(starts, table.num_rows).astype(np.int32))

    columns: dict[str, pa.Array] = {"user_id": users.take(pa.array(starts))}
    for event_column, list_column in SEQUENCE_COLUMNS.items():
        if event_column in table.column_names:
            values = table.column(event_column).combine_chunks()
            columns[list_column] = pa.ListArray.from_arrays(offsets, values)
    new_session = _session_starts(table, new_user, session_gap_seconds)
    session_number = np.cumsum(new_session) - 1
    session_index = session_number - np.repeat(session_number[starts], np.diff(np.append(starts, table.num_rows)))
    columns["session_index"] = pa.ListArray.from_arrays(offsets, pa.array(session_index.astype(np.int32)))
    return from_arrow(pa.table(columns))


def _session_starts(table: pa.Table, new_user: np.ndarray, gap_seconds: int | None) -> np.ndarray:
    starts = new_user.copy()
    if "session_id" in table.column_names:
        sessions = table.column("session_id").combine_chunks()
        starts[1:] |= pc.not_equal(sessions[1:], sessions[:-1]).fill_null(True).to_numpy(zero_copy_only=False)
    elif gap_seconds is not None:
        timestamps = table.column("timestamp").to_numpy()
        starts[1:] |= np.diff(timestamps) > gap_seconds
    return starts


def sequence_statistics(sequences: Dataset) -> dict:
    """Users, items, events, events per type and sequence-length percentiles (for reports and cards)."""
    table = to_arrow(sequences)
    lengths = np.diff(list_offsets(table.column("item_ids")))
    items = table.column("item_ids").combine_chunks().flatten()
    types = table.column("event_types").combine_chunks().flatten().value_counts()
    per_type = {entry["values"].as_py(): entry["counts"].as_py() for entry in types}
    return {
        "users": int(table.num_rows),
        "items": int(pc.count_distinct(items).as_py()),
        "events": int(lengths.sum()),
        "events_per_type": dict(sorted(per_type.items())),
        "sequence_length": {
            f"p{q}": float(np.percentile(lengths, q)) if len(lengths) else 0.0 for q in (5, 25, 50, 75, 95, 100)
        },
    }


__all__ = ["DEFAULT_SESSION_GAP_SECONDS", "SEQUENCE_COLUMNS", "build_sequences", "sequence_statistics"]
