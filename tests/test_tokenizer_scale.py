"""BehaviorTokenizer at scale: vectorised Arrow encoding, hash buckets for unseen items, fast vocabulary
training, and datasets.map with several processes."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pytest

import seqbert.tokenization_seqbert as tokenization
from seqbert import BehaviorTokenizer
from seqbert.prepared import encode_for_next_item, encode_for_pretraining
from seqbert.tokenization_seqbert import HASH_TOKEN, stable_hash64

UNK = 4
AWKWARD = ["", " ", "a", "café ☕", "日本語", "007", "7", "x" * 300, "tab\tid", "[unk]", "[HASH_0 ]"]


def reference_hash(item: str) -> int:
    """The documented algorithm, in plain Python: FNV-1a 64 over UTF-8 bytes + splitmix64 finaliser."""
    mask = 2**64 - 1
    h = 0xCBF29CE484222325
    for byte in item.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & mask
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & mask
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & mask
    return h ^ (h >> 31)


def columns(rows):
    return {
        "item_ids": [[e[0] for e in row] for row in rows],
        "event_types": [[e[1] for e in row] for row in rows],
        "timestamps": [[e[2] for e in row] for row in rows],
    }


# --------------------------------------------------------------------------------------- stable hash
def test_stable_hash_matches_the_reference():
    assert stable_hash64(AWKWARD).tolist() == [reference_hash(s) for s in AWKWARD]
    # Known values pin the algorithm across versions (saved models depend on the buckets).
    assert stable_hash64(["", "a"]).tolist() == [reference_hash(""), reference_hash("a")]
    assert stable_hash64([]).tolist() == []


def test_stable_hash_handles_slices_chunks_nulls_and_dictionaries():
    array = pa.array(AWKWARD)
    assert stable_hash64(array.slice(3, 4)).tolist() == [reference_hash(s) for s in AWKWARD[3:7]]
    chunked = pa.chunked_array([array.slice(0, 5), array.slice(5)])
    assert stable_hash64(chunked).tolist() == [reference_hash(s) for s in AWKWARD]
    assert stable_hash64(pa.array(["b", None])).tolist() == [reference_hash("b"), reference_hash("")]
    assert stable_hash64(array.dictionary_encode()).tolist() == [reference_hash(s) for s in AWKWARD]


# --------------------------------------------------------------------------------------- hash buckets
def test_hash_buckets_layout_and_ids():
    tok = BehaviorTokenizer(items=["a", "b"], unseen_items="hash", num_hash_buckets=3)
    assert tok.num_special_tokens == 8 and tok.vocab_size == 10
    assert tok.unk_token_id == UNK and tok.mask_token_id == 1
    vocab = tok.get_vocab()
    assert [vocab[HASH_TOKEN.format(k)] for k in range(3)] == [5, 6, 7]
    assert vocab["a"] == 8 and vocab["b"] == 9
    unseen = ["zz", "café", "", "A"]
    expected = [5 + reference_hash(item) % 3 for item in unseen]
    assert tok.item_token_ids(["a"] + unseen + ["b"]).tolist() == [8, *expected, 9]
    assert tok.hash_bucket_ids(unseen).tolist() == expected
    assert tok.convert_tokens_to_ids(["b", "zz", "[MASK]"]) == [9, expected[0], 1]
    assert tok.decode_items([5, 6, 7, 8, 9, UNK]) == [None, None, None, "a", "b", None]
    assert tok.convert_ids_to_tokens([5, 8]) == ["[HASH_0]", "a"]
    assert tok.item_token_ids(pa.array(["a", None])).tolist() == [8, UNK]  # a missing id is unknown, not hashed
    enc = tok(columns([[("a", "view", 0), ("zz", "cart", 5), ("b", "view", 9)]]))
    assert enc["input_ids"] == [[8, expected[0], 9]]


def test_unk_mode_is_unchanged():
    tok = BehaviorTokenizer(items=["a", "b"])
    assert tok.unseen_items == "unk" and tok.num_hash_buckets == 0 and tok.num_special_tokens == 5
    assert tok.item_token_ids(["a", "zz", "b"]).tolist() == [5, UNK, 6]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"unseen_items": "hash"},
        {"unseen_items": "hash", "num_hash_buckets": 0},
        {"num_hash_buckets": 4},
        {"unseen_items": "drop"},
    ],
)
def test_invalid_unseen_item_options(kwargs):
    with pytest.raises(ValueError):
        BehaviorTokenizer(items=["a"], **kwargs)


def test_item_named_like_a_hash_bucket_collides():
    with pytest.raises(ValueError, match="collide"):
        BehaviorTokenizer(items=["a", "[HASH_1]"], unseen_items="hash", num_hash_buckets=2)
    BehaviorTokenizer(items=["a", "[HASH_1]"])  # fine without hash buckets


def test_hash_options_round_trip(tmp_path):
    tok = BehaviorTokenizer.train([["a", "b", "b"], ["c"]], unseen_items="hash", num_hash_buckets=4, max_length=9)
    tok.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["unseen_items"] == "hash" and config["num_hash_buckets"] == 4
    loaded = BehaviorTokenizer.from_pretrained(tmp_path)
    assert (loaded.unseen_items, loaded.num_hash_buckets, loaded.num_special_tokens) == ("hash", 4, 9)
    assert loaded.get_vocab() == tok.get_vocab()
    probe = ["a", "b", "c", "new-1", "new-2", "ünïcode"]
    assert loaded.item_token_ids(probe).tolist() == tok.item_token_ids(probe).tolist()
    # A plain tokenizer saved before the option existed still loads as "unk".
    plain = tmp_path / "plain"
    BehaviorTokenizer(items=["a"]).save_pretrained(plain)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("unseen_items"), config.pop("num_hash_buckets")
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    assert BehaviorTokenizer.from_pretrained(plain).unseen_items == "unk"


# -------------------------------------------------------------------------------- vocabulary building
SEQUENCES = [["b", "c", "c"], ["a", "c", "b", "e"], ["d", "e", "é", "é"]]


@pytest.mark.parametrize(
    "min_count, max_size, expected",
    [
        (1, None, ["c", "b", "e", "é", "a", "d"]),
        (2, None, ["c", "b", "e", "é"]),
        (1, 2, ["c", "b"]),
        (3, 5, ["c"]),
        (2, 0, []),
    ],
)
def test_min_count_and_max_size_in_both_modes(min_count, max_size, expected):
    for kwargs in ({}, {"unseen_items": "hash", "num_hash_buckets": 5}):
        tok = BehaviorTokenizer.train(SEQUENCES, min_count=min_count, max_size=max_size, **kwargs)
        assert tok.items == expected
        dropped = sorted({item for row in SEQUENCES for item in row} - set(expected))
        ids = tok.item_token_ids(dropped)
        if kwargs:  # items cut by min_count or max_size get their hash bucket, never [UNK]
            assert ids.tolist() == [5 + reference_hash(item) % 5 for item in dropped]
        else:
            assert ids.tolist() == [UNK] * len(dropped)
        assert (tok.item_token_ids(expected) >= tok.num_special_tokens).all()


def test_train_on_arrow_and_datasets_columns_equals_python():
    rng = np.random.default_rng(0)
    rows = [[f"i{int(x)}" for x in rng.zipf(1.3, rng.integers(0, 30)) % 500] for _ in range(400)]
    python = BehaviorTokenizer.train(rows, min_count=2, max_size=150)
    arrow = BehaviorTokenizer.train(pa.array(rows, pa.list_(pa.string())), min_count=2, max_size=150)
    dataset = datasets.Dataset.from_dict({"item_ids": rows})
    column = BehaviorTokenizer.train(dataset["item_ids"], min_count=2, max_size=150)
    selected = BehaviorTokenizer.train(dataset.select(range(0, 400, 2))["item_ids"], min_count=2)
    assert python.items == arrow.items == column.items
    assert selected.items == BehaviorTokenizer.train(rows[::2], min_count=2).items
    # Per-partition counts summed give the same vocabulary.
    items = ["a", "b", "a", "c"]
    counts = [2, 5, 4, 1]
    assert BehaviorTokenizer.from_item_counts(items, counts).items == ["a", "b", "c"]


# ----------------------------------------------------------------------------------- vectorised encode
def random_batch(rng: np.random.Generator, rows: int, vocab: list[str]) -> dict[str, list]:
    lengths = rng.integers(0, 40, rows)
    items = [
        [vocab[i] if i < len(vocab) else f"unseen-{i}" for i in rng.integers(0, len(vocab) + 50, n)] for n in lengths
    ]
    types = [list(rng.choice(["view", "cart", "purchase"], n)) for n in lengths]
    times = [np.cumsum(rng.integers(0, 5000, n)).tolist() for n in lengths]
    return {"item_ids": items, "event_types": types, "timestamps": times}


@pytest.mark.parametrize("kwargs", [{}, {"unseen_items": "hash", "num_hash_buckets": 7}])
def test_arrow_batches_give_the_same_ids_as_lists(kwargs):
    rng = np.random.default_rng(1)
    vocab = [f"i{k}" for k in range(300)]
    tok = BehaviorTokenizer(items=vocab, **kwargs)
    batch = random_batch(rng, 60, vocab)
    table = pa.table(
        {
            "item_ids": pa.array(batch["item_ids"], pa.list_(pa.string())),
            "event_types": pa.array(batch["event_types"], pa.list_(pa.string())),
            "timestamps": pa.array(batch["timestamps"], pa.list_(pa.int64())),
        }
    )
    for options in (
        {},
        {"max_length": 9},
        {"append_mask": True, "max_length": 12},
        {"append_mask": True, "query_timestamps": [10**9] * 60},
    ):
        lists = tok(batch, **options)
        arrow = tok(table, **options)
        sliced_options = dict(options)
        if "query_timestamps" in options:
            sliced_options["query_timestamps"] = options["query_timestamps"][10:30]
        sliced = tok(table.slice(10, 20), **sliced_options)
        assert isinstance(arrow["input_ids"], pa.ListArray)
        assert arrow["input_ids"].type == pa.list_(pa.int32()) and arrow["attention_mask"].type == pa.list_(pa.int8())
        assert arrow["behavior_ids"].type == arrow["time_ids"].type == pa.list_(pa.int16())  # 9 bytes per event
        for name in tok.model_input_names:
            assert arrow[name].to_pylist() == lists[name], (name, options)
            assert sliced[name].to_pylist() == lists[name][10:30], (name, options)
        assert tok(table, return_arrow=False, **options).data == lists.data
    with pytest.raises(ValueError, match="return_arrow"):
        tok(batch, return_arrow=True, padding=True)


def test_small_and_large_lookups_agree(monkeypatch):
    """Small batches use the sorted-hash lookup, large ones index_in; both give the same ids, also
    when hashes collide (then the tokenizer falls back to index_in)."""
    vocab = [f"item-{k}" for k in range(5000)]
    tok = BehaviorTokenizer(items=vocab)
    probe = ["item-7", "nope", "item-4999", "", "item-0"]
    small = tok.item_positions(probe)  # 3 * 5 < 5000: hash lookup
    large = tok.item_positions(probe * 1000)[:5]  # index_in
    assert small.tolist() == large.tolist() == [7, -1, 4999, -1, 0]
    colliding = BehaviorTokenizer(items=vocab)
    monkeypatch.setattr(tokenization, "stable_hash64", lambda values: np.zeros(len(values), dtype=np.uint64))
    assert colliding._vocab_hash_index() is None
    assert colliding.item_positions(probe).tolist() == [7, -1, 4999, -1, 0]


@pytest.mark.parametrize("arrow_format", [False, True])
def test_datasets_map_with_two_processes(arrow_format):
    rng = np.random.default_rng(2)
    vocab = [f"i{k}" for k in range(200)]
    tok = BehaviorTokenizer(items=vocab, unseen_items="hash", num_hash_buckets=11)
    batch = random_batch(rng, 90, vocab)
    dataset = datasets.Dataset.from_dict(batch)
    expected = tok(batch, max_length=16)
    source, function = (dataset.with_format("arrow"), tok.encode_table) if arrow_format else (dataset, tok)
    mapped = source.map(
        function,
        batched=True,
        batch_size=16,
        num_proc=2,
        fn_kwargs={"max_length": 16},
        remove_columns=dataset.column_names,
    ).with_format(None)
    for name in tok.model_input_names:
        assert list(mapped[name]) == expected[name], name


def test_prepared_encoders_in_hash_mode():
    tok = BehaviorTokenizer(items=["a", "b"], unseen_items="hash", num_hash_buckets=4)
    special = tok.num_special_tokens
    dataset = datasets.Dataset.from_dict(
        {
            "item_ids": [["a", "zz"], ["yy", "xx"], ["b"]],
            "event_types": [["view", "view"], ["view", "cart"], ["view"]],
            "timestamps": [[1, 2], [3, 4], [5]],
            "target_item_id": ["b", "qq", "a"],
        }
    )
    train = encode_for_pretraining(dataset, tok, 10)
    # The row with only hashed (unseen) items has no learnable label: dropped; row ids are dense.
    assert train.num_rows == 2 and train["row_id"] == [0, 1]
    assert train["input_ids"][0] == [special, 5 + reference_hash("zz") % 4]
    assert all(max(row) >= special for row in train["input_ids"])
    rows = encode_for_next_item(dataset, tok, 10)
    assert rows["target_ids"] == [1, -1, 0]  # unseen targets are not item columns, hashed or not


def test_tokenizer_file_stays_self_contained():
    tree = ast.parse(Path(tokenization.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            imported.add(node.module.split(".")[0])
    allowed = {"numpy", "pyarrow", "transformers", "__future__", "json", "os", "collections", "itertools", "typing"}
    assert imported <= allowed, imported - allowed


def test_encode_for_pretraining_chunks_threads_and_cache_file(tmp_path, monkeypatch):
    from seqbert import prepared

    rng = np.random.default_rng(3)
    vocab = [f"i{k}" for k in range(100)]
    tok = BehaviorTokenizer(items=vocab)
    dataset = datasets.Dataset.from_dict(random_batch(rng, 200, vocab))
    whole = prepared.encode_for_pretraining(dataset, tok, 12, threads=1)
    monkeypatch.setattr(prepared, "EVENTS_PER_CHUNK", 50)  # many chunks
    assert len(prepared._row_chunks(dataset.data.table)) > 10
    threaded = prepared.encode_for_pretraining(dataset, tok, 12, threads=3)
    cached = prepared.encode_for_pretraining(dataset, tok, 12, cache_file=tmp_path / "train.arrow")
    assert cached.cache_files and (tmp_path / "train.arrow").exists()
    assert whole[:] == threaded[:] == cached[:]
    assert whole.features == threaded.features == cached.features
    assert whole["row_id"] == list(range(whole.num_rows))
    # Selections (an indices mapping) are honoured.
    subset = dataset.select([5, 1, 7])
    assert prepared.encode_for_pretraining(subset, tok, 12)["input_ids"] == [
        row for row in tok(subset[:], max_length=12)["input_ids"] if row and max(row) >= 5
    ]


def test_behavior_and_time_ids_must_fit_int16():
    with pytest.raises(ValueError, match="int16"):
        BehaviorTokenizer(items=["a"], num_gap_buckets=40_000)
    with pytest.raises(ValueError, match="int16"):
        BehaviorTokenizer(items=["a"], event_types=[f"type{k}" for k in range(40_000)])
