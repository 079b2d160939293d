"""Prepared folders as parquet shards, and pretraining streamed from them (--streaming).

The shards round-trip through save / load and `seqbert prepare --output-shards`; the stream hands every process
exactly the rows Accelerate's sharded sampler gives it in memory; a 2-process torchrun streamed from the shards
gives the same losses and metrics as the in-memory 2-process run on the same folder; a streamed run resumed from
a checkpoint ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from accelerate.data_loader import BatchSamplerShard
from safetensors.torch import load_file
from torch.utils.data import BatchSampler

from seqbert import cli
from seqbert.data.synthetic import SyntheticConfig, generate_events, write_events
from seqbert.prepared import PreparedData, encode_for_pretraining
from seqbert.training import pretrain
from seqbert.training.loop import read_log
from seqbert.training.streaming import (
    PretrainingShardStream,
    ShardedOrderSampler,
    encoded_rows_per_shard,
    train_shards,
)  # fmt: skip

from .synthetic_prepared import prepare_synthetic_temporal

TINY_MODEL = ["--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "64"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """The same prepared data in the Arrow layout and as 3 parquet shards per split."""
    root = tmp_path_factory.mktemp("streaming")
    arrow = prepare_synthetic_temporal(root, num_users=300, seed=3)
    PreparedData.load(arrow).save(root / "sharded", shards=3)
    return arrow, root / "sharded"


def test_sharded_folder_round_trips(folders):
    arrow, sharded = folders
    before, after = PreparedData.load(arrow), PreparedData.load(sharded)
    protocol = json.loads((sharded / "protocol.json").read_text())
    assert protocol["layout"] == "parquet"
    for name, split in before.splits.items():
        files, records = sorted((sharded / "dataset" / name).glob("part-*.parquet")), protocol["shards"][f"dataset/{name}"]
        assert [path.name for path in files] == [r["file"] for r in records]
        assert [pq.ParquetFile(path).metadata.num_rows for path in files] == [r["rows"] for r in records]
        assert len(files) == 3 and sum(r["rows"] for r in records) == split.num_rows
        loaded = after.splits[name]
        assert loaded.features == split.features
        assert loaded.data.table.schema.remove_metadata() == split.data.table.schema.remove_metadata()  # Arrow types
        assert loaded.to_list() == split.to_list()
    assert after.sequences.to_list() == before.sequences.to_list() and after.sequences.features == before.sequences.features
    assert len(list((sharded / "sequences").glob("part-*.parquet"))) == 3
    assert after.tokenizer.items == before.tokenizer.items
    assert {k: v for k, v in protocol.items() if k not in ("layout", "shards")} == before.protocol
    # Saved again without shards: the Arrow layout, and no shard records left in protocol.json.
    after.save(sharded.parent / "arrow_again")
    assert "layout" not in PreparedData.load(sharded.parent / "arrow_again").protocol
    # Only what is asked for is read.
    partial = PreparedData.load(sharded, splits=("validation", "test"), sequences=False)
    assert set(partial.splits) == {"validation", "test"} and partial.sequences is None


def test_prepare_output_shards_writes_the_layout(tmp_path):
    events = write_events(generate_events(SyntheticConfig(num_users=60, num_items=40, seed=1)), tmp_path / "events.parquet")
    common = ["prepare", str(events), "--split", "temporal", "--min-user-events", "1"]
    cli.main([*common, "--output-dir", str(tmp_path / "arrow")])
    cli.main([*common, "--output-dir", str(tmp_path / "sharded"), "--output-shards", "2"])
    assert not (tmp_path / "sharded" / "dataset" / "dataset_dict.json").exists()
    for name in ("train", "validation", "test"):
        assert [p.name for p in sorted((tmp_path / "sharded" / "dataset" / name).iterdir())] == [
            "part-00000.parquet", "part-00001.parquet"]  # fmt: skip
    # With --partitions the folder is assembled in the Arrow layout beside the output, then written as shards.
    cli.main([*common, "--output-dir", str(tmp_path / "partitioned"), "--partitions", "2", "--output-shards", "2"])
    assert not (tmp_path / "partitioned.arrow-staging").exists()
    arrow = PreparedData.load(tmp_path / "arrow")
    for folder in ("sharded", "partitioned"):
        sharded = PreparedData.load(tmp_path / folder)
        assert sharded.protocol["layout"] == "parquet"
        for name, split in arrow.splits.items():
            assert sharded.splits[name].to_list() == split.to_list(), (folder, name)
        assert sharded.sequences.to_list() == arrow.sequences.to_list()


@pytest.mark.parametrize(("batch_size", "processes"), [(32, 2), (7, 2), (2000, 2), (16, 1), (5, 3)])
def test_stream_gives_each_process_the_rows_of_the_in_memory_sampler(folders, batch_size, processes):
    """Same rows, order and row ids as Accelerate's BatchSamplerShard over the in-memory sharded order (last round
    completed from the epoch's start, also when one round is longer than the epoch); also after skipping batches."""
    _, sharded = folders
    data = PreparedData.load(sharded, splits=("train",), sequences=False)
    files = train_shards(sharded, data.protocol)
    counts = encoded_rows_per_shard(files, data.tokenizer, 8, 4)
    rows = encode_for_pretraining(data.splits["train"], data.tokenizer, 8, window_stride=4)
    assert sum(counts) == rows.num_rows
    for epoch in (0, 1):
        sampler = ShardedOrderSampler(counts, seed=5)
        sampler.set_epoch(epoch)
        for process in range(processes):
            shard = BatchSamplerShard(BatchSampler(sampler, batch_size, False), num_processes=processes,
                                      process_index=process, even_batches=True)  # fmt: skip
            expected = [index for batch in shard for index in batch]
            stream = PretrainingShardStream(
                files, counts, data.tokenizer, max_length=8, window_stride=4, seed=5, batch_size=batch_size,
                num_processes=processes, process_index=process,
            )  # fmt: skip
            stream.set_epoch(epoch)
            assert len(stream) == len(expected)
            for skip in (0, 1):
                stream.skip_rows = skip * batch_size
                assert list(stream) == rows.select(expected[skip * batch_size :]).to_list(), (epoch, process, skip)
    # The shards' order changes with the epoch.
    first, second = ShardedOrderSampler(counts, seed=5), ShardedOrderSampler(counts, seed=5)
    second.set_epoch(1)
    assert list(first) != list(second) and sorted(first) == sorted(second) == list(range(rows.num_rows))


