"""Model cards, folder checks and Hub upload for saved seqbert model folders.

The card templates are the Jinja files in the repository's top-level ``model_cards/`` folder,
shipped inside the package as ``seqbert/templates`` (a symlink to ``../model_cards``). They are
rendered with :class:`huggingface_hub.ModelCard`, so the YAML metadata (``library_name``, ``tags``,
``datasets``, ``metrics``, ``model-index``) is built by :class:`huggingface_hub.ModelCardData`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from numbers import Integral, Real
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from huggingface_hub.utils import filter_repo_objects


logger = logging.getLogger(__name__)

CARD_TEMPLATES: dict[str, str] = {
    "pretrained": "seqbert-pretrained.md",
    "classifier": "seqbert-classifier.md",
}
"""Card kind -> template file name in ``model_cards/``."""

DEFAULT_TAGS: tuple[str, ...] = (
    "seqbert",
    "recommendation",
    "sequential-recommendation",
    "e-commerce",
    "bert4rec",
    "custom_code",
)

DEFAULT_LICENSE = "apache-2.0"

# Hub pipeline types (huggingface.js `PIPELINE_DATA`) that can describe a seqbert model. The Hub has no
# recommendation task, so cards carry no `pipeline_tag` unless the caller asks for one of these.
VALID_PIPELINE_TAGS: frozenset[str] = frozenset(
    {"feature-extraction", "fill-mask", "text-classification", "tabular-classification", "other"}
)

# Folders of a training run that are never part of the published model.
RUN_ONLY_PATTERNS: tuple[str, ...] = ("checkpoints/*", "checkpoint_*/*", "runs/*")
PICKLE_SUFFIXES: tuple[str, ...] = (".bin", ".pt", ".pth", ".pkl", ".pickle")
UPLOAD_IGNORE_PATTERNS: tuple[str, ...] = (*RUN_ONLY_PATTERNS, "*.bin", "*.pt", "*.pkl")
"""Passed to ``upload_folder``: run folders, plus pickle weights as a second line of defence."""

_IGNORED_DIRS = frozenset({".git", ".cache"})
_IDENTITY_KEYS = ("model", "split")
# Column name (lower case, without "@k") -> metric id used in the card metadata and model-index.
_METRIC_IDS: dict[str, str] = {
    "ndcg": "ndcg",
    "hr": "hit_rate",
    "hit": "hit_rate",
    "hitrate": "hit_rate",
    "hit_rate": "hit_rate",
    "recall": "recall",
    "precision": "precision",
    "mrr": "mrr",
    "map": "map",
    "auc": "roc_auc",
    "roc_auc": "roc_auc",
    "auroc": "roc_auc",
    "pr_auc": "pr_auc",
    "logloss": "log_loss",
    "log_loss": "log_loss",
    "ece": "ece",
    "brier": "brier_score",
    "accuracy": "accuracy",
    "acc": "accuracy",
    "f1": "f1",
    "coverage": "coverage",
}
_METRIC_KEY = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_ -]*?)(?:@(?P<k>\d+))?$")
_HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_IMAGE_MD = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_IMAGE_HTML = re.compile(r"<img\s[^>]*src=[\"']([^\"']+)[\"']", re.IGNORECASE)

_RANKING_NOTES = (
    "Ranking metrics (NDCG@K, HR@K, MRR) are computed by ranking the whole item catalog for each test user, "
    "with ties broken pessimistically so that a constant scorer gets a score near zero. Items already in the "
    "history are only excluded where the split protocol says so. Baselines (popularity, item-to-item "
    "first-order Markov chain of item transitions) go through the same evaluator on the same split."
)
_CLASSIFIER_NOTES = (
    "Classification metrics (for example ROC AUC, log loss and expected calibration error) are computed on the "
    "held-out split described in the split protocol above, never seen in training or model selection. Baselines "
    "go through the same evaluator on the same split."
)


# --------------------------------------------------------------------------------------------------------------
# Model card rendering
# --------------------------------------------------------------------------------------------------------------


def render_model_card(folder: str | Path, *, kind: str, context: Mapping[str, Any]) -> Path:
    """Render ``folder/README.md`` from the ``kind`` template and return its path.

    Args:
        folder: The saved model folder; created if missing.
        kind: ``"pretrained"`` (masked-behavior encoder) or ``"classifier"`` (fine-tuned head).
        context: What the card reports. Every key is optional; unknown keys are ignored.

            - ``model_name`` (str): card title and model-index name (default: the folder name).
            - ``repo_id`` (str): Hub id or path shown in the usage snippets (default: the folder's absolute path, so the
              snippets work from any working directory).
            - ``dataset_name`` (str): readable dataset name; ``dataset_id`` (str): its Hub id for the
              ``datasets`` metadata (default: ``dataset_name`` slugified).
            - ``data_stats`` (dict): ``users``, ``items``, ``events`` (ints), ``events_per_type``
              (``{event_type: count}``) and nested dicts such as ``sequence_length``
              (``{"p50": 12, "p90": 40}``), each rendered as its own table.
            - ``split_protocol`` (dict) and ``training_args`` (dict): rendered as key/value tables.
            - ``metrics`` (list of dicts): one row per model and split, e.g.
              ``{"model": "seqbert", "split": "test", "NDCG@10": 0.41, "HR@10": 0.62}``. Rows whose
              ``model`` equals ``model_name`` or starts with "seqbert" are this model: they are bold in the
              table and become model-index results; other rows are baselines.
            - ``plots`` (list): PNG file names inside ``folder`` (or dicts with ``file`` and ``caption``).
            - ``base_model`` (str, classifier): the pretrained model; written to the metadata only when it
              looks like a Hub id (``owner/name``).
            - ``task`` (str, classifier): description of the predicted outcome; ``task_name`` (str): short
              name (default "Purchase Prediction").
            - ``compute`` (dict): ``device`` (str), ``wall_seconds`` (float), any other keys listed as is.
            - ``license`` (str, default ``"apache-2.0"``), ``tags`` (extra tags), ``pipeline_tag`` (kept
              only if a valid Hub pipeline type), ``model_config`` (dict of architecture hyperparameters),
              ``summary``, ``limitations``, ``evaluation_notes`` and ``usage_code`` (str overrides of the
              corresponding card text).

    Returns:
        The path of the written ``README.md``.

    Raises:
        ValueError: If ``kind`` is unknown.
    """
    if kind not in CARD_TEMPLATES:
        raise ValueError(f"kind must be one of {sorted(CARD_TEMPLATES)}, got {kind!r}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    model_name = str(context.get("model_name") or folder.resolve().name)
    dataset_name = str(context.get("dataset_name") or "unspecified")
    dataset_id = str(context.get("dataset_id") or _slug(dataset_name))
    rows = [dict(row) for row in context.get("metrics") or ()]
    default_task = "Sequential Recommendation" if kind == "pretrained" else "Purchase Prediction"
    task_name = str(context.get("task_name") or default_task)

    card_data = _card_data(
        kind=kind,
        context=context,
        model_name=model_name,
        dataset_name=dataset_name,
        dataset_id=dataset_id,
        rows=rows,
        task_name=task_name,
    )
    plots = _plot_entries(context.get("plots") or ())
    for plot in plots:
        if not (folder / plot["file"]).is_file():
            logger.warning("Plot %s is referenced by the model card but missing from %s.", plot["file"], folder)

    from . import __version__  # at call time: the package may import this module while initialising

    template_vars = {
        "kind": kind,
        "model_name": model_name,
        "repo_id": str(context.get("repo_id") or folder.resolve()),
        "dataset_name": dataset_name,
        "dataset_id": dataset_id,
        "license": card_data.license,
        "seqbert_version": __version__,
        "summary": context.get("summary"),
        "limitations": context.get("limitations"),
        "usage_code": context.get("usage_code"),
        "task": context.get("task"),
        "task_name": task_name,
        "base_model": context.get("base_model"),
        "model_config_rows": _kv_rows(context.get("model_config")),
        **_data_tables(context.get("data_stats")),
        "split_rows": _kv_rows(_compact_sources(context.get("split_protocol"))),
        "training_rows": _kv_rows(context.get("training_args")),
        **_recipe_tables(context.get("recipe"), context.get("schedule"), context.get("training_args")),
        "evaluation_notes": context.get("evaluation_notes")
        or (_RANKING_NOTES if kind == "pretrained" else _CLASSIFIER_NOTES),
        **_results_table(rows, model_name),
        "plots": plots,
        **_compute_lines(context.get("compute")),
    }
    card = ModelCard.from_template(card_data, template_str=_read_template(kind), **template_vars)
    card.text = "\n" + re.sub(r"\n{3,}", "\n\n", card.text).strip() + "\n"
    path = folder / "README.md"
    card.save(path)
    logger.info("Wrote the %s model card to %s.", kind, path)
    return path


def _read_template(kind: str) -> str:
    """The template text: from the installed package, else from the checkout's ``model_cards/``."""
    name = CARD_TEMPLATES[kind]
    packaged = resources.files("seqbert").joinpath("templates").joinpath(name)  # one part per call: Python 3.10
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parent.parent / "model_cards" / name
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    raise FileNotFoundError(f"Model card template {name!r} is neither in seqbert/templates nor in {checkout.parent}.")


