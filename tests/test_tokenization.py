"""Tests for seqbert.BehaviorTokenizer: exact id streams on hand cases, vocabulary building, and
save/load round trips (STYLE conventions 16, 17 and 20)."""

from __future__ import annotations

import json
import math

import datasets
import pytest
import torch
from transformers import AutoTokenizer

import seqbert  # noqa: F401  (registers the Auto classes)
from seqbert import BehaviorTokenizer
from seqbert.data.schema import EVENT_TYPES

# Specials [PAD]=0 [MASK]=1 [CLS]=2 [SEP]=3 [UNK]=4; items from 5.
PAD, MASK, CLS, SEP, UNK = 0, 1, 2, 3, 4
# Behavior ids with the default event types: 0 pad, 1 mask, then view=2 click=3 search=4 cart=5 fav=6 purchase=7.
B = {"pad": 0, "mask": 1, "view": 2, "click": 3, "search": 4, "cart": 5, "fav": 6, "purchase": 7}
T_PAD, T_MASK, T_FIRST = 0, 1, 2


def time_id(gap: int, num_gap_buckets: int = 23) -> int:
    """Reference formula from the module docstring, computed independently (math, not numpy)."""
    return 3 + min(math.floor(math.log2(1 + gap)), num_gap_buckets - 1)


def columns(*rows):
    """Column-form batch from rows of (item, event_type, timestamp) triples."""
    return {
        "item_ids": [[e[0] for e in row] for row in rows],
        "event_types": [[e[1] for e in row] for row in rows],
        "timestamps": [[e[2] for e in row] for row in rows],
    }


@pytest.fixture
def tok() -> BehaviorTokenizer:
    # a=5, b=6, c=7, d=8
    return BehaviorTokenizer(items=["a", "b", "c", "d"])


# ---------------------------------------------------------------------------------------------
# Exact id streams
# ---------------------------------------------------------------------------------------------


def test_reference_time_formula():
    # Sanity of the reference itself: gap 0 -> 3, gap 1 -> 4, gap 2 -> 4, gap 3 -> 5, gap 7 -> 6, gap 8 -> 6.
    assert [time_id(g) for g in (0, 1, 2, 3, 7, 8, 60)] == [3, 4, 4, 5, 6, 6, 8]


def test_hand_case_exact_streams(tok):
    row = [("b", "view", 100), ("a", "cart", 100), ("c", "click", 103), ("zzz", "purchase", 163), ("d", "fav", 10**9)]
    enc = tok(columns(row))
    assert enc["input_ids"] == [[6, 5, 7, UNK, 8]]
    assert enc["behavior_ids"] == [[2, 5, 3, 7, 6]]
    # first event -> 2; gap 0 -> 3; gap 3 -> 3 + 2 = 5; gap 60 -> 3 + 5 = 8; gap ~1e9 -> 3 + 29 capped at 3 + 22 = 25.
    assert enc["time_ids"] == [[T_FIRST, 3, 5, 8, 25]]
    assert enc["time_ids"][0] == [T_FIRST] + [time_id(g) for g in (0, 3, 60, 10**9 - 163)]
    assert enc["attention_mask"] == [[1, 1, 1, 1, 1]]


def test_docstring_example(tok):
    small = BehaviorTokenizer(items=["sku-1", "sku-2"])
    enc = small({"item_ids": [["sku-2", "sku-1"]], "event_types": [["view", "cart"]], "timestamps": [[0, 60]]})
    assert (enc["input_ids"], enc["behavior_ids"], enc["time_ids"]) == ([[6, 5]], [[2, 5]], [[2, 8]])
    assert small.decode_items([6, 5, 1]) == ["sku-2", "sku-1", None]


