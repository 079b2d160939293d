"""Item category (e.g. brand) embeddings: the table from the train split, inputs and outputs, checkpointing."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from seqbert import BehaviorTokenizer, SeqBertConfig, SeqBertForMaskedBehaviorModeling
from seqbert.training.pretrain import item_category_table


def tokenizer_for(items: list[str]) -> BehaviorTokenizer:
    return BehaviorTokenizer.train([[i] for i in items], event_types=["purchase"])


def train_split(rows: list[tuple[list[str], list[str | None]]]) -> Dataset:
    return Dataset.from_dict({
        "item_ids": [items for items, _ in rows],
        "event_types": [["purchase"] * len(items) for items, _ in rows],
        "timestamps": [list(range(len(items))) for items, _ in rows],
        "categories": [categories for _, categories in rows],
    })  # fmt: skip


def test_category_table_takes_each_items_most_frequent_category():
    tokenizer = tokenizer_for(["a", "b", "c", "d"])
    train = train_split([(["a", "b", "a"], ["x", "y", "z"]), (["a", "c", "b"], ["z", None, "y"]), (["d"], ["y"])])
    table, num_categories = item_category_table(train, tokenizer)
    ids = dict(zip(["a", "b", "c", "d"], tokenizer.item_token_ids(["a", "b", "c", "d"]).tolist()))
    assert num_categories == 3  # x, y, z -> 1, 2, 3 in sorted order
    assert table[ids["a"]] == 3 and table[ids["b"]] == 2 and table[ids["c"]] == 0 and table[ids["d"]] == 2
    assert (table[: tokenizer.num_special_tokens] == 0).all()


def test_category_table_needs_categories():
    tokenizer = tokenizer_for(["a"])
    with pytest.raises(ValueError, match="category"):
        item_category_table(train_split([(["a"], [None])]), tokenizer)
    with pytest.raises(ValueError, match="category"):
        item_category_table(train_split([(["a"], ["x"])]).remove_columns("categories"), tokenizer)


def small_model(num_item_categories: int) -> SeqBertForMaskedBehaviorModeling:
    torch.manual_seed(0)
    config = SeqBertConfig(
        vocab_size=15, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=8, num_item_categories=num_item_categories,
    )  # fmt: skip
    return SeqBertForMaskedBehaviorModeling(config).eval()


def assert_reloads_same(model, table: torch.Tensor, input_ids: list[int], folder) -> None:
    """save_pretrained / from_pretrained keeps the item -> category table and the next-item scores."""
    batch = {"input_ids": torch.tensor([input_ids]), "attention_mask": torch.ones(1, len(input_ids), dtype=torch.long)}
    scores = model.next_item_scores(**batch)
    model.save_pretrained(folder)
    loaded = SeqBertForMaskedBehaviorModeling.from_pretrained(folder).eval()
    assert torch.equal(loaded.seqbert.embeddings.item_category_ids, table)
    torch.testing.assert_close(loaded.next_item_scores(**batch), scores)


def test_items_of_one_category_share_its_vector_in_and_out(tmp_path):
    model = small_model(num_item_categories=2)
    categories = torch.zeros(15, dtype=torch.long)
    categories[5:10], categories[10:] = 1, 2
    model.seqbert.embeddings.set_item_categories(categories)
    with torch.no_grad():
        model.seqbert.embeddings.category_embeddings.weight[1] += 1.0
    weights = model.item_output_weights()
    decoder = model.head.decoder.weight[5:]
    torch.testing.assert_close(weights[:5] - decoder[:5], model.seqbert.embeddings.category_embeddings.weight[1].expand(5, 8))
    inputs = model.seqbert.embeddings.item_vectors(torch.tensor([5, 12, 0]))
    torch.testing.assert_close(inputs[0], model.seqbert.embeddings.item_embeddings.weight[5] + model.seqbert.embeddings.category_embeddings.weight[1])
    assert_reloads_same(model, categories, [5, 11, 1], tmp_path)


def test_set_item_categories_validates():
    with pytest.raises(ValueError, match="no category"):
        small_model(0).seqbert.embeddings.set_item_categories(torch.zeros(15, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        small_model(2).seqbert.embeddings.set_item_categories(torch.full((15,), 3))


def test_category_table_with_a_separator_keeps_every_category_of_an_item():
    tokenizer = tokenizer_for(["a", "b", "c"])
    train = train_split([
        (["a", "b", "a"], ["brand1|face|cream", "brand2|hair", "brand1|face"]),
        (["c", "b"], [None, "brand2| hair |"]),
    ])  # fmt: skip
    table, num_categories = item_category_table(train, tokenizer, separator="|")
    ids = dict(zip(["a", "b", "c"], tokenizer.item_token_ids(["a", "b", "c"]).tolist()))
    names = ["brand1", "brand2", "cream", "face", "hair"]  # ids 1..5 in sorted order; spaces and empty parts dropped
    assert num_categories == 5 and table.shape == (tokenizer.vocab_size, 3)
    decoded = {item: [names[k - 1] for k in table[ids[item]].tolist() if k] for item in ids}
    assert decoded == {"a": ["brand1", "face", "cream"], "b": ["brand2", "hair"], "c": []}  # most frequent first
    assert (table[: tokenizer.num_special_tokens] == 0).all()
    capped, _ = item_category_table(train, tokenizer, separator="|", max_per_item=2)
    assert capped.shape == (tokenizer.vocab_size, 2) and capped[ids["a"]].tolist() == table[ids["a"], :2].tolist()


def test_several_categories_per_item_are_summed_in_and_out(tmp_path):
    torch.manual_seed(0)
    config = SeqBertConfig(
        vocab_size=15, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=8, num_item_categories=3, categories_per_item=2,
    )  # fmt: skip
    model = SeqBertForMaskedBehaviorModeling(config).eval()
    table = torch.zeros(15, 2, dtype=torch.long)
    table[5] = torch.tensor([1, 3])
    table[6] = torch.tensor([2, 0])
    embeddings = model.seqbert.embeddings
    embeddings.set_item_categories(table)
    category = embeddings.category_embeddings.weight
    torch.testing.assert_close(embeddings.item_vectors(torch.tensor([5]))[0], embeddings.item_embeddings.weight[5] + category[1] + category[3])
    torch.testing.assert_close(embeddings.item_vectors(torch.tensor([6]))[0], embeddings.item_embeddings.weight[6] + category[2])
    weights = model.item_output_weights()
    torch.testing.assert_close(weights[0], model.head.decoder.weight[5] + category[1] + category[3])
    torch.testing.assert_close(model.item_output_rows(torch.tensor([0, 1])), weights[:2])
    assert_reloads_same(model, table, [5, 6, 1], tmp_path)
    with pytest.raises(ValueError, match="expected"):
        embeddings.set_item_categories(torch.zeros(15, dtype=torch.long))


def test_pretraining_with_every_s3rec_attribute(tmp_path):
    """prepare --format-option attribute_index=all, then --item_categories --item_category_separator '|'."""
    import json
    import random

    from seqbert.cli import main as cli_main
    from seqbert.training import pretrain

    rng = random.Random(0)
    lines = [" ".join([f"u{u}"] + [f"i{rng.randrange(30)}" for _ in range(rng.randrange(4, 9))]) for u in range(60)]
    (tmp_path / "Toys.txt").write_text("\n".join(lines) + "\n")
    attributes = {f"i{k}": [f"brand{k % 4}", f"cat{k % 3}", f"sub{k % 5}"][: 1 + k % 3] for k in range(30)}
    (tmp_path / "Toys_item2attributes.json").write_text(json.dumps(attributes))
    prepared = tmp_path / "prepared"
    assert cli_main(["prepare", str(tmp_path / "Toys.txt"), "--dataset-format", "amazon_s3rec", "--format-option",
                     "attribute_index=all", "--min-user-events", "1", "--output-dir", str(prepared)]) == 0  # fmt: skip
    common = ["--data_dir", str(prepared), "--max_length", "12", "--per_device_batch_size", "16", "--hidden_size", "16",
              "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "32", "--max_steps", "2",
              "--report_to", "none", "--item_categories"]  # fmt: skip
    pretrain.main([*common, "--output_dir", str(tmp_path / "model"), "--item_category_separator", "|"])
    loaded = SeqBertForMaskedBehaviorModeling.from_pretrained(tmp_path / "model")
    # brand0-3, cat0-2, sub0-4: those the train split shows (the held-out last events may hide some).
    assert loaded.config.categories_per_item == 3 and 9 <= loaded.config.num_item_categories <= 4 + 3 + 5
    table = loaded.seqbert.embeddings.item_category_ids
    assert table.shape[1] == 3 and set((table > 0).sum(1).tolist()) <= {0, 1, 2, 3}
    with pytest.raises(ValueError, match="with --item_categories only"):
        pretrain.main([*common[:-1], "--output_dir", str(tmp_path / "x"), "--item_category_separator", "|"])
