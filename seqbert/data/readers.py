"""Read a raw event log (csv / tsv / parquet / jsonl, optionally compressed) into the canonical schema.

:func:`read_events` returns a :class:`datasets.Dataset` with the canonical columns of
:mod:`seqbert.data.schema` (the required ones plus whichever optional ones the file has), typed per
:data:`~seqbert.data.schema.ARROW_TYPES`, plus an int64 ``row_index`` (0-based position in the file,
used for stable sorting and error messages).

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
import csv
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.json as pj
import pyarrow.parquet as pq
from datasets.fingerprint import Hasher

from .errors import EventDataError, show_value
from .schema import ARROW_TYPES, DEFAULT_EVENT_ALIASES, EVENT_TYPES, OPTIONAL_COLUMNS, REQUIRED_COLUMNS

logger = logging.getLogger(__name__)

FILE_FORMATS: tuple[str, ...] = ("csv", "tsv", "parquet", "jsonl")
TIMESTAMP_UNITS: tuple[str, ...] = ("auto", "s", "ms", "iso")
POLICIES: tuple[str, ...] = ("error", "drop")

ROW_INDEX = "row_index"
BAD_TIMESTAMP_MARKER = "_bad_timestamp"
UNKNOWN_EVENT_MARKER = "_unknown_event"
MARKER_COLUMNS: tuple[str, ...] = (BAD_TIMESTAMP_MARKER, UNKNOWN_EVENT_MARKER)

MIN_TIMESTAMP = 631_152_000
"""1990-01-01T00:00:00Z. Earlier timestamps (and negative ones) are bad."""
FUTURE_TOLERANCE_S = 86_400
"""Timestamps more than this many seconds after the time of reading are bad."""
MILLISECONDS_THRESHOLD = 1e11
"""``timestamp_unit="auto"``: a numeric column whose median absolute value is >= this is milliseconds."""

CSV_NULL_VALUES: tuple[str, ...] = ("", "NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None", "#N/A")
"""csv/tsv fields equal to one of these are missing values."""

SUFFIX_FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
COMPRESSION_SUFFIXES: dict[str, str] = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}

_STRING_COLUMNS = ("user_id", "item_id", "category", "query", "session_id")
_CANONICAL = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
_BLOCK_SIZE = 8 << 20

# Hints to find the file's column for a canonical one, tried in order (substring of the lower-cased name).
_COLUMN_GUESSES: dict[str, tuple[str, ...]] = {
    "user_id": ("user", "visitor", "customer", "uid", "session", "client"),
    "item_id": ("item", "product", "aid", "sku", "article", "iid", "asin"),
    "event_type": ("event", "behavior", "behaviour", "action", "type"),
    "timestamp": ("timestamp", "time", "ts", "date"),
}

_NUMBER_RE = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
_ISO_RE = (
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<hh>\d{2})(?P<mm>:\d{2})?(?P<ss>:\d{2})?(?:[.,]\d+)?)?"
    r"\s*(?P<tz>[Zz]|UTC|[+-]\d{2}(?::?\d{2})?)?$"
)


# --------------------------------------------------------------------------------------------- hints
def _hint(python: str, cli: str | None = None) -> str:
    return f"{python} (CLI: {cli})" if cli else python


_DROP_BAD_TS = _hint("bad_timestamps='drop'", "--bad-timestamps drop")
_DROP_UNKNOWN = _hint("unknown_events='drop'", "--unknown-events drop")


def _fmt_ts(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{seconds:.0f} s since 1970, beyond the year 9999"


# ---------------------------------------------------------------------------------------- the source
@dataclass
class _Source:
    path: Path
    display: str
    fmt: str
    compression: str | None
    encoding: str
    header_lines: int = 0
    row_offset: int = 0  # data rows before the current batch (streaming reads): row numbers stay global
    warned: set[str] = field(default_factory=set)

    def warn(self, kind: str, message: str, *args: Any) -> None:
        """Log a data warning; in a streaming read only the first of each kind is a WARNING."""
        level = logging.DEBUG if kind in self.warned else logging.WARNING
        self.warned.add(kind)
        suffix = " (and possibly more in later batches)" if self.row_offset else ""
        logger.log(level, message + suffix, *args)

    def stream(self) -> pa.NativeFile:
        return pa.input_stream(str(self.path), compression=self.compression)

    def error(self, message: str, **kwargs: Any) -> EventDataError:
        return EventDataError(message, path=self.display, **kwargs)

    def row_error(self, message: str, index: int, **kwargs: Any) -> EventDataError:
        """An error at 0-based data row ``index`` (of the current batch); works out the line number for text files."""
        row = index + 1 + self.row_offset
        return EventDataError(message, path=self.display, row=row, line=self.line_of(row), **kwargs)

    # ---- error-path helpers: plain Python scans, only run when something is already wrong
    def _lines(self):
        """Yield (1-based line number, raw line bytes without the newline)."""
        buf = b""
        number = 0
        with self.stream() as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                buf += chunk
                parts = buf.split(b"\n")
                buf = parts.pop()
                for part in parts:
                    number += 1
                    yield number, part.rstrip(b"\r")
        if buf:
            yield number + 1, buf.rstrip(b"\r")

    def line_of(self, row: int) -> int | None:
        """Line number of 1-based data ``row`` (blank lines are skipped by the parsers)."""
        if self.fmt == "parquet":
            return None
        try:
            seen = 0
            for number, raw in self._lines():
                if number <= self.header_lines or not raw.strip():
                    continue
                seen += 1
                if seen == row:
                    return number
        except Exception:  # noqa: BLE001 - best effort, only used to decorate a message
            return None
        return None

    def find_line(self, text: str) -> tuple[int, int] | None:
        """(line number, data row) of the first line equal to ``text``."""
        target = text.encode(self.encoding, errors="replace").rstrip(b"\r\n")
        try:
            seen = 0
            for number, raw in self._lines():
                if number <= self.header_lines or not raw.strip():
                    continue
                seen += 1
                if raw == target:
                    return number, seen
        except Exception:  # noqa: BLE001
            return None
        return None

    def find_undecodable(self) -> tuple[int, bytes] | None:
        """(line number, the line's bytes) of the first line that is not valid in ``self.encoding``."""
        try:
            for number, raw in self._lines():
                try:
                    raw.decode(self.encoding)
                except UnicodeDecodeError:
                    return number, raw
        except Exception:  # noqa: BLE001
            return None
        return None

    def encoding_error(self, column: str | None = None) -> EventDataError:
        found = self.find_undecodable()
        fix = "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`)" + (
            ", or pass its encoding, e.g. " + _hint("encoding='latin-1'", "--encoding latin-1")
            if self.fmt in ("csv", "tsv")
            else ""
        )
        if found is None:
            return self.error(f"contains bytes that are not valid {self.encoding}", column=column, fix=fix)
        number, raw = found
        try:
            raw.decode(self.encoding)
            bad = raw
        except UnicodeDecodeError as e:
            bad = raw[max(0, e.start - 10) : e.end + 10]
        return EventDataError(
            f"contains bytes that are not valid {self.encoding}, near {show_value(bad)}",
            path=self.display,
            line=number,
            column=column,
            fix=fix,
        )


def _resolve_source(path: str | Path, file_format: str | None, encoding: str) -> _Source:
    display = str(path)
    p = Path(path).expanduser()
    if not p.exists():
        hint = ""
        if p.parent.is_dir():
            similar = sorted(q.name for q in p.parent.iterdir() if q.name.split(".")[0] == p.name.split(".")[0])[:5]
            if similar:
                hint = f" Files with a similar name there: {', '.join(similar)}."
        raise EventDataError(f"file not found.{hint}", path=display, fix="check the path (and the working directory).")
    if p.is_dir():
        raise EventDataError("is a directory, not a file", path=display, fix="pass the path of one event file.")

    suffixes = [s.lower() for s in p.suffixes]
    compression = None
    if suffixes and suffixes[-1] in COMPRESSION_SUFFIXES:
        compression = COMPRESSION_SUFFIXES[suffixes[-1]]
        suffixes = suffixes[:-1]
    if file_format is None:
        fmt = SUFFIX_FORMATS.get(suffixes[-1]) if suffixes else None
        if fmt is None:
            raise EventDataError(
                f"cannot tell the file format from the suffix {''.join(p.suffixes) or '(none)'!r}",
                path=display,
                fix=(
                    f"pass {_hint('file_format=' + repr('csv'), '--format csv')} (one of {', '.join(FILE_FORMATS)}), "
                    f"or rename the file; known suffixes: {', '.join(SUFFIX_FORMATS)} (optionally + "
                    f"{', '.join(COMPRESSION_SUFFIXES)})."
                ),
            )
    else:
        fmt = str(file_format).lower()
        if fmt not in FILE_FORMATS:
            raise EventDataError(
                f"unsupported file_format {file_format!r}",
                path=display,
                fix=f"use one of {', '.join(FILE_FORMATS)}.",
            )
    if fmt == "parquet" and compression is not None:
        raise EventDataError(
            f"parquet files cannot be {compression}-compressed as a whole (parquet compresses internally)",
            path=display,
            fix="decompress the file first.",
        )
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise EventDataError(
            f"unknown encoding {encoding!r}", path=display, fix="pass e.g. encoding='utf-8'."
        ) from None
    if p.stat().st_size == 0:
        raise EventDataError("is empty (0 bytes)", path=display, fix="check that the file was written completely.")
    return _Source(p, display, fmt, compression, encoding)


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
    """canonical name -> column name in the file, for every canonical column to read."""
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
def _peek_nonblank(src: _Source) -> None:
    """Raise 'empty file' if the (decompressed) content has no non-whitespace byte."""
    with src.stream() as f:
        while True:
            chunk = f.read(1 << 16)
            if not chunk:
                raise src.error("is empty (no rows)", fix="check that the file was written completely.")
            if chunk.strip():
                return


def _read_header(src: _Source, delimiter: str) -> list[str]:
    data = b""
    with src.stream() as f:
        while b"\n" not in data:
            chunk = f.read(1 << 16)
            if not chunk:
                break
            data += chunk
            if len(data) > (16 << 20):
                break
    if not data.strip():
        raise src.error("is empty (no header, no rows)", fix="check that the file was written completely.")
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    enc = "utf-8-sig" if codecs.lookup(src.encoding).name == "utf-8" else src.encoding
    try:
        text = first.decode(enc)
    except UnicodeDecodeError:
        raise src.encoding_error() from None
    if not text.strip():
        raise EventDataError(
            "the first line is blank; expected the header row",
            path=src.display,
            line=1,
            fix="remove the leading blank lines, or pass column_names=[...] if the file has no header.",
        )
    fields = next(csv.reader([text], delimiter=delimiter))
    return [f.strip() for f in fields]


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
        include = list(dict.fromkeys(self.selected.values()))
        # Event types have few distinct values: the parser dictionary-encodes them (in parallel).
        types = {c: pa.dictionary(pa.int32(), pa.string()) if c == self.event_col else pa.string() for c in include}
        if typed_time and self.time_col is not None:
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


def _field_count_error(src: _Source, row: Any, expected: int, names_given: bool, delim: str) -> EventDataError:
    located = src.find_line(row.text) if row.text is not None else None
    line, data_row = located if located else (None, None)
    if names_given:
        fix = f"give exactly {row.actual_columns} names in column_names, or fix the row"
    else:
        fix = "fix or remove the row; if a field contains the delimiter, quote it with double quotes"
    return EventDataError(
        f"has {row.actual_columns} fields but {expected} "
        f"{'names were given' if names_given else 'columns are in the header'} "
        f"(delimiter {delim!r}); the row reads {show_value(row.text)}",
        path=src.display,
        row=data_row,
        line=line,
        fix=fix + ".",
    )


def _io_error(src: _Source, e: BaseException) -> EventDataError:
    text = str(e)
    if src.compression is not None:
        return src.error(
            f"is not a complete, valid {src.compression} file ({text})",
            fix="the file is probably truncated or corrupt: download or compress it again (check with `gzip -t`).",
        )
    return src.error(f"could not be read ({text})", fix="check the file and its permissions.")


def _read_parquet(src: _Source, column_map: dict[str, str | None]) -> tuple[pa.Table, dict[str, str]]:
    try:
        pf = pq.ParquetFile(str(src.path))
        names = pf.schema_arrow.names
        selected = _select_columns(names, column_map, src, None, False)
        # Event types have few distinct values: read them dictionary-encoded (mapped per distinct value).
        pf = pq.ParquetFile(str(src.path), read_dictionary=[selected["event_type"]])
        table = pf.read(columns=list(dict.fromkeys(selected.values())))
    except EventDataError:
        raise
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise src.error(
            f"is not a readable Parquet file ({e})",
            fix="check that it is a complete parquet file, or pass file_format=... for its real format.",
        ) from None
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


def _json_syntax_error(src: _Source, arrow_message: str) -> EventDataError:
    """Find the first line that is not one JSON object (error path, plain Python)."""
    try:
        for number, raw in src._lines():
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode(src.encoding))
            except UnicodeDecodeError:
                return src.encoding_error()
            except json.JSONDecodeError as e:
                return EventDataError(
                    f"is not valid JSON ({e.msg} at character {e.colno})",
                    path=src.display,
                    line=number,
                    fix="each line of a JSON Lines file must be one complete JSON object; fix or remove the line.",
                )
            if not isinstance(obj, dict):
                return EventDataError(
                    f"holds a JSON {type(obj).__name__}, not an object",
                    path=src.display,
                    line=number,
                    fix='write one JSON object per line (JSON Lines), e.g. {"user_id": "u1", "item_id": "i9", ...}.',
                )
    except (OSError, EOFError) as e:
        return _io_error(src, e)
    return src.error(f"could not be parsed as JSON Lines ({arrow_message})", fix="write one JSON object per line.")


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
    return table.select(list(dict.fromkeys(selected.values()))), selected


