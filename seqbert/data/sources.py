"""Event files: checking the path, opening (de)compressed streams, and errors that point into the file.

:func:`resolve_source` checks a path the way every reader needs it checked (exists, not a folder,
not empty, known format and compression, known encoding) and returns a :class:`Source`: the file
plus what error messages need to name a file, row, line and column. The helpers here build those
messages for truncated/corrupt files, rows with the wrong field count and invalid JSON lines; they
scan the file in plain Python, but only on error paths.

Used by :mod:`seqbert.data.readers` and the public-dataset readers in :mod:`seqbert.data.formats`.
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from .errors import EventDataError, show_value

# Data warnings keep the name of the reader module, where users and tests configure them.
logger = logging.getLogger("seqbert.data.readers")

FILE_FORMATS: tuple[str, ...] = ("csv", "tsv", "parquet", "jsonl")
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

READ_BLOCK_SIZE = 8 << 20
"""Bytes per block of Arrow's csv / JSON readers."""


# --------------------------------------------------------------------------------------------- hints
def hint(python: str, cli: str | None = None) -> str:
    """How to pass an option in Python, and on the command line when there is a flag for it."""
    return f"{python} (CLI: {cli})" if cli else python


# ---------------------------------------------------------------------------------------- the source
@dataclass
class Source:
    """An input file that passed :func:`resolve_source`, and the context its error messages need."""

    path: Path
    display: str
    fmt: str
    compression: str | None
    encoding: str
    header_lines: int = 0
    row_offset: int = 0  # data rows before the current batch (streaming reads): row numbers stay global
    warned: set[str] = field(default_factory=set)
    filesystem: Any = None  # a pyarrow FileSystem for remote files (seqbert.data.shards); None: local
    partition: dict[str, str] = field(default_factory=dict)  # Hive partition values: extra columns of every row

    def warn(self, kind: str, message: str, *args: Any) -> None:
        """Log a data warning; in a streaming read only the first of each kind is a WARNING."""
        level = logging.DEBUG if kind in self.warned else logging.WARNING
        self.warned.add(kind)
        suffix = " (and possibly more in later batches)" if self.row_offset else ""
        logger.log(level, message + suffix, *args)

    def stream(self) -> pa.NativeFile:
        if self.filesystem is not None:
            return self.filesystem.open_input_stream(str(self.path), compression=self.compression)
        return pa.input_stream(str(self.path), compression=self.compression)

    def parquet_input(self) -> Any:
        """What ``pyarrow.parquet.ParquetFile`` opens: the local path, or a random-access remote file."""
        if self.filesystem is not None:
            return self.filesystem.open_input_file(str(self.path))
        return str(self.path)

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
            ", or pass its encoding, e.g. " + hint("encoding='latin-1'", "--encoding latin-1")
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


def resolve_source(path: str | Path, file_format: str | None, encoding: str) -> Source:
    display = str(path)
    p = Path(path).expanduser()
    if not p.exists():
        nearby = ""
        if p.parent.is_dir():
            similar = sorted(q.name for q in p.parent.iterdir() if q.name.split(".")[0] == p.name.split(".")[0])[:5]
            if similar:
                nearby = f" Files with a similar name there: {', '.join(similar)}."
        raise EventDataError(
            f"file not found.{nearby}", path=display, fix="check the path (and the working directory)."
        )
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
                    f"pass {hint('file_format=' + repr('csv'), '--format csv')} (one of {', '.join(FILE_FORMATS)}), "
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
    return Source(p, display, fmt, compression, encoding)


# ------------------------------------------------------------------------------------ reading helpers
def peek_nonblank(src: Source) -> None:
    """Raise 'empty file' if the (decompressed) content has no non-whitespace byte."""
    with src.stream() as f:
        while True:
            chunk = f.read(1 << 16)
            if not chunk:
                raise src.error("is empty (no rows)", fix="check that the file was written completely.")
            if chunk.strip():
                return


def read_header(src: Source, delimiter: str) -> list[str]:
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


def field_count_error(src: Source, row: Any, expected: int, names_given: bool, delim: str) -> EventDataError:
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


def io_error(src: Source, e: BaseException) -> EventDataError:
    text = str(e)
    if src.compression is not None:
        return src.error(
            f"is not a complete, valid {src.compression} file ({text})",
            fix="the file is probably truncated or corrupt: download or compress it again (check with `gzip -t`).",
        )
    return src.error(f"could not be read ({text})", fix="check the file and its permissions.")


def json_syntax_error(src: Source, arrow_message: str) -> EventDataError:
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
        return io_error(src, e)
    return src.error(f"could not be parsed as JSON Lines ({arrow_message})", fix="write one JSON object per line.")


__all__ = [
    "COMPRESSION_SUFFIXES",
    "FILE_FORMATS",
    "READ_BLOCK_SIZE",
    "SUFFIX_FORMATS",
    "Source",
    "field_count_error",
    "hint",
    "io_error",
    "json_syntax_error",
    "peek_nonblank",
    "read_header",
    "resolve_source",
]
