"""Task construction (seqbert.data.labels): exact rows against brute-force references, and no leakage.

The leakage tests are seeded property tests: for random logs, every input column of every row is the
user's events strictly before the cutoff, rewriting events at or after the cutoff changes no input and
no tabular feature, and events after the horizon change nothing at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from seqbert.data.features import item_statistics, task_features
from seqbert.data.labels import click_candidate_labels, item_conversion_labels, user_purchase_labels

TYPES = ["view", "cart", "fav", "purchase"]
CUTOFF, HORIZON = 100, 40
TAOBAO = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "taobao_userbehavior"


def random_log(seed: int, users: int = 30, items: int = 25) -> list[dict]:
    """Per user: sorted timestamps in [0, 200), items, types and categories (category = item // 5)."""
    rng = np.random.default_rng(seed)
    log = []
    for user in range(users):
        n = int(rng.integers(0, 15))
        times = np.sort(rng.integers(0, 200, size=n)).tolist()
        item_ids = [f"i{int(i)}" for i in rng.integers(0, items, size=n)]
        types = [TYPES[int(t)] for t in rng.choice(4, size=n, p=[0.6, 0.15, 0.1, 0.15])]
        log.append({"user_id": f"u{user}", "item_ids": item_ids, "event_types": types, "timestamps": times,
                    "categories": [f"c{int(i[1:]) // 5}" for i in item_ids]})  # fmt: skip
    return log


def as_dataset(log: list[dict]) -> Dataset:
    return Dataset.from_list(log)


def rewrite_after(log: list[dict], start: int, seed: int) -> list[dict]:
    """The same log with every event at or after ``start`` given a random item and type."""
    rng = np.random.default_rng(seed)
    out = []
    for row in log:
        row = {key: list(value) if isinstance(value, list) else value for key, value in row.items()}
        for k, t in enumerate(row["timestamps"]):
            if t >= start:
                row["item_ids"][k] = f"i{int(rng.integers(0, 40))}"
                row["event_types"][k] = TYPES[int(rng.integers(0, 4))]
                row["categories"][k] = f"c{int(row['item_ids'][k][1:]) // 5}"
        out.append(row)
    return out


def history(row: dict, cutoff: int = CUTOFF) -> tuple:
    keep = [k for k, t in enumerate(row["timestamps"]) if t < cutoff]
    return tuple(tuple(row[name][k] for k in keep) for name in ("item_ids", "event_types", "timestamps"))


def rows_of(dataset: Dataset) -> list[dict]:
    return dataset.to_list()


def input_view(dataset: Dataset) -> list[tuple]:
    """What a model may read of each row (everything but the label), in row order."""
    return [
        (row["user_id"], tuple(row["item_ids"]), tuple(row["event_types"]), tuple(row["timestamps"]),
         row.get("candidate_item_id"), row.get("candidate_category"), row.get("candidate_events"), row["cutoff"])
        for row in rows_of(dataset)
    ]  # fmt: skip


@pytest.mark.parametrize("seed", range(6))
def test_item_conversion_matches_reference(seed):
    log = random_log(seed)
    got = {(r["user_id"], r["candidate_item_id"]): r for r in rows_of(item_conversion_labels(as_dataset(log), cutoff=CUTOFF, horizon_seconds=HORIZON))}
    expected = {}
    for row in log:
        events = list(zip(row["item_ids"], row["event_types"], row["timestamps"]))
        bought = {i for i, e, t in events if e == "purchase" and CUTOFF <= t < CUTOFF + HORIZON}
        for item in {i for i, e, t in events if t < CUTOFF and e in ("view", "cart", "fav")}:
            expected[(row["user_id"], item)] = int(item in bought)
    assert {key: row["label"] for key, row in got.items()} == expected
    by_user = {row["user_id"]: row for row in log}
    for (user, item), row in got.items():
        assert (tuple(row["item_ids"]), tuple(row["event_types"]), tuple(row["timestamps"])) == history(by_user[user])
        assert row["cutoff"] == CUTOFF and max(row["timestamps"], default=-1) < CUTOFF
        assert row["candidate_category"] == f"c{int(item[1:]) // 5}"
        popularity = sum(i == item and t < CUTOFF for log_row in log for i, t in zip(log_row["item_ids"], log_row["timestamps"]))
        assert row["candidate_events"] == popularity  # every user's events of the item before the cutoff


@pytest.mark.parametrize("seed", range(6))
def test_click_candidates_reference_properties(seed):
    log = random_log(seed)
    rows = rows_of(click_candidate_labels(as_dataset(log), cutoff=CUTOFF, horizon_seconds=HORIZON, negatives_per_positive=2, seed=seed))
    seen_before = {i for row in log for i, t in zip(row["item_ids"], row["timestamps"]) if t < CUTOFF}
    by_user = {row["user_id"]: row for row in log}
    for user, row in by_user.items():
        if not history(row)[0]:
            assert not [r for r in rows if r["user_id"] == user]
            continue
        window = {i for i, t in zip(row["item_ids"], row["timestamps"]) if CUTOFF <= t < CUTOFF + HORIZON}
        mine = [r for r in rows if r["user_id"] == user]
        positives = [r["candidate_item_id"] for r in mine if r["label"] == 1]
        negatives = [r["candidate_item_id"] for r in mine if r["label"] == 0]
        assert sorted(positives) == sorted(window & seen_before)
        assert len(set(negatives)) == len(negatives)
        assert not set(negatives) & window and set(negatives) <= seen_before
        available = len(seen_before - window)
        assert len(negatives) == min(2 * len(positives), available)
        for r in mine:
            assert (tuple(r["item_ids"]), tuple(r["event_types"]), tuple(r["timestamps"])) == history(row)


def test_click_negatives_are_seeded_and_follow_popularity():
    log = random_log(11, users=60)
    make = lambda seed: click_candidate_labels(as_dataset(log), cutoff=CUTOFF, horizon_seconds=HORIZON, seed=seed)
    assert rows_of(make(3)) == rows_of(make(3))
    assert rows_of(make(3)) != rows_of(make(4))
    # A single hugely popular item is drawn as a negative for almost every user it is not a positive of.
    popular = [dict(row) for row in log]
    popular.append({"user_id": "bot", "item_ids": ["hot"] * 500, "event_types": ["view"] * 500,
                    "timestamps": [0] * 500, "categories": ["c0"] * 500})  # fmt: skip
    rows = rows_of(click_candidate_labels(as_dataset(popular), cutoff=CUTOFF, horizon_seconds=HORIZON, seed=0))
    users = {r["user_id"] for r in rows}
    hot = {r["user_id"] for r in rows if r["candidate_item_id"] == "hot" and r["label"] == 0}
    assert len(hot) >= 0.8 * len(users)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("task", ["user-purchase", "item-conversion", "click"])
def test_no_leakage_from_after_the_cutoff(task, seed):
    build = {
        "user-purchase": lambda d: user_purchase_labels(d, cutoff=CUTOFF, horizon_seconds=HORIZON),
        "item-conversion": lambda d: item_conversion_labels(d, cutoff=CUTOFF, horizon_seconds=HORIZON),
        "click": lambda d: click_candidate_labels(d, cutoff=CUTOFF, horizon_seconds=HORIZON, seed=seed),
    }[task]
    log = random_log(100 + seed)
    original = build(as_dataset(log))
    # 1. Events after the horizon change nothing, not even a label.
    assert rows_of(build(as_dataset(rewrite_after(log, CUTOFF + HORIZON, seed)))) == rows_of(original)
    # 2. Events in the label window change no input of a row that exists in both versions, nor its features.
    changed_log = rewrite_after(log, CUTOFF, seed)
    changed = build(as_dataset(changed_log))
    key = lambda r: (r["user_id"], r.get("candidate_item_id"))
    before = {key(r): (view, k) for k, (r, view) in enumerate(zip(rows_of(original), input_view(original)))}
    after = {key(r): (view, k) for k, (r, view) in enumerate(zip(rows_of(changed), input_view(changed)))}
    common = sorted(set(before) & set(after))
    assert common
    for k in common:
        assert before[k][0] == after[k][0]
    stats = lambda l: item_statistics(as_dataset(l), CUTOFF) if task != "user-purchase" else None
    features_before = task_features(original, stats(log))[0][[before[k][1] for k in common]]
    features_after = task_features(changed, stats(changed_log))[0][[after[k][1] for k in common]]
    np.testing.assert_array_equal(features_before, features_after)
    # 3. Every input event is strictly before the cutoff.
    assert all(t < CUTOFF for r in rows_of(original) for t in r["timestamps"])
    if task != "click":  # rows are decided by pre-cutoff events only (click rows need a positive, by definition)
        assert sorted(before) == sorted(after)


def test_item_statistics_use_only_the_past():
    log = random_log(5)
    stats = item_statistics(as_dataset(log), CUTOFF)
    counts = {}
    for row in log:
        for i, t in zip(row["item_ids"], row["timestamps"]):
            if t < CUTOFF:
                counts[i] = counts.get(i, 0) + 1
    assert dict(zip(stats["items"].to_pylist(), stats["events"].tolist())) == counts


def test_pair_features_hand_case():
    rows = Dataset.from_dict({
        "user_id": ["u", "u"], "item_ids": [["a", "b", "a"]] * 2, "event_types": [["view", "cart", "cart"]] * 2,
        "timestamps": [[10, 20, 40]] * 2, "categories": [["x", "y", "x"]] * 2, "candidate_item_id": ["a", "z"],
        "candidate_category": ["x", None], "label": [1, 0], "cutoff": [100, 100],
    })  # fmt: skip
    features, names = task_features(rows)
    f = dict(zip(names, features[0]))
    assert f["log_pair_events"] == pytest.approx(np.log(3)) and f["log_pair_carts"] == pytest.approx(np.log(2))
    assert f["log_seconds_since_pair"] == pytest.approx(np.log1p(60)) and f["pair_is_last_item"] == 1
    assert f["category_share"] == pytest.approx(2 / 3) and f["log_seconds_since_last"] == pytest.approx(np.log1p(60))
    g = dict(zip(names, features[1]))
    assert g["log_pair_events"] == 0 and g["pair_never_seen"] == 1 and g["category_share"] == 0


@pytest.mark.skipif(not TAOBAO.exists(), reason="Taobao sample data not present")
def test_taobao_head_file_tasks():
    from seqbert.data.formats import read_dataset
    from seqbert.data.sequences import build_sequences

    sequences = build_sequences(read_dataset("taobao", TAOBAO / "complete_histories_head_43users.csv"))
    cutoff = 1511539200 + 7 * 86_400
    purchase = user_purchase_labels(sequences, cutoff=cutoff, horizon_seconds=86_400)
    conversion = item_conversion_labels(sequences, cutoff=cutoff, horizon_seconds=86_400)
    click = click_candidate_labels(sequences, cutoff=cutoff, horizon_seconds=86_400)
    assert purchase.num_rows == 43 and 0 < sum(purchase["label"]) < 43
    assert conversion.num_rows > 1000 and sum(conversion["label"]) >= 1
    assert sum(click["label"]) * 5 == click.num_rows
    for rows in (purchase, conversion, click):
        assert max(max(t, default=0) for t in rows["timestamps"]) < cutoff


def test_rolling_cutoffs_stack_one_labelled_set_per_cutoff():
    """label_splits with several training / test cutoffs: each cutoff's rows, in order, each with inputs strictly
    before its own cutoff and labels from its own window (the rows build_task_rows gives at that cutoff)."""
    from seqbert.training.finetune import build_task_rows, label_splits, task_cutoffs

    class Data:
        protocol = {"kind": "temporal", "validation_start": 140, "test_start": 160}
        sequences = as_dataset(random_log(11))

    cutoffs = task_cutoffs(Data.protocol, None, num_train_cutoffs=3, num_test_cutoffs=2)
    assert cutoffs["train_cutoffs"] == [80, 100, 120] and cutoffs["test_cutoffs"] == [160, 180]
    assert cutoffs["train_cutoff"] == 120 and cutoffs["test_cutoff"] == 160
    for task in ("user-purchase", "item-conversion", "click"):
        labelled, _ = label_splits(Data, None, task, num_train_cutoffs=3, num_test_cutoffs=2)
        for split, split_cutoffs, seed in (("train", [80, 100, 120], 0), ("test", [160, 180], 2)):
            expected = []
            for k, cutoff in enumerate(split_cutoffs):
                expected += build_task_rows(Data.sequences, task, cutoff=cutoff, horizon_seconds=20, seed=seed + 3 * k).to_list()
            assert labelled[split].to_list() == expected, (task, split)
            assert all(t < row["cutoff"] for row in labelled[split] for t in row["timestamps"])


def test_conversion_lookback_keeps_recent_candidates_only():
    log = random_log(12)
    every = item_conversion_labels(as_dataset(log), cutoff=CUTOFF, horizon_seconds=HORIZON)
    recent = item_conversion_labels(as_dataset(log), cutoff=CUTOFF, horizon_seconds=HORIZON, lookback_seconds=30)
    expected = set()
    for row in log:
        for item, kind, t in zip(row["item_ids"], row["event_types"], row["timestamps"]):
            if CUTOFF - 30 <= t < CUTOFF and kind in ("view", "cart", "fav"):
                expected.add((row["user_id"], item))
    assert {(r["user_id"], r["candidate_item_id"]) for r in recent} == expected
    assert 0 < recent.num_rows < every.num_rows


@pytest.mark.parametrize("seed", range(3))
def test_labelled_features_of_pooled_cutoffs_ignore_the_future(seed):
    """Rows of several cutoffs in one set: every row's features (catalog statistics included) depend only on
    events before its own cutoff; rewriting everything from the earliest cutoff's window on changes none of the
    features of that cutoff's rows, and each row equals its features computed alone at its cutoff."""
    from seqbert.data.arrow import from_arrow, to_arrow
    from seqbert.data.features import labelled_features
    from seqbert.training.finetune import rows_at_cutoffs

    log = random_log(300 + seed)
    rows = rows_at_cutoffs(as_dataset(log), "click", [80, CUTOFF], horizon_seconds=HORIZON)
    features, names = labelled_features(as_dataset(log), rows, utc_offset_seconds=3600)
    cutoffs = np.asarray(rows["cutoff"])
    for cutoff in (80, CUTOFF):
        index = np.flatnonzero(cutoffs == cutoff)
        alone, alone_names = task_features(from_arrow(to_arrow(rows).take(index)), item_statistics(as_dataset(log), cutoff),
                                           utc_offset_seconds=3600)  # fmt: skip
        assert alone_names == names
        np.testing.assert_array_equal(features[index], alone)
    changed = rewrite_after(log, 80, seed)
    early = np.flatnonzero(cutoffs == 80)
    rewritten, _ = labelled_features(as_dataset(changed), from_arrow(to_arrow(rows).take(early)), utc_offset_seconds=3600)
    np.testing.assert_array_equal(rewritten, features[early])


def test_activity_features_hand_case():
    from seqbert.data.features import activity_features

    day = 86_400
    rows = Dataset.from_dict({
        "user_id": ["u"], "item_ids": [["a", "b", "c", "d"]], "event_types": [["view", "cart", "purchase", "view"]],
        # 8.5 days, 2.5 days, 0.5 days and 1 hour before the cutoff (cutoff = local midnight at UTC+8)
        "timestamps": [[10 * day - 8 * 3600 - int(8.5 * day), 10 * day - 8 * 3600 - int(2.5 * day),
                        10 * day - 8 * 3600 - day // 2, 10 * day - 8 * 3600 - 3600]],
        "cutoff": [10 * day - 8 * 3600], "label": [0],
    })  # fmt: skip
    features, names = activity_features(rows, utc_offset_seconds=8 * 3600)
    f = dict(zip(names, features[0]))
    assert f["log_views_1d"] == pytest.approx(np.log(2)) and f["log_views_7d"] == pytest.approx(np.log(2))
    assert f["log_carts_1d"] == 0 and f["log_carts_3d"] == pytest.approx(np.log(2))
    assert f["log_purchases_1d"] == pytest.approx(np.log(2)) and f["never_purchased"] == 0
    assert f["log_days_since_purchase"] == pytest.approx(np.log1p(0.5), rel=1e-5)
    assert f["log_active_days"] == pytest.approx(np.log1p(3)) and f["log_active_days_7d"] == pytest.approx(np.log1p(2))
    # local hours 12, 12, 12, 23: three events in 12-18 h, one in 18-24 h; the last event at 23:00
    assert f["share_events_12_18h"] == pytest.approx(0.75) and f["share_events_18_24h"] == pytest.approx(0.25)
    assert f["last_event_hour_sin"] == pytest.approx(np.sin(23 * 2 * np.pi / 24), abs=1e-6)
