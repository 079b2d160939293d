"""Pretraining from the parquet shards of a prepared folder, read as a stream (``--streaming``).

One epoch's order over a sharded train split is defined once and used by both ways of training on it:

* the shards are taken in a permutation drawn from ``(seed, epoch)``, and the encoded rows (windows) of
  shard ``k`` in a permutation drawn from ``(seed, epoch, k)`` (:func:`shard_epoch_order`);
* in memory, :class:`ShardedOrderSampler` yields that order and Accelerate deals its batches of
  ``batch_size`` rows to the processes in turn, the last ones completed from the epoch's first rows
  (``even_batches``);
* streamed, :class:`PretrainingShardStream` works out from the same order which rows are this process's
  (exactly the rows Accelerate's sharded sampler would give it), reads only the shards that hold some,
  one at a time with the next one read and encoded in a background thread, encodes them with the same
  function as :func:`seqbert.prepared.encode_for_pretraining` (row ids included) and yields its rows.

Every process therefore collates the same rows into the same batches as in memory, the masking collator
draws the same masks (seeded by the epoch and the row ids), and the two trainings are step for step the
same computation. Why not the ready-made options: Accelerate's ``dispatch_batches`` collates the global
batch of all processes on process 0 (the masks are seeded by its rows, not each process's, and the
padding follows the global batch) and makes process 0 encode and collate for everyone; and
``datasets.distributed.split_dataset_by_node`` gives each process whole shards (uneven row counts, so
processes run out of batches at different steps) or every n-th row, neither of which is the in-memory
assignment of batches to processes (Accelerate itself shards a ``datasets`` ``IterableDataset`` by files
when it has at least as many shards as processes). ``load_dataset("parquet", streaming=True)`` is not used
either: its shuffle is an approximate buffer shuffle that no in-memory sampler reproduces, and a plain
torch ``IterableDataset`` over pyarrow reads keeps the order exact. The cost of this choice: every process
reads and encodes each shard it has rows in, every epoch; in memory every process encodes the whole
split once. scripts/bench_streaming.py measures what that costs (under 2 % of the time goes to waiting for
data on a 2-core CPU).

The number of rows per epoch (the learning-rate schedule needs it) comes from one cheap pass over the
``item_ids`` column of the shards (:func:`seqbert.prepared.pretraining_row_count`). A resumed run skips
the rows of the batches already trained without reading the shards that hold only those.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from accelerate.data_loader import DataLoaderStateMixin
from accelerate.state import GradientState
from accelerate.utils import send_to_device
from torch.utils.data import DataLoader, IterableDataset, Sampler

from ..prepared import (
    PARQUET_LAYOUT,
    PRETRAINING_COLUMNS,
    _encode_chunks,
    pretraining_encoder,
    pretraining_row_count,
    shard_files,
)  # fmt: skip
from ..tokenization_seqbert import BehaviorTokenizer


def train_shards(folder: str | Path, protocol: dict[str, Any]) -> list[Path]:
    """The train split's shard files of a prepared folder of the parquet layout (an error for other folders)."""
    if protocol.get("layout") != PARQUET_LAYOUT:
        raise ValueError(
            f"--streaming reads the parquet shards of a prepared folder; {folder} has the Arrow layout. Write the "
            "shards with `seqbert prepare ... --output-shards N` (or PreparedData.save(folder, shards=N))."
        )
    return shard_files(folder, protocol, "train")


def encoded_rows_per_shard(
    files: Sequence[Path], tokenizer: BehaviorTokenizer, max_length: int, window_stride: int | None
) -> list[int]:
    """Training rows (windows with a known item) of each shard, reading only its ``item_ids`` column."""
    return [
        pretraining_row_count(pq.read_table(path, columns=["item_ids"]).column("item_ids"), tokenizer, max_length, window_stride)
        for path in files
    ]


