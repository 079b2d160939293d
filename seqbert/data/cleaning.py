"""Clean canonical events and account for every dropped row.

:func:`clean_events` applies, in this order (:data:`DROP_REASONS`):

``missing_field``
    ``user_id``, ``item_id``, ``event_type`` or ``timestamp`` is null (and the row is not flagged by
    one of the reader's drop markers, see below).
``bad_timestamp``
    flagged by :func:`~seqbert.data.readers.read_events` with ``bad_timestamps="drop"``
    (marker column ``_bad_timestamp``).
``unknown_event_type``
    flagged with ``unknown_events="drop"`` (marker column ``_unknown_event``).
``duplicate``
    exact duplicate of an earlier row in (user_id, item_id, event_type, timestamp); the first
    occurrence (smallest ``row_index``) is kept.
``bot_user``
    all events of bot-like users (counted after the steps above), by configurable thresholds: more
    than ``max_events_per_user`` events in all, or more than ``max_events_per_minute`` events
    within any 60 seconds, or more than ``max_events_per_hour`` within any hour. A user over any
    threshold is dropped whole.
``rare_item``
    events of items seen in fewer than ``min_item_support`` events (after the steps above). The
    only rule that is not per user: a log cleaned one user partition at a time passes the summed
    :func:`count_item_support` of all partitions as ``item_support`` (see
    :mod:`seqbert.data.partitioned`).
``short_user``
    events of users left with fewer than ``min_user_events`` events.

The count rules (``bot_user``, ``rare_item``, ``short_user``) judge a user or item from its events.
With ``count_before`` (a temporal split passes its first cutoff) they count only events strictly
before that time, so that which users and items are kept never depends on the future the split
evaluates; a user or item they drop is dropped with all its events, and one with no event before
``count_before`` (left after the per-row rules and ``bot_user``) is not judged by ``rare_item`` /
``short_user`` and kept (new items and users of the evaluation period stay, as unseen ones).

``rare_item`` then ``short_user`` are applied once by default. With ``k_core=True`` the pair is
repeated until nothing more is dropped (iterative k-core: dropping a short user can take an item
below its support, and the reverse); the rows dropped by every pass add to the same two reasons.

The result keeps the canonical columns and ``row_index`` in the input order, and a
:class:`DropReport` in which ``input_rows == kept_rows + sum(dropped.values())`` always holds
(checked before returning). All steps are vectorised (numpy / pyarrow), no per-row Python.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets.fingerprint import Hasher, generate_random_fingerprint

from .arrow import contiguous, filter_rows
from .errors import EventDataError
from .readers import BAD_TIMESTAMP_MARKER, MARKER_COLUMNS, ROW_INDEX, UNKNOWN_EVENT_MARKER
from .schema import ARROW_TYPES, OPTIONAL_COLUMNS, REQUIRED_COLUMNS

logger = logging.getLogger(__name__)

DROP_REASONS: tuple[str, ...] = (
    "missing_field",
    "bad_timestamp",
    "unknown_event_type",
    "duplicate",
    "bot_user",
    "rare_item",
    "short_user",
)
"""The reasons :func:`clean_events` records, in the order it applies them."""


@dataclass
class DropReport:
    """How many rows came in, how many were kept, and how many were dropped for which reason.

    ``dropped`` keeps the order in which reasons were applied. Later pipeline steps may
    :meth:`add` their own reasons to the same report.
    """

    input_rows: int
    kept_rows: int
    dropped: dict[str, int] = field(default_factory=dict)
    source: str | None = None

    @classmethod
    def start(cls, input_rows: int, source: str | None = None) -> DropReport:
        """A report for ``input_rows`` rows with nothing dropped yet."""
        return cls(input_rows=int(input_rows), kept_rows=int(input_rows), dropped={}, source=source)

    def add(self, reason: str, rows: int) -> None:
        """Record ``rows`` more rows dropped for ``reason``; lowers ``kept_rows`` by as many."""
        rows = int(rows)
        if rows < 0:
            raise ValueError(f"cannot drop a negative number of rows ({rows}) for {reason!r}")
        if rows > self.kept_rows:
            raise ValueError(f"cannot drop {rows} rows for {reason!r}: only {self.kept_rows} rows are kept")
        self.dropped[reason] = self.dropped.get(reason, 0) + rows
        self.kept_rows -= rows

    @classmethod
    def merged(cls, reports: list[DropReport], input_rows: int, source: str | None = None) -> DropReport:
        """One report for ``input_rows`` rows split among ``reports`` (parts of one log): the
        reasons add up, in the order they were first applied."""
        report = cls.start(input_rows, source=source)
        reasons: dict[str, int] = {}
        for part in reports:
            for reason, rows in part.dropped.items():
                reasons[reason] = reasons.get(reason, 0) + rows
        for reason, rows in reasons.items():
            report.add(reason, rows)
        report.check()
        return report

    @property
    def dropped_rows(self) -> int:
        return sum(self.dropped.values())

    def one_line(self) -> str:
        """``kept K of N rows`` and the non-zero drop reasons, for a log line."""
        reasons = ", ".join(f"{reason} {rows:,}" for reason, rows in self.dropped.items() if rows)
        return f"kept {self.kept_rows:,} of {self.input_rows:,} rows" + (f" (dropped: {reasons})" if reasons else "")

    def check(self) -> None:
        """Raise ``ValueError`` unless ``input_rows == kept_rows + sum(dropped)`` and no count is negative."""
        negative = {k: v for k, v in self.dropped.items() if v < 0}
        if negative or self.kept_rows < 0 or self.input_rows < 0:
            raise ValueError(
                f"drop report has negative counts: input={self.input_rows}, kept={self.kept_rows}, {negative}"
            )
        if self.input_rows != self.kept_rows + self.dropped_rows:
            raise ValueError(
                f"drop report does not add up: input {self.input_rows} != kept {self.kept_rows} + "
                f"dropped {self.dropped_rows} ({self.dropped})"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "input_rows": self.input_rows,
            "kept_rows": self.kept_rows,
            "dropped": dict(self.dropped),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DropReport:
        report = cls(
            input_rows=int(data["input_rows"]),
            kept_rows=int(data["kept_rows"]),
            dropped={str(k): int(v) for k, v in data.get("dropped", {}).items()},
            source=data.get("source"),
        )
        report.check()
        return report

    def save_json(self, path: str | PathLike[str]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load_json(cls, path: str | PathLike[str]) -> DropReport:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def format_table(self) -> str:
        """An aligned text table: one line per reason, the dropped total, kept and input rows."""

        def pct(rows: int) -> str:
            return f"{100.0 * rows / self.input_rows:.2f}%" if self.input_rows else "-"

        lines = [("reason", "rows", "share")]
        lines += [(reason, f"{rows:,}", pct(rows)) for reason, rows in self.dropped.items()]
        footer = [
            ("dropped (total)", f"{self.dropped_rows:,}", pct(self.dropped_rows)),
            ("kept", f"{self.kept_rows:,}", pct(self.kept_rows)),
            ("input", f"{self.input_rows:,}", pct(self.input_rows)),
        ]
        w0 = max(len(r[0]) for r in lines + footer)
        w1 = max(len(r[1]) for r in lines + footer)
        w2 = max(len(r[2]) for r in lines + footer)

        def fmt(row: tuple[str, str, str]) -> str:
            return f"{row[0]:<{w0}}  {row[1]:>{w1}}  {row[2]:>{w2}}"

        rule = "-" * (w0 + w1 + w2 + 4)
        out = []
        if self.source:
            out.append(f"Drop report for {self.source}")
        out += [fmt(lines[0]), rule, *(fmt(r) for r in lines[1:]), rule, *(fmt(r) for r in footer)]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.format_table()


# ------------------------------------------------------------------------------------------- helpers
def _as_table(events: datasets.Dataset | pa.Table) -> pa.Table:
    if isinstance(events, pa.Table):
        return events
    if isinstance(events, datasets.Dataset):
        return events.with_format("arrow")[:]  # honours any indices mapping; zero-copy otherwise
    raise TypeError(f"clean_events expects a datasets.Dataset, got {type(events).__name__}")


def _null_np(col: pa.ChunkedArray) -> np.ndarray:
    if col.null_count == 0:
        return np.zeros(len(col), dtype=bool)
    return contiguous(pc.is_null(col)).to_numpy(zero_copy_only=False)


def _bool_np(col: pa.ChunkedArray) -> np.ndarray:
    return contiguous(pc.fill_null(col, False)).to_numpy(zero_copy_only=False)


# A canonical decimal string of length L (no sign, no leading zero) spells a value in [_LOW[L], _HIGH[L]].
_LOW = np.array([1, 0] + [10 ** (k - 1) for k in range(2, 20)] + [1], dtype=np.int64)
_HIGH = np.array([0, 9] + [10**k - 1 for k in range(2, 19)] + [2**63 - 1, 0], dtype=np.int64)


def _try_int_codes(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, int] | None:
    """Codes straight from the ids when they are canonical decimal integers in a compact range."""
    n = len(arr)
    sample = arr.slice(0, 1024).drop_null()
    try:
        pc.cast(sample, pa.int64())  # a failing cast of a whole large array is slow: probe first
        ints = pc.cast(arr, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if ints.null_count == n:
        return None
    lo, hi = (v.as_py() for v in pc.min_max(ints).values())
    if lo < 0 or hi - lo >= max(4 * n, 1 << 20):
        return None
    values = pc.fill_null(ints, lo).to_numpy(zero_copy_only=False)
    # Injective only if each string is the canonical spelling of its integer ("7", not "07", "+7", " 7").
    lengths = np.minimum(pc.fill_null(pc.binary_length(arr), 1).to_numpy(zero_copy_only=False), 20)
    canonical = (values >= _LOW[lengths]) & (values <= _HIGH[lengths])
    if arr.null_count:
        canonical |= pc.is_null(arr).to_numpy(zero_copy_only=False)
    if not canonical.all():
        return None
    return (values - lo).astype(np.int64, copy=False), hi - lo + 1


def _codes(col: pa.ChunkedArray, heads: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Int codes in ``[0, n_codes)`` that are equal exactly when the values are equal.

    Nulls get an arbitrary code (callers only look at non-null rows). Numeric ids (the common
    case in public logs) skip hashing the strings. ``heads``: :func:`_run_heads` of the column,
    when the caller has it.
    """
    if len(col) and pa.types.is_string(col.type):
        codes = _try_int_codes(col)
        if codes is not None:
            return codes
    # Logs grouped by user repeat each id in a run: hash one id per run (the codes are the same,
    # dictionary_encode numbers values in order of first appearance). Only the run heads are made
    # contiguous: the reader's chunks of the whole column are not copied.
    heads = _run_heads(col) if heads is None else heads
    enc = pc.dictionary_encode(contiguous(col) if heads is None else contiguous(col.take(pa.array(heads))))
    codes = pc.fill_null(enc.indices, 0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    if heads is not None:
        codes = np.repeat(codes, np.diff(np.append(heads, len(col))))
    return codes, max(len(enc.dictionary), 1)


def _run_heads(arr: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """Where runs of equal values start, when the runs are long (at most one per 4 rows on average).

    A chunked column (as the csv reader returns it) is compared chunk by chunk, without a copy."""
    if len(arr) < 2 or arr.null_count:
        return None
    run_start = np.ones(len(arr), dtype=bool)
    run_start[1:] = pc.not_equal(arr[1:], arr[:-1]).to_numpy(zero_copy_only=False)
    heads = np.flatnonzero(run_start)
    return heads if len(heads) <= len(arr) // 4 else None


_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (a bijection on uint64), vectorised."""
    x = x ^ (x >> np.uint64(30))
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


def _canonicalise(table: pa.Table, source: str | None) -> pa.Table:
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise EventDataError(
            f"events lack the required column(s) {missing}; they have {table.column_names}",
            path=source,
            fix="read the file with seqbert.data.read_events (column_map=... for other names).",
        )
    if ROW_INDEX not in table.column_names:
        table = table.append_column(ROW_INDEX, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    for name in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, ROW_INDEX):
        if name not in table.column_names:
            continue
        want = ARROW_TYPES.get(name, pa.int64())
        col = table.column(name)
        if col.type != want:
            try:
                table = table.set_column(table.column_names.index(name), name, pc.cast(col, want))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise EventDataError(
                    f"column {name!r} has type {col.type}, which cannot be cast to {want} ({e})",
                    path=source,
                    column=name,
                    fix="read the file with seqbert.data.read_events.",
                ) from None
    return table


def _duplicates(
    keep: np.ndarray,
    users: np.ndarray,
    n_users: int,
    item_codes: Callable[[], tuple[np.ndarray, int]],
    ts: np.ndarray,
    item_id: pa.ChunkedArray,
    event_type: pa.ChunkedArray,
) -> np.ndarray:
    """Rows (among ``keep``) that repeat an earlier kept row's (user, item, event type, timestamp).

    Candidates first, then an exact group-by with the event type on just those rows (usually few)
    keeps the first row of each group. For a log grouped by user in time order, the candidates
    are the rows whose (user, timestamp) equals a neighbour's (:func:`_grouped_candidates`, no
    sort). Otherwise (:func:`_sorted_candidates`) each row gets a uint64 ``key << b | position``,
    where ``key`` is (user, item, timestamp) packed exactly when it fits in ``64 - b`` bits and the
    top bits of a 64-bit hash otherwise.
    One ``np.sort`` (fast for integers, unlike ``argsort``) then puts equal keys next to each
    other with their positions; rows in runs of equal keys are the candidates.
    """
    duplicate = np.zeros(len(keep), dtype=bool)
    every = bool(keep.all())
    rows = None if every else np.flatnonzero(keep)  # None: every row (no full-length index array)
    m = len(keep) if every else len(rows)
    if m < 2:
        return duplicate
    u = users if every else users[rows]
    t = (ts if every else ts[rows]).astype(np.int64, copy=False)
    candidates = _grouped_candidates(u, t, n_users)
    if candidates is None:
        items, n_items = item_codes()
        candidates = _sorted_candidates(u, n_users, items if every else items[rows], n_items, t)
    if candidates is None or not len(candidates):
        return duplicate
    cand_rows = candidates if every else rows[candidates]
    index = pa.array(cand_rows)
    grouped = (
        # Take the candidates from the (chunked) columns: no contiguous copy of the whole columns.
        pa.table({"u": u[candidates], "i": item_id.take(index), "e": event_type.take(index),
                  "t": t[candidates], "pos": cand_rows})  # fmt: skip
        .group_by(["u", "i", "e", "t"], use_threads=False)
        .aggregate([("pos", "min")])
    )
    duplicate[cand_rows] = True
    duplicate[grouped.column("pos_min").to_numpy()] = False
    return duplicate


def _grouped_candidates(u: np.ndarray, t: np.ndarray, n_users: int) -> np.ndarray | None:
    """Duplicate candidates of a log grouped by user and in time order within each user (as many
    public logs are): rows whose (user, timestamp) equals a neighbour's, found without sorting.
    ``None`` when the rows are not laid out that way."""
    if not _in_user_time_order(u, t, n_users):
        return None
    same = (u[1:] == u[:-1]) & (t[1:] == t[:-1])
    in_run = np.zeros(len(u), dtype=bool)
    in_run[1:] |= same
    in_run[:-1] |= same
    return np.flatnonzero(in_run)


def _sorted_candidates(
    u: np.ndarray, n_users: int, i: np.ndarray, n_items: int, t: np.ndarray
) -> np.ndarray | None:
    """Duplicate candidates in any row order: positions (ascending) in runs of equal packed keys."""
    m = len(u)
    t_min = int(t.min())
    t_span = int(t.max()) - t_min + 1
    bits = max(1, (m - 1).bit_length())
    key_bits = 64 - bits
    with np.errstate(over="ignore"):
        if n_users * n_items * t_span < 2**key_bits:
            key = ((u * n_items + i) * t_span + (t - t_min)).astype(np.uint64)
        else:
            # A linear combination with large odd multipliers, then one splitmix round for good
            # top bits. Collisions only add candidates: the exact group-by below decides.
            h = u.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            h += i.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
            h += t.view(np.uint64)
            key = _mix64(h) >> np.uint64(bits)
        ordered = np.sort((key << np.uint64(bits)) | np.arange(m, dtype=np.uint64))
    high = ordered >> np.uint64(bits)
    same = high[1:] == high[:-1]
    if not same.any():
        return None
    in_run = np.zeros(m, dtype=bool)
    in_run[1:] |= same
    in_run[:-1] |= same
    return np.sort((ordered[in_run] & np.uint64((1 << bits) - 1)).astype(np.int64))


def _count_where(codes: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """``np.bincount(codes[mask], minlength=size)``. When most rows are selected, all rows are counted
    and the few unselected ones subtracted: no full-length copy of the selected codes."""
    unselected = len(mask) - int(np.count_nonzero(mask))
    if unselected > len(mask) // 2:
        return np.bincount(codes[mask], minlength=size)
    counts = np.bincount(codes, minlength=size)
    if unselected:
        counts -= np.bincount(codes[~mask], minlength=size)
    return counts


def _in_user_time_order(u: np.ndarray, t: np.ndarray, n_users: int) -> bool:
    """Whether rows are grouped by user (each user's rows contiguous) and in time order within each."""
    same_user = u[1:] == u[:-1]
    runs = len(u) - int(np.count_nonzero(same_user))
    if runs != int(np.count_nonzero(np.bincount(u, minlength=n_users))):
        return False
    return bool(np.all((t[1:] >= t[:-1]) | ~same_user))


def _rate_bots(
    keep: np.ndarray, users: np.ndarray, n_users: int, ts: np.ndarray, limits: list[tuple[int, int]]
) -> np.ndarray:
    """Per user code: more than ``limit`` kept events within less than ``window`` seconds, for any
    ``(window, limit)`` of ``limits``.

    With the kept events in (user, time) order, a user exceeds ``limit`` per ``window`` exactly
    when some event and the event ``limit`` places later are the same user's and less than
    ``window`` seconds apart: one vectorised comparison per limit.
    """
    rows = np.flatnonzero(keep)
    u, t = users[rows], ts[rows].astype(np.int64, copy=False)
    if not _in_user_time_order(u, t, n_users):
        order = np.lexsort((t, u))
        u, t = u[order], t[order]
    bots = np.zeros(n_users, dtype=bool)
    for window, limit in limits:
        if len(u) <= limit:
            continue
        hit = (u[limit:] == u[:-limit]) & (t[limit:] - t[:-limit] < window)
        bots[u[:-limit][hit]] = True
    return bots


def _fingerprint(events: Any, params: dict[str, Any]) -> str:
    """Deterministic fingerprint of the cleaned dataset (input fingerprint + parameters), so that
    ``datasets`` does not hash the whole table and later ``.map`` calls can be cached."""
    parent = getattr(events, "_fingerprint", None)
    if parent is None:
        return generate_random_fingerprint()
    return Hasher.hash({"parent": parent, "transform": "seqbert.clean_events", **params})


# --------------------------------------------------------------------------------------------- clean
def clean_events(
    events: datasets.Dataset,
    *,
    min_user_events: int = 2,
    deduplicate: bool = True,
    max_events_per_user: int | None = None,
    max_events_per_minute: int | None = None,
    max_events_per_hour: int | None = None,
    min_item_support: int = 1,
    k_core: bool = False,
    source: str | None = None,
    item_support: pa.Table | None = None,
    core: KCore | None = None,
    count_before: int | None = None,
) -> tuple[datasets.Dataset, DropReport]:
    """Drop unusable rows and report how many were dropped for which reason.

    Args:
        events: canonical events, usually from :func:`~seqbert.data.readers.read_events`.
        min_user_events: users with fewer events (after all other steps) are dropped (``short_user``).
        deduplicate: drop exact duplicates of (user_id, item_id, event_type, timestamp), keeping
            the first (``duplicate``).
        max_events_per_user: users with more events than this are dropped as bot-like
            (``bot_user``); ``None`` disables the step.
        max_events_per_minute: users with more than this many events within any 60 seconds
            (``max_events_per_minute + 1`` events whose timestamps span less than 60 s) are dropped
            as bot-like (``bot_user``); ``None`` disables the rule.
        max_events_per_hour: the same over any 3,600 seconds.
        min_item_support: items seen in fewer events are dropped (``rare_item``).
        k_core: repeat ``rare_item`` and ``short_user`` until neither drops anything (iterative
            k-core: every kept item has ``min_item_support`` events and every kept user
            ``min_user_events``); each pass's drops are counted under its own reason. Without it
            both are applied once, so dropping short users can leave an item below its support.
            Not with ``item_support`` (the iteration needs the whole log).
        source: a name (e.g. the file name) for messages and the report.
        item_support: the events per item to use for ``rare_item`` instead of counting them in
            ``events``: a table with ``item_id`` and ``count`` columns, e.g. the sum of
            :func:`count_item_support` over all partitions of a log cleaned one partition at a time
            (items are the one global rule: every other rule looks at one user's events only).
        core: the k-core of the whole log (:func:`k_core`), for a log cleaned one user partition
            at a time: ``rare_item`` and ``short_user`` then drop what the in-memory ``k_core=True``
            passes drop, pass by pass (``min_item_support`` and ``min_user_events`` are in ``core``).
        count_before: count rules see only events with a timestamp strictly before this (unix
            seconds; see the module doc). ``item_support`` / ``core`` must then be counted with the
            same value.

    Returns:
        ``(cleaned, report)``: the kept rows in input order with the canonical columns and
        ``row_index`` (marker columns removed), and the :class:`DropReport` listing every reason of
        :data:`DROP_REASONS` (zeros included).
    """
    for name, value, minimum in (("min_user_events", min_user_events, 0), ("min_item_support", min_item_support, 0)):
        if int(value) < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}")
    for name, value in (
        ("max_events_per_user", max_events_per_user),
        ("max_events_per_minute", max_events_per_minute),
        ("max_events_per_hour", max_events_per_hour),
    ):
        if value is not None and int(value) < 1:
            raise ValueError(f"{name} must be >= 1 or None, got {value}")
    if k_core and item_support is not None:
        raise ValueError(
            "k_core=True needs the whole log in memory: it cannot use the item_support of a partitioned log."
        )
    if core is not None and (k_core or item_support is not None):
        raise ValueError("core replaces k_core and item_support: pass only one of them.")
    rate_limits = [
        (window, int(limit))
        for window, limit in ((60, max_events_per_minute), (3600, max_events_per_hour))
        if limit is not None
    ]

    table = _canonicalise(_as_table(events), source)
    n = table.num_rows
    report = DropReport.start(n, source=source)
    keep = np.ones(n, dtype=bool)

    def drop(reason: str, mask: np.ndarray | None) -> None:
        nonlocal keep
        if mask is None:
            report.add(reason, 0)
            return
        newly = mask & keep
        count = int(np.count_nonzero(newly))
        if count:
            keep &= ~newly
        report.add(reason, count)

    names = table.column_names
    bad_ts = _bool_np(table.column(BAD_TIMESTAMP_MARKER)) if BAD_TIMESTAMP_MARKER in names else None
    unknown = _bool_np(table.column(UNKNOWN_EVENT_MARKER)) if UNKNOWN_EVENT_MARKER in names else None

    # missing_field: null required values that no reader marker explains.
    missing = _null_np(table.column("user_id")) | _null_np(table.column("item_id"))
    event_null = _null_np(table.column("event_type"))
    ts_null = _null_np(table.column("timestamp"))
    missing |= event_null & ~unknown if unknown is not None else event_null
    missing |= ts_null & ~bad_ts if bad_ts is not None else ts_null
    drop("missing_field", missing)
    drop("bad_timestamp", bad_ts)
    drop("unknown_event_type", unknown)

    need_users = deduplicate or max_events_per_user is not None or bool(rate_limits) or min_user_events > 1
    item_codes: tuple[np.ndarray, int] | None = None
    users, n_users = None, 1
    if keep.any() and need_users:
        user_column = table.column("user_id")
        user_heads = _run_heads(user_column)
        if (deduplicate or min_item_support > 1) and user_heads is None:
            # Users are not grouped (duplicates need item codes then): hash both columns at once.
            with ThreadPoolExecutor(2) as pool:  # Arrow's hashing releases the GIL
                item_job = pool.submit(_codes, table.column("item_id"))
                users, n_users = _codes(user_column)
                item_codes = item_job.result()
        else:
            users, n_users = _codes(user_column, user_heads)

    def items() -> tuple[np.ndarray, int]:
        """Item codes, computed once and only if needed (duplicates in an unsorted log, rare items)."""
        nonlocal item_codes
        if item_codes is None:
            item_codes = _codes(table.column("item_id"))
        return item_codes

    ts_np = None
    if (deduplicate or rate_limits or count_before is not None) and keep.any():
        timestamps = table.column("timestamp")  # fill_null copies even without nulls: only when needed
        ts_np = contiguous(pc.fill_null(timestamps, 0) if timestamps.null_count else timestamps).to_numpy(
            zero_copy_only=False
        )
    if deduplicate and keep.any():
        drop(
            "duplicate",
            _duplicates(keep, users, n_users, items, ts_np, table.column("item_id"), table.column("event_type")),
        )
    else:
        drop("duplicate", None)

    early = None if count_before is None or ts_np is None else ts_np < int(count_before)

    def counted() -> np.ndarray:
        """The kept rows the count rules count (those before ``count_before``, if given)."""
        return keep if early is None else keep & early

    if (max_events_per_user is not None or rate_limits) and keep.any():
        bots = np.zeros(n_users, dtype=bool)
        if max_events_per_user is not None:
            bots |= _count_where(users, counted(), n_users) > int(max_events_per_user)
        if rate_limits:
            bots |= _rate_bots(counted(), users, n_users, ts_np, rate_limits)
        drop("bot_user", bots[users])
    else:
        drop("bot_user", None)

    # With count_before, users / items without a counted event left here are not judged (kept).
    judged_users = judged_items = None
    if early is not None and keep.any():
        if min_user_events > 1:
            judged_users = _count_where(users, counted(), n_users) > 0
        if min_item_support > 1 and item_support is None and core is None:
            codes, n_items = items()
            judged_items = _count_where(codes, counted(), n_items) > 0

    if core is not None:  # the passes of the whole log's k-core, restricted to these rows
        passes = core.passes(table.column("item_id"), table.column("user_id")) if keep.any() else None
        for k in range(max(core.num_passes, 1)):
            drop("rare_item", None if passes is None else passes[0] == k)
            drop("short_user", None if passes is None else passes[1] == k)
    else:
        for iteration in range(n + 1):  # k_core: until stable (each pass that goes on drops >= 1 row)
            before = report.kept_rows
            if min_item_support > 1 and keep.any() and item_support is not None:
                rare_rows = _below_support(
                    table.column("item_id"), item_support, int(min_item_support), absent_counts=count_before is None
                )
                drop("rare_item", rare_rows)
            elif min_item_support > 1 and keep.any():
                codes, n_items = items()
                rare = _count_where(codes, counted(), n_items) < int(min_item_support)
                drop("rare_item", (rare if judged_items is None else rare & judged_items)[codes])
            else:
                drop("rare_item", None)

            if min_user_events > 1 and keep.any():
                short = _count_where(users, counted(), n_users) < int(min_user_events)
                drop("short_user", (short if judged_users is None else short & judged_users)[users])
            else:
                drop("short_user", None)
            if not k_core or min_item_support <= 1 or report.kept_rows == before:
                break
        if k_core:
            logger.info("clean_events: k-core stable after %d pass(es)", iteration + 1)

    columns = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in names] + [ROW_INDEX]
    dropped_columns = [c for c in names if c not in columns]
    if dropped_columns and set(dropped_columns) - set(MARKER_COLUMNS):
        logger.debug("clean_events: not keeping non-canonical columns %s", dropped_columns)
    out = table.select(columns)
    if report.kept_rows != n:
        out = filter_rows(out, keep)
    report.check()
    if out.num_rows != report.kept_rows:  # pragma: no cover - internal consistency
        raise RuntimeError(f"kept {out.num_rows} rows but the report says {report.kept_rows}")
    logger.info(
        "%s: kept %d of %d events (%s)",
        source or "events",
        report.kept_rows,
        report.input_rows,
        ", ".join(f"{k}={v}" for k, v in report.dropped.items() if v) or "nothing dropped",
    )
    fingerprint = _fingerprint(
        events,
        {
            "min_user_events": int(min_user_events),
            "deduplicate": bool(deduplicate),
            "max_events_per_user": max_events_per_user,
            "min_item_support": int(min_item_support),
            **({"max_events_per_minute": max_events_per_minute} if max_events_per_minute is not None else {}),
            **({"max_events_per_hour": max_events_per_hour} if max_events_per_hour is not None else {}),
            **({"k_core": True} if k_core else {}),
            **({"count_before": int(count_before)} if count_before is not None else {}),
            **({"item_support": Hasher.hash(item_support)} if item_support is not None else {}),
        },
    )
    return datasets.Dataset(out, fingerprint=fingerprint), report