# --------------------------------------------------------------------------------------- conversions
def _combine(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def _bool_np(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    arr = _combine(arr)
    if arr.null_count:
        arr = pc.fill_null(arr, False)
    return arr.to_numpy(zero_copy_only=False)


def _first_failure(arr: pa.Array, target: pa.DataType) -> int:
    """Index of the first element of ``arr`` that cannot be cast to ``target``.

    Galloping windows from the start, then bisection inside the failing window: the cost is
    proportional to the position of the first failure (a failing arrow cast costs ~1 us per bad
    element, so casting the whole array to find one would be slow).
    """
    n = len(arr)
    start, size = 0, 256
    while start < n:
        end = min(n, start + size)
        try:
            pc.cast(arr.slice(start, end - start), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            lo, hi = start, end
            while hi - lo > 1:
                mid = (lo + hi) // 2
                try:
                    pc.cast(arr.slice(lo, mid - lo), target)
                    lo = mid
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    hi = mid
            return lo
        start, size = end, size * 2
    return n


def _sample(arr: pa.Array, k: int = 512) -> pa.Array:
    """Up to ~2k non-null values: the first k and k spread over the array."""
    n = len(arr)
    if n <= 2 * k:
        return arr.drop_null()
    idx = np.concatenate([np.arange(k), np.linspace(k, n - 1, k).astype(np.int64)])
    return arr.take(pa.array(idx)).drop_null()


def _try_cast(arr: pa.Array, target: pa.DataType) -> pa.Array | None:
    """``pc.cast`` or None if any value fails. A sample is tried first, because a failing cast over
    a large array is very slow (it builds an error per bad value)."""
    try:
        pc.cast(_sample(arr), target)
        return pc.cast(arr, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _cast_lenient(arr: pa.Array, target: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Cast, turning elements that fail into nulls; returns (result, failed mask).

    Meant for inputs pre-validated by a regex, where failures are rare: it recurses into halves
    that fail, so it costs O(failures * log n) casts.
    """
    result = _try_cast(arr, target)
    if result is not None:
        return result, np.zeros(len(arr), dtype=bool)
    failed = np.zeros(len(arr), dtype=bool)
    pieces: list[pa.Array] = []

    def go(lo: int, hi: int) -> None:
        part = arr.slice(lo, hi - lo)
        try:
            pieces.append(pc.cast(part, target))
            return
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        if hi - lo == 1:
            failed[lo] = True
            pieces.append(pa.nulls(1, target))
            return
        mid = (lo + hi) // 2
        go(lo, mid)
        go(mid, hi)

    go(0, len(arr))
    return pa.concat_arrays(pieces), failed


def _empty_to_null(arr: pa.Array) -> pa.Array:
    if not len(arr):
        return arr
    empty = pc.equal(pc.binary_length(arr), 0)
    if not pc.any(empty).as_py():
        return arr
    return pc.if_else(empty, pa.scalar(None, arr.type), arr)


def _to_string(col: pa.ChunkedArray | pa.Array, src: _Source, name: str) -> pa.Array | pa.ChunkedArray:
    """Any column as plain strings; empty strings become null (csv/tsv nulls are already done)."""
    arr = col
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = pc.cast(arr, t.value_type)
        t = arr.type
    if pa.types.is_nested(t):
        raise src.error(
            f"holds nested values ({t}), not plain ids",
            column=name,
            fix="flatten the file first (one event per row), or map another column with column_map.",
        )
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        try:
            arr = pc.cast(arr, pa.string())
        except pa.ArrowInvalid:
            arr = _combine(arr)
            i = _first_failure(arr, pa.string())
            raise src.row_error(
                "is not valid UTF-8", i, column=name, value=arr[i].as_py(), fix="re-encode the column as UTF-8."
            ) from None
    elif not pa.types.is_string(t):
        arr = pc.cast(arr, pa.string())
    elif src.fmt == "jsonl":
        try:
            arr.validate(full=True)  # the JSON reader does not check UTF-8
        except pa.ArrowInvalid:
            raise src.encoding_error(column=name) from None
    if src.fmt not in ("csv", "tsv"):
        arr = _empty_to_null(arr)
    return arr


def _map_event_types(
    col: pa.ChunkedArray, src: _Source, name: str, aliases: dict[str, str], policy: str
) -> tuple[pa.Array, np.ndarray | None]:
    """Map raw event names to canonical ones through a dictionary encoding: the string work is per
    distinct value; per row there is one ``take``. (csv/tsv columns arrive dictionary-encoded.)"""
    if pa.types.is_dictionary(col.type) and pa.types.is_string(col.type.value_type):
        if isinstance(col, pa.ChunkedArray) and col.num_chunks > 1:
            col = pa.Table.from_arrays([col], names=["e"]).unify_dictionaries().column(0)
        enc = _combine(col)
    else:
        enc = pc.dictionary_encode(_combine(_to_string(col, src, name)))
    raw_values = enc.dictionary
    norm = pc.utf8_lower(pc.utf8_trim_whitespace(raw_values))
    keys = pa.array(list(aliases), pa.string())
    targets = pa.array(list(aliases.values()), pa.string())
    pos = pc.index_in(norm, value_set=keys)
    mapped_values = pc.take(targets, pos)  # null for blank and unknown values
    blank = _bool_np(pc.equal(norm, ""))
    unknown_values = _bool_np(pos.is_null()) & ~blank
    indices = enc.indices
    mapped = pc.take(mapped_values, indices)
    if not unknown_values.any():
        return mapped, (np.zeros(len(enc), dtype=bool) if policy == "drop" else None)

    idx_filled = pc.fill_null(indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    unknown_lookup = np.append(unknown_values, False)  # index -1 (null) -> not unknown
    unknown_rows = unknown_lookup[idx_filled]
    counts = np.bincount(idx_filled[unknown_rows], minlength=len(raw_values))
    order = np.argsort(-counts, kind="stable")
    listed = [(raw_values[int(i)].as_py(), int(counts[i])) for i in order if counts[i] > 0]
    total = int(unknown_rows.sum())
    summary = ", ".join(f"{v!r} ({c:,} row{'s' if c != 1 else ''})" for v, c in listed[:10])
    if len(listed) > 10:
        summary += f", ... ({len(listed)} distinct values)"
    if policy == "error":
        first = int(np.argmax(unknown_rows))
        example = str(listed[0][0]).strip().lower()
        raise src.row_error(
            f"is not a known event type. {total:,} row{'s' if total != 1 else ''} "
            f"have unknown event types: {summary}. "
            f"Known types: {', '.join(EVENT_TYPES)}",
            first,
            column=name,
            value=raw_values[int(idx_filled[first])].as_py(),
            fix=(
                "map them to known types with "
                + _hint(f"event_aliases={{{example!r}: 'view'}}", f"--event-alias {example}=view")
                + ", or drop those rows with "
                + _DROP_UNKNOWN
                + " (they are counted under 'unknown_event_type' in the drop report)."
            ),
        )
    src.warn(
        "unknown_event",
        "%s: %d row(s) with unknown event types will be dropped (counted as 'unknown_event_type'): %s",
        src.display,
        total,
        summary,
    )
    return mapped, unknown_rows


@dataclass
class _Timestamps:
    seconds: pa.Array  # int64, null where missing or bad
    bad: np.ndarray  # bool
    numeric_unit: str | None = None  # "s" / "ms" when numbers were read with timestamp_unit="auto"


def _parse_iso(strings: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ISO-8601 strings (no nulls) -> (float seconds, parsed mask, naive mask), vectorised.

    Fast path: arrow's own ISO cast when the whole column is all-with-offset or all-naive.
    Otherwise each value is matched by a regex, normalised to ``YYYY-MM-DDTHH:MM:SS+hh:mm``
    (naive values get +00:00, fractions are dropped = floored) and cast.
    """
    n = len(strings)
    secs = np.zeros(n, dtype=np.float64)
    for target, naive in ((pa.timestamp("ns", "UTC"), False), (pa.timestamp("ns"), True)):
        ts = _try_cast(strings, target)
        if ts is not None:
            ns = pc.cast(ts, pa.int64()).to_numpy(zero_copy_only=False)
            return np.floor_divide(ns, 1_000_000_000).astype(np.float64), np.ones(n, dtype=bool), np.full(n, naive)
    parts = pc.extract_regex(strings, _ISO_RE)
    matched = _bool_np(parts.is_valid())
    empty = pa.scalar("", pa.string())

    def field(name: str, default: str) -> pa.Array:
        f = pc.fill_null(pc.struct_field(parts, name), "")
        return pc.if_else(pc.equal(f, empty), pa.scalar(default), f)

    tz = pc.fill_null(pc.struct_field(parts, "tz"), "")
    naive = _bool_np(pc.equal(tz, empty)) & matched
    tz = pc.replace_substring_regex(tz, r"^(?:[Zz]|UTC)?$", "+00:00")
    tz = pc.replace_substring_regex(tz, r"^([+-]\d{2})$", r"\1:00")
    tz = pc.replace_substring_regex(tz, r"^([+-]\d{2})(\d{2})$", r"\1:\2")
    normalised = pc.binary_join_element_wise(
        pc.fill_null(pc.struct_field(parts, "date"), "1970-01-01"),
        "T",
        field("hh", "00"),
        field("mm", ":00"),
        field("ss", ":00"),
        tz,
        "",
    )
    # Only regex-matched values are cast, so failures (e.g. month 13) are rare.
    where = np.flatnonzero(matched)
    ts, failed = _cast_lenient(normalised.take(pa.array(where)), pa.timestamp("s", "UTC"))
    values = pc.cast(ts, pa.int64()).to_numpy(zero_copy_only=False)
    ok = ~failed
    parsed = np.zeros(n, dtype=bool)
    parsed[where[ok]] = True
    secs[where[ok]] = values[ok]
    return secs, parsed, naive & parsed


def _parse_timestamps(
    col: pa.ChunkedArray,
    src: _Source,
    name: str,
    unit: str,
    policy: str,
    now: float,
    numeric_unit: str | None = None,
) -> _Timestamps:
    """Timestamps → int64 unix seconds. ``numeric_unit`` fixes the s/ms decision of
    ``unit="auto"`` (streaming reads decide it on the first batch with numbers, then keep it)."""
    arr = _combine(col)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    t = arr.type
    n = len(arr)
    secs = np.zeros(n, dtype=np.float64)
    parsed = np.zeros(n, dtype=bool)
    naive: np.ndarray | None = None
    chosen_unit = unit
    raw_for_messages = arr

    def numeric(values: np.ndarray, mask: np.ndarray) -> None:
        """Unix seconds or milliseconds -> seconds, for the rows in ``mask``."""
        nonlocal chosen_unit
        finite = mask & np.isfinite(values)
        everything = bool(finite.all())  # the common case: skip the (slow) boolean-mask indexing
        if unit == "auto":
            step = max(1, n // 1_000_000)
            sample = np.abs(values[::step][finite[::step]])
            if numeric_unit is not None:
                chosen_unit = numeric_unit
            else:
                chosen_unit = "ms" if len(sample) and float(np.median(sample)) >= MILLISECONDS_THRESHOLD else "s"
        scale = 1000.0 if chosen_unit == "ms" else 1.0
        with np.errstate(invalid="ignore", over="ignore"):
            if everything:
                np.floor(values / scale if scale != 1.0 else values, out=secs)
                parsed[:] = True
            else:
                secs[finite] = np.floor(values[finite] / scale)
                parsed[finite] = True

    if pa.types.is_timestamp(t):
        factor = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[t.unit]
        ok = ~_bool_np(arr.is_null())
        ints = pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False)
        secs[ok] = np.floor_divide(ints[ok].astype(np.int64), factor)
        parsed = ok
        naive = ok if t.tz is None else None
        chosen_unit = "native"
    elif pa.types.is_date(t):
        ok = ~_bool_np(arr.is_null())
        days = pc.cast(pc.cast(arr, pa.date32()), pa.int32()).to_numpy(zero_copy_only=False)
        secs[ok] = days[ok].astype(np.int64) * 86_400
        parsed = ok
        naive = ok
        chosen_unit = "native"
    elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        if unit != "iso":
            numeric(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), ~_bool_np(arr.is_null()))
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        strings = _combine(_to_string(arr, src, name))
        raw_for_messages = strings
        present = ~_bool_np(strings.is_null())
        done = False
        if unit != "iso":  # fast path: a clean integer column
            ints = _try_cast(strings, pa.int64())
            if ints is not None:
                numeric(ints.to_numpy(zero_copy_only=False).astype(np.float64), present)
                done = True
        if not done and unit in ("auto", "iso") and present.any():
            # fast path: a clean ISO-8601 column (all with offsets, or all without)
            where = np.flatnonzero(present)
            dense = strings if len(where) == n else strings.take(pa.array(where))
            for target, is_naive in ((pa.timestamp("ns", "UTC"), False), (pa.timestamp("ns"), True)):
                ts = _try_cast(dense, target)
                if ts is not None:
                    ns = pc.cast(ts, pa.int64()).to_numpy(zero_copy_only=False)
                    secs[where] = np.floor_divide(ns, 1_000_000_000)
                    parsed[where] = True
                    if is_naive:
                        naive = present
                    done = True
                    break
        if not done:
            # Messy column: classify each value (regexes, ~1 us/row), numbers and ISO strings apart.
            trimmed = pc.utf8_trim_whitespace(strings)
            is_number = _bool_np(pc.match_substring_regex(trimmed, _NUMBER_RE)) & present
            if unit != "iso" and is_number.any():
                nums, _ = _cast_lenient(trimmed.filter(pa.array(is_number)), pa.float64())
                values = np.full(n, np.nan)
                values[is_number] = pc.fill_null(nums, np.nan).to_numpy(zero_copy_only=False)
                numeric(values, is_number)
            candidates = present & ~is_number if unit == "auto" else (present if unit == "iso" else None)
            if candidates is not None and candidates.any():
                where = np.flatnonzero(candidates)
                iso_secs, iso_ok, iso_naive = _parse_iso(trimmed.take(pa.array(where)))
                secs[where[iso_ok]] = iso_secs[iso_ok]
                parsed[where[iso_ok]] = True
                if iso_naive.any():
                    naive = np.zeros(n, dtype=bool)
                    naive[where[iso_naive]] = True
    else:
        raise src.error(
            f"has type {t}, which is not a timestamp",
            column=name,
            fix="store timestamps as unix seconds, unix milliseconds or ISO-8601 strings.",
        )

    is_null = _bool_np(raw_for_messages.is_null())

    max_ts = now + FUTURE_TOLERANCE_S
    present = ~is_null
    too_early = parsed & (secs < MIN_TIMESTAMP)
    too_late = parsed & (secs > max_ts)
    unparsable = present & ~parsed
    bad = unparsable | too_early | too_late

    if naive is not None and naive.any():
        first = int(np.argmax(naive))
        src.warn(
            "naive",
            "%s: %d timestamp(s) in column %r have no timezone (e.g. row %d: %s); they were read as UTC",
            src.display,
            int(naive.sum()),
            name,
            first + 1 + src.row_offset,
            show_value(raw_for_messages[first].as_py()),
        )

    if bad.any():
        first = int(np.argmax(bad))
        value = raw_for_messages[first].as_py()
        if src.fmt in ("csv", "tsv") and isinstance(value, int):
            value = str(value)  # the csv reader parsed an integer column directly: show the text
        counts = []
        for label, mask in (
            ("not parsable", unparsable),
            ("before 1990-01-01", too_early),
            ("in the future", too_late),
        ):
            c = int(mask.sum())
            if c:
                counts.append(f"{c:,} {label}")
        total = int(bad.sum())
        summary = f"{total:,} of {n:,} timestamps are bad ({', '.join(counts)})"
        if policy == "error":
            unit_fix = ""
            if unparsable[first]:
                if unit == "iso":
                    what = "is not an ISO-8601 timestamp"
                    unit_fix = (
                        _hint("timestamp_unit='auto'", "--timestamp-unit auto") + " to also accept unix numbers, or "
                    )
                elif unit in ("s", "ms"):
                    what = f"is not a number of unix {'seconds' if unit == 's' else 'milliseconds'}"
                    unit_fix = (
                        _hint("timestamp_unit='auto'", "--timestamp-unit auto") + " to also accept ISO-8601, or "
                    )
                else:
                    what = (
                        "is not a timestamp (expected unix seconds, unix milliseconds or ISO-8601 such as "
                        "2017-11-26T09:00:00+08:00)"
                    )
            else:
                unit_name = {"s": "seconds", "ms": "milliseconds"}.get(chosen_unit)
                read_as = (
                    f"read as {unit_name}: {_fmt_ts(secs[first])}" if unit_name else f"read as {_fmt_ts(secs[first])}"
                )
                if secs[first] < 0:
                    what = f"is negative ({read_as})"
                elif too_early[first]:
                    what = f"is before 1990-01-01 ({read_as})"
                else:
                    what = f"is more than 1 day in the future ({read_as})"
                if chosen_unit == "s" and too_late[first] and MIN_TIMESTAMP <= secs[first] / 1000 <= max_ts:
                    unit_fix = (
                        "if the column is in milliseconds pass "
                        + _hint("timestamp_unit='ms'", "--timestamp-unit ms")
                        + ", or "
                    )
                elif chosen_unit == "ms" and too_early[first] and MIN_TIMESTAMP <= secs[first] * 1000 <= max_ts:
                    unit_fix = (
                        "if the column is in seconds pass "
                        + _hint("timestamp_unit='s'", "--timestamp-unit s")
                        + ", or "
                    )
            header_hint = ""
            if first == 0 and src.header_lines == 0 and src.fmt in ("csv", "tsv") and unparsable[first]:
                header_hint = "; the first row may be a header: if the file has one, do not pass column_names"
            raise src.row_error(
                f"{what}. {summary}{header_hint}",
                first,
                column=name,
                value=value,
                fix=(
                    unit_fix
                    + "correct the value, or drop such rows with "
                    + _DROP_BAD_TS
                    + " (they are counted under 'bad_timestamp' in the drop report)."
                ),
            )
        src.warn(
            "bad_timestamp",
            "%s: %s; they will be dropped (counted as 'bad_timestamp'), first at row %d: %s",
            src.display,
            summary,
            first + 1 + src.row_offset,
            show_value(value),
        )

    valid = parsed & ~bad
    if valid.all():  # the common case: no boolean-mask indexing over every row
        seconds = pa.array(secs.astype(np.int64), type=pa.int64())
    else:
        out = np.zeros(n, dtype=np.int64)
        out[valid] = secs[valid].astype(np.int64)
        seconds = pa.array(out, type=pa.int64(), mask=~valid)
    return _Timestamps(seconds, bad, chosen_unit if unit == "auto" and chosen_unit in ("s", "ms") else None)


def _cast_numeric(col: pa.ChunkedArray, src: _Source, name: str, canonical: str) -> pa.Array:
    """An optional numeric column (price, quantity); a value that is not a number raises."""
    target = ARROW_TYPES[canonical]
    arr = _combine(col)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = _empty_to_null(pc.utf8_trim_whitespace(_combine(_to_string(arr, src, name))))
    # Integers go through float64 so that "2.0" is accepted as 2 (and "2.5" is not).
    current = arr
    for step in [pa.float64(), target] if pa.types.is_integer(target) else [target]:
        result = _try_cast(current, step)
        if result is None:
            i = min(_first_failure(current, step), len(current) - 1)
            kind = "an integer" if pa.types.is_integer(target) else "a number"
            raise src.row_error(
                f"is not {kind}",
                i,
                column=name,
                value=arr[i].as_py(),
                fix=(
                    "correct the value (use '.' as the decimal point, no currency signs or units), or leave the "
                    "column out with " + _hint(f"column_map={{{canonical!r}: None}}") + "."
                ),
            )
        current = result
    return current


def _merge_aliases(event_aliases: Mapping[str, str] | None) -> dict[str, str]:
    aliases = {k.strip().lower(): v for k, v in DEFAULT_EVENT_ALIASES.items()}
    for t in EVENT_TYPES:
        aliases.setdefault(t, t)
    for raw, target in (event_aliases or {}).items():
        canon = str(target).strip().lower()
        if canon not in EVENT_TYPES:
            raise EventDataError(
                f"event_aliases maps {raw!r} to {target!r}, which is not a canonical event type",
                fix=f"map to one of {', '.join(EVENT_TYPES)}, e.g. "
                + _hint(f"event_aliases={{{raw!r}: 'view'}}", f"--event-alias {raw}=view")
                + ".",
            )
        aliases[str(raw).strip().lower()] = canon
    return aliases


def _check_choice(name: str, value: Any, choices: Sequence[str], cli: str) -> str:
    if value not in choices:
        raise EventDataError(
            f"{name}={value!r} is not one of {', '.join(map(repr, choices))}",
            fix=f"pass one of them (CLI: {cli} {choices[0]}).",
        )
    return value


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
) -> datasets.Dataset:
    """Read an event log into a :class:`datasets.Dataset` in the canonical schema.

    Args:
        path: the file. Suffixes ``.csv``, ``.tsv``/``.tab``, ``.parquet``/``.pq``,
            ``.jsonl``/``.ndjson``/``.json`` (JSON Lines), each optionally followed by ``.gz``,
            ``.bz2`` or ``.zst`` (not for parquet).
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

    Returns:
        The events in file order: canonical columns (required + optional ones present), int64
        ``row_index`` (0-based position among the data rows), and the marker columns of the
        ``drop`` policies.

    Raises:
        EventDataError: for any problem with the file or its values, naming the file, row, column,
            value and the fix.
    """
    src, cmap, aliases = _setup(
        path, file_format, column_map, column_names, delimiter, encoding, event_aliases,
        timestamp_unit, unknown_events, bad_timestamps,
    )  # fmt: skip
    now = time.time()
    try:
        if src.fmt in ("csv", "tsv"):
            table, selected = _read_csv(src, cmap, column_names, delimiter, integer_timestamps=timestamp_unit != "iso")
        elif src.fmt == "parquet":
            table, selected = _read_parquet(src, cmap)
        else:
            table, selected = _read_jsonl(src, cmap)
    except EventDataError:
        raise
    except (OSError, EOFError) as e:  # includes corrupt / truncated compressed streams
        raise _io_error(src, e) from None
    except pa.ArrowException as e:
        raise src.error(f"could not be read as {src.fmt} ({e})", fix="check the file's format and contents.") from None

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
) -> Iterator[pa.Table]:
    """Read an event log in batches, for logs larger than memory: the tables of :func:`read_events`
    (same arguments, same columns and rules, ``row_index`` global), one batch at a time.

    csv/tsv files are parsed in blocks of ``batch_bytes`` (streaming, constant memory) and parquet
    files in batches of ``batch_rows`` rows; JSON Lines files are read whole, then sliced (convert
    them to parquet for logs larger than memory). Differences from :func:`read_events`, only for
    unusual files: ``timestamp_unit="auto"`` decides seconds vs milliseconds on the first batch with
    numeric timestamps and keeps that unit; with the ``"error"`` policies the error's counts are
    those of the batch that holds the first bad value.
    """
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
    src: _Source,
    aliases: dict[str, str],
    timestamp_unit: str,
    unknown_events: str,
    bad_timestamps: str,
    now: float,
    *,
    numeric_unit: str | None = None,
    row_offset: int = 0,
) -> tuple[pa.Table, str | None]:
    """The file's columns → the canonical table (+ ``row_index`` from ``row_offset``, markers);
    also returns the s/ms unit chosen for numeric timestamps (``timestamp_unit="auto"``)."""
    n = table.num_rows
    chosen_unit = None
    columns: dict[str, pa.Array] = {}
    markers: dict[str, pa.Array] = {}
    for canon, file_col in selected.items():
        col = table.column(file_col)
        if canon in _STRING_COLUMNS:
            columns[canon] = _to_string(col, src, file_col)
        elif canon == "event_type":
            mapped, unknown = _map_event_types(col, src, file_col, aliases, unknown_events)
            columns[canon] = mapped
            if unknown_events == "drop":
                markers[UNKNOWN_EVENT_MARKER] = pa.array(unknown, type=pa.bool_())
        elif canon == "timestamp":
            ts = _parse_timestamps(col, src, file_col, timestamp_unit, bad_timestamps, now, numeric_unit)
            chosen_unit = ts.numeric_unit
            columns[canon] = ts.seconds
            if bad_timestamps == "drop":
                markers[BAD_TIMESTAMP_MARKER] = pa.array(ts.bad, type=pa.bool_())
        else:
            columns[canon] = _cast_numeric(col, src, file_col, canon)

    ordered = [c for c in _CANONICAL if c in columns]
    fields = [pa.field(c, ARROW_TYPES[c]) for c in ordered] + [pa.field(ROW_INDEX, pa.int64())]
    arrays = [columns[c] for c in ordered] + [pa.array(np.arange(row_offset, row_offset + n, dtype=np.int64))]
    for marker in MARKER_COLUMNS:
        if marker in markers:
            fields.append(pa.field(marker, pa.bool_(), nullable=False))
            arrays.append(markers[marker])
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields)), chosen_unit


__all__ = [
    "BAD_TIMESTAMP_MARKER",
    "CSV_NULL_VALUES",
    "FILE_FORMATS",
    "MARKER_COLUMNS",
    "MILLISECONDS_THRESHOLD",
    "MIN_TIMESTAMP",
    "ROW_INDEX",
    "TIMESTAMP_UNITS",
    "UNKNOWN_EVENT_MARKER",
    "iter_events",
    "read_events",
]
