"""Larger-than-memory preparation (seqbert.data.partitioned): the partitioned path gives exactly the
in-memory result (sequences, splits, vocabulary, drop report, statistics, protocol, row order), and
the streaming reader gives exactly read_events' table."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from seqbert.data.arrow import to_arrow
from seqbert.data.cleaning import clean_events, count_item_support, k_core, per_user_kept
from seqbert.data.errors import EventDataError
from seqbert.data.partitioned import partition_events, partition_of, prepare_partitioned
from seqbert.data.readers import iter_events, read_events
from seqbert.data.synthetic import SyntheticConfig, generate_events
from seqbert.prepare import PrepareOptions, prepare_file

READ = {"bad_timestamps": "drop", "unknown_events": "drop"}


def noisy_log(seed: int = 5, num_users: int = 250) -> pa.Table:
    """A synthetic log with every kind of row cleaning drops, shuffled (users not contiguous)."""
    rng = np.random.default_rng(seed)
    table = generate_events(SyntheticConfig(num_users=num_users, num_items=300, seed=seed))
    table = table.select(["user_id", "item_id", "event_type", "timestamp", "category", "session_id"])
    table = table.set_column(3, "timestamp", pc.cast(table.column("timestamp"), pa.string()))
    n = table.num_rows
    duplicates = table.take(pa.array(rng.integers(0, n, 150)))
    bot = table.slice(0, 400).set_column(0, "user_id", pa.array(["bot-1"] * 400))
    bot = bot.set_column(3, "timestamp", pa.array([str(1_700_000_000 + i) for i in range(400)]))
    rare = table.slice(0, 30).set_column(1, "item_id", pa.array([f"rare-{i}" for i in range(30)]))
    table = pa.concat_tables([table, duplicates, bot, rare])
    n = table.num_rows
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    for i in rng.choice(n, 20, replace=False):
        columns["user_id"][i] = None  # missing_field
    for i in rng.choice(n, 15, replace=False):
        columns["timestamp"][i] = "not-a-time"  # bad_timestamp
    for i in rng.choice(n, 10, replace=False):
        columns["event_type"][i] = "pageview"  # unknown_event_type
    order = rng.permutation(n)
    return pa.table({name: pa.array([values[i] for i in order], pa.string()) for name, values in columns.items()})


@pytest.fixture(scope="module")
def log_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("logs")
    table = noisy_log()
    csv_path, parquet_path = folder / "events.csv", folder / "events.parquet"
    pacsv.write_csv(table, csv_path)
    pq.write_table(table, parquet_path, row_group_size=3000)
    return {"csv": csv_path, "parquet": parquet_path, "rows": table.num_rows}


def assert_same_prepared(expected, got):
    assert got.drop_report == expected.drop_report
    assert got.statistics == expected.statistics
    protocol = dict(got.protocol)
    assert protocol.pop("partitioning")["num_partitions"] >= 1
    assert protocol == expected.protocol
    assert got.tokenizer.items == expected.tokenizer.items
    assert got.tokenizer.init_kwargs.get("max_length") == expected.tokenizer.init_kwargs.get("max_length")
    for name in ("train", "validation", "test"):
        assert to_arrow(got.splits[name]).equals(to_arrow(expected.splits[name])), name
    assert to_arrow(got.sequences).equals(to_arrow(expected.sequences))


OPTION_CASES = {
    "defaults": PrepareOptions(),
    "global_rules": PrepareOptions(min_item_support=3, max_events_per_user=300, min_user_events=3, vocab_min_count=2),
    "collapse_last_purchase": PrepareOptions(
        collapse_repeated_views=True, loo_target="last_purchase", min_item_support=2, vocab_max_size=100
    ),
    "temporal_fractions": PrepareOptions(split="temporal", min_item_support=2),
    "temporal_explicit": PrepareOptions(split="temporal", validation_start=1_702_000_000, test_start=1_703_000_000),
    "temporal_count_rules": PrepareOptions(  # count rules see only events before validation_start
        split="temporal", k_core=True, min_item_support=3, min_user_events=4, max_events_per_user=150,
        collapse_repeated_views=True,
    ),
    "temporal_bot_rates": PrepareOptions(
        split="temporal", max_events_per_minute=30, min_item_support=2, min_user_events=3
    ),
    "bot_rates_hash_buckets": PrepareOptions(
        max_events_per_minute=30, max_events_per_hour=200, min_item_support=2, unseen_items="hash", num_hash_buckets=16
    ),
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_partitioned_equals_in_memory(log_files, tmp_path, case):
    options = OPTION_CASES[case]
    if not all(hasattr(PrepareOptions(), f.name) for f in dataclasses.fields(options)):
        pytest.skip("option not available")
    expected = prepare_file(log_files["csv"], options, read_options=READ)
    assert sum(expected.drop_report["dropped"].values()) > 0
    got = prepare_partitioned(
        log_files["csv"], options, tmp_path / "out", num_partitions=3, read_options=READ, batch_bytes=64 << 10
    )
    assert_same_prepared(expected, got)
    assert not (tmp_path / "out" / "_partitions").exists()  # work files removed


def test_bot_rates_are_counted(log_files):
    prepared = prepare_file(log_files["csv"], OPTION_CASES["bot_rates_hash_buckets"], read_options=READ)
    assert prepared.drop_report["dropped"]["bot_user"] >= 350  # "bot-1": one event per second (400 rows)
    assert prepared.tokenizer.num_hash_buckets == 16


@pytest.mark.parametrize("num_partitions", [1, 3])
def test_k_core_partitioned_equals_in_memory(log_files, tmp_path, num_partitions):
    """The whole log's k-core (on int32 user/item codes), replayed per partition, is the in-memory result."""
    options = PrepareOptions(k_core=True, min_item_support=30, min_user_events=40)
    expected = prepare_file(log_files["csv"], options, read_options=READ)
    once = prepare_file(log_files["csv"], dataclasses.replace(options, k_core=False), read_options=READ)
    assert expected.drop_report["kept_rows"] < once.drop_report["kept_rows"]  # more than one pass
    got = prepare_partitioned(
        log_files["csv"], options, tmp_path / "out", num_partitions=num_partitions, read_options=READ
    )
    assert_same_prepared(expected, got)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("count_before", [None, 1_700_005_000])
