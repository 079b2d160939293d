"""Batch jobs over an event log: every user's top-k next items (``seqbert recommend``) or user vectors
(``seqbert embed``), streamed to parquet chunk by chunk.

The log is read like ``seqbert prepare`` reads it (:func:`~seqbert.data.readers.read_events` or a public
dataset's reader), rows with a missing field and exact duplicates are removed as prepare's cleaning does
(no user is dropped for being short), and events are grouped per user in time order by
:func:`~seqbert.data.sequences.build_sequences`. Each chunk of users then goes through
:class:`~seqbert.inference.Recommender` itself (``recommend`` / ``embed_users``: its encode, score and rank),
so a parquet row says exactly what ``Recommender.from_pretrained(model).recommend(events)`` returns (tested).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .inference import Recommender

RECOMMENDATION_SCHEMA = pa.schema(
    [("user_id", pa.string()), ("rank", pa.int32()), ("item_id", pa.string()), ("score", pa.float32())]
)
"""Columns of ``seqbert recommend``'s parquet: one row per (user, recommended item); rank 1 is best."""


class BatchScoringError(ValueError):
    """A problem with the command's inputs or output path; the message names the path and the fix."""


def check_paths(
    model_dir: str | Path, events: str | Path | list[str | Path], output: str | Path, *, overwrite: bool = False
) -> None:
    """Fail early, with one clear line, on a missing model folder or log, or an existing output.

    ``events`` may be a folder, glob, URI or list (:mod:`seqbert.data.shards`): those are checked when read.
    """
    from .data.shards import GLOB_CHARS, is_uri

    if not isinstance(events, (str, Path)) or is_uri(str(events)) or any(c in str(events) for c in GLOB_CHARS):
        events = None
    model_dir, output = Path(model_dir), Path(output)
    events = None if events is None else Path(events)
    if not (model_dir / "config.json").is_file():
        what = f"{model_dir} is not a model folder (no config.json)"
        if not model_dir.is_dir():
            what = f"model folder {model_dir} does not exist"
        raise BatchScoringError(
            f"{what}; pass a folder saved by `seqbert pretrain` "
            "(config.json, model.safetensors and the tokenizer), e.g. runs/demo/seqbert-pretrained."
        )
    if events is not None and not events.exists():
        raise BatchScoringError(f"event log {events} does not exist; pass the log file to score with --events.")
    if output.exists() and not overwrite:
        raise BatchScoringError(
            f"{output} already exists; pass --overwrite to replace it, or choose another --output."
        )
    if not output.parent.is_dir():
        raise BatchScoringError(f"the folder of --output {output} does not exist; create {output.parent} first.")


def load_recommender(model_dir: str | Path, *, device: str = "cpu", batch_size: int = 1024) -> Recommender:
    """:meth:`Recommender.from_pretrained` of a masked-behavior folder (a classifier folder is refused)."""
    import json

    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    architectures = config.get("architectures") or []
    if architectures and "SeqBertForMaskedBehaviorModeling" not in architectures:
        raise BatchScoringError(
            f"{model_dir} holds a {architectures[0]}, not a masked-behavior model; recommend and embed need a "
            "pretrained folder (seqbert pretrain's output), e.g. runs/demo/seqbert-pretrained."
        )
    try:
        return Recommender.from_pretrained(str(model_dir), device=device, batch_size=batch_size)
    except (OSError, ValueError) as error:  # e.g. no weights or tokenizer files in the folder
        raise BatchScoringError(f"cannot load the model folder {model_dir}: {error}") from None


def read_user_sequences(
    path: str | Path | list[str | Path], *, read_options: Mapping[str, Any] | None = None, dataset_format: str | None = None
) -> pa.Table:
    """One row per user (ordered by id): ``user_id`` and time-ordered ``item_ids``, ``event_types``, ``timestamps``.

    ``read_options`` and ``dataset_format`` are those of :func:`seqbert.prepare.prepare_file`.
    """
    from .data.arrow import to_arrow
    from .data.cleaning import clean_events
    from .data.readers import read_events
    from .data.schema import OPTIONAL_COLUMNS
    from .data.sequences import build_sequences

    read_options = dict(read_options or {})
    if dataset_format is None:
        # Inference reads items, event types and times only: skip the optional columns nobody mapped (less memory).
        read_options["column_map"] = {**dict.fromkeys(OPTIONAL_COLUMNS), **(read_options.get("column_map") or {})}
        events = read_events(path, **read_options)
    else:
        from .data.formats import read_dataset

        events = read_dataset(dataset_format, path, **read_options)
    from .data.shards import input_name

    cleaned, _ = clean_events(events, min_user_events=1, source=input_name(path))  # logs what it dropped
    try:
        sequences = to_arrow(build_sequences(cleaned, session_gap_seconds=None))
    except ValueError as error:  # no events left
        raise BatchScoringError(f"{path}: {error}") from None
    return sequences.select(["user_id", "item_ids", "event_types", "timestamps"])


