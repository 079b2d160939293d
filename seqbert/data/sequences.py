"""Events → one behavior sequence per user, time-ordered and sessionized."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from .arrow import element_positions, filter_list_elements, from_arrow, list_offsets, to_arrow

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
    ``session_index`` and, when present in the events, ``categories`` and ``prices``. Users are
    ordered by id. ``session_index`` numbers the user's sessions 0, 1, 2 … in time order (it never
    decreases along a sequence, so ``last + 1`` is the number of sessions); see
    :func:`session_starts` for where a session starts.
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
    new_session = session_starts(table, new_user, session_gap_seconds)
    session_number = np.cumsum(new_session) - 1
    session_index = session_number - np.repeat(session_number[starts], np.diff(np.append(starts, table.num_rows)))
    columns["session_index"] = pa.ListArray.from_arrays(offsets, pa.array(session_index.astype(np.int32)))
    return from_arrow(pa.table(columns))


def session_starts(table: pa.Table, new_user: np.ndarray, gap_seconds: int | None) -> np.ndarray:
    """Where sessions start in a table sorted by (user, time): a boolean per event.

    Rules, between an event and the user's previous event:

    * without a ``session_id`` column, a new session starts when the gap is longer than
      ``gap_seconds`` (``None``: never, one session per user);
    * with a ``session_id`` column, the logged id is authoritative: a new session starts wherever
      the id differs from the previous event's session, whatever the gap. A session is a
      contiguous run in time order, so an id that comes back after another one (``s1, s2, s1``)
      starts a new session (three sessions): interleaved sessions (two tabs, two devices) cannot
      share one index without ``session_index`` going backwards along the sequence.
    * events with a null ``session_id`` fall back to the gap rule: they continue the previous
      event's session (logged id or not) unless the gap is longer than ``gap_seconds``, which
      starts an unnamed session. A logged id after such events starts a new session unless it
      equals the session they continued (``s1, null, s1`` within the gap is one session).
    """
    starts = new_user.copy()
    if table.num_rows == 0:
        return starts
    gap_break = np.zeros(table.num_rows, dtype=bool)
    if gap_seconds is not None:
        timestamps = table.column("timestamp").to_numpy()
        gap_break[1:] = np.diff(timestamps) > gap_seconds
    if "session_id" not in table.column_names:
        return starts | gap_break
    ids = table.column("session_id").combine_chunks()
    if ids.null_count == len(ids):
        return starts | gap_break
    labels = pc.fill_null(pc.dictionary_encode(ids).indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    # A null id after a gap (or a user's first event) opens an unnamed session with a fresh label.
    unnamed = (labels < 0) & (starts | gap_break)
    labels[unnamed] = len(ids) + np.flatnonzero(unnamed)
    # Other null ids take the label of the session they continue (forward fill; every user's
    # first event is labelled, so nothing fills across users).
    source = np.maximum.accumulate(np.where(labels >= 0, np.arange(len(labels)), 0))
    labels = labels[source]
    starts[1:] |= labels[1:] != labels[:-1]
    return starts


def collapse_repeated_views(sequences: Dataset, *, within_session: bool = True) -> tuple[Dataset, int]:
    """Remove ``view`` events that repeat the user's immediately preceding event: a view of the same item.

    Of a run of consecutive views of one item the first (earliest) is kept. Only ``view`` events
    are ever removed: a ``cart``, ``purchase`` or any other type is never removed and breaks a run
    (``view a, cart a, view a`` keeps all three). With ``within_session`` (the default) a view that
    opens a new session is kept even when it repeats the previous session's last view (coming back
    to an item is signal). ``session_index`` is renumbered so it stays 0, 1, 2 … without gaps.

    Returns the new sequences and the number of events removed (for the drop report, reason
    ``collapsed_repeat_view``). No row loses its first event, so no row becomes empty.
    """
    table = to_arrow(sequences)
    offsets = list_offsets(table.column("item_ids"))
    _, positions = element_positions(offsets)
    if len(positions) < 2:
        return sequences, 0
    items = table.column("item_ids").combine_chunks().flatten()
    types = table.column("event_types").combine_chunks().flatten()
    is_view = pc.fill_null(pc.equal(types, "view"), False).to_numpy(zero_copy_only=False)
    same_item = pc.fill_null(pc.equal(items[1:], items[:-1]), False).to_numpy(zero_copy_only=False)
    repeat = np.zeros(len(positions), dtype=bool)
    repeat[1:] = (positions[1:] > 0) & is_view[1:] & is_view[:-1] & same_item
    sessions = None
    if "session_index" in table.column_names:
        sessions = table.column("session_index").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        if within_session:
            repeat[1:] &= sessions[1:] == sessions[:-1]
    removed = int(np.count_nonzero(repeat))
    if not removed:
        return sequences, 0
    table = filter_list_elements(table, list_columns(table), ~repeat)
    if sessions is not None:
        table = _renumber_sessions(table)
    return from_arrow(table), removed


def _renumber_sessions(table: pa.Table) -> pa.Table:
    """Make ``session_index`` dense (0, 1, 2 … per row) after events were removed."""
    column = table.column("session_index").combine_chunks()
    offsets = list_offsets(column)
    _, positions = element_positions(offsets)
    sessions = column.flatten().to_numpy(zero_copy_only=False)
    new = positions == 0
    new[1:] |= sessions[1:] != sessions[:-1]
    number = np.cumsum(new) - 1
    lengths = np.diff(offsets)
    dense = number - np.repeat(number[offsets[:-1][lengths > 0]], lengths[lengths > 0])
    index = table.schema.get_field_index("session_index")
    values = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(dense.astype(np.int32)))
    return table.set_column(index, "session_index", values)


def drop_short_sequences(sequences: Dataset, min_events: int) -> tuple[Dataset, int, int]:
    """Drop users with fewer than ``min_events`` events: (sequences, events dropped, users dropped).

    Used after :func:`collapse_repeated_views`, which can take a user below ``min_user_events``;
    the events go to the drop report as ``short_user``.
    """
    table = to_arrow(sequences)
    lengths = np.diff(list_offsets(table.column("item_ids")))
    short = lengths < min_events
    if not short.any():
        return sequences, 0, 0
    return from_arrow(table.filter(pa.array(~short))), int(lengths[short].sum()), int(short.sum())


def list_columns(table: pa.Table) -> list[str]:
    """The per-event list columns of a sequences table."""
    return [name for name in table.column_names if pa.types.is_list(table.schema.field(name).type)]


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


__all__ = [
    "DEFAULT_SESSION_GAP_SECONDS",
    "SEQUENCE_COLUMNS",
    "build_sequences",
    "collapse_repeated_views",
    "drop_short_sequences",
    "list_columns",
    "sequence_statistics",
    "session_starts",
]
