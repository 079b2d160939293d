"""RetailRocket e-commerce dataset (``events.csv``).

Where to get it
    Kaggle dataset ``retailrocket/ecommerce-dataset``
    (https://www.kaggle.com/datasets/retailrocket/ecommerce-dataset): ``events.csv`` (2,756,101
    events of 1,407,580 visitors over 4.5 months of 2015), plus item properties and a category
    tree that this reader does not use.
Terms
    The Kaggle page lists the licence as CC BY-NC-SA 4.0 (non-commercial, share-alike,
    attribution to Retail Rocket); this could not be re-checked offline, so confirm it there.

File layout (header row, comma-separated)::

    timestamp,visitorid,event,itemid,transactionid
    1439694000000,1,view,100,
    1439694000000,2,transaction,1000,234

Mapping to the canonical schema
    * ``visitorid`` -> ``user_id``; ``itemid`` -> ``item_id``.
    * ``event``: ``view`` -> ``view``, ``addtocart`` -> ``cart``, ``transaction`` -> ``purchase``.
    * ``timestamp`` is unix **milliseconds**, floored to seconds.
    * ``transactionid`` (set on purchases only) has no canonical column and is not read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import datasets

from ..errors import EventDataError
from ..readers import read_events
from ._common import with_layout_fix

COLUMN_NAMES: tuple[str, ...] = ("timestamp", "visitorid", "event", "itemid", "transactionid")
"""The dataset's own column names, in file order (the file has this header)."""

EVENT_ALIASES: dict[str, str] = {"view": "view", "addtocart": "cart", "transaction": "purchase"}


def read_retailrocket(
    path: str | Path,
    *,
    event_aliases: Mapping[str, str] | None = None,
    unknown_events: str = "error",
    bad_timestamps: str = "error",
    encoding: str = "utf-8",
) -> datasets.Dataset:
    """RetailRocket ``events.csv`` (view/addtocart/transaction; unix milliseconds)."""
    try:
        return read_events(
            path,
            file_format="csv",
            column_map={"user_id": "visitorid", "item_id": "itemid", "event_type": "event", "timestamp": "timestamp"},
            encoding=encoding,
            event_aliases={**EVENT_ALIASES, **dict(event_aliases or {})},
            timestamp_unit="ms",
            unknown_events=unknown_events,
            bad_timestamps=bad_timestamps,
        )
    except EventDataError as e:
        raise with_layout_fix(e, "a header row " + ",".join(COLUMN_NAMES) + ", comma-separated") from None


__all__ = ["COLUMN_NAMES", "EVENT_ALIASES", "read_retailrocket"]
