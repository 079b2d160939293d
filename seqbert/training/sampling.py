"""Training data order: shuffled batches of similar length, so padding does not dominate the work.

Behavior logs are long-tailed: on Amazon Beauty the median user has 4 training items and the longest
50, so a random batch of 256 is padded to ~49 positions and only ~14 % of the encoder's work is on
real events. :class:`LengthGroupedSampler` shuffles every epoch, then sorts each "mega-batch" of
``batch_size * mega_batches`` random rows by length and cuts it into batches, and finally shuffles the
order of those batches. Each batch is still a random draw from a window of the data, but its rows have
similar lengths and the collator pads to the batch's own longest row. (Off by default: on Beauty
the faster epochs did not make up for the less random batches; see ``--group_by_length``. Since the
encoder packs mostly-padded batches itself, ``seqbert.modeling_seqbert.PackedBatch``, random batches
no longer pay for most of their padding; how much this sampler still gains was not re-measured.)

The order depends only on ``(seed, epoch)``, so a resumed run (Accelerate's ``skip_first_batches``)
replays the same batches, and Accelerate's ``set_epoch`` reaches the sampler through the prepared
DataLoader. Under several processes Accelerate hands out whole batches of ``batch_size`` indices in
turn, so every process's batches stay length-grouped.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow.compute as pc
from torch.utils.data import DataLoader, Sampler


class LengthGroupedSampler(Sampler[int]):
    """Yield row indices so that consecutive ``batch_size`` runs have similar ``lengths``.

    Args:
        lengths: the length of every row (the collator pads each batch to its longest row).
        batch_size: rows per batch; batches are formed by the consumer from consecutive indices.
        seed: base seed; epoch ``e`` uses ``seed + e``.
        mega_batches: batches per sorted window (larger groups lengths more tightly, smaller keeps the
            data order closer to uniform). The last, partial batch of the epoch is yielded last so the
            consumer's chunking never straddles two windows.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int = 0, mega_batches: int = 50) -> None:
        if batch_size < 1 or mega_batches < 1:
            raise ValueError(f"batch_size and mega_batches must be positive, got {batch_size} and {mega_batches}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.seed = seed
        self.mega_batches = mega_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def batches(self) -> list[np.ndarray]:
        """This epoch's batches, in the order they are yielded."""
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(len(self.lengths))
        window = self.batch_size * self.mega_batches
        full, partial = [], []
        for start in range(0, len(order), window):
            rows = order[start : start + window]
            rows = rows[np.argsort(-self.lengths[rows], kind="stable")]
            for offset in range(0, len(rows), self.batch_size):
                batch = rows[offset : offset + self.batch_size]
                (full if len(batch) == self.batch_size else partial).append(batch)
        return [full[i] for i in rng.permutation(len(full))] + partial

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from batch.tolist()


def row_lengths(rows, column: str = "input_ids") -> np.ndarray:
    """Length of every row's ``column`` in a ``datasets.Dataset``, in row order (an indices mapping left by
    ``select`` / ``filter`` applied), read from Arrow without a Python loop."""
    return pc.list_value_length(rows.with_format("arrow")[column]).to_numpy(zero_copy_only=False)


def sorted_by_length(rows, column: str = "input_ids"):
    """``rows`` ordered by length (stable), for evaluation: batches then pad little. Metrics that average
    over users do not depend on the order."""
    return rows.select(np.argsort(row_lengths(rows, column), kind="stable"))


def training_dataloader(
    rows, *, batch_size: int, collate_fn, seed: int, group_by_length: bool, num_workers: int = 0,
    shard_rows: list[int] | None = None,
) -> DataLoader:  # fmt: skip
    """The training DataLoader: length-grouped batches, or shuffled ones: uniformly (Accelerate seeds those) or, for
    a train split of parquet shards with ``shard_rows`` rows each, shards permuted and rows shuffled within each
    shard (:class:`seqbert.training.streaming.ShardedOrderSampler`, the order ``--streaming`` reads)."""
    if not group_by_length and shard_rows is not None:
        from .streaming import ShardedOrderSampler

        sampler = ShardedOrderSampler(shard_rows, seed)
        return DataLoader(rows, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn, num_workers=num_workers)
    if not group_by_length:
        return DataLoader(rows, batch_size=batch_size, shuffle=True, collate_fn=collate_fn, num_workers=num_workers)
    sampler = LengthGroupedSampler(row_lengths(rows), batch_size=batch_size, seed=seed)
    return DataLoader(rows, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn, num_workers=num_workers)


__all__ = ["LengthGroupedSampler", "row_lengths", "sorted_by_length", "training_dataloader"]
