"""Using a trained SeqBERT model: next-item recommendations, user / item embeddings, purchase probabilities.

Input is what an application has at hand: one user's raw events, a list of dicts with ``item_id``,
``event_type`` and ``timestamp`` (unix seconds; any order, they are sorted by time), or a batch of such
lists. Output uses the user's own external item ids.

The scoring is :func:`score_next_items`, the same function :func:`seqbert.evaluation.model_scorer` uses,
so the offline metrics of a model describe exactly the ranking :class:`Recommender` serves (tested).

Self-contained like the modeling files: it imports only numpy, torch, transformers and its sibling
model / tokenizer files, so that :mod:`seqbert.pipelines` can be copied into a model folder with it for
``pipeline(..., trust_remote_code=True)`` on machines without seqbert.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .modeling_seqbert import CANDIDATE_MATCH_CATEGORY, CANDIDATE_MATCH_ITEM, CANDIDATE_MATCH_OTHER, last_token_index
from .tokenization_seqbert import BehaviorTokenizer

logger = logging.getLogger(__name__)

MODEL_INPUT_NAMES = ("input_ids", "behavior_ids", "time_ids", "attention_mask")


class InvalidEventsError(ValueError):
    """Raised for malformed raw events (missing field, non-integer timestamp, unknown event type...)."""


# ---------------------------------------------------------------------------------------------------------------
# The one scoring function (shared with seqbert.evaluation)
# ---------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def score_next_items(model: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Next-item scores `(batch_size, num_items)` of a padded batch; column ``j`` is token id ``j + num_special_tokens``.

    ``batch`` holds ``input_ids``, ``behavior_ids``, ``time_ids`` and ``attention_mask`` with the appended
    ``[MASK]`` as each row's last real token (``BehaviorTokenizer(..., append_mask=True)``). ``model`` is a
    :class:`~seqbert.SeqBertForMaskedBehaviorModeling` or anything with the same ``next_item_scores``
    method (e.g. :class:`seqbert.export.OnnxNextItemModel`). Scores are logits: a softmax over the
    columns gives next-item probabilities. Offline evaluation and :class:`Recommender` both call this.
    """
    return model.next_item_scores(
        batch["input_ids"], batch["behavior_ids"], batch["time_ids"], batch["attention_mask"]
    )


@torch.no_grad()
def user_hidden_states(model: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Encoder output `(batch_size, hidden_size)` at each row's last real token (the appended ``[MASK]``)."""
    encoder = model.seqbert if hasattr(model, "seqbert") else model
    hidden = encoder(
        batch["input_ids"], batch["behavior_ids"], batch["time_ids"], batch["attention_mask"]
    ).last_hidden_state
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, last_token_index(batch["attention_mask"])]


# ---------------------------------------------------------------------------------------------------------------
# Raw events -> model inputs
# ---------------------------------------------------------------------------------------------------------------


def is_single_user(events: Any) -> bool:
    """Whether ``events`` is one user's event list (a list of dicts, possibly empty) rather than a batch."""
    if isinstance(events, (Mapping, str, bytes)):
        raise InvalidEventsError(
            "Pass one user's events as a list of dicts with 'item_id', 'event_type' and 'timestamp', "
            "or a batch as a list of such lists."
        )
    if not isinstance(events, Sequence):
        raise InvalidEventsError(f"Events must be a list, got {type(events).__name__}.")
    return len(events) == 0 or isinstance(events[0], Mapping)


def event_columns(
    batch: Sequence[Sequence[Mapping[str, Any]]],
) -> tuple[list[list[str]], list[list[str]], list[list[int]]]:
    """Raw event dicts → parallel ``item_ids``, ``event_types``, ``timestamps`` lists, each user sorted by time.

    Raises:
        InvalidEventsError: naming the user and event index of the first malformed event.
    """
    items, types, times = [], [], []
    for user, sequence in enumerate(batch):
        if isinstance(sequence, (Mapping, str, bytes)) or not isinstance(sequence, Sequence):
            raise InvalidEventsError(f"User {user}: expected a list of event dicts, got {type(sequence).__name__}.")
        user_items, user_types, user_times = [], [], []
        for index, event in enumerate(sequence):
            try:
                item, event_type, timestamp = event["item_id"], event["event_type"], event["timestamp"]
                if item is None or event_type is None or isinstance(timestamp, bool):
                    raise TypeError
                timestamp = int(timestamp)
            except (KeyError, TypeError, ValueError, OverflowError):
                raise _event_error(user, index, event) from None
            user_items.append(item if type(item) is str else str(item))
            user_types.append(event_type if type(event_type) is str else str(event_type))
            user_times.append(timestamp)
        if any(later < earlier for earlier, later in zip(user_times, user_times[1:])):
            order = sorted(range(len(user_times)), key=user_times.__getitem__)  # stable: ties keep their order
            user_items = [user_items[i] for i in order]
            user_types = [user_types[i] for i in order]
            user_times = [user_times[i] for i in order]
        items.append(user_items)
        types.append(user_types)
        times.append(user_times)
    return items, types, times


