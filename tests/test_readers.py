"""Tests for seqbert.data.readers.read_events: formats, mapping, timestamps, and every bad-input error."""

from __future__ import annotations

import gzip
import json
import logging
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from seqbert.data.cleaning import clean_events
from seqbert.data.errors import EventDataError
from seqbert.data.readers import BAD_TIMESTAMP_MARKER, ROW_INDEX, UNKNOWN_EVENT_MARKER, read_events
from seqbert.data.schema import ARROW_TYPES

TAOBAO_SLICE = Path("/work/shared/data/taobao_userbehavior/time_slice_2017-11-26_0900-1110_CST.csv")

ROWS = [
    # user, item, event, timestamp, category, price
    ("u1", "i1", "view", 1511658000, "c1", 1.5),
    ("u1", "i2", "cart", 1511658060, "c1", 2.0),
    ("u2", "i1", "purchase", 1511658120, "c2", None),
    ("007", "i3", "fav", 1511658180, None, 3.25),
]
EXPECTED = {
    "user_id": ["u1", "u1", "u2", "007"],
    "item_id": ["i1", "i2", "i1", "i3"],
    "event_type": ["view", "cart", "purchase", "fav"],
    "timestamp": [1511658000, 1511658060, 1511658120, 1511658180],
    "category": ["c1", "c1", "c2", None],
    "price": [1.5, 2.0, None, 3.25],
    ROW_INDEX: [0, 1, 2, 3],
}
HEADER = ["user_id", "item_id", "event_type", "timestamp", "category", "price"]


def _text(rows, sep=",", header=HEADER) -> str:
    lines = [sep.join(header)] if header else []
    for row in rows:
        lines.append(sep.join("" if v is None else str(v) for v in row))
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def csv_file(tmp_path: Path, body: str, name: str = "events.csv") -> Path:
    return write(tmp_path / name, body)


def minimal(rows: list[tuple], tmp_path: Path, name: str = "events.csv") -> Path:
    """user_id,item_id,event_type,timestamp rows (values written verbatim)."""
    return csv_file(tmp_path, _text(rows, header=HEADER[:4]), name)


# ------------------------------------------------------------------------------------- formats
def _write_format(fmt: str, tmp_path: Path) -> Path:
    if fmt == "csv":
        return write(tmp_path / "events.csv", _text(ROWS))
    if fmt == "tsv":
        return write(tmp_path / "events.tsv", _text(ROWS, sep="\t"))
    if fmt == "csv.gz":
        path = tmp_path / "events.csv.gz"
        path.write_bytes(gzip.compress(_text(ROWS).encode()))
        return path
    if fmt == "jsonl":
        path = tmp_path / "events.jsonl"
        path.write_text("\n".join(json.dumps(dict(zip(HEADER, r))) for r in ROWS) + "\n")
        return path
    if fmt == "jsonl.gz":
        path = tmp_path / "events.jsonl.gz"
        path.write_bytes(gzip.compress(("\n".join(json.dumps(dict(zip(HEADER, r))) for r in ROWS) + "\n").encode()))
        return path
    if fmt == "parquet":
        path = tmp_path / "events.parquet"
        pq.write_table(pa.table({h: [r[k] for r in ROWS] for k, h in enumerate(HEADER)}), path)
        return path
    raise AssertionError(fmt)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "csv.gz", "jsonl", "jsonl.gz", "parquet"])
def test_round_trip(fmt, tmp_path):
    ds = read_events(_write_format(fmt, tmp_path))
    assert ds.column_names == list(EXPECTED)
    table = ds.data.table
    for name in HEADER:
        assert table.schema.field(name).type == ARROW_TYPES[name], name
    assert table.schema.field(ROW_INDEX).type == pa.int64()
    assert ds.to_dict() == EXPECTED


def test_explicit_file_format_overrides_suffix(tmp_path):
    path = write(tmp_path / "events.log", _text(ROWS, sep="\t"))
    assert read_events(path, file_format="tsv").to_dict() == EXPECTED


