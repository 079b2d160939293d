#!/usr/bin/env python
"""Benchmark data preparation end to end: seqbert vs a straightforward pandas implementation.

What is measured, for each implementation, in a fresh Python process (so peak memory is per
implementation):

* ``seqbert``: :func:`seqbert.prepare.prepare_file` (read → clean → sequences → split → vocabulary and
  statistics, one stage since they run side by side in two threads; the input's content hash (xxh3_128)
  runs in a thread from the read until the statistics, so its CPU time lands in whichever stages it
  overlaps) then :func:`seqbert.prepared.encode_for_pretraining` on the train split (``tokenize``).
  Stages are timed by wrapping the functions ``prepare_file`` calls.
* ``partitioned``: :func:`seqbert.data.partitioned.prepare_partitioned` (larger-than-memory path:
  stream + partition by user → per-partition clean/sequences/split → k-way merge → save) then
  ``encode_for_pretraining`` of the train split to a cache file.
* ``pandas``: ``read_csv`` / ``read_parquet``, ``dropna`` + ``drop_duplicates`` + short-user filter,
  stable sort by (user, time), ``groupby(user).agg(list)`` (+ session index), leave-one-out split
  with per-user list slicing, ``Counter`` vocabulary, dict-based token mapping per event.

For every stage: wall seconds, CPU seconds (all threads), events/s (input events / wall) and the
peak resident memory seen during the stage (sampled every 10 ms); for the whole run: wall, CPU,
events/s, peak RSS (``getrusage`` ru_maxrss, exact) and peak anonymous RSS (sampled ``RssAnon``:
memory that is not a reclaimable file mapping). With ``--repeats N`` the table shows each
implementation's fastest run and a line under it the min / median / max total over the N runs: on a
host whose speed drifts, the median is the figure a typical run reaches. The input is a synthetic log from
:func:`seqbert.data.synthetic.generate_events` (cached in ``--work-dir``).

Examples::

    python scripts/bench_prepare.py                                  # 10M events, csv, all three
    python scripts/bench_prepare.py --events 1000000 --repeats 3     # quick
    python scripts/bench_prepare.py --events 5000000 10000000 20000000 --implementations partitioned \\
        --partition-events 1250000                                   # RSS stays flat as N grows
    python scripts/bench_prepare.py --events 2000000 --profile seqbert   # cProfile hotspots
    python scripts/bench_prepare.py --shuffle --implementations seqbert  # rows in random order
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

IMPLEMENTATIONS = ("seqbert", "partitioned", "pandas")
SYNTHETIC_COLUMNS = {
    "taobao": ["user_id", "item_id", "category", "event_type", "timestamp"],
    "all": ["user_id", "item_id", "event_type", "timestamp", "category", "price", "session_id"],
}
USERS_PER_CHUNK = 20_000  # ~1.05M events per generated chunk


# ============================================================================================ helpers
def _proc_status() -> dict[str, int]:
    """VmRSS / RssAnon of this process in bytes (Linux); psutil elsewhere."""
    try:
        out = {}
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(("VmRSS:", "RssAnon:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0]) * 1024
        return out
    except OSError:
        import psutil

        rss = psutil.Process().memory_info().rss
        return {"VmRSS": rss, "RssAnon": rss}


def _max_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class StageClock:
    """Wall / CPU time and sampled peak memory per named stage, in one process."""

    def __init__(self, interval: float = 0.01):
        self.stages: dict[str, dict[str, float]] = {}
        self.current: str | None = None
        self.interval = interval
        self.peak_rss = 0
        self.peak_anon = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.observe()

    def observe(self) -> None:
        status = _proc_status()
        rss, anon = status.get("VmRSS", 0), status.get("RssAnon", 0)
        self.peak_rss, self.peak_anon = max(self.peak_rss, rss), max(self.peak_anon, anon)
        if self.current is not None:
            entry = self.stages[self.current]
            entry["peak_rss_bytes"] = max(entry["peak_rss_bytes"], rss)
            entry["peak_anon_bytes"] = max(entry["peak_anon_bytes"], anon)

    def _entry(self, name: str) -> dict[str, float]:
        return self.stages.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0, "peak_rss_bytes": 0, "peak_anon_bytes": 0})

    @contextmanager
    def stage(self, name: str):
        if self.current is not None:  # nested call: count it in the outer stage
            yield
            return
        self._entry(name)
        self.current = name
        self.observe()
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            entry = self.stages[name]
            entry["wall_s"] += time.perf_counter() - wall
            entry["cpu_s"] += time.process_time() - cpu
            self.observe()
            self.current = None
            log(
                f"  {name:<12s} done: {entry['wall_s']:7.2f}s wall, peak RSS {entry['peak_rss_bytes'] / 2**30:5.2f} GiB"
            )

    def switch(self, name: str) -> None:
        """Close the current stage (if any) and open ``name`` (for stages marked by progress messages)."""
        now, cpu = time.perf_counter(), time.process_time()
        if self.current is not None:
            entry = self.stages[self.current]
            entry["wall_s"] += now - self._switch_wall
            entry["cpu_s"] += cpu - self._switch_cpu
            self.observe()
        self.current = name
        if name is not None:
            self._entry(name)
            self._switch_wall, self._switch_cpu = now, cpu
            self.observe()

    def result(self, events: int) -> dict[str, Any]:
        self._stop.set()
        self.observe()
        wall = time.perf_counter() - self.started
        cpu = time.process_time() - self.cpu_started
        stages = {}
        for name, entry in self.stages.items():
            stages[name] = dict(entry, events_per_s=events / entry["wall_s"] if entry["wall_s"] else None)
        accounted = sum(entry["wall_s"] for entry in self.stages.values())
        if wall - accounted > 0.05:
            stages["other"] = {"wall_s": wall - accounted, "cpu_s": None, "events_per_s": None}
        imports = self.stages.get("import", {"wall_s": 0.0, "cpu_s": 0.0})
        return {
            "events": events,
            "total": {
                # The figures that matter exclude the one-off interpreter/library import.
                "wall_s": wall - imports["wall_s"],
                "cpu_s": cpu - imports["cpu_s"],
                "events_per_s": events / (wall - imports["wall_s"]),
                "wall_with_import_s": wall,
                "peak_rss_bytes": max(_max_rss_bytes(), self.peak_rss),
                "peak_anon_bytes": self.peak_anon,
            },
            "stages": stages,
        }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = (
            int(
                next(
                    line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
                ).split()[1]
            )
            * 1024
        )
    except (OSError, StopIteration):
        mem = None
    return {
        "nproc": os.cpu_count(),
        "ram_gib": round(mem / 2**30, 1) if mem else None,
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def versions() -> dict[str, str]:
    out = {}
    for name in ("numpy", "pyarrow", "pandas", "datasets", "transformers"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001
            out[name] = "missing"
    return out


# ========================================================================================= synthetic
def _generate_chunk(args: tuple[int, int, int, int, list[str]]) -> bytes:
    """One chunk of the synthetic log as Arrow IPC bytes (picklable across processes)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from seqbert.data.synthetic import SyntheticConfig, generate_events

    chunk, users, items, seed, columns = args
    table = generate_events(SyntheticConfig(num_users=users, num_items=items, seed=seed + chunk))
    # Distinct users (and sessions) per chunk: prefix the chunk number.
    for name, letter in (("user_id", "u"), ("session_id", "s")):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pc.utf8_replace_slice(table.column(name), 0, 1, f"{letter}{chunk:04d}"))
    table = table.select(columns)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def generate_log(
    events: int,
    fmt: str,
    folder: Path,
    *,
    num_items: int,
    seed: int,
    columns: str,
    workers: int,
    regenerate: bool,
    shuffle: bool = False,
) -> Path:
    """A synthetic log of exactly ``events`` events in ``folder`` (cached by its parameters).

    The generator writes each user's events together, in time order (like Taobao UserBehavior);
    ``shuffle`` writes the same rows in a random order (seeded), the layout that needs a real sort.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    if shuffle:
        import numpy as np

        ordered = generate_log(
            events, fmt, folder, num_items=num_items, seed=seed, columns=columns, workers=workers,
            regenerate=regenerate,
        )  # fmt: skip
        path = ordered.with_name(ordered.stem + "-shuffled" + ordered.suffix)
        if path.exists() and not regenerate:
            log(f"using cached log {path} ({path.stat().st_size / 2**20:,.0f} MiB)")
            return path
        table = pq.read_table(ordered) if fmt == "parquet" else pacsv.read_csv(ordered)
        table = table.take(pa.array(np.random.default_rng(seed).permutation(table.num_rows)))
        tmp = path.with_suffix(path.suffix + ".part")
        if fmt == "parquet":
            pq.write_table(table, tmp)
        else:
            pacsv.write_csv(table, tmp, write_options=pacsv.WriteOptions(quoting_style="needed"))
        tmp.rename(path)
        log(f"wrote {path} ({path.stat().st_size / 2**20:,.0f} MiB), the rows of {ordered.name} shuffled")
        return path
    path = folder / f"synthetic-{events}-items{num_items}-seed{seed}-{columns}.{fmt}"
    if path.exists() and not regenerate:
        log(f"using cached log {path} ({path.stat().st_size / 2**20:,.0f} MiB)")
        return path
    chunks = -(-events // 1_000_000) + 2  # a chunk has ~1.05M events
    tasks = [(k, USERS_PER_CHUNK, num_items, seed, SYNTHETIC_COLUMNS[columns]) for k in range(chunks)]
    tmp = path.with_suffix(path.suffix + ".part")
    started = time.perf_counter()
    written = 0
    writer = None
    from multiprocessing import get_context

    with get_context("spawn").Pool(max(1, workers)) as pool:
        for payload in pool.imap(_generate_chunk, tasks):
            table = pa.ipc.open_stream(payload).read_all().slice(0, events - written)
            if writer is None:
                if fmt == "parquet":
                    writer = pq.ParquetWriter(tmp, table.schema)
                else:
                    writer = pacsv.CSVWriter(
                        tmp, table.schema, write_options=pacsv.WriteOptions(quoting_style="needed")
                    )
            writer.write_table(table)
            written += table.num_rows
            elapsed = time.perf_counter() - started
            log(f"generating: {written:,}/{events:,} events ({written / elapsed / 1e6:.2f} M events/s)")
            if written >= events:
                pool.terminate()
                break
    while written < events:  # unlucky chunk sizes: one more at a time
        payload = _generate_chunk((len(tasks), USERS_PER_CHUNK, num_items, seed, SYNTHETIC_COLUMNS[columns]))
        table = pa.ipc.open_stream(payload).read_all().slice(0, events - written)
        writer.write_table(table)
        written += table.num_rows
        tasks.append(None)
    writer.close()
    tmp.rename(path)
    log(f"wrote {path} ({path.stat().st_size / 2**20:,.0f} MiB) in {time.perf_counter() - started:.1f}s")
    return path


# =========================================================================================== workers
def worker_seqbert(path: Path, args: argparse.Namespace, clock: StageClock) -> dict[str, Any]:
    with clock.stage("import"):
        from seqbert import prepare
        from seqbert.prepared import encode_for_pretraining

    def wrap(owner: Any, name: str, stage: str) -> None:
        function = getattr(owner, name, None)
        if function is None:
            return

        def timed(*a: Any, **k: Any) -> Any:
            with clock.stage(stage):
                return function(*a, **k)

        setattr(
            owner, name, timed if not isinstance(owner, type) else classmethod(lambda cls, *a, **k: timed(*a, **k))
        )

    for name, stage in (
        ("read_events", "read"),  # prepare_file hashes the file (xxh3_128) in a thread until the statistics
        ("clean_events", "clean"),
        ("build_sequences", "sequences"),
        ("collapse_repeated_views", "sequences"),
        ("drop_short_sequences", "sequences"),
        ("leave_one_out", "split"),
        ("temporal_split", "split"),
        # The vocabulary's item counts run in a thread alongside the statistics: one stage for both.
        ("vocabulary_and_statistics", "vocabulary"),
    ):
        wrap(prepare, name, stage)
    prepared = prepare.prepare_file(path, prepare.PrepareOptions(max_length=args.max_length))
    events = prepared.drop_report["input_rows"]
    with clock.stage("tokenize"):
        encoded = encode_for_pretraining(prepared.splits["train"], prepared.tokenizer, args.max_length)
    if args.save:
        with clock.stage("save"):
            prepared.save(Path(args.scratch) / "prepared")
    return {"events": events, "check": _check(prepared, encoded)}


def worker_partitioned(path: Path, args: argparse.Namespace, clock: StageClock) -> dict[str, Any]:
    with clock.stage("import"):
        from seqbert.data.partitioned import prepare_partitioned
        from seqbert.prepare import PrepareOptions
        from seqbert.prepared import encode_for_pretraining

    partitions = args.partitions
    if args.partition_events:
        partitions = max(1, -(-args.events_now // args.partition_events))

    def progress(message: str) -> None:
        log(f"  partitioned: {message}")
        text = message.split("]", 1)[-1].strip()
        if text.startswith("partitioned"):
            clock.switch("support" if args.min_item_support > 1 else "partitions")
        elif text.startswith("global item support"):
            clock.switch("partitions")
        elif text.startswith("partitions merged"):
            clock.switch("finish+save")
        elif text.startswith("temporal cutoffs") or (
            text.startswith("partition ")
            and "/" in text
            and text.split()[1].split("/")[0] == text.split()[1].split("/")[1]
        ):
            clock.switch("merge")
        elif text.startswith("saved"):
            clock.switch("reload")

    clock.switch("partition")  # read + partition pass
    options = PrepareOptions(max_length=args.max_length, min_item_support=args.min_item_support)
    prepared = prepare_partitioned(path, options, Path(args.scratch) / "prepared", partitions, progress=progress)
    clock.switch(None)
    events = prepared.drop_report["input_rows"]
    with clock.stage("tokenize"):
        encoded = encode_for_pretraining(
            prepared.splits["train"],
            prepared.tokenizer,
            args.max_length,
            cache_file=Path(args.scratch) / "train.arrow",
        )
    return {"events": events, "partitions": partitions, "check": _check(prepared, encoded)}


def _check(prepared: Any, encoded: Any) -> dict[str, Any]:
    return {
        "users": prepared.statistics["all"]["users"],
        "kept_events": prepared.drop_report["kept_rows"],
        "train_rows": prepared.splits["train"].num_rows,
        "validation_rows": prepared.splits["validation"].num_rows,
        "vocabulary": len(prepared.tokenizer.items),
        "encoded_rows": encoded.num_rows,
    }


def worker_pandas(path: Path, args: argparse.Namespace, clock: StageClock) -> dict[str, Any]:
    """The straightforward pandas implementation of the same steps (leave-one-out)."""
    import math
    from collections import Counter

    with clock.stage("import"):
        import pandas as pd
    event_types = ["view", "click", "search", "cart", "fav", "purchase"]
    with clock.stage("read"):
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(
                path, dtype={"user_id": str, "item_id": str, "category": str, "event_type": str, "session_id": str}
            )
    events = len(frame)
    with clock.stage("clean"):
        frame = frame.dropna(subset=["user_id", "item_id", "event_type", "timestamp"])
        frame = frame[frame["event_type"].isin(event_types)]
        frame = frame.drop_duplicates(subset=["user_id", "item_id", "event_type", "timestamp"])
        frame = frame[frame.groupby("user_id")["user_id"].transform("size") >= 2]
    with clock.stage("sequences"):
        frame = frame.sort_values(["user_id", "timestamp"], kind="stable")
        new_user = frame["user_id"].ne(frame["user_id"].shift())
        new_session = new_user | (frame["timestamp"].diff() > 1800)
        frame["session_index"] = new_session.groupby(frame["user_id"]).cumsum() - 1
        list_columns = {
            "item_id": "item_ids",
            "event_type": "event_types",
            "timestamp": "timestamps",
            "session_index": "session_index",
        }
        if "category" in frame.columns:
            list_columns["category"] = "categories"
        sequences = (
            frame.groupby("user_id", sort=True).agg({c: list for c in list_columns}).rename(columns=list_columns)
        )
        del frame
    with clock.stage("split"):
        train, validation, test = [], [], []
        for user, items, types, times in zip(
            sequences.index, sequences["item_ids"], sequences["event_types"], sequences["timestamps"]
        ):
            if len(items) >= 3:
                train.append((user, items[:-2], types[:-2], times[:-2]))
                validation.append((user, items[:-2], types[:-2], times[:-2], items[-2]))
                test.append((user, items[:-1], types[:-1], times[:-1], items[-1]))
            else:
                train.append((user, items, types, times))
    with clock.stage("vocabulary"):
        counts = Counter(item for row in train for item in row[1])
        ranked = sorted(counts, key=lambda item: (-counts[item], item))
        vocab = {item: index + 5 for index, item in enumerate(ranked)}
        behavior = {name: index + 2 for index, name in enumerate(event_types)}
    with clock.stage("tokenize"):
        encoded = {"input_ids": [], "behavior_ids": [], "time_ids": [], "attention_mask": []}
        keep = args.max_length
        for _, items, types, times in train:
            start = max(0, len(items) - keep)
            ids = [vocab.get(item, 4) for item in items[start:]]
            if not ids or max(ids) < 5:
                continue
            time_ids = [
                2 if i == 0 else 3 + min(int(math.log2(1 + max(0, times[i] - times[i - 1]))), 22)
                for i in range(start, len(items))
            ]
            encoded["input_ids"].append(ids)
            encoded["behavior_ids"].append([behavior[t] for t in types[start:]])
            encoded["time_ids"].append(time_ids)
            encoded["attention_mask"].append([1] * len(ids))
        encoded["row_id"] = list(range(len(encoded["input_ids"])))
    return {
        "events": events,
        "check": {
            "users": len(sequences),
            "train_rows": len(train),
            "validation_rows": len(validation),
            "vocabulary": len(vocab),
            "encoded_rows": len(encoded["input_ids"]),
        },
    }


WORKERS = {"seqbert": worker_seqbert, "partitioned": worker_partitioned, "pandas": worker_pandas}


def run_worker(args: argparse.Namespace) -> None:
    """Inside the fresh process: run one implementation, write its result as JSON."""
    clock = StageClock()
    path = Path(args.input)
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
    extra = WORKERS[args.worker](path, args, clock)
    if args.profile:
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime")
        log("\ncProfile, top 25 functions by own time:")
        stats.print_stats(25)
    result = clock.result(extra.pop("events"))
    result.update(extra)
    Path(args.result).write_text(json.dumps(result, indent=2))


def spawn(implementation: str, path: Path, events: int, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Run one implementation in a fresh Python process; its progress goes to our stderr."""
    scratch.mkdir(parents=True, exist_ok=True)
    result_file = scratch / "result.json"
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker", implementation, "--input", str(path),
        "--result", str(result_file), "--scratch", str(scratch), "--max-length", str(args.max_length),
        "--partitions", str(args.partitions), "--partition-events", str(args.partition_events or 0),
        "--events-now", str(events), "--min-item-support", str(args.min_item_support),
    ]  # fmt: skip
    if args.save:
        command.append("--save")
    if args.profile == implementation:
        command.append("--profile-worker")
    load_before = os.getloadavg()
    completed = subprocess.run(
        command, stdout=sys.stderr, stderr=sys.stderr, env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False
    )
    if completed.returncode != 0:
        raise SystemExit(f"{implementation} failed (exit code {completed.returncode}); see the output above.")
    result = json.loads(result_file.read_text())
    result["loadavg_before"] = load_before
    result["loadavg_after"] = os.getloadavg()
    return result


