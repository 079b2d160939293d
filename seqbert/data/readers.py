"""Read a raw event log (csv / tsv / parquet / jsonl, optionally compressed) into the canonical schema.

:func:`read_events` returns a :class:`datasets.Dataset` with the canonical columns of
:mod:`seqbert.data.schema` (the required ones plus whichever optional ones the file has), typed per
:data:`~seqbert.data.schema.ARROW_TYPES`, plus an int64 ``row_index`` (0-based position in the file,
used for stable sorting and error messages).

This module parses the files and selects their columns; :mod:`seqbert.data.sources` checks the
path and builds error messages that point into the file, and :mod:`seqbert.data.canonical` turns
raw columns into canonical events (:func:`~seqbert.data.canonical.to_canonical_events`, the same
path the public-dataset readers of :mod:`seqbert.data.formats` use). Their public names are
importable from here too.

Everything is vectorised with ``pyarrow.compute`` / numpy; Python loops only run on error paths
(to find the line number of a bad row) and in the fallback reader for JSON Lines files whose
columns mix value types.

Reading rules
-------------
* Text files are read with every column as a string first, then cast: ids stay exactly as logged
  (``"007"`` stays ``"007"``; a column mixing ``123`` and ``"u-9"`` is simply strings).
* Missing values: in csv/tsv an empty field and the tokens in :data:`CSV_NULL_VALUES` (``NA``,
  ``null``, ``NaN``...) are missing; in jsonl/parquet native nulls and empty strings are missing.
  Rows with a missing ``user_id``/``item_id``/``event_type``/``timestamp`` are kept (value null);
  :func:`seqbert.data.cleaning.clean_events` counts and drops them under ``missing_field``.
* Timestamps become int64 unix seconds (UTC), fractions floored:

  - numbers are unix seconds or milliseconds. ``timestamp_unit="auto"`` decides per column: if
    the median absolute value of the numeric timestamps is >= :data:`MILLISECONDS_THRESHOLD`
    (1e11; 1e11 seconds is the year 5138 while 1e11 milliseconds is 1973-03-03), the column is
    milliseconds, otherwise seconds. Values that do not fit the decision then fall outside the
    valid range and are reported as bad timestamps, never silently mis-scaled;
  - strings in ISO-8601 form (``2017-11-26T09:00:00+08:00``, ``...Z``, ``2017-11-26 09:00``,
    ``2017-11-26``) are converted to UTC. Values without a timezone are read as UTC and a single
    warning is logged per call;
  - native parquet/JSON timestamp and date types are converted directly (any ``timestamp_unit``);
  - a timestamp is *bad* if it cannot be parsed, or is before 1990-01-01 (:data:`MIN_TIMESTAMP`;
    this includes negative values), or more than one day after now.
* Event types are stripped, lower-cased and mapped through
  :data:`~seqbert.data.schema.DEFAULT_EVENT_ALIASES` merged with ``event_aliases``
  (case-insensitive keys) to one of :data:`~seqbert.data.schema.EVENT_TYPES`.

Drop markers
------------
With ``bad_timestamps="drop"`` / ``unknown_events="drop"`` the offending rows are *kept* with the
value set to null and flagged in a boolean marker column, :data:`BAD_TIMESTAMP_MARKER`
(``"_bad_timestamp"``) / :data:`UNKNOWN_EVENT_MARKER` (``"_unknown_event"``). A marker column is
present exactly when its policy is ``"drop"`` (so the schema depends on the arguments, not the
data), and it is never null. ``clean_events`` counts flagged rows under ``bad_timestamp`` /
``unknown_event_type`` and removes the marker columns. With the ``"error"`` policies no marker
column exists because every such row raises.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.csv as pv
import pyarrow.json as pj
import pyarrow.parquet as pq
from datasets.fingerprint import Hasher

from .canonical import (  # noqa: F401 - also re-exported under their former names
    _DROP_BAD_TS,
    _DROP_UNKNOWN,
    _ISO_RE,
    _NUMBER_RE,
    BAD_TIMESTAMP_MARKER,
    CANONICAL_COLUMNS,
    FUTURE_TOLERANCE_S,
    MARKER_COLUMNS,
    MILLISECONDS_THRESHOLD,
    MIN_TIMESTAMP,
    POLICIES,
    ROW_INDEX,
    STRING_COLUMNS,
    TIMESTAMP_UNITS,
    UNKNOWN_EVENT_MARKER,
    CanonicalEvents,
    _bool_np,
    _cast_lenient,
    _cast_numeric,
    _check_choice,
    _empty_to_null,
    _first_failure,
    _fmt_ts,
    _map_event_types,
    _merge_aliases,
    _parse_iso,
    _parse_timestamps,
    _sample,
    _Timestamps,
    _to_string,
    _try_cast,
    to_canonical_events,
)
from .errors import EventDataError
from .schema import REQUIRED_COLUMNS
from .shards import InputRecord, Inputs, TimeWindow, is_multi, parquet_row_groups, resolve_inputs
from .sources import (  # noqa: F401 - re-exported
    COMPRESSION_SUFFIXES,
    FILE_FORMATS,
    READ_BLOCK_SIZE,
    SUFFIX_FORMATS,
    Source,
    field_count_error,
    hint,
    io_error,
    json_syntax_error,
    peek_nonblank,
    read_header,
    resolve_source,
)

logger = logging.getLogger(__name__)


CSV_NULL_VALUES: tuple[str, ...] = ("", "NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None", "#N/A")
"""csv/tsv fields equal to one of these are missing values."""

# The names these helpers had when they lived in this module (kept importable).
_Source = Source
_resolve_source = resolve_source
_hint = hint
_io_error = io_error
_json_syntax_error = json_syntax_error
_field_count_error = field_count_error
_peek_nonblank = peek_nonblank
_read_header = read_header
_BLOCK_SIZE = READ_BLOCK_SIZE
_STRING_COLUMNS = STRING_COLUMNS
_CANONICAL = CANONICAL_COLUMNS

# Hints to find the file's column for a canonical one, tried in order (substring of the lower-cased name).
_COLUMN_GUESSES: dict[str, tuple[str, ...]] = {
    "user_id": ("user", "visitor", "customer", "uid", "session", "client"),
    "item_id": ("item", "product", "aid", "sku", "article", "iid", "asin"),
    "event_type": ("event", "behavior", "behaviour", "action", "type"),
    "timestamp": ("timestamp", "time", "ts", "date"),
}


# ---------------------------------------------------------------------------------- column selection
def _normalise_column_map(column_map: Mapping[str, str | None] | None) -> dict[str, str | None]:
    if not column_map:
        return {}
    out: dict[str, str | None] = {}
    for key, value in column_map.items():
        if key not in _CANONICAL:
            reversed_hint = ""
            if value in _CANONICAL:
                reversed_hint = f" It looks reversed: use {{{value!r}: {key!r}}}."
            raise EventDataError(
                f"column_map key {key!r} is not a canonical column.{reversed_hint}",
                fix=(
                    "column_map maps canonical names to names in the file, e.g. "
                    + _hint("column_map={'user_id': 'visitorid'}", "--column user_id=visitorid")
                    + f"; canonical names: {', '.join(_CANONICAL)}."
                ),
            )
        if key in REQUIRED_COLUMNS and value is None:
            raise EventDataError(
                f"column_map cannot exclude the required column {key!r}", fix="map it to a column in the file."
            )
        out[key] = None if value is None else str(value)
    return out


def _guess_column(canonical: str, found: Sequence[str], taken: set[str]) -> str | None:
    for kw in _COLUMN_GUESSES.get(canonical, ()):
        for col in found:
            if col not in taken and kw in col.lower():
                return col
    return None


def _select_columns(
    found: Sequence[str],
    column_map: dict[str, str | None],
    src: _Source,
    delimiter: str | None,
    column_names_given: bool,
) -> dict[str, str]:
    """canonical name -> column name in the file, for every canonical column to read.

    The Hive partition fields of ``src`` (a shard of a folder) count as columns of the file.
    """
    found = list(found) + [key for key in src.partition if key not in found]
    found_set = set(found)
    selected: dict[str, str] = {}
    missing: list[str] = []
    for canon in _CANONICAL:
        if canon in column_map:
            name = column_map[canon]
            if name is None:
                continue
        else:
            name = canon
        if name in found_set:
            selected[canon] = name
        elif canon in REQUIRED_COLUMNS or canon in column_map:
            missing.append(canon)
    if not missing:
        return selected

    described = [f"{c!r} (looked for {column_map[c]!r})" if c in column_map else repr(c) for c in missing]
    shown = ", ".join(repr(c) for c in found[:30]) + (f", ... ({len(found)} in all)" if len(found) > 30 else "")
    plural = "s" if len(missing) > 1 else ""
    found_plural = "s" if len(found) != 1 else ""
    message = f"missing required column{plural} {', '.join(described)}; the file has column{found_plural} {shown}"
    fixes: list[str] = []
    text_fmt = src.fmt in ("csv", "tsv")
    if text_fmt and len(found) == 1:
        used = delimiter or ("\t" if src.fmt == "tsv" else ",")
        candidates = [d for d in (",", ";", "\t", "|") if d != used and d in found[0]]
        if candidates:
            d = candidates[0]
            message += (
                f". The file has a single column whose name contains {d!r}: "
                f"the delimiter is probably {d!r}, not {used!r}"
            )
            fixes.append(
                "pass "
                + _hint(f"delimiter={d!r}", f"--delimiter {d!r}")
                + (" (or file_format='tsv')" if d == "\t" else "")
            )
    if text_fmt and not column_names_given and any(re.fullmatch(r"[+-]?\d+(\.\d+)?", c.strip()) for c in found):
        message += ". The first line looks like data, so the file probably has no header row"
        n = len(found)
        fixes.append(
            f"name the {n} columns in file order: "
            + _hint("column_names=['user_id', 'item_id', ...]", "--column-names user_id,item_id,...")
        )
    if fixes:  # a delimiter or header problem: a column_map would not help
        raise src.error(message, fix="; or ".join(fixes) + ".")
    taken = set(selected.values())
    mapping = {}
    for c in missing:
        guess = _guess_column(c, found, taken)
        if guess is not None:
            taken.add(guess)
        mapping[c] = guess or "<column in the file>"
    py = "column_map={" + ", ".join(f"{k!r}: {v!r}" for k, v in mapping.items()) + "}"
    cli = " ".join(f"--column {k}={v}" for k, v in mapping.items())
    raise src.error(message, fix="map the file's columns to canonical names: " + _hint(py, cli) + ".")


# ------------------------------------------------------------------------------------------- reading
@dataclass
class _CsvPlan:
    """How to parse a csv/tsv file: header, selected columns and the Arrow reader options."""

    src: _Source
    names: list[str]
    names_given: bool
    delimiter: str
    selected: dict[str, str]
    read_options: pv.ReadOptions
    parse_options: pv.ParseOptions
    invalid: list[Any]
    event_col: str | None
    time_col: str | None

    def convert_options(self, typed_time: bool) -> pv.ConvertOptions:
        include = [c for c in dict.fromkeys(self.selected.values()) if c in self.names]  # not partition fields
        # Event types have few distinct values: the parser dictionary-encodes them (in parallel).
        types = {c: pa.dictionary(pa.int32(), pa.string()) if c == self.event_col else pa.string() for c in include}
        if typed_time and self.time_col in include:
            types[self.time_col] = pa.int64()
        return pv.ConvertOptions(
            include_columns=include,
            column_types=types,
            null_values=list(CSV_NULL_VALUES),
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        )

    def error(self, e: BaseException) -> EventDataError:
        """The EventDataError for an exception raised while parsing."""
        src = self.src
        if isinstance(e, (OSError, EOFError)):
            return _io_error(src, e)
        if self.invalid:
            return _field_count_error(src, self.invalid[0], len(self.names), self.names_given, self.delimiter)
        if "UTF8" in str(e) or "utf8" in str(e).lower():
            return src.encoding_error()
        return src.error(f"could not be parsed as {src.fmt}: {e}", fix="check the file's delimiter and quoting.")


def _csv_plan(
    src: _Source,
    column_map: dict[str, str | None],
    column_names: Sequence[str] | None,
    delimiter: str | None,
    block_size: int = _BLOCK_SIZE,
) -> _CsvPlan:
    delim = delimiter or ("\t" if src.fmt == "tsv" else ",")
    if len(delim) != 1:
        raise src.error(f"delimiter must be one character, got {delim!r}", fix="pass e.g. delimiter=';'.")
    if column_names is None:
        names = _read_header(src, delim)
        src.header_lines = 1
        skip = 1
    else:
        _peek_nonblank(src)
        names = [str(c) for c in column_names]
        skip = 0
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise src.error(
            f"has duplicate column names {dupes}",
            line=1 if column_names is None else None,
            fix="rename the columns so that each name is unique"
            + ("" if column_names is None else " in column_names")
            + ".",
        )
    selected = _select_columns(names, column_map, src, delimiter, column_names is not None)

    invalid: list[Any] = []

    def on_invalid(row: Any) -> str:
        invalid.append(row)
        return "error"

    read_options = pv.ReadOptions(
        column_names=names,
        skip_rows=skip,
        block_size=block_size,
        encoding=src.encoding if codecs.lookup(src.encoding).name != "utf-8" else "utf8",
    )
    parse_options = pv.ParseOptions(delimiter=delim, invalid_row_handler=on_invalid)
    values = list(selected.values())
    event_col = selected["event_type"] if values.count(selected["event_type"]) == 1 else None
    time_col = selected["timestamp"] if values.count(selected["timestamp"]) == 1 else None
    return _CsvPlan(
        src, names, column_names is not None, delim, selected, read_options, parse_options, invalid, event_col, time_col
    )


def _read_csv(
    src: _Source,
    column_map: dict[str, str | None],
    column_names: Sequence[str] | None,
    delimiter: str | None,
    integer_timestamps: bool = False,
) -> tuple[pa.Table, dict[str, str]]:
    """The selected columns as strings (event types dictionary-encoded).

    With ``integer_timestamps`` the timestamp column is first parsed straight to int64 (the common
    case of unix seconds/milliseconds: no string column to build and cast, ~20 % less read time);
    if any value is not an integer the file is read again with the column as strings, so messy or
    ISO-8601 timestamps take the general path of :func:`_parse_timestamps` unchanged.
    """
    plan = _csv_plan(src, column_map, column_names, delimiter)

    def read(typed_time: bool) -> pa.Table:
        with src.stream() as f:
            return pv.read_csv(
                f,
                read_options=plan.read_options,
                parse_options=plan.parse_options,
                convert_options=plan.convert_options(typed_time),
            )

    typed = integer_timestamps and plan.time_col is not None
    try:
        try:
            table = read(typed_time=typed)
        except pa.ArrowInvalid:
            if plan.invalid or not typed:
                raise
            table = read(typed_time=False)  # a timestamp that is not an integer: the general path
    except (pa.ArrowInvalid, OSError, EOFError) as e:
        raise plan.error(e) from None
    return table, plan.selected


def _stream_csv(plan: _CsvPlan) -> Iterator[pa.Table]:
    """Record batches of the selected columns (all strings, event types dictionary-encoded)."""
    try:
        with plan.src.stream() as f:
            reader = pv.open_csv(
                f,
                read_options=plan.read_options,
                parse_options=plan.parse_options,
                convert_options=plan.convert_options(typed_time=False),
            )
            for batch in reader:
                yield pa.Table.from_batches([batch])
    except (pa.ArrowInvalid, OSError, EOFError) as e:
        raise plan.error(e) from None


def _read_parquet(
    src: _Source, column_map: dict[str, str | None], row_groups: list[int] | None = None
) -> tuple[pa.Table, dict[str, str]]:
    try:
        with _parquet_errors(src):
            pf = pq.ParquetFile(src.parquet_input())
            names = pf.schema_arrow.names
            selected = _select_columns(names, column_map, src, None, False)
            # Event types have few distinct values: read them dictionary-encoded (mapped per distinct value).
            dictionary = [selected["event_type"]] if selected["event_type"] in names else None
            pf = pq.ParquetFile(src.parquet_input(), read_dictionary=dictionary)
            columns = [c for c in dict.fromkeys(selected.values()) if c in names]  # not partition fields
            table = pf.read(columns=columns) if row_groups is None else pf.read_row_groups(row_groups, columns=columns)
    except EventDataError:
        raise
    except (OSError, EOFError) as e:
        raise _io_error(src, e) from None
    return table, selected


def _json_value_to_str(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e16 else repr(v)
    return json.dumps(v, ensure_ascii=False)


def _read_jsonl_python(src: _Source) -> pa.Table:
    """Slow fallback for JSON Lines whose columns mix value types (e.g. ids both numbers and strings)."""
    logger.warning(
        "%s: columns mix value types (e.g. numbers and strings); using the slower pure-Python JSON reader",
        src.display,
    )
    rows: list[dict[str, Any]] = []
    for number, raw in src._lines():
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode(src.encoding))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _json_syntax_error(src, "") from None
        if not isinstance(obj, dict):
            raise _json_syntax_error(src, "")
        rows.append(obj)
    keys = list(dict.fromkeys(k for obj in rows for k in obj))
    return pa.table({k: pa.array([_json_value_to_str(obj.get(k)) for obj in rows], pa.string()) for k in keys})


def _read_jsonl(src: _Source, column_map: dict[str, str | None]) -> tuple[pa.Table, dict[str, str]]:
    _peek_nonblank(src)

    def read(schema: pa.Schema | None = None) -> pa.Table:
        with src.stream() as f:
            stream: Any = f
            if codecs.lookup(src.encoding).name != "utf-8":
                stream = pa.transcoding_input_stream(f, src.encoding, "utf-8")
            return pj.read_json(
                stream,
                read_options=pj.ReadOptions(block_size=_BLOCK_SIZE),
                parse_options=pj.ParseOptions(explicit_schema=schema) if schema is not None else None,
            )

    try:
        try:
            table = read()
        except pa.ArrowInvalid as e:
            msg = str(e)
            if "changed from" in msg and "Column()" not in msg:
                table = _read_jsonl_python(src)
            else:
                raise _json_syntax_error(src, msg) from None
        selected = _select_columns(table.column_names, column_map, src, None, False)
        # Keep timestamp strings as strings: arrow's inference drops the 'no timezone' distinction.
        inferred = [
            name
            for canon, name in selected.items()
            if canon == "timestamp" and pa.types.is_timestamp(table.schema.field(name).type)
        ]
        if inferred:
            table = read(pa.schema([(name, pa.string()) for name in inferred]))
    except EventDataError:
        raise
    except pa.ArrowInvalid as e:
        raise _json_syntax_error(src, str(e)) from None
    except (OSError, EOFError) as e:
        raise _io_error(src, e) from None
    return table.select([c for c in dict.fromkeys(selected.values()) if c in table.column_names]), selected


# ---------------------------------------------------------------------------------------- public API
def read_events(
    path: str | Path,
    *,
    file_format: str | None = None,
    column_map: Mapping[str, str | None] | None = None,
    column_names: Sequence[str] | None = None,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    event_aliases: Mapping[str, str] | None = None,
    timestamp_unit: str = "auto",
    unknown_events: str = "error",
    bad_timestamps: str = "error",
    since: Any = None,
    until: Any = None,
    partition_time_column: str | None = None,
    record: InputRecord | None = None,
) -> datasets.Dataset:
    """Read an event log into a :class:`datasets.Dataset` in the canonical schema.

    Args:
        path: the file. Suffixes ``.csv``, ``.tsv``/``.tab``, ``.parquet``/``.pq``,
            ``.jsonl``/``.ndjson``/``.json`` (JSON Lines), each optionally followed by ``.gz``,
            ``.bz2`` or ``.zst`` (not for parquet). Also a folder of shards, a glob, a URI
            (``s3://``, ``gs://``, ``memory://``, ...) or a list of these: see
            :mod:`seqbert.data.shards` (Hive partition fields become columns; the files are read in
            order and ``row_index`` runs on across them).
        file_format: ``csv``, ``tsv``, ``parquet`` or ``jsonl``; ``None`` infers it from the suffix.
        column_map: canonical name -> column name in the file, e.g. ``{"user_id": "visitorid"}``.
            Columns already named canonically need no entry. Map an optional canonical column to
            ``None`` to ignore the file's column of that name.
        column_names: for csv/tsv files without a header row: the names of all columns, in order
            (the first line is then data). Combine with ``column_map`` or use canonical names.
        delimiter: csv/tsv field delimiter (default ``,`` for csv and a tab for tsv).
        encoding: text encoding of csv/tsv/jsonl files (default UTF-8; a BOM is accepted).
        event_aliases: extra raw -> canonical event type aliases, merged over
            :data:`~seqbert.data.schema.DEFAULT_EVENT_ALIASES`; keys are case-insensitive.
        timestamp_unit: ``auto`` (numbers in s or ms by magnitude, see the module doc, and ISO-8601
            strings), ``s``, ``ms`` (numbers only) or ``iso`` (ISO-8601 strings only).
        unknown_events: ``error`` raises on event types that map to no canonical type; ``drop``
            keeps those rows with a null ``event_type`` flagged in ``_unknown_event``, for
            :func:`~seqbert.data.cleaning.clean_events` to drop and count.
        bad_timestamps: ``error`` raises on unparsable / before-1990 / future timestamps; ``drop``
            keeps those rows with a null ``timestamp`` flagged in ``_bad_timestamp``.
        since: keep events at or after this time (ISO date/datetime, UTC without a zone, or epoch
            seconds); default no bound. Rows read outside the window are counted in ``record``.
        until: keep events strictly before this time (same forms); default no bound.
        partition_time_column: the Hive partition field (ISO dates) that prunes whole partitions
            by ``since``/``until``; default: detected (see :mod:`seqbert.data.shards`).
        record: an :class:`~seqbert.data.shards.InputRecord` to fill with what was read and
            skipped (for ``protocol.json``).

    Returns:
        The events in file order: canonical columns (required + optional ones present), int64
        ``row_index`` (0-based position among the data rows), and the marker columns of the
        ``drop`` policies.

    Raises:
        EventDataError: for any problem with the file or its values, naming the file, row, column,
            value and the fix.
    """
    if is_multi(path) or since is not None or until is not None or partition_time_column is not None:
        return _read_inputs(
            path, file_format, column_map, column_names, delimiter, encoding, event_aliases, timestamp_unit,
            unknown_events, bad_timestamps, TimeWindow.of(since, until), partition_time_column, record,
        )  # fmt: skip
    src, cmap, aliases = _setup(
        path, file_format, column_map, column_names, delimiter, encoding, event_aliases,
        timestamp_unit, unknown_events, bad_timestamps,
    )  # fmt: skip
    now = time.time()
    with _reading_errors(src):
        if src.fmt in ("csv", "tsv"):
            table, selected = _read_csv(src, cmap, column_names, delimiter, integer_timestamps=timestamp_unit != "iso")
        elif src.fmt == "parquet":
            table, selected = _read_parquet(src, cmap)
        else:
            table, selected = _read_jsonl(src, cmap)

    if table.num_rows == 0:
        raise src.error(
            "has no data rows" + (" (only a header)" if src.header_lines else ""),
            fix="check that the file was written completely.",
        )
    out, _ = _to_canonical(table, selected, src, aliases, timestamp_unit, unknown_events, bad_timestamps, now)
    logger.info("%s: read %d events (%s)", src.display, out.num_rows, ", ".join(out.column_names))
    # A deterministic fingerprint from the file's identity and the options: datasets would otherwise
    # hash the whole table (slow), and later .map() calls can be cached across runs.
    stat = src.path.stat()
    fingerprint = Hasher.hash(
        {
            "transform": "seqbert.read_events",
            "path": str(src.path.resolve()),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "options": [
                file_format,
                dict(column_map or {}),
                list(column_names or []),
                delimiter,
                encoding,
                dict(event_aliases or {}),
                timestamp_unit,
                unknown_events,
                bad_timestamps,
            ],
        }
    )
    return datasets.Dataset(out, fingerprint=fingerprint)


def iter_events(
    path: str | Path,
    *,
    file_format: str | None = None,
    column_map: Mapping[str, str | None] | None = None,
    column_names: Sequence[str] | None = None,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    event_aliases: Mapping[str, str] | None = None,
    timestamp_unit: str = "auto",
    unknown_events: str = "error",
    bad_timestamps: str = "error",
    batch_bytes: int = 8 << 20,
    batch_rows: int = 1 << 20,
    since: Any = None,
    until: Any = None,
    partition_time_column: str | None = None,
    record: InputRecord | None = None,
) -> Iterator[pa.Table]:
    """Read an event log in batches, for logs larger than memory: the tables of :func:`read_events`
    (same arguments, same columns and rules, ``row_index`` global), one batch at a time.

    csv/tsv files are parsed in blocks of ``batch_bytes`` (streaming, constant memory) and parquet
    files in batches of ``batch_rows`` rows; JSON Lines files are read whole, then sliced (convert
    them to parquet for logs larger than memory). Differences from :func:`read_events`, only for
    unusual files: ``timestamp_unit="auto"`` decides seconds vs milliseconds on the first batch with
    numeric timestamps and keeps that unit; with the ``"error"`` policies the error's counts are
    those of the batch that holds the first bad value. ``path``, ``since``, ``until``,
    ``partition_time_column`` and ``record``: as for :func:`read_events`.
    """
    if is_multi(path) or since is not None or until is not None or partition_time_column is not None:
        yield from _iter_inputs(
            path, file_format, column_map, column_names, delimiter, encoding, event_aliases, timestamp_unit,
            unknown_events, bad_timestamps, TimeWindow.of(since, until), partition_time_column, record,
            batch_bytes=batch_bytes, batch_rows=batch_rows,
        )  # fmt: skip
        return
    src, cmap, aliases = _setup(
        path, file_format, column_map, column_names, delimiter, encoding, event_aliases,
        timestamp_unit, unknown_events, bad_timestamps,
    )  # fmt: skip
    now = time.time()
    if src.fmt in ("csv", "tsv"):
        plan = _csv_plan(src, cmap, column_names, delimiter, block_size=int(batch_bytes))
        selected, batches = plan.selected, _stream_csv(plan)
    elif src.fmt == "parquet":
        try:
            pf = pq.ParquetFile(str(src.path))
            selected = _select_columns(pf.schema_arrow.names, cmap, src, None, False)
        except EventDataError:
            raise
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as e:
            raise src.error(f"is not a readable Parquet file ({e})", fix="check that it is a complete parquet file.") from None
        include = list(dict.fromkeys(selected.values()))
        batches = (pa.Table.from_batches([b]) for b in pf.iter_batches(batch_size=int(batch_rows), columns=include))
    else:
        table, selected = _read_jsonl(src, cmap)
        batches = iter(table.to_batches(max_chunksize=int(batch_rows)))
        batches = (pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b for b in batches)
    numeric_unit = None
    rows = 0
    for table in batches:
        if table.num_rows == 0:
            continue
        src.row_offset = rows
        out, unit = _to_canonical(
            table, selected, src, aliases, timestamp_unit, unknown_events, bad_timestamps, now,
            numeric_unit=numeric_unit, row_offset=rows,
        )  # fmt: skip
        numeric_unit = numeric_unit or unit
        rows += table.num_rows
        yield out
    src.row_offset = 0
    if rows == 0:
        raise src.error(
            "has no data rows" + (" (only a header)" if src.header_lines else ""),
            fix="check that the file was written completely.",
        )


# ------------------------------------------------------------------------ many files (seqbert.data.shards)
def _check_options(timestamp_unit: str, unknown_events: str, bad_timestamps: str) -> None:
    _check_choice("timestamp_unit", timestamp_unit, TIMESTAMP_UNITS, "--timestamp-unit")
    _check_choice("unknown_events", unknown_events, POLICIES, "--unknown-events")
    _check_choice("bad_timestamps", bad_timestamps, POLICIES, "--bad-timestamps")


def _check_text_options(src: _Source, column_names: Sequence[str] | None, delimiter: str | None) -> None:
    if column_names is not None and src.fmt not in ("csv", "tsv"):
        raise src.error(
            "column_names only applies to csv/tsv files", fix="leave column_names out; use column_map to rename."
        )
    if delimiter is not None and src.fmt not in ("csv", "tsv"):
        raise src.error("delimiter only applies to csv/tsv files", fix="leave delimiter out.")


def _resolve(
    path: Any, file_format: str | None, column_map: Mapping[str, str | None] | None, encoding: str,
    window: TimeWindow | None, partition_time_column: str | None, record: InputRecord | None,
) -> tuple[Inputs, dict[str, str | None], InputRecord]:  # fmt: skip
    cmap = _normalise_column_map(column_map)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise EventDataError(f"unknown encoding {encoding!r}", fix="pass e.g. encoding='utf-8'.") from None
    inputs = resolve_inputs(
        path, file_format, window=window, partition_time_column=partition_time_column,
        timestamp_column=cmap.get("timestamp", "timestamp"),
    )  # fmt: skip
    record = record if record is not None else InputRecord()
    record.inputs = inputs
    return inputs, cmap, record


def _source_batches(
    src: _Source,
    cmap: dict[str, str | None],
    column_names: Sequence[str] | None,
    delimiter: str | None,
    timestamp_unit: str,
    window: TimeWindow | None,
    record: InputRecord,
    *,
    whole: bool,
    batch_bytes: int = _BLOCK_SIZE,
    batch_rows: int = 1 << 20,
) -> tuple[dict[str, str], Iterator[tuple[pa.Table, int]]]:
    """(selected columns, raw tables with the 0-based file row of their first row) of one file:
    whole (one table, as :func:`read_events` reads a file) or in batches (as :func:`iter_events`);
    parquet row groups outside ``window`` are skipped and counted in ``record``."""

    def numbered(tables: Iterable[pa.Table], start: int = 0) -> Iterator[tuple[pa.Table, int]]:
        for table in tables:
            yield table, start
            start += table.num_rows

    if src.fmt in ("csv", "tsv"):
        if whole:
            table, selected = _read_csv(src, cmap, column_names, delimiter, integer_timestamps=timestamp_unit != "iso")
            return selected, iter([(table, 0)])
        plan = _csv_plan(src, cmap, column_names, delimiter, block_size=int(batch_bytes))
        return plan.selected, numbered(_stream_csv(plan))
    if src.fmt == "jsonl":
        table, selected = _read_jsonl(src, cmap)
        if whole:
            return selected, iter([(table, 0)])
        return selected, numbered(pa.Table.from_batches([b]) for b in table.to_batches(max_chunksize=int(batch_rows)))
    try:
        pf = pq.ParquetFile(src.parquet_input())
        names = pf.schema_arrow.names
        selected = _select_columns(names, cmap, src, None, False)
        groups = None
        if window is not None and selected["timestamp"] in names:
            pruned = parquet_row_groups(src, pf, selected["timestamp"], window, timestamp_unit)
            if pruned is not None:
                groups, skipped_rows = pruned
                record.row_groups_skipped += pf.metadata.num_row_groups - len(groups)
                record.rows_not_read += skipped_rows
                if len(groups) == pf.metadata.num_row_groups:
                    groups = None
    except EventDataError:
        raise
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, EOFError) as e:
        raise src.error(f"is not a readable Parquet file ({e})", fix="check that it is a complete parquet file.") from None
    include = [c for c in dict.fromkeys(selected.values()) if c in names]
    if groups is None:
        if whole:
            # As _read_parquet reads a file: event types dictionary-encoded (mapped per distinct value).
            event_column = selected["event_type"]
            with _parquet_errors(src):
                table = pq.ParquetFile(
                    src.parquet_input(), read_dictionary=[event_column] if event_column in names else None
                ).read(columns=include)
            return selected, iter([(table, 0)])
        return selected, numbered(
            pa.Table.from_batches([b]) for b in pf.iter_batches(batch_size=int(batch_rows), columns=include)
        )
    starts = np.cumsum([0] + [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)])

    def kept_groups() -> Iterator[tuple[pa.Table, int]]:
        for group in groups:
            if whole:
                yield pf.read_row_group(group, columns=include), int(starts[group])
            else:
                batches = pf.iter_batches(batch_size=int(batch_rows), row_groups=[group], columns=include)
                yield from numbered((pa.Table.from_batches([b]) for b in batches), int(starts[group]))

    return selected, kept_groups()


@contextmanager
def _reading_errors(src: _Source) -> Iterator[None]:
    """Errors while reading one input file as :class:`EventDataError` naming it: OS and decompression errors, and
    whatever Arrow could not parse."""
    try:
        yield
    except EventDataError:
        raise
    except (OSError, EOFError) as e:  # includes corrupt / truncated compressed streams
        raise _io_error(src, e) from None
    except pa.ArrowException as e:
        raise src.error(f"could not be read as {src.fmt} ({e})", fix="check the file's format and contents.") from None


@contextmanager
def _parquet_errors(src: _Source) -> Iterator[None]:
    try:
        yield
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise src.error(
            f"is not a readable Parquet file ({e})",
            fix="check that it is a complete parquet file, or pass file_format=... for its real format.",
        ) from None


def _shard_events(
    inputs: Inputs,
    record: InputRecord,
    cmap: dict[str, str | None],
    column_names: Sequence[str] | None,
    delimiter: str | None,
    encoding: str,
    aliases: dict[str, str],
    timestamp_unit: str,
    unknown_events: str,
    bad_timestamps: str,
    window: TimeWindow | None,
    *,
    whole: bool,
    batch_bytes: int = _BLOCK_SIZE,
    batch_rows: int = 1 << 20,
) -> Iterator[pa.Table]:
    """Canonical tables of every file of ``inputs`` in order (``row_index`` running on across files,
    error rows counted within each file), filtered by ``window``."""
    now = time.time()
    numeric_unit = None
    base = 0
    single = len(inputs.shards) == 1
    warned: set[str] = set()  # a data warning is a WARNING once per input, not once per file
    for shard in inputs.shards:
        src = shard.source(encoding)
        src.warned = warned
        _check_text_options(src, column_names, delimiter)
        rows = 0
        pruned_before = record.row_groups_skipped
        with _reading_errors(src):
            selected, batches = _source_batches(
                src, cmap, column_names, delimiter, timestamp_unit, window, record,
                whole=whole, batch_bytes=batch_bytes, batch_rows=batch_rows,
            )  # fmt: skip
            for table, start in batches:
                if table.num_rows == 0:
                    continue
                src.row_offset = start
                out, unit = _to_canonical(
                    table, selected, src, aliases, timestamp_unit, unknown_events, bad_timestamps, now,
                    numeric_unit=numeric_unit, row_offset=base + start,
                )  # fmt: skip
                numeric_unit = numeric_unit or unit
                rows = max(rows, start + table.num_rows)
                record.rows_read += table.num_rows
                if window is not None:
                    keep = window.inside(out.column("timestamp"))
                    outside = int(len(keep) - np.count_nonzero(keep))
                    if outside:
                        record.outside_time_window += outside
                        out = out.filter(pa.array(keep))
                if out.num_rows:
                    yield out
        if rows == 0 and record.row_groups_skipped == pruned_before:
            if single:
                raise src.error(
                    "has no data rows" + (" (only a header)" if src.header_lines else ""),
                    fix="check that the file was written completely.",
                )
            record.empty_shards.append(src.display)
            logger.warning("%s: no data rows; skipped", src.display)
        base += rows
        src.row_offset = 0
    if record.rows_read == 0 and not single:
        raise EventDataError(
            f"none of the {len(inputs.shards)} files has data rows", path=", ".join(inputs.given),
            fix="check that the export finished and the input is the right one.",
        )  # fmt: skip


def _order_columns(table: pa.Table) -> pa.Table:
    order = [c for c in (*_CANONICAL, ROW_INDEX, *MARKER_COLUMNS) if c in table.column_names]
    return table.select(order + [c for c in table.column_names if c not in order])


def _read_inputs(
    path: Any, file_format: str | None, column_map: Mapping[str, str | None] | None,
    column_names: Sequence[str] | None, delimiter: str | None, encoding: str,
    event_aliases: Mapping[str, str] | None, timestamp_unit: str, unknown_events: str, bad_timestamps: str,
    window: TimeWindow | None, partition_time_column: str | None, record: InputRecord | None,
) -> datasets.Dataset:  # fmt: skip
    """:func:`read_events` of many files, remote files or a time window (:mod:`seqbert.data.shards`)."""
    _check_options(timestamp_unit, unknown_events, bad_timestamps)
    inputs, cmap, record = _resolve(path, file_format, column_map, encoding, window, partition_time_column, record)
    aliases = _merge_aliases(event_aliases)
    tables = list(
        _shard_events(
            inputs, record, cmap, column_names, delimiter, encoding, aliases, timestamp_unit, unknown_events,
            bad_timestamps, window, whole=True,
        )
    )  # fmt: skip
    if not tables:
        raise EventDataError(
            "no event is inside the time window" if window is not None else "no data rows",
            path=", ".join(inputs.given),
            fix="check since / until against the events' times." if window is not None else "check the input.",
        )
    out = _order_columns(pa.concat_tables([_order_columns(t) for t in tables], promote_options="default"))
    logger.info(
        "%s: read %d events from %d file(s)%s (%s)", ", ".join(inputs.given), out.num_rows, len(inputs.shards),
        f", {record.outside_time_window:,} outside the time window" if window is not None else "",
        ", ".join(out.column_names),
    )  # fmt: skip
    identity = []
    for shard in inputs.shards:
        mtime = Path(shard.path).stat().st_mtime_ns if shard.filesystem is None else None
        identity.append([shard.display, shard.size, mtime])
    fingerprint = Hasher.hash(
        {
            "transform": "seqbert.read_events",
            "shards": identity,
            "options": [
                file_format, dict(column_map or {}), list(column_names or []), delimiter, encoding,
                dict(event_aliases or {}), timestamp_unit, unknown_events, bad_timestamps,
                None if window is None else [window.since, window.until], partition_time_column,
            ],
        }
    )  # fmt: skip
    return datasets.Dataset(out, fingerprint=fingerprint)


def _coalesce(tables: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
    """Canonical tables joined into batches of at least ``rows`` rows (the last may be smaller), each column one
    contiguous chunk: many small shards or row groups (a pipeline's files often hold row groups of a few
    thousand rows) would otherwise make as many small batches, or chunks, downstream."""
    pending: list[pa.Table] = []
    count = 0
    for table in tables:
        pending.append(_order_columns(table))
        count += table.num_rows
        if count >= rows:
            yield _joined(pending)
            pending, count = [], 0
    if pending:
        yield _joined(pending)


def _joined(tables: list[pa.Table]) -> pa.Table:
    if len(tables) == 1:
        return tables[0].combine_chunks()
    return pa.concat_tables(tables, promote_options="default").combine_chunks()


def _iter_inputs(
    path: Any, file_format: str | None, column_map: Mapping[str, str | None] | None,
    column_names: Sequence[str] | None, delimiter: str | None, encoding: str,
    event_aliases: Mapping[str, str] | None, timestamp_unit: str, unknown_events: str, bad_timestamps: str,
    window: TimeWindow | None, partition_time_column: str | None, record: InputRecord | None,
    *, batch_bytes: int, batch_rows: int,
) -> Iterator[pa.Table]:  # fmt: skip
    """:func:`iter_events` of many files, remote files or a time window."""
    _check_options(timestamp_unit, unknown_events, bad_timestamps)
    inputs, cmap, record = _resolve(path, file_format, column_map, encoding, window, partition_time_column, record)
    aliases = _merge_aliases(event_aliases)
    schema = None
    for table in _coalesce(
        _shard_events(
            inputs, record, cmap, column_names, delimiter, encoding, aliases, timestamp_unit, unknown_events,
            bad_timestamps, window, whole=False, batch_bytes=batch_bytes, batch_rows=batch_rows,
        ),
        int(batch_rows),
    ):  # fmt: skip
        if schema is None:
            schema = table.schema
        elif table.schema != schema:  # files with other optional columns: one schema for the whole stream
            missing = [f for f in schema if f.name not in table.column_names]
            extra = [f.name for f in table.schema if f.name not in schema.names]
            if extra:
                raise EventDataError(
                    f"has column(s) {extra} that the first files of the input do not have",
                    path=", ".join(inputs.given),
                    fix="give every file the same columns, or ignore the optional column: column_map={'price': None}.",
                )  # fmt: skip
            for f in missing:
                table = table.append_column(f, pa.nulls(table.num_rows, f.type))
            table = table.select(schema.names).cast(schema)
        yield table


def _setup(
    path: str | Path,
    file_format: str | None,
    column_map: Mapping[str, str | None] | None,
    column_names: Sequence[str] | None,
    delimiter: str | None,
    encoding: str,
    event_aliases: Mapping[str, str] | None,
    timestamp_unit: str,
    unknown_events: str,
    bad_timestamps: str,
) -> tuple[_Source, dict[str, str | None], dict[str, str]]:
    """Check the options and the file: (source, normalised column map, event aliases)."""
    _check_choice("timestamp_unit", timestamp_unit, TIMESTAMP_UNITS, "--timestamp-unit")
    _check_choice("unknown_events", unknown_events, POLICIES, "--unknown-events")
    _check_choice("bad_timestamps", bad_timestamps, POLICIES, "--bad-timestamps")
    src = _resolve_source(path, file_format, encoding)
    cmap = _normalise_column_map(column_map)
    aliases = _merge_aliases(event_aliases)
    if column_names is not None and src.fmt not in ("csv", "tsv"):
        raise src.error(
            "column_names only applies to csv/tsv files", fix="leave column_names out; use column_map to rename."
        )
    if delimiter is not None and src.fmt not in ("csv", "tsv"):
        raise src.error("delimiter only applies to csv/tsv files", fix="leave delimiter out.")
    return src, cmap, aliases


def _to_canonical(
    table: pa.Table,
    selected: dict[str, str],
    src: Source,
    aliases: dict[str, str],
    timestamp_unit: str,
    unknown_events: str,
    bad_timestamps: str,
    now: float,
    *,
    numeric_unit: str | None = None,
    row_offset: int = 0,
) -> tuple[pa.Table, str | None]:
    """The file's selected columns → :func:`~seqbert.data.canonical.to_canonical_events`."""
    raw = {
        # A Hive partition field (not in the file): its value, as a string, on every row.
        canon: table.column(file_col)
        if file_col in table.column_names
        else pa.repeat(src.partition[file_col], table.num_rows)
        for canon, file_col in selected.items()
    }
    return tuple(
        to_canonical_events(
            raw, src, names=selected, event_aliases=aliases, timestamp_unit=timestamp_unit,
            unknown_events=unknown_events, bad_timestamps=bad_timestamps, now=now, row_offset=row_offset,
            numeric_unit=numeric_unit,
        )  # fmt: skip
    )


__all__ = [
    "BAD_TIMESTAMP_MARKER",
    "CSV_NULL_VALUES",
    "FILE_FORMATS",
    "FUTURE_TOLERANCE_S",
    "MARKER_COLUMNS",
    "MILLISECONDS_THRESHOLD",
    "MIN_TIMESTAMP",
    "POLICIES",
    "ROW_INDEX",
    "TIMESTAMP_UNITS",
    "UNKNOWN_EVENT_MARKER",
    "CanonicalEvents",
    "iter_events",
    "read_events",
    "to_canonical_events",
]
