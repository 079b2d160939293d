"""Purchase / item-conversion / click prediction on real 9-day Taobao histories: every task x model x seed.

Data (``../shared/data``, see each ``SOURCE.md``): the complete 9-day histories of the first 983 users of
Taobao UserBehavior, plus the supplement's users that are not in that file (85), are the **main users**;
the 114 users of ``complete_histories_tail_114users.csv`` (no user in common) are **held-out users**,
scored by the models trained on the main users and never pretrained or fine-tuned on.

Protocol (times in China Standard Time, UTC+8; one prepared folder and one pretraining per protocol):

- rolling daily cutoffs at 00:00, a 24-hour label horizon: inputs strictly before a cutoff, labels only
  from ``[cutoff, cutoff + 24 h)``; training cutoffs are the days before validation (``--train-cutoffs``);
- user-purchase and click: validation cutoff 2017-12-02, test 2017-12-03;
- item-conversion: one day holds about 60 test positives (< 150), so its test pools the cutoffs
  2017-12-01, 12-02 and 12-03 and its validation cutoff is 2017-11-30 (``--conversion-test-cutoffs``);
- pretraining (masked-behavior modeling, seed 0) sees only the main users' events before the
  validation cutoff of its protocol; the tokenizer's vocabulary too.

Models, on the same labelled rows: ``logistic_regression`` and ``lightgbm`` (seqbert.tabular: the
features of seqbert.data.features.labelled_features, a small validation-tuned search each),
``seqbert_scratch``, ``seqbert_pretrained`` (full fine-tuning), ``seqbert_pretrained_frozen`` (head only),
and ``lightgbm_embeddings`` (LightGBM on the same features + seqbert.embedding_features.pretrained_features
of the pretrained model). Metrics: test ROC-AUC / PR-AUC / GAUC (per user and cutoff) / log loss /
Brier / ECE before and after temperature scaling fitted on validation, bootstrap 95 % intervals,
HR@10 among each user's click candidates, and held-out users' ROC-AUC.

Writes one JSON line per (task, model, seed) to ``--output`` (replaced, not appended), the pretrained models'
next-item quality to ``<output stem>_pretraining.jsonl``, a table
(``<work-dir>/table.md``, also on stderr), reliability diagrams ``<output dir>/purchase_taobao_reliability_<task>.png``
and the pretrained models' next-item quality against popularity / Markov (``<work-dir>/pretraining.json``).

Example (what BENCHMARKS.md reports)::

    python scripts/bench_purchase.py --work-dir /tmp/bench_purchase
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DEFAULT_MAIN = SHARED / "taobao_userbehavior_head983" / "complete_histories_head_983users.csv"
DEFAULT_SUPPLEMENT = SHARED / "taobao_userbehavior_head983" / "partial_head_294users_tmf.csv"
DEFAULT_HELDOUT = SHARED / "taobao_userbehavior" / "complete_histories_tail_114users.csv"
TASKS = ("user-purchase", "item-conversion", "click")
MODELS = ("logistic_regression", "lightgbm", "seqbert_scratch", "seqbert_pretrained", "seqbert_pretrained_frozen",
          "lightgbm_embeddings")  # fmt: skip
SEQBERT_MODELS = ("seqbert_scratch", "seqbert_pretrained", "seqbert_pretrained_frozen")
DAY = 86_400
logger = logging.getLogger("bench_purchase")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--main-file", default=str(DEFAULT_MAIN), help="Main users' events (Taobao UserBehavior csv, no header). Default: %(default)s")
    add("--supplement-file", default=str(DEFAULT_SUPPLEMENT),
        help="More main users: only its users that are not in --main-file are used ('' to skip). Default: %(default)s")
    add("--heldout-file", default=str(DEFAULT_HELDOUT),
        help="Held-out users (must share no user with the main users; '' to skip). Default: %(default)s")
    add("--work-dir", default="/tmp/bench_purchase", help="Prepared data, models and logs (never the repo). Default: %(default)s")
    add("--output", default=str(REPO / "benchmarks" / "purchase_taobao_histories.jsonl"),
        help="JSON lines, one per (task, model, seed); replaced by each run. Default: %(default)s")
    add("--validation-date", default="2017-12-02", help="Validation cutoff, 00:00 local time. Default: %(default)s")
    add("--test-date", default="2017-12-03", help="Test cutoff, 00:00 local time. Default: %(default)s")
    add("--utc-offset-hours", type=float, default=8.0, help="Local time of the log (CST = UTC+8). Default: %(default)s")
    add("--train-cutoffs", type=int, default=6, help="Daily training cutoffs before validation. Default: %(default)s")
    add("--conversion-test-cutoffs", type=int, default=3,
        help="item-conversion: pooled daily test cutoffs ending on --test-date (validation moves to the day before the "
        "first; its training cutoffs shrink accordingly). Default: %(default)s")
    add("--conversion-lookback-days", type=float, default=3.0,
        help="item-conversion candidates: items viewed / carted / faved in this many days before the cutoff. Default: %(default)s")
    add("--negatives-per-positive", type=int, default=4, help="click: popularity-sampled negatives per positive. Default: %(default)s")
    add("--tasks", nargs="+", default=list(TASKS), choices=TASKS, help="Tasks to run. Default: all.")
    add("--models", nargs="+", default=list(MODELS), choices=MODELS, help="Models to run. Default: all.")
    add("--seeds", nargs="+", type=int, default=[0, 1, 2], help="Training seeds (labelled rows are the same for all). Default: 0 1 2")
    add("--pretrain-minutes", type=float, default=6.0, help="Wall-time budget of each pretraining (seed 0). Default: %(default)s")
    add("--pretrain-epochs", type=int, default=200, help="Epochs the pretraining schedule spans (or the budget ends it). Default: %(default)s")
    add("--finetune-minutes", type=float, default=2.5, help="Wall-time budget of each fine-tuning run. Default: %(default)s")
    add("--finetune-epochs", type=int, default=30, help="Epochs the fine-tuning schedule spans (early stopping, patience 3). Default: %(default)s")
    add("--finetune-lr", type=float, default=1e-3, help="Fine-tuning peak learning rate (frozen encoder: 10x). Default: %(default)s")
    add("--max-length", type=int, default=100, help="Pretraining: most recent events per input (+ the mask). Default: %(default)s")
    add("--finetune-max-length", type=int, default=50,
        help="Fine-tuning: most recent events per input (+ the query token); half the pretraining context makes a "
        "step about twice as fast. Default: %(default)s")
    add("--conversion-negative-rate", type=float, default=0.2,
        help="item-conversion: share of negative training rows the seqbert fine-tuning keeps (0.2 %% positives; "
        "finetune --train_negative_rate, prior-corrected). Tabular models use every row. Default: %(default)s")
    add("--hidden-size", type=int, default=64, help="SeqBERT hidden size. Default: %(default)s")
    add("--layers", type=int, default=2, help="SeqBERT layers. Default: %(default)s")
    add("--batch-size", type=int, default=128, help="Training batch size. Default: %(default)s")
    add("--seqbert-tabular-features", action=argparse.BooleanOptionalAction, default=True,
        help="Fine-tuned seqbert models also read the tabular baselines' features in their head (finetune "
        "--tabular_features, BST-style); --no-seqbert-tabular-features: the behavior sequence alone. Default: %(default)s")
    add("--extra-pretrain-args", default="", help="More `seqbert pretrain` options (one string).")
    add("--extra-finetune-args", default="", help="More `seqbert finetune` options (one string).")
    add("--parallel", type=int, default=2, help="Training processes at a time (one torch thread each). Default: %(default)s")
    add("--bootstrap-resamples", type=int, default=200, help="Bootstrap resamples of the 95 %% intervals. Default: %(default)s")
    add("--max-users", type=int, default=None, help="Keep only the first N main users (small-data mode for tests).")
    return parser.parse_args(argv)


class Protocol(NamedTuple):
    """One temporal protocol: its prepared folder, cutoffs and the tasks that use it."""

    name: str
    validation_start: int
    test_start: int
    num_train_cutoffs: int
    num_test_cutoffs: int

    def finetune_options(self) -> list[str]:
        return ["--num_train_cutoffs", str(self.num_train_cutoffs), "--num_test_cutoffs", str(self.num_test_cutoffs),
                "--horizon_days", "1"]  # fmt: skip


def local_midnight(date: str, utc_offset_hours: float) -> int:
    """Unix seconds of 00:00 local time on ``date`` (YYYY-MM-DD)."""
    import calendar

    year, month, day = (int(part) for part in date.split("-"))
    return calendar.timegm((year, month, day, 0, 0, 0)) - int(utc_offset_hours * 3600)


def protocols(args: argparse.Namespace) -> dict[str, Protocol]:
    validation, test = local_midnight(args.validation_date, args.utc_offset_hours), local_midnight(args.test_date, args.utc_offset_hours)
    pooled = args.conversion_test_cutoffs
    conversion_validation = test - pooled * DAY
    standard = Protocol("daily", validation, test, args.train_cutoffs, 1)
    conversion = Protocol(f"pooled{pooled}", conversion_validation, conversion_validation + DAY,
                          max(1, args.train_cutoffs - (validation - conversion_validation) // DAY), pooled)  # fmt: skip
    return {"user-purchase": standard, "click": standard, "item-conversion": conversion if pooled > 1 else standard}


def read_users(path: str) -> dict[str, list[str]]:
    """Rows of a header-less Taobao csv grouped by user id (file order kept), CRLF tolerated."""
    users: dict[str, list[str]] = {}
    with open(path, newline="") as handle:
        for line in handle:
            line = line.rstrip("\r\n")
            if line:
                users.setdefault(line.split(",", 1)[0], []).append(line)
    return users


def write_event_files(args: argparse.Namespace, work: Path) -> tuple[Path, Path | None, dict]:
    """The main users' csv (main file + new supplement users, optionally the first --max-users) and the
    held-out csv, checked to share no user."""
    main = read_users(args.main_file)
    added = {}
    if args.supplement_file:
        added = {user: rows for user, rows in read_users(args.supplement_file).items() if user not in main}
        main.update(added)
    if args.max_users:
        main = dict(list(main.items())[: args.max_users])
    heldout = read_users(args.heldout_file) if args.heldout_file else {}
    shared = set(main) & set(heldout)
    if shared:
        raise ValueError(f"{len(shared)} held-out users are also main users (e.g. {sorted(shared)[:3]}): drop them first.")
    main_path = work / "main_users.csv"
    main_path.write_text("".join(row + "\n" for rows in main.values() for row in rows))
    heldout_path = None
    if heldout:
        heldout_path = work / "heldout_users.csv"
        heldout_path.write_text("".join(row + "\n" for rows in heldout.values() for row in rows))
    counts = {"main_users": len(main), "supplement_users_added": len(added), "heldout_users": len(heldout),
              "main_events": sum(len(r) for r in main.values()), "heldout_events": sum(len(r) for r in heldout.values())}  # fmt: skip
    return main_path, heldout_path, counts


def prepare(path: Path, protocol: Protocol, folder: Path, max_length: int):
    from seqbert.prepare import PrepareOptions, prepare_file
    from seqbert.prepared import PreparedData

    if not (folder / "protocol.json").exists():
        options = PrepareOptions(split="temporal", validation_start=protocol.validation_start, test_start=protocol.test_start,
                                 min_user_events=1, max_length=max_length)  # fmt: skip
        prepare_file(str(path), options, output_dir=folder, dataset_format="taobao")
    return PreparedData.load(folder)


def model_options(args: argparse.Namespace, max_length: int) -> list[str]:
    return ["--hidden_size", str(args.hidden_size), "--num_hidden_layers", str(args.layers), "--num_attention_heads", "2",
            "--intermediate_size", str(4 * args.hidden_size), "--max_length", str(max_length)]  # fmt: skip


def run_all(commands: list[tuple[list[str], Path]], parallel: int) -> None:
    """Run ``python -m`` module commands ``parallel`` at a time (one torch thread each), logs beside their folders."""
    from seqbert.training.parallel import run_in_parallel

    run_in_parallel([([sys.executable, "-m", *command], folder) for command, folder in commands], parallel)


def pretrain_command(args: argparse.Namespace, data_dir: Path, output: Path) -> list[str]:
    return [
        "seqbert.training.pretrain", "--data_dir", str(data_dir), "--output_dir", str(output), "--overwrite_output_dir", "--seed", "0",
        "--time_budget_minutes", str(args.pretrain_minutes), "--num_epochs", str(args.pretrain_epochs),
        "--config", "purchase_taobao_pretrain",  # the recipe's fixed options: recipes/purchase_taobao_pretrain.yaml
        "--logging_steps", "50", "--report_to", "jsonl", *model_options(args, args.max_length), *args.extra_pretrain_args.split(),
    ]  # fmt: skip


def finetune_command(args, data_dir: Path, protocol: Protocol, task: str, model: str, seed: int, output: Path, pretrained: Path | None) -> list[str]:
    command = [
        "seqbert.training.finetune", "--data_dir", str(data_dir), "--output_dir", str(output), "--overwrite_output_dir", "--task", task,
        "--seed", str(seed), "--time_budget_minutes", str(args.finetune_minutes), "--num_epochs", str(args.finetune_epochs),
        "--per_device_batch_size", str(args.batch_size), "--eval_batch_size", "1024", "--early_stopping_patience", "3",
        "--learning_rate", str(args.finetune_lr * (10 if model == "seqbert_pretrained_frozen" else 1)),
        "--negatives_per_positive", str(args.negatives_per_positive), "--bootstrap_resamples", "0",
        "--conversion_lookback_days", str(args.conversion_lookback_days), "--no_tabular_baseline",
        "--utc_offset_hours", str(args.utc_offset_hours),
        "--report_to", "jsonl", *protocol.finetune_options(), *model_options(args, args.finetune_max_length),
        *args.extra_finetune_args.split(),
    ]  # fmt: skip
    if task == "item-conversion" and args.conversion_negative_rate < 1:
        command += ["--train_negative_rate", str(args.conversion_negative_rate)]
    if pretrained is not None:
        command += ["--model_name_or_path", str(pretrained)]
    if model == "seqbert_pretrained_frozen":
        command += ["--freeze_encoder"]
    if args.seqbert_tabular_features:
        command += ["--tabular_features"]
    return command


def heldout_rows(task: str, main, heldout, cutoffs: dict, args: argparse.Namespace):
    """Held-out users' labelled rows at the test cutoffs, built on the joint log (so click negatives and
    candidate popularity come from the whole catalog) and then kept to the held-out users."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from seqbert.data.arrow import from_arrow, to_arrow
    from seqbert.training.finetune import rows_at_cutoffs

    main_table, heldout_table = to_arrow(main.sequences), to_arrow(heldout.sequences)
    joint = from_arrow(pa.concat_tables([main_table, heldout_table.cast(main_table.schema)]))
    rows = rows_at_cutoffs(joint, task, cutoffs["test_cutoffs"], seed=2, horizon_seconds=cutoffs["horizon_seconds"],
                           negatives_per_positive=args.negatives_per_positive,
                           lookback_seconds=int(args.conversion_lookback_days * DAY))  # fmt: skip
    table = to_arrow(rows)
    keep = pc.is_in(pc.cast(table.column("user_id"), pa.string()), value_set=pc.cast(heldout_table.column("user_id"), pa.string()))
    return from_arrow(table.filter(keep)), joint


