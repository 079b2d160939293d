"""Raw event log → prepared-data folder: read, clean, sequence, split, tokenizer from train only."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import xxhash
from datasets import Dataset

from .data.arrow import item_counts, to_arrow
from .data.cleaning import DropReport, clean_events
from .data.readers import read_events
from .data.sequences import (
    DEFAULT_SESSION_GAP_SECONDS,
    build_sequences,
    collapse_repeated_views,
    drop_short_sequences,
    prefix_statistics,
)
from .data.shards import InputRecord, add_window_drops, input_name, is_multi, shard_digest, source_record
from .data.splits import LOO_TARGETS, leave_one_out, temporal_split
from .prepared import PreparedData
from .tokenization_seqbert import UNSEEN_ITEMS, BehaviorTokenizer

logger = logging.getLogger(__name__)


@contextmanager
def _stage(name: str, label: str = "prepare") -> Iterator[None]:
    """Log the start of a pipeline stage and its wall time (the data steps are vectorised: no loop for tqdm)."""
    logger.info("%s: %s ...", label, name)
    start = time.perf_counter()
    yield
    logger.info("%s: %s done in %.2fs", label, name, time.perf_counter() - start)


@dataclass
class PrepareOptions:
    """How a raw log becomes training data (every value is recorded in protocol.json)."""

    split: str = "leave_one_out"  # leave_one_out | temporal
    validation_fraction: float = 0.1  # temporal: share of events (by time) after the validation cutoff
    test_fraction: float = 0.1  # temporal: share of events (by time) after the test cutoff
    validation_start: int | None = None  # temporal: explicit unix-second cutoffs override the fractions
    test_start: int | None = None
    min_history: int = 1  # evaluation rows need this many history events
    loo_target: str = "last_event"  # leave_one_out: last_event | last_purchase (see seqbert.data.splits)
    session_gap_seconds: int | None = DEFAULT_SESSION_GAP_SECONDS
    collapse_repeated_views: bool = False  # drop views repeating the previous view of the same item (counted)
    collapse_within_session: bool = True  # ...only when both views are in the same session
    min_user_events: int = 2
    min_item_support: int = 1
    max_events_per_user: int | None = None  # bot-like users (counted as bot_user): more events than this in all
    max_events_per_minute: int | None = None  # ... or more than this many within any 60 seconds
    max_events_per_hour: int | None = None  # ... or more than this many within any hour
    k_core: bool = False  # repeat min_item_support / min_user_events until stable (in memory only)
    deduplicate: bool = True
    vocab_min_count: int = 1
    vocab_max_size: int | None = None
    unseen_items: str = "unk"  # items outside the vocabulary: "unk" → [UNK], "hash" → a hash-bucket token
    num_hash_buckets: int = 0  # unseen_items="hash": number of hash-bucket tokens (stable_hash64 of the item id)
    max_length: int = 200
    clean: dict[str, Any] = field(default_factory=dict)  # extra clean_events keyword arguments
    input_hash: str = "xxh3_128"  # content hash of the input file in protocol.json: xxh3_128 | sha256


# Content hashes of the input file recorded in protocol.json["source"] under the algorithm's name.
# xxh3_128 (the XXH3 128-bit digest; ~5 GB/s here) identifies the input; sha256 (~1 GB/s) when a
# cryptographic digest is wanted. On a 10M-event csv the sha256 thread cost ~1.2 s of wall time
# (scripts/bench_prepare.py), competing with the two-threaded parse.
INPUT_HASHES: dict[str, Any] = {"xxh3_128": xxhash.xxh3_128, "sha256": hashlib.sha256}
PARQUET_FOOTER = "parquet_footer"
"""The ``input_hash`` that reads no data: xxh3_128 of each parquet file's size and footer (schema, row-group layout,
column-chunk sizes and statistics), two small reads per file. For parquet exports on object storage, where a
content hash would download every file read a second time (and all of a file a time window reads only in part)."""


def parquet_footer_digest(handle: Any, size: int, name: str) -> str:
    """xxh3_128 of ``size`` and the parquet footer of the open, seekable binary ``handle``."""
    if size < 12:
        raise ValueError(f"{name}: {size} bytes is too short for a parquet file (--input-hash {PARQUET_FOOTER}).")
    handle.seek(size - 8)
    tail = handle.read(8)
    length = int.from_bytes(tail[:4], "little")
    if tail[4:] != b"PAR1" or length > size - 12:
        raise ValueError(f"{name} is not a parquet file: --input-hash {PARQUET_FOOTER} applies to parquet inputs only.")
    handle.seek(size - 8 - length)
    digest = xxhash.xxh3_128(size.to_bytes(8, "little"))
    digest.update(handle.read(length))
    return digest.hexdigest()


def file_digest(path: str | Path, algorithm: str = "xxh3_128", chunk_bytes: int = 1 << 20) -> str:
    """Hex digest of the file's bytes with one of :data:`INPUT_HASHES` (or of its parquet footer, for
    :data:`PARQUET_FOOTER`)."""
    if algorithm == PARQUET_FOOTER:
        with open(path, "rb") as handle:
            return parquet_footer_digest(handle, Path(path).stat().st_size, str(path))
    digest = INPUT_HASHES[algorithm]()
    buffer = bytearray(chunk_bytes)  # one reused buffer: no fresh memory per chunk
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while size := handle.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()


def check_input_hash(options: PrepareOptions) -> str:
    """``options.input_hash``, checked before any data is read."""
    algorithm = getattr(options, "input_hash", "xxh3_128")
    if algorithm not in INPUT_HASHES and algorithm != PARQUET_FOOTER:
        raise ValueError(f"input_hash must be one of {[*sorted(INPUT_HASHES), PARQUET_FOOTER]}, got {algorithm!r}.")
    return algorithm


def input_digest(source: Mapping[str, Any]) -> tuple[str, str] | None:
    """(algorithm, hex digest) of the input recorded in a protocol's ``source``, if any."""
    for algorithm in (*INPUT_HASHES, PARQUET_FOOTER):
        if source.get(algorithm):
            return algorithm, str(source[algorithm])
    return None


