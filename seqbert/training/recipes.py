"""``--recipe auto``: one next-item pretraining recipe that sizes itself from the prepared data's statistics.

The fixed part is the recipe measured on Amazon Beauty (Cloze + 4 x left-to-right loss of the same weights,
queried left to right, repeat-aware scoring; BENCHMARKS.md). The data-dependent part is what a fixed recipe
got wrong on other data (issue 25): how many rows a batch holds, how long training lasts, whether the item
loss can afford a full softmax, and how long histories are cut into windows. Every choice, the reason for
it and the statistics it used are recorded in ``results.json`` and the model card; flags given on the
command line override any of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

BASE_RECIPE: dict[str, Any] = {
    "attention_type": "bidirectional",
    "mask_prob": 0.4,
    "last_item_mask_prob": 0.1,
    "next_item_loss_weight": 4.0,
    "next_item_query": "causal",
    "learning_rate": 5e-3,
    "label_smoothing": 0.1,
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_attention_heads": 4,
    "hidden_dropout_prob": 0.2,
    "attention_probs_dropout_prob": 0.2,
    "repeat_bias_buckets": 8,
}
"""Options that do not depend on the data: measured on Amazon Beauty (sessions 4-11 in benchmarks/history)."""

MAX_LENGTH = 50
TARGET_STEPS_PER_EPOCH = 30
"""Batches shrink (down to 64 rows) until an epoch has about this many optimizer steps: a small dataset then
takes more, smaller steps for the same passes over its events."""
MIN_TRAIN_STEPS = 600
"""Beauty's 8 epochs are ~700 steps at batch 256 (its measured schedule, unchanged); on LastFM (1,090 users) validation
NDCG@10 needed ~250-400 steps of batch 64 to level off, where 8 epochs of one row per user were 40 steps."""
MAX_LOGITS_PER_BATCH = 2e8
"""Above this many item scores per batch (rows x events per row x items), the full softmax gives way to a sampled
one (1,024 shared negatives, log-Q corrected): the scores alone would take ~0.8 GB and most of the step."""


@dataclass
class Recipe:
    """Options chosen for a run, with the reason for each and the statistics behind them."""

    name: str
    options: dict[str, Any]
    reasons: dict[str, str] = field(default_factory=dict)
    statistics: dict[str, Any] = field(default_factory=dict)
    overridden: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "options": self.options, "reasons": self.reasons, "statistics": self.statistics,
            "overridden_by_flags": self.overridden,
        }  # fmt: skip


def _power_of_two_at_most(value: float) -> int:
    return 2 ** math.floor(math.log2(max(value, 1.0)))


def auto_recipe(statistics: Mapping[str, Any], window_rows: int | None = None, has_categories: bool = False) -> Recipe:
    """The auto recipe for prepared data whose ``statistics.json`` is ``statistics`` (its ``train`` block).

    ``window_rows``: the number of training windows at :data:`MAX_LENGTH` with stride ``MAX_LENGTH // 2`` (what
    ``encode_for_pretraining`` makes); estimated from the events when not given. ``has_categories``: the train
    split has item categories (then a learned category embedding is added, ``--item_categories``).
    """
    train = statistics.get("train") or statistics
    users, items, events = int(train["users"]), int(train["items"]), int(train["events"])
    lengths = train.get("sequence_length", {})
    stride = MAX_LENGTH // 2
    if window_rows is None:
        window_rows = max(users, math.ceil(events / stride))
    mean_length = min(events / max(users, 1), MAX_LENGTH)
    options = dict(BASE_RECIPE)
    reasons = {key: "fixed: the recipe measured on Amazon Beauty" for key in BASE_RECIPE}

    options["max_length"] = MAX_LENGTH
    reasons["max_length"] = (
        f"{MAX_LENGTH} events of context (train length p50 {lengths.get('p50', 0):.0f}, p95 {lengths.get('p95', 0):.0f}); "
        "longer histories train as windows max_length // 2 events apart (--window_stride), so every event is a target"
    )

    batch = int(min(256, max(64, _power_of_two_at_most(window_rows / TARGET_STEPS_PER_EPOCH))))
    options["per_device_batch_size"] = batch
    reasons["per_device_batch_size"] = (
        f"{window_rows:,} training rows / {TARGET_STEPS_PER_EPOCH} steps per epoch, as a power of two in [64, 256]"
    )
    logits = batch * mean_length * items
    if logits > MAX_LOGITS_PER_BATCH:
        options["loss_type"], options["num_negatives"] = "sampled", 1024
        reasons["loss_type"] = f"sampled softmax: a full one would score {logits:.2g} item logits per batch"
    else:
        options["loss_type"] = "full"
        reasons["loss_type"] = f"full softmax: {logits:.2g} item logits per batch"
    if has_categories:
        options["item_categories"] = True
        reasons["item_categories"] = "the data has item categories: a learned category embedding (+64 % NDCG@10 on Beauty)"
    options["min_train_steps"] = MIN_TRAIN_STEPS
    reasons["min_train_steps"] = (
        f"8 epochs, or more to reach {MIN_TRAIN_STEPS} optimizer steps; early stopping on validation NDCG@10 ends it sooner"
    )
    used = {
        "users": users, "items": items, "events": events, "sequence_length": dict(lengths), "window_rows": window_rows,
        "has_categories": has_categories,
    }  # fmt: skip
    return Recipe(name="auto", options=options, reasons=reasons, statistics=used)


def explicit_options(argv: Sequence[str]) -> set[str]:
    """Option names given on a command line (``--name value``, ``--name=value`` or a bare ``--flag``)."""
    return {token[2:].split("=", 1)[0] for token in argv if token.startswith("--")}


def recipe_arguments(recipe: Recipe, argv: Sequence[str]) -> list[str]:
    """``argv`` with the recipe's options put before it, leaving out every option ``argv`` sets itself (the
    command line wins); records the overridden names on the recipe."""
    given = explicit_options(argv)
    recipe.overridden = sorted(name for name in recipe.options if name in given)
    prefix: list[str] = []
    for name, value in recipe.options.items():
        if name in given:
            continue
        prefix += [f"--{name}"] if value is True else [f"--{name}", str(value)]
    return [*prefix, *argv]


__all__ = ["BASE_RECIPE", "Recipe", "auto_recipe", "explicit_options", "recipe_arguments"]
