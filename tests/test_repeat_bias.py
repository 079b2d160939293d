"""Repeat-aware scoring (``repeat_bias_buckets``): which events a query sees and how far back, that training,
inference, chunked evaluation, the sampled softmax and ONNX export all add the same term, and that the term
learns the sign of the data's repeat rate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seqbert import SeqBertConfig, SeqBertForMaskedBehaviorModeling
from seqbert.collators import DataCollatorForNextItemPrediction
from seqbert.evaluation import chunked_target_ranks, collect_ranks_chunked, pessimistic_ranks
from seqbert.modeling_seqbert import add_history_scores, history_event_distances, history_scores_at

from .test_next_item_auxiliary import SPECIAL, VOCAB
from .test_next_item_auxiliary import tiny_model as tiny_training_model

MASK = 1


def tiny_model(**overrides) -> SeqBertForMaskedBehaviorModeling:
    """The auxiliary-loss tests' tiny model (no dropout), in eval mode."""
    return tiny_training_model(**overrides).eval()


def with_random_repeat_weights(model: SeqBertForMaskedBehaviorModeling) -> SeqBertForMaskedBehaviorModeling:
    with torch.no_grad():
        shape = model.repeat_bias.weight.shape
        model.repeat_bias.weight.copy_(torch.randn(shape, generator=torch.Generator().manual_seed(3)))
    return model


def test_event_distances_by_hand():
    # pad, items 10 11, [SEP]-like special 3, item 12, [MASK] at 5, item 13, pad
    input_ids = torch.tensor([[0, 10, 11, 3, 12, MASK, 13, 0]])
    attention = (input_ids != 0).long()
    visible, distance = history_event_distances(input_ids, attention, SPECIAL, torch.tensor([5]), causal=False)
    assert visible.tolist() == [[False, True, True, False, True, False, True, False]]
    # Events only: 12 is 1 back, 11 two, 10 three; 13 is the nearest after the mask.
    assert distance[visible].tolist() == [3, 2, 1, 1]
    visible, distance = history_event_distances(input_ids, attention, SPECIAL, torch.tensor([4]), causal=True)
    assert visible.tolist() == [[False, True, True, False, True, False, False, False]]
    assert distance[visible].tolist() == [3, 2, 1]  # the causal query's own event is the most recent


def test_history_scores_at_matches_dense_scatter():
    generator = torch.Generator().manual_seed(0)
    columns = torch.randint(0, 20, (6, 9), generator=generator)
    offsets = torch.randn(6, 9, generator=generator)
    items = torch.randint(0, 20, (15,), generator=generator)  # with repeats, some not in any history
    dense = add_history_scores(torch.zeros(6, 20), (columns, offsets))
    torch.testing.assert_close(history_scores_at((columns, offsets), items), dense[:, items])
    # A chunk of the catalog gets exactly its columns of the dense term.
    torch.testing.assert_close(add_history_scores(torch.zeros(6, 7), (columns, offsets), start=10), dense[:, 10:17])


def test_zero_initialised_term_changes_nothing():
    base = tiny_model()
    repeat = tiny_model(repeat_bias_buckets=4)
    assert torch.count_nonzero(repeat.repeat_bias.weight) == 0
    missing, unexpected = repeat.load_state_dict(base.state_dict(), strict=False)
    assert missing == ["repeat_bias.weight"] and not unexpected
    input_ids = torch.tensor([[0, 6, 7, 6, MASK], [8, 9, 10, 11, MASK]])
    torch.testing.assert_close(repeat.next_item_scores(input_ids), base.next_item_scores(input_ids))


def test_next_item_scores_add_the_learned_offsets_of_seen_items():
    model = tiny_model(repeat_bias_buckets=3)
    plain = tiny_model()
    plain.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        # behaviors 2 and 3; buckets: 1 event back, 2 back, 3+ back
        model.repeat_bias.weight[2] = torch.tensor([-1.0, -2.0, -4.0])
        model.repeat_bias.weight[3] = torch.tensor([10.0, 20.0, 40.0])
    # Left padding; events (oldest first): item 6 (b3), 7 (b2), 6 (b2), 8 (b2); then the appended mask.
    input_ids = torch.tensor([[0, 6, 7, 6, 8, MASK]])
    behavior_ids = torch.tensor([[0, 3, 2, 2, 2, 1]])
    delta = model.next_item_scores(input_ids, behavior_ids) - plain.next_item_scores(input_ids, behavior_ids)
    expected = torch.zeros(VOCAB - SPECIAL)
    expected[8 - SPECIAL] = -1.0  # 1 back
    expected[6 - SPECIAL] = -2.0 + 40.0  # 2 back (b2), and 4 back (b3, bucket "3+")
    expected[7 - SPECIAL] = -4.0  # 3 back
    torch.testing.assert_close(delta[0], expected)
    # Right padding and no appended mask: the same history, the same term.
    right = model.next_item_scores(torch.tensor([[6, 7, 6, 8, 0, 0]]), torch.tensor([[3, 2, 2, 2, 0, 0]]))
    right_plain = plain.next_item_scores(torch.tensor([[6, 7, 6, 8, 0, 0]]), torch.tensor([[3, 2, 2, 2, 0, 0]]))
    torch.testing.assert_close(right - right_plain, delta)


