"""Validation histories share the training split's buffers (no copy) and still equal a fresh copy.

A validation cutoff is where training ends (leave-one-out: the validation target follows the last
training event; temporal: ``validation_start`` is the training cutoff), so each validation history
is a whole training row. The split takes those rows as zero-copy slices of the training table
(:func:`seqbert.data.arrow.shared_rows`); these tests check the result against a plain copy.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from seqbert.data.arrow import from_arrow, list_offsets, shared_rows, take_prefixes, to_arrow
from seqbert.data.cleaning import clean_events
from seqbert.data.sequences import build_sequences, list_columns
from seqbert.data.splits import leave_one_out, temporal_split
from seqbert.data.synthetic import SyntheticConfig, generate_events


def _data_address(chunk: pa.Array) -> int:
    """Address of the string data of a list<string> chunk's values (shared by all its slices)."""
    return chunk.values.buffers()[2].address


@pytest.mark.parametrize("seed", range(6))
def test_shared_rows_equals_take(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    offsets = np.concatenate([[0], np.cumsum(rng.integers(0, 5, n))]).astype(np.int32)
    values = pa.array([f"i{k}" for k in range(int(offsets[-1]))])
    table = pa.table({"user": pa.array(np.arange(n)), "items": pa.ListArray.from_arrays(pa.array(offsets), values)})
    for share in (0.0, 0.3, 0.97, 1.0):
        rows = np.flatnonzero(rng.random(n) < share)
        got = shared_rows(table, rows, max_runs=n)
        assert got.equals(table.take(pa.array(rows, pa.int64())))
        if len(rows) and len(rows) < n:
            assert all(_data_address(chunk) == _data_address(values_chunk) for chunk in got.column("items").chunks
                       for values_chunk in table.column("items").chunks)  # fmt: skip


def test_shared_rows_refuses_too_many_runs():
    table = pa.table({"v": pa.array(np.arange(1000))})
    every_other = np.arange(0, 1000, 2)
    assert shared_rows(table, every_other) is None  # 500 runs of one row: a copy is cheaper
    assert shared_rows(table, np.arange(1000)) is table
    assert shared_rows(table, every_other, max_runs=500).equals(table.take(pa.array(every_other)))


@pytest.fixture(scope="module")
def sequences():
    events, _ = clean_events(from_arrow(generate_events(SyntheticConfig(num_users=300, num_items=120, seed=4))))
    return build_sequences(events)


def _splits(sequences, kind: str):
    if kind.startswith("loo"):
        return leave_one_out(sequences, target=kind.split(":")[1], min_history=1)[0]
    times = np.concatenate([t for t in to_arrow(sequences).column("timestamps").to_pylist()])
    validation_start, test_start = (int(q) for q in np.quantile(times, [0.7, 0.85]))
    min_history = int(kind.split(":")[1])
    return temporal_split(
        sequences, validation_start=validation_start, test_start=test_start, min_history=min_history
    )[0]


@pytest.mark.parametrize("kind", ["loo:last_event", "loo:last_purchase", "temporal:1", "temporal:0"])
def test_validation_histories_share_training_rows(sequences, kind):
    splits = _splits(sequences, kind)
    train, validation = to_arrow(splits["train"]), to_arrow(splits["validation"])
    assert validation.num_rows > 0
    # Equal to a copy: each validation history is the training row of the same user.
    train_rows = {user: k for k, user in enumerate(train.column("user_id").to_pylist())}
    history_columns = list_columns(train)
    for k, user in enumerate(validation.column("user_id").to_pylist()):
        row = train_rows.get(user)
        for name in history_columns:
            expected = train.column(name)[row].as_py() if row is not None else []
            assert validation.column(name)[k].as_py() == expected, (kind, user, name)
    if kind != "temporal:0":  # every validation user has training events: shared, not copied
        train_address = _data_address(train.column("item_ids").chunk(0))
        assert all(_data_address(chunk) == train_address for chunk in validation.column("item_ids").chunks)
    # The test split is a separate copy, equal to cutting the sequences afresh.
    test = to_arrow(splits["test"])
    full = to_arrow(sequences)
    rows = np.searchsorted(full.column("user_id").to_numpy(zero_copy_only=False), test.column("user_id").to_numpy(
        zero_copy_only=False))  # fmt: skip
    lengths = np.diff(list_offsets(test.column("item_ids")))
    copy = take_prefixes(full, rows, lengths, list_columns(full))
    assert copy.select(history_columns).equals(test.select(history_columns))