def test_k_core_replay_equals_clean_events(seed, count_before):
    """clean_events(core=k_core(partitions)) on each user partition adds up to clean_events(k_core=True),
    also when the count rules see only the events before a cutoff."""
    rng = np.random.default_rng(seed)
    n = 600
    events = pa.table({
        "user_id": pa.array([f"u{k}" for k in rng.integers(0, 40, n)]),
        "item_id": pa.array([f"i{k}" for k in rng.integers(0, 60, n)]),
        "event_type": pa.array(["view"] * n),
        "timestamp": pa.array(1_700_000_000 + rng.integers(0, 10_000, n), pa.int64()),
        "row_index": pa.array(np.arange(n, dtype=np.int64)),
    })  # fmt: skip
    rules = dict(min_item_support=int(rng.integers(2, 12)), min_user_events=int(rng.integers(1, 20)))
    expected_rows, expected = clean_events(events, k_core=True, count_before=count_before, **rules)
    parts = partition_of(events.column("user_id"), 3)
    tables = [events.filter(pa.array(parts == k)) for k in range(3)]
    core = k_core([per_user_kept(t, count_before=count_before) for t in tables], count_before=count_before, **rules)
    reports = [clean_events(t, core=core, count_before=count_before, **rules) for t in tables]
    for reason in ("rare_item", "short_user"):
        assert sum(report.dropped[reason] for _, report in reports) == expected.dropped[reason], reason
    kept = pa.concat_tables([to_arrow(rows) for rows, _ in reports]).column("row_index").to_numpy()
    assert sorted(kept) == sorted(to_arrow(expected_rows).column("row_index").to_numpy())


def test_merge_streams_small_batches(log_files, tmp_path, monkeypatch):
    """Many small record batches and merge chunks (as for a large log) give the same result."""
    from seqbert.data import partitioned

    monkeypatch.setattr(partitioned, "PART_BATCH_ROWS", 7)
    monkeypatch.setattr(partitioned, "MERGE_ROWS", 5)
    options = PrepareOptions(min_item_support=2)
    expected = prepare_file(log_files["csv"], options, read_options=READ)
    got = prepare_partitioned(log_files["csv"], options, tmp_path / "out", 3, read_options=READ)
    assert_same_prepared(expected, got)


@pytest.mark.parametrize("num_partitions", [1, 4, 64])
def test_partitioned_parquet_any_partition_count(log_files, tmp_path, num_partitions):
    options = PrepareOptions(min_item_support=2, max_events_per_user=300)
    expected = prepare_file(log_files["parquet"], options, read_options=READ)
    got = prepare_partitioned(log_files["parquet"], options, tmp_path / "out", num_partitions, read_options=READ)
    assert_same_prepared(expected, got)


def test_partitioned_result_is_a_prepared_folder(log_files, tmp_path):
    from seqbert.prepared import PreparedData, encode_for_pretraining

    got = prepare_partitioned(log_files["csv"], None, tmp_path / "out", 2, read_options=READ)
    reloaded = PreparedData.load(tmp_path / "out")
    assert reloaded.drop_report == got.drop_report and reloaded.tokenizer.items == got.tokenizer.items
    encoded = encode_for_pretraining(reloaded.splits["train"], reloaded.tokenizer, 50)
    assert encoded.num_rows > 0 and max(max(row) for row in encoded["input_ids"]) < reloaded.tokenizer.vocab_size


