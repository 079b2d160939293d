"""The Accelerate training loop shared by pretraining and fine-tuning.

Skeleton of transformers' ``run_mlm_no_trainer``: Accelerator → seed → prepare → accumulate →
periodic ``save_state`` → ``gather_for_metrics`` evaluation → best weights → ``save_pretrained``.
Added: a wall-time budget, early stopping on a validation metric, and exact resume (the step
counter and best score are registered for checkpointing; the seedable sampler replays epochs).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker, on_main_process
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, is_compiled_module, set_seed
from accelerate.utils.other import id_tensor_storage
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm

from .arguments import TrainingArguments
from .schedule import TrainingSchedule, training_schedule

logger = logging.getLogger(__name__)

BEST_WEIGHTS_DIR = "best_weights"  # outside checkpoints/, whose rotation expects only checkpoint_N


class JsonLinesTracker(GeneralTracker):
    """Accelerate tracker writing one JSON object per ``log`` call to ``logs/metrics.jsonl``."""

    name = "jsonl"
    requires_logging_directory = True

    # Not @on_main_process: the tracker is built before the Accelerator, and touching the shared
    # state here would initialise it too early (a torchrun CPU job would then see one process).
    def __init__(self, run_name: str, logging_dir: str | Path):
        super().__init__()
        self.path = Path(logging_dir) / "metrics.jsonl"

    @property
    def tracker(self) -> Path:
        return self.path

    @on_main_process
    def store_init_configuration(self, values: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        (self.path.parent / "config.json").write_text(json.dumps(values, indent=2, default=str))

    @on_main_process
    def log(self, values: dict, step: int | None = None, **kwargs: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps({"step": step, **values}, default=float) + "\n")


def read_log(output_dir: str | Path) -> list[dict]:
    """Records written by :class:`JsonLinesTracker` (empty if none)."""
    path = Path(output_dir) / "logs" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@dataclass
class TrainingState:
    """Everything besides model/optimizer/scheduler/RNG that a resume needs (checkpointed)."""

    global_step: int = 0
    epoch: int = 0
    batches_done_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int = 0
    evaluations_without_improvement: int = 0
    elapsed_seconds: float = 0.0
    data_wait_seconds: float = 0.0  # time spent waiting for the DataLoader (collation included)
    evaluation_seconds: float = 0.0  # time spent validating during training (included in elapsed_seconds)
    train_sequences: int = 0  # sequences and real (unpadded) tokens trained on, all processes
    train_tokens: int = 0
    evaluations: list[dict] = field(default_factory=list)

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def timed_batches(batches: Iterable, state: TrainingState) -> Iterator:
    """Yield ``batches``, adding the time each ``next`` takes (loading + collation) to ``state.data_wait_seconds``."""
    iterator = iter(batches)
    while True:
        started = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            return
        finally:
            state.data_wait_seconds += time.perf_counter() - started
        yield batch


RUN_FILES = ("logs", "checkpoints", BEST_WEIGHTS_DIR, "model.safetensors", "config.json", "results.json", "predictions.npz",
             "split_protocol.json", "training_curves.png", "test_metrics.png", "test_reliability.png", "README.md")  # fmt: skip
"""What a training run writes into its output_dir (besides tokenizer and code files, which it rewrites)."""


def claim_output_dir(args: TrainingArguments) -> None:
    """Make sure this run cannot mix with an earlier one in ``args.output_dir``: an earlier run's files are an error,
    unless ``--resume_from`` continues it or ``--overwrite_output_dir`` deletes them (on the main process; the others
    only check)."""
    folder = Path(args.output_dir)
    previous = [name for name in RUN_FILES if (folder / name).exists()]
    if not previous or args.resume_from:
        return
    if not args.overwrite_output_dir:
        raise FileExistsError(
            f"{folder} already holds a run ({', '.join(previous)}). Pass --overwrite_output_dir to replace it, "
            "--resume_from latest to continue it, or choose another --output_dir."
        )
    if int(os.environ.get("RANK", "0")) == 0:
        logger.warning("--overwrite_output_dir: deleting the earlier run's %s in %s", ", ".join(previous), folder)
        for name in previous:
            path = folder / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def drop_tied_aliases(models: list[torch.nn.Module], weights: list[dict[str, torch.Tensor]], output_dir: str) -> None:
    """Accelerate ``save_state`` pre-hook: keep one name per tied tensor (the item decoder shares the item embeddings).

    safetensors cannot store two names for one tensor; left in, Accelerate drops the alias itself and warns
    "Removed shared tensor ..." at every checkpoint. ``safetensors.torch.load_model`` restores the tie on resume.
    """
    for state in weights:
        seen: set[tuple] = set()
        for name in list(state):
            tensor = state[name]
            if not isinstance(tensor, torch.Tensor):
                continue
            key = (id_tensor_storage(tensor), tensor.storage_offset(), tuple(tensor.shape))
            if key in seen:
                del state[name]
            seen.add(key)


def make_accelerator(args: TrainingArguments) -> Accelerator:
    """Accelerator with checkpoint naming, seeded sampler and the requested trackers (after :func:`claim_output_dir`)."""
    claim_output_dir(args)
    trackers: list = []
    if args.report_to in ("jsonl", "all"):
        trackers.append(JsonLinesTracker("seqbert", Path(args.output_dir) / "logs"))
    if args.report_to in ("tensorboard", "all"):
        trackers.append("tensorboard")
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=trackers or None,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir,
            logging_dir=str(Path(args.output_dir) / "logs"),
            automatic_checkpoint_naming=True,
            total_limit=args.checkpoints_total_limit,
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if args.expected_num_processes is not None and accelerator.num_processes != args.expected_num_processes:
        raise RuntimeError(
            f"Started with {accelerator.num_processes} process(es), expected {args.expected_num_processes}. "
            "On CPU use `ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N -m seqbert.training.pretrain …`."
        )
    set_seed(args.seed)
    return accelerator


class CombinedOptimizer(torch.optim.Optimizer):
    """Several optimizers stepped as one: their ``param_groups`` are this optimizer's (one LR scheduler drives
    them all) and their states form one state dict (one entry in ``accelerator.save_state``)."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers
        super().__init__([group for optimizer in optimizers for group in optimizer.param_groups], {})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure() if closure is not None else None
        for optimizer in self.optimizers:
            optimizer.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [optimizer.state_dict() for optimizer in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for optimizer, state in zip(self.optimizers, state_dict["optimizers"], strict=True):
            optimizer.load_state_dict(state)
        # Loading replaces each optimizer's group dicts: share the new ones again.
        self.param_groups = [group for optimizer in self.optimizers for group in optimizer.param_groups]


def make_optimizer(model: torch.nn.Module, args: TrainingArguments) -> torch.optim.Optimizer:
    """AdamW without weight decay on biases, norms and embeddings' padding-free vectors.

    Weights of sparse embeddings (``nn.Embedding(sparse=True)``, e.g. the item table under
    ``--sparse_item_updates``) get ``SparseAdam`` instead: only the rows with a gradient in a step move
    (lazy Adam moments, no weight decay), which is what makes a million-row table cheap to train.
    """
    sparse_ids = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse}
    decay, no_decay, sparse = [], [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if id(parameter) in sparse_ids:
            sparse.append(parameter)
        else:
            (no_decay if parameter.ndim < 2 or "norm" in name.lower() else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    dense = torch.optim.AdamW(groups, lr=args.learning_rate, foreach=True)
    if not sparse:
        return dense
    return CombinedOptimizer([dense, torch.optim.SparseAdam(sparse, lr=args.learning_rate)])


def clip_gradients(accelerator: Accelerator, model: torch.nn.Module, max_norm: float) -> None:
    """``accelerator.clip_grad_norm_``, also when some gradients are sparse (which torch's clipping rejects):
    those are coalesced and their values count in, and are scaled with, the same global norm."""
    parameters = [p for p in model.parameters() if p.grad is not None]
    if not any(p.grad.is_sparse for p in parameters):
        accelerator.clip_grad_norm_(parameters, max_norm)
        return
    accelerator.unscale_gradients()
    for parameter in parameters:
        if parameter.grad.is_sparse:
            parameter.grad = parameter.grad.coalesce()
    grads = [p.grad._values() if p.grad.is_sparse else p.grad for p in parameters]
    total_norm = torch.nn.utils.get_total_norm(grads)
    coefficient = (max_norm / (total_norm + 1e-6)).clamp(max=1.0)  # as torch.nn.utils.clip_grad_norm_
    torch._foreach_mul_(grads, coefficient)


def _load_malloc_trim() -> Callable[[], None]:
    """glibc's ``malloc_trim`` (Linux), else a no-op.

    Batches of varying shapes fragment glibc's heap: freed tensor memory stays mapped and RSS grows
    with every step (measured: 0.65 → 1.3 GiB in 300 steps of a 64-dim model). Trimming every few
    steps keeps it flat (0.56 GiB) for about a millisecond.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0) and None


release_freed_memory = _load_malloc_trim()


def learning_rate_factor(progress: float, warmup_ratio: float, schedule: str) -> float:
    """Multiplier of the peak learning rate at a training progress in [0, 1].

    Linear warm-up over ``warmup_ratio``, then ``cosine`` / ``linear`` decay to zero or ``constant``.
    Progress is measured by steps or, under a time budget, by wall time (whichever is further), so a
    run budgeted by time still warms up and anneals within its budget.
    """
    progress = min(max(progress, 0.0), 1.0)
    if warmup_ratio > 0 and progress < warmup_ratio:
        return max(progress / warmup_ratio, 1e-3)
    remaining = (progress - warmup_ratio) / max(1.0 - warmup_ratio, 1e-9)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * remaining))
    if schedule == "linear":
        return 1.0 - remaining
    if schedule == "constant":
        return 1.0
    raise ValueError(f"Unknown lr_scheduler {schedule!r}; use cosine, linear or constant.")


def resolve_checkpoint(args: TrainingArguments) -> Path | None:
    """The checkpoint folder named by ``--resume_from`` (``latest`` = newest under output_dir)."""
    if not args.resume_from:
        return None
    if args.resume_from != "latest":
        return Path(args.resume_from)
    folders = sorted(
        (Path(args.output_dir) / "checkpoints").glob("checkpoint_*"), key=lambda p: int(p.name.split("_")[-1])
    )
    if not folders:
        raise FileNotFoundError(f"--resume_from latest: no checkpoint under {args.output_dir}/checkpoints.")
    return folders[-1]


def train(
    *,
    accelerator: Accelerator,
    model: torch.nn.Module,
    train_loader: torch.utils.data.DataLoader,
    args: TrainingArguments,
    evaluate: Callable[[torch.nn.Module], dict[str, float]],
    metric_name: str,
    loss_fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float | torch.Tensor]]],
    run_config: dict[str, Any] | None = None,
    schedule: TrainingSchedule | None = None,
) -> TrainingState:
    """Train ``model`` (not yet prepared) and leave the best validation weights loaded in it.

    ``evaluate(model)`` returns validation metrics (already gathered across processes);
    ``metric_name`` (higher is better) selects the best weights and drives early stopping;
    ``loss_fn(model, batch)`` returns the loss and scalars to log (floats or detached tensors; tensors
    are read only at logging steps, so the loop does not synchronise with the device every step).
    ``run_config`` is recorded with the arguments in the trackers' configuration (``logs/config.json``).
    ``schedule`` sets the run's length (default: ``args.num_epochs`` / ``args.max_steps``, else 50 epochs).
    """
    optimizer = make_optimizer(model, args)
    schedule = schedule or training_schedule(
        len(train_loader), num_processes=accelerator.num_processes,
        gradient_accumulation_steps=args.gradient_accumulation_steps, num_epochs=args.num_epochs,
        max_steps=args.max_steps, eval_every_epochs=args.eval_every_epochs or 1,
    )  # fmt: skip
    total_steps = schedule.total_steps
    logger.info("schedule: %s (%d optimizer steps, validation every %d epoch(s))", schedule.reason, total_steps,
                schedule.eval_every_epochs)  # fmt: skip
    state = TrainingState()
    clock = {"started": time.monotonic()}
    budget_seconds = args.time_budget_minutes * 60 if args.time_budget_minutes else None

    def progress_fraction(steps_done: float) -> float:
        """Share of training done after ``steps_done`` optimizer steps: by steps, or by wall time when the
        budget would end training first (only then does the learning rate depend on the clock)."""
        by_steps = steps_done / max(total_steps, 1)
        if budget_seconds is None:
            return by_steps
        return max(by_steps, (time.monotonic() - clock["started"]) / budget_seconds)

    # The scheduler steps right after each optimizer step, before state.global_step counts it, so the step count
    # comes from the scheduler itself (Accelerate steps it once per process per optimizer step). Reading
    # state.global_step there was one step behind: after the first step the step fraction was 0, the wall clock
    # decided the second step's learning rate, and two identical runs diverged.
    processes = accelerator.num_processes
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda scheduler_steps: learning_rate_factor(
            progress_fraction(scheduler_steps / processes), args.warmup_ratio, args.lr_scheduler
        ),
    )
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    if args.torch_compile and not is_compiled_module(model):
        # What Accelerate's dynamo plugin does (compile last, around DDP), but per run: the plugin lives in
        # Accelerate's process-wide state, which a second Accelerator in the same process cannot change.
        # Checkpoints (save_state) keep the prepared module; unwrapping drops the compiled wrapper.
        model = torch.compile(model, backend=args.torch_compile_backend, mode=args.torch_compile_mode)
    accelerator.register_for_checkpointing(state)
    accelerator.register_save_state_pre_hook(drop_tied_aliases)
    best_path = Path(args.output_dir) / BEST_WEIGHTS_DIR / "model.safetensors"
    checkpoint = resolve_checkpoint(args)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        # Continue numbering after the newest checkpoint (accelerate restarts at 0 and would collide).
        existing = [int(p.name.split("_")[-1]) for p in (Path(args.output_dir) / "checkpoints").glob("checkpoint_*")]
        accelerator.project_configuration.iteration = max(existing, default=-1) + 1
        logger.info("Resumed from %s at step %d (epoch %d)", checkpoint, state.global_step, state.epoch)
    resumed_rng_state = torch.get_rng_state() if state.batches_done_in_epoch else None
    tracked = {**vars(args), **(run_config or {}), "schedule": schedule.reason}
    accelerator.init_trackers("seqbert", config={k: v for k, v in tracked.items() if v is not None})

    progress = tqdm(
        total=total_steps, initial=state.global_step, disable=not accelerator.is_local_main_process,
        desc="train" if budget_seconds is None else f"train (budget {args.time_budget_minutes:g} min)",
    )
    started = time.monotonic() - state.elapsed_seconds
    clock["started"] = started
    running_loss, running_count = 0.0, 0
    stop = state.global_step >= total_steps

    def should_stop() -> bool:
        budget_hit = args.time_budget_minutes is not None and time.monotonic() - started > args.time_budget_minutes * 60
        if accelerator.num_processes == 1:  # no collective, hence no device synchronisation per step
            return budget_hit or state.global_step >= total_steps
        flag = torch.tensor(float(budget_hit or state.global_step >= total_steps), device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)

    # Sequences and real tokens of the micro-batches since the last flush, kept on the device (no sync per step).
    pending_counts = torch.zeros(2, dtype=torch.long, device=accelerator.device)

    def flush_counts() -> None:
        """Add the pending counts of every process to the state (a collective: all processes call it together)."""
        counts = accelerator.reduce(pending_counts, reduction="sum") if accelerator.num_processes > 1 else pending_counts
        state.train_sequences += int(counts[0])
        state.train_tokens += int(counts[1])
        pending_counts.zero_()

    def run_evaluation() -> bool:
        """Validate, keep the best weights; True when early stopping says stop."""
        model.eval()
        evaluation_started = time.monotonic()
        metrics = evaluate(model)
        evaluation_seconds = time.monotonic() - evaluation_started
        state.evaluation_seconds += evaluation_seconds
        model.train()
        score = metrics[metric_name]
        state.elapsed_seconds = time.monotonic() - started
        record = {
            "epoch": state.epoch, "wall_seconds": round(state.elapsed_seconds, 2),
            "validation_seconds": round(evaluation_seconds, 2), **{f"val_{k}": v for k, v in metrics.items()},
        }  # fmt: skip
        state.evaluations.append({"step": state.global_step, **record})
        accelerator.log(record, step=state.global_step)
        if state.best_metric is None or score > state.best_metric:
            state.best_metric, state.best_step = score, state.global_step
            state.evaluations_without_improvement = 0
            if accelerator.is_main_process:
                best_path.parent.mkdir(parents=True, exist_ok=True)
                save_model(accelerator.unwrap_model(model, keep_torch_compile=False), str(best_path))
        else:
            state.evaluations_without_improvement += 1
        logger.info("step %d validation %s=%.4f (best %.4f at step %d)", state.global_step, metric_name, score, state.best_metric, state.best_step)
        patience = args.early_stopping_patience
        return patience is not None and state.evaluations_without_improvement >= patience

    model.train()
    while not stop and state.epoch < schedule.num_epochs:
        train_loader.set_epoch(state.epoch)
        if hasattr(train_loader.collate_fn, "set_epoch"):
            train_loader.collate_fn.set_epoch(state.epoch)
        batches = train_loader
        if state.batches_done_in_epoch:
            # A streamed loader (seqbert.training.streaming) skips by itself, without reading the skipped shards.
            skip = getattr(train_loader, "skip_first_batches", None)
            batches = (skip(state.batches_done_in_epoch) if skip is not None
                       else accelerator.skip_first_batches(train_loader, state.batches_done_in_epoch))  # fmt: skip
        batches = iter(batches)
        if resumed_rng_state is not None:
            # Starting a DataLoader iterator (at its first batch) draws a seed from the global RNG; an
            # uninterrupted run drew it at the epoch start, so restore the checkpointed state afterwards
            # to get the same dropout masks as a run that was never interrupted.
            first = next(batches, None)
            torch.set_rng_state(resumed_rng_state)
            resumed_rng_state = None
            batches = itertools.chain([first] if first is not None else [], batches)
        for batch in timed_batches(batches, state):
            with accelerator.accumulate(model):
                loss, scalars = loss_fn(model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    clip_gradients(accelerator, model, args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            state.batches_done_in_epoch += 1
            mask = batch.get("attention_mask")
            pending_counts[0] += len(batch["input_ids"])
            pending_counts[1] += mask.sum() if mask is not None else batch["input_ids"].numel()
            # Kept on the device: reading it every step would synchronise with the GPU every step.
            running_loss = running_loss + loss.detach().float()
            running_count += 1
            if not accelerator.sync_gradients:
                continue
            state.global_step += 1
            if budget_seconds is not None:  # the bar's total: the steps the budget allows at the pace so far
                elapsed = time.monotonic() - started
                expected = round(state.global_step * budget_seconds / max(elapsed, 1e-9))
                progress.total = max(state.global_step, min(total_steps, expected))
            progress.update(1)
            if state.global_step % args.logging_steps == 0:
                release_freed_memory()
                flush_counts()
                mean_loss = float(running_loss) / running_count
                # Share of wall time the loop waited for data; near 0 means the DataLoader is not the bottleneck.
                data_wait = state.data_wait_seconds / max(time.monotonic() - started, 1e-9)
                accelerator.log(
                    {"train_loss": mean_loss, "lr": scheduler.get_last_lr()[0], "data_wait_fraction": round(data_wait, 4),
                     **{k: float(v) for k, v in scalars.items()}},
                    step=state.global_step,
                )  # fmt: skip
                progress.set_postfix(loss=f"{mean_loss:.4f}")
                running_loss, running_count = 0.0, 0
            if args.checkpointing_steps and state.global_step % args.checkpointing_steps == 0:
                flush_counts()
                state.elapsed_seconds = time.monotonic() - started
                accelerator.save_state()
            if should_stop():
                stop = True
                break
        # An epoch is complete when its last batch ran, even if the step budget ended the loop on it.
        if not stop or state.batches_done_in_epoch >= len(train_loader):
            state.epoch += 1
            state.batches_done_in_epoch = 0
        if stop or state.epoch % schedule.eval_every_epochs == 0:
            if run_evaluation():
                break
    progress.close()
    flush_counts()
    if not state.evaluations or state.evaluations[-1]["step"] != state.global_step:
        run_evaluation()
    state.elapsed_seconds = time.monotonic() - started
    accelerator.wait_for_everyone()
    if best_path.exists():
        load_model(accelerator.unwrap_model(model, keep_torch_compile=False), str(best_path))
    else:  # resumed from a finished run whose best weights were already saved as the model
        logger.warning("No best weights at %s; keeping the final weights.", best_path)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # The caller saves these weights as the model; a second copy would be uploaded with the folder.
        shutil.rmtree(best_path.parent, ignore_errors=True)
    return state


__all__ = [
    "CombinedOptimizer", "JsonLinesTracker", "TrainingState", "clip_gradients", "make_accelerator", "make_optimizer",
    "claim_output_dir", "read_log", "resolve_checkpoint", "train",
]
