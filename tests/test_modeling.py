"""Tests for seqbert's configuration and models: a tiny-config tester with one check per head, weight
tying, save/load round trips, Auto classes, padding invariance and a training smoke test
(STYLE conventions 16 and 20)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification

import seqbert  # noqa: F401  (registers the Auto classes)
from seqbert import (
    SeqBertConfig,
    SeqBertForMaskedBehaviorModeling,
    SeqBertForSequenceClassification,
    SeqBertModel,
)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny models run fastest (and most reproducibly) on one thread, even on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class SeqBertModelTester:
    """Tiny config and random inputs (BertModelTester style: hidden 32, 2 layers, 4 heads, intermediate 37)."""

    batch_size = 3
    seq_length = 7
    vocab_size = 50
    num_special_tokens = 5
    num_behaviors = 8
    num_time_buckets = 12
    hidden_size = 32
    num_hidden_layers = 2
    num_attention_heads = 4
    intermediate_size = 37
    max_position_embeddings = 16

    def get_config(self, **overrides) -> SeqBertConfig:
        values = {
            "vocab_size": self.vocab_size,
            "num_special_tokens": self.num_special_tokens,
            "num_behaviors": self.num_behaviors,
            "num_time_buckets": self.num_time_buckets,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
        }
        values.update(overrides)
        return SeqBertConfig(**values)

    def prepare_inputs(self, seed: int = 0) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        shape = (self.batch_size, self.seq_length)
        input_ids = torch.randint(self.num_special_tokens, self.vocab_size, shape, generator=g)
        behavior_ids = torch.randint(2, self.num_behaviors, shape, generator=g)
        time_ids = torch.randint(2, self.num_time_buckets, shape, generator=g)
        attention_mask = torch.ones(shape, dtype=torch.long)
        # Row 1: left-padded by 3.
        for stream in (input_ids, behavior_ids, time_ids, attention_mask):
            stream[1, :3] = 0
        # Every row ends with the appended [MASK] (behavior/time mask ids 1).
        input_ids[:, -1], behavior_ids[:, -1], time_ids[:, -1] = 1, 1, 1
        return {
            "input_ids": input_ids,
            "behavior_ids": behavior_ids,
            "time_ids": time_ids,
            "attention_mask": attention_mask,
        }

    def create_and_check_model(self, config, inputs):
        model = SeqBertModel(config).eval()
        out = model(**inputs)
        assert out.last_hidden_state.shape == (self.batch_size, self.seq_length, self.hidden_size)
        assert out.hidden_states is None
        out = model(**inputs, output_hidden_states=True)
        assert len(out.hidden_states) == self.num_hidden_layers + 1
        assert model(**inputs, return_dict=False)[0].shape == out.last_hidden_state.shape

    def create_and_check_for_masked_behavior_modeling(self, config, inputs):
        model = SeqBertForMaskedBehaviorModeling(config).eval()
        out = model(**inputs)
        assert out.loss is None and out.item_loss is None and out.behavior_loss is None
        assert out.logits.shape == (self.batch_size, self.seq_length, self.vocab_size)
        assert out.behavior_logits.shape == (self.batch_size, self.seq_length, self.num_behaviors)
        assert torch.isneginf(out.logits[..., : self.num_special_tokens]).all()
        assert torch.isfinite(out.logits[..., self.num_special_tokens :]).all()

        labels = torch.full_like(inputs["input_ids"], -100)
        labels[0, 2], labels[1, 6], labels[2, 0], labels[2, 4] = 7, 9, 11, 49
        behavior_labels = torch.where(labels != -100, 3, -100)
        out = model(**inputs, labels=labels, behavior_labels=behavior_labels)
        assert out.logits.shape == (4, self.vocab_size)  # only labelled positions are scored
        assert out.behavior_logits.shape == (4, self.num_behaviors)
        assert torch.isneginf(out.logits[:, : self.num_special_tokens]).all()
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)
        expected_item_loss = torch.nn.functional.cross_entropy(out.logits, labels[labels != -100])
        torch.testing.assert_close(out.item_loss, expected_item_loss)
        torch.testing.assert_close(out.loss, out.item_loss + config.behavior_loss_weight * out.behavior_loss)
        # Labelled-position logits equal the full logits at those positions.
        full = model(**inputs).logits
        torch.testing.assert_close(out.logits, full[labels != -100])
        # Without behavior labels the loss is the item loss alone.
        out = model(**inputs, labels=labels)
        assert out.behavior_loss is None
        torch.testing.assert_close(out.loss, expected_item_loss)
        tuple_out = model(**inputs, labels=labels, return_dict=False)
        torch.testing.assert_close(tuple_out[0], expected_item_loss)

    def create_and_check_for_sequence_classification(self, config, inputs):
        model = SeqBertForSequenceClassification(config).eval()
        out = model(**inputs)
        assert out.loss is None
        assert out.logits.shape == (self.batch_size, config.num_labels)
        labels = torch.tensor([0, 1, 1])
        out = model(**inputs, labels=labels)
        assert out.loss is not None and out.loss.ndim == 0


@pytest.fixture(scope="module")
def tester() -> SeqBertModelTester:
    return SeqBertModelTester()


@pytest.fixture
def config(tester) -> SeqBertConfig:
    torch.manual_seed(0)
    return tester.get_config()


@pytest.fixture
def inputs(tester) -> dict[str, torch.Tensor]:
    return tester.prepare_inputs()


def test_model(tester, config, inputs):
    tester.create_and_check_model(config, inputs)


def test_for_masked_behavior_modeling(tester, config, inputs):
    tester.create_and_check_for_masked_behavior_modeling(config, inputs)


def test_for_sequence_classification(tester, config, inputs):
    tester.create_and_check_for_sequence_classification(config, inputs)


def test_config_num_items_and_defaults(config):
    assert config.num_items == 45
    assert config.model_type == "seqbert"
    assert config.tie_word_embeddings is True


@pytest.mark.parametrize(
    "overrides",
    [
        {"hidden_size": 30, "num_attention_heads": 4},
        {"num_special_tokens": 0},
        {"num_special_tokens": 50},
        {"num_behaviors": 2},
        {"num_time_buckets": 2},
        {"label_smoothing": 1.0},
        {"label_smoothing": -0.1},
    ],
)
def test_config_validation(tester, overrides):
    with pytest.raises(ValueError):
        tester.get_config(**overrides)


def test_config_error_quotes_values(tester):
    with pytest.raises(ValueError, match=r"30.*4"):
        tester.get_config(hidden_size=30, num_attention_heads=4)


# ---------------------------------------------------------------------------------------------
# Classification problem types
# ---------------------------------------------------------------------------------------------


def test_classification_problem_types(tester, inputs):
    torch.manual_seed(0)
    model = SeqBertForSequenceClassification(tester.get_config(num_labels=1)).eval()
    target = torch.tensor([0.5, -1.0, 2.0])
    out = model(**inputs, labels=target)
    assert model.config.problem_type == "regression"
    torch.testing.assert_close(out.loss, torch.nn.functional.mse_loss(out.logits.squeeze(-1), target))

    model = SeqBertForSequenceClassification(tester.get_config(num_labels=3)).eval()
    labels = torch.tensor([2, 0, 1])
    out = model(**inputs, labels=labels)
    assert model.config.problem_type == "single_label_classification"
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))

    model = SeqBertForSequenceClassification(tester.get_config(num_labels=3)).eval()
    multi = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    out = model(**inputs, labels=multi)
    assert model.config.problem_type == "multi_label_classification"
    torch.testing.assert_close(out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, multi))

    # An explicit problem_type wins over the label dtype.
    model = SeqBertForSequenceClassification(
        tester.get_config(num_labels=2, problem_type="multi_label_classification")
    )
    out = model.eval()(**inputs, labels=torch.tensor([[1, 0], [0, 1], [1, 1]]))
    assert model.config.problem_type == "multi_label_classification"
    torch.testing.assert_close(
        out.loss,
        torch.nn.functional.binary_cross_entropy_with_logits(out.logits, torch.tensor([[1.0, 0], [0, 1], [1, 1]])),
    )


def test_classifier_pools_last_real_token(tester, config, inputs):
    model = SeqBertForSequenceClassification(config).eval()
    hidden = model.seqbert(**inputs).last_hidden_state[:, -1]  # inputs are left-padded: last position is real
    torch.testing.assert_close(model(**inputs).logits, model.classifier(hidden))


# ---------------------------------------------------------------------------------------------
# Tying, save / load, Auto classes
# ---------------------------------------------------------------------------------------------


def _is_tied(model: SeqBertForMaskedBehaviorModeling) -> bool:
    return model.head.decoder.weight is model.seqbert.embeddings.item_embeddings.weight


def test_decoder_tied_to_item_embeddings(config):
    model = SeqBertForMaskedBehaviorModeling(config)
    assert _is_tied(model)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    # Bias is zero-initialised; the padding row of the item embeddings is zero.
    assert torch.count_nonzero(model.head.bias) == 0
    assert torch.count_nonzero(model.seqbert.embeddings.item_embeddings.weight[0]) == 0


@pytest.fixture
def saved_mbm(tmp_path, config, inputs):
    model = SeqBertForMaskedBehaviorModeling(config).eval()
    with torch.no_grad():  # a non-trivial bias, so a reload that re-initialises it would show
        model.head.bias.normal_()
    folder = tmp_path / "mbm"
    model.save_pretrained(folder)
    return folder, model


def test_save_load_masked_behavior_identical(saved_mbm, inputs):
    folder, model = saved_mbm
    loaded = SeqBertForMaskedBehaviorModeling.from_pretrained(folder).eval()
    assert _is_tied(loaded)
    for (name, a), (name_b, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert name == name_b
        assert torch.equal(a, b), name
    with torch.no_grad():
        expected, got = model(**inputs), loaded(**inputs)
    assert torch.equal(expected.logits, got.logits)
    assert torch.equal(expected.behavior_logits, got.behavior_logits)
    # The tie survives training a reloaded model: the embedding moves with the decoder.
    with torch.no_grad():
        loaded.head.decoder.weight[7].add_(1.0)
    assert torch.equal(loaded.seqbert.embeddings.item_embeddings.weight[7], loaded.head.decoder.weight[7])


def test_save_load_classifier_identical(tmp_path, config, inputs):
    model = SeqBertForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path)
    loaded = SeqBertForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, loaded(**inputs).logits)


def test_saved_folder_contents(saved_mbm):
    folder, _ = saved_mbm
    names = {path.name for path in folder.iterdir()}
    assert "model.safetensors" in names and "config.json" in names
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt")) for name in names), names
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "seqbert"
    assert set(config["auto_map"]) >= {
        "AutoConfig",
        "AutoModel",
        "AutoModelForMaskedLM",
        "AutoModelForSequenceClassification",
    }
    assert config["auto_map"]["AutoModelForSequenceClassification"].endswith("SeqBertForSequenceClassification")
    assert config["auto_map"]["AutoModel"].endswith("SeqBertModel")
    # Config values are plain JSON (vocabulary sizes survive exactly).
    assert (config["vocab_size"], config["num_special_tokens"], config["num_behaviors"]) == (50, 5, 8)


def test_safetensors_has_one_copy_of_tied_weight(saved_mbm):
    from safetensors import safe_open

    folder, _ = saved_mbm
    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        keys = set(handle.keys())
    assert "seqbert.embeddings.item_embeddings.weight" in keys
    assert "head.decoder.weight" not in keys  # the tied copy is declared, not duplicated
    assert "head.bias" in keys


def test_classifier_from_masked_behavior_folder_transfers_encoder(saved_mbm, inputs):
    folder, model = saved_mbm
    classifier = SeqBertForSequenceClassification.from_pretrained(folder, num_labels=2).eval()
    source = model.seqbert.state_dict()
    target = classifier.seqbert.state_dict()
    assert source.keys() == target.keys()
    for name in source:
        assert torch.equal(source[name], target[name]), name
    with torch.no_grad():
        torch.testing.assert_close(
            classifier.seqbert(**inputs).last_hidden_state, model.seqbert(**inputs).last_hidden_state, rtol=0, atol=0
        )
    assert classifier.classifier.weight.shape == (2, 32)


def test_auto_classes_load_saved_folder(saved_mbm, inputs):
    folder, model = saved_mbm
    assert isinstance(AutoConfig.from_pretrained(folder), SeqBertConfig)
    base = AutoModel.from_pretrained(folder)
    assert type(base) is SeqBertModel
    masked = AutoModelForMaskedLM.from_pretrained(folder).eval()
    assert type(masked) is SeqBertForMaskedBehaviorModeling
    assert _is_tied(masked)
    with torch.no_grad():
        assert torch.equal(masked(**inputs).logits, model(**inputs).logits)
        assert torch.equal(base.eval()(**inputs).last_hidden_state, model.seqbert(**inputs).last_hidden_state)
    assert type(AutoModelForSequenceClassification.from_pretrained(folder)) is SeqBertForSequenceClassification


# ---------------------------------------------------------------------------------------------
# Padding invariance and next-item scores
# ---------------------------------------------------------------------------------------------


def test_left_padding_invariance(config):
    model = SeqBertForMaskedBehaviorModeling(config).eval()
    ids = torch.tensor([[12, 30, 7, 1]])
    beh = torch.tensor([[2, 3, 5, 1]])
    time = torch.tensor([[2, 4, 6, 1]])
    mask = torch.ones_like(ids)
    pad = torch.zeros(1, 5, dtype=torch.long)
    padded = [torch.cat([pad, t], 1) for t in (ids, beh, time, mask)]
    with torch.no_grad():
        short = model.seqbert(ids, beh, time, mask).last_hidden_state
        long = model.seqbert(*padded).last_hidden_state
        torch.testing.assert_close(long[:, -4:], short, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            model.next_item_scores(*padded), model.next_item_scores(ids, beh, time, mask), rtol=1e-5, atol=1e-5
        )
        # Batched with a longer row, the padded row still matches the unpadded one.
        other = [
            torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12, 1]]),
            torch.full((1, 9), 2),
            torch.full((1, 9), 3),
            torch.ones(1, 9, dtype=torch.long),
        ]
        batch = [torch.cat([a, b]) for a, b in zip(padded, other)]
        torch.testing.assert_close(model.seqbert(*batch).last_hidden_state[0, -4:], short[0], rtol=1e-5, atol=1e-5)


def test_positions_matter(config):
    """Recency positions are real: reversing the history changes the last-position output."""
    model = SeqBertModel(config).eval()
    ids = torch.tensor([[12, 30, 7, 1]])
    with torch.no_grad():
        a = model(ids).last_hidden_state[0, -1]
        b = model(torch.tensor([[7, 30, 12, 1]])).last_hidden_state[0, -1]
    assert not torch.allclose(a, b)


def test_next_item_scores_equal_last_logits(config, inputs):
    model = SeqBertForMaskedBehaviorModeling(config).eval()
    with torch.no_grad():
        logits = model(**inputs).logits
        scores = model.next_item_scores(**inputs)
    assert scores.shape == (3, config.num_items)
    torch.testing.assert_close(scores, logits[:, -1, config.num_special_tokens :])
    # Without an explicit attention mask, padding (id 0) is inferred.
    without = {k: v for k, v in inputs.items() if k != "attention_mask"}
    with torch.no_grad():
        torch.testing.assert_close(model.next_item_scores(**without), scores)


def test_recency_position_ids():
    from seqbert.modeling_seqbert import last_token_index, recency_position_ids

    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    assert recency_position_ids(mask, 16).tolist() == [[0, 0, 2, 1, 0], [4, 3, 2, 1, 0], [2, 1, 0, 0, 0]]
    assert recency_position_ids(mask, 3).tolist() == [[0, 0, 2, 1, 0], [2, 2, 2, 1, 0], [2, 1, 0, 0, 0]]
    assert last_token_index(mask).tolist() == [4, 4, 2]


# ---------------------------------------------------------------------------------------------
# Training smoke test
# ---------------------------------------------------------------------------------------------


def test_training_reduces_masked_item_loss(tester):
    torch.manual_seed(0)
    config = tester.get_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = SeqBertForMaskedBehaviorModeling(config).train()
    # A deterministic pattern: every sequence is the cycle 5 -> 6 -> ... -> 14, shifted per row;
    # the masked position is always predictable from its neighbours.
    base = torch.arange(10)
    rows = torch.stack([(base + shift) % 10 + 5 for shift in range(8)])
    behavior = torch.full_like(rows, 2)
    time = torch.full_like(rows, 3)
    mask_positions = torch.tensor([3, 7, 1, 5, 9, 2, 6, 4])
    labels = torch.full_like(rows, -100)
    labels[torch.arange(8), mask_positions] = rows[torch.arange(8), mask_positions]
    input_ids = rows.clone()
    input_ids[torch.arange(8), mask_positions] = config.mask_token_id
    behavior_ids = behavior.clone()
    behavior_ids[torch.arange(8), mask_positions] = 1
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        out = model(input_ids=input_ids, behavior_ids=behavior_ids, time_ids=time, labels=labels)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.item_loss.item())
    assert losses[0] > 3.0  # ~log(45) at init
    assert losses[-1] < 0.25 * losses[0], losses
    assert _is_tied(model)


def test_batch_without_labelled_positions_has_zero_loss_not_nan():
    import torch

    from seqbert import SeqBertConfig, SeqBertForMaskedBehaviorModeling

    model = SeqBertForMaskedBehaviorModeling(SeqBertConfig(vocab_size=20, hidden_size=16, num_attention_heads=2))
    input_ids = torch.tensor([[5, 6, 7]])
    output = model(input_ids, labels=torch.full_like(input_ids, -100))
    assert output.loss.item() == 0.0 and output.loss.requires_grad
    output.loss.backward()
