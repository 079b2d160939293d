"""Shared plumbing for the public-dataset readers.

Formats whose file is a flat table with an event column delegate to
:func:`seqbert.data.readers.read_events`. The others (nested OTTO sessions, S3-Rec item lists,
DIGINETICA's date + offset timestamps, YooChoose's two files without an event column) build the
raw columns themselves and finish here, through the *same* conversion steps as ``read_events``
(id strings, event-type aliases, timestamp validation, ``drop`` markers, error messages naming
file, row, column, value and fix). The result has exactly the schema ``read_events`` returns.

The conversion is :func:`seqbert.data.canonical.to_canonical_events`, the one path every input
takes (no second copy of its rules); the file checks and error helpers are
:mod:`seqbert.data.sources`.
"""

from __future__ import annotations

import codecs
import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
from datasets.fingerprint import Hasher

from ..canonical import MARKER_COLUMNS, POLICIES, ROW_INDEX, check_choice, to_canonical_events, try_cast
from ..errors import EventDataError
from ..readers import CSV_NULL_VALUES
from ..schema import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from ..sources import READ_BLOCK_SIZE, Source, field_count_error, io_error, read_header, resolve_source

_CANONICAL = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)


def resolve(path: str | Path, encoding: str = "utf-8", file_format: str = "csv") -> Source:
    """The checked input file (exists, not empty, known compression), as ``read_events`` checks it."""
    return resolve_source(path, file_format, encoding)


def check_policies(unknown_events: str, bad_timestamps: str) -> None:
    check_choice("unknown_events", unknown_events, POLICIES, "--unknown-events")
    check_choice("bad_timestamps", bad_timestamps, POLICIES, "--bad-timestamps")