def candidate_hit_rate(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, k: int = 10) -> tuple[float, int]:
    """Mean over groups with more than ``k`` candidates and a positive of (positives in the top k) / min(k, positives);
    ties broken pessimistically (a positive tied with a negative ranks below it)."""
    values = []
    for group in np.unique(groups):
        index = np.flatnonzero(groups == group)
        y, s = labels[index], scores[index]
        if len(index) <= k or y.sum() == 0:
            continue
        order = np.lexsort((y, -s))  # by score descending, negatives first among ties
        values.append(y[order[:k]].sum() / min(k, y.sum()))
    return (float(np.mean(values)) if values else float("nan")), len(values)


def tabular_features(data, labelled: dict, heldout: tuple | None, args, extra: dict | None = None) -> tuple[dict, list]:
    from seqbert.data.features import labelled_features

    offset = int(args.utc_offset_hours * 3600)
    features, names = {}, []
    for split, rows in labelled.items():
        features[split], names = labelled_features(data.sequences, rows, utc_offset_seconds=offset)
    if heldout is not None:
        features["heldout"], _ = labelled_features(heldout[1], heldout[0], utc_offset_seconds=offset)
    if extra is not None:
        features = {split: np.concatenate([x, extra[split][0]], axis=1) for split, x in features.items()}
        names = [*names, *extra["train"][1]]
    return features, names


