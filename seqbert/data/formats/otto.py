"""OTTO Recommender Systems Dataset (sessions as JSON Lines).

Where to get it
    Kaggle dataset ``otto/recsys-dataset`` or the Kaggle competition ``otto-recommender-system``
    (about 11 GB of jsonl: 12.9M train sessions, 216.7M events over 4 weeks, plus 1.67M test
    sessions of the following week); documentation and tools: https://github.com/otto-de/recsys-dataset.
Terms
    Data under CC BY 4.0. Attribution: "OTTO (GmbH & Co KG), OTTO Recommender Systems Dataset,
    https://github.com/otto-de/recsys-dataset"; the repository also names a paper to cite
    (MultiTRON, arXiv:2407.16828).

File layout (one session per line)::

    {"session": 0, "events": [{"aid": 1517085, "ts": 1659304800025, "type": "clicks"}, ...]}

Mapping to the canonical schema
    * Each session line becomes one row per event (the list is exploded with Arrow list kernels:
      no per-event Python). ``user_id`` = ``session``: OTTO sessions are anonymous user histories
      of up to 4 weeks, so no ``session_id`` column is set and seqbert's own inactivity gap splits
      them into sessions.
    * ``aid`` -> ``item_id``; ``type``: ``clicks`` -> ``click``, ``carts`` -> ``cart``,
      ``orders`` -> ``purchase``.
    * ``ts`` is unix **milliseconds**, floored to seconds. Events keep their order in the line
      (``row_index`` is the position in the exploded file), so events within one second, such as
      the items of one order (which share a ``ts``), stay in file order.
    * Error messages name the line (the session) and the event's position in ``events``.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from ..errors import EventDataError
from ..sources import READ_BLOCK_SIZE, Source, io_error, json_syntax_error
from . import _common

EVENT_ALIASES: dict[str, str] = {"clicks": "click", "carts": "cart", "orders": "purchase"}

_SCHEMA = pa.schema(
    [
        ("session", pa.int64()),
        ("events", pa.list_(pa.struct([("aid", pa.int64()), ("ts", pa.int64()), ("type", pa.string())]))),
    ]
)


class _SessionSource(Source):
    """Locates an exploded event by its session line and its position in ``events`` (error path only)."""

    parents: np.ndarray  # session row (0-based) of each exploded event
    offsets: np.ndarray  # list offsets of the events column, from 0

    def row_error(self, message: str, index: int, **kwargs: Any) -> EventDataError:
        session = int(self.parents[index])
        position = index - int(self.offsets[session])
        column = kwargs.pop("column", None)
        column = f"events[{position}].{column}" if column else None
        return EventDataError(
            message, path=self.display, row=session + 1, line=self.line_of(session + 1), column=column, **kwargs
        )


def _read_sessions(src: Source) -> pa.Table:
    def read(schema: pa.Schema | None) -> pa.Table:
        with src.stream() as f:
            stream: Any = f
            if codecs.lookup(src.encoding).name != "utf-8":
                stream = pa.transcoding_input_stream(f, src.encoding, "utf-8")
            return pj.read_json(
                stream,
                read_options=pj.ReadOptions(block_size=READ_BLOCK_SIZE),
                parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
                if schema is not None
                else None,
            )

    try:
        try:
            table = read(_SCHEMA)
            n = table.num_rows
            if n == 0 or (table.column("session").null_count < n and table.column("events").null_count < n):
                return table
            table = read(None)  # no 'session' or no 'events' anywhere: see what the lines hold
        except pa.ArrowInvalid:
            table = read(None)  # ids or times not plain integers: let inference show what is there
    except pa.ArrowInvalid as e:
        raise json_syntax_error(src, str(e)) from None
    except (OSError, EOFError) as e:
        raise io_error(src, e) from None
    example = '{"session": 0, "events": [{"aid": 1517085, "ts": 1659304800025, "type": "clicks"}]}'
    fields = {f.name: f.type for f in table.schema}
    event_type = fields.get("events")
    if (
        "session" not in fields
        or event_type is None
        or not pa.types.is_list(event_type)
        or not pa.types.is_struct(event_type.value_type)
        or not {"aid", "ts", "type"} <= {f.name for f in event_type.value_type}
    ):
        raise src.error(
            f"is not an OTTO session file: expected the fields 'session' and 'events' (a list of objects with "
            f"'aid', 'ts', 'type'), found {', '.join(f'{k}: {v}' for k, v in fields.items())}",
            fix=f"pass the original train.jsonl / test.jsonl, one session per line, like {example}.",
        )
    return table.select(["session", "events"])


def read_otto(
    path: str | Path,
    *,
    event_aliases: Mapping[str, str] | None = None,
    unknown_events: str = "error",
    bad_timestamps: str = "error",
    encoding: str = "utf-8",
) -> datasets.Dataset:
    """OTTO ``train.jsonl`` / ``test.jsonl`` (sessions of clicks/carts/orders; ms timestamps)."""
    _common.check_policies(unknown_events, bad_timestamps)
    src = _common.resolve(path, encoding, "jsonl")
    sessions = _read_sessions(src)
    if sessions.num_rows == 0:
        raise src.error("has no sessions", fix="check that the file was written completely.")
    events = sessions.column("events").combine_chunks()
    if events.null_count:
        events = pc.fill_null(events, pa.scalar([], events.type))
    parents = pc.list_parent_indices(events).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(events)
    n = len(flat)
    if n == 0:
        raise src.error("has sessions but no events", fix="check that this is the original OTTO file.")
    offsets = events.offsets.to_numpy()
    located = _SessionSource(src.path, src.display, src.fmt, src.compression, src.encoding)
    located.parents, located.offsets = parents, offsets - offsets[0]

    session_ids = sessions.column("session").combine_chunks().take(pa.array(parents))
    raw = {
        "user_id": session_ids,
        "item_id": pc.struct_field(flat, "aid"),
        "event_type": pc.struct_field(flat, "type"),
        "timestamp": pc.struct_field(flat, "ts"),
    }
    table = _common.assemble(
        located,
        raw,
        names={"user_id": "session", "item_id": "aid", "event_type": "type", "timestamp": "ts"},
        event_aliases={**EVENT_ALIASES, **dict(event_aliases or {})},
        timestamp_unit="ms",
        unknown_events=unknown_events,
        bad_timestamps=bad_timestamps,
    )
    options = {
        "event_aliases": dict(event_aliases or {}),
        "unknown_events": unknown_events,
        "bad_timestamps": bad_timestamps,
        "encoding": encoding,
    }
    return _common.to_dataset(table, "otto", [src.path], options)


__all__ = ["EVENT_ALIASES", "read_otto"]
