"""The prepared-data folder: what ``seqbert prepare`` writes and the training scripts read.

Layout::

    prepared/
      dataset/            DatasetDict (train / validation / test), see seqbert.data.splits
      sequences/          every user's full sequence (fine-tuning labels are cut from it by time)
      tokenizer/          BehaviorTokenizer trained on the train split only
      protocol.json       split protocol + input content hash
      statistics.json     users, items, events per type, length percentiles
      drop_report.json    rows dropped by cleaning, per reason
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict, load_from_disk

from .tokenization_seqbert import BehaviorTokenizer

JSON_FILES = ("protocol", "statistics", "drop_report")


@dataclass
class PreparedData:
    """Splits, full sequences, tokenizer and the records describing how they were made."""

    splits: DatasetDict
    sequences: Dataset
    tokenizer: BehaviorTokenizer
    protocol: dict[str, Any] = field(default_factory=dict)
    statistics: dict[str, Any] = field(default_factory=dict)
    drop_report: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.splits.save_to_disk(str(folder / "dataset"))
        self.sequences.save_to_disk(str(folder / "sequences"))
        self.tokenizer.save_pretrained(str(folder / "tokenizer"))
        for name in JSON_FILES:
            (folder / f"{name}.json").write_text(json.dumps(getattr(self, name), indent=2, default=str) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> PreparedData:
        folder = Path(folder)
        missing = [name for name in ("dataset", "sequences", "tokenizer") if not (folder / name).exists()]
        if missing:
            raise FileNotFoundError(
                f"{folder} is not a prepared-data folder (missing {', '.join(missing)}). "
                "Create one with `seqbert prepare EVENTS_FILE --output-dir FOLDER`."
            )
        records = {
            name: json.loads((folder / f"{name}.json").read_text()) if (folder / f"{name}.json").exists() else {}
            for name in JSON_FILES
        }
        return cls(
            splits=load_from_disk(str(folder / "dataset")),
            sequences=load_from_disk(str(folder / "sequences")),
            tokenizer=BehaviorTokenizer.from_pretrained(str(folder / "tokenizer")),
            **records,
        )


def encode_for_pretraining(dataset: Dataset, tokenizer: BehaviorTokenizer, max_length: int) -> Dataset:
    """Training rows → unpadded id streams (most recent ``max_length`` events), rows without any
    known item removed (they carry no learnable label)."""
    encoded = dataset.map(
        lambda batch: tokenizer(batch, max_length=max_length).data,
        batched=True,
        remove_columns=dataset.column_names,
        desc="Tokenizing training sequences",
    )
    encoded = encoded.filter(
        lambda batch: [max(row) >= tokenizer.num_special_tokens for row in batch["input_ids"]],
        batched=True,
        desc="Dropping sequences without known items",
    )
    # A stable row id lets the masking collator seed each batch from its content (exact resume).
    return encoded.add_column("row_id", list(range(encoded.num_rows)))


def encode_for_next_item(dataset: Dataset, tokenizer: BehaviorTokenizer, max_length: int) -> Dataset:
    """Evaluation rows → history + appended ``[MASK]``, and ``target_ids`` as item columns (-1 = unknown)."""

    def encode(batch: dict[str, list]) -> dict[str, Any]:
        encoded = tokenizer(batch, max_length=max_length, append_mask=True).data
        targets = tokenizer.item_token_ids(batch["target_item_id"]) - tokenizer.num_special_tokens
        encoded["target_ids"] = np.where(targets < 0, -1, targets).tolist()
        return encoded

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="Tokenizing evaluation rows")


def encode_for_classification(dataset: Dataset, tokenizer: BehaviorTokenizer, max_length: int) -> Dataset:
    """Labelled history rows → history + appended ``[MASK]`` (the pooled position) and ``labels``.

    The mask carries the gap from the last event to the row's ``cutoff`` (the prediction time), so
    the model sees recency exactly as a tabular model would.
    """

    def encode(batch: dict[str, list]) -> dict[str, Any]:
        columns = {key: batch[key] for key in ("item_ids", "event_types", "timestamps")}
        encoded = tokenizer(columns, max_length=max_length, append_mask=True, query_timestamps=batch["cutoff"]).data
        encoded["labels"] = list(batch["label"])
        return encoded

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="Tokenizing labelled rows")


__all__ = ["PreparedData", "encode_for_classification", "encode_for_next_item", "encode_for_pretraining"]
