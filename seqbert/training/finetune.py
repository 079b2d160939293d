"""Purchase / conversion / click fine-tuning. Run under ``accelerate launch -m seqbert.training.finetune``
(or ``scripts/finetune.py``, or ``seqbert finetune``).

Tasks (``--task``), built by :mod:`seqbert.data.labels` from the prepared data's full sequences:

- ``user-purchase``: from a user's events strictly before a cutoff, does the user purchase anything in
  ``[cutoff, cutoff + horizon)``? Input: history + appended ``[MASK]``.
- ``item-conversion``: for each (user, item) the user viewed / carted / faved before the cutoff, does
  the user purchase that item in the horizon?
- ``click``: for a user's history and a candidate item (the items the user interacts with in the
  horizon, and popularity-sampled negatives), does the user interact with the candidate?

How the candidate reaches the model (item tasks): the query token appended after the history is the
**candidate item** instead of ``[MASK]``: its item id is the candidate's token id (``[UNK]`` when the
candidate is outside the vocabulary), its event type is the mask behavior ("unknown, to predict") and
its time id the gap from the last event to the cutoff, exactly as ``[MASK]`` carries it for
``user-purchase``. The classifier pools that position, so attention compares the candidate with every
history event (same item, same neighbourhood in the pretrained embedding space). With a pretrained
encoder the candidate's input embedding is the tied item embedding the masked-behavior head scores
items with. :func:`encode_task_rows` builds these inputs for a labelled set and
:func:`predict_candidates` for raw events.

Candidate-aware inputs (item tasks, ``--candidate_match`` / ``--candidate_popularity``, on by default; saved
in the model config and applied by :func:`predict_candidates`): a 1-layer encoder with per-item embeddings
trained on a few thousand rows cannot learn "the candidate equals this history item" from random item
vectors (issue 5: click ROC-AUC at chance while tabular user-item pair counts score 0.73). So every
history token gets a learned embedding of its match with the candidate (same item / same category /
other, from the raw ids, so unknown items match too), the query token the strongest match of the whole
history, and ``log1p`` of the candidate's event count before the cutoff times a learned vector
(:func:`encode_task_rows`, :class:`~seqbert.modeling_seqbert.SeqBertForSequenceClassification`).

The query's time id is capped (``--cap_query_gap``, on by default) at the longest gap among the
training rows: later cutoffs admit longer gaps than the training cutoff (on a log that starts shortly
before it), and an uncapped gap bucket that fine-tuning never saw scored exactly the long-inactive rows
arbitrarily (issue 5: SeqBERT's test ROC-AUC below 0.5). The cap is saved in the model config
(``max_query_gap_seconds``) and :func:`predict_candidates` applies it too.

Cutoffs come from the prepared data's temporal protocol, so fine-tuning never labels with anything a
pretrained model could have seen (pretraining uses the train split: events before validation_start):

- train:      cutoff = validation_start - horizon (labels end where pretraining data ends),
- validation: cutoff = validation_start,
- test:       cutoff = test_start.

Class imbalance: the loss is unweighted by default (the probabilities then keep the data's positive
rate; ROC-/PR-AUC need no weighting). With ``--class_weighting`` the loss weights the classes by
inverse frequency and the reported logits are shifted back by ``-log(w1 / w0)`` (the prior correction
that undoes the weighting) before any metric or temperature scaling.

Cutoffs can roll (``--num_train_cutoffs``: one labelled copy of every user per earlier day) and test cutoffs
can be pooled (``--num_test_cutoffs``) when one horizon holds too few positives.

The in-run baselines are :func:`seqbert.tabular.fit_tabular_baselines` (logistic regression and LightGBM on
:func:`seqbert.data.features.labelled_features` of the same pre-cutoff events, robust to features that shift
after the training cutoff), scored by the same metric code and calibrated the same way; the card warns when
one is worse than the base rate. ``scripts/bench_purchase.py`` calls the same function. With
``--tabular_features`` the classifier's head also reads those features (scaled by the saved scaler).
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import HfArgumentParser

from ..collators import DataCollatorWithLeftPadding, pad_left
from ..configuration_seqbert import SeqBertConfig
from ..data.arrow import from_arrow, list_offsets, to_arrow
from ..data.features import candidate_matches, labelled_features
from ..data.labels import click_candidate_labels, item_conversion_labels, user_purchase_labels
from ..metrics.functional import (
    brier,
    calibrated_report,
    expected_calibration_error,
    log_loss,
    pr_auc,
    probabilities_to_logits,
    roc_auc,
)
from ..modeling_seqbert import (
    CANDIDATE_MATCH_CATEGORY,
    CANDIDATE_MATCH_ITEM,
    CANDIDATE_MATCH_OTHER,
    SeqBertForSequenceClassification,
)
from ..plots import plot_reliability_comparison
from ..prepared import PreparedData, encode_for_classification
from ..tabular import ShiftRobustScaler, fit_tabular_baselines
from .arguments import FinetuneArguments, ModelArguments, TrainingArguments, config_file_arguments
from .loop import make_accelerator, train
from .outputs import write_model_folder
from .sampling import training_dataloader

logger = logging.getLogger(__name__)
TASKS = ("user-purchase", "item-conversion", "click")
TASK_LABELS = {
    "user-purchase": {0: "no_purchase", 1: "purchase"},
    "item-conversion": {0: "no_conversion", 1: "conversion"},
    "click": {0: "no_interaction", 1: "interaction"},
}
LABELS = TASK_LABELS["user-purchase"]
ITEM_TASKS = ("item-conversion", "click")


def parse_args(argv: list[str] | None = None) -> tuple[TrainingArguments, ModelArguments, FinetuneArguments]:
    parser = HfArgumentParser(
        (TrainingArguments, ModelArguments, FinetuneArguments),
        description="Fine-tune SeqBERT for purchase / item-conversion / click prediction (labels from after a "
        "time cutoff only, inputs from before it).",
    )
    argv, config_file = config_file_arguments(list(sys.argv[1:] if argv is None else argv))
    args, model_args, ft_args = parser.parse_args_into_dataclasses(args=argv)
    args.config_file = config_file  # recorded in results.json
    return args, model_args, ft_args


def binary_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Threshold-free metrics first, then calibration."""
    metrics = {"count": float(len(labels)), "positive_rate": float(np.mean(labels)) if len(labels) else 0.0}
    if len(np.unique(labels)) == 2:
        metrics.update(roc_auc=roc_auc(labels, probs), pr_auc=pr_auc(labels, probs))
    if len(labels):
        metrics.update(log_loss=log_loss(labels, probs), brier=brier(labels, probs), ece=expected_calibration_error(labels, probs))
    return metrics


