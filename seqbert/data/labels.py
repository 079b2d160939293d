"""Fine-tuning labels built from the future, inputs from the past.

Three tasks, defined for any event log in the canonical schema:

- :func:`user_purchase_labels`: will the user purchase anything in the horizon?
- :func:`item_conversion_labels`: will the user purchase this item they viewed / carted / faved?
- :func:`click_candidate_labels`: will the user interact with this candidate item (popularity-sampled
  negatives)?

Every task takes a cutoff time: the model sees only events strictly before it, the label comes
only from ``[cutoff, cutoff + horizon)``. Validation should use an earlier cutoff than test, and a
model pretrained for a task must not have seen events at or after that task's test cutoff.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from .arrow import element_positions, from_arrow, list_offsets, to_arrow
from .splits import history_before


def user_purchase_labels(
    sequences: Dataset, *, cutoff: int, horizon_seconds: int, min_history: int = 1, positive_event: str = "purchase"
) -> Dataset:
    """One row per user with at least ``min_history`` events before ``cutoff``.

    Columns: the history lists (events before ``cutoff``), ``label`` (1 if the user has a
    ``positive_event`` in ``[cutoff, cutoff + horizon_seconds)``, else 0) and ``cutoff``.
    """
    if horizon_seconds <= 0:
        raise ValueError(f"horizon_seconds must be positive, got {horizon_seconds}.")
    table = to_arrow(sequences)
    history, counts = history_before(table, cutoff)
    timestamps = table.column("timestamps").combine_chunks().flatten().to_numpy()
    is_positive = pc.equal(table.column("event_types").combine_chunks().flatten(), positive_event)
    in_window = (timestamps >= cutoff) & (timestamps < cutoff + horizon_seconds)
    positive = in_window & is_positive.to_numpy(zero_copy_only=False)
    rows, _ = element_positions(list_offsets(table.column("timestamps")))
    labels = np.bincount(rows[positive], minlength=table.num_rows) > 0
    keep = pa.array(counts >= min_history)
    history = history.append_column("label", pa.array(labels.astype(np.int64)))
    history = history.append_column("cutoff", pa.array(np.full(table.num_rows, cutoff, dtype=np.int64)))
    return from_arrow(history.filter(keep))


def _flat_events(table: pa.Table) -> dict:
    """Flat per-event arrays of a sequences table: row, timestamp, event type, item code (+ the item
    dictionary), the item codes' count and, when present, the flat categories."""
    offsets = list_offsets(table.column("timestamps"))
    rows, _ = element_positions(offsets)
    items = table.column("item_ids").combine_chunks().flatten().dictionary_encode()
    # Codes in item-id order, so that row order and seeded draws never depend on which items only
    # occur after the cutoff (the relative order of two ids is fixed by the ids alone).
    order = pc.sort_indices(items.dictionary).to_numpy(zero_copy_only=False)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    flat = {
        "rows": rows.astype(np.int64),
        "timestamps": table.column("timestamps").combine_chunks().flatten().to_numpy(),
        "types": table.column("event_types").combine_chunks().flatten(),
        "codes": rank[items.indices.to_numpy(zero_copy_only=False).astype(np.int64)],
        "dictionary": items.dictionary.take(pa.array(order)),
    }
    flat["num_items"] = max(len(items.dictionary), 1)
    if "categories" in table.column_names:
        flat["categories"] = table.column("categories").combine_chunks().flatten()
    return flat


def _is_type(types: pa.Array, event_types: str | tuple[str, ...] | list[str]) -> np.ndarray:
    value_set = pa.array([event_types] if isinstance(event_types, str) else list(event_types), type=types.type)
    return pc.fill_null(pc.is_in(types, value_set=value_set), False).to_numpy(zero_copy_only=False)


