"""Saved SeqBERT folders carry their code: they load and give identical outputs without seqbert installed.

``import seqbert`` marks its classes with ``register_for_auto_class``, so ``save_pretrained`` copies
``configuration_seqbert.py``, ``modeling_seqbert.py`` and ``tokenization_seqbert.py`` into the folder and
writes an ``auto_map``. The main test proves that this is enough on a machine *without* seqbert: it runs
the Auto classes with ``trust_remote_code=True`` in a subprocess of a fresh virtual environment that has
torch and transformers (and their dependencies) but no seqbert (see ``tests/venv_utils.py``), offline,
with a fresh dynamic-modules cache, and compares encodings, item-id decoding and model outputs with
those of the in-process models. A second test checks the in-process Auto classes (seqbert imported, no
remote code) on the same folders.
"""

from __future__ import annotations

import inspect
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer

import seqbert

from .venv_utils import clean_env, create_venv_without, source_site_dirs

REPO_ROOT = Path(__file__).resolve().parents[1]
ATOL = 1e-5

# Awkward external ids: a space, a non-ASCII character, leading zeros, a slash, a digit-only id.
ITEMS = ["sku 1", "é", "007", "a/b", "7", "x"]
EVENT_TYPES = ("view", "cart", "purchase")

# Column form: one short and one longer history (so left padding is exercised), an unknown item, a
# repeated item, time gaps from 1 s to days (distinct timestamps: the dict form sorts by time).
COLUMNS = {
    "item_ids": [["007", "sku 1"], ["é", "a/b", "never-seen", "007", "7", "x", "é"]],
    "event_types": [["view", "cart"], ["view", "view", "cart", "view", "purchase", "view", "cart"]],
    "timestamps": [[1_000, 1_060], [0, 1, 5, 3_600, 3_601, 90_000, 400_000]],
}
# Raw event dicts (one list per user), deliberately out of time order: the tokenizer sorts them.
EVENT_DICTS = [
    [{"item_id": "sku 1", "event_type": "cart", "timestamp": 1_060}, {"item_id": "007", "event_type": "view", "timestamp": 1_000}],
    [
        {"item_id": item, "event_type": etype, "timestamp": ts}
        for item, etype, ts in zip(COLUMNS["item_ids"][1], COLUMNS["event_types"][1], COLUMNS["timestamps"][1])
    ][::-1],
]
ID2LABEL = {0: "browse", 1: "cart", 2: "buy"}


# ---------------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A masked-behavior folder and a classifier folder (tiny, random weights), each with its tokenizer."""
    root = tmp_path_factory.mktemp("saved")
    tokenizer = seqbert.BehaviorTokenizer(items=ITEMS, event_types=EVENT_TYPES, num_gap_buckets=12, max_length=16)
    sizes = dict(
        vocab_size=tokenizer.vocab_size,
        num_special_tokens=tokenizer.num_special_tokens,
        num_behaviors=tokenizer.num_behaviors,
        num_time_buckets=tokenizer.num_time_buckets,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
    )
    torch.manual_seed(0)
    mlm = seqbert.SeqBertForMaskedBehaviorModeling(seqbert.SeqBertConfig(**sizes)).eval()
    classifier = seqbert.SeqBertForSequenceClassification(
        seqbert.SeqBertConfig(**sizes, num_labels=3, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()})
    ).eval()
    with torch.no_grad():  # non-zero biases everywhere, so a bias that fails to load cannot go unnoticed
        for model in (mlm, classifier):
            for name, param in model.named_parameters():
                if name.endswith("bias"):
                    param.normal_(0.0, 0.1)
    folders = {"mlm": root / "mlm", "classifier": root / "classifier"}
    mlm.save_pretrained(folders["mlm"])
    classifier.save_pretrained(folders["classifier"])
    for folder in folders.values():
        tokenizer.save_pretrained(folder)
    return {"tokenizer": tokenizer, "mlm": mlm, "classifier": classifier, "folders": folders}


@pytest.fixture(scope="module")
def expected(saved):
    """Encodings, decodings and outputs computed in-process by the original (never saved/loaded) objects."""
    return _compute(saved["tokenizer"], saved["mlm"], saved["mlm"].seqbert, saved["classifier"])


