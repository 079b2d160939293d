"""Script options as dataclasses (parsed by ``HfArgumentParser``: every field's help is its ``--help``)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
"""The recipes shipped with seqbert (``recipes/`` in the repository): ``--config NAME`` reads ``NAME.yaml`` there."""


def config_file_arguments(argv: list[str]) -> tuple[list[str], dict | None]:
    """``argv`` with the options of its ``--config FILE`` (a YAML or JSON mapping of option names to values, e.g.
    ``recipes/beauty_joint.yaml``) put before it, so every flag on the command line wins; and a record of the file
    (path, options, the names the command line overrode) for results.json. Lists become several values, booleans
    ``true``/``false``."""
    import yaml  # JSON is a subset of YAML

    paths = [value for flag, value in itertools.pairwise(argv) if flag == "--config"]
    paths += [token.split("=", 1)[1] for token in argv if token.startswith("--config=")]
    if not paths:
        return argv, None
    if len(paths) > 1:
        raise ValueError(f"--config is given {len(paths)} times; give one file (flags on the command line override it).")
    path = Path(paths[0])
    if not path.is_file() and (RECIPES_DIR / f"{path}.yaml").is_file():
        path = RECIPES_DIR / f"{path}.yaml"  # a recipe shipped with seqbert, by name
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"--config {path}: no such file, nor a recipe shipped with seqbert ({shipped}).")
    options = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(options, dict) or "config" in options:
        raise ValueError(f"--config {path}: expected a mapping of option names to values (without `config`).")
    given = {token[2:].split("=", 1)[0] for token in argv if token.startswith("--")}
    prefix: list[str] = []
    for name, value in options.items():
        if name in given:
            continue
        values = value if isinstance(value, list) else [value]
        prefix += [f"--{name}", *(str(v).lower() if isinstance(v, bool) else str(v) for v in values)]
    record = {"path": str(path), "options": options, "overridden_by_flags": sorted(set(options) & given)}
    return [*prefix, *argv], record


@dataclass
class TrainingArguments:
    """Options shared by pretraining and fine-tuning."""

    data_dir: str = field(metadata={"help": "Prepared-data folder written by `seqbert prepare`."})
    output_dir: str = field(metadata={"help": "Where the Hub-shaped model folder, logs and checkpoints go."})
    config: str | None = field(
        default=None,
        metadata={"help": "YAML or JSON file of options (a recipe, e.g. recipes/beauty_joint.yaml, or the name of one shipped "
                  "with seqbert: beauty_joint, beauty_causal, nextitem_auto, nextitem_auto_causal, demo_pretrain, "
                  "demo_finetune, purchase_taobao_pretrain); flags given on the command line win. The file and its options are recorded in results.json. Default: none."},
    )
    per_device_batch_size: int = field(default=128, metadata={"help": "Sequences per process per micro-batch."})
    eval_batch_size: int = field(default=256, metadata={"help": "Sequences per process per evaluation batch."})
    eval_item_chunk_size: int | None = field(
        default=None,
        metadata={"help": "Score the catalog in chunks of this many items when evaluating the model (same exact "
                  "ranks, memory eval_batch_size x chunk instead of x catalog; for catalogs of millions of items)."},
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak AdamW learning rate."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases/norms)."})
    num_epochs: int | None = field(
        default=None,
        metadata={"help": "Passes over the training rows (the learning-rate schedule spans them). Default: pretraining "
                  "sizes the schedule by the data (8 epochs, or more to reach --min_train_steps optimizer steps; see "
                  "seqbert.training.schedule); fine-tuning trains up to 50 epochs. Early stopping guards both."},
    )
    min_train_steps: int = field(
        default=600,
        metadata={"help": "Pretraining without --num_epochs: train at least this many optimizer steps (more epochs "
                  "when the data is small: 8 epochs of 1,000 users are ~32 steps)."},
    )
    max_steps: int | None = field(default=None, metadata={"help": "Stop after this many optimizer steps."})
    time_budget_minutes: float | None = field(
        default=None, metadata={"help": "Stop training after this much wall time (evaluation included)."}
    )
    warmup_ratio: float = field(default=0.05, metadata={"help": "Fraction of steps with linear warm-up."})
    lr_scheduler: str = field(
        default="cosine",
        metadata={"help": "Decay after warm-up: cosine | linear | constant. Under --time_budget_minutes the schedule "
                  "follows wall time when that ends training before the step count does."},
    )
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 disables)."})
    mixed_precision: str | None = field(
        default=None, metadata={"help": "no | fp16 | bf16. Default: whatever `accelerate launch` configured."}
    )
    torch_compile: bool = field(
        default=False,
        metadata={"help": "Compile the training model with torch.compile after Accelerate's `prepare` (where its "
                  "dynamo plugin would: around DDP); saved weights and checkpoints keep their plain names. "
                  "`accelerate launch --dynamo_backend ...` compiles too, without this flag. The first steps (and "
                  "new batch shapes) pay compile time; inductor needs a C/C++ compiler on CPU."},
    )
    torch_compile_backend: str = field(
        default="inductor",
        metadata={"help": "With --torch_compile: the dynamo backend (inductor; aot_eager and eager trace without "
                  "generating code, for checking that the model compiles)."},
    )
    torch_compile_mode: str | None = field(
        default=None,
        metadata={"help": "With --torch_compile: the torch.compile mode (default, reduce-overhead, max-autotune, "
                  "max-autotune-no-cudagraphs). Default: torch's default."},
    )
    seed: int = field(default=42, metadata={"help": "Seed for initialisation, shuffling and masking."})
    eval_every_epochs: int | None = field(
        default=None,
        metadata={"help": "Validate every N epochs (and at the end). Default: every epoch, or every few epochs when "
                  "epochs are shorter than 20 optimizer steps (about one validation per 20 steps)."},
    )
    early_stopping_patience: int | None = field(
        default=10, metadata={"help": "Stop after N validations without improvement (None: never)."}
    )
    checkpointing_steps: int | None = field(
        default=None, metadata={"help": "Save a resumable checkpoint (`accelerator.save_state`) every N steps."}
    )
    checkpoints_total_limit: int = field(default=2, metadata={"help": "Keep at most this many checkpoints."})
    resume_from: str | None = field(
        default=None, metadata={"help": "Checkpoint folder to resume from, or `latest` for the newest in output_dir."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Delete an earlier run's files in output_dir (logs, checkpoints, weights, results, plots, "
                  "card) before training. Without it, a non-empty output_dir is an error unless --resume_from "
                  "continues that run: runs never mix."},
    )
    report_to: str = field(
        default="jsonl", metadata={"help": "Trackers: jsonl (logs/metrics.jsonl), tensorboard, or all."}
    )
    logging_steps: int = field(default=20, metadata={"help": "Log the training loss every N optimizer steps."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})
    group_by_length: bool = field(
        default=False,
        metadata={"help": "Shuffle, then batch training rows of similar length (sorted within windows of 50 batches; "
                  "batch order shuffled), so each batch is padded to a length close to its rows'. Order fixed by --seed "
                  "and the epoch. On Amazon Beauty pretraining it trained 2.4-2.8x the sequences/s before the encoder "
                  "learned to skip padding (packed batches remove most of that gap; not re-measured) and reached a lower "
                  "validation NDCG@10 in the same wall time (BENCHMARKS.md), hence off by default; when used for "
                  "pretraining, pair it with --label_weighting dataset."},
    )
    max_length: int = field(default=100, metadata={"help": "Longest input: most recent events + appended mask."})
    expected_num_processes: int | None = field(
        default=None,
        metadata={
            "help": "Fail unless the launcher started exactly this many processes (e.g. `accelerate launch --cpu "
            "--num_processes 2` can silently start one; `ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2` starts two)."
        },
    )


@dataclass
class ModelArguments:
    """Architecture of a model trained from scratch (ignored when initialising from a folder)."""

    hidden_size: int = field(default=64, metadata={"help": "Embedding and hidden width."})
    num_hidden_layers: int = field(default=2, metadata={"help": "Transformer layers."})
    num_attention_heads: int = field(default=2, metadata={"help": "Attention heads per layer."})
    intermediate_size: int = field(default=256, metadata={"help": "Feed-forward width."})
    hidden_dropout_prob: float = field(default=0.2, metadata={"help": "Dropout on embeddings and residuals."})
    attention_probs_dropout_prob: float = field(default=0.2, metadata={"help": "Dropout on attention weights."})
    repeat_bias_buckets: int = field(
        default=0,
        metadata={"help": "Repeat-aware scoring: > 0 adds a learned offset to the score of every item already in the "
                  "user's sequence, one value per event type and recency bucket (1, 2, 3-4, 5-8, ... events back; "
                  "this many buckets, the last holding everything older). Learned from the training targets, so it "
                  "turns negative where users never repeat an item and positive where they re-view or re-order. "
                  "Applied identically in training, evaluation and serving. 0 = off."},
    )


@dataclass
class PretrainArguments:
    """Masked-behavior modeling options."""

    mask_prob: float = field(default=0.2, metadata={"help": "Probability of masking each item (Cloze)."})
    last_item_mask_prob: float = field(
        default=0.1, metadata={"help": "Probability a sequence masks only its last item (next-item mode)."}
    )
    next_item_prefixes: bool = field(
        default=False,
        metadata={"help": "Cut each next-item row (--last_item_mask_prob) after a uniformly random event and mask that "
                  "event: the bidirectional model then also learns to predict every event from its past alone, as "
                  "a left-to-right model does at every position, instead of only the most recent event."},
    )
    mask_token_ratio: float = field(
        default=0.8,
        metadata={"help": "Share of the selected items replaced by [MASK]; the rest are split evenly between a random "
                  "item and the unchanged item (BERT: 0.8). 1.0 masks every selected item, as BERT4Rec's Cloze task "
                  "does, so training always predicts at [MASK] like next-item inference (an appended [MASK])."},
    )
    attention_type: str = field(
        default="bidirectional",
        metadata={"help": "bidirectional: BERT-style Cloze (masked-behavior) training. causal: the same encoder "
                  "left-to-right (SASRec-style), trained to predict the next item at every position; the Cloze "
                  "options (--mask_prob, --last_item_mask_prob) then do not apply."},
    )
    loss_type: str = field(
        default="full",
        metadata={"help": "Item loss: full softmax over the catalog, or sampled (sampled softmax with log-Q "
                  "correction over --num_negatives shared negatives; for very large catalogs)."},
    )
    num_negatives: int = field(default=1024, metadata={"help": "Negatives per batch with --loss_type sampled."})
    sparse_item_updates: bool = field(
        default=False,
        metadata={"help": "With --loss_type sampled: give the item table (input and tied output vectors) sparse "
                  "gradients and update only the rows a step touched (the batch's items, targets and sampled "
                  "negatives) with SparseAdam (lazy Adam moments, no weight decay on that table); AdamW for the rest. "
                  "For catalogs of millions of items, where the dense update of the whole table dominates a step."},
    )
    negative_sampling_power: float = field(
        default=0.0,
        metadata={"help": "With --loss_type sampled: draw negatives ∝ training popularity ** power "
                  "(0 = uniform, 1 = popularity; log-Q correction removes the sampling bias)."},
    )
    item_categories: bool = field(
        default=False,
        metadata={"help": "Add a learned embedding of each item's category (the data's `category` column, e.g. the "
                  "brand for Amazon S3-Rec data; an item's most frequent category in the train split) to the item, "
                  "on the input and on the output side. Helps items with few events share what they have in common."},
    )
    item_category_separator: str | None = field(
        default=None,
        metadata={"help": "With --item_categories: split each category value on this string into several categories "
                  "of the item (e.g. '|' for brand|category|sub-category, as `seqbert prepare --dataset-format "
                  "amazon_s3rec --format-option attribute_index=all` writes it, or '>' for a category path). The item "
                  "gets the sum of their embeddings: every category the train split shows with it, at most "
                  "--max_categories_per_item (the most frequent first)."},
    )
    max_categories_per_item: int = field(
        default=8, metadata={"help": "With --item_category_separator: the most categories one item keeps."}
    )
    next_item_loss_weight: float = field(
        default=0.0,
        metadata={"help": "Bidirectional model only: add this weight x a left-to-right next-item loss. Each batch's rows "
                  "also run unmasked through the same encoder with causal attention, and every event after the first "
                  "is a target (as in SASRec / --attention_type causal), on top of the Cloze positions. About twice "
                  "the compute per step; inference stays bidirectional with an appended [MASK] unless --next_item_query says "
                  "otherwise. 0 = off."},
    )
    next_item_query: str = field(
        default="mask",
        metadata={"choices": ["mask", "causal", "mask+causal"], "help": "Bidirectional model: the next-item query used for "
                  "validation (early stopping) and saved in the config for inference. mask: the appended [MASK]'s state "
                  "(BERT4Rec). causal: the last event's state in a left-to-right pass of the same weights. mask+causal: "
                  "the mean of both (two encoder passes per query). The last two are for models trained with "
                  "--next_item_loss_weight > 0."},
    )
    label_weighting: str = field(
        default="batch",
        metadata={"choices": ["batch", "dataset"], "help": "batch: the loss is the mean over each batch's labelled positions, so every batch weighs the "
                  "same and a position in a batch of short rows (few labels) weighs more. dataset: the sum over the "
                  "batch's labelled positions divided by the expected number per batch (from the training rows and "
                  "the masking options), so every labelled position weighs the same whatever its batch; meant for "
                  "length-grouped batches, whose label counts differ many-fold."},
    )
    peak_tflops: float | None = field(
        default=None,
        metadata={"help": "Peak TFLOP/s of one device, for the model FLOPs utilisation (mfu) in results.json. Default: "
                  "the dense bf16 peak of a known GPU (H100/H200 989, A100 312, ...); none on CPU (mfu then null)."},
    )
    recipe: str | None = field(
        default=None,
        metadata={"help": "auto: fill every option the command line does not set from the auto recipe "
                  "(seqbert.training.recipes: the measured Beauty recipe, with batch size, loss, windows and schedule "
                  "sized from the prepared data's statistics). The choices, their reasons and the statistics are "
                  "recorded in results.json and the model card. Default: none (each option's own default)."},
    )
    window_stride: int | None = field(
        default=None,
        metadata={"help": "Histories longer than --max_length train as several windows of --max_length events, this "
                  "many events apart (the most recent window always, the oldest at the history's start), so every "
                  "event is a Cloze and left-to-right target in every epoch. Default: max_length // 2. 0: one row "
                  "per user, the most recent --max_length events. Validation and test rows are unchanged."},
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "Train from the parquet shards of a sharded prepared folder (`seqbert prepare --output-shards N`) "
                  "without loading the train split: each process reads the shards holding its batches one at a time "
                  "(the next one read and encoded in the background) and encodes them on the fly. Same batches, masks "
                  "and metrics as in-memory training on the same folder (both order an epoch as shards permuted by "
                  "seed and epoch, rows shuffled within each shard), and exact resume. Not with --group_by_length, "
                  "--label_weighting dataset, --item_categories, --negative_sampling_power or --num_workers (they need "
                  "the whole split); the popularity / Markov baselines are fitted shard by shard."},
    )
    behavior_loss_weight: float = field(default=0.1, metadata={"help": "Weight of the event-type loss."})
    label_smoothing: float = field(default=0.0, metadata={"help": "Label smoothing of the item loss."})
    init_from: str | None = field(default=None, metadata={"help": "Continue from a saved model folder."})
    exclude_history: bool = field(
        default=False, metadata={"help": "Also report metrics with history items removed (labelled variant)."}
    )
    max_eval_users: int | None = field(
        default=None,
        metadata={"help": "Validate (during training, for early stopping, and in results.json) on a uniform random "
                  "sample of this many validation users instead of all of them, still ranking the full catalog. "
                  "The sample is drawn once from --eval_users_seed before sharding: the same users every epoch "
                  "and for every process count. Recorded as validation_users / validation_user_sampling. "
                  "Default: all users."},
    )
    max_test_users: int | None = field(
        default=None,
        metadata={"help": "Like --max_eval_users for the final test evaluation (recorded as test_users / "
                  "test_user_sampling). Default: all users."},
    )
    eval_users_seed: int = field(
        default=0,
        metadata={"help": "Seed of the --max_eval_users / --max_test_users samples; separate from --seed so every "
                  "training seed is validated on the same users."},
    )


@dataclass
class FinetuneArguments:
    """Purchase / item-conversion / click fine-tuning options."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Pretrained SeqBERT folder; omit to train from scratch."}
    )
    task: str = field(
        default="user-purchase",
        metadata={"help": "Prediction task: user-purchase (any purchase in the horizon) | item-conversion (purchase "
                  "of an item viewed/carted/faved before the cutoff) | click (interaction with a candidate item; "
                  "popularity-sampled negatives). Item tasks give the candidate to the model as the query token."},
    )
    horizon_days: float | None = field(
        default=None,
        metadata={"help": "Label window after each cutoff; default: test_start - validation_start."},
    )
    freeze_encoder: bool = field(default=False, metadata={"help": "Train only the classification head."})
    class_weighting: bool = field(
        default=False,
        metadata={"help": "Weight the loss by inverse class frequency (the logits are shifted back by -log(w1/w0) "
                  "before any metric, so probabilities keep the real prior). Off by default: ranking metrics "
                  "(ROC-/PR-AUC) need no weighting."},
    )
    train_negative_rate: float = field(
        default=1.0,
        metadata={"help": "Keep this share of the negative training rows (every positive is kept): faster epochs on "
                  "rare-positive tasks such as item-conversion. The logits are shifted back by log(rate), in the saved "
                  "model too, so probabilities keep the real prior. 1 = all rows."},
    )
    negatives_per_positive: int = field(
        default=4, metadata={"help": "click: popularity-sampled negatives per positive (same user)."}
    )
    label_seed: int = field(
        default=0,
        metadata={"help": "click: seed of the negative sampling (split i uses label_seed + i); separate from --seed "
                  "so every model and training seed sees the same examples."},
    )
    bootstrap_resamples: int = field(
        default=200,
        metadata={"help": "Bootstrap resamples for the 95 %% intervals of the test metrics, with temperature scaling "
                  "fitted on validation (0: skip)."},
    )
    tabular_baseline: bool = field(
        default=True,
        metadata={"help": "Also fit and report the tabular baselines (seqbert.tabular: the same features and models as "
                  "scripts/bench_purchase.py; near-constant training features dropped, the rest clipped at 5 std)."},
    )
    tabular_features: bool = field(
        default=False,
        metadata={"help": "Also feed the tabular baselines' features (seqbert.data.features.labelled_features, scaled "
                  "as seqbert.tabular.ShiftRobustScaler; the scaler is saved in the config) into the classification head "
                  "beside the pooled sequence state, as Alibaba's Behavior Sequence Transformer does. Scoring then needs the "
                  "event log for catalog statistics (finetune.predict_task_rows(..., sequences=...))."},
    )
    tabular_models: list[str] = field(
        default_factory=lambda: ["logistic_regression", "lightgbm"],
        metadata={"help": "Tabular baselines to fit: logistic_regression and/or lightgbm (scikit-learn's "
                  "HistGradientBoosting when lightgbm is not installed; both need `pip install seqbert[baselines]`)."},
    )
    utc_offset_hours: float = field(
        default=0.0,
        metadata={"help": "Hours to add to UTC for the shop's local clock (time-of-day features of the tabular "
                  "baselines; Taobao: 8)."},
    )
    num_train_cutoffs: int = field(
        default=1,
        metadata={"help": "Rolling training cutoffs, one horizon apart, the last at validation_start - horizon: each "
                  "adds a labelled copy of every user at an earlier time."},
    )
    num_test_cutoffs: int = field(
        default=1,
        metadata={"help": "Test cutoffs pooled from test_start, one horizon apart (when one horizon holds too few "
                  "positives; the data must reach the last cutoff + horizon)."},
    )
    conversion_lookback_days: float | None = field(
        default=None,
        metadata={"help": "item-conversion: candidates are items viewed / carted / faved in this many days before the "
                  "cutoff (default: any time before it)."},
    )
    cap_query_gap: bool = field(
        default=True,
        metadata={"help": "Cap the query token's gap to the cutoff at the longest gap among the training rows, so "
                  "later (validation / test) cutoffs never produce a time id fine-tuning did not see; "
                  "--no_cap_query_gap encodes the raw gap."},
    )
    save_predictions: bool = field(
        default=True,
        metadata={"help": "Write predictions.npz (validation/test labels, logits and user ids) into output_dir."},
    )
    candidate_match: bool = field(
        default=True,
        metadata={"help": "Item tasks: mark every history event that is the candidate item (or of its category) with a "
                  "learned match embedding, computed from the raw ids, and give the query token the strongest match; "
                  "--no_candidate_match: the candidate as query token only. Ignored for user-purchase."},
    )
    candidate_popularity: bool = field(
        default=True,
        metadata={"help": "Item tasks: add log1p(the candidate's event count before the cutoff, all users) x a learned "
                  "vector to the query token (predict_candidates then needs candidate_events). Ignored for "
                  "user-purchase."},
    )
    candidate_dropout: float = field(
        default=0.0,
        metadata={"help": "Item tasks: probability that a training row's candidate token is replaced by [UNK] (items "
                  "first seen after the vocabulary was built are [UNK] at later cutoffs; this trains that "
                  "embedding). 0 = off."},
    )


__all__ = ["FinetuneArguments", "ModelArguments", "PretrainArguments", "TrainingArguments", "config_file_arguments"]
