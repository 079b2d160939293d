"""Writing a trained model as a Hub-shaped folder: weights, code, tokenizer, results, plots, card."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from ..hub import render_model_card
from ..plots import plot_curves, plot_metric_bars
from ..prepared import PreparedData
from ..tokenization_seqbert import BehaviorTokenizer
from .arguments import TrainingArguments
from .loop import read_log

logger = logging.getLogger(__name__)


def metric_rows(metrics: Mapping[str, Mapping[str, Mapping[str, float]]]) -> list[dict[str, Any]]:
    """``{split: {model: {metric: value}}}`` → card rows ``{"model", "split", metric...}``."""
    return [
        {"model": model, "split": split, **{k: v for k, v in values.items() if k != "count"}}
        for split, per_model in metrics.items()
        for model, values in per_model.items()
    ]


def write_model_folder(
    accelerator: Accelerator,
    model,
    tokenizer: BehaviorTokenizer,
    *,
    args: TrainingArguments,
    data: PreparedData,
    summary: dict[str, Any],
    kind: str,
    extra_args: Mapping[str, Any],
    card_context: Mapping[str, Any] | None = None,
    headline_metric: str = "ndcg@10",
    extra_plots: list[str] | None = None,
) -> Path:
    """Save everything a user or the Hub needs into ``args.output_dir`` (main process only); ``extra_plots``: PNGs
    the caller already wrote into it, shown in the card after the training curves."""
    folder = Path(args.output_dir)
    model.save_pretrained(folder, is_main_process=True, save_function=accelerator.save)
    tokenizer.save_pretrained(folder)
    (folder / "results.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (folder / "split_protocol.json").write_text(json.dumps(data.protocol, indent=2, default=str) + "\n")

    records = read_log(folder)
    plots = []
    curve_keys = [key for key in ("train_loss", f"val_{headline_metric}") if any(key in r for r in records)]
    if curve_keys:
        plot_curves(records, x="step", ys=curve_keys, path=folder / "training_curves.png", title=f"SeqBERT {kind}",
                    marked_x=summary.get("best_step"))  # fmt: skip
        plots.append("training_curves.png")
    rows = metric_rows(summary["metrics"])
    test_rows = [row for row in rows if row["split"] == "test" and headline_metric in row]
    if test_rows:
        plot_metric_bars(test_rows, metric=headline_metric, path=folder / "test_metrics.png", title=f"Test {headline_metric}")
        plots.append("test_metrics.png")

    plots += [name for name in extra_plots or () if (folder / name).is_file()]
    context = {
        "model_name": folder.name,
        "dataset_name": data.protocol.get("source_name", "custom behavior log"),
        "data_stats": data.statistics,
        "split_protocol": data.protocol,
        "training_args": {**asdict(args), **dict(extra_args)},
        "metrics": rows,
        "model_config": model.config.to_diff_dict(),
        "plots": plots,
        "compute": {
            "device": summary.get("device"),
            "num_processes": summary.get("num_processes"),
            "mixed_precision": summary.get("mixed_precision"),
            "wall_seconds": summary.get("wall_seconds"),
        },
        **dict(card_context or {}),
    }
    render_model_card(folder, kind=kind, context=context)
    logger.info("Saved %s model folder to %s", kind, folder)
    return folder


__all__ = ["metric_rows", "write_model_folder"]