def _event_error(user: int, index: int, event: Any) -> InvalidEventsError:
    where = f"User {user}, event {index}"
    if not isinstance(event, Mapping):
        return InvalidEventsError(f"{where}: expected a dict, got {type(event).__name__}.")
    missing = [key for key in ("item_id", "event_type", "timestamp") if event.get(key) is None]
    if missing:
        return InvalidEventsError(
            f"{where}: missing {', '.join(missing)} (each event needs 'item_id', 'event_type' and 'timestamp')."
        )
    return InvalidEventsError(f"{where}: timestamp must be unix seconds (an integer), got {event['timestamp']!r}.")


@dataclass
class EncodedEvents:
    """A batch of users' events as model inputs, plus what inference needs to know about them.

    Attributes:
        inputs: ``input_ids``, ``behavior_ids``, ``time_ids``, ``attention_mask`` (left-padded, mask appended).
        single: whether the caller passed one user's events (not a batch).
        item_token_ids: per user, every event's item token id, oldest first (unknown items get a special id).
        unknown_events: per user, how many events have an item unknown to the vocabulary.
        last_timestamps: per user, the latest event time (``None`` without events).
    """

    inputs: dict[str, torch.Tensor]
    single: bool
    item_token_ids: list[np.ndarray]
    unknown_events: list[int]
    last_timestamps: list[int | None]


def encode_events(
    tokenizer: BehaviorTokenizer,
    events: Any,
    *,
    max_length: int,
    device: torch.device | str | None = None,
    query_timestamps: Sequence[int] | int | None = None,
    use_query_time: bool = False,
    max_query_gap: int | None = None,
) -> EncodedEvents:
    """Tokenize one user's raw events or a batch, with the appended ``[MASK]`` ("what comes next").

    ``use_query_time``: give the mask the gap from the last event to ``query_timestamps`` (the prediction
    time, default: each user's last event, i.e. a gap of 0), as purchase fine-tuning does. Next-item
    inference does not: pretraining and evaluation leave the mask's gap unknown. ``max_query_gap``: cap that
    gap at this many seconds (a classifier's ``config.max_query_gap_seconds``, as fine-tuning encoded it).
    """
    single = is_single_user(events)
    batch = [events] if single else list(events)
    items, types, times = event_columns(batch)
    last_timestamps = [row[-1] if row else None for row in times]

    queries = None
    if use_query_time:
        if query_timestamps is None:
            queries = [last if last is not None else 0 for last in last_timestamps]
        elif np.ndim(query_timestamps) == 0:
            queries = [int(query_timestamps)] * len(batch)
        else:
            queries = [int(q) for q in query_timestamps]
            if len(queries) != len(batch):
                raise InvalidEventsError(
                    f"query_timestamp needs one value per user ({len(batch)}), got {len(queries)}."
                )
        if max_query_gap is not None:
            queries = [q if last is None else min(q, last + int(max_query_gap)) for q, last in zip(queries, last_timestamps)]
    try:
        encoded = tokenizer.encode_sequences(
            items, types, times, append_mask=True, query_timestamps=queries, max_length=max_length, return_tensors="pt"
        )
    except ValueError as error:  # unknown event types
        raise InvalidEventsError(str(error)) from None
    # Every event's item token id: read off the encoding when the whole history fits (left padding, mask
    # last), else (history truncated) from the tokenizer, so `exclude_seen` and the counts see all events.
    input_ids = encoded["input_ids"].numpy()
    length, keep = input_ids.shape[1], max_length - 1
    per_user = [
        input_ids[row, length - 1 - len(user_items) : length - 1]
        if len(user_items) <= keep
        else tokenizer.item_token_ids(user_items)
        for row, user_items in enumerate(items)
    ]
    inputs = {name: encoded[name].to(device) if device is not None else encoded[name] for name in MODEL_INPUT_NAMES}
    # Unseen items get a special id: [UNK], or a hash bucket with unseen_items="hash" (all below the items).
    unknown = [int((ids < tokenizer.num_special_tokens).sum()) for ids in per_user]
    return EncodedEvents(inputs, single, per_user, unknown, last_timestamps)


