"""YOOCHOOSE clicks and buys (RecSys Challenge 2015).

Where to get it
    The RecSys Challenge 2015 data (https://recsys.acm.org/recsys15/challenge/; mirrored on Kaggle
    as ``chadgostopp/recsys-challenge-2015``): ``yoochoose-clicks.dat`` (33,003,944 clicks in
    9,249,729 sessions, 2014-04-01 .. 2014-09-30), ``yoochoose-buys.dat`` (1,150,753 buys) and
    ``yoochoose-test.dat`` (same layout as the clicks).
Terms
    Provided by YOOCHOOSE GmbH for the challenge and for research; no open licence is attached.
    Treat it as research-only and non-commercial, and cite D. Ben-Shimon et al., "RecSys
    Challenge 2015 and the YOOCHOOSE Dataset", RecSys 2015.

File layouts (no header row, comma-separated)::

    yoochoose-clicks.dat   session,timestamp,item,category
                           1,2014-04-07T10:51:09.277Z,214536502,0
    yoochoose-buys.dat     session,timestamp,item,price,quantity
                           420374,2014-04-06T18:44:58.314Z,214537888,12462,1

Mapping to the canonical schema
    * ``user_id`` = ``session_id`` = ``session`` (the data has no user ids).
    * ``item`` -> ``item_id``; clicks -> ``event_type`` ``click``, buys -> ``purchase``.
    * ``timestamp``: ISO-8601 in UTC, fractions of a second floored.
    * ``category`` (clicks only) as logged, except ``0``, which the dataset's README defines as a
      missing value (null). ``S`` is a special offer, 1..12 a category, longer numbers a brand.
    * ``price`` and ``quantity`` (buys only) as logged, including zeros (the data does not say
      what a 0 price or quantity means); clicks have them null.
    * With a buys file the result is the clicks followed by the buys: ``row_index`` is the clicks
      file's row, then ``number of clicks + the buys file's row``. A buy and a click in the same
      second therefore sort click first. Error messages name the file and its own row.

The buys file is optional: ``buys_path="auto"`` (the default) uses the file next to the clicks
file whose name has ``buys`` in place of ``clicks`` (``yoochoose-buys.dat``) if it exists; pass
a path, or ``None`` for clicks only.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import EventDataError
from ..readers import ROW_INDEX
from . import _common

logger = logging.getLogger(__name__)

CLICK_COLUMNS: tuple[str, ...] = ("session", "timestamp", "item", "category")
BUY_COLUMNS: tuple[str, ...] = ("session", "timestamp", "item", "price", "quantity")
"""The dataset's own column names (the files have no header)."""


def default_buys_path(clicks: Path) -> Path | None:
    """``yoochoose-clicks.dat`` -> ``yoochoose-buys.dat`` (same folder), or None without ``clicks`` in the name."""
    if "clicks" not in clicks.name:
        return None
    return clicks.with_name(clicks.name.replace("clicks", "buys"))


def _read(
    path: Path, names: tuple[str, ...], event: str, encoding: str, unknown_events: str, bad_timestamps: str, now: float
) -> tuple[pa.Table, Path]:
    src = _common.resolve(path, encoding, "csv")
    try:
        table, _ = _common.read_text_table(src, column_names=names, delimiter=",", header=False)
    except EventDataError as e:
        raise _common.with_layout_fix(
            e, f"{len(names)} comma-separated fields, no header: {','.join(names)}"
        ) from None
    n = table.num_rows
    raw = {
        "user_id": table.column("session"),
        "item_id": table.column("item"),
        "event_type": _common.constant_strings(event, n),
        "timestamp": table.column("timestamp"),
        "session_id": table.column("session"),
    }
    if "category" in names:
        category = table.column("category").combine_chunks()
        missing = pc.equal(pc.utf8_trim_whitespace(category), "0")
        raw["category"] = pc.if_else(missing, pa.nulls(n, pa.string()), category)
    if "price" in names:
        raw["price"] = table.column("price")
        raw["quantity"] = table.column("quantity")
    out = _common.assemble(
        src,
        raw,
        names={"user_id": "session", "item_id": "item", "session_id": "session"},
        timestamp_unit="iso",
        unknown_events=unknown_events,
        bad_timestamps=bad_timestamps,
        now=now,
    )
    return out, src.path


def read_yoochoose(
    path: str | Path,
    *,
    buys_path: str | Path | None = "auto",
    unknown_events: str = "error",
    bad_timestamps: str = "error",
    encoding: str = "utf-8",
) -> datasets.Dataset:
    """YOOCHOOSE ``yoochoose-clicks.dat`` (+ ``yoochoose-buys.dat``): clicks and purchases per session."""
    _common.check_policies(unknown_events, bad_timestamps)
    now = time.time()
    clicks, clicks_path = _read(Path(path), CLICK_COLUMNS, "click", encoding, unknown_events, bad_timestamps, now)
    files = [clicks_path]
    buys_file = _common.companion(Path(path), buys_path, default_buys_path)
    if buys_file is None:
        table = clicks
    else:
        logger.info("%s: merging the buys file %s", path, buys_file)
        buys, buys_resolved = _read(buys_file, BUY_COLUMNS, "purchase", encoding, unknown_events, bad_timestamps, now)
        files.append(buys_resolved)
        shifted = pc.add(buys.column(ROW_INDEX), pa.scalar(clicks.num_rows, pa.int64()))
        buys = buys.set_column(buys.column_names.index(ROW_INDEX), ROW_INDEX, shifted)
        table = _common.concat([clicks, buys])
    options = {
        "buys": str(buys_file) if buys_file else None,
        "unknown_events": unknown_events,
        "bad_timestamps": bad_timestamps,
        "encoding": encoding,
    }
    return _common.to_dataset(table, "yoochoose", files, options)


__all__ = ["BUY_COLUMNS", "CLICK_COLUMNS", "default_buys_path", "read_yoochoose"]
