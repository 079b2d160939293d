"""scripts/bench_shards.py end to end on a tiny log: the folder of shards and the single file keep the
same events, every run records events/s and peak RSS, and the window run reads only part of the bytes."""

from __future__ import annotations

import json
import subprocess
import sys

from .script_modules import SCRIPTS


def test_tiny_run_records_folder_single_file_and_window(tmp_path):
    out = tmp_path / "shards_prepare.jsonl"
    command = [
        sys.executable, str(SCRIPTS / "bench_shards.py"), "--events", "6000", "--shards", "8", "--days", "8",
        "--window-fraction", "0.25", "--work-dir", str(tmp_path), "--output", str(out), "--generate-workers", "1",
        "--row-group-size", "200",
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["events"] == 6000 and record["shards"] == 8 and record["folder_equals_single"]
    runs = {run["name"]: run for run in record["runs"]}
    assert set(runs) == {"folder", "single_file", "window", "window_footer_hash"}
    for run in runs.values():
        assert run["wall_s"] > 0 and run["events_per_s"] > 0 and run["peak_rss_bytes"] > 0
        assert run["argv"][:2] == ["seqbert", "prepare"] and "--partitions" in run["argv"]
    assert runs["folder"]["files_read"] == 8 and runs["single_file"]["files_read"] == 1
    window = runs["window"]
    # 2 of 8 days plus a day of slack each side: 4 files read, 4 never opened.
    assert window["files_read"] == 4 and window["time_window"]["files_skipped"] == 4
    assert window["counted_bytes_read"] > 0 and window["window_days"] == 2
    assert window["kept_rows"] < runs["folder"]["kept_rows"]
    footer = runs["window_footer_hash"]  # the same window; only the parquet footers hashed
    assert footer["kept_rows"] == window["kept_rows"] and footer["files_read"] == 4
    assert 0 < footer["counted_bytes_read"] < window["counted_bytes_read"]
    assert "fsspec counting://" in record["bytes_read_method"]
    assert "| window |" in completed.stdout


def test_help_is_complete():
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_shards.py"), "--help"], capture_output=True, text=True, check=True
    )
    text = " ".join(completed.stdout.split())
    for option in ("--events", "--shards", "--days", "--window-fraction", "--partitions", "--partition-events",
                   "--row-group-size", "--work-dir", "--output", "--timeout"):  # fmt: skip
        assert option in text
    assert "default: 50000000" in text and "benchmarks/shards_prepare.jsonl" in text
