"""Batch collators: Cloze masking for pretraining, padding for evaluation and fine-tuning.

Features are tokenized, unpadded rows (``input_ids``, ``behavior_ids``, ``time_ids`` and,
optionally, ``attention_mask``) as written by ``BehaviorTokenizer``. Padding is on the left, with 0
in every stream, so the last position is the most recent event.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .tokenization_seqbert import BEHAVIOR_MASK, TIME_MASK

ID_STREAMS = ("input_ids", "behavior_ids", "time_ids")


def _lengths(rows: Sequence[Sequence[int]]) -> np.ndarray:
    return np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))


def pad_left(rows: Sequence[Sequence[int]], length: int) -> torch.Tensor:
    """Left-pad integer rows with 0 into a `(len(rows), length)` LongTensor (one vectorised scatter)."""
    lengths = _lengths(rows)
    total = int(lengths.sum())
    flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=total)
    batch = np.zeros((len(rows), length), dtype=np.int64)
    row_of = np.repeat(np.arange(len(rows)), lengths)
    starts = np.cumsum(lengths) - lengths  # offset of each row in `flat`
    column = np.arange(total) - starts[row_of] + (length - lengths)[row_of]
    batch[row_of, column] = flat
    return torch.from_numpy(batch)


def known_items_per_row(rows, num_special_tokens: int) -> np.ndarray:
    """Per row of a tokenized ``datasets.Dataset``: how many ``input_ids`` are catalog items (not special)."""
    column = rows.with_format("arrow")["input_ids"]
    column = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    offsets = column.offsets.to_numpy()
    known = (column.flatten().to_numpy(zero_copy_only=False) >= num_special_tokens).astype(np.int64)
    return np.diff(np.concatenate([[0], np.cumsum(known)])[offsets - offsets[0]])


def pad_streams(features: Sequence[Mapping[str, Sequence[int]]], pad_to_multiple_of: int | None) -> dict[str, torch.Tensor]:
    """Stack the id streams of ``features`` with left padding and build the attention mask."""
    lengths = _lengths([feature["input_ids"] for feature in features])
    longest = int(lengths.max(initial=0))
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    batch = {name: pad_left([feature[name] for feature in features], longest) for name in ID_STREAMS}
    batch["attention_mask"] = (torch.arange(longest)[None, :] >= torch.from_numpy(longest - lengths)[:, None]).long()
    return batch


def random_prefixes(
    features: Sequence[Mapping[str, Sequence[int]]], cut_rows: np.ndarray, draws: np.ndarray
) -> list[Mapping[str, Sequence[int]]]:
    """``features`` with each ``cut_rows`` row's id streams cut after event ``1 + floor(draw * length)``
    (uniform over the row's events); other rows unchanged."""
    out = list(features)
    for row in np.flatnonzero(cut_rows):
        keep = 1 + int(draws[row] * len(features[row]["input_ids"]))
        out[row] = {name: features[row][name][:keep] for name in ID_STREAMS}
    return out


@dataclass
class DataCollatorForMaskedBehaviorModeling:
    """Cloze masking over behavior tokens (BERT4Rec), with next-item-style last-position masking.

    Each real item position is selected with probability ``mask_prob`` (at least one per sequence);
    with probability ``last_item_mask_prob`` a sequence instead gets only its most recent item
    selected, which is exactly the next-item inference setting. Selected positions become
    ``[MASK]`` 80 % of the time, a random item 10 %, unchanged 10 % (``replace_ratios``); their
    event type and time gap are always hidden (mask ids) so labels cannot leak through them.
    Labels are the original ids at selected positions and -100 elsewhere. With
    ``next_item_prefixes``, a next-item row is first cut after a uniformly random event, so its target
    is any event of the row seen with only its past (the prefixes a left-to-right model trains on),
    not always the most recent one.

    Args:
        num_special_tokens: ids below this are special and never selected or sampled.
        vocab_size: item ids are ``[num_special_tokens, vocab_size)``.
        mask_token_id: id of ``[MASK]``.
        seed: when set and rows carry ``row_id``, each batch's masks are drawn from a generator seeded
            with (seed, epoch, row ids): a pure function of the batch, so they are reproducible across
            resumption, DataLoader prefetching, worker counts and process counts. Call
            :meth:`set_epoch` each epoch so the same rows get fresh masks.
        generator: otherwise, an optional ``torch.Generator`` stream (checkpointable via state_dict).
    """

    num_special_tokens: int
    vocab_size: int
    mask_token_id: int
    mask_prob: float = 0.2
    last_item_mask_prob: float = 0.1
    replace_ratios: tuple[float, float] = (0.8, 0.1)
    next_item_prefixes: bool = False
    pad_to_multiple_of: int | None = 8
    generator: torch.Generator | None = None
    seed: int | None = None
    epoch: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_prob <= 1.0:
            raise ValueError(f"mask_prob must be in (0, 1], got {self.mask_prob}.")
        if not 0.0 <= self.last_item_mask_prob <= 1.0:
            raise ValueError(f"last_item_mask_prob must be in [0, 1], got {self.last_item_mask_prob}.")
        if min(self.replace_ratios) < 0.0 or sum(self.replace_ratios) > 1.0:
            raise ValueError(f"replace_ratios {self.replace_ratios} must be non-negative and sum to at most 1.")

    def state_dict(self) -> dict:
        """Generator state, so ``accelerator.register_for_checkpointing(collator)`` resumes masks exactly."""
        return {"generator": self.generator.get_state()} if self.generator is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.generator is not None and "generator" in state:
            self.generator.set_state(state["generator"])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _uniform(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator)

    def expected_labels_per_row(self, known_items: np.ndarray) -> np.ndarray:
        """Expected labelled positions of rows with ``known_items`` real, known items each: next-item rows
        label one; Cloze rows label each with ``mask_prob`` and at least one (k·p + (1-p)^k)."""
        k = np.asarray(known_items, dtype=np.float64)
        cloze = k * self.mask_prob + (1.0 - self.mask_prob) ** k
        return np.where(k > 0, (1 - self.last_item_mask_prob) * cloze + self.last_item_mask_prob, 0.0)

    def _batch_generator(self, features: Sequence[Mapping[str, Sequence[int]]]) -> torch.Generator | None:
        if self.seed is None or "row_id" not in features[0]:
            return self.generator
        key = ",".join(str(int(feature["row_id"])) for feature in features)
        digest = hashlib.blake2b(f"{self.seed}|{self.epoch}|{key}".encode(), digest_size=8).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))

    def __call__(self, features: Sequence[Mapping[str, Sequence[int]]]) -> dict[str, torch.Tensor]:
        stream = self.generator
        self.generator = self._batch_generator(features)
        try:
            return self._mask(features)
        finally:
            self.generator = stream

    def _mask(self, features: Sequence[Mapping[str, Sequence[int]]]) -> dict[str, torch.Tensor]:
        next_item_rows = None
        if self.next_item_prefixes:
            next_item_rows = self._uniform((len(features), 1)) < self.last_item_mask_prob
            features = random_prefixes(features, next_item_rows[:, 0].numpy(), self._uniform((len(features),)).numpy())
        batch = pad_streams(features, self.pad_to_multiple_of)
        input_ids = batch["input_ids"]
        candidates = input_ids >= self.num_special_tokens  # real, known items only
        shape = tuple(input_ids.shape)

        selected = (self._uniform(shape) < self.mask_prob) & candidates
        # At least one selection per sequence that has a candidate: the candidate with the top noise.
        noise = self._uniform(shape).masked_fill(~candidates, -1.0)
        forced = torch.zeros_like(selected).scatter_(1, noise.argmax(1, keepdim=True), True) & candidates
        selected |= forced & ~selected.any(1, keepdim=True)
        # Next-item mode: only the most recent candidate (rightmost, since padding is on the left).
        positions = torch.arange(shape[1]).expand(shape)
        last = torch.zeros_like(selected).scatter_(
            1, positions.masked_fill(~candidates, -1).argmax(1, keepdim=True), True
        ) & candidates
        if next_item_rows is None:
            next_item_rows = self._uniform((shape[0], 1)) < self.last_item_mask_prob
        selected = torch.where(next_item_rows, last, selected)

        labels = torch.where(selected, input_ids, -100)
        behavior_labels = torch.where(selected, batch["behavior_ids"], -100)
        draw = self._uniform(shape)
        to_mask = selected & (draw < self.replace_ratios[0])
        to_random = selected & (draw >= self.replace_ratios[0]) & (draw < sum(self.replace_ratios))
        random_items = torch.randint(self.num_special_tokens, self.vocab_size, shape, generator=self.generator)
        batch["input_ids"] = torch.where(to_mask, self.mask_token_id, torch.where(to_random, random_items, input_ids))
        batch["behavior_ids"] = batch["behavior_ids"].masked_fill(selected, BEHAVIOR_MASK)
        batch["time_ids"] = batch["time_ids"].masked_fill(selected, TIME_MASK)
        batch["labels"] = labels
        batch["behavior_labels"] = behavior_labels
        return batch