def add_candidate_inputs(
    encoded: EncodedEvents,
    tokenizer: BehaviorTokenizer,
    config: Any,
    batch: Sequence[Sequence[Mapping[str, Any]]],
    candidates: Sequence[str],
    candidate_categories: Sequence[str | None] | None = None,
    candidate_events: Sequence[int] | None = None,
) -> EncodedEvents:
    """Make the appended query token each user's candidate item, as item-conversion / click fine-tuning does
    (``seqbert.training.finetune.encode_task_rows``): its token id replaces ``[MASK]``, and with
    ``config.candidate_match`` every history event gets its match type with the candidate (same item, same
    category, other; raw ids, so unknown items match too), the query the strongest match of the whole history;
    with ``config.candidate_popularity``, ``log1p(candidate_events)``."""
    if len(candidates) != len(batch):
        raise InvalidEventsError(f"{len(batch)} users but {len(candidates)} candidates.")
    inputs = dict(encoded.inputs)
    input_ids = inputs["input_ids"].clone()
    input_ids[:, -1] = torch.as_tensor(np.asarray(tokenizer.item_token_ids([str(c) for c in candidates]), dtype=np.int64))
    inputs["input_ids"] = input_ids
    if getattr(config, "candidate_match", False):
        matches = torch.zeros_like(input_ids)
        for row, (events, candidate) in enumerate(zip(batch, candidates)):
            ordered = sorted(events, key=lambda event: int(event["timestamp"]))  # as event_columns orders them
            category = None if candidate_categories is None else candidate_categories[row]
            types = [
                CANDIDATE_MATCH_ITEM if str(e["item_id"]) == str(candidate)
                else CANDIDATE_MATCH_CATEGORY if category is not None and e.get("category") is not None
                and str(e["category"]) == str(category) else CANDIDATE_MATCH_OTHER
                for e in ordered
            ]  # fmt: skip
            kept = types[len(types) - min(len(types), input_ids.shape[1] - 1) :]
            if kept:
                matches[row, input_ids.shape[1] - 1 - len(kept) : -1] = torch.as_tensor(kept)
            matches[row, -1] = CANDIDATE_MATCH_ITEM + max(types, default=CANDIDATE_MATCH_OTHER)
        inputs["candidate_match_ids"] = matches.to(input_ids.device)
    if getattr(config, "candidate_popularity", False):
        if candidate_events is None:
            raise InvalidEventsError("This model was fine-tuned with candidate popularity: pass candidate_events (each "
                                     "candidate's event count, all users, before the prediction time).")  # fmt: skip
        popularity = np.log1p(np.maximum(np.asarray(candidate_events, dtype=np.float64), 0.0)).astype(np.float32)
        inputs["candidate_log_popularity"] = torch.as_tensor(popularity).to(input_ids.device)
    return EncodedEvents(inputs, encoded.single, encoded.item_token_ids, encoded.unknown_events, encoded.last_timestamps)


def scale_tabular_features(state: Mapping[str, Any], features: Any) -> torch.Tensor:
    """Raw tabular features `(rows, len(state["names"]))` scaled as fine-tuning scaled them (the saved
    ``config.tabular_scaler``: kept columns, training mean / std, clipped at ``±clip``)."""
    x = np.atleast_2d(np.asarray(features, dtype=np.float64))
    if x.shape[1] != len(state["names"]):
        raise InvalidEventsError(f"tabular_features need {len(state['names'])} columns ({', '.join(state['names'][:3])}, ...), got {x.shape[1]}.")
    kept = np.asarray(state["kept"], dtype=bool)
    scaled = np.clip((x[:, kept] - np.asarray(state["mean"])) / np.asarray(state["std"]), -state["clip"], state["clip"])
    return torch.as_tensor(scaled, dtype=torch.float32)


