"""A training run never mixes with an earlier one in the same output folder."""

from __future__ import annotations

import pytest

from seqbert.training import pretrain
from seqbert.training.loop import read_log

from .synthetic_prepared import prepare_synthetic_temporal

TINY = ["--max_length", "12", "--per_device_batch_size", "16", "--hidden_size", "16", "--num_hidden_layers", "1",
        "--num_attention_heads", "2", "--intermediate_size", "24", "--logging_steps", "1"]  # fmt: skip


def test_a_second_run_into_the_same_folder_is_refused_or_replaces_the_first(tmp_path):
    prepared = prepare_synthetic_temporal(tmp_path / "data", num_users=40, seed=2)
    output = tmp_path / "model"
    run = ["--data_dir", str(prepared), "--output_dir", str(output), *TINY]
    pretrain.main([*run, "--max_steps", "3", "--checkpointing_steps", "3"])
    first = read_log(output)
    assert max(r["step"] for r in first) == 3 and (output / "checkpoints").exists()

    with pytest.raises(FileExistsError, match="already holds a run .*--overwrite_output_dir"):
        pretrain.main([*run, "--max_steps", "2"])
    assert read_log(output) == first  # nothing touched

    pretrain.main([*run, "--max_steps", "2", "--overwrite_output_dir"])
    second = read_log(output)
    assert max(r["step"] for r in second) == 2 and not (output / "checkpoints").exists()
    assert all(r["step"] <= 2 for r in second)  # the first run's records are gone, not appended to


def test_resume_from_continues_the_run_in_its_folder(tmp_path):
    prepared = prepare_synthetic_temporal(tmp_path / "data", num_users=40, seed=4)
    output = tmp_path / "model"
    run = ["--data_dir", str(prepared), "--output_dir", str(output), *TINY, "--checkpointing_steps", "2"]
    pretrain.main([*run, "--max_steps", "2"])
    summary = pretrain.main([*run, "--max_steps", "4", "--resume_from", "latest"])
    assert summary["global_step"] == 4
    steps = [r["step"] for r in read_log(output) if "train_loss" in r]
    assert steps == sorted(steps) and max(steps) == 4  # one run, continued: the log goes on from step 2
