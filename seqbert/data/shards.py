"""Event logs made of many files: folders of shards, globs, lists, Hive partitions, remote URIs, time windows.

:func:`resolve_inputs` turns what a user passes as "the log" into the list of files to read:

* a **file**, a **folder** (every file under it, recursively), a **glob** (``logs/dt=2024-05-*/*.parquet``)
  or a **list** of these; files whose name (or a folder above them, below the input) starts with
  ``.`` or ``_`` are skipped, as Spark and ``pyarrow.dataset`` do (``_SUCCESS``, ``.part-0.crc``,
  ``_committed_123``, ``_temporary/``); empty (0-byte) files are skipped with a log line;
* **local paths or URIs**: ``file://``, ``memory://``, ``s3://``, ``gs://``, ``abfs://``, … go through
  fsspec (``pyarrow.fs.PyFileSystem(FSSpecHandler(fs))``) when fsspec has a backend for the scheme
  (``s3fs``, ``gcsfs``, ``adlfs`` installed), else through pyarrow's native filesystem of the scheme;
  credentials come from the usual environment (``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``, …);
* **Hive partitions**: a folder level ``key=value`` below the input folder (or below the fixed part
  of a glob) becomes a column ``key`` of every row of the files under it (a string, as written in
  the path), so ``--column timestamp=dt`` and the column aliases work on it. Discovery and
  partition parsing are ``pyarrow.dataset``'s (``FileSystemDatasetFactory`` with
  ``HivePartitioning.discover``);
* every file of one input must have the same format (csv, tsv, parquet or jsonl, from the suffix,
  each text format optionally ``.gz``/``.bz2``/``.zst``); a mix is an error naming the files.

The files are read in order (sorted by path within a folder or glob, then in the order given) with
the single-file readers of :mod:`seqbert.data.readers`, so the column mapping, aliases, timestamp
rules and error messages are those of one file, and an error names the file and its row. ``row_index``
runs on across the files. With ``timestamp_unit="auto"`` the first file with numeric timestamps decides
seconds or milliseconds for all (as the streaming reader does across batches). A data warning is
logged once per input. Files with no data rows are skipped with a warning (Spark writes empty parts);
an input with no data row at all is an error.

A **time window** (:class:`TimeWindow`: ``since`` inclusive, ``until`` exclusive, unix seconds) is
applied as early as the data allows:

1. **partition pruning**: with a partition time column (``partition_time_column``, or detected:
   the only partition field whose values are all ISO dates ``YYYY-MM-DD…``) the files of
   partitions that cannot hold a row of the window are never opened (a ``pyarrow.dataset``
   expression on the partition field, evaluated on the partition values that
   ``HivePartitioning`` parsed from the paths). A partition labelled ``D`` is kept when
   ``since - 2 days < D < until + 1 day``: one day of slack each side, so partitions written in a
   local time zone (``dt`` of Asia/Tokyo or America/Los_Angeles) are never wrongly skipped;
2. **row-group pruning** (parquet): row groups whose timestamp statistics miss the window are not
   read (``ParquetFileFragment.split_by_row_group(filter=…)``), for timestamp, date and numeric
   timestamp columns (with ``timestamp_unit="auto"`` a row group is skipped only if it misses the
   window both as seconds and as milliseconds); ISO-string timestamp columns are read whole;
3. **row filter**: every row read is kept only if its (canonical) timestamp is in the window; the
   others are counted (``outside_time_window`` in the drop report). Rows without a valid timestamp
   are kept for cleaning to count (``missing_field`` / ``bad_timestamp``).

Rows that were never read (pruned partitions and row groups) are not in the drop report: the input
record (:class:`InputRecord`, ``protocol.json["source"]``) lists the window, the skipped files and
the number of skipped row groups and their rows.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from .errors import EventDataError
from .sources import COMPRESSION_SUFFIXES, FILE_FORMATS, SUFFIX_FORMATS, Source, hint

logger = logging.getLogger("seqbert.data.readers")

GLOB_CHARS = "*?["
IGNORED_PREFIXES: tuple[str, ...] = (".", "_")
"""Files and folders starting with these are not data (Spark / Hadoop / pyarrow convention)."""
PARTITION_SLACK_S = 86_400
"""Slack each side of a date partition's day when pruning by a time window (local-time partitions)."""
OUTSIDE_TIME_WINDOW = "outside_time_window"
"""Drop-report reason of rows read but outside ``since`` / ``until``."""
_URI_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://")
_ISO_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}")