def _candidate_rows(history: pa.Table, flat: dict, keys: np.ndarray, labels: np.ndarray, cutoff: int, before: np.ndarray) -> Dataset:
    """One output row per (user row, item code) key: the user's pre-cutoff history, the candidate item
    (and its category, from the latest pre-cutoff event of that item by anyone), ``candidate_events``
    (the candidate's event count before the cutoff, all users), the label and the cutoff."""
    num_items = flat["num_items"]
    rows, codes = keys // num_items, keys % num_items
    table = history.take(pa.array(rows))
    table = table.append_column("candidate_item_id", flat["dictionary"].take(pa.array(codes)))
    item_category = _latest_category(flat, before)
    if item_category is not None:
        where = item_category[codes]
        take = pa.array(np.maximum(where, 0), mask=where < 0)  # null category: item unseen before the cutoff
        table = table.append_column("candidate_category", flat["categories"].take(take))
    popularity = np.bincount(flat["codes"][before], minlength=num_items)
    table = table.append_column("candidate_events", pa.array(popularity[codes].astype(np.int64)))
    table = table.append_column("label", pa.array(labels.astype(np.int64)))
    table = table.append_column("cutoff", pa.array(np.full(len(keys), cutoff, dtype=np.int64)))
    return from_arrow(table)


def _latest_category(flat: dict, before: np.ndarray) -> np.ndarray | None:
    """Per item code: flat index of the latest event (among ``before``) carrying that item, -1 if none."""
    if "categories" not in flat:
        return None
    index = np.flatnonzero(before)
    order = index[np.argsort(flat["timestamps"][index], kind="stable")]
    latest = np.full(flat["num_items"], -1, dtype=np.int64)
    latest[flat["codes"][order]] = order  # later assignments win: the most recent event
    return latest


def item_conversion_labels(
    sequences: Dataset,
    *,
    cutoff: int,
    horizon_seconds: int,
    source_events: tuple[str, ...] = ("view", "cart", "fav"),
    positive_event: str = "purchase",
    min_history: int = 1,
    lookback_seconds: int | None = None,
) -> Dataset:
    """Item conversion: one row per (user, item) the user had a ``source_events`` event with before ``cutoff``
    (and, with ``lookback_seconds``, at or after ``cutoff - lookback_seconds``: "viewed in the last 3 days").

    Inputs come strictly from before the cutoff and the label strictly from the window after it:

    - ``item_ids``, ``event_types``, ``timestamps`` … : the user's events with ``timestamp < cutoff``
      (the same history for every candidate of that user);
    - ``candidate_item_id``: the item (and ``candidate_category`` when the events have categories);
    - ``candidate_events``: the item's event count before the cutoff (all users; its popularity);
    - ``label``: 1 if the user has a ``positive_event`` of that item in ``[cutoff, cutoff + horizon_seconds)``;
    - ``cutoff``.

    Rows are ordered by user (input order), then by item id.
    Users need ``min_history`` events before the cutoff.

    Example:
        >>> from datasets import Dataset
        >>> seqs = Dataset.from_dict({"user_id": ["u"], "item_ids": [["a", "b", "a"]],
        ...     "event_types": [["view", "view", "purchase"]], "timestamps": [[0, 5, 20]]})
        >>> rows = item_conversion_labels(seqs, cutoff=10, horizon_seconds=60)
        >>> rows.to_dict()["candidate_item_id"], rows.to_dict()["label"], rows.to_dict()["item_ids"]
        (['a', 'b'], [1, 0], [['a', 'b'], ['a', 'b']])
    """
    if horizon_seconds <= 0:
        raise ValueError(f"horizon_seconds must be positive, got {horizon_seconds}.")
    table = to_arrow(sequences)
    history, counts = history_before(table, cutoff)
    flat = _flat_events(table)
    before = flat["timestamps"] < cutoff
    in_window = (flat["timestamps"] >= cutoff) & (flat["timestamps"] < cutoff + horizon_seconds)
    keys = flat["rows"] * flat["num_items"] + flat["codes"]
    source = before & _is_type(flat["types"], source_events) & (counts >= min_history)[flat["rows"]]
    if lookback_seconds is not None:
        source &= flat["timestamps"] >= cutoff - lookback_seconds
    pairs = np.unique(keys[source])
    positives = np.unique(keys[in_window & _is_type(flat["types"], positive_event)])
    return _candidate_rows(history, flat, pairs, np.isin(pairs, positives), cutoff, before)


