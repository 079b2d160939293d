"""`seqbert recommend` / `seqbert embed`: batch scoring of an event log to parquet, through Recommender's code path."""

from __future__ import annotations

import csv

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqbert.cli import build_parser, main
from seqbert.inference import Recommender

from .test_inference import ITEMS, build_model_folders, random_users

NUM_USERS = 40


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(build_model_folders(tmp_path_factory.mktemp("models"))[0])


@pytest.fixture(scope="module")
def users() -> dict[str, list[dict]]:
    """User id → raw events (awkward item ids, some unknown to the model, any order within the file)."""
    histories = random_users(NUM_USERS, seed=11, items=ITEMS, max_len=20)
    return {f"u{index:03d}": events for index, events in enumerate(histories)}


def write_log(path, users, names=("user_id", "item_id", "event_type", "timestamp"), aliases=None):
    """The users' events as a csv file, interleaved across users (not grouped) so the command must group them."""
    rows = [(user, e["item_id"], e["event_type"], e["timestamp"]) for user, events in users.items() for e in events]
    rows = rows[1::2] + rows[::2]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        writer.writerows((u, i, (aliases or {}).get(t, t), ts) for u, i, t, ts in rows)
    return str(path)


@pytest.fixture(scope="module")
def log(tmp_path_factory, users):
    return write_log(tmp_path_factory.mktemp("log") / "events.csv", users)


def cli(*args) -> int:
    """``seqbert ARGS --no-progress`` in this process (paths and numbers as they are)."""
    return main([*map(str, args), "--no-progress"])


def recommendations_by_user(path) -> dict[str, tuple[list[str], list[float], list[int]]]:
    table = pq.read_table(path).to_pydict()
    found: dict[str, tuple[list, list, list]] = {}
    for user, rank, item, score in zip(table["user_id"], table["rank"], table["item_id"], table["score"]):
        items, scores, ranks = found.setdefault(user, ([], [], []))
        items.append(item)
        scores.append(score)
        ranks.append(rank)
    return found


@pytest.mark.parametrize(("options", "batch_size"), [([], 256), (["--exclude-seen", "--batch-size", "7"], 7)])
def test_recommend_parquet_equals_recommender(tmp_path, model_dir, users, log, options, batch_size):
    output = tmp_path / "recs.parquet"
    assert cli("recommend", model_dir, "--events", log, "--output", output, "--k", 5, *options) == 0
    schema = pq.read_schema(output)
    columns = [(f.name, str(f.type)) for f in schema]
    assert columns == [("user_id", "string"), ("rank", "int32"), ("item_id", "string"), ("score", "float")]
    found = recommendations_by_user(output)
    assert list(found) == sorted(users)  # every user, in user_id order
    recommender = Recommender.from_pretrained(model_dir, batch_size=batch_size)
    expected = recommender.recommend([users[u] for u in found], k=5, exclude_seen=bool(options))
    for user, result in zip(found, expected):
        items, scores, ranks = found[user]
        assert items == result.item_ids, user
        assert scores == [float(np.float32(s)) for s in result.scores], user
        assert ranks == list(range(1, len(items) + 1))


def test_embed_parquet_equals_recommender(tmp_path, model_dir, users, log):
    output = tmp_path / "users.parquet"
    assert cli("embed", model_dir, "--events", log, "--output", output, "--batch-size", 16) == 0
    table = pq.read_table(output)
    recommender = Recommender.from_pretrained(model_dir, batch_size=16)
    hidden = recommender.model.config.hidden_size
    kind = table.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(kind) and kind.list_size == hidden and kind.value_type == pa.float32()
    user_ids = table.column("user_id").to_pylist()
    assert user_ids == sorted(users)
    vectors = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(len(user_ids), hidden)
    np.testing.assert_array_equal(vectors, recommender.embed_users([users[u] for u in user_ids]))


def test_renamed_columns_and_event_names(tmp_path, model_dir, users, log):
    """A log with its own column and event names reads through --column / --event-alias like `prepare`."""
    names, aliases = ("visitorid", "itemid", "event", "ts"), {"purchase": "transaction"}
    retail = write_log(tmp_path / "retail.csv", users, names=names, aliases=aliases)
    mapping = ["--column", "user_id=visitorid", "--column", "item_id=itemid", "--column", "event_type=event",
               "--column", "timestamp=ts", "--event-alias", "transaction=purchase"]  # fmt: skip
    renamed, canonical = tmp_path / "renamed.parquet", tmp_path / "canonical.parquet"
    assert cli("recommend", model_dir, "--events", retail, "--output", renamed, "--k", 3, *mapping) == 0
    assert cli("recommend", model_dir, "--events", log, "--output", canonical, "--k", 3) == 0
    assert pq.read_table(renamed).equals(pq.read_table(canonical))
    # Without the mapping the event names are unknown: the reader's one-line error, not a traceback.
    assert cli("recommend", model_dir, "--events", retail, "--output", tmp_path / "x.parquet") == 2


def test_existing_output_is_refused_unless_overwrite(tmp_path, model_dir, log, capsys):
    output = tmp_path / "recs.parquet"
    output.write_bytes(b"earlier run")
    args = ["recommend", model_dir, "--events", log, "--output", output, "--k", 2]
    assert cli(*args) == 2
    error = capsys.readouterr().err
    assert str(output) in error and "--overwrite" in error and error.count("\n") == 1
    assert output.read_bytes() == b"earlier run"  # untouched
    assert cli(*args, "--overwrite") == 0
    assert pq.read_table(output).num_rows == 2 * NUM_USERS
    assert not list(tmp_path.glob(".*partial"))  # the temporary file was renamed


def test_missing_log_or_model_is_a_one_line_error(tmp_path, model_dir, capsys):
    missing_log = tmp_path / "nowhere" / "events.csv"
    assert cli("embed", model_dir, "--events", missing_log, "--output", tmp_path / "u.parquet") == 2
    error = capsys.readouterr().err
    assert error.startswith("seqbert embed: error: event log") and str(missing_log) in error and "--events" in error
    assert error.count("\n") == 1
    missing_model = tmp_path / "no-model"
    assert cli("recommend", missing_model, "--events", missing_log, "--output", tmp_path / "r.parquet") == 2
    error = capsys.readouterr().err
    assert str(missing_model) in error and "does not exist" in error and "seqbert pretrain" in error
    assert not (tmp_path / "u.parquet").exists() and not (tmp_path / "r.parquet").exists()


def test_help_states_every_default():
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in ("recommend", "embed"):
        for action in commands[name]._actions:
            if action.option_strings and action.dest != "help":
                assert "default" in action.help or "required" in action.help, (name, action.dest)
