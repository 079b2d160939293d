"""seqbert metrics: the functional API and offline loading of the local evaluate modules.

``seqbert.metrics.functional`` (re-exported here) depends on numpy only. :func:`load` imports
``evaluate`` lazily, so importing this package does not pay for ``evaluate``/``datasets``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .functional import (
    bootstrap_classification_intervals,
    bootstrap_interval,
    brier,
    calibrated_report,
    classification_metrics,
    expected_calibration_error,
    fit_temperature,
    grouped_auc,
    grouped_auc_details,
    log_loss,
    pr_auc,
    probabilities_to_logits,
    ranking_metrics,
    ranks_from_scores,
    roc_auc,
    temperature_scale,
)


if TYPE_CHECKING:
    import evaluate


METRIC_NAMES: tuple[str, ...] = ("classification", "ranking")


def load(name: str, **kwargs: Any) -> evaluate.EvaluationModule:
    """Load one of seqbert's evaluate modules from its folder inside the package (works offline).

    Args:
        name: ``"ranking"`` or ``"classification"``.
        **kwargs: forwarded to ``evaluate.load`` (for example ``experiment_id``, ``keep_in_memory``,
            ``num_process``/``process_id``).

    Returns:
        The ``evaluate.EvaluationModule``; call ``.compute(...)`` on it.
    """
    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown seqbert metric {name!r}; choose one of {list(METRIC_NAMES)}.")
    import evaluate

    return evaluate.load(str(Path(__file__).resolve().parent / name), **kwargs)


__all__ = [
    "METRIC_NAMES",
    "bootstrap_classification_intervals",
    "bootstrap_interval",
    "brier",
    "calibrated_report",
    "classification_metrics",
    "expected_calibration_error",
    "fit_temperature",
    "grouped_auc",
    "grouped_auc_details",
    "load",
    "log_loss",
    "pr_auc",
    "probabilities_to_logits",
    "ranking_metrics",
    "ranks_from_scores",
    "roc_auc",
    "temperature_scale",
]
