"""Amazon review sequences as released with S3-Rec (``Beauty.txt``, ``Sports_and_Outdoors.txt``, ...).

Where to get it
    https://github.com/RUCAIBox/CIKM2020-S3Rec, folder ``data/``: ``<Category>.txt`` and
    ``<Category>_item2attributes.json`` (``data/data_process.py`` there rebuilds them from the
    Amazon review data of J. McAuley's group, http://jmcauley.ucsd.edu/data/amazon/: 5-core review
    files, users and items filtered to 5-cores again, one line per user in review-time order,
    attributes = brand and categories from the product metadata).
Terms
    The Amazon review data is given out for research; there is no open licence. Cite R. He &
    J. McAuley (WWW 2016) and J. McAuley et al. (SIGIR 2015); for this preprocessing also
    K. Zhou et al., "S3-Rec", CIKM 2020 (the S3-Rec repository has no LICENSE file).
    These are the standard BERT4Rec / SASRec / S3-Rec benchmark sequences.

File layouts::

    Beauty.txt                    user item item ...   (space-separated, one line per user, in time order)
                                  1 1 2 3 4 5
    Beauty_item2attributes.json   {"item": [attribute, ...], ...}
                                  {"4": [1, 2, 3], "83": [4, 5, 6], ...}

Mapping to the canonical schema
    * ``user_id`` = the first token of the line, ``item_id`` = each following token.
    * The files have **no timestamps**, only the order. Timestamps are order-preserving
      surrogates: the k-th item of a line (k = 0, 1, ...) gets ``base_timestamp + k *
      step_seconds`` (default 1,000,000,000 = 2001-09-09T01:46:40Z, and 1 second apart), so every
      user's history is strictly increasing and all users start at the same instant. Only the
      order means anything: use the leave-one-out split (the benchmark protocol: last item test,
      second-to-last validation); a temporal split, time gaps and recency features carry no
      information here. With the default 1-second step, a user's events form one session.
    * ``event_type``: every review stands in for a purchase, so the default is ``purchase``
      (``event_type="view"`` etc. to choose another).
    * ``category`` (only with the attributes file): the attribute id at ``attribute_index`` in the
      item's list (default 0, the first). S3-Rec lists the brand first when the item has one, then
      the sub-categories, so the first attribute is usually the brand; ``attribute_index=-1``
      takes the last one (usually the most specific category). Items without attributes, or with
      fewer than needed, get a null category. ``attribute_index="all"`` keeps every attribute,
      joined by ``|`` in the file's order (``1|2|3``): ``seqbert.training.pretrain
      --item_categories --item_category_separator '|'`` then gives an item all of them.
      ``attributes_path="auto"`` (the default) uses
      ``<stem>_item2attributes.json`` next to the sequence file if it exists; ``None`` skips it.
    * A user on two lines is an error (the surrogate times would collide); lines with a user but
      no items produce no events (a warning counts them).
"""

from __future__ import annotations

import codecs
import json
import logging
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from ..errors import EventDataError
from ..sources import io_error
from ..schema import EVENT_TYPES
from . import _common

logger = logging.getLogger(__name__)

SURROGATE_BASE_TIMESTAMP = 1_000_000_000
"""2001-09-09T01:46:40Z: the surrogate time of every user's first item."""


def default_attributes_path(sequences: Path) -> Path:
    """``Beauty.txt`` -> ``Beauty_item2attributes.json`` in the same folder."""
    name = sequences.name
    stem = name[: name.index(".")] if "." in name else name
    return sequences.with_name(f"{stem}_item2attributes.json")


def _read_lines(src: _common.Source) -> pa.Array:
    try:
        with src.stream() as f:
            table = pv.read_csv(
                f,
                read_options=pv.ReadOptions(
                    column_names=["line"],
                    block_size=8 << 20,
                    encoding="utf8" if codecs.lookup(src.encoding).name == "utf-8" else src.encoding,
                ),
                parse_options=pv.ParseOptions(delimiter="\x1f", quote_char=False, escape_char=False),
                convert_options=pv.ConvertOptions(column_types={"line": pa.string()}, strings_can_be_null=False),
            )
    except pa.ArrowInvalid as e:
        if "utf8" in str(e).lower():
            raise src.encoding_error() from None
        raise src.error(f"could not be read as text lines ({e})", fix="pass the original <Category>.txt.") from None
    except (OSError, EOFError) as e:
        raise io_error(src, e) from None
    return table.column("line").combine_chunks()


ATTRIBUTE_SEPARATOR = "|"
"""Joins an item's attributes into its category with ``attribute_index="all"``."""


def _attribute_index(value: int | str) -> int | None:
    """``attribute_index`` as an int, or None for ``"all"``."""
    if isinstance(value, str) and value.strip().lower() == "all":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise EventDataError(
            f"attribute_index={value!r} is neither an integer nor 'all'", fix="pass e.g. attribute_index=0, -1 or all."
        ) from None