# ------------------------------------------------------------------------------------------ windows
def parse_time(value: Any, name: str = "since") -> int:
    """Unix seconds of an ISO date / datetime (UTC when it has no zone) or of epoch seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an ISO date/datetime or epoch seconds, got {value!r}.")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return int(np.floor(value))
    if isinstance(value, _dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)
        return int(np.floor(moment.timestamp()))
    if isinstance(value, _dt.date):
        return int(_dt.datetime(value.year, value.month, value.day, tzinfo=_dt.timezone.utc).timestamp())
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d+(\.\d+)?", text):
        return int(np.floor(float(text)))
    try:
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ValueError(
            f"{name} must be an ISO date/datetime (2024-05-01, 2024-05-01T12:00:00+02:00) or epoch seconds, "
            f"got {value!r}."
        ) from None
    return parse_time(moment, name)


@dataclass(frozen=True)
class TimeWindow:
    """Events with ``since <= timestamp < until`` (unix seconds; either side may be open)."""

    since: int | None = None
    until: int | None = None

    @classmethod
    def of(cls, since: Any = None, until: Any = None) -> TimeWindow | None:
        """The window of two user values (see :func:`parse_time`), or ``None`` when both are ``None``."""
        if since is None and until is None:
            return None
        window = cls(
            None if since is None else parse_time(since, "since"), None if until is None else parse_time(until, "until")
        )
        if window.since is not None and window.until is not None and window.until <= window.since:
            raise ValueError(f"until ({until!r}) must be after since ({since!r}): the window is empty.")
        return window

    def inside(self, timestamps: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Boolean mask: in the window, or null (kept for cleaning to count)."""
        values = pc.fill_null(timestamps, self.since if self.since is not None else 0).to_numpy(zero_copy_only=False)
        keep = np.ones(len(values), dtype=bool)
        if self.since is not None:
            keep &= values >= self.since
        if self.until is not None:
            keep &= values < self.until
        if timestamps.null_count:
            keep |= pc.is_null(timestamps).to_numpy(zero_copy_only=False)
        return keep

    def to_dict(self) -> dict[str, Any]:
        def iso(t: int | None) -> str | None:
            return None if t is None else _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat()

        return {"since": self.since, "until": self.until, "since_iso": iso(self.since), "until_iso": iso(self.until),
                "rule": "since <= timestamp < until"}  # fmt: skip

    def partition_filter(self, name: str) -> ds.Expression:
        """Keep partitions labelled ``D`` (an ISO date string) with ``since - 2d < D < until + 1d``."""
        expr = None
        if self.since is not None:
            low = _iso(self.since - 2 * PARTITION_SLACK_S)
            expr = ds.field(name) > low
        if self.until is not None:
            high = ds.field(name) < _iso(self.until + PARTITION_SLACK_S)
            expr = high if expr is None else expr & high
        return expr

    def row_group_filter(self, name: str, kind: pa.DataType, timestamp_unit: str) -> ds.Expression | None:
        """A row-group statistics filter on the raw timestamp column, or ``None`` when its type can't be pruned."""
        column = ds.field(name)

        def between(low: Any, high: Any) -> ds.Expression:
            parts = ([column >= low] if low is not None else []) + ([column < high] if high is not None else [])
            return parts[0] if len(parts) == 1 else parts[0] & parts[1]

        def scaled(factor: int, scalar_type: pa.DataType | None = None) -> tuple[Any, Any]:
            bounds = [None if t is None else t * factor for t in (self.since, self.until)]
            if scalar_type is not None:
                bounds = [None if b is None else pa.scalar(b, pa.int64()).cast(scalar_type) for b in bounds]
            return bounds[0], bounds[1]

        if pa.types.is_timestamp(kind):
            factor = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[kind.unit]
            return between(*scaled(factor, kind))
        if pa.types.is_date32(kind):
            low = None if self.since is None else pa.scalar(self.since // 86_400, pa.int32()).cast(pa.date32())
            # Dates cover a whole day: keep the day of `until` (a date column can't be < a fraction of it).
            high = None if self.until is None else pa.scalar(-(-self.until // 86_400), pa.int32()).cast(pa.date32())
            return between(low, high)
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            if timestamp_unit == "s":
                return between(*scaled(1))
            if timestamp_unit == "ms":
                return between(*scaled(1_000))
            if timestamp_unit == "auto":
                return between(*scaled(1)) | between(*scaled(1_000))
        return None


def _iso(t: int) -> str:
    """ISO form of ``t`` that orders like the time among partition labels: a midnight is the bare date
    (``"2024-05-03" < "2024-05-03T01"``, and a label ``"2024-05-03"`` is not ``<`` it)."""
    moment = _dt.datetime.fromtimestamp(t, _dt.timezone.utc)
    return moment.strftime("%Y-%m-%d" if t % 86_400 == 0 else "%Y-%m-%dT%H:%M:%S")


# ------------------------------------------------------------------------------------------- shards
@dataclass
class Shard:
    """One file of a (possibly multi-file) input."""

    path: str  # the path within ``filesystem``
    display: str  # what messages show: the local path or the URI
    relative: str  # the path below its input folder (the file name for a file given directly)
    size: int
    fmt: str
    compression: str | None
    filesystem: pafs.FileSystem | None = None  # None: local
    partition: dict[str, str] = field(default_factory=dict)

    def source(self, encoding: str) -> Source:
        return Source(
            Path(self.path), self.display, self.fmt, self.compression, encoding,
            filesystem=self.filesystem, partition=dict(self.partition),
        )  # fmt: skip

    def record(self) -> dict[str, Any]:
        return {"path": self.display, "bytes": self.size, **({"partition": self.partition} if self.partition else {})}


@dataclass
class Inputs:
    """The files an input resolves to, and what the partition pruning skipped."""

    shards: list[Shard]
    skipped: list[Shard] = field(default_factory=list)
    given: list[str] = field(default_factory=list)
    single_file: bool = False  # one file named directly: recorded in protocol.json as before
    partition_fields: list[str] = field(default_factory=list)
    partition_time_column: str | None = None
    window: TimeWindow | None = None


@dataclass
class InputRecord:
    """What a read of an input did (filled by :func:`seqbert.data.readers.read_events` / ``iter_events``
    when passed as ``record=``); recorded in ``protocol.json["source"]``."""

    inputs: Inputs | None = None
    rows_read: int = 0  # rows parsed from the files (before the window's row filter)
    outside_time_window: int = 0  # rows read but outside the window (the drop report's reason)
    row_groups_skipped: int = 0
    rows_not_read: int = 0  # rows of skipped parquet row groups (from the file metadata)
    empty_shards: list[str] = field(default_factory=list)

    def protocol(self) -> dict[str, Any]:
        """The keys added to ``protocol.json["source"]`` (beyond path and content hash)."""
        inputs = self.inputs
        out: dict[str, Any] = {}
        if inputs is None:
            return out
        if inputs.window is not None:
            out["time_window"] = {
                **inputs.window.to_dict(),
                "partition_time_column": inputs.partition_time_column,
                "partition_slack_seconds": PARTITION_SLACK_S if inputs.partition_time_column else None,
                "rows_read": self.rows_read,
                "rows_outside_window_dropped": self.outside_time_window,
                "files_skipped": [shard.record() for shard in inputs.skipped],
                "bytes_skipped": sum(shard.size for shard in inputs.skipped),
                "row_groups_skipped": self.row_groups_skipped,
                "rows_not_read_in_skipped_row_groups": self.rows_not_read,
            }
        if inputs.partition_fields:
            out["partition_fields"] = list(inputs.partition_fields)
        if self.empty_shards:
            out["empty_shards"] = list(self.empty_shards)
        return out


def add_window_drops(report: dict[str, Any], record: InputRecord | None) -> dict[str, Any]:
    """A drop report (``DropReport.to_dict()``) with the rows read outside the window added first,
    under :data:`OUTSIDE_TIME_WINDOW`; unchanged when no window was given."""
    if record is None or record.inputs is None or record.inputs.window is None:
        return report
    rows = int(record.outside_time_window)
    return {
        **report,
        "input_rows": int(report["input_rows"]) + rows,
        "dropped": {OUTSIDE_TIME_WINDOW: rows, **report.get("dropped", {})},
    }


# ------------------------------------------------------------------------------------- filesystems
def is_uri(text: str) -> bool:
    """``scheme://…`` (a Windows drive letter ``C:\\`` is not a scheme)."""
    match = _URI_RE.match(text)
    return bool(match) and len(match.group(1)) > 1


@dataclass
class _Location:
    filesystem: pafs.FileSystem | None  # None: local
    path: str
    fsspec: Any = None  # the fsspec filesystem behind it, if any (globbing)
    scheme: str | None = None

    def display(self, path: str) -> str:
        if self.scheme is None:
            return path
        if self.fsspec is not None:
            return self.fsspec.unstrip_protocol(path)
        return f"{self.scheme}://{path.lstrip('/')}"


def _locate(entry: str) -> _Location:
    match = _URI_RE.match(entry)
    if match is None or len(match.group(1)) == 1:
        return _Location(None, str(Path(entry).expanduser()))
    scheme = match.group(1).lower()
    if scheme in ("file", "local"):
        return _Location(None, entry[len(match.group(0)) :] or "/")
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(entry)
        return _Location(pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path, fs, scheme)
    except (ImportError, ValueError) as fsspec_error:  # no backend installed, or a scheme fsspec doesn't know
        try:
            fs, path = pafs.FileSystem.from_uri(entry)
            return _Location(fs, path, None, scheme)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError) as arrow_error:
            backends = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "abfs": "adlfs", "az": "adlfs"}
            package = backends.get(scheme)
            raise EventDataError(
                f"cannot open {scheme}:// URIs (fsspec: {fsspec_error}; pyarrow: {arrow_error})",
                path=entry,
                fix=(f"install fsspec's {scheme} backend (`pip install {package}`)" if package else
                     "install the fsspec backend of this scheme") + "; credentials come from the usual environment.",
            ) from None


def _info(location: _Location, path: str) -> pafs.FileInfo:
    fs = location.filesystem or pafs.LocalFileSystem()
    try:
        return fs.get_file_info(path)
    except (OSError, pa.ArrowException) as e:
        raise EventDataError(f"could not be accessed ({e})", path=location.display(path),
                             fix="check the path, the URI and the credentials.") from None  # fmt: skip


def _infos(location: _Location, paths: list[str]) -> list[pafs.FileInfo]:
    """File infos (type, size) of ``paths`` in one call of the filesystem."""
    if not paths:
        return []
    fs = location.filesystem or pafs.LocalFileSystem()
    try:
        return fs.get_file_info(paths)
    except (OSError, pa.ArrowException) as e:
        raise EventDataError(f"could not be accessed ({e})", path=location.display(paths[0]),
                             fix="check the path, the URI and the credentials.") from None  # fmt: skip


# -------------------------------------------------------------------------------------- discovery
def _format_of(name: str, file_format: str | None) -> tuple[str | None, str | None]:
    """(format, compression) of a file name; format ``None`` when the suffix is unknown."""
    suffixes = [s.lower() for s in Path(name).suffixes]
    compression = None
    if suffixes and suffixes[-1] in COMPRESSION_SUFFIXES:
        compression = COMPRESSION_SUFFIXES[suffixes[-1]]
        suffixes = suffixes[:-1]
    if file_format is not None:
        return str(file_format).lower(), compression
    return (SUFFIX_FORMATS.get(suffixes[-1]) if suffixes else None), compression


def _hidden(relative: str) -> bool:
    return any(part.startswith(IGNORED_PREFIXES) for part in relative.split("/") if part)


def _discover(
    location: _Location, base: str, files: list[str] | None, root: str | None = None
) -> tuple[list[tuple[str, dict]], list[str]]:
    """([(path, partition values)], partition field names) of the files under ``root`` (default
    ``base``; ``files=None``) or of ``files``, with Hive partitions parsed below ``base``, through
    ``pyarrow.dataset``."""
    fs = location.filesystem or pafs.LocalFileSystem()
    options = ds.FileSystemFactoryOptions(
        partition_base_dir=base, exclude_invalid_files=False, selector_ignore_prefixes=list(IGNORED_PREFIXES)
    )
    options.partitioning_factory = ds.HivePartitioning.discover(infer_dictionary=False)
    selector = pafs.FileSelector(root or base, recursive=True) if files is None else files
    try:
        factory = ds.FileSystemDatasetFactory(fs, selector, ds.ParquetFileFormat(), options)
        schema = factory.inspect(fragments=0)  # the partition fields only: no file is opened
        dataset = factory.finish(schema)
    except (OSError, pa.ArrowException) as e:
        raise EventDataError(f"could not be listed ({e})", path=location.display(base),
                             fix="check the path, the URI and the credentials.") from None  # fmt: skip
    found = []
    for fragment in dataset.get_fragments():
        keys = ds.get_partition_keys(fragment.partition_expression)
        found.append((fragment.path, {k: ("" if v is None else str(v)) for k, v in keys.items()}))
    return sorted(found), list(schema.names)


def _glob_base(pattern: str) -> str:
    """The folder part of a glob before its first wildcard."""
    head = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    return head if head.endswith("/") or not head else head.rsplit("/", 1)[0] if "/" in head else "."


def _expand_glob(location: _Location, pattern: str) -> list[str]:
    if location.fsspec is not None:
        return sorted(location.fsspec.glob(pattern))
    if location.filesystem is None:
        import glob

        return sorted(glob.glob(pattern, recursive=True))
    raise EventDataError(
        "globs on this filesystem need fsspec's backend for it",
        path=location.display(pattern),
        fix="install the fsspec backend of the scheme, or pass the folder instead of a glob.",
    )


def resolve_inputs(
    inputs: str | Path | Sequence[str | Path],
    file_format: str | None = None,
    *,
    window: TimeWindow | None = None,
    partition_time_column: str | None = None,
    timestamp_column: str | None = None,
) -> Inputs:
    """The files to read for ``inputs`` (see the module doc), pruned by ``window`` where the
    partitions allow. ``timestamp_column``: the column mapped to ``timestamp``; when it is a
    partition field it is the partition time column."""
    entries = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not entries:
        raise EventDataError("no input given", fix="pass a file, a folder, a glob or a list of them.")
    shards: list[Shard] = []
    fields: list[str] = []
    unknown: list[str] = []
    single_file = False
    for entry in entries:
        entry = str(entry)
        location = _locate(entry)
        path = location.path
        files: list[tuple[str, dict, str]] = []  # (path, partition, relative)
        if any(c in path for c in GLOB_CHARS):
            base = _glob_base(path)
            if location.filesystem is None:
                base = str(Path(base).resolve()) if base else "."
                matched = [str(Path(m).resolve()) for m in _expand_glob(location, path)]
            else:
                matched = _expand_glob(location, path)
            matched_files, folders = [], []
            for m, info in zip(matched, _infos(location, matched)):  # one batched call, not one per path
                (folders if info.type == pafs.FileType.Directory else matched_files).append(m)
            matched_files = [m for m in matched_files if not _hidden(_relative(m, base))]
            if matched_files:
                found, names = _discover(location, base, matched_files)
                files += [(p, part, _relative(p, base)) for p, part in found]
                fields += names
            for folder in folders:
                found, names = _discover(location, base, None, root=folder)
                files += [(p, part, _relative(p, base)) for p, part in found]
                fields += names
            if not files:
                raise EventDataError("matches no file", path=entry, fix="check the glob pattern (and the working directory).")
        else:
            info = _info(location, path)
            if info.type == pafs.FileType.NotFound:
                if location.filesystem is None:
                    from .sources import resolve_source

                    resolve_source(path, file_format, "utf-8")  # raises the usual "file not found" message
                raise EventDataError("not found", path=entry, fix="check the URI (and the credentials).")
            if info.type == pafs.FileType.Directory:
                base = path if location.filesystem is not None else str(Path(path).resolve())
                found, names = _discover(location, base, None)
                if not found:
                    raise EventDataError(
                        "is a directory with no data files (files starting with '.' or '_' are skipped)",
                        path=entry, fix="check that the export finished and the folder is the right one.",
                    )  # fmt: skip
                files += [(p, part, _relative(p, base)) for p, part in found]
                fields += names
            else:
                single_file = len(entries) == 1
                files.append((path, {}, Path(path).name))
        for (p, part, relative), info in zip(files, _infos(location, [f[0] for f in files])):
            fmt, compression = _format_of(p, file_format)
            shard = Shard(p, location.display(p), relative, int(info.size or 0), fmt or "", compression,
                          location.filesystem, part)  # fmt: skip
            if fmt is None:
                unknown.append(shard.display)
            shards.append(shard)
    _check_formats(shards, unknown, file_format)
    empty = [s for s in shards if s.size == 0]
    if empty and len(shards) > 1:
        logger.warning("skipping %d empty (0-byte) file(s): %s", len(empty), ", ".join(s.display for s in empty[:5]))
        shards = [s for s in shards if s.size > 0] or shards[:1]
    fields = list(dict.fromkeys(fields))
    result = Inputs(shards, given=[str(e) for e in entries], single_file=single_file, partition_fields=fields,
                    window=window)  # fmt: skip
    result.partition_time_column = _partition_time_column(result, partition_time_column, timestamp_column)
    if window is not None and result.partition_time_column is not None:
        _prune(result, window)
    return result


def _relative(path: str, base: str) -> str:
    base = base.rstrip("/")
    return path[len(base) + 1 :] if base and path.startswith(base + "/") else Path(path).name


def _check_formats(shards: list[Shard], unknown: list[str], file_format: str | None) -> None:
    if file_format is not None and str(file_format).lower() not in FILE_FORMATS:
        raise EventDataError(f"unsupported file_format {file_format!r}", fix=f"use one of {', '.join(FILE_FORMATS)}.")
    if unknown:
        shown = ", ".join(unknown[:5]) + (f", ... ({len(unknown)} in all)" if len(unknown) > 5 else "")
        raise EventDataError(
            f"cannot tell the file format of {shown} from the suffix",
            fix=(f"pass {hint('file_format=' + repr('parquet'), '--format parquet')} (one of "
                 f"{', '.join(FILE_FORMATS)}), or remove the files that are not event data; known suffixes: "
                 f"{', '.join(SUFFIX_FORMATS)} (optionally + {', '.join(COMPRESSION_SUFFIXES)})."),
        )  # fmt: skip
    by_format: dict[str, list[str]] = {}
    for shard in shards:
        by_format.setdefault(shard.fmt, []).append(shard.display)
    if len(by_format) > 1:
        parts = "; ".join(
            f"{fmt}: {', '.join(names[:3])}" + (f", ... ({len(names)} files)" if len(names) > 3 else "")
            for fmt, names in by_format.items()
        )
        raise EventDataError(
            f"the input mixes file formats ({parts})",
            fix="every file of one input must have the same format: move the other files out, or pass a glob that "
            "matches one format (e.g. 'folder/**/*.parquet').",
        )
    for shard in shards:
        if shard.fmt == "parquet" and shard.compression is not None:
            raise EventDataError(
                f"parquet files cannot be {shard.compression}-compressed as a whole (parquet compresses internally)",
                path=shard.display, fix="decompress the file first.",
            )  # fmt: skip


def _partition_time_column(inputs: Inputs, given: str | None, timestamp_column: str | None) -> str | None:
    fields = inputs.partition_fields
    if given is not None:
        if given not in fields:
            raise EventDataError(
                f"partition_time_column {given!r} is not a Hive partition field of the input "
                f"(fields: {', '.join(fields) or 'none'})",
                fix="pass the name of a folder level key=value (e.g. dt for dt=2024-05-01/), or leave it out.",
            )
        _check_iso(inputs, given, explicit=True)
        return given
    if timestamp_column in fields and _check_iso(inputs, timestamp_column, explicit=False):
        return timestamp_column
    dated = [name for name in fields if _check_iso(inputs, name, explicit=False)]
    if len(dated) == 1:
        logger.info("partition field %r holds ISO dates: it prunes partitions by the time window", dated[0])
        return dated[0]
    if len(dated) > 1 and inputs.window is not None:
        logger.warning(
            "several partition fields hold dates (%s): pass partition_time_column (--partition-time-column) to "
            "prune partitions by the time window; every partition is read",
            ", ".join(dated),
        )
    return None


def _check_iso(inputs: Inputs, name: str, *, explicit: bool) -> bool:
    values = [shard.partition.get(name) for shard in inputs.shards]
    bad = next((v for v in values if v is None or not _ISO_DATE_RE.match(v)), "") if values else None
    if bad == "":
        return True
    if explicit:
        raise EventDataError(
            f"partition field {name!r} has a value that is not an ISO date (YYYY-MM-DD...): {bad!r}",
            fix="pass a partition field holding ISO dates, or leave partition_time_column out (then no partition "
            "is skipped; the rows are still filtered by the window).",
        )
    return False


def _prune(inputs: Inputs, window: TimeWindow) -> None:
    """Drop the shards whose partition can't hold a row of ``window`` (pyarrow.dataset partition filter)."""
    name = inputs.partition_time_column
    table = pa.table({name: pa.array([shard.partition[name] for shard in inputs.shards], pa.string()),
                      "i": pa.array(np.arange(len(inputs.shards)))})  # fmt: skip
    kept = set(ds.dataset(table).to_table(filter=window.partition_filter(name), columns=["i"]).column("i").to_pylist())
    inputs.skipped = [shard for i, shard in enumerate(inputs.shards) if i not in kept]
    inputs.shards = [shard for i, shard in enumerate(inputs.shards) if i in kept]
    logger.info(
        "time window: %d of %d file(s) skipped by partition %r (%s bytes not read)",
        len(inputs.skipped), len(inputs.skipped) + len(inputs.shards), name,
        f"{sum(s.size for s in inputs.skipped):,}",
    )  # fmt: skip
    if not inputs.shards:
        raise EventDataError(
            f"no partition of the input can hold events of the time window {window.to_dict()['since_iso']} .. "
            f"{window.to_dict()['until_iso']} (partition field {name!r})",
            fix="check --since / --until against the partitions' dates.",
        )


def parquet_row_groups(src: Source, parquet_file: Any, column: str, window: TimeWindow, timestamp_unit: str
                       ) -> tuple[list[int], int] | None:  # fmt: skip
    """(row groups to read, rows in the skipped ones) of a parquet file for ``window``, or ``None``
    when the column's type allows no pruning (then the file is read whole)."""
    schema = parquet_file.schema_arrow
    if column not in schema.names:
        return None
    expr = window.row_group_filter(column, schema.field(column).type, timestamp_unit)
    if expr is None:
        return None
    fragment = ds.ParquetFileFormat().make_fragment(
        str(src.path), filesystem=src.filesystem or pafs.LocalFileSystem()
    )
    kept = sorted(rg.id for piece in fragment.split_by_row_group(filter=expr, schema=schema) for rg in piece.row_groups)
    metadata = parquet_file.metadata
    skipped_rows = sum(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups) if i not in set(kept))
    return kept, skipped_rows