def temporal_cutoffs(events: Dataset | pa.Table, options: PrepareOptions) -> tuple[int, int]:
    """(validation_start, test_start): explicit values, else quantiles of the events' times
    (events without a valid timestamp are left out)."""
    if options.test_start is not None:
        test_start = options.test_start
        validation_start = options.validation_start if options.validation_start is not None else test_start - 1
        return validation_start, test_start
    table = events if isinstance(events, pa.Table) else to_arrow(events)
    timestamps = table.column("timestamp").drop_null().to_numpy()
    if len(timestamps) == 0:
        raise ValueError("No event has a valid timestamp: the temporal cutoffs cannot be computed.")
    test_start = int(np.quantile(timestamps, 1.0 - options.test_fraction))
    validation_start = int(np.quantile(timestamps, 1.0 - options.test_fraction - options.validation_fraction))
    return validation_start, test_start


def count_rules_protocol(count_before: int | None) -> dict[str, Any]:
    """What the cleaning count rules (bot_user, rare_item, short_user) counted, for protocol.json."""
    if count_before is None:
        return {"counted": "all events (leave-one-out: the usual whole-log filters)", "count_before": None}
    return {
        "counted": "events before validation_start only; users and items without one are not judged",
        "count_before": int(count_before),
    }


def run_protocol(
    source_name: str | None, source: Mapping[str, Any] | None, options: Any, tokenizer: BehaviorTokenizer,
    count_before: int | None,
) -> dict[str, Any]:
    """The protocol.json fields every preparation path records beside its split protocol: input, options,
    vocabulary and what the count rules counted."""
    return {
        "source_name": source_name,
        "source": dict(source or {}),
        "options": asdict(options),
        "vocabulary": {"items": len(tokenizer.items), "built_from": "train split only"},
        "count_rules": count_rules_protocol(count_before),
    }


def check_tokenizer_options(options: PrepareOptions) -> None:
    """The tokenizer's checks of ``unseen_items`` / ``num_hash_buckets``, before any data is read."""
    unseen_items = getattr(options, "unseen_items", "unk")
    num_hash_buckets = int(getattr(options, "num_hash_buckets", 0) or 0)
    if unseen_items not in UNSEEN_ITEMS:
        raise ValueError(f"unseen_items must be one of {UNSEEN_ITEMS}, got {unseen_items!r}.")
    if unseen_items == "hash" and num_hash_buckets < 1:
        raise ValueError("unseen_items='hash' needs num_hash_buckets >= 1.")
    if unseen_items == "unk" and num_hash_buckets:
        raise ValueError(f"num_hash_buckets={num_hash_buckets} needs unseen_items='hash'.")


