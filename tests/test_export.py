"""Tests for `seqbert export onnx|embeddings` (seqbert.export) and `seqbert push` (mocked Hub, no network)."""

from __future__ import annotations

import json
import logging
from unittest import mock

import numpy as np
import pyarrow.parquet as pq
import pytest

from seqbert import cli, hub
from seqbert.inference import MODEL_INPUT_NAMES, Recommender

from .test_inference import EVENTS, ITEMS, build_model_folders, random_users


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return build_model_folders(tmp_path_factory.mktemp("models"), seed=1)


@pytest.fixture(scope="module")
def recommender(folders):
    return Recommender.from_pretrained(str(folders[0]))


# ---------------------------------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_file(folders, tmp_path_factory):
    pytest.importorskip("onnx", reason="ONNX export needs the `export` extra (pip install 'seqbert[export]')")
    pytest.importorskip("onnxruntime", reason="checking the export needs onnxruntime (pip install 'seqbert[export]')")
    output = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert cli.main(["export", "onnx", str(folders[0]), "--output", str(output)]) == 0
    return output


def test_onnx_matches_pytorch_on_dynamic_shapes(onnx_file, recommender):
    from seqbert.export import OnnxNextItemModel

    onnx_model = OnnxNextItemModel(onnx_file)
    assert [i.name for i in onnx_model.session.get_inputs()] == list(MODEL_INPUT_NAMES)
    assert onnx_model.config.num_items == len(ITEMS)
    # Batch sizes 1..17 and lengths 1..16 (the model's maximum), all unlike the export example (2 users).
    for n, seed, max_len in ((1, 0, 1), (1, 1, 15), (3, 2, 6), (17, 3, 15)):
        inputs = recommender.encode(
            random_users(n, seed=seed, min_len=1 if max_len == 1 else 0, max_len=max_len)
        ).inputs
        args = [inputs[name] for name in MODEL_INPUT_NAMES]
        expected = recommender.model.next_item_scores(*args).numpy()
        got = onnx_model.next_item_scores(*args).numpy()
        assert got.shape == expected.shape == (n, len(ITEMS))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_onnx_recommender_ranks_like_pytorch(onnx_file, folders, recommender):
    from seqbert.export import onnx_recommender

    served = onnx_recommender(onnx_file, folders[0])
    users = random_users(5, seed=4)
    for a, b in zip(
        served.recommend(users, k=5, exclude_seen=True), recommender.recommend(users, k=5, exclude_seen=True)
    ):
        assert a.item_ids == b.item_ids and a.unknown_events == b.unknown_events
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    with pytest.raises(TypeError, match="PyTorch model"):
        served.embed_users(EVENTS)


def test_export_onnx_rejects_bad_exporter(folders, tmp_path):
    from seqbert.export import export_onnx

    with pytest.raises(ValueError, match="exporter"):
        export_onnx(folders[0], tmp_path / "x.onnx", exporter="magic")


# ---------------------------------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------------------------------


def test_export_embeddings_parquet_and_npy(folders, recommender, tmp_path):
    ids, vectors = recommender.item_embeddings()
    parquet = tmp_path / "items.parquet"
    assert cli.main(["export", "embeddings", str(folders[0]), "--output", str(parquet)]) == 0
    table = pq.read_table(parquet)
    assert table.column_names == ["item_id", "vector"]
    assert table.column("item_id").to_pylist() == ITEMS  # exact external ids, vocabulary order
    np.testing.assert_array_equal(np.array(table.column("vector").to_pylist(), dtype=np.float32), vectors)

    npy = tmp_path / "items.npy"
    assert cli.main(["export", "embeddings", str(folders[0]), "--output", str(npy)]) == 0
    np.testing.assert_array_equal(np.load(npy), vectors)
    assert json.loads((tmp_path / "items.ids.json").read_text(encoding="utf-8")) == ids

    assert cli.main(["export", "embeddings", str(folders[0]), "--output", str(tmp_path / "items.csv")]) == 2


# ---------------------------------------------------------------------------------------------------------------
# seqbert push (the Hub is unreachable: everything up to the network call, with HfApi mocked)
# ---------------------------------------------------------------------------------------------------------------

SECRET = "hf_test_SECRET_token_value_123"


@pytest.fixture
def publishable(folders, tmp_path):
    folder = tmp_path / "publish"
    import shutil

    shutil.copytree(folders[0], folder)
    hub.render_model_card(folder, kind="pretrained", context={"model_name": "tiny", "dataset_name": "synthetic"})
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "state.pt").write_bytes(b"not uploaded")
    return folder


def test_push_uploads_with_token_from_env_and_never_prints_it(publishable, monkeypatch, capsys, caplog):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    caplog.set_level(logging.DEBUG)
    with mock.patch.object(hub, "HfApi") as api_class:
        api = api_class.return_value
        api.create_repo.return_value = "https://huggingface.co/someone/tiny"
        code = cli.main(["push", str(publishable), "--repo-id", "someone/tiny", "--private"])
    assert code == 0
    api_class.assert_called_once_with(token=SECRET)
    api.create_repo.assert_called_once_with("someone/tiny", exist_ok=True, private=True, repo_type="model")
    upload = api.upload_folder.call_args.kwargs
    assert upload["repo_id"] == "someone/tiny" and upload["folder_path"] == str(publishable)
    assert "checkpoints/*" in upload["ignore_patterns"]
    captured = capsys.readouterr()
    assert "https://huggingface.co/someone/tiny" in captured.out
    assert SECRET not in captured.out + captured.err + caplog.text


def test_push_without_token_or_with_an_invalid_folder_fails_before_the_network(publishable, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with mock.patch.object(hub, "HfApi") as api_class:
        assert cli.main(["push", str(publishable), "--repo-id", "someone/tiny"]) == 2
        assert "HF_TOKEN" in capsys.readouterr().err
        monkeypatch.setenv("HF_TOKEN", SECRET)
        (publishable / "README.md").unlink()
        assert cli.main(["push", str(publishable), "--repo-id", "someone/tiny"]) == 2
        err = capsys.readouterr().err
        assert "README.md" in err and SECRET not in err
    api_class.assert_not_called()


def test_push_has_no_token_option():
    with pytest.raises(SystemExit):
        cli.main(["push", "folder", "--repo-id", "a/b", "--token", "x"])
