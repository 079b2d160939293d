"""Exporting a trained model: the next-item scorer to ONNX, the item embeddings to Parquet / NumPy.

ONNX: the encoder plus the next-item head, ``(input_ids, behavior_ids, time_ids, attention_mask)`` →
``scores`` `(batch, num_items)`, dynamic batch and sequence length, inputs as the tokenizer makes them
(int64, left-padded, ``[MASK]`` appended). Requires the ``export`` extra (``pip install 'seqbert[export]'``:
onnx, onnxruntime). The default exporter is torch's TorchScript-based one (``dynamo=False``): it needs
nothing beyond onnx and exports in about a second; ``exporter="dynamo"`` uses the newer torch.export
path, which also needs ``onnxscript``.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .inference import MODEL_INPUT_NAMES, Recommender

logger = logging.getLogger(__name__)

OUTPUT_NAME = "scores"
DEFAULT_OPSET = 17


class NextItemScorer(nn.Module):
    """``SeqBertForMaskedBehaviorModeling.next_item_scores`` as a module's forward (what is exported)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, behavior_ids, time_ids, attention_mask):
        return self.model.next_item_scores(input_ids, behavior_ids, time_ids, attention_mask)


def _example_inputs(recommender: Recommender) -> tuple[torch.Tensor, ...]:
    """Two users of different lengths (so padding is exercised) over real catalog items."""
    items = recommender.items
    event_type = recommender.tokenizer.event_types[0]
    users = [
        [{"item_id": items[i % len(items)], "event_type": event_type, "timestamp": 60 * i} for i in range(length)]
        for length in (2, 5)
    ]
    inputs = recommender.encode(users).inputs
    return tuple(inputs[name].cpu() for name in MODEL_INPUT_NAMES)


def export_onnx(
    folder: str | Path,
    output: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    exporter: str = "legacy",
    check: bool = True,
    atol: float = 1e-4,
) -> Path:
    """Export the next-item scorer of a masked-behavior folder to ``output`` (an ``.onnx`` file).

    Args:
        exporter: ``"legacy"`` (TorchScript-based, ``torch.onnx.export(dynamo=False)``) or ``"dynamo"``.
        check: run the exported graph with ONNX Runtime on a batch of a *different* shape than the
            export example and compare with PyTorch (raises if the max difference exceeds ``atol``).
    """
    if exporter not in ("legacy", "dynamo"):
        raise ValueError(f"exporter must be 'legacy' or 'dynamo', got {exporter!r}.")
    try:
        import onnx  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "ONNX export needs the `export` extra: pip install 'seqbert[export]' (onnx, onnxruntime)."
        ) from error
    recommender = Recommender.from_pretrained(str(folder), device="cpu")
    scorer = NextItemScorer(recommender.model).eval()
    example = _example_inputs(recommender)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    names = list(MODEL_INPUT_NAMES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript tracer / deprecation chatter
        if exporter == "legacy":
            torch.onnx.export(
                scorer,
                example,
                str(output),
                dynamo=False,
                opset_version=opset,
                input_names=names,
                output_names=[OUTPUT_NAME],
                do_constant_folding=True,
                dynamic_axes={**{name: {0: "batch", 1: "sequence"} for name in names}, OUTPUT_NAME: {0: "batch"}},
            )
        else:
            batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
            torch.onnx.export(
                scorer,
                example,
                str(output),
                dynamo=True,
                opset_version=opset,
                input_names=names,
                output_names=[OUTPUT_NAME],
                dynamic_shapes={name: {0: batch, 1: sequence} for name in names},
                external_data=False,
            )
    scorer.eval()  # the exporter restores the training flag of the wrapper: keep everything in eval mode
    recommender.model.eval()
    _write_metadata(output, recommender)
    if check:
        difference = check_onnx(output, recommender)
        logger.info("ONNX Runtime matches PyTorch on a new batch shape (max |diff| %.2e).", difference)
        if difference > atol:
            raise RuntimeError(f"The exported model differs from PyTorch by {difference:.3e} > {atol}.")
    return output


def _write_metadata(output: Path, recommender: Recommender) -> None:
    """Record in the ONNX file what its inputs and score columns mean."""
    import onnx

    model = onnx.load(str(output))
    metadata = {
        "producer": "seqbert",
        "inputs": "input_ids, behavior_ids, time_ids, attention_mask: int64 (batch, sequence), left-padded, [MASK] appended",
        "output": f"{OUTPUT_NAME}: float32 (batch, num_items); column j is token id j + num_special_tokens",
        "num_special_tokens": str(recommender.tokenizer.num_special_tokens),
        "num_items": str(recommender.num_items),
    }
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(output))


