"""Leakage-free splits of user sequences: leave-one-out and global temporal cutoff.

Every split returns a ``DatasetDict`` and a protocol record (plain JSON) describing exactly what
was done, for the prepared-data folder and the model cards. Training rows never contain an
evaluation target; evaluation rows carry the visible history in the same list columns as training
(``item_ids``, ``event_types``, ``timestamps`` …) plus ``target_item_id``, ``target_event_type`` and
``target_timestamp``.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict

from .arrow import contiguous, from_arrow, list_offsets, shared_rows, take_list_elements, take_prefixes, to_arrow
from .sequences import events_before, list_columns

logger = logging.getLogger(__name__)

TARGET_COLUMNS = {"item_ids": "target_item_id", "event_types": "target_event_type", "timestamps": "target_timestamp"}


def history_before(table: pa.Table, cutoff: int) -> tuple[pa.Table, np.ndarray]:
    """Each row's events strictly before ``cutoff``, and how many there are per row."""
    counts = events_before(table, cutoff)
    return take_prefixes(table, np.arange(table.num_rows), counts, list_columns(table)), counts


def _with_targets(
    source: pa.Table,
    rows: np.ndarray,
    history_lengths: np.ndarray,
    flat_index: np.ndarray,
    *,
    train: tuple[pa.Table, np.ndarray, np.ndarray] | None = None,
) -> Dataset:
    """Rows ``rows`` of ``source`` cut to their first ``history_lengths[rows]`` events (the history),
    plus target columns taken from ``source`` at ``flat_index[rows]``.

    ``train`` = (the training split's table, the ``source`` row of each of its rows, their lengths):
    where every history is a whole training row (a validation split: its cutoff is the end of
    training), the histories are zero-copy slices of the training table instead of a copy of the
    events (see :func:`~seqbert.data.arrow.shared_rows`).
    """
    table = None
    if train is not None:
        train_table, train_rows, train_lengths = train
        position = np.minimum(np.searchsorted(train_rows, rows), max(len(train_rows) - 1, 0))
        same_rows = len(train_rows) and np.array_equal(train_rows[position], rows)
        if same_rows and np.array_equal(train_lengths[position], history_lengths[rows]):
            table = shared_rows(train_table, position)
    if table is None:
        table = take_prefixes(source, rows, history_lengths[rows], list_columns(source))
    targets = take_list_elements(source, list(TARGET_COLUMNS), flat_index[rows])
    for list_name, target_name in TARGET_COLUMNS.items():
        table = table.append_column(target_name, targets[list_name])
    return from_arrow(table)


PARAMETER_KEYS = frozenset({"kind", "target", "targets", "min_history", "validation_start", "test_start"})
"""Protocol entries that are parameters (equal in every part of a log), not counts to add up."""


def merge_protocols(protocols: list[dict]) -> dict:
    """The protocol of a log split between users, from the protocols of its parts: counts add up,
    parameters (:data:`PARAMETER_KEYS`) and descriptions must agree."""
    merged: dict = {}
    for protocol in protocols:
        for key, value in protocol.items():
            if key not in merged:
                merged[key] = dict(value) if isinstance(value, dict) else value
            elif isinstance(value, dict):
                merged[key] = merge_protocols([merged[key], value])
            elif isinstance(value, (int, np.integer)) and not isinstance(value, bool) and key not in PARAMETER_KEYS:
                merged[key] += int(value)
            elif merged[key] != value:
                raise RuntimeError(f"parts disagree on protocol entry {key!r}: {merged[key]!r} != {value!r}")
    return merged


LOO_TARGETS = ("last_event", "last_purchase")
"""Leave-one-out target modes of :func:`leave_one_out`."""

PURCHASE = "purchase"


