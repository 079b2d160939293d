#!/usr/bin/env python
"""Training-step throughput (tokens/s, memory, MFU) or full-catalog ranking speed of the masked-behavior model.

Times full optimizer steps (forward, backward, fused/foreach AdamW) of ``SeqBertForMaskedBehaviorModeling``
on random Cloze batches of a fixed shape, after warm-up, on the default device (CUDA when present).
Prints one JSON line per configuration. Model FLOPs utilisation (MFU) uses the usual count:
training = 3 × forward, forward = 2 × (dense parameters × tokens) + 4 × layers × batch × length² ×
hidden (attention scores and weighted sum) + 2 × labelled positions × hidden × scored items (decoder),
divided by ``--peak-tflops`` (dense bf16 peak of the device; 989 for an H100/H200 SXM).

Example::

    python scripts/bench_throughput.py --precision fp32 bf16 --hidden-size 256 --layers 4 --batch-size 512
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from types import SimpleNamespace

import torch

from seqbert import SeqBertConfig, SeqBertForMaskedBehaviorModeling
from seqbert.training.flops import dense_parameters, training_flops
from seqbert.training.loop import make_optimizer
from seqbert.training.pretrain import use_sparse_item_updates


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"], help="Precisions to time (bf16 = autocast).")
    parser.add_argument("--items", type=int, default=12_101, help="Catalog size (vocabulary minus special tokens).")
    parser.add_argument("--hidden-size", type=int, default=64, help="Hidden width.")
    parser.add_argument("--layers", type=int, default=2, help="Transformer layers.")
    parser.add_argument("--heads", type=int, default=2, help="Attention heads.")
    parser.add_argument("--length", type=int, default=50, help="Sequence length (all positions real).")
    parser.add_argument("--batch-size", type=int, default=256, help="Sequences per step.")
    parser.add_argument("--mask-prob", type=float, default=0.2, help="Share of positions labelled (decoded).")
    parser.add_argument("--loss-type", default="full", choices=["full", "sampled"], help="Full or sampled softmax.")
    parser.add_argument("--num-negatives", type=int, default=1024, help="Negatives with --loss-type sampled.")
    parser.add_argument("--attention-type", default="bidirectional", choices=["bidirectional", "causal"], help="Attention.")
    parser.add_argument("--steps", type=int, default=50, help="Timed steps (after --warmup).")
    parser.add_argument("--warmup", type=int, default=10, help="Untimed warm-up steps.")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model first.")
    parser.add_argument("--compile-mode", default=None,
                        help="torch.compile mode (default, reduce-overhead, max-autotune, ...) with --compile.")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend with --compile.")
    parser.add_argument("--sparse-item-updates", action="store_true",
                        help="With --loss-type sampled: sparse item-table gradients, SparseAdam on the touched rows and "
                        "AdamW for the rest (the optimizer of pretraining's --sparse_item_updates).")
    parser.add_argument("--measure", default="train", choices=["train", "eval"],
                        help="train: optimizer steps. eval: full-catalog ranking of --eval-users users (pessimistic ranks).")
    parser.add_argument("--eval-users", type=int, default=4096, help="Users ranked with --measure eval.")
    parser.add_argument("--item-chunk-size", type=int, default=0,
                        help="With --measure eval: score the catalog in chunks of this many items (0: all at once).")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="Device peak for MFU (dense bf16 TFLOP/s).")
    return parser.parse_args(argv)


def model_flops_per_step(model: SeqBertForMaskedBehaviorModeling, args: argparse.Namespace, labelled: int) -> float:
    """Training FLOPs of one step (3 × forward), counting matmuls only (:mod:`seqbert.training.flops`)."""
    config = model.config
    return training_flops(
        dense_params=dense_parameters(model), layers=config.num_hidden_layers, hidden=config.hidden_size,
        tokens=args.batch_size * args.length, squared_lengths=args.batch_size * args.length**2, labelled=labelled,
        scored_items=args.num_negatives + 1 if args.loss_type == "sampled" else args.items,
    )  # fmt: skip


def run(args: argparse.Namespace, precision: str) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    config = SeqBertConfig(
        vocab_size=args.items + 5, hidden_size=args.hidden_size, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, intermediate_size=4 * args.hidden_size, max_position_embeddings=args.length,
        loss_type=args.loss_type, num_negatives=args.num_negatives, attention_type=args.attention_type,
    )  # fmt: skip
    model = SeqBertForMaskedBehaviorModeling(config).to(device).train()
    if args.sparse_item_updates:
        use_sparse_item_updates(model)
        optimizer = make_optimizer(model, SimpleNamespace(learning_rate=1e-3, weight_decay=0.01))
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device.type == "cuda", foreach=device.type != "cuda")
    step_model = torch.compile(model, mode=args.compile_mode, backend=args.compile_backend) if args.compile else model
    shape = (args.batch_size, args.length)
    input_ids = torch.randint(5, config.vocab_size, shape, device=device)
    selected = torch.rand(shape, device=device) < args.mask_prob
    batch = {
        "input_ids": input_ids.masked_fill(selected, 1),
        "behavior_ids": torch.full(shape, 2, device=device),
        "time_ids": torch.full(shape, 3, device=device),
        "attention_mask": torch.ones(shape, dtype=torch.long, device=device),
        "labels": torch.where(selected, input_ids, -100),
    }
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step() -> None:
        with autocast:
            loss = step_model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / args.steps
    flops = model_flops_per_step(model, args, int(selected.sum()))
    return {
        "measure": "train", "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "precision": precision, "compile": args.compile and f"{args.compile_backend}/{args.compile_mode or 'default'}",
        "sparse_item_updates": args.sparse_item_updates, "loss_type": args.loss_type, "attention_type": args.attention_type,
        "items": args.items, "hidden_size": args.hidden_size, "layers": args.layers, "length": args.length,
        "batch_size": args.batch_size, "parameters": sum(p.numel() for p in model.parameters()),
        "step_ms": round(seconds * 1e3, 3),
        "sequences_per_second": round(args.batch_size / seconds, 1),
        "tokens_per_second": round(args.batch_size * args.length / seconds, 1),
        "model_tflops_per_second": round(flops / seconds / 1e12, 2),
        "mfu": round(flops / seconds / (args.peak_tflops * 1e12), 4),
        "peak_gpu_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }  # fmt: skip


def run_eval(args: argparse.Namespace, precision: str) -> dict:
    """Rank ``--eval-users`` random targets over the whole catalog, in batches of ``--batch-size`` users."""
    from seqbert.evaluation import chunked_target_ranks, pessimistic_ranks

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    config = SeqBertConfig(
        vocab_size=args.items + 5, hidden_size=args.hidden_size, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, intermediate_size=4 * args.hidden_size, max_position_embeddings=args.length,
        attention_type=args.attention_type,
    )  # fmt: skip
    model = SeqBertForMaskedBehaviorModeling(config).to(device).eval()
    weight, bias = model.item_output_weights(), model.item_output_bias()
    shape = (args.batch_size, args.length)
    batch = {
        "input_ids": torch.randint(5, config.vocab_size, shape, device=device),
        "behavior_ids": torch.full(shape, 2, device=device),
        "time_ids": torch.full(shape, 3, device=device),
        "attention_mask": torch.ones(shape, dtype=torch.long, device=device),
    }
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    started = time.perf_counter()
    done = 0
    with torch.no_grad(), autocast:
        while done < args.eval_users:
            targets = torch.randint(0, args.items, (args.batch_size,), device=device)
            if args.item_chunk_size:
                queries = model.next_item_queries(**batch)
                chunked_target_ranks(queries, weight, bias, targets, chunk_size=args.item_chunk_size)
            else:
                pessimistic_ranks(model.next_item_scores(**batch).float(), targets)
            done += args.batch_size
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {
        "measure": "eval", "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "precision": precision, "items": args.items, "hidden_size": args.hidden_size, "layers": args.layers,
        "length": args.length, "batch_size": args.batch_size, "item_chunk_size": args.item_chunk_size or None,
        "users": done, "seconds": round(seconds, 3), "users_per_second": round(done / seconds, 1),
        "peak_gpu_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    results = []
    for precision in args.precision:
        result = run_eval(args, precision) if args.measure == "eval" else run(args, precision)
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


if __name__ == "__main__":
    main()