def test_column_map_renames(tmp_path):
    # RetailRocket's layout: timestamp (ms), visitorid, event, itemid, transactionid
    path = csv_file(
        tmp_path,
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1433221332117,257597,view,355908,\n"
        "1433224214164,992329,addtocart,248676,\n"
        "1433221955914,257597,transaction,355908,4000\n",
    )
    ds = read_events(path, column_map={"user_id": "visitorid", "item_id": "itemid", "event_type": "event"})
    assert ds.column_names == ["user_id", "item_id", "event_type", "timestamp", ROW_INDEX]
    assert ds["user_id"] == ["257597", "992329", "257597"]
    assert ds["event_type"] == ["view", "cart", "purchase"]
    assert ds["timestamp"] == [1433221332, 1433224214, 1433221955]


def test_column_map_none_skips_optional_column(tmp_path):
    path = write(tmp_path / "events.csv", _text(ROWS))
    ds = read_events(path, column_map={"price": None})
    assert "price" not in ds.column_names and "category" in ds.column_names


def test_headerless_csv_with_column_names(tmp_path):
    path = csv_file(tmp_path, "1,2268318,2520377,pv,1511544070\n1,2333346,2520771,buy,1511561733\n")
    ds = read_events(
        path,
        column_names=["user_id", "item_id", "category_id", "behavior", "ts"],
        column_map={"category": "category_id", "event_type": "behavior", "timestamp": "ts"},
    )
    assert ds.to_dict() == {
        "user_id": ["1", "1"],
        "item_id": ["2268318", "2333346"],
        "event_type": ["view", "purchase"],
        "timestamp": [1511544070, 1511561733],
        "category": ["2520377", "2520771"],
        ROW_INDEX: [0, 1],
    }


def test_custom_delimiter(tmp_path):
    path = csv_file(tmp_path, _text(ROWS, sep=";"))
    assert read_events(path, delimiter=";").to_dict() == EXPECTED