def shard_digest(shard: Shard, algorithm: str, chunk_bytes: int = 1 << 20) -> str:
    """Content hash of one shard (see :data:`seqbert.prepare.INPUT_HASHES`), or the digest of its parquet footer
    (:data:`seqbert.prepare.PARQUET_FOOTER`)."""
    from ..prepare import INPUT_HASHES, PARQUET_FOOTER, file_digest, parquet_footer_digest

    if algorithm == PARQUET_FOOTER:
        if shard.fmt != "parquet" or shard.compression:
            raise ValueError(f"{shard.display}: --input-hash {PARQUET_FOOTER} applies to parquet files only.")
        if shard.filesystem is None:
            return file_digest(shard.path, algorithm)
        with shard.filesystem.open_input_file(shard.path) as handle:
            return parquet_footer_digest(handle, shard.size, shard.display)
    if shard.filesystem is None:
        return file_digest(shard.path, algorithm, chunk_bytes)
    digest = INPUT_HASHES[algorithm]()
    with shard.filesystem.open_input_stream(shard.path, compression=None) as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def inputs_digest(shards: Iterable[Shard], digests: Iterable[str], algorithm: str) -> str:
    """The combined digest of a multi-file input: ``algorithm`` over one line
    ``relative path <TAB> bytes <TAB> hash`` per shard, in reading order."""
    from ..prepare import INPUT_HASHES

    digest = INPUT_HASHES.get(algorithm, INPUT_HASHES["xxh3_128"])()  # parquet_footer: combined with xxh3_128
    for shard, value in zip(shards, digests):
        digest.update(f"{shard.relative}\t{shard.size}\t{value}\n".encode())
    return digest.hexdigest()


