"""--torch_compile: pretraining through Accelerate's dynamo plugin saves plain, loadable weights.

The test compiles with the ``aot_eager`` backend (dynamo tracing + AOT autograd, no code generation), which
exercises the same wrapping, unwrapping and saving as inductor in a few seconds; inductor itself (C++ code
generation on CPU) is measured in BENCHMARKS.md, not tested here.
"""

from __future__ import annotations

import json

from safetensors import safe_open
from torch._dynamo.utils import counters

from seqbert import SeqBertForMaskedBehaviorModeling
from seqbert.training import pretrain
from tests.test_eval_user_sampling import TINY, prepared  # noqa: F401  (module fixture)


def test_compiled_pretraining_saves_plain_loadable_weights(prepared, tmp_path):  # noqa: F811
    output = tmp_path / "compiled"
    counters["stats"].clear()
    summary = pretrain.main([
        "--data_dir", str(prepared), "--output_dir", str(output), "--max_length", "16", "--max_steps", "3",
        "--per_device_batch_size", "32", "--torch_compile", "--torch_compile_backend", "aot_eager", *TINY,
    ])  # fmt: skip
    assert summary["global_step"] == 3
    assert counters["stats"]["unique_graphs"] > 0  # dynamo did trace the model
    with safe_open(output / "model.safetensors", "pt") as weights:
        keys = list(weights.keys())
    assert keys and not any("_orig_mod" in key for key in keys)
    model = SeqBertForMaskedBehaviorModeling.from_pretrained(output)
    assert set(model.state_dict()) >= set(keys)
    logged = json.loads((output / "logs" / "config.json").read_text())
    assert logged["torch_compile"] is True and logged["torch_compile_backend"] == "aot_eager"
