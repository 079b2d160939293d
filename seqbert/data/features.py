"""Hand-made recency / frequency / event-type / item-popularity features of a history (and of a
user-item pair), for the tabular baselines (no torch). Every feature of a labelled row is computed
from the events before that row's cutoff only."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
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


def item_statistics(sequences: Dataset, cutoff: int) -> dict[str, np.ndarray | pa.Array]:
    """Catalog statistics from every user's events strictly before ``cutoff`` (nothing later is read).

    Returns ``items`` (distinct item ids seen before the cutoff, an Arrow string array) and, aligned
    with them, ``events`` (event count), ``purchases`` and ``users`` (distinct users).
    """
    table = to_arrow(sequences)
    offsets = list_offsets(table.column("timestamps"))
    rows, _ = element_positions(offsets)
    before = table.column("timestamps").combine_chunks().flatten().to_numpy() < cutoff
    items = table.column("item_ids").combine_chunks().flatten().filter(pa.array(before))
    types = table.column("event_types").combine_chunks().flatten().filter(pa.array(before))
    encoded = pc.cast(items, pa.string()).dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    size = len(encoded.dictionary)
    purchases = pc.fill_null(pc.equal(types, "purchase"), False).to_numpy(zero_copy_only=False)
    user_item = np.unique(rows[before].astype(np.int64) * max(size, 1) + codes)
    return {
        "items": encoded.dictionary,
        "events": np.bincount(codes, minlength=size).astype(np.float64),
        "purchases": np.bincount(codes[purchases], minlength=size).astype(np.float64),
        "users": np.bincount(user_item % max(size, 1), minlength=size).astype(np.float64),
    }


def candidate_matches(rows: Dataset | pa.Table) -> dict[str, np.ndarray | None]:
    """Which history events of each row equal its candidate: flat per-event arrays over the rows'
    ``item_ids`` lists (raw ids, so items outside any vocabulary compare exactly).

    Returns ``offsets`` (the list offsets), ``rows`` / ``positions`` (each event's row and position in it),
    ``same_item`` (the event's item is the row's ``candidate_item_id``) and ``same_category`` (its category
    is the row's ``candidate_category``; ``None`` without both category columns; a null never matches).
    """
    table = rows if isinstance(rows, pa.Table) else to_arrow(rows)
    offsets = list_offsets(table.column("timestamps"))
    element_rows, positions = element_positions(offsets)
    take = pa.array(element_rows)

    def equal(history: str, candidate: str) -> np.ndarray:
        flat = pc.cast(table.column(history).combine_chunks().flatten(), pa.string())
        wanted = pc.cast(table.column(candidate).combine_chunks(), pa.string()).take(take)
        return pc.fill_null(pc.equal(flat, wanted), False).to_numpy(zero_copy_only=False)

    has_categories = "categories" in table.column_names and "candidate_category" in table.column_names
    return {
        "offsets": offsets,
        "rows": element_rows,
        "positions": positions,
        "same_item": equal("item_ids", "candidate_item_id"),
        "same_category": equal("categories", "candidate_category") if has_categories else None,
    }


def candidate_features(rows: Dataset, statistics: dict[str, np.ndarray | pa.Array] | None = None) -> tuple[np.ndarray, list[str]]:
    """User-item pair and item features of rows with a ``candidate_item_id`` (item-conversion / click rows).

    Pair features, from the row's history only (events before its cutoff): log count of the user's
    events with the candidate, per event type; log seconds from the user's last event with the
    candidate to the cutoff (and a flag for "never"); log number of events since it; whether the
    candidate is the user's last item; with categories, the log count and share of the user's events
    in the candidate's category. Item features (from ``statistics`` = :func:`item_statistics` at the
    same cutoff): log events, log purchases, log distinct users and the smoothed purchase rate
    ``(purchases + 1) / (events + 50)`` of the candidate before the cutoff.
    """
    table = to_arrow(rows)
    matches = candidate_matches(table)
    offsets, element_rows, positions, same = matches["offsets"], matches["rows"], matches["positions"], matches["same_item"]
    n = table.num_rows
    lengths = np.diff(offsets)
    candidates = pc.cast(table.column("candidate_item_id").combine_chunks(), pa.string())
    types = table.column("event_types").combine_chunks().flatten()
    timestamps = table.column("timestamps").combine_chunks().flatten().to_numpy()
    cutoff = table.column("cutoff").to_numpy().astype(np.float64)
    columns, names = [np.log1p(np.bincount(element_rows[same], minlength=n))], ["log_pair_events"]
    for event_type in EVENT_TYPES:
        is_type = pc.fill_null(pc.equal(types, event_type), False).to_numpy(zero_copy_only=False)
        if is_type.any():
            columns.append(np.log1p(np.bincount(element_rows[same & is_type], minlength=n)))
            names.append(f"log_pair_{event_type}s")
    last_position = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last_position, element_rows[same], positions[same])
    seen = last_position >= 0
    last_time = np.where(seen, timestamps[np.where(seen, offsets[:-1] + last_position, 0)] if len(timestamps) else 0, 0)
    columns += [
        np.where(seen, np.log1p(np.maximum(cutoff - last_time, 0.0)), np.log1p(30 * SECONDS_PER_DAY)),
        (~seen).astype(np.float64),
        np.where(seen, np.log1p(lengths - 1 - last_position), np.log1p(lengths)),
        (seen & (last_position == lengths - 1)).astype(np.float64),
    ]
    names += ["log_seconds_since_pair", "pair_never_seen", "log_events_since_pair", "pair_is_last_item"]
    same_category = matches["same_category"]
    if same_category is not None:
        in_category = np.bincount(element_rows[same_category], minlength=n).astype(np.float64)
        columns += [np.log1p(in_category), in_category / np.maximum(lengths, 1)]
        names += ["log_category_events", "category_share"]
    if statistics is not None:
        where = pc.index_in(candidates, value_set=statistics["items"])
        where = pc.fill_null(where, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        known = where >= 0

        def lookup(values: np.ndarray) -> np.ndarray:
            return np.where(known, values[np.maximum(where, 0)] if len(values) else 0.0, 0.0)

        events, purchases = lookup(statistics["events"]), lookup(statistics["purchases"])
        columns += [np.log1p(events), np.log1p(purchases), np.log1p(lookup(statistics["users"])), (purchases + 1) / (events + 50)]
        names += ["log_item_events", "log_item_purchases", "log_item_users", "item_purchase_rate"]
    return np.stack(columns, axis=1).astype(np.float32), names


def task_features(rows: Dataset, statistics: dict[str, np.ndarray | pa.Array] | None = None) -> tuple[np.ndarray, list[str]]:
    """Every tabular feature of a labelled task row: :func:`recency_frequency_features` of the user,
    log seconds since the user's last event (the finer clock short logs need), and, for rows with a
    ``candidate_item_id``, :func:`candidate_features`. Everything is computed from the rows' history
    (events before each row's cutoff) and ``statistics`` (taken at the same cutoff)."""
    user, names = recency_frequency_features(rows)
    table = to_arrow(rows)
    offsets = list_offsets(table.column("timestamps"))
    timestamps = table.column("timestamps").combine_chunks().flatten().to_numpy()
    cutoff = table.column("cutoff").to_numpy().astype(np.float64)
    nonempty = np.diff(offsets) > 0
    last = np.where(nonempty, timestamps[np.maximum(offsets[1:] - 1, 0)] if len(timestamps) else 0, cutoff)
    columns, names = [user, np.log1p(np.maximum(cutoff - last, 0.0))[:, None]], [*names, "log_seconds_since_last"]
    if "candidate_item_id" in table.column_names:
        pair, pair_names = candidate_features(rows, statistics)
        columns.append(pair)
        names += pair_names
    return np.concatenate(columns, axis=1).astype(np.float32), names


__all__ = ["candidate_features", "candidate_matches", "item_statistics", "recency_frequency_features", "task_features"]
