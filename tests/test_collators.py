"""Tests for seqbert.collators: Cloze masking statistics and invariants, determinism, left padding."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from seqbert.collators import (
    DataCollatorForMaskedBehaviorModeling,
    DataCollatorForNextItemPrediction,
    DataCollatorWithLeftPadding,
    known_items_per_row,
    pad_left,
    pad_streams,
    random_prefixes,
)

NUM_SPECIAL, VOCAB, MASK_ID, UNK = 5, 60, 1, 4
BEHAVIOR_MASK, TIME_MASK = 1, 1


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def feature(input_ids, behavior_ids=None, time_ids=None):
    n = len(input_ids)
    return {
        "input_ids": list(input_ids),
        "behavior_ids": list(behavior_ids) if behavior_ids is not None else [2 + (i % 6) for i in range(n)],
        "time_ids": list(time_ids) if time_ids is not None else [2] + [3 + (i % 20) for i in range(1, n)],
    }


def collator(**kwargs) -> DataCollatorForMaskedBehaviorModeling:
    kwargs.setdefault("generator", torch.Generator().manual_seed(0))
    return DataCollatorForMaskedBehaviorModeling(
        num_special_tokens=NUM_SPECIAL, vocab_size=VOCAB, mask_token_id=MASK_ID, **kwargs
    )


def random_features(num: int, seed: int, min_len: int = 1, max_len: int = 40, with_specials: bool = True):
    g = torch.Generator().manual_seed(seed)
    features = []
    for _ in range(num):
        length = int(torch.randint(min_len, max_len + 1, (1,), generator=g))
        ids = torch.randint(NUM_SPECIAL, VOCAB, (length,), generator=g)
        if with_specials:
            # sprinkle [UNK]s and end most sequences with an appended [MASK]
            ids[torch.rand(length, generator=g) < 0.1] = UNK
            if torch.rand(1, generator=g) < 0.5:
                ids[-1] = MASK_ID
        features.append(feature(ids.tolist()))
    return features


# ---------------------------------------------------------------------------------------------
# Padding
# ---------------------------------------------------------------------------------------------


def test_pad_left():
    assert pad_left([[1, 2], [], [3]], 4).tolist() == [[0, 0, 1, 2], [0, 0, 0, 0], [0, 0, 0, 3]]


def test_pad_streams_left_padding_and_multiple():
    features = [feature([7, 8, 9], [2, 3, 4], [2, 5, 6]), feature([10], [7], [2])]
    batch = pad_streams(features, pad_to_multiple_of=None)
    assert batch["input_ids"].tolist() == [[7, 8, 9], [0, 0, 10]]
    assert batch["behavior_ids"].tolist() == [[2, 3, 4], [0, 0, 7]]
    assert batch["time_ids"].tolist() == [[2, 5, 6], [0, 0, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    batch = pad_streams(features, pad_to_multiple_of=4)
    assert batch["input_ids"].tolist() == [[0, 7, 8, 9], [0, 0, 0, 10]]
    assert batch["attention_mask"].tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]]
    assert all(t.dtype == torch.long for t in batch.values())


def test_left_padding_collator_scalars():
    features = [
        {**feature([7, 8, 1]), "target_ids": 3, "labels": 1},
        {**feature([9, 1]), "target_ids": -1, "labels": 0},
    ]
    batch = DataCollatorWithLeftPadding(pad_to_multiple_of=None)(features)
    assert batch["input_ids"].tolist() == [[7, 8, 1], [0, 9, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 1, 1]]
    assert batch["target_ids"].tolist() == [3, -1]
    assert batch["labels"].tolist() == [1, 0]
    batch = DataCollatorWithLeftPadding()(features)  # default multiple of 8
    assert batch["input_ids"].shape == (2, 8)
    assert batch["input_ids"][1].tolist() == [0] * 6 + [9, 1]
    no_scalars = DataCollatorWithLeftPadding()([feature([7])])
    assert "labels" not in no_scalars and "target_ids" not in no_scalars


def test_masking_collator_pads_left_before_masking():
    batch = collator(pad_to_multiple_of=8, mask_prob=0.5)([feature([7, 8, 9]), feature([10, 11])])
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"].tolist() == [[0] * 5 + [1] * 3, [0] * 6 + [1] * 2]
    padding = batch["attention_mask"] == 0
    for name in ("input_ids", "behavior_ids", "time_ids"):
        assert (batch[name][padding] == 0).all(), name
    assert (batch["labels"][padding] == -100).all()
    assert (batch["behavior_labels"][padding] == -100).all()


# ---------------------------------------------------------------------------------------------
# Selection invariants
# ---------------------------------------------------------------------------------------------


def _originals(features, pad_to_multiple_of=8):
    return pad_streams(features, pad_to_multiple_of)


def test_selection_invariants_over_many_draws():
    coll = collator(mask_prob=0.3, last_item_mask_prob=0.2)
    for seed in range(20):
        features = random_features(16, seed)
        original = _originals(features)
        batch = coll(features)
        selected = batch["labels"] != -100
        ids = original["input_ids"]
        # Never a special token, [UNK], an appended [MASK] or padding.
        assert (ids[selected] >= NUM_SPECIAL).all()
        # Labels: original ids where selected, -100 elsewhere; same for behavior labels.
        assert torch.equal(batch["labels"][selected], ids[selected])
        assert torch.equal(batch["behavior_labels"][selected], original["behavior_ids"][selected])
        assert (batch["behavior_labels"][~selected] == -100).all()
        # Behavior and time are always hidden at selected positions, untouched elsewhere.
        assert (batch["behavior_ids"][selected] == BEHAVIOR_MASK).all()
        assert (batch["time_ids"][selected] == TIME_MASK).all()
        assert torch.equal(batch["behavior_ids"][~selected], original["behavior_ids"][~selected])
        assert torch.equal(batch["time_ids"][~selected], original["time_ids"][~selected])
        # Unselected inputs unchanged; selected ones are [MASK], an item or the original.
        assert torch.equal(batch["input_ids"][~selected], ids[~selected])
        changed = batch["input_ids"][selected]
        assert ((changed == MASK_ID) | ((changed >= NUM_SPECIAL) & (changed < VOCAB))).all()
        # At least one selection per sequence with a known item; none in sequences without.
        has_item = (ids >= NUM_SPECIAL).any(1)
        assert torch.equal(selected.any(1), has_item)
        assert torch.equal(batch["attention_mask"], original["attention_mask"])


def test_sequences_without_known_items_get_no_labels():
    features = [feature([UNK, UNK, MASK_ID]), feature([MASK_ID]), feature([7, UNK, MASK_ID])]
    for seed in range(10):
        batch = collator(generator=torch.Generator().manual_seed(seed), mask_prob=0.9)(features)
        assert (batch["labels"][:2] == -100).all()
        assert (batch["labels"][2] != -100).sum() == 1
        assert batch["labels"][2, -3].item() == 7  # the only known item
        assert torch.equal(batch["input_ids"][:2], pad_streams(features, 8)["input_ids"][:2])


def test_at_least_one_selection_with_tiny_mask_prob():
    features = random_features(64, seed=1, min_len=1, max_len=5, with_specials=False)
    batch = collator(mask_prob=1e-6, last_item_mask_prob=0.0)(features)
    per_row = (batch["labels"] != -100).sum(1)
    assert (per_row == 1).all()  # forced exactly once, never more at this rate


def test_mask_prob_one_selects_every_known_item():
    features = random_features(8, seed=2)
    batch = collator(mask_prob=1.0, last_item_mask_prob=0.0)(features)
    ids = _originals(features)["input_ids"]
    assert torch.equal(batch["labels"] != -100, ids >= NUM_SPECIAL)


def test_last_item_mask_prob_one_selects_exactly_last_real_item():
    features = [
        feature([7, 8, 9, MASK_ID]),  # appended mask: the last real item is 9
        feature([10, 11, 12]),
        feature([13, UNK, UNK]),  # trailing unknowns: the last *known* item is 13
        feature([UNK]),
        feature([20 + i for i in range(11)]),
    ]
    for seed in range(5):
        batch = collator(generator=torch.Generator().manual_seed(seed), mask_prob=0.9, last_item_mask_prob=1.0)(
            features
        )
        labels = batch["labels"]
        selected = labels != -100
        assert selected.sum(1).tolist() == [1, 1, 1, 0, 1]
        assert labels[selected].tolist() == [9, 12, 13, 30]
        width = labels.shape[1]
        assert selected[0, width - 2] and selected[1, width - 1] and selected[2, width - 3] and selected[4, width - 1]


def test_masking_rate_within_tolerance():
    coll = collator(mask_prob=0.2, last_item_mask_prob=0.0)
    features = random_features(64, seed=3, min_len=30, max_len=50, with_specials=False)
    selected, candidates = 0, 0
    for _ in range(30):
        batch = coll(features)
        selected += int((batch["labels"] != -100).sum())
        candidates += int((batch["attention_mask"] == 1).sum())
    rate = selected / candidates
    # ~75k Bernoulli(0.2) draws: standard error ~0.0015; the forced selection adds < 0.001.
    assert abs(rate - 0.2) < 0.01, rate


def test_replacement_proportions_80_10_10():
    coll = collator(mask_prob=0.5, last_item_mask_prob=0.0)
    features = random_features(64, seed=4, min_len=40, max_len=40, with_specials=False)
    original = _originals(features)["input_ids"]
    masked = random_or_kept = kept = total = 0
    for _ in range(20):
        batch = coll(features)
        selected = batch["labels"] != -100
        new = batch["input_ids"][selected]
        old = original[selected]
        total += int(selected.sum())
        masked += int((new == MASK_ID).sum())
        kept += int((new == old).sum())
        random_or_kept += int((new != MASK_ID).sum())
    # Random replacements can coincide with the original (1 / 55 of the 10 %): kept ~ 0.1 + 0.1/55.
    assert abs(masked / total - 0.8) < 0.01
    assert abs(kept / total - (0.1 + 0.1 / (VOCAB - NUM_SPECIAL))) < 0.01
    assert abs((random_or_kept - kept) / total - 0.1 * (1 - 1 / (VOCAB - NUM_SPECIAL))) < 0.01


def test_custom_replace_ratios_all_mask():
    coll = collator(mask_prob=0.5, last_item_mask_prob=0.0, replace_ratios=(1.0, 0.0))
    batch = coll(random_features(16, seed=5, with_specials=False))
    selected = batch["labels"] != -100
    assert (batch["input_ids"][selected] == MASK_ID).all()


@pytest.mark.parametrize("ratio", [1.0, 0.6])
def test_pretrain_mask_token_ratio_reaches_the_collator(ratio):
    """--mask_token_ratio r: [MASK] with probability r, the rest split evenly between random and unchanged."""
    from seqbert.training.arguments import PretrainArguments
    from seqbert.training.pretrain import make_collator

    tokenizer = SimpleNamespace(num_special_tokens=NUM_SPECIAL, vocab_size=VOCAB, mask_token_id=MASK_ID)
    coll = make_collator(tokenizer, PretrainArguments(mask_token_ratio=ratio), seed=0)
    assert coll.replace_ratios == pytest.approx((ratio, (1 - ratio) / 2))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mask_prob": 0.0},
        {"mask_prob": 1.5},
        {"last_item_mask_prob": -0.1},
        {"last_item_mask_prob": 1.1},
        {"replace_ratios": (0.9, 0.2)},
        {"replace_ratios": (-0.1, 0.5)},
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        collator(**kwargs)


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------


def test_seeded_generator_is_deterministic():
    features = random_features(16, seed=6)
    a = collator(generator=torch.Generator().manual_seed(123))
    b = collator(generator=torch.Generator().manual_seed(123))
    for _ in range(3):
        batch_a, batch_b = a(features), b(features)
        assert batch_a.keys() == batch_b.keys()
        for name in batch_a:
            assert torch.equal(batch_a[name], batch_b[name]), name
    other = collator(generator=torch.Generator().manual_seed(124))(features)
    assert not torch.equal(other["labels"], collator(generator=torch.Generator().manual_seed(123))(features)["labels"])


def test_state_dict_round_trip_reproduces_masks():
    features = random_features(16, seed=7)
    coll = collator(generator=torch.Generator().manual_seed(5))
    coll(features)  # advance
    state = coll.state_dict()
    first = coll(features)
    second = coll(features)
    assert not torch.equal(first["labels"], second["labels"])

    # Reload into the same collator and into a fresh one: both replay `first`.
    coll.load_state_dict(state)
    replay = coll(features)
    fresh = collator(generator=torch.Generator().manual_seed(999))
    fresh.load_state_dict(state)
    fresh_replay = fresh(features)
    for name in first:
        assert torch.equal(first[name], replay[name]), name
        assert torch.equal(first[name], fresh_replay[name]), name


def test_state_dict_without_generator_is_empty():
    coll = DataCollatorForMaskedBehaviorModeling(
        num_special_tokens=NUM_SPECIAL, vocab_size=VOCAB, mask_token_id=MASK_ID
    )
    assert coll.state_dict() == {}
    coll.load_state_dict({})
    batch = coll([feature([7, 8, 9])])
    assert (batch["labels"] != -100).sum() >= 1


def test_collator_does_not_mutate_features():
    features = random_features(4, seed=8)
    snapshot = [{k: list(v) for k, v in f.items()} for f in features]
    collator(mask_prob=0.9)(features)
    assert features == snapshot


def _with_row_ids(features, start=0):
    return [{**f, "row_id": start + k} for k, f in enumerate(features)]


def test_seeded_masks_are_a_pure_function_of_rows_and_epoch():
    features = _with_row_ids(random_features(16, seed=9))
    a = collator(seed=11, generator=torch.Generator().manual_seed(0))
    b = collator(seed=11, generator=torch.Generator().manual_seed(1))
    b(features)  # call history and generator state must not matter
    b(_with_row_ids(random_features(4, seed=10), start=100))
    first, second = a(features), b(features)
    for name in first:
        assert torch.equal(first[name], second[name]), name
    assert "row_id" not in first
    # The same rows in a later epoch get fresh masks; going back to the epoch replays them.
    a.set_epoch(1)
    assert not torch.equal(a(features)["labels"], first["labels"])
    a.set_epoch(0)
    assert torch.equal(a(features)["labels"], first["labels"])
    # Another seed gives other masks.
    assert not torch.equal(collator(seed=12)(features)["labels"], first["labels"])


def test_seeded_masks_keep_invariants_and_leave_the_stream_alone():
    features = _with_row_ids(random_features(16, seed=11))
    generator = torch.Generator().manual_seed(3)
    coll = collator(seed=5, generator=generator)
    state = generator.get_state()
    batch = coll(features)
    assert torch.equal(generator.get_state(), state)  # per-batch generator, not the stream
    assert coll.generator is generator
    original = _originals(features)
    selected = batch["labels"] != -100
    assert torch.equal(batch["labels"][selected], original["input_ids"][selected])
    assert (original["input_ids"][selected] >= NUM_SPECIAL).all()
    assert torch.equal(selected.any(1), (original["input_ids"] >= NUM_SPECIAL).any(1))
    # Without row ids the seed cannot apply: the generator stream is used (and advances).
    plain = random_features(4, seed=12)
    expected = collator(generator=torch.Generator().manual_seed(3))(plain)
    got = collator(seed=5, generator=torch.Generator().manual_seed(3))(plain)
    assert torch.equal(got["labels"], expected["labels"])


# --------------------------------------------------------------------------------- next-item prefixes
def test_next_item_prefixes_mask_a_random_event_with_only_its_past_visible():
    features = random_features(400, seed=11, min_len=10, max_len=10, with_specials=False)
    coll = collator(mask_prob=0.3, last_item_mask_prob=1.0, replace_ratios=(1.0, 0.0), next_item_prefixes=True)
    batch = coll(features)
    selected = batch["labels"] != -100
    assert (selected.sum(1) == 1).all()  # one target per row
    positions_from_end = []
    for row, feature in enumerate(features):
        real = batch["attention_mask"][row].bool()
        inputs, labels = batch["input_ids"][row][real], batch["labels"][row][real]
        kept = len(inputs)
        # The row is the original's first `kept` events with the last one masked: nothing after it is visible.
        assert labels[-1] == feature["input_ids"][kept - 1] and inputs[-1] == MASK_ID
        assert inputs[:-1].tolist() == list(feature["input_ids"][: kept - 1])
        positions_from_end.append(10 - kept)
    # The cut is uniform over the row's 10 events, not always the most recent one.
    counts = np.bincount(positions_from_end, minlength=10)
    assert counts.min() > 20 and counts.max() < 70


def test_next_item_prefixes_leave_cloze_rows_whole():
    features = random_features(64, seed=12, min_len=5, max_len=30)
    batch = collator(last_item_mask_prob=0.0, next_item_prefixes=True)(features)
    assert batch["attention_mask"].sum(1).tolist() == [len(f["input_ids"]) for f in features]


def test_random_prefixes_cuts_only_the_chosen_rows():
    features = [{name: list(range(5, 11)) for name in ("input_ids", "behavior_ids", "time_ids")} for _ in range(3)]
    cut = random_prefixes(features, np.array([True, False, True]), np.array([0.0, 0.5, 0.99]))
    assert [len(f["input_ids"]) for f in cut] == [1, 6, 6]
    assert cut[0] == {"input_ids": [5], "behavior_ids": [5], "time_ids": [5]}
    assert cut[1] is features[1]


# --------------------------------------------------------------------------------- expected label counts
@pytest.mark.parametrize("next_item_prefixes", [False, True])
def test_cloze_expected_labels_match_the_collator(next_item_prefixes):
    features = random_features(3000, seed=21, min_len=1, max_len=30)
    coll = collator(mask_prob=0.3, last_item_mask_prob=0.2, seed=None, next_item_prefixes=next_item_prefixes)
    observed = sum(int((coll(features[i : i + 500])["labels"] != -100).sum()) for i in range(0, 3000, 500))
    known = np.array([int((torch.as_tensor(f["input_ids"]) >= NUM_SPECIAL).sum()) for f in features])
    expected = coll.expected_labels_per_row(known).sum()
    # Prefix cuts can leave a next-item row with no known item: the estimate is then a slight upper bound.
    assert observed == pytest.approx(expected, rel=0.03)


def test_causal_expected_labels_match_the_collator():
    features = random_features(500, seed=22, min_len=1, max_len=30, with_specials=False)
    coll = DataCollatorForNextItemPrediction(num_special_tokens=NUM_SPECIAL)
    observed = int((coll(features)["labels"] != -100).sum())
    known = np.array([len(f["input_ids"]) for f in features])
    assert observed == coll.expected_labels_per_row(known).sum()


def test_known_items_per_row_respects_row_order_and_selection():
    from datasets import Dataset

    rows = Dataset.from_dict({"input_ids": [[5, 6, 1], [], [4, 7], [9]]})
    assert known_items_per_row(rows, NUM_SPECIAL).tolist() == [2, 0, 1, 1]
    assert known_items_per_row(rows.select([3, 0]), NUM_SPECIAL).tolist() == [1, 2]