def _below_support(
    items: pa.ChunkedArray, support: pa.Table, minimum: int, *, absent_counts: bool = True
) -> np.ndarray:
    """Rows whose item has fewer than ``minimum`` events in ``support``; an item absent from it
    counts 0 when ``absent_counts``, else it is not judged (``count_before``: no counted event)."""
    if not absent_counts:
        rare = support.filter(pc.less(support.column("count"), minimum)).column("item_id")
        return _bool_np(pc.is_in(items, value_set=rare.combine_chunks()))
    frequent = support.filter(pc.greater_equal(support.column("count"), minimum)).column("item_id")
    return ~_bool_np(pc.is_in(items, value_set=frequent.combine_chunks()))


def per_user_kept(
    events: datasets.Dataset | pa.Table,
    *,
    deduplicate: bool = True,
    max_events_per_user: int | None = None,
    max_events_per_minute: int | None = None,
    max_events_per_hour: int | None = None,
    source: str | None = None,
    count_before: int | None = None,
) -> pa.Table:
    """The rows :func:`clean_events` keeps before its ``rare_item`` step (after ``missing_field``
    … ``bot_user``, the rules that look at one user's events only)."""
    kept, _ = clean_events(
        events,
        min_user_events=0,
        deduplicate=deduplicate,
        max_events_per_user=max_events_per_user,
        max_events_per_minute=max_events_per_minute,
        max_events_per_hour=max_events_per_hour,
        min_item_support=1,
        source=source,
        count_before=count_before,
    )
    return kept.data.table