def _card_data(
    *,
    kind: str,
    context: Mapping[str, Any],
    model_name: str,
    dataset_name: str,
    dataset_id: str,
    rows: list[dict[str, Any]],
    task_name: str,
) -> ModelCardData:
    """Hub metadata: library, tags, license, dataset, metric ids and the model-index of this model's rows."""
    tags = list(dict.fromkeys([*DEFAULT_TAGS, *(context.get("tags") or ())]))
    pipeline_tag = context.get("pipeline_tag")
    if pipeline_tag is not None and pipeline_tag not in VALID_PIPELINE_TAGS:
        logger.warning("Dropping pipeline_tag %r: not one of %s.", pipeline_tag, sorted(VALID_PIPELINE_TAGS))
        pipeline_tag = None
    base_model = context.get("base_model") if kind == "classifier" else None
    if base_model is not None and not _is_hub_repo_id(str(base_model)):
        logger.info("base_model %r is not a Hub id; it appears in the card text only.", base_model)
        base_model = None

    metric_ids: list[str] = []
    eval_results: list[EvalResult] = []
    for row in rows:
        for key, value in row.items():
            if key in _IDENTITY_KEYS or not _is_number(value):
                continue
            metric_id, k = _metric_id(key)
            if metric_id not in metric_ids:
                metric_ids.append(metric_id)
            if _is_own_row(row, model_name) and math.isfinite(float(value)):
                eval_results.append(
                    EvalResult(
                        task_type=str(context.get("task_type") or "other"),
                        task_name=task_name,
                        dataset_type=dataset_id,
                        dataset_name=dataset_name,
                        dataset_split=str(row["split"]) if row.get("split") is not None else None,
                        metric_type=metric_id,
                        metric_value=float(value),
                        metric_name=str(key),
                        metric_args={"k": k} if k is not None else None,
                    )
                )
    return ModelCardData(
        library_name="transformers",
        license=str(context.get("license") or DEFAULT_LICENSE),
        tags=tags,
        datasets=[dataset_id],
        metrics=metric_ids or None,
        base_model=base_model,
        pipeline_tag=pipeline_tag,
        model_name=model_name,
        eval_results=eval_results or None,
    )


