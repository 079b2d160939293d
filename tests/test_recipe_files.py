"""Recipes as files (`--config`): a YAML/JSON mapping of options, flags on the command line winning, the shipped
recipes parsing as the options they name, and the file recorded with the run."""

from __future__ import annotations

import json

import pytest
from transformers import HfArgumentParser

from seqbert.training.arguments import (
    RECIPES_DIR,
    FinetuneArguments,
    ModelArguments,
    PretrainArguments,
    TrainingArguments,
    config_file_arguments,
)

PRETRAIN = (TrainingArguments, ModelArguments, PretrainArguments)
FINETUNE = (TrainingArguments, ModelArguments, FinetuneArguments)
REQUIRED = ["--data_dir", "prepared", "--output_dir", "out"]


def parse(dataclasses, argv):
    expanded, record = config_file_arguments(argv)
    return HfArgumentParser(dataclasses).parse_args_into_dataclasses(args=expanded), record


def test_config_file_options_and_the_command_line_wins(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("learning_rate: 0.01\nitem_categories: true\nmask_prob: 0.3\n")
    (args, _, pre_args), record = parse(PRETRAIN, [*REQUIRED, "--config", str(path), "--mask_prob", "0.5"])
    assert args.learning_rate == 0.01 and pre_args.item_categories is True
    assert pre_args.mask_prob == 0.5  # the flag wins over the file
    assert args.config == str(path)
    assert record == {"path": str(path), "options": {"learning_rate": 0.01, "item_categories": True, "mask_prob": 0.3,
                                                      }, "overridden_by_flags": ["mask_prob"]}
    json_path = tmp_path / "mine.json"
    json_path.write_text(json.dumps({"task": "click", "tabular_models": ["logistic_regression", "lightgbm"], "freeze_encoder": False}))
    (_, _, ft_args), _ = parse(FINETUNE, [*REQUIRED, f"--config={json_path}"])
    assert ft_args.task == "click" and ft_args.tabular_models == ["logistic_regression", "lightgbm"] and not ft_args.freeze_encoder


def test_config_file_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nor a recipe shipped with seqbert"):
        config_file_arguments([*REQUIRED, "--config", str(tmp_path / "missing.yaml")])
    listed = tmp_path / "list.yaml"
    listed.write_text("- learning_rate\n")
    with pytest.raises(ValueError, match="mapping of option names"):
        config_file_arguments(["--config", str(listed)])
    with pytest.raises(ValueError, match="given 2 times"):
        config_file_arguments(["--config", str(listed), "--config", str(listed)])
    assert config_file_arguments(REQUIRED) == (REQUIRED, None)


@pytest.mark.parametrize("path", sorted(RECIPES_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_parses(path):
    dataclasses = FINETUNE if path.stem == "demo_finetune" else PRETRAIN
    (args, *_), record = parse(dataclasses, [*REQUIRED, "--config", path.stem])  # by name, as the scripts use them
    assert record["path"] == str(path) and record["options"] and args.config == path.stem


def test_beauty_recipe_is_the_measured_one():
    (args, model_args, pre_args), _ = parse(PRETRAIN, [*REQUIRED, "--config", "beauty_joint"])
    assert (args.max_length, args.per_device_batch_size, args.num_epochs, args.learning_rate) == (50, 256, 8, 5e-3)
    assert (model_args.hidden_size, model_args.repeat_bias_buckets) == (128, 8)
    assert (pre_args.next_item_loss_weight, pre_args.next_item_query, pre_args.window_stride) == (4.0, "causal", 0)
