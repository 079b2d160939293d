"""The integer sort of build_sequences and the prefix cuts of the splits equal the plain versions.

``build_sequences`` sorts on user ranks and packed integer keys, skips sorting for logs already in
(user, time) order and falls back to an Arrow sort when the keys do not fit 64 bits; every path must
give exactly what a stable string sort by (user_id, timestamp, row_index) gives. The splits cut each
list column once (``take_prefixes``); ``prefix_statistics`` adds the held-out events to the train
split's statistics. Each is compared with a straightforward reference on seeded random logs.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from seqbert.data.arrow import from_arrow, take_prefixes, to_arrow
from seqbert.data.sequences import (
    SEQUENCE_COLUMNS,
    build_sequences,
    merge_statistic_pieces,
    prefix_statistic_pieces,
    prefix_statistics,
    sequence_statistics,
)
from seqbert.data.splits import leave_one_out, temporal_split
from seqbert.prepare import PrepareOptions, train_vocabulary, vocabulary_and_statistics

T0 = 1_700_000_000


def random_events(
    seed: int, n: int = 400, *, layout: str = "shuffled", span: int = 5_000, row_index: str = "position"
) -> pa.Table:
    rng = np.random.default_rng(seed)
    users = np.array([str(u) for u in rng.integers(0, 25, n)])  # "10" sorts before "9" as strings
    ts = T0 + rng.integers(0, span, n)
    if layout == "sorted":
        order = np.lexsort((ts, np.array([u.encode() for u in users])))
        users, ts = users[order], ts[order]
    elif layout == "grouped_unsorted_ids":  # contiguous users, time order inside, ids not in order
        order = np.lexsort((ts, users.astype(int)))
        users, ts = users[order], ts[order]
    columns = {
        "user_id": pa.array(users),
        "item_id": pa.array([f"i{k}" for k in rng.integers(0, 30, n)]),
        "event_type": pa.array(rng.choice(["view", "cart", "purchase"], n, p=[0.7, 0.2, 0.1])),
        "timestamp": pa.array(ts, pa.int64()),
        "category": pa.array([f"c{k}" for k in rng.integers(0, 4, n)]),
    }
    if row_index == "position":
        columns["row_index"] = pa.array(np.arange(n, dtype=np.int64))
    elif row_index == "shuffled":
        columns["row_index"] = pa.array(rng.permutation(n).astype(np.int64))
    return pa.table(columns)


def reference_sequences(table: pa.Table, gap: int | None) -> pa.Table:
    keys = [("user_id", "ascending"), ("timestamp", "ascending")]
    if "row_index" in table.column_names:
        keys.append(("row_index", "ascending"))
    table = table.sort_by(keys)
    users = table.column("user_id").to_pylist()
    ts = table.column("timestamp").to_pylist()
    out = {"user_id": [], **{name: [] for name in SEQUENCE_COLUMNS.values() if name != "prices"}, "session_index": []}
    for k, user in enumerate(users):
        if k == 0 or user != users[k - 1]:
            out["user_id"].append(user)
            for name in out:
                if name != "user_id":
                    out[name].append([])
            session = 0
        elif gap is not None and ts[k] - ts[k - 1] > gap:
            session += 1
        for event_column, list_column in SEQUENCE_COLUMNS.items():
            if event_column in table.column_names:
                out[list_column][-1].append(table.column(event_column)[k].as_py())
        out["session_index"][-1].append(session)
    return out


@pytest.mark.parametrize("layout", ["shuffled", "sorted", "grouped_unsorted_ids"])
@pytest.mark.parametrize("row_index", ["position", "shuffled", "none"])
@pytest.mark.parametrize("span", [5_000, 2**61])  # 2**61: packed keys do not fit, Arrow sort fallback
def test_build_sequences_matches_string_sort(layout, row_index, span):
    for seed in range(3):
        table = random_events(seed, layout=layout, span=span, row_index=row_index)
        got = build_sequences(from_arrow(table), session_gap_seconds=60).to_dict()
        expected = reference_sequences(table, 60)
        assert {k: got[k] for k in expected} == expected


def test_take_prefixes_equals_take_then_slice():
    table = to_arrow(build_sequences(from_arrow(random_events(7)), session_gap_seconds=None))
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(table.num_rows, 10, replace=False))
    lengths = np.array([rng.integers(0, len(table.column("item_ids")[int(r)]) + 1) for r in rows])
    got = take_prefixes(table, rows, lengths).to_pylist()
    expected = table.take(pa.array(rows)).to_pylist()
    for row, n in zip(expected, lengths):
        for name, value in row.items():
            if isinstance(value, list):
                row[name] = value[:n]
    assert got == expected


@pytest.mark.parametrize("seed", range(3))
def test_prefix_statistics_equal_separate_statistics(seed):
    sequences = build_sequences(from_arrow(random_events(seed, 600)))
    splits = [
        leave_one_out(sequences)[0],
        leave_one_out(sequences, target="last_purchase")[0],
        temporal_split(sequences, test_start=T0 + 4_000, validation_start=T0 + 3_000)[0],
        temporal_split(sequences, test_start=T0 + 100)[0],  # few users in train
    ]
    for split in splits:
        everything, train = prefix_statistics(sequences, split["train"])
        assert everything == sequence_statistics(sequences)
        assert train == sequence_statistics(split["train"])
        # What prepare does: the vocabulary's item counts in a thread, the statistics awaiting them.
        tokenizer, statistics = vocabulary_and_statistics(sequences, split["train"], PrepareOptions())
        assert statistics == {"all": everything, "train": train}
        assert tokenizer.items == train_vocabulary(split["train"], PrepareOptions())[0].items


@pytest.mark.parametrize("spans", [(50, 7), (2**40, 2**20), (2**40, 2**20, 2**30)])
def test_lsd_order_is_a_stable_multi_key_sort(spans):
    """One packed pass when the keys fit 64 bits, one pass per key (radix style) when they do not."""
    from seqbert.data.sequences import _lsd_order

    rng = np.random.default_rng(1)
    keys = [rng.integers(0, span, 3000) for span in spans]
    keys[0][::7] = keys[0][0]  # ties in the least significant key too
    assert (_lsd_order(keys) == np.lexsort(keys)).all()
    assert _lsd_order([np.array([0, 2**63 - 1, 5]), np.array([1, 0, 0])]) is None  # too wide to pack with positions


@pytest.mark.parametrize("seed", range(3))
def test_statistic_pieces_of_disjoint_users_merge_to_the_whole(seed):
    sequences = build_sequences(from_arrow(random_events(seed, 600)))
    train = leave_one_out(sequences)[0]["train"]
    rows = np.random.default_rng(seed).permutation(sequences.num_rows)
    pieces = []
    for part in np.array_split(rows, 3):  # three disjoint sets of users, each with its train rows
        part_sequences = sequences.select(np.sort(part))
        users = set(part_sequences["user_id"])
        part_train = train.filter(lambda row, users=users: row["user_id"] in users)
        pieces.append(prefix_statistic_pieces(part_sequences, part_train))
    assert merge_statistic_pieces([everything for everything, _ in pieces]) == sequence_statistics(sequences)
    assert merge_statistic_pieces([part for _, part in pieces]) == sequence_statistics(train)
