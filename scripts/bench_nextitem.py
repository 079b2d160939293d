#!/usr/bin/env python
"""Next-item benchmark under the strict protocol: prepare → train every model × seed → evaluate → report.

Protocol (fixed; written into every JSON line): leave-one-out per user (last item test, second-to-last
validation, the rest train); **full ranking** over every item of the training vocabulary, ties counted
against the target, history items kept (the history-removed variant and sampled metrics over 100
popularity-sampled negatives are extra, labelled columns); model selection and early stopping on
validation NDCG@10 only; bootstrap 95 % intervals over users; several seeds, mean ± std.

Every model is trained by the public entry point (``python -m seqbert.training.pretrain``, which is what
``seqbert pretrain`` runs) on data made by ``seqbert prepare``, and every model and baseline is ranked by
the same evaluator (``seqbert.evaluation``). Output: one JSON line per (model, seed), one ``aggregate``
line per model, ``results.jsonl`` and ``validation_ndcg_vs_time.png`` in ``--work-dir``.

Example (Amazon Beauty, the S3-Rec release)::

    python scripts/bench_nextitem.py ../shared/data/amazon_s3rec/Beauty.txt --dataset-format amazon_s3rec \\
        --work-dir runs/beauty --time-budget-minutes 60 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger("bench_nextitem")

# Recipes: the options each model is trained with (on top of the common ones below). "seqbert" is the
# bidirectional masked-behavior model (BERT4Rec-style Cloze, plus 4 x the auxiliary left-to-right next-item
# loss of the same weights, queried through that left-to-right pass); "seqbert-causal" the same encoder and
# hyperparameters left-to-right only, with a full-softmax next-item loss at every position (SASRec-style, the
# strong baseline the literature recommends). Both score with the learned repeat-aware term (8 recency buckets),
# which learns from the training targets how likely an item already in the history is to come again. Chosen on
# validation NDCG@10 (BENCHMARKS.md, sessions 4-11).
RECIPES: dict[str, list[str]] = {
    "seqbert": [
        "--attention_type", "bidirectional", "--mask_prob", "0.4", "--last_item_mask_prob", "0.1",
        "--learning_rate", "5e-3", "--label_smoothing", "0.1",
        "--hidden_size", "128", "--intermediate_size", "512", "--num_attention_heads", "4",
        "--hidden_dropout_prob", "0.2", "--attention_probs_dropout_prob", "0.2",
        "--next_item_loss_weight", "4.0", "--next_item_query", "causal", "--repeat_bias_buckets", "8",
    ],
    "seqbert-causal": [
        "--attention_type", "causal", "--learning_rate", "5e-3", "--label_smoothing", "0.1",
        "--hidden_size", "128", "--intermediate_size", "512", "--num_attention_heads", "4",
        "--hidden_dropout_prob", "0.2", "--attention_probs_dropout_prob", "0.2", "--repeat_bias_buckets", "8",
    ],
}  # fmt: skip
# Epochs the learning-rate schedule spans (cosine to zero), unless --max-epochs is given. On Beauty both recipes
# peak on validation within 8 epochs, and a schedule stretched over a longer budget overfits (BENCHMARKS.md).
RECIPE_EPOCHS = {"seqbert": 8, "seqbert-causal": 8}
METRIC_KEYS = ("ndcg@5", "ndcg@10", "ndcg@20", "hr@5", "hr@10", "hr@20", "mrr@10")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="Event log in a format `seqbert prepare` reads (e.g. Beauty.txt).")
    parser.add_argument("--dataset-format", default=None, help="Public-dataset format name for `seqbert prepare` (e.g. amazon_s3rec).")
    parser.add_argument(
        "--format-option", action="append", metavar="NAME=VALUE",
        help="Passed to `seqbert prepare --format-option` (repeatable), e.g. attribute_index=all for every S3-Rec "
        "item attribute (then train with --item_categories --item_category_separator '|').",
    )
    parser.add_argument("--work-dir", required=True, help="Folder for prepared data, model folders, results and the plot.")
    parser.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES), help="Models to train.")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="Training seeds (one run per model and seed).")
    parser.add_argument("--time-budget-minutes", type=float, default=60.0, help="Wall-time budget of each training run (validation included).")
    parser.add_argument(
        "--max-epochs", type=int, default=None,
        help="Epochs of every run; the learning-rate schedule decays over them, or over the time budget if that ends "
        "training first. Default: each recipe's own (8 for both; longer schedules overfit on Beauty).",
    )
    parser.add_argument("--patience", type=int, default=40, help="Early stopping: validations without improvement of NDCG@10.")
    parser.add_argument("--max-length", type=int, default=50, help="Most recent events per sequence (+ the appended mask).")
    parser.add_argument("--batch-size", type=int, default=256, help="Training sequences per batch.")
    parser.add_argument("--parallel", type=int, default=1, help="Training runs at a time (e.g. several on one GPU; keep 1 on a small CPU).")
    parser.add_argument("--threads-per-run", type=int, default=None, help="OMP/torch threads per training run (default: CPU cores / parallel).")
    parser.add_argument("--sampled-negatives", type=int, default=100, help="Negatives per user for the labelled sampled-metrics column (0: skip).")
    parser.add_argument("--bootstrap", type=int, default=1000, help="Bootstrap resamples for the 95%% intervals.")
    parser.add_argument("--extra-train-args", default="", help="Extra options appended to every training command (quoted string).")
    parser.add_argument("--skip-training", action="store_true", help="Only evaluate model folders that already exist in --work-dir.")
    parser.add_argument(
        "--next-item-query", default=None, choices=["mask", "causal", "mask+causal"],
        help="Evaluate the bidirectional folders with this next-item query instead of their own (see `seqbert pretrain "
        "--next_item_query`); their validation NDCG@10 is then recomputed with it (the one from training is kept as "
        "validation_ndcg@10_training_query), so queries are compared on validation. To early-stop on a query, pass "
        "--next_item_query in --extra-train-args instead.",
    )
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace, folder: Path) -> None:
    """`seqbert prepare` with the benchmark protocol (no filtering: the release is already 5-core)."""
    if (folder / "protocol.json").exists():
        return
    command = [sys.executable, "-m", "seqbert.cli", "prepare", args.data, "--output-dir", str(folder),
               "--split", "leave_one_out", "--min-user-events", "1", "--min-item-support", "1"]  # fmt: skip
    if args.dataset_format:
        command += ["--dataset-format", args.dataset_format]
    for option in args.format_option or ():
        command += ["--format-option", option]
    logger.info("prepare: %s", " ".join(command))
    subprocess.run(command, check=True, stdout=sys.stderr)  # stdout carries only the JSON lines


def epochs_of(args: argparse.Namespace, model: str) -> int:
    """Epochs a run of ``model`` trains (and its schedule spans): --max-epochs, else the recipe's own."""
    return args.max_epochs or RECIPE_EPOCHS[model]


