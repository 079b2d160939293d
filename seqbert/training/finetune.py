"""Purchase-prediction fine-tuning. Run under ``accelerate launch -m seqbert.training.finetune``
(or ``scripts/finetune.py``).

Task ``user-purchase``: from a user's events strictly before a cutoff, predict whether the user
purchases anything in ``[cutoff, cutoff + horizon)``. Cutoffs come from the prepared data's
temporal protocol, so fine-tuning never labels with anything a pretrained model could have seen:

- train:      cutoff = validation_start - horizon (labels end where pretraining data ends),
- validation: cutoff = validation_start,
- test:       cutoff = test_start.

A logistic regression on recency / frequency features of the same histories is the baseline,
scored by the same metric code.
"""

from __future__ import annotations

import json
import logging
import resource
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from transformers import HfArgumentParser

from ..baselines import LogisticRegressionBaseline
from ..collators import DataCollatorWithLeftPadding
from ..configuration_seqbert import SeqBertConfig
from ..data.features import recency_frequency_features
from ..data.labels import user_purchase_labels
from ..metrics.functional import brier, expected_calibration_error, log_loss, pr_auc, roc_auc
from ..modeling_seqbert import SeqBertForSequenceClassification
from ..prepared import PreparedData, encode_for_classification
from .arguments import FinetuneArguments, ModelArguments, TrainingArguments
from .loop import make_accelerator, train
from .outputs import write_model_folder

logger = logging.getLogger(__name__)
LABELS = {0: "no_purchase", 1: "purchase"}
TASKS = ("user-purchase",)


def parse_args(argv: list[str] | None = None) -> tuple[TrainingArguments, ModelArguments, FinetuneArguments]:
    parser = HfArgumentParser(
        (TrainingArguments, ModelArguments, FinetuneArguments),
        description="Fine-tune SeqBERT for purchase prediction (labels from after a time cutoff only).",
    )
    return parser.parse_args_into_dataclasses(args=argv)