def task_cutoffs(
    protocol: Mapping[str, Any], horizon_seconds: int | None, num_train_cutoffs: int = 1, num_test_cutoffs: int = 1
) -> dict[str, Any]:
    """The label cutoffs of a temporal protocol: ``horizon_seconds``, ``train_cutoffs`` (``num_train_cutoffs``
    rolling cutoffs one horizon apart, the last at ``validation_start - horizon``, so every training label
    ends where pretraining data ends), ``validation_cutoff`` (``validation_start``) and ``test_cutoffs``
    (``num_test_cutoffs`` cutoffs one horizon apart from ``test_start``: pooled when one day of labels is
    too few). ``train_cutoff`` / ``test_cutoff`` repeat the last training and the first test cutoff."""
    if protocol.get("kind") != "temporal" or protocol.get("validation_start") is None:
        raise ValueError(
            "Fine-tuning needs data prepared with a temporal split and a validation cutoff "
            "(`seqbert prepare ... --split temporal`): with leave-one-out, pretraining sees events after "
            "any label cutoff, which would leak labels."
        )
    if num_train_cutoffs < 1 or num_test_cutoffs < 1:
        raise ValueError(f"num_train_cutoffs and num_test_cutoffs must be >= 1, got {num_train_cutoffs}, {num_test_cutoffs}.")
    validation_start, test_start = int(protocol["validation_start"]), int(protocol["test_start"])
    horizon = int(horizon_seconds or (test_start - validation_start))
    train = [validation_start - horizon * (num_train_cutoffs - k) for k in range(num_train_cutoffs)]
    test = [test_start + horizon * k for k in range(num_test_cutoffs)]
    return {
        "horizon_seconds": horizon,
        "train_cutoff": train[-1],
        "validation_cutoff": validation_start,
        "test_cutoff": test[0],
        "train_cutoffs": train,
        "test_cutoffs": test,
    }


def build_task_rows(
    sequences: Dataset,
    task: str,
    *,
    cutoff: int,
    horizon_seconds: int,
    negatives_per_positive: int = 4,
    seed: int = 0,
    lookback_seconds: int | None = None,
) -> Dataset:
    """The labelled rows of ``task`` at one cutoff (see :mod:`seqbert.data.labels`); ``lookback_seconds``:
    item-conversion candidates are items with an event in that window before the cutoff (default: any)."""
    if task == "user-purchase":
        return user_purchase_labels(sequences, cutoff=cutoff, horizon_seconds=horizon_seconds)
    if task == "item-conversion":
        return item_conversion_labels(sequences, cutoff=cutoff, horizon_seconds=horizon_seconds, lookback_seconds=lookback_seconds)
    if task == "click":
        return click_candidate_labels(
            sequences, cutoff=cutoff, horizon_seconds=horizon_seconds, negatives_per_positive=negatives_per_positive, seed=seed
        )
    raise ValueError(f"Unknown task {task!r}; available: {', '.join(TASKS)}.")


def split_cutoffs(cutoffs: Mapping[str, Any]) -> dict[str, list[int]]:
    """``{"train": [...], "validation": [...], "test": [...]}`` from :func:`task_cutoffs`' record."""
    return {
        "train": list(cutoffs.get("train_cutoffs", [cutoffs["train_cutoff"]])),
        "validation": [cutoffs["validation_cutoff"]],
        "test": list(cutoffs.get("test_cutoffs", [cutoffs["test_cutoff"]])),
    }


def rows_at_cutoffs(sequences: Dataset, task: str, cutoffs: Sequence[int], *, seed: int = 0, seed_stride: int = 3, **options: Any) -> Dataset:
    """:func:`build_task_rows` at each cutoff, concatenated in cutoff order (the k-th cutoff draws click
    negatives with ``seed + k * seed_stride``)."""
    parts = [
        to_arrow(build_task_rows(sequences, task, cutoff=int(cutoff), seed=seed + k * seed_stride, **options))
        for k, cutoff in enumerate(cutoffs)
    ]
    return from_arrow(pa.concat_tables(parts).combine_chunks())


def label_splits(
    data: PreparedData,
    horizon_seconds: int | None,
    task: str = "user-purchase",
    *,
    negatives_per_positive: int = 4,
    seed: int = 0,
    num_train_cutoffs: int = 1,
    num_test_cutoffs: int = 1,
    lookback_seconds: int | None = None,
) -> tuple[dict[str, Dataset], dict[str, Any]]:
    """The three labelled sets (train / validation / test) and the cutoffs used, from the temporal protocol
    (:func:`task_cutoffs`); a split with several cutoffs holds the rows of each, in cutoff order.

    The click task's negatives use ``seed + i`` for the i-th split (``+ 3k`` for its k-th cutoff), so every
    split and cutoff draws independently.
    """
    cutoffs = task_cutoffs(data.protocol, horizon_seconds, num_train_cutoffs, num_test_cutoffs)
    options = {"horizon_seconds": cutoffs["horizon_seconds"], "negatives_per_positive": negatives_per_positive,
               "lookback_seconds": lookback_seconds}  # fmt: skip
    sets = {
        name: rows_at_cutoffs(data.sequences, task, split, seed=seed + offset, **options)
        for offset, (name, split) in enumerate(split_cutoffs(cutoffs).items())
    }
    return sets, cutoffs