# ============================================================================================ report
def _fmt_rate(value: float | None) -> str:
    return f"{value / 1e6:6.2f}" if value else "     -"


def format_table(events: int, results: dict[str, dict[str, Any]]) -> str:
    """Markdown table: per stage wall s / M events/s / peak RSS GiB for each implementation."""
    names = list(results)
    order: list[str] = ["import"]
    for result in results.values():
        for stage in result["stages"]:
            if stage not in order and stage != "other":
                order.append(stage)
    order.append("other")
    header = "| stage | " + " | ".join(f"{n} s | {n} M ev/s | {n} peak GiB" for n in names) + " |"
    rule = "|---|" + "---:|" * (3 * len(names))
    lines = [header, rule]
    for stage in order:
        cells = []
        for name in names:
            entry = results[name]["stages"].get(stage)
            if entry is None:
                cells += ["", "", ""]
                continue
            peak = entry.get("peak_rss_bytes")
            cells += [
                f"{entry['wall_s']:.2f}",
                _fmt_rate(entry.get("events_per_s")).strip(),
                f"{peak / 2**30:.2f}" if peak else "",
            ]
        if any(cells):
            lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    cells = []
    for name in names:
        total = results[name]["total"]
        cells += [
            f"**{total['wall_s']:.2f}**",
            f"**{total['events_per_s'] / 1e6:.2f}**",
            f"**{total['peak_rss_bytes'] / 2**30:.2f}**",
        ]
    lines.append("| **total (excl. import)** | " + " | ".join(cells) + " |")
    cells = []
    for name in names:
        total = results[name]["total"]
        cells += [f"cpu {total['cpu_s']:.1f}", "", f"anon {total['peak_anon_bytes'] / 2**30:.2f}"]
    lines.append("| cpu s / peak anon GiB | " + " | ".join(cells) + " |")
    return f"N = {events:,} events\n\n" + "\n".join(lines)