def _metric_id(key: str) -> tuple[str, int | None]:
    """``"NDCG@10"`` -> ``("ndcg", 10)``; unknown names are lower-cased and snake-cased."""
    match = _METRIC_KEY.match(key.strip())
    if match is None:
        return _slug(key).replace("-", "_"), None
    name = re.sub(r"[\s-]+", "_", match["name"].lower())
    return _METRIC_IDS.get(name, name), int(match["k"]) if match["k"] else None


def _is_own_row(row: Mapping[str, Any], model_name: str) -> bool:
    model = str(row.get("model", ""))
    return model == model_name or model.lower().startswith("seqbert")


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_hub_repo_id(value: str) -> bool:
    return bool(_HUB_REPO_ID.match(value)) and not Path(value).exists()


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "unspecified"


def _cell(value: Any, *, thousands: bool = False) -> str:
    """A value formatted for a Markdown table cell (``thousands``: group the digits of integers)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Integral):
        return f"{int(value):,}" if thousands else str(int(value))
    if isinstance(value, Real):
        return f"{float(value):.6g}"
    if isinstance(value, (Mapping, list, tuple, set)) and not value:
        return "–"  # an empty option reads as "none", not as a blank
    if isinstance(value, Mapping):
        value = ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    elif isinstance(value, (list, tuple, set)):
        value = ", ".join(_cell(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _compact_sources(protocol: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The protocol with a multi-file input's per-shard lists (``source.shards``,
    ``source.time_window.files_skipped``) counted instead of listed: the card stays small for
    thousands of shards; split_protocol.json keeps them all."""
    source = (protocol or {}).get("source")
    if not isinstance(source, Mapping) or not ("shards" in source or "time_window" in source):
        return protocol
    source = dict(source)
    if isinstance(source.get("shards"), list):
        shards = source["shards"]
        total = sum(int(shard.get("bytes") or 0) for shard in shards)
        source["shards"] = f"{len(shards)} files, {total:,} bytes (listed with their hashes in split_protocol.json)"
    if isinstance(source.get("time_window"), Mapping):
        window = dict(source["time_window"])
        window["files_skipped"] = len(window.get("files_skipped") or [])
        source["time_window"] = window
    return {**protocol, "source": source}


