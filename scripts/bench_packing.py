#!/usr/bin/env python
"""Training-step speed of a pretraining recipe on real prepared data: packed batches against the padded layout.

Short behavior sequences padded to a batch's longest row are mostly padding (Amazon Beauty: about 87 %
of each 256-row batch). SeqBERT packs such batches (``seqbert.modeling_seqbert.PackedBatch``): per-token
layers run on real tokens only and attention within groups of rows of similar length. This script times
full optimizer steps (forward, backward, AdamW) on batches made exactly as ``seqbert pretrain`` makes
them (same row encoding, same collator, same model), with packing on (the default) and off (the padded
layout). Both are forced, whatever the batches' padding share (reported; the model itself packs only from
``PACK_MIN_PADDING_SHARE`` = 25 % padding). Prints one JSON line per layout and precision.

Example (the Beauty recipe of ``bench_nextitem.py`` with the next-item loss, one thread)::

    seqbert prepare Beauty.txt --dataset-format amazon_s3rec --split leave_one_out --output-dir /tmp/beauty
    python scripts/bench_packing.py /tmp/beauty --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_nextitem import RECIPES

import seqbert.modeling_seqbert as modeling
from seqbert.prepared import PreparedData, encode_for_pretraining
from seqbert.training import pretrain

DEFAULT_TRAIN_ARGS = " ".join([*RECIPES["seqbert"], "--item_categories"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", help="A folder written by `seqbert prepare` (its train split is used).")
    parser.add_argument("--train-args", default=DEFAULT_TRAIN_ARGS,
                        help="`seqbert pretrain` options of the recipe (quoted string; default: bench_nextitem's seqbert "
                        "recipe + --item_categories).")
    parser.add_argument("--max-length", type=int, default=50, help="Most recent events per training row.")
    parser.add_argument("--batch-size", type=int, default=256, help="Training rows per step.")
    parser.add_argument("--layouts", nargs="+", default=["packed", "padded"], choices=["packed", "padded"],
                        help="packed: padding skipped (what the model does from 25 %% padding); padded: every position computed.")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"], help="bf16 = CPU/GPU autocast.")
    parser.add_argument("--steps", type=int, default=20, help="Timed steps, each on a new batch.")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed steps first.")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the model, the row order and the masking.")
    return parser.parse_args(argv)


def make_batches(args: argparse.Namespace) -> tuple[list[dict], object, tuple]:
    """The first ``warmup + steps`` batches of a seeded epoch, collated as pretraining collates them."""
    pretrain_argv = ["--data_dir", args.data_dir, "--output_dir", "unused", "--max_length", str(args.max_length),
                     "--seed", str(args.seed), *args.train_args.split()]  # fmt: skip
    _, model_args, pre_args, _ = pretrain.parse_args(pretrain_argv)
    data = PreparedData.load(args.data_dir)
    rows = encode_for_pretraining(data.splits["train"], data.tokenizer, args.max_length)
    collator = pretrain.make_collator(data.tokenizer, pre_args, args.seed)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(args.seed)).tolist()
    needed = (args.warmup + args.steps) * args.batch_size
    if needed > len(rows):
        raise SystemExit(f"{len(rows)} training rows make fewer than warmup + steps = {args.warmup + args.steps} batches "
                         f"of {args.batch_size}; lower --steps, --warmup or --batch-size.")
    batches = [collator([rows[i] for i in order[start : start + args.batch_size]]) for start in range(0, needed, args.batch_size)]
    return batches, data, (model_args, pre_args)


def time_steps(args: argparse.Namespace, batches: list[dict], data, recipe: tuple, layout: str, precision: str) -> dict:
    model_args, pre_args = recipe
    torch.manual_seed(args.seed)
    model = pretrain.build_model(data.tokenizer, model_args, pre_args, args.max_length, train=data.splits["train"]).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    default_share = modeling.PACK_MIN_PADDING_SHARE
    # Forced either way, whatever the batch's padding share (reported), so any data shows both.
    modeling.PACK_MIN_PADDING_SHARE = math.inf if layout == "padded" else 0.0

    def step(batch: dict) -> float:
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    try:
        for batch in batches[: args.warmup]:
            step(batch)
        started = time.perf_counter()
        losses = [step(batch) for batch in batches[args.warmup :]]
        seconds = (time.perf_counter() - started) / args.steps
    finally:
        modeling.PACK_MIN_PADDING_SHARE = default_share
    timed = batches[args.warmup :]
    real_tokens = sum(int(b["attention_mask"].sum()) for b in timed) / len(timed)
    padded_tokens = sum(b["attention_mask"].numel() for b in timed) / len(timed)
    return {
        "layout": layout, "precision": precision, "threads": torch.get_num_threads(), "batch_size": args.batch_size,
        "max_length": args.max_length, "padding_share": round(1 - real_tokens / padded_tokens, 4),
        "step_ms": round(seconds * 1e3, 1), "sequences_per_second": round(args.batch_size / seconds, 1),
        "real_tokens_per_second": round(real_tokens / seconds, 1), "mean_loss": round(sum(losses) / len(losses), 4),
        "train_args": args.train_args,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    batches, data, recipe = make_batches(args)
    results = []
    for precision in args.precision:
        for layout in args.layouts:
            result = time_steps(args, batches, data, recipe, layout, precision)
            print(json.dumps(result), flush=True)
            results.append(result)
    return results


if __name__ == "__main__":
    main()
