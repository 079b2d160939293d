"""Inputs made of many files (seqbert.data.shards): folders of shards, globs, lists, Hive partitions,
fsspec URIs, bad shards named in errors, protocol.json shard hashes, and --since/--until with
partition pruning."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from seqbert.cli import main
from seqbert.data.errors import EventDataError
from seqbert.data.partitioned import prepare_partitioned
from seqbert.data.readers import iter_events, read_events
from seqbert.data.shards import InputRecord, TimeWindow, inputs_digest, parse_time, resolve_inputs
from seqbert.data.synthetic import SyntheticConfig, generate_events
from seqbert.prepare import PrepareOptions, file_digest, prepare_file

DAY = 86_400


def _log() -> pa.Table:
    """A small synthetic log over 10 days with a few exact duplicates, sorted by day (the shard order)."""
    table = generate_events(SyntheticConfig(num_users=120, num_items=80, duration_days=10, seed=3))
    table = table.select(["user_id", "item_id", "event_type", "timestamp", "category"])
    table = pa.concat_tables([table, table.slice(0, 40)])  # duplicates, counted by cleaning
    day = pc.strftime(pc.cast(table.column("timestamp"), pa.timestamp("s")), "%Y-%m-%d")
    table = table.append_column("dt", day)
    order = pc.sort_indices(table, [("dt", "ascending")])  # stable: within a day the original order
    return table.take(order)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    table = _log()
    days = sorted(set(table.column("dt").to_pylist()))
    for fmt in ("parquet", "csv"):
        for day in days:
            folder = root / fmt / f"dt={day}"
            folder.mkdir(parents=True)
            part = table.filter(pc.equal(table.column("dt"), day)).drop_columns(["dt"])
            half = part.num_rows // 2
            for k, piece in enumerate((part.slice(0, half), part.slice(half))):
                if fmt == "parquet":
                    pq.write_table(piece, folder / f"part-{k:05d}.parquet", row_group_size=100)
                else:
                    pacsv.write_csv(piece, folder / f"part-{k:05d}.csv")
        # What Spark / Hadoop leave beside the data: never read.
        (root / fmt / "_SUCCESS").write_bytes(b"")
        (root / fmt / f"dt={days[0]}" / ".part-00000.crc").write_bytes(b"not data")
        (root / fmt / "_committed_123").write_text("{}")
        (root / fmt / "_temporary").mkdir()
        (root / fmt / "_temporary" / "part-99.parquet").write_bytes(b"half-written")
    single = table.drop_columns(["dt"])
    pq.write_table(single, root / "single.parquet", row_group_size=100)
    pacsv.write_csv(single, root / "single.csv")
    return {"root": root, "table": table, "days": days}


def _splits(prepared) -> dict[str, pa.Table]:
    out = {name: prepared.splits[name].data.table for name in ("train", "validation", "test")}
    out["sequences"] = prepared.sequences.data.table
    return out


def _same_result(a, b) -> None:
    for name, table in _splits(a).items():
        assert table.equals(_splits(b)[name]), name
    report_a, report_b = dict(a.drop_report), dict(b.drop_report)
    report_a.pop("source"), report_b.pop("source")
    assert report_a == report_b
    assert a.tokenizer.items == b.tokenizer.items


# ---------------------------------------------------------------------------- folders, globs, lists
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_folder_gives_the_single_file_result(data, fmt):
    root = data["root"]
    options = PrepareOptions(split="temporal")
    single = prepare_file(root / f"single.{fmt}", options)
    folder = prepare_file(root / fmt, options)
    _same_result(single, folder)
    assert folder.drop_report["dropped"]["duplicate"] >= 40
    # The single file keeps its record: path and content hash, no shard list.
    assert set(single.protocol["source"]) == {"path", "xxh3_128", "read_options"}


def test_glob_and_list_read_the_same_events(data):
    root = data["root"]
    folder = read_events(root / "parquet").data.table
    glob = read_events(str(root / "parquet" / "dt=*" / "*.parquet")).data.table
    listed = read_events([str(root / "parquet" / f"dt={day}") for day in data["days"]]).data.table
    assert folder.equals(glob) and folder.equals(listed)
    assert folder.num_rows == data["table"].num_rows
    shards = resolve_inputs(root / "parquet").shards
    assert len(shards) == 2 * len(data["days"])
    assert not any(Path(s.path).name.startswith(("_", ".")) or "_temporary" in s.path for s in shards)


def test_iter_events_over_shards_matches_read_events(data):
    root = data["root"]
    whole = read_events(root / "csv").data.table
    streamed = pa.concat_tables(iter_events(root / "csv", batch_bytes=4096))
    assert streamed.equals(whole)


def test_hive_partitions_become_columns(data, tmp_path):
    table = data["table"].slice(0, 300)
    for country in ("de", "fr"):
        folder = tmp_path / f"country={country}"
        folder.mkdir()
        pq.write_table(table.drop_columns(["dt", "category"]), folder / "part-0.parquet")
    events = read_events(tmp_path, column_map={"category": "country"})
    assert set(events["category"]) == {"de", "fr"}
    # The date partition as the timestamp column: an ISO date string read like any other.
    by_day = read_events(str(data["root"] / "parquet" / "dt=*" / "*.parquet"), column_map={"timestamp": "dt"})
    days = pc.strftime(pc.cast(by_day.data.table.column("timestamp"), pa.timestamp("s")), "%Y-%m-%d")
    assert days.to_pylist() == data["table"].column("dt").to_pylist()


def test_fsspec_memory_uri(data):
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    base = data["root"] / "parquet"
    for path in base.rglob("*"):
        if path.is_file():
            memory.pipe(f"/sharded-test/{path.relative_to(base)}", path.read_bytes())
    try:
        events = read_events("memory://sharded-test")
        assert events.data.table.equals(read_events(base).data.table)
        prepared = prepare_file("memory://sharded-test/dt=*/*.parquet", PrepareOptions())
        shards = prepared.protocol["source"]["shards"]
        assert len(shards) == 2 * len(data["days"]) and shards[0]["path"].startswith("memory://")
        assert shards[0]["xxh3_128"] == file_digest(base / shards[0]["path"].split("sharded-test/")[1])
    finally:
        memory.rm("/sharded-test", recursive=True)


# -------------------------------------------------------------------------------------- bad shards
def test_bad_csv_shard_is_named_with_its_row(tmp_path, data):
    table = data["table"].slice(0, 50).drop_columns(["dt"])
    pacsv.write_csv(table, tmp_path / "part-0.csv")
    lines = (tmp_path / "part-0.csv").read_text().splitlines()
    lines[8] += ",extra-field"  # data row 8, line 9
    (tmp_path / "part-1.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(EventDataError) as error:
        read_events(tmp_path)
    message = str(error.value)
    assert str(tmp_path / "part-1.csv") in message and "row 8" in message and "line 9" in message


def test_bad_parquet_shards_are_named(tmp_path, data):
    table = data["table"].slice(0, 50).drop_columns(["dt"])
    pq.write_table(table, tmp_path / "part-0.parquet")
    pq.write_table(table.drop_columns(["item_id"]), tmp_path / "part-1.parquet")
    with pytest.raises(EventDataError, match=r"part-1\.parquet: missing required column 'item_id'"):
        read_events(tmp_path)
    # A wrongly typed column: timestamps as free text, the bad value's row in that shard.
    times = table.column("timestamp").cast(pa.string()).to_pylist()
    times[6] = "yesterday"
    pq.write_table(table.set_column(3, "timestamp", pa.array(times)), tmp_path / "part-1.parquet")
    with pytest.raises(EventDataError) as error:
        read_events(tmp_path)
    assert str(tmp_path / "part-1.parquet") in str(error.value) and "row 7" in str(error.value)


def test_mixed_formats_are_refused_naming_the_files(tmp_path, data):
    table = data["table"].slice(0, 20).drop_columns(["dt"])
    pq.write_table(table, tmp_path / "a.parquet")
    pacsv.write_csv(table, tmp_path / "b.csv")
    with pytest.raises(EventDataError, match=r"mixes file formats.*a\.parquet.*b\.csv"):
        read_events(tmp_path)


# ------------------------------------------------------------------------------------- time window
def test_parse_time_forms():
    assert parse_time("2024-05-01") == parse_time("2024-05-01T00:00:00Z") == 1_714_521_600
    assert parse_time("2024-05-01T02:00:00+02:00") == 1_714_521_600
    assert parse_time("1714521600") == parse_time(1_714_521_600.7) == 1_714_521_600
    with pytest.raises(ValueError, match="must be after"):
        TimeWindow.of("2024-05-02", "2024-05-01")


def test_window_prunes_partitions_and_counts_rows_read(data, tmp_path):
    root, days = data["root"], data["days"]
    # Copy the folder and corrupt the partitions the window must never open: reading one would fail.
    folder = tmp_path / "events"
    for path in (root / "parquet").glob("dt=*/*.parquet"):
        target = folder / path.relative_to(root / "parquet")
        target.parent.mkdir(parents=True, exist_ok=True)
        day = path.parent.name.split("=")[1]
        far = day < days[2] or day > days[6]  # > one day of slack from the window days[3] .. days[6)
        target.write_bytes(b"corrupt, never read" if far else path.read_bytes())
    since, until = days[3], days[6]
    record = InputRecord()
    events = read_events(folder, since=since, until=until, record=record).data.table
    times = events.column("timestamp").to_numpy()
    assert times.min() >= parse_time(since) and times.max() < parse_time(until)
    expected = data["table"].filter(
        pc.and_(pc.greater_equal(data["table"].column("dt"), since), pc.less(data["table"].column("dt"), until))
    )
    assert events.num_rows == expected.num_rows
    skipped = {Path(f["path"]).parent.name for f in record.protocol()["time_window"]["files_skipped"]}
    assert skipped == {f"dt={d}" for d in days if d < days[2] or d > days[6]}
    # The slack partitions were read: their rows outside the window are counted, or never read (row groups).
    slack_rows = data["table"].filter(pc.is_in(data["table"].column("dt"), pa.array([days[2], days[6]]))).num_rows
    assert record.outside_time_window + record.rows_not_read == slack_rows

    options = PrepareOptions(split="temporal")
    read = {"since": since, "until": until}
    prepared = prepare_file(folder, options, read_options=read)
    report = prepared.drop_report
    assert list(report["dropped"])[0] == "outside_time_window"
    assert report["dropped"]["outside_time_window"] == record.outside_time_window
    assert report["input_rows"] == report["kept_rows"] + sum(report["dropped"].values())
    window = prepared.protocol["source"]["time_window"]
    assert window["partition_time_column"] == "dt" and len(window["files_skipped"]) == 2 * len(skipped)
    # Larger than memory: the same result.
    partitioned = prepare_partitioned(folder, options, tmp_path / "out", 3, read_options=read)
    _same_result(prepared, partitioned)
    assert partitioned.protocol["source"]["time_window"]["files_skipped"] == window["files_skipped"]


def test_window_on_one_parquet_file_skips_row_groups(data):
    path = data["root"] / "single.parquet"
    days = data["days"]
    record = InputRecord()
    events = read_events(path, since=days[4], until=days[5], record=record)
    assert record.row_groups_skipped > 0 and record.rows_not_read > 0
    assert record.rows_read + record.rows_not_read == data["table"].num_rows
    full = read_events(path).data.table
    inside = pc.and_(
        pc.greater_equal(full.column("timestamp"), parse_time(days[4])), pc.less(full.column("timestamp"), parse_time(days[5]))
    )
    assert events.data.table.drop_columns(["row_index"]).equals(full.filter(inside).drop_columns(["row_index"]))


# -------------------------------------------------------------------------------------- protocol
def test_protocol_records_every_shard_and_its_hash(data, tmp_path):
    root = data["root"]
    prepared = prepare_file(root / "csv", PrepareOptions(), output_dir=tmp_path / "out")
    source = json.loads((tmp_path / "out" / "protocol.json").read_text())["source"]
    files = sorted((root / "csv").glob("dt=*/part-*.csv"))
    assert [s["path"] for s in source["shards"]] == [str(p) for p in files]
    for shard, path in zip(source["shards"], files):
        assert shard["bytes"] == os.path.getsize(path) and shard["xxh3_128"] == file_digest(path)
        assert shard["partition"] == {"dt": path.parent.name.split("=")[1]}
    inputs = resolve_inputs(root / "csv")
    assert source["xxh3_128"] == inputs_digest(inputs.shards, [s["xxh3_128"] for s in source["shards"]], "xxh3_128")
    assert prepared.protocol["source"]["xxh3_128"] == source["xxh3_128"]


def test_parquet_footer_hash_reads_only_footers_and_sees_changes(data, tmp_path):
    fsspec = pytest.importorskip("fsspec")
    base = data["root"] / "parquet"
    options = PrepareOptions(input_hash="parquet_footer")
    memory = fsspec.filesystem("memory")
    for path in base.rglob("part-*.parquet"):
        memory.pipe(f"/footer-test/{path.relative_to(base)}", path.read_bytes())
    try:
        remote = prepare_file("memory://footer-test", options).protocol["source"]
    finally:
        memory.rm("/footer-test", recursive=True)
    local = prepare_file(base, options).protocol["source"]
    assert [s["parquet_footer"] for s in remote["shards"]] == [s["parquet_footer"] for s in local["shards"]]
    assert remote["parquet_footer"] == local["parquet_footer"] and "xxh3_128" not in local
    # Another value in a shard gives another footer (its statistics and sizes change).
    first = sorted(base.glob("dt=*/part-*.parquet"))[0]
    table = pq.read_table(first)
    changed = table.set_column(1, "item_id", pc.binary_join_element_wise(table.column("item_id"), "x", ""))
    pq.write_table(changed, tmp_path / "changed.parquet", row_group_size=100)
    assert file_digest(tmp_path / "changed.parquet", "parquet_footer") != file_digest(first, "parquet_footer")
    with pytest.raises(ValueError, match="parquet files only"):
        prepare_file(data["root"] / "csv", options)
    with pytest.raises(ValueError, match="not a parquet file"):
        prepare_file(data["root"] / "single.csv", options)


# ------------------------------------------------------------------------------------------- CLI
def test_cli_prepare_folder_with_window(data, tmp_path, capsys):
    root, days = data["root"], data["days"]
    out = tmp_path / "prepared"
    code = main([
        "prepare", str(root / "parquet" / f"dt={days[0]}"), str(root / "parquet" / f"dt={days[1]}"),
        str(root / "parquet" / f"dt={days[2]}"), "--output-dir", str(out), "--until", days[2],
    ])  # fmt: skip
    assert code in (0, None)
    printed = capsys.readouterr().out
    assert "Time window:" in printed and "outside_time_window" in printed
    protocol = json.loads((out / "protocol.json").read_text())
    assert len(protocol["source"]["shards"]) == 6 and protocol["source"]["time_window"]["until_iso"].startswith(days[2])
    drop = json.loads((out / "drop_report.json").read_text())
    assert drop["dropped"]["outside_time_window"] == int(np.sum(data["table"].column("dt").to_numpy(zero_copy_only=False) == days[2]))


def test_cli_help_documents_the_new_options(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--since TIME", "--until TIME", "--partition-time-column NAME"):
        assert option in text
    assert "default: no lower bound" in text and "default: detected" in text and "a folder of shards" in text


# ------------------------------------------------------------------------------- other readers
def test_recommend_and_embed_read_a_folder(data):
    from seqbert.batch_scoring import read_user_sequences

    root = data["root"]
    single = read_user_sequences(root / "single.parquet")
    assert read_user_sequences(str(root / "parquet")).equals(single)
    assert read_user_sequences(str(root / "csv" / "dt=*" / "*.csv")).equals(single)


def test_model_card_counts_the_shards_instead_of_listing_them(data):
    from seqbert.hub import _compact_sources

    prepared = prepare_file(data["root"] / "parquet", PrepareOptions(), read_options={"since": data["days"][5]})
    compact = _compact_sources(prepared.protocol)["source"]
    assert compact["shards"].startswith(f"{2 * (len(data['days']) - 4)} files")
    assert compact["time_window"]["files_skipped"] == 8 and compact["xxh3_128"] == prepared.protocol["source"]["xxh3_128"]
    single = prepare_file(data["root"] / "single.parquet", PrepareOptions()).protocol
    assert _compact_sources(single) is single