def test_latin1_with_encoding_option(tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes("user_id,item_id,event_type,timestamp\nJosé,i1,view,1511658000\n".encode("latin-1"))
    assert read_events(path, encoding="latin-1")["user_id"] == ["José"]


def test_missing_values_are_kept_as_null(tmp_path):
    path = minimal([("u1", "i1", "view", 1511658000), ("", "i2", "view", 1511658000), ("u3", "NA", "", "")], tmp_path)
    ds = read_events(path)
    assert ds["user_id"] == ["u1", None, "u3"]
    assert ds["item_id"] == ["i1", "i2", None]
    assert ds["event_type"] == ["view", "view", None]
    assert ds["timestamp"] == [1511658000, 1511658000, None]


def test_mixed_id_types_become_strings(tmp_path):
    path = minimal(
        [(1, 10, "view", 1511658000), ("u-2", "item-x", "view", 1511658001), ("003", 1.5, "view", 1511658002)],
        tmp_path,
    )
    ds = read_events(path)
    assert ds["user_id"] == ["1", "u-2", "003"]
    assert ds["item_id"] == ["10", "item-x", "1.5"]


def test_mixed_id_types_in_jsonl_become_strings(tmp_path):
    path = tmp_path / "events.jsonl"
    rows = [
        {"user_id": 1, "item_id": 10, "event_type": "view", "timestamp": 1511658000},
        {"user_id": "u-2", "item_id": "x", "event_type": "view", "timestamp": "2017-11-26T01:00:01Z"},
        {"user_id": 3, "item_id": 12, "event_type": "view", "timestamp": 1511658002},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = read_events(path)
    assert ds["user_id"] == ["1", "u-2", "3"]
    assert ds["item_id"] == ["10", "x", "12"]
    assert ds["timestamp"] == [1511658000, 1511658001, 1511658002]


# ------------------------------------------------------------------------------------ timestamps
@pytest.mark.parametrize(
    ("values", "unit", "expected"),
    [
        (["1511658000", "1511658001"], "auto", [1511658000, 1511658001]),
        (["1511658000123", "1511658001999"], "auto", [1511658000, 1511658001]),
        (["1511658000123", "1511658001999"], "ms", [1511658000, 1511658001]),
        (["1511658000", "1511658001"], "s", [1511658000, 1511658001]),
        (["1511658000.75", "1.511658001e9"], "auto", [1511658000, 1511658001]),
        (["2017-11-26T01:00:00Z", "2017-11-26T09:00:01+08:00"], "auto", [1511658000, 1511658001]),
        (["2017-11-26 09:00:00+0800", "2017-11-26T01:00:01.9Z"], "iso", [1511658000, 1511658001]),
        (["2017-11-26T09:00:00+08", "2017-11-25T20:00:01-05:00"], "auto", [1511658000, 1511658001]),
        (["1511658000", "2017-11-26T01:00:01Z"], "auto", [1511658000, 1511658001]),  # mixed
    ],
)
def test_timestamp_forms(values, unit, expected, tmp_path):
    path = minimal([("u", "i", "view", v) for v in values], tmp_path)
    assert read_events(path, timestamp_unit=unit)["timestamp"] == expected


def test_iso_without_timezone_is_utc_and_warns_once(tmp_path, caplog):
    path = minimal(
        [
            ("u", "i", "view", "2017-11-26T01:00:00"),
            ("u", "i", "view", "2017-11-26 01:00:01"),
            ("u", "i", "view", "2017-11-26"),
        ],
        tmp_path,
    )
    with caplog.at_level(logging.WARNING, logger="seqbert.data.readers"):
        ds = read_events(path)
    assert ds["timestamp"] == [1511658000, 1511658001, 1511654400]
    warnings = [r for r in caplog.records if "no timezone" in r.getMessage()]
    assert len(warnings) == 1 and "3 timestamp(s)" in warnings[0].getMessage()


def test_parquet_native_timestamps(tmp_path):
    path = tmp_path / "events.parquet"
    ts = pa.array([1511658000_000, 1511658001_500], pa.timestamp("ms", tz="UTC"))
    pq.write_table(
        pa.table({"user_id": [1, 2], "item_id": [10, 11], "event_type": ["pv", "buy"], "timestamp": ts}), path
    )
    ds = read_events(path)
    assert ds["timestamp"] == [1511658000, 1511658001]
    assert ds["user_id"] == ["1", "2"]


# ---------------------------------------------------------------------------------------- events
def test_default_aliases_case_insensitive(tmp_path):
    raw = ["pv", "buy", "addtocart", "transaction", "PV", " Buy ", "clicks", "carts", "orders", "Favorite"]
    path = minimal([("u", "i", e, 1511658000) for e in raw], tmp_path)
    assert read_events(path)["event_type"] == [
        "view",
        "purchase",
        "cart",
        "purchase",
        "view",
        "purchase",
        "click",
        "cart",
        "purchase",
        "fav",
    ]


def test_custom_aliases_merge_over_defaults(tmp_path):
    path = minimal([("u", "i", e, 1511658000) for e in ["Share", "pv", "buy"]], tmp_path)
    ds = read_events(path, event_aliases={"share": "click", "BUY": "cart"})
    assert ds["event_type"] == ["click", "view", "cart"]


def test_alias_to_unknown_type_is_an_error(tmp_path):
    path = minimal([("u", "i", "pv", 1511658000)], tmp_path)
    with pytest.raises(EventDataError, match="not a canonical event type"):
        read_events(path, event_aliases={"share": "like"})


def test_unknown_event_error_message(tmp_path):
    path = minimal(
        [
            ("u", "i", "pv", 1511658000),
            ("u", "i", "pv", 1511658000),
            ("u", "i", "share", 1511658000),
            ("u", "i", "share", 1),
            ("u", "i", "like", 1),
        ],
        tmp_path,
    )
    with pytest.raises(EventDataError) as info:
        read_events(path)
    e = info.value
    msg = str(e)
    assert "events.csv" in msg and "row 3 (line 4)" in msg and "'share'" in msg
    assert "'share' (2 rows), 'like' (1 row)" in msg
    assert "event_aliases={'share': 'view'}" in msg and "--event-alias share=view" in msg
    assert "unknown_events='drop'" in msg
    assert (e.row, e.line, e.column, e.value) == (3, 4, "event_type", "share")


def test_unknown_events_drop_marks_and_cleaning_counts(tmp_path):
    path = minimal(
        [("u", "i", "pv", 1511658000), ("u", "j", "share", 1511658001), ("u", "k", "buy", 1511658002)], tmp_path
    )
    ds = read_events(path, unknown_events="drop")
    assert ds["event_type"] == ["view", None, "purchase"]
    assert ds[UNKNOWN_EVENT_MARKER] == [False, True, False]
    cleaned, report = clean_events(ds, min_user_events=1)
    assert report.dropped["unknown_event_type"] == 1 and report.dropped["missing_field"] == 0
    assert cleaned["row_index"] == [0, 2]
    assert UNKNOWN_EVENT_MARKER not in cleaned.column_names


def test_marker_columns_only_with_drop_policies(tmp_path):
    path = minimal([("u", "i", "pv", 1511658000)], tmp_path)
    assert read_events(path).column_names == ["user_id", "item_id", "event_type", "timestamp", ROW_INDEX]
    ds = read_events(path, unknown_events="drop", bad_timestamps="drop")
    assert ds[BAD_TIMESTAMP_MARKER] == [False] and ds[UNKNOWN_EVENT_MARKER] == [False]


def test_bad_timestamps_drop_marks_and_cleaning_counts(tmp_path):
    future = int(time.time()) + 10 * 86400
    path = minimal(
        [
            ("u", "i", "pv", 1511658000),
            ("u", "i", "pv", "abc"),
            ("u", "i", "pv", -5),
            ("u", "i", "pv", future),
            ("u", "j", "pv", ""),
        ],
        tmp_path,
    )
    ds = read_events(path, bad_timestamps="drop")
    assert ds["timestamp"] == [1511658000, None, None, None, None]
    assert ds[BAD_TIMESTAMP_MARKER] == [False, True, True, True, False]
    _, report = clean_events(ds, min_user_events=1)
    assert report.dropped["bad_timestamp"] == 3 and report.dropped["missing_field"] == 1


# ------------------------------------------------------------------------------------ bad input
def expect_error(path, *fragments, **kwargs) -> EventDataError:
    with pytest.raises(EventDataError) as info:
        read_events(path, **kwargs)
    msg = str(info.value)
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    return info.value


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.csv", "nope.csv", "file not found")


def test_directory(tmp_path):
    expect_error(tmp_path, "is a directory")


def test_empty_file(tmp_path):
    expect_error(write(tmp_path / "events.csv", ""), "events.csv", "empty")


def test_blank_file(tmp_path):
    expect_error(write(tmp_path / "events.csv", "\n\n  \n"), "events.csv", "empty")


def test_header_only(tmp_path):
    expect_error(write(tmp_path / "events.csv", "user_id,item_id,event_type,timestamp\n"), "no data rows")


def test_empty_jsonl(tmp_path):
    expect_error(write(tmp_path / "events.jsonl", "\n"), "events.jsonl", "empty")


def test_unsupported_suffix(tmp_path):
    expect_error(write(tmp_path / "events.xlsx", "x"), "events.xlsx", "file_format='csv'", "--format csv")


def test_wrong_delimiter(tmp_path):
    path = write(tmp_path / "events.csv", _text(ROWS, sep=";"))
    e = expect_error(
        path, "events.csv", "missing required column", "delimiter is probably ';'", "delimiter=';'", "--delimiter"
    )
    assert e.fix is not None


def test_tsv_suffix_with_commas(tmp_path):
    expect_error(write(tmp_path / "events.tsv", _text(ROWS)), "delimiter is probably ','")


def test_missing_column_suggests_column_map(tmp_path):
    path = csv_file(tmp_path, "visitorid,itemid,event,timestamp\n1,2,view,1511658000\n")
    e = expect_error(
        path,
        "missing required columns 'user_id', 'item_id', 'event_type'",
        "'visitorid', 'itemid', 'event', 'timestamp'",
        "column_map={'user_id': 'visitorid', 'item_id': 'itemid', 'event_type': 'event'}",
        "--column user_id=visitorid",
    )
    assert e.path == str(path)


def test_mapped_column_not_in_file(tmp_path):
    path = minimal([("u", "i", "pv", 1511658000)], tmp_path)
    expect_error(path, "'user_id' (looked for 'visitor')", column_map={"user_id": "visitor"})


def test_column_map_reversed(tmp_path):
    path = minimal([("u", "i", "pv", 1511658000)], tmp_path)
    expect_error(path, "It looks reversed", column_map={"visitorid": "user_id"})


def test_headerless_without_column_names(tmp_path):
    path = csv_file(tmp_path, "1,2268318,2520377,pv,1511544070\n")
    expect_error(path, "no header row", "column_names=", "--column-names")


@pytest.mark.parametrize(
    ("value", "fragments"),
    [
        ("abc", ["is not a timestamp", "'abc'"]),
        ("-5", ["is negative", "'-5'"]),
        ("1980-01-01T00:00:00Z", ["before 1990-01-01"]),
        ("2017-13-01T00:00:00Z", ["is not a timestamp"]),
        ("FUTURE", ["more than 1 day in the future"]),
    ],
)
def test_bad_timestamp_errors(value, fragments, tmp_path):
    if value == "FUTURE":
        value = str(int(time.time()) + 30 * 86400)
    path = minimal([("u", "i", "pv", 1511658000), ("u", "i", "pv", value)], tmp_path)
    e = expect_error(
        path,
        "events.csv",
        "row 2 (line 3)",
        "column 'timestamp'",
        "bad_timestamps='drop'",
        "--bad-timestamps drop",
        *fragments,
    )
    assert e.row == 2 and e.column == "timestamp"


def test_seconds_given_milliseconds_suggests_unit(tmp_path):
    path = minimal([("u", "i", "pv", 1511658000123)], tmp_path)
    expect_error(path, "timestamp_unit='ms'", timestamp_unit="s")


def test_iso_with_numeric_unit(tmp_path):
    path = minimal([("u", "i", "pv", "2017-11-26T01:00:00Z")], tmp_path)
    expect_error(path, "not a number of unix seconds", "timestamp_unit='auto'", timestamp_unit="s")


def test_non_utf8_bytes(tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(b"user_id,item_id,event_type,timestamp\nu1,i1,pv,1511658000\nu\xe9,i2,pv,1511658000\n")
    e = expect_error(path, "events.csv", "line 3", "not valid utf-8", "encoding='latin-1'")
    assert e.line == 3


def test_non_utf8_bytes_in_jsonl(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        b'{"user_id": "u1", "item_id": "i", "event_type": "pv", "timestamp": 1511658000}\n'
        b'{"user_id": "u\xe9", "item_id": "i", "event_type": "pv", "timestamp": 1511658000}\n'
    )
    expect_error(path, "line 2", "not valid utf-8")


def test_truncated_gzip(tmp_path):
    data = gzip.compress(_text(ROWS * 2000).encode())
    path = tmp_path / "events.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    expect_error(path, "events.csv.gz", "gzip", "truncated or corrupt")


def test_not_gzip(tmp_path):
    path = tmp_path / "events.csv.gz"
    path.write_bytes(_text(ROWS).encode())
    expect_error(path, "events.csv.gz", "not a complete, valid gzip file")


def test_not_parquet(tmp_path):
    expect_error(write(tmp_path / "events.parquet", "user_id\n1\n"), "not a readable Parquet file")


def test_wrong_field_count(tmp_path):
    path = csv_file(tmp_path, "user_id,item_id,event_type,timestamp\nu,i,pv,1511658000\nu,i,pv\n")
    e = expect_error(path, "row 2 (line 3)", "has 3 fields but 4 columns")
    assert e.line == 3


def test_bad_json_line(tmp_path):
    path = write(
        tmp_path / "events.jsonl",
        '{"user_id": "u", "item_id": "i", "event_type": "pv", "timestamp": 1}\n{"user_id": "u"\n',
    )
    expect_error(path, "line 2", "not valid JSON")


def test_bad_price(tmp_path):
    path = csv_file(
        tmp_path, "user_id,item_id,event_type,timestamp,price\nu,i,pv,1511658000,1.5\nu,i,pv,1511658000,$2\n"
    )
    expect_error(path, "row 2 (line 3)", "column 'price'", "'$2'", "is not a number", "column_map={'price': None}")


def test_bad_option_values(tmp_path):
    path = minimal([("u", "i", "pv", 1511658000)], tmp_path)
    expect_error(path, "timestamp_unit='minutes'", timestamp_unit="minutes")
    expect_error(path, "unknown_events='skip'", unknown_events="skip")


def test_error_pickles_with_attributes():
    e = EventDataError(
        "is not a timestamp", path="events.csv", row=17, line=18, column="timestamp", value="abc", fix="do X"
    )
    assert str(e) == "events.csv, row 17 (line 18), column 'timestamp': value 'abc' is not a timestamp. Fix: do X"
    e2 = pickle.loads(pickle.dumps(e))
    assert (str(e2), e2.row, e2.value, e2.fix) == (str(e), 17, "abc", "do X")
    assert isinstance(e2, ValueError)


# ----------------------------------------------------------------------------------- real sample
@pytest.mark.skipif(not TAOBAO_SLICE.exists(), reason="shared Taobao sample not present")
def test_taobao_time_slice():
    ds = read_events(
        TAOBAO_SLICE,
        column_names=["user_id", "item_id", "category_id", "behavior", "ts"],
        column_map={"category": "category_id", "event_type": "behavior", "timestamp": "ts"},
    )
    assert len(ds) == 110_300  # SOURCE.md
    table = ds.data.table
    counts = {d["values"]: d["counts"] for d in pc.value_counts(table.column("event_type")).to_pylist()}
    assert counts == {"view": 98_361, "cart": 6_063, "fav": 3_383, "purchase": 2_493}
    assert table.column("timestamp").null_count == 0
    assert pc.min(table.column("timestamp")).as_py() >= 1511658000  # 2017-11-26 09:00 CST
    cleaned, report = clean_events(ds, source=TAOBAO_SLICE.name)
    report.check()
    assert report.input_rows == 110_300
    assert report.input_rows == report.kept_rows + sum(report.dropped.values())
    assert report.dropped["missing_field"] == report.dropped["bad_timestamp"] == 0
    assert len(cleaned) == report.kept_rows
    row_index = cleaned.data.table.column(ROW_INDEX).to_numpy()
    assert (np.diff(row_index) > 0).all()  # file order kept


def test_data_code_does_not_import_torch():
    """readers/cleaning/errors must not pull in torch. The package root (seqbert/__init__.py) may
    import transformers for Auto-class registration, so it is bypassed here with a bare package."""
    root = Path(__file__).resolve().parents[1] / "seqbert"
    code = (
        "import sys, types\n"
        f"pkg = types.ModuleType('seqbert'); pkg.__path__ = [{str(root)!r}]; sys.modules['seqbert'] = pkg\n"
        "import seqbert.data.errors, seqbert.data.readers, seqbert.data.cleaning\n"
        "sys.exit(3 if 'torch' in sys.modules else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:] or "torch was imported"