def vocabulary_from_counts(counts: pa.StructArray, options: PrepareOptions) -> BehaviorTokenizer:
    """The tokenizer of ``options`` over item counts (:func:`item_counts` of the train split)."""
    return BehaviorTokenizer.from_item_counts(
        counts.field("values"),
        counts.field("counts"),
        min_count=options.vocab_min_count,
        max_size=options.vocab_max_size,
        max_length=options.max_length,
        unseen_items=options.unseen_items,
        num_hash_buckets=options.num_hash_buckets,
    )


def train_vocabulary(train: Dataset, options: PrepareOptions) -> tuple[BehaviorTokenizer, pa.StructArray]:
    """The tokenizer fitted on the train split, and the split's item counts (:func:`item_counts`).

    What :meth:`BehaviorTokenizer.train` does, with the counts kept for the statistics.
    """
    counts = item_counts(to_arrow(train).column("item_ids"))
    return vocabulary_from_counts(counts, options), counts


def vocabulary_and_statistics(
    sequences: Dataset, train: Dataset, options: PrepareOptions
) -> tuple[BehaviorTokenizer, dict[str, dict]]:
    """The tokenizer fitted on the train split and the statistics of all sequences and of the split.

    Computed together: the train split's item counts (a hash group-by on one core, the vocabulary's
    input) are counted in a thread while :func:`prefix_statistics` does the rest on the other core,
    and only then uses them. Same result as :func:`train_vocabulary` followed by
    ``prefix_statistics(sequences, train, prefix_item_counts=counts)``.
    """
    with ThreadPoolExecutor(1) as pool:
        counts = pool.submit(item_counts, to_arrow(train).column("item_ids"))
        everything, train_statistics = prefix_statistics(sequences, train, prefix_item_counts=counts)
        tokenizer = vocabulary_from_counts(counts.result(), options)
    return tokenizer, {"all": everything, "train": train_statistics}


def prepare_events(
    events: Dataset, options: PrepareOptions, *, source_name: str, source: Mapping[str, Any] | None = None
) -> PreparedData:
    """Clean → sequences (→ collapse repeated views) → split → tokenizer (fitted on the train split only)."""
    check_tokenizer_options(options)
    if options.loo_target not in LOO_TARGETS:
        raise ValueError(f"Unknown loo_target {options.loo_target!r}; use one of {', '.join(LOO_TARGETS)}.")
    if options.split != "leave_one_out" and options.loo_target != "last_event":
        raise ValueError(f"loo_target={options.loo_target!r} only applies to split='leave_one_out'.")
    # Temporal split: the cutoffs come from the input events, and the count rules of cleaning see
    # only the events before the first cutoff (which users and items are kept must not depend on
    # the future that validation and test evaluate).
    cutoffs = temporal_cutoffs(events, options) if options.split == "temporal" else None
    count_before = cutoffs[0] if cutoffs is not None else None
    with _stage(f"clean {events.num_rows:,} events"):
        cleaned, drop_report = clean_events(
            events,
            min_user_events=options.min_user_events,
            deduplicate=options.deduplicate,
            max_events_per_user=options.max_events_per_user,
            max_events_per_minute=options.max_events_per_minute,
            max_events_per_hour=options.max_events_per_hour,
            min_item_support=options.min_item_support,
            k_core=options.k_core,
            source=source_name,
            count_before=count_before,
            **options.clean,
        )
    # Free the raw events (when the caller passed them over, as prepare_file does): from here on
    # only the cleaned events and what is built from them are alive (see BENCHMARKS.md, peak RSS).
    del events
    with _stage("sequences"):
        sequences = build_sequences(cleaned, session_gap_seconds=options.session_gap_seconds)
    del cleaned
    if options.collapse_repeated_views:
        with _stage("collapse repeated views"):
            sequences, collapsed = collapse_repeated_views(sequences, within_session=options.collapse_within_session)
            drop_report.add("collapsed_repeat_view", collapsed)
            # Collapsing can take a user below min_user_events: drop and count them like cleaning does.
            sequences, short_events, _ = drop_short_sequences(
                sequences, options.min_user_events, count_before=count_before
            )
            drop_report.add("short_user", short_events)
            drop_report.check()
    # The table is in the result (PreparedData.drop_report, drop_report.json) and `seqbert prepare` prints it once
    # in its summary; the log gets one line.
    logger.info("drop report: %s", drop_report.one_line())
    if options.split == "leave_one_out":
        with _stage(f"leave-one-out split (target: {options.loo_target})"):
            splits, protocol = leave_one_out(sequences, min_history=options.min_history, target=options.loo_target)
    elif options.split == "temporal":
        validation_start, test_start = cutoffs
        with _stage("temporal split"):
            splits, protocol = temporal_split(
                sequences, validation_start=validation_start, test_start=test_start, min_history=options.min_history
            )
    else:
        raise ValueError(f"Unknown split {options.split!r}; use 'leave_one_out' or 'temporal'.")
    with _stage("tokenizer vocabulary (train split only) and statistics"):
        # The train split holds a prefix of each user's sequence (both protocols), so the statistics
        # of all sequences only count the held-out events on top of the train split's.
        tokenizer, statistics = vocabulary_and_statistics(sequences, splits["train"], options)
    protocol.update(run_protocol(source_name, source, options, tokenizer, count_before))
    return PreparedData(
        splits=splits,
        sequences=sequences,
        tokenizer=tokenizer,
        protocol=protocol,
        statistics=statistics,
        drop_report=drop_report.to_dict(),
    )


