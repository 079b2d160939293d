#!/usr/bin/env python
"""Benchmark ``seqbert prepare`` on a folder of Hive-partitioned parquet shards vs one parquet file,
and what a ``--since/--until`` window saves.

What it does:

1. **Generate** a synthetic log of ``--events`` events (:func:`seqbert.data.synthetic.generate_events`,
   in chunks of up to 20,000 users with seeds ``seed + k`` on ``--generate-workers`` processes), its
   timestamps spread over ``--days`` days from 2023-11-14 00:00 UTC. The same events are written
   twice: as ``--shards`` parquet files Hive-partitioned by day (``shards/dt=YYYY-MM-DD/part-NNNNN.parquet``,
   ``shards / days`` files per day) and as one parquet file (``single.parquet``) holding the shards' rows in
   the folder's reading order (so that only the reading path differs). Both are cached in ``--work-dir`` by
   their parameters.
2. **Prepare** each with ``seqbert prepare INPUT --partitions K`` (the larger-than-memory path, so
   that it fits the machine's memory; ``K = ceil(events / --partition-events)`` unless ``--partitions``
   is given), each in a fresh subprocess: the folder first, then the single file.
3. **Window**: ``seqbert prepare counting://FOLDER --since D1 --until D2`` for ``--window-fraction``
   of the days (in the middle of the span), through a byte-counting fsspec filesystem: once with the
   default content hashes (``window``) and once with ``--input-hash parquet_footer`` (``window_footer_hash``).

For every run: wall seconds of the subprocess (``wall_s``, interpreter start and imports included)
and of ``seqbert.cli.main`` in it (``prepare_wall_s``: the command itself, its lazy imports included),
events/s (the log's events / ``prepare_wall_s``; ``events_per_s_with_startup`` uses ``wall_s``; for
the window run the log's events too, i.e. the rate of answering "the window of this log"), peak
RSS (``VmHWM`` of the child: exact, and unlike ``ru_maxrss`` not inherited from this process across
fork + exec), ``/proc/self/io`` of the child (``rchar``: bytes through read syscalls, page-cache hits
included; ``read_bytes``: bytes fetched from the block device, 0 when the files are cached), and the
drop report / split rows (the folder and the single file must keep the same events).

**Bytes read** (the window's saving) is measured with the counting filesystem: the child registers
an fsspec protocol ``counting://`` (the local filesystem with every ``read`` / ``readinto`` of an
open file counted) and ``seqbert prepare`` reads the folder through it (the same code path as
``s3://``). ``bytes_read_fraction`` = bytes read by the window run / bytes of all the shards.
In the ``window`` run it includes the content hash of every file read (``protocol.json`` records each
shard's hash, which reads the whole file a second time, row groups outside the window included); in
``window_footer_hash`` only each file's parquet footer is hashed, so it counts what the window's read itself
costs. Neither counts the partitions that pruning skipped (never opened).

Results: one JSON line appended to ``--output`` (default ``benchmarks/shards_prepare.jsonl``) with
the machine, versions, commit, command, parameters and every run; a markdown table on stdout.

Examples::

    python scripts/bench_shards.py                                  # 50M events, 64 shards (the full run)
    python scripts/bench_shards.py --events 3000000 --shards 30     # moderate: a few minutes on 2 cores
    python scripts/bench_shards.py --events 20000 --shards 4 --days 4 --output /tmp/x.jsonl   # smoke test
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
USERS_PER_CHUNK = 20_000  # ~1M events per generated chunk
START = 1_699_920_000  # 2023-11-14 00:00:00 UTC
DAY = 86_400
COLUMNS = ["user_id", "item_id", "category", "event_type", "timestamp"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ========================================================================================= the child
def _counting_filesystem() -> Any:
    """Register fsspec protocol ``counting://``: the local filesystem, counting the bytes read."""
    import fsspec
    from fsspec.implementations.local import LocalFileOpener, LocalFileSystem

    class CountingOpener(LocalFileOpener):
        total = 0

        def read(self, *args: Any, **kwargs: Any) -> bytes:
            data = super().read(*args, **kwargs)
            CountingOpener.total += len(data)
            return data

        def readinto(self, buffer: Any) -> int:
            size = super().readinto(buffer)
            CountingOpener.total += size or 0
            return size

    class CountingFileSystem(LocalFileSystem):
        protocol = ("counting",)

        @classmethod
        def _strip_protocol(cls, path: Any) -> str:
            path = str(path)
            path = path.removeprefix("counting://")
            return super()._strip_protocol(path)

        def unstrip_protocol(self, name: str) -> str:
            return "counting://" + self._strip_protocol(name)

        def _open(self, path: str, mode: str = "rb", block_size: Any = None, **kwargs: Any) -> Any:
            path = self._strip_protocol(path)
            if "r" not in mode:
                return super()._open(path, mode, block_size, **kwargs)
            return CountingOpener(path, mode, fs=self, **kwargs)

    fsspec.register_implementation("counting", CountingFileSystem, clobber=True)
    return CountingOpener