def _pretty_key(key: Any) -> str:
    return str(key).replace("_", " ").capitalize()


def _kv_rows(mapping: Mapping[str, Any] | None, *, thousands: bool = False) -> list[tuple[str, str]]:
    if not mapping:
        return []
    return [(_cell(key), _cell(value, thousands=thousands)) for key, value in mapping.items()]


def _data_tables(stats: Mapping[str, Any] | None) -> dict[str, Any]:
    """Scalars into one table, ``events_per_type`` with shares, every other nested dict as its own table."""
    stats = dict(stats or {})
    per_type = stats.pop("events_per_type", None) or {}
    data_rows, data_tables = [], []
    for key, value in stats.items():
        if isinstance(value, Mapping):
            data_tables.append({"title": _cell(_pretty_key(key)), "rows": _kv_rows(value, thousands=True)})
        else:
            data_rows.append((_cell(_pretty_key(key)), _cell(value, thousands=True)))
    total = sum(float(v) for v in per_type.values() if _is_number(v))
    per_type_rows = [
        (
            _cell(name),
            _cell(count, thousands=True),
            f"{100 * float(count) / total:.1f}%" if total and _is_number(count) else "–",
        )
        for name, count in per_type.items()
    ]
    return {"data_rows": data_rows, "events_per_type_rows": per_type_rows, "data_tables": data_tables}