def replace_query_items(encoded: Dataset, candidate_ids: np.ndarray) -> Dataset:
    """Put ``candidate_ids`` (token ids, one per row) at the last position of each ``input_ids`` row:
    the query token appended by :func:`~seqbert.prepared.encode_for_classification`."""
    table = to_arrow(encoded)
    column = table.column("input_ids").combine_chunks()
    offsets = list_offsets(column)
    values = column.flatten().to_numpy(zero_copy_only=False).copy()
    values[offsets[1:] - 1] = candidate_ids.astype(values.dtype)
    array = type(column).from_arrays(pa.array(offsets.astype(column.offsets.type.to_pandas_dtype())), pa.array(values))
    return from_arrow(table.set_column(table.schema.get_field_index("input_ids"), "input_ids", array))


def query_gaps(rows: Dataset) -> np.ndarray:
    """Seconds from each row's last history event to its ``cutoff``: the gap the query token's time id
    encodes. ``-1`` for an empty history (its query gets the first-event time id, no gap)."""
    table = to_arrow(rows)
    column = table.column("timestamps").combine_chunks()
    offsets = list_offsets(column)
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    cutoff = table.column("cutoff").to_numpy().astype(np.int64)
    nonempty = np.diff(offsets) > 0
    gaps = np.full(len(cutoff), -1, dtype=np.int64)
    gaps[nonempty] = cutoff[nonempty] - flat[offsets[1:][nonempty] - 1]
    return gaps


def cap_query_gaps(rows: Dataset, max_query_gap: int | None) -> Dataset:
    """``rows`` with each ``cutoff`` moved to at most ``max_query_gap`` seconds after the row's last event,
    for encoding only (labels and features keep the real cutoff).

    Why: the query token's time id is ``log2`` of the gap to the cutoff. Later cutoffs admit longer gaps
    than the training cutoff can (on a 2-hour log the train cutoff is 40 min after the log starts, the
    test cutoff 100 min), so without a cap validation / test rows carry gap buckets that fine-tuning
    never saw: their embeddings stay at their initial (or pretraining) values and those rows, the
    long-inactive users least likely to convert, get arbitrary scores.
    """
    if max_query_gap is None:
        return rows
    gaps = query_gaps(rows)
    if not (gaps > max_query_gap).any():
        return rows
    table = to_arrow(rows)
    cutoff = table.column("cutoff").to_numpy().astype(np.int64)
    query = np.where(gaps > max_query_gap, cutoff - gaps + max_query_gap, cutoff)
    index = table.schema.get_field_index("cutoff")
    return from_arrow(table.set_column(index, "cutoff", pa.array(query, type=table.schema.field(index).type)))


def candidate_match_ids(rows: Dataset, max_length: int) -> pa.ListArray:
    """Candidate match type of every token :func:`encode_task_rows` produces for ``rows`` (same truncation:
    the last ``max_length - 1`` history events, then the query token).

    History event: ``CANDIDATE_MATCH_ITEM`` if its item is the row's ``candidate_item_id``, else
    ``CANDIDATE_MATCH_CATEGORY`` if its category is ``candidate_category``, else ``CANDIDATE_MATCH_OTHER``.
    Query token: ``CANDIDATE_MATCH_ITEM`` + the strongest type among *all* the row's history events
    (also those truncated away), so the pooled position knows "seen before" directly. Raw ids are compared,
    so candidates outside the vocabulary (``[UNK]`` / hash tokens) match exactly too.
    """
    matches = candidate_matches(rows)
    offsets, element_rows, positions = matches["offsets"], matches["rows"], matches["positions"]
    match = np.full(len(element_rows), CANDIDATE_MATCH_OTHER, dtype=np.int64)
    if matches["same_category"] is not None:
        match[matches["same_category"]] = CANDIDATE_MATCH_CATEGORY
    match[matches["same_item"]] = CANDIDATE_MATCH_ITEM
    lengths = np.diff(offsets)
    strongest = np.full(len(lengths), CANDIDATE_MATCH_OTHER, dtype=np.int64)
    np.maximum.at(strongest, element_rows, match)
    # Left truncation as in BehaviorTokenizer.encode_sequences: keep each row's last `keep` events.
    kept = np.minimum(lengths, max_length - 1)
    dropped = lengths - kept
    out_offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(kept + 1, out=out_offsets[1:])
    keep = positions >= dropped[element_rows]
    values = np.empty(out_offsets[-1], dtype=np.int64)
    values[out_offsets[:-1][element_rows[keep]] + positions[keep] - dropped[element_rows[keep]]] = match[keep]
    values[out_offsets[1:] - 1] = CANDIDATE_MATCH_ITEM + strongest
    return pa.ListArray.from_arrays(pa.array(out_offsets.astype(np.int32)), pa.array(values))


def encode_task_rows(
    rows: Dataset,
    tokenizer,
    max_length: int,
    max_query_gap: int | None = None,
    *,
    candidate_match: bool = False,
    candidate_popularity: bool = False,
) -> Dataset:
    """Model inputs of labelled task rows: history + query token (``[MASK]``, or the candidate item for
    rows with a ``candidate_item_id``), the query's time id = gap from the last event to the cutoff,
    capped at ``max_query_gap`` seconds when given (see :func:`cap_query_gaps`).

    Candidate rows may also get the candidate-aware inputs of
    :class:`~seqbert.modeling_seqbert.SeqBertForSequenceClassification`: ``candidate_match_ids`` (one per
    token, :func:`candidate_match_ids`) with ``candidate_match``, ``candidate_log_popularity``
    (``log1p(candidate_events)``, the candidate's event count before the cutoff) with ``candidate_popularity``.
    """
    encoded = encode_for_classification(cap_query_gaps(rows, max_query_gap), tokenizer, max_length)
    if "candidate_item_id" not in rows.column_names:
        return encoded
    candidates = tokenizer.item_token_ids(to_arrow(rows).column("candidate_item_id").combine_chunks())
    encoded = replace_query_items(encoded, candidates)
    if candidate_match:
        encoded = from_arrow(to_arrow(encoded).append_column("candidate_match_ids", candidate_match_ids(rows, max_length)))
    if candidate_popularity:
        if "candidate_events" not in rows.column_names:
            raise ValueError("candidate_popularity needs a `candidate_events` column (see seqbert.data.labels).")
        events = to_arrow(rows).column("candidate_events").to_numpy().astype(np.float64)
        popularity = pa.array(np.log1p(np.maximum(events, 0.0)).astype(np.float32))
        encoded = from_arrow(to_arrow(encoded).append_column("candidate_log_popularity", popularity))
    return encoded


