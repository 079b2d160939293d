"""Tests for seqbert.inference (Recommender, Classifier) and seqbert.pipelines, on tiny random models.

The central test proves that offline evaluation and serving rank identically: metrics computed by
``seqbert.evaluation.evaluate_scorer`` equal the metrics of the ranks read off ``Recommender.recommend``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import pipeline

import seqbert
from seqbert.collators import DataCollatorWithLeftPadding
from seqbert.evaluation import collect_ranks, evaluate_scorer, model_scorer
from seqbert.inference import Classifier, InvalidEventsError, Recommender, score_next_items
from seqbert.metrics import ranking_metrics
from seqbert.pipelines import CLASSIFICATION_TASK, RECOMMENDATION_TASK, save_pipeline_code
from seqbert.prepared import encode_for_next_item

ITEMS = [f"i{i:05d}" for i in range(40)] + ["sku 1", "é", "a/b"]  # awkward ids too
EVENT_TYPES = ("view", "click", "search", "cart", "fav", "purchase")
TIED = (3, 4, 5)  # item columns given identical embeddings and biases: exact score ties
LABELS = {0: "no_purchase", 1: "purchase"}


def tiny_config(tokenizer: seqbert.BehaviorTokenizer, **overrides) -> seqbert.SeqBertConfig:
    sizes = dict(
        vocab_size=tokenizer.vocab_size,
        num_special_tokens=tokenizer.num_special_tokens,
        num_behaviors=tokenizer.num_behaviors,
        num_time_buckets=tokenizer.num_time_buckets,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
    )
    return seqbert.SeqBertConfig(**{**sizes, **overrides})


def build_model_folders(root: Path, items=ITEMS, seed: int = 0) -> tuple[Path, Path]:
    """A masked-behavior folder and a purchase-classifier folder (random weights, saved with their code)."""
    tokenizer = seqbert.BehaviorTokenizer(items=items, event_types=EVENT_TYPES, max_length=16)
    torch.manual_seed(seed)
    mlm = seqbert.SeqBertForMaskedBehaviorModeling(tiny_config(tokenizer)).eval()
    with torch.no_grad():
        offset = tokenizer.num_special_tokens
        embeddings = mlm.get_input_embeddings().weight
        mlm.head.bias.normal_(0, 0.5)
        for column in TIED[1:]:
            embeddings[offset + column] = embeddings[offset + TIED[0]]
            mlm.head.bias[offset + column] = mlm.head.bias[offset + TIED[0]]
    classifier = seqbert.SeqBertForSequenceClassification(
        tiny_config(tokenizer, num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    ).eval()
    with torch.no_grad():
        classifier.classifier.weight.normal_(0, 1.0)  # probabilities visibly away from 0.5
    folders = root / "pretrained", root / "classifier"
    for model, folder in zip((mlm, classifier), folders):
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folders


def random_users(n: int, seed: int, items=ITEMS, min_len: int = 1, max_len: int = 12, unknown_rate: float = 0.1):
    rng = np.random.default_rng(seed)
    users = []
    for _ in range(n):
        length = int(rng.integers(min_len, max_len + 1))
        times = np.sort(rng.integers(1_700_000_000, 1_700_100_000, size=length))
        users.append(
            [
                {
                    "item_id": "never-seen" if rng.random() < unknown_rate else items[int(rng.integers(len(items)))],
                    "event_type": EVENT_TYPES[int(rng.integers(len(EVENT_TYPES)))],
                    "timestamp": int(t),
                }
                for t in times
            ]
        )
    return users


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return build_model_folders(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def recommender(folders):
    return Recommender.from_pretrained(str(folders[0]))


@pytest.fixture(scope="module")
def classifier(folders):
    return Classifier.from_pretrained(str(folders[1]))


EVENTS = [
    {"item_id": "i00007", "event_type": "cart", "timestamp": 1_700_000_600},
    {"item_id": "i00003", "event_type": "view", "timestamp": 1_700_000_000},  # out of order: sorted by time
    {"item_id": "brand-new", "event_type": "view", "timestamp": 1_700_000_300},
]


# ---------------------------------------------------------------------------------------------------------------
# Recommender
# ---------------------------------------------------------------------------------------------------------------


def test_recommend_one_user(recommender):
    result = recommender.recommend(EVENTS, k=5)
    assert isinstance(result, seqbert.inference.Recommendations)
    assert len(result) == 5 and all(item in ITEMS for item in result.item_ids)
    assert result.scores == sorted(result.scores, reverse=True)
    assert result.unknown_events == 1  # "brand-new" is not in the vocabulary
    pairs = list(result)
    assert pairs[0] == (result.item_ids[0], result.scores[0])
    # The scores are the model's next-item logits for the time-sorted history with [MASK] appended.
    ordered = sorted(EVENTS, key=lambda e: e["timestamp"])
    tok = recommender.tokenizer
    inputs = tok(ordered, append_mask=True, return_tensors="pt")
    expected = recommender.model.next_item_scores(**{k: inputs[k] for k in tok.model_input_names})[0]
    top = expected.topk(5)
    assert result.item_ids == [ITEMS[i] for i in top.indices.tolist()]
    np.testing.assert_allclose(result.scores, top.values.numpy(), rtol=0, atol=1e-6)


def test_recommend_batch_matches_single_and_chunking(folders, recommender):
    users = random_users(7, seed=1)
    batch = recommender.recommend(users, k=4)
    assert isinstance(batch, list) and len(batch) == 7
    chunked = Recommender.from_pretrained(str(folders[0]), batch_size=3).recommend(users, k=4)
    for user, full, small in zip(users, batch, chunked):
        single = recommender.recommend(user, k=4)
        for other in (single, small):
            assert other.item_ids == full.item_ids
            np.testing.assert_allclose(other.scores, full.scores, atol=1e-5)
        assert full.unknown_events == sum(e["item_id"] == "never-seen" for e in user)


def test_cold_start_and_empty_history(recommender):
    all_unknown = [{"item_id": f"new-{i}", "event_type": "view", "timestamp": i} for i in range(3)]
    result = recommender.recommend(all_unknown, k=3)
    assert len(result) == 3 and result.unknown_events == 3
    empty = recommender.recommend([], k=3)
    assert len(empty) == 3 and empty.unknown_events == 0
    assert recommender.recommend([[], all_unknown], k=2)[1].unknown_events == 3


def test_exclude_seen_and_candidates(recommender):
    full = recommender.score(EVENTS)[0]
    seen = recommender.recommend(EVENTS, k=len(ITEMS), exclude_seen=True)
    assert {"i00007", "i00003"}.isdisjoint(seen.item_ids) and len(seen) == len(ITEMS) - 2

    candidates = ["i00010", "a/b", "not-in-catalog", "i00007", "i00010"]  # duplicate and unknown
    result = recommender.recommend(EVENTS, k=10, candidates=candidates)
    assert sorted(result.item_ids) == sorted(["i00010", "a/b", "i00007"])
    assert result.unknown_candidates == ["not-in-catalog"]
    expected = sorted(["i00010", "a/b", "i00007"], key=lambda item: -float(full[ITEMS.index(item)]))
    assert result.item_ids == expected
    both = recommender.recommend(EVENTS, k=10, candidates=candidates, exclude_seen=True)
    assert "i00007" not in both.item_ids and len(both) == 2
    per_user = recommender.recommend([EVENTS, EVENTS], k=5, candidates=[["i00001"], ["i00002", "i00009"]])
    assert per_user[0].item_ids == ["i00001"] and sorted(per_user[1].item_ids) == ["i00002", "i00009"]
    with pytest.raises(ValueError, match="k must be"):
        recommender.recommend(EVENTS, k=0)


def test_long_history_is_truncated_but_fully_counted(recommender):
    # 30 events > the model's 16 positions: the model sees the last 15, but `exclude_seen` and the
    # unknown-event count cover every event passed.
    old = [
        {"item_id": "i00011", "event_type": "view", "timestamp": 1},
        {"item_id": "gone", "event_type": "view", "timestamp": 2},
    ]
    recent = [{"item_id": ITEMS[20 + i % 5], "event_type": "view", "timestamp": 100 + i} for i in range(28)]
    result = recommender.recommend(old + recent, k=len(ITEMS), exclude_seen=True)
    assert result.unknown_events == 1
    assert "i00011" not in result.item_ids and not {ITEMS[20 + i] for i in range(5)} & set(result.item_ids)
    truncated = recommender.recommend(recent, k=3)  # the old events fall outside the window: same scores
    np.testing.assert_allclose(recommender.recommend(old + recent, k=3).scores, truncated.scores, atol=1e-6)


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([{"item_id": "i00001", "timestamp": 1}], "missing event_type"),
        ([{"item_id": "i00001", "event_type": "view", "timestamp": "yesterday"}], "timestamp must be unix seconds"),
        ([{"item_id": "i00001", "event_type": "teleport", "timestamp": 1}], "Unknown event types"),
        ({"item_id": "i00001"}, "list of dicts"),
        ([[{"item_id": "i00001", "event_type": "view", "timestamp": 1}], "oops"], "User 1"),
    ],
)
def test_invalid_events_are_clear_errors(recommender, events, message):
    with pytest.raises(InvalidEventsError, match=message):
        recommender.recommend(events)


def test_embeddings(recommender):
    vector = recommender.embed_users(EVENTS)
    matrix = recommender.embed_users([EVENTS, EVENTS[:1]])
    assert vector.shape == (32,) and matrix.shape == (2, 32) and vector.dtype == np.float32
    np.testing.assert_allclose(matrix[0], vector, atol=1e-6)
    # The hidden state at the appended [MASK] is what the next-item head decodes.
    model = recommender.model
    with torch.no_grad():
        query = model.head.transform(torch.from_numpy(vector))
    ids, items = recommender.item_embeddings()
    assert ids == ITEMS and items.shape == (len(ITEMS), 32)
    bias = model.head.bias[recommender.tokenizer.num_special_tokens :].detach().numpy()
    np.testing.assert_allclose(items @ query.numpy() + bias, recommender.score(EVENTS)[0].numpy(), atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# One scoring path: offline metrics == what recommend returns
# ---------------------------------------------------------------------------------------------------------------


def _ranks_from_recommendations(recommendations, targets):
    """Pessimistic rank of each target from a full ranking (k = catalog size): items scoring >= the target."""
    ranks = []
    for result, target in zip(recommendations, targets):
        scores = dict(result)
        if target not in scores:  # unknown to the catalog, or excluded as seen: a miss
            ranks.append(len(ITEMS) + 1)
            continue
        ranks.append(sum(score >= scores[target] for score in result.scores))
    return np.array(ranks)


@pytest.mark.parametrize("exclude_history", [False, True])
def test_offline_metrics_equal_recommend(folders, recommender, exclude_history):
    users = random_users(60, seed=2, max_len=14)
    rng = np.random.default_rng(3)
    targets = []
    for index, user in enumerate(users):
        if index % 10 == 0:
            targets.append("unknown-target")
        elif index % 7 == 0:  # a target already in the history (excluded → miss when exclude_history)
            targets.append(user[0]["item_id"] if user[0]["item_id"] != "never-seen" else ITEMS[1])
        elif index % 3 == 0:
            targets.append(ITEMS[TIED[int(rng.integers(len(TIED)))]])  # tied with two other items
        else:
            targets.append(ITEMS[int(rng.integers(len(ITEMS)))])
    rows = Dataset.from_dict(
        {
            "item_ids": [[e["item_id"] for e in u] for u in users],
            "event_types": [[e["event_type"] for e in u] for u in users],
            "timestamps": [[e["timestamp"] for e in u] for u in users],
            "target_item_id": targets,
        }
    )
    # Exactly what `seqbert evaluate` does (one batch here, padded like the Recommender's batch).
    encoded = encode_for_next_item(rows, recommender.tokenizer, recommender.max_length)
    loader = DataLoader(
        encoded, batch_size=len(users), collate_fn=DataCollatorWithLeftPadding(pad_to_multiple_of=None)
    )
    num_special = recommender.tokenizer.num_special_tokens
    ks = (1, 5, 10)
    offline = evaluate_scorer(
        model_scorer(recommender.model), loader, num_special_tokens=num_special, ks=ks, exclude_history=exclude_history
    )
    offline_ranks, num_items = collect_ranks(
        model_scorer(recommender.model), loader, num_special_tokens=num_special, exclude_history=exclude_history
    )

    served = recommender.recommend(users, k=len(ITEMS), exclude_seen=exclude_history)
    served_ranks = _ranks_from_recommendations(served, targets)
    assert served_ranks.tolist() == offline_ranks.tolist()
    assert any(r > 1 and r < len(ITEMS) for r in served_ranks)  # non-trivial ranks
    tied_rows = [i for i, t in enumerate(targets) if t in {ITEMS[c] for c in TIED} and served_ranks[i] <= len(ITEMS)]
    assert tied_rows, "the tie case must be exercised"
    for row in tied_rows:  # pessimistic: a tied target ranks after both of its twins
        scores = dict(served[row])
        twins = [ITEMS[c] for c in TIED if ITEMS[c] in scores]
        assert len({scores[t] for t in twins}) == 1
        assert served_ranks[row] == min(served[row].item_ids.index(t) for t in twins) + len(twins)
    online = ranking_metrics(served_ranks, ks=ks, num_items=num_items)
    assert online.keys() == offline.keys()
    for key in offline:
        assert online[key] == pytest.approx(offline[key], abs=1e-12), key


def test_evaluation_scorer_is_score_next_items(recommender):
    batch = recommender.encode([EVENTS, EVENTS[:2]]).inputs
    torch.testing.assert_close(
        model_scorer(recommender.model)(batch), score_next_items(recommender.model, batch), rtol=0, atol=0
    )


# ---------------------------------------------------------------------------------------------------------------
# Classifier
# ---------------------------------------------------------------------------------------------------------------


def _manual_probability(classifier, events, query):
    tok = classifier.tokenizer
    ordered = sorted(events, key=lambda e: e["timestamp"])
    inputs = tok(ordered, append_mask=True, query_timestamps=[query], return_tensors="pt")
    with torch.no_grad():
        logits = classifier.model(**{k: inputs[k] for k in tok.model_input_names}).logits
    return float(torch.softmax(logits, -1)[0, 1]), inputs["time_ids"][0, -1].item()


def test_predict_proba_uses_query_timestamp(classifier):
    last = max(e["timestamp"] for e in EVENTS)
    default = classifier.predict_proba(EVENTS)
    expected_default, default_bucket = _manual_probability(classifier, EVENTS, last)
    assert default == pytest.approx(expected_default, abs=1e-6)
    a_week_later = last + 7 * 86_400
    later = classifier.predict_proba(EVENTS, query_timestamp=a_week_later)
    expected_later, later_bucket = _manual_probability(classifier, EVENTS, a_week_later)
    assert later == pytest.approx(expected_later, abs=1e-6)
    assert later_bucket != default_bucket and later != pytest.approx(default, abs=1e-9)
    batch = classifier.predict_proba([EVENTS, EVENTS], query_timestamp=[last, a_week_later])
    assert isinstance(batch, np.ndarray) and batch.shape == (2,)
    np.testing.assert_allclose(batch, [default, later], atol=1e-6)
    prediction = classifier.predict(EVENTS)
    assert prediction.unknown_events == 1 and prediction.query_timestamp == last
    assert 0.0 < classifier.predict_proba([]) < 1.0
    assert classifier.label_name == "purchase"


# ---------------------------------------------------------------------------------------------------------------
# transformers pipelines
# ---------------------------------------------------------------------------------------------------------------


def _pairs(result):
    return [(r["item_id"], r["score"]) for r in result]


@pytest.mark.parametrize("trust_remote_code", [None, True])
def test_recommendation_pipeline_in_process(folders, recommender, trust_remote_code):
    recommend = pipeline(RECOMMENDATION_TASK, model=str(folders[0]), trust_remote_code=trust_remote_code)
    assert type(recommend).__name__ == "NextBehaviorRecommendationPipeline"
    expected = recommender.recommend(EVENTS, k=4)
    one = recommend(EVENTS, k=4)
    assert [item for item, _ in _pairs(one)] == expected.item_ids
    np.testing.assert_allclose([score for _, score in _pairs(one)], expected.scores, atol=1e-6)
    many = recommend([EVENTS, EVENTS[:1], []], k=2, exclude_seen=True)
    assert len(many) == 3 and all(len(r) == 2 for r in many)
    assert "i00003" not in [r["item_id"] for r in many[1]]
    details = recommend(EVENTS, k=3, candidates=["i00001", "nope"], return_details=True)
    assert [r["item_id"] for r in details["items"]] == ["i00001"]
    assert details["unknown_candidates"] == ["nope"] and details["unknown_events"] == 1


def test_classification_pipeline_in_process(folders, classifier):
    predict = pipeline(CLASSIFICATION_TASK, model=str(folders[1]))
    probability = classifier.predict_proba(EVENTS, query_timestamp=1_700_500_000)
    out = predict(EVENTS, query_timestamp=1_700_500_000)  # the most likely label, as transformers' pipelines
    assert out["label"] == ("purchase" if probability >= 0.5 else "no_purchase") and out["unknown_events"] == 1
    assert out["score"] == pytest.approx(max(probability, 1 - probability), abs=1e-6)
    every = predict(EVENTS, query_timestamp=1_700_500_000, top_k=None)
    assert sorted(r["label"] for r in every) == ["no_purchase", "purchase"]
    assert every[0]["score"] >= every[1]["score"] and sum(r["score"] for r in every) == pytest.approx(1.0)
    assert {r["label"]: r["score"] for r in every}["purchase"] == pytest.approx(probability, abs=1e-6)
    assert predict(EVENTS, query_timestamp=1_700_500_000, top_k=1) == [every[0]]


def _folder_with_pipeline_code(folders, tmp_path):
    folder = tmp_path / "with-pipeline"
    shutil.copytree(folders[0], folder)
    save_pipeline_code(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"][RECOMMENDATION_TASK]["impl"] == "pipelines.NextBehaviorRecommendationPipeline"
    assert (folder / "pipelines.py").is_file() and (folder / "inference.py").is_file()
    return folder


def test_folder_pipeline_code_loads_as_remote_code(folders, recommender, tmp_path, monkeypatch):
    """In this process: the folder's own pipeline code (transformers_modules.*) runs; no copied file imports seqbert.

    (The model class may be the registered local one here; the slow test below proves the no-seqbert case.)"""
    from transformers.dynamic_module_utils import get_imports

    folder = _folder_with_pipeline_code(folders, tmp_path)
    for name in (
        "pipelines.py",
        "inference.py",
        "modeling_seqbert.py",
        "tokenization_seqbert.py",
        "configuration_seqbert.py",
    ):
        assert not [module for module in get_imports(str(folder / name)) if module.split(".")[0] == "seqbert"], name
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    with pytest.raises(ValueError, match="trust_remote_code"):
        pipeline(RECOMMENDATION_TASK, model=str(folder))
    recommend = pipeline(RECOMMENDATION_TASK, model=str(folder), trust_remote_code=True)
    assert type(recommend).__module__.startswith("transformers_modules")
    expected = recommender.recommend(EVENTS, k=4)
    result = recommend(EVENTS, k=4)
    assert [r["item_id"] for r in result] == expected.item_ids
    np.testing.assert_allclose([r["score"] for r in result], expected.scores, atol=1e-5)


@pytest.mark.slow
def test_folder_pipeline_with_remote_code_without_seqbert(folders, recommender, tmp_path):
    """``save_pipeline_code`` makes ``pipeline(task, model=folder, trust_remote_code=True)`` work where seqbert
    cannot be imported (a subprocess whose import system refuses ``seqbert``)."""
    folder = _folder_with_pipeline_code(folders, tmp_path)
    script = textwrap.dedent(
        f"""
        import json, sys
        class NoSeqbert:
            def find_spec(self, name, path=None, target=None):
                if name == "seqbert" or name.startswith("seqbert."):
                    raise ImportError("seqbert is hidden in this test")
        sys.meta_path.insert(0, NoSeqbert())
        from transformers import pipeline
        recommend = pipeline({RECOMMENDATION_TASK!r}, model={str(folder)!r}, trust_remote_code=True)
        assert "seqbert" not in sys.modules
        events = json.loads(sys.stdin.read())
        print(json.dumps({{"module": type(recommend).__module__, "result": recommend(events, k=4)}}))
        """
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "TRANSFORMERS_VERBOSITY": "error",
    }
    completed = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(EVENTS),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    output = json.loads(completed.stdout.strip().splitlines()[-1])
    assert output["module"].startswith("transformers_modules")
    expected = recommender.recommend(EVENTS, k=4)
    assert [r["item_id"] for r in output["result"]] == expected.item_ids
    np.testing.assert_allclose([r["score"] for r in output["result"]], expected.scores, atol=1e-5)
