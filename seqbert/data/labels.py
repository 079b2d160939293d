"""Fine-tuning labels built from the future, inputs from the past.

Every task takes a cutoff time: the model sees only events strictly before it, the label comes
only from ``[cutoff, cutoff + horizon)``. Validation should use an earlier cutoff than test, and a
model pretrained for a task must not have seen events at or after that task's test cutoff.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from .arrow import element_positions, from_arrow, list_offsets, to_arrow
from .splits import history_before


def user_purchase_labels(
    sequences: Dataset, *, cutoff: int, horizon_seconds: int, min_history: int = 1, positive_event: str = "purchase"
) -> Dataset:
    """One row per user with at least ``min_history`` events before ``cutoff``.

    Columns: the history lists (events before ``cutoff``), ``label`` (1 if the user has a
    ``positive_event`` in ``[cutoff, cutoff + horizon_seconds)``, else 0) and ``cutoff``.
    """
    if horizon_seconds <= 0:
        raise ValueError(f"horizon_seconds must be positive, got {horizon_seconds}.")
    table = to_arrow(sequences)
    history, counts = history_before(table, cutoff)
    timestamps = table.column("timestamps").combine_chunks().flatten().to_numpy()
    is_positive = pc.equal(table.column("event_types").combine_chunks().flatten(), positive_event)
    in_window = (timestamps >= cutoff) & (timestamps < cutoff + horizon_seconds)
    positive = in_window & is_positive.to_numpy(zero_copy_only=False)
    rows, _ = element_positions(list_offsets(table.column("timestamps")))
    labels = np.bincount(rows[positive], minlength=table.num_rows) > 0
    keep = pa.array(counts >= min_history)
    history = history.append_column("label", pa.array(labels.astype(np.int64)))
    history = history.append_column("cutoff", pa.array(np.full(table.num_rows, cutoff, dtype=np.int64)))
    return from_arrow(history.filter(keep))


__all__ = ["user_purchase_labels"]