def _peak_rss() -> int:
    """This process's peak RSS: ``VmHWM`` (Linux; per address space, so not the parent's high-water
    mark that ``ru_maxrss`` carries across fork + exec), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def run_child(result: str, argv: list[str]) -> int:
    """``seqbert`` with ``argv`` in this process; then the process's own figures to ``result``."""
    opener = _counting_filesystem()
    from seqbert.cli import main as seqbert_main

    started = time.perf_counter()
    code = seqbert_main(argv)
    wall = time.perf_counter() - started
    io = {}
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            key, value = line.split(":")
            io[key.strip()] = int(value)
    except OSError:
        pass
    Path(result).write_text(json.dumps({
        "code": code, "prepare_wall_s": wall, "counted_bytes_read": opener.total, "proc_io": io,
        "peak_rss_bytes": _peak_rss(),
    }))  # fmt: skip
    return int(code or 0)


# ====================================================================================== generation
def _generate_chunk(task: tuple[int, int, int, int, int]) -> bytes:
    """One chunk of the synthetic log as Arrow IPC bytes; times spread over ``days`` days from :data:`START`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from seqbert.data.synthetic import SyntheticConfig, generate_events

    chunk, users, items, seed, days = task
    config = SyntheticConfig(
        num_users=users, num_items=items, seed=seed + chunk, duration_days=days, start_timestamp=START
    )
    table = generate_events(config)
    for name, letter in (("user_id", "u"), ("session_id", "s")):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pc.utf8_replace_slice(table.column(name), 0, 1, f"{letter}{chunk:04d}"))
    # Sessions may run past the span: keep the events of the `days` days only.
    table = table.filter(pc.less(table.column("timestamp"), START + days * DAY)).select(COLUMNS)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


class _InProcess:
    """``--generate-workers 1``: generate in this process (no worker process to start)."""

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def imap(self, function: Any, tasks: Any) -> Any:
        return map(function, tasks)

    def terminate(self) -> None:
        return None


def generate(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """The sharded folder and the single file of the same events (cached by the parameters)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    days, per_day = args.days, args.shards // args.days
    key = f"events{args.events}-shards{args.shards}-days{days}-items{args.num_items}-seed{args.seed}-v2"
    base = folder / key
    shards, single, done = base / "shards", base / "single.parquet", base / "done.json"
    if done.exists() and not args.regenerate:
        log(f"using cached logs in {base}")
        return json.loads(done.read_text())
    import shutil

    shutil.rmtree(base, ignore_errors=True)
    shards.mkdir(parents=True)
    labels = [_dt.datetime.fromtimestamp(START + d * DAY, _dt.timezone.utc).strftime("%Y-%m-%d") for d in range(days)]
    writers: dict[tuple[int, int], Any] = {}
    single_writer = None
    written, chunk = 0, 0
    started = time.perf_counter()
    from multiprocessing import get_context

    # ~45 events per synthetic user: small logs get small chunks (several, so every day has events).
    users = min(USERS_PER_CHUNK, max(20, args.events // 45 // 4))
    tasks = ((k, users, args.num_items, args.seed, days) for k in range(10**6))
    with get_context("spawn").Pool(args.generate_workers) if args.generate_workers > 1 else _InProcess() as pool:
        for payload in pool.imap(_generate_chunk, tasks):
            table = pa.ipc.open_stream(payload).read_all().slice(0, args.events - written)
            day = pc.divide(pc.subtract(table.column("timestamp"), START), DAY).to_numpy(zero_copy_only=False)
            import numpy as np

            order = np.argsort(day, kind="stable")
            counts = np.bincount(day, minlength=days)
            ordered = table.take(pa.array(order))
            start = 0
            for d, count in enumerate(counts.tolist()):
                if count:
                    key_ = (d, chunk % per_day)
                    if key_ not in writers:
                        path = shards / f"dt={labels[d]}" / f"part-{key_[1]:05d}.parquet"
                        path.parent.mkdir(exist_ok=True)
                        writers[key_] = pq.ParquetWriter(path, table.schema)
                    writers[key_].write_table(ordered.slice(start, count), row_group_size=args.row_group_size)
                start += count
            written += table.num_rows
            chunk += 1
            log(f"generating: {written:,}/{args.events:,} events ({written / (time.perf_counter() - started) / 1e6:.2f} M/s)")
            if written >= args.events:
                pool.terminate()
                break
    for writer in writers.values():
        writer.close()
    files = sorted(shards.glob("dt=*/*.parquet"))
    # The single file holds the folder's rows in its reading order (the shards concatenated by path), so that the
    # comparison is of the two reading paths, not of two row orders: a log clustered by user (as generated) is
    # prepared much faster than the same log in time order, whatever the reader (50M events: 78 s vs 129 s).
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=args.row_group_size):
            if single_writer is None:
                single_writer = pq.ParquetWriter(single, batch.schema)
            single_writer.write_table(pa.Table.from_batches([batch]), row_group_size=args.row_group_size)
    single_writer.close()
    (shards / "_SUCCESS").write_bytes(b"")  # as Spark leaves it: must be skipped
    info = {
        "folder": str(shards), "single": str(single), "events": written, "labels": labels, "files": len(files),
        "folder_bytes": sum(f.stat().st_size for f in files), "single_bytes": single.stat().st_size,
        "generate_s": time.perf_counter() - started,
    }  # fmt: skip
    done.write_text(json.dumps(info))
    log(f"wrote {len(files)} shards ({info['folder_bytes'] / 2**20:,.1f} MiB) and {single} "
        f"({info['single_bytes'] / 2**20:,.1f} MiB) in {info['generate_s']:.1f}s")  # fmt: skip
    return info


# =========================================================================================== running
def prepare_run(name: str, argv: list[str], events: int, scratch: Path, timeout: float | None) -> dict[str, Any]:
    """``seqbert prepare`` in a fresh process (this script's child mode); its figures."""
    result = scratch / f"{name}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(result), "--", *argv]
    log(f"[{name}] {shlex.join(command)}")
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"[{name}] failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    child = json.loads(result.read_text())
    output = Path(argv[argv.index("--output-dir") + 1])
    protocol = json.loads((output / "protocol.json").read_text())
    drop = json.loads((output / "drop_report.json").read_text())
    run = {
        "name": name, "argv": ["seqbert", *argv], "wall_s": wall, "prepare_wall_s": child["prepare_wall_s"],
        "events_per_s": events / child["prepare_wall_s"], "events_per_s_with_startup": events / wall,
        "peak_rss_bytes": child["peak_rss_bytes"],
        "proc_io": child["proc_io"], "counted_bytes_read": child["counted_bytes_read"],
        "input_rows": drop["input_rows"], "kept_rows": drop["kept_rows"], "dropped": drop["dropped"],
        "split_rows": protocol.get("rows"), "files_read": len(protocol["source"].get("shards", [])) or 1,
        "time_window": protocol["source"].get("time_window"),
    }  # fmt: skip
    if run["time_window"]:  # the skipped-file list is long; its count and bytes are what matter here
        window = dict(run["time_window"])
        window["files_skipped"] = len(window["files_skipped"])
        run["time_window"] = window
    log(f"[{name}] {wall:.1f}s ({child['prepare_wall_s']:.1f}s in prepare), {run['events_per_s'] / 1e6:.2f} M events/s, "
        f"peak RSS {run['peak_rss_bytes'] / 2**30:.2f} GiB")  # fmt: skip
    return run


def commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO, check=False)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=REPO, check=False)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else None
    except OSError:
        return None