def test_batch_first_event_per_sequence_and_empty_rows(tok):
    # The gap of a sequence's first event never looks at the previous sequence.
    enc = tok(columns([("a", "view", 1000), ("b", "view", 1001)], [], [("c", "view", 5), ("d", "view", 5)]))
    assert enc["input_ids"] == [[5, 6], [], [7, 8]]
    assert enc["time_ids"] == [[T_FIRST, 4], [], [T_FIRST, 3]]
    assert enc["attention_mask"] == [[1, 1], [], [1, 1]]


def test_custom_event_types_and_gap_buckets():
    tok = BehaviorTokenizer(items=["x"], event_types=["buy", "look"], num_gap_buckets=3)
    enc = tok(columns([("x", "look", 0), ("x", "buy", 1), ("x", "look", 4), ("x", "look", 1_000)]))
    assert enc["behavior_ids"] == [[3, 2, 3, 3]]
    # gaps 1 -> 3+1, 3 -> 3+2, 996 -> 3+min(9, 2) = 5.
    assert enc["time_ids"] == [[T_FIRST, 4, 5, 5]]
    assert tok.num_behaviors == 4 and tok.num_time_buckets == 6


def test_decreasing_timestamps_clip_gap_to_zero(tok):
    enc = tok(columns([("a", "view", 50), ("b", "view", 10)]))
    assert enc["time_ids"] == [[T_FIRST, 3]]


def test_left_truncation_keeps_most_recent(tok):
    row = [("a", "view", 0), ("b", "click", 1), ("c", "cart", 3), ("d", "purchase", 10)]
    enc = tok(columns(row), max_length=2)
    assert enc["input_ids"] == [[7, 8]]
    assert enc["behavior_ids"] == [[5, 7]]
    # The kept first event still has a real predecessor: its gap (2 s) is kept, not "first event".
    assert enc["time_ids"] == [[time_id(2), time_id(7)]]
    # The tokenizer's own max_length is the default.
    short = BehaviorTokenizer(items=["a", "b", "c", "d"], max_length=3)
    assert short(columns(row))["input_ids"] == [[6, 7, 8]]


def test_append_mask(tok):
    row = [("a", "view", 0), ("b", "click", 1), ("c", "cart", 3)]
    enc = tok(columns(row), append_mask=True)
    assert enc["input_ids"] == [[5, 6, 7, MASK]]
    assert enc["behavior_ids"] == [[2, 3, 5, 1]]
    assert enc["time_ids"] == [[T_FIRST, 4, 4, T_MASK]]
    assert enc["attention_mask"] == [[1, 1, 1, 1]]
    # max_length counts the appended mask: 3 tokens = 2 most recent events + [MASK].
    enc = tok(columns(row), append_mask=True, max_length=3)
    assert enc["input_ids"] == [[6, 7, MASK]]
    with pytest.raises(ValueError):
        tok(columns(row), append_mask=True, max_length=1)


def test_left_padding_and_pt_tensors(tok):
    batch = columns([("a", "view", 0), ("b", "cart", 2)], [("c", "purchase", 7)])
    enc = tok(batch, append_mask=True, return_tensors="pt")
    assert isinstance(enc["input_ids"], torch.Tensor) and enc["input_ids"].dtype == torch.long
    assert enc["input_ids"].tolist() == [[5, 6, MASK], [PAD, 7, MASK]]
    assert enc["behavior_ids"].tolist() == [[2, 5, 1], [0, 7, 1]]
    assert enc["time_ids"].tolist() == [[T_FIRST, time_id(2), T_MASK], [T_PAD, T_FIRST, T_MASK]]
    assert enc["attention_mask"].tolist() == [[1, 1, 1], [0, 1, 1]]
    assert set(enc.keys()) == {"input_ids", "behavior_ids", "time_ids", "attention_mask"}

    padded = tok(batch, padding="max_length", max_length=5, pad_to_multiple_of=4)
    assert padded["input_ids"] == [[0] * 6 + [5, 6], [0] * 7 + [7]]
    assert padded["attention_mask"] == [[0] * 6 + [1, 1], [0] * 7 + [1]]
    longest = tok(batch, padding=True)
    assert longest["input_ids"] == [[5, 6], [0, 7]]