CANDIDATE_INPUTS = ("candidate_match_ids", "candidate_log_popularity")
TABULAR_INPUT = "tabular_features"


@dataclass
class DataCollatorForCandidates(DataCollatorWithLeftPadding):
    """:class:`~seqbert.collators.DataCollatorWithLeftPadding` that also left-pads ``candidate_match_ids``
    (0 = padding) and stacks ``candidate_log_popularity`` when the rows have them.

    With ``candidate_dropout`` > 0 (training only), each row's query token (the candidate, last column
    under left padding) becomes ``unk_token_id`` with that probability: candidates unseen by the
    vocabulary are ``[UNK]`` at later cutoffs, and this trains that embedding and the reliance on the
    candidate-aware inputs instead of the candidate's own embedding.
    """

    scalar_fields: tuple[str, ...] = ("labels", "candidate_log_popularity", "tabular_features")
    candidate_dropout: float = 0.0
    unk_token_id: int | None = None

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = super().__call__(features)
        if "candidate_match_ids" in features[0]:
            batch["candidate_match_ids"] = pad_left([f["candidate_match_ids"] for f in features], batch["input_ids"].shape[1])
        if self.candidate_dropout > 0:
            if self.unk_token_id is None:
                raise ValueError("candidate_dropout needs unk_token_id.")
            drop = torch.rand(batch["input_ids"].shape[0]) < self.candidate_dropout
            batch["input_ids"][drop, -1] = self.unk_token_id
        return batch


def model_inputs(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The classifier's keyword inputs in a collated batch (id streams, mask, candidate inputs; no labels)."""
    names = ("input_ids", "behavior_ids", "time_ids", "attention_mask", *CANDIDATE_INPUTS, TABULAR_INPUT)
    return {name: batch[name] for name in names if name in batch}


def encode_splits(
    labelled: Mapping[str, Dataset], tokenizer, max_length: int, cap_query_gap: bool = True, **candidate_inputs: bool
) -> tuple[dict[str, Dataset], int | None]:
    """Encode every labelled split; with ``cap_query_gap`` the query gap of every split is capped at the
    longest gap among the training rows, so validation / test never carry a query time id that
    fine-tuning did not see. ``candidate_inputs``: ``candidate_match`` / ``candidate_popularity`` of
    :func:`encode_task_rows`. Returns the encoded splits and the cap (``None`` without one)."""
    max_query_gap = None
    if cap_query_gap and "train" in labelled and labelled["train"].num_rows:
        max_query_gap = int(query_gaps(labelled["train"]).max())
    encoded = {
        name: encode_task_rows(rows, tokenizer, max_length, max_query_gap, **candidate_inputs) for name, rows in labelled.items()
    }
    return encoded, max_query_gap


def with_tabular_features(encoded: Dataset, features: np.ndarray) -> Dataset:
    """``encoded`` plus a ``tabular_features`` column (one float32 vector per row, already scaled)."""
    matrix = np.asarray(features, dtype=np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), matrix.shape[1])
    return from_arrow(to_arrow(encoded).append_column(TABULAR_INPUT, column))


def tabular_inputs(model_config, sequences: Dataset | None, rows: Dataset) -> np.ndarray:
    """The scaled tabular features a classifier fine-tuned with ``--tabular_features`` reads: the features of
    :func:`~seqbert.data.features.labelled_features` (catalog statistics from ``sequences`` before each row's
    cutoff), scaled by the scaler saved in ``config.tabular_scaler``."""
    if sequences is None:
        raise ValueError("This classifier reads tabular features: pass the event log's sequences (catalog statistics).")
    state = model_config.tabular_scaler
    raw, names = labelled_features(sequences, rows, utc_offset_seconds=int(state.get("utc_offset_seconds", 0)))
    if names != state["names"]:
        raise ValueError("The tabular features of these rows differ from the ones the model was fine-tuned with.")
    return ShiftRobustScaler.from_dict(state).transform(raw)


def candidate_rows_from_events(
    histories: Sequence[Sequence[Mapping[str, Any]]],
    candidates: Sequence[str],
    query_timestamps: Sequence[int],
    candidate_categories: Sequence[str | None] | None = None,
    candidate_events: Sequence[int] | None = None,
) -> Dataset:
    """Raw event lists + candidates as labelled-row columns (what :mod:`seqbert.data.labels` writes, label 0),
    so :func:`encode_task_rows` encodes them exactly as the fine-tuning rows. Events are sorted by timestamp
    (stable); with ``candidate_categories`` the events' ``category`` values are read too."""
    ordered = [sorted(history, key=lambda event: int(event["timestamp"])) for history in histories]
    strings = pa.list_(pa.string())
    columns = {
        "item_ids": pa.array([[str(event["item_id"]) for event in history] for history in ordered], strings),
        "event_types": pa.array([[str(event["event_type"]) for event in history] for history in ordered], strings),
        "timestamps": pa.array([[int(event["timestamp"]) for event in history] for history in ordered], pa.list_(pa.int64())),
        "candidate_item_id": pa.array([str(candidate) for candidate in candidates], pa.string()),
    }
    if candidate_categories is not None:
        columns["categories"] = pa.array(
            [[None if event.get("category") is None else str(event["category"]) for event in history] for history in ordered], strings
        )
        columns["candidate_category"] = pa.array([None if c is None else str(c) for c in candidate_categories], pa.string())
    if candidate_events is not None:
        columns["candidate_events"] = pa.array([int(count) for count in candidate_events], pa.int64())
    columns["label"] = pa.array(np.zeros(len(ordered), dtype=np.int64))
    columns["cutoff"] = pa.array([int(query) for query in query_timestamps], pa.int64())
    return from_arrow(pa.table(columns))


