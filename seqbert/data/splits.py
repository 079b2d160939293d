"""Leakage-free splits of user sequences: leave-one-out and global temporal cutoff.

Every split returns a ``DatasetDict`` and a protocol record (plain JSON) describing exactly what
was done, for the prepared-data folder and the model cards. Training rows never contain an
evaluation target; evaluation rows carry the visible history in the same list columns as training
(``item_ids``, ``event_types``, ``timestamps`` …) plus ``target_item_id``, ``target_event_type`` and
``target_timestamp``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from datasets import Dataset, DatasetDict

from .arrow import element_positions, filter_list_elements, from_arrow, list_offsets, take_list_elements, to_arrow

TARGET_COLUMNS = {"item_ids": "target_item_id", "event_types": "target_event_type", "timestamps": "target_timestamp"}


def list_columns(table: pa.Table) -> list[str]:
    """The per-event list columns of a sequences table."""
    return [name for name in table.column_names if pa.types.is_list(table.schema.field(name).type)]


def history_before(table: pa.Table, cutoff: int) -> tuple[pa.Table, np.ndarray]:
    """Each row's events strictly before ``cutoff``, and how many there are per row."""
    timestamps = table.column("timestamps").combine_chunks().flatten().to_numpy()
    keep = timestamps < cutoff
    offsets = list_offsets(table.column("timestamps"))
    rows, _ = element_positions(offsets)
    counts = np.bincount(rows[keep], minlength=table.num_rows)
    return filter_list_elements(table, list_columns(table), keep), counts


def _with_targets(history: pa.Table, source: pa.Table, flat_index: np.ndarray, rows: np.ndarray) -> Dataset:
    """Rows ``rows`` of ``history`` plus target columns taken from ``source`` at ``flat_index``."""
    table = history.take(pa.array(rows))
    targets = take_list_elements(source, list(TARGET_COLUMNS), flat_index[rows])
    for list_name, target_name in TARGET_COLUMNS.items():
        table = table.append_column(target_name, targets[list_name])
    return from_arrow(table)


def leave_one_out(sequences: Dataset, *, min_history: int = 1) -> tuple[DatasetDict, dict]:
    """Last event → test target, second-to-last → validation target, the rest → training.

    Users with fewer than ``min_history + 2`` events are kept whole in training and not evaluated
    (counted in the protocol). The test history includes the validation target, as in BERT4Rec.
    """
    table = to_arrow(sequences)
    columns = list_columns(table)
    offsets = list_offsets(table.column("item_ids"))
    lengths = np.diff(offsets)
    rows, positions = element_positions(offsets)
    evaluated = lengths >= min_history + 2
    drop_last = np.where(evaluated, 2, 0)

    train = filter_list_elements(table, columns, positions < (lengths - drop_last)[rows])
    validation_history = filter_list_elements(table, columns, positions < (lengths - 2)[rows])
    test_history = filter_list_elements(table, columns, positions < (lengths - 1)[rows])
    eval_rows = np.flatnonzero(evaluated)
    splits = DatasetDict(
        train=from_arrow(train),
        validation=_with_targets(validation_history, table, offsets[1:] - 2, eval_rows),
        test=_with_targets(test_history, table, offsets[1:] - 1, eval_rows),
    )
    protocol = {
        "kind": "leave_one_out",
        "min_history": min_history,
        "targets": "validation = second-to-last event, test = last event of each user (any event type)",
        "users": int(table.num_rows),
        "users_evaluated": int(len(eval_rows)),
        "users_train_only": int(table.num_rows - len(eval_rows)),
        "rows": {name: int(split.num_rows) for name, split in splits.items()},
        "train_events": int(len(train.column("item_ids").combine_chunks().flatten())),
    }
    return splits, protocol


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
    timestamps = table.column("timestamps").combine_chunks().flatten().to_numpy()
    train_end = validation_start if validation_start is not None else test_start
    train, train_counts = history_before(table, train_end)
    train = train.filter(pa.array(train_counts > 0))

    splits = {"train": from_arrow(train)}
    windows = [("test", test_start, None)]
    if validation_start is not None:
        windows.insert(0, ("validation", validation_start, test_start))
    for name, start, end in windows:
        history, counts = history_before(table, start)
        first_after = offsets[:-1] + counts  # flat index of the first event at/after `start`
        has_target = first_after < offsets[1:]
        target_time = timestamps[np.minimum(first_after, len(timestamps) - 1)]
        if end is not None:
            has_target &= target_time < end
        rows = np.flatnonzero(has_target & (counts >= min_history))
        splits[name] = _with_targets(history, table, first_after, rows)
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


__all__ = ["TARGET_COLUMNS", "history_before", "leave_one_out", "list_columns", "temporal_split"]
