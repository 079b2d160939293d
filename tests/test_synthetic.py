"""Tests for the synthetic behavior-log generator (seqbert.data.synthetic)."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest

from seqbert.data.schema import EVENT_TYPES, canonical_schema
from seqbert.data.synthetic import COLUMNS, SyntheticConfig, generate_events, write_events


DEFAULT = SyntheticConfig()
SMALL = SyntheticConfig(num_users=200, num_items=300, num_categories=10, seed=3)


@pytest.fixture(scope="module")
def events() -> pa.Table:
    return generate_events(DEFAULT)


@pytest.fixture(scope="module")
def cols(events: pa.Table) -> dict[str, np.ndarray]:
    """Columns as numpy arrays plus integer codes for users, items and sessions."""
    out = {name: events.column(name).to_numpy(zero_copy_only=False) for name in events.column_names}
    for name in ("user_id", "item_id", "session_id"):
        out[name + "_code"] = np.unique(out[name], return_inverse=True)[1]
    return out


def test_schema_and_types(events: pa.Table, cols: dict[str, np.ndarray]) -> None:
    assert events.schema == canonical_schema(COLUMNS)
    assert events.column_names == list(COLUMNS)
    assert events.num_rows > 50 * DEFAULT.num_users * 0.8
    assert set(np.unique(cols["event_type"])) <= set(EVENT_TYPES) - {"search"}
    assert all(re.fullmatch(r"u\d{6}", u) for u in np.unique(cols["user_id"]))
    assert all(re.fullmatch(r"i\d{5}", i) for i in np.unique(cols["item_id"]))
    assert len(np.unique(cols["user_id"])) == DEFAULT.num_users
    assert len(np.unique(cols["item_id"])) <= DEFAULT.num_items
    assert len(np.unique(cols["category"])) <= DEFAULT.num_categories
    assert (cols["price"] > 0).all() and np.isfinite(cols["price"]).all()
    assert all(c.null_count == 0 for c in events.columns)
    # Each item has exactly one category and one price.
    item = cols["item_id_code"]
    n = item.max() + 1
    for name in ("category", "price"):
        codes = np.unique(cols[name], return_inverse=True)[1]
        first = np.full(n, -1)
        first[item[::-1]] = codes[::-1]
        assert (first[item] == codes).all()


def test_deterministic() -> None:
    a, b = generate_events(SMALL), generate_events(SMALL)
    assert a.equals(b)
    sink_a, sink_b = pa.BufferOutputStream(), pa.BufferOutputStream()
    for table, sink in ((a, sink_a), (b, sink_b)):
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    assert sink_a.getvalue().equals(sink_b.getvalue())
    c = generate_events(SyntheticConfig(num_users=200, num_items=300, num_categories=10, seed=4))
    assert not a.equals(c)


def test_timestamps_sorted_and_in_range(cols: dict[str, np.ndarray]) -> None:
    ts, user, sess = cols["timestamp"], cols["user_id"], cols["session_id_code"]
    start, end = DEFAULT.start_timestamp, DEFAULT.start_timestamp + int(DEFAULT.duration_days * 86400)
    assert (ts > start).all() and (ts < end).all()
    assert (user[1:] >= user[:-1]).all()  # sorted by user_id
    same_user = user[1:] == user[:-1]
    assert (np.diff(ts)[same_user] > 0).all()  # strictly increasing within a user
    # Sessions are contiguous runs within one user; in-session gaps are seconds to minutes,
    # gaps between sessions are at least 30 minutes and typically hours to days.
    new_sess = sess[1:] != sess[:-1]
    assert len(np.unique(sess)) == new_sess.sum() + 1
    assert not (~same_user & ~new_sess).any()
    gaps = np.diff(ts)
    in_sess = gaps[~new_sess]
    assert in_sess.min() >= 1 and in_sess.max() <= 1800 and 5 <= np.median(in_sess) <= 120
    between = gaps[new_sess & same_user]
    assert between.min() >= 1800 and 3600 <= np.median(between) <= 7 * 86400


def test_timestamps_fit_short_period() -> None:
    cfg = SyntheticConfig(num_users=100, duration_days=1.0, seed=1)
    ts = generate_events(cfg).column("timestamp").to_numpy()
    assert ts.min() > cfg.start_timestamp and ts.max() < cfg.start_timestamp + 86400
    with pytest.raises(ValueError, match="too short"):
        generate_events(SyntheticConfig(num_users=100, duration_days=0.01))


def test_funnel_rates(cols: dict[str, np.ndarray]) -> None:
    et = cols["event_type"]
    n = {e: int((et == e).sum()) for e in EVENT_TYPES}
    total, browse = len(et), n["view"] + n["click"]
    assert n["view"] / total > 0.7  # views dominate
    assert 0.05 <= n["click"] / total <= 0.2
    assert 0.05 <= n["cart"] / browse <= 0.10
    assert 0.25 <= n["purchase"] / n["cart"] <= 0.45
    assert 0.01 <= n["purchase"] / total <= 0.03
    assert 0.005 <= n["fav"] / total <= 0.05


def test_purchase_and_cart_follow_a_view(cols: dict[str, np.ndarray]) -> None:
    et, ts = cols["event_type"], cols["timestamp"]
    user, item, sess = cols["user_id_code"], cols["item_id_code"], cols["session_id_code"]
    browse = (et == "view") | (et == "click")

    def first_time(mask: np.ndarray, key: np.ndarray) -> dict[int, int]:
        order = np.lexsort((ts[mask], key[mask]))
        k, t = key[mask][order], ts[mask][order]
        keep = np.r_[True, k[1:] != k[:-1]]
        return dict(zip(k[keep].tolist(), t[keep].tolist()))

    n_items = int(item.max()) + 1
    # Every purchase: an earlier view/click of the same item by the same user.
    first_browse = first_time(browse, user * n_items + item)
    buy = np.flatnonzero(et == "purchase")
    buy_key = (user * n_items + item)[buy]
    assert all(first_browse.get(k, np.iinfo(np.int64).max) < t for k, t in zip(buy_key.tolist(), ts[buy].tolist()))
    # Every cart: an earlier view/click of the same item in the same session.
    sess_key = sess * n_items + item
    first_browse_sess = first_time(browse, sess_key)
    cart = np.flatnonzero(et == "cart")
    cart_pairs = zip(sess_key[cart].tolist(), ts[cart].tolist())
    assert all(first_browse_sess.get(k, np.iinfo(np.int64).max) < t for k, t in cart_pairs)
    # Most purchases follow a cart of the item in the same session; the rest are repeat purchases
    # ("buy again"), which follow an earlier purchase of the same item by the same user.
    carted = set(sess_key[cart].tolist())
    repeat = np.array([k not in carted for k in sess_key[buy].tolist()])
    assert 0 < repeat.sum() < 0.3 * len(buy)
    first_buy = first_time(et == "purchase", user * n_items + item)
    assert all(first_buy[k] < t for k, t in zip(buy_key[repeat].tolist(), ts[buy][repeat].tolist()))


def _hr_at_10(cols: dict[str, np.ndarray]) -> tuple[float, float]:
    """HR@10 on each user's last event for popularity and a first-order Markov model."""
    user, item = cols["user_id_code"], cols["item_id_code"]
    n = int(item.max()) + 1
    last = np.r_[user[1:] != user[:-1], True]
    train = ~last
    pair = train[:-1] & train[1:] & (user[:-1] == user[1:])
    counts = np.zeros((n, n))
    np.add.at(counts, (item[:-1][pair], item[1:][pair]), 1)
    pop = np.bincount(item[train], minlength=n).astype(np.float64)
    target_rows = np.flatnonzero(last)
    target_rows = target_rows[(target_rows > 0) & (user[target_rows - 1] == user[target_rows])]
    target, prev = item[target_rows], item[target_rows - 1]
    hr_pop = float(np.isin(target, np.argsort(-pop, kind="stable")[:10]).mean())
    scores = counts[prev] + 1e-6 * pop[None, :]  # popularity breaks ties / fills unseen rows
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    hr_markov = float((top == target[:, None]).any(axis=1).mean())
    return hr_pop, hr_markov