def _explain_module() -> Any:
    """:mod:`seqbert.explain`, imported by name on first use: a model folder copies this file without it (remote
    code), and transformers requires every ``from .x import`` of a copied file to be in the folder."""
    try:
        return importlib.import_module(".explain", __package__)
    except ModuleNotFoundError as error:
        if not str(error.name).endswith("explain"):
            raise
        raise ImportError("explain needs the seqbert package: pip install 'seqbert[explain]'.") from None


def _chunks(events: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(events), size):
        yield events[start : start + size]


def _device_of(model: Any, device: torch.device | str | None) -> torch.device | None:
    if device is not None:
        return torch.device(device)
    model_device = getattr(model, "device", None)
    return torch.device(model_device) if model_device is not None else None


def _max_length(model: Any, tokenizer: BehaviorTokenizer, max_length: int | None) -> int:
    if max_length is not None:
        return int(max_length)
    limits = [tokenizer.max_length, getattr(getattr(model, "config", None), "max_position_embeddings", None)]
    return int(min(limit for limit in limits if limit))


# ---------------------------------------------------------------------------------------------------------------
# Recommender
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Recommendations:
    """One user's top items, best first. Iterating yields ``(item_id, score)`` pairs.

    Attributes:
        item_ids: external item ids (the catalog's own ids).
        scores: their model scores (logits over the full catalog; higher is better).
        unknown_events: how many of the user's events have an item the model never saw in training
            (cold-start items: encoded as ``[UNK]``, or a hash bucket if the tokenizer has them; the
            events still count in the history and the time gaps).
        unknown_candidates: requested candidates that are not in the model's catalog (not ranked).
    """

    item_ids: list[str]
    scores: list[float]
    unknown_events: int = 0
    unknown_candidates: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[str, float]]:
        return iter(zip(self.item_ids, self.scores))

    def __len__(self) -> int:
        return len(self.item_ids)

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [{"item_id": item, "score": score} for item, score in self],
            "unknown_events": self.unknown_events,
            "unknown_candidates": list(self.unknown_candidates),
        }


