"""Model FLOPs of masked-behavior training, for model FLOPs utilisation (MFU).

The usual count, matmuls only: training = 3 × forward; forward = 2 × dense parameters × tokens
(embedding tables excluded: they are lookups) + 4 × layers × hidden × Σ length² over rows (attention
scores and the weighted sum) + 2 × hidden × scored items × labelled positions (the item decoder:
the whole catalog for the full softmax, the shared negatives + 1 for the sampled one). Tokens are
the padded positions the encoder computes, so padding counts as work done (it is), which is why MFU
and padding efficiency are read together.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Dense bf16 peak TFLOP/s without sparsity, by a substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0, "4090": 165.0}


def peak_tflops_of(device: torch.device) -> float | None:
    """Dense bf16 peak of a known CUDA device, else None (CPU peaks depend on the SKU and are not guessed)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def dense_parameters(model: torch.nn.Module) -> int:
    """Parameters used as matmul weights: everything except embedding tables and the decoder bias."""
    total = 0
    for name, parameter in model.named_parameters():
        if "embeddings" not in name and not name.endswith("head.bias"):
            total += parameter.numel()
    return total


def training_flops(
    *, dense_params: int, layers: int, hidden: int, tokens: int, squared_lengths: int, labelled: int | float, scored_items: int
) -> float:
    """FLOPs of a training step (forward + backward) over ``tokens`` padded positions."""
    forward = 2 * dense_params * tokens + 4 * layers * hidden * squared_lengths + 2 * hidden * scored_items * labelled
    return 3.0 * forward


@dataclass
class FlopsCounter:
    """Accumulates :func:`training_flops` batch by batch without synchronising with the device:
    shapes are read on the host, the labelled count stays a device tensor until :meth:`total`."""

    dense_params: int
    layers: int
    hidden: int
    scored_items: int
    tokens: int = 0
    squared_lengths: int = 0
    labelled: torch.Tensor | int = 0

    @classmethod
    def for_model(cls, model: torch.nn.Module) -> FlopsCounter:
        config = model.config
        sampled = config.loss_type == "sampled"
        scored = config.num_negatives + 1 if sampled else config.vocab_size - config.num_special_tokens
        return cls(dense_parameters(model), config.num_hidden_layers, config.hidden_size, scored)

    def add(self, input_ids: torch.Tensor, labels: torch.Tensor) -> None:
        rows, length = input_ids.shape
        self.tokens += rows * length
        self.squared_lengths += rows * length * length
        self.labelled = self.labelled + (labels != -100).sum()

    def total(self) -> float:
        return training_flops(
            dense_params=self.dense_params, layers=self.layers, hidden=self.hidden, tokens=self.tokens,
            squared_lengths=self.squared_lengths, labelled=float(self.labelled), scored_items=self.scored_items,
        )  # fmt: skip


__all__ = ["FlopsCounter", "PEAK_BF16_TFLOPS", "dense_parameters", "peak_tflops_of", "training_flops"]