def format_table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| run | files read | prepare s | process s | M events/s | peak RSS GiB | bytes read (counted) | rows kept |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        counted = f"{run['counted_bytes_read'] / 2**20:,.1f} MiB" if run["counted_bytes_read"] else "-"
        lines.append(
            f"| {run['name']} | {run['files_read']} | {run['prepare_wall_s']:.1f} | {run['wall_s']:.1f} | "
            f"{run['events_per_s'] / 1e6:.2f} | "
            f"{run['peak_rss_bytes'] / 2**30:.2f} | {counted} | {run['kept_rows']:,} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark `seqbert prepare` on a folder of Hive-partitioned parquet shards vs one parquet file "
        "of the same synthetic events (events/s and peak RSS of each, in fresh processes), then a --since/--until "
        "window and the fraction of the bytes it reads (counted through an fsspec filesystem). Appends one JSON "
        "line to --output and prints a markdown table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--events", type=lambda v: int(float(v)), default=50_000_000,
                        help="Events of the synthetic log (1e6 style accepted).")  # fmt: skip
    parser.add_argument("--shards", type=int, default=64, help="Parquet files of the folder (a multiple of --days).")
    parser.add_argument("--days", type=int, default=None,
                        help="Days the log spans, one Hive partition dt=YYYY-MM-DD each (default: --shards).")  # fmt: skip
    parser.add_argument("--window-fraction", type=float, default=0.1,
                        help="Share of the days in the --since/--until window (at least one day).")  # fmt: skip
    parser.add_argument("--partitions", type=int, default=None,
                        help="K of `seqbert prepare --partitions K` (default: ceil(events / --partition-events)).")  # fmt: skip
    parser.add_argument("--partition-events", type=int, default=2_000_000,
                        help="Events per user partition when K is derived from the size (~1 GB of RAM each).")  # fmt: skip
    parser.add_argument("--row-group-size", type=int, default=1_000_000, help="Rows per parquet row group (at most).")
    parser.add_argument("--num-items", type=int, default=200_000, help="Catalog size of the synthetic log.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the synthetic log (chunk k uses seed + k).")
    parser.add_argument("--generate-workers", type=int, default=os.cpu_count() or 1,
                        help="Processes generating the synthetic log.")  # fmt: skip
    parser.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "seqbert-bench-shards"),
                        help="Folder for the generated logs (kept and reused) and the prepared outputs (deleted).")  # fmt: skip
    parser.add_argument("--regenerate", action="store_true", help="Generate the logs again even if cached.")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "shards_prepare.jsonl"),
                        help="JSON Lines file the run's record is appended to.")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=None, help="Seconds allowed per prepare run (default: none).")
    parser.add_argument("--child", metavar="RESULT", help=argparse.SUPPRESS)  # internal: the measured process
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if "--" in argv:  # child mode: `--child RESULT -- prepare ...`
        argv, rest = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    args = parser.parse_args(argv)
    args.seqbert_argv = rest
    if args.child is None and rest:
        parser.error(f"unrecognized arguments: -- {' '.join(rest)}")
    args.days = args.days or args.shards
    if args.child is None and (args.shards % args.days or args.days < 1):
        parser.error(f"--shards ({args.shards}) must be a positive multiple of --days ({args.days}).")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        return run_child(args.child, args.seqbert_argv)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    info = generate(args, work / "logs")
    events = info["events"]
    k = args.partitions or max(1, math.ceil(events / args.partition_events))
    labels = info["labels"]
    width = max(1, round(args.window_fraction * len(labels)))
    first = max(0, (len(labels) - width) // 2)
    since = labels[first]
    until = (_dt.date.fromisoformat(labels[first + width - 1]) + _dt.timedelta(days=1)).isoformat()
    runs = []
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        scratch = Path(scratch)
        common = ["--partitions", str(k)]
        runs.append(prepare_run("folder", ["prepare", info["folder"], "--output-dir", str(scratch / "folder"), *common],
                                events, scratch, args.timeout))  # fmt: skip
        runs.append(prepare_run("single_file", ["prepare", info["single"], "--output-dir", str(scratch / "single"), *common],
                                events, scratch, args.timeout))  # fmt: skip
        window_argv = ["prepare", "counting://" + info["folder"], "--output-dir", str(scratch / "window"), *common,
                       "--since", since, "--until", until]  # fmt: skip
        runs.append(prepare_run("window", window_argv, events, scratch, args.timeout))
        footer_argv = [*window_argv, "--input-hash", "parquet_footer"]
        footer_argv[footer_argv.index(str(scratch / "window"))] = str(scratch / "window_footer_hash")
        runs.append(prepare_run("window_footer_hash", footer_argv, events, scratch, args.timeout))
    folder, single = runs[:2]
    same = all(folder[key] == single[key] for key in ("input_rows", "kept_rows", "dropped", "split_rows"))
    for window_run in runs[2:]:
        window_run["bytes_read_fraction"] = window_run["counted_bytes_read"] / info["folder_bytes"]
        window_run["window_days"] = width
        window_run["window_day_fraction"] = width / len(labels)
    window_run, footer_run = runs[2:]
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_prepare import machine_info, versions

    record = {
        "benchmark": "shards_prepare",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit(),
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": machine_info(),
        "versions": versions(),
        "events": events, "shards": info["files"], "days": len(labels), "partitions": k,
        "folder_bytes": info["folder_bytes"], "single_bytes": info["single_bytes"],
        "window": {"since": since, "until": until, "days": width},
        "bytes_read_method": "fsspec counting:// filesystem: bytes returned by read()/readinto() of every file the "
        "window run opened (window: content hashes included; window_footer_hash: only footers hashed); fraction = "
        "that / bytes of all shards",
        "folder_equals_single": same,
        "runs": runs,
    }  # fmt: skip
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    print(format_table(runs))
    print(
        f"\n{events:,} events, {info['files']} shards over {len(labels)} days ({info['folder_bytes'] / 2**20:,.1f} MiB), "
        f"--partitions {k}. Folder and single file keep the same events: {same}. Window {since} .. {until} "
        f"({width} of {len(labels)} days): read {window_run['bytes_read_fraction']:.1%} of the folder's bytes with "
        f"content hashes, {footer_run['bytes_read_fraction']:.1%} with --input-hash parquet_footer. "
        f"Appended to {output}."
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