@torch.no_grad()
def predict_candidates(
    model: SeqBertForSequenceClassification,
    tokenizer,
    histories: Sequence[Sequence[Mapping[str, Any]]],
    candidates: Sequence[str],
    query_timestamps: Sequence[int] | None = None,
    *,
    candidate_categories: Sequence[str | None] | None = None,
    candidate_events: Sequence[int] | None = None,
    max_length: int | None = None,
) -> np.ndarray:
    """Probabilities that each user converts on / interacts with a candidate item (item-conversion / click models).

    The rows go through the fine-tuning encoding (:func:`encode_task_rows`) with the model's saved
    options: the query-gap cap (``config.max_query_gap_seconds``) and the candidate-aware inputs
    (``config.candidate_match`` / ``config.candidate_popularity``).

    Args:
        model: a fine-tuned folder loaded with ``SeqBertForSequenceClassification.from_pretrained`` (or
            ``AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)``).
        tokenizer: ``BehaviorTokenizer.from_pretrained(folder)``.
        histories: one list of raw events per row (dicts with ``item_id``, ``event_type``, ``timestamp``
            and, when the data had categories, ``category``; any order), all strictly before the prediction time.
        candidates: one external item id per row.
        query_timestamps: the prediction time per row (the label cutoff in training); defaults to each
            history's last timestamp.
        candidate_categories: the candidate's category per row, when the model was fine-tuned on data with
            categories (events of the same category then count as category matches).
        candidate_events: the candidate's event count (all users) before the prediction time per row;
            required by a model with ``config.candidate_popularity``.

    Returns:
        ``(n,)`` probabilities of the positive label.

    Example::

        model = SeqBertForSequenceClassification.from_pretrained("runs/click").eval()
        tokenizer = BehaviorTokenizer.from_pretrained("runs/click")
        predict_candidates(model, tokenizer, [events], ["i00042"], [1_700_086_400], candidate_events=[17])
    """
    if len(histories) != len(candidates):
        raise ValueError(f"{len(histories)} histories but {len(candidates)} candidates.")
    config = model.config
    if config.candidate_popularity and candidate_events is None:
        raise ValueError("This model was fine-tuned with candidate popularity: pass candidate_events (each "
                         "candidate's event count, all users, before the prediction time).")  # fmt: skip
    if query_timestamps is None:
        query_timestamps = [max(int(event["timestamp"]) for event in history) if history else 0 for history in histories]
    rows = candidate_rows_from_events(histories, candidates, query_timestamps, candidate_categories, candidate_events)
    return predict_task_rows(model, tokenizer, rows, max_length=max_length)


@torch.no_grad()
def predict_task_rows(
    model: SeqBertForSequenceClassification,
    tokenizer,
    rows: Dataset,
    *,
    sequences: Dataset | None = None,
    max_length: int | None = None,
    batch_size: int = 1024,
) -> np.ndarray:
    """Positive-class probabilities of labelled task rows (:mod:`seqbert.data.labels` columns), encoded as in
    fine-tuning with the model's saved options (query-gap cap, candidate-aware inputs, tabular features from
    ``sequences``): what :func:`predict_candidates`, :class:`~seqbert.inference.Classifier` and the benchmarks
    score with."""
    config = model.config
    candidate_rows = "candidate_item_id" in rows.column_names
    max_length = max_length or min(int(tokenizer.max_length), int(config.max_position_embeddings))
    encoded = encode_task_rows(
        rows, tokenizer, max_length, getattr(config, "max_query_gap_seconds", None),
        candidate_match=bool(config.candidate_match) and candidate_rows,
        candidate_popularity=bool(config.candidate_popularity) and candidate_rows,
    )  # fmt: skip
    if getattr(config, "num_tabular_features", 0):
        encoded = with_tabular_features(encoded, tabular_inputs(config, sequences, rows))
    collate = DataCollatorForCandidates(pad_to_multiple_of=None)
    device = next(model.parameters()).device
    probabilities = []
    for start in range(0, encoded.num_rows, batch_size):
        batch = collate(encoded.select(range(start, min(start + batch_size, encoded.num_rows))).to_list())
        logits = model(**{name: tensor.to(device) for name, tensor in model_inputs(batch).items()}).logits.float()
        probabilities.append(torch.softmax(logits, dim=-1)[:, 1].cpu().numpy().astype(np.float64))
    return np.concatenate(probabilities) if probabilities else np.zeros(0)


def check_same_vocabulary(checkpoint: str, tokenizer) -> None:
    """Refuse a checkpoint whose saved tokenizer maps items, event types or gaps differently from the prepared
    data's: its embeddings would be read under the wrong ids, silently."""
    from ..tokenization_seqbert import BehaviorTokenizer

    if not (Path(checkpoint) / "tokenizer_config.json").exists():
        return  # a Hub id or a folder without tokenizer files: nothing to compare
    saved = BehaviorTokenizer.from_pretrained(checkpoint)
    if saved.get_vocab() != tokenizer.get_vocab() or saved.event_types != tokenizer.event_types:
        raise ValueError(
            f"{checkpoint} was pretrained with another vocabulary ({saved.vocab_size:,} tokens) than the prepared data's "
            f"({tokenizer.vocab_size:,} tokens): fine-tune on the prepared folder the model was pretrained on (same "
            "`seqbert prepare` output), so that every item keeps its id."
        )


def test_reliability_plot(folder: Path, test: tuple[np.ndarray, np.ndarray], baselines: dict, rows) -> list[str]:
    """``test_reliability.png``: the saved model's test probabilities (as Classifier and the pipelines give them) and
    the tabular baselines', per probability bin against the observed rate; [] when the test split is empty."""
    labels, logits = test
    if len(labels) == 0:
        return []
    curves = {"seqbert": (labels, 1.0 / (1.0 + np.exp(-logits)))}
    baseline_labels = np.asarray(rows["label"])
    curves.update({name: (baseline_labels, b.probabilities["test"]) for name, b in baselines.items()})
    plot_reliability_comparison(curves, path=folder / "test_reliability.png", title="Test reliability (probabilities as saved)")
    return ["test_reliability.png"]


