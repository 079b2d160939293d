"""How long a run trains: epochs, optimizer steps and validation frequency, sized by the data when not given.

A fixed count of epochs hides how little some datasets train: 8 epochs of 1,000 users at batch 256 are 32
optimizer steps, while 8 epochs of 22,000 users are 700. Pretraining therefore trains at least
``--min_train_steps`` optimizer steps (and at least its base epochs) unless ``--num_epochs`` or
``--max_steps`` say otherwise; early stopping on validation ends a run that stops improving sooner.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

MAX_EPOCHS = 2000
"""Upper bound of a data-sized schedule (a handful of training rows would otherwise ask for thousands of epochs)."""
STEPS_PER_VALIDATION = 20
"""With short epochs, validate about every this many optimizer steps rather than every epoch."""


@dataclass(frozen=True)
class TrainingSchedule:
    """The resolved length of a run, and why it is that long (recorded in results.json and the logs)."""

    num_epochs: int
    total_steps: int
    updates_per_epoch: int
    eval_every_epochs: int
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def training_schedule(
    num_batches: int,
    *,
    num_processes: int = 1,
    gradient_accumulation_steps: int = 1,
    num_epochs: int | None = None,
    max_steps: int | None = None,
    eval_every_epochs: int | None = None,
    base_epochs: int = 50,
    min_steps: int = 0,
) -> TrainingSchedule:
    """Epochs, optimizer steps and validation frequency of a run over ``num_batches`` batches per epoch (all
    processes together).

    Explicit ``num_epochs`` / ``max_steps`` win. Otherwise the run trains ``base_epochs`` epochs, or more when
    that is fewer than ``min_steps`` optimizer steps (at most :data:`MAX_EPOCHS`). ``eval_every_epochs`` defaults
    to every epoch, or every few epochs when an epoch is shorter than :data:`STEPS_PER_VALIDATION` steps.
    """
    updates = max(1, math.ceil(num_batches / num_processes / gradient_accumulation_steps))
    if num_epochs is not None:
        epochs, reason = num_epochs, f"--num_epochs {num_epochs}"
    elif max_steps is not None:
        epochs, reason = math.ceil(max_steps / updates), f"--max_steps {max_steps}"
    elif base_epochs * updates >= min_steps:
        epochs, reason = base_epochs, f"{base_epochs} epochs ({base_epochs * updates} steps >= {min_steps} minimum)"
    else:
        epochs = min(math.ceil(min_steps / updates), MAX_EPOCHS)
        reason = f"{epochs} epochs: at least {min_steps} optimizer steps of {updates} per epoch"
    total = max_steps if max_steps is not None else epochs * updates
    every = eval_every_epochs or max(1, round(STEPS_PER_VALIDATION / updates))
    return TrainingSchedule(
        num_epochs=epochs, total_steps=total, updates_per_epoch=updates, eval_every_epochs=every, reason=reason
    )


__all__ = ["MAX_EPOCHS", "STEPS_PER_VALIDATION", "TrainingSchedule", "training_schedule"]
