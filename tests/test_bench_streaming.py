"""scripts/bench_streaming.py: one epoch streamed from parquet shards vs. in memory, through the real launcher."""

from __future__ import annotations

import json

import pytest

from .script_modules import load_script

pytestmark = pytest.mark.slow


def test_compares_streamed_and_in_memory_training(tmp_path):
    bench = load_script("bench_streaming")
    output = tmp_path / "streaming.jsonl"
    result = bench.main(["--users", "120", "--items", "60", "--shards", "2", "--batch-size", "32", "--work-dir",
                         str(tmp_path / "work"), "--output", str(output), "--", "--hidden_size", "16",
                         "--num_hidden_layers", "1", "--num_attention_heads", "1", "--intermediate_size", "32",
                         "--max_length", "12"])  # fmt: skip
    memory, streamed = result["runs"]
    assert (memory["mode"], streamed["mode"]) == ("memory", "streaming")
    assert memory["train_shards"] == streamed["train_shards"] == 2
    assert memory["train_sequences"] == streamed["train_sequences"] and memory["global_step"] == streamed["global_step"]
    assert result["comparison"]["same_test_ndcg@10"]  # the same batches and masks: the same model
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line.get("mode") for line in lines] == ["memory", "streaming", None]
    assert all(line["bench_command"].startswith("python scripts/bench_streaming.py") for line in lines)
    assert lines[0]["peak_rss_mib"] > 0 and lines[2]["sequences_per_second_ratio"] > 0