class Recommender:
    """Next-item recommendations and embeddings from a masked-behavior SeqBERT model.

    Example:

    ```python
    rec = Recommender.from_pretrained("runs/demo/seqbert-pretrained")
    events = [{"item_id": "i00042", "event_type": "view", "timestamp": 1_700_000_000}]
    for item_id, score in rec.recommend(events, k=5):
        print(item_id, score)
    ```

    Args:
        model: a :class:`~seqbert.SeqBertForMaskedBehaviorModeling` (or any object with its
            ``next_item_scores`` method and a ``config``, e.g. :class:`seqbert.export.OnnxNextItemModel`).
        tokenizer: the model's :class:`~seqbert.BehaviorTokenizer`.
        max_length: longest encoded history, appended mask included (default: the smaller of the
            tokenizer's and the model's limit); older events are dropped.
        batch_size: users scored per forward pass for batch inputs.
        device: where inputs go (default: the model's device).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: BehaviorTokenizer,
        *,
        max_length: int | None = None,
        batch_size: int = 256,
        device: torch.device | str | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = _max_length(model, tokenizer, max_length)
        self.batch_size = int(batch_size)
        self.device = _device_of(model, device)
        num_items = getattr(getattr(model, "config", None), "num_items", None)
        if num_items is not None and num_items != len(tokenizer.items):
            raise ValueError(
                f"The model scores {num_items} items but the tokenizer has {len(tokenizer.items)}: "
                "load both from the same folder."
            )
        self._item_array = np.array(tokenizer.items, dtype=object)

    @classmethod
    def from_pretrained(
        cls,
        folder: str,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> Recommender:
        """Load the model and tokenizer of a saved masked-behavior folder (CPU unless ``device`` says otherwise).

        Keyword arguments other than ``max_length``, ``batch_size`` go to ``from_pretrained`` of the model.
        """
        from .modeling_seqbert import SeqBertForMaskedBehaviorModeling

        options = {key: kwargs.pop(key) for key in ("max_length", "batch_size") if key in kwargs}
        if dtype is not None:
            kwargs["dtype"] = dtype
        model = SeqBertForMaskedBehaviorModeling.from_pretrained(folder, **kwargs).to(device).eval()
        tokenizer = BehaviorTokenizer.from_pretrained(folder)
        return cls(model, tokenizer, device=device, **options)

    @property
    def items(self) -> list[str]:
        """The catalog: external item ids in score-column order."""
        return self.tokenizer.items

    @property
    def num_items(self) -> int:
        return len(self._item_array)

    # ----------------------------------------------------------------- scoring
    def encode(self, events: Any) -> EncodedEvents:
        """Model inputs for one user's raw events or a batch (next-item form: the mask's gap is unknown)."""
        return encode_events(self.tokenizer, events, max_length=self.max_length, device=self.device)

    def score(self, events: Any) -> torch.Tensor:
        """Raw scores `(num_users, num_items)` over the whole catalog (columns in :attr:`items` order)."""
        single = is_single_user(events)
        batch = [events] if single else list(events)
        scores = [score_next_items(self.model, self.encode(chunk).inputs) for chunk in _chunks(batch, self.batch_size)]
        if not scores:
            return torch.zeros(0, self.num_items)
        return torch.cat([s.float().cpu() for s in scores])

    def recommend(
        self,
        events: Any,
        k: int = 10,
        *,
        exclude_seen: bool = False,
        candidates: Sequence[str] | Sequence[Sequence[str]] | None = None,
    ) -> Recommendations | list[Recommendations]:
        """Top-``k`` next items for one user's events (a :class:`Recommendations`) or a batch (a list of them).

        Args:
            events: one user's events (list of dicts with ``item_id``, ``event_type``, ``timestamp``) or a
                list of such lists. Items unseen in training are encoded as ``[UNK]`` and counted in
                ``Recommendations.unknown_events``; unknown event types raise :class:`InvalidEventsError`.
            k: how many items (fewer if the catalog, the candidates or the unseen items run out).
            exclude_seen: drop every catalog item that appears anywhere in the events passed.
            candidates: rank only these external ids (one list for every user, or one list per user);
                ids not in the catalog are listed in ``Recommendations.unknown_candidates``.
        """
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}.")
        single = is_single_user(events)
        batch = [events] if single else list(events)
        per_user_candidates = self._candidate_lists(candidates, len(batch))
        results: list[Recommendations] = []
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            encoded = self.encode(chunk)
            scores = score_next_items(self.model, encoded.inputs).float().cpu()
            chunk_candidates = per_user_candidates[start : start + len(chunk)] if per_user_candidates else None
            results.extend(self.rank(scores, encoded, k, exclude_seen=exclude_seen, candidates=chunk_candidates))
        return results[0] if single else results

    def rank(
        self,
        scores: torch.Tensor,
        encoded: EncodedEvents,
        k: int,
        *,
        exclude_seen: bool = False,
        candidates: Sequence[Sequence[str] | None] | None = None,
    ) -> list[Recommendations]:
        """Scores `(num_users, num_items)` → per-user :class:`Recommendations` (seen / candidate filtering, top-k)."""
        offset = self.tokenizer.num_special_tokens
        unknown_candidates: list[list[str]] = [[] for _ in range(scores.shape[0])]
        if exclude_seen:
            scores = scores.clone()  # the caller's scores stay as they were
            for row, ids in enumerate(encoded.item_token_ids):
                seen = ids[ids >= offset] - offset
                if len(seen):
                    scores[row, torch.as_tensor(seen)] = float("-inf")
        if candidates is not None:
            allowed = torch.zeros_like(scores, dtype=torch.bool)
            for row, wanted in enumerate(candidates):
                if wanted is None:
                    allowed[row] = True
                    continue
                wanted = list(dict.fromkeys(str(item) for item in wanted))
                ids = self.tokenizer.item_token_ids(wanted) if wanted else np.zeros(0, dtype=np.int64)
                known = ids >= offset
                unknown_candidates[row] = [item for item, ok in zip(wanted, known.tolist()) if not ok]
                allowed[row, torch.as_tensor(ids[known] - offset, dtype=torch.long)] = True
            scores = scores.masked_fill(~allowed, float("-inf"))
        top_scores, top_columns = scores.topk(min(int(k), scores.shape[1]), dim=1)
        # Rows in NumPy: per-row torch indexing cost more than the top-k itself on a 32-row serving batch.
        top_scores, top_columns = top_scores.cpu().numpy(), top_columns.cpu().numpy()
        finite_rows = np.isfinite(top_scores)
        unknown = encoded.unknown_events
        results = []
        for row in range(scores.shape[0]):
            finite = finite_rows[row]
            columns, row_scores = top_columns[row], top_scores[row]
            if not finite.all():  # excluded or non-candidate items, when fewer than k remain
                columns, row_scores = columns[finite], row_scores[finite]
            results.append(
                Recommendations(
                    item_ids=self._item_array[columns].tolist(),
                    scores=row_scores.tolist(),
                    unknown_events=unknown[row],
                    unknown_candidates=unknown_candidates[row],
                )
            )
            if unknown[row]:
                logger.debug("User %d: %d event(s) with items unknown to the model ([UNK]).", row, unknown[row])
        return results

    @staticmethod
    def _candidate_lists(candidates: Any, num_users: int) -> list[Sequence[str] | None] | None:
        if candidates is None:
            return None
        if isinstance(candidates, (str, bytes)) or not isinstance(candidates, Sequence):
            raise ValueError("candidates must be a list of item ids (or one list per user).")
        per_user = len(candidates) > 0 and all(
            item is None or (isinstance(item, Sequence) and not isinstance(item, (str, bytes))) for item in candidates
        )
        if not per_user:
            return [candidates] * num_users
        if len(candidates) != num_users:
            raise ValueError(f"candidates has {len(candidates)} lists for {num_users} users.")
        return list(candidates)

    def explain(self, events: Any, item_id: str, **options: Any) -> Any:
        """Why ``item_id`` gets its score for one user: one attribution per event (item, event type and time parts),
        an :class:`seqbert.explain.Explanation`; see :func:`seqbert.explain.explain_recommendation` for ``options``
        (``method``, ``n_steps``). Needs Captum (``pip install 'seqbert[explain]'``)."""
        return _explain_module().explain_recommendation(self, events, item_id, **options)

    # ----------------------------------------------------------------- embeddings
    def embed_users(self, events: Any) -> np.ndarray:
        """User vectors: the encoder's hidden state at the appended ``[MASK]`` (after the final LayerNorm).

        Returns `(hidden_size,)` for one user's events, `(num_users, hidden_size)` for a batch.
        """
        if not hasattr(self.model, "seqbert"):
            raise TypeError("embed_users needs the PyTorch model (an exported ONNX scorer has no hidden states).")
        single = is_single_user(events)
        batch = [events] if single else list(events)
        vectors = [
            user_hidden_states(self.model, self.encode(chunk).inputs).float().cpu()
            for chunk in _chunks(batch, self.batch_size)
        ]
        matrix = torch.cat(vectors).numpy() if vectors else np.zeros((0, self.model.config.hidden_size), np.float32)
        return matrix[0] if single else matrix

    def item_embeddings(self) -> tuple[list[str], np.ndarray]:
        """The catalog's external ids and their item embeddings `(num_items, hidden_size)` (float32).

        These are the items' output vectors (the input embeddings they are tied to, plus the category
        embedding when the model has one): an item's score is ``head.transform(user_hidden) @ vector + bias``
        (for the default ``next_item_query`` "mask"; the other queries add a left-to-right pass), plus the
        learned repeat-aware offset of items already in the user's history when ``repeat_bias_buckets`` > 0.
        """
        if not hasattr(self.model, "item_output_weights"):
            raise TypeError("item_embeddings needs the PyTorch model.")
        with torch.no_grad():
            weight = self.model.item_output_weights()
        return self.items, weight.detach().float().cpu().numpy().copy()


# ---------------------------------------------------------------------------------------------------------------
# Classifier (purchase prediction)
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Prediction:
    """One user's predicted probability of the positive label, and how many events had unknown items."""

    probability: float
    unknown_events: int = 0
    query_timestamp: int | None = None


