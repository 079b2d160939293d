"""Sessions with logged ids, repeated-view collapsing, last-purchase leave-one-out and the prepare CLI.

Hand cases for each documented rule, property tests against pure-Python references on random logs
(collapsing never removes a cart or purchase, counts add up, no evaluation target reaches
training or the vocabulary) and ``seqbert prepare`` with the new flags on a small synthetic csv.
"""

from __future__ import annotations

import itertools
import json

import pyarrow as pa
import xxhash
import pytest
from hypothesis import given
from hypothesis import strategies as st

from seqbert.cli import main
from seqbert.data.arrow import from_arrow
from seqbert.data.cleaning import DropReport
from seqbert.data.sequences import DEFAULT_SESSION_GAP_SECONDS, build_sequences, collapse_repeated_views
from seqbert.data.splits import leave_one_out
from seqbert.data.synthetic import SyntheticConfig, generate_events, write_events
from seqbert.prepare import PrepareOptions, format_summary, prepare_events

from .test_data_sequences import (
    PROPERTY_SETTINGS,
    by_user,
    events_dataset,
    events_of,
    log_dataset,
    random_logs,
    reference_sequences,
)

GAP = DEFAULT_SESSION_GAP_SECONDS


def sessions_of(rows, session_ids, gap=GAP):
    dataset = events_dataset(rows, extra={"session_id": session_ids})
    sequences = build_sequences(dataset, session_gap_seconds=gap)
    return {user: row["session_index"] for user, row in by_user(sequences).items()}


# ---------------------------------------------------------------------------------------------
# Sessions from a session_id column
# ---------------------------------------------------------------------------------------------


def test_null_session_ids_fall_back_to_the_gap_rule():
    t = [0, 10, 20, 20 + GAP + 1, 20 + GAP + 6, 20 + GAP + 11, 20 + 11 * GAP]
    rows = [("u1", f"i{k}", "view", time) for k, time in enumerate(t)]
    ids = ["s1", None, "s1", None, None, "s1", "s1"]
    # s1, null within the gap continues s1, s1 again: one session; a null after a long gap opens an
    # unnamed session that the next null continues; s1 after it is a new session; the logged id
    # then holds across a long gap.
    assert sessions_of(rows, ids)["u1"] == [0, 0, 0, 1, 1, 2, 2]
    # Before the fix every null started its own session.
    assert sessions_of(rows, ids, gap=None)["u1"] == [0, 0, 0, 0, 0, 0, 0]  # no gap rule: nulls always continue


def test_null_session_ids_at_the_start_and_between_two_ids():
    rows = [("u1", "a", "view", 0), ("u1", "b", "view", 5), ("u1", "c", "view", 9), ("u1", "d", "view", 12)]
    rows += [("u2", "x", "view", 0), ("u2", "y", "view", 3 * GAP), ("u2", "z", "view", 3 * GAP + 1)]
    ids = [None, "s9", None, "s8", None, None, None]
    sessions = sessions_of(rows, ids)
    # unnamed, then s9 (new), null continues s9, s8 (new)
    assert sessions["u1"] == [0, 1, 1, 2]
    assert sessions["u2"] == [0, 1, 1]  # only nulls: exactly the gap rule


def test_interleaved_session_ids_are_separate_runs():
    rows = [("u1", k, "view", t) for k, t in zip("abcd", [0, 1, 2, 3])]
    assert sessions_of(rows, ["s1", "s2", "s1", "s1"])["u1"] == [0, 1, 2, 2]


def test_all_null_session_id_column_is_the_gap_rule():
    rows = [("u1", k, "view", t) for k, t in zip("abc", [0, GAP + 1, GAP + 2])]
    assert sessions_of(rows, [None, None, None])["u1"] == [0, 1, 1]


def reference_sessions(events, ids, gap):
    """State machine: named ids are authoritative, nulls continue unless the gap rule breaks."""
    sessions, label, fresh = [], None, itertools.count()
    for k, (event, sid) in enumerate(zip(events, ids)):
        previous = label
        if sid is not None:
            label = ("id", sid)
        elif k == 0 or (gap is not None and event[3] - events[k - 1][3] > gap):
            label = ("unnamed", next(fresh))
        sessions.append(0 if k == 0 else sessions[-1] + int(label != previous))
    return sessions