def test_unknown_items_map_to_unk(tok):
    assert tok.item_token_ids(["b", "nope", "A", "a "]).tolist() == [6, UNK, UNK, UNK]
    assert tok.convert_tokens_to_ids(["a", "nope", "[MASK]"]) == [5, UNK, MASK]
    assert tok.decode_items([UNK, PAD, 5, 8]) == [None, None, "a", "d"]


def test_unknown_event_type_raises(tok):
    with pytest.raises(ValueError, match="pageview"):
        tok(columns([("a", "view", 0), ("b", "pageview", 1)]))


def test_mismatched_column_lengths_raise(tok):
    with pytest.raises(ValueError):
        tok({"item_ids": [["a", "b"]], "event_types": [["view"]], "timestamps": [[0, 1]]})


def test_special_token_ids_and_sizes(tok):
    assert (tok.pad_token_id, tok.mask_token_id, tok.cls_token_id, tok.sep_token_id, tok.unk_token_id) == (
        0,
        1,
        2,
        3,
        4,
    )
    assert tok.num_special_tokens == 5
    assert tok.vocab_size == 9 and len(tok) == 9
    assert tok.items == ["a", "b", "c", "d"]
    vocab = tok.get_vocab()
    assert vocab == {"[PAD]": 0, "[MASK]": 1, "[CLS]": 2, "[SEP]": 3, "[UNK]": 4, "a": 5, "b": 6, "c": 7, "d": 8}
    assert all(type(key) is str for key in vocab)


def test_default_event_types_match_schema():
    assert tuple(BehaviorTokenizer(items=["a"]).event_types) == EVENT_TYPES
    enc = BehaviorTokenizer(items=["a"])(columns([("a", e, i) for i, e in enumerate(EVENT_TYPES)]))
    assert enc["behavior_ids"] == [list(range(2, 2 + len(EVENT_TYPES)))]


@pytest.mark.parametrize("special", ["[PAD]", "[MASK]", "[CLS]", "[SEP]", "[UNK]"])
def test_item_colliding_with_special_token_raises(special):
    with pytest.raises(ValueError, match="collide"):
        BehaviorTokenizer(items=["a", special])
    with pytest.raises(ValueError, match="collide"):
        BehaviorTokenizer.train([["a", special]])


def test_duplicate_items_raise():
    with pytest.raises(ValueError, match="duplicate"):
        BehaviorTokenizer(items=["a", "b", "a"])


def test_needs_vocab():
    with pytest.raises(ValueError):
        BehaviorTokenizer()


# ---------------------------------------------------------------------------------------------
# Vocabulary training
# ---------------------------------------------------------------------------------------------


def test_train_orders_by_count_then_id():
    sequences = [["b", "c", "c"], ["a", "c", "b", "e"], ["d", "e", "10", "9"]]
    # counts: c=3, b=2, e=2, a=1, d=1, 10=1, 9=1; ties by id *string* ("10" < "9" < "a" < "d").
    tok = BehaviorTokenizer.train(sequences)
    assert tok.items == ["c", "b", "e", "10", "9", "a", "d"]
    assert tok.get_vocab()["c"] == 5 and tok.get_vocab()["d"] == 11


def test_train_min_count_and_max_size():
    sequences = [["b", "c", "c"], ["a", "c", "b", "e"], ["d", "e"]]
    assert BehaviorTokenizer.train(sequences, min_count=2).items == ["c", "b", "e"]
    assert BehaviorTokenizer.train(sequences, max_size=2).items == ["c", "b"]
    assert BehaviorTokenizer.train(sequences, min_count=3, max_size=5).items == ["c"]
    tok = BehaviorTokenizer.train(sequences, min_count=2)
    # Rare items are unknown.
    assert tok.item_token_ids(["a", "d", "c"]).tolist() == [UNK, UNK, 5]