def run(command: list[str]) -> None:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "ACCELERATE_USE_CPU": "1",
                   "TQDM_DISABLE": "1"}  # fmt: skip
    result = subprocess.run(command, check=False, capture_output=True, text=True, env=environment, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)}\n--- stderr\n{result.stderr[-6000:]}"


@pytest.mark.slow
def test_two_processes_streamed_equal_in_memory(folders, tmp_path):
    """torchrun, 2 CPU processes, 2 epochs (the second starts after a last round completed from the first rows):
    the same losses at every step and the same validation and test metrics, to the last digit."""
    _, sharded = folders
    common = ["--data_dir", str(sharded), "--max_length", "16", "--per_device_batch_size", "64", "--num_epochs", "2",
              "--logging_steps", "1", "--eval_every_epochs", "1", "--expected_num_processes", "2", *TINY_MODEL]  # fmt: skip
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29581",
              "-m", "seqbert.training.pretrain"]  # fmt: skip
    run([*launch, *common, "--output_dir", str(tmp_path / "memory")])
    run([*launch, *common, "--output_dir", str(tmp_path / "streamed"), "--streaming"])
    memory, streamed = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("memory", "streamed"))
    assert memory["num_processes"] == streamed["num_processes"] == 2 and streamed["streaming"]
    assert memory["global_step"] == streamed["global_step"] == 2 * 9  # 1045 rows / (2 x 64) per step
    assert memory["train_sequences"] == streamed["train_sequences"] and memory["schedule"] == streamed["schedule"]
    assert streamed["metrics"] == memory["metrics"]  # the model and the baselines, validation and test
    drop = ("data_wait_fraction", "wall_seconds", "validation_seconds")
    logs = [[{k: v for k, v in r.items() if k not in drop} for r in read_log(tmp_path / name)] for name in ("memory", "streamed")]
    assert len([r for r in logs[0] if "train_loss" in r]) == 18 and logs[0] == logs[1]


@pytest.mark.slow
def test_streamed_run_resumes_exactly(folders, tmp_path):
    """Stopped at a mid-epoch checkpoint (step 10 of 17 per epoch) and resumed to step 20 (into the second epoch)
    == uninterrupted, to the last weight."""
    _, sharded = folders
    common = ["--data_dir", str(sharded), "--max_length", "16", "--per_device_batch_size", "64", "--lr_scheduler",
              "constant", "--warmup_ratio", "0", "--checkpointing_steps", "10", "--logging_steps", "1",
              "--eval_every_epochs", "100", "--streaming", *TINY_MODEL]  # fmt: skip
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    pretrain.main([*common, "--output_dir", str(straight), "--max_steps", "20"])
    pretrain.main([*common, "--output_dir", str(resumed), "--max_steps", "10"])
    summary = pretrain.main([*common, "--output_dir", str(resumed), "--max_steps", "20", "--resume_from", "latest"])
    assert summary["global_step"] == 20 and summary["epochs_completed"] == 1
    losses = [[r["train_loss"] for r in read_log(folder) if "train_loss" in r] for folder in (straight, resumed)]
    assert len(losses[0]) == 20 and losses[0] == losses[1]
    # checkpoint_0 at step 10 in both runs, checkpoint_1 at the end (saved by the resumed run after restarting).
    final = [load_file(folder / "checkpoints" / "checkpoint_1" / "model.safetensors") for folder in (straight, resumed)]
    assert final[0].keys() == final[1].keys()
    for name, tensor in final[0].items():
        assert np.array_equal(tensor.numpy(), final[1][name].numpy()), name


def test_streaming_refuses_options_that_need_the_whole_split(folders, tmp_path):
    arrow, sharded = folders
    with pytest.raises(ValueError, match="--streaming does not combine with --group_by_length"):
        pretrain.main(["--data_dir", str(sharded), "--output_dir", str(tmp_path / "a"), "--streaming", "--group_by_length"])
    with pytest.raises(ValueError, match="--output-shards"):
        pretrain.main(["--data_dir", str(arrow), "--output_dir", str(tmp_path / "b"), "--streaming", "--max_steps", "1"])
