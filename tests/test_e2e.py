"""End to end through real launchers: prepare → pretrain / finetune subprocesses → Hub-shaped folders.

Runs `accelerate launch` (1 process) and `torchrun` (2 CPU processes: `accelerate launch --cpu
--num_processes 2` silently starts one here), checks the process count inside the run, that
evaluation gives identical metrics with 1 and 2 processes, and that resuming continues exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from seqbert.data.synthetic import SyntheticConfig, generate_events, write_events
from seqbert.hub import validate_model_folder
from seqbert.prepare import PrepareOptions, prepare_file

pytestmark = pytest.mark.slow
TINY_MODEL = ["--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "64"]


def run(command: list[str], **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **env}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-8000:]}"
    return result


def accelerate(module: str, *options: str) -> list[str]:
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no", "--num_cpu_threads_per_process", "1"]
    return [*launch, "-m", module, *options]


def torchrun(module: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533", "-m", module, *options]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("e2e")
    events = write_events(generate_events(SyntheticConfig(num_users=300, num_items=120, seed=3)), folder / "events.parquet")
    prepare_file(events, PrepareOptions(split="temporal", max_length=20), output_dir=folder / "prepared")
    return folder / "prepared"


@pytest.fixture(scope="module")
def pretrained(prepared, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("pretrained") / "model"
    run(accelerate(
        "seqbert.training.pretrain", "--data_dir", str(prepared), "--output_dir", str(output), "--max_length", "20",
        "--num_epochs", "2", "--per_device_batch_size", "32", "--expected_num_processes", "1", *TINY_MODEL,
        # Chunked ranking inside training; test_cli_prepare_and_evaluate checks it against the unchunked CLI.
        "--eval_item_chunk_size", "97",
    ))
    return output


def results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def test_pretrain_writes_a_hub_shaped_folder(pretrained):
    validate_model_folder(pretrained)
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", "item_vocab.json", "modeling_seqbert.py",
                 "configuration_seqbert.py", "tokenization_seqbert.py", "README.md", "training_curves.png"):
        assert (pretrained / name).is_file(), name
    assert not list(pretrained.glob("*.bin")) and not list(pretrained.glob("*.pt"))
    summary = results(pretrained)
    assert summary["num_processes"] == 1
    assert summary["model_tflops_per_second"] > 0 and summary["mfu"] is None  # no peak is guessed for a CPU
    assert set(summary["metrics"]["test"]) == {"seqbert", "popularity", "markov"}
    assert summary["metrics"]["test"]["seqbert"]["count"] > 0
    assert "ndcg@10" in (pretrained / "README.md").read_text().lower()


def test_two_processes_evaluate_exactly_like_one(prepared, pretrained, tmp_path):
    """Same weights, no training (0 epochs): validation/test metrics must not depend on the process count."""
    common = ["--data_dir", str(prepared), "--init_from", str(pretrained), "--num_epochs", "0", "--max_length", "20",
              "--eval_batch_size", "7"]  # odd batch size: the last batch is split unevenly across processes
    one, two = tmp_path / "one", tmp_path / "two"
    run(accelerate("seqbert.training.pretrain", *common, "--output_dir", str(one), "--expected_num_processes", "1"))
    run(torchrun("seqbert.training.pretrain", *common, "--output_dir", str(two), "--expected_num_processes", "2"),
        ACCELERATE_USE_CPU="1")
    assert results(one)["num_processes"] == 1 and results(two)["num_processes"] == 2
    for split in ("validation", "test"):
        for model, metrics in results(one)["metrics"][split].items():
            assert results(two)["metrics"][split][model] == pytest.approx(metrics, abs=1e-9), (split, model)


def test_wrong_process_count_fails_fast(prepared, tmp_path):
    command = accelerate("seqbert.training.pretrain", "--data_dir", str(prepared), "--output_dir", str(tmp_path / "x"),
                         "--num_epochs", "0", "--expected_num_processes", "2", *TINY_MODEL)
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode != 0 and "expected 2" in result.stderr


def test_resume_continues_at_the_right_step(prepared, tmp_path):
    """Interrupted at step 3 and resumed == uninterrupted, to the last weight (with length-grouped batches
    and dataset label weighting: the sampler's order and the loss scale must survive the restart too)."""
    common = ["--data_dir", str(prepared), "--max_length", "20", "--per_device_batch_size", "16", "--lr_scheduler",
              "constant", "--warmup_ratio", "0", "--checkpointing_steps", "3", "--logging_steps", "1",
              "--eval_every_epochs", "100", "--group_by_length", "--label_weighting", "dataset", *TINY_MODEL]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(accelerate("seqbert.training.pretrain", *common, "--output_dir", str(straight), "--max_steps", "6"))
    run(accelerate("seqbert.training.pretrain", *common, "--output_dir", str(resumed), "--max_steps", "3"))
    second = run(accelerate("seqbert.training.pretrain", *common, "--output_dir", str(resumed), "--max_steps", "6",
                            "--resume_from", "latest"))
    assert "at step 3" in second.stderr
    summary = results(straight)
    assert summary["train_sequences"] > summary["train_users"]  # long histories trained as several windows each
    log = [json.loads(line) for line in (resumed / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "train_loss" in r] == [1, 2, 3, 4, 5, 6]
    final_straight = load_file(straight / "checkpoints" / "checkpoint_1" / "model.safetensors")
    final_resumed = load_file(resumed / "checkpoints" / "checkpoint_1" / "model.safetensors")
    assert final_straight.keys() == final_resumed.keys()
    for name, tensor in final_straight.items():
        assert (tensor - final_resumed[name]).abs().max() < 1e-6, name


def test_finetune_from_pretrained(prepared, pretrained, tmp_path):
    """Also covers gradient accumulation and bf16 autocast on CPU."""
    output = tmp_path / "purchase"
    run(accelerate(
        "seqbert.training.finetune", "--data_dir", str(prepared), "--output_dir", str(output),
        "--model_name_or_path", str(pretrained), "--max_length", "20", "--num_epochs", "2", "--per_device_batch_size", "16",
        "--gradient_accumulation_steps", "2", "--mixed_precision", "bf16",
    ))
    validate_model_folder(output)
    summary = results(output)
    assert summary["initialised_from"] == str(pretrained)
    assert summary["mixed_precision"] == "bf16"
    micro_batches = -(-summary["label_counts"]["train"]["examples"] // 16)
    assert summary["global_step"] == 2 * -(-micro_batches // 2)  # one optimizer step per 2 micro-batches
    cutoffs = summary["cutoffs"]
    assert cutoffs["train_cutoff"] < cutoffs["validation_cutoff"] < cutoffs["test_cutoff"]
    for model in ("seqbert", "logistic_regression", "lightgbm"):
        metrics = summary["metrics"]["test"][model]
        assert 0.0 <= metrics["roc_auc"] <= 1.0 and metrics["log_loss"] > 0
    config = json.loads((output / "config.json").read_text())
    assert config["id2label"] == {"0": "no_purchase", "1": "purchase"}
    # The card's reliability diagram exists, and its usage snippets name this folder by absolute path.
    card = (output / "README.md").read_text()
    assert (output / "test_reliability.png").read_bytes()[:4] == b"\x89PNG" and "(test_reliability.png)" in card
    assert f'Classifier.from_pretrained("{output.resolve()}")' in card and "[CLS]" not in card


def test_cli_prepare_and_evaluate(prepared, pretrained, tmp_path):
    result = run([sys.executable, "-m", "seqbert.cli", "evaluate", str(pretrained), "--data-dir", str(prepared)])
    output = json.loads(result.stdout)
    assert output["metrics"]["seqbert"] == pytest.approx(results(pretrained)["metrics"]["test"]["seqbert"], abs=1e-9)
    # Item-chunked ranking (for huge catalogs) gives the same metrics.
    chunked = run([sys.executable, "-m", "seqbert.cli", "evaluate", str(pretrained), "--data-dir", str(prepared),
                   "--item-chunk-size", "97"])  # fmt: skip
    assert json.loads(chunked.stdout)["metrics"]["seqbert"] == pytest.approx(output["metrics"]["seqbert"], abs=1e-9)