def prepare_file(
    path: str | Path,
    options: PrepareOptions | None = None,
    *,
    output_dir: str | Path | None = None,
    read_options: Mapping[str, Any] | None = None,
    dataset_format: str | None = None,
) -> PreparedData:
    """Read ``path`` (see :func:`seqbert.data.readers.read_events` for ``read_options``) and prepare it.

    ``path`` may also be a folder of shards, a glob, a URI or a list of these, and ``read_options``
    may hold a time window (``since`` / ``until`` / ``partition_time_column``): see
    :mod:`seqbert.data.shards`. ``protocol.json["source"]`` then lists every file read with its
    size and content hash (``shards``), a combined digest, and what the window skipped.

    ``dataset_format`` (e.g. ``"taobao"``, see :data:`seqbert.data.formats.FORMATS`) reads the file
    in that public dataset's original format instead, with ``read_options`` as the format's options.
    """
    options = options or PrepareOptions()
    check_tokenizer_options(options)
    algorithm = check_input_hash(options)
    if is_multi(path) or any(key in (read_options or {}) for key in WINDOW_OPTIONS):
        if dataset_format is not None:
            raise ValueError(
                f"dataset_format={dataset_format!r} reads one local file: it does not take a folder, glob, URI, "
                "list or time window (convert the data set to csv/parquet first, or prepare it whole)."
            )
        return _prepare_inputs(path, options, algorithm, output_dir=output_dir, read_options=read_options)
    path = Path(path)
    # The content hash runs in a thread (xxhash and hashlib release the GIL) while the file is
    # parsed and prepared: most stages after the parse use one core, the hash takes the other.
    with ThreadPoolExecutor(1) as pool:
        # A footer digest is two small reads: taken first, so that a non-parquet input fails before the parse.
        digest = pool.submit(file_digest, path, algorithm)
        if algorithm == PARQUET_FOOTER:
            digest.result()
        if dataset_format is None:
            events = read_events(path, **dict(read_options or {}))
        else:
            from .data.formats import read_dataset

            events = read_dataset(dataset_format, path, **dict(read_options or {}))
        source = {"path": str(path), algorithm: None, "read_options": dict(read_options or {})}
        if dataset_format is not None:
            source["dataset_format"] = dataset_format
        # Hand the raw events over without keeping a reference here: prepare_events frees them once cleaned.
        pending = [events]
        del events
        prepared = prepare_events(pending.pop(), options, source_name=path.name, source=source)
        prepared.protocol["source"][algorithm] = digest.result()
    if output_dir is not None:
        with _stage(f"save to {output_dir}"):
            prepared.save(output_dir)
    return prepared


WINDOW_OPTIONS = ("since", "until", "partition_time_column")
"""``read_options`` keys of the read-time time window (:mod:`seqbert.data.shards`)."""


