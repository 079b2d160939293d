"""Tests for seqbert.data.cleaning: every drop reason counted exactly, order kept, report adds up."""

from __future__ import annotations

import json
import random

import datasets
import numpy as np
import pyarrow as pa
import pytest

from seqbert.data.cleaning import DROP_REASONS, DropReport, clean_events
from seqbert.data.errors import EventDataError
from seqbert.data.readers import BAD_TIMESTAMP_MARKER, ROW_INDEX, UNKNOWN_EVENT_MARKER

T0 = 1_511_658_000


def make(rows: list[tuple], markers: bool = True) -> datasets.Dataset:
    """rows: (user, item, event, timestamp[, bad_ts, unknown]) -> a read_events-shaped dataset."""
    columns = {
        "user_id": pa.array([r[0] for r in rows], pa.string()),
        "item_id": pa.array([r[1] for r in rows], pa.string()),
        "event_type": pa.array([r[2] for r in rows], pa.string()),
        "timestamp": pa.array([r[3] for r in rows], pa.int64()),
        ROW_INDEX: pa.array(np.arange(len(rows), dtype=np.int64)),
    }
    if markers:
        columns[BAD_TIMESTAMP_MARKER] = pa.array([bool(r[4]) if len(r) > 4 else False for r in rows])
        columns[UNKNOWN_EVENT_MARKER] = pa.array([bool(r[5]) if len(r) > 5 else False for r in rows])
    return datasets.Dataset(pa.table(columns))


# Hand-made table: each reason has a known count when applied in order.
HAND = [
    ("a", "x", "view", T0),  # 0 kept
    ("a", "y", "view", T0 + 1),  # 1 kept
    ("a", "x", "view", T0),  # 2 duplicate of 0
    (None, "x", "view", T0),  # 3 missing_field (user)
    ("a", None, "view", T0),  # 4 missing_field (item)
    ("a", "x", None, T0),  # 5 missing_field (event, not marked)
    ("a", "x", "view", None),  # 6 missing_field (timestamp, not marked)
    ("a", "x", "view", None, True),  # 7 bad_timestamp
    ("a", "x", None, T0, False, True),  # 8 unknown_event_type
    (None, "x", "view", None, True),  # 9 missing_field wins over bad_timestamp (applied first)
    ("bot", "x", "view", T0 + 1),  # 10..13 bot_user (4 events > 3)
    ("bot", "y", "view", T0 + 2),
    ("bot", "x", "cart", T0 + 3),
    ("bot", "y", "cart", T0 + 4),
    ("b", "rare", "view", T0 + 5),  # 14 rare_item (item seen once)
    ("b", "x", "view", T0 + 6),  # 15 kept
    ("b", "y", "cart", T0 + 7),  # 16 kept
    ("c", "x", "view", T0 + 8),  # 17 short_user (c left with 1 event after rare item dropped)
    ("c", "rare2", "view", T0 + 9),  # 18 rare_item
    ("a", "x", "cart", T0),  # 19 kept: same user/item/time as 0 but another event type
]


def test_each_reason_counted_exactly():
    cleaned, report = clean_events(
        make(HAND), min_user_events=2, max_events_per_user=3, min_item_support=2, source="hand.csv"
    )
    assert list(report.dropped) == list(DROP_REASONS)
    assert report.dropped == {
        "missing_field": 5,
        "bad_timestamp": 1,
        "unknown_event_type": 1,
        "duplicate": 1,
        "bot_user": 4,
        "rare_item": 2,
        "short_user": 1,
    }
    assert report.input_rows == 20 and report.kept_rows == 5
    report.check()
    assert cleaned[ROW_INDEX] == [0, 1, 15, 16, 19]
    assert cleaned.column_names == ["user_id", "item_id", "event_type", "timestamp", ROW_INDEX]
    assert report.source == "hand.csv"


def test_disabled_steps_report_zero():
    cleaned, report = clean_events(make(HAND), min_user_events=1, deduplicate=False, min_item_support=1)
    assert report.dropped["duplicate"] == report.dropped["bot_user"] == report.dropped["rare_item"] == 0
    assert report.dropped["short_user"] == 0
    assert report.kept_rows == 20 - 5 - 1 - 1 == len(cleaned)


def test_duplicates_keep_first_and_order():
    rows = [("u", "i", "view", T0 + k % 3) for k in range(9)] + [("u", "j", "view", T0)]
    cleaned, report = clean_events(make(rows, markers=False), min_user_events=1)
    assert report.dropped["duplicate"] == 6
    assert cleaned[ROW_INDEX] == [0, 1, 2, 9]