def report_line(task, model, seed, labels: dict, probabilities: dict, groups: dict, counts, cutoffs, args, extra) -> dict:
    from seqbert.metrics.functional import calibrated_report, probabilities_to_logits, roc_auc

    item_task = task != "user-purchase"
    report = calibrated_report(
        labels["test"], probabilities_to_logits(probabilities["test"]), labels["validation"],
        probabilities_to_logits(probabilities["validation"]), groups=groups["test"] if item_task else None,
        n_resamples=args.bootstrap_resamples, seed=seed,
    )  # fmt: skip
    line = {
        "task": task, "model": model, "seed": seed,
        "test_roc_auc": report["calibrated"]["roc_auc"],
        "test_roc_auc_interval": report["intervals"]["roc_auc"],
        "test_ece_after_temperature": report["calibrated"]["ece"],
        "test_ece_before_temperature": report["uncalibrated"]["ece"],
        "test_positives": counts["test"]["positives"], "test_examples": counts["test"]["examples"],
        "heldout_users_roc_auc": None, "heldout_positives": None,
        "counts": counts, "cutoffs": cutoffs, "temperature": report["temperature"],
        "calibrated": report["calibrated"], "uncalibrated": report["uncalibrated"], "intervals": report["intervals"],
        **extra,
    }  # fmt: skip
    if task == "click":
        line["test_candidate_hr@10"], line["test_candidate_hr@10_users"] = candidate_hit_rate(labels["test"], probabilities["test"], groups["test"])
    if "heldout" in probabilities and len(np.unique(labels["heldout"])) == 2:
        line["heldout_users_roc_auc"] = roc_auc(labels["heldout"], probabilities["heldout"])
        line["heldout_positives"] = int(labels["heldout"].sum())
    return line