def _recipe_tables(
    recipe: Mapping[str, Any] | None, schedule: Mapping[str, Any] | None, used: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Rows of the "Recipe" section: each option with the value used and why (the recipe's reason, or the command
    line's override with the recipe's own choice), the statistics it used, the schedule."""
    recipe, used = recipe or {}, used or {}
    overridden = set(recipe.get("overridden_by_flags") or ())
    rows = []
    for name, value in (recipe.get("options") or {}).items():
        if name in overridden:
            rows.append((name, _cell(used.get(name)), f"set on the command line or in --config (the recipe's choice: {_cell(value)})"))
        else:
            rows.append((name, _cell(value), recipe.get("reasons", {}).get(name, "")))
    statistics = _kv_rows(recipe.get("statistics"), thousands=True)
    return {
        "recipe_name": recipe.get("name"),
        "recipe_rows": rows,
        "recipe_statistics_rows": statistics,
        "schedule_reason": (schedule or {}).get("reason"),
    }


def _results_table(rows: Sequence[Mapping[str, Any]], model_name: str) -> dict[str, Any]:
    """Header and formatted cells of the results table; this model's rows in bold."""
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in _IDENTITY_KEYS and key not in columns)
    header = ["Model", "Split", *(_cell(c) for c in columns)]
    body, has_baselines = [], False
    for row in rows:
        own = _is_own_row(row, model_name)
        has_baselines = has_baselines or not own
        name = _cell(row.get("model", "–"))
        cells = [f"**{name}**" if own else name, _cell(row.get("split"))]
        for column in columns:
            value = row.get(column)
            cells.append(f"{value:.4f}" if _is_number(value) else _cell(value))
        body.append(cells)
    return {"results_header": header, "results_rows": body, "has_baselines": has_baselines}


def _plot_entries(plots: Iterable[str | Mapping[str, str]]) -> list[dict[str, str]]:
    entries = []
    for plot in plots:
        if isinstance(plot, Mapping):
            file, caption = str(plot["file"]), plot.get("caption")
        else:
            file, caption = str(plot), None
        alt = caption or Path(file).stem.replace("_", " ").replace("-", " ")
        entries.append({"file": Path(file).as_posix(), "alt": str(alt).replace("]", ")").replace("[", "(")})
    return entries


def _compute_lines(compute: Mapping[str, Any] | None) -> dict[str, Any]:
    compute = dict(compute or {})
    device = compute.pop("device", None)
    seconds = compute.pop("wall_seconds", None)
    hours_used = None
    if _is_number(seconds):
        minutes, secs = divmod(int(round(float(seconds))), 60)
        hours, minutes = divmod(minutes, 60)
        clock = f"{hours} h {minutes:02d} min {secs:02d} s" if hours else f"{minutes} min {secs:02d} s"
        hours_used = f"{float(seconds) / 3600:.2f} (wall time {clock})"
    return {
        "hardware": _cell(device) if device is not None else None,
        "hours_used": hours_used,
        "compute_rows": [(_cell(_pretty_key(k)), _cell(v)) for k, v in compute.items()],
    }


# --------------------------------------------------------------------------------------------------------------
# Folder validation
# --------------------------------------------------------------------------------------------------------------


