"""scripts/bench_prepare.py end to end on a tiny log: every implementation in its own process, the
same users and events kept by each, stage figures and CPU seconds recorded per run."""

from __future__ import annotations

import json
import subprocess
import sys

from .script_modules import SCRIPTS


def test_tiny_run_records_every_implementation(tmp_path):
    out = tmp_path / "bench.json"
    command = [
        sys.executable, str(SCRIPTS / "bench_prepare.py"), "--events", "4000", "--implementations", "seqbert,pandas",
        "--work-dir", str(tmp_path), "--json", str(out), "--generate-workers", "1", "--repeats", "2",
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.read_text())
    runs = {run["implementation"]: run for run in report["runs"]}
    assert set(runs) == {"seqbert", "pandas"}
    checks = {name: run["best"]["check"] for name, run in runs.items()}
    # Both implementations keep the same users and events of the same log.
    for key in ("users", "train_rows", "validation_rows", "vocabulary", "encoded_rows"):
        assert checks["seqbert"][key] == checks["pandas"][key], key
    for run in runs.values():
        best = run["best"]
        assert best["total"]["wall_s"] > 0 and best["total"]["peak_rss_bytes"] > 0
        assert {"read", "clean", "split", "tokenize"} <= set(best["stages"])
        assert best["total"]["cpu_s"] > 0
        # The table shows the fastest of the repeats; the spread of all of them is recorded beside it.
        walls = sorted(r["total"]["wall_s"] for r in run["all"])
        assert len(walls) == 2 and best["total"]["wall_s"] == walls[0]
        spread = run["spread"]
        assert (spread["runs"], spread["min_s"], spread["max_s"]) == (2, walls[0], walls[1])
        assert spread["median_s"] == (walls[0] + walls[1]) / 2
        assert spread["median_events_per_s"] == 4000 / spread["median_s"]
    assert "| **total (excl. import)** |" in completed.stdout
    assert "seqbert: 2 run(s), total wall min / median / max" in completed.stdout
    assert "CPU s" in completed.stderr
