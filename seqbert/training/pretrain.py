"""Masked-behavior pretraining. Run under ``accelerate launch -m seqbert.training.pretrain`` (or
``scripts/pretrain.py``); works unchanged on CPU, one GPU or several processes.

Writes a Hub-shaped folder: config.json, model.safetensors, the model/tokenizer code, tokenizer
files, results.json (validation + test metrics of the model and of the baselines, all through the
same full-ranking evaluator), logs/metrics.jsonl, training_curves.png and README.md (model card).
"""

from __future__ import annotations

import json
import logging
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader
from transformers import HfArgumentParser

from ..baselines import fit_next_item_baselines, fit_next_item_baselines_from_shards
from ..collators import (
    DataCollatorForMaskedBehaviorModeling,
    DataCollatorForNextItemPrediction,
    DataCollatorWithLeftPadding,
    DataCollatorWithNextItemTargets,
    known_items_per_row,
)
from ..configuration_seqbert import SeqBertConfig
from ..evaluation import collect_ranks_chunked, evaluate_scorer, model_scorer, sample_users
from ..metrics.functional import ranking_metrics
from ..modeling_seqbert import SeqBertForMaskedBehaviorModeling
from ..prepared import (
    PARQUET_LAYOUT,
    PreparedData,
    encode_for_next_item,
    encode_for_pretraining,
    shard_files,
    shard_records,
    window_bounds,
)  # fmt: skip
from .arguments import ModelArguments, PretrainArguments, TrainingArguments, config_file_arguments
from .flops import FlopsCounter, peak_tflops_of
from .loop import TrainingState, make_accelerator, train
from .outputs import write_model_folder
from .recipes import MAX_LENGTH, Recipe, auto_recipe, recipe_arguments
from .sampling import sorted_by_length, training_dataloader
from .schedule import training_schedule
from .streaming import PretrainingShardStream, StreamingLoader, encoded_rows_per_shard, train_shards

logger = logging.getLogger(__name__)


def parse_args(
    argv: list[str] | None = None,
) -> tuple[TrainingArguments, ModelArguments, PretrainArguments, Recipe | None]:
    """The options, with ``--recipe auto``'s choices filled in wherever the command line does not set them."""
    parser = HfArgumentParser(
        (TrainingArguments, ModelArguments, PretrainArguments),
        description="Pretrain SeqBERT with masked-behavior modeling (BERT4Rec Cloze) on prepared data.",
    )
    argv, config_file = config_file_arguments(list(sys.argv[1:] if argv is None else argv))
    args, model_args, pre_args = parser.parse_args_into_dataclasses(args=argv)
    args.config_file = config_file  # recorded in results.json
    if pre_args.recipe is None:
        return args, model_args, pre_args, None
    if pre_args.recipe != "auto":
        raise ValueError(f"--recipe must be `auto`, got {pre_args.recipe!r}.")
    recipe = auto_recipe_for(args.data_dir)
    args, model_args, pre_args = parser.parse_args_into_dataclasses(args=recipe_arguments(recipe, argv))
    args.config_file = config_file
    return args, model_args, pre_args, recipe


