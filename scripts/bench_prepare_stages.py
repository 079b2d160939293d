#!/usr/bin/env python
"""Time each stage of ``seqbert prepare`` several times in one process, on the same input.

``scripts/bench_prepare.py`` measures the whole pipeline in fresh processes, which is what a user
sees; but on a host whose speed drifts (this project's 2-core VM: the same code took 4.4–10.4 s per
10M events within one hour, BENCHMARKS.md) a change worth 0.2 s cannot be seen in whole runs. This
script runs each stage ``--repeats`` times back to back in one process, on the output of the stage
before it (computed once), and prints the minimum, median and maximum wall seconds per stage. To
compare two versions of the code, run it once per version, alternating, e.g.::

    python scripts/bench_prepare_stages.py LOG.csv --json new.json
    PYTHONPATH=/tmp/base python scripts/bench_prepare_stages.py LOG.csv --json base.json

where ``/tmp/base`` is ``git archive <commit> | tar -x -C /tmp/base``. ``LOG.csv`` is any event log
``seqbert prepare`` reads with default options, e.g. the synthetic log ``scripts/bench_prepare.py``
caches in its ``--work-dir``/data.

Stages: read (``read_events``), clean (``clean_events``), sequences (``build_sequences``), split
(``leave_one_out``), vocabulary and statistics (``vocabulary_and_statistics``, or
``train_vocabulary`` + ``prefix_statistics`` in versions before it existed), tokenize
(``encode_for_pretraining`` of the train split).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any


def time_stage(name: str, run: Callable[[], Any], repeats: int) -> tuple[Any, dict[str, float]]:
    """``run()`` ``repeats`` times: (its last result, min / median / max wall seconds)."""
    seconds = []
    result = None
    for _ in range(repeats):
        del result  # free the previous result first: each repeat allocates as the pipeline would
        start = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - start)
    figures = {"min_s": min(seconds), "median_s": statistics.median(seconds), "max_s": max(seconds), "runs_s": seconds}
    print(f"{name:<26} min {figures['min_s']:6.3f}  median {figures['median_s']:6.3f}  max {figures['max_s']:6.3f} s",
          file=sys.stderr, flush=True)  # fmt: skip
    return result, figures


def vocabulary_and_statistics_stage(prepare: Any, sequences: Any, train: Any, options: Any) -> Callable[[], Any]:
    """The vocabulary + statistics stage of this code version (it was two functions before)."""
    if hasattr(prepare, "vocabulary_and_statistics"):
        return lambda: prepare.vocabulary_and_statistics(sequences, train, options)

    def separately() -> Any:
        tokenizer, counts = prepare.train_vocabulary(train, options)
        return tokenizer, prepare.prefix_statistics(sequences, train, prefix_item_counts=counts)

    return separately


def run(path: Path, repeats: int, max_length: int) -> dict[str, dict[str, float]]:
    """Every stage's figures, in pipeline order."""
    from seqbert import prepare
    from seqbert.data.cleaning import clean_events
    from seqbert.data.readers import read_events
    from seqbert.data.sequences import build_sequences
    from seqbert.data.splits import leave_one_out
    from seqbert.prepared import encode_for_pretraining

    options = prepare.PrepareOptions(max_length=max_length)
    stages: dict[str, dict[str, float]] = {}
    # Each stage's input is freed once the next stage has been timed on it (peak memory as in prepare).
    events, stages["read"] = time_stage("read", partial(read_events, path), repeats)
    clean = partial(clean_events, events, min_user_events=options.min_user_events)
    (cleaned, _), stages["clean"] = time_stage("clean", clean, repeats)
    del events, clean
    sequences, stages["sequences"] = time_stage("sequences", partial(build_sequences, cleaned), repeats)
    del cleaned
    (splits, _), stages["split"] = time_stage("split", partial(leave_one_out, sequences), repeats)
    stage = vocabulary_and_statistics_stage(prepare, sequences, splits["train"], options)
    (tokenizer, _), stages["vocabulary + statistics"] = time_stage("vocabulary + statistics", stage, repeats)
    encode = partial(encode_for_pretraining, splits["train"], tokenizer, max_length)
    stages["tokenize"] = time_stage("tokenize", encode, repeats)[1]
    return stages


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time each stage of seqbert prepare REPEATS times in one process on the same input "
        "(min / median / max wall seconds per stage), to compare code versions on a host whose speed drifts.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("input", type=Path, help="Event log that `seqbert prepare` reads with default options.")
    parser.add_argument("--repeats", type=int, default=5, help="Runs of each stage.")
    parser.add_argument("--max-length", type=int, default=200, help="Longest tokenized sequence (tokenize stage).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures here as JSON.")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if not args.input.is_file():
        parser.error(f"{args.input} is not a file")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import seqbert

    stages = run(args.input, args.repeats, args.max_length)
    report = {"input": str(args.input), "repeats": args.repeats, "seqbert": str(Path(seqbert.__file__).parent),
              "stages": stages}  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    print(json.dumps({name: round(figures["median_s"], 3) for name, figures in stages.items()}))


if __name__ == "__main__":
    main()
