"""Tests for sequences, splits, labels and features: hand cases plus leakage property tests.

Inputs are built with ``seqbert.data.arrow.from_arrow(pyarrow.table(...))`` in the canonical event
schema (user_id, item_id, event_type: str; timestamp, row_index: int64).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqbert.data.arrow import from_arrow
from seqbert.data.features import recency_frequency_features
from seqbert.data.labels import user_purchase_labels
from seqbert.data.schema import EVENT_TYPES
from seqbert.data.sequences import DEFAULT_SESSION_GAP_SECONDS, build_sequences, sequence_statistics
from seqbert.data.splits import leave_one_out, temporal_split

DAY = 86_400.0


def events_dataset(rows, *, row_index=None, extra=None):
    """rows: (user_id, item_id, event_type, timestamp); row_index defaults to the row position."""
    columns = {
        "user_id": pa.array([r[0] for r in rows], pa.string()),
        "item_id": pa.array([r[1] for r in rows], pa.string()),
        "event_type": pa.array([r[2] for r in rows], pa.string()),
        "timestamp": pa.array([r[3] for r in rows], pa.int64()),
    }
    if row_index is not False:
        columns["row_index"] = pa.array(row_index if row_index is not None else range(len(rows)), pa.int64())
    for name, values in (extra or {}).items():
        columns[name] = pa.array(values, pa.string())
    return from_arrow(pa.table(columns))


def by_user(dataset):
    return {row["user_id"]: row for row in dataset.to_list()}


# ---------------------------------------------------------------------------------------------
# build_sequences
# ---------------------------------------------------------------------------------------------


def test_build_sequences_stable_sort_with_ties():
    rows = [
        ("u2", "x", "view", 7),
        ("u1", "c", "cart", 100),  # row_index 5: after "a" (row_index 0) although earlier in the file
        ("u1", "b", "click", 50),
        ("u1", "a", "view", 100),
        ("u10", "y", "view", 1),
        ("u1", "d", "purchase", 100),
    ]
    sequences = build_sequences(events_dataset(rows, row_index=[3, 5, 1, 0, 4, 2]), session_gap_seconds=None)
    assert sequences.column_names[:4] == ["user_id", "item_ids", "event_types", "timestamps"]
    assert sequences["user_id"] == ["u1", "u10", "u2"]  # users ordered by id (string order)
    u1 = by_user(sequences)["u1"]
    assert u1["item_ids"] == ["b", "a", "d", "c"]
    assert u1["event_types"] == ["click", "view", "purchase", "cart"]
    assert u1["timestamps"] == [50, 100, 100, 100]
    assert u1["session_index"] == [0, 0, 0, 0]
    assert by_user(sequences)["u2"]["item_ids"] == ["x"]


def test_build_sequences_without_row_index_keeps_file_order_on_ties():
    rows = [("u1", "c", "view", 5), ("u1", "a", "view", 5), ("u1", "b", "view", 1), ("u1", "z", "view", 5)]
    sequences = build_sequences(events_dataset(rows, row_index=False), session_gap_seconds=None)
    assert sequences[0]["item_ids"] == ["b", "c", "a", "z"]


def test_sessionize_by_gap():
    gap = DEFAULT_SESSION_GAP_SECONDS
    times = [0, gap, 2 * gap + 1, 2 * gap + 2, 10 * gap]  # gaps: == gap (same), gap + 1 (new), 1, big (new)
    rows = [("u1", f"i{k}", "view", t) for k, t in enumerate(times)] + [("u2", "j", "view", 3 * gap)]
    sequences = by_user(build_sequences(events_dataset(rows)))
    assert sequences["u1"]["session_index"] == [0, 0, 1, 1, 2]
    assert sequences["u2"]["session_index"] == [0]  # numbering restarts per user
    custom = by_user(build_sequences(events_dataset(rows), session_gap_seconds=10))
    assert custom["u1"]["session_index"] == [0, 1, 2, 2, 3]
    single = by_user(build_sequences(events_dataset(rows), session_gap_seconds=None))
    assert single["u1"]["session_index"] == [0] * 5


def test_sessionize_by_session_id():
    rows = [
        ("u1", "a", "view", 0),
        ("u1", "b", "view", 10_000),  # long gap but same session id: same session
        ("u1", "c", "view", 10_001),
        ("u1", "d", "view", 10_002),
        ("u2", "e", "view", 1),
        ("u2", "f", "view", 2),
    ]
    sessions = ["s1", "s1", "s2", "s1", "s1", "s1"]  # u2 reuses the name "s1": still its own session 0
    sequences = by_user(build_sequences(events_dataset(rows, extra={"session_id": sessions})))
    assert sequences["u1"]["session_index"] == [0, 0, 1, 2]
    assert sequences["u2"]["session_index"] == [0, 0]


def test_build_sequences_carries_optional_columns_and_rejects_empty():
    rows = [("u1", "b", "view", 2), ("u1", "a", "cart", 1)]
    table = pa.table(
        {
            "user_id": ["u1", "u1"],
            "item_id": ["b", "a"],
            "event_type": ["view", "cart"],
            "timestamp": pa.array([2, 1], pa.int64()),
            "row_index": pa.array([0, 1], pa.int64()),
            "category": ["cb", "ca"],
            "price": pa.array([2.5, 1.5]),
        }
    )
    row = build_sequences(from_arrow(table))[0]
    assert row["categories"] == ["ca", "cb"] and row["prices"] == [1.5, 2.5]
    empty = events_dataset(rows).select([])
    with pytest.raises(ValueError):
        build_sequences(empty)


def test_sequence_statistics():
    rows = [("u1", "a", "view", 1), ("u1", "b", "cart", 2), ("u1", "a", "view", 3), ("u2", "c", "view", 1)]
    stats = sequence_statistics(build_sequences(events_dataset(rows)))
    assert stats["users"] == 2 and stats["items"] == 3 and stats["events"] == 4
    assert stats["events_per_type"] == {"cart": 1, "view": 3}
    assert stats["sequence_length"]["p100"] == 3.0


# ---------------------------------------------------------------------------------------------
# Splits: hand cases
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def hand_sequences():
    rows = (
        [("u1", item, "view", t) for item, t in zip("ABCDEFG", [1, 2, 3, 4, 5, 9, 12])]
        + [("u2", "X", "click", 3), ("u2", "Y", "purchase", 8)]
        + [("u3", item, "cart", t) for item, t in zip("PQR", [10, 20, 30])]
    )
    return build_sequences(events_dataset(rows), session_gap_seconds=None)


def test_leave_one_out_hand_case(hand_sequences):
    splits, protocol = leave_one_out(hand_sequences)
    assert list(splits) == ["train", "validation", "test"]
    train = by_user(splits["train"])
    assert train["u1"]["item_ids"] == list("ABCDE")
    assert train["u2"]["item_ids"] == ["X", "Y"]  # 2 events < min_history + 2: kept whole, not evaluated
    assert train["u3"]["item_ids"] == ["P"]
    validation, test = by_user(splits["validation"]), by_user(splits["test"])
    assert set(validation) == set(test) == {"u1", "u3"}
    assert validation["u1"]["item_ids"] == list("ABCDE") and validation["u1"]["target_item_id"] == "F"
    assert validation["u1"]["target_timestamp"] == 9 and validation["u1"]["target_event_type"] == "view"
    assert test["u1"]["item_ids"] == list("ABCDEF") and test["u1"]["target_item_id"] == "G"
    assert test["u1"]["timestamps"] == [1, 2, 3, 4, 5, 9] and test["u1"]["target_timestamp"] == 12
    assert validation["u3"]["item_ids"] == ["P"] and validation["u3"]["target_item_id"] == "Q"
    assert test["u3"]["item_ids"] == ["P", "Q"] and test["u3"]["target_item_id"] == "R"
    assert test["u3"]["target_event_type"] == "cart"
    assert protocol["kind"] == "leave_one_out"
    assert protocol["users"] == 3 and protocol["users_evaluated"] == 2 and protocol["users_train_only"] == 1
    assert protocol["rows"] == {"train": 3, "validation": 2, "test": 2}
    assert protocol["train_events"] == 5 + 2 + 1


def test_leave_one_out_min_history(hand_sequences):
    splits, protocol = leave_one_out(hand_sequences, min_history=2)
    assert by_user(splits["train"])["u3"]["item_ids"] == ["P", "Q", "R"]
    assert splits["test"]["user_id"] == ["u1"]
    assert protocol["users_evaluated"] == 1 and protocol["train_events"] == 5 + 2 + 3


def test_temporal_split_hand_case(hand_sequences):
    splits, protocol = temporal_split(hand_sequences, validation_start=4, test_start=9)
    assert list(splits) == ["train", "validation", "test"]
    train = by_user(splits["train"])
    assert set(train) == {"u1", "u2"}  # u3 has no event before 4: no training row
    assert train["u1"]["item_ids"] == ["A", "B", "C"] and train["u2"]["item_ids"] == ["X"]
    validation = by_user(splits["validation"])
    assert set(validation) == {"u1", "u2"}  # u3: no history before 4
    assert validation["u1"]["item_ids"] == ["A", "B", "C"] and validation["u1"]["target_item_id"] == "D"
    assert validation["u2"]["item_ids"] == ["X"] and validation["u2"]["target_item_id"] == "Y"
    assert validation["u2"]["target_event_type"] == "purchase" and validation["u2"]["target_timestamp"] == 8
    test = by_user(splits["test"])
    assert set(test) == {"u1"}  # u2 has no event at/after 9; u3 no history before 9
    assert test["u1"]["item_ids"] == list("ABCDE") and test["u1"]["target_item_id"] == "F"  # event *at* the cutoff
    assert test["u1"]["target_timestamp"] == 9
    assert protocol["kind"] == "temporal" and protocol["validation_start"] == 4 and protocol["test_start"] == 9
    assert protocol["rows"] == {"train": 2, "validation": 2, "test": 1}
    assert protocol["users"] == 3


def test_temporal_split_without_validation_and_min_history(hand_sequences):
    splits, _ = temporal_split(hand_sequences, test_start=20, min_history=0)
    assert list(splits) == ["train", "test"]
    assert by_user(splits["train"])["u1"]["item_ids"] == list("ABCDEFG")
    assert by_user(splits["train"])["u3"]["item_ids"] == ["P"]
    test = by_user(splits["test"])
    assert set(test) == {"u3"} and test["u3"]["item_ids"] == ["P"] and test["u3"]["target_item_id"] == "Q"
    splits, _ = temporal_split(hand_sequences, test_start=10, min_history=0)
    test = by_user(splits["test"])
    assert test["u3"]["item_ids"] == [] and test["u3"]["target_item_id"] == "P"  # empty history allowed at 0
    assert test["u1"]["target_item_id"] == "G"
    splits, _ = temporal_split(hand_sequences, test_start=10, min_history=6)
    assert splits["test"]["user_id"] == ["u1"]


def test_temporal_split_validates_cutoffs(hand_sequences):
    with pytest.raises(ValueError):
        temporal_split(hand_sequences, validation_start=9, test_start=9)


# ---------------------------------------------------------------------------------------------
# Labels and features
# ---------------------------------------------------------------------------------------------


def test_user_purchase_labels_hand_case():
    cutoff, horizon = 1000, 100
    rows = [
        ("u1", "a", "view", 900),
        ("u1", "a", "purchase", 1000),  # at the cutoff: inside the window -> 1
        ("u2", "b", "view", 999),
        ("u2", "b", "purchase", 1100),  # at cutoff + horizon: outside -> 0
        ("u3", "c", "purchase", 500),  # a past purchase never labels
        ("u3", "c", "view", 1050),
        ("u4", "d", "purchase", 1010),  # no history before the cutoff: dropped
        ("u5", "e", "view", 10),
        ("u5", "e", "cart", 1099),  # not a purchase -> 0
        ("u6", "f", "view", 1),
        ("u6", "f", "purchase", 1099),
    ]
    sequences = build_sequences(events_dataset(rows), session_gap_seconds=None)
    labelled = user_purchase_labels(sequences, cutoff=cutoff, horizon_seconds=horizon)
    rows_by_user = by_user(labelled)
    assert labelled["user_id"] == ["u1", "u2", "u3", "u5", "u6"]
    assert {u: r["label"] for u, r in rows_by_user.items()} == {"u1": 1, "u2": 0, "u3": 0, "u5": 0, "u6": 1}
    assert rows_by_user["u1"]["timestamps"] == [900] and rows_by_user["u1"]["event_types"] == ["view"]
    assert rows_by_user["u3"]["event_types"] == ["purchase"] and rows_by_user["u3"]["timestamps"] == [500]
    assert all(r["cutoff"] == cutoff for r in rows_by_user.values())
    assert all(t < cutoff for r in rows_by_user.values() for t in r["timestamps"])

    custom = by_user(user_purchase_labels(sequences, cutoff=cutoff, horizon_seconds=horizon, positive_event="cart"))
    assert custom["u5"]["label"] == 1 and custom["u1"]["label"] == 0
    assert "u4" in by_user(user_purchase_labels(sequences, cutoff=cutoff, horizon_seconds=horizon, min_history=0))
    with pytest.raises(ValueError):
        user_purchase_labels(sequences, cutoff=cutoff, horizon_seconds=0)


def test_recency_frequency_features_hand_case():
    rows = [
        ("u1", "a", "view", 0),
        ("u1", "b", "cart", 100),
        ("u1", "a", "view", 10_000),  # new session (gap > 30 min)
        ("u1", "a", "purchase", 86_400),  # at the cutoff: not in the history
        ("u2", "z", "view", 50_000),
    ]
    sequences = build_sequences(events_dataset(rows))
    histories = user_purchase_labels(sequences, cutoff=86_400, horizon_seconds=10, min_history=0)
    features, names = recency_frequency_features(histories)
    assert names == [
        "log_events",
        *[f"log_{t}s" for t in EVENT_TYPES],
        "log_days_since_last",
        "log_days_since_first",
        "log_distinct_items",
        "log_sessions",
    ]
    assert features.shape == (2, len(names)) and features.dtype == np.float32
    u1 = dict(zip(names, features[0].tolist()))
    assert u1["log_events"] == pytest.approx(math.log1p(3))
    assert u1["log_views"] == pytest.approx(math.log1p(2))
    assert u1["log_carts"] == pytest.approx(math.log1p(1))
    assert u1["log_purchases"] == 0.0 and u1["log_clicks"] == 0.0
    assert u1["log_days_since_last"] == pytest.approx(math.log1p((86_400 - 10_000) / DAY))
    assert u1["log_days_since_first"] == pytest.approx(math.log1p(1.0))
    assert u1["log_distinct_items"] == pytest.approx(math.log1p(2))
    assert u1["log_sessions"] == pytest.approx(math.log1p(2))
    u2 = dict(zip(names, features[1].tolist()))
    assert u2["log_events"] == pytest.approx(math.log1p(1))
    assert u2["log_days_since_last"] == pytest.approx(math.log1p(36_400 / DAY))
    assert u2["log_distinct_items"] == pytest.approx(math.log1p(1)) and u2["log_sessions"] == pytest.approx(
        math.log1p(1)
    )


def test_recency_frequency_features_empty_history():
    rows = [("u1", "a", "view", 100), ("u2", "b", "view", 1)]
    histories = user_purchase_labels(
        build_sequences(events_dataset(rows)), cutoff=50, horizon_seconds=10, min_history=0
    )
    features, names = recency_frequency_features(histories)
    assert histories["user_id"] == ["u1", "u2"]
    assert features[0].tolist() == [0.0] * len(names)  # nothing before the cutoff
    assert features[1, names.index("log_events")] == pytest.approx(math.log1p(1))


# ---------------------------------------------------------------------------------------------
# Property tests: ordering, sessions and leakage on random logs
# ---------------------------------------------------------------------------------------------

USERS = ["u0", "u1", "u10", "u2", "ü3", "u 5"]
ITEMS = ["a", "b", "c", "007", "7"]

event_strategy = st.tuples(
    st.sampled_from(USERS), st.sampled_from(ITEMS), st.sampled_from(EVENT_TYPES), st.integers(0, 60)
)


@st.composite
def random_logs(draw):
    """Random small logs with many timestamp ties; row_index is a random permutation and every
    event carries a unique tag (in the ``category`` column) so it can be followed through splits."""
    rows = draw(st.lists(event_strategy, min_size=1, max_size=50))
    row_index = draw(st.permutations(list(range(len(rows)))))
    return rows, row_index


def log_dataset(rows, row_index):
    table = pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.string()),
            "item_id": pa.array([r[1] for r in rows], pa.string()),
            "event_type": pa.array([r[2] for r in rows], pa.string()),
            "timestamp": pa.array([r[3] for r in rows], pa.int64()),
            "row_index": pa.array(row_index, pa.int64()),
            "category": pa.array([f"e{k}" for k in range(len(rows))], pa.string()),
        }
    )
    return from_arrow(table)


def reference_sequences(rows, row_index):
    """Pure-Python reference: per user, events sorted by (timestamp, row_index); events are (tag, item, type, t)."""
    users: dict[str, list] = {}
    for k in sorted(range(len(rows)), key=lambda k: (rows[k][3], row_index[k])):
        user, item, etype, t = rows[k]
        users.setdefault(user, []).append((f"e{k}", item, etype, t))
    return dict(sorted(users.items()))


def events_of(row):
    return list(zip(row["categories"], row["item_ids"], row["event_types"], row["timestamps"]))


PROPERTY_SETTINGS = settings(
    max_examples=50, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(random_logs(), st.sampled_from([None, 0, 5, 20]))
def test_property_build_sequences(log, gap):
    rows, row_index = log
    sequences = build_sequences(log_dataset(rows, row_index), session_gap_seconds=gap)
    reference = reference_sequences(rows, row_index)
    assert sequences["user_id"] == list(reference)
    for row in sequences.to_list():
        expected = reference[row["user_id"]]
        assert events_of(row) == expected
        times = [e[3] for e in expected]
        sessions = [0]
        for before, after in itertools.pairwise(times):
            sessions.append(sessions[-1] + int(gap is not None and after - before > gap))
        assert row["session_index"] == sessions


@PROPERTY_SETTINGS
@given(random_logs(), st.integers(0, 3))
def test_property_leave_one_out_no_leakage(log, min_history):
    rows, row_index = log
    sequences = build_sequences(log_dataset(rows, row_index), session_gap_seconds=None)
    reference = reference_sequences(rows, row_index)
    splits, protocol = leave_one_out(sequences, min_history=min_history)

    train_tags = {tag for row in splits["train"].to_list() for tag in row["categories"]}
    train = by_user(splits["train"])
    assert set(train) == set(reference)  # every user keeps a training row
    target_tags = set()
    for name, drop in (("validation", 2), ("test", 1)):
        for row in splits[name].to_list():
            full = reference[row["user_id"]]
            history = events_of(row)
            # The history is a prefix of the user's sequence and the target is the next event.
            assert len(full) >= min_history + 2
            assert history == full[: len(full) - drop]
            target = full[len(full) - drop]
            assert (row["target_item_id"], row["target_event_type"], row["target_timestamp"]) == target[1:]
            assert all(event[3] <= target[3] for event in history)  # nothing after the target
            assert target[0] not in {event[0] for event in history}
            target_tags.add(target[0])
    # No evaluation target ever appears in training.
    assert not target_tags & train_tags
    for user, full in reference.items():
        evaluated = len(full) >= min_history + 2
        assert events_of(train[user]) == (full[:-2] if evaluated else full)
    evaluated_users = sum(len(full) >= min_history + 2 for full in reference.values())
    assert splits["validation"].num_rows == splits["test"].num_rows == evaluated_users
    assert protocol["users_evaluated"] == evaluated_users
    assert protocol["users_train_only"] == len(reference) - evaluated_users
    assert protocol["train_events"] == len(train_tags) == len(rows) - 2 * evaluated_users


@PROPERTY_SETTINGS
@given(random_logs(), st.integers(0, 60), st.integers(1, 30), st.booleans(), st.integers(0, 2))
def test_property_temporal_split_no_leakage(log, validation_start, width, with_validation, min_history):
    rows, row_index = log
    test_start = validation_start + width
    sequences = build_sequences(log_dataset(rows, row_index), session_gap_seconds=None)
    reference = reference_sequences(rows, row_index)
    kwargs = {"validation_start": validation_start} if with_validation else {}
    splits, protocol = temporal_split(sequences, test_start=test_start, min_history=min_history, **kwargs)
    train_end = validation_start if with_validation else test_start

    # Training holds exactly the events before the first cutoff, nothing at or after it.
    train = by_user(splits["train"])
    expected_train = {u: [e for e in full if e[3] < train_end] for u, full in reference.items()}
    assert train.keys() == {u for u, events in expected_train.items() if events}
    for user, row in train.items():
        assert events_of(row) == expected_train[user]
        assert all(t < train_end for t in row["timestamps"])
    train_tags = {e[0] for events in expected_train.values() for e in events}

    windows = [("test", test_start, None)] + (
        [("validation", validation_start, test_start)] if with_validation else []
    )
    assert set(splits) == {"train"} | {name for name, _, _ in windows}
    for name, start, end in windows:
        got = by_user(splits[name])
        expected_users = set()
        for user, full in reference.items():
            history = [e for e in full if e[3] < start]
            after = [e for e in full if e[3] >= start]
            if not after or len(history) < min_history or (end is not None and after[0][3] >= end):
                continue
            expected_users.add(user)
            row = got[user]
            assert events_of(row) == history  # history = prefix of events strictly before the cutoff
            target = after[0]
            assert (row["target_item_id"], row["target_event_type"], row["target_timestamp"]) == target[1:]
            assert all(t < row["target_timestamp"] for t in row["timestamps"])  # strictly before the target
            assert target[0] not in train_tags  # the target never appears in training
        assert set(got) == expected_users, name
        assert protocol["rows"][name] == len(expected_users)


@PROPERTY_SETTINGS
@given(random_logs(), st.integers(0, 60), st.integers(1, 20), st.integers(0, 2))
def test_property_purchase_labels_from_future_only(log, cutoff, horizon, min_history):
    rows, row_index = log
    sequences = build_sequences(log_dataset(rows, row_index), session_gap_seconds=None)
    reference = reference_sequences(rows, row_index)
    labelled = by_user(
        user_purchase_labels(sequences, cutoff=cutoff, horizon_seconds=horizon, min_history=min_history)
    )
    expected_users = {u for u, full in reference.items() if sum(e[3] < cutoff for e in full) >= min_history}
    assert set(labelled) == expected_users
    for user, row in labelled.items():
        full = reference[user]
        assert events_of(row) == [e for e in full if e[3] < cutoff]
        assert row["label"] == int(any(e[2] == "purchase" and cutoff <= e[3] < cutoff + horizon for e in full))
        assert row["cutoff"] == cutoff
    if labelled:
        features, names = recency_frequency_features(
            user_purchase_labels(sequences, cutoff=cutoff, horizon_seconds=horizon, min_history=min_history)
        )
        assert features.shape == (len(labelled), len(names)) and np.isfinite(features).all()
        counts = [len(labelled[u]["item_ids"]) for u in sorted(labelled)]
        np.testing.assert_allclose(features[:, 0], np.log1p(counts), rtol=1e-6)
