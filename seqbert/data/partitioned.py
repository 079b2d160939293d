"""Prepare event logs larger than memory: partition by user on disk, prepare each partition, merge.

:func:`prepare_partitioned` gives exactly what :func:`seqbert.prepare.prepare_file` gives (same
sequences, splits, tokenizer vocabulary, drop report, statistics and protocol, in the same row
order) while holding only one partition in memory at a time:

1. **Partition** (one streaming pass over the input, :func:`seqbert.data.readers.iter_events`):
   every event goes to partition ``stable_hash64(user_id) % num_partitions``, an Arrow IPC file on
   disk. All events of a user land in the same partition, and each partition holds about
   ``1 / num_partitions`` of the log.
2. **Global item support** (only with ``min_item_support > 1``): ``rare_item`` is the one cleaning
   rule that is not per user (missing fields, bad timestamps, unknown event types, duplicates,
   bot users and short users all look at one user's events). Each partition counts its items after
   the per-user rules before ``rare_item`` (:func:`~seqbert.data.cleaning.count_item_support`); the
   counts are summed and every partition applies ``rare_item`` with the global counts. With
   ``k_core`` the whole log's iterative k-core is computed instead (:func:`~seqbert.data.cleaning.k_core`,
   on one int32 (user, item) code pair per event) and each partition replays its passes.
3. **Per partition**: clean → sequences (→ collapse repeated views) → split, written to disk.
   A temporal split with fraction cutoffs needs global time quantiles of the input events: their
   timestamps are gathered from the partitions before cleaning (8 bytes per event; pass explicit
   ``validation_start`` / ``test_start`` for a fully bounded run) and the cutoffs computed exactly
   as in memory. The count rules then count only events before ``validation_start``, as in memory.
4. **Merge**: every output table is sorted by ``user_id`` within a partition; a k-way merge on
   ``user_id`` (in chunks of rows) restores the global order of the in-memory path. Drop reports
   and protocol counts are summed; the tokenizer vocabulary comes from summed train item counts;
   statistics from per-partition pieces. The merge writes the final data files of ``output_dir``
   (the usual prepared-data folder) directly; the result is returned memory-mapped from there.

Peak memory is about one partition's worth of :func:`~seqbert.prepare.prepare_events` plus
per-user and per-item arrays (user ids, sequence lengths, item counts).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict, Features
from datasets.fingerprint import generate_random_fingerprint
from datasets.table import InMemoryTable

from ..prepared import PreparedData
from ..tokenization_seqbert import BehaviorTokenizer, stable_hash64
from .arrow import to_arrow
from .cleaning import DropReport, clean_events, count_item_support, k_core, per_user_kept
from .readers import iter_events
from .sequences import merge_statistic_pieces
from .shards import InputRecord, add_window_drops, input_name, is_multi, shard_digest
from .splits import merge_protocols

logger = logging.getLogger(__name__)

DEFAULT_NUM_PARTITIONS = 8
MERGE_ROWS = 1 << 13
"""Rows (users) per chunk of the final k-way merge."""
PART_BATCH_ROWS = 1 << 11
"""Rows per record batch of the per-partition output files (what the merge reads at a time)."""
OUTPUTS = ("sequences", "train", "validation", "test")


@dataclass
class _Partitioned:
    """The partition files of a log and what the partition pass learned."""

    files: list[Path]
    input_rows: int
    schema: pa.Schema | None


@dataclass
class _PartOutput:
    """One partition's prepared outputs (tables on disk) and its counts."""

    files: dict[str, Path] = field(default_factory=dict)
    report: DropReport | None = None
    protocol: dict[str, Any] | None = None
    pieces: dict[str, dict[str, Any]] = field(default_factory=dict)  # statistics pieces, "all" and "train"
    train_counts: pa.Table | None = None