def leave_one_out(
    sequences: Dataset, *, min_history: int = 1, target: str = "last_event"
) -> tuple[DatasetDict, dict]:
    """Hold out each user's last event (or last purchase) for test and the one before for validation.

    Every split is a prefix of the user's time-ordered sequence: training ⊆ validation history ⊆
    test history, and each evaluation target is the event right after its history. No evaluation
    target is ever in the training split.

    ``target="last_event"`` (BERT4Rec): test target = the last event (any type), validation target =
    the second-to-last, training = everything before the validation target. Users with fewer than
    ``min_history + 2`` events are kept whole in training and not evaluated.

    ``target="last_purchase"``: test target = the user's last ``purchase`` event, history =
    everything strictly before it (in sequence order, so events of the same second logged before
    it are history). **Events after the last purchase are in no split** for an evaluated user: they
    happened after the moment being predicted. Validation target = the user's previous purchase
    (so validation measures the same task as test: what will the user buy next), history =
    everything strictly before it; training = everything before the validation target, or before
    the test target for users with a single purchase (those get a test row but no validation row,
    so the validation split is smaller than the test split). A row needs ``min_history`` history
    events; users without a purchase, or whose last purchase has too little history, are kept
    whole in training and not evaluated.

    The protocol record holds the parameters, the users and rows per split and the events each
    split holds.
    """
    if target not in LOO_TARGETS:
        raise ValueError(f"Unknown leave-one-out target {target!r}; use one of {', '.join(LOO_TARGETS)}.")
    if min_history < 0:
        raise ValueError(f"min_history must be >= 0, got {min_history}.")
    table = to_arrow(sequences)
    columns = list_columns(table)
    offsets = list_offsets(table.column("item_ids"))
    lengths = np.diff(offsets)
    if target == "last_event":
        validated = tested = lengths >= min_history + 2
        test_position = np.where(tested, lengths - 1, lengths)
        validation_position = np.where(validated, lengths - 2, lengths)
        description = "validation = second-to-last event, test = last event of each user (any event type)"
    else:
        test_position, validation_position, purchases = _last_two_purchases(table, offsets)
        users_without_purchase = int(np.count_nonzero(purchases == 0))
        tested = (purchases >= 1) & (test_position >= min_history)
        validated = tested & (purchases >= 2) & (validation_position >= min_history)
        test_position = np.where(tested, test_position, lengths)
        validation_position = np.where(validated, validation_position, lengths)
        description = (
            "test = each user's last purchase, validation = the purchase before it (users with one purchase: "
            "test only); histories = every event strictly before the target; events after the last purchase "
            "are in no split"
        )
    train_end = np.where(validated, validation_position, test_position)  # == lengths when not evaluated
    test_rows, validation_rows = np.flatnonzero(tested), np.flatnonzero(validated)
    # Each split is a prefix of every selected row: select the rows and cut each flat list column once.
    # A validation history ends where training does: it shares the training rows' events.
    all_rows = np.arange(table.num_rows)
    train = take_prefixes(table, all_rows, train_end, columns)
    splits = DatasetDict(
        train=from_arrow(train),
        validation=_with_targets(
            table, validation_rows, validation_position, offsets[:-1] + validation_position,
            train=(train, all_rows, train_end),
        ),
        test=_with_targets(table, test_rows, test_position, offsets[:-1] + test_position),
    )  # fmt: skip
    held_out = int(np.where(tested, lengths - test_position - 1, 0).sum())
    protocol = {
        "kind": "leave_one_out",
        "target": target,
        "min_history": min_history,
        "targets": description,
        "users": int(table.num_rows),
        "users_evaluated": int(len(test_rows)),
        "users_validated": int(len(validation_rows)),
        "users_train_only": int(table.num_rows - len(test_rows)),
        "rows": {name: int(split.num_rows) for name, split in splits.items()},
        "events": {
            "train": int(train_end.sum()),
            "validation_history": int(validation_position[validation_rows].sum()),
            "test_history": int(test_position[test_rows].sum()),
            "after_test_target_excluded": held_out,
        },
    }
    protocol["train_events"] = protocol["events"]["train"]
    if target == "last_purchase":
        protocol["users_without_purchase"] = users_without_purchase
        if len(test_rows) and not len(validation_rows):
            logger.warning(
                "leave_one_out(target='last_purchase'): no user has two purchases with enough history, so the "
                "validation split is empty (training that validates on it needs another protocol)."
            )
    return splits, protocol