def source_record(inputs: Inputs, digests: list[str] | None, algorithm: str) -> dict[str, Any]:
    """``protocol.json["source"]`` keys of a multi-file input: ``path``, the ``shards`` and the combined digest."""
    shards = [{**shard.record(), algorithm: None if digests is None else digests[i]} for i, shard in enumerate(inputs.shards)]
    given = inputs.given[0] if len(inputs.given) == 1 else list(inputs.given)
    return {
        "path": given,
        algorithm: None if digests is None else inputs_digest(inputs.shards, digests, algorithm),
        "combined_digest": f"{algorithm} of one line 'relative path<TAB>bytes<TAB>{algorithm}' per shard, in order",
        "shards": shards,
    }


def input_name(path: Any) -> str:
    """A short name of an input (file, folder, glob, URI or list) for the drop report and logs."""
    entries = [path] if isinstance(path, (str, Path)) else list(path)
    first = str(entries[0]).rstrip("/")
    name = first.rsplit("/", 1)[-1] or first
    return name + (f" (+{len(entries) - 1} more)" if len(entries) > 1 else "")


def is_multi(path: Any) -> bool:
    """Whether ``path`` needs :func:`resolve_inputs` (a list, a URI, a glob or a folder) rather
    than the single-file reader."""
    if not isinstance(path, (str, Path)):
        return True
    text = str(path)
    if is_uri(text) or any(c in text for c in GLOB_CHARS):
        return True
    return Path(text).expanduser().is_dir()


__all__ = [
    "IGNORED_PREFIXES",
    "OUTSIDE_TIME_WINDOW",
    "PARTITION_SLACK_S",
    "InputRecord",
    "Inputs",
    "Shard",
    "TimeWindow",
    "add_window_drops",
    "input_name",
    "inputs_digest",
    "is_multi",
    "parse_time",
    "resolve_inputs",
    "shard_digest",
    "source_record",
]
