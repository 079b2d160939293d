#!/usr/bin/env python
"""Next-item benchmark under the strict protocol, over one or several datasets: prepare → train every
model × seed → evaluate → one table (datasets as rows, models as columns).

Protocol (fixed; written into every JSON line): leave-one-out per user (last item test, second-to-last
validation, the rest train); **full ranking** over every item of the training vocabulary, ties counted
against the target, history items kept (the history-removed variant and sampled metrics over 100
popularity-sampled negatives are extra, labelled columns); model selection and early stopping on
validation NDCG@10 only; bootstrap 95 % intervals over users; several seeds, mean ± std.

Every model is trained by the public entry point (``python -m seqbert.training.pretrain``, which is what
``seqbert pretrain`` runs) with ``--recipe auto`` (seqbert.training.recipes: the recipe measured on Beauty,
with batch size, loss, windows over long histories and the schedule sized from each dataset's statistics),
on data made by ``seqbert prepare``, and every model and baseline is ranked by the same evaluator
(``seqbert.evaluation``). Output per dataset in ``--work-dir/<dataset>/``: ``results.jsonl`` (one JSON line
per (model, seed), one ``aggregate`` line per model) and ``validation_ndcg_vs_steps.png``; over all datasets
``--work-dir/summary.jsonl`` (one line per dataset, model and seed) and the printed table.

Datasets are files in any format ``seqbert prepare`` reads (with its column-mapping options) or the names of
the shared benchmark sets (``beauty``, ``lastfm``, ``yelp``, ``taobao_histories``, read from --shared-data).

Example (all four shared sets, one seed)::

    python scripts/bench_nextitem.py beauty lastfm yelp taobao_histories --work-dir runs/nextitem --seeds 0
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

from seqbert.training.arguments import RECIPES_DIR

logger = logging.getLogger("bench_nextitem")

# The models, as recipe files (recipes/): "seqbert" is the bidirectional masked-behavior model of the auto recipe
# (BERT4Rec-style Cloze plus 4 x the auxiliary left-to-right loss of the same weights, queried through that
# left-to-right pass, repeat-aware scoring); "seqbert-causal" the same recipe left-to-right only, with a next-item
# loss at every position (SASRec-style, the strong baseline the literature recommends). Everything else is the auto
# recipe's choice for the data (recorded in each model folder's results.json and card).
RECIPE_FILES = {"seqbert": "nextitem_auto", "seqbert-causal": "nextitem_auto_causal"}
RECIPES: dict[str, list[str]] = {model: ["--config", str(RECIPES_DIR / f"{name}.yaml")] for model, name in RECIPE_FILES.items()}
RECBOLE_MODELS = {"recbole-sasrec": "SASRec", "recbole-bert4rec": "BERT4Rec"}
"""RecBole 1.2.1 baselines (trained by scripts/recbole_nextitem_runner.py in the venv of --recbole-python), the same
size as the recipe (hidden 128, 2 layers, 4 heads, inner 512, dropout 0.2, max length 50), RecBole's defaults
otherwise (full-softmax CE over every prefix, Adam 1e-3, batch 256; BERT4Rec mask ratio 0.2)."""
ALL_MODELS = [*RECIPES, *RECBOLE_MODELS]
SHARED_DATASETS: dict[str, tuple[str, str]] = {
    "beauty": ("amazon_s3rec/Beauty.txt", "amazon_s3rec"),
    "lastfm": ("s3rec_lastfm_yelp/LastFM.txt", "amazon_s3rec"),
    "yelp": ("s3rec_lastfm_yelp/Yelp.txt", "amazon_s3rec"),
    "taobao_histories": ("taobao_userbehavior_head983/complete_histories_head_983users.csv", "taobao"),
}
"""Names of the shared benchmark sets: (path under --shared-data, `seqbert prepare --dataset-format`)."""
PREPARE_OPTIONS = ("format", "column", "column_names", "delimiter", "timestamp_unit", "event_alias")
"""`seqbert prepare` options this script passes through for datasets given as files."""
METRIC_KEYS = ("ndcg@5", "ndcg@10", "ndcg@20", "hr@5", "hr@10", "hr@20", "mrr@10")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "data", nargs="+",
        help=f"Datasets: event-log files in a format `seqbert prepare` reads (named by the file's stem) and/or the shared "
        f"sets {', '.join(SHARED_DATASETS)} (read from --shared-data).",
    )  # fmt: skip
    parser.add_argument(
        "--shared-data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"),
        help="Folder of the shared benchmark sets (default: ../shared/data beside the repository).",
    )  # fmt: skip
    parser.add_argument("--dataset-format", default=None, help="Public-dataset format of the files given as data, for `seqbert prepare` (e.g. amazon_s3rec). Default: none.")
    parser.add_argument(
        "--format-option", action="append", metavar="NAME=VALUE",
        help="Passed to `seqbert prepare --format-option` (repeatable), e.g. attribute_index=all for every S3-Rec "
        "item attribute (then train with --item_categories --item_category_separator '|'). Default: none.",
    )
    group = parser.add_argument_group("column mapping of files given as data (as `seqbert prepare`; default: its own)")
    group.add_argument("--format", default=None, help="csv | tsv | parquet | jsonl.")
    group.add_argument("--column", action="append", metavar="CANONICAL=FILE_COLUMN", help="Map a canonical column to the file's (repeatable).")
    group.add_argument("--column-names", default=None, help="Comma-separated names for a file without a header.")
    group.add_argument("--delimiter", default=None, help="Field delimiter.")
    group.add_argument("--timestamp-unit", default=None, help="auto | s | ms | iso.")
    group.add_argument("--event-alias", action="append", metavar="RAW=CANONICAL", help="Map a raw event name to a canonical one (repeatable).")
    parser.add_argument("--work-dir", required=True, help="Folder for prepared data, model folders, results and plots (one subfolder per dataset).")
    parser.add_argument(
        "--models", nargs="+", default=list(RECIPES), choices=ALL_MODELS,
        help=f"Models to train (default: {' '.join(RECIPES)}). recbole-sasrec / recbole-bert4rec need --recbole-python.",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="Training seeds, one run per model and seed (default: 0 1 2).")
    parser.add_argument("--time-budget-minutes", type=float, default=60.0, help="Wall-time cap of each training run, validation included (default: 60).")
    parser.add_argument(
        "--max-epochs", type=int, default=None,
        help="Epochs of every run (the learning-rate schedule decays over them). Default: the auto recipe's schedule, "
        "sized by the data (8 epochs, or more to reach 600 optimizer steps).",
    )
    parser.add_argument("--patience", type=int, default=10, help="Early stopping: validations without improvement of NDCG@10 (default: 10).")
    parser.add_argument("--max-length", type=int, default=None, help="Events per training window and evaluation history (default: the recipe's, 50).")
    parser.add_argument("--batch-size", type=int, default=None, help="Training sequences per batch (default: the recipe's, sized by the data).")
    parser.add_argument("--parallel", type=int, default=1, help="Training runs at a time (e.g. several on one GPU; default: 1).")
    parser.add_argument("--threads-per-run", type=int, default=None, help="OMP/torch threads per training run (default: CPU cores / parallel).")
    parser.add_argument("--sampled-negatives", type=int, default=100, help="Negatives per user for the labelled sampled-metrics column (0: skip; default: 100).")
    parser.add_argument("--bootstrap", type=int, default=1000, help="Bootstrap resamples for the 95%% intervals (default: 1000).")
    parser.add_argument("--extra-train-args", default="", help="Extra options appended to every training command (quoted string; they override the recipe).")
    parser.add_argument(
        "--recbole-python", default="/tmp/recbole-venv/bin/python",
        help="Python of a separate venv with recbole==1.2.1 (see docs/benchmarks.md), for the recbole-* models "
        "(default: /tmp/recbole-venv/bin/python).",
    )
    parser.add_argument("--recbole-max-epochs", type=int, default=300, help="Epoch cap of the RecBole runs; --patience counts their epochs (default: 300).")
    parser.add_argument("--reuse-finished", action="store_true", help="Train only the runs whose folder holds no finished result; evaluate all (default: retrain every run).")
    parser.add_argument("--skip-training", action="store_true", help="Only evaluate the finished model folders in --work-dir (runs without one are left out).")
    parser.add_argument("--results-file", default=None, help="Also write the summary lines (dataset, model, seed, test_ndcg@10, test_hr@10, train_seconds) here, replacing it.")
    parser.add_argument(
        "--next-item-query", default=None, choices=["mask", "causal", "mask+causal"],
        help="Evaluate the bidirectional folders with this next-item query instead of their own (see `seqbert pretrain "
        "--next_item_query`); their validation NDCG@10 is then recomputed with it (the one from training is kept as "
        "validation_ndcg@10_training_query), so queries are compared on validation. To early-stop on a query, pass "
        "--next_item_query in --extra-train-args instead.",
    )
    args = parser.parse_args(argv)
    args.datasets = [dataset_source(args, name) for name in args.data]
    names = [source["name"] for source in args.datasets]
    if len(set(names)) != len(names):
        parser.error(f"two datasets share a name: {names} (rename a file).")
    return args


def dataset_source(args: argparse.Namespace, data: str) -> dict:
    """Name, file and `seqbert prepare` options of one dataset argument (a shared set's name or a file)."""
    if data in SHARED_DATASETS:
        path, dataset_format = SHARED_DATASETS[data]
        file = Path(args.shared_data) / path
        if not file.exists():
            raise SystemExit(f"{data}: {file} not found; point --shared-data at the folder holding the shared sets.")
        return {"name": data, "file": str(file), "options": ["--dataset-format", dataset_format]}
    file = Path(data)
    if not file.exists():
        raise SystemExit(f"{data}: no such file, and not one of the shared sets {', '.join(SHARED_DATASETS)}.")
    options = ["--dataset-format", args.dataset_format] if args.dataset_format else []
    for option in args.format_option or ():
        options += ["--format-option", option]
    for name in PREPARE_OPTIONS:
        values = getattr(args, name)
        for value in values if isinstance(values, list) else [values] if values is not None else []:
            options += [f"--{name.replace('_', '-')}", value]
    return {"name": file.stem.lower(), "file": str(file), "options": options}


def prepare(source: dict, folder: Path) -> None:
    """`seqbert prepare` with the benchmark protocol (no filtering: leave-one-out over every user and item)."""
    if (folder / "protocol.json").exists():
        return
    command = [sys.executable, "-m", "seqbert.cli", "prepare", source["file"], "--output-dir", str(folder),
               "--split", "leave_one_out", "--min-user-events", "1", "--min-item-support", "1", *source["options"]]  # fmt: skip
    logger.info("prepare: %s", " ".join(command))
    subprocess.run(command, check=True, stdout=sys.stderr)  # stdout carries only the JSON lines


def train_command(args: argparse.Namespace, data_dir: Path, model: str, seed: int, output_dir: Path) -> list[str]:
    command = [
        sys.executable, "-m", "seqbert.training.pretrain", "--data_dir", str(data_dir), "--output_dir", str(output_dir),
        "--overwrite_output_dir", "--seed", str(seed), "--eval_batch_size", "1024",
        "--time_budget_minutes", str(args.time_budget_minutes), "--early_stopping_patience", str(args.patience),
        "--logging_steps", "50", "--report_to", "jsonl", *RECIPES[model],
    ]  # fmt: skip
    for flag, value in (("--num_epochs", args.max_epochs), ("--max_length", args.max_length), ("--per_device_batch_size", args.batch_size)):
        if value is not None:
            command += [flag, str(value)]
    return command + args.extra_train_args.split()


def recbole_command(args: argparse.Namespace, data_dir: Path, model: str, seed: int, output_dir: Path, threads: int) -> list[str]:
    """The RecBole runner's command for one run; writes its data (once per dataset), config and spec first."""
    from bench_speed import _yaml, convert_to_atomic, recbole_config

    from seqbert.prepared import PreparedData
    from seqbert.training.recipes import BASE_RECIPE, MAX_LENGTH

    atomic = data_dir.parent / "recbole_data"
    if not (atomic / "seqbert" / "seqbert.inter").exists():
        convert_to_atomic(data_dir, atomic)
    size = argparse.Namespace(
        max_length=args.max_length or MAX_LENGTH, hidden_size=BASE_RECIPE["hidden_size"], num_layers=2,
        num_heads=BASE_RECIPE["num_attention_heads"], inner_size=BASE_RECIPE["intermediate_size"],
        dropout=BASE_RECIPE["hidden_dropout_prob"], epochs=args.recbole_max_epochs, batch_size=args.batch_size or 256,
        learning_rate=1e-3, eval_batch_size=256, seed=seed,
    )  # fmt: skip
    output_dir.mkdir(parents=True, exist_ok=True)
    config_file = output_dir / "recbole.yaml"
    config_file.write_text(_yaml(recbole_config(size)) + "\n")
    spec = {
        "config_file": str(config_file), "model": RECBOLE_MODELS[model], "data_path": str(atomic) + "/",
        "dataset_name": "seqbert", "catalog": PreparedData.load(data_dir).tokenizer.items,
        "max_epochs": args.recbole_max_epochs, "patience": args.patience,
        "time_budget_seconds": args.time_budget_minutes * 60, "threads": threads, "work_dir": str(output_dir),
        "output": str(output_dir / RECBOLE_RESULT),
    }  # fmt: skip
    (output_dir / "spec.json").write_text(json.dumps(spec))
    return [args.recbole_python, str(Path(__file__).with_name("recbole_nextitem_runner.py")), str(output_dir / "spec.json")]


RECBOLE_RESULT = "recbole_result.json"


def finished(model: str, folder: Path) -> bool:
    return (folder / (RECBOLE_RESULT if model in RECBOLE_MODELS else "results.json")).exists()


def train_all(args: argparse.Namespace, runs: list[tuple[Path, str, int, Path]]) -> None:
    """Run the training commands of every dataset in one pool, ``--parallel`` at a time, each with its own log file."""
    from seqbert.training.parallel import run_in_parallel

    threads = args.threads_per_run or max(1, (os.cpu_count() or 1) // args.parallel)
    if args.reuse_finished:
        runs = [run for run in runs if not finished(run[1], run[3])]
    commands = [
        (recbole_command(args, data_dir, model, seed, folder, threads) if model in RECBOLE_MODELS
         else train_command(args, data_dir, model, seed, folder), folder)
        for data_dir, model, seed, folder in runs
    ]  # fmt: skip
    run_in_parallel(commands, args.parallel, threads=threads, poll_seconds=2.0)


def validation_curve(folder: Path) -> list[tuple[int, float]]:
    """(optimizer step, validation NDCG@10) of every validation in a run's logs."""
    if (folder / RECBOLE_RESULT).exists():
        return [(point["step"], point["val_ndcg@10"]) for point in json.loads((folder / RECBOLE_RESULT).read_text())["curve"]]
    points = []
    log = folder / "logs" / "metrics.jsonl"
    for line in log.read_text().splitlines() if log.exists() else []:
        record = json.loads(line)
        if "val_ndcg@10" in record:
            points.append((record["step"], record["val_ndcg@10"]))
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
    from seqbert.training.recipes import MAX_LENGTH
    from seqbert.training.sampling import sorted_by_length

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = PreparedData.load(data_dir)
    tokenizer = data.tokenizer
    max_length = args.max_length or MAX_LENGTH
    test_rows = sorted_by_length(encode_for_next_item(data.splits["test"], tokenizer, max_length))  # less padding
    loader = DataLoader(test_rows, batch_size=1024, collate_fn=DataCollatorWithLeftPadding())
    batches = [{k: v.to(device) for k, v in batch.items()} for batch in loader]
    validation_batches = []
    if args.next_item_query:
        validation_rows = sorted_by_length(encode_for_next_item(data.splits["validation"], tokenizer, max_length))
        validation_loader = DataLoader(validation_rows, batch_size=1024, collate_fn=DataCollatorWithLeftPadding())
        validation_batches = [{k: v.to(device) for k, v in batch.items()} for batch in validation_loader]
    num_items = tokenizer.vocab_size - tokenizer.num_special_tokens
    targets = np.asarray(test_rows["target_ids"])
    negatives = None
    if args.sampled_negatives >= num_items:
        logger.warning("--sampled-negatives %d needs a catalog of more items (%d here): no sampled metrics", args.sampled_negatives, num_items)
    elif args.sampled_negatives:
        train_ids = encode_for_pretraining(data.splits["train"], tokenizer, max_length)
        flat = train_ids.with_format("arrow")["input_ids"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
        counts = np.bincount(flat, minlength=tokenizer.vocab_size)[tokenizer.num_special_tokens :]
        negatives = popularity_negatives(counts, targets, args.sampled_negatives, seed=0)

    def score(name: str, scorer, seed: int | None, extra: dict) -> dict:
        started = time.perf_counter()
        variants = collect_rank_variants(scorer, batches, num_special_tokens=tokenizer.num_special_tokens, sampled_negatives=negatives)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return record_of(name, seed, variants, time.perf_counter() - started, extra)

    def record_of(name: str, seed: int | None, variants: dict[str, np.ndarray], seconds: float | None, extra: dict) -> dict:
        record = {
            "model": name, "seed": seed,
            "protocol": "leave-one-out; full ranking over all training-vocabulary items; pessimistic ties; history kept",
            "test": ranking_metrics(variants["full"], num_items=num_items),
            "test_ci95": ranking_intervals(variants["full"], num_items=num_items, n_resamples=args.bootstrap),
            "test_history_removed": ranking_metrics(variants["history_removed"], num_items=num_items),
            "eval_seconds_full_catalog": None if seconds is None else round(seconds, 3),
            "eval_users": int(len(variants["full"])), "catalog_items": num_items,
            **extra,
        }  # fmt: skip
        if "sampled" in variants:
            record[f"test_sampled_{args.sampled_negatives}_popularity_negatives"] = ranking_metrics(
                variants["sampled"], num_items=args.sampled_negatives
            )
        return record

    records = []
    started = time.perf_counter()
    baselines = fit_next_item_baselines(data.splits["train"], tokenizer)
    fit_seconds = round(time.perf_counter() - started, 2)
    for name, scorer in baselines.items():
        extra = {"train_wall_seconds": fit_seconds, "train_seconds": fit_seconds, "fit_note": "popularity and Markov fitted together"}
        records.append(score(name, lambda batch, s=scorer: s({k: v.cpu() for k, v in batch.items()}).to(device), None, extra))
    for model_name, seed, folder in runs:
        if args.skip_training and not finished(model_name, folder):
            logger.warning("--skip-training: no finished run in %s; left out", folder)
            continue
        if model_name in RECBOLE_MODELS:
            result = json.loads((folder / RECBOLE_RESULT).read_text())
            if result["catalog_items"] != num_items or len(result["test_ranks"]) != len(targets):
                raise SystemExit(f"{folder}: RecBole ranked {len(result['test_ranks'])} users over {result['catalog_items']} "
                                 f"items; this data has {len(targets)} test users and {num_items} items.")  # fmt: skip
            variants = {"full": np.asarray(result["test_ranks"]), "history_removed": np.asarray(result["test_ranks_history_removed"])}
            extra = {key: result[key] for key in ("validation_ndcg@10", "epochs", "best_epoch", "stopped_because", "train_seconds", "wall_seconds", "num_parameters", "train_examples")}
            extra.update(train_wall_seconds=result["wall_seconds"], system="RecBole 1.2.1", recipe=(folder / "recbole.yaml").read_text())
            records.append(record_of(model_name, seed, variants, None, extra))
            continue
        model = SeqBertForMaskedBehaviorModeling.from_pretrained(folder).to(device).eval()
        summary = json.loads((folder / "results.json").read_text())
        epochs, wall = summary.get("epochs_completed") or 0, summary.get("wall_seconds") or 0.0
        extra = {
            "validation_ndcg@10": summary["metrics"]["validation"]["seqbert"]["ndcg@10"],
            "epochs": epochs, "best_step": summary.get("best_step"), "global_step": summary.get("global_step"),
            "train_wall_seconds": wall, "train_seconds": summary.get("train_seconds"), "peak_rss_mib": summary.get("peak_rss_mib"),
            "device": summary.get("device"), "stopped_because": summary.get("stopped_because"),
            "schedule": summary.get("schedule"), "recipe_options": (summary.get("recipe") or {}).get("options"),
            "train_sequences_per_second_incl_validation": round(summary["train_sequences"] * epochs / wall, 1) if wall else None,
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "recipe": " ".join([*RECIPES[model_name], *args.extra_train_args.split()]),
        }  # fmt: skip
        if wall < 0.5 * args.time_budget_minutes * 60:
            logger.info("%s seed %s trained %.1f of %.0f budget minutes: %s", model_name, seed, wall / 60,
                        args.time_budget_minutes, summary.get("stopped_because"))  # fmt: skip
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


def plot_curves(runs: list[tuple[str, int, Path]], path: Path, title: str) -> None:
    """Validation NDCG@10 against optimizer steps, one line per (model, seed)."""
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
        axis.plot([p[0] for p in points], [p[1] for p in points], color=color, alpha=0.8, lw=1.2,
                  label=model_name if first else None)  # fmt: skip
    axis.set_xlabel("optimizer steps")
    axis.set_ylabel("validation NDCG@10 (full ranking)")
    axis.set_title(f"{title}: validation NDCG@10 during training (one line per seed)")
    axis.grid(alpha=0.3)
    if colors:
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


SUMMARY_MODEL_NAMES = {
    "seqbert": "seqbert", "seqbert-causal": "seqbert_causal", "markov": "markov", "popularity": "popularity",
    "recbole-sasrec": "recbole_sasrec", "recbole-bert4rec": "recbole_bert4rec",
}  # fmt: skip


def summary_lines(records: list[dict]) -> list[dict]:
    """One line per (dataset, model, seed) with the headline figures (baselines: seed null)."""
    lines = []
    for record in records:
        if record.get("aggregate"):
            continue
        lines.append({
            "dataset": record["dataset"], "model": SUMMARY_MODEL_NAMES.get(record["model"], record["model"]),
            "seed": record["seed"], "test_ndcg@10": round(record["test"]["ndcg@10"], 5),
            "test_hr@10": round(record["test"]["hr@10"], 5), "train_seconds": record.get("train_seconds"),
        })  # fmt: skip
    return lines


def results_table(lines: list[dict]) -> str:
    """Markdown table: datasets as rows, models as columns, test NDCG@10 / HR@10 (mean over seeds, ± std)."""
    datasets = list(dict.fromkeys(line["dataset"] for line in lines))
    models = list(dict.fromkeys(line["model"] for line in lines))

    def cell(dataset: str, model: str) -> str:
        group = [line for line in lines if line["dataset"] == dataset and line["model"] == model]
        if not group:
            return "–"
        ndcg, hr = (np.array([line[key] for line in group]) for key in ("test_ndcg@10", "test_hr@10"))
        spread = f" ± {ndcg.std(ddof=1):.4f}" if len(group) > 1 else ""
        return f"{ndcg.mean():.4f}{spread} / {hr.mean():.4f} (n={len(group)})" if group[0]["seed"] is not None else f"{ndcg.mean():.4f} / {hr.mean():.4f}"

    rows = ["| dataset | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    rows += [f"| {dataset} | " + " | ".join(cell(dataset, model) for model in models) + " |" for dataset in datasets]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    plans = []
    for source in args.datasets:
        folder = work / source["name"]
        prepare(source, folder / "prepared")
        runs = [(model, seed, folder / "models" / f"{model}-seed{seed}") for seed in args.seeds for model in args.models]
        plans.append((source["name"], folder, runs))
    if not args.skip_training:
        train_all(args, [(folder / "prepared", *run) for _, folder, runs in plans for run in runs])
    all_records = []
    for name, folder, runs in plans:
        records = evaluate_all(args, folder / "prepared", runs)
        records += aggregate([record for record in records if record["seed"] is not None])
        for record in records:
            record["dataset"] = name
        (folder / "results.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
        plot_curves(runs, folder / "validation_ndcg_vs_steps.png", name)
        logger.info("wrote %s and %s", folder / "results.jsonl", folder / "validation_ndcg_vs_steps.png")
        all_records += records
    lines = summary_lines(all_records)
    text = "".join(json.dumps(line) + "\n" for line in lines)
    (work / "summary.jsonl").write_text(text)
    if args.results_file:
        Path(args.results_file).write_text(text)
    print("Test NDCG@10 / HR@10 (full ranking, history kept, pessimistic ties; mean ± std over seeds)")
    print(results_table(lines))
    return all_records


if __name__ == "__main__":
    main()