def count_item_support(events: datasets.Dataset | pa.Table, **rules: Any) -> pa.Table:
    """Events per item among the :func:`per_user_kept` rows (``rules``: its keyword arguments): a
    table of ``item_id`` and ``count``.

    These rules only look at one user's events, so for a log partitioned by user the global support
    is the sum over partitions (``pa.concat_tables`` then group by ``item_id``), which
    ``clean_events(..., item_support=...)`` then applies to each partition. With ``count_before``
    in ``rules`` only the events before it are counted (items without one are absent).
    """
    kept = per_user_kept(events, **rules)
    if rules.get("count_before") is not None:
        kept = kept.filter(pc.less(kept.column("timestamp"), int(rules["count_before"])))
    counted = pc.value_counts(kept.column("item_id"))
    return pa.table({"item_id": counted.field("values"), "count": counted.field("counts")})


NEVER = np.iinfo(np.int32).max
"""The k-core pass of an item or user that is never dropped."""


@dataclass
class KCore:
    """The iterative k-core of a whole log: the pass in which each dropped item / user is dropped.

    Items and users not listed survive. :func:`clean_events` with ``core=`` replays the passes on
    any subset of users (a partition) and counts exactly what ``k_core=True`` in memory counts.
    """

    items: pa.Table  # item_id, pass (int32)
    users: pa.Table  # user_id, pass (int32)
    num_passes: int

    def passes(self, item_id: pa.ChunkedArray, user_id: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the pass dropping its item and the pass dropping its user (:data:`NEVER` if none)."""
        return _pass_of(item_id, self.items.column("item_id"), self.items.column("pass")), _pass_of(
            user_id, self.users.column("user_id"), self.users.column("pass")
        )


def _pass_of(values: pa.ChunkedArray, keys: pa.ChunkedArray, passes: pa.ChunkedArray) -> np.ndarray:
    """Per value: its pass in (``keys``, ``passes``), :data:`NEVER` where it is not a key."""
    lookup = np.append(contiguous(passes).to_numpy(zero_copy_only=False), NEVER).astype(np.int32)
    where = pc.fill_null(pc.index_in(contiguous(values), value_set=contiguous(keys)), len(keys))
    return lookup[where.to_numpy(zero_copy_only=False)]


def k_core(
    partitions: Iterable[pa.Table], *, min_item_support: int, min_user_events: int, count_before: int | None = None
) -> KCore:
    """The k-core of a log given one user partition at a time (:func:`per_user_kept` rows, at least
    ``user_id`` and ``item_id``, and ``timestamp`` with ``count_before``; every user in one
    partition only).

    Holds one (user code, item code) pair of int32 per row plus the distinct items and users, not
    the events, and repeats ``rare_item`` then ``short_user`` as ``clean_events(k_core=True)`` does
    (with ``count_before``, as ``clean_events(k_core=True, count_before=...)`` does).
    """
    catalog = pa.array([], pa.string())
    user_ids, user_codes, item_codes, early_parts = [], [], [], []
    users_so_far = 0
    for part in partitions:
        if count_before is not None:
            before = contiguous(pc.less(part.column("timestamp"), int(count_before)))
            early_parts.append(before.to_numpy(zero_copy_only=False))
        items = contiguous(part.column("item_id"))
        new = pc.unique(items.filter(pc.invert(pc.is_in(items, value_set=catalog))))
        catalog = pa.concat_arrays([catalog, new])
        item_codes.append(pc.index_in(items, value_set=catalog).to_numpy(zero_copy_only=False).astype(np.int32))
        encoded = pc.dictionary_encode(contiguous(part.column("user_id")))
        user_ids.append(encoded.dictionary)
        user_codes.append(encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32) + users_so_far)
        users_so_far += len(encoded.dictionary)
    items = np.concatenate(item_codes) if item_codes else np.zeros(0, dtype=np.int32)
    users = np.concatenate(user_codes) if user_codes else np.zeros(0, dtype=np.int32)
    item_pass = np.full(len(catalog), NEVER, dtype=np.int32)
    user_pass = np.full(users_so_far, NEVER, dtype=np.int32)
    keep = np.ones(len(items), dtype=bool)
    early = np.concatenate(early_parts) if early_parts else None
    judged_items = judged_users = None
    if early is not None:  # items / users without an event before count_before are not judged
        judged_items = np.bincount(items[early], minlength=len(catalog)) > 0
        judged_users = np.bincount(users[early], minlength=users_so_far) > 0
    num_passes = 0
    while keep.any():
        counted = keep if early is None else keep & early
        rare = np.bincount(items[counted], minlength=len(catalog)) < min_item_support
        if judged_items is not None:
            rare &= judged_items
        item_pass[rare & (item_pass == NEVER)] = num_passes
        dropped = keep & rare[items]
        keep &= ~dropped
        if min_user_events > 1:
            counted = keep if early is None else keep & early
            short = np.bincount(users[counted], minlength=users_so_far) < min_user_events
            if judged_users is not None:
                short &= judged_users
            user_pass[short & (user_pass == NEVER)] = num_passes
            dropped |= keep & short[users]
            keep &= ~short[users]
        num_passes += 1
        if not dropped.any():
            break
    listed_items, listed_users = np.flatnonzero(item_pass != NEVER), np.flatnonzero(user_pass != NEVER)
    all_users = pa.concat_arrays(user_ids) if user_ids else pa.array([], pa.string())
    return KCore(
        items=pa.table({"item_id": catalog.take(pa.array(listed_items)), "pass": pa.array(item_pass[listed_items])}),
        users=pa.table({"user_id": all_users.take(pa.array(listed_users)), "pass": pa.array(user_pass[listed_users])}),
        num_passes=num_passes,
    )


__all__ = [
    "DROP_REASONS",
    "NEVER",
    "DropReport",
    "KCore",
    "clean_events",
    "count_item_support",
    "k_core",
    "per_user_kept",
]
