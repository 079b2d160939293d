"""scripts/bench_nextitem.py end to end on a tiny log in the S3-Rec format: prepare, train both models
through the public training entry point, rank them and the baselines with the same evaluator, print
one JSON line per run, plot; then re-score the saved folders with another next-item query."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bench_nextitem.py"
METRICS = ("ndcg@5", "ndcg@10", "ndcg@20", "hr@5", "hr@10", "hr@20", "mrr@10")


def write_s3rec_log(folder: Path, num_users: int = 90, num_items: int = 40) -> Path:
    """``Beauty.txt``-style lines (user, then items in order) with a brand per item, seeded."""
    rng = random.Random(0)
    lines = []
    for user in range(1, num_users + 1):
        start = rng.randrange(1, num_items + 1)  # a drifting walk, so order carries signal
        items = [(start + step * rng.choice((1, 1, 2)) - 1) % num_items + 1 for step in range(rng.randint(5, 9))]
        lines.append(" ".join(map(str, [user, *items])))
    log = folder / "Tiny.txt"
    log.write_text("\n".join(lines) + "\n")
    attributes = {str(item): [1000 + item % 5] for item in range(1, num_items + 1)}
    (folder / "Tiny_item2attributes.json").write_text(json.dumps(attributes))
    return log


def bench(log: Path, work: Path, *options: str) -> list[dict]:
    command = [
        sys.executable, str(SCRIPT), str(log), "--dataset-format", "amazon_s3rec", "--work-dir", str(work),
        "--seeds", "0", "--max-epochs", "2", "--time-budget-minutes", "2", "--batch-size", "32", "--max-length", "12",
        "--bootstrap", "30", "--sampled-negatives", "5", "--threads-per-run", "1", *options,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_bench_nextitem_trains_ranks_and_rescores_with_another_query(tmp_path):
    log = write_s3rec_log(tmp_path)
    work = tmp_path / "work"
    extra = "--extra-train-args=--item_categories"  # for both models (the attributes file gives a brand per item)
    records = bench(log, work, "--models", "seqbert", "seqbert-causal", extra)

    runs = {record["model"]: record for record in records if not record.get("aggregate")}
    assert set(runs) == {"popularity", "markov", "seqbert", "seqbert-causal"}
    for record in runs.values():
        assert record["protocol"].startswith("leave-one-out; full ranking")
        assert record["eval_users"] == 90
        for key in METRICS:
            assert 0.0 <= record["test"][key] <= 1.0, (record["model"], key)
            assert 0.0 <= record["test_history_removed"][key] <= 1.0
        low, high = record["test_ci95"]["ndcg@10"]
        assert low <= record["test"]["ndcg@10"] <= high
        assert "test_sampled_5_popularity_negatives" in record
    seqbert = runs["seqbert"]
    assert seqbert["recipe"].endswith(
        "--next_item_loss_weight 4.0 --next_item_query causal --repeat_bias_buckets 8 --item_categories"
    )
    assert seqbert["next_item_query"] == "causal" and 1 <= seqbert["epochs"] <= 2 and seqbert["max_epochs"] == 2
    assert {record["model"] for record in records if record.get("aggregate")} == {"seqbert", "seqbert-causal"}
    assert (work / "validation_ndcg_vs_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for model in ("seqbert", "seqbert-causal"):  # the recipe's repeat-aware term is in the saved architecture
        assert json.loads((work / "models" / f"{model}-seed0" / "config.json").read_text())["repeat_bias_buckets"] == 8

    # Re-scoring the saved folder: with its own query (causal) the recomputed validation is the training loop's
    # exactly (same rows, ranking and users); with the [MASK] query the test metrics change.
    rescored = {}
    for query in ("causal", "mask"):
        lines = bench(log, work, "--models", "seqbert", "--skip-training", "--next-item-query", query, extra)
        (rescored[query],) = [record for record in lines if record["model"] == "seqbert" and not record.get("aggregate")]
        assert rescored[query]["next_item_query"] == query
        assert rescored[query]["validation_ndcg@10_training_query"] == seqbert["validation_ndcg@10"]
    assert abs(rescored["causal"]["validation_ndcg@10"] - seqbert["validation_ndcg@10"]) < 1e-9
    assert rescored["causal"]["test"] == seqbert["test"]
    assert rescored["mask"]["test"] != seqbert["test"]