@pytest.fixture(scope="module")
def seqbert_free_python(tmp_path_factory):
    """Python of a fresh venv (built once per module) with torch and transformers but not seqbert."""
    env_dir = tmp_path_factory.mktemp("venv-without-seqbert")
    try:
        return create_venv_without(env_dir, hidden=("seqbert",), required=("torch", "transformers", "numpy", "pyarrow"))
    except OSError as error:  # e.g. Windows without symlink privileges
        pytest.skip(f"cannot build a symlinked venv here: {error}")


# ---------------------------------------------------------------------------------------------------------------
# Shared computation: run in-process here, and its source is embedded verbatim in the subprocess script
# ---------------------------------------------------------------------------------------------------------------


def _compute(tokenizer, mlm, base, classifier):
    """Everything compared across environments: JSON-able ``meta`` and float ``arrays``."""
    import torch

    columns_enc = tokenizer(COLUMNS, append_mask=True, return_tensors="pt")
    dicts_enc = tokenizer(EVENT_DICTS, append_mask=True, return_tensors="pt")
    ragged = tokenizer(COLUMNS)
    with torch.no_grad():
        mlm_out = mlm(**columns_enc)
        base_out = base(**columns_enc, output_hidden_states=True)
        clf_out = classifier(**dicts_enc)
        next_scores = mlm.next_item_scores(**columns_enc)
    top = next_scores.topk(3, dim=-1).indices + tokenizer.num_special_tokens
    vocab_ids = list(range(tokenizer.vocab_size + 2))  # two out-of-range ids too
    meta = {
        "columns_encoding": {k: v.tolist() for k, v in columns_enc.items()},
        "dicts_encoding": {k: v.tolist() for k, v in dicts_enc.items()},
        "ragged_encoding": {k: list(v) for k, v in ragged.items()},
        "items": tokenizer.items,
        "event_types": list(tokenizer.event_types),
        "decoded_vocab": tokenizer.decode_items(vocab_ids),
        "tokens": tokenizer.convert_ids_to_tokens(vocab_ids[:-2]),
        "token_ids": tokenizer.convert_tokens_to_ids(tokenizer.items + ["[MASK]", "never-seen"]),
        "top3_next_items": [tokenizer.decode_items(row) for row in top.tolist()],
        "id2label": {str(k): v for k, v in classifier.config.id2label.items()},
        "num_items": mlm.config.num_items,
        "training": [mlm.training, base.training, classifier.training],
    }
    arrays = {
        "mlm_logits": mlm_out.logits,
        "mlm_behavior_logits": mlm_out.behavior_logits,
        "base_last_hidden_state": base_out.last_hidden_state,
        "base_first_hidden_state": base_out.hidden_states[0],
        "next_item_scores": next_scores,
        "classifier_logits": clf_out.logits,
    }
    return {"meta": meta, "arrays": {k: v.detach().cpu().numpy() for k, v in arrays.items()}}


