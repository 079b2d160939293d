"""`seqbert prepare --schema FILE`: column mapping and reader options from a YAML/JSON file."""

from __future__ import annotations

import json

import pytest

from seqbert.cli import main
from seqbert.prepared import PreparedData

RETAIL_LIKE = "timestamp,visitorid,event,itemid\n" + "".join(
    f"{1_433_221_332_117 + 1000 * i},{user},{event},{item}\n"
    for i, (user, event, item) in enumerate(
        [(1, "view", 10), (1, "view", 11), (1, "addtocart", 11), (1, "transaction", 11), (2, "view", 10), (2, "view", 12), (2, "view", 11)]
    )
)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_schema_file_maps_columns_aliases_and_units(tmp_path, suffix):
    log = tmp_path / "events.csv"
    log.write_text(RETAIL_LIKE)
    schema = {
        "column_map": {"user_id": "visitorid", "item_id": "itemid", "event_type": "event"},
        "event_aliases": {"transaction": "purchase"},
        "timestamp_unit": "ms",
    }
    schema_path = tmp_path / f"schema{suffix}"
    schema_path.write_text(json.dumps(schema))  # JSON is valid YAML too
    assert main(["prepare", str(log), "--output-dir", str(tmp_path / "out"), "--schema", str(schema_path)]) == 0
    prepared = PreparedData.load(tmp_path / "out")
    assert prepared.drop_report["input_rows"] == 7
    assert prepared.protocol["source"]["read_options"]["timestamp_unit"] == "ms"
    sequences = prepared.sequences.to_dict()
    assert sequences["event_types"][0] == ["view", "view", "cart", "purchase"]
    assert sequences["timestamps"][0][0] == 1_433_221_332


def test_command_line_wins_over_schema_and_unknown_keys_fail(tmp_path):
    log = tmp_path / "events.csv"
    log.write_text(RETAIL_LIKE)
    schema_path = tmp_path / "schema.yaml"
    schema_path.write_text("column_map: {user_id: visitorid, item_id: itemid, event_type: event}\ntimestamp_unit: s\n")
    # The schema says seconds (wrong for this file); the command line corrects it.
    args = ["prepare", str(log), "--output-dir", str(tmp_path / "out"), "--schema", str(schema_path),
            "--timestamp-unit", "ms", "--event-alias", "transaction=purchase"]
    assert main(args) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("colum_map: {user_id: visitorid}\n")
    with pytest.raises(SystemExit, match="unknown keys"):
        main(["prepare", str(log), "--output-dir", str(tmp_path / "x"), "--schema", str(bad)])


def test_prepare_partitions_flag_matches_in_memory(tmp_path):
    """`--partitions K` (larger-than-memory path) gives the same splits and drop report as in memory."""
    from seqbert.data.synthetic import SyntheticConfig, generate_events, write_events

    log = write_events(generate_events(SyntheticConfig(num_users=120, num_items=60, seed=1)), tmp_path / "events.csv")
    assert main(["prepare", str(log), "--output-dir", str(tmp_path / "memory")]) == 0
    assert main(["prepare", str(log), "--output-dir", str(tmp_path / "parts"), "--partitions", "3"]) == 0
    memory, parts = PreparedData.load(tmp_path / "memory"), PreparedData.load(tmp_path / "parts")
    assert parts.drop_report["dropped"] == memory.drop_report["dropped"]
    for split in ("train", "validation", "test"):
        assert parts.splits[split].to_dict() == memory.splits[split].to_dict(), split
    assert parts.tokenizer.items == memory.tokenizer.items


def test_prepare_bot_rate_and_k_core_flags(tmp_path):
    """--max-events-per-minute / --max-events-per-hour count bot-like users; --k-core iterates; counts add up."""
    rows = ["user_id,item_id,event_type,timestamp"]
    rows += [f"bot,i{k % 4},view,{1_700_000_000 + k}" for k in range(30)]  # 30 events in 30 s
    rows += [f"u{u},i{(u + k) % 4},view,{1_700_000_000 + 120 * k}" for u in range(6) for k in range(4)]
    rows += ["lone,rare,view,1700000000", "lone,i0,view,1700000100", "lone,i1,view,1700000200"]
    log = tmp_path / "events.csv"
    log.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    args = ["prepare", str(log), "--output-dir", str(out), "--max-events-per-minute", "10",
            "--max-events-per-hour", "100", "--min-item-support", "2", "--min-user-events", "3",
            "--k-core"]  # fmt: skip
    assert main(args) == 0
    prepared = PreparedData.load(out)
    report = prepared.drop_report
    assert report["dropped"]["bot_user"] == 30
    assert report["dropped"]["rare_item"] == 1  # "rare"; "lone" keeps 2 events -> short_user
    assert report["dropped"]["short_user"] == 2
    assert report["input_rows"] == report["kept_rows"] + sum(report["dropped"].values()) == 57
    options = prepared.protocol["options"]
    assert (options["max_events_per_minute"], options["max_events_per_hour"], options["k_core"]) == (10, 100, True)
    # The larger-than-memory path computes the same k-core (whole-log codes, replayed per partition).
    assert main([*args[:3], str(tmp_path / "parts"), *args[4:], "--partitions", "2"]) == 0
    assert PreparedData.load(tmp_path / "parts").drop_report["dropped"] == report["dropped"]


@pytest.mark.parametrize("partitions", [[], ["--partitions", "2"]])
def test_input_hash_recorded_under_its_algorithm(tmp_path, capsys, partitions):
    """protocol.json names the input's content hash by algorithm: xxh3_128 by default, sha256 on request."""
    import hashlib

    import xxhash

    log = tmp_path / "events.csv"
    log.write_text(RETAIL_LIKE)
    data = log.read_bytes()
    base = ["prepare", str(log), "--timestamp-unit", "ms", "--event-alias", "transaction=purchase",
            "--column", "user_id=visitorid", "--column", "item_id=itemid", "--column", "event_type=event", *partitions]
    assert main([*base, "--output-dir", str(tmp_path / "fast")]) == 0
    source = PreparedData.load(tmp_path / "fast").protocol["source"]
    assert source["xxh3_128"] == xxhash.xxh3_128(data).hexdigest() and "sha256" not in source
    assert f"Input xxh3_128: {source['xxh3_128']}" in capsys.readouterr().out
    assert main([*base, "--output-dir", str(tmp_path / "sha"), "--input-hash", "sha256"]) == 0
    source = PreparedData.load(tmp_path / "sha").protocol["source"]
    assert source["sha256"] == hashlib.sha256(data).hexdigest() and "xxh3_128" not in source
    with pytest.raises(SystemExit):
        main([*base, "--output-dir", str(tmp_path / "bad"), "--input-hash", "md5"])


def test_unknown_input_hash_fails_before_reading(tmp_path):
    from seqbert.prepare import PrepareOptions, prepare_file

    with pytest.raises(ValueError, match="input_hash must be one of"):
        prepare_file(tmp_path / "missing.csv", PrepareOptions(input_hash="md5"))