@pytest.mark.parametrize("attention_type", ["causal", "bidirectional"])
def test_training_adds_the_term_inference_adds_for_each_prefix(attention_type):
    """The term a training position's logits get is the term inference adds for the sequence cut there
    (the encoder part may differ: positions count back from each row's end)."""
    model = with_random_repeat_weights(tiny_model(repeat_bias_buckets=4, attention_type=attention_type))
    plain = tiny_model(attention_type=attention_type)
    plain.load_state_dict(model.state_dict(), strict=False)
    events = [6, 7, 6, 9, 7, 10]
    behaviors = [2, 3, 2, 2, 3, 2]

    def term(m_input_ids, m_behaviors, position=None):
        if position is None:
            return model.next_item_scores(m_input_ids, m_behaviors) - plain.next_item_scores(m_input_ids, m_behaviors)
        logits = model(m_input_ids, m_behaviors).logits - plain(m_input_ids, m_behaviors).logits
        return logits[:, position, SPECIAL:]

    for cut in range(1, len(events)):
        prefix, prefix_behaviors = torch.tensor([events[:cut] + [MASK]]), torch.tensor([behaviors[:cut] + [1]])
        if attention_type == "causal":  # position cut-1 of the full row predicts event `cut` from events[:cut]
            trained = term(torch.tensor([events]), torch.tensor([behaviors]), cut - 1)
        else:  # Cloze at the [MASK] after events[:cut], with later events visible too
            row = events[:cut] + [MASK] + events[cut + 1 :]
            row_behaviors = behaviors[:cut] + [1] + behaviors[cut + 1 :]
            trained = term(torch.tensor([row]), torch.tensor([row_behaviors]), cut)
            if cut < len(events) - 1:  # the later events add their own offsets; without them the terms match
                assert not torch.allclose(trained, term(prefix, prefix_behaviors))
            trained = term(prefix, prefix_behaviors, cut)
        torch.testing.assert_close(trained, term(prefix, prefix_behaviors), atol=1e-5, rtol=1e-5)


def test_loss_uses_the_term_and_its_gradient_reaches_it():
    model = with_random_repeat_weights(tiny_model(repeat_bias_buckets=4, attention_type="causal"))
    collator = DataCollatorForNextItemPrediction(num_special_tokens=SPECIAL)
    batch = collator([{"input_ids": [6, 7, 6, 8, 9], "behavior_ids": [2] * 5, "time_ids": [3] * 5},
                      {"input_ids": [10, 11, 10], "behavior_ids": [2] * 3, "time_ids": [3] * 3}])  # fmt: skip
    output = model(**batch)
    # The loss by hand: cross-entropy of the forward's own (term-included) logits at the labelled positions.
    labels = batch["labels"]
    selected = labels != -100
    inputs = {name: batch[name] for name in ("input_ids", "behavior_ids", "time_ids", "attention_mask")}
    every_position = model(**inputs).logits[selected]  # inference-style logits, term included
    torch.testing.assert_close(output.logits, every_position)
    by_hand = F.cross_entropy(every_position[:, SPECIAL:], labels[selected] - SPECIAL)
    plain = tiny_model(attention_type="causal")
    plain.load_state_dict(model.state_dict(), strict=False)
    assert not torch.isclose(plain(**batch).loss, output.loss)
    torch.testing.assert_close(output.item_loss, by_hand)
    output.loss.backward()
    assert model.repeat_bias.weight.grad is not None and model.repeat_bias.weight.grad.abs().sum() > 0


def test_sampled_softmax_includes_the_term():
    """With every item a negative, the sampled loss (uniform proposal) shifts by the term like the full one."""
    model = with_random_repeat_weights(tiny_model(repeat_bias_buckets=4, attention_type="causal"))
    transformed = torch.randn(3, 16)
    targets = torch.tensor([0, 1, 2])
    columns = torch.tensor([[0, 1, 5], [1, 1, 4], [3, 2, 0]])
    history = (columns, torch.tensor([[0.5, -1.0, 2.0], [1.0, 1.0, -3.0], [0.0, 4.0, 1.0]]))
    torch.manual_seed(0)
    without = model.head.sampled_item_loss(transformed, targets, 64, None)
    torch.manual_seed(0)
    with_term = model.head.sampled_item_loss(transformed, targets, 64, None, history=history)
    torch.manual_seed(0)
    negatives = torch.randint(0, VOCAB - SPECIAL, (64,))
    full = model.head.item_logits(transformed)
    shifted = add_history_scores(full, history)
    # Rebuild both sampled losses from the full logits (same negatives, same log-Q correction).
    def sampled(logits):
        positive = logits.gather(1, targets[:, None])
        negative = logits[:, negatives] + np.log(VOCAB - SPECIAL) - np.log(64)
        negative = negative.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
        return F.cross_entropy(torch.cat([positive, negative], 1), torch.zeros_like(targets))
    torch.testing.assert_close(without, sampled(full))
    torch.testing.assert_close(with_term, sampled(shifted))
    assert not torch.isclose(with_term, without)


