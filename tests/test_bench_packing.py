"""scripts/bench_packing.py on a small prepared folder: both layouts time the same batches and losses agree."""

from __future__ import annotations

import json

import seqbert.modeling_seqbert as modeling

from .script_modules import load_script
from .synthetic_prepared import prepare_synthetic_temporal


def test_bench_packing_times_both_layouts_on_the_same_batches(tmp_path, capsys, monkeypatch):
    prepared = prepare_synthetic_temporal(tmp_path, num_users=120, seed=3)
    bench = load_script("bench_packing")
    recipe = "--hidden_size 16 --intermediate_size 32 --num_attention_heads 2 --hidden_dropout_prob 0 " \
             "--attention_probs_dropout_prob 0 --next_item_loss_weight 1.0 --item_categories"  # fmt: skip
    packed_calls = []
    attend = modeling.PackedBatch.attend
    monkeypatch.setattr(modeling.PackedBatch, "attend", lambda *args: packed_calls.append(1) or attend(*args))
    argv = [str(prepared), "--train-args", recipe, "--batch-size", "16", "--steps", "2", "--warmup", "1",
            "--max-length", "16", "--threads", "1"]  # fmt: skip
    calls = {}
    for layout in ("packed", "padded"):
        bench.main([*argv, "--layouts", layout])
        calls[layout], packed_calls[:] = len(packed_calls), []
    assert calls["packed"] > 0 and calls["padded"] == 0  # each layout is what it says
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["layout"] for r in lines] == ["packed", "padded"]
    packed, padded = lines
    assert 0 < packed["padding_share"] == padded["padding_share"] < 1
    assert packed["sequences_per_second"] > 0 and padded["sequences_per_second"] > 0
    # Same seed, batches and masking, no dropout: the two layouts train the same model.
    assert abs(packed["mean_loss"] - padded["mean_loss"]) < 1e-3 * abs(padded["mean_loss"])
    assert modeling.PACK_MIN_PADDING_SHARE == 0.25  # restored after the padded run
