"""Side-by-side training/evaluation speed: seqbert vs RecBole's BERT4Rec and SASRec (issue 7, part 1).

Takes a prepared-data folder written by ``seqbert prepare ... --split leave_one_out``, converts it to
RecBole atomic files (``<name>.inter`` with ``user_id:token``, ``item_id:token``, ``timestamp:float``),
writes a RecBole config with the same model size as seqbert, and runs, one at a time and each in its own
child process pinned to one thread:

* RecBole BERT4Rec and SASRec (via the python of a separate RecBole venv; RecBole is never a seqbert
  dependency), for a fixed number of epochs, validating after each epoch;
* seqbert pretraining (``seqbert.training.pretrain``), bidirectional (Cloze) and ``--attention_type causal``
  (SASRec-style), for the same number of epochs.

For each system x model it measures training sequences/s, training examples (prediction targets)/s,
seconds per epoch, full-catalog validation time, peak RSS of the child (``os.wait4`` rusage) and validation
NDCG@10, prints one JSON line and writes a markdown table.

**Equal quality.** Speed only counts at equal model quality, so every seqbert validation also scores the
RecBole protocol (history items removed), and the script reports, per RecBole model and its seqbert
counterpart (BERT4Rec ↔ bidirectional Cloze, SASRec ↔ causal), the training seconds each needs to reach
the best validation NDCG@10 RecBole reached in its run (``equal_quality`` JSON lines and a second table).
Give seqbert more epochs than RecBole with ``--seqbert-epochs`` so it can get there.

What a "sequence" is differs: RecBole trains on every prefix of every user's training sequence (prefix
augmentation, one target per prefix for SASRec, masked positions for BERT4Rec); seqbert trains on one
sequence per user (Cloze masked positions, or every next-item position for causal). Both counts are
reported so the numbers can be compared either way.

Example::

    python scripts/bench_speed.py /tmp/speed/prepared --recbole-python /tmp/recbole-venv/bin/python \\
        --epochs 1 --work-dir /tmp/speed/run --markdown /tmp/speed/table.md
    # equal quality: RecBole 1 epoch, seqbert up to 20 epochs (validated after each)
    python scripts/bench_speed.py /tmp/speed/prepared --epochs 1 --seqbert-epochs 20 --work-dir /tmp/speed/eq
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SEQBERT_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
ATOMIC_HEADER = "user_id:token\titem_id:token\ttimestamp:float"
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


# --------------------------------------------------------------------------------------------- conversion
def _read_split(prepared_dir: Path, split: str) -> list[dict]:
    from datasets import load_from_disk

    return load_from_disk(str(prepared_dir / "dataset" / split)).to_list()


def convert_to_atomic(prepared_dir: str | Path, out_dir: str | Path, dataset_name: str = "seqbert") -> dict:
    """Write ``out_dir/<dataset_name>/<dataset_name>.inter`` from a leave-one-out prepared folder.

    Each user's rows are the train-split events followed by the validation target and then the test
    target, so RecBole's ``eval_args.split: {LS: valid_and_test}`` (ordered by time, grouped by user)
    reproduces seqbert's split exactly: RecBole's train part = seqbert's train sequence, its validation
    item = seqbert's validation target (with the train sequence as history), its test item = the test
    target. Timestamps are kept; where a user's timestamps do not strictly increase they are nudged up by
    1e-3 so RecBole's time sort cannot reorder events. Returns counts (users, items, rows, train events).
    """
    prepared_dir, out_dir = Path(prepared_dir), Path(out_dir)
    protocol = json.loads((prepared_dir / "protocol.json").read_text())
    if protocol.get("kind") != "leave_one_out":
        raise ValueError(f"{prepared_dir}: need a leave_one_out split (got {protocol.get('kind')!r}).")
    train = {row["user_id"]: row for row in _read_split(prepared_dir, "train")}
    targets: dict[str, list[tuple[str, float]]] = {}
    for split in ("validation", "test"):
        for row in _read_split(prepared_dir, split):
            targets.setdefault(row["user_id"], []).append((row["target_item_id"], row["target_timestamp"]))
    users = list(train) + [u for u in targets if u not in train]
    dataset_dir = out_dir / dataset_name
    dataset_dir.mkdir(parents=True, exist_ok=True)
    path = dataset_dir / f"{dataset_name}.inter"
    items: set[str] = set()
    rows = train_events = 0
    prefixes = 0
    with path.open("w", encoding="utf-8") as handle:
        handle.write(ATOMIC_HEADER + "\n")
        for user in users:
            row = train.get(user, {"item_ids": [], "timestamps": []})
            events = list(zip(row["item_ids"], row["timestamps"]))
            train_events += len(events)
            prefixes += max(len(events) - 1, 0)
            events += targets.get(user, [])
            previous = None
            for item, stamp in events:
                if "\t" in user or "\t" in item or "\n" in user or "\n" in item:
                    raise ValueError(f"user/item ids may not contain tabs or newlines: {user!r} {item!r}")
                stamp = float(stamp)
                if previous is not None and stamp <= previous:
                    stamp = previous + 1e-3
                previous = stamp
                handle.write(f"{user}\t{item}\t{stamp!r}\n")
                items.add(item)
                rows += 1
    return {
        "path": str(path),
        "users": len(users),
        "items": len(items),
        "rows": rows,
        "train_events": train_events,
        # RecBole's prefix augmentation: one training example per train event after each user's first.
        "train_prefixes": prefixes,
    }


def recbole_config(args: argparse.Namespace) -> dict:
    """RecBole settings matching seqbert's model size, batch and evaluation (full catalog, NDCG@10)."""
    return {
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": args.max_length,
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "hidden_size": args.hidden_size,
        "n_layers": args.num_layers,
        "n_heads": args.num_heads,
        "inner_size": args.inner_size,
        "hidden_dropout_prob": args.dropout,
        "attn_dropout_prob": args.dropout,
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "epochs": args.epochs,
        "train_batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        # For sequential models RecBole's full-sort loader takes eval_batch_size users per batch
        # (FullSortEvalDataLoader._init_batch_size_and_step), like seqbert's --eval_batch_size.
        "eval_batch_size": args.eval_batch_size,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["NDCG", "Recall"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "device": "cpu",
        "use_gpu": False,
        "worker": 0,
        "seed": args.seed,
        "reproducibility": True,
        "show_progress": False,
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
    }


def _yaml(value, indent: int = 0) -> str:
    """Tiny YAML writer for the flat config above (JSON scalars/lists are valid YAML flow values)."""
    lines = []
    for key, item in value.items():
        if isinstance(item, dict):
            lines.append(" " * indent + f"{key}:")
            lines.append(_yaml(item, indent + 2))
        elif item is None:
            lines.append(" " * indent + f"{key}: ~")
        elif isinstance(item, bool):
            lines.append(" " * indent + f"{key}: {'True' if item else 'False'}")
        else:
            lines.append(" " * indent + f"{key}: {json.dumps(item)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- child code
RECBOLE_RUNNER = r'''
import json, sys, time
import torch
torch.set_num_threads(1)
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed, get_model, get_trainer

config_file, model_name, data_path, dataset_name, epochs, out_path = sys.argv[1:7]
epochs = int(epochs)
started = time.perf_counter()
config = Config(model=model_name, dataset=dataset_name, config_file_list=[config_file],
                config_dict={"data_path": data_path, "checkpoint_dir": out_path + ".ckpt"})
init_seed(config["seed"], config["reproducibility"])
dataset = create_dataset(config)
train_data, valid_data, test_data = data_preparation(config, dataset)
model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
# recbole/model/sequential_recommender/sine.py switches anomaly detection on for the whole process when RecBole's
# models are imported (~1.5x slower CPU steps); results before 2026-12-07 were measured with it on.
torch.autograd.set_detect_anomaly(False)
trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
setup_seconds = time.perf_counter() - started

targets = {"count": 0}
original_loss = model.calculate_loss
def counting_loss(interaction):
    # prediction targets in this batch: masked positions (BERT4Rec) or one next item per row (SASRec)
    # (BERT4Rec's CE loss weights positions by MASK_INDEX > 0, so that is what is counted)
    if "MASK_INDEX" in interaction.interaction:
        targets["count"] += int((interaction["MASK_INDEX"] > 0).sum())
    else:
        targets["count"] += len(interaction)
    return original_loss(interaction)
model.calculate_loss = counting_loss

train_examples = len(train_data._dataset)
print(json.dumps({"setup_seconds": setup_seconds, "train_examples": train_examples}), flush=True)
epochs_out = []
for epoch in range(epochs):
    before = targets["count"]
    t0, c0 = time.perf_counter(), time.process_time()
    loss = trainer._train_epoch(train_data, epoch, show_progress=False)
    t1, c1 = time.perf_counter(), time.process_time()
    score, result = trainer._valid_epoch(valid_data, show_progress=False)
    t2 = time.perf_counter()
    loss = float(sum(loss)) if isinstance(loss, tuple) else float(loss)
    epochs_out.append({"epoch": epoch + 1, "train_seconds": t1 - t0, "train_cpu_seconds": c1 - c0, "eval_seconds": t2 - t1,
                       "loss": loss, "targets": targets["count"] - before,
                       "ndcg@10": float(result["ndcg@10"]), "recall@10": float(result["recall@10"])})
    print(json.dumps(epochs_out[-1]), flush=True)
json.dump({"setup_seconds": setup_seconds, "train_examples": train_examples,
           "train_users": int(train_data._dataset.user_num - 1), "items": int(train_data._dataset.item_num - 1),
           "valid_users": len(valid_data._dataset),
           "epochs": epochs_out}, open(out_path, "w"))
'''

SEQBERT_RUNNER = r'''
import json, sys, time
import torch
torch.set_num_threads(1)
import seqbert.training.pretrain as pretrain

out_path = sys.argv[1]
argv = sys.argv[2:]
phase = {"name": "setup"}
evals, counts = [], {"targets": 0, "batches": 0}

original_evaluate = pretrain.evaluate_scorer
def timed_evaluate(*a, **k):
    t0, c0 = time.perf_counter(), time.process_time()
    result = original_evaluate(*a, **k)
    record = {"phase": phase["name"], "started_at": t0 - phase.get("loop_start", t0),
              "started_at_cpu": c0 - phase.get("loop_start_cpu", c0), "ndcg@10": result.get("ndcg@10")}
    if phase["name"] == "train_loop" and not k.get("exclude_history"):
        # RecBole's protocol (history items removed), for the equal-quality comparison; timed as evaluation.
        record["ndcg@10_history_removed"] = original_evaluate(*a, **{**k, "exclude_history": True}).get("ndcg@10")
    record["seconds"], record["cpu_seconds"] = time.perf_counter() - t0, time.process_time() - c0
    evals.append(record)
    return result
pretrain.evaluate_scorer = timed_evaluate

class CountingCollator:
    def __init__(self, inner):
        self.inner = inner
    def __getattr__(self, name):
        return getattr(self.inner, name)
    def __call__(self, features):
        batch = self.inner(features)
        counts["targets"] += int((batch["labels"] != -100).sum())
        counts["batches"] += 1
        return batch
original_make_collator = pretrain.make_collator
pretrain.make_collator = lambda *a, **k: CountingCollator(original_make_collator(*a, **k))

original_train = pretrain.train
def timed_train(*a, **k):
    phase["name"] = "train_loop"
    t0 = phase["loop_start"] = time.perf_counter()
    phase["loop_start_cpu"] = time.process_time()
    state = original_train(*a, **k)
    phase["name"] = "after"
    phase["train_loop_seconds"] = time.perf_counter() - t0
    return state
pretrain.train = timed_train

started = time.perf_counter()
summary = pretrain.main(argv)
json.dump({"total_seconds": time.perf_counter() - started, "train_loop_seconds": phase["train_loop_seconds"],
           "evals": evals, "targets": counts["targets"], "batches": counts["batches"], "summary": summary},
          open(out_path, "w"), default=str)
'''


def run_child(cmd: list[str], env: dict, log_path: Path, cwd: Path = REPO_ROOT) -> dict:
    """Run ``cmd`` in ``cwd`` to completion; wall seconds, exit code and the child's peak RSS (MiB, via wait4)."""
    started = time.perf_counter()
    with log_path.open("w") as log:
        process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(cwd))
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "returncode": process.returncode,
        "wall_seconds": time.perf_counter() - started,
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        "log": str(log_path),
    }