class Classifier:
    """Probabilities from a fine-tuned :class:`~seqbert.SeqBertForSequenceClassification` folder.

    The classifier pools the appended ``[MASK]``, whose time id encodes the gap from the user's last event
    to the *prediction time* (fine-tuning uses the label cutoff). Pass that time as ``query_timestamp``
    (unix seconds, e.g. "now"); by default it is each user's last event's timestamp (a gap of 0), which
    suits scoring right after an event but underestimates the recency gap otherwise.

    Args:
        model: the classification model; tokenizer: its tokenizer.
        positive_label: the label whose probability :meth:`predict_proba` returns (default 1, "purchase").
    """

    def __init__(
        self,
        model: Any,
        tokenizer: BehaviorTokenizer,
        *,
        max_length: int | None = None,
        batch_size: int = 256,
        device: torch.device | str | None = None,
        positive_label: int = 1,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = _max_length(model, tokenizer, max_length)
        self.batch_size = int(batch_size)
        self.device = _device_of(model, device)
        self.positive_label = int(positive_label)
        num_labels = int(getattr(model.config, "num_labels", 2))
        if num_labels > 1 and not 0 <= self.positive_label < num_labels:
            raise ValueError(f"positive_label {positive_label} is not one of the model's {num_labels} labels.")

    @classmethod
    def from_pretrained(
        cls, folder: str, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None, **kwargs: Any
    ) -> Classifier:
        """Load a saved classifier folder (CPU unless ``device`` says otherwise)."""
        from .modeling_seqbert import SeqBertForSequenceClassification

        options = {key: kwargs.pop(key) for key in ("max_length", "batch_size", "positive_label") if key in kwargs}
        if dtype is not None:
            kwargs["dtype"] = dtype
        config_file = Path(folder) / "config.json"
        if config_file.is_file():  # a local folder (a Hub id is checked by transformers)
            architectures = json.loads(config_file.read_text()).get("architectures") or []
            if "SeqBertForSequenceClassification" not in architectures:
                raise ValueError(
                    f"{folder} holds a {', '.join(architectures) or 'model'} folder, not a fine-tuned classifier (its "
                    "classification head would be random). Fine-tune it first: `seqbert finetune --model_name_or_path "
                    f"{folder} ...`, or load it with Recommender.from_pretrained."
                )
        model = SeqBertForSequenceClassification.from_pretrained(folder, **kwargs).to(device).eval()
        return cls(model, BehaviorTokenizer.from_pretrained(folder), device=device, **options)

    @property
    def label_name(self) -> str:
        id2label = getattr(self.model.config, "id2label", None) or {}
        return str(id2label.get(self.positive_label, self.positive_label))

    @property
    def needs_candidates(self) -> bool:
        """Whether the model scores (user, candidate item) pairs: an item-conversion or click classifier."""
        config = self.model.config
        return getattr(config, "finetuning_task", None) in ("item-conversion", "click") or bool(
            getattr(config, "candidate_match", False) or getattr(config, "candidate_popularity", False)
        )

    def encode(
        self,
        batch: Sequence[Sequence[Mapping[str, Any]]],
        query_timestamps: Sequence[int] | int | None,
        candidates: Sequence[str] | None = None,
        candidate_categories: Sequence[str | None] | None = None,
        candidate_events: Sequence[int] | None = None,
        tabular_features: Any = None,
    ) -> EncodedEvents:
        """Inputs of a batch of users exactly as fine-tuning encoded its rows: the query gap capped at
        ``config.max_query_gap_seconds``, for item models the candidate as the query token (:func:`add_candidate_inputs`),
        and for models fine-tuned with tabular features those (raw) features, scaled as in fine-tuning."""
        if self.needs_candidates and candidates is None:
            raise InvalidEventsError("This classifier scores (user, candidate item) pairs: pass candidates (one item id per user).")
        encoded = encode_events(
            self.tokenizer, batch, max_length=self.max_length, device=self.device, query_timestamps=query_timestamps,
            use_query_time=True, max_query_gap=getattr(self.model.config, "max_query_gap_seconds", None),
        )  # fmt: skip
        if candidates is not None:
            encoded = add_candidate_inputs(
                encoded, self.tokenizer, self.model.config, batch, candidates, candidate_categories, candidate_events
            )  # fmt: skip
        if getattr(self.model.config, "num_tabular_features", 0):
            if tabular_features is None:
                raise InvalidEventsError(
                    "This classifier reads tabular features: pass tabular_features, one row of "
                    "seqbert.data.features.labelled_features per user (its names are config.tabular_scaler['names'])."
                )
            encoded.inputs["tabular_features"] = scale_tabular_features(self.model.config.tabular_scaler, tabular_features).to(self.device)
        return encoded

    def logits(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """`(batch, num_labels)` logits of encoded inputs, with autograd (:meth:`label_probabilities` runs it
        without; :meth:`explain` differentiates it)."""
        names = (*MODEL_INPUT_NAMES, "candidate_match_ids", "candidate_log_popularity", "tabular_features")
        return self.model(**{name: inputs[name] for name in names if name in inputs}).logits.float()

    @torch.no_grad()
    def label_probabilities(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """`(batch, num_labels)` probabilities of encoded inputs (a one-logit model: ``[1 - p, p]``)."""
        logits = self.logits(inputs)
        if logits.shape[-1] == 1:
            positive = torch.sigmoid(logits[:, 0])
            return torch.stack([1 - positive, positive], dim=-1)
        return torch.softmax(logits, dim=-1)

    def _probabilities(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.label_probabilities(inputs)[:, self.positive_label]

    def predict(
        self,
        events: Any,
        query_timestamp: int | Sequence[int] | None = None,
        *,
        candidates: str | Sequence[str] | None = None,
        candidate_categories: str | Sequence[str | None] | None = None,
        candidate_events: int | Sequence[int] | None = None,
        tabular_features: Any = None,
    ) -> Prediction | list[Prediction]:
        """:class:`Prediction` for one user's events, or a list for a batch (``query_timestamp``: one or per user).

        Item-conversion / click models score a (user, candidate item) pair: pass ``candidates`` (one item id
        per user; a single id for one user), and, as the model was fine-tuned, ``candidate_categories`` (events
        then need a ``category``) and ``candidate_events`` (the candidate's event count, all users, before the
        prediction time). Models fine-tuned with ``--tabular_features`` also need ``tabular_features``: the raw
        features of :func:`seqbert.data.features.labelled_features`, one row per user.
        """
        single = is_single_user(events)
        batch = [events] if single else list(events)

        def per_user(value: Any) -> list | None:
            if value is None:
                return None
            values = [value] if single else list(value)
            if len(values) != len(batch):
                raise InvalidEventsError(f"Expected one value per user ({len(batch)}), got {len(values)}.")
            return values

        candidates, candidate_categories, candidate_events = map(per_user, (candidates, candidate_categories, candidate_events))
        if query_timestamp is not None and np.ndim(query_timestamp) > 0 and len(query_timestamp) != len(batch):
            raise InvalidEventsError(
                f"query_timestamp needs one value per user ({len(batch)}), got {len(query_timestamp)}."
            )
        results: list[Prediction] = []
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            window = slice(start, start + len(chunk))
            queries = query_timestamp
            if query_timestamp is not None and np.ndim(query_timestamp) > 0:
                queries = list(query_timestamp)[window]
            encoded = self.encode(
                chunk, queries, candidates and candidates[window], candidate_categories and candidate_categories[window],
                candidate_events and candidate_events[window],
                None if tabular_features is None else np.atleast_2d(np.asarray(tabular_features, dtype=np.float64))[window],
            )  # fmt: skip
            probabilities = self._probabilities(encoded.inputs).cpu().tolist()
            for row, probability in enumerate(probabilities):
                if queries is None:
                    query = encoded.last_timestamps[row]
                else:
                    query = int(queries) if np.ndim(queries) == 0 else int(queries[row])
                results.append(Prediction(float(probability), encoded.unknown_events[row], query))
        return results[0] if single else results

    def predict_proba(self, events: Any, query_timestamp: int | Sequence[int] | None = None, **candidate_inputs: Any) -> float | np.ndarray:
        """Probability of the positive label (``"purchase"``): a float for one user, an array for a batch
        (item models: ``candidates=`` etc., see :meth:`predict`)."""
        predictions = self.predict(events, query_timestamp, **candidate_inputs)
        if isinstance(predictions, Prediction):
            return predictions.probability
        return np.array([p.probability for p in predictions], dtype=np.float64)

    def explain(self, events: Any, query_timestamp: int | None = None, candidate: str | None = None, **options: Any) -> Any:
        """Why one user gets their probability: one attribution per event (item, event type and time parts), an
        :class:`seqbert.explain.Explanation`; see :func:`seqbert.explain.explain_prediction` for ``options``
        (``method``, ``n_steps``, ``candidate_category``, ``candidate_events``, ``tabular_features``). Needs Captum
        (``pip install 'seqbert[explain]'``)."""
        return _explain_module().explain_prediction(self, events, query_timestamp, candidate, **options)


Predictor = Classifier  # alias

__all__ = [
    "Classifier",
    "EncodedEvents",
    "InvalidEventsError",
    "Prediction",
    "Predictor",
    "Recommendations",
    "Recommender",
    "add_candidate_inputs",
    "encode_events",
    "event_columns",
    "is_single_user",
    "score_next_items",
    "user_hidden_states",
]