def test_duplicates_hash_path_with_huge_key_space():
    # Compact numeric ids spanning 0..1e6 and timestamps over 30 years: the exact packing does not
    # fit, so the hashed key + exact candidate check is used.
    rows = [
        ("0", "0", "view", 700_000_000),
        ("1000000", "1000000", "view", T0),
        ("0", "0", "view", 700_000_000),
        ("0", "0", "cart", 700_000_000),
        ("1000000", "1000000", "view", T0),
        ("5", "7", "view", T0),
    ]
    cleaned, report = clean_events(make(rows, markers=False), min_user_events=1)
    assert report.dropped["duplicate"] == 2
    assert cleaned[ROW_INDEX] == [0, 1, 3, 5]


def test_ids_with_leading_zeros_are_distinct():
    rows = [("7", "1", "view", T0), ("07", "1", "view", T0), ("007", "01", "view", T0)]
    cleaned, report = clean_events(make(rows, markers=False), min_user_events=1)
    assert report.dropped["duplicate"] == 0 and len(cleaned) == 3
    _, report = clean_events(make(rows, markers=False), min_user_events=2)
    assert report.dropped["short_user"] == 3


def _reference(rows, min_user_events, deduplicate, max_events_per_user, min_item_support):
    """Plain-Python reference implementation of the documented rules."""
    counts = dict.fromkeys(DROP_REASONS, 0)
    alive = []
    for k, r in enumerate(rows):
        user, item, event, ts, bad, unknown = r
        if user is None or item is None or (event is None and not unknown) or (ts is None and not bad):
            counts["missing_field"] += 1
        elif bad:
            counts["bad_timestamp"] += 1
        elif unknown:
            counts["unknown_event_type"] += 1
        else:
            alive.append(k)
    if deduplicate:
        seen, kept = set(), []
        for k in alive:
            key = rows[k][:4]
            if key in seen:
                counts["duplicate"] += 1
            else:
                seen.add(key)
                kept.append(k)
        alive = kept

    def per(index, ks):
        c: dict = {}
        for k in ks:
            c[rows[k][index]] = c.get(rows[k][index], 0) + 1
        return c

    if max_events_per_user is not None:
        c = per(0, alive)
        counts["bot_user"] = sum(1 for k in alive if c[rows[k][0]] > max_events_per_user)
        alive = [k for k in alive if c[rows[k][0]] <= max_events_per_user]
    c = per(1, alive)
    counts["rare_item"] = sum(1 for k in alive if c[rows[k][1]] < min_item_support)
    alive = [k for k in alive if c[rows[k][1]] >= min_item_support]
    c = per(0, alive)
    counts["short_user"] = sum(1 for k in alive if c[rows[k][0]] < min_user_events)
    alive = [k for k in alive if c[rows[k][0]] >= min_user_events]
    return alive, counts


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_on_random_tables(seed):
    rng = random.Random(seed)
    numeric = seed % 2 == 0
    users = [str(k) if numeric else f"user-{k}" for k in range(12)] + [None]
    items = [str(k) if numeric else f"it{k:02d}" for k in range(15)] + [None]
    rows = []
    for _ in range(400):
        bad = rng.random() < 0.05
        unknown = rng.random() < 0.05
        ts = None if bad or rng.random() < 0.02 else T0 + rng.randrange(5)
        event = None if unknown or rng.random() < 0.02 else rng.choice(["view", "cart"])
        rows.append((rng.choice(users), rng.choice(items), event, ts, bad, unknown))
    params = {
        "min_user_events": rng.choice([1, 2, 5]),
        "deduplicate": rng.random() < 0.8,
        "max_events_per_user": rng.choice([None, 30, 40]),
        "min_item_support": rng.choice([1, 2, 20]),
    }
    cleaned, report = clean_events(make(rows), **params)
    alive, counts = _reference(rows, **params)
    assert report.dropped == counts
    assert cleaned[ROW_INDEX] == alive
    report.check()


def test_works_without_markers_or_row_index_and_casts_ids():
    table = pa.table(
        {"user_id": [1, 1, 2], "item_id": [5, 6, 5], "event_type": ["view"] * 3, "timestamp": [T0, T0 + 1, T0]}
    )
    cleaned, report = clean_events(datasets.Dataset(table), min_user_events=2)
    assert cleaned["user_id"] == ["1", "1"] and cleaned[ROW_INDEX] == [0, 1]
    assert report.dropped["short_user"] == 1


