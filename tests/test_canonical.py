"""seqbert.data.canonical.to_canonical_events: the public raw columns → canonical events step."""

from __future__ import annotations

import pyarrow as pa
import pytest

from seqbert.data.canonical import BAD_TIMESTAMP_MARKER, ROW_INDEX, UNKNOWN_EVENT_MARKER, to_canonical_events
from seqbert.data.errors import EventDataError
from seqbert.data.sources import resolve_source

T0_MS = 1_700_000_000_000


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("not read: the source only names the file in messages\n")
    return resolve_source(path, None, "utf-8")


def test_raw_columns_become_canonical(source):
    raw = {
        "user_id": pa.array([7, 7, 8]),
        "item_id": pa.array(["a", "b", "a"]),
        "event_type": pa.array(["pv", "Buy ", "addtocart"]),
        "timestamp": pa.array([T0_MS, T0_MS + 1500, T0_MS + 60_000]),
        "price": pa.array(["1.5", "2", ""]),
    }
    table, unit = to_canonical_events(raw, source, row_offset=10)
    assert unit == "ms"
    assert table.column_names == ["user_id", "item_id", "event_type", "timestamp", "price", ROW_INDEX]
    assert table.column("user_id").to_pylist() == ["7", "7", "8"]
    assert table.column("event_type").to_pylist() == ["view", "purchase", "cart"]
    assert table.column("timestamp").to_pylist() == [1_700_000_000, 1_700_000_001, 1_700_000_060]
    assert table.column("price").to_pylist() == [1.5, 2.0, None]
    assert table.column(ROW_INDEX).to_pylist() == [10, 11, 12]


def test_drop_policies_add_markers_and_errors_name_the_file_column(source):
    raw = {
        "user_id": pa.array(["u"] * 3),
        "item_id": pa.array(["i"] * 3),
        "event_type": pa.array(["view", "teleport", "cart"]),
        "timestamp": pa.array(["2023-11-14T22:13:20Z", "yesterday", "2023-11-14T22:13:21+01:00"]),
    }
    table = to_canonical_events(raw, source, unknown_events="drop", bad_timestamps="drop").table
    assert table.column(UNKNOWN_EVENT_MARKER).to_pylist() == [False, True, False]
    assert table.column(BAD_TIMESTAMP_MARKER).to_pylist() == [False, True, False]
    with pytest.raises(EventDataError) as error:
        to_canonical_events(raw, source, names={"event_type": "behavior"}, bad_timestamps="drop")
    assert error.value.column == "behavior" and error.value.row == 2 and "log.csv" in str(error.value)


@pytest.mark.parametrize("event_first", [True, False])
def test_errors_come_in_column_order(source, event_first):
    """Event types are mapped in a thread beside the other columns; the first bad column still wins."""
    events = ("event_type", pa.array(["view", "teleport"]))
    times = ("timestamp", pa.array(["2023-11-14T22:13:20Z", "yesterday"]))
    ids = {"user_id": pa.array(["u", "u"]), "item_id": pa.array(["a", "b"])}
    raw = {**ids, **dict([events, times] if event_first else [times, events])}
    with pytest.raises(EventDataError) as error:
        to_canonical_events(raw, source)
    assert error.value.column == ("event_type" if event_first else "timestamp") and error.value.row == 2


def test_bad_arguments(source):
    with pytest.raises(ValueError, match="not a canonical column"):
        to_canonical_events({"visitor": pa.array(["u"])}, source)
    with pytest.raises(ValueError, match="different lengths"):
        to_canonical_events({"user_id": pa.array(["u"]), "item_id": pa.array(["a", "b"])}, source)
    with pytest.raises(EventDataError, match="unknown_events"):
        to_canonical_events({"user_id": pa.array(["u"])}, source, unknown_events="skip")


def test_former_reader_names_still_import():
    from seqbert.data import readers

    for name in ("_Source", "_resolve_source", "_io_error", "_json_syntax_error", "_to_canonical", "_BLOCK_SIZE",
                 "_map_event_types", "_parse_timestamps", "_to_string", "_try_cast", "_cast_numeric", "MIN_TIMESTAMP",
                 "FUTURE_TOLERANCE_S", "ROW_INDEX", "read_events", "iter_events", "to_canonical_events"):  # fmt: skip
        assert hasattr(readers, name), name