def test_chunked_evaluation_ranks_like_full_scores():
    model = with_random_repeat_weights(tiny_model(repeat_bias_buckets=4))
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(SPECIAL, VOCAB, (8, 7), generator=generator)
    input_ids[:, -1] = MASK
    input_ids[:3, :2] = 0  # some left padding
    batch = {
        "input_ids": input_ids,
        "behavior_ids": torch.full_like(input_ids, 2),
        "time_ids": torch.full_like(input_ids, 3),
        "attention_mask": (input_ids != 0).long(),
        "target_ids": torch.randint(0, VOCAB - SPECIAL, (8,), generator=generator),
    }
    # Targets drawn from each row's own history, so the term decides their rank.
    batch["target_ids"][:4] = input_ids[:4, 3] - SPECIAL
    model_inputs = [batch[name] for name in ("input_ids", "behavior_ids", "time_ids", "attention_mask")]
    full = pessimistic_ranks(model.next_item_scores(*model_inputs), batch["target_ids"])
    ranks, num_items = collect_ranks_chunked(model, [batch], chunk_size=7)
    assert num_items == VOCAB - SPECIAL
    np.testing.assert_array_equal(ranks, full.numpy())
    queries = model.next_item_queries(*model_inputs)
    without = chunked_target_ranks(queries, model.item_output_weights(), model.item_output_bias(), batch["target_ids"])
    assert not torch.equal(without, full)


@pytest.mark.parametrize("repeat_next", [False, True])
def test_the_term_learns_the_sign_of_the_repeat_rate(repeat_next):
    """Never-repeating sequences push the 1-back offset down; sequences that repeat their last item push it up."""
    model = tiny_model(repeat_bias_buckets=3, attention_type="causal").train()
    collator = DataCollatorForNextItemPrediction(num_special_tokens=SPECIAL)
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(32):
        items = [int(i) for i in rng.choice(np.arange(SPECIAL, VOCAB), size=6, replace=False)]
        if repeat_next:
            items = [item for item in items[:3] for _ in range(2)]  # a a b b c c
        rows.append({"input_ids": items, "behavior_ids": [2] * len(items), "time_ids": [3] * len(items)})
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(20):
        optimizer.zero_grad()
        model(**collator(rows)).loss.backward()
        optimizer.step()
    one_back = model.repeat_bias.weight[2, 0].item()
    assert (one_back > 0.5) if repeat_next else (one_back < -0.5)


def test_saved_folder_keeps_the_term(tmp_path):
    model = with_random_repeat_weights(tiny_model(repeat_bias_buckets=4))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = SeqBertForMaskedBehaviorModeling.from_pretrained(tmp_path).eval()
    assert loaded.config.repeat_bias_buckets == 4
    input_ids = torch.tensor([[6, 7, 6, 8, MASK]])
    torch.testing.assert_close(loaded.next_item_scores(input_ids), model.next_item_scores(input_ids))


def test_config_rejects_negative_buckets():
    with pytest.raises(ValueError, match="repeat_bias_buckets"):
        SeqBertConfig(repeat_bias_buckets=-1)


def test_onnx_export_carries_the_term(tmp_path):
    """The exported scorer adds the same term (ONNX Runtime vs PyTorch on users with repeated items)."""
    pytest.importorskip("onnx", reason="ONNX export needs the `export` extra (pip install 'seqbert[export]')")
    pytest.importorskip("onnxruntime", reason="checking the export needs onnxruntime (pip install 'seqbert[export]')")
    import seqbert
    from seqbert.export import OnnxNextItemModel, export_onnx
    from seqbert.inference import MODEL_INPUT_NAMES, Recommender

    from .test_inference import EVENT_TYPES, ITEMS, tiny_config

    tokenizer = seqbert.BehaviorTokenizer(items=ITEMS, event_types=EVENT_TYPES, max_length=16)
    torch.manual_seed(0)
    model = with_random_repeat_weights(
        SeqBertForMaskedBehaviorModeling(tiny_config(tokenizer, repeat_bias_buckets=4)).eval()
    )
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    output = export_onnx(folder, tmp_path / "model.onnx")
    recommender = Recommender.from_pretrained(str(folder))
    users = [
        [{"item_id": ITEMS[i % 3], "event_type": EVENT_TYPES[i % len(EVENT_TYPES)], "timestamp": 60 * i}
         for i in range(n)]
        for n in (1, 4, 9)
    ]
    inputs = recommender.encode(users).inputs
    args = [inputs[name] for name in MODEL_INPUT_NAMES]
    expected = recommender.model.next_item_scores(*args)
    np.testing.assert_allclose(OnnxNextItemModel(output).next_item_scores(*args).numpy(), expected.numpy(), atol=1e-4)
    plain = SeqBertForMaskedBehaviorModeling(tiny_config(tokenizer)).eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    assert not torch.allclose(plain.next_item_scores(*args), expected, atol=1e-3)  # the term is in what was compared