def input_source(record: InputRecord, algorithm: str, read_options: Mapping[str, Any], digests: list[str]) -> dict:
    """``protocol.json["source"]`` of a read through :mod:`seqbert.data.shards`: one file named
    directly keeps the single-file record (path and content hash); otherwise ``shards`` (path,
    bytes and hash of each file read) and the combined digest; plus the time window's record."""
    inputs = record.inputs
    if inputs.single_file:
        source = {"path": inputs.given[0], algorithm: digests[0]}
    else:
        source = source_record(inputs, digests, algorithm)
    source["read_options"] = dict(read_options)
    source.update(record.protocol())
    return source


def _prepare_inputs(
    path: Any,
    options: PrepareOptions,
    algorithm: str,
    *,
    output_dir: str | Path | None,
    read_options: Mapping[str, Any] | None,
) -> PreparedData:
    """:func:`prepare_file` of many files, remote files or a time window."""
    record = InputRecord()
    events = read_events(path, record=record, **dict(read_options or {}))
    with ThreadPoolExecutor(1) as pool:
        # Content hashes of the files read (not of the skipped ones), in a thread while preparing.
        digests = pool.submit(lambda: [shard_digest(shard, algorithm) for shard in record.inputs.shards])
        pending = [events]
        del events
        name = input_name(path)
        prepared = prepare_events(pending.pop(), options, source_name=name, source={})
        prepared.protocol["source"] = input_source(record, algorithm, read_options or {}, digests.result())
    prepared.drop_report = add_window_drops(prepared.drop_report, record)
    if output_dir is not None:
        with _stage(f"save to {output_dir}"):
            prepared.save(output_dir)
    return prepared


def format_summary(prepared: PreparedData) -> str:
    """A human-readable report of a preparation: users, items, events per type, sequence-length
    percentiles, split row counts and the drop-report table (what ``seqbert prepare`` prints)."""
    stats = prepared.statistics.get("all", {})
    protocol = prepared.protocol
    lines = [
        f"Users: {stats.get('users', 0):,}   items: {stats.get('items', 0):,}   events: {stats.get('events', 0):,}"
        f"   vocabulary items (train only): {len(prepared.tokenizer.items):,}",
        "Events per type: " + ", ".join(f"{k} {v:,}" for k, v in stats.get("events_per_type", {}).items()),
        "Sequence length: " + ", ".join(f"{k} {v:g}" for k, v in stats.get("sequence_length", {}).items()),
    ]
    split = protocol.get("kind", "?")
    if split == "leave_one_out":
        split += f" (target: {protocol.get('target', 'last_event')}, min_history {protocol.get('min_history')})"
    elif split == "temporal":
        split += f" (validation_start {protocol.get('validation_start')}, test_start {protocol.get('test_start')})"
    lines.append(f"Split: {split}")
    lines.append("Split rows: " + ", ".join(f"{k} {v:,}" for k, v in protocol.get("rows", {}).items()))
    digest = input_digest(protocol.get("source", {}))
    if digest:
        shards = protocol.get("source", {}).get("shards")
        lines.append(f"Input {digest[0]}: {digest[1]}" + (f" (combined, {len(shards)} files)" if shards else ""))
    window = protocol.get("source", {}).get("time_window")
    if window:
        lines.append(
            f"Time window: {window.get('since_iso') or '-'} <= t < {window.get('until_iso') or '-'}; "
            f"{len(window.get('files_skipped', []))} file(s) and {window.get('row_groups_skipped', 0)} row group(s) "
            f"skipped unread, {window.get('rows_outside_window_dropped', 0):,} rows read and dropped"
        )
    if prepared.drop_report:
        lines += ["", DropReport.from_dict(prepared.drop_report).format_table()]
    return "\n".join(lines)


__all__ = [
    "INPUT_HASHES",
    "PARQUET_FOOTER",
    "PrepareOptions",
    "check_input_hash",
    "run_protocol",
    "check_tokenizer_options",
    "count_rules_protocol",
    "file_digest",
    "format_summary",
    "input_digest",
    "input_source",
    "prepare_events",
    "prepare_file",
    "temporal_cutoffs",
    "train_vocabulary",
    "vocabulary_and_statistics",
    "vocabulary_from_counts",
]