def train_command(args: argparse.Namespace, data_dir: Path, model: str, seed: int, output_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "seqbert.training.pretrain", "--data_dir", str(data_dir), "--output_dir", str(output_dir),
        "--overwrite_output_dir",
        "--seed", str(seed), "--max_length", str(args.max_length), "--per_device_batch_size", str(args.batch_size),
        "--eval_batch_size", "1024", "--num_epochs", str(epochs_of(args, model)), "--time_budget_minutes", str(args.time_budget_minutes),
        "--early_stopping_patience", str(args.patience), "--logging_steps", "50", "--report_to", "jsonl",
        *RECIPES[model], *args.extra_train_args.split(),
    ]  # fmt: skip


def train_all(args: argparse.Namespace, data_dir: Path, runs: list[tuple[str, int, Path]]) -> None:
    """Run the training commands, ``--parallel`` at a time, each with its own log file."""
    from seqbert.training.parallel import run_in_parallel

    threads = args.threads_per_run or max(1, (os.cpu_count() or 1) // args.parallel)
    commands = [(train_command(args, data_dir, model, seed, folder), folder) for model, seed, folder in runs]
    run_in_parallel(commands, args.parallel, threads=threads, poll_seconds=2.0)


def validation_curve(folder: Path) -> list[tuple[float, float]]:
    """(wall seconds, validation NDCG@10) of every validation in a run's logs."""
    points = []
    for line in (folder / "logs" / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "val_ndcg@10" in record:
            points.append((record["wall_seconds"], record["val_ndcg@10"]))
    return points


def evaluate_all(args: argparse.Namespace, data_dir: Path, runs: list[tuple[str, int, Path]]) -> list[dict]:
    """Rank every model folder and baseline with the same evaluator; one record per (model, seed)."""
    import torch
    from torch.utils.data import DataLoader

    from seqbert import SeqBertForMaskedBehaviorModeling
    from seqbert.baselines import fit_next_item_baselines
    from seqbert.collators import DataCollatorWithLeftPadding
    from seqbert.evaluation import (
        collect_rank_variants,
        collect_ranks,
        model_scorer,
        popularity_negatives,
        ranking_intervals,
    )
    from seqbert.metrics.functional import ranking_metrics
    from seqbert.prepared import PreparedData, encode_for_next_item, encode_for_pretraining
    from seqbert.training.sampling import sorted_by_length

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = PreparedData.load(data_dir)
    tokenizer = data.tokenizer
    test_rows = sorted_by_length(encode_for_next_item(data.splits["test"], tokenizer, args.max_length))  # less padding
    loader = DataLoader(test_rows, batch_size=1024, collate_fn=DataCollatorWithLeftPadding())
    batches = [{k: v.to(device) for k, v in batch.items()} for batch in loader]
    validation_batches = []
    if args.next_item_query:
        validation_rows = sorted_by_length(encode_for_next_item(data.splits["validation"], tokenizer, args.max_length))
        validation_loader = DataLoader(validation_rows, batch_size=1024, collate_fn=DataCollatorWithLeftPadding())
        validation_batches = [{k: v.to(device) for k, v in batch.items()} for batch in validation_loader]
    num_items = tokenizer.vocab_size - tokenizer.num_special_tokens
    targets = np.asarray(test_rows["target_ids"])
    negatives = None
    if args.sampled_negatives:
        train_ids = encode_for_pretraining(data.splits["train"], tokenizer, args.max_length)
        flat = train_ids.with_format("arrow")["input_ids"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
        counts = np.bincount(flat, minlength=tokenizer.vocab_size)[tokenizer.num_special_tokens :]
        negatives = popularity_negatives(counts, targets, args.sampled_negatives, seed=0)

    def score(name: str, scorer, seed: int | None, extra: dict) -> dict:
        started = time.perf_counter()
        variants = collect_rank_variants(scorer, batches, num_special_tokens=tokenizer.num_special_tokens, sampled_negatives=negatives)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        record = {
            "model": name, "seed": seed,
            "protocol": "leave-one-out; full ranking over all training-vocabulary items; pessimistic ties; history kept",
            "test": ranking_metrics(variants["full"], num_items=num_items),
            "test_ci95": ranking_intervals(variants["full"], num_items=num_items, n_resamples=args.bootstrap),
            "test_history_removed": ranking_metrics(variants["history_removed"], num_items=num_items),
            "eval_seconds_full_catalog": round(seconds, 3), "eval_users": int(len(targets)), "catalog_items": num_items,
            **extra,
        }  # fmt: skip
        if "sampled" in variants:
            record[f"test_sampled_{args.sampled_negatives}_popularity_negatives"] = ranking_metrics(
                variants["sampled"], num_items=args.sampled_negatives
            )
        return record

    records = []
    for name, scorer in fit_next_item_baselines(data.splits["train"], tokenizer).items():
        records.append(score(name, lambda batch, s=scorer: s({k: v.cpu() for k, v in batch.items()}).to(device), None, {}))
    for model_name, seed, folder in runs:
        model = SeqBertForMaskedBehaviorModeling.from_pretrained(folder).to(device).eval()
        summary = json.loads((folder / "results.json").read_text())
        epochs, wall = summary.get("epochs_completed") or 0, summary.get("wall_seconds") or 0.0
        extra = {
            "validation_ndcg@10": summary["metrics"]["validation"]["seqbert"]["ndcg@10"],
            "epochs": epochs, "best_step": summary.get("best_step"), "global_step": summary.get("global_step"),
            "train_wall_seconds": wall, "peak_rss_mib": summary.get("peak_rss_mib"), "device": summary.get("device"),
            "train_sequences_per_second_incl_validation": round(summary["train_sequences"] * epochs / wall, 1) if wall else None,
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "recipe": " ".join([*RECIPES[model_name], *args.extra_train_args.split()]),
            "max_epochs": epochs_of(args, model_name),
        }  # fmt: skip
        if args.next_item_query and model.config.attention_type == "bidirectional":
            model.set_next_item_query(args.next_item_query)
            ranks, _ = collect_ranks(model_scorer(model), validation_batches, num_special_tokens=tokenizer.num_special_tokens)
            extra["validation_ndcg@10_training_query"] = extra["validation_ndcg@10"]
            extra["validation_ndcg@10"] = ranking_metrics(ranks, num_items=num_items)["ndcg@10"]
        extra["next_item_query"] = model.config.next_item_query
        records.append(score(model_name, model_scorer(model), seed, extra))
    return records


def aggregate(records: list[dict]) -> list[dict]:
    """Mean ± std over seeds of every test metric, per model."""
    out = []
    for name in dict.fromkeys(record["model"] for record in records):
        group = [record for record in records if record["model"] == name]
        summary = {"model": name, "aggregate": True, "seeds": [record["seed"] for record in group]}
        for key in METRIC_KEYS:
            values = np.array([record["test"][key] for record in group])
            summary[key] = {"mean": round(float(values.mean()), 5), "std": round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 5)}
        out.append(summary)
    return out


def plot_curves(runs: list[tuple[str, int, Path]], path: Path) -> None:
    """Validation NDCG@10 against training wall time, one line per (model, seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.2))
    colors: dict[str, str] = {}
    for model_name, _seed, folder in runs:
        points = validation_curve(folder)
        if not points:
            continue
        first = model_name not in colors
        color = colors.setdefault(model_name, f"C{len(colors)}")
        axis.plot([p[0] / 60 for p in points], [p[1] for p in points], color=color, alpha=0.8, lw=1.2,
                  label=model_name if first else None)  # fmt: skip
    axis.set_xlabel("training wall time (minutes)")
    axis.set_ylabel("validation NDCG@10 (full ranking)")
    axis.set_title("Validation NDCG@10 during training (one line per seed)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    data_dir = work / "prepared"
    prepare(args, data_dir)
    runs = [(model, seed, work / "models" / f"{model}-seed{seed}") for model in args.models for seed in args.seeds]
    if not args.skip_training:
        train_all(args, data_dir, runs)
    records = evaluate_all(args, data_dir, runs)
    records += aggregate([record for record in records if record["seed"] is not None])
    with open(work / "results.jsonl", "w") as f:
        for record in records:
            line = json.dumps(record)
            print(line)
            f.write(line + "\n")
    plot_curves(runs, work / "validation_ndcg_vs_time.png")
    logger.info("wrote %s and %s", work / "results.jsonl", work / "validation_ndcg_vs_time.png")
    return records


if __name__ == "__main__":
    main()