def click_candidate_labels(
    sequences: Dataset,
    *,
    cutoff: int,
    horizon_seconds: int,
    negatives_per_positive: int = 4,
    seed: int = 0,
    positive_events: tuple[str, ...] | None = None,
    seen_items_only: bool = True,
    min_history: int = 1,
    max_rounds: int = 32,
) -> Dataset:
    """Click (candidate) prediction: a user's pre-cutoff history and a candidate item; label 1 if the
    user interacts with the candidate in ``[cutoff, cutoff + horizon_seconds)``.

    - Positives: every distinct item a user with ``min_history`` pre-cutoff events has an event
      with (any type, or ``positive_events``) inside the window. With ``seen_items_only`` (default),
      only items that occur somewhere in the log before the cutoff: negatives are drawn from those,
      so a never-seen positive would be recognisable by that alone.
    - Negatives: ``negatives_per_positive`` per positive of the same user, drawn with probability
      proportional to the item's event count before the cutoff (all users; popularity sampling),
      without replacement per user, never an item the user interacts with in the window. Drawing is
      vectorised with ``numpy.random.default_rng(seed)``: the same input and seed give the same rows.
      After ``max_rounds`` redraws a user may get fewer (only when the catalog is nearly exhausted).
    - Users without a positive in the window get no rows (their GAUC would be undefined anyway).

    Columns: the history lists (events with ``timestamp < cutoff``), ``candidate_item_id``
    (``candidate_category`` when the events have categories), ``candidate_events`` (the candidate's
    event count before the cutoff, all users), ``label``, ``cutoff``. Rows are ordered
    by user, then candidate item id.
    """
    if horizon_seconds <= 0:
        raise ValueError(f"horizon_seconds must be positive, got {horizon_seconds}.")
    if negatives_per_positive < 1:
        raise ValueError(f"negatives_per_positive must be >= 1, got {negatives_per_positive}.")
    table = to_arrow(sequences)
    history, counts = history_before(table, cutoff)
    flat = _flat_events(table)
    num_items = flat["num_items"]
    before = flat["timestamps"] < cutoff
    in_window = (flat["timestamps"] >= cutoff) & (flat["timestamps"] < cutoff + horizon_seconds)
    eligible = (counts >= min_history)[flat["rows"]]
    if positive_events is not None:
        in_window &= _is_type(flat["types"], positive_events)
    keys = flat["rows"] * num_items + flat["codes"]
    popularity = np.bincount(flat["codes"][before], minlength=num_items).astype(np.float64)
    interacted = np.unique(keys[in_window & eligible])
    positives = interacted[popularity[interacted % num_items] > 0] if seen_items_only else interacted
    negatives = np.zeros(0, dtype=np.int64)
    if len(positives) and popularity.sum() > 0:
        users, per_user = np.unique(positives // num_items, return_counts=True)
        wanted = per_user * negatives_per_positive
        cumulative = np.cumsum(popularity) / popularity.sum()
        rng = np.random.default_rng(seed)
        for _ in range(max_rounds):
            got = np.bincount(np.searchsorted(users, negatives // num_items), minlength=len(users))
            missing = wanted - got
            if not missing.any():
                break
            draw_users = np.repeat(users, 2 * missing)  # oversample: some draws are rejected
            codes = np.minimum(np.searchsorted(cumulative, rng.random(len(draw_users)), side="right"), num_items - 1)
            drawn = draw_users * num_items + codes
            drawn = drawn[~np.isin(drawn, interacted) & ~np.isin(drawn, negatives)]
            _, first = np.unique(drawn, return_index=True)
            drawn = drawn[np.sort(first)]  # distinct, in draw order
            owner = np.searchsorted(users, drawn // num_items)
            order = np.argsort(owner, kind="stable")
            rank = np.empty(len(drawn), dtype=np.int64)
            starts = np.searchsorted(owner[order], np.arange(len(users)))
            rank[order] = np.arange(len(drawn)) - starts[owner[order]]
            negatives = np.concatenate([negatives, drawn[rank < missing[owner]]])
    keys = np.concatenate([positives, negatives])
    labels = np.concatenate([np.ones(len(positives), dtype=np.int64), np.zeros(len(negatives), dtype=np.int64)])
    order = np.argsort(keys, kind="stable")
    return _candidate_rows(history, flat, keys[order], labels[order], cutoff, before)


__all__ = ["click_candidate_labels", "item_conversion_labels", "user_purchase_labels"]
