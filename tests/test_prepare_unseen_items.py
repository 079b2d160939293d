"""`seqbert prepare --unseen-items hash --num-hash-buckets N` and the PrepareOptions fields behind it."""

from __future__ import annotations

import pytest

from seqbert.cli import main
from seqbert.data.synthetic import SyntheticConfig, generate_events, write_events
from seqbert.prepare import PrepareOptions, prepare_file
from seqbert.prepared import PreparedData
from seqbert.tokenization_seqbert import SPECIAL_TOKENS, BehaviorTokenizer


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    path = tmp_path_factory.mktemp("unseen") / "events.csv"
    return write_events(generate_events(SyntheticConfig(num_users=80, num_items=50, seed=3)), path)


def test_cli_hash_buckets_reach_the_saved_tokenizer(log, tmp_path):
    out = tmp_path / "out"
    args = ["prepare", str(log), "--output-dir", str(out), "--unseen-items", "hash", "--num-hash-buckets", "8",
            "--vocab-min-count", "3"]  # fmt: skip
    assert main(args) == 0
    prepared = PreparedData.load(out)
    tokenizer = prepared.tokenizer
    assert (tokenizer.unseen_items, tokenizer.num_hash_buckets) == ("hash", 8)
    assert prepared.protocol["options"]["unseen_items"] == "hash"
    assert prepared.protocol["options"]["num_hash_buckets"] == 8
    # The reloaded tokenizer (saved through save_pretrained) maps an unseen item to its bucket, not [UNK].
    reloaded = BehaviorTokenizer.from_pretrained(str(out / "tokenizer"))
    ids = reloaded.item_token_ids(["never-seen-item", tokenizer.items[0]])
    assert ids[0] == reloaded.hash_bucket_ids(["never-seen-item"])[0]
    assert len(SPECIAL_TOKENS) <= ids[0] < len(SPECIAL_TOKENS) + 8
    assert ids[1] >= tokenizer.num_special_tokens


def test_cli_default_is_unk_and_partitioned_agrees(log, tmp_path):
    assert main(["prepare", str(log), "--output-dir", str(tmp_path / "unk")]) == 0
    tokenizer = PreparedData.load(tmp_path / "unk").tokenizer
    assert (tokenizer.unseen_items, tokenizer.num_hash_buckets) == ("unk", 0)
    assert tokenizer.item_token_ids(["never-seen-item"])[0] == tokenizer.unk_token_id
    args = ["prepare", str(log), "--output-dir", str(tmp_path / "parts"), "--partitions", "2",
            "--unseen-items", "hash", "--num-hash-buckets", "4"]  # fmt: skip
    assert main(args) == 0
    parts = PreparedData.load(tmp_path / "parts").tokenizer
    assert (parts.unseen_items, parts.num_hash_buckets) == ("hash", 4)
    assert parts.items == tokenizer.items


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--unseen-items", "hash"], "needs --num-hash-buckets"),
        (["--num-hash-buckets", "4"], "applies to --unseen-items hash"),
    ],
)
def test_cli_rejects_inconsistent_flags(log, tmp_path, flags, message):
    with pytest.raises(SystemExit, match=message):
        main(["prepare", str(log), "--output-dir", str(tmp_path / "x"), *flags])


def test_options_are_checked_before_reading(tmp_path):
    """A wrong combination fails at once, not after the whole log was prepared (the file does not even exist)."""
    with pytest.raises(ValueError, match="num_hash_buckets >= 1"):
        prepare_file(tmp_path / "missing.csv", PrepareOptions(unseen_items="hash"))
    with pytest.raises(ValueError, match="unseen_items must be one of"):
        prepare_file(tmp_path / "missing.csv", PrepareOptions(unseen_items="drop"))