def _read_attributes(path: Path, attribute_index: int | None) -> tuple[pa.Array, pa.Array]:
    """(item ids, attribute id at ``attribute_index`` or null; all of them joined by
    :data:`ATTRIBUTE_SEPARATOR` when it is None) from ``<stem>_item2attributes.json``."""
    display = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EventDataError("file not found", path=display, fix="check the attributes_path, or pass None.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EventDataError(
            f"is not valid JSON ({e})", path=display, fix="pass the original <Category>_item2attributes.json."
        ) from None
    if not isinstance(data, dict):
        raise EventDataError(
            f"holds a JSON {type(data).__name__}, expected an object {{item: [attribute, ...]}}",
            path=display,
            fix="pass the original <Category>_item2attributes.json.",
        )
    items = pa.array([str(k) for k in data], pa.string())  # per item, not per event: a small metadata file
    try:
        lists = pa.array(list(data.values()), pa.list_(pa.string()))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        try:
            lists = pc.cast(pa.array(list(data.values())), pa.list_(pa.string()))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
            raise EventDataError(
                f"has values that are not lists of attribute ids ({e})",
                path=display,
                fix="pass the original <Category>_item2attributes.json.",
            ) from None
    if attribute_index is None:
        joined = pc.binary_join(lists, ATTRIBUTE_SEPARATOR)
        return items, pc.if_else(pc.equal(joined, ""), pa.scalar(None, pa.string()), joined)
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = lists.offsets.to_numpy().astype(np.int64)
    position = attribute_index if attribute_index >= 0 else lengths + attribute_index
    has = (position >= 0) & (position < lengths)
    take = np.where(has, offsets[:-1] + position, 0)
    values = lists.values
    chosen = values.take(pa.array(take)) if len(values) else pa.nulls(len(items), pa.string())
    chosen = pc.if_else(pa.array(has), chosen, pa.nulls(len(items), pa.string()))
    return items, chosen


def read_amazon_s3rec(
    path: str | Path,
    *,
    attributes_path: str | Path | None = "auto",
    attribute_index: int | str = 0,
    event_type: str = "purchase",
    base_timestamp: int = SURROGATE_BASE_TIMESTAMP,
    step_seconds: int = 1,
    unknown_events: str = "error",
    bad_timestamps: str = "error",
    encoding: str = "utf-8",
) -> datasets.Dataset:
    """S3-Rec ``<Category>.txt`` (+ ``<Category>_item2attributes.json``); surrogate, order-only timestamps."""
    _common.check_policies(unknown_events, bad_timestamps)
    index = _attribute_index(attribute_index)
    if event_type not in EVENT_TYPES:
        raise EventDataError(
            f"event_type={event_type!r} is not a canonical event type", fix=f"use one of {', '.join(EVENT_TYPES)}."
        )
    if int(step_seconds) < 1:
        raise EventDataError(f"step_seconds must be >= 1, got {step_seconds}", fix="pass e.g. step_seconds=1.")
    src = _common.resolve(path, encoding, "csv")
    lines = _read_lines(src)
    tokens = pc.utf8_split_whitespace(lines)
    lengths = pc.list_value_length(tokens).to_numpy(zero_copy_only=False).astype(np.int64)
    keep = lengths > 0  # blank (whitespace-only) lines
    if not keep.all():
        tokens, lengths = tokens.filter(pa.array(keep)), lengths[keep]
    if len(tokens) == 0:
        raise src.error("has no lines with a user", fix="check that the file was written completely.")
    users = pc.list_element(tokens, 0)

    encoded = pc.dictionary_encode(users)
    if len(encoded.dictionary) != len(users):
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        order = np.argsort(codes, kind="stable")
        repeated = order[1:][codes[order][1:] == codes[order][:-1]]  # later lines of repeated users
        second = int(repeated.min())
        first = int(np.flatnonzero(codes == codes[second])[0])
        user = users[second].as_py()
        raise src.error(
            f"user {user!r} has two lines (data rows {first + 1} and {second + 1}); each user must have one line "
            "(one time-ordered history)",
            fix="merge the lines in time order, or pass the original file.",
        )
    empty = int((lengths == 1).sum())
    if empty:
        logger.warning("%s: %d line(s) have a user but no items; they produce no events", src.display, empty)

    flat = pc.list_flatten(tokens)
    offsets = tokens.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    parents = np.repeat(np.arange(len(lengths)), lengths)
    positions = np.arange(len(flat), dtype=np.int64) - offsets[parents]
    is_item = positions > 0
    item_rows = np.flatnonzero(is_item)
    n = len(item_rows)
    if n == 0:
        raise src.error("has users but no items", fix="pass the original <Category>.txt (user item item ...).")
    items = flat.take(pa.array(item_rows))
    seconds = int(base_timestamp) + (positions[item_rows] - 1) * int(step_seconds)
    raw = {
        "user_id": users.take(pa.array(parents[item_rows])),
        "item_id": items,
        "event_type": _common.constant_strings(event_type, n),
    }
    files = [src.path]
    attributes = _common.companion(Path(path), attributes_path, default_attributes_path)
    if attributes is not None:
        keys, chosen = _read_attributes(attributes, index)
        raw["category"] = chosen.take(pc.index_in(items, value_set=keys))
        files.append(attributes)
    table = _common.assemble(
        src,
        raw,
        unknown_events=unknown_events,
        bad_timestamps=bad_timestamps,
        timestamps=(pa.array(seconds, pa.int64()), np.zeros(n, dtype=bool)),
    )
    options = {
        "attributes": str(attributes) if attributes else None,
        "attribute_index": "all" if index is None else index,
        "event_type": event_type,
        "base_timestamp": int(base_timestamp),
        "step_seconds": int(step_seconds),
        "unknown_events": unknown_events,
        "bad_timestamps": bad_timestamps,
        "encoding": encoding,
    }
    return _common.to_dataset(table, "amazon_s3rec", files, options)


__all__ = ["ATTRIBUTE_SEPARATOR", "SURROGATE_BASE_TIMESTAMP", "default_attributes_path", "read_amazon_s3rec"]