def test_markov_beats_popularity(cols: dict[str, np.ndarray]) -> None:
    hr_pop, hr_markov = _hr_at_10(cols)
    assert hr_markov >= 2 * hr_pop
    assert hr_markov >= 0.4


def test_interest_drift() -> None:
    """Users visit more distinct categories over their sessions when interests drift."""

    def categories_per_user(drift: float) -> float:
        t = generate_events(SyntheticConfig(num_users=400, mean_sessions_per_user=12, drift_rate=drift, seed=5))
        sess = np.unique(t.column("session_id").to_numpy(zero_copy_only=False), return_inverse=True)[1]
        cat = np.unique(t.column("category").to_numpy(zero_copy_only=False), return_inverse=True)[1]
        user = np.unique(t.column("user_id").to_numpy(zero_copy_only=False), return_inverse=True)[1]
        # Main category of each session = its most frequent category.
        counts = np.zeros((sess.max() + 1, cat.max() + 1))
        np.add.at(counts, (sess, cat), 1)
        main = counts.argmax(axis=1)
        sess_user = np.zeros(sess.max() + 1, dtype=np.int64)
        sess_user[sess] = user
        pairs = np.unique(sess_user * (cat.max() + 1) + main)
        return len(pairs) / (user.max() + 1)

    assert categories_per_user(0.5) > 1.3 * categories_per_user(0.0)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".tsv", ".parquet", ".jsonl", ".jsonl.gz"])
def test_write_events_round_trip(tmp_path, suffix: str) -> None:
    table = generate_events(SyntheticConfig(num_users=30, num_items=50, num_categories=5))
    path = write_events(table, tmp_path / "sub" / f"events{suffix}")
    assert path.exists() and path.name == f"events{suffix}"
    schema = table.schema
    if suffix == ".parquet":
        back = pq.read_table(path)
    elif suffix in (".csv", ".csv.gz", ".tsv"):
        back = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ","),
            convert_options=pacsv.ConvertOptions(column_types=schema),
        )
    else:
        compression = "gzip" if suffix.endswith(".gz") else None
        with pa.input_stream(str(path), compression=compression) as stream:
            back = pajson.read_json(stream, parse_options=pajson.ParseOptions(explicit_schema=schema))
    assert back.select(list(COLUMNS)).equals(table)


def test_write_events_rejects_unknown_suffix(tmp_path) -> None:
    table = generate_events(SyntheticConfig(num_users=5, num_items=20, num_categories=2))
    with pytest.raises(ValueError, match="unsupported suffix"):
        write_events(table, tmp_path / "events.xlsx")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="num_items"):
        SyntheticConfig(num_items=5, num_categories=10)
    with pytest.raises(ValueError, match="cart_rate"):
        SyntheticConfig(cart_rate=1.5)
    with pytest.raises(ValueError, match="transition_prob"):
        SyntheticConfig(transition_prob=0.9, revisit_prob=0.1, explore_prob=0.1)