def build_model(
    args: FinetuneArguments, model_args: ModelArguments, tokenizer, max_length: int, labels=LABELS, **candidate_inputs: bool
) -> SeqBertForSequenceClassification:
    """The classifier, from ``args.model_name_or_path`` or from scratch. ``candidate_inputs``
    (``candidate_match`` / ``candidate_popularity``) go into its config; parameters a pretrained
    checkpoint lacks (the head, candidate embeddings) are freshly initialised."""
    label_options = {"num_labels": 2, "id2label": labels, "label2id": {v: k for k, v in labels.items()}, **candidate_inputs}
    if args.model_name_or_path:
        check_same_vocabulary(args.model_name_or_path, tokenizer)
        model = SeqBertForSequenceClassification.from_pretrained(args.model_name_or_path, **label_options)
        logger.info("encoder initialised from %s; the classification head starts from scratch", args.model_name_or_path)
        return model
    config = SeqBertConfig(
        vocab_size=tokenizer.vocab_size,
        num_special_tokens=tokenizer.num_special_tokens,
        num_behaviors=tokenizer.num_behaviors,
        num_time_buckets=tokenizer.num_time_buckets,
        max_position_embeddings=max_length,
        **label_options,
        **vars(model_args),
    )
    return SeqBertForSequenceClassification(config)


TASK_TEXT = {
    "user-purchase": "Probability that a user purchases anything within {horizon} after a cutoff, from the user's "
    "behavior events strictly before it.",
    "item-conversion": "Probability that a user purchases an item they viewed, carted or faved before a cutoff, within "
    "{horizon} after it; input: the user's events strictly before the cutoff, then the item as the query token.",
    "click": "Probability that a user interacts (any event) with a candidate item within {horizon} after a cutoff; "
    "input: the user's events strictly before the cutoff, then the candidate as the query token. Candidates: the "
    "items the user interacts with in the window (seen before the cutoff) and {negatives} popularity-sampled "
    "negatives per positive.",
}


def _format_horizon(seconds: int) -> str:
    return f"{seconds / 86_400:.2f} days" if seconds >= 86_400 else f"{seconds / 60:.0f} minutes"


