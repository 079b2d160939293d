"""scripts/bench_multiprocess.py: 1 vs 2 CPU processes at the same effective batch, through the real launchers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seqbert.data.synthetic import SyntheticConfig, generate_events, write_events
from seqbert.prepare import PrepareOptions, prepare_file

from .script_modules import load_script

pytestmark = pytest.mark.slow


def load_bench():
    return load_script("bench_multiprocess")


def test_compares_one_and_two_processes_at_the_same_effective_batch(tmp_path):
    events = write_events(generate_events(SyntheticConfig(num_users=80, num_items=40, seed=5)), tmp_path / "events.parquet")
    prepare_file(events, PrepareOptions(split="leave_one_out", max_length=12), output_dir=tmp_path / "prepared")
    bench = load_bench()
    result = bench.main([str(tmp_path / "prepared"), "--work-dir", str(tmp_path / "runs"), "--seeds", "0", "--epochs", "1",
                         "--batch-size", "16", "--markdown", str(tmp_path / "table.md"), "--master-port", "29547", "--",
                         "--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "1",
                         "--intermediate_size", "32", "--max_length", "12"])  # fmt: skip
    one, two = result["runs"]
    assert (one["processes"], one["per_device_batch_size"]) == (1, 16)
    assert (two["processes"], two["per_device_batch_size"]) == (2, 8)
    for run in (one, two):  # the process count was asserted inside each run and again from its results.json
        summary = json.loads((tmp_path / "runs" / f"p{run['processes']}_seed0" / "results.json").read_text())
        assert summary["num_processes"] == run["processes"]
        assert 0.0 <= run["test"]["ndcg@10"] <= 1.0
    assert one["global_step"] == two["global_step"]  # same effective batch, hence the same optimizer steps
    assert set(result["difference_vs_first"]) == {"validation_ndcg@10", "validation_hr@10", "test_ndcg@10", "test_hr@10"}
    assert "2 × 8" in (tmp_path / "table.md").read_text()


def test_rejects_a_batch_that_does_not_split_evenly(tmp_path):
    bench = load_bench()
    args = bench.parse_args([str(tmp_path), "--batch-size", "15"])
    with pytest.raises(SystemExit, match="not divisible"):
        bench.run_one(args, 2, 0)
