"""transformers pipelines over raw behavior events: ``next-behavior-recommendation`` and ``behavior-classification``.

After ``import seqbert`` (which calls :func:`register_pipelines`)::

    from transformers import pipeline
    recommend = pipeline("next-behavior-recommendation", model="runs/demo/seqbert-pretrained")
    recommend(events, k=5)          # [{"item_id": "...", "score": ...}, ...] for one user's events
    recommend([events_a, events_b]) # one list per user

A model folder can also carry the pipeline code (:func:`save_pipeline_code`): its ``config.json`` then
lists the task under ``custom_pipelines`` and the folder holds this file and ``inference.py``, so that
``pipeline(task, model=folder, trust_remote_code=True)`` works where seqbert is not installed.

Self-contained like the modeling files: imports only numpy, torch, transformers and sibling files that
are copied with it.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .inference import Classifier, InvalidEventsError, Recommender, _max_length, encode_events, score_next_items

logger = logging.getLogger(__name__)

RECOMMENDATION_TASK = "next-behavior-recommendation"
CLASSIFICATION_TASK = "behavior-classification"


class UserEvents:
    """One user's events, wrapped so that ``Pipeline.__call__`` treats them as one input, not a batch of dicts."""

    def __init__(self, events: Sequence[Mapping[str, Any]]):
        self.events = list(events)


def _as_pipeline_input(inputs: Any) -> Any:
    """One user's event list (possibly empty) → :class:`UserEvents`; a batch → a list of them."""
    if isinstance(inputs, (list, tuple)) and (not inputs or isinstance(inputs[0], Mapping)):
        return UserEvents(inputs)
    if isinstance(inputs, (list, tuple)):
        return [event_list if isinstance(event_list, UserEvents) else UserEvents(event_list) for event_list in inputs]
    return inputs


def _events_of(inputs: Any) -> list:
    return inputs.events if isinstance(inputs, UserEvents) else list(inputs)


class _BehaviorPipeline(Pipeline):
    """Shared plumbing: raw-event inputs, no image/feature processors, one user per forward pass."""

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False
    _load_tokenizer = True

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        """``inputs``: one user's events (a list of dicts) → one result; a list of such lists → one per user."""
        return super().__call__(_as_pipeline_input(inputs), **kwargs)

    def _max_length(self) -> int:
        return _max_length(self.model, self.tokenizer, None)


class NextBehaviorRecommendationPipeline(_BehaviorPipeline):
    """Top-k next items for raw behavior events, with a masked-behavior SeqBERT model.

    Call arguments: ``k`` (default 10), ``exclude_seen`` (drop items in the history), ``candidates``
    (rank only these item ids), ``return_details`` (return ``{"items": [...], "unknown_events": n,
    "unknown_candidates": [...]}`` instead of the plain list of ``{"item_id", "score"}`` dicts).
    Ranking is :meth:`seqbert.inference.Recommender.rank` on :func:`seqbert.inference.score_next_items`.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.recommender = Recommender(self.model, self.tokenizer, device=self.device)

    def _sanitize_parameters(self, k=None, exclude_seen=None, candidates=None, return_details=None, **kwargs):
        postprocess: dict[str, Any] = {}
        if k is not None:
            postprocess["k"] = int(k)
        if exclude_seen is not None:
            postprocess["exclude_seen"] = bool(exclude_seen)
        if candidates is not None:
            postprocess["candidates"] = list(candidates)
        if return_details is not None:
            postprocess["return_details"] = bool(return_details)
        return {}, {}, postprocess

    def preprocess(self, events: UserEvents | Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        encoded = encode_events(self.tokenizer, _events_of(events), max_length=self._max_length())
        return {**encoded.inputs, "encoded": encoded}

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        return {"scores": score_next_items(self.model, model_inputs).float().cpu(), "encoded": model_inputs["encoded"]}

    def postprocess(self, model_outputs, k=10, exclude_seen=False, candidates=None, return_details=False):
        result = self.recommender.rank(
            model_outputs["scores"],
            model_outputs["encoded"],
            k,
            exclude_seen=exclude_seen,
            candidates=[candidates] if candidates is not None else None,
        )[0]
        details = result.to_dict()
        return details if return_details else details["items"]


class BehaviorClassificationPipeline(_BehaviorPipeline):
    """Label probabilities for raw behavior events, with a fine-tuned classifier, as transformers' text
    classification pipelines give them: ``{"label": <most likely label>, "score": its probability}`` by default,
    every label (most likely first) with ``top_k=None``, the ``k`` most likely with ``top_k=k``. Each result also
    says how many events had items unknown to the model (``unknown_events``).

    Call argument ``query_timestamp``: the prediction time in unix seconds (the appended mask encodes the
    gap from the last event to it, as in fine-tuning); default: the user's last event. Item-conversion / click
    models also take ``candidate`` (an item id), ``candidate_category`` and ``candidate_events``.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.classifier = Classifier(self.model, self.tokenizer, device=self.device)

    def _sanitize_parameters(
        self, query_timestamp=None, candidate=None, candidate_category=None, candidate_events=None, top_k="", **kwargs
    ):
        preprocess = {"query_timestamp": int(query_timestamp)} if query_timestamp is not None else {}
        if candidate is not None:  # item-conversion / click models: the (user, candidate item) pair
            preprocess["candidates"] = [str(candidate)]
            preprocess["candidate_categories"] = None if candidate_category is None else [candidate_category]
            preprocess["candidate_events"] = None if candidate_events is None else [int(candidate_events)]
        postprocess = {} if top_k == "" else {"top_k": top_k}  # "": the default (most likely label only)
        return preprocess, {}, postprocess

    def preprocess(
        self, events: UserEvents | Sequence[Mapping[str, Any]], query_timestamp: int | None = None, **candidate_inputs: Any
    ) -> dict[str, Any]:
        encoded = self.classifier.encode([_events_of(events)], query_timestamp, **candidate_inputs)
        return {**encoded.inputs, "encoded": encoded}

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        return {"probabilities": self.classifier.label_probabilities(model_inputs).cpu(), "encoded": model_inputs["encoded"]}

    def postprocess(self, model_outputs, top_k: int | None | str = ""):
        probabilities = model_outputs["probabilities"][0].tolist()
        id2label = getattr(self.model.config, "id2label", None) or {}
        unknown = model_outputs["encoded"].unknown_events[0]
        ranked = sorted(range(len(probabilities)), key=lambda k: -probabilities[k])
        results = [{"label": str(id2label.get(k, k)), "score": float(probabilities[k]), "unknown_events": unknown} for k in ranked]
        if top_k == "":
            return results[0]
        return results if top_k is None else results[: int(top_k)]


