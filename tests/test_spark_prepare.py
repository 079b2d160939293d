"""The Spark path (seqbert.data.spark) writes what `seqbert prepare` writes: same rows in the same order,
same drop report, statistics, protocol and vocabulary, on a small dirty log (every drop reason occurs).

One local SparkSession for the module (local[2], 3 shuffle partitions, no UI); skipped when pyspark or
a Java runtime is missing."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from seqbert.data.readers import read_events
from seqbert.data.synthetic import SyntheticConfig, generate_events
from seqbert.prepare import PrepareOptions, prepare_events

pytest.importorskip("pyspark", reason="the Spark path needs the `spark` extra (pip install 'seqbert[spark]')")
if (
    shutil.which("java") is None
    or subprocess.run(["java", "-version"], capture_output=True, check=False).returncode != 0
):
    pytest.skip("the Spark path needs a Java runtime (`java` on PATH)", allow_module_level=True)

from seqbert.data.spark import check_spark_options, numpy_quantile, prepare_spark, quiet_pandas_check

BASE = {
    "min_user_events": 3, "min_item_support": 2, "max_events_per_minute": 8, "max_events_per_user": 400,
    "collapse_repeated_views": True, "max_length": 16,
}  # fmt: skip
CASES = {
    "leave_one_out": PrepareOptions(split="leave_one_out", **BASE),
    "temporal": PrepareOptions(split="temporal", validation_fraction=0.15, test_fraction=0.15, k_core=True, **BASE),
    "last_purchase": PrepareOptions(
        split="leave_one_out", loo_target="last_purchase", min_user_events=2, session_gap_seconds=600, max_length=16
    ),
}


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    quiet_pandas_check()
    session = (
        SparkSession.builder.master("local[2]")
        .appName("seqbert-test-spark-prepare")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "3")
        .config("spark.default.parallelism", "2")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # Tiny data in a short-lived JVM: compiling (query plans, C2 JIT) costs more than it saves; with these
        # the module ran in 45 s instead of 100 s on a loaded 2-core machine.
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def dirty_log(path: Path) -> Path:
    """A synthetic log plus rows for every drop reason, written as csv with string timestamps."""
    table = generate_events(SyntheticConfig(num_users=60, num_items=40, mean_sessions_per_user=3, seed=7))
    rows = table.to_pylist()
    rng = np.random.default_rng(0)
    for row in rows:  # null session ids: the gap rule takes over for those events
        if rng.random() < 0.1:
            row["session_id"] = None
    t0 = min(row["timestamp"] for row in rows)  # before either temporal cutoff
    extra = [dict(rows[i]) for i in rng.choice(len(rows), 25, replace=False)]  # duplicate
    extra += [dict(rows[3], user_id=None), dict(rows[4], item_id=None)]  # missing_field
    extra += [dict(rows[5], timestamp="not a time"), dict(rows[6], timestamp="-5")]  # bad_timestamp
    extra += [dict(rows[7], event_type="hover"), dict(rows[8], event_type="zoom")]  # unknown_event_type
    extra += [dict(rows[9], user_id="bot", item_id=f"i{k % 5:05d}", timestamp=t0 + k) for k in range(12)]  # bot_user
    extra += [dict(rows[10], user_id=f"rare{k}", item_id=f"rare-{k}", timestamp=t0 + 60 * k) for k in range(3)]
    extra += [dict(rows[11], user_id="short", timestamp=t0 + 5)]  # short_user
    extra += [dict(rows[12], user_id="twins", timestamp=t0 + 100, event_type="view") for _ in range(2)]  # dup ts
    extra += [dict(rows[12], user_id="twins", item_id=rows[13]["item_id"], timestamp=t0 + 100, event_type="view")]
    # k_core: dropping the short user "cascade" (2 events) takes "cascade-item" below its support, and with it
    # the user "anchor" below min_user_events, in a second pass.
    extra += [
        dict(rows[14], user_id=user, item_id="cascade-item", timestamp=t0 + 10) for user in ("cascade", "anchor")
    ]
    extra += [dict(rows[14], user_id="cascade", timestamp=t0 + 20)]
    extra += [dict(rows[k], user_id="anchor", timestamp=t0 + 30 + k) for k in (1, 2)]
    every = rows + extra
    order = rng.permutation(len(every))  # not grouped by user: the general paths of both engines
    shuffled = [every[i] for i in order]
    for row in shuffled:
        row["timestamp"] = None if row["timestamp"] is None else str(row["timestamp"])
    schema = pa.schema([(name, pa.string() if name == "timestamp" else table.schema.field(name).type)
                        for name in table.column_names])  # fmt: skip
    pacsv.write_csv(pa.Table.from_pylist(shuffled, schema=schema), path)
    return path


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spark_events")
    dataset = read_events(dirty_log(folder / "events.csv"), bad_timestamps="drop", unknown_events="drop")
    parquet = folder / "events.parquet"
    pq.write_table(dataset.data.table, parquet)
    return dataset, parquet


def read_parts(folder: Path) -> pa.Table:
    parts = sorted(folder.glob("part-*.parquet"))
    assert parts and [p.name for p in parts] == [f"part-{k:05d}.parquet" for k in range(len(parts))]
    assert sorted(p.name for p in folder.iterdir()) == [p.name for p in parts]  # no _SUCCESS / .crc files
    return pa.concat_tables([pq.read_table(p) for p in parts])


def assert_same_table(spark_table: pa.Table, expected: pa.Table, name: str) -> None:
    assert spark_table.column_names == expected.column_names, name
    assert spark_table.schema.types == expected.schema.types, name
    assert spark_table.to_pylist() == expected.to_pylist(), name


@pytest.mark.parametrize("case", list(CASES))
def test_spark_prepare_equals_prepare(case, spark, events, tmp_path, caplog):
    caplog.set_level("INFO", logger="seqbert")
    dataset, parquet = events
    options = CASES[case]
    frame = spark.read.parquet(str(parquet))
    if case == "last_purchase":  # sessions from the time gaps alone
        dataset, frame = dataset.remove_columns("session_id"), frame.drop("session_id")
    expected = prepare_events(dataset, options, source_name="events.parquet")
    shards = 9 if case == "leave_one_out" else 1000  # several range-partitioned shards once (a job more per write)
    folder = prepare_spark(
        frame,
        options,
        tmp_path / "prepared",
        source_name="events.parquet",
        rows_per_shard=shards,
    )

    for split in ("train", "validation", "test"):
        assert_same_table(read_parts(folder / "dataset" / split), expected.splits[split].data.table, split)
    assert_same_table(read_parts(folder / "sequences"), expected.sequences.data.table, "sequences")
    assert (len(list((folder / "sequences").glob("*.parquet"))) > 1) == (shards == 9)

    report = json.loads((folder / "drop_report.json").read_text())
    assert report == expected.drop_report
    if case != "last_purchase":  # the dirty rows exercise every reason
        assert all(report["dropped"][reason] > 0 for reason in report["dropped"]), report
    if options.k_core:  # a pass drops what the previous one left below its count
        assert "prepare-spark: k-core stable after 3 pass(es)" in caplog.text
    assert json.loads((folder / "statistics.json").read_text()) == json.loads(json.dumps(expected.statistics))
    protocol = json.loads((folder / "protocol.json").read_text())
    assert protocol.pop("layout") == "parquet" and protocol.pop("engine") == "spark"
    shards = protocol.pop("shards")
    assert {k: sum(s["rows"] for s in v) for k, v in shards.items()} == {
        "sequences": expected.sequences.num_rows,
        **{f"dataset/{k}": v for k, v in expected.protocol["rows"].items()},
    }
    assert protocol == json.loads(json.dumps(expected.protocol, default=str))

    from seqbert.tokenization_seqbert import BehaviorTokenizer

    assert BehaviorTokenizer.from_pretrained(str(folder / "tokenizer")).items == expected.tokenizer.items

    from seqbert import prepared

    if getattr(prepared, "PARQUET_LAYOUT", None) == "parquet":  # PreparedData.load reads the parquet layout
        loaded = prepared.PreparedData.load(folder)
        for name, split in expected.splits.items():
            assert loaded.splits[name].features == split.features and loaded.splits[name][:] == split[:], name
        assert loaded.sequences.features == expected.sequences.features
        assert loaded.tokenizer.items == expected.tokenizer.items


def test_numpy_quantile_is_numpy_to_the_bit():
    rng = np.random.default_rng(1)
    for _ in range(300):
        values = np.sort(
            rng.integers(1_600_000_000, 1_600_000_000 + int(rng.integers(1, 10**7)), int(rng.integers(1, 60)))
        )
        for q in (0.05, 0.25, 0.5, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 0.7, rng.random()):
            got = numpy_quantile(len(values), q, lambda k, values=values: int(values[k]))
            assert got == np.quantile(values, q) and type(float(got)) is float
        assert numpy_quantile(
            len(values), np.true_divide(95, 100), lambda k, values=values: int(values[k])
        ) == np.percentile(values, 95)


def test_unsupported_options_are_refused():
    with pytest.raises(ValueError, match=r"does not support: clean="):
        check_spark_options(PrepareOptions(k_core=True, clean={"item_support": None}))
    check_spark_options(PrepareOptions())  # the defaults are supported
    check_spark_options(replace(CASES["temporal"], test_start=1_700_000_000))


def test_command_line_reads_raw_event_names(spark, tmp_path):
    """`python -m seqbert.data.spark` on a csv with other event names: what `seqbert prepare` makes of it."""
    from seqbert.data.spark import main
    from seqbert.prepare import prepare_file

    table = generate_events(SyntheticConfig(num_users=15, num_items=20, seed=3))
    names = {"view": "PV", "purchase": "buy ", "cart": "hover"}  # hover: unknown, dropped and counted
    kinds = pa.array([names.get(kind, kind) for kind in table.column("event_type").to_pylist()])
    table = table.set_column(table.column_names.index("event_type"), "event_type", kinds)
    path = tmp_path / "raw.csv"
    pacsv.write_csv(table, path)
    assert (
        main([str(path), "--output-dir", str(tmp_path / "out"), "--unknown-events", "drop", "--rows-per-shard", "99"])
        == 0
    )
    expected = prepare_file(path, PrepareOptions(), read_options={"unknown_events": "drop"})
    assert_same_table(read_parts(tmp_path / "out" / "sequences"), expected.sequences.data.table, "sequences")
    report = json.loads((tmp_path / "out" / "drop_report.json").read_text())
    assert report == expected.drop_report and report["dropped"]["unknown_event_type"] > 0
    with pytest.raises(ValueError, match="unknown event types: 'hover'"):
        main([str(path), "--output-dir", str(tmp_path / "out2")])