def test_respects_indices_mapping():
    ds = make(HAND).select([15, 16, 0, 1])  # a lazy indices mapping
    cleaned, report = clean_events(ds, min_user_events=1)
    assert report.input_rows == 4 and cleaned[ROW_INDEX] == [15, 16, 0, 1]


def test_missing_required_column():
    ds = datasets.Dataset(pa.table({"user_id": ["a"], "item_id": ["b"], "timestamp": [T0]}))
    with pytest.raises(EventDataError, match="event_type"):
        clean_events(ds, source="x.csv")


def test_empty_input():
    cleaned, report = clean_events(make([("a", "x", "view", T0)]).select([]), min_user_events=2)
    assert len(cleaned) == 0 and report.input_rows == 0 and report.kept_rows == 0
    report.check()


def test_bad_parameters():
    with pytest.raises(ValueError):
        clean_events(make(HAND), min_user_events=-1)
    with pytest.raises(ValueError):
        clean_events(make(HAND), max_events_per_user=0)


def test_fingerprint_is_deterministic():
    ds = make(HAND)
    a, _ = clean_events(ds, min_user_events=1)
    b, _ = clean_events(ds, min_user_events=1)
    c, _ = clean_events(ds, min_user_events=2)
    assert a._fingerprint == b._fingerprint != c._fingerprint


# ------------------------------------------------------------------------------------ DropReport
def test_drop_report_add_check_and_json(tmp_path):
    report = DropReport.start(10, source="events.csv")
    report.add("missing_field", 2)
    report.add("short_user", 3)
    report.add("missing_field", 1)
    assert report.dropped == {"missing_field": 3, "short_user": 3} and report.kept_rows == 4
    report.check()
    path = report.save_json(tmp_path / "out" / "drop_report.json")
    assert json.loads(path.read_text())["dropped"] == {"missing_field": 3, "short_user": 3}
    loaded = DropReport.load_json(path)
    assert loaded == report and list(loaded.dropped) == ["missing_field", "short_user"]
    with pytest.raises(ValueError):
        report.add("x", 5)  # more than kept
    with pytest.raises(ValueError):
        report.add("x", -1)


def test_drop_report_check_detects_mismatch(tmp_path):
    report = DropReport(input_rows=10, kept_rows=5, dropped={"duplicate": 4})
    with pytest.raises(ValueError, match="does not add up"):
        report.check()
    (tmp_path / "r.json").write_text(json.dumps(report.to_dict()))
    with pytest.raises(ValueError):
        DropReport.load_json(tmp_path / "r.json")


def test_format_table():
    report = DropReport(
        input_rows=110_300, kept_rows=67_625, dropped={"missing_field": 0, "short_user": 42_675}, source="slice.csv"
    )
    text = report.format_table()
    lines = text.splitlines()
    assert lines[0] == "Drop report for slice.csv"
    assert any(line.startswith("short_user") and "42,675" in line and "38.69%" in line for line in lines)
    assert any(line.startswith("dropped (total)") and "42,675" in line for line in lines)
    assert any(line.startswith("input") and "110,300" in line and "100.00%" in line for line in lines)
    body = [line for line in lines[1:] if not line.startswith("-")]
    assert len({len(line) for line in body}) == 1  # aligned


# ------------------------------------------------------------------ bot-like rates and iterative k-core
def test_rate_thresholds_drop_bursty_users_whole():
    rows = [
        *[("burst", f"i{k % 3}", "view", T0 + 10 * k) for k in range(5)],  # 5 events within 40 s
        *[("calm", f"i{k % 3}", "view", T0 + 61 * k) for k in range(5)],  # never 2 within 60 s
        *[("hourly", f"i{k % 3}", "view", T0 + 500 * k) for k in range(7)],  # 7 events within 3,000 s
    ]
    _, report = clean_events(make(rows, markers=False), max_events_per_minute=4, min_user_events=1)
    assert report.dropped["bot_user"] == 5
    _, report = clean_events(make(rows, markers=False), max_events_per_minute=1, min_user_events=1)
    assert report.dropped["bot_user"] == 5  # "calm" has at most one event in any 60 s
    cleaned, report = clean_events(
        make(rows, markers=False), max_events_per_minute=4, max_events_per_hour=6, min_user_events=1
    )
    assert report.dropped["bot_user"] == 5 + 7 and set(cleaned["user_id"]) == {"calm"}
    # Exactly at the limit is allowed: 7 events per hour with a limit of 7.
    _, report = clean_events(make(rows, markers=False), max_events_per_hour=7, min_user_events=1)
    assert report.dropped["bot_user"] == 0
    report.check()