def shard_epoch_order(counts: Sequence[int], seed: int, epoch: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """An epoch's order over rows grouped in shards of ``counts`` rows: the shards' order (a permutation drawn
    from ``(seed, epoch)``) and, per shard, the order of its rows (drawn from ``(seed, epoch, shard)``)."""
    shards = np.random.default_rng([seed, epoch]).permutation(len(counts))
    return shards, [np.random.default_rng([seed, epoch, shard]).permutation(count) for shard, count in enumerate(counts)]


def epoch_row_order(counts: Sequence[int], seed: int, epoch: int) -> np.ndarray:
    """The epoch's order as indices of the concatenated shards' rows."""
    offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
    shards, rows = shard_epoch_order(counts, seed, epoch)
    return np.concatenate([offsets[shard] + rows[shard] for shard in shards] or [np.zeros(0, np.int64)])


class ShardedOrderSampler(Sampler[int]):
    """In-memory training order of a sharded train split: :func:`epoch_row_order` of ``(seed, epoch)``."""

    def __init__(self, counts: Sequence[int], seed: int) -> None:
        self.counts = [int(count) for count in counts]
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(self.counts)

    def __iter__(self) -> Iterator[int]:
        yield from epoch_row_order(self.counts, self.seed, self.epoch).tolist()


def process_positions(num_rows: int, batch_size: int, num_processes: int, process_index: int) -> np.ndarray:
    """Positions in the epoch's order of the rows one process trains on, as Accelerate deals batches of an
    in-memory sampler (``BatchSamplerShard``, ``even_batches``): batch ``i`` of ``batch_size`` rows goes to
    process ``i % num_processes``, and the last round is completed from the start of the epoch. Positions at or
    beyond ``num_rows`` are those wrapped-around rows (``position % num_rows``)."""
    if num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    per_process = math.ceil(num_rows / (batch_size * num_processes)) * batch_size
    index = np.arange(per_process, dtype=np.int64)
    return (index // batch_size) * batch_size * num_processes + process_index * batch_size + index % batch_size


class PretrainingShardStream(IterableDataset):
    """One process's encoded training rows of an epoch, read shard by shard (module docstring).

    Args:
        files: the train split's shard files, in order. counts: their encoded rows (:func:`encoded_rows_per_shard`).
        batch_size / num_processes / process_index: how Accelerate would deal the in-memory batches.
        prefetch: read and encode the next needed shard in a background thread while this one trains.
    """

    def __init__(
        self, files: Sequence[Path], counts: Sequence[int], tokenizer: BehaviorTokenizer, *, max_length: int,
        window_stride: int | None, seed: int, batch_size: int, num_processes: int = 1, process_index: int = 0,
        prefetch: bool = True,
    ) -> None:  # fmt: skip
        if len(files) != len(counts):
            raise ValueError(f"{len(files)} shard files but {len(counts)} row counts.")
        self.files, self.counts = list(files), [int(count) for count in counts]
        self.offsets = np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])
        self.encode = pretraining_encoder(tokenizer, max_length, window_stride)
        self.seed, self.batch_size = seed, batch_size
        self.num_processes, self.process_index = num_processes, process_index
        self.prefetch = prefetch
        self.epoch = 0
        self.skip_rows = 0
        self.total_dataset_length = int(self.offsets[-1])  # read by Accelerate's GradientState (remainder)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(process_positions(self.total_dataset_length, self.batch_size, self.num_processes, self.process_index))

    def encoded_shard(self, shard: int) -> pa.Table:
        """Shard ``shard`` read (only the encoded columns) and encoded as in memory, with its global row ids."""
        table = pq.read_table(self.files[shard], columns=list(PRETRAINING_COLUMNS))
        parts = [part for part in _encode_chunks(table, self.encode, threads=1) if part.num_rows]
        encoded = pa.concat_tables(parts) if parts else self.encode(table.slice(0, 0))
        if encoded.num_rows != self.counts[shard]:
            raise RuntimeError(f"{self.files[shard]} encodes to {encoded.num_rows} rows, {self.counts[shard]} expected: "
                               "did the shard change since the run started?")  # fmt: skip
        start = int(self.offsets[shard])
        return encoded.append_column("row_id", pa.array(np.arange(start, start + encoded.num_rows, dtype=np.int64)))

    def requests(self) -> list[tuple[int, np.ndarray]]:
        """This process's rows of the epoch (after ``skip_rows``) as consecutive (shard, local rows) runs."""
        total = self.total_dataset_length
        positions = process_positions(total, self.batch_size, self.num_processes, self.process_index)[self.skip_rows :]
        if not len(positions):
            return []
        shard_order, row_orders = shard_epoch_order(self.counts, self.seed, self.epoch)
        ordered_ends = np.cumsum([self.counts[shard] for shard in shard_order])
        positions = positions % total
        segment = np.searchsorted(ordered_ends, positions, side="right")  # index into shard_order
        local = positions - np.concatenate([[0], ordered_ends])[segment]
        cuts = np.flatnonzero(np.diff(segment)) + 1
        runs = []
        for seg_run, local_run in zip(np.split(segment, cuts), np.split(local, cuts), strict=True):
            shard = int(shard_order[seg_run[0]])
            runs.append((shard, row_orders[shard][local_run]))
        return runs

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._rows(self.requests())  # planned now: ``skip_rows`` applies to the iterator being started

    def _rows(self, runs: list[tuple[int, np.ndarray]]) -> Iterator[dict[str, Any]]:
        # A shard needed again later (the wrapped-around last round) is kept only as the rows needed then.
        later: dict[int, list[np.ndarray]] = {}
        to_read: list[int] = []
        for shard, rows in runs:
            if shard in to_read:
                later.setdefault(shard, []).append(rows)
            else:
                to_read.append(shard)
        kept: dict[int, tuple[np.ndarray, pa.Table]] = {}
        with ThreadPoolExecutor(1) as pool:
            pending = {}

            def request(position: int) -> None:
                if self.prefetch and position < len(to_read):
                    pending[to_read[position]] = pool.submit(self.encoded_shard, to_read[position])

            read = 0
            request(0)
            for shard, rows in runs:
                if shard in kept:
                    needed, table = kept[shard]
                    yield from table.take(pa.array(np.searchsorted(needed, rows))).to_pylist()
                    continue
                future = pending.pop(shard, None)
                read += 1
                request(read)  # the next shard decodes and encodes while this one trains
                table = future.result() if future is not None else self.encoded_shard(shard)
                if shard in later:
                    needed = np.unique(np.concatenate(later[shard]))
                    kept[shard] = (needed, table.take(pa.array(needed)))
                for start in range(0, len(rows), 4096):  # rows as Python objects a slice at a time
                    yield from table.take(pa.array(rows[start : start + 4096])).to_pylist()
                del table