def child_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    for name in THREAD_ENV:
        env[name] = "1"
    env.update(extra or {})
    return env


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def bench_recbole(args, model: str, config_path: Path, data_path: Path, work: Path) -> dict:
    runner = work / "recbole_runner.py"
    runner.write_text(RECBOLE_RUNNER)
    out = work / f"recbole_{model}.json"
    load_before = load_average()
    child = run_child(
        [args.recbole_python, str(runner), str(config_path), model, str(data_path) + "/", args.dataset_name,
         str(args.epochs), str(out)],
        child_env({"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}),
        work / f"recbole_{model}.log",
        cwd=work,  # RecBole writes log_tensorboard/ into its working directory
    )  # fmt: skip
    record = {"system": "RecBole 1.2.1", "model": model, "load_before": load_before, "load_after": load_average(), **child}
    if out.exists():
        result = json.loads(out.read_text())
    else:  # killed or failed: keep the epochs it logged (one JSON line each) and say so
        lines = [json.loads(line) for line in Path(child["log"]).read_text().splitlines() if line.startswith("{")]
        setup = next((line for line in lines if "train_examples" in line), None)
        result = {**(setup or {}), "epochs": [line for line in lines if "epoch" in line]}
        if setup is None or not result["epochs"]:
            record["error"] = "child failed; see log"
            return record
        record["partial"] = f"child exited with {child['returncode']}; {len(result['epochs'])} epoch(s) logged"
    epochs = result["epochs"]
    train_seconds = sum(e["train_seconds"] for e in epochs)
    record.update(
        epochs=len(epochs),
        seconds_per_epoch=train_seconds / len(epochs),
        sequences_per_epoch=result["train_examples"],
        sequences_per_s=result["train_examples"] * len(epochs) / train_seconds,
        targets_per_epoch=sum(e["targets"] for e in epochs) / len(epochs),
        targets_per_s=sum(e["targets"] for e in epochs) / train_seconds,
        eval_seconds=sum(e["eval_seconds"] for e in epochs) / len(epochs),
        val_ndcg10_history_removed=max(e["ndcg@10"] for e in epochs),  # RecBole's full sort removes history
        setup_seconds=result["setup_seconds"],
        per_epoch=epochs,
        curve=recbole_curve(epochs),
    )
    return record


def bench_seqbert(args, attention: str, work: Path) -> dict:
    runner = work / "seqbert_runner.py"
    runner.write_text(SEQBERT_RUNNER)
    out = work / f"seqbert_{attention}.json"
    cmd = [
        args.seqbert_python, str(runner), str(out),
        "--data_dir", str(args.prepared_dir), "--output_dir", str(work / f"seqbert_{attention}_model"), "--overwrite_output_dir",
        "--attention_type", attention, "--num_epochs", str(args.seqbert_epochs or args.epochs), "--eval_every_epochs", "1",
        "--per_device_batch_size", str(args.batch_size), "--eval_batch_size", str(args.eval_batch_size),
        "--max_length", str(args.max_length), "--hidden_size", str(args.hidden_size),
        "--num_hidden_layers", str(args.num_layers), "--num_attention_heads", str(args.num_heads),
        "--intermediate_size", str(args.inner_size), "--hidden_dropout_prob", str(args.dropout),
        "--attention_probs_dropout_prob", str(args.dropout), "--learning_rate", str(args.learning_rate),
        "--seed", str(args.seed), "--mixed_precision", "no", "--logging_steps", "1000000",
        *args.seqbert_extra,
    ]  # fmt: skip
    load_before = load_average()
    child = run_child(cmd, child_env({"ACCELERATE_USE_CPU": "1"}), work / f"seqbert_{attention}.log")
    model = "bidirectional (Cloze)" if attention == "bidirectional" else "causal (SASRec-style)"
    record = {"system": "seqbert", "model": model, "load_before": load_before, "load_after": load_average(), **child}
    record["command"] = " ".join(["python", "-m", "seqbert.training.pretrain", *cmd[3:]])
    if child["returncode"] != 0 or not out.exists():
        record["error"] = "child failed; see log"
        return record
    result = json.loads(out.read_text())
    summary = result["summary"]
    loop_evals = [e for e in result["evals"] if e["phase"] == "train_loop"]
    eval_seconds = sum(e["seconds"] for e in loop_evals)
    train_seconds = result["train_loop_seconds"] - eval_seconds
    epochs = int(summary["epochs_completed"]) or args.seqbert_epochs or args.epochs
    sequences = int(summary["train_sequences"])
    record.update(
        epochs=epochs,
        seconds_per_epoch=train_seconds / epochs,
        sequences_per_epoch=sequences,
        sequences_per_s=sequences * epochs / train_seconds,
        targets_per_epoch=result["targets"] / epochs,
        targets_per_s=result["targets"] / train_seconds,
        eval_seconds=eval_seconds / max(len(loop_evals), 1),
        val_ndcg10=max((e["ndcg@10"] for e in loop_evals if e["ndcg@10"] is not None), default=None),
        val_ndcg10_history_removed=max(
            (e["ndcg@10_history_removed"] for e in loop_evals if e.get("ndcg@10_history_removed") is not None), default=None
        ),
        setup_seconds=result["total_seconds"] - result["train_loop_seconds"],
        per_epoch_evals=loop_evals,
        curve=training_curve(loop_evals),
    )
    return record


def training_curve(loop_evals: list[dict]) -> list[dict]:
    """Per validation: cumulative training wall and CPU seconds before it (evaluation excluded) and its NDCG@10."""
    curve, eval_seconds, eval_cpu_seconds = [], 0.0, 0.0
    for evaluation in loop_evals:
        curve.append({
            "train_seconds": evaluation["started_at"] - eval_seconds,
            "train_cpu_seconds": evaluation.get("started_at_cpu", 0.0) - eval_cpu_seconds,
            "ndcg@10": evaluation["ndcg@10"],
            "ndcg@10_history_removed": evaluation.get("ndcg@10_history_removed"),
        })  # fmt: skip
        eval_seconds += evaluation["seconds"]
        eval_cpu_seconds += evaluation.get("cpu_seconds", 0.0)
    return curve


def recbole_curve(per_epoch: list[dict]) -> list[dict]:
    """RecBole's per-epoch validation (its full-sort protocol removes history items) against training seconds."""
    curve, seconds, cpu_seconds = [], 0.0, 0.0
    for epoch in per_epoch:
        seconds += epoch["train_seconds"]
        cpu_seconds += epoch.get("train_cpu_seconds", 0.0)
        curve.append({"train_seconds": seconds, "train_cpu_seconds": cpu_seconds, "ndcg@10_history_removed": epoch["ndcg@10"]})
    return curve


# Which seqbert mode is compared with which RecBole model at equal quality.
COUNTERPARTS = {"BERT4Rec": "bidirectional (Cloze)", "SASRec": "causal (SASRec-style)"}


def equal_quality(records: list[dict]) -> list[dict]:
    """Training time each system needs to reach the same validation NDCG@10 (history removed on both sides).

    The reference quality is the best validation NDCG@10 RecBole reached in its run, and the time it needed
    to first reach it; for the counterpart seqbert mode the time is that of its first validation at or above
    that quality. Times are training only (validation excluded), as process CPU seconds (every child runs one
    thread, so this is robust to other load on the machine) and as wall seconds. ``speedup`` = RecBole CPU
    seconds / seqbert CPU seconds; None when seqbert never got there.
    """
    rows = []
    for recbole in (r for r in records if r.get("system", "").startswith("RecBole") and r.get("curve")):
        target = max(point["ndcg@10_history_removed"] for point in recbole["curve"])
        at_target = next(p for p in recbole["curve"] if p["ndcg@10_history_removed"] >= target)
        mode = COUNTERPARTS.get(recbole["model"])
        seqbert = next((r for r in records if r.get("system") == "seqbert" and r.get("model") == mode and r.get("curve")), None)
        if seqbert is None:
            continue
        reached = next((p for p in seqbert["curve"] if (p["ndcg@10_history_removed"] or 0.0) >= target), None)
        rows.append({
            "recbole_model": recbole["model"], "seqbert_model": mode, "target_val_ndcg10_history_removed": target,
            "recbole_epochs": len(recbole["curve"]),
            "recbole_train_cpu_seconds": at_target.get("train_cpu_seconds"), "recbole_train_seconds": at_target["train_seconds"],
            "seqbert_train_cpu_seconds": reached.get("train_cpu_seconds") if reached else None,
            "seqbert_train_seconds": reached["train_seconds"] if reached else None,
            "seqbert_validation_index": seqbert["curve"].index(reached) + 1 if reached else None,
            "seqbert_best_val_ndcg10_history_removed": max((p["ndcg@10_history_removed"] or 0.0) for p in seqbert["curve"]),
            "seqbert_train_seconds_total": seqbert["curve"][-1]["train_seconds"],
            "speedup": _ratio(at_target.get("train_cpu_seconds"), reached and reached.get("train_cpu_seconds")),
            "speedup_wall": _ratio(at_target["train_seconds"], reached and reached["train_seconds"]),
        })  # fmt: skip
    return rows


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator and denominator else None


def equal_quality_table(rows: list[dict]) -> str:
    lines = [
        "| RecBole model | RecBole epochs | RecBole train CPU s (wall s) | val NDCG@10 reached (history removed) | "
        "seqbert mode | seqbert train CPU s (wall s) to reach it | seqbert best val NDCG@10 (history removed) | "
        "speed-up at equal quality, CPU (wall) |",
        "|" + "---|" * 8,
    ]
    for r in rows:
        recbole = f"{r['recbole_train_cpu_seconds'] or 0:.0f} ({r['recbole_train_seconds']:.0f})"
        reached = (
            f"{r['seqbert_train_cpu_seconds'] or 0:.0f} ({r['seqbert_train_seconds']:.0f})"
            if r["seqbert_train_seconds"] is not None else "not reached"
        )  # fmt: skip
        speedup = (
            f"{r['speedup']:.1f}× ({r['speedup_wall']:.1f}×)" if r["speedup"] is not None and r["speedup_wall"] else "n/a"
        )
        lines.append(
            f"| {r['recbole_model']} | {r['recbole_epochs']} | {recbole} | {r['target_val_ndcg10_history_removed']:.4f} | "
            f"{r['seqbert_model']} | {reached} | {r['seqbert_best_val_ndcg10_history_removed']:.4f} | {speedup} |"
        )
    return "\n".join(lines) + "\n"


def markdown_table(records: list[dict]) -> str:
    head = (
        "| system | model | epochs | s/epoch (train) | train sequences/epoch | sequences/s | targets/epoch | "
        "targets/s | full-catalog valid eval (s) | peak RSS (MiB) | best val NDCG@10 (history removed) | "
        "load (1-min avg) before→after |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in records:
        if "error" in r:
            lines.append(f"| {r['system']} | {r['model']} | failed (rc {r['returncode']}, {r['log']}) |" + " |" * 9)
            continue
        ndcg = f"{r['val_ndcg10_history_removed']:.4f}" if r.get("val_ndcg10_history_removed") is not None else "n/a"
        lines.append(
            f"| {r['system']} | {r['model']} | {r['epochs']} | {r['seconds_per_epoch']:.1f} | "
            f"{r['sequences_per_epoch']:,} | {r['sequences_per_s']:,.0f} | {r['targets_per_epoch']:,.0f} | "
            f"{r['targets_per_s']:,.0f} | {r['eval_seconds']:.1f} | {r['peak_rss_mib']:,.0f} | {ndcg} | "
            f"{r['load_before'].split()[0]}→{r['load_after'].split()[0]} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("prepared_dir", type=Path, help="Prepared-data folder from `seqbert prepare --split leave_one_out`.")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/speed/run"), help="Where atomic files, configs, logs, models and per-run JSON go.")
    parser.add_argument("--recbole-python", default="/tmp/recbole-venv/bin/python", help="Python of the separate venv with recbole installed.")
    parser.add_argument("--seqbert-python", default=str(DEFAULT_SEQBERT_PYTHON), help="Python of the seqbert venv.")
    parser.add_argument("--systems", nargs="+", default=["recbole:BERT4Rec", "recbole:SASRec", "seqbert:bidirectional", "seqbert:causal"],
                        help="Which runs, in order: recbole:<Model> and/or seqbert:<bidirectional|causal>.")  # fmt: skip
    parser.add_argument("--dataset-name", default="seqbert", help="RecBole dataset name (atomic file stem).")
    parser.add_argument("--epochs", type=int, default=1, help="Training epochs for every run (each validated on the full catalog).")
    parser.add_argument("--seqbert-epochs", type=int, default=None,
                        help="Epochs for the seqbert runs when they should differ from --epochs (equal-quality runs: "
                             "RecBole trains --epochs, seqbert as long as it needs to reach RecBole's validation NDCG@10).")  # fmt: skip
    parser.add_argument("--hidden-size", type=int, default=64, help="Hidden width (both systems).")
    parser.add_argument("--num-layers", type=int, default=2, help="Transformer layers (both systems).")
    parser.add_argument("--num-heads", type=int, default=2, help="Attention heads (both systems).")
    parser.add_argument("--inner-size", type=int, default=256, help="Feed-forward width (both systems).")
    parser.add_argument("--max-length", type=int, default=50, help="Maximum sequence length (RecBole MAX_ITEM_LIST_LENGTH, seqbert --max_length).")
    parser.add_argument("--batch-size", type=int, default=256, help="Training batch (RecBole: prefixes; seqbert: user sequences).")
    parser.add_argument("--eval-batch-size", type=int, default=256, help="Users per evaluation batch (both systems).")
    parser.add_argument("--dropout", type=float, default=0.2, help="Hidden and attention dropout (both systems).")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Peak learning rate (both systems).")
    parser.add_argument("--seed", type=int, default=42, help="Random seed (both systems).")
    parser.add_argument("--seqbert-extra", nargs=argparse.REMAINDER, default=[],
                        help="Further options passed verbatim to seqbert.training.pretrain (must come last).")  # fmt: skip
    parser.add_argument("--markdown", type=Path, default=None, help="Also write the markdown table here.")
    parser.add_argument("--convert-only", action="store_true", help="Only write the atomic files and RecBole config, then exit.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    data_path = work / "recbole_data"
    conversion = convert_to_atomic(args.prepared_dir, data_path, args.dataset_name)
    config_path = work / "recbole.yaml"
    config_path.write_text(_yaml(recbole_config(args)) + "\n")
    print(json.dumps({"conversion": conversion, "recbole_config": str(config_path)}), flush=True)
    if args.convert_only:
        return []
    records = []
    for spec in args.systems:
        system, _, model = spec.partition(":")
        if system == "recbole":
            record = bench_recbole(args, model, config_path, data_path, work)
        elif system == "seqbert":
            record = bench_seqbert(args, model, work)
        else:
            raise SystemExit(f"unknown system {spec!r}")
        record.update(machine_cpus=os.cpu_count(), threads_per_process=1)
        print(json.dumps(record, default=str), flush=True)
        records.append(record)
    comparison = equal_quality(records)
    for row in comparison:
        print(json.dumps({"equal_quality": row}), flush=True)
    table = markdown_table(records) + ("\n" + equal_quality_table(comparison) if comparison else "")
    print(table)
    if args.markdown:
        args.markdown.write_text(table)
    (work / "results.jsonl").write_text("".join(json.dumps(r, default=str) + "\n" for r in records))
    return records


if __name__ == "__main__":
    main()
