"""Length-grouped training batches and length-sorted evaluation rows (seqbert.training.sampling)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from datasets import Dataset

from seqbert.training.sampling import LengthGroupedSampler, row_lengths, sorted_by_length, training_dataloader


def long_tailed_lengths(n: int, seed: int = 0) -> np.ndarray:
    """Like real histories: most short, a few at the cap."""
    return np.minimum(np.random.default_rng(seed).geometric(0.15, size=n), 50)


def rows_of(lengths: np.ndarray) -> Dataset:
    return Dataset.from_dict({"input_ids": [list(range(5, 5 + int(n))) for n in lengths], "row": list(range(len(lengths)))})


def test_every_row_once_per_epoch_and_order_fixed_by_seed_and_epoch():
    lengths = long_tailed_lengths(1003)
    sampler = LengthGroupedSampler(lengths, batch_size=32, seed=7, mega_batches=4)
    first = list(sampler)
    assert sorted(first) == list(range(1003))
    assert list(LengthGroupedSampler(lengths, batch_size=32, seed=7, mega_batches=4)) == first
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(second) == list(range(1003)) and second != first
    assert list(LengthGroupedSampler(lengths, batch_size=32, seed=8, mega_batches=4)) != first


def test_batches_are_full_and_the_partial_one_comes_last():
    sampler = LengthGroupedSampler(long_tailed_lengths(1003), batch_size=32, seed=0, mega_batches=4)
    sizes = [len(batch) for batch in sampler.batches()]
    assert sizes[:-1] == [32] * (len(sizes) - 1) and sizes[-1] == 1003 % 32
    # Consecutive runs of 32 yielded indices are exactly the batches (what a BatchSampler cuts).
    flat = list(sampler)
    assert [flat[i : i + 32] for i in range(0, len(flat), 32)] == [batch.tolist() for batch in sampler.batches()]


def test_grouping_cuts_padding_and_keeps_batches_random():
    lengths = long_tailed_lengths(20_000)
    batches = LengthGroupedSampler(lengths, batch_size=256, seed=0).batches()
    grouped_padded = sum(len(b) * lengths[b].max() for b in batches)
    order = np.random.default_rng(0).permutation(len(lengths))
    random_padded = sum(len(b) * lengths[b].max() for b in np.array_split(order, len(batches)))
    assert grouped_padded < 0.5 * random_padded
    assert lengths.sum() / grouped_padded > 0.8  # most of the encoder's work is on real events
    # The batch order is shuffled: long and short batches alternate rather than come sorted.
    longest = np.array([lengths[b].max() for b in batches[:-1]])
    assert not (np.all(np.diff(longest) <= 0) or np.all(np.diff(longest) >= 0))


def test_rejects_nonpositive_sizes():
    with pytest.raises(ValueError, match="batch_size"):
        LengthGroupedSampler(np.ones(4), batch_size=0)


@pytest.mark.parametrize("group_by_length", [True, False])
def test_accelerate_prepared_loader_replays_epochs_and_resumes(group_by_length):
    """Through Accelerate: `set_epoch` reaches the sampler, and skip_first_batches continues the same epoch."""
    lengths = long_tailed_lengths(301, seed=1)
    rows = rows_of(lengths)
    accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))

    def epoch_rows(epoch: int, skip: int = 0) -> list[list[int]]:
        loader = training_dataloader(rows, batch_size=16, collate_fn=collate_rows, seed=3, group_by_length=group_by_length)
        loader = accelerator.prepare(loader)
        loader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        return [batch["row"].tolist() for batch in batches]

    epoch0, epoch1 = epoch_rows(0), epoch_rows(1)
    assert epoch_rows(0) == epoch0 and epoch0 != epoch1
    assert sorted(sum(epoch0, [])) == list(range(301))
    assert epoch_rows(1, skip=5) == epoch1[5:]
    # 301 rows fit in one window of 50 batches, so grouped batches are consecutive runs of the sorted lengths.
    spans = sorted((lengths[b].min(), lengths[b].max()) for b in epoch0)
    disjoint = all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))
    assert disjoint == group_by_length


def collate_rows(features) -> dict[str, torch.Tensor]:
    return {"row": torch.tensor([feature["row"] for feature in features])}


def test_sorted_by_length_is_a_stable_permutation():
    lengths = np.array([3, 1, 2, 1, 3, 2])
    rows = rows_of(lengths)
    ordered = sorted_by_length(rows)
    assert ordered["row"] == [1, 3, 2, 5, 0, 4]
    assert row_lengths(ordered).tolist() == sorted(lengths.tolist())


# ----------------------------------------------------------- label weighting for length-grouped batches
def test_dataset_label_weighting_divides_by_the_expected_labels_per_batch():
    from seqbert.collators import DataCollatorForNextItemPrediction
    from seqbert.training.arguments import PretrainArguments
    from seqbert.training.pretrain import expected_labels_per_batch

    rows = rows_of(np.array([3, 1, 5]))  # ids 5.. are all known items (5 special tokens)
    tokenizer = SimpleNamespace(num_special_tokens=5)
    args = SimpleNamespace(per_device_batch_size=4)
    collator = DataCollatorForNextItemPrediction(num_special_tokens=5)
    assert expected_labels_per_batch(collator, rows, tokenizer, args, PretrainArguments()) is None  # default: batch mean
    dataset = PretrainArguments(label_weighting="dataset")
    assert expected_labels_per_batch(collator, rows, tokenizer, args, dataset) == pytest.approx(4 * (2 + 0 + 4) / 3)
    with pytest.raises(ValueError, match="label_weighting"):
        expected_labels_per_batch(collator, rows, tokenizer, args, PretrainArguments(label_weighting="token"))