class StreamingLoader(DataLoaderStateMixin):
    """This process's training batches from a :class:`PretrainingShardStream`, standing in for the DataLoader that
    ``accelerator.prepare`` makes in memory: batches of ``batch_size`` rows collated by ``collate_fn`` and moved to
    ``device``, registered with Accelerate's gradient state (gradient accumulation syncs at the epoch's last batch),
    ``set_epoch``, ``len`` (this process's batches) and ``skip_first_batches`` (resume without reading the skipped
    shards). ``accelerator.prepare`` passes it through unchanged: the stream is sharded already."""

    def __init__(self, stream: PretrainingShardStream, *, collate_fn, device: torch.device | None = None) -> None:
        self.dataset = stream
        self.batch_size = stream.batch_size
        self.total_batch_size = stream.batch_size * stream.num_processes
        self.collate_fn = collate_fn
        self.device = device
        self.gradient_state = GradientState()
        self._drop_last = False

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset) // self.batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self._batches(0)

    def skip_first_batches(self, num_batches: int) -> Iterator[dict[str, torch.Tensor]]:
        return self._batches(num_batches)

    def _batches(self, skip: int) -> Iterator[dict[str, torch.Tensor]]:
        self.begin()
        self.dataset.skip_rows = skip * self.batch_size
        try:
            # A DataLoader, so starting an epoch draws from the global RNG exactly as the in-memory one does.
            batches = iter(DataLoader(self.dataset, batch_size=self.batch_size, collate_fn=self.collate_fn))
        finally:
            self.dataset.skip_rows = 0
        current = next(batches, None)
        while current is not None:
            if self.device is not None:
                current = send_to_device(current, self.device)
            following = next(batches, None)
            if following is None:
                self.end_of_dataloader = True
            yield current
            current = following
        self.end()


__all__ = [
    "PretrainingShardStream", "ShardedOrderSampler", "StreamingLoader", "encoded_rows_per_shard", "epoch_row_order",
    "process_positions", "shard_epoch_order", "train_shards",
]
