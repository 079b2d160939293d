"""Hand-made recency / frequency / event-type / item-popularity features of a history (and of a
user-item pair), for the tabular baselines (no torch). Every feature of a labelled row is computed
from the events before that row's cutoff only."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from .arrow import element_positions, from_arrow, list_offsets, to_arrow
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


def item_statistics(sequences: Dataset, cutoff: int, recent_seconds: int = 86_400) -> dict[str, Any]:
    """Catalog statistics from every user's events strictly before ``cutoff`` (nothing later is read).

    Returns ``items`` (distinct item ids seen before the cutoff, an Arrow string array) and, aligned
    with them, ``events`` (event count), ``purchases``, ``users`` (distinct users) and ``recent_events``
    (events in the last ``recent_seconds`` before the cutoff), plus ``previous_events`` (events in the
    ``3 x recent_seconds`` before that). With a ``categories`` column, ``categories`` holds the same
    statistics per category (a dict with the same keys, ``items`` being the category ids).
    """
    table = to_arrow(sequences)
    offsets = list_offsets(table.column("timestamps"))
    rows, _ = element_positions(offsets)
    timestamps = table.column("timestamps").combine_chunks().flatten().to_numpy()
    before = timestamps < cutoff
    types = table.column("event_types").combine_chunks().flatten().filter(pa.array(before))
    purchases = pc.fill_null(pc.equal(types, "purchase"), False).to_numpy(zero_copy_only=False)
    recent = timestamps[before] >= cutoff - recent_seconds
    previous = (timestamps[before] >= cutoff - 4 * recent_seconds) & ~recent

    def statistics(column: str) -> dict[str, Any]:
        values = table.column(column).combine_chunks().flatten().filter(pa.array(before))
        encoded = pc.cast(values, pa.string()).dictionary_encode()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        known = ~np.isnan(codes) if codes.dtype.kind == "f" else np.ones(len(codes), dtype=bool)
        codes = np.nan_to_num(codes, nan=0).astype(np.int64) if codes.dtype.kind == "f" else codes.astype(np.int64)
        size = max(len(encoded.dictionary), 1)
        user_item = np.unique(rows[before][known].astype(np.int64) * size + codes[known])

        def count(mask: np.ndarray) -> np.ndarray:
            return np.bincount(codes[mask & known], minlength=size).astype(np.float64)[: len(encoded.dictionary)]

        everything = np.ones(len(codes), dtype=bool)
        return {
            "items": encoded.dictionary,
            "events": count(everything),
            "purchases": count(purchases),
            "users": np.bincount(user_item % size, minlength=size).astype(np.float64)[: len(encoded.dictionary)],
            "recent_events": count(recent),
            "previous_events": count(previous),
        }

    result = statistics("item_ids")
    if "categories" in table.column_names:
        result["categories"] = statistics("categories")
    return result


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
    same cutoff, see :func:`_lookup_statistics`): log events, log purchases, log distinct users, the smoothed
    purchase rate ``(purchases + 1) / (events + 50)`` and the last-day trend of the candidate before the
    cutoff, and the same five for its category (``catalog_category_*``) when the rows have categories.
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
        item_columns, item_names = _lookup_statistics(candidates, statistics, "item")
        columns += item_columns
        names += item_names
        if "categories" in statistics and "candidate_category" in table.column_names:
            categories = pc.cast(table.column("candidate_category").combine_chunks(), pa.string())
            category_columns, category_names = _lookup_statistics(categories, statistics["categories"], "catalog_category")
            columns += category_columns
            names += category_names
    return np.stack(columns, axis=1).astype(np.float32), names


def _lookup_statistics(keys: pa.Array, statistics: dict[str, Any], prefix: str) -> tuple[list[np.ndarray], list[str]]:
    """Per row, the :func:`item_statistics` of its candidate item (or category): log events, purchases and
    distinct users, the smoothed purchase rate ``(purchases + 1) / (events + 50)`` and the trend
    ``log((last-day events + 1) / (mean daily events of the 3 days before + 1))``; zeros when unseen."""
    where = pc.fill_null(pc.index_in(keys, value_set=statistics["items"]), -1).to_numpy(zero_copy_only=False).astype(np.int64)
    known = where >= 0

    def lookup(values: np.ndarray) -> np.ndarray:
        return np.where(known, values[np.maximum(where, 0)] if len(values) else 0.0, 0.0)

    events, purchases = lookup(statistics["events"]), lookup(statistics["purchases"])
    trend = np.log((lookup(statistics["recent_events"]) + 1) / (lookup(statistics["previous_events"]) / 3 + 1))
    columns = [np.log1p(events), np.log1p(purchases), np.log1p(lookup(statistics["users"])), (purchases + 1) / (events + 50), trend]
    return columns, [f"log_{prefix}_events", f"log_{prefix}_purchases", f"log_{prefix}_users", f"{prefix}_purchase_rate", f"{prefix}_trend"]


WINDOW_DAYS = (1, 3, 7)
"""Windows (days before the cutoff) of the per-user and per-pair count features."""
DAYPARTS = ((0, 6), (6, 12), (12, 18), (18, 24))


def activity_features(rows: Dataset, utc_offset_seconds: int = 0) -> tuple[np.ndarray, list[str]]:
    """Per row (needs ``cutoff``): log event counts per event type over the last 1 / 3 / 7 days, log active
    days (all history and last 7 days), log days since the last purchase (and a never-purchased flag),
    the share of events per part of the local day and the local hour of the last event (sin / cos).
    ``utc_offset_seconds`` turns unix seconds into the shop's local clock (Taobao: ``8 * 3600``)."""
    table = to_arrow(rows)
    offsets = list_offsets(table.column("timestamps"))
    element_rows, _ = element_positions(offsets)
    n = table.num_rows
    lengths = np.diff(offsets)
    timestamps = table.column("timestamps").combine_chunks().flatten().to_numpy().astype(np.int64)
    cutoff = table.column("cutoff").to_numpy().astype(np.int64)
    age = cutoff[element_rows] - timestamps
    types = table.column("event_types").combine_chunks().flatten()
    columns, names = [], []
    for event_type in EVENT_TYPES:
        is_type = pc.fill_null(pc.equal(types, event_type), False).to_numpy(zero_copy_only=False)
        for days in WINDOW_DAYS:
            columns.append(np.log1p(np.bincount(element_rows[is_type & (age < days * SECONDS_PER_DAY)], minlength=n)))
            names.append(f"log_{event_type}s_{days}d")
    local = timestamps + utc_offset_seconds
    day = local // int(SECONDS_PER_DAY)
    distinct = np.unique(element_rows.astype(np.int64) * (1 << 32) + day - (day.min(initial=0)))
    distinct_recent = np.unique((element_rows.astype(np.int64) * (1 << 32) + day - day.min(initial=0))[age < 7 * SECONDS_PER_DAY])
    columns += [np.log1p(np.bincount(distinct >> 32, minlength=n)), np.log1p(np.bincount(distinct_recent >> 32, minlength=n))]
    names += ["log_active_days", "log_active_days_7d"]
    is_purchase = pc.fill_null(pc.equal(types, "purchase"), False).to_numpy(zero_copy_only=False)
    last_purchase = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last_purchase, element_rows[is_purchase], timestamps[is_purchase])
    bought = last_purchase >= 0
    columns += [np.where(bought, np.log1p((cutoff - last_purchase) / SECONDS_PER_DAY), np.log1p(30.0)), (~bought).astype(np.float64)]
    names += ["log_days_since_purchase", "never_purchased"]
    hour = (local % int(SECONDS_PER_DAY)) // 3600
    for start, end in DAYPARTS:
        in_part = (hour >= start) & (hour < end)
        columns.append(np.bincount(element_rows[in_part], minlength=n) / np.maximum(lengths, 1))
        names.append(f"share_events_{start:02d}_{end:02d}h")
    nonempty = lengths > 0
    last_hour = np.where(nonempty, hour[np.maximum(offsets[1:] - 1, 0)] if len(hour) else 0, 0) * (2 * np.pi / 24)
    columns += [np.where(nonempty, np.sin(last_hour), 0.0), np.where(nonempty, np.cos(last_hour), 0.0)]
    names += ["last_event_hour_sin", "last_event_hour_cos"]
    return np.stack(columns, axis=1).astype(np.float32), names


