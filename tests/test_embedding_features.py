"""seqbert.embedding_features: a pretrained model's user / candidate features for tabular models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqbert import SeqBertConfig, SeqBertForMaskedBehaviorModeling
from seqbert.collators import DataCollatorWithLeftPadding
from seqbert.embedding_features import pretrained_features
from seqbert.prepared import PreparedData, encode_for_classification
from seqbert.training import finetune

from .synthetic_prepared import prepare_synthetic_temporal


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = prepare_synthetic_temporal(tmp_path_factory.mktemp("embedding"), num_users=80, seed=3)
    data = PreparedData.load(folder)
    tokenizer = data.tokenizer
    torch.manual_seed(0)
    config = SeqBertConfig(
        vocab_size=tokenizer.vocab_size, num_special_tokens=tokenizer.num_special_tokens, num_behaviors=tokenizer.num_behaviors,
        num_time_buckets=tokenizer.num_time_buckets, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=12, repeat_bias_buckets=4,
    )  # fmt: skip
    model = SeqBertForMaskedBehaviorModeling(config).eval()
    with torch.no_grad():
        model.repeat_bias.weight.normal_()  # a non-zero repeat term, so the candidate score must include it
    return data, tokenizer, model


def test_candidate_features_are_the_models_own_next_item_scores(setup):
    data, tokenizer, model = setup
    labelled, _ = finetune.label_splits(data, None, "click")
    rows = labelled["test"].select(range(min(40, labelled["test"].num_rows)))
    features, names = pretrained_features(model, tokenizer, rows, components=4, batch_size=7)
    assert features.shape == (rows.num_rows, len(names)) and np.isfinite(features).all()
    column = {name: k for k, name in enumerate(names)}
    encoded = encode_for_classification(rows, tokenizer, 12).remove_columns("labels")
    for row in range(rows.num_rows):
        batch = DataCollatorWithLeftPadding(pad_to_multiple_of=None)([encoded[row]])
        scores = model.next_item_scores(batch["input_ids"], batch["behavior_ids"], batch["time_ids"], batch["attention_mask"])[0]
        token = int(tokenizer.item_token_ids([rows[row]["candidate_item_id"]])[0])
        known = token >= tokenizer.num_special_tokens
        assert features[row, column["candidate_known"]] == float(known)
        if known:
            expected = torch.log_softmax(scores, -1)[token - tokenizer.num_special_tokens]
            assert features[row, column["candidate_log_probability"]] == pytest.approx(float(expected), abs=1e-4)
    # Every row of the same user and cutoff shares the user block.
    users = np.asarray(rows["user_id"])
    user_columns = [column[name] for name in names if name.startswith(("p_next_", "user_pc"))]
    for user in np.unique(users):
        block = features[users == user][:, user_columns]
        np.testing.assert_allclose(block, np.broadcast_to(block[0], block.shape))


def test_user_rows_get_only_user_features(setup):
    data, tokenizer, model = setup
    labelled, _ = finetune.label_splits(data, None, "user-purchase")
    features, names = pretrained_features(model, tokenizer, labelled["validation"], components=3)
    assert names == ["p_next_purchase", "p_next_cart", "p_next_fav", "user_pc0", "user_pc1", "user_pc2"]
    probabilities = features[:, :3]
    assert (probabilities > 0).all() and (probabilities.sum(1) < 1).all()