def test_train_only_sees_what_it_is_given():
    train_part = [["a", "b"], ["b"]]
    tok = BehaviorTokenizer.train(iter(train_part))  # any iterable, e.g. a generator over the training split
    assert tok.items == ["b", "a"]
    assert "test-only-item" not in tok.get_vocab()
    assert tok.item_token_ids(["test-only-item"]).tolist() == [UNK]


def test_train_forwards_options_and_stringifies():
    tok = BehaviorTokenizer.train([[7, 7, "007"]], event_types=["view", "buy"], num_gap_buckets=4, max_length=9)
    assert tok.items == ["7", "007"]
    assert tok.event_types == ["view", "buy"] and tok.num_gap_buckets == 4 and tok.max_length == 9


# ---------------------------------------------------------------------------------------------
# Save / load
# ---------------------------------------------------------------------------------------------

AWKWARD = [
    "café ☕",
    "a b",
    "x,y",
    "007",
    "7",
    "07",
    "",
    " ",
    '"q"',
    "tab\tid",
    "line\nbreak",
    "日本語",
    "[pad]",
    "null",
    "1e3",
    "-0",
]


def test_round_trip_keeps_awkward_ids_and_options(tmp_path):
    tok = BehaviorTokenizer(items=AWKWARD, event_types=["view", "cart", "buy"], num_gap_buckets=7, max_length=12)
    tok.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "item_vocab.json").read_text(encoding="utf-8")) == AWKWARD
    config = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["event_types"] == ["view", "cart", "buy"]
    assert config["num_gap_buckets"] == 7 and config["max_length"] == 12
    assert "items" not in config  # the vocabulary lives in item_vocab.json only

    loaded = BehaviorTokenizer.from_pretrained(tmp_path)
    assert loaded.items == AWKWARD
    assert loaded.get_vocab() == tok.get_vocab()
    assert all(type(key) is str for key in loaded.get_vocab())
    assert loaded.event_types == ["view", "cart", "buy"]
    assert loaded.num_gap_buckets == 7 and loaded.max_length == 12 and loaded.model_max_length == 12
    assert (loaded.pad_token_id, loaded.mask_token_id, loaded.unk_token_id) == (0, 1, 4)
    assert loaded.item_token_ids(["007", "7", "07", "", " "]).tolist() == [8, 9, 10, 11, 12]
    assert loaded.decode_items(range(5, 5 + len(AWKWARD))) == AWKWARD

    events = columns([(item, "buy", 10 * i) for i, item in enumerate(AWKWARD)])
    assert loaded(events, append_mask=True).data == tok(events, append_mask=True).data
    # 16 events + mask with max_length 12: the 11 most recent events are kept.
    assert loaded(events, append_mask=True)["input_ids"] == [list(range(10, 21)) + [MASK]]
    assert loaded(events)["time_ids"][0][-1] == time_id(10, 7)


def test_reloaded_tokenizer_still_rejects_special_clashes(tmp_path):
    BehaviorTokenizer(items=["a"]).save_pretrained(tmp_path)
    (tmp_path / "item_vocab.json").write_text(json.dumps(["a", "[MASK]"]), encoding="utf-8")
    with pytest.raises(ValueError, match="collide"):
        BehaviorTokenizer.from_pretrained(tmp_path)


def test_auto_tokenizer_loads_behavior_tokenizer(tmp_path):
    BehaviorTokenizer(items=["a", "b"], num_gap_buckets=5).save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded, BehaviorTokenizer)
    assert loaded.items == ["a", "b"] and loaded.num_gap_buckets == 5


# ---------------------------------------------------------------------------------------------
# Input forms
# ---------------------------------------------------------------------------------------------