def user_event_chunks(sequences: pa.Table, batch_size: int) -> Iterator[tuple[list[str], list[list[dict]]]]:
    """``(user_ids, events)`` per chunk of ``batch_size`` users; events as :class:`Recommender` takes them."""
    for start in range(0, sequences.num_rows, batch_size):
        chunk = sequences.slice(start, batch_size)
        columns = [chunk.column(name).to_pylist() for name in ("item_ids", "event_types", "timestamps")]
        events = [
            [{"item_id": item, "event_type": kind, "timestamp": time} for item, kind, time in zip(*user)]
            for user in zip(*columns)
        ]
        yield chunk.column("user_id").to_pylist(), events


def _progress(total: int, description: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="user", file=sys.stderr, dynamic_ncols=True, disable=not enabled)


def _write_parquet(output: str | Path, schema: pa.Schema, tables: Iterator[pa.Table], *, overwrite: bool) -> Path:
    """Stream ``tables`` into ``output`` via a temporary file renamed at the end (no half-written output)."""
    output = Path(output)
    if output.exists() and not overwrite:
        raise BatchScoringError(
            f"{output} already exists; pass --overwrite to replace it, or choose another --output."
        )
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    try:
        with pq.ParquetWriter(partial, schema) as writer:
            for table in tables:
                writer.write_table(table)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return output


def recommend_to_parquet(
    recommender: Recommender,
    sequences: pa.Table,
    output: str | Path,
    *,
    k: int = 100,
    exclude_seen: bool = False,
    batch_size: int = 1024,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, int]:
    """Top-``k`` items of every user of ``sequences`` (see :func:`read_user_sequences`) → parquet rows
    (:data:`RECOMMENDATION_SCHEMA`) through :meth:`Recommender.recommend`; returns user and row counts."""
    if int(k) < 1:
        raise BatchScoringError(f"--k must be >= 1, got {k}.")
    counts = {"users": 0, "rows": 0}

    def tables() -> Iterator[pa.Table]:
        with _progress(sequences.num_rows, "recommend", progress) as bar:
            for user_ids, events in user_event_chunks(sequences, batch_size):
                results = recommender.recommend(events, k=k, exclude_seen=exclude_seen)
                lengths = [len(result) for result in results]
                columns = {
                    "user_id": np.repeat(np.asarray(user_ids, dtype=object), lengths),
                    "rank": np.concatenate([np.arange(1, n + 1, dtype=np.int32) for n in lengths]),
                    "item_id": [item for result in results for item in result.item_ids],
                    "score": np.asarray([score for result in results for score in result.scores], dtype=np.float32),
                }
                table = pa.table(columns, schema=RECOMMENDATION_SCHEMA)
                counts["users"] += len(user_ids)
                counts["rows"] += table.num_rows
                bar.update(len(user_ids))
                yield table

    _write_parquet(output, RECOMMENDATION_SCHEMA, tables(), overwrite=overwrite)
    return counts


def embedding_schema(hidden_size: int) -> pa.Schema:
    """Columns of ``seqbert embed``'s parquet: ``user_id`` and a fixed-size ``embedding`` of float32."""
    return pa.schema([("user_id", pa.string()), ("embedding", pa.list_(pa.float32(), int(hidden_size)))])


def embed_to_parquet(
    recommender: Recommender,
    sequences: pa.Table,
    output: str | Path,
    *,
    batch_size: int = 1024,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, int]:
    """Every user's vector (the hidden state at the appended ``[MASK]``) through
    :meth:`Recommender.embed_users` → parquet (:func:`embedding_schema`); returns the user count."""
    hidden_size = int(recommender.model.config.hidden_size)
    schema = embedding_schema(hidden_size)
    counts = {"users": 0, "rows": 0}

    def tables() -> Iterator[pa.Table]:
        with _progress(sequences.num_rows, "embed", progress) as bar:
            for user_ids, events in user_event_chunks(sequences, batch_size):
                vectors = np.ascontiguousarray(recommender.embed_users(events), dtype=np.float32)
                embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), hidden_size)
                counts["users"] += len(user_ids)
                counts["rows"] += len(user_ids)
                bar.update(len(user_ids))
                yield pa.table({"user_id": pa.array(user_ids, pa.string()), "embedding": embedding}, schema=schema)

    _write_parquet(output, schema, tables(), overwrite=overwrite)
    return counts


__all__ = [
    "RECOMMENDATION_SCHEMA",
    "BatchScoringError",
    "check_paths",
    "embed_to_parquet",
    "embedding_schema",
    "load_recommender",
    "read_user_sequences",
    "recommend_to_parquet",
    "user_event_chunks",
]