def validate_model_folder(folder: str | Path) -> None:
    """Check that ``folder`` is a complete, pickle-free model folder, ready to upload.

    Files under ``checkpoints/``, ``checkpoint_*/``, ``runs/``, ``.git/`` and ``.cache/`` are not checked
    (they are never uploaded).

    Raises:
        ValueError: Listing every problem found: missing ``config.json`` (or invalid JSON), missing
            ``model.safetensors`` (or ``model.safetensors.index.json`` and its shards), pickle files
            (``*.bin``, ``*.pt``, ``*.pth``, ``*.pkl``, ``*.pickle``), missing ``tokenizer_config.json``,
            a missing ``README.md`` or one whose metadata does not parse with ``ModelCard.load``, and
            images referenced by the card but missing from the folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a directory.")
    problems: list[str] = []

    config = folder / "config.json"
    if not config.is_file():
        problems.append("config.json is missing.")
    else:
        try:
            json.loads(config.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            problems.append(f"config.json is not valid JSON ({error}).")

    problems.extend(_weight_problems(folder))

    files = sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and not _IGNORED_DIRS.intersection(path.relative_to(folder).parts)
    )
    uploaded = filter_repo_objects(files, ignore_patterns=list(RUN_ONLY_PATTERNS))
    pickles = [name for name in uploaded if name.lower().endswith(PICKLE_SUFFIXES)]
    if pickles:
        problems.append(f"pickle files are not allowed (save weights with safetensors): {', '.join(pickles)}.")

    if not (folder / "tokenizer_config.json").is_file():
        problems.append("tokenizer_config.json is missing (save the tokenizer with save_pretrained).")

    problems.extend(_card_problems(folder))

    if problems:
        raise ValueError(f"Model folder {folder} is not ready to upload:\n" + "\n".join(f"- {p}" for p in problems))
    logger.info("Model folder %s passed validation.", folder)


def _weight_problems(folder: Path) -> list[str]:
    if (folder / "model.safetensors").is_file():
        return []
    index = folder / "model.safetensors.index.json"
    if not index.is_file():
        return ["model.safetensors (or a sharded model.safetensors.index.json) is missing."]
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
        return [f"model.safetensors.index.json has no readable weight_map ({error!r})."]
    missing = [shard for shard in shards if not (folder / shard).is_file()]
    return [f"safetensors shards listed in the index are missing: {', '.join(missing)}."] if missing else []


def _card_problems(folder: Path) -> list[str]:
    readme = folder / "README.md"
    if not readme.is_file():
        return ["README.md (the model card) is missing; write it with seqbert.hub.render_model_card."]
    text = readme.read_text(encoding="utf-8-sig")
    if not text.lstrip().startswith("---"):
        return ["README.md has no YAML metadata block."]
    try:
        card = ModelCard.load(readme)
    except Exception as error:  # yaml.YAMLError, ValueError from ModelCardData: any parse failure is a problem
        return [f"README.md metadata does not parse with huggingface_hub.ModelCard.load ({error})."]
    problems = []
    if not card.data.to_dict():
        problems.append("README.md has an empty YAML metadata block.")
    targets = [*_IMAGE_MD.findall(card.text), *_IMAGE_HTML.findall(card.text)]
    missing = sorted(
        {t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE) and not (folder / t).is_file()}
    )
    if missing:
        problems.append(f"images referenced by README.md are missing: {', '.join(missing)}.")
    return problems


# --------------------------------------------------------------------------------------------------------------
# Upload
# --------------------------------------------------------------------------------------------------------------


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload seqbert model",
) -> str:
    """Validate ``folder`` and upload it to the Hub model repo ``repo_id`` (created if needed).

    Training-run files (``checkpoints/``, ``checkpoint_*/``, ``runs/``) and pickle weights are never uploaded.

    Args:
        folder: A saved model folder (see :func:`validate_model_folder`).
        repo_id: ``"owner/name"`` (or ``"name"`` for the token owner's namespace).
        token: A Hugging Face write token; defaults to the ``HF_TOKEN`` environment variable.
        private: Create the repo as private (only applies when it does not exist yet).
        commit_message: The commit message on the Hub.

    Returns:
        The URL of the model repo.

    Raises:
        ValueError: If no token is available, or the folder fails :func:`validate_model_folder`.
    """
    token = token or os.environ.get("HF_TOKEN") or None
    if token is None:
        raise ValueError(
            "No Hugging Face token: pass token=... or set the HF_TOKEN environment variable to a token with write "
            "access (create one at https://huggingface.co/settings/tokens), e.g. `export HF_TOKEN=hf_...`."
        )
    validate_model_folder(folder)
    api = HfApi(token=token)
    repo_url = api.create_repo(repo_id, exist_ok=True, private=private, repo_type="model")
    resolved_id = getattr(repo_url, "repo_id", None) or repo_id
    logger.info("Uploading %s to %s.", folder, resolved_id)
    api.upload_folder(
        repo_id=resolved_id,
        folder_path=str(folder),
        repo_type="model",
        commit_message=commit_message,
        ignore_patterns=list(UPLOAD_IGNORE_PATTERNS),  # a fresh list: upload_folder extends it in place
    )
    url = str(repo_url)
    logger.info("Uploaded %s to %s.", folder, url)
    return url


__all__ = [
    "CARD_TEMPLATES",
    "DEFAULT_TAGS",
    "UPLOAD_IGNORE_PATTERNS",
    "push_folder",
    "render_model_card",
    "validate_model_folder",
]
