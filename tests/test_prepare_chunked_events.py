"""Preparation steps give the same result whether the events arrive in one piece or in many chunks
(a csv read yields many), plus the tokenizer's time-gap buckets against their formula and
``encode_for_pretraining``'s removal of rows without a known item.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from seqbert.data.arrow import from_arrow, to_arrow
from seqbert.data.cleaning import clean_events
from seqbert.data.sequences import build_sequences
from seqbert.data.synthetic import SyntheticConfig, generate_events
from seqbert.prepared import encode_for_pretraining
from seqbert.tokenization_seqbert import BehaviorTokenizer


def _chunked(table: pa.Table, pieces: int, rng: np.random.Generator) -> pa.Table:
    """The same rows as ``pieces`` zero-copy slices at random boundaries."""
    bounds = np.unique(np.concatenate([[0, table.num_rows], rng.integers(0, table.num_rows + 1, pieces)]))
    return pa.concat_tables([table.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:])])


@pytest.mark.parametrize("shuffle", [False, True])
def test_sequences_of_chunked_events_equal_contiguous(shuffle):
    rng = np.random.default_rng(3)
    events = generate_events(SyntheticConfig(num_users=300, num_items=60, seed=3))
    if shuffle:
        events = events.take(pa.array(rng.permutation(events.num_rows)))
    # Duplicates and one-event users, so that cleaning drops rows here and there.
    extra = events.take(pa.array(rng.integers(0, events.num_rows, 40)))
    events = pa.concat_tables([events, extra, events.slice(0, 1).set_column(0, "user_id", pa.array(["solo"]))])
    cleaned, report = clean_events(from_arrow(_chunked(events, 25, rng)))
    assert report.dropped["duplicate"] > 0 and report.dropped["short_user"] > 0
    expected, _ = clean_events(from_arrow(events))
    contiguous = to_arrow(expected).combine_chunks()
    assert to_arrow(cleaned).equals(contiguous)
    sequences = to_arrow(build_sequences(from_arrow(contiguous)))
    assert to_arrow(build_sequences(from_arrow(_chunked(contiguous, 30, rng)))).equals(sequences)


def test_gap_buckets_equal_floor_log2():
    gaps = np.concatenate(
        [np.arange(-3, 5000), 2 ** np.arange(62) - 1, 2 ** np.arange(62), 2 ** np.arange(52) + 1,
         np.random.default_rng(0).integers(0, 2**40, 10_000)]
    )  # fmt: skip
    for buckets in (1, 8, 23, 40):
        tokenizer = BehaviorTokenizer(items=["a"], num_gap_buckets=buckets)
        expected = np.floor(np.log2(1.0 + gaps.clip(min=0))).astype(np.int64).clip(max=buckets - 1) + 3
        assert np.array_equal(tokenizer.gap_bucket_ids(gaps), expected)
    assert BehaviorTokenizer(items=["a"]).gap_bucket_ids([]).shape == (0,)


def test_encode_for_pretraining_drops_rows_without_known_items():
    tokenizer = BehaviorTokenizer(items=["a", "b"])
    rows = {
        "item_ids": [["a", "x"], [], ["x", "y"], ["y", "b"], ["z"]],
        "event_types": [["view", "view"], [], ["view", "cart"], ["view", "view"], ["view"]],
        "timestamps": [[1, 2], [], [1, 5], [3, 4], [9]],
    }
    encoded = encode_for_pretraining(from_arrow(pa.table(rows)), tokenizer, max_length=8)
    a, b, unk = (tokenizer.convert_tokens_to_ids(token) for token in ("a", "b", "[UNK]"))
    assert encoded["input_ids"] == [[a, unk], [unk, b]]
    assert encoded["row_id"] == [0, 1]