SUBPROCESS_SCRIPT = r'''
import importlib.util
import json
import os
import sys

# Must come first: the whole point is that seqbert is NOT importable here.
try:
    import seqbert  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit(f"LEAK: seqbert is importable in the fresh venv from {seqbert.__file__}")
assert importlib.util.find_spec("seqbert") is None

spec = json.loads(open(sys.argv[1], encoding="utf-8").read())
assert os.path.realpath(spec["repo_root"]) not in {os.path.realpath(p) for p in sys.path if p}, sys.path

import numpy as np
import transformers
from transformers import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer
from transformers.dynamic_module_utils import HF_MODULES_CACHE

COLUMNS = spec["columns"]
EVENT_DICTS = spec["event_dicts"]
mlm_dir, clf_dir = spec["mlm_dir"], spec["classifier_dir"]

tokenizer = AutoTokenizer.from_pretrained(mlm_dir, trust_remote_code=True)
clf_tokenizer = AutoTokenizer.from_pretrained(clf_dir, trust_remote_code=True)
mlm = AutoModelForMaskedLM.from_pretrained(mlm_dir, trust_remote_code=True)
base = AutoModel.from_pretrained(mlm_dir, trust_remote_code=True)
classifier = AutoModelForSequenceClassification.from_pretrained(clf_dir, trust_remote_code=True)

COMPUTE_SOURCE
result = _compute(tokenizer, mlm, base, classifier)
result["meta"]["classifier_tokenizer_items"] = clf_tokenizer.items
result["meta"]["classes"] = {
    name: type(obj).__module__ + "." + type(obj).__qualname__
    for name, obj in {"tokenizer": tokenizer, "clf_tokenizer": clf_tokenizer, "mlm": mlm, "base": base,
                      "classifier": classifier, "config": mlm.config}.items()
}
result["meta"]["hf_modules_cache"] = HF_MODULES_CACHE
result["meta"]["transformers_version"] = transformers.__version__
result["meta"]["seqbert_in_sys_modules"] = sorted(m for m in sys.modules if m.split(".")[0] == "seqbert")

out = spec["out_dir"]
with open(os.path.join(out, "meta.json"), "w", encoding="utf-8") as handle:
    json.dump(result["meta"], handle, ensure_ascii=False)
np.savez(os.path.join(out, "arrays.npz"), **result["arrays"])
print("REMOTE-CODE-OK")
'''.replace("COMPUTE_SOURCE", inspect.getsource(_compute))


def _assert_same(actual: dict, expected: dict) -> None:
    assert {k: actual["meta"][k] for k in expected["meta"]} == expected["meta"]
    assert actual["arrays"].keys() == expected["arrays"].keys()
    for name, want in expected["arrays"].items():
        got = actual["arrays"][name]
        assert got.shape == want.shape and got.dtype == want.dtype, name
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL, err_msg=name)


# ---------------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------------


def test_saved_folders_carry_their_code(saved):
    for folder in saved["folders"].values():
        files = {path.name for path in folder.iterdir()}
        assert {"configuration_seqbert.py", "modeling_seqbert.py", "tokenization_seqbert.py"} <= files
        assert {"config.json", "model.safetensors", "tokenizer_config.json", "item_vocab.json"} <= files
        auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
        assert auto_map == {
            "AutoConfig": "configuration_seqbert.SeqBertConfig",
            "AutoModel": "modeling_seqbert.SeqBertModel",
            "AutoModelForMaskedLM": "modeling_seqbert.SeqBertForMaskedBehaviorModeling",
            "AutoModelForSequenceClassification": "modeling_seqbert.SeqBertForSequenceClassification",
        }
        tokenizer_map = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))["auto_map"]
        # transformers writes [slow class, fast class]; there is no fast BehaviorTokenizer.
        assert tokenizer_map["AutoTokenizer"][0] == "tokenization_seqbert.BehaviorTokenizer"
        assert json.loads((folder / "item_vocab.json").read_text(encoding="utf-8")) == ITEMS
        for code in ("configuration_seqbert.py", "modeling_seqbert.py", "tokenization_seqbert.py"):
            assert "import seqbert" not in (folder / code).read_text(encoding="utf-8")
            assert "from seqbert" not in (folder / code).read_text(encoding="utf-8").replace(">>> from seqbert", "")


def test_venv_helper_hides_seqbert_entries(seqbert_free_python):
    from .venv_utils import is_hidden_entry

    for name in (
        "seqbert",
        "seqbert-0.1.0.dist-info",
        "seqbert.egg-info",
        "seqbert.egg-link",
        "__editable__.seqbert-0.1.0.pth",
        "__editable___seqbert_0_1_0_finder.py",
        "SeqBERT-0.1.0.dist-info",
        "distutils-precedence.pth",
    ):
        assert is_hidden_entry(name, ["seqbert"]), name
    for name in ("torch", "transformers-5.0.0.dist-info", "numpy", "sequence_utils.py"):
        assert not is_hidden_entry(name, ["seqbert"]), name
    linked = [p.name for d in seqbert_free_python.parents[1].glob("linked-site-*") for p in d.iterdir()]
    assert "transformers" in linked and "torch" in linked
    assert not [name for name in linked if "seqbert" in name.lower() or name.endswith(".pth")]
    assert source_site_dirs()  # the outer interpreter's site-packages were found