def read_text_table(
    src: Source,
    *,
    column_names: Sequence[str] | None,
    delimiter: str,
    header: bool,
) -> tuple[pa.Table, list[str]]:
    """A delimited text file with every column as strings (nulls per ``CSV_NULL_VALUES``).

    ``header=True``: the first line names the columns (returned), ``column_names`` must be None.
    ``header=False``: the file has no header and ``column_names`` names the columns.
    Field-count, encoding and truncated-file problems raise the same errors as ``read_events``.
    """
    if header:
        names = read_header(src, delimiter)
        src.header_lines = 1
    else:
        names = [str(c) for c in column_names or ()]
    invalid: list[Any] = []

    def on_invalid(row: Any) -> str:
        invalid.append(row)
        return "error"

    utf8 = codecs.lookup(src.encoding).name == "utf-8"
    read_options = pv.ReadOptions(
        column_names=names,
        skip_rows=1 if header else 0,
        block_size=READ_BLOCK_SIZE,
        encoding="utf8" if utf8 else src.encoding,
    )
    convert_options = pv.ConvertOptions(
        column_types={c: pa.string() for c in names},
        null_values=list(CSV_NULL_VALUES),
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    try:
        with src.stream() as f:
            table = pv.read_csv(
                f,
                read_options=read_options,
                parse_options=pv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
                convert_options=convert_options,
            )
    except pa.ArrowInvalid as e:
        if invalid:
            raise field_count_error(src, invalid[0], len(names), not header, delimiter) from None
        if "utf8" in str(e).lower():
            raise src.encoding_error() from None
        raise src.error(f"could not be parsed ({e})", fix="check that this is the dataset's original file.") from None
    except (OSError, EOFError) as e:
        raise io_error(src, e) from None
    if table.num_rows == 0:
        raise src.error(
            "has no data rows" + (" (only a header)" if header else ""),
            fix="check that the file was written completely.",
        )
    return table, names


def constant_strings(value: str | None, n: int) -> pa.Array:
    """``n`` copies of one string (null when ``value`` is None), without a Python list of n items."""
    if value is None:
        return pa.nulls(n, pa.string())
    return pa.array([value], pa.string()).take(pa.array(np.zeros(n, dtype=np.int64)))


def parse_integers(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Integer strings -> (int64 values, ok mask); missing and non-integer values are not ok."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    fast = try_cast(arr, pa.int64())  # the common case: a clean integer column
    if fast is not None:
        return pc.fill_null(fast, 0).to_numpy(zero_copy_only=False), ~arr.is_null().to_numpy(zero_copy_only=False)
    trimmed = pc.utf8_trim_whitespace(arr)
    ok = pc.fill_null(pc.match_substring_regex(trimmed, r"^[+-]?\d{1,18}$"), False)
    ok_np = ok.to_numpy(zero_copy_only=False)
    values = np.zeros(len(arr), dtype=np.int64)
    if ok_np.any():
        values[ok_np] = pc.cast(trimmed.filter(ok), pa.int64()).to_numpy(zero_copy_only=False)
    return values, ok_np


def assemble(
    src: Source,
    raw: Mapping[str, pa.Array | pa.ChunkedArray],
    *,
    names: Mapping[str, str] | None = None,
    event_aliases: Mapping[str, str] | None = None,
    timestamp_unit: str = "auto",
    unknown_events: str = "error",
    bad_timestamps: str = "error",
    timestamps: tuple[pa.Array, np.ndarray] | None = None,
    now: float | None = None,
) -> pa.Table:
    """Raw columns (canonical name -> array) -> a canonical table, converted like ``read_events``.

    ``names`` gives the dataset's own name of each column for messages (default: canonical).
    ``timestamps``: already-computed ``(int64 seconds with nulls, bad mask)`` instead of a raw
    ``timestamp`` column. String ids stay exactly as given; ``event_type`` goes through the
    aliases; ``price`` / ``quantity`` are cast and checked as ``read_events`` does.
    Returns the canonical columns (canonical order), ``row_index`` = 0..n-1 and the marker
    columns of the ``drop`` policies, like ``read_events``.
    """
    return to_canonical_events(
        raw, src, names=names, event_aliases=event_aliases, timestamp_unit=timestamp_unit,
        unknown_events=unknown_events, bad_timestamps=bad_timestamps, timestamps=timestamps, now=now,
    ).table  # fmt: skip


def concat(tables: Sequence[pa.Table]) -> pa.Table:
    """Tables from :func:`assemble` one after the other; a column missing from one is null there."""
    table = pa.concat_tables(tables, promote_options="default")
    order = [c for c in (*_CANONICAL, ROW_INDEX, *MARKER_COLUMNS) if c in table.column_names]
    return table.select(order)


def bad_rows_error(
    src: Source, bad: np.ndarray, values: pa.Array, *, column: str, what: str, fix: str
) -> EventDataError:
    """An error at the first bad row, with the count, in the style of ``read_events``."""
    first = int(np.argmax(bad))
    total = int(bad.sum())
    return src.row_error(
        f"{what}. {total:,} of {len(bad):,} rows are affected",
        first,
        column=column,
        value=values[first].as_py(),
        fix=fix + ", or drop such rows with bad_timestamps='drop' (CLI: --bad-timestamps drop); they are counted "
        "under 'bad_timestamp' in the drop report.",
    )


def with_layout_fix(error: EventDataError, layout: str) -> EventDataError:
    """A field-count or missing-column error re-aimed at a dataset format's user, who passed no
    column names or mapping: the fix names the format's layout instead."""
    if "fields but" not in error.message and "missing required column" not in error.message:
        return error
    return EventDataError(
        error.message,
        path=error.path,
        row=error.row,
        line=error.line,
        column=error.column,
        value=error.value,
        fix=f"pass the dataset's original file (and check the row); its layout is {layout}.",
    )


def fingerprint(name: str, files: Sequence[Path], options: Mapping[str, Any]) -> str:
    """Deterministic fingerprint from the files' identity and the options (like ``read_events``)."""
    ids = []
    for f in files:
        stat = Path(f).stat()
        ids.append([str(Path(f).resolve()), stat.st_size, stat.st_mtime_ns])
    return Hasher.hash({"transform": f"seqbert.formats.{name}", "files": ids, "options": dict(options)})


def to_dataset(table: pa.Table, name: str, files: Sequence[Path], options: Mapping[str, Any]) -> datasets.Dataset:
    return datasets.Dataset(table, fingerprint=fingerprint(name, files, options))


def companion(path: Path, given: str | Path | None, default_name: Callable[[Path], Path | None]) -> Path | None:
    """Resolve an optional second file: ``"auto"`` -> the sibling named by ``default_name`` if it exists."""
    if given is None:
        return None
    if isinstance(given, str) and given == "auto":
        candidate = default_name(Path(path).expanduser())
        return candidate if candidate is not None and candidate.is_file() else None
    return Path(given).expanduser()


def accepted_options(reader: Callable[..., Any]) -> list[str]:
    """Keyword options a format reader takes (everything after ``path``)."""
    params = list(inspect.signature(reader).parameters.values())[1:]
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


__all__ = [
    "Source",
    "accepted_options",
    "assemble",
    "bad_rows_error",
    "check_policies",
    "companion",
    "concat",
    "constant_strings",
    "fingerprint",
    "parse_integers",
    "read_text_table",
    "resolve",
    "to_dataset",
    "with_layout_fix",
]
