"""Readers for public e-commerce / recommendation datasets, in their original file formats.

Each format is one small module (its docstring says where to get the full data, under what
terms, and exactly how its columns map to the canonical schema of :mod:`seqbert.data.schema`).
Every reader returns what :func:`seqbert.data.readers.read_events` returns: a
:class:`datasets.Dataset` with the canonical columns, ``row_index`` and the marker columns of the
``drop`` policies, ready for :func:`seqbert.data.cleaning.clean_events`.

>>> from seqbert.data.formats import read_dataset
>>> events = read_dataset("taobao", "UserBehavior.csv")          # doctest: +SKIP
>>> events = read_dataset("yoochoose", "yoochoose-clicks.dat")   # doctest: +SKIP

CLI: ``seqbert prepare FILE --dataset-format NAME --output-dir OUT``.

========================  ==========================================================================
name                      file
========================  ==========================================================================
``taobao``                Taobao UserBehavior ``UserBehavior.csv``
``otto``                  OTTO ``train.jsonl`` / ``test.jsonl`` sessions
``retailrocket``          RetailRocket ``events.csv``
``diginetica``            DIGINETICA (CIKM Cup 2016) ``train-item-views.csv``
``yoochoose``             YOOCHOOSE (RecSys Challenge 2015) ``yoochoose-clicks.dat`` (+ ``-buys.dat``)
``amazon_s3rec``          S3-Rec Amazon sequences ``Beauty.txt`` (+ ``_item2attributes.json``)
``movielens``             MovieLens ``ratings.dat`` / ``ratings.csv`` / ``u.data``
========================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets

from ..errors import EventDataError
from . import _common
from .amazon_s3rec import read_amazon_s3rec
from .diginetica import read_diginetica
from .movielens import read_movielens
from .otto import read_otto
from .retailrocket import read_retailrocket
from .taobao import read_taobao
from .yoochoose import read_yoochoose

FORMATS: dict[str, Callable[..., datasets.Dataset]] = {
    "taobao": read_taobao,
    "otto": read_otto,
    "retailrocket": read_retailrocket,
    "diginetica": read_diginetica,
    "yoochoose": read_yoochoose,
    "amazon_s3rec": read_amazon_s3rec,
    "movielens": read_movielens,
}
"""Dataset format name -> reader ``(path, **options) -> datasets.Dataset``."""

# read_events options that a dataset format decides itself: accepted only at their defaults (so that
# callers such as the CLI can pass their full set of read options unchanged).
_GENERIC_DEFAULTS: dict[str, Any] = {
    "file_format": None,
    "column_map": None,
    "column_names": None,
    "delimiter": None,
    "encoding": "utf-8",
    "event_aliases": None,
    "timestamp_unit": "auto",
    "unknown_events": "error",
    "bad_timestamps": "error",
}
_CLI = {
    "file_format": "--format",
    "column_map": "--column",
    "column_names": "--column-names",
    "delimiter": "--delimiter",
    "encoding": "--encoding",
    "event_aliases": "--event-alias",
    "timestamp_unit": "--timestamp-unit",
    "unknown_events": "--unknown-events",
    "bad_timestamps": "--bad-timestamps",
}


DESCRIPTIONS: dict[str, str] = {
    "taobao": "Taobao UserBehavior.csv",
    "otto": "OTTO train.jsonl / test.jsonl",
    "retailrocket": "RetailRocket events.csv",
    "diginetica": "DIGINETICA train-item-views.csv",
    "yoochoose": "YOOCHOOSE yoochoose-clicks.dat (+ yoochoose-buys.dat next to it)",
    "amazon_s3rec": "S3-Rec Amazon Beauty.txt etc. (+ Beauty_item2attributes.json next to it)",
    "movielens": "MovieLens ratings.dat / ratings.csv / u.data",
}
"""Name -> the dataset and the file to pass (for help texts)."""


def describe_formats() -> str:
    """One line listing every format and its file, e.g. for a command's help."""
    return "; ".join(f"{name}: {DESCRIPTIONS.get(name, name)}" for name in FORMATS)


def get_reader(name: str) -> Callable[..., datasets.Dataset]:
    """The reader for ``name`` (case-insensitive, ``-`` and ``_`` alike).

    Raises :class:`~seqbert.data.errors.EventDataError` (a ``ValueError``) listing the known names.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in FORMATS:
        raise EventDataError(
            f"unknown dataset format {name!r}", fix=f"use one of {', '.join(FORMATS)} (CLI: --dataset-format NAME)."
        )
    return FORMATS[key]


def read_dataset(name: str, path: str | Path, **options: Any) -> datasets.Dataset:
    """Read a public dataset's file in its original format into the canonical event schema.

    Args:
        name: one of :data:`FORMATS` (``taobao``, ``otto``, ``retailrocket``, ``diginetica``,
            ``yoochoose``, ``amazon_s3rec``, ``movielens``).
        path: the dataset's file (see each format module for which one).
        **options: the format's own options (see its reader), e.g. ``bad_timestamps="drop"``,
            ``buys_path=...`` (yoochoose), ``attributes_path=...`` (amazon_s3rec). Generic
            :func:`~seqbert.data.readers.read_events` options that the format fixes (column
            mapping, delimiter, timestamp unit, ...) are accepted only at their defaults or None.

    Raises:
        EventDataError: (a ``ValueError``) an unknown format name (the message lists the known ones),
            an option the format does not take, or any problem with the file, naming file, row,
            column, value and fix.
    """
    reader = get_reader(name)
    accepted = _common.accepted_options(reader)
    passed: dict[str, Any] = {}
    for key, value in options.items():
        if key in accepted:
            passed[key] = value
            continue
        if key in _GENERIC_DEFAULTS and (
            value is None or value == _GENERIC_DEFAULTS[key] or value == {} or value == []
        ):
            continue  # a generic option left at its default: nothing to honour
        if key in _GENERIC_DEFAULTS:
            what = f"{key}={value!r}" + (f" (CLI: {_CLI[key]})" if key in _CLI else "")
            problem = f"option {what} does not apply to dataset format {name!r}, which fixes its own layout"
        else:
            problem = f"{key!r} is not an option of dataset format {name!r}"
        raise EventDataError(problem, path=str(path), fix=f"leave it out; the format takes: {', '.join(accepted)}.")
    return reader(path, **passed)


__all__ = [
    "DESCRIPTIONS",
    "FORMATS",
    "describe_formats",
    "get_reader",
    "read_amazon_s3rec",
    "read_dataset",
    "read_diginetica",
    "read_movielens",
    "read_otto",
    "read_retailrocket",
    "read_taobao",
    "read_yoochoose",
]