@pytest.mark.slow
def test_remote_code_loads_and_matches_without_seqbert_installed(saved, expected, seqbert_free_python, tmp_path):
    work = tmp_path / "cwd"  # not the repository: its seqbert/ folder must not be importable via cwd
    out_dir, hf_home = tmp_path / "out", tmp_path / "hf_home"
    for path in (work, out_dir, hf_home):
        path.mkdir()
    modules_cache = hf_home / "modules"
    script = tmp_path / "load_without_seqbert.py"
    script.write_text(SUBPROCESS_SCRIPT, encoding="utf-8")
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "repo_root": str(REPO_ROOT),
                "mlm_dir": str(saved["folders"]["mlm"]),
                "classifier_dir": str(saved["folders"]["classifier"]),
                "out_dir": str(out_dir),
                "columns": COLUMNS,
                "event_dicts": EVENT_DICTS,
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    env = clean_env(
        HF_HOME=str(hf_home),
        HF_MODULES_CACHE=str(modules_cache),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        XDG_CACHE_HOME=str(tmp_path / "xdg_cache"),
    )
    # -I: isolated mode (ignores PYTHON* variables and the user site, and puts neither cwd nor the script's folder
    # on sys.path); the venv's own site-packages, and so our linking .pth file, are still processed.
    proc = subprocess.run(
        [str(seqbert_free_python), "-I", str(script), str(spec)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
    )
    report = f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0 and "REMOTE-CODE-OK" in proc.stdout, report

    meta = json.loads((out_dir / "meta.json").read_text(encoding="utf-8"))
    with np.load(out_dir / "arrays.npz") as data:
        arrays = {name: data[name] for name in data.files}

    # The classes really came from the folders' code, via a fresh dynamic-modules cache in tmp.
    for name, qualified in meta["classes"].items():
        assert qualified.startswith("transformers_modules."), (name, qualified)
    assert meta["classes"]["mlm"].endswith(".modeling_seqbert.SeqBertForMaskedBehaviorModeling")
    assert meta["classes"]["base"].endswith(".modeling_seqbert.SeqBertModel")
    assert meta["classes"]["classifier"].endswith(".modeling_seqbert.SeqBertForSequenceClassification")
    assert meta["classes"]["tokenizer"].endswith(".tokenization_seqbert.BehaviorTokenizer")
    assert meta["classes"]["config"].endswith(".configuration_seqbert.SeqBertConfig")
    assert meta["seqbert_in_sys_modules"] == []
    assert Path(meta["hf_modules_cache"]) == modules_cache
    assert (modules_cache / "transformers_modules").is_dir()
    assert meta["classifier_tokenizer_items"] == ITEMS

    # Same encodings (both input forms), same decoding of external ids, same outputs.
    assert meta["columns_encoding"] == meta["dicts_encoding"]
    assert meta["decoded_vocab"][5:-2] == ITEMS and meta["training"] == [False, False, False]
    _assert_same({"meta": meta, "arrays": arrays}, expected)


def test_in_process_auto_classes_load_without_remote_code(saved, expected):
    """With seqbert imported, the Auto classes use the registered classes, not the folder's code."""
    folders = saved["folders"]
    tokenizer = AutoTokenizer.from_pretrained(folders["mlm"])
    mlm = AutoModelForMaskedLM.from_pretrained(folders["mlm"])
    base = AutoModel.from_pretrained(folders["mlm"])
    classifier = AutoModelForSequenceClassification.from_pretrained(folders["classifier"])
    assert type(tokenizer) is seqbert.BehaviorTokenizer
    assert type(mlm) is seqbert.SeqBertForMaskedBehaviorModeling
    assert type(base) is seqbert.SeqBertModel
    assert type(classifier) is seqbert.SeqBertForSequenceClassification
    assert type(mlm.config) is seqbert.SeqBertConfig
    assert mlm.head.decoder.weight is mlm.seqbert.embeddings.item_embeddings.weight  # tying survives loading
    assert AutoTokenizer.from_pretrained(folders["classifier"]).items == ITEMS
    _assert_same(_compute(tokenizer, mlm, base, classifier), expected)
