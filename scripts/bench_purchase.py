"""Purchase / item-conversion / click prediction on real Taobao behavior: every task x model, 3 seeds.

Models, all on the same labelled rows (inputs strictly before each cutoff, labels only from
``[cutoff, cutoff + horizon)``; see seqbert.data.labels):

- ``logistic_regression`` and ``gbdt`` (scikit-learn HistGradientBoostingClassifier) on the tabular
  features of seqbert.data.features.task_features (recency / frequency / event-type counts / item
  popularity, + user-item pair features for the item tasks), computed from the same pre-cutoff events;
- ``seqbert_scratch``: SeqBERT fine-tuned from random initialisation (item tasks: with the candidate-aware
  inputs of seqbert.training.finetune, match embeddings and candidate popularity, unless switched off);
- ``seqbert_pretrained_full`` / ``seqbert_pretrained_frozen``: masked-behavior pretraining on the train
  split (events before the validation cutoff, so before the test cutoff), then full fine-tuning or a
  frozen encoder with only the head trained.

Per result, one JSON line on stdout: task, model, seed, example / positive counts per split, test
metrics (ROC-AUC, PR-AUC, GAUC for the item tasks, log loss, Brier, ECE with 10 bins) after temperature
scaling fitted on the validation logits, ECE before it, and percentile-bootstrap 95 % intervals. A
mean ± std table over seeds goes to stderr and ``<work-dir>/table.md``, reliability diagrams (seed 0)
to ``<work-dir>/reliability_<task>.png``.

Example (what BENCHMARKS.md reports)::

    OMP_NUM_THREADS=1 python scripts/bench_purchase.py --work-dir /tmp/bench_purchase
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "taobao_userbehavior" / "time_slice_2017-11-26_0900-1110_CST.csv"
SLICE_START = 1511658000  # 2017-11-26 09:00:00 CST
MODELS = ("logistic_regression", "gbdt", "seqbert_scratch", "seqbert_pretrained_full", "seqbert_pretrained_frozen")
TASKS = ("user-purchase", "item-conversion", "click")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-file", default=str(DEFAULT_DATA),
                        help="Taobao UserBehavior csv (original format, no header). Default: the 2-hour time slice in "
                        "../shared/data/taobao_userbehavior/.")
    parser.add_argument("--work-dir", default="/tmp/bench_purchase",
                        help="Where the prepared data, models, table.md and reliability PNGs go (never the repo).")
    parser.add_argument("--start", type=int, default=SLICE_START,
                        help="Unix second the minute offsets below count from (default: the slice's 09:00 CST).")
    parser.add_argument("--validation-minutes", type=float, default=70,
                        help="Validation cutoff, minutes after --start. Pretraining sees only events before it.")
    parser.add_argument("--test-minutes", type=float, default=100,
                        help="Test cutoff, minutes after --start. The horizon is test - validation (labels of the "
                        "validation cutoff end where the test window starts); train cutoff = validation - horizon.")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS, help="Tasks to run.")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help="Models to run.")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="Training seeds (labelled rows and click negatives are the same for every seed).")
    parser.add_argument("--negatives-per-positive", type=int, default=4, help="click: popularity-sampled negatives per positive.")
    parser.add_argument("--pretrain-minutes", type=float, default=4.0,
                        help="Wall-time budget of the (single, seed 0) masked-behavior pretraining.")
    parser.add_argument("--finetune-minutes", type=float, default=1.0,
                        help="Wall-time budget of each fine-tuning run (early stopping on validation ROC-AUC, "
                        "patience 3 epochs, may end it sooner).")
    parser.add_argument("--max-length", type=int, default=20, help="Most recent events per input (+ the query token).")
    parser.add_argument("--hidden-size", type=int, default=32, help="SeqBERT hidden size (tiny: 2 shared CPU cores).")
    parser.add_argument("--layers", type=int, default=1, help="SeqBERT layers.")
    parser.add_argument("--batch-size", type=int, default=256, help="Training batch size.")
    parser.add_argument("--finetune-lr", type=float, default=2e-3, help="Fine-tuning peak learning rate.")
    parser.add_argument("--class-weighting", action="store_true",
                        help="Inverse-frequency class weights in the SeqBERT loss (logits are prior-corrected before "
                        "any metric). Default off: unweighted, imbalance left to threshold-free metrics + calibration.")
    parser.add_argument("--no-candidate-match", action="store_true",
                        help="Item tasks: no candidate match embedding (finetune --no_candidate_match; the issue-5 "
                        "encoding with the candidate as query token only, together with --no-candidate-popularity).")
    parser.add_argument("--no-candidate-popularity", action="store_true",
                        help="Item tasks: no candidate popularity input (finetune --no_candidate_popularity).")
    parser.add_argument("--candidate-dropout", type=float, default=0.0,
                        help="Item tasks: finetune --candidate_dropout (training candidates replaced by [UNK] with this "
                        "probability).")
    parser.add_argument("--bootstrap-resamples", type=int, default=200, help="Bootstrap resamples for the 95 %% intervals.")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (set OMP_NUM_THREADS too). 1 by default: on a shared 2-core machine two "
                        "threads contend with the other load and ran ~10x slower per step.")
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace) -> Path:
    from seqbert.prepare import PrepareOptions, prepare_file

    folder = Path(args.work_dir) / "prepared"
    options = PrepareOptions(
        split="temporal",
        validation_start=int(args.start + args.validation_minutes * 60),
        test_start=int(args.start + args.test_minutes * 60),
        # Keep every user: the slice has 1.7 events per user. (For temporal splits the count rules see
        # only events before validation_start, so the default of 2 would not leak labels into who is
        # kept, but it would drop most users.)
        min_user_events=1,
        max_length=args.max_length,
    )
    prepare_file(args.data_file, options, output_dir=folder, dataset_format="taobao")
    return folder


def model_options(args: argparse.Namespace) -> list[str]:
    return ["--hidden_size", str(args.hidden_size), "--num_hidden_layers", str(args.layers), "--num_attention_heads", "2",
            "--intermediate_size", str(2 * args.hidden_size), "--max_length", str(args.max_length)]  # fmt: skip


def pretrain(args: argparse.Namespace, data_dir: Path) -> Path:
    from seqbert.training import pretrain as pretrain_module

    output = Path(args.work_dir) / "pretrained"
    pretrain_module.main([
        "--data_dir", str(data_dir), "--output_dir", str(output), "--time_budget_minutes", str(args.pretrain_minutes),
        "--per_device_batch_size", str(args.batch_size), "--seed", "0", "--early_stopping_patience", "3",
        "--report_to", "jsonl", *model_options(args),
    ])  # fmt: skip
    return output


def finetune_run(args, data_dir: Path, task: str, model: str, seed: int, pretrained: Path | None) -> dict:
    """One fine-tuning run; returns validation / test (labels, logits, user ids)."""
    from seqbert.training import finetune

    output = Path(args.work_dir) / "runs" / f"{task}-{model}-{seed}"
    options = [
        "--data_dir", str(data_dir), "--output_dir", str(output), "--task", task, "--seed", str(seed),
        "--time_budget_minutes", str(args.finetune_minutes), "--per_device_batch_size", str(args.batch_size),
        "--eval_batch_size", "1024", "--learning_rate", str(args.finetune_lr), "--early_stopping_patience", "3",
        "--negatives_per_positive", str(args.negatives_per_positive), "--bootstrap_resamples", "0",
        "--no_tabular_baseline", "--report_to", "jsonl", *model_options(args),
    ]  # fmt: skip
    if pretrained is not None:
        options += ["--model_name_or_path", str(pretrained)]
    if model == "seqbert_pretrained_frozen":
        options += ["--freeze_encoder", "--learning_rate", "1e-2"]
    if args.class_weighting:
        options += ["--class_weighting"]
    if args.no_candidate_match:
        options += ["--no_candidate_match"]
    if args.no_candidate_popularity:
        options += ["--no_candidate_popularity"]
    if args.candidate_dropout:
        options += ["--candidate_dropout", str(args.candidate_dropout)]
    summary = finetune.main(options)
    saved = np.load(output / "predictions.npz")
    return {
        "predictions": {split: (saved[f"{split}_labels"], saved[f"{split}_logits"], saved[f"{split}_groups"])
                        for split in ("validation", "test")},  # fmt: skip
        "train_seconds": summary["wall_seconds"],
        "steps": summary["global_step"],
        "best_step": summary["best_step"],
        "max_query_gap_seconds": summary["max_query_gap_seconds"],
        "candidate_inputs": {**summary["candidate_inputs"], "candidate_dropout": summary["candidate_dropout"]},
    }


def tabular_run(model: str, seed: int, features: dict, labelled: dict) -> dict:
    from seqbert.baselines import GradientBoostingBaseline, LogisticRegressionBaseline
    from seqbert.metrics.functional import probabilities_to_logits

    start = time.perf_counter()
    estimator = LogisticRegressionBaseline() if model == "logistic_regression" else GradientBoostingBaseline(seed=seed)
    estimator.fit(features["train"], np.asarray(labelled["train"]["label"]))
    predictions = {
        split: (np.asarray(labelled[split]["label"]), probabilities_to_logits(estimator.predict_proba(features[split])),
                np.asarray(labelled[split]["user_id"]).astype(str))
        for split in ("validation", "test")
    }  # fmt: skip
    return {"predictions": predictions, "train_seconds": round(time.perf_counter() - start, 2), "steps": None}


def report(task: str, run: dict, args: argparse.Namespace, seed: int) -> dict:
    from seqbert.metrics.functional import calibrated_report

    (val_y, val_z, _), (test_y, test_z, test_groups) = run["predictions"]["validation"], run["predictions"]["test"]
    out = calibrated_report(
        test_y, test_z, val_y, val_z, groups=test_groups if task != "user-purchase" else None,
        n_resamples=args.bootstrap_resamples, seed=seed,
    )  # fmt: skip
    return out


def summarise(lines: list[dict]) -> str:
    rows = ["| task | model | test examples (positives) | ROC-AUC | PR-AUC | GAUC | log loss | Brier | ECE before → after T |",
            "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    keys = sorted({(line["task"], line["model"]) for line in lines}, key=lambda k: (TASKS.index(k[0]), MODELS.index(k[1])))
    for task, model in keys:
        group = [line for line in lines if line["task"] == task and line["model"] == model]

        def stat(name: str, source: str = "calibrated", digits: int = 3) -> str:
            values = np.array([line[source][name] for line in group if name in line[source]], dtype=float)
            if not len(values) or np.isnan(values).all():
                return "–"
            low = np.nanmean([line["intervals"].get(name, (np.nan,))[0] for line in group]) if source == "calibrated" else np.nan
            high = np.nanmean([line["intervals"].get(name, (np.nan, np.nan))[1] for line in group]) if source == "calibrated" else np.nan
            text = f"{np.nanmean(values):.{digits}f} ± {np.nanstd(values):.{digits}f}"
            return text + (f" [{low:.{digits}f}, {high:.{digits}f}]" if np.isfinite(low) else "")

        counts = group[0]["counts"]["test"]
        ece = f"{stat('ece', 'uncalibrated', 4).split(' [')[0]} → {stat('ece', digits=4).split(' [')[0]}"
        rows.append(f"| {task} | {model} | {counts['examples']:,} ({counts['positives']}) | {stat('roc_auc')} | {stat('pr_auc')} | "
                    f"{stat('gauc')} | {stat('log_loss', digits=4)} | {stat('brier', digits=4)} | {ece} |")  # fmt: skip
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from seqbert.plots import plot_reliability_comparison
    from seqbert.prepared import PreparedData
    from seqbert.training.finetune import label_splits, task_feature_sets

    started = time.perf_counter()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    data_dir = prepare(args)
    data = PreparedData.load(data_dir)
    pretrained = None
    if any(model.startswith("seqbert_pretrained") for model in args.models):
        pretrained = pretrain(args, data_dir)
    lines = []
    for task in args.tasks:
        labelled, cutoffs = label_splits(data, None, task, negatives_per_positive=args.negatives_per_positive)
        counts = {name: {"examples": rows.num_rows, "positives": int(np.sum(rows["label"]))} for name, rows in labelled.items()}
        features = task_feature_sets(data, labelled) if {"logistic_regression", "gbdt"} & set(args.models) else None
        curves = {}
        for model in args.models:
            for seed in args.seeds:
                if model in ("logistic_regression", "gbdt"):
                    run = tabular_run(model, seed, features, labelled)
                else:
                    torch.manual_seed(seed)
                    run = finetune_run(args, data_dir, task, model, seed, pretrained if "pretrained" in model else None)
                result = report(task, run, args, seed)
                line = {
                    "task": task, "model": model, "seed": seed, "cutoffs": cutoffs, "counts": counts,
                    "temperature": result["temperature"], "calibrated": result["calibrated"],
                    "uncalibrated": result["uncalibrated"], "intervals": result["intervals"],
                    "train_seconds": run["train_seconds"], "steps": run["steps"], "best_step": run.get("best_step"),
                    "max_query_gap_seconds": run.get("max_query_gap_seconds"), "candidate_inputs": run.get("candidate_inputs"),
                }  # fmt: skip
                print(json.dumps(line), flush=True)
                lines.append(line)
                if seed == args.seeds[0] and model in ("gbdt", "seqbert_pretrained_full"):
                    test_y, test_z, _ = run["predictions"]["test"]
                    curves[f"{model}, raw"] = (test_y, 1 / (1 + np.exp(-test_z)))
                    curves[f"{model}, temperature-scaled"] = (test_y, 1 / (1 + np.exp(-test_z / result["temperature"])))
        if curves:
            plot_reliability_comparison(curves, path=work / f"reliability_{task}.png",
                                        title=f"{task}: test reliability (seed {args.seeds[0]})")  # fmt: skip
    table = summarise(lines)
    (work / "table.md").write_text(table + "\n")
    print(table, file=sys.stderr)
    print(f"total wall time {time.perf_counter() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