def pair_window_features(rows: Dataset) -> tuple[np.ndarray, list[str]]:
    """User x candidate features beyond :func:`candidate_features`: log events with the candidate item in the
    last 1 / 3 days; with categories, log events per event type in the candidate's category and log seconds
    since the last one (a large constant and a flag when never)."""
    table = to_arrow(rows)
    matches = candidate_matches(table)
    element_rows, same = matches["rows"], matches["same_item"]
    n = table.num_rows
    timestamps = table.column("timestamps").combine_chunks().flatten().to_numpy().astype(np.int64)
    cutoff = table.column("cutoff").to_numpy().astype(np.int64)
    age = cutoff[element_rows] - timestamps
    columns, names = [], []
    for days in WINDOW_DAYS[:2]:
        columns.append(np.log1p(np.bincount(element_rows[same & (age < days * SECONDS_PER_DAY)], minlength=n)))
        names.append(f"log_pair_events_{days}d")
    same_category = matches["same_category"]
    if same_category is not None:
        types = table.column("event_types").combine_chunks().flatten()
        for event_type in ("view", "cart", "fav", "purchase"):
            is_type = pc.fill_null(pc.equal(types, event_type), False).to_numpy(zero_copy_only=False)
            columns.append(np.log1p(np.bincount(element_rows[same_category & is_type], minlength=n)))
            names.append(f"log_category_{event_type}s")
        last = np.full(n, -1, dtype=np.int64)
        np.maximum.at(last, element_rows[same_category], timestamps[same_category])
        seen = last >= 0
        columns += [np.where(seen, np.log1p(np.maximum(cutoff - last, 0)), np.log1p(30 * SECONDS_PER_DAY)), (~seen).astype(np.float64)]
        names += ["log_seconds_since_category", "category_never_seen"]
    if not columns:
        return np.zeros((n, 0), dtype=np.float32), names
    return np.stack(columns, axis=1).astype(np.float32), names


