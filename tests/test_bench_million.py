"""scripts/bench_million.py at a tiny scale: every stage runs, reports its peak RSS, and labels the user sample."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_million.py"
pytestmark = pytest.mark.slow


def test_bench_million_runs_every_stage_at_tiny_scale(tmp_path):
    command = [
        sys.executable, str(SCRIPT), "--users", "300", "--items", "150", "--categories", "5", "--hidden-size", "8",
        "--heads", "2", "--layers", "1", "--batch-size", "32", "--num-negatives", "16", "--max-steps", "2",
        "--max-eval-users", "40", "--max-test-users", "30", "--eval-item-chunk-size", "50", "--max-length", "20",
        "--work-dir", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]  # stdout holds the JSON lines only
    assert [line["stage"] for line in lines] == ["generate", "prepare", "pretrain"]
    for line in lines:
        assert line["returncode"] == 0 and line["killed_by_signal"] is None and line["peak_rss_mib"] > 0
    generated, prepared, pretrained = lines
    assert generated["users"] == 300 and 0 < generated["items"] <= 150
    assert 0 < prepared["vocabulary_items"] == pretrained["catalog_items"] <= 150
    assert pretrained["global_step"] == 2 and pretrained["train_sequences_per_second"] > 0
    assert pretrained["train_tokens_per_second"] > pretrained["train_sequences_per_second"]
    assert pretrained["validation_users"] == 40 and pretrained["test_users"] == 30
    assert [v["users"] for v in pretrained["validations"]] == [40]  # one validation, at the end of training
    assert pretrained["validation_user_sampling"].startswith("uniform without replacement, 40 of ")
    assert pretrained["metrics"]["test"]["seqbert"].keys() == {"ndcg@10", "hr@10"}


def test_help_documents_every_option():
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True)
    for option in ("--users", "--items", "--max-eval-users", "--num-negatives", "--stages", "--threads", "--generate-only"):
        assert option in result.stdout