def auto_recipe_for(data_dir: str) -> Recipe:
    """``--recipe auto`` for a prepared-data folder: its statistics and the exact count of training windows."""
    folder = Path(data_dir)
    if not (folder / "statistics.json").exists():
        raise FileNotFoundError(f"--recipe auto reads {folder / 'statistics.json'}; prepare the data with `seqbert prepare`.")
    statistics = json.loads((folder / "statistics.json").read_text())
    protocol = json.loads((folder / "protocol.json").read_text()) if (folder / "protocol.json").exists() else {}
    if protocol.get("layout") == PARQUET_LAYOUT:  # only the two columns it needs, also under --streaming
        files = shard_files(folder, protocol, "train")
        columns = [name for name in ("item_ids", "categories") if name in pq.read_schema(files[0]).names]
        train = pa.concat_tables([pq.read_table(path, columns=columns) for path in files])
    else:
        train = load_from_disk(str(folder / "dataset"))["train"].with_format("arrow")
    lengths = pc.list_value_length(train["item_ids"]).to_numpy(zero_copy_only=False)
    rows, _, _ = window_bounds(lengths, MAX_LENGTH, MAX_LENGTH // 2)
    has_categories = "categories" in train.column_names and pc.count(pc.list_flatten(train["categories"])).as_py() > 0
    return auto_recipe(statistics, window_rows=len(rows), has_categories=has_categories)


def item_category_table(
    train, tokenizer, separator: str | None = None, max_per_item: int = 8
) -> tuple[torch.Tensor, int]:
    """Item token id -> category ids (1..C, 0 = none) from the train split, and C.

    Without ``separator``: each item's most frequent category (ties: the first in sorted category
    order), shape `(vocab_size,)`. With it, each category value is split into several categories
    and an item gets every one the train split shows with it, the most frequent first (ties: sorted
    order), at most ``max_per_item``: shape `(vocab_size, K)`, K the most any item has, unused slots
    0. Specials and items never seen with a category get 0.
    """
    if "categories" not in train.column_names:
        raise ValueError("--item_categories needs a `category` column in the prepared data (none was read).")
    table = train.with_format("arrow")[:]
    items = table.column("item_ids").combine_chunks().flatten()
    categories = table.column("categories").combine_chunks().flatten().cast(pa.string())
    tokens = tokenizer.item_token_ids(items)
    if separator:
        parts = pc.split_pattern(categories, separator)
        tokens = np.repeat(tokens, pc.fill_null(pc.list_value_length(parts), 0).to_numpy(zero_copy_only=False))
        categories = pc.utf8_trim_whitespace(pc.list_flatten(parts))
        categories = pc.if_else(pc.equal(categories, ""), pa.scalar(None, pa.string()), categories)
    encoded = pc.dictionary_encode(categories)
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    num_categories = len(encoded.dictionary)
    keep = (codes >= 0) & (tokens >= tokenizer.num_special_tokens)
    if num_categories == 0 or not keep.any():
        raise ValueError("--item_categories: no item of the train split has a category (the `category` column is empty).")
    # Renumber categories by their sorted value so ids do not depend on the event order.
    rank = np.argsort(np.argsort(np.asarray(encoded.dictionary.to_pylist(), dtype=object)))
    pairs, counts = np.unique(tokens[keep] * num_categories + rank[codes[keep]], return_counts=True)
    pair_tokens, pair_categories = pairs // num_categories, pairs % num_categories
    order = np.lexsort((pair_categories, -counts, pair_tokens))  # per token: most frequent, then lowest id
    pair_tokens, pair_categories = pair_tokens[order], pair_categories[order]
    starts = np.r_[True, pair_tokens[1:] != pair_tokens[:-1]]
    slot = np.arange(len(pair_tokens)) - np.maximum.accumulate(np.where(starts, np.arange(len(pair_tokens)), 0))
    if not separator:
        table_ids = np.zeros(tokenizer.vocab_size, dtype=np.int64)
        table_ids[pair_tokens[starts]] = pair_categories[starts] + 1
        return torch.from_numpy(table_ids), num_categories
    width = int(min(slot.max() + 1, max_per_item))
    kept = slot < width
    table_ids = np.zeros((tokenizer.vocab_size, width), dtype=np.int64)
    table_ids[pair_tokens[kept], slot[kept]] = pair_categories[kept] + 1
    return torch.from_numpy(table_ids), num_categories


def build_model(tokenizer, model_args: ModelArguments, pre_args: PretrainArguments, max_length: int, train=None):
    if pre_args.init_from:
        model = SeqBertForMaskedBehaviorModeling.from_pretrained(pre_args.init_from)
        # Objective and query, not architecture: this run's --next_item_loss_weight (the collator follows it) and
        # --next_item_query apply, not the folder's.
        if pre_args.next_item_loss_weight > 0 and model.config.attention_type != "bidirectional":
            raise ValueError("--next_item_loss_weight is an auxiliary loss of the bidirectional model only.")
        model.config.next_item_loss_weight = pre_args.next_item_loss_weight
        model.set_next_item_query(pre_args.next_item_query)
        return model
    categories, num_categories = (
        item_category_table(train, tokenizer, pre_args.item_category_separator, pre_args.max_categories_per_item)
        if pre_args.item_categories
        else (None, 0)
    )
    config = SeqBertConfig(
        vocab_size=tokenizer.vocab_size,
        num_special_tokens=tokenizer.num_special_tokens,
        num_behaviors=tokenizer.num_behaviors,
        num_time_buckets=tokenizer.num_time_buckets,
        max_position_embeddings=max_length,
        pad_token_id=tokenizer.pad_token_id,
        mask_token_id=tokenizer.mask_token_id,
        behavior_loss_weight=pre_args.behavior_loss_weight,
        label_smoothing=pre_args.label_smoothing,
        attention_type=pre_args.attention_type,
        loss_type=pre_args.loss_type,
        num_negatives=pre_args.num_negatives,
        next_item_loss_weight=pre_args.next_item_loss_weight,
        next_item_query=pre_args.next_item_query,
        num_item_categories=num_categories,
        categories_per_item=1 if categories is None or categories.dim() == 1 else categories.shape[1],
        **vars(model_args),
    )
    model = SeqBertForMaskedBehaviorModeling(config)
    if categories is not None:
        model.seqbert.embeddings.set_item_categories(categories)
    return model


def use_sparse_item_updates(model: SeqBertForMaskedBehaviorModeling) -> None:
    """Make the item table's gradient sparse (input lookup and the sampled loss's output rows), so that
    ``make_optimizer`` gives it SparseAdam (--sparse_item_updates)."""
    if model.config.loss_type != "sampled":
        raise ValueError("--sparse_item_updates needs --loss_type sampled (the full softmax touches every item row).")
    model.seqbert.embeddings.item_embeddings.sparse = True


def training_item_counts(rows, tokenizer) -> torch.Tensor:
    """Occurrences of each item column in the encoded training rows (the sampled-softmax proposal)."""
    ids = rows.with_format("arrow")["input_ids"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    counts = np.bincount(ids, minlength=tokenizer.vocab_size)[tokenizer.num_special_tokens :]
    return torch.from_numpy(counts.astype(np.int64))


def chunkable_scorer(model):
    """The model's scorer, marked so evaluation can rank item chunk by item chunk (--eval_item_chunk_size)."""
    scorer = model_scorer(model)
    scorer.chunked_model = model
    return scorer


def training_seconds(state: TrainingState) -> float:
    """Wall time of the training steps: elapsed time without the validations run during training."""
    return max(state.elapsed_seconds - state.evaluation_seconds, 1e-9)


def throughput(state: TrainingState) -> dict[str, float]:
    """Training speed without the validations run during training (their time is reported apart)."""
    seconds = training_seconds(state)
    return {
        "train_seconds": round(seconds, 2),
        "train_sequences_per_second": round(state.train_sequences / seconds, 1),
        "train_tokens_per_second": round(state.train_tokens / seconds, 1),
        "validation_seconds": round(state.evaluation_seconds, 2),
    }


def expected_labels_per_batch(collator, train_rows, tokenizer, args: TrainingArguments, pre_args: PretrainArguments) -> float | None:
    """With --label_weighting dataset: the expected labelled positions per training batch (None otherwise)."""
    if pre_args.label_weighting not in LABEL_WEIGHTINGS:
        raise ValueError(f"--label_weighting must be one of {LABEL_WEIGHTINGS}, got {pre_args.label_weighting!r}.")
    if pre_args.label_weighting == "batch":
        return None
    per_row = collator.expected_labels_per_row(known_items_per_row(train_rows, tokenizer.num_special_tokens))
    expected = float(per_row.mean()) * args.per_device_batch_size
    logger.info("label weighting: dataset (%.1f expected labelled positions per batch)", expected)
    return max(expected, 1.0)


def utilisation(flops: FlopsCounter, state: TrainingState, device: torch.device, peak_tflops: float | None) -> dict:
    """Model TFLOP/s of this process's training steps, MFU against the device's peak, and peak GPU memory."""
    achieved = flops.total() / training_seconds(state) / 1e12
    peak = peak_tflops or peak_tflops_of(device)
    report = {"model_tflops_per_second": round(achieved, 4), "mfu": round(achieved / peak, 5) if peak else None}
    report["mfu_peak_tflops"] = peak
    if device.type == "cuda":
        report["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return report


def best_validation_metrics(record: dict) -> dict[str, float]:
    """The metrics of a validation record logged by the training loop (``val_``-prefixed keys)."""
    return {key.removeprefix("val_"): value for key, value in record.items() if key.startswith("val_")}


def evaluation_splits(data: PreparedData, pre_args: PretrainArguments) -> tuple[dict, dict[str, int | str]]:
    """Validation and test rows to rank (all users, or the seeded samples of --max_eval_users /
    --max_test_users, drawn before sharding) and the labels recording which users they are."""
    splits, labels = {}, {}
    for name, max_users in (("validation", pre_args.max_eval_users), ("test", pre_args.max_test_users)):
        split = data.splits[name]
        indices, label = sample_users(split.num_rows, max_users, pre_args.eval_users_seed)
        splits[name] = split if indices is None else split.select(indices)
        labels[f"{name}_users"] = splits[name].num_rows
        labels[f"{name}_user_sampling"] = label
    return splits, labels


LABEL_WEIGHTINGS = ("batch", "dataset")


BASE_EPOCHS = 8
"""Epochs of a data-sized pretraining schedule when they already give --min_train_steps steps (the Beauty recipe's
count: both next-item recipes peak on validation within 8 epochs there, and longer cosine schedules overfit)."""


def window_stride(args: TrainingArguments, pre_args: PretrainArguments) -> int | None:
    """Stride of the training windows over long histories (None: one row per user)."""
    if pre_args.window_stride is None:
        return max(1, args.max_length // 2)
    if pre_args.window_stride < 0:
        raise ValueError(f"--window_stride must be >= 0, got {pre_args.window_stride}.")
    return pre_args.window_stride or None


def stop_reason(state: TrainingState, schedule, args: TrainingArguments) -> str:
    """Why training ended: the schedule's last step, early stopping or the time budget (for the benchmark's report)."""
    if state.global_step >= schedule.total_steps:
        return f"schedule complete ({schedule.reason})"
    patience = args.early_stopping_patience
    if patience is not None and state.evaluations_without_improvement >= patience:
        return f"early stopping ({patience} validations without improvement, best at step {state.best_step})"
    if args.time_budget_minutes is not None and state.elapsed_seconds >= args.time_budget_minutes * 60:
        return f"time budget ({args.time_budget_minutes} min)"
    return "stopped early"


def check_streaming_options(args: TrainingArguments, pre_args: PretrainArguments) -> None:
    """--streaming reads the train split one shard at a time: refuse the options that need all of it at once."""
    needs_whole_split = {
        "--group_by_length": args.group_by_length,
        "--label_weighting dataset": pre_args.label_weighting == "dataset",
        "--item_categories": pre_args.item_categories,
        "--negative_sampling_power": pre_args.loss_type == "sampled" and bool(pre_args.negative_sampling_power),
        "--num_workers": args.num_workers > 0,
    }
    refused = [name for name, given in needs_whole_split.items() if given]
    if refused:
        raise ValueError(
            f"--streaming does not combine with {', '.join(refused)}: length grouping, dataset label weighting, item "
            "categories and popularity-weighted negatives need the whole train split; --num_workers would read every "
            "shard once per worker (the stream reads the next shard in a background thread instead)."
        )


def make_collator(tokenizer, pre_args: PretrainArguments, seed: int):
    """Cloze masking for the bidirectional model (plus the unmasked rows' next-item targets with
    --next_item_loss_weight), shifted next-item targets for the causal one."""
    if pre_args.attention_type == "causal":
        return DataCollatorForNextItemPrediction(num_special_tokens=tokenizer.num_special_tokens)
    cloze = DataCollatorForMaskedBehaviorModeling(
        num_special_tokens=tokenizer.num_special_tokens,
        vocab_size=tokenizer.vocab_size,
        mask_token_id=tokenizer.mask_token_id,
        mask_prob=pre_args.mask_prob,
        last_item_mask_prob=pre_args.last_item_mask_prob,
        replace_ratios=(pre_args.mask_token_ratio, (1.0 - pre_args.mask_token_ratio) / 2),
        next_item_prefixes=pre_args.next_item_prefixes,
        seed=seed,
    )
    if pre_args.next_item_loss_weight > 0:
        next_item = DataCollatorForNextItemPrediction(num_special_tokens=tokenizer.num_special_tokens)
        return DataCollatorWithNextItemTargets(cloze, next_item)
    return cloze


def main(argv: list[str] | None = None) -> dict:
    args, model_args, pre_args, recipe = parse_args(argv)
    if pre_args.item_category_separator and not pre_args.item_categories:
        raise ValueError("--item_category_separator applies with --item_categories only.")
    if pre_args.max_categories_per_item < 1:
        raise ValueError(f"--max_categories_per_item must be >= 1, got {pre_args.max_categories_per_item}.")
    if pre_args.next_item_loss_weight > 0 and pre_args.label_weighting != "batch":
        raise ValueError("--next_item_loss_weight combines with --label_weighting batch only (the dataset weighting "
                         "counts Cloze labels).")
    accelerator = make_accelerator(args)
    logger.info("processes=%d device=%s mixed_precision=%s", accelerator.num_processes, accelerator.device, accelerator.mixed_precision)
    if recipe is not None:
        logger.info("recipe auto: %s", {k: v for k, v in recipe.options.items() if k not in recipe.overridden})
    if pre_args.streaming:
        check_streaming_options(args, pre_args)
    # Pretraining never reads the full sequences; --streaming never loads the train split whole.
    data = PreparedData.load(
        args.data_dir, splits=("validation", "test") if pre_args.streaming else None, sequences=False
    )
    tokenizer = data.tokenizer
    stride = window_stride(args, pre_args)
    files = shard_rows = None
    if data.protocol.get("layout") == PARQUET_LAYOUT or pre_args.streaming:
        # Sharded train split: the epoch order is per shard (the same in memory and streamed), and the rows per
        # shard come from a pass over the item lists only.
        files = train_shards(args.data_dir, data.protocol)
        shard_rows = encoded_rows_per_shard(files, tokenizer, args.max_length, stride)
        logger.info("train split: %d parquet shards, %d training rows", len(files), sum(shard_rows))
    eval_splits, user_sampling = evaluation_splits(data, pre_args)
    for key, value in user_sampling.items():
        logger.info("%s: %s", key, value)
    with accelerator.main_process_first():
        train_rows = None if pre_args.streaming else encode_for_pretraining(
            data.splits["train"], tokenizer, args.max_length, window_stride=stride
        )  # fmt: skip
        # Sorted by length: evaluation batches then pad little (the metrics are means over users).
        eval_rows = {
            name: sorted_by_length(encode_for_next_item(split, tokenizer, args.max_length)) for name, split in eval_splits.items()
        }
        if pre_args.streaming:
            baselines = fit_next_item_baselines_from_shards(files, tokenizer)
        else:
            baselines = fit_next_item_baselines(data.splits["train"], tokenizer)

    model = build_model(tokenizer, model_args, pre_args, args.max_length, train=data.splits.get("train"))
    if pre_args.sparse_item_updates:
        use_sparse_item_updates(model)
    if model.config.loss_type == "sampled" and pre_args.negative_sampling_power:
        model.set_negative_proposal(training_item_counts(train_rows, tokenizer), pre_args.negative_sampling_power)
    collator = make_collator(tokenizer, pre_args, args.seed)
    if pre_args.streaming:
        stream = PretrainingShardStream(
            files, shard_rows, tokenizer, max_length=args.max_length, window_stride=stride, seed=args.seed,
            batch_size=args.per_device_batch_size, num_processes=accelerator.num_processes,
            process_index=accelerator.process_index,
        )  # fmt: skip
        train_loader = StreamingLoader(stream, collate_fn=collator, device=accelerator.device)
        num_train_rows = sum(shard_rows)
        num_batches = math.ceil(num_train_rows / args.per_device_batch_size)
    else:
        train_loader = training_dataloader(
            train_rows, batch_size=args.per_device_batch_size, collate_fn=collator, seed=args.seed,
            group_by_length=args.group_by_length, num_workers=args.num_workers, shard_rows=shard_rows,
        )  # fmt: skip
        num_train_rows, num_batches = train_rows.num_rows, len(train_loader)
        if shard_rows is not None and sum(shard_rows) != num_train_rows:
            raise RuntimeError(f"The shards' row counts add up to {sum(shard_rows)} training rows, the split encodes to "
                               f"{num_train_rows}.")  # fmt: skip
    eval_loaders = {
        name: accelerator.prepare(DataLoader(rows, batch_size=args.eval_batch_size, collate_fn=DataCollatorWithLeftPadding()))
        for name, rows in eval_rows.items()
    }

    def evaluate_on(split: str, scorer, exclude_history: bool = False) -> dict[str, float]:
        chunked_model = getattr(scorer, "chunked_model", None)
        with accelerator.autocast():
            if chunked_model is not None and args.eval_item_chunk_size and not exclude_history:
                ranks, num_items = collect_ranks_chunked(
                    chunked_model, eval_loaders[split], chunk_size=args.eval_item_chunk_size,
                    gather=accelerator.gather_for_metrics,
                )  # fmt: skip
                return ranking_metrics(ranks, num_items=num_items)
            return evaluate_scorer(
                scorer,
                eval_loaders[split],
                num_special_tokens=tokenizer.num_special_tokens,
                exclude_history=exclude_history,
                gather=accelerator.gather_for_metrics,
            )

    flops = FlopsCounter.for_model(model)
    labels_per_batch = expected_labels_per_batch(collator, train_rows, tokenizer, args, pre_args)

    def loss_fn(model, batch):
        flops.add(batch["input_ids"], batch["labels"])
        if "next_item_labels" in batch:  # the auxiliary left-to-right pass
            flops.add(batch["next_item_input_ids"], batch["next_item_labels"])
        outputs = model(**batch)
        scalars = {"item_loss": outputs.item_loss.detach()}
        if outputs.behavior_loss is not None:
            scalars["behavior_loss"] = outputs.behavior_loss.detach()
        if outputs.next_item_loss is not None:
            scalars["next_item_loss"] = outputs.next_item_loss.detach()
        if labels_per_batch is None:
            return outputs.loss, scalars
        # Batch mean -> sum / expected count: every labelled position weighs the same, whatever its batch.
        return outputs.loss * (batch["labels"] != -100).sum() / labels_per_batch, scalars

    schedule = training_schedule(
        num_batches, num_processes=accelerator.num_processes,
        gradient_accumulation_steps=args.gradient_accumulation_steps, num_epochs=args.num_epochs, max_steps=args.max_steps,
        eval_every_epochs=args.eval_every_epochs, base_epochs=BASE_EPOCHS, min_steps=args.min_train_steps,
    )  # fmt: skip
    state = train(
        schedule=schedule,
        accelerator=accelerator,
        model=model,
        train_loader=train_loader,
        args=args,
        evaluate=lambda m: evaluate_on("validation", chunkable_scorer(accelerator.unwrap_model(m, keep_torch_compile=False))),
        metric_name="ndcg@10",
        loss_fn=loss_fn,
        run_config={**vars(pre_args), **user_sampling},
    )
    model = accelerator.unwrap_model(model, keep_torch_compile=False).eval()
    scorers = {"seqbert": chunkable_scorer(model), **baselines}
    evaluation_started = time.monotonic()
    # The model's validation metrics are those of its best validation: same weights, users and evaluator.
    best = next((e for e in state.evaluations if e["step"] == state.best_step), None)
    results = {
        split: {
            name: best_validation_metrics(best) if (split, name) == ("validation", "seqbert") and best else evaluate_on(split, scorer)
            for name, scorer in scorers.items()
        }
        for split in ("validation", "test")
    }  # fmt: skip
    if pre_args.exclude_history:
        results["test_history_removed"] = {name: evaluate_on("test", s, exclude_history=True) for name, s in scorers.items()}
    final_evaluation_seconds = time.monotonic() - evaluation_started
    summary = {
        "num_processes": accelerator.num_processes,
        "device": str(accelerator.device),
        "mixed_precision": accelerator.mixed_precision,
        "global_step": state.global_step,
        "epochs_completed": state.epoch,
        "best_step": state.best_step,
        "wall_seconds": round(state.elapsed_seconds, 2),
        "data_wait_fraction": round(state.data_wait_seconds / max(state.elapsed_seconds, 1e-9), 4),
        **throughput(state),
        **utilisation(flops, state, accelerator.device, pre_args.peak_tflops),
        "final_evaluation_seconds": round(final_evaluation_seconds, 2),
        "train_sequences": num_train_rows,
        "train_users": sum(r["rows"] for r in shard_records(data.protocol, "train")) if pre_args.streaming else data.splits["train"].num_rows,
        "streaming": pre_args.streaming,
        "train_shards": len(files) if files else None,
        "window_stride": window_stride(args, pre_args),
        "schedule": schedule.to_dict(),
        "stopped_because": stop_reason(state, schedule, args),
        "recipe": recipe.to_dict() if recipe else None,
        "config_file": args.config_file,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ranking": "full catalog, pessimistic ties, history items not removed",
        **user_sampling,
        "metrics": results,
    }
    if accelerator.is_main_process:
        write_model_folder(
            accelerator, model, tokenizer, args=args, data=data, summary=summary, kind="pretrained",
            extra_args={**vars(model_args), **vars(pre_args)},
            card_context={"recipe": recipe.to_dict() if recipe else None, "schedule": schedule.to_dict()},
        )
        logger.info("test metrics: %s", json.dumps(results["test"]))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