def task_features(
    rows: Dataset, statistics: dict[str, Any] | None = None, *, utc_offset_seconds: int = 0
) -> tuple[np.ndarray, list[str]]:
    """Every tabular feature of a labelled task row: :func:`recency_frequency_features` and
    :func:`activity_features` of the user, log seconds since the user's last event (the finer clock short
    logs need), and, for rows with a ``candidate_item_id``, :func:`candidate_features` and
    :func:`pair_window_features`. Everything is computed from the rows' history (events before each row's
    cutoff) and ``statistics`` (taken at the same cutoff). Counts are ``log1p``-compressed, so a heavy user
    at a later cutoff stays near the training range."""
    user, names = recency_frequency_features(rows)
    table = to_arrow(rows)
    offsets = list_offsets(table.column("timestamps"))
    timestamps = table.column("timestamps").combine_chunks().flatten().to_numpy()
    cutoff = table.column("cutoff").to_numpy().astype(np.float64)
    nonempty = np.diff(offsets) > 0
    last = np.where(nonempty, timestamps[np.maximum(offsets[1:] - 1, 0)] if len(timestamps) else 0, cutoff)
    activity, activity_names = activity_features(rows, utc_offset_seconds)
    columns = [user, np.log1p(np.maximum(cutoff - last, 0.0))[:, None], activity]
    names = [*names, "log_seconds_since_last", *activity_names]
    if "candidate_item_id" in table.column_names:
        for block, block_names in (candidate_features(rows, statistics), pair_window_features(rows)):
            columns.append(block)
            names += block_names
    return np.concatenate(columns, axis=1).astype(np.float32), names


def labelled_features(
    sequences: Dataset, rows: Dataset, *, utc_offset_seconds: int = 0
) -> tuple[np.ndarray, list[str]]:
    """:func:`task_features` of labelled rows that may come from several cutoffs: the catalog statistics of
    each row are those of ``sequences`` strictly before that row's own cutoff (rows keep their order)."""
    if rows.num_rows == 0:
        return np.zeros((0, 0), dtype=np.float32), []
    table = to_arrow(rows)
    cutoffs = table.column("cutoff").to_numpy()
    item_rows = "candidate_item_id" in table.column_names
    blocks, names, order = [], [], []
    for cutoff in np.unique(cutoffs):
        index = np.flatnonzero(cutoffs == cutoff)
        statistics = item_statistics(sequences, int(cutoff)) if item_rows else None
        block, names = task_features(from_arrow(table.take(pa.array(index))), statistics, utc_offset_seconds=utc_offset_seconds)
        blocks.append(block)
        order.append(index)
    features = np.empty((len(cutoffs), blocks[0].shape[1]), dtype=np.float32)
    features[np.concatenate(order)] = np.concatenate(blocks)
    return features, names


__all__ = [
    "activity_features",
    "candidate_features",
    "candidate_matches",
    "item_statistics",
    "labelled_features",
    "pair_window_features",
    "recency_frequency_features",
    "task_features",
]
