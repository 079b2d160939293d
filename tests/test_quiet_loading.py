"""Loading SeqBERT folders is quiet on normal use (issue 21): no per-tensor "Loading weights" bar, no load report for
the pretraining head a classifier or bare encoder leaves out, while a genuinely missing encoder weight is still
reported; and a pretrained folder is refused as a classifier instead of loading a random head."""

from __future__ import annotations

import io
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from seqbert import SeqBertConfig, SeqBertForMaskedBehaviorModeling, SeqBertForSequenceClassification, SeqBertModel
from seqbert.inference import Classifier


@pytest.fixture
def transformers_log():
    """What transformers logs (its loggers do not propagate to the root logger that pytest captures)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger("transformers").addHandler(handler)
    yield stream
    logging.getLogger("transformers").removeHandler(handler)


@pytest.fixture
def pretrained_folder(tmp_path):
    torch.manual_seed(0)
    model = SeqBertForMaskedBehaviorModeling(SeqBertConfig(vocab_size=30, hidden_size=16, num_attention_heads=2, intermediate_size=32))
    model.save_pretrained(tmp_path / "pretrained")
    return tmp_path / "pretrained"


def test_loading_a_pretrained_folder_as_encoder_or_classifier_is_quiet(pretrained_folder, capfd, transformers_log):
    capfd.readouterr()
    encoder = SeqBertModel.from_pretrained(pretrained_folder)
    classifier = SeqBertForSequenceClassification.from_pretrained(pretrained_folder, num_labels=2)
    output = "".join(capfd.readouterr()) + transformers_log.getvalue()
    assert "LOAD REPORT" not in output and "Loading weights" not in output, output
    saved = load_file(pretrained_folder / "model.safetensors")
    name = "seqbert.embeddings.item_embeddings.weight"
    assert torch.equal(classifier.seqbert.embeddings.item_embeddings.weight, saved[name])
    assert torch.equal(encoder.embeddings.item_embeddings.weight, saved[name])


def test_a_missing_encoder_weight_is_still_reported(pretrained_folder, capfd, transformers_log):
    weights = load_file(pretrained_folder / "model.safetensors")
    del weights["seqbert.layers.0.attention.output.weight"]
    save_file(weights, pretrained_folder / "model.safetensors", metadata={"format": "pt"})
    capfd.readouterr()
    SeqBertForSequenceClassification.from_pretrained(pretrained_folder, num_labels=2)
    output = "".join(capfd.readouterr()) + transformers_log.getvalue()
    assert "layers.0.attention.output.weight" in output and "MISSING" in output


def test_a_pretrained_folder_is_not_a_classifier(pretrained_folder):
    with pytest.raises(ValueError, match="not a fine-tuned classifier"):
        Classifier.from_pretrained(str(pretrained_folder))
