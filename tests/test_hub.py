"""Tests for seqbert.hub: card rendering, folder validation and the (mocked) Hub upload. No network."""

from __future__ import annotations

import json
import re
import logging
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from huggingface_hub import ModelCard
from huggingface_hub.hf_api import RepoUrl
from safetensors.numpy import save_file

from seqbert import hub


PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16

PRETRAINED_CONTEXT = {
    "model_name": "seqbert-tiny",
    "repo_id": "someone/seqbert-tiny",
    "dataset_name": "Synthetic Shop",
    "data_stats": {
        "users": 1200,
        "items": 300,
        "events": 54321,
        "events_per_type": {"view": 50000, "cart": 3000, "purchase": 1321},
        "sequence_length": {"p50": 31, "p90": 80},
    },
    "split_protocol": {"kind": "leave-one-out", "min_events_per_user": 5, "seed": 2024},
    "training_args": {"learning_rate": 0.001, "per_device_batch_size": 64, "max_wall_seconds": 600},
    "metrics": [
        {"model": "seqbert-tiny", "split": "test", "NDCG@10": 0.4123, "HR@10": 0.6, "MRR": 0.31},
        {"model": "popularity", "split": "test", "NDCG@10": 0.051, "HR@10": 0.1, "MRR": 0.04},
        {"model": "markov", "split": "test", "NDCG@10": 0.22, "HR@10": 0.35},
    ],
    "plots": ["training_curves.png", "test_ndcg.png"],
    "compute": {"device": "1x NVIDIA H200", "wall_seconds": 5400.0},
    "an_unknown_key": object(),
}

CLASSIFIER_CONTEXT = {
    "model_name": "seqbert-tiny-purchase",
    "dataset_name": "Synthetic Shop",
    "dataset_id": "someone/synthetic-shop",
    "base_model": "someone/seqbert-tiny",
    "task": "Predicts whether the user purchases within the next 24 hours.",
    "metrics": [
        {"model": "seqbert-tiny-purchase", "split": "test", "auc": np.float64(0.81), "logloss": 0.42, "ece": 0.02},
        {"model": "logistic-regression", "split": "test", "auc": 0.74, "logloss": 0.5},
    ],
    "plots": ["reliability.png"],
    "license": "mit",
}


