"""The vectorised helpers the preparation relies on equal straightforward references on seeded data.

``filter_rows`` (runs of kept rows sliced and concatenated), ``prefix_mask`` (one ``np.repeat``),
``item_counts`` (Arrow's hash group-by), the integer-timestamp fast path of ``read_events`` and the
tokenizer's left truncation by mask, each against a plain version on small generated inputs.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from seqbert.data.arrow import filter_rows, item_counts, prefix_mask
from seqbert.data.canonical import _parse_timestamps
from seqbert.data.cleaning import _count_where
from seqbert.data.sources import resolve_source
from seqbert.tokenization_seqbert import BehaviorTokenizer


@pytest.mark.parametrize("seed", range(8))
def test_filter_rows_equals_filter(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 3000))
    chunks = np.sort(rng.integers(0, n + 1, int(rng.integers(0, 5))))
    bounds = [0, *chunks.tolist(), n]
    values = np.arange(n)
    table = pa.Table.from_batches(
        [
            pa.record_batch({"s": pa.array([f"x{v}" for v in values[a:b]], pa.string()), "v": pa.array(values[a:b])})
            for a, b in zip(bounds[:-1], bounds[1:])
        ],
        schema=pa.schema([("s", pa.string()), ("v", pa.int64())]),
    )
    for share in (0.0, 0.5, 0.999, 1.0):
        keep = rng.random(n) < share
        assert filter_rows(table, keep).equals(table.filter(pa.array(keep)))


def test_prefix_mask_equals_reference():
    rng = np.random.default_rng(0)
    for _ in range(300):
        row_lengths = rng.integers(0, 6, int(rng.integers(1, 9)))
        offsets = np.concatenate([[0], np.cumsum(row_lengths)])
        rows = rng.integers(0, len(row_lengths), int(rng.integers(0, 12)))
        if rng.random() < 0.5:
            rows = np.unique(rows)
        lengths = np.array([rng.integers(0, row_lengths[r] + 1) for r in rows], dtype=np.int64)
        expected = np.zeros(int(offsets[-1]), dtype=bool)
        for row, length in zip(rows, lengths):  # repeated rows: their longest prefix
            expected[offsets[row] : offsets[row] + length] = True
        assert np.array_equal(prefix_mask(offsets, rows, lengths), expected)


def test_item_counts_equals_value_counts():
    rng = np.random.default_rng(1)
    flat = pa.array([None if k == 0 else f"i{k}" for k in rng.integers(0, 40, 2000)])
    column = pa.chunked_array([pa.ListArray.from_arrays(pa.array([0, 700, 2000], pa.int32()), flat)])
    expected = {row["values"]: row["counts"] for row in pc.value_counts(flat).to_pylist()}
    assert {row["values"]: row["counts"] for row in item_counts(column).to_pylist()} == expected


@pytest.mark.parametrize("unit", ["auto", "s", "ms"])
def test_integer_timestamps_fast_path_equals_float_path(tmp_path, unit):
    path = tmp_path / "events.csv"
    path.write_text("x\n1\n")
    src = resolve_source(path, None, "utf-8")
    rng = np.random.default_rng(2)
    seconds = 1_600_000_000 + rng.integers(0, 10**8, 5000)
    values = seconds * 1000 + rng.integers(0, 1000, 5000) if unit == "ms" else seconds
    fast = _parse_timestamps(pa.chunked_array([pa.array(values)]), src, "t", unit, "error", 1.8e9)
    slow = _parse_timestamps(pa.chunked_array([pa.array(values.astype(np.float64))]), src, "t", unit, "error", 1.8e9)
    assert fast.seconds.equals(slow.seconds)
    assert fast.numeric_unit == slow.numeric_unit
    assert not fast.bad.any() and not slow.bad.any()


def test_truncation_keeps_the_most_recent_events():
    rng = np.random.default_rng(3)
    tokenizer = BehaviorTokenizer(items=[f"i{k}" for k in range(20)])
    rows = [int(n) for n in rng.integers(0, 30, 50)]
    items = [[f"i{k}" for k in rng.integers(0, 25, n)] for n in rows]
    types = [["view"] * n for n in rows]
    times = [np.sort(1_700_000_000 + rng.integers(0, 10**6, n)).tolist() for n in rows]
    full = tokenizer.encode_sequences(items, types, times, max_length=10**6)
    cut = tokenizer.encode_sequences(items, types, times, max_length=7)
    for name in tokenizer.model_input_names:
        assert cut[name] == [row[-7:] for row in full[name]], name


def test_count_where_equals_bincount_of_the_selection():
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 50, 5000)
    for share in (0.0, 0.1, 0.5, 0.9, 0.999, 1.0):
        mask = rng.random(len(codes)) < share
        assert np.array_equal(_count_where(codes, mask, 60), np.bincount(codes[mask], minlength=60))
