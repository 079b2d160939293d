"""DIGINETICA item views (CIKM Cup 2016, Track 2: personalized e-commerce search).

Where to get it
    https://competitions.codalab.org/competitions/11161 (CIKM Cup 2016,
    http://cikm2016.cs.iupui.edu/cikm-cup): ``train-item-views.csv`` in the dataset archive, next
    to ``train-purchases.csv``, ``train-queries.csv``, ``products.csv`` and
    ``product-categories.csv`` (not read here). SR-GNN's small ``sample_train-item-views.csv`` has
    the same layout.
Terms
    Released by DIGINETICA for the competition and for research; no open licence was found.
    Treat it as research-only and non-commercial, and cite the CIKM Cup 2016.

File layout (header row, ``;``-separated)::

    sessionId;userId;itemId;timeframe;eventdate
    1;NA;81766;526309;2016-05-09

(SR-GNN's sample spells the header ``session_id;user_id;item_id;timeframe;eventdate``; both are
accepted.)

Mapping to the canonical schema
    * ``user_id`` = ``session_id`` = ``sessionId``. ``userId`` is missing (``NA``) for anonymous
      sessions (most of them: 62% of the rows of SR-GNN's sample) and is not read: one sequence
      per session, as in the session-based recommendation literature (SR-GNN, NARM, ...).
    * ``itemId`` -> ``item_id``; every row is an item view: ``event_type`` = ``view``.
    * ``timestamp``: the file has no time of day. ``eventdate`` is the day of each view and
      ``timeframe`` the milliseconds since the session started, so a session that crosses
      midnight changes ``eventdate`` half-way. The timestamp is therefore
      ``(earliest eventdate of the session, 00:00 UTC) + floor(timeframe / 1000)`` seconds: within
      a session the order and the gaps are exact (to the second); across sessions only the day is
      meaningful (every session is placed as if it started at 00:00 UTC of its first day; the
      dates carry no timezone and are read as UTC days).
      A ``timeframe`` that is not a whole number >= 0 or an unparsable ``eventdate`` is a bad
      timestamp (``bad_timestamps``).
    * The file is not time-ordered within a session. Rows are returned ordered by (session in
      order of first appearance, ``timeframe``, file row), and ``row_index`` numbers them in that
      order, so ties within one second keep the true order. Error messages name file rows.
"""

from __future__ import annotations

import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..readers import FUTURE_TOLERANCE_S, MIN_TIMESTAMP, ROW_INDEX
from . import _common

COLUMN_NAMES: tuple[str, ...] = ("sessionId", "userId", "itemId", "timeframe", "eventdate")
"""The dataset's own column names, in file order (the file has this header)."""

_NEEDED = ("sessionid", "itemid", "timeframe", "eventdate")


def read_diginetica(
    path: str | Path,
    *,
    unknown_events: str = "error",
    bad_timestamps: str = "error",
    encoding: str = "utf-8",
) -> datasets.Dataset:
    """DIGINETICA ``train-item-views.csv`` (``;``-separated views; day + ms offset in the session)."""
    _common.check_policies(unknown_events, bad_timestamps)
    now = time.time()
    src = _common.resolve(path, encoding, "csv")
    table, names = _common.read_text_table(src, column_names=None, delimiter=";", header=True)
    by_key = {name.lower().replace("_", ""): name for name in names}
    missing = [key for key in _NEEDED if key not in by_key]
    if missing:
        raise src.error(
            f"is not a DIGINETICA item-views file: the header has {names}, without "
            f"{', '.join(repr(k) for k in missing)}",
            line=1,
            fix="pass the original train-item-views.csv: ';'-separated, header " + ";".join(COLUMN_NAMES) + ".",
        )
    session_col, item_col, frame_col, date_col = (by_key[k] for k in _NEEDED)
    n = table.num_rows

    # Day of each view (UTC midnight) and the offset within the session.
    date_text = table.column(date_col).combine_chunks()
    parsed = pc.strptime(pc.utf8_trim_whitespace(date_text), format="%Y-%m-%d", unit="s", error_is_null=True)
    day = pc.fill_null(pc.cast(parsed, pa.int64()), 0).to_numpy(zero_copy_only=False)
    date_present = ~date_text.is_null().to_numpy(zero_copy_only=False)
    date_ok = ~parsed.is_null().to_numpy(zero_copy_only=False) & (day >= MIN_TIMESTAMP) & (day <= now)
    date_bad = date_present & ~date_ok
    if date_bad.any() and bad_timestamps == "error":
        raise _common.bad_rows_error(
            src,
            date_bad,
            date_text,
            column=date_col,
            what="is not a date YYYY-MM-DD between 1990-01-01 and today",
            fix="correct the value",
        )
    frames = table.column(frame_col).combine_chunks()
    frame, frame_ok = _common.parse_integers(frames)
    frame_present = ~frames.is_null().to_numpy(zero_copy_only=False)
    frame_bad = frame_present & (~frame_ok | (frame < 0))

    # Session start day: the earliest valid eventdate of the session.
    sessions = table.column(session_col).combine_chunks()
    encoded = pc.dictionary_encode(sessions)
    n_codes = len(encoded.dictionary)
    codes = pc.fill_null(encoded.indices, n_codes).to_numpy(zero_copy_only=False).astype(np.int64)
    start_by_code = np.full(n_codes + 1, np.iinfo(np.int64).max, dtype=np.int64)
    if date_ok.any():
        starts = (
            pa.table({"s": codes[date_ok], "d": day[date_ok]})
            .group_by("s", use_threads=False)
            .aggregate([("d", "min")])
        )
        start_by_code[starts.column("s").to_numpy()] = starts.column("d_min").to_numpy()
    start = start_by_code[codes]

    seconds = np.where(date_ok & frame_ok & (frame >= 0), start + frame // 1000, 0)
    frame_bad |= frame_ok & (frame >= 0) & date_ok & (seconds > now + FUTURE_TOLERANCE_S)
    if frame_bad.any() and bad_timestamps == "error":
        raise _common.bad_rows_error(
            src,
            frame_bad,
            frames,
            column=frame_col,
            what="is not a time offset (whole milliseconds >= 0 since the session started)",
            fix="correct the value",
        )
    valid = date_ok & frame_ok & ~frame_bad
    bad = date_bad | frame_bad
    ts = pa.array(seconds, pa.int64(), mask=~valid)

    out = _common.assemble(
        src,
        {
            "user_id": sessions,
            "item_id": table.column(item_col),
            "event_type": _common.constant_strings("view", n),
            "session_id": sessions,
        },
        names={"user_id": session_col, "item_id": item_col, "session_id": session_col},
        unknown_events=unknown_events,
        bad_timestamps=bad_timestamps,
        timestamps=(ts, bad),
        now=now,
    )
    # Time order: (session in order of first appearance, timeframe), ties in file order (stable sort).
    frame_key = np.where(frame_ok & (frame >= 0), frame, 0)
    span = int(frame_key.max()) + 1
    if (n_codes + 1) * span < 2**62:  # one packed integer key: a stable argsort is ~20x faster than lexsort
        order = np.argsort(codes * span + frame_key, kind="stable")
    else:
        order = np.lexsort((frame_key, codes))
    out = out.take(pa.array(order))
    out = out.set_column(out.column_names.index(ROW_INDEX), ROW_INDEX, pa.array(np.arange(n, dtype=np.int64)))
    options = {"unknown_events": unknown_events, "bad_timestamps": bad_timestamps, "encoding": encoding}
    return _common.to_dataset(out, "diginetica", [src.path], options)


__all__ = ["COLUMN_NAMES", "read_diginetica"]