def _last_two_purchases(table: pa.Table, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: position of the last purchase, of the one before it (-1 where none) and the purchase count."""
    num_rows = len(offsets) - 1
    types = contiguous(table.column("event_types")).flatten()
    flat = np.flatnonzero(pc.fill_null(pc.equal(types, PURCHASE), False).to_numpy(zero_copy_only=False))
    owner = np.searchsorted(offsets, flat, side="right") - 1  # the row of each purchase (empty rows skipped)
    position = flat - offsets[owner]  # of each purchase within its row
    counts = np.bincount(owner, minlength=num_rows)
    last = np.full(num_rows, -1, dtype=np.int64)
    previous = np.full(num_rows, -1, dtype=np.int64)
    if len(flat):
        is_last = np.append(owner[1:] != owner[:-1], True)  # flat indices are sorted, rows grouped
        last_k = np.flatnonzero(is_last)
        last[owner[last_k]] = position[last_k]
        with_previous = last_k[counts[owner[last_k]] >= 2]
        previous[owner[with_previous]] = position[with_previous - 1]
    return last, previous, counts


def temporal_split(
    sequences: Dataset, *, test_start: int, validation_start: int | None = None, min_history: int = 1
) -> tuple[DatasetDict, dict]:
    """Global time cutoffs: training sees only events before the first cutoff.

    Validation (when ``validation_start`` is given): history = events before ``validation_start``,
    target = the user's first event in ``[validation_start, test_start)``. Test: history = events
    before ``test_start``, target = the first event at or after ``test_start``. Users need
    ``min_history`` events of history to be evaluated.
    """
    if validation_start is not None and validation_start >= test_start:
        raise ValueError(f"validation_start ({validation_start}) must be before test_start ({test_start}).")
    table = to_arrow(sequences)
    offsets = list_offsets(table.column("timestamps"))
    timestamps = contiguous(table.column("timestamps")).flatten().to_numpy()
    columns = list_columns(table)
    train_end = validation_start if validation_start is not None else test_start
    train_counts = events_before(table, train_end)
    train_rows = np.flatnonzero(train_counts > 0)

    train = take_prefixes(table, train_rows, train_counts[train_rows], columns)
    splits = {"train": from_arrow(train)}
    windows = [("test", test_start, None)]
    if validation_start is not None:
        windows.insert(0, ("validation", validation_start, test_start))
    for name, start, end in windows:
        counts = events_before(table, start)
        first_after = offsets[:-1] + counts  # flat index of the first event at/after `start`
        has_target = first_after < offsets[1:]
        target_time = timestamps[np.minimum(first_after, len(timestamps) - 1)]
        if end is not None:
            has_target &= target_time < end
        rows = np.flatnonzero(has_target & (counts >= min_history))
        shared = (train, train_rows, train_counts[train_rows]) if start == train_end else None
        splits[name] = _with_targets(table, rows, counts, first_after, train=shared)
    protocol = {
        "kind": "temporal",
        "validation_start": validation_start,
        "test_start": test_start,
        "min_history": min_history,
        "targets": "first event of each user at or after the cutoff (validation: before test_start)",
        "users": int(table.num_rows),
        "rows": {name: int(split.num_rows) for name, split in splits.items()},
    }
    return DatasetDict(splits), protocol


__all__ = [
    "LOO_TARGETS",
    "PARAMETER_KEYS",
    "TARGET_COLUMNS",
    "history_before",
    "leave_one_out",
    "list_columns",
    "merge_protocols",
    "temporal_split",
]
