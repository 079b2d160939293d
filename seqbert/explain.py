"""Explaining one prediction: how much each of the user's own events moved a purchase probability or an item's score.

:meth:`seqbert.Classifier.explain` and :meth:`seqbert.Recommender.explain` call :func:`explain_prediction` and
:func:`explain_recommendation`. Both encode the events with the model's own ``encode`` and score them with the
model's own scoring code (``Classifier.logits``, ``SeqBertForMaskedBehaviorModeling.next_item_logits``, the
differentiable twin of ``next_item_scores``), so the explained prediction is the one ``predict_proba`` /
``recommend`` return (tested).

**What is explained** is a logit: the log-odds of the positive label for a classifier (``sigmoid`` of it is the
probability), the item's score for a recommender (the next-item logit ``recommend`` ranks by).

**Attribution.** Every event enters the model as the sum of an item embedding (with its category embedding, when the
model has categories), an event-type embedding and a time-gap embedding (plus, for item-conversion / click models,
its candidate-match embedding). Each part of each event is attributed separately, with Captum (Kokhlikyan et al.
2020, https://captum.ai):

- ``"integrated_gradients"`` (default; Sundararajan et al. 2017, https://arxiv.org/abs/1703.01365): the gradient
  of the logit averaged along the straight line from the baseline to the actual embeddings (Gauss-Legendre
  quadrature, ``n_steps`` points), times (actual - baseline). The attributions sum to logit - baseline logit
  (completeness) up to the quadrature error, reported as ``completeness_residual``.
- ``"input_x_gradient"``: gradient at the actual input times (actual - baseline); one backward pass, no completeness.
- ``"occlusion"``: logit minus the logit with that one part of that one event replaced by its baseline (Captum's
  ``FeatureAblation``); an event's attribution is the sum of its parts' (no completeness either).

**Baseline.** An event is "blanked" to the embeddings of the masking tokens: item ``[MASK]``, event type ``[MASK]``,
time ``[MASK]`` (candidate match: "another item"). That is exactly how masked-behavior pretraining hides an event
(``DataCollatorForMaskedBehaviorModeling``), so the baseline is an input the model has learned to read, "an event
happened here, content unknown", not an all-zero vector it never saw; the recency positions, the query token
(``[MASK]`` or the candidate, with the query time) and any tabular features are kept as they are. The baseline logit
is the model's output on that blanked input (tested). The repeat-aware term of next-item models (a learned offset
on items already in the history, ``config.repeat_bias_buckets``) is exactly additive per event: it is reported as
the ``"repeat"`` part of the events of the explained item.

Attributions describe the model's computation, not the shop: see "Reading an explanation" in
docs/explaining.md.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .inference import (
    MODEL_INPUT_NAMES,
    Classifier,
    EncodedEvents,
    InvalidEventsError,
    Recommender,
    event_columns,
    is_single_user,
    score_next_items,
)
from .modeling_seqbert import CANDIDATE_MATCH_OTHER
from .tokenization_seqbert import BEHAVIOR_MASK, TIME_MASK

METHODS = ("integrated_gradients", "input_x_gradient", "occlusion")
DEFAULT_STEPS = 16
"""Gauss-Legendre points of integrated gradients. On the benchmark models (BENCHMARKS.md) the completeness residual
stays below 0.1 % of the logit range; raise ``n_steps`` where an explanation's ``completeness_residual`` is larger."""
BASELINE = "masked events: item, event type and time replaced by the [MASK] tokens of pretraining (positions, query token kept)"

LogitFunction = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


@dataclass
class EventAttribution:
    """One event and how much it moved the explained logit (positive: towards a higher prediction).

    Attributes:
        index: the event's place among the user's events in time order (0 = oldest).
        item_id, event_type, timestamp: the event as given.
        attribution: the sum of ``parts``.
        parts: ``"item"`` (with the item's category), ``"event_type"``, ``"time"`` (the gap since the previous event),
            and when the model has them ``"candidate_match"`` and ``"repeat"``.
    """

    index: int
    item_id: str
    event_type: str
    timestamp: int
    attribution: float
    parts: dict[str, float]


