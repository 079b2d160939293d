"""MovieLens ratings (GroupLens): ML-1M/10M ``ratings.dat``, ML-20M/25M/32M ``ratings.csv``, ML-100K ``u.data``.

Where to get it
    https://grouplens.org/datasets/movielens/ (for example ``ml-1m.zip``: 1,000,209 ratings of
    6,040 users; ``ml-25m.zip``: 25,000,095 ratings of 162,541 users). Unzip, then pass the
    ratings file.
Terms
    GroupLens usage licence (in each archive's README): research use, no commercial use and no
    redistribution without permission, no implied endorsement; cite F. M. Harper & J. A. Konstan,
    "The MovieLens Datasets: History and Context", ACM TiiS 5(4), 2015.

File layouts (detected from the first line)::

    ratings.dat (ML-1M, ML-10M)   UserID::MovieID::Rating::Timestamp      1::1193::5::978300760
    ratings.csv (ML-20M and on)   userId,movieId,rating,timestamp        (header row) 1,296,5.0,1147880044
    u.data (ML-100K)              user id <tab> item id <tab> rating <tab> timestamp

Mapping to the canonical schema
    * ``UserID``/``userId`` -> ``user_id``; ``MovieID``/``movieId`` -> ``item_id``.
    * ``timestamp`` is unix seconds.
    * A rating is an explicit judgement, not a behaviour: every rating becomes ``event_type``
      ``view`` ("watched") whatever its value, the usual implicit-feedback reading of MovieLens
      (BERT4Rec, SASRec). ``purchase_min_rating=4`` instead turns ratings >= 4 into ``purchase``
      events (a "liked" signal) and keeps the others as ``view``. The rating value itself is not
      kept. Ratings must be 0.5 .. 5 in half steps; another value is an error (or, with
      ``unknown_events="drop"``, dropped and counted under ``unknown_event_type``).
    * Many ratings share a second (users rate in bursts); such ties keep the file order.
"""

from __future__ import annotations

from pathlib import Path

import datasets

from ..errors import EventDataError
from ..readers import read_events
from . import _common

DAT_COLUMNS: tuple[str, ...] = ("UserID", "MovieID", "Rating", "Timestamp")
CSV_COLUMNS: tuple[str, ...] = ("userId", "movieId", "rating", "timestamp")
"""The dataset's own column names (ratings.dat has no header; ratings.csv has this one)."""

RATINGS: tuple[float, ...] = tuple(x / 2 for x in range(1, 11))
"""Valid rating values: 0.5, 1.0, ..., 5.0 (ML-1M and ML-100K use only the whole stars)."""


def _rating_aliases(purchase_min_rating: float | None) -> dict[str, str]:
    """Every spelling of a valid rating ("4", "4.0", "3.5") -> its event type."""
    aliases: dict[str, str] = {}
    for value in RATINGS:
        event = "purchase" if purchase_min_rating is not None and value >= purchase_min_rating else "view"
        for text in {f"{value:g}", f"{value:.1f}"}:
            aliases[text] = event
    return aliases


def _layout(src: _common.Source) -> str:
    with src.stream() as f:
        head = f.read(1 << 16)
    first = head.split(b"\n", 1)[0]
    if b"::" in first:
        return "dat"
    if b"\t" in first:
        return "tab"
    return "csv"


def read_movielens(
    path: str | Path,
    *,
    purchase_min_rating: float | None = None,
    unknown_events: str = "error",
    bad_timestamps: str = "error",
    encoding: str = "utf-8",
) -> datasets.Dataset:
    """MovieLens ratings (``::``, csv or tab layout); every rating is a ``view`` by default."""
    _common.check_policies(unknown_events, bad_timestamps)
    threshold = None if purchase_min_rating is None else float(purchase_min_rating)
    src = _common.resolve(path, encoding, "csv")
    layout = _layout(src)
    if layout == "dat":
        # '::' is two characters; with ':' as the delimiter every other field is empty.
        names = [DAT_COLUMNS[0], "_1", DAT_COLUMNS[1], "_2", DAT_COLUMNS[2], "_3", DAT_COLUMNS[3]]
        options = {"column_names": names, "delimiter": ":"}
        user, item, rating, ts = DAT_COLUMNS
    elif layout == "tab":
        options = {"column_names": list(DAT_COLUMNS), "delimiter": "\t"}
        user, item, rating, ts = DAT_COLUMNS
    else:
        options = {}
        user, item, rating, ts = CSV_COLUMNS
    try:
        return read_events(
            path,
            file_format="csv",
            column_map={"user_id": user, "item_id": item, "event_type": rating, "timestamp": ts},
            encoding=encoding,
            event_aliases=_rating_aliases(threshold),
            timestamp_unit="s",
            unknown_events=unknown_events,
            bad_timestamps=bad_timestamps,
            **options,
        )
    except EventDataError as e:
        if e.column != rating or "not a known event type" not in e.message:
            layouts = {
                "dat": "UserID::MovieID::Rating::Timestamp",
                "tab": "user <tab> item <tab> rating <tab> timestamp",
            }
            csv_layout = "a header row userId,movieId,rating,timestamp (ratings.csv)"
            raise _common.with_layout_fix(e, layouts.get(layout, csv_layout)) from None
        raise EventDataError(
            "is not a MovieLens rating (0.5 .. 5 in half steps)",
            path=e.path,
            row=e.row,
            line=e.line,
            column=e.column,
            value=e.value,
            fix="correct the value, or drop such rows with unknown_events='drop' (CLI: --unknown-events drop); "
            "they are counted under 'unknown_event_type' in the drop report.",
        ) from None


__all__ = ["CSV_COLUMNS", "DAT_COLUMNS", "RATINGS", "read_movielens"]