def test_raw_event_dicts_single_user_sorted_stably(tok):
    events = [
        {"item_id": "c", "event_type": "cart", "timestamp": 20},
        {"item_id": "a", "event_type": "view", "timestamp": 10},
        {"item_id": "d", "event_type": "click", "timestamp": 20},  # ties with "c": input order kept
        {"item_id": "b", "event_type": "view", "timestamp": "5"},
    ]
    enc = tok(events)
    assert enc["input_ids"] == [[6, 5, 7, 8]]
    assert enc["behavior_ids"] == [[2, 2, 5, 3]]
    assert enc["time_ids"] == [[T_FIRST, time_id(5), time_id(10), 3]]


def test_raw_event_dicts_batch(tok):
    batch = [
        [
            {"item_id": "b", "event_type": "view", "timestamp": 9},
            {"item_id": "a", "event_type": "view", "timestamp": 1},
        ],
        [{"item_id": "d", "event_type": "purchase", "timestamp": 3}],
    ]
    enc = tok(batch, append_mask=True, return_tensors="pt")
    assert enc["input_ids"].tolist() == [[5, 6, MASK], [PAD, 8, MASK]]
    assert enc["behavior_ids"].tolist() == [[2, 2, 1], [0, 7, 1]]
    assert enc["time_ids"].tolist() == [[T_FIRST, time_id(8), T_MASK], [T_PAD, T_FIRST, T_MASK]]


def test_raw_event_dict_missing_key_raises(tok):
    with pytest.raises(ValueError, match="timestamp"):
        tok([{"item_id": "a", "event_type": "view"}])


def test_single_user_column_form(tok):
    enc = tok({"item_ids": ["a", "b"], "event_types": ["view", "cart"], "timestamps": [0, 1]})
    assert enc["input_ids"] == [[5, 6]] and enc["time_ids"] == [[T_FIRST, 4]]


def _users_dataset() -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "user_id": ["u1", "u2", "u3", "u4", "u5"],
            "item_ids": [["a"], ["b", "c"], ["nope"], [], ["d", "a", "b"]],
            "event_types": [["view"], ["cart", "view"], ["view"], [], ["view", "view", "purchase"]],
            "timestamps": [[1], [1, 5], [3], [], [0, 0, 3]],
        }
    )


EXPECTED_MAP = {
    "input_ids": [[5], [6, 7], [UNK], [], [8, 5, 6]],
    "behavior_ids": [[2], [5, 2], [2], [], [2, 2, 7]],
    "time_ids": [[T_FIRST], [T_FIRST, time_id(4)], [T_FIRST], [], [T_FIRST, 3, time_id(3)]],
    "attention_mask": [[1], [1, 1], [1], [], [1, 1, 1]],
}


@pytest.mark.parametrize("num_proc", [None, 2])
def test_dataset_map_batched(tok, num_proc):
    mapped = _users_dataset().map(tok, batched=True, batch_size=2, num_proc=num_proc)
    assert set(mapped.column_names) >= {
        "user_id",
        "item_ids",
        "input_ids",
        "behavior_ids",
        "time_ids",
        "attention_mask",
    }
    assert mapped["user_id"] == ["u1", "u2", "u3", "u4", "u5"]
    for name, expected in EXPECTED_MAP.items():
        assert list(mapped[name]) == expected, name


def test_query_timestamps_give_the_appended_mask_the_recency_gap():
    tok = BehaviorTokenizer(items=["a", "b"])
    columns = {"item_ids": [["a", "b"], []], "event_types": [["view", "view"], []], "timestamps": [[0, 10], []]}
    plain = tok(columns, append_mask=True)
    assert [row[-1] for row in plain["time_ids"]] == [1, 1]  # unknown gap: the time mask id
    queried = tok(columns, append_mask=True, query_timestamps=[10 + 1000, 50])
    # gap 1000 s -> 3 + floor(log2(1001)) = 12; an empty history has no previous event -> first-event id 2
    assert [row[-1] for row in queried["time_ids"]] == [12, 2]
    assert queried["input_ids"] == plain["input_ids"] and queried["behavior_ids"] == plain["behavior_ids"]
    with pytest.raises(ValueError, match="one value per sequence"):
        tok(columns, append_mask=True, query_timestamps=[1])