def run_spread(events: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Total wall seconds over every run of one implementation: min / median / max, and M events/s at
    each. The table reports the fastest run; the median says what a typical run on this host takes."""
    walls = sorted(run["total"]["wall_s"] for run in runs)
    figures = {"runs": len(walls), "min_s": walls[0], "median_s": statistics.median(walls), "max_s": walls[-1]}
    for key in ("min", "median", "max"):
        figures[f"{key}_events_per_s"] = events / figures[f"{key}_s"]
    return figures


def format_spread(name: str, spread: dict[str, Any]) -> str:
    """One line: how the total varied over the runs of ``name``."""
    rates = "/".join(f"{spread[f'{key}_events_per_s'] / 1e6:.2f}" for key in ("min", "median", "max"))
    return (
        f"{name}: {spread['runs']} run(s), total wall min / median / max {spread['min_s']:.2f} / "
        f"{spread['median_s']:.2f} / {spread['max_s']:.2f} s = {rates} M events/s"
    )


# ============================================================================================== main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark seqbert data preparation (read → clean → sequences → split → tokenize the train "
        "split) against a straightforward pandas implementation, on a synthetic log. Each implementation runs "
        "in a fresh process; prints a markdown table (wall s, million events/s and peak RSS per stage) and "
        "writes every figure to JSON.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--events", type=float, nargs="+", default=[10_000_000],
        help="Number(s) of synthetic events (1e7 style accepted). Several values run every implementation at each size.",
    )  # fmt: skip
    parser.add_argument(
        "--format", choices=["csv", "parquet"], default="csv", help="File format of the generated log."
    )
    parser.add_argument(
        "--columns", choices=sorted(SYNTHETIC_COLUMNS), default="taobao",
        help="Columns of the generated log: 'taobao' = user_id,item_id,category,event_type,timestamp (like Taobao "
        "UserBehavior); 'all' adds price and session_id (sessions then follow the logged ids).",
    )  # fmt: skip
    parser.add_argument(
        "--shuffle", action="store_true",
        help="Write the log's rows in a random order (default: each user's events together, in time order, like "
        "Taobao UserBehavior), so that sorting by user and time is measured too.",
    )  # fmt: skip
    parser.add_argument("--num-items", type=int, default=200_000, help="Catalog size of the synthetic log.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the synthetic log (chunk k uses seed + k).")
    parser.add_argument(
        "--implementations", default=",".join(IMPLEMENTATIONS),
        help=f"Comma-separated implementations to run, in this order; any of {', '.join(IMPLEMENTATIONS)}.",
    )  # fmt: skip
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="Runs per implementation and size; the table shows the fastest (total wall), and a line under it the "
        "min / median / max total over all runs (JSON: 'spread').",
    )
    parser.add_argument(
        "--partitions", type=int, default=8, help="Partitions (K) of the 'partitioned' implementation."
    )
    parser.add_argument(
        "--partition-events", type=int, default=None,
        help="Instead of --partitions: K = ceil(events / this), i.e. a fixed partition size (shows that peak RSS "
        "stays flat as the log grows).",
    )  # fmt: skip
    parser.add_argument(
        "--min-item-support",
        type=int,
        default=1,
        help="PrepareOptions.min_item_support for 'partitioned' (>1 adds the global item-count pass).",
    )
    parser.add_argument(
        "--max-length", type=int, default=200, help="Longest tokenized sequence (PrepareOptions.max_length)."
    )
    parser.add_argument(
        "--save",
        action="store_true",
        help="Also time saving the prepared folder ('seqbert'; 'partitioned' always saves).",
    )
    parser.add_argument(
        "--work-dir", default=str(Path(tempfile.gettempdir()) / "seqbert-bench"),
        help="Folder for the generated logs (kept and reused) and per-run scratch files (deleted).",
    )  # fmt: skip
    parser.add_argument("--regenerate", action="store_true", help="Generate the synthetic log again even if cached.")
    parser.add_argument(
        "--generate-workers", type=int, default=os.cpu_count() or 1, help="Processes generating the synthetic log."
    )
    parser.add_argument("--json", default=None, help="Where to write all results (JSON); default WORK_DIR/bench_prepare.json.")
    parser.add_argument(
        "--profile",
        choices=IMPLEMENTATIONS,
        help="Run this implementation under cProfile and print its top functions.",
    )
    # Internal: the worker process.
    parser.add_argument("--worker", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    parser.add_argument("--events-now", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--profile-worker", action="store_true", dest="profile_worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        args.profile = args.profile_worker
        run_worker(args)
        return
    implementations = [name.strip() for name in args.implementations.split(",") if name.strip()]
    unknown = sorted(set(implementations) - set(IMPLEMENTATIONS))
    if unknown:
        raise SystemExit(f"Unknown implementation(s) {unknown}; use {', '.join(IMPLEMENTATIONS)}.")
    work = Path(args.work_dir)
    report: dict[str, Any] = {
        "command": "python "
        + " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": versions(),
        "runs": [],
    }
    log(f"machine: {report['machine']}; load average {os.getloadavg()}")
    tables = []
    for events in [int(e) for e in args.events]:
        path = generate_log(
            events, args.format, work / "data", num_items=args.num_items, seed=args.seed, columns=args.columns,
            workers=args.generate_workers, regenerate=args.regenerate, shuffle=args.shuffle,
        )  # fmt: skip
        best: dict[str, dict[str, Any]] = {}
        spreads: list[str] = []
        for implementation in implementations:
            runs = []
            for repeat in range(args.repeats):
                log(
                    f"\n=== {implementation}, {events:,} events, run {repeat + 1}/{args.repeats} (load {os.getloadavg()[0]:.2f})"
                )
                scratch = Path(tempfile.mkdtemp(prefix=f"{implementation}-", dir=work))
                try:
                    result = spawn(implementation, path, events, args, scratch)
                finally:
                    subprocess.run(["rm", "-rf", str(scratch)], check=False)
                total = result["total"]
                log(
                    f"=== {implementation}: {total['wall_s']:.2f}s wall ({total['events_per_s'] / 1e6:.2f} M events/s), "
                    f"peak RSS {total['peak_rss_bytes'] / 2**30:.2f} GiB, {total['cpu_s']:.1f} CPU s"
                )
                runs.append(result)
            chosen = min(runs, key=lambda r: r["total"]["wall_s"])
            best[implementation] = chosen
            spread = run_spread(events, runs)
            spreads.append(format_spread(implementation, spread))
            report["runs"].append(
                {"events": events, "format": args.format, "shuffled": args.shuffle, "file_bytes": path.stat().st_size,
                 "implementation": implementation,
                 "best": chosen, "spread": spread, "all": runs}
            )  # fmt: skip
        table = format_table(events, best) + "\n\nFastest run in the table. " + "; ".join(spreads) + "."
        tables.append(table)
        print("\n" + table + "\n", flush=True)
    report["tables"] = tables
    json_path = Path(args.json) if args.json else work / "bench_prepare.json"
    json_path.write_text(json.dumps(report, indent=2))
    log(f"wrote {json_path}")


if __name__ == "__main__":
    main()