def binary_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Threshold-free metrics first, then calibration."""
    metrics = {"count": float(len(labels)), "positive_rate": float(np.mean(labels)) if len(labels) else 0.0}
    if len(np.unique(labels)) == 2:
        metrics.update(roc_auc=roc_auc(labels, probs), pr_auc=pr_auc(labels, probs))
    metrics.update(log_loss=log_loss(labels, probs), brier=brier(labels, probs), ece=expected_calibration_error(labels, probs))
    return metrics


def label_splits(data: PreparedData, horizon_seconds: int | None) -> tuple[dict, dict]:
    """The three labelled sets and the cutoffs used, from the temporal protocol."""
    protocol = data.protocol
    if protocol.get("kind") != "temporal" or protocol.get("validation_start") is None:
        raise ValueError(
            "Purchase fine-tuning needs data prepared with a temporal split and a validation cutoff "
            "(`seqbert prepare ... --split temporal`): with leave-one-out, pretraining sees events after "
            "any label cutoff, which would leak labels."
        )
    validation_start, test_start = int(protocol["validation_start"]), int(protocol["test_start"])
    horizon = int(horizon_seconds or (test_start - validation_start))
    cutoffs = {"train": validation_start - horizon, "validation": validation_start, "test": test_start}
    sets = {
        name: user_purchase_labels(data.sequences, cutoff=cutoff, horizon_seconds=horizon)
        for name, cutoff in cutoffs.items()
    }
    return sets, {"horizon_seconds": horizon, **{f"{name}_cutoff": c for name, c in cutoffs.items()}}


def build_model(args: FinetuneArguments, model_args: ModelArguments, tokenizer, max_length: int):
    if args.model_name_or_path:
        return SeqBertForSequenceClassification.from_pretrained(
            args.model_name_or_path, num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()}
        )
    config = SeqBertConfig(
        vocab_size=tokenizer.vocab_size,
        num_special_tokens=tokenizer.num_special_tokens,
        num_behaviors=tokenizer.num_behaviors,
        num_time_buckets=tokenizer.num_time_buckets,
        max_position_embeddings=max_length,
        num_labels=2,
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
        **vars(model_args),
    )
    return SeqBertForSequenceClassification(config)


def main(argv: list[str] | None = None) -> dict:
    args, model_args, ft_args = parse_args(argv)
    if ft_args.task not in TASKS:
        raise ValueError(f"Unknown task {ft_args.task!r}; available: {', '.join(TASKS)}.")
    accelerator = make_accelerator(args)
    data = PreparedData.load(args.data_dir)
    tokenizer = data.tokenizer
    horizon = int(ft_args.horizon_days * 86_400) if ft_args.horizon_days else None
    labelled, cutoffs = label_splits(data, horizon)
    with accelerator.main_process_first():
        encoded = {name: encode_for_classification(rows, tokenizer, args.max_length) for name, rows in labelled.items()}
    counts = {name: {"examples": rows.num_rows, "positives": int(np.sum(rows["label"]))} for name, rows in labelled.items()}
    logger.info("label counts %s, cutoffs %s", counts, cutoffs)

    model = build_model(ft_args, model_args, tokenizer, args.max_length)
    if ft_args.freeze_encoder:
        model.seqbert.requires_grad_(False)
    train_labels = np.asarray(labelled["train"]["label"])
    positive_share = float(train_labels.mean()) if len(train_labels) else 0.5
    class_weights = None
    if ft_args.class_weighting and 0 < positive_share < 1:
        class_weights = torch.tensor([0.5 / (1 - positive_share), 0.5 / positive_share])

    collator = DataCollatorWithLeftPadding()
    train_loader = DataLoader(encoded["train"], batch_size=args.per_device_batch_size, shuffle=True, collate_fn=collator)
    eval_loaders = {
        name: accelerator.prepare(DataLoader(encoded[name], batch_size=args.eval_batch_size, collate_fn=collator))
        for name in ("validation", "test")
    }

    @torch.no_grad()
    def predict(model, split: str) -> tuple[np.ndarray, np.ndarray]:
        probs, labels = [], []
        for batch in eval_loaders[split]:
            with accelerator.autocast():
                logits = model(batch["input_ids"], batch["behavior_ids"], batch["time_ids"], batch["attention_mask"]).logits
            batch_probs, batch_labels = accelerator.gather_for_metrics((logits.float().softmax(-1)[:, 1], batch["labels"]))
            probs.append(batch_probs.cpu())
            labels.append(batch_labels.cpu())
        return torch.cat(labels).numpy(), torch.cat(probs).numpy()

    def loss_fn(model, batch):
        logits = model(batch["input_ids"], batch["behavior_ids"], batch["time_ids"], batch["attention_mask"]).logits
        weight = class_weights.to(logits.device) if class_weights is not None else None
        return F.cross_entropy(logits.float(), batch["labels"], weight=weight), {}

    state = train(
        accelerator=accelerator,
        model=model,
        train_loader=train_loader,
        args=args,
        evaluate=lambda m: binary_metrics(*predict(m, "validation")),
        metric_name="roc_auc",
        loss_fn=loss_fn,
    )
    model = accelerator.unwrap_model(model).eval()
    results = {split: {"seqbert": binary_metrics(*predict(model, split))} for split in ("validation", "test")}
    features = {name: recency_frequency_features(rows)[0] for name, rows in labelled.items()}
    baseline = LogisticRegressionBaseline().fit(features["train"], train_labels)
    for split in ("validation", "test"):
        split_labels = np.asarray(labelled[split]["label"])
        results[split]["logistic_regression_rf"] = binary_metrics(split_labels, baseline.predict_proba(features[split]))

    summary = {
        "task": ft_args.task,
        "cutoffs": cutoffs,
        "label_counts": counts,
        "class_weights": class_weights.tolist() if class_weights is not None else None,
        "initialised_from": ft_args.model_name_or_path or "scratch",
        "num_processes": accelerator.num_processes,
        "device": str(accelerator.device),
        "mixed_precision": accelerator.mixed_precision,
        "global_step": state.global_step,
        "best_step": state.best_step,
        "wall_seconds": round(state.elapsed_seconds, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "metrics": results,
    }
    if accelerator.is_main_process:
        task_text = (
            f"Probability that a user purchases anything within {cutoffs['horizon_seconds'] / 86_400:.1f} days "
            "after a cutoff, from the user's behavior events strictly before it."
        )
        write_model_folder(
            accelerator, model, tokenizer, args=args, data=data, summary=summary, kind="classifier",
            extra_args={**vars(model_args), **vars(ft_args)}, headline_metric="roc_auc",
            card_context={"task": task_text, "base_model": ft_args.model_name_or_path or "none (trained from scratch)"},
        )
        logger.info("test metrics: %s", json.dumps(results["test"]))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