def test_each_user_lands_in_one_partition(log_files, tmp_path):
    batches = iter_events(log_files["csv"], batch_bytes=32 << 10, **READ)
    parts = partition_events(batches, tmp_path / "parts", 5)
    assert parts.input_rows == log_files["rows"] and len(parts.files) == 5
    owners: dict[str, int] = {}
    total = 0
    for k, path in enumerate(parts.files):
        with pa.OSFile(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()
        total += table.num_rows
        for user in set(table.column("user_id").to_pylist()):
            assert owners.setdefault(user, k) == k
    assert total == log_files["rows"]
    # Deterministic: the same id always goes to the same partition, null ids to partition 0.
    ids = pa.array(["u1", None, "u2", "u1"])
    assert partition_of(ids, 7).tolist() == partition_of(ids, 7).tolist()
    assert partition_of(ids, 7)[1] == 0 and partition_of(ids, 7)[0] == partition_of(ids, 7)[3]


def test_item_support_is_global(log_files):
    """rare_item with summed per-partition counts == rare_item on the whole log."""
    events = read_events(log_files["csv"], **READ)
    table = to_arrow(events)
    whole, whole_report = clean_events(events, min_item_support=4, max_events_per_user=300)
    halves = [
        table.filter(pa.array(np.array([hash(u) % 2 == k for u in table.column("user_id").to_pylist()])))
        for k in (0, 1)
    ]
    support = pa.concat_tables([count_item_support(h, max_events_per_user=300) for h in halves])
    support = support.group_by("item_id").aggregate([("count", "sum")]).rename_columns(["item_id", "count"])
    parts = [clean_events(h, min_item_support=4, max_events_per_user=300, item_support=support) for h in halves]
    assert sum(r.dropped["rare_item"] for _, r in parts) == whole_report.dropped["rare_item"] > 0
    kept = pa.concat_tables([to_arrow(c) for c, _ in parts]).sort_by("row_index")
    assert kept.equals(to_arrow(whole))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_iter_events_equals_read_events(log_files, fmt):
    expected = to_arrow(read_events(log_files[fmt], **READ))
    batches = list(iter_events(log_files[fmt], batch_bytes=16 << 10, batch_rows=1000, **READ))
    assert len(batches) > 3
    assert pa.concat_tables(batches).cast(expected.schema).equals(expected)


def test_iter_events_errors_name_the_global_row(tmp_path):
    rows = [f"u{i % 50},i{i % 70},view,{1_700_000_000 + i}" for i in range(5000)]
    rows[4321] = "u1,i1,view,not-a-time"
    path = tmp_path / "bad.csv"
    path.write_text("user_id,item_id,event_type,timestamp\n" + "\n".join(rows) + "\n")
    with pytest.raises(EventDataError) as in_memory:
        read_events(path)
    with pytest.raises(EventDataError) as streamed:
        list(iter_events(path, batch_bytes=8 << 10))
    for error in (in_memory.value, streamed.value):
        assert "row 4322 (line 4323)" in str(error)


def test_csv_integer_timestamp_fast_path_falls_back(tmp_path):
    """The csv reader parses integer timestamps directly; a late non-integer value re-reads as strings."""
    rows = [f"u{i % 9},i{i % 13},view,{1_700_000_000 + i}" for i in range(30_000)]
    rows[-1] = "u1,i1,view,2023-11-15T00:00:00Z"
    path = tmp_path / "mixed.csv"
    path.write_text("user_id,item_id,event_type,timestamp\n" + "\n".join(rows) + "\n")
    table = to_arrow(read_events(path))
    assert table.column("timestamp")[-1].as_py() == 1_700_006_400
    assert table.column("timestamp")[0].as_py() == 1_700_000_000


def test_cli_k_core_with_partitions_matches_in_memory(log_files, tmp_path):
    """`seqbert prepare --k-core --partitions K` is accepted and drops exactly what the in-memory k-core drops."""
    import json

    from seqbert.cli import main

    common = ["prepare", str(log_files["csv"]), "--k-core", "--min-item-support", "30", "--min-user-events", "40",
              "--unknown-events", "drop", "--bad-timestamps", "drop"]  # fmt: skip
    assert main([*common, "--output-dir", str(tmp_path / "memory")]) == 0
    assert main([*common, "--partitions", "2", "--output-dir", str(tmp_path / "parts")]) == 0
    memory, parts = (json.loads((tmp_path / d / "drop_report.json").read_text()) for d in ("memory", "parts"))
    assert parts["dropped"] == memory["dropped"] and parts["kept_rows"] == memory["kept_rows"]
