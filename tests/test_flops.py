"""Model FLOPs counting and the utilisation figures pretraining writes to results.json."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from seqbert import SeqBertConfig, SeqBertForMaskedBehaviorModeling
from seqbert.training.flops import FlopsCounter, dense_parameters, peak_tflops_of, training_flops
from seqbert.training.pretrain import utilisation
from tests.script_modules import load_script


def tiny_model(**overrides) -> SeqBertForMaskedBehaviorModeling:
    config = SeqBertConfig(vocab_size=105, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, **overrides)
    return SeqBertForMaskedBehaviorModeling(config)


def test_dense_parameters_are_the_layer_and_head_matmul_weights():
    model = tiny_model()
    per_layer = (32 * 96 + 96) + (32 * 32 + 32) + (32 * 64 + 64) + (64 * 32 + 32) + 4 * 32  # qkv, out, ffn, norms
    head = (32 * 32 + 32) + 2 * 32 + sum(p.numel() for p in model.head.behavior_decoder.parameters())
    assert dense_parameters(model) == 2 * per_layer + 2 * 32 + head  # + final norm


def test_training_flops_by_hand():
    # forward = 2*10*6 + 4*1*2*(2*3*3) + 2*2*7*4 = 120 + 144 + 112 = 376; training = 3x
    assert training_flops(dense_params=10, layers=1, hidden=2, tokens=6, squared_lengths=18, labelled=4, scored_items=7) == 3 * 376


@pytest.mark.parametrize("loss_type, scored", [("full", 100), ("sampled", 17)])
def test_counter_adds_batches_of_any_shape(loss_type, scored):
    model = tiny_model(loss_type=loss_type, num_negatives=16)
    counter = FlopsCounter.for_model(model)
    assert counter.scored_items == scored
    shapes = [(4, 8), (3, 16)]
    for rows, length in shapes:
        labels = torch.full((rows, length), -100)
        labels[:, -1] = 7
        counter.add(torch.zeros(rows, length, dtype=torch.long), labels)
    expected = training_flops(
        dense_params=dense_parameters(model), layers=2, hidden=32, tokens=4 * 8 + 3 * 16,
        squared_lengths=4 * 64 + 3 * 256, labelled=7, scored_items=scored,
    )  # fmt: skip
    assert counter.total() == expected


def test_utilisation_reports_mfu_only_against_a_known_peak():
    counter = FlopsCounter(dense_params=1000, layers=1, hidden=8, scored_items=50, tokens=10**9)
    state = SimpleNamespace(elapsed_seconds=12.0, evaluation_seconds=2.0)
    cpu = torch.device("cpu")
    achieved = counter.total() / 10.0 / 1e12
    assert peak_tflops_of(cpu) is None
    unknown = utilisation(counter, state, cpu, None)
    assert unknown["mfu"] is None and unknown["model_tflops_per_second"] == pytest.approx(achieved, abs=1e-4)
    known = utilisation(counter, state, cpu, 2.0)
    assert known["mfu"] == pytest.approx(achieved / 2.0, abs=1e-5) and known["mfu_peak_tflops"] == 2.0


def test_bench_throughput_uses_the_shared_count():
    bench = load_script("bench_throughput")
    model = tiny_model()
    args = SimpleNamespace(batch_size=4, length=8, loss_type="full", num_negatives=0, items=100)
    assert bench.model_flops_per_step(model, args, labelled=5) == training_flops(
        dense_params=dense_parameters(model), layers=2, hidden=32, tokens=32, squared_lengths=4 * 64, labelled=5, scored_items=100
    )


def test_pretrain_help_explains_peak_tflops():
    result = subprocess.run([sys.executable, "-m", "seqbert.training.pretrain", "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "--peak_tflops" in result.stdout and "mfu" in result.stdout
