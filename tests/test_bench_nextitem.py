"""scripts/bench_nextitem.py end to end on two tiny datasets in one command (a shared set's name and a CSV with
its own column names): prepare, train both models through the public training entry point with the auto
recipe, rank them and the baselines with the same evaluator, write the JSON lines, one table and a plot per
dataset; then re-score the saved folders with another next-item query."""

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


def write_renamed_csv(folder: Path, num_users: int = 60, num_items: int = 30) -> Path:
    """A CSV log whose columns are not seqbert's names (uid, sku, action, ts)."""
    rng = random.Random(1)
    rows = ["uid,sku,action,ts"]
    for user in range(num_users):
        item = rng.randrange(num_items)
        for step in range(rng.randint(5, 8)):
            item = (item + rng.choice((1, 2))) % num_items
            rows.append(f"u{user},i{item},view,{1_600_000_000 + 60 * step}")
    path = folder / "Shop.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def bench(work: Path, datasets: list[str], shared: Path, *options: str) -> tuple[list[dict], str]:
    command = [
        sys.executable, str(SCRIPT), *datasets, "--shared-data", str(shared), "--work-dir", str(work),
        "--column", "user_id=uid", "--column", "item_id=sku", "--column", "event_type=action", "--column", "timestamp=ts",
        "--seeds", "0", "--max-epochs", "2", "--time-budget-minutes", "2", "--batch-size", "32", "--max-length", "12",
        "--bootstrap", "30", "--sampled-negatives", "5", "--threads-per-run", "1", "--parallel", "2", *options,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    names = [Path(dataset).stem.lower() for dataset in datasets]
    records = [json.loads(line) for name in names for line in (work / name / "results.jsonl").read_text().splitlines()]
    return records, result.stdout


def test_bench_nextitem_trains_ranks_and_rescores_with_another_query(tmp_path):
    shared = tmp_path / "shared"
    (shared / "s3rec_lastfm_yelp").mkdir(parents=True)
    tiny = write_s3rec_log(tmp_path)  # stands in for the shared LastFM file
    for name in ("LastFM.txt", "LastFM_item2attributes.json"):
        (shared / "s3rec_lastfm_yelp" / name).write_bytes((tmp_path / name.replace("LastFM", "Tiny")).read_bytes())
    assert tiny.exists()
    csv = write_renamed_csv(tmp_path)
    work = tmp_path / "work"
    records, table = bench(work, ["lastfm", str(csv)], shared, "--models", "seqbert", "seqbert-causal")

    runs = {(record["dataset"], record["model"]): record for record in records if not record.get("aggregate")}
    assert set(runs) == {(d, m) for d in ("lastfm", "shop") for m in ("popularity", "markov", "seqbert", "seqbert-causal")}
    for record in runs.values():
        assert record["protocol"].startswith("leave-one-out; full ranking")
        assert record["eval_users"] == (90 if record["dataset"] == "lastfm" else 60)
        for key in METRICS:
            assert 0.0 <= record["test"][key] <= 1.0, (record["model"], key)
            assert 0.0 <= record["test_history_removed"][key] <= 1.0
        low, high = record["test_ci95"]["ndcg@10"]
        assert low <= record["test"]["ndcg@10"] <= high
        assert "test_sampled_5_popularity_negatives" in record
    seqbert = runs["lastfm", "seqbert"]
    assert seqbert["recipe"].startswith("--config ") and seqbert["recipe"].endswith("recipes/nextitem_auto.yaml")
    assert seqbert["recipe_options"]["item_categories"] is True  # the attributes file gives a category per item
    assert "item_categories" not in runs["shop", "seqbert"]["recipe_options"]  # the CSV has none
    assert seqbert["next_item_query"] == "causal" and 1 <= seqbert["epochs"] <= 2
    assert seqbert["stopped_because"].startswith("schedule complete (--num_epochs 2)")
    for dataset in ("lastfm", "shop"):
        assert {r["model"] for r in records if r.get("aggregate") and r["dataset"] == dataset} == {"seqbert", "seqbert-causal"}
        assert (work / dataset / "validation_ndcg_vs_steps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((work / "lastfm" / "models" / "seqbert-seed0" / "results.json").read_text())
    assert saved["config_file"]["path"].endswith("recipes/nextitem_auto.yaml") and saved["recipe"]["name"] == "auto"
    for model in ("seqbert", "seqbert-causal"):  # the recipe's repeat-aware term is in the saved architecture
        config = json.loads((work / "lastfm" / "models" / f"{model}-seed0" / "config.json").read_text())
        assert config["repeat_bias_buckets"] == 8 and config["attention_type"] == model.removeprefix("seqbert-").replace("seqbert", "bidirectional")

    # One summary line per (dataset, model, seed), the keys of benchmarks/nextitem_datasets.jsonl; one table.
    lines = [json.loads(line) for line in (work / "summary.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and set(lines[0]) == {"dataset", "model", "seed", "test_ndcg@10", "test_hr@10", "train_seconds"}
    assert {line["model"] for line in lines} == {"seqbert", "seqbert_causal", "markov", "popularity"}
    assert "| dataset | popularity | markov | seqbert | seqbert_causal |" in table
    assert "| lastfm |" in table and "| shop |" in table

    # Re-scoring the saved folder: with its own query (causal) the recomputed validation is the training loop's
    # exactly (same rows, ranking and users); with the [MASK] query the test metrics change.
    rescored = {}
    for query in ("causal", "mask"):
        lines, _ = bench(work, ["lastfm"], shared, "--models", "seqbert", "--skip-training", "--next-item-query", query)
        rescored[query] = next(r for r in lines if r["model"] == "seqbert" and r["dataset"] == "lastfm" and not r.get("aggregate"))
        assert rescored[query]["next_item_query"] == query
        assert rescored[query]["validation_ndcg@10_training_query"] == seqbert["validation_ndcg@10"]
    assert abs(rescored["causal"]["validation_ndcg@10"] - seqbert["validation_ndcg@10"]) < 1e-9
    assert rescored["causal"]["test"] == seqbert["test"]
    assert rescored["mask"]["test"] != seqbert["test"]

    # RecBole baselines: their runner (scripts/recbole_nextitem_runner.py, RecBole venv only) writes ranks; the bench
    # writes its data, config and spec, then scores those ranks with the same metric code as every other model.
    sys.path.insert(0, str(SCRIPT.parent))
    import bench_nextitem

    args = bench_nextitem.parse_args(["lastfm", "--shared-data", str(shared), "--work-dir", str(work), "--max-length", "12"])
    folder = work / "lastfm" / "models" / "recbole-sasrec-seed0"
    command = bench_nextitem.recbole_command(args, work / "lastfm" / "prepared", "recbole-sasrec", 0, folder, 1)
    spec = json.loads((folder / "spec.json").read_text())
    assert command[-1] == str(folder / "spec.json") and spec["model"] == "SASRec" and spec["work_dir"] == str(folder)
    from seqbert.prepared import PreparedData

    catalog = PreparedData.load(work / "lastfm" / "prepared").tokenizer.items
    assert spec["catalog"] == catalog and len(catalog) == seqbert["catalog_items"]
    config = (folder / "recbole.yaml").read_text()
    assert "hidden_size: 128" in config and "MAX_ITEM_LIST_LENGTH: 12" in config and "seed: 0" in config
    inter = (work / "lastfm" / "recbole_data" / "seqbert" / "seqbert.inter").read_text().splitlines()
    assert inter[0] == "user_id:token\titem_id:token\ttimestamp:float" and len({line.split("\t")[0] for line in inter[1:]}) == 90
    miss = len(catalog) + 1
    result = {
        "model": "SASRec", "epochs": 3, "best_epoch": 2, "validation_ndcg@10": 0.3, "stopped_because": "max_epochs",
        "train_seconds": 1.0, "wall_seconds": 2.0, "num_parameters": 10, "train_examples": 400, "catalog_items": len(catalog),
        "test_ranks": [1] * 45 + [miss] * 45, "test_ranks_history_removed": [miss] * 90,
        "curve": [{"epoch": e, "step": 10 * e, "val_ndcg@10": 0.1 * e} for e in (1, 2, 3)],
    }  # fmt: skip
    (folder / "recbole_result.json").write_text(json.dumps(result))
    finished_before = (work / "lastfm" / "models" / "seqbert-seed0" / "results.json").stat().st_mtime
    lines, table = bench(work, ["lastfm"], shared, "--models", "seqbert", "recbole-sasrec", "--reuse-finished")
    assert (work / "lastfm" / "models" / "seqbert-seed0" / "results.json").stat().st_mtime == finished_before  # not retrained
    recbole = next(r for r in lines if r["model"] == "recbole-sasrec" and not r.get("aggregate"))
    assert recbole["test"]["ndcg@10"] == 0.5 and recbole["test"]["hr@10"] == 0.5 and recbole["test_history_removed"]["hr@20"] == 0.0
    assert recbole["best_epoch"] == 2 and recbole["system"] == "RecBole 1.2.1" and recbole["eval_seconds_full_catalog"] is None
    assert "recbole_sasrec" in table and bench_nextitem.validation_curve(folder) == [(10, 0.1), (20, 0.2), (30, 0.30000000000000004)]
    result["test_ranks"] = result["test_ranks"][:-1]  # another user set: refused, not silently compared
    (folder / "recbole_result.json").write_text(json.dumps(result))
    failed = subprocess.run([sys.executable, str(SCRIPT), "lastfm", "--shared-data", str(shared), "--work-dir", str(work),
                             "--models", "recbole-sasrec", "--skip-training", "--seeds", "0", "--max-length", "12"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)  # fmt: skip
    assert failed.returncode != 0 and "RecBole ranked 89 users" in failed.stderr
