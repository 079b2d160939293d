"""Temporal splits: cleaning's count rules (bot_user, rare_item, short_user, k-core) count only the
events before the first cutoff, so which users and items are kept never depends on the future that
validation and test evaluate (a selection leak otherwise: e.g. a user with one past event is kept
only because they come back later)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest

from seqbert.data.arrow import from_arrow, to_arrow
from seqbert.data.cleaning import clean_events
from seqbert.data.synthetic import SyntheticConfig, generate_events
from seqbert.prepare import PrepareOptions, prepare_events

CUTOFF = 1_700_001_000


def events(rows: list[tuple[str, str, int]]) -> pa.Table:
    return pa.table({
        "user_id": [u for u, _, _ in rows],
        "item_id": [i for _, i, _ in rows],
        "event_type": ["view"] * len(rows),
        "timestamp": pa.array([t for _, _, t in rows], pa.int64()),
    })  # fmt: skip


def kept_users(table: pa.Table, **rules) -> tuple[set[str], dict[str, int]]:
    kept, report = clean_events(table, **rules)
    return set(to_arrow(kept).column("user_id").to_pylist()), report.dropped


def test_short_user_counts_past_events_only():
    # "back": 1 event before the cutoff, 3 after; "new": only after; "regular": 2 before.
    rows = [("back", "a", CUTOFF - 50)] + [("back", "a", CUTOFF + k) for k in range(3)]
    rows += [("new", "a", CUTOFF + 10), ("new", "b", CUTOFF + 20)]
    rows += [("regular", "a", CUTOFF - 30), ("regular", "b", CUTOFF - 20)]
    table = events(rows)
    assert kept_users(table, min_user_events=2)[0] == {"back", "new", "regular"}  # whole-log counts
    users, dropped = kept_users(table, min_user_events=2, count_before=CUTOFF)
    assert users == {"new", "regular"}  # "back" judged on its past only, dropped whole; "new" not judged
    assert dropped["short_user"] == 4


def test_rare_item_counts_past_events_only():
    rows = [("u1", "trend", CUTOFF - 5)] + [(f"u{k}", "trend", CUTOFF + k) for k in range(2, 8)]
    rows += [("u1", "fresh", CUTOFF + 1), ("u2", "old", CUTOFF - 9), ("u3", "old", CUTOFF - 8)]
    table = events(rows)
    kept, report = clean_events(table, min_user_events=1, min_item_support=2, count_before=CUTOFF)
    items = set(to_arrow(kept).column("item_id").to_pylist())
    assert items == {"fresh", "old"}  # "trend" had one past event: rare, whatever came later
    assert report.dropped["rare_item"] == 7
    kept, _ = clean_events(table, min_user_events=1, min_item_support=2)
    assert "trend" in set(to_arrow(kept).column("item_id").to_pylist())


def test_bot_rules_count_past_events_only():
    rows = [("calm", "a", CUTOFF - 600), ("calm", "b", CUTOFF - 300)]
    rows += [("calm", "a", CUTOFF + k) for k in range(20)]  # a burst after the cutoff
    table = events(rows)
    for rule in ({"max_events_per_user": 5}, {"max_events_per_minute": 5}):
        assert kept_users(table, min_user_events=1, **rule)[0] == set()
        assert kept_users(table, min_user_events=1, count_before=CUTOFF, **rule)[0] == {"calm"}


def add_future(log: pa.Table, validation_start: int, seed: int) -> pa.Table:
    """``log`` plus events at or after ``validation_start``: for known users and items, new users and
    items, bursts (bot-like) and exact duplicates of other future events."""
    rng = np.random.default_rng(seed)
    users = np.array(sorted(set(log.column("user_id").to_pylist())))
    items = np.array(sorted(set(log.column("item_id").to_pylist())))
    n = 400
    user = np.where(rng.random(n) < 0.8, rng.choice(users, n), [f"late-user-{k}" for k in rng.integers(0, 30, n)])
    item = np.where(rng.random(n) < 0.7, rng.choice(items, n), [f"late-item-{k}" for k in rng.integers(0, 40, n)])
    times = validation_start + rng.integers(0, 5_000_000, n)
    burst = [(users[0], items[0], validation_start + k) for k in range(60)]
    rows = list(zip(user.tolist(), item.tolist(), times.tolist())) + burst
    rows += rows[:25]  # duplicates
    future = pa.table({
        "user_id": [u for u, _, _ in rows],
        "item_id": [i for _, i, _ in rows],
        "event_type": rng.choice(["view", "cart", "purchase"], len(rows)).tolist(),
        "timestamp": pa.array([int(t) for _, _, t in rows], pa.int64()),
    })  # fmt: skip
    return pa.concat_tables([log.select(future.column_names), future])


@pytest.mark.parametrize("seed", range(4))
def test_training_side_does_not_depend_on_the_future(seed):
    """Same past, different futures: identical train split, vocabulary and train statistics."""
    log = generate_events(SyntheticConfig(num_users=150, num_items=800, seed=seed))
    log = log.select(["user_id", "item_id", "event_type", "timestamp"])
    times = log.column("timestamp").to_numpy()
    validation_start = int(np.quantile(times, 0.7))
    test_start = int(np.quantile(times, 0.85))
    past = log.filter(pa.array(times < validation_start))
    options = PrepareOptions(
        split="temporal", validation_start=validation_start, test_start=test_start, k_core=True,
        min_item_support=6, min_user_events=3, max_events_per_user=400, max_events_per_minute=40,
    )  # fmt: skip
    results = [
        prepare_events(from_arrow(table), options, source_name="log")
        for table in (past, log, add_future(log, validation_start, seed))
    ]
    reference = results[0]
    dropped = reference.drop_report["dropped"]
    assert reference.splits["train"].num_rows > 20 and dropped["rare_item"] > 0 and dropped["short_user"] > 0
    for prepared in results[1:]:
        assert prepared.splits["train"].to_dict() == reference.splits["train"].to_dict()
        assert prepared.tokenizer.items == reference.tokenizer.items
        assert prepared.statistics["train"] == reference.statistics["train"]
        assert prepared.protocol["count_rules"]["count_before"] == validation_start
    # Whole-log counting (what leave-one-out keeps) would let the future decide.
    whole = dataclasses.replace(options, split="leave_one_out", validation_start=None, test_start=None)
    rows = [prepare_events(from_arrow(t), whole, source_name="log").sequences.num_rows for t in (past, log)]
    assert rows[0] != rows[1]
