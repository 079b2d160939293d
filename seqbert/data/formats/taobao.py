"""Taobao UserBehavior (Alibaba, Tianchi dataset 649).

Where to get it
    https://tianchi.aliyun.com/dataset/649 (free Tianchi/Aliyun account): ``UserBehavior.csv.zip``,
    about 906 MB (3.4 GB unzipped; 100,150,807 rows of about 1M random users, 2017-11-25 ..
    2017-12-03). Unzip it first (``.gz``/``.bz2``/``.zst`` recompressions are read directly).
Terms
    Released by Alibaba for research. No open licence is given: treat it as research-only and
    non-commercial. Cite Han Zhu et al., "Learning Tree-based Deep Model for Recommender
    Systems", KDD 2018.

File layout (no header row, comma-separated)::

    user_id,item_id,category_id,behavior_type,timestamp
    1,2268318,2520377,pv,1511544070

Mapping to the canonical schema
    * ``user_id``, ``item_id`` as logged; ``category_id`` -> ``category``.
    * ``behavior_type``: ``pv`` -> ``view``, ``cart`` -> ``cart``, ``fav`` -> ``fav``,
      ``buy`` -> ``purchase`` (extra ``event_aliases`` are merged over these).
    * ``timestamp`` is unix seconds (absolute time; the dataset's documentation reads it in China
      Standard Time, UTC+8, which only matters for calendar days: 2017-11-25 00:00 CST is
      1511539200). The original file has a few rows outside the official 9-day window; they are
      kept (they are valid times). Rows with impossible times (before 1990 or in the future)
      follow ``bad_timestamps``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import datasets

from ..errors import EventDataError
from ..readers import read_events
from ._common import with_layout_fix

COLUMN_NAMES: tuple[str, ...] = ("user_id", "item_id", "category_id", "behavior_type", "timestamp")
"""The dataset's own column names, in file order."""

EVENT_ALIASES: dict[str, str] = {"pv": "view", "cart": "cart", "fav": "fav", "buy": "purchase"}


def read_taobao(
    path: str | Path,
    *,
    event_aliases: Mapping[str, str] | None = None,
    unknown_events: str = "error",
    bad_timestamps: str = "error",
    encoding: str = "utf-8",
) -> datasets.Dataset:
    """Taobao UserBehavior ``UserBehavior.csv`` (no header; pv/cart/fav/buy; unix seconds)."""
    try:
        return read_events(
            path,
            file_format="csv",
            column_names=list(COLUMN_NAMES),
            column_map={"category": "category_id", "event_type": "behavior_type"},
            encoding=encoding,
            event_aliases={**EVENT_ALIASES, **dict(event_aliases or {})},
            timestamp_unit="s",
            unknown_events=unknown_events,
            bad_timestamps=bad_timestamps,
        )
    except EventDataError as e:
        raise with_layout_fix(e, "5 comma-separated fields per line, no header: " + ",".join(COLUMN_NAMES)) from None


__all__ = ["COLUMN_NAMES", "EVENT_ALIASES", "read_taobao"]