def _model_folder(path: Path, *, kind: str = "pretrained", context: dict | None = None) -> Path:
    """A complete, valid model folder: config, empty-but-valid safetensors, tokenizer config, card, plots."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "seqbert"}))
    save_file({"weight": np.zeros((2, 2), dtype=np.float32)}, str(path / "model.safetensors"))
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BehaviorTokenizer"}))
    context = PRETRAINED_CONTEXT if context is None else context
    for plot in context.get("plots", ()):
        (path / plot).write_bytes(PNG_BYTES)
    hub.render_model_card(path, kind=kind, context=context)
    return path


# ---------------------------------------------------------------------------------------------------------------
# render_model_card
# ---------------------------------------------------------------------------------------------------------------


def test_pretrained_card_metadata_and_model_index(tmp_path):
    readme = hub.render_model_card(tmp_path, kind="pretrained", context=PRETRAINED_CONTEXT)
    assert readme == tmp_path / "README.md"

    card = ModelCard.load(readme)
    data = card.data
    assert data.library_name == "transformers"
    assert data.license == "apache-2.0"
    assert set(hub.DEFAULT_TAGS) <= set(data.tags)
    assert data.datasets == ["synthetic-shop"]
    assert data.metrics == ["ndcg", "hit_rate", "mrr"]
    assert data.get("pipeline_tag") is None
    assert data.get("base_model") is None

    # Only this model's row goes to the model-index, one EvalResult per metric.
    assert data.model_name == "seqbert-tiny"
    results = {r.metric_name: r for r in data.eval_results}
    assert set(results) == {"NDCG@10", "HR@10", "MRR"}
    assert results["NDCG@10"].metric_value == pytest.approx(0.4123)
    assert results["NDCG@10"].metric_type == "ndcg"
    assert results["NDCG@10"].metric_args == {"k": 10}
    assert results["MRR"].metric_args is None
    assert {r.dataset_split for r in data.eval_results} == {"test"}
    assert {r.dataset_type for r in data.eval_results} == {"synthetic-shop"}
    assert {r.dataset_name for r in data.eval_results} == {"Synthetic Shop"}


def test_pretrained_card_body(tmp_path):
    text = hub.render_model_card(tmp_path, kind="pretrained", context=PRETRAINED_CONTEXT).read_text()

    assert text.startswith("---\n")
    assert "# Model Card for seqbert-tiny" in text
    # Results table with the model in bold, the baselines, and a missing value for markov's MRR.
    assert "| Model | Split | NDCG@10 | HR@10 | MRR |" in text
    assert "| **seqbert-tiny** | test | 0.4123 | 0.6000 | 0.3100 |" in text
    assert "| popularity | test | 0.0510 | 0.1000 | 0.0400 |" in text
    assert "| markov | test | 0.2200 | 0.3500 | – |" in text
    # Plots, data statistics, protocol, hyperparameters, compute.
    assert "![training curves](training_curves.png)" in text
    assert "![test ndcg](test_ndcg.png)" in text
    assert "| Users | 1,200 |" in text
    assert "| view | 50,000 | 92.0% |" in text
    assert "| p90 | 80 |" in text
    assert "| seed | 2024 |" in text
    assert "| `learning_rate` | 0.001 |" in text
    assert "**Hardware Type:** 1x NVIDIA H200" in text
    assert "1.50 (wall time 1 h 30 min 00 s)" in text
    # Usage snippet and citations.
    assert 'AutoModel.from_pretrained(repo, trust_remote_code=True)' in text
    assert 'AutoTokenizer.from_pretrained(repo, trust_remote_code=True)' in text
    assert 'repo = "someone/seqbert-tiny"' in text
    assert "@inproceedings{sun2019bert4rec," in text
    assert "@inproceedings{devlin2019bert," in text
    assert "{{BERT4Rec}: Sequential" in text  # the Jinja raw block keeps BibTeX braces
    assert "\n\n\n" not in text


def test_classifier_card(tmp_path):
    readme = hub.render_model_card(tmp_path, kind="classifier", context=CLASSIFIER_CONTEXT)
    card = ModelCard.load(readme)
    assert card.data.license == "mit"
    assert card.data.base_model == "someone/seqbert-tiny"
    assert card.data.datasets == ["someone/synthetic-shop"]
    assert card.data.metrics == ["roc_auc", "log_loss", "ece"]
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values == pytest.approx({"roc_auc": 0.81, "log_loss": 0.42, "ece": 0.02})
    assert all(isinstance(v, float) for v in values.values())  # numpy scalars never reach the YAML

    text = readme.read_text()
    assert "Predicts whether the user purchases within the next 24 hours." in text
    assert "**Finetuned from model:** someone/seqbert-tiny" in text
    assert "AutoModelForSequenceClassification.from_pretrained(repo, trust_remote_code=True)" in text
    assert "| **seqbert-tiny-purchase** | test | 0.8100 | 0.4200 | 0.0200 |" in text
    assert "| logistic-regression | test | 0.7400 | 0.5000 | – |" in text
    assert "![reliability](reliability.png)" in text


def test_minimal_context_renders_gracefully(tmp_path):
    for kind in hub.CARD_TEMPLATES:
        readme = hub.render_model_card(tmp_path / kind, kind=kind, context={})
        card = ModelCard.load(readme)
        assert card.data.library_name == "transformers"
        assert card.data.datasets == ["unspecified"]
        assert card.data.eval_results is None
        assert "No evaluation results were recorded." in card.text
        assert "Hours used:** not recorded" in card.text
        assert "None" not in card.text
        assert f"# Model Card for {kind}" in card.text  # the folder name


def test_local_base_model_and_invalid_pipeline_tag_stay_out_of_metadata(tmp_path):
    local_base = tmp_path / "pretrained"
    local_base.mkdir()
    context = {"base_model": str(local_base), "pipeline_tag": "recommendation", "tags": ["retail", "seqbert"]}
    card = ModelCard.load(hub.render_model_card(tmp_path / "clf", kind="classifier", context=context))
    assert card.data.get("base_model") is None
    assert card.data.get("pipeline_tag") is None
    assert card.data.tags.count("seqbert") == 1 and "retail" in card.data.tags
    assert f"**Finetuned from model:** {local_base}" in card.text

    readme = hub.render_model_card(tmp_path / "fx", kind="pretrained", context={"pipeline_tag": "feature-extraction"})
    card = ModelCard.load(readme)
    assert card.data.pipeline_tag == "feature-extraction"


def test_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="kind must be one of"):
        hub.render_model_card(tmp_path, kind="regressor", context={})


def test_templates_ship_inside_the_package():
    templates = Path(hub.__file__).parent / "templates"
    for name in hub.CARD_TEMPLATES.values():
        assert (templates / name).is_file()
        assert (templates / name).read_text() == (Path(__file__).parents[1] / "model_cards" / name).read_text()


# ---------------------------------------------------------------------------------------------------------------
# validate_model_folder
# ---------------------------------------------------------------------------------------------------------------


def test_valid_folder_passes(tmp_path):
    folder = _model_folder(tmp_path / "model")
    # Training-run leftovers are never uploaded, so they are not problems.
    (folder / "checkpoints" / "checkpoint_0").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint_0" / "optimizer.bin").write_bytes(b"x")
    (folder / "runs").mkdir()
    (folder / "runs" / "state.pkl").write_bytes(b"x")
    hub.validate_model_folder(folder)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda f: (f / "config.json").unlink(), "config.json is missing"),
        (lambda f: (f / "config.json").write_text("{not json"), "config.json is not valid JSON"),
        (lambda f: (f / "model.safetensors").unlink(), "model.safetensors"),
        (lambda f: (f / "pytorch_model.bin").write_bytes(b"x"), "pickle files are not allowed"),
        (lambda f: (f / "extra").mkdir() or (f / "extra" / "state.pt").write_bytes(b"x"), "extra/state.pt"),
        (lambda f: (f / "stats.pkl").write_bytes(b"x"), "stats.pkl"),
        (lambda f: (f / "vocab.pickle").write_bytes(b"x"), "vocab.pickle"),
        (lambda f: (f / "tokenizer_config.json").unlink(), "tokenizer_config.json is missing"),
        (lambda f: (f / "README.md").unlink(), "README.md (the model card) is missing"),
        (lambda f: (f / "README.md").write_text("# no metadata\n"), "no YAML metadata block"),
        (lambda f: (f / "README.md").write_text("---\n- a list\n---\n# x\n"), "does not parse"),
        (lambda f: (f / "README.md").write_text("---\nlicense: [unclosed\n---\n# x\n"), "does not parse"),
        (lambda f: (f / "test_ndcg.png").unlink(), "images referenced by README.md are missing: test_ndcg.png"),
    ],
)
def test_each_problem_is_caught(tmp_path, breakage, message):
    folder = _model_folder(tmp_path / "model")
    breakage(folder)
    with pytest.raises(ValueError) as error:
        hub.validate_model_folder(folder)
    assert message in str(error.value)


def test_every_problem_is_listed_at_once(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ValueError) as error:
        hub.validate_model_folder(folder)
    problems = [line for line in str(error.value).splitlines() if line.startswith("- ")]
    assert len(problems) == 5, problems  # config, weights, pickle, tokenizer, README


def test_sharded_safetensors(tmp_path):
    folder = _model_folder(tmp_path / "model")
    (folder / "model.safetensors").unlink()
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    index = {"metadata": {}, "weight_map": {"a": shards[0], "b": shards[1]}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    save_file({"a": np.zeros(1, dtype=np.float32)}, str(folder / "model-00001-of-00002.safetensors"))
    with pytest.raises(ValueError, match="model-00002-of-00002.safetensors"):
        hub.validate_model_folder(folder)
    save_file({"b": np.zeros(1, dtype=np.float32)}, str(folder / "model-00002-of-00002.safetensors"))
    hub.validate_model_folder(folder)


def test_remote_images_are_not_checked(tmp_path):
    folder = _model_folder(tmp_path / "model")
    readme = folder / "README.md"
    readme.write_text(readme.read_text() + "\n![logo](https://example.com/logo.png)\n<img src=\"local.png\">\n")
    with pytest.raises(ValueError) as error:
        hub.validate_model_folder(folder)
    assert "local.png" in str(error.value) and "example.com" not in str(error.value)


# ---------------------------------------------------------------------------------------------------------------
# push_folder
# ---------------------------------------------------------------------------------------------------------------

SECRET = "hf_SECRETtokenDoNotLog1234567890"


@pytest.fixture
def mocked_api():
    with mock.patch.object(hub, "HfApi") as api_class:
        api = api_class.return_value
        api.create_repo.return_value = RepoUrl("https://huggingface.co/someone/seqbert-tiny")
        yield api_class, api


def test_push_folder_calls_the_hub_and_never_logs_the_token(tmp_path, mocked_api, caplog, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    api_class, api = mocked_api
    folder = _model_folder(tmp_path / "model")
    caplog.set_level(logging.DEBUG)

    url = hub.push_folder(folder, "someone/seqbert-tiny", token=SECRET, private=True, commit_message="v1")

    assert url == "https://huggingface.co/someone/seqbert-tiny"
    api_class.assert_called_once_with(token=SECRET)
    api.create_repo.assert_called_once_with("someone/seqbert-tiny", exist_ok=True, private=True, repo_type="model")
    api.upload_folder.assert_called_once_with(
        repo_id="someone/seqbert-tiny",
        folder_path=str(folder),
        repo_type="model",
        commit_message="v1",
        ignore_patterns=["checkpoints/*", "checkpoint_*/*", "runs/*", "*.bin", "*.pt", "*.pkl"],
    )
    captured = capsys.readouterr()
    assert caplog.records  # it does log progress ...
    assert SECRET not in caplog.text + captured.out + captured.err  # ... but never the token


def test_push_folder_reads_hf_token_from_the_environment(tmp_path, mocked_api, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    api_class, _ = mocked_api
    hub.push_folder(_model_folder(tmp_path / "model"), "someone/seqbert-tiny")
    api_class.assert_called_once_with(token=SECRET)


def test_push_folder_without_token_explains_how_to_set_it(tmp_path, mocked_api, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    api_class, _ = mocked_api
    with pytest.raises(ValueError, match="HF_TOKEN"):
        hub.push_folder(_model_folder(tmp_path / "model"), "someone/seqbert-tiny")
    api_class.assert_not_called()


def test_push_folder_validates_before_any_hub_call(tmp_path, mocked_api, caplog):
    api_class, _ = mocked_api
    folder = _model_folder(tmp_path / "model")
    (folder / "optimizer.pt").write_bytes(b"x")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ValueError, match="optimizer.pt") as error:
        hub.push_folder(folder, "someone/seqbert-tiny", token=SECRET)
    api_class.assert_not_called()
    assert SECRET not in str(error.value) + repr(error.value) + caplog.text


# ---------------------------------------------------------------------------------------------------------------
# The card's "How to Get Started" snippet runs against a real (tiny) saved folder
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pretrained", "classifier"])
def test_usage_snippet_runs(tmp_path, kind):
    import seqbert

    tokenizer = seqbert.BehaviorTokenizer(items=["sku-1", "sku-7", "sku-9"])
    config = seqbert.SeqBertConfig(
        vocab_size=tokenizer.vocab_size,
        num_special_tokens=tokenizer.num_special_tokens,
        num_behaviors=tokenizer.num_behaviors,
        num_time_buckets=tokenizer.num_time_buckets,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
    )
    model_class = {
        "pretrained": seqbert.SeqBertForMaskedBehaviorModeling,
        "classifier": seqbert.SeqBertForSequenceClassification,
    }[kind]
    folder = tmp_path / kind
    model_class(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    text = hub.render_model_card(folder, kind=kind, context={"repo_id": str(folder)}).read_text()
    snippet = re.search(r"```python\n(.*?)```", text, re.DOTALL).group(1)
    assert snippet.count("trust_remote_code=True") >= 2
    # The remote-code path (fresh process, seqbert not importable) is tested with the modeling code; here the
    # classes registered by `import seqbert` are used, so nothing is written to the transformers modules cache.
    namespace: dict = {}
    local_snippet = snippet.replace("trust_remote_code=True", "trust_remote_code=False")
    exec(compile(local_snippet, "card-snippet", "exec"), namespace)
    if kind == "pretrained":
        assert namespace["user_embedding"].shape == (1, 16)
        assert set(namespace["recommended"]) == {"sku-1", "sku-7", "sku-9"}
    else:
        assert namespace["probabilities"].shape[0] == 1


def test_empty_options_read_as_none_not_blank():
    from seqbert.hub import _cell

    assert _cell({"path": "log.csv", "read_options": {}, "clean": []}) == "path=log.csv, read_options=–, clean=–"
    assert _cell({}) == "–" and _cell(None) == "–"