def test_rate_thresholds_do_not_depend_on_row_order():
    rng = random.Random(5)
    rows = [(f"u{rng.randrange(6)}", f"i{rng.randrange(9)}", "view", T0 + rng.randrange(400)) for _ in range(300)]
    shuffled = rows[:]
    rng.shuffle(shuffled)
    ordered = sorted(rows, key=lambda r: (r[0], r[3]))
    for limits in ({"max_events_per_minute": 6}, {"max_events_per_hour": 40}, {"max_events_per_minute": 9}):
        a, ra = clean_events(make(shuffled, markers=False), min_user_events=1, **limits)
        b, rb = clean_events(make(ordered, markers=False), min_user_events=1, **limits)
        assert ra.dropped == rb.dropped
        assert sorted(a["user_id"]) == sorted(b["user_id"])


K_CORE = [
    # u1 keeps item "a" above support 2 only while u3 (too short once "b" goes) is alive.
    ("u1", "a", "view", T0), ("u1", "c", "view", T0 + 1), ("u1", "c", "cart", T0 + 2),
    ("u2", "c", "view", T0), ("u2", "b", "view", T0 + 1), ("u2", "c", "cart", T0 + 3),
    ("u3", "a", "view", T0), ("u3", "b", "view", T0 + 1),
]  # fmt: skip


def test_k_core_repeats_until_stable_and_counts_add_up():
    once, report_once = clean_events(make(K_CORE, markers=False), min_user_events=2, min_item_support=2)
    # One pass: item "b" has 2 events (kept); nothing is dropped.
    assert report_once.kept_rows == 8
    core, report = clean_events(make(K_CORE, markers=False), min_user_events=3, min_item_support=2, k_core=True)
    # min_user_events=3: u3 (2 events) goes -> "a" and "b" fall to 1 event -> dropped -> u1 and u2
    # fall to 2 events -> dropped: the 3-core of this log is empty.
    single, report_single = clean_events(make(K_CORE, markers=False), min_user_events=3, min_item_support=2)
    assert report_single.dropped["short_user"] == 2 and report_single.dropped["rare_item"] == 0
    assert report_single.kept_rows == 6
    assert report.kept_rows == 0 and len(core) == 0
    assert report.dropped["short_user"] + report.dropped["rare_item"] == 8
    report.check()
    assert list(report.dropped) == list(DROP_REASONS)


def _k_core_reference(rows, min_user_events, min_item_support):
    """Plain-Python iterative k-core on rows that survive the earlier rules (all do here)."""
    alive = list(range(len(rows)))
    counts = {"rare_item": 0, "short_user": 0}
    while True:
        before = len(alive)
        items: dict = {}
        for k in alive:
            items[rows[k][1]] = items.get(rows[k][1], 0) + 1
        counts["rare_item"] += sum(1 for k in alive if items[rows[k][1]] < min_item_support)
        alive = [k for k in alive if items[rows[k][1]] >= min_item_support]
        users: dict = {}
        for k in alive:
            users[rows[k][0]] = users.get(rows[k][0], 0) + 1
        counts["short_user"] += sum(1 for k in alive if users[rows[k][0]] < min_user_events)
        alive = [k for k in alive if users[rows[k][0]] >= min_user_events]
        if len(alive) == before:
            return alive, counts


@pytest.mark.parametrize("seed", range(4))
def test_k_core_matches_reference(seed):
    rng = random.Random(seed)
    rows = [(f"u{rng.randrange(40)}", f"i{int(rng.paretovariate(1.2)) % 60}", "view", T0 + k) for k in range(500)]
    params = {"min_user_events": rng.choice([3, 5, 8]), "min_item_support": rng.choice([2, 4, 6])}
    cleaned, report = clean_events(make(rows, markers=False), deduplicate=False, k_core=True, **params)
    alive, counts = _k_core_reference(rows, **params)
    assert cleaned[ROW_INDEX] == alive
    assert {k: report.dropped[k] for k in counts} == counts
    assert report.input_rows == report.kept_rows + sum(report.dropped.values())


def test_rate_and_k_core_parameters_are_checked():
    with pytest.raises(ValueError, match="max_events_per_minute"):
        clean_events(make(HAND), max_events_per_minute=0)
    with pytest.raises(ValueError, match="whole log"):
        clean_events(make(HAND), k_core=True, item_support=pa.table({"item_id": ["x"], "count": [3]}))