@dataclass
class DataCollatorForNextItemPrediction:
    """Left-to-right next-item targets for a causal (SASRec-style) model: full softmax at every position.

    Each row's events become inputs ``e_1 .. e_{n-1}`` with labels ``e_2 .. e_n`` (item ids; -100 on
    padding and on unknown items) and ``behavior_labels`` (the next event type). No masking, no
    randomness: every event after the first is a training target in every epoch.
    """

    num_special_tokens: int
    pad_to_multiple_of: int | None = 8

    def set_epoch(self, epoch: int) -> None:  # same interface as the Cloze collator
        pass

    def expected_labels_per_row(self, known_items: np.ndarray) -> np.ndarray:
        """Labelled positions of rows with ``known_items`` known items (every one after the first; an
        upper bound when the first event is unknown)."""
        return np.maximum(np.asarray(known_items, dtype=np.float64) - 1, 0.0)

    def __call__(self, features: Sequence[Mapping[str, Sequence[int]]]) -> dict[str, torch.Tensor]:
        # One extra column so the inputs (all but the last column) keep the requested multiple.
        multiple = self.pad_to_multiple_of
        batch = pad_streams(features, None)
        length = batch["input_ids"].shape[1]
        target_length = -(-(length - 1) // multiple) * multiple + 1 if multiple else length
        if target_length > length:
            batch = {name: torch.nn.functional.pad(t, (target_length - length, 0)) for name, t in batch.items()}
        input_ids, mask = batch["input_ids"], batch["attention_mask"]
        valid = mask[:, :-1].bool() & (input_ids[:, 1:] >= self.num_special_tokens)
        out = {name: t[:, :-1] for name, t in batch.items()}
        out["labels"] = torch.where(valid, input_ids[:, 1:], -100)
        out["behavior_labels"] = torch.where(valid, batch["behavior_ids"][:, 1:], -100)
        return out


@dataclass
class DataCollatorWithNextItemTargets:
    """A Cloze batch plus the same rows as left-to-right next-item targets, under ``next_item_`` keys.

    For the bidirectional model's auxiliary next-item loss (``SeqBertConfig.next_item_loss_weight``):
    ``cloze`` masks the rows as usual; ``next_item`` (:class:`DataCollatorForNextItemPrediction`) gives
    ``next_item_input_ids`` … ``next_item_labels`` of the unmasked rows (its event-type labels are
    left out: the auxiliary loss is over items only). Epochs, generator state and the expected label
    count are the Cloze collator's.
    """

    cloze: DataCollatorForMaskedBehaviorModeling
    next_item: DataCollatorForNextItemPrediction

    def set_epoch(self, epoch: int) -> None:
        self.cloze.set_epoch(epoch)

    def state_dict(self) -> dict:
        return self.cloze.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.cloze.load_state_dict(state)

    def expected_labels_per_row(self, known_items: np.ndarray) -> np.ndarray:
        return self.cloze.expected_labels_per_row(known_items)

    def __call__(self, features: Sequence[Mapping[str, Sequence[int]]]) -> dict[str, torch.Tensor]:
        batch = self.cloze(features)
        targets = self.next_item(features)
        batch.update({f"next_item_{name}": value for name, value in targets.items() if name != "behavior_labels"})
        return batch


@dataclass
class DataCollatorWithLeftPadding:
    """Left-pads the id streams and stacks scalar fields (``labels``, ``target_ids``) as tensors."""

    scalar_fields: tuple[str, ...] = ("labels", "target_ids")
    pad_to_multiple_of: int | None = 8

    def __call__(self, features: Sequence[Mapping[str, Sequence[int] | int]]) -> dict[str, torch.Tensor]:
        batch = pad_streams(features, self.pad_to_multiple_of)
        for name in self.scalar_fields:
            if name in features[0]:
                batch[name] = torch.as_tensor([feature[name] for feature in features])
        return batch


__all__ = [
    "DataCollatorForMaskedBehaviorModeling", "DataCollatorForNextItemPrediction", "DataCollatorWithLeftPadding",
    "DataCollatorWithNextItemTargets", "pad_left",
    "known_items_per_row", "pad_streams", "random_prefixes",
]
