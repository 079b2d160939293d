"""Tests for seqbert.data.formats: each public dataset's original layout -> the canonical schema.

Shared real samples (under /work/shared/data, read in place, skipped when absent) are checked on
hand-verified rows and through `clean_events` and `seqbert prepare`; formats without a shared sample
are checked on small files written here in the dataset's exact original layout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from seqbert.cli import main as cli_main
from seqbert.data.cleaning import DROP_REASONS, clean_events
from seqbert.data.errors import EventDataError
from seqbert.data.formats import FORMATS, read_dataset
from seqbert.data.formats.amazon_s3rec import SURROGATE_BASE_TIMESTAMP
from seqbert.data.readers import BAD_TIMESTAMP_MARKER, ROW_INDEX, UNKNOWN_EVENT_MARKER
from seqbert.data.schema import ARROW_TYPES, EVENT_TYPES, REQUIRED_COLUMNS
from seqbert.prepared import PreparedData

SHARED = Path("/work/shared/data")
TAOBAO_HEAD = SHARED / "taobao_userbehavior/complete_histories_head_43users.csv"
TAOBAO_TAIL = SHARED / "taobao_userbehavior/complete_histories_tail_114users.csv"
TAOBAO_SLICE = SHARED / "taobao_userbehavior/time_slice_2017-11-26_0900-1110_CST.csv"
OTTO = SHARED / "otto_sample/train.jsonl"
DIGINETICA = SHARED / "diginetica_sample/sample_train-item-views.csv"
BEAUTY = SHARED / "amazon_s3rec/Beauty.txt"

SAMPLES = [
    pytest.param("taobao", TAOBAO_HEAD, id="taobao-head"),
    pytest.param("taobao", TAOBAO_TAIL, id="taobao-tail"),
    pytest.param("taobao", TAOBAO_SLICE, id="taobao-slice"),
    pytest.param("otto", OTTO, id="otto"),
    pytest.param("diginetica", DIGINETICA, id="diginetica"),
    pytest.param("amazon_s3rec", BEAUTY, id="amazon_s3rec"),
]
REPO = Path(__file__).resolve().parents[1]


def need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"shared sample {path} is not available")
    return path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def rows(ds) -> list[dict]:
    return ds.to_list()


def check_canonical(ds) -> None:
    """Canonical columns typed per ARROW_TYPES, row_index, no nulls in the required columns."""
    schema = ds.data.table.schema
    for name in REQUIRED_COLUMNS:
        assert schema.field(name).type == ARROW_TYPES[name], name
        assert ds.data.table.column(name).null_count == 0, name
    for field in schema:
        if field.name in ARROW_TYPES:
            assert field.type == ARROW_TYPES[field.name], field.name
        else:
            assert field.name in (ROW_INDEX, BAD_TIMESTAMP_MARKER, UNKNOWN_EVENT_MARKER), field.name
    assert schema.field(ROW_INDEX).type == pa.int64()
    assert np.array_equal(ds.data.table.column(ROW_INDEX).to_numpy(), np.arange(ds.num_rows))
    assert set(ds.unique("event_type")) <= set(EVENT_TYPES)


# ------------------------------------------------------------------------------------------ registry
def test_registry_names_and_unknown_name():
    assert set(FORMATS) == {"taobao", "otto", "retailrocket", "diginetica", "yoochoose", "amazon_s3rec", "movielens"}
    with pytest.raises(ValueError) as e:
        read_dataset("criteo", "x.csv")
    for name in FORMATS:
        assert name in str(e.value)


def test_read_dataset_options(tmp_path):
    path = write(tmp_path / "UserBehavior.csv", "1,10,100,pv,1511544070\n1,11,100,buy,1511544080\n")
    # Names are case-insensitive with - or _; generic read options at their defaults are ignored.
    ds = read_dataset("TaoBao", path, file_format=None, column_map=None, timestamp_unit="auto", encoding="utf-8")
    assert ds["event_type"] == ["view", "purchase"]
    assert read_dataset("amazon-s3rec", write(tmp_path / "Toys.txt", "u1 a b\n")).num_rows == 2
    with pytest.raises(EventDataError, match=r"column_map=.*--column.*does not apply to dataset format 'taobao'"):
        read_dataset("taobao", path, column_map={"user_id": "x"})
    with pytest.raises(EventDataError, match="event_aliases"):
        read_dataset("diginetica", path, event_aliases={"x": "view"})


# -------------------------------------------------------------------------------------------- taobao
def test_taobao_sample_rows():
    ds = read_dataset("taobao", need(TAOBAO_HEAD))
    check_canonical(ds)
    assert ds.num_rows == 4321
    # The widely published first line of UserBehavior.csv: 1,2268318,2520377,pv,1511544070
    assert rows(ds.select([0]))[0] == {
        "user_id": "1",
        "item_id": "2268318",
        "event_type": "view",
        "timestamp": 1511544070,
        "category": "2520377",
        "row_index": 0,
    }
    counts = dict(zip(*np.unique(ds["event_type"], return_counts=True)))
    assert counts == {"view": 3926, "cart": 190, "fav": 128, "purchase": 77}  # pv / cart / fav / buy in SOURCE.md


def test_taobao_small_file(tmp_path):
    path = write(
        tmp_path / "UserBehavior.csv", "7,10,100,pv,1511544070\n7,10,100,cart,1511544071\n8,11,101,fav,1511544072\n"
    )
    ds = read_dataset("taobao", path)
    assert ds["event_type"] == ["view", "cart", "fav"]
    assert ds["category"] == ["100", "100", "101"]
    write(path, "7,10,100,pv,1511544070\n7,10,100,share,1511544071\n")
    with pytest.raises(EventDataError) as e:
        read_dataset("taobao", path)
    assert (e.value.row, e.value.column, e.value.value) == (2, "behavior_type", "share")
    ds = read_dataset("taobao", path, unknown_events="drop")
    assert ds[UNKNOWN_EVENT_MARKER] == [False, True]


# ---------------------------------------------------------------------------------------------- otto
def test_otto_sample_rows():
    ds = read_dataset("otto", need(OTTO))
    check_canonical(ds)
    assert ds.num_rows == 862 and len(ds.unique("user_id")) == 20
    counts = dict(zip(*np.unique(ds["event_type"], return_counts=True)))
    assert counts == {"click": 800, "cart": 52, "purchase": 10}
    first = json.loads(OTTO.read_text().splitlines()[0])
    n0 = len(first["events"])
    head = ds.select(range(n0))
    assert head["user_id"] == ["0"] * n0
    assert head["item_id"] == [str(e["aid"]) for e in first["events"]]
    assert head["timestamp"] == [e["ts"] // 1000 for e in first["events"]]
    # {"aid":1517085,"ts":1659304800025,"type":"clicks"} -> second floor; an order of two items shares a ts.
    assert rows(ds.select([0]))[0]["timestamp"] == 1659304800
    assert head["event_type"][8:10] == ["purchase", "purchase"] and head["timestamp"][8] == head["timestamp"][9]
    assert ds["user_id"][n0] == "1"


def test_otto_small_file_and_errors(tmp_path):
    lines = [
        {
            "session": 5,
            "events": [
                {"aid": 1, "ts": 1659304800999, "type": "clicks"},
                {"aid": 2, "ts": 1659304801000, "type": "carts"},
            ],
        },
        {"session": 6, "events": []},
        {"session": 7, "events": [{"aid": 2, "ts": 1659304900000, "type": "orders"}]},
    ]
    path = write(tmp_path / "train.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    ds = read_dataset("otto", path)
    assert rows(ds) == [
        {"user_id": "5", "item_id": "1", "event_type": "click", "timestamp": 1659304800, "row_index": 0},
        {"user_id": "5", "item_id": "2", "event_type": "cart", "timestamp": 1659304801, "row_index": 1},
        {"user_id": "7", "item_id": "2", "event_type": "purchase", "timestamp": 1659304900, "row_index": 2},
    ]
    lines[2]["events"].append({"aid": 3, "ts": 1659304901000, "type": "returns"})
    write(path, "\n".join(json.dumps(x) for x in lines) + "\n")
    with pytest.raises(EventDataError) as e:
        read_dataset("otto", path)
    assert (e.value.line, e.value.column, e.value.value) == (3, "events[1].type", "returns")
    assert read_dataset("otto", path, unknown_events="drop")[UNKNOWN_EVENT_MARKER] == [False, False, False, True]
    write(path, '{"user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": 1659304800}\n')
    with pytest.raises(EventDataError, match="not an OTTO session file"):
        read_dataset("otto", path)


# -------------------------------------------------------------------------------------- retailrocket
RETAILROCKET = """timestamp,visitorid,event,itemid,transactionid
1433221332117,257597,view,355908,
1433224214164,257597,addtocart,355908,
1433224300000,257597,transaction,355908,4000
1433221999827,111016,view,318965,
1433222000827,111016,view,318966,
"""


def test_retailrocket_small_file(tmp_path):
    ds = read_dataset("retailrocket", write(tmp_path / "events.csv", RETAILROCKET))
    check_canonical(ds)
    assert ds.column_names == ["user_id", "item_id", "event_type", "timestamp", "row_index"]
    assert rows(ds)[:3] == [
        {"user_id": "257597", "item_id": "355908", "event_type": "view", "timestamp": 1433221332, "row_index": 0},
        {"user_id": "257597", "item_id": "355908", "event_type": "cart", "timestamp": 1433224214, "row_index": 1},
        {"user_id": "257597", "item_id": "355908", "event_type": "purchase", "timestamp": 1433224300, "row_index": 2},
    ]


# ---------------------------------------------------------------------------------------- diginetica
def test_diginetica_sample_rows():
    ds = read_dataset("diginetica", need(DIGINETICA))
    check_canonical(ds)
    assert ds.num_rows == 12391 and len(ds.unique("user_id")) == 2986 and set(ds["event_type"]) == {"view"}
    table = ds.data.table.to_pandas()
    assert (table["session_id"] == table["user_id"]).all()
    # Session 1's earliest view is 9654 at timeframe 75848 on 2016-05-09 (the file lists it fourth).
    assert rows(ds.select([0]))[0] == {
        "user_id": "1",
        "item_id": "9654",
        "event_type": "view",
        "timestamp": 1462752000 + 75,
        "session_id": "1",
        "row_index": 0,
    }
    # Session 629 crosses midnight (2016-03-20 -> 03-21): placed on its first day, order kept.
    s = table[table["user_id"] == "629"]
    assert len(s) == 17 and s["timestamp"].is_monotonic_increasing
    assert s["timestamp"].iloc[0] == 1458432000 + 13 and s["timestamp"].iloc[-1] == 1458432000 + 1184
    assert list(s["item_id"].iloc[:3]) == ["32184", "17672", "7659"]


def test_diginetica_original_header_and_errors(tmp_path):
    text = (
        "sessionId;userId;itemId;timeframe;eventdate\n"
        "9;NA;300;900000;2016-03-21\n"
        "9;NA;100;5000;2016-03-20\n"
        "9;NA;200;5999;2016-03-20\n"
        "4;77;500;1;2016-01-03\n"
    )
    path = write(tmp_path / "train-item-views.csv", text)
    got = [
        (r["user_id"], r["item_id"], r["timestamp"], r["row_index"]) for r in rows(read_dataset("diginetica", path))
    ]
    day = 1458432000  # 2016-03-20T00:00:00Z
    assert got == [
        ("9", "100", day + 5, 0),
        ("9", "200", day + 5, 1),
        ("9", "300", day + 900, 2),
        ("4", "500", 1451779200, 3),
    ]
    write(path, text.replace("2016-03-20\n", "2016-3-XX\n", 1))
    with pytest.raises(EventDataError) as e:
        read_dataset("diginetica", path)
    assert (e.value.row, e.value.line, e.value.column, e.value.value) == (2, 3, "eventdate", "2016-3-XX")
    write(path, text.replace(";5999;", ";-7;"))
    with pytest.raises(EventDataError, match="not a time offset"):
        read_dataset("diginetica", path)
    ds = read_dataset("diginetica", path, bad_timestamps="drop")
    assert sum(ds[BAD_TIMESTAMP_MARKER]) == 1
    _, report = clean_events(ds, min_user_events=1)
    assert report.dropped["bad_timestamp"] == 1
    write(path, text.replace(";", ","))
    with pytest.raises(EventDataError, match="not a DIGINETICA item-views file"):
        read_dataset("diginetica", path)


# ----------------------------------------------------------------------------------------- yoochoose
CLICKS = """1,2014-04-07T10:51:09.277Z,214536502,0
1,2014-04-07T10:54:09.868Z,214536500,0
2,2014-04-07T13:56:37.614Z,214662742,S
2,2014-04-07T13:57:19.373Z,214662742,3
2,2014-04-07T13:58:20.000Z,214825110,2053881913
"""
BUYS = """2,2014-04-07T13:58:19.373Z,214662742,12462,1
2,2014-04-07T13:58:19.400Z,214825110,0,0
"""


def test_yoochoose_clicks_and_buys(tmp_path):
    clicks = write(tmp_path / "yoochoose-clicks.dat", CLICKS)
    only = read_dataset("yoochoose", clicks)  # no buys file next to it
    check_canonical(only)
    assert only.num_rows == 5 and set(only["event_type"]) == {"click"} and "price" not in only.column_names
    assert only["category"] == [None, None, "S", "3", "2053881913"]
    assert only["timestamp"][0] == 1396867869  # 2014-04-07T10:51:09.277Z floored
    write(tmp_path / "yoochoose-buys.dat", BUYS)
    ds = read_dataset("yoochoose", clicks)  # buys_path="auto" finds yoochoose-buys.dat
    check_canonical(ds)
    assert ds.column_names == [
        "user_id",
        "item_id",
        "event_type",
        "timestamp",
        "category",
        "price",
        "session_id",
        "quantity",
        "row_index",
    ]
    assert rows(ds)[5:] == [
        {
            "user_id": "2",
            "item_id": "214662742",
            "event_type": "purchase",
            "timestamp": 1396879099,
            "category": None,
            "price": 12462.0,
            "session_id": "2",
            "quantity": 1,
            "row_index": 5,
        },
        {
            "user_id": "2",
            "item_id": "214825110",
            "event_type": "purchase",
            "timestamp": 1396879099,
            "category": None,
            "price": 0.0,
            "session_id": "2",
            "quantity": 0,
            "row_index": 6,
        },
    ]
    assert read_dataset("yoochoose", clicks, buys_path=None).num_rows == 5
    other = write(tmp_path / "buys-copy.dat", BUYS)
    assert read_dataset("yoochoose", clicks, buys_path=other).num_rows == 7
    write(other, BUYS.replace("2014-04-07T13:58:19.400Z", "yesterday"))
    with pytest.raises(EventDataError) as e:
        read_dataset("yoochoose", clicks, buys_path=other)
    assert (Path(e.value.path).name, e.value.row, e.value.column) == ("buys-copy.dat", 2, "timestamp")


# -------------------------------------------------------------------------------------- amazon_s3rec
def test_amazon_s3rec_sample_rows():
    ds = read_dataset("amazon_s3rec", need(BEAUTY))  # Beauty_item2attributes.json is found next to it
    check_canonical(ds)
    table = ds.data.table
    assert ds.num_rows == 198502 and len(ds.unique("user_id")) == 22363 and len(ds.unique("item_id")) == 12101
    assert set(ds.unique("event_type")) == {"purchase"}
    # Line 1: "1 1 2 3 4 5"; attributes of item 4 are [1, 2, 3] and of item 1 [173, ...] (first = brand).
    head = rows(ds.select(range(6)))
    assert [(r["user_id"], r["item_id"], r["timestamp"]) for r in head] == [
        ("1", str(k + 1), SURROGATE_BASE_TIMESTAMP + k) for k in range(5)
    ] + [("2", "6", SURROGATE_BASE_TIMESTAMP)]
    attributes = json.loads((BEAUTY.parent / "Beauty_item2attributes.json").read_text())
    assert head[3]["category"] == "1" == str(attributes["4"][0])
    assert head[0]["category"] == str(attributes["1"][0])
    last = read_dataset("amazon_s3rec", BEAUTY, attribute_index=-1)
    assert last["category"][3] == str(attributes["4"][-1])
    # Strictly increasing surrogate time within each user.
    users = table.column("user_id").to_numpy(zero_copy_only=False)
    ts = table.column("timestamp").to_numpy()
    same = users[1:] == users[:-1]
    assert (np.diff(ts)[same] == 1).all()


def test_amazon_s3rec_small_files(tmp_path):
    path = write(tmp_path / "Toys.txt", "10 a b c\n11 c\n12\n")
    ds = read_dataset("amazon_s3rec", path, event_type="view", step_seconds=60)
    assert "category" not in ds.column_names
    assert [(r["user_id"], r["item_id"], r["timestamp"]) for r in rows(ds)] == [
        ("10", "a", SURROGATE_BASE_TIMESTAMP),
        ("10", "b", SURROGATE_BASE_TIMESTAMP + 60),
        ("10", "c", SURROGATE_BASE_TIMESTAMP + 120),
        ("11", "c", SURROGATE_BASE_TIMESTAMP),
    ]
    write(tmp_path / "Toys_item2attributes.json", json.dumps({"a": [7, 8], "c": []}))
    assert read_dataset("amazon_s3rec", path)["category"] == ["7", None, None, None]
    assert "category" not in read_dataset("amazon_s3rec", path, attributes_path=None).column_names
    # Every attribute, joined by "|" in the file's order (the model splits it again).
    assert read_dataset("amazon_s3rec", path, attribute_index="all")["category"] == ["7|8", None, None, None]
    with pytest.raises(EventDataError, match="neither an integer nor 'all'"):
        read_dataset("amazon_s3rec", path, attribute_index="first")
    out = tmp_path / "prepared"
    argv = ["prepare", str(path), "--dataset-format", "amazon_s3rec", "--format-option", "attribute_index=all",
            "--min-user-events", "1", "--output-dir", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    assert PreparedData.load(out).sequences.to_dict()["categories"][0] == ["7|8", None, None]
    with pytest.raises(SystemExit, match="--dataset-format only"):
        cli_main(["prepare", str(path), "--format-option", "attribute_index=all", "--output-dir", str(out)])
    write(path, "10 a b\n11 c\n10 d\n")
    with pytest.raises(EventDataError, match=r"user '10' has two lines \(data rows 1 and 3\)"):
        read_dataset("amazon_s3rec", path)


# ----------------------------------------------------------------------------------------- movielens
def test_movielens_layouts(tmp_path):
    dat = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1357::4::978298709\n")
    ds = read_dataset("movielens", dat)
    check_canonical(ds)
    assert rows(ds)[0] == {
        "user_id": "1",
        "item_id": "1193",
        "event_type": "view",
        "timestamp": 978300760,
        "row_index": 0,
    }
    assert read_dataset("movielens", dat, purchase_min_rating=4)["event_type"] == ["purchase", "view", "purchase"]
    csv = write(
        tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,296,5.0,1147880044\n1,306,3.5,1147868817\n"
    )
    assert rows(read_dataset("movielens", csv))[1] == {
        "user_id": "1",
        "item_id": "306",
        "event_type": "view",
        "timestamp": 1147868817,
        "row_index": 1,
    }
    assert read_dataset("movielens", csv, purchase_min_rating=4)["event_type"] == ["purchase", "view"]
    udata = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    assert read_dataset("movielens", udata)["item_id"] == ["242", "302"]
    write(csv, "userId,movieId,rating,timestamp\n1,296,5.0,1147880044\n1,306,4.25,1147868817\n")
    with pytest.raises(EventDataError, match="not a MovieLens rating") as e:
        read_dataset("movielens", csv)
    assert (e.value.row, e.value.column, e.value.value) == (2, "rating", "4.25")


# ------------------------------------------------------------------------------ cleaning and the CLI
@pytest.mark.parametrize(("name", "path"), SAMPLES)
def test_drop_report_adds_up_on_shared_samples(name, path):
    events = read_dataset(name, need(path))
    cleaned, report = clean_events(events, source=path.name)
    report.check()
    assert report.input_rows == events.num_rows
    assert report.input_rows == report.kept_rows + sum(report.dropped.values())
    assert list(report.dropped) == list(DROP_REASONS)
    assert cleaned.num_rows == report.kept_rows


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = cli_main(["--log-level", "WARNING", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def check_prepared(out: Path, dataset_format: str | None) -> dict:
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["kind"] == "leave_one_out"
    assert protocol["source"].get("dataset_format") == dataset_format
    report = json.loads((out / "drop_report.json").read_text())
    assert report["input_rows"] == report["kept_rows"] + sum(report["dropped"].values())
    assert (out / "tokenizer").is_dir()
    return report


@pytest.mark.parametrize(("name", "path"), SAMPLES)
def test_cli_prepare_shared_samples(name, path, tmp_path, capsys):
    """`seqbert prepare SAMPLE --dataset-format NAME` (in-process: the same argv through seqbert.cli.main)."""
    out = tmp_path / "prepared"
    args = ["prepare", str(need(path)), "--dataset-format", name, "--output-dir", str(out), "--split", "leave_one_out"]
    code, text = run_cli(args, capsys)
    assert code == 0, text
    report = check_prepared(out, name)
    assert report["input_rows"] == read_dataset(name, path).num_rows


@pytest.mark.slow
def test_cli_prepare_subprocess(tmp_path):
    """One real `python -m seqbert.cli prepare` process (startup costs ~15 s, so only one sample)."""
    out = tmp_path / "prepared"
    cmd = [
        sys.executable,
        "-m",
        "seqbert.cli",
        "--log-level",
        "WARNING",
        "prepare",
        str(need(OTTO)),
        "--dataset-format",
        "otto",
        "--output-dir",
        str(out),
        "--split",
        "leave_one_out",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = check_prepared(out, "otto")
    assert report["input_rows"] == 862 and "Drop report" in result.stdout


def _written_samples(tmp_path: Path) -> list[tuple[str, Path]]:
    rr = RETAILROCKET + "1433222001000,111016,view,318967,\n"
    write(tmp_path / "yoochoose-buys.dat", BUYS)
    return [
        ("retailrocket", write(tmp_path / "events.csv", rr)),
        ("yoochoose", write(tmp_path / "yoochoose-clicks.dat", CLICKS)),
        (
            "movielens",
            write(
                tmp_path / "ratings.dat",
                "1::1193::5::978300760\n1::661::3::978302109\n1::914::3::978301968\n"
                "2::1357::4::978298709\n2::3068::4::978299000\n2::1537::4::978299620\n",
            ),
        ),
    ]


def test_cli_prepare_written_samples(tmp_path, capsys):
    for name, path in _written_samples(tmp_path):
        out = tmp_path / f"prepared-{name}"
        args = ["prepare", str(path), "--dataset-format", name, "--output-dir", str(out), "--split", "leave_one_out"]
        code, text = run_cli(args, capsys)
        assert code == 0, f"{name}: {text}"
        report = check_prepared(out, name)
        assert report["input_rows"] == {"retailrocket": 6, "yoochoose": 7, "movielens": 6}[name]


def test_cli_prepare_column_mapping(tmp_path, capsys):
    path = write(
        tmp_path / "log.csv",
        "visitor,product,action,when,cat\n"
        "v1,p1,pv,1511544070,c1\nv1,p2,cart,1511544080,c1\nv1,p3,buy,1511544090,c2\n"
        "v2,p1,pv,1511544100,c1\nv2,p3,pv,1511544110,c2\nv2,p2,pv,1511544120,c1\n",
    )
    out = tmp_path / "prepared"
    args = [
        "prepare",
        str(path),
        "--output-dir",
        str(out),
        "--split",
        "leave_one_out",
        "--column",
        "user_id=visitor",
        "--column",
        "item_id=product",
        "--column",
        "event_type=action",
        "--column",
        "timestamp=when",
        "--column",
        "category=cat",
    ]
    code, text = run_cli(args, capsys)
    assert code == 0, text
    report = check_prepared(out, None)
    assert (report["input_rows"], report["kept_rows"]) == (6, 6)
    # A column mapping does not combine with a dataset format (which fixes the columns).
    code, text = run_cli([*args[:4], "--dataset-format", "taobao", "--column", "user_id=visitor"], capsys)
    assert code == 2 and "does not apply to dataset format 'taobao'" in text
    with pytest.raises(SystemExit):
        cli_main(["prepare", str(path), "--output-dir", str(out), "--dataset-format", "criteo"])