class OnnxNextItemModel:
    """An exported scorer behind the ``next_item_scores`` interface, so :class:`Recommender` can serve it.

    ``Recommender(OnnxNextItemModel("model.onnx", num_items=...), tokenizer)`` ranks exactly like the
    PyTorch model (same :func:`seqbert.inference.score_next_items` path); it has no hidden states, so
    ``embed_users`` / ``item_embeddings`` need the PyTorch model.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_position_embeddings: int | None = None,
        session_options: Any = None,
        providers=None,
    ):
        try:
            import onnxruntime as ort
        except ImportError as error:
            raise ImportError("Running ONNX models needs onnxruntime: pip install 'seqbert[export]'.") from error
        self.session = ort.InferenceSession(
            str(path), sess_options=session_options, providers=providers or ["CPUExecutionProvider"]
        )
        meta = self.session.get_modelmeta().custom_metadata_map
        self.config = _OnnxConfig(
            num_items=int(meta["num_items"]) if "num_items" in meta else None,
            max_position_embeddings=max_position_embeddings,
        )
        self.device = torch.device("cpu")

    def next_item_scores(self, input_ids, behavior_ids, time_ids, attention_mask) -> torch.Tensor:
        feed = {
            name: tensor.detach().cpu().numpy().astype(np.int64, copy=False)
            for name, tensor in zip(MODEL_INPUT_NAMES, (input_ids, behavior_ids, time_ids, attention_mask))
        }
        return torch.from_numpy(self.session.run([OUTPUT_NAME], feed)[0])


class _OnnxConfig:
    def __init__(self, num_items: int | None, max_position_embeddings: int | None):
        self.num_items = num_items
        self.max_position_embeddings = max_position_embeddings


def onnx_recommender(onnx_path: str | Path, folder: str | Path, **kwargs: Any) -> Recommender:
    """A :class:`Recommender` scoring with ONNX Runtime; tokenizer (and length limit) from the model ``folder``."""
    from .tokenization_seqbert import BehaviorTokenizer

    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    session_options = kwargs.pop("session_options", None)
    model = OnnxNextItemModel(
        onnx_path, max_position_embeddings=config.get("max_position_embeddings"), session_options=session_options
    )
    return Recommender(model, BehaviorTokenizer.from_pretrained(str(folder)), **kwargs)


def check_onnx(output: str | Path, recommender: Recommender) -> float:
    """Max |ONNX Runtime − PyTorch| over a batch of three users with lengths unlike the export example."""
    items, event_types = recommender.items, recommender.tokenizer.event_types
    users = [
        [
            {
                "item_id": items[(7 * u + i) % len(items)],
                "event_type": event_types[(u + i) % len(event_types)],
                "timestamp": 1_000 + 97 * i * (u + 1),
            }
            for i in range(length)
        ]
        for u, length in enumerate((1, 9, 4))
    ]
    inputs = recommender.encode(users).inputs
    expected = recommender.model.next_item_scores(*(inputs[name] for name in MODEL_INPUT_NAMES)).float().numpy()
    got = OnnxNextItemModel(output).next_item_scores(*(inputs[name] for name in MODEL_INPUT_NAMES)).numpy()
    return float(np.abs(got - expected).max())


# ---------------------------------------------------------------------------------------------------------------
# Item embeddings
# ---------------------------------------------------------------------------------------------------------------


def export_item_embeddings(folder: str | Path, output: str | Path) -> Path:
    """Write the catalog's item embeddings: ``.parquet`` (columns ``item_id``: string, ``vector``: list<float32>)
    or ``.npy`` (the `(num_items, hidden_size)` float32 matrix, rows in vocabulary order, with the external ids
    in ``<output stem>.ids.json`` next to it)."""
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in (".parquet", ".npy"):
        raise ValueError(f"--output must end in .parquet or .npy, got {output.name!r}.")
    recommender = Recommender.from_pretrained(str(folder), device="cpu")
    ids, vectors = recommender.item_embeddings()
    output.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        np.save(output, vectors.astype(np.float32))
        ids_path = output.with_suffix(".ids.json")
        ids_path.write_text(json.dumps(ids, ensure_ascii=False), encoding="utf-8")
        logger.info("Wrote %d item vectors to %s and their ids to %s.", len(ids), output, ids_path)
        return output
    import pyarrow as pa
    import pyarrow.parquet as pq

    dimension = vectors.shape[1]
    flat = pa.array(vectors.astype(np.float32).reshape(-1), type=pa.float32())
    table = pa.table(
        {
            "item_id": pa.array(ids, type=pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(flat, dimension),
        }
    )
    table = table.replace_schema_metadata({"seqbert": json.dumps({"source": str(folder), "dimension": dimension})})
    pq.write_table(table, output)
    logger.info("Wrote %d item vectors (dimension %d) to %s.", len(ids), dimension, output)
    return output


__all__ = [
    "NextItemScorer",
    "OnnxNextItemModel",
    "check_onnx",
    "export_item_embeddings",
    "export_onnx",
    "onnx_recommender",
]