PIPELINES = {
    RECOMMENDATION_TASK: (NextBehaviorRecommendationPipeline, AutoModelForMaskedLM),
    CLASSIFICATION_TASK: (BehaviorClassificationPipeline, AutoModelForSequenceClassification),
}


def register_pipelines() -> None:
    """Register both tasks with transformers' ``PIPELINE_REGISTRY`` (``import seqbert`` does this once)."""
    for task, (pipeline_class, model_class) in PIPELINES.items():
        registered = PIPELINE_REGISTRY.supported_tasks.get(task, {}).get("impl")
        if registered is pipeline_class:
            continue
        PIPELINE_REGISTRY.register_pipeline(task, pipeline_class=pipeline_class, pt_model=model_class)


def save_pipeline_code(folder: str | Path, task: str | None = None) -> Path:
    """Make a saved model folder carry its pipeline: copy this file and ``inference.py``, add ``custom_pipelines``.

    ``task`` defaults from the folder's architecture (masked-behavior → recommendation, classifier →
    classification). The folder must have been saved with its code (``import seqbert`` does that), since
    ``inference.py`` imports ``modeling_seqbert.py`` and ``tokenization_seqbert.py`` from it.
    """
    folder = Path(folder)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if task is None:
        architectures = config.get("architectures") or []
        task = CLASSIFICATION_TASK if any("Classification" in name for name in architectures) else RECOMMENDATION_TASK
    if task not in PIPELINES:
        raise ValueError(f"Unknown task {task!r}; one of {sorted(PIPELINES)}.")
    missing = [
        name
        for name in ("modeling_seqbert.py", "tokenization_seqbert.py", "configuration_seqbert.py")
        if not (folder / name).is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"{folder} lacks {', '.join(missing)}: save the model and tokenizer after `import seqbert` so the folder carries its code."
        )
    here = Path(__file__).resolve().parent
    for name in ("pipelines.py", "inference.py"):
        shutil.copyfile(here / name, folder / name)
    pipeline_class, model_class = PIPELINES[task]
    config["custom_pipelines"] = {
        task: {"impl": f"pipelines.{pipeline_class.__name__}", "pt": [model_class.__name__]},
    }
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder


__all__ = [
    "CLASSIFICATION_TASK",
    "RECOMMENDATION_TASK",
    "BehaviorClassificationPipeline",
    "InvalidEventsError",
    "NextBehaviorRecommendationPipeline",
    "UserEvents",
    "register_pipelines",
    "save_pipeline_code",
]
