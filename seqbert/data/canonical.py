"""Raw event columns → the canonical event table, with the rules and messages of ``read_events``.

:func:`to_canonical_events` is the one conversion path for every input: the generic readers of
:mod:`seqbert.data.readers` and the public-dataset readers of :mod:`seqbert.data.formats` pass it
raw columns (canonical name → Arrow array, as found in the file) and get the canonical table back:

* ids (``user_id``, ``item_id``, ``category``, ``query``, ``session_id``) as strings, exactly as
  logged; empty strings are missing values;
* ``event_type`` stripped, lower-cased and mapped through the aliases to one of
  :data:`~seqbert.data.schema.EVENT_TYPES`;
* ``timestamp`` as int64 unix seconds (numbers in s or ms, ISO-8601 strings, native timestamps),
  bad values (unparsable, before :data:`MIN_TIMESTAMP`, more than :data:`FUTURE_TOLERANCE_S`
  in the future) raising or flagged;
* ``price`` / ``quantity`` cast to numbers;
* ``row_index`` and, with the ``"drop"`` policies, the marker columns :data:`BAD_TIMESTAMP_MARKER`
  / :data:`UNKNOWN_EVENT_MARKER` (see :mod:`seqbert.data.readers`).

Errors are :class:`~seqbert.data.errors.EventDataError` naming file, row, line, column, value and fix.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .arrow import contiguous
from .errors import EventDataError, show_value
from .schema import ARROW_TYPES, DEFAULT_EVENT_ALIASES, EVENT_TYPES, OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from .sources import Source, hint

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

STRING_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "category", "query", "session_id")
"""Canonical columns that hold ids or text (kept exactly as logged)."""
CANONICAL_COLUMNS: tuple[str, ...] = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)

_NUMBER_RE = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
_ISO_RE = (
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<hh>\d{2})(?P<mm>:\d{2})?(?P<ss>:\d{2})?(?:[.,]\d+)?)?"
    r"\s*(?P<tz>[Zz]|UTC|[+-]\d{2}(?::?\d{2})?)?$"
)

_DROP_BAD_TS = hint("bad_timestamps='drop'", "--bad-timestamps drop")
_DROP_UNKNOWN = hint("unknown_events='drop'", "--unknown-events drop")


def timestamp_problem(seconds: float, now: float | None = None) -> str | None:
    """Why ``seconds`` (unix seconds) is a bad timestamp, or ``None`` when it is a good one: ``"is negative"``,
    ``"is before 1990-01-01"`` (:data:`MIN_TIMESTAMP`) or ``"is more than 1 day in the future"`` (over
    :data:`FUTURE_TOLERANCE_S` after ``now``, default the current time). The one rule of
    :func:`to_canonical_events` (``seqbert prepare``, column-wise) and of ``seqbert serve`` (each request)."""
    if seconds < 0:
        return "is negative"
    if seconds < MIN_TIMESTAMP:
        return "is before 1990-01-01"
    if seconds > (time.time() if now is None else now) + FUTURE_TOLERANCE_S:
        return "is more than 1 day in the future"
    return None


def recorded_event_aliases(protocol: Mapping[str, Any] | None) -> dict[str, str]:
    """The event-type aliases ``seqbert prepare`` applied to a model's data (raw name, stripped and lower-cased →
    canonical type): the defaults (:data:`~seqbert.data.schema.DEFAULT_EVENT_ALIASES`), those of its
    ``--dataset-format`` and its ``--event-alias`` options, as recorded in ``protocol["source"]`` (the
    ``split_protocol.json`` of a model folder; ``None`` or a protocol without a source: the defaults)."""
    source = (protocol or {}).get("source") or {}
    extra = dict((source.get("read_options") or {}).get("event_aliases") or {})
    if source.get("dataset_format"):
        import sys

        from .formats import get_reader

        try:
            module = sys.modules[get_reader(source["dataset_format"]).__module__]
        except EventDataError:  # a format this version does not know: its aliases are not recorded
            module = None
        extra = {**getattr(module, "EVENT_ALIASES", {}), **extra}
    return _merge_aliases(extra)


def _fmt_ts(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{seconds:.0f} s since 1970, beyond the year 9999"


# --------------------------------------------------------------------------------------- conversions
def _bool_np(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    arr = contiguous(arr)
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


def _to_string(col: pa.ChunkedArray | pa.Array, src: Source, name: str) -> pa.Array | pa.ChunkedArray:
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
            arr = contiguous(arr)
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
    col: pa.ChunkedArray, src: Source, name: str, aliases: dict[str, str], policy: str
) -> tuple[pa.Array, np.ndarray | None]:
    """Map raw event names to canonical ones through a dictionary encoding: the string work is per
    distinct value; per row there is one ``take``. (csv/tsv columns arrive dictionary-encoded.)"""
    if pa.types.is_dictionary(col.type) and pa.types.is_string(col.type.value_type):
        if isinstance(col, pa.ChunkedArray) and col.num_chunks > 1:
            col = pa.Table.from_arrays([col], names=["e"]).unify_dictionaries().column(0)
        enc = contiguous(col)
    else:
        enc = pc.dictionary_encode(contiguous(_to_string(col, src, name)))
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
                + hint(f"event_aliases={{{example!r}: 'view'}}", f"--event-alias {example}=view")
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


def _auto_unit(values: np.ndarray, finite: np.ndarray | None, numeric_unit: str | None) -> str:
    """The unit of numeric timestamps for ``timestamp_unit="auto"``: ``numeric_unit`` when given,
    else ``"ms"`` when the median absolute value of (a sample of about 1M of) the ``finite``
    values is at least :data:`MILLISECONDS_THRESHOLD`."""
    if numeric_unit is not None:
        return numeric_unit
    step = max(1, len(values) // 1_000_000)
    sample = values[::step].astype(np.float64, copy=False)
    sample = np.abs(sample if finite is None else sample[finite[::step]])
    return "ms" if len(sample) and float(np.median(sample)) >= MILLISECONDS_THRESHOLD else "s"


def _integer_seconds(arr: pa.Array, unit: str, numeric_unit: str | None, now: float) -> _Timestamps | None:
    """The common case without a float copy: signed integers, no nulls, every value in range once
    in seconds. ``None`` otherwise (the general path then finds and reports the bad values)."""
    if unit == "iso" or not len(arr) or arr.null_count or not pa.types.is_signed_integer(arr.type):
        return None
    ints = arr.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    chosen = _auto_unit(ints, None, numeric_unit) if unit == "auto" else unit
    seconds = ints if chosen == "s" else np.floor_divide(ints, 1000)
    if int(seconds.min()) < MIN_TIMESTAMP or int(seconds.max()) > now + FUTURE_TOLERANCE_S:
        return None
    bad = np.zeros(len(ints), dtype=bool)
    return _Timestamps(pa.array(seconds, type=pa.int64()), bad, chosen if unit == "auto" else None)


def _parse_timestamps(
    col: pa.ChunkedArray,
    src: Source,
    name: str,
    unit: str,
    policy: str,
    now: float,
    numeric_unit: str | None = None,
) -> _Timestamps:
    """Timestamps → int64 unix seconds. ``numeric_unit`` fixes the s/ms decision of
    ``unit="auto"`` (streaming reads decide it on the first batch with numbers, then keep it)."""
    arr = contiguous(col)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    in_range = _integer_seconds(arr, unit, numeric_unit, now)
    if in_range is not None:
        return in_range
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
            chosen_unit = _auto_unit(values, finite, numeric_unit)
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
        strings = contiguous(_to_string(arr, src, name))
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
                        hint("timestamp_unit='auto'", "--timestamp-unit auto") + " to also accept unix numbers, or "
                    )
                elif unit in ("s", "ms"):
                    what = f"is not a number of unix {'seconds' if unit == 's' else 'milliseconds'}"
                    unit_fix = (
                        hint("timestamp_unit='auto'", "--timestamp-unit auto") + " to also accept ISO-8601, or "
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
                what = f"{timestamp_problem(secs[first], now)} ({read_as})"
                if chosen_unit == "s" and too_late[first] and MIN_TIMESTAMP <= secs[first] / 1000 <= max_ts:
                    unit_fix = (
                        "if the column is in milliseconds pass "
                        + hint("timestamp_unit='ms'", "--timestamp-unit ms")
                        + ", or "
                    )
                elif chosen_unit == "ms" and too_early[first] and MIN_TIMESTAMP <= secs[first] * 1000 <= max_ts:
                    unit_fix = (
                        "if the column is in seconds pass "
                        + hint("timestamp_unit='s'", "--timestamp-unit s")
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


def _cast_numeric(col: pa.ChunkedArray, src: Source, name: str, canonical: str) -> pa.Array:
    """An optional numeric column (price, quantity); a value that is not a number raises."""
    target = ARROW_TYPES[canonical]
    arr = contiguous(col)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = _empty_to_null(pc.utf8_trim_whitespace(contiguous(_to_string(arr, src, name))))
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
                    "column out with " + hint(f"column_map={{{canonical!r}: None}}") + "."
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
                + hint(f"event_aliases={{{raw!r}: 'view'}}", f"--event-alias {raw}=view")
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


# -------------------------------------------------------------------------------- raw → canonical
class CanonicalEvents(NamedTuple):
    """What :func:`to_canonical_events` returns."""

    table: pa.Table
    """Canonical columns (canonical order, those given), ``row_index``, and the drop-policy markers."""
    numeric_unit: str | None
    """``"s"`` / ``"ms"`` when numeric timestamps were read with ``timestamp_unit="auto"`` (else None)."""


def to_canonical_events(
    raw: Mapping[str, pa.Array | pa.ChunkedArray],
    source: Source,
    *,
    names: Mapping[str, str] | None = None,
    event_aliases: Mapping[str, str] | None = None,
    timestamp_unit: str = "auto",
    unknown_events: str = "error",
    bad_timestamps: str = "error",
    timestamps: tuple[pa.Array, np.ndarray] | None = None,
    now: float | None = None,
    row_offset: int = 0,
    numeric_unit: str | None = None,
) -> CanonicalEvents:
    """Raw columns (canonical name → array as read from the file) → the canonical event table.

    Args:
        raw: the columns found, by canonical name (any subset of :data:`CANONICAL_COLUMNS`; all of
            the same length). Ids may be strings, numbers or dictionary arrays; ``event_type``
            raw names; ``timestamp`` numbers, strings or native timestamps.
        source: the file (for error messages), from :func:`~seqbert.data.sources.resolve_source`.
        names: the file's own name of each column, for messages (default: the canonical name).
        event_aliases: extra raw → canonical event type aliases, merged over
            :data:`~seqbert.data.schema.DEFAULT_EVENT_ALIASES`.
        timestamp_unit, unknown_events, bad_timestamps: as for
            :func:`~seqbert.data.readers.read_events`.
        timestamps: already-computed ``(int64 seconds with nulls, bad mask)`` instead of a raw
            ``timestamp`` column (formats whose time is spread over several fields).
        now: the time of reading (unix seconds) for the "far future" check; default: now.
        row_offset: ``row_index`` of the first row (batches of a streaming read).
        numeric_unit: ``"s"`` / ``"ms"`` to use for numeric timestamps with ``timestamp_unit="auto"``
            (a streaming read keeps the first batch's decision); None decides from these values.

    Returns:
        ``(table, numeric_unit)``: the canonical table with ``row_index`` = ``row_offset`` … and the
        marker columns of the ``"drop"`` policies (present exactly when the policy is ``"drop"``),
        and the unit chosen for numeric timestamps.
    """
    check_choice("timestamp_unit", timestamp_unit, TIMESTAMP_UNITS, "--timestamp-unit")
    check_choice("unknown_events", unknown_events, POLICIES, "--unknown-events")
    check_choice("bad_timestamps", bad_timestamps, POLICIES, "--bad-timestamps")
    names = dict(names or {})
    now = time.time() if now is None else now
    aliases = merge_aliases(event_aliases)
    lengths = {len(a) for a in raw.values()}
    if timestamps is not None:
        lengths.add(len(timestamps[0]))
    if len(lengths) != 1:
        raise ValueError(f"columns of different lengths: {sorted(lengths)}")
    (n,) = lengths
    chosen_unit = None
    columns: dict[str, pa.Array] = {}
    markers: dict[str, Any] = {}
    for canon, col in raw.items():
        if canon not in CANONICAL_COLUMNS:
            raise ValueError(f"{canon!r} is not a canonical column; use one of {', '.join(CANONICAL_COLUMNS)}")
        name = names.get(canon, canon)
        if canon in STRING_COLUMNS:
            columns[canon] = _to_string(col, source, name)
        elif canon == "event_type":
            mapped, unknown = _map_event_types(col, source, name, aliases, unknown_events)
            columns[canon] = mapped
            if unknown_events == "drop":
                markers[UNKNOWN_EVENT_MARKER] = unknown
        elif canon == "timestamp":
            ts = _parse_timestamps(col, source, name, timestamp_unit, bad_timestamps, now, numeric_unit)
            chosen_unit = ts.numeric_unit
            columns[canon] = ts.seconds
            if bad_timestamps == "drop":
                markers[BAD_TIMESTAMP_MARKER] = ts.bad
        else:  # price, quantity
            columns[canon] = _cast_numeric(col, source, name, canon)
    if timestamps is not None:
        seconds, bad = timestamps
        columns["timestamp"] = seconds
        if bad_timestamps == "drop":
            markers[BAD_TIMESTAMP_MARKER] = bad
    if unknown_events == "drop" and UNKNOWN_EVENT_MARKER not in markers:
        markers[UNKNOWN_EVENT_MARKER] = np.zeros(n, dtype=bool)

    ordered = [c for c in CANONICAL_COLUMNS if c in columns]
    fields = [pa.field(c, ARROW_TYPES[c]) for c in ordered] + [pa.field(ROW_INDEX, pa.int64())]
    arrays = [columns[c] for c in ordered] + [pa.array(np.arange(row_offset, row_offset + n, dtype=np.int64))]
    for marker in MARKER_COLUMNS:
        if marker in markers:
            fields.append(pa.field(marker, pa.bool_(), nullable=False))
            arrays.append(pa.array(markers[marker], type=pa.bool_()))
    return CanonicalEvents(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), chosen_unit)


# Public names of the conversion steps (the formats compose them for unusual layouts).
cast_numeric = _cast_numeric
map_event_types = _map_event_types
merge_aliases = _merge_aliases
parse_timestamps = _parse_timestamps
to_string_ids = _to_string
try_cast = _try_cast
check_choice = _check_choice

__all__ = [
    "BAD_TIMESTAMP_MARKER",
    "CANONICAL_COLUMNS",
    "FUTURE_TOLERANCE_S",
    "MARKER_COLUMNS",
    "MILLISECONDS_THRESHOLD",
    "MIN_TIMESTAMP",
    "POLICIES",
    "ROW_INDEX",
    "STRING_COLUMNS",
    "TIMESTAMP_UNITS",
    "UNKNOWN_EVENT_MARKER",
    "CanonicalEvents",
    "cast_numeric",
    "check_choice",
    "map_event_types",
    "merge_aliases",
    "parse_timestamps",
    "recorded_event_aliases",
    "timestamp_problem",
    "to_canonical_events",
    "to_string_ids",
    "try_cast",
]