# ------------------------------------------------------------------------------------------ arrow io
def _write_file(table: pa.Table, path: Path) -> Path:
    with pa.ipc.new_file(str(path), table.schema) as writer:
        writer.write_table(table, max_chunksize=PART_BATCH_ROWS)
    return path


def _file_schema(path: Path) -> pa.Schema:
    with pa.OSFile(str(path)) as source:
        return pa.ipc.open_file(source).schema


def _first_row(path: Path) -> pa.Table:
    with pa.OSFile(str(path)) as source:
        reader = pa.ipc.open_file(source)
        if reader.num_record_batches == 0:
            return reader.schema.empty_table()
        return pa.Table.from_batches([reader.get_batch(0).slice(0, 1)], schema=reader.schema)


def _read_file(path: Path) -> pa.Table:
    with pa.OSFile(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def _dataset(table: pa.Table) -> Dataset:
    """An in-memory Dataset without hashing the table for a fingerprint."""
    return Dataset(InMemoryTable(table), fingerprint=generate_random_fingerprint())


# ---------------------------------------------------------------------------------------- partition
def partition_of(user_ids: pa.Array | pa.ChunkedArray, num_partitions: int) -> np.ndarray:
    """Partition number of each event: ``stable_hash64(user_id) % num_partitions`` (null ids → 0).

    Hashes the distinct ids of the batch only (events of a user usually come together).
    """
    encoded = pc.dictionary_encode(user_ids)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.unify_dictionaries() if encoded.num_chunks > 1 else encoded
        chunks = encoded.chunks
    else:
        chunks = [encoded]
    parts = []
    for chunk in chunks:
        buckets = (stable_hash64(chunk.dictionary) % np.uint64(num_partitions)).astype(np.int64)
        indices = pc.fill_null(chunk.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        parts.append(np.where(indices >= 0, buckets[np.maximum(indices, 0)] if len(buckets) else 0, 0))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def partition_events(
    batches: Iterable[pa.Table], folder: str | Path, num_partitions: int = DEFAULT_NUM_PARTITIONS
) -> _Partitioned:
    """Write canonical event batches (e.g. from :func:`~seqbert.data.readers.iter_events`) into
    ``num_partitions`` Arrow IPC files in ``folder``, all events of a user in one file."""
    if num_partitions < 1:
        raise ValueError(f"num_partitions must be >= 1, got {num_partitions}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / f"events-{k:05d}.arrow" for k in range(num_partitions)]
    writers: list[pa.ipc.RecordBatchFileWriter] = []
    schema = None
    rows = 0
    started = time.perf_counter()
    try:
        for table in batches:
            if schema is None:
                schema = table.schema
                writers = [pa.ipc.new_file(str(path), schema) for path in files]
            elif table.schema != schema:
                table = table.cast(schema)
            part = partition_of(table.column("user_id"), num_partitions)
            order = np.argsort(part, kind="stable")
            counts = np.bincount(part, minlength=num_partitions)
            ordered = table.take(pa.array(order))
            start = 0
            for k, count in enumerate(counts.tolist()):
                if count:
                    writers[k].write_table(ordered.slice(start, count))
                start += count
            rows += table.num_rows
            logger.info(
                "partition: %s events read (%.0f events/s)", f"{rows:,}", rows / (time.perf_counter() - started)
            )
    finally:
        for writer in writers:
            writer.close()
    return _Partitioned(files if schema is not None else [], rows, schema)


# -------------------------------------------------------------------------------------- statistics
def _statistic_pieces(table: pa.Table) -> dict[str, Any]:
    """What :func:`seqbert.data.sequences.sequence_statistics` needs, per partition."""
    column = table.column("item_ids")
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.int64)
    items = pc.list_flatten(column)
    types = pc.value_counts(pc.list_flatten(table.column("event_types")))
    return {
        "users": table.num_rows,
        "lengths": lengths,
        "items": pc.unique(items.combine_chunks() if isinstance(items, pa.ChunkedArray) else items),
        "types": {entry["values"].as_py(): entry["counts"].as_py() for entry in types},
    }


def _sum_counts(running: pa.Table | None, new: pa.Table, key: str) -> pa.Table:
    """Counts per ``key`` of two tables with ``key`` and ``count`` columns, summed (memory: distinct keys)."""
    if running is None:
        return new
    summed = pa.concat_tables([running, new]).group_by(key, use_threads=False).aggregate([("count", "sum")])
    return summed.rename_columns([key, "count"])


class _Totals:
    """What the partitions add up to, folded in one partition at a time (bounded by the catalog)."""

    def __init__(self) -> None:
        self.pieces: dict[str, dict[str, Any]] = {}
        self.train_counts: pa.Table | None = None

    def add(self, out: _PartOutput) -> None:
        for key, piece in out.pieces.items():
            acc = self.pieces.get(key)
            if acc is None:
                self.pieces[key] = {**piece, "lengths": [piece["lengths"]], "types": dict(piece["types"])}
                continue
            acc["users"] += piece["users"]
            acc["lengths"].append(piece["lengths"])
            acc["items"] = pc.unique(pa.concat_arrays([acc["items"], piece["items"]]))
            for name, count in piece["types"].items():
                acc["types"][name] = acc["types"].get(name, 0) + count
        self.train_counts = _sum_counts(self.train_counts, out.train_counts, "item")
        out.pieces, out.train_counts = {}, None


def _merge_statistics(acc: dict[str, Any]) -> dict[str, Any]:
    """:func:`seqbert.data.sequences.sequence_statistics` from folded partition pieces."""
    lengths = np.concatenate(acc["lengths"]) if acc["lengths"] else np.zeros(0, dtype=np.int64)
    return merge_statistic_pieces([{"lengths": lengths, "items": acc["items"], "types": acc["types"]}])


# -------------------------------------------------------------------------------------------- merge
class _BatchQueue:
    """Rows of one sorted partition file, consumed from the front one range at a time (streamed)."""

    def __init__(self, path: Path):
        self._source = pa.OSFile(str(path))
        self._reader = pa.ipc.open_file(self._source)
        self._next_batch = 0
        self._buffer: list[pa.RecordBatch] = []
        self._offset = 0  # rows of self._buffer[0] already consumed

    def take(self, count: int) -> list[pa.RecordBatch]:
        out = []
        while count > 0:
            if not self._buffer:
                self._buffer.append(self._reader.get_batch(self._next_batch))
                self._next_batch += 1
                self._offset = 0
            head = self._buffer[0]
            size = min(count, head.num_rows - self._offset)
            out.append(head.slice(self._offset, size))
            self._offset += size
            count -= size
            if self._offset == head.num_rows:
                self._buffer.pop(0)
        return out

    def close(self) -> None:
        self._source.close()


def _user_ids(path: Path) -> pa.ChunkedArray:
    """The ``user_id`` column of a partition file (memory-mapped: only that column's pages are read)."""
    with pa.memory_map(str(path)) as source:
        column = pa.ipc.open_file(source).read_all().column("user_id")
        return pa.chunked_array([pa.concat_arrays(column.chunks)] if column.num_chunks else [], type=column.type)


def _merge_sorted(files: list[Path], target: Path, schema: pa.Schema) -> int:
    """k-way merge of tables each sorted by ``user_id`` into one Arrow IPC stream file with
    ``schema`` (datasets' data-file format); returns the rows written. Only the user ids of all
    partitions and one chunk of rows are in memory at a time."""
    keys = [_user_ids(path) for path in files]
    files = [path for path, key in zip(files, keys) if len(key)]
    keys = [key for key in keys if len(key)]
    if not files:
        return 0
    owner = np.repeat(np.arange(len(files)), [len(key) for key in keys])
    order = pc.sort_indices(pa.chunked_array(keys, type=pa.string())).to_numpy()
    owner = owner[order]
    del keys, order
    queues = [_BatchQueue(path) for path in files]
    try:
        with pa.ipc.new_stream(str(target), schema) as writer:
            for start in range(0, len(owner), MERGE_ROWS):
                chunk_owner = owner[start : start + MERGE_ROWS]
                counts = np.bincount(chunk_owner, minlength=len(files))
                # Rows of one partition are contiguous in its file and in order: take them from the front.
                batches = [batch for k in np.flatnonzero(counts) for batch in queues[k].take(int(counts[k]))]
                combined = pa.Table.from_batches(batches, schema=schema)
                if np.count_nonzero(counts) > 1:
                    grouped = np.argsort(chunk_owner, kind="stable")  # combined row p is chunk row grouped[p]
                    inverse = np.empty_like(grouped)
                    inverse[grouped] = np.arange(len(grouped))
                    combined = combined.take(pa.array(inverse))
                if combined.schema.equals(schema, check_metadata=False):
                    combined = combined.replace_schema_metadata(schema.metadata)
                else:
                    combined = combined.cast(schema)
                writer.write_table(combined)
    finally:
        for queue in queues:
            queue.close()
    return len(owner)


def _install(folder: Path, data_file: Path) -> None:
    """Put ``data_file`` in place of the (zero-row) data file of a dataset saved in ``folder``."""
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    names = [entry["filename"] for entry in state.get("_data_files", [])]
    if len(names) != 1:
        raise RuntimeError(f"unexpected datasets layout in {folder}: data files {names}")
    shutil.move(str(data_file), str(folder / names[0]))


# ---------------------------------------------------------------------------------------- main entry
def prepare_partitioned(
    path: str | Path | Iterable[pa.Table],
    options: Any = None,
    output_dir: str | Path | None = None,
    num_partitions: int = DEFAULT_NUM_PARTITIONS,
    *,
    read_options: Mapping[str, Any] | None = None,
    work_dir: str | Path | None = None,
    keep_work_dir: bool = False,
    batch_bytes: int = 8 << 20,
    source_name: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> PreparedData:
    """Prepare a log larger than memory; the same result as ``prepare_file(path, options, output_dir=...)``.

    Args:
        path: the event file (read with :func:`~seqbert.data.readers.iter_events` and
            ``read_options``, the arguments of :func:`~seqbert.data.readers.read_events`), a folder of
            shards, a glob, a URI or a list of these (:mod:`seqbert.data.shards`; ``read_options`` may
            then hold ``since`` / ``until`` / ``partition_time_column``), or an iterable of canonical
            event tables (e.g. a public-dataset reader's batches; then give ``source_name``).
        options: a :class:`seqbert.prepare.PrepareOptions` (default: its defaults).
        output_dir: the prepared-data folder to write (required: the result is too large to keep
            in memory; it is returned memory-mapped from there).
        num_partitions: number of user partitions; pick it so that one partition's preparation
            fits in memory (roughly 0.5 GB per 1M events of a partition).
        work_dir: where partitions go (default ``output_dir/_partitions``); deleted at the end
            unless ``keep_work_dir``. Needs about twice the input's Arrow size in free disk.
        batch_bytes: csv/tsv streaming block size (memory of the partition pass).
        progress: called with a short message after each step (the benchmark prints them).

    Returns:
        The :class:`~seqbert.prepared.PreparedData`, loaded (memory-mapped) from ``output_dir``.
    """
    from ..prepare import (  # prepare imports data modules
        PrepareOptions,
        check_input_hash,
        file_digest,
        run_protocol,
        temporal_cutoffs,
    )

    options = options or PrepareOptions()
    if output_dir is None:
        raise ValueError("prepare_partitioned needs output_dir: the prepared data is written there.")
    output_dir = Path(output_dir)
    work = Path(work_dir) if work_dir is not None else output_dir / "_partitions"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    say = progress or (lambda message: logger.info("prepare_partitioned: %s", message))
    started = time.perf_counter()

    def step(message: str) -> None:
        say(f"[{time.perf_counter() - started:7.1f}s] {message}")

    _check_options(options)
    algorithm = check_input_hash(options)
    record = None
    if is_multi_input(path, read_options):  # a folder, glob, URI, list or time window: seqbert.data.shards
        record = InputRecord()
        source_name = source_name or input_name(path)
        batches = iter_events(path, batch_bytes=batch_bytes, record=record, **dict(read_options or {}))
        source = {}
    elif isinstance(path, (str, Path)):
        source_name = source_name or Path(path).name
        batches: Iterable[pa.Table] = iter_events(path, batch_bytes=batch_bytes, **dict(read_options or {}))
        source = {"path": str(path), algorithm: None, "read_options": dict(read_options or {})}
    else:
        batches, source = path, {"read_options": dict(read_options or {})}

    try:
        parts = partition_events(batches, work / "events", num_partitions)
        if record is not None:
            from ..prepare import input_source

            digests = [shard_digest(shard, algorithm) for shard in record.inputs.shards]
            source = input_source(record, algorithm, read_options or {}, digests)
        elif algorithm in source:
            source[algorithm] = file_digest(source["path"], algorithm)
        step(f"partitioned {parts.input_rows:,} events into {num_partitions} partitions")

        # Temporal split: cutoffs from the input events' times (as in memory), before any cleaning,
        # because the count rules then see only the events before the first cutoff.
        cutoffs = None
        if options.split == "temporal":
            if options.test_start is None:
                times = [_read_file(file).column("timestamp").drop_null().to_numpy() for file in parts.files]
                all_times = np.concatenate(times) if times else np.zeros(0, dtype=np.int64)
                cutoffs = temporal_cutoffs(pa.table({"timestamp": all_times}), options)
                del times, all_times
            else:
                cutoffs = temporal_cutoffs(pa.table({"timestamp": pa.array([], pa.int64())}), options)
            step(f"temporal cutoffs {cutoffs}")
        count_before = cutoffs[0] if cutoffs is not None else None
        clean_kwargs = dict(
            min_user_events=options.min_user_events,
            deduplicate=options.deduplicate,
            max_events_per_user=options.max_events_per_user,
            **_rate_options(options),
            min_item_support=options.min_item_support,
            source=source_name,
            count_before=count_before,
            **options.clean,
        )
        support = None
        rules = dict(deduplicate=options.deduplicate, max_events_per_user=options.max_events_per_user)
        rules.update(_rate_options(options), count_before=count_before)
        if options.min_item_support > 1 and getattr(options, "k_core", False):
            pairs = (
                per_user_kept(_read_file(file), **rules).select(["user_id", "item_id", "timestamp"])
                for file in parts.files
            )
            core = k_core(
                pairs,
                min_item_support=options.min_item_support,
                min_user_events=options.min_user_events,
                count_before=count_before,
            )
            clean_kwargs["core"] = core
            step(f"k-core of the whole log: {core.num_passes} pass(es), {core.items.num_rows:,} items dropped")
        elif options.min_item_support > 1:
            for file in parts.files:
                counted = count_item_support(_read_file(file), **rules)
                support = _sum_counts(support, counted, "item_id")
            step(f"global item support counted ({support.num_rows:,} items)")

        outputs = [_PartOutput() for _ in parts.files]
        totals = _Totals()
        for k, file in enumerate(parts.files):
            out = outputs[k]
            sequences = _clean_and_sequence(_read_file(file), options, clean_kwargs, support, out)
            file.unlink()
            if sequences is None:
                continue
            _split_part(sequences, options, cutoffs, out, work, k)
            totals.add(out)
            step(f"partition {k + 1}/{len(parts.files)} prepared ({out.report.input_rows:,} events)")

        live = [out for out in outputs if out.protocol is not None]
        if not live:
            raise ValueError("No events left to build sequences from (check the drop report).")
        # Merge straight into data files in datasets' format (the schema carries the features), so
        # that saving is a move, not a second copy read back through memory maps.
        schemas = {name: _file_schema(live[0].files[name]) for name in OUTPUTS}
        merged_rows = {}
        for name in OUTPUTS:
            schema = Features.from_arrow_schema(schemas[name]).arrow_schema
            merged_rows[name] = _merge_sorted([out.files[name] for out in live], work / f"{name}.arrow", schema)
        step("partitions merged in user order")

        tokenizer = BehaviorTokenizer.from_item_counts(
            totals.train_counts.column("item"),
            totals.train_counts.column("count"),
            min_count=options.vocab_min_count,
            max_size=options.vocab_max_size,
            max_length=options.max_length,
            **_tokenizer_options(options),
        )
        protocol = merge_protocols([out.protocol for out in live])
        protocol.update(
            run_protocol(source_name, source, options, tokenizer, count_before),
            partitioning={"num_partitions": num_partitions, "partition": "stable_hash64(user_id) % num_partitions"},
        )
        statistics = {key: _merge_statistics(totals.pieces[key]) for key in ("all", "train")}
        report = DropReport.merged([out.report for out in outputs], parts.input_rows, source_name)

        def placeholder(name: str) -> Dataset:
            """One real row (datasets writes no data file for zero rows), or zero rows if there are none."""
            for out in live:
                row = _first_row(out.files[name])
                if row.num_rows:
                    return _dataset(row)
            return _dataset(schemas[name].empty_table())

        # The folder layout, tokenizer and records through PreparedData.save (one-row placeholder
        # datasets), then the merged data files take the place of the placeholders' data files.
        PreparedData(
            splits=DatasetDict(
                train=placeholder("train"), validation=placeholder("validation"), test=placeholder("test")
            ),
            sequences=placeholder("sequences"),
            tokenizer=tokenizer,
            protocol=protocol,
            statistics=statistics,
            drop_report=add_window_drops(report.to_dict(), record),
        ).save(output_dir)
        for name in OUTPUTS:
            if merged_rows[name]:
                folder = output_dir / "sequences" if name == "sequences" else output_dir / "dataset" / name
                _install(folder, work / f"{name}.arrow")
        step(f"saved to {output_dir}")
    finally:
        if not keep_work_dir:
            shutil.rmtree(work, ignore_errors=True)
    prepared = PreparedData.load(output_dir)
    got = {"sequences": prepared.sequences.num_rows, **{name: prepared.splits[name].num_rows for name in OUTPUTS[1:]}}
    if got != merged_rows:  # pragma: no cover - internal consistency
        raise RuntimeError(f"saved rows {got} differ from the merged rows {merged_rows}")
    return prepared


def is_multi_input(path: Any, read_options: Mapping[str, Any] | None) -> bool:
    """Whether ``path`` / ``read_options`` need :mod:`seqbert.data.shards` (not one local file, or
    a time window); an iterable of event tables is not."""
    if any(key in (read_options or {}) for key in ("since", "until", "partition_time_column")):
        return isinstance(path, (str, Path)) or _is_path_list(path)
    if isinstance(path, (str, Path)):
        return is_multi(path)
    return _is_path_list(path)


def _is_path_list(path: Any) -> bool:
    return isinstance(path, (list, tuple)) and bool(path) and all(isinstance(p, (str, Path)) for p in path)


def _check_options(options: Any) -> None:
    """The option checks of :func:`seqbert.prepare.prepare_events`, before any work."""
    from ..prepare import check_tokenizer_options
    from .splits import LOO_TARGETS

    check_tokenizer_options(options)
    loo_target = getattr(options, "loo_target", "last_event")
    if loo_target not in LOO_TARGETS:
        raise ValueError(f"Unknown loo_target {loo_target!r}; use one of {', '.join(LOO_TARGETS)}.")
    if options.split != "leave_one_out" and loo_target != "last_event":
        raise ValueError(f"loo_target={loo_target!r} only applies to split='leave_one_out'.")
    if options.split not in ("leave_one_out", "temporal"):
        raise ValueError(f"Unknown split {options.split!r}; use 'leave_one_out' or 'temporal'.")


def _rate_options(options: Any) -> dict[str, Any]:
    """The bot-rate thresholds PrepareOptions may carry (per-user rules: exact per partition)."""
    return {
        name: getattr(options, name)
        for name in ("max_events_per_minute", "max_events_per_hour")
        if getattr(options, name, None) is not None
    }


def _tokenizer_options(options: Any) -> dict[str, Any]:
    """Tokenizer options that PrepareOptions may carry (unseen-item handling)."""
    return {name: getattr(options, name) for name in ("unseen_items", "num_hash_buckets") if hasattr(options, name)}


def _clean_and_sequence(
    events: pa.Table,
    options: Any,
    clean_kwargs: dict[str, Any],
    support: pa.Table | None,
    out: _PartOutput,
) -> pa.Table | None:
    """Clean one partition and build its sequences (as :func:`seqbert.prepare.prepare_events` does)."""
    from .sequences import build_sequences, collapse_repeated_views, drop_short_sequences

    cleaned, report = clean_events(events, item_support=support, **clean_kwargs)
    del events
    out.report = report
    if cleaned.num_rows == 0:
        # prepare_events would apply these steps to the other partitions' users: count them as zero.
        if options.collapse_repeated_views:
            report.add("collapsed_repeat_view", 0)
            report.add("short_user", 0)
        return None
    sequences = build_sequences(cleaned, session_gap_seconds=options.session_gap_seconds)
    del cleaned
    if options.collapse_repeated_views:
        sequences, collapsed = collapse_repeated_views(sequences, within_session=options.collapse_within_session)
        report.add("collapsed_repeat_view", collapsed)
        sequences, short_events, _ = drop_short_sequences(
            sequences, options.min_user_events, count_before=clean_kwargs.get("count_before")
        )
        report.add("short_user", short_events)
        report.check()
        if sequences.num_rows == 0:
            return None
    return to_arrow(sequences)


def _split_part(
    sequences: pa.Table, options: Any, cutoffs: tuple[int, int] | None, out: _PartOutput, work: Path, k: int
) -> None:
    """Split one partition's sequences; write sequences and splits; keep the counts."""
    from .splits import leave_one_out, temporal_split

    data = _dataset(sequences)
    if options.split == "leave_one_out":
        splits, protocol = leave_one_out(
            data, min_history=options.min_history, target=getattr(options, "loo_target", "last_event")
        )
    else:
        validation_start, test_start = cutoffs
        splits, protocol = temporal_split(
            data, validation_start=validation_start, test_start=test_start, min_history=options.min_history
        )
    out.protocol = protocol
    out.pieces = {"all": _statistic_pieces(sequences)}
    out.files["sequences"] = _write_file(sequences, work / f"sequences-{k:05d}.arrow")
    for name in ("train", "validation", "test"):
        table = splits[name].with_format("arrow")[:] if splits[name].num_rows else splits[name].data.table.slice(0, 0)
        out.files[name] = _write_file(table, work / f"{name}-{k:05d}.arrow")
        if name == "train":
            out.pieces["train"] = _statistic_pieces(table)
            counted = pc.value_counts(pc.list_flatten(table.column("item_ids")))
            out.train_counts = pa.table({"item": counted.field("values"), "count": counted.field("counts")})


def iter_partition_files(folder: str | Path) -> Iterator[Path]:
    """The partition files a kept ``work_dir`` holds (for inspection)."""
    yield from sorted(Path(folder).glob("events-*.arrow"))


__all__ = ["DEFAULT_NUM_PARTITIONS", "partition_events", "partition_of", "prepare_partitioned"]
