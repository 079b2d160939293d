"""Tests for seqbert.explain: attributions of a hand-built model, completeness, the explained prediction equals the
normal one, the baseline is the model on blanked events, and `seqbert explain` writes its PNG. Tiny models only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import seqbert
from seqbert import cli
from seqbert.explain import METHODS, Explanation, positive_log_odds
from seqbert.inference import Classifier, InvalidEventsError, Recommender
from seqbert.tokenization_seqbert import BEHAVIOR_MASK, TIME_MASK

from .test_inference import ITEMS, build_model_folders, random_users, tiny_config

EVENT_TYPES = ("view", "cart", "purchase")


def events_of(items: list[str], start: int = 1_700_000_000, kinds: tuple[str, ...] = ("view",)) -> list[dict]:
    return [{"item_id": item, "event_type": kinds[i % len(kinds)], "timestamp": start + 600 * i} for i, item in enumerate(items)]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return build_model_folders(tmp_path_factory.mktemp("explain_models"))


@pytest.fixture(scope="module")
def classifier(folders):
    return Classifier.from_pretrained(str(folders[1]))


@pytest.fixture(scope="module")
def recommender():
    """Every scoring feature at once: categories, the repeat-aware term, two query passes (mask + causal)."""
    tokenizer = seqbert.BehaviorTokenizer(items=ITEMS, event_types=EVENT_TYPES, max_length=12)
    config = tiny_config(tokenizer, num_item_categories=3, repeat_bias_buckets=3, next_item_query="mask+causal")
    torch.manual_seed(1)
    model = seqbert.SeqBertForMaskedBehaviorModeling(config).eval()
    with torch.no_grad():
        model.seqbert.embeddings.set_item_categories(torch.arange(config.vocab_size) % 4)
        model.repeat_bias.weight.normal_(0, 1.0)
        model.head.bias.normal_(0, 0.5)
    return Recommender(model, tokenizer)


def hand_built_classifier() -> Classifier:
    """Only item "key" matters: every embedding is 0 except item "key" (v) and the positions (p, one vector for all);
    one layer attends uniformly and passes values through; the head reads the v direction of the pooled state.
    So the probability rises smoothly with the key event's item embedding and nothing else moves it."""
    tokenizer = seqbert.BehaviorTokenizer(items=["a", "b", "c", "key"], event_types=EVENT_TYPES, max_length=12)
    hidden = 8
    config = tiny_config(tokenizer, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8,
                         num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
    model = seqbert.SeqBertForSequenceClassification(config).eval()
    p = torch.tensor([1.0, -1.0, 0, 0, 0, 0, 0, 0])
    v = torch.tensor([0, 0, 2.0, -2.0, 0, 0, 0, 0])
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        embeddings = model.seqbert.embeddings
        embeddings.item_embeddings.weight[int(tokenizer.item_token_ids(["key"])[0])] = v
        embeddings.position_embeddings.weight[:] = p
        for norm in (embeddings.LayerNorm, model.seqbert.final_norm, model.seqbert.layers[0].attention_norm,
                     model.seqbert.layers[0].ffn_norm):  # fmt: skip
            norm.weight.fill_(1.0)
        attention = model.seqbert.layers[0].attention
        attention.qkv.weight[2 * hidden :] = torch.eye(hidden)  # values = inputs; queries, keys 0: uniform attention
        attention.output.weight[:] = torch.eye(hidden)
        model.classifier.weight[1] = 8.0 * v / v.norm()
        model.classifier.bias[1] = -1.0
    return Classifier(model, tokenizer)


def test_a_hand_built_model_where_one_event_matters_puts_the_mass_on_it():
    classifier = hand_built_classifier()
    events = events_of(["a", "b", "key", "c", "a", "b"], kinds=("view", "cart"))
    without = [event for event in events if event["item_id"] != "key"]
    assert classifier.predict_proba(events) > classifier.predict_proba(without) + 0.2  # the key event does matter
    for method in METHODS:
        explanation = classifier.explain(events, method=method)
        values = explanation.attributions
        assert np.argmax(values) == 2 and values[2] > 0.1, method
        assert np.abs(np.delete(values, 2)).max() < 1e-6, method
        assert abs(explanation.events[2].parts["item"] - values[2]) < 1e-6, method
        assert explanation.top_events(1)[0]["item_id"] == "key"
    explanation = classifier.explain(events)
    assert abs(explanation.completeness_residual) < 0.01 * abs(explanation.logit - explanation.baseline_logit)


def test_classifier_explanation_equals_predict_proba_and_is_complete(classifier):
    for events in random_users(6, seed=5, min_len=1, max_len=20):
        query = events[-1]["timestamp"] + 3_600 if events else None
        explanation = classifier.explain(events, query_timestamp=query)
        assert explanation.prediction == pytest.approx(classifier.predict_proba(events, query_timestamp=query), abs=1e-6)
        assert torch.sigmoid(torch.tensor(explanation.logit)).item() == pytest.approx(explanation.prediction, abs=1e-6)
        assert abs(explanation.completeness_residual) <= 0.01 * max(abs(explanation.logit - explanation.baseline_logit), 1e-3)
        kept = min(len(events), classifier.max_length - 1)
        assert len(explanation.events) == kept and explanation.dropped_events == len(events) - kept
        for event in explanation.events:
            assert event.attribution == pytest.approx(sum(event.parts.values()), abs=1e-6)


def test_recommender_explanation_equals_recommend_and_is_complete(recommender):
    for events in random_users(4, seed=7, min_len=1, max_len=15, unknown_rate=0.0):
        events = [{**event, "event_type": EVENT_TYPES[i % 3]} for i, event in enumerate(events)]
        top = recommender.recommend(events, k=2)
        repeated = events[-1]["item_id"]  # an item of the history: its repeat-aware offset is attributed
        for item_id, rank in [*zip(top.item_ids, (1, 2)), (repeated, None)]:
            explanation = recommender.explain(events, item_id)
            column = recommender.items.index(item_id)
            assert explanation.prediction == pytest.approx(float(recommender.score(events)[0, column]), abs=1e-6)
            if rank is not None:
                assert explanation.prediction == pytest.approx(top.scores[rank - 1], abs=1e-6) and explanation.rank == rank
            assert abs(explanation.completeness_residual) <= 0.01 * max(abs(explanation.logit - explanation.baseline_logit), 1e-3)
        assert "repeat" in explanation.parts and abs(explanation.events[-1].parts["repeat"]) > 0


def test_the_baseline_is_the_model_on_blanked_events(classifier, recommender):
    events = events_of(ITEMS[:5], kinds=EVENT_TYPES)
    for model, explanation, logit in [
        (classifier, classifier.explain(events), lambda inputs: positive_log_odds(classifier.logits(inputs), 1)),
        (recommender, recommender.explain(events, ITEMS[2]),
         lambda inputs: recommender.model.next_item_scores(*(inputs[name] for name in ("input_ids", "behavior_ids", "time_ids", "attention_mask")))[:, 2]),
    ]:  # fmt: skip
        inputs = dict(model.encode([events]).inputs) if model is recommender else dict(model.encode([events], None).inputs)
        blanked = {**inputs}
        blanked["input_ids"] = inputs["input_ids"].clone()
        blanked["input_ids"][:, :-1] = model.tokenizer.mask_token_id
        blanked["behavior_ids"] = inputs["behavior_ids"].clone()
        blanked["behavior_ids"][:, :-1] = BEHAVIOR_MASK
        blanked["time_ids"] = inputs["time_ids"].clone()
        blanked["time_ids"][:, :-1] = TIME_MASK
        with torch.no_grad():
            assert float(logit(blanked)[0]) == pytest.approx(explanation.baseline_logit, abs=1e-5)


def test_candidate_match_part_of_an_item_model(folders):
    tokenizer = seqbert.BehaviorTokenizer.from_pretrained(str(folders[1]))
    torch.manual_seed(3)
    model = seqbert.SeqBertForSequenceClassification(tiny_config(tokenizer, num_labels=2, candidate_match=True)).eval()
    with torch.no_grad():
        model.candidate_match_embeddings.weight.normal_(0, 1.0)
    classifier = Classifier(model, tokenizer)
    events = events_of(ITEMS[:6])
    explanation = classifier.explain(events, candidate=ITEMS[3])
    assert explanation.parts == ("item", "event_type", "time", "candidate_match")
    assert explanation.prediction == pytest.approx(classifier.predict_proba(events, candidates=ITEMS[3]), abs=1e-6)
    assert abs(explanation.completeness_residual) <= 0.01 * abs(explanation.logit - explanation.baseline_logit)


def test_plain_data_and_errors(classifier, recommender):
    explanation = classifier.explain(events_of(ITEMS[:4]), method="occlusion")
    data = json.loads(json.dumps(explanation.to_dict()))
    assert data["method"] == "occlusion" and len(data["events"]) == 4 and set(data["events"][0]["parts"]) == {"item", "event_type", "time"}
    top = explanation.top_events(2, by="magnitude")
    assert len(top) == 2 and abs(top[0]["attribution"]) >= abs(top[1]["attribution"]) and isinstance(top[0], dict)
    assert classifier.explain([]).events == []
    with pytest.raises(ValueError, match="method"):
        classifier.explain(events_of(ITEMS[:2]), method="attention")
    with pytest.raises(InvalidEventsError, match="one user"):
        classifier.explain([events_of(ITEMS[:2])])
    with pytest.raises(ValueError, match="catalog"):
        recommender.explain(events_of(ITEMS[:2]), "not-an-item")


def test_plot_explanation(classifier, tmp_path):
    from seqbert.plots import plot_explanation

    explanation = classifier.explain(events_of(ITEMS[:30]))
    path = plot_explanation(explanation, path=tmp_path / "timeline.png", max_events=20)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[1] > image.size[0] / 2  # one row per event: a tall figure
    assert isinstance(explanation, Explanation)


@pytest.mark.parametrize("kind", ["recommender", "classifier"])
def test_cli_prints_the_top_events_and_writes_the_png(folders, tmp_path, capsys, kind):
    rows = ["user_id,item_id,event_type,timestamp"]
    rows += [f"u{u},{ITEMS[(3 * u + k) % 40]},{('view', 'cart')[k % 2]},{1_700_000_000 + 60 * k}" for u in range(3) for k in range(6)]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    folder = folders[0] if kind == "recommender" else folders[1]
    png, report = tmp_path / "why.png", tmp_path / "why.json"
    argv = ["explain", str(folder), "--events", str(tmp_path / "log.csv"), "--user", "u1", "--top", "3",
            "--output", str(png), "--json", str(report)]  # fmt: skip
    assert cli.main(argv) == 0
    output = capsys.readouterr().out
    assert f"Wrote {png}" in output and "attribution" in output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(report.read_text())
    assert len(data["events"]) == 6 and {e["item_id"] for e in data["events"]} == {ITEMS[(3 + k) % 40] for k in range(6)}
    assert cli.main(["explain", str(folder), "--events", str(tmp_path / "log.csv"), "--user", "nobody", "--output", str(png)]) == 2


def test_the_embedding_hook_leaves_other_threads_alone(classifier):
    import threading

    from seqbert.explain import added_embeddings

    inputs = classifier.encode([events_of(ITEMS[:5])], None).inputs
    expected = classifier.label_probabilities(inputs)
    seen = {}
    with added_embeddings(classifier.model, torch.full((1, inputs["input_ids"].shape[1], 32), 5.0)):
        changed = classifier.label_probabilities(inputs)
        worker = threading.Thread(target=lambda: seen.update(other=classifier.label_probabilities(inputs)))
        worker.start()
        worker.join()
    torch.testing.assert_close(seen["other"], expected)  # a request scored meanwhile by a server thread
    assert not torch.allclose(changed, expected)
    torch.testing.assert_close(classifier.label_probabilities(inputs), expected)  # the hook is gone