@dataclass
class Explanation:
    """A prediction and one attribution per event, in logit space; every field is plain data (:meth:`to_dict`).

    Attributes:
        target: what is predicted: the positive label's name (classifier) or the item id (recommender).
        prediction: the probability (classifier) or the item's score (recommender), as ``predict_proba`` /
            ``recommend`` give it.
        logit: the explained value: the log-odds of ``prediction`` (classifier) or the score itself (recommender).
        baseline_logit: the model's logit when every event is blanked (see ``baseline``).
        events: the events the model read, oldest first (older ones beyond its ``max_length`` are ``dropped_events``).
        completeness_residual: ``logit - baseline_logit - sum(attributions)``; near 0 for integrated gradients.
        method: the attribution method; n_steps: its integration points (integrated gradients only).
        baseline: what the baseline is (see the module docstring).
        rank: the item's rank in the full catalog (recommender; 1 = best, ties counted in its favour).
        dropped_events: older events beyond the model's ``max_length``, not read and not attributed.
        unknown_events: events whose item the model does not know (read as ``[UNK]``, attributed like the others).
        seconds: time spent attributing (after encoding and scoring).
        parts: the names of the parts of every event's ``parts``.
    """

    target: str
    prediction: float
    logit: float
    baseline_logit: float
    events: list[EventAttribution]
    method: str
    completeness_residual: float
    baseline: str = BASELINE
    n_steps: int | None = None
    rank: int | None = None
    dropped_events: int = 0
    unknown_events: int = 0
    seconds: float = 0.0
    parts: tuple[str, ...] = ("item", "event_type", "time")

    @property
    def attributions(self) -> np.ndarray:
        """`(num_events,)` attributions, oldest event first."""
        return np.array([event.attribution for event in self.events], dtype=np.float64)

    @property
    def relative_residual(self) -> float:
        """``|completeness_residual|`` as a share of the explained change ``|logit - baseline_logit|``."""
        return abs(self.completeness_residual) / max(abs(self.logit - self.baseline_logit), 1e-12)

    def top_events(self, k: int = 5, *, by: str = "value") -> list[dict[str, Any]]:
        """The ``k`` events with the largest attribution (``by="value"``: those that raised the prediction most) or
        the largest ``|attribution|`` (``by="magnitude"``: either direction), as plain dicts, strongest first."""
        if by not in ("value", "magnitude"):
            raise ValueError(f"by must be 'value' or 'magnitude', got {by!r}.")
        key = (lambda e: e.attribution) if by == "value" else (lambda e: abs(e.attribution))
        return [asdict(event) for event in sorted(self.events, key=key, reverse=True)[: max(int(k), 0)]]

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready data (``json.dumps`` works on it)."""
        data = asdict(self)
        data["parts"] = list(self.parts)
        data["relative_residual"] = self.relative_residual
        return data

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------------------


def explain_prediction(
    classifier: Classifier,
    events: Sequence[Mapping[str, Any]],
    query_timestamp: int | None = None,
    candidate: str | None = None,
    *,
    candidate_category: str | None = None,
    candidate_events: int | None = None,
    tabular_features: Any = None,
    method: str = "integrated_gradients",
    n_steps: int = DEFAULT_STEPS,
) -> Explanation:
    """Explain ``classifier.predict_proba(events, query_timestamp, ...)`` for one user's events.

    Args:
        classifier: a :class:`~seqbert.Classifier`.
        events: one user's raw events (dicts with ``item_id``, ``event_type``, ``timestamp``; any order).
        query_timestamp: the prediction time (default: the last event's timestamp), as in ``predict_proba``.
        candidate, candidate_category, candidate_events: the candidate item (item-conversion / click models) and
            what its candidate-aware inputs need, as ``predict(candidates=..., ...)`` takes them for one user.
        tabular_features: the raw tabular features of a model fine-tuned with them (held fixed, not attributed).
        method: one of :data:`METHODS`.
        n_steps: integration points of integrated gradients (more: smaller completeness residual, slower).
    """
    batch = _one_user(events, method)

    def per_user(value: Any) -> list | None:
        return None if value is None else [value]

    encoded = classifier.encode(
        batch, query_timestamp, per_user(candidate), per_user(candidate_category), per_user(candidate_events),
        None if tabular_features is None else np.atleast_2d(np.asarray(tabular_features, dtype=np.float64)),
    )  # fmt: skip
    positive = classifier.positive_label

    def logit(inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return positive_log_odds(classifier.logits(inputs), positive)

    with torch.no_grad():
        probability = float(classifier._probabilities(encoded.inputs)[0])  # what predict_proba returns
        value = float(logit(encoded.inputs)[0])
    return _explain(classifier.model, encoded, events, logit, value, classifier.label_name, probability, method, n_steps)


def explain_recommendation(
    recommender: Recommender,
    events: Sequence[Mapping[str, Any]],
    item_id: str,
    *,
    method: str = "integrated_gradients",
    n_steps: int = DEFAULT_STEPS,
) -> Explanation:
    """Explain the score ``recommender.recommend(events)`` gives ``item_id`` (any catalog item, recommended or not).

    Args:
        recommender: a :class:`~seqbert.Recommender` over a PyTorch model (an ONNX scorer has no gradients).
        events: one user's raw events (dicts with ``item_id``, ``event_type``, ``timestamp``; any order).
        item_id: the catalog item whose score is explained.
        method: one of :data:`METHODS`.
        n_steps: integration points of integrated gradients.
    """
    model = recommender.model
    if not hasattr(model, "next_item_logits"):
        raise TypeError("explain needs the PyTorch model (an exported ONNX scorer has no gradients).")
    batch = _one_user(events, method)
    token = int(recommender.tokenizer.item_token_ids([str(item_id)])[0])
    if token < recommender.tokenizer.num_special_tokens:
        raise ValueError(f"Item {item_id!r} is not in the model's catalog.")
    column = token - recommender.tokenizer.num_special_tokens
    encoded = recommender.encode(batch)

    def logit(inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return model.next_item_logits(*(inputs[name] for name in MODEL_INPUT_NAMES))[:, column].float()

    scores = score_next_items(model, encoded.inputs)[0].float()  # what recommend ranks by
    score = float(scores[column])
    explanation = _explain(model, encoded, events, logit, score, str(item_id), score, method, n_steps, repeat_column=column)
    explanation.rank = int((scores > scores[column]).sum()) + 1
    return explanation


def positive_log_odds(logits: torch.Tensor, positive_label: int) -> torch.Tensor:
    """`(batch,)` log-odds of ``positive_label`` from `(batch, num_labels)` logits: ``sigmoid`` of it is the label's
    probability (softmax; a one-logit model's sigmoid)."""
    if logits.shape[-1] == 1:
        return logits[:, 0] if positive_label == 1 else -logits[:, 0]
    others = torch.cat([logits[:, :positive_label], logits[:, positive_label + 1 :]], dim=-1)
    return logits[:, positive_label] - torch.logsumexp(others, dim=-1)


# ---------------------------------------------------------------------------------------------------------------
# The attribution
# ---------------------------------------------------------------------------------------------------------------


def _one_user(events: Any, method: str) -> list:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    if not is_single_user(events):
        raise InvalidEventsError("explain takes one user's events (a list of dicts), not a batch.")
    return [events]


def event_parts(model: Any, inputs: Mapping[str, torch.Tensor], events: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per part, the `(1, length, hidden)` embeddings (actual, baseline): the baseline blanks the positions of
    ``events`` (bool `(1, length)`) to the masking tokens and equals the actual embedding elsewhere."""
    embeddings = model.seqbert.embeddings

    def blank(ids: torch.Tensor, value: int) -> torch.Tensor:
        return torch.where(events, torch.full_like(ids, value), ids)

    ids, behaviors, times = inputs["input_ids"], inputs["behavior_ids"], inputs["time_ids"]
    with torch.no_grad():
        parts = {
            "item": (embeddings.item_vectors(ids), embeddings.item_vectors(blank(ids, model.config.mask_token_id))),
            "event_type": (embeddings.behavior_embeddings(behaviors), embeddings.behavior_embeddings(blank(behaviors, BEHAVIOR_MASK))),
            "time": (embeddings.time_embeddings(times), embeddings.time_embeddings(blank(times, TIME_MASK))),
        }  # fmt: skip
        if "candidate_match_ids" in inputs and hasattr(model, "candidate_match_embeddings"):
            matches = inputs["candidate_match_ids"]
            table = model.candidate_match_embeddings
            parts["candidate_match"] = (table(matches), table(blank(matches, CANDIDATE_MATCH_OTHER)))
    return {name: (actual.detach(), baseline.detach()) for name, (actual, baseline) in parts.items()}


@contextlib.contextmanager
def added_embeddings(model: Any, delta: torch.Tensor) -> Iterator[None]:
    """Add ``delta`` `(batch, length, hidden)` to the summed input embeddings (before their LayerNorm) of every
    encoder pass inside the block, through the ``extra_embeddings`` argument of ``SeqBertEmbeddings`` (so padding
    removal and every query pass see it as they see the model's own inputs). Only this thread's passes: a server
    may score other requests with the same model meanwhile."""
    owner = threading.get_ident()

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if threading.get_ident() != owner:
            return None
        if len(args) > 4:
            extra = args[4]
            return (*args[:4], delta if extra is None else extra + delta, *args[5:]), kwargs
        extra = kwargs.get("extra_embeddings")
        return args, {**kwargs, "extra_embeddings": delta if extra is None else extra + delta}

    handle = model.seqbert.embeddings.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


class EmbeddingPath:
    """The explained logit as a function of each part's embeddings `(rows, length, hidden)`: the model's inputs
    repeated ``rows`` times, each part's embedding swapped for the given one. Captum's methods call it."""

    def __init__(self, model: Any, inputs: Mapping[str, torch.Tensor], logit: LogitFunction, actual: Sequence[torch.Tensor]):
        self.model, self.inputs, self.logit = model, inputs, logit
        self.actual_sum = torch.stack(list(actual)).sum(0)

    def __call__(self, *parts: torch.Tensor) -> torch.Tensor:
        rows = parts[0].shape[0]
        inputs = {name: tensor.expand(rows, *tensor.shape[1:]) for name, tensor in self.inputs.items()}
        with added_embeddings(self.model, torch.stack(parts).sum(0) - self.actual_sum):
            return self.logit(inputs)


def _attribute(path: EmbeddingPath, actual: tuple, baseline: tuple, method: str, n_steps: int) -> list[torch.Tensor]:
    """Per part, `(length,)` attributions."""
    from captum.attr import FeatureAblation, InputXGradient, IntegratedGradients

    if method == "integrated_gradients":
        attributions = IntegratedGradients(path).attribute(actual, baselines=baseline, n_steps=int(n_steps), method="gausslegendre")
        return [a[0].sum(-1) for a in attributions]
    if method == "input_x_gradient":
        def shifted(*differences: torch.Tensor) -> torch.Tensor:
            return path(*(b + d for b, d in zip(baseline, differences)))

        attributions = InputXGradient(shifted).attribute(tuple((a - b).requires_grad_() for a, b in zip(actual, baseline)))
        return [a[0].sum(-1) for a in attributions]
    length = actual[0].shape[1]  # occlusion: feature (part k, position t) = k * length + t
    masks = tuple((k * length + torch.arange(length, device=a.device)).view(1, length, 1) for k, a in enumerate(actual))
    with torch.no_grad():
        attributions = FeatureAblation(path).attribute(
            actual, baselines=baseline, feature_mask=masks, perturbations_per_eval=len(actual) * length
        )
    return [a[0, :, 0] for a in attributions]


def _explain(
    model: Any,
    encoded: EncodedEvents,
    events: Sequence[Mapping[str, Any]],
    logit: LogitFunction,
    value: float,
    target: str,
    prediction: float,
    method: str,
    n_steps: int,
    repeat_column: int | None = None,
) -> Explanation:
    """``value``: ``logit(encoded.inputs)``, computed by the caller with the model's plain scoring path."""
    started = time.perf_counter()
    inputs = encoded.inputs
    items, types, times = (column[0] for column in event_columns([events]))
    length = inputs["input_ids"].shape[1]
    kept = min(len(items), length - 1)  # the most recent events, then the query token (left padding before them)
    positions = torch.arange(length - 1 - kept, length - 1, device=inputs["input_ids"].device)
    is_event = torch.zeros_like(inputs["input_ids"], dtype=torch.bool)
    is_event[0, positions] = True
    parts = event_parts(model, inputs, is_event)
    names = tuple(parts)
    actual = tuple(parts[name][0] for name in names)
    baseline = tuple(parts[name][1] for name in names)
    path = EmbeddingPath(model, inputs, logit, actual)
    with torch.no_grad():
        blanked = float(path(*baseline)[0])
    per_part = {name: torch.zeros(kept) for name in names}
    if kept:
        with torch.enable_grad():
            attributed = _attribute(path, actual, baseline, method, n_steps)
        per_part = {name: a[positions].detach().float().cpu() for name, a in zip(names, attributed)}
    if repeat_column is not None and getattr(model, "repeat_bias", None) is not None:
        # Exactly additive: the offsets the explained item gets from each of its own events (0 once blanked).
        with torch.no_grad():
            columns, offsets = model.next_item_history(inputs["input_ids"], inputs["behavior_ids"], inputs["attention_mask"])
        repeat = (offsets * (columns == repeat_column))[0, positions].float().cpu()
        per_part["repeat"] = repeat
        names = (*names, "repeat")
        blanked -= float(repeat.sum())
    totals = torch.stack([per_part[name] for name in names]).sum(0) if kept else torch.zeros(0)
    first = len(items) - kept
    explained = [
        EventAttribution(
            index=first + i, item_id=items[first + i], event_type=types[first + i], timestamp=int(times[first + i]),
            attribution=float(totals[i]), parts={name: float(per_part[name][i]) for name in names},
        )
        for i in range(kept)
    ]  # fmt: skip
    return Explanation(
        target=target, prediction=prediction, logit=value, baseline_logit=blanked, events=explained, method=method,
        completeness_residual=value - blanked - float(totals.sum()), n_steps=int(n_steps) if method == "integrated_gradients" else None,
        dropped_events=first, unknown_events=encoded.unknown_events[0], seconds=time.perf_counter() - started, parts=names,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Command-line helpers (seqbert explain)
# ---------------------------------------------------------------------------------------------------------------


def load_explainer(model_dir: str | Path, *, device: str = "cpu") -> Classifier | Recommender:
    """A :class:`~seqbert.Classifier` for a fine-tuned folder, else a :class:`~seqbert.Recommender`."""
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    if "SeqBertForSequenceClassification" in (config.get("architectures") or []):
        return Classifier.from_pretrained(str(model_dir), device=device)
    from .batch_scoring import load_recommender

    return load_recommender(model_dir, device=device)


def user_events(sequences: Any, user_id: str) -> list[dict[str, Any]]:
    """One user's events, as the API takes them, from :func:`seqbert.batch_scoring.read_user_sequences`' table."""
    import pyarrow as pa
    import pyarrow.compute as pc

    users = pc.cast(sequences.column("user_id"), pa.string())
    row = pc.index(users, str(user_id)).as_py()
    if row < 0:
        raise InvalidEventsError(f"User {user_id!r} has no events in the log ({sequences.num_rows} users read).")
    user = sequences.slice(row, 1).to_pylist()[0]
    return [
        {"item_id": item, "event_type": kind, "timestamp": int(stamp)}
        for item, kind, stamp in zip(user["item_ids"], user["event_types"], user["timestamps"])
    ]


def format_top_events(explanation: Explanation, k: int) -> str:
    """A plain-text table: the prediction, then the ``k`` events with the largest ``|attribution|``."""
    from datetime import datetime, timezone

    kind = "probability" if explanation.rank is None else f"score (rank {explanation.rank})"
    lines = [
        (f"{explanation.target}: {kind} {explanation.prediction:.4f}; logit {explanation.logit:+.4f} = baseline "
         f"{explanation.baseline_logit:+.4f} + events {sum(e.attribution for e in explanation.events):+.4f} + residual "
         f"{explanation.completeness_residual:+.4f} ({explanation.method})"),
        f"{'rank':>4}  {'attribution':>11}  {'time (UTC)':<16}  {'event':<8}  item  [" + " | ".join(explanation.parts) + "]",
    ]
    for place, event in enumerate(explanation.top_events(k, by="magnitude"), start=1):
        when = datetime.fromtimestamp(event["timestamp"], tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
        parts = " | ".join(f"{event['parts'][name]:+.3f}" for name in explanation.parts)
        lines.append(f"{place:>4}  {event['attribution']:>+11.4f}  {when:<16}  {event['event_type']:<8}  {event['item_id']}  [{parts}]")
    return "\n".join(lines)


__all__ = [
    "BASELINE",
    "DEFAULT_STEPS",
    "METHODS",
    "EventAttribution",
    "Explanation",
    "added_embeddings",
    "event_parts",
    "explain_prediction",
    "explain_recommendation",
    "format_top_events",
    "load_explainer",
    "positive_log_odds",
    "user_events",
]
