"""Faithfulness of seqbert's explanations (issue 23): does removing the top-attributed events change the prediction
more than removing random or the most recent ones?

For each model, ``--rows`` test rows (a seeded sample) are explained with ``Recommender.explain`` /
``Classifier.explain`` (timed: ``seconds_per_explanation``), then re-scored through ``recommend`` /
``predict_proba``'s own scoring with events removed from the raw history:

- **deletion** (comprehensiveness, ERASER, DeYoung et al. 2020, https://arxiv.org/abs/1911.03429): remove the k
  events with the highest attribution, k random events (mean of ``--draws`` draws) or the k most recent events;
  ``drop = prediction(all events) - prediction(without them)``;
- **insertion / sufficiency**: keep only those k events; ``sufficiency = prediction(all) - prediction(only them)``
  (lower: the k events alone carry more of the prediction).

The prediction is the test target item's score (the next-item logit ``recommend`` ranks by) for a next-item model,
the probability for a classifier. The pool is the events the model reads (its last ``max_length - 1``); a row counts at
k only if it has more than k of them, so "remove k" never means "remove all" (``rows`` says how many rows that is).
The area between curves is the mean over k = 1 .. ``--max-k`` of drop_top - drop_random (and - drop_recent), on the
rows with more than ``--max-k`` events (the same rows at every k). The completeness residual is reported as a share of
the explained change |logit - baseline logit| (median, 95th percentile) and of the range of the rows' logits.

Next-item data: a prepared leave-one-out folder (``seqbert prepare``); the row's history is its test input and the
explained item its test target (rows whose target is outside the catalog are skipped). Classifier data: the
prepared temporal folder the classifier was fine-tuned on; rows are its test labelled rows (user-purchase: every
user at the test cutoff, the prediction time being the cutoff).

Writes ``--output`` (replaced): one JSON line per (model, method, k) with ``model``, ``k``, ``drop_top``,
``drop_random``, ``drop_recent``, ``rows``, ``seconds_per_explanation`` and more; the deletion and insertion curves
(``--plot``) and one example timeline per model (``--example-dir``).

Example (what BENCHMARKS.md reports)::

    python scripts/bench_explain.py --next-item-model /tmp/w/nb/beauty/models/seqbert-seed0 \\
        --next-item-data /tmp/w/nb/beauty/prepared \\
        --classifier-model /tmp/w23/purchase/runs/user-purchase-seqbert_scratch-0 \\
        --classifier-data /tmp/w23/purchase/prepared_daily --rows 1000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ("top", "random", "recent")
REPORTED_K = (1, 3, 5)
logger = logging.getLogger("bench_explain")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("--next-item-model", help="Masked-behavior model folder (explains the test target's score); none: skipped.")
    add("--next-item-data", help="Its prepared leave-one-out folder.")
    add("--next-item-name", default="beauty-next-item", help="`model` of its lines.")
    add("--classifier-model", help="Fine-tuned user-purchase classifier folder; none: skipped.")
    add("--classifier-data", help="The prepared temporal folder it was fine-tuned on.")
    add("--classifier-name", default="taobao-user-purchase", help="`model` of its lines.")
    add("--horizon-days", type=float, default=1.0, help="Classifier: label horizon of its test rows, in days.")
    add("--rows", type=int, default=1000, help="Test rows per model (a seeded sample; all if fewer).")
    add("--methods", nargs="+", default=["integrated_gradients"], help="Attribution methods (seqbert.explain.METHODS).")
    add("--n-steps", type=int, default=None, help="Integrated-gradients points (default: seqbert.explain.DEFAULT_STEPS).")
    add("--max-k", type=int, default=10, help="Largest k of the curves (the lines report k = 1, 3, 5).")
    add("--draws", type=int, default=10, help="Random removals per row and k.")
    add("--seed", type=int, default=0, help="Seed of the row sample and the random removals.")
    add("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
    add("--output", default=str(ROOT / "benchmarks" / "explain_faithfulness.jsonl"), help="JSON lines, replaced.")
    add("--plot", default=str(ROOT / "benchmarks" / "explain_deletion_curves.png"), help="Deletion / insertion curves PNG.")
    add("--example-dir", default=str(ROOT / "benchmarks"), help="Where explain_example_<model>.png (one row's timeline) goes.")
    args = parser.parse_args(argv)
    if bool(args.next_item_model) != bool(args.next_item_data) or bool(args.classifier_model) != bool(args.classifier_data):
        parser.error("give each model folder with its prepared data folder (--*-model with --*-data).")
    if not (args.next_item_model or args.classifier_model):
        parser.error("give --next-item-model/--next-item-data, --classifier-model/--classifier-data or both.")
    return args


class Case(NamedTuple):
    """One test row: the raw history (time order), what is explained, and how it is scored."""

    events: list[dict[str, Any]]
    explain: Callable[[list[dict[str, Any]]], Any]
    score: Callable[[list[list[dict[str, Any]]]], np.ndarray]


def sample(count: int, rows: int, seed: int) -> list[int]:
    return sorted(np.random.default_rng(seed).permutation(count)[: min(rows, count)].tolist())


def as_events(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"item_id": i, "event_type": t, "timestamp": int(s)} for i, t, s in zip(row["item_ids"], row["event_types"], row["timestamps"])]


def next_item_cases(args: argparse.Namespace, method: str, options: dict) -> tuple[Any, list[Case]]:
    from seqbert import Recommender
    from seqbert.prepared import PreparedData

    recommender = Recommender.from_pretrained(args.next_item_model)
    test = PreparedData.load(args.next_item_data).splits["test"]
    tokens = recommender.tokenizer.item_token_ids(test["target_item_id"])
    known = np.flatnonzero(tokens >= recommender.tokenizer.num_special_tokens)
    rows = test.select(known[sample(len(known), args.rows, args.seed)].tolist())
    cases = []
    for row, token in zip(rows, recommender.tokenizer.item_token_ids(rows["target_item_id"])):
        column, target = int(token) - recommender.tokenizer.num_special_tokens, row["target_item_id"]
        cases.append(Case(
            as_events(row),
            lambda events, target=target: recommender.explain(events, target, method=method, **options),
            lambda histories, column=column: recommender.score(histories)[:, column].numpy().astype(np.float64),
        ))  # fmt: skip
    return recommender, cases


def classifier_cases(args: argparse.Namespace, method: str, options: dict) -> tuple[Any, list[Case]]:
    from seqbert import Classifier
    from seqbert.prepared import PreparedData
    from seqbert.training.finetune import label_splits

    classifier = Classifier.from_pretrained(args.classifier_model)
    task = getattr(classifier.model.config, "finetuning_task", None)
    if task != "user-purchase" or classifier.needs_candidates or getattr(classifier.model.config, "num_tabular_features", 0):
        raise SystemExit(f"{args.classifier_model}: only user-purchase classifiers without tabular features are benchmarked (got {task}).")
    labelled, _ = label_splits(PreparedData.load(args.classifier_data), int(args.horizon_days * 86_400), task)
    test = labelled["test"].filter(lambda row: len(row["item_ids"]) > 0)
    rows = test.select(sample(test.num_rows, args.rows, args.seed))
    cases = []
    for row in rows:
        query = int(row["cutoff"])
        cases.append(Case(
            as_events(row),
            lambda events, query=query: classifier.explain(events, query, method=method, **options),
            lambda histories, query=query: np.asarray(classifier.predict_proba(histories, [query] * len(histories)), dtype=np.float64),
        ))  # fmt: skip
    return classifier, cases


def removal_sets(visible: list[int], attributions: np.ndarray, k: int, draws: int, rng: np.random.Generator) -> dict[str, list[set[int]]]:
    """The event indices removed (or kept) by each strategy at k: one set for top and recent, ``draws`` for random."""
    order = np.argsort(-attributions, kind="stable")
    return {
        "top": [{visible[i] for i in order[:k]}],
        "recent": [set(visible[-k:])],
        "random": [set(rng.choice(visible, size=k, replace=False).tolist()) for _ in range(draws)],
    }


def evaluate(name: str, method: str, cases: list[Case], args: argparse.Namespace) -> tuple[list[dict], dict, Any]:
    rng = np.random.default_rng(args.seed + 1)
    ks = range(1, args.max_k + 1)
    drops = {(mode, s, k): [] for mode in ("deletion", "insertion") for s in STRATEGIES for k in ks}
    rows_at = {k: 0 for k in ks}
    full_rows: list[int] = []  # rows with more than max_k events: the same rows at every k (areas, curves)
    seconds, residuals, relative, logits, read, example = [], [], [], [], [], None

    def strength(e: Any) -> float:
        """The example timeline: among rows with 6 to 20 events read, the best-ranked target / highest probability."""
        return (-e.rank if e.rank is not None else e.prediction) if 6 <= len(e.events) <= 20 else -float("inf")

    for number, case in enumerate(cases):
        started = time.perf_counter()
        explanation = case.explain(case.events)
        seconds.append(time.perf_counter() - started)
        if example is None or strength(explanation) > strength(example):
            example = explanation
        residuals.append(explanation.completeness_residual)
        relative.append(explanation.relative_residual)
        logits.append(explanation.logit)
        read.append(len(explanation.events))
        visible = [event.index for event in explanation.events]
        histories, plan = [], []
        for k in ks:
            if len(visible) <= k:
                continue
            rows_at[k] += 1
            for strategy, sets in removal_sets(visible, explanation.attributions, k, args.draws, rng).items():
                for removed in sets:
                    plan.append((strategy, k, len(histories)))
                    histories.append([event for i, event in enumerate(case.events) if i not in removed])
                    histories.append([event for i, event in enumerate(case.events) if i in removed])
        if len(visible) > args.max_k:
            full_rows.append(number)
        values = case.score(histories) if histories else np.zeros(0)
        per_row: dict[tuple, list[float]] = {}
        for strategy, k, at in plan:
            per_row.setdefault(("deletion", strategy, k), []).append(explanation.prediction - values[at])
            per_row.setdefault(("insertion", strategy, k), []).append(explanation.prediction - values[at + 1])
        for key, row_values in per_row.items():
            drops[key].append((number, float(np.mean(row_values))))
        if (number + 1) % 100 == 0:
            logger.info("%s %s: %d / %d rows, %.1f ms per explanation", name, method, number + 1, len(cases), 1000 * np.mean(seconds))

    def mean(mode: str, strategy: str, k: int, rows: list[int] | None = None) -> float:
        values = [v for row, v in drops[(mode, strategy, k)] if rows is None or row in rows]
        return float(np.mean(values)) if values else float("nan")

    full = set(full_rows)
    area = {other: float(np.mean([mean("deletion", "top", k, full) - mean("deletion", other, k, full) for k in ks]))
            for other in ("random", "recent")}  # fmt: skip
    spread = float(np.max(logits) - np.min(logits)) if logits else float("nan")
    common = {
        "model": name, "method": method, "measure": "probability" if example.rank is None else "target item score (logit)",
        "seconds_per_explanation": float(np.mean(seconds)), "explanation_ms_p50": 1000 * float(np.median(seconds)),
        "explanation_ms_p90": 1000 * float(np.percentile(seconds, 90)), "explained_rows": len(cases),
        "mean_history_events": float(np.mean([len(c.events) for c in cases])) if cases else 0.0,
        "mean_events_read": float(np.mean(read)) if read else 0.0,
        "residual_share_of_change_median": float(np.median(relative)), "residual_share_of_change_p95": float(np.percentile(relative, 95)),
        "residual_abs_max": float(np.max(np.abs(residuals))), "residual_share_of_logit_range_max": float(np.max(np.abs(residuals)) / spread),
        "area_top_minus_random": area["random"], "area_top_minus_recent": area["recent"], "area_rows": len(full_rows),
        "n_steps": example.n_steps, "baseline": example.baseline,
    }  # fmt: skip
    lines = []
    for k in REPORTED_K:
        if k > args.max_k:
            continue
        line = {"model": name, "k": k, "drop_top": mean("deletion", "top", k), "drop_random": mean("deletion", "random", k),
                "drop_recent": mean("deletion", "recent", k), "rows": rows_at[k], **common}  # fmt: skip
        line["top_vs_random"] = line["drop_top"] / line["drop_random"] if line["drop_random"] else float("nan")
        line["top_vs_recent"] = line["drop_top"] / line["drop_recent"] if line["drop_recent"] else float("nan")
        for strategy in STRATEGIES:
            line[f"sufficiency_{strategy}"] = mean("insertion", strategy, k)
        lines.append(line)
    titles = {"deletion": "deletion: all - without the k", "insertion": "insertion: all - only the k"}
    tag = "" if method == "integrated_gradients" else f" [{method}]"
    curves = {f"{name}{tag}, {titles[mode]}": {s: (list(ks), [mean(mode, s, k, full) for k in ks]) for s in STRATEGIES}
              for mode in ("deletion", "insertion")}  # fmt: skip
    return lines, curves, example


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch

    from seqbert.explain import DEFAULT_STEPS
    from seqbert.plots import plot_deletion_curves, plot_explanation

    if args.threads:
        torch.set_num_threads(args.threads)
    options = {"n_steps": args.n_steps or DEFAULT_STEPS}
    started = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    models = [(args.next_item_name, next_item_cases)] if args.next_item_model else []
    models += [(args.classifier_name, classifier_cases)] if args.classifier_model else []
    lines, panels = [], {}
    for name, build in models:
        for method in args.methods:
            _, cases = build(args, method, options)
            model_lines, curves, example = evaluate(name, method, cases, args)
            lines += model_lines
            panels.update(curves)
            if method == args.methods[0] and example is not None:
                plot_explanation(example, path=Path(args.example_dir) / f"explain_example_{name}.png",
                                 title=f"{name}: one test row, why {example.target}")  # fmt: skip
    machine = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "torch_threads": torch.get_num_threads(),
               "cpu_count": os.cpu_count(), "load_average_1m_at_start": load, "machine": platform.machine(),
               "torch": torch.__version__, "wall_s": round(time.perf_counter() - started, 1)}  # fmt: skip
    lines = [{**line, **machine} for line in lines]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("".join(json.dumps(line) + "\n" for line in lines))
    plot_deletion_curves(panels, path=args.plot, title=f"k events chosen by attribution (top), at random or the most recent; "
                         f"rows with more than {args.max_k} events")  # fmt: skip
    for line in lines:
        print(json.dumps({key: line[key] for key in ("model", "method", "k", "drop_top", "drop_random", "drop_recent",
                                                     "top_vs_random", "top_vs_recent", "rows", "seconds_per_explanation")}))  # fmt: skip
    return lines


if __name__ == "__main__":
    main(sys.argv[1:])
