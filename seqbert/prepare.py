"""Raw event log → prepared-data folder: read, clean, sequence, split, tokenizer from train only."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from .data.arrow import to_arrow
from .data.cleaning import clean_events
from .data.readers import read_events
from .data.sequences import DEFAULT_SESSION_GAP_SECONDS, build_sequences, sequence_statistics
from .data.splits import leave_one_out, temporal_split
from .prepared import PreparedData
from .tokenization_seqbert import BehaviorTokenizer

logger = logging.getLogger(__name__)


@dataclass
class PrepareOptions:
    """How a raw log becomes training data (every value is recorded in protocol.json)."""

    split: str = "leave_one_out"  # leave_one_out | temporal
    validation_fraction: float = 0.1  # temporal: share of events (by time) after the validation cutoff
    test_fraction: float = 0.1  # temporal: share of events (by time) after the test cutoff
    validation_start: int | None = None  # temporal: explicit unix-second cutoffs override the fractions
    test_start: int | None = None
    min_history: int = 1  # evaluation rows need this many history events
    session_gap_seconds: int | None = DEFAULT_SESSION_GAP_SECONDS
    min_user_events: int = 2
    min_item_support: int = 1
    max_events_per_user: int | None = None
    deduplicate: bool = True
    vocab_min_count: int = 1
    vocab_max_size: int | None = None
    max_length: int = 200
    clean: dict[str, Any] = field(default_factory=dict)  # extra clean_events keyword arguments


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def temporal_cutoffs(events: Dataset, options: PrepareOptions) -> tuple[int, int]:
    """(validation_start, test_start): explicit values, else event-time quantiles."""
    if options.test_start is not None:
        test_start = options.test_start
        validation_start = options.validation_start if options.validation_start is not None else test_start - 1
        return validation_start, test_start
    timestamps = to_arrow(events).column("timestamp").to_numpy()
    test_start = int(np.quantile(timestamps, 1.0 - options.test_fraction))
    validation_start = int(np.quantile(timestamps, 1.0 - options.test_fraction - options.validation_fraction))
    return validation_start, test_start


def prepare_events(
    events: Dataset, options: PrepareOptions, *, source_name: str, source: Mapping[str, Any] | None = None
) -> PreparedData:
    """Clean → sequences → split → tokenizer (fitted on the train split only)."""
    cleaned, drop_report = clean_events(
        events,
        min_user_events=options.min_user_events,
        deduplicate=options.deduplicate,
        max_events_per_user=options.max_events_per_user,
        min_item_support=options.min_item_support,
        source=source_name,
        **options.clean,
    )
    logger.info("Cleaning:\n%s", drop_report.format_table())
    sequences = build_sequences(cleaned, session_gap_seconds=options.session_gap_seconds)
    if options.split == "leave_one_out":
        splits, protocol = leave_one_out(sequences, min_history=options.min_history)
    elif options.split == "temporal":
        validation_start, test_start = temporal_cutoffs(cleaned, options)
        splits, protocol = temporal_split(
            sequences, validation_start=validation_start, test_start=test_start, min_history=options.min_history
        )
    else:
        raise ValueError(f"Unknown split {options.split!r}; use 'leave_one_out' or 'temporal'.")
    tokenizer = BehaviorTokenizer.train(
        splits["train"]["item_ids"],
        min_count=options.vocab_min_count,
        max_size=options.vocab_max_size,
        max_length=options.max_length,
    )
    protocol.update(
        source_name=source_name,
        source=dict(source or {}),
        options=asdict(options),
        vocabulary={"items": len(tokenizer.items), "built_from": "train split only"},
    )
    statistics = {"all": sequence_statistics(sequences), "train": sequence_statistics(splits["train"])}
    return PreparedData(
        splits=splits,
        sequences=sequences,
        tokenizer=tokenizer,
        protocol=protocol,
        statistics=statistics,
        drop_report=drop_report.to_dict(),
    )


def prepare_file(
    path: str | Path,
    options: PrepareOptions | None = None,
    *,
    output_dir: str | Path | None = None,
    read_options: Mapping[str, Any] | None = None,
) -> PreparedData:
    """Read ``path`` (see :func:`seqbert.data.readers.read_events` for ``read_options``) and prepare it."""
    options = options or PrepareOptions()
    path = Path(path)
    events = read_events(path, **dict(read_options or {}))
    source = {"path": str(path), "sha256": file_sha256(path), "read_options": dict(read_options or {})}
    prepared = prepare_events(events, options, source_name=path.name, source=source)
    if output_dir is not None:
        prepared.save(output_dir)
    return prepared


__all__ = ["PrepareOptions", "file_sha256", "prepare_events", "prepare_file", "temporal_cutoffs"]
