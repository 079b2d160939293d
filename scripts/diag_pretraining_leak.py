"""Does the pretrained model help a downstream model once the pretraining data cannot know the labels?

In ``scripts/bench_purchase.py`` pretraining sees every event before the validation cutoff, so the label
windows of all *training* cutoffs are inside its data: features it computes at a training cutoff describe
the future, at the test cutoff they cannot. This diagnostic fits LightGBM (the same ``seqbert.tabular``
search) on rows whose labels all come after the pretraining data: the validation-cutoff rows, split by user
into fit (80 %) and early-stopping / selection (20 %) parts. It compares the hand-made features alone with
the same features + ``seqbert.embedding_features.pretrained_features``, on the benchmark's test rows.

Run it on a finished benchmark's work dir (it reads the prepared folders and pretrained models there)::

    python scripts/diag_pretraining_leak.py --work-dir /tmp/bench_purchase --tasks click item-conversion
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", required=True, help="A finished scripts/bench_purchase.py --work-dir.")
    parser.add_argument("--tasks", nargs="+", default=["click", "item-conversion"], choices=["user-purchase", "item-conversion", "click"],
                        help="Tasks to check. Default: click item-conversion")  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="LightGBM seeds. Default: 0 1 2")
    parser.add_argument("--utc-offset-hours", type=float, default=8.0, help="Local time of the log. Default: %(default)s")
    parser.add_argument("--output", default=None, help="Append one JSON line per (task, features, seed) here (default: stdout only).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    from seqbert.data.features import labelled_features
    from seqbert.embedding_features import pretrained_features
    from seqbert.metrics.functional import roc_auc
    from seqbert.modeling_seqbert import SeqBertForMaskedBehaviorModeling
    from seqbert.prepared import PreparedData
    from seqbert.tabular import fit_on_features
    from seqbert.tokenization_seqbert import BehaviorTokenizer
    from seqbert.training.finetune import label_splits

    work = Path(args.work_dir)
    lines = []
    for task in args.tasks:
        name = "pooled3" if task == "item-conversion" else "daily"
        data = PreparedData.load(work / f"prepared_{name}")
        model = SeqBertForMaskedBehaviorModeling.from_pretrained(work / f"pretrained_{name}").eval()
        tokenizer = BehaviorTokenizer.from_pretrained(work / f"pretrained_{name}")
        labelled, _ = label_splits(data, 86_400, task, num_test_cutoffs=3 if name == "pooled3" else 1, lookback_seconds=3 * 86_400)
        rows = {"validation": labelled["validation"], "test": labelled["test"]}
        users = np.asarray(rows["validation"]["user_id"]).astype(str)
        held = np.isin(users, np.unique(users)[np.random.default_rng(0).random(len(np.unique(users))) < 0.2])
        base = {split: labelled_features(data.sequences, r, utc_offset_seconds=int(args.utc_offset_hours * 3600)) for split, r in rows.items()}
        extra = {split: pretrained_features(model, tokenizer, r) for split, r in rows.items()}
        labels_all = {split: np.asarray(r["label"]) for split, r in rows.items()}
        for features_name in ("features", "features + pretrained"):
            x = {split: base[split][0] if features_name == "features" else np.concatenate([base[split][0], extra[split][0]], axis=1)
                 for split in rows}  # fmt: skip
            names = base["validation"][1] + ([] if features_name == "features" else extra["validation"][1])
            split_x = {"train": x["validation"][~held], "validation": x["validation"][held], "test": x["test"]}
            split_y = {"train": labels_all["validation"][~held], "validation": labels_all["validation"][held], "test": labels_all["test"]}
            for seed in args.seeds:
                result = fit_on_features(split_x, split_y, names, ["lightgbm"], seed)["lightgbm"]
                line = {"task": task, "features": features_name, "seed": seed, "fit_rows": int((~held).sum()),
                        "test_roc_auc": roc_auc(split_y["test"], result.probabilities["test"]), "params": result.params}  # fmt: skip
                lines.append(line)
                print(json.dumps(line), flush=True)
    if args.output:
        with open(args.output, "a") as handle:
            handle.write("".join(json.dumps({**line, "diagnostic": "pretraining_leak"}) + "\n" for line in lines))
    for task in args.tasks:
        for features_name in ("features", "features + pretrained"):
            values = [line["test_roc_auc"] for line in lines if line["task"] == task and line["features"] == features_name]
            print(f"{task:16s} {features_name:22s} test ROC-AUC {np.mean(values):.4f} ± {np.std(values):.4f}", file=sys.stderr)
    return lines


if __name__ == "__main__":
    main()