def comparison_notes(
    cutoffs: Mapping[str, Any], counts: Mapping[str, Mapping[str, int]], reports: Mapping[str, dict],
    validation_log_loss: Mapping[str, float], base_rate_log_loss: float,
) -> str:
    """The card's evaluation text: protocol (cutoffs, rows and positives per split), then every model's test
    metrics after temperature scaling fitted on validation, with bootstrap 95 % intervals, and a plain
    warning for any model whose validation log loss is worse than predicting the training base rate."""
    def stamp(seconds: int) -> str:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(int(seconds)))

    split = split_cutoffs(cutoffs)
    lines = [
        (
            "Protocol: inputs are each user's events strictly before a cutoff; labels only come from "
            f"`[cutoff, cutoff + {_format_horizon(cutoffs['horizon_seconds'])})`. "
            f"Training cutoffs: {', '.join(stamp(c) for c in split['train'])}; validation: {stamp(split['validation'][0])}; "
            f"test: {', '.join(stamp(c) for c in split['test'])}. Temperature scaling is fitted on validation."
        ),
        "",
        "| Split | Rows | Positives |",
        "| --- | --- | --- |",
        *(f"| {name} | {c['examples']:,} | {c['positives']:,} |" for name, c in counts.items()),
    ]
    if reports:
        lines += ["", "| Model (test, after temperature scaling) | ROC-AUC [95 % CI] | log loss | ECE (before → after) |",
                  "| --- | --- | --- | --- |"]  # fmt: skip
        for name, report in reports.items():
            calibrated, low_high = report["calibrated"], report["intervals"].get("roc_auc", (float("nan"),) * 2)
            lines.append(f"| {name} | {calibrated.get('roc_auc', float('nan')):.4f} [{low_high[0]:.4f}, {low_high[1]:.4f}] | "
                         f"{calibrated['log_loss']:.4f} | {report['uncalibrated']['ece']:.4f} → {calibrated['ece']:.4f} |")  # fmt: skip
    worse = [name for name, loss in validation_log_loss.items() if loss > base_rate_log_loss]
    for name in worse:
        warning = (f"**Warning: {name}'s validation log loss ({validation_log_loss[name]:.4f}) is worse than predicting "
                   f"the training base rate ({base_rate_log_loss:.4f}); its probabilities are not a fair comparison.**")  # fmt: skip
        lines += ["", warning]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args, model_args, ft_args = parse_args(argv)
    if ft_args.task not in TASKS:
        raise ValueError(f"Unknown task {ft_args.task!r}; available: {', '.join(TASKS)}.")
    accelerator = make_accelerator(args)
    data = PreparedData.load(args.data_dir)
    tokenizer = data.tokenizer
    if args.max_length < tokenizer.max_length:  # saved with the model: inference encodes as fine-tuning did
        tokenizer.max_length = tokenizer.model_max_length = tokenizer.init_kwargs["max_length"] = int(args.max_length)
    horizon = int(ft_args.horizon_days * 86_400) if ft_args.horizon_days else None
    labelled, cutoffs = label_splits(
        data, horizon, ft_args.task, negatives_per_positive=ft_args.negatives_per_positive, seed=ft_args.label_seed,
        num_train_cutoffs=ft_args.num_train_cutoffs, num_test_cutoffs=ft_args.num_test_cutoffs,
        lookback_seconds=int(ft_args.conversion_lookback_days * 86_400) if ft_args.conversion_lookback_days else None,
    )
    counts = {name: {"examples": rows.num_rows, "positives": int(np.sum(rows["label"]))} for name, rows in labelled.items()}
    logger.info("task %s, label counts %s, cutoffs %s", ft_args.task, counts, cutoffs)
    if counts["train"]["examples"] == 0 or counts["validation"]["examples"] == 0:
        raise ValueError(f"Task {ft_args.task!r} has no training or validation rows at these cutoffs: {counts}.")
    item_task = ft_args.task in ITEM_TASKS
    candidate_inputs = {
        "candidate_match": ft_args.candidate_match and item_task,
        "candidate_popularity": ft_args.candidate_popularity and item_task,
    }
    with accelerator.main_process_first():
        encoded, max_query_gap = encode_splits(labelled, tokenizer, args.max_length, ft_args.cap_query_gap, **candidate_inputs)
    if max_query_gap is not None:
        capped = {name: int((query_gaps(rows) > max_query_gap).sum()) for name, rows in labelled.items()}
        logger.info("query gap capped at %d s (longest training gap); rows capped per split: %s", max_query_gap, capped)

    config_options = dict(candidate_inputs)
    offset = int(ft_args.utc_offset_hours * 3600)
    raw = None  # the labelled features, computed once for the head (--tabular_features) and the baselines
    if ft_args.tabular_features:
        raw = {name: labelled_features(data.sequences, rows, utc_offset_seconds=offset) for name, rows in labelled.items()}
        scaler = ShiftRobustScaler().fit(raw["train"][0], raw["train"][1])
        encoded = {name: with_tabular_features(encoded[name], scaler.transform(raw[name][0])) for name in encoded}
        config_options.update(num_tabular_features=int(scaler.kept.sum()), tabular_scaler={**scaler.to_dict(), "utc_offset_seconds": offset})
        logger.info("tabular features in the head: %d (dropped near-constant: %s)", int(scaler.kept.sum()), scaler.dropped)
    task_labels = TASK_LABELS[ft_args.task]
    model = build_model(ft_args, model_args, tokenizer, args.max_length, task_labels, **config_options)
    model.config.finetuning_task = ft_args.task
    model.config.max_query_gap_seconds = max_query_gap  # predict_candidates applies the same cap
    if ft_args.freeze_encoder:
        model.seqbert.requires_grad_(False)
    train_labels = np.asarray(labelled["train"]["label"])
    positive_share = float(train_labels.mean()) if len(train_labels) else 0.5
    class_weights = None
    if ft_args.class_weighting and 0 < positive_share < 1:
        class_weights = torch.tensor([0.5 / (1 - positive_share), 0.5 / positive_share])
    # Weighting shifts the optimal logit by log(w1 / w0), keeping a share r of the negatives by -log(r); subtract
    # both so probabilities keep the real prior (folded into the classifier's bias once training ends).
    prior_shift = float(torch.log(class_weights[1] / class_weights[0])) if class_weights is not None else 0.0
    if not 0 < ft_args.train_negative_rate <= 1:
        raise ValueError(f"train_negative_rate must be in (0, 1], got {ft_args.train_negative_rate}.")
    if ft_args.train_negative_rate < 1:
        keep = (train_labels == 1) | (np.random.default_rng(args.seed).random(len(train_labels)) < ft_args.train_negative_rate)
        encoded["train"] = encoded["train"].select(np.flatnonzero(keep))
        prior_shift -= float(np.log(ft_args.train_negative_rate))
        logger.info("training on %d of %d rows (every positive, %.0f %% of the negatives)", int(keep.sum()), len(keep),
                    100 * ft_args.train_negative_rate)  # fmt: skip

    collator = DataCollatorForCandidates()
    train_collator = DataCollatorForCandidates(
        candidate_dropout=ft_args.candidate_dropout if item_task else 0.0, unk_token_id=tokenizer.unk_token_id
    )
    train_loader = training_dataloader(
        encoded["train"], batch_size=args.per_device_batch_size, collate_fn=train_collator, seed=args.seed,
        group_by_length=args.group_by_length, num_workers=args.num_workers,
    )  # fmt: skip
    eval_loaders = {
        name: accelerator.prepare(DataLoader(encoded[name], batch_size=args.eval_batch_size, collate_fn=collator))
        for name in ("validation", "test")
    }

    @torch.no_grad()
    def predict_logits(model, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(labels, positive-class logits l1 - l0, prior-corrected)."""
        logits, labels = [], []
        for batch in eval_loaders[split]:
            with accelerator.autocast():
                out = model(**model_inputs(batch)).logits
            out = out.float()
            batch_logits, batch_labels = accelerator.gather_for_metrics((out[:, 1] - out[:, 0] - prior_shift, batch["labels"]))
            logits.append(batch_logits.cpu())
            labels.append(batch_labels.cpu())
        return torch.cat(labels).numpy(), torch.cat(logits).numpy().astype(np.float64)

    def predict(model, split: str) -> tuple[np.ndarray, np.ndarray]:
        labels, logits = predict_logits(model, split)
        return labels, 1.0 / (1.0 + np.exp(-logits))

    def loss_fn(model, batch):
        logits = model(**model_inputs(batch)).logits
        weight = class_weights.to(logits.device) if class_weights is not None else None
        return F.cross_entropy(logits.float(), batch["labels"], weight=weight), {}

    state = train(
        accelerator=accelerator,
        model=model,
        train_loader=train_loader,
        args=args,
        evaluate=lambda m: binary_metrics(*predict(m, "validation")),
        metric_name="roc_auc",
        loss_fn=loss_fn,
    )
    model = accelerator.unwrap_model(model, keep_torch_compile=False).eval()
    if prior_shift:  # the saved model itself gives prior-corrected probabilities (Classifier, pipelines, serving)
        with torch.no_grad():
            model.classifier.bias[1] -= prior_shift
        prior_shift = 0.0
    predictions = {split: predict_logits(model, split) for split in ("validation", "test")}
    results = {
        split: {"seqbert": binary_metrics(labels, 1.0 / (1.0 + np.exp(-logits)))}
        for split, (labels, logits) in predictions.items()
    }
    # GAUC groups: one per user and cutoff (a pooled split holds the same user at several cutoffs).
    groups = {
        split: np.char.add(np.char.add(np.asarray(labelled[split]["user_id"]).astype(str), "@"),
                           np.asarray(labelled[split]["cutoff"]).astype(str))
        for split in ("validation", "test")
    }  # fmt: skip
    reports = {}
    if ft_args.bootstrap_resamples and len(np.unique(predictions["validation"][0])) == 2:
        reports["seqbert"] = calibrated_report(
            predictions["test"][0], predictions["test"][1], *predictions["validation"],
            groups=groups["test"] if ft_args.task in ITEM_TASKS else None,
            n_resamples=ft_args.bootstrap_resamples, seed=args.seed,
        )  # fmt: skip
    baselines = {}
    if ft_args.tabular_baseline:
        baselines = fit_tabular_baselines(
            data.sequences, labelled, ft_args.tabular_models, seed=args.seed, utc_offset_seconds=offset, precomputed=raw
        )  # fmt: skip
        for name, baseline in baselines.items():
            for split in ("validation", "test"):
                results[split][name] = binary_metrics(np.asarray(labelled[split]["label"]), baseline.probabilities[split])
            split_labels = {split: np.asarray(labelled[split]["label"]) for split in ("validation", "test")}
            if ft_args.bootstrap_resamples and len(np.unique(split_labels["validation"])) == 2:
                reports[name] = calibrated_report(
                    split_labels["test"], probabilities_to_logits(baseline.probabilities["test"]),
                    split_labels["validation"], probabilities_to_logits(baseline.probabilities["validation"]),
                    groups=groups["test"] if ft_args.task in ITEM_TASKS else None,
                    n_resamples=ft_args.bootstrap_resamples, seed=args.seed,
                )  # fmt: skip
    for name, report in reports.items():
        results["test"][f"{name}_temperature_scaled"] = {
            key: value for key, value in report["calibrated"].items() if key in ("log_loss", "brier", "ece")
        }

    validation_labels = predictions["validation"][0]
    base_rate_log_loss = log_loss(validation_labels, np.full(len(validation_labels), min(max(positive_share, 1e-6), 1 - 1e-6)))
    validation_log_loss = {name: values["log_loss"] for name, values in results["validation"].items() if "log_loss" in values}
    summary = {
        "task": ft_args.task,
        "task_definition": TASK_TEXT[ft_args.task].format(
            horizon=_format_horizon(cutoffs["horizon_seconds"]), negatives=ft_args.negatives_per_positive
        ),
        "query_token": "candidate item" if ft_args.task in ITEM_TASKS else "[MASK]",
        "max_query_gap_seconds": max_query_gap,
        "candidate_inputs": candidate_inputs,
        "candidate_dropout": train_collator.candidate_dropout,
        "cutoffs": cutoffs,
        "label_counts": counts,
        "class_weights": class_weights.tolist() if class_weights is not None else None,
        "initialised_from": ft_args.model_name_or_path or "scratch",
        "freeze_encoder": ft_args.freeze_encoder,
        "num_processes": accelerator.num_processes,
        "config_file": args.config_file,
        "device": str(accelerator.device),
        "mixed_precision": accelerator.mixed_precision,
        "global_step": state.global_step,
        "best_step": state.best_step,
        "wall_seconds": round(state.elapsed_seconds, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "metrics": results,
        "calibration": reports,
        "base_rate_validation_log_loss": base_rate_log_loss,
        "worse_than_base_rate": sorted(name for name, loss in validation_log_loss.items() if loss > base_rate_log_loss),
        "tabular_baselines": {
            name: {"params": b.params, "backend": b.backend, "dropped_features": b.dropped_features,
                   "shift_warnings": b.shift_warnings, "features": b.feature_names}
            for name, b in baselines.items()
        },
    }
    if accelerator.is_main_process:
        usage = None
        if ft_args.task in ITEM_TASKS:
            usage = (
                "from seqbert import BehaviorTokenizer, SeqBertForSequenceClassification\n"
                "from seqbert.training.finetune import predict_candidates\n\n"
                f'model = SeqBertForSequenceClassification.from_pretrained("{Path(args.output_dir).name}").eval()\n'
                f'tokenizer = BehaviorTokenizer.from_pretrained("{Path(args.output_dir).name}")\n'
                'events = [{"item_id": "42", "event_type": "view", "timestamp": 1_700_000_000}]\n'
                'print(predict_candidates(model, tokenizer, [events], ["42"], [1_700_000_600]'
                + (", candidate_events=[17]" if candidate_inputs["candidate_popularity"] else "")
                + "))"
            )
        reliability = test_reliability_plot(Path(args.output_dir), predictions["test"], baselines, labelled["test"])
        write_model_folder(
            accelerator, model, tokenizer, args=args, data=data, summary=summary, kind="classifier",
            extra_args={**vars(model_args), **vars(ft_args)}, headline_metric="roc_auc", extra_plots=reliability,
            card_context={
                "task": summary["task_definition"] + f" Cutoffs (unix s): {json.dumps(cutoffs)}.",
                "task_name": {"user-purchase": "Purchase Prediction", "item-conversion": "Item Conversion Prediction",
                              "click": "Click Prediction"}[ft_args.task],
                "base_model": ft_args.model_name_or_path or "none (trained from scratch)",
                "evaluation_notes": comparison_notes(cutoffs, counts, reports, validation_log_loss, base_rate_log_loss),
                **({"usage_code": usage} if usage else {}),
            },
        )  # fmt: skip
        if ft_args.save_predictions:
            arrays = {}
            for split, (labels, logits) in predictions.items():
                arrays[f"{split}_labels"], arrays[f"{split}_logits"], arrays[f"{split}_groups"] = labels, logits, groups[split]
                for name, baseline in baselines.items():
                    arrays[f"{split}_{name}_probabilities"] = baseline.probabilities[split]
            np.savez_compressed(Path(args.output_dir) / "predictions.npz", **arrays)
        logger.info("test metrics: %s", json.dumps(results["test"]))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


__all__ = [
    "CANDIDATE_INPUTS",
    "ITEM_TASKS",
    "TASKS",
    "DataCollatorForCandidates",
    "build_task_rows",
    "candidate_match_ids",
    "candidate_rows_from_events",
    "cap_query_gaps",
    "encode_splits",
    "encode_task_rows",
    "label_splits",
    "main",
    "model_inputs",
    "predict_candidates",
    "predict_task_rows",
    "query_gaps",
    "rows_at_cutoffs",
    "split_cutoffs",
    "tabular_inputs",
    "task_cutoffs",
    "with_tabular_features",
]


if __name__ == "__main__":
    main(sys.argv[1:])