@PROPERTY_SETTINGS
@given(random_logs(), st.sampled_from([None, 0, 5, 20]), st.data())
def test_property_sessions_with_partial_session_ids(log, gap, data):
    rows, row_index = log
    ids = data.draw(st.lists(st.sampled_from([None, "s1", "s2"]), min_size=len(rows), max_size=len(rows)))
    table = log_dataset(rows, row_index).data.table.append_column("session_id", pa.array(ids, pa.string()))
    sequences = build_sequences(from_arrow(table), session_gap_seconds=gap)
    id_of_tag = {f"e{k}": sid for k, sid in enumerate(ids)}
    for row in sequences.to_list():
        events = events_of(row)
        assert row["session_index"] == reference_sessions(events, [id_of_tag[e[0]] for e in events], gap)


# ---------------------------------------------------------------------------------------------
# Collapsing repeated views
# ---------------------------------------------------------------------------------------------


def test_collapse_repeated_views_hand_case():
    rows = [
        ("u1", "a", "view", 0),
        ("u1", "a", "view", 1),  # repeat: removed
        ("u1", "a", "view", 2),  # repeat: removed
        ("u1", "a", "cart", 3),  # never removed, breaks the run
        ("u1", "a", "view", 4),  # kept (previous event is a cart)
        ("u1", "a", "view", 4 + GAP + 1),  # repeat, but opens a new session: kept within sessions
        ("u1", "b", "view", 4 + GAP + 2),
        ("u1", "a", "click", 4 + GAP + 3),  # clicks are not views: never removed
        ("u1", "a", "click", 4 + GAP + 4),
        ("u1", "a", "purchase", 4 + GAP + 5),
        ("u1", "a", "purchase", 4 + GAP + 6),  # repeated purchase: kept
        ("u2", "a", "view", 0),  # other user: the run does not continue across users
    ]
    sequences = build_sequences(events_dataset(rows))
    within, removed = collapse_repeated_views(sequences)
    assert removed == 2
    u1 = by_user(within)["u1"]
    assert u1["timestamps"] == [0, 3, 4, 4 + GAP + 1, *(4 + GAP + k for k in range(2, 7))]
    assert u1["event_types"] == ["view", "cart", "view", "view", "view", "click", "click", "purchase", "purchase"]
    assert u1["session_index"] == [0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert by_user(within)["u2"]["item_ids"] == ["a"]

    across, removed = collapse_repeated_views(sequences, within_session=False)
    assert removed == 3
    u1 = by_user(across)["u1"]
    assert u1["timestamps"] == [0, 3, 4, *(4 + GAP + k for k in range(2, 7))]
    assert u1["session_index"] == [0, 0, 0, 1, 1, 1, 1, 1]


def test_collapse_renumbers_sessions_densely():
    # The second session is only a repeat of the first session's last view: collapsing across
    # sessions removes it, and the third session becomes session 1.
    rows = [("u1", "a", "view", 0), ("u1", "a", "view", GAP + 1), ("u1", "b", "view", 3 * GAP)]
    sequences = build_sequences(events_dataset(rows))
    assert sequences[0]["session_index"] == [0, 1, 2]
    collapsed, removed = collapse_repeated_views(sequences, within_session=False)
    assert removed == 1 and collapsed[0]["session_index"] == [0, 1]
    unchanged, removed = collapse_repeated_views(sequences)
    assert removed == 0 and unchanged[0]["session_index"] == [0, 1, 2]


VIEW_HEAVY = st.tuples(
    st.sampled_from(["u0", "u1", "u2"]),
    st.sampled_from(["a", "b"]),
    st.sampled_from(["view", "view", "view", "click", "cart", "purchase"]),
    st.integers(0, 30),
)


@PROPERTY_SETTINGS
@given(
    st.lists(VIEW_HEAVY, min_size=1, max_size=50).flatmap(
        lambda rows: st.tuples(st.just(rows), st.permutations(list(range(len(rows)))))
    ),
    st.sampled_from([None, 0, 5]),
    st.booleans(),
)
def test_property_collapse_never_drops_carts_or_purchases(log, gap, within_session):
    rows, row_index = log
    sequences = build_sequences(log_dataset(rows, row_index), session_gap_seconds=gap)
    collapsed, removed = collapse_repeated_views(sequences, within_session=within_session)
    reference = reference_sequences(rows, row_index)
    total_removed = 0
    for row in collapsed.to_list():
        full = reference[row["user_id"]]
        times = [e[3] for e in full]
        sessions = [0]
        for before, after in itertools.pairwise(times):
            sessions.append(sessions[-1] + int(gap is not None and after - before > gap))
        keep = [
            not (
                k > 0
                and full[k][2] == full[k - 1][2] == "view"
                and full[k][1] == full[k - 1][1]
                and (not within_session or sessions[k] == sessions[k - 1])
            )
            for k in range(len(full))
        ]
        kept = [e for e, k in zip(full, keep) if k]
        assert events_of(row) == kept
        # Every non-view event survives; every removed event is a view.
        assert [e for e in full if e[2] != "view"] == [e for e in kept if e[2] != "view"]
        total_removed += len(full) - len(kept)
        # Sessions stay dense and follow the original boundaries of the kept events.
        kept_sessions = [s for s, k in zip(sessions, keep) if k]
        dense = [0]
        for before, after in itertools.pairwise(kept_sessions):
            dense.append(dense[-1] + int(after != before))
        assert row["session_index"] == dense
    assert removed == total_removed
    assert collapsed.num_rows == sequences.num_rows


def test_prepare_counts_collapsed_views_and_short_users():
    rows = [
        ("u1", "a", "view", 0), ("u1", "a", "view", 1), ("u1", "a", "view", 2), ("u1", "b", "cart", 3),
        ("u1", "c", "view", 4), ("u1", "c", "purchase", 5),
        ("u2", "z", "view", 0), ("u2", "z", "view", 1),  # collapses to one event: below min_user_events
    ]  # fmt: skip
    options = PrepareOptions(collapse_repeated_views=True, min_user_events=2)
    prepared = prepare_events(events_dataset(rows), options, source_name="hand")
    report = DropReport.from_dict(prepared.drop_report)  # from_dict checks input == kept + dropped
    assert report.dropped["collapsed_repeat_view"] == 3
    assert report.dropped["short_user"] == 1
    assert report.input_rows == 8 and report.kept_rows == 4
    assert prepared.statistics["all"]["events"] == report.kept_rows
    assert prepared.sequences["user_id"] == ["u1"]
    assert "collapsed_repeat_view" in format_summary(prepared)
    # Off by default: the reason is not reported at all.
    plain = prepare_events(events_dataset(rows), PrepareOptions(), source_name="hand")
    assert "collapsed_repeat_view" not in plain.drop_report["dropped"]


# ---------------------------------------------------------------------------------------------
# Leave-one-out on the last purchase
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def purchase_sequences():
    rows = (
        [
            ("u1", item, kind, k)
            for k, (item, kind) in enumerate(
                zip("ABCDEFGH", ["view", "cart", "purchase", "view", "view", "purchase", "view", "cart"])
            )
        ]
        + [("u2", "X", "view", 1), ("u2", "Y", "purchase", 2), ("u2", "Z", "view", 3)]
        + [("u3", "P", "view", 1), ("u3", "Q", "cart", 2)]
        + [("u4", "R", "purchase", 1), ("u4", "S", "view", 2)]
    )  # fmt: skip
    return build_sequences(events_dataset(rows), session_gap_seconds=None)


def test_last_purchase_hand_case(purchase_sequences):
    splits, protocol = leave_one_out(purchase_sequences, target="last_purchase")
    train, validation, test = (by_user(splits[name]) for name in ("train", "validation", "test"))
    # u1: purchases C (position 2) and F (position 5); G, H come after the last purchase: in no split.
    assert test["u1"]["item_ids"] == list("ABCDE") and test["u1"]["target_item_id"] == "F"
    assert test["u1"]["target_event_type"] == "purchase" and test["u1"]["target_timestamp"] == 5
    assert validation["u1"]["item_ids"] == list("AB") and validation["u1"]["target_item_id"] == "C"
    assert train["u1"]["item_ids"] == list("AB")
    # u2: one purchase -> test only; Z after it is excluded; training = the test history.
    assert test["u2"]["item_ids"] == ["X"] and test["u2"]["target_item_id"] == "Y"
    assert "u2" not in validation and train["u2"]["item_ids"] == ["X"]
    # u3: no purchase -> whole sequence in training; u4: purchase without history -> not evaluated.
    assert train["u3"]["item_ids"] == ["P", "Q"] and "u3" not in test
    assert train["u4"]["item_ids"] == ["R", "S"] and "u4" not in test
    assert protocol["target"] == "last_purchase" and protocol["min_history"] == 1
    assert protocol["rows"] == {"train": 4, "validation": 1, "test": 2}
    assert protocol["users_evaluated"] == 2 and protocol["users_validated"] == 1
    assert protocol["users_train_only"] == 2 and protocol["users_without_purchase"] == 1
    assert protocol["events"] == {
        "train": 2 + 1 + 2 + 2,
        "validation_history": 2,
        "test_history": 5 + 1,
        "after_test_target_excluded": 2 + 1,
    }
    assert protocol["train_events"] == 7
    json.dumps(protocol)  # plain JSON

    splits, protocol = leave_one_out(purchase_sequences, target="last_purchase", min_history=0)
    assert set(by_user(splits["test"])) == {"u1", "u2", "u4"}
    assert by_user(splits["test"])["u4"]["item_ids"] == [] and by_user(splits["train"])["u4"]["item_ids"] == []
    splits, _ = leave_one_out(purchase_sequences, target="last_purchase", min_history=3)
    assert set(by_user(splits["test"])) == {"u1"} and splits["validation"].num_rows == 0
    assert by_user(splits["train"])["u1"]["item_ids"] == list("ABCDE")  # validation lacks history: train to test
    with pytest.raises(ValueError, match="target"):
        leave_one_out(purchase_sequences, target="next_purchase")


def test_last_event_protocol_records_target(purchase_sequences):
    _, protocol = leave_one_out(purchase_sequences)
    assert protocol["target"] == "last_event"
    assert protocol["users_validated"] == protocol["users_evaluated"] == protocol["rows"]["test"]
    assert protocol["events"]["after_test_target_excluded"] == 0


@PROPERTY_SETTINGS
@given(random_logs(), st.integers(0, 3))
def test_property_last_purchase_no_leakage(log, min_history):
    rows, row_index = log
    sequences = build_sequences(log_dataset(rows, row_index), session_gap_seconds=None)
    reference = reference_sequences(rows, row_index)
    splits, protocol = leave_one_out(sequences, min_history=min_history, target="last_purchase")
    train = by_user(splits["train"])
    validation, test = by_user(splits["validation"]), by_user(splits["test"])
    assert set(train) == set(reference)
    seen_tags = {e[0] for row in train.values() for e in events_of(row)}
    target_tags, excluded_tags = set(), set()
    for user, full in reference.items():
        purchases = [k for k, e in enumerate(full) if e[2] == "purchase"]
        tested = bool(purchases) and purchases[-1] >= min_history
        validated = tested and len(purchases) >= 2 and purchases[-2] >= min_history
        assert (user in test) == tested and (user in validation) == validated
        end = purchases[-2] if validated else purchases[-1] if tested else len(full)
        assert events_of(train[user]) == full[:end]
        for name, split, position in (("test", test, -1), ("validation", validation, -2)):
            if user not in split:
                continue
            row, k = split[user], purchases[position]
            assert events_of(row) == full[:k]  # history = everything strictly before the target
            assert (row["target_item_id"], row["target_event_type"], row["target_timestamp"]) == full[k][1:]
            assert row["target_event_type"] == "purchase"
            target_tags.add(full[k][0])
            seen_tags |= {e[0] for e in events_of(row)}
        if tested:
            excluded_tags |= {e[0] for e in full[purchases[-1] + 1 :]}
    assert not target_tags & {e[0] for row in train.values() for e in events_of(row)}  # no target in training
    assert not excluded_tags & (seen_tags | target_tags)  # nothing after the last purchase anywhere
    assert protocol["rows"] == {"train": len(train), "validation": len(validation), "test": len(test)}
    assert protocol["events"]["after_test_target_excluded"] == len(excluded_tags)
    assert protocol["train_events"] == sum(len(r["item_ids"]) for r in train.values())


@pytest.mark.parametrize("target", ["last_event", "last_purchase"])
def test_items_only_in_evaluation_targets_are_not_in_the_vocabulary(target):
    rows = [("u1", "a", "view", 1), ("u1", "b", "view", 2), ("u1", "VAL", "purchase", 3)]
    if target == "last_purchase":
        rows.append(("u1", "c", "view", 4))  # between the two purchases: in the test history only
    rows.append(("u1", "TEST", "purchase", 5))
    if target == "last_purchase":
        rows.append(("u1", "AFTER", "view", 6))  # after the last purchase: in no split
    rows += [("u2", "a", "view", 1), ("u2", "b", "view", 2), ("u2", "c", "view", 3)]
    options = PrepareOptions(loo_target=target, min_user_events=1)
    prepared = prepare_events(events_dataset(rows), options, source_name="hand")
    test = by_user(prepared.splits["test"])
    assert test["u1"]["target_item_id"] == "TEST"
    assert by_user(prepared.splits["validation"])["u1"]["target_item_id"] == "VAL"
    vocabulary = set(prepared.tokenizer.items)
    assert {"a", "b"} <= vocabulary
    assert not {"TEST", "VAL", "AFTER"} & vocabulary
    assert prepared.protocol["options"]["loo_target"] == target and prepared.protocol["target"] == target


def test_prepare_rejects_bad_target_options():
    rows = [("u1", "a", "view", 1), ("u1", "b", "view", 2)]
    with pytest.raises(ValueError, match="loo_target"):
        prepare_events(events_dataset(rows), PrepareOptions(loo_target="first"), source_name="x")
    with pytest.raises(ValueError, match="leave_one_out"):
        options = PrepareOptions(split="temporal", loo_target="last_purchase")
        prepare_events(events_dataset(rows), options, source_name="x")


# ---------------------------------------------------------------------------------------------
# seqbert prepare
# ---------------------------------------------------------------------------------------------


def test_cli_prepare_with_new_flags(tmp_path, capsys):
    events = tmp_path / "events.csv"
    write_events(generate_events(SyntheticConfig(num_users=80, num_items=60, num_categories=5, seed=3)), events)
    output = tmp_path / "prepared"
    argv = ["prepare", str(events), "--output-dir", str(output)]
    argv += ["--collapse-repeated-views", "--loo-target", "last_purchase"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for text in ("Users:", "Events per type:", "Sequence length:", "Split rows:", "collapsed_repeat_view", "xxh3_128"):
        assert text in printed
    protocol = json.loads((output / "protocol.json").read_text())
    assert protocol["target"] == "last_purchase" and protocol["options"]["collapse_repeated_views"] is True
    assert protocol["options"]["collapse_within_session"] is True
    assert protocol["source"]["xxh3_128"] == xxhash.xxh3_128(events.read_bytes()).hexdigest()
    assert set(protocol["rows"]) == {"train", "validation", "test"} and protocol["rows"]["test"] > 0
    report = DropReport.load_json(output / "drop_report.json")  # checks that it adds up
    assert report.dropped["collapsed_repeat_view"] > 0
    statistics = json.loads((output / "statistics.json").read_text())
    assert statistics["all"]["events"] == report.kept_rows

    # Across sessions collapses at least as much; a mismatched target/split is refused.
    assert main([*argv[:3], str(tmp_path / "across"), "--collapse-repeated-views", "--collapse-across-sessions"]) == 0
    across = DropReport.load_json(tmp_path / "across" / "drop_report.json")
    assert across.dropped["collapsed_repeat_view"] >= report.dropped["collapsed_repeat_view"]
    with pytest.raises(SystemExit):
        main([*argv[:3], str(tmp_path / "x"), "--split", "temporal", "--loo-target", "last_purchase"])


def test_cli_prepare_help_mentions_new_flags(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    text = capsys.readouterr().out
    for flag in ("--collapse-repeated-views", "--collapse-across-sessions", "--loo-target", "last_purchase"):
        assert flag in text
