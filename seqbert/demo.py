"""``seqbert demo``: the whole pipeline on built-in synthetic data, through real ``accelerate launch``.

synthetic log → ``prepare`` (temporal split) → pretraining subprocess → fine-tuning subprocess →
results table (model vs baselines) and two Hub-shaped folders.
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

logger = logging.getLogger(__name__)


def add_demo_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo",
        help="Run the full pipeline on built-in synthetic data.",
        description="Generate a seeded synthetic e-commerce log, prepare it (temporal split), pretrain and fine-tune "
        "through `accelerate launch` subprocesses, and print next-item and purchase metrics against baselines.",
    )
    parser.add_argument("--output-dir", default="runs/demo", help="Folder for the data, models and results.")
    parser.add_argument("--num-users", type=int, default=4000, help="Synthetic users.")
    parser.add_argument("--num-items", type=int, default=1000, help="Synthetic catalog size.")
    parser.add_argument("--seed", type=int, default=0, help="Seed for data generation and training.")
    parser.add_argument("--pretrain-minutes", type=float, default=4.0, help="Wall-time budget of pretraining.")
    parser.add_argument("--finetune-minutes", type=float, default=1.5, help="Wall-time budget of fine-tuning.")
    parser.add_argument("--num-processes", type=int, default=1, help="Processes for `accelerate launch`.")
    parser.add_argument("--max-length", type=int, default=50, help="Most recent events the model sees (+ mask).")
    parser.add_argument(
        "--extra-pretrain-args", default="", help="Extra options for the pretraining script, as one quoted string."
    )


def accelerate_command(num_processes: int, module: str, options: list[str]) -> list[str]:
    """``accelerate launch`` of a seqbert module, explicit about every launcher setting."""
    import torch

    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes)]
    launcher += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if not torch.cuda.is_available():
        # One OpenMP team per core: oversubscribed threads spin-wait and run several times slower.
        threads = max(1, (os.cpu_count() or 1) // num_processes)
        launcher += ["--cpu", "--num_cpu_threads_per_process", str(threads)]
    elif num_processes > 1:
        launcher.append("--multi_gpu")
    return [*launcher, "-m", module, *options]


def run_step(name: str, command: list[str], log_path: Path) -> None:
    """Run a subprocess, streaming its output to the terminal and to ``log_path``."""
    logger.info("%s: %s", name, " ".join(command))
    started = time.monotonic()
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
        for line in process.stdout:
            log.write(line)
            if "it/s" not in line and "examples/s" not in line:
                sys.stdout.write(line)
        if process.wait() != 0:
            raise RuntimeError(f"{name} failed (exit {process.returncode}); full log: {log_path}")
    logger.info("%s finished in %.0f s", name, time.monotonic() - started)


SCALED_SUFFIX = "_temperature_scaled"


def format_results(pretrain: dict, finetune: dict) -> str:
    """The results table printed at the end of the demo."""
    lines = ["", "Next-item prediction (test, full ranking over the catalog, pessimistic ties)"]
    lines.append(f"{'model':<24}{'NDCG@10':>10}{'HR@10':>10}{'MRR':>10}{'users':>8}")
    for model, metrics in pretrain["metrics"]["test"].items():
        lines.append(f"{model:<24}{metrics['ndcg@10']:>10.4f}{metrics['hr@10']:>10.4f}{metrics['mrr']:>10.4f}{int(metrics['count']):>8}")
    lines += ["", f"Purchase within {finetune['cutoffs']['horizon_seconds'] / 86400:.1f} days (test)"]
    # One example per user and cutoff: with several cutoffs a user appears several times, so they are not users.
    lines.append(f"{'model':<44}{'ROC-AUC':>10}{'log-loss':>10}{'PR-AUC':>10}{'examples':>10}")
    test = finetune["metrics"]["test"]
    for model, metrics in test.items():
        # "<model>_temperature_scaled" rows hold only the metrics scaling changes: ranking metrics and
        # the row count are those of the unscaled model (a temperature is monotone).
        metrics = {**test.get(model.removesuffix(SCALED_SUFFIX), {}), **metrics}
        lines.append(
            f"{model:<44}{metrics.get('roc_auc', float('nan')):>10.4f}{metrics['log_loss']:>10.4f}"
            f"{metrics.get('pr_auc', float('nan')):>10.4f}{int(metrics.get('count', 0)):>10}"
        )
    return "\n".join(lines)


def run_demo(args: argparse.Namespace) -> dict:
    from .data.synthetic import SyntheticConfig, generate_events, write_events
    from .prepare import PrepareOptions, prepare_file

    started = time.monotonic()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    events_path = write_events(
        generate_events(SyntheticConfig(num_users=args.num_users, num_items=args.num_items, seed=args.seed)),
        out / "seqbert-synthetic.parquet",
    )
    prepared_dir, pretrained_dir, classifier_dir = out / "prepared", out / "seqbert-pretrained", out / "seqbert-purchase"
    prepare_file(events_path, PrepareOptions(split="temporal", max_length=args.max_length), output_dir=prepared_dir)

    # The demo owns its folders: a rerun replaces the previous demo's models instead of mixing with them.
    common = ["--data_dir", str(prepared_dir), "--max_length", str(args.max_length), "--seed", str(args.seed), "--overwrite_output_dir"]
    run_step(
        "pretrain",
        accelerate_command(
            args.num_processes,
            "seqbert.training.pretrain",
            [*common, "--output_dir", str(pretrained_dir), "--time_budget_minutes", str(args.pretrain_minutes),
             "--config", "demo_pretrain", *args.extra_pretrain_args.split()],
        ),
        out / "pretrain.log",
    )
    run_step(
        "finetune",
        accelerate_command(
            args.num_processes,
            "seqbert.training.finetune",
            [*common, "--output_dir", str(classifier_dir), "--model_name_or_path", str(pretrained_dir),
             "--time_budget_minutes", str(args.finetune_minutes), "--config", "demo_finetune"],
        ),
        out / "finetune.log",
    )
    pretrain = json.loads((pretrained_dir / "results.json").read_text())
    finetune = json.loads((classifier_dir / "results.json").read_text())
    print(format_results(pretrain, finetune))
    print(f"\nHub-shaped folders:\n  pretrained: {pretrained_dir}\n  fine-tuned: {classifier_dir}")
    summary = {
        "pretrain": pretrain,
        "finetune": finetune,
        "folders": {"pretrained": str(pretrained_dir), "finetuned": str(classifier_dir)},
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    (out / "demo_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"Total wall time {summary['wall_seconds']:.0f} s; results in {out / 'demo_results.json'}")
    return summary


__all__ = ["accelerate_command", "add_demo_parser", "format_results", "run_demo"]