def summarise(lines: list[dict]) -> str:
    rows = [("| task | model | test rows (positives) | ROC-AUC mean ± std [95 % CI] | GAUC | HR@10 (click) | log loss after T | "
             "ECE before → after T | held-out users ROC-AUC (positives) |"), "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    keys = sorted({(line["task"], line["model"]) for line in lines}, key=lambda k: (TASKS.index(k[0]), MODELS.index(k[1])))
    for task, model in keys:
        group = [line for line in lines if line["task"] == task and line["model"] == model]

        def mean_std(values, digits=3):
            values = np.array([np.nan if v is None else v for v in values], dtype=float)
            return "–" if np.isnan(values).all() else f"{np.nanmean(values):.{digits}f} ± {np.nanstd(values):.{digits}f}"

        interval = np.mean([line["test_roc_auc_interval"] for line in group], axis=0)
        heldout = mean_std([line["heldout_users_roc_auc"] for line in group])
        rows.append(
            f"| {task} | {model} | {group[0]['test_examples']:,} ({group[0]['test_positives']}) | "
            f"{mean_std([line['test_roc_auc'] for line in group])} [{interval[0]:.3f}, {interval[1]:.3f}] | "
            f"{mean_std([line['calibrated'].get('gauc') for line in group])} | "
            f"{mean_std([line.get('test_candidate_hr@10') for line in group])} | "
            f"{mean_std([line['calibrated']['log_loss'] for line in group], 4)} | "
            f"{mean_std([line['test_ece_before_temperature'] for line in group], 4)} → "
            f"{mean_std([line['test_ece_after_temperature'] for line in group], 4)} | "
            f"{heldout} ({group[0].get('heldout_positives')}) |"
        )
    return "\n".join(rows)


def targets(lines: list[dict]) -> str:
    """The issue's targets from the seed means: pretrained vs best baseline / scratch, embeddings vs LightGBM, ECE."""
    def mean(task, model, key="test_roc_auc"):
        values = [line[key] for line in lines if line["task"] == task and line["model"] == model]
        return float(np.mean(values)) if values else float("nan")

    rows = [("| task | pretrained | best baseline | Δ (≥ +0.02) | scratch | Δ (≥ +0.01) | LightGBM + emb. − LightGBM (≥ +0.01) | "
             "max ECE after T (≤ 0.02) |"), "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for task in TASKS:
        if not any(line["task"] == task for line in lines):
            continue
        baselines = {m: mean(task, m) for m in ("logistic_regression", "lightgbm")}
        best = max(baselines, key=lambda m: -np.inf if np.isnan(baselines[m]) else baselines[m])
        pretrained, scratch = mean(task, "seqbert_pretrained"), mean(task, "seqbert_scratch")
        ece = max((line["test_ece_after_temperature"] for line in lines if line["task"] == task), default=float("nan"))
        rows.append(f"| {task} | {pretrained:.3f} | {best} {baselines[best]:.3f} | {pretrained - baselines[best]:+.3f} | "
                    f"{scratch:.3f} | {pretrained - scratch:+.3f} | {mean(task, 'lightgbm_embeddings') - mean(task, 'lightgbm'):+.3f} | "
                    f"{ece:.4f} |")  # fmt: skip
    return "\n".join(rows)


def annotate_cards(lines: list[dict], folders: dict) -> None:
    """Append the benchmark's comparison (every model of the task and seed, same rows) to each fine-tuned folder's
    model card: the card then shows the baselines with intervals and calibration beside the model."""
    for (task, model, seed), folder in folders.items():
        rows = [line for line in lines if line["task"] == task and line["seed"] == seed]
        if not rows or not (folder / "README.md").exists():
            continue
        cutoffs = rows[0]["cutoffs"]
        table = [
            "", "## Comparison on the benchmark protocol (scripts/bench_purchase.py)", "",
            (f"Task `{task}`, seed {seed}; cutoffs (unix s): training {cutoffs['train_cutoffs']}, validation "
             f"{cutoffs['validation_cutoff']}, test {cutoffs['test_cutoffs']}; labels from the 24 hours after each cutoff. "
             f"Test rows {rows[0]['test_examples']:,} ({rows[0]['test_positives']} positives). Metrics after temperature "
             "scaling fitted on validation; bootstrap 95 % intervals."), "",
            "| Model | ROC-AUC [95 % CI] | log loss | ECE before → after | held-out users ROC-AUC |", "| --- | --- | --- | --- | --- |",
        ]  # fmt: skip
        for line in rows:
            name = f"**{line['model']}**" if line["model"] == model else line["model"]
            low, high = line["test_roc_auc_interval"]
            heldout = "–" if line["heldout_users_roc_auc"] is None else f"{line['heldout_users_roc_auc']:.4f}"
            table.append(f"| {name} | {line['test_roc_auc']:.4f} [{low:.4f}, {high:.4f}] | {line['calibrated']['log_loss']:.4f} | "
                         f"{line['test_ece_before_temperature']:.4f} → {line['test_ece_after_temperature']:.4f} | {heldout} |")  # fmt: skip
        card = (folder / "README.md").read_text().split("\n## Comparison on the benchmark protocol")[0]
        (folder / "README.md").write_text(card.rstrip("\n") + "\n" + "\n".join(table) + "\n")


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch

    torch.set_num_threads(1)
    from seqbert.embedding_features import pretrained_features
    from seqbert.metrics.functional import probabilities_to_logits, temperature_scale
    from seqbert.modeling_seqbert import SeqBertForMaskedBehaviorModeling, SeqBertForSequenceClassification
    from seqbert.plots import plot_reliability_comparison
    from seqbert.tabular import fit_on_features
    from seqbert.tokenization_seqbert import BehaviorTokenizer
    from seqbert.training.finetune import label_splits, predict_task_rows

    started = time.perf_counter()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    main_path, heldout_path, user_counts = write_event_files(args, work)
    logger.info("users: %s", user_counts)
    by_task = {task: protocol for task, protocol in protocols(args).items() if task in args.tasks}
    data, heldout_data, pretrained = {}, {}, {}
    for protocol in set(by_task.values()):
        data[protocol] = prepare(main_path, protocol, work / f"prepared_{protocol.name}", args.max_length)
        if heldout_path is not None:
            heldout_data[protocol] = prepare(heldout_path, protocol, work / f"prepared_heldout_{protocol.name}", args.max_length)
    if {"seqbert_pretrained", "seqbert_pretrained_frozen", "lightgbm_embeddings"} & set(args.models):
        commands = [(pretrain_command(args, work / f"prepared_{p.name}", work / f"pretrained_{p.name}"), work / f"pretrained_{p.name}")
                    for p in set(by_task.values()) if not (work / f"pretrained_{p.name}" / "model.safetensors").exists()]  # fmt: skip
        run_all(commands, args.parallel)
        pretrained = {p: work / f"pretrained_{p.name}" for p in set(by_task.values())}
    pretraining = {p.name: json.loads((folder / "results.json").read_text()) for p, folder in pretrained.items()}
    if pretraining:
        summary = {name: {"validation_ndcg@10": {m: v.get("ndcg@10") for m, v in r["metrics"]["validation"].items()},
                          "validation_hr@10": {m: v.get("hr@10") for m, v in r["metrics"]["validation"].items()},
                          "global_step": r["global_step"], "wall_seconds": r["wall_seconds"]}
                   for name, r in pretraining.items()}  # fmt: skip
        (work / "pretraining.json").write_text(json.dumps(summary, indent=2) + "\n")
        pretraining_lines = Path(args.output).with_name(Path(args.output).stem + "_pretraining.jsonl")
        pretraining_lines.parent.mkdir(parents=True, exist_ok=True)
        pretraining_lines.write_text("".join(json.dumps({"protocol": name, **values}) + "\n" for name, values in summary.items()))
        logger.info("pretraining (next item at the validation cutoff): %s", json.dumps(summary))

    runs = [(task, model, seed) for task in args.tasks for model in args.models if model in SEQBERT_MODELS for seed in args.seeds]
    folders = {run: work / "runs" / f"{run[0]}-{run[1]}-{run[2]}" for run in runs}
    run_all([(finetune_command(args, work / f"prepared_{by_task[t].name}", by_task[t], t, m, s, folders[(t, m, s)],
                               pretrained.get(by_task[t]) if m != "seqbert_scratch" else None), folders[(t, m, s)])
             for (t, m, s) in runs if not (folders[(t, m, s)] / "predictions.npz").exists()], args.parallel)  # fmt: skip

    lines = []
    for task in args.tasks:
        protocol = by_task[task]
        labelled, cutoffs = label_splits(
            data[protocol], DAY, task, negatives_per_positive=args.negatives_per_positive,
            num_train_cutoffs=protocol.num_train_cutoffs, num_test_cutoffs=protocol.num_test_cutoffs,
            lookback_seconds=int(args.conversion_lookback_days * DAY),
        )  # fmt: skip
        heldout = heldout_rows(task, data[protocol], heldout_data[protocol], cutoffs, args) if protocol in heldout_data else None
        counts = {name: {"examples": rows.num_rows, "positives": int(np.sum(rows["label"]))} for name, rows in labelled.items()}
        if heldout is not None:
            counts["heldout"] = {"examples": heldout[0].num_rows, "positives": int(np.sum(heldout[0]["label"]))}
        logger.info("%s: rows (positives) %s", task, counts)
        labels = {split: np.asarray(rows["label"]) for split, rows in labelled.items()}
        if heldout is not None:
            labels["heldout"] = np.asarray(heldout[0]["label"])
        groups = {split: np.char.add(np.char.add(np.asarray(rows["user_id"]).astype(str), "@"), np.asarray(rows["cutoff"]).astype(str))
                  for split, rows in labelled.items()}  # fmt: skip
        curves = {}

        def record(model: str, seed: int, probabilities: dict, extra: dict, *, task=task, labels=labels, groups=groups,
                   counts=counts, cutoffs=cutoffs, curves=curves) -> None:
            line = report_line(task, model, seed, labels, probabilities, groups, counts, cutoffs, args, extra)
            lines.append(line)
            print(json.dumps({k: line[k] for k in ("task", "model", "seed", "test_roc_auc", "test_ece_after_temperature",
                                                     "heldout_users_roc_auc")}), file=sys.stderr)  # fmt: skip
            if seed == args.seeds[0]:
                scaled = temperature_scale(probabilities_to_logits(probabilities["test"]), line["temperature"])
                curves[f"{model} (T = {line['temperature']:.2f})"] = (labels["test"], scaled)

        tabular = [m for m in ("logistic_regression", "lightgbm") if m in args.models]
        if tabular or "lightgbm_embeddings" in args.models:
            features, names = tabular_features(data[protocol], labelled, heldout, args)
        deterministic = {}  # logistic regression does not depend on the seed: fitted once, reported per seed
        for seed in args.seeds:
            for name in tabular:
                tab_started = time.perf_counter()
                if name in deterministic:
                    result = deterministic[name]
                else:
                    result = fit_on_features(features, labels, names, [name], seed)[name]
                    if name == "logistic_regression":
                        deterministic[name] = result
                record(name, seed, result.probabilities, {"params": result.params, "backend": result.backend,
                                                          "dropped_features": result.dropped_features,
                                                          "train_seconds": round(time.perf_counter() - tab_started, 1)})  # fmt: skip
        if "lightgbm_embeddings" in args.models:
            model = SeqBertForMaskedBehaviorModeling.from_pretrained(pretrained[protocol]).eval()
            tokenizer = BehaviorTokenizer.from_pretrained(pretrained[protocol])
            extra = {split: pretrained_features(model, tokenizer, rows) for split, rows in labelled.items()}
            if heldout is not None:
                extra["heldout"] = pretrained_features(model, tokenizer, heldout[0])
            embedded, embedded_names = tabular_features(data[protocol], labelled, heldout, args, extra)
            for seed in args.seeds:
                result = fit_on_features(embedded, labels, embedded_names, ["lightgbm"], seed)["lightgbm"]
                record("lightgbm_embeddings", seed, result.probabilities, {"params": result.params, "backend": result.backend,
                                                                          "dropped_features": result.dropped_features})  # fmt: skip
        for model_name in [m for m in args.models if m in SEQBERT_MODELS]:
            for seed in args.seeds:
                folder = folders[(task, model_name, seed)]
                saved = np.load(folder / "predictions.npz")
                probabilities = {split: 1 / (1 + np.exp(-saved[f"{split}_logits"])) for split in ("validation", "test")}
                if not all(np.array_equal(saved[f"{split}_labels"], labels[split]) for split in ("validation", "test")):
                    raise RuntimeError(f"{folder}: saved labels differ from the benchmark's rows")
                if heldout is not None:
                    classifier = SeqBertForSequenceClassification.from_pretrained(folder).eval()
                    probabilities["heldout"] = predict_task_rows(classifier, BehaviorTokenizer.from_pretrained(folder), heldout[0],
                                                                 sequences=heldout[1])  # fmt: skip
                summary = json.loads((folder / "results.json").read_text())
                record(model_name, seed, probabilities, {"train_seconds": summary["wall_seconds"], "steps": summary["global_step"],
                                                          "best_step": summary["best_step"]})  # fmt: skip
        if curves:
            plot_reliability_comparison(curves, path=Path(args.output).parent / f"purchase_taobao_reliability_{task}.png",
                                        title=f"{task}: test reliability after temperature scaling (seed {args.seeds[0]})")  # fmt: skip
    annotate_cards(lines, folders)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("".join(json.dumps(line, default=float) + "\n" for line in lines))
    table = summarise(lines) + "\n\nTargets (seed means):\n\n" + targets(lines)
    (work / "table.md").write_text(table + "\n")
    print(table, file=sys.stderr)
    print(f"users {json.dumps(user_counts)}; total wall time {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return lines


if __name__ == "__main__":
    main()
