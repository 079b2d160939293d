"""Train one RecBole sequential model to convergence and rank its test users the way seqbert's evaluator does.

Run by the Python of a separate RecBole venv (RecBole is never a seqbert dependency), from
``scripts/bench_nextitem.py`` (models ``recbole-sasrec`` / ``recbole-bert4rec``)::

    python recbole_nextitem_runner.py SPEC.json

``SPEC.json`` holds ``config_file``, ``model`` (``SASRec`` | ``BERT4Rec``), ``data_path``, ``dataset_name``,
``catalog`` (the item ids of seqbert's training vocabulary), ``max_epochs``, ``patience``,
``time_budget_seconds``, ``threads``, ``work_dir`` (RecBole writes its logs into the working directory) and
``output`` (the result JSON to write).

Training is RecBole's own epoch (``Trainer._train_epoch``: every prefix of every training sequence, its
loss, optimizer and batching). Validation after each epoch and the final test use seqbert's protocol,
not RecBole's: full ranking over seqbert's catalog (the items of the training split), **history kept**,
ties counted against the target, a target outside the catalog a miss. Early stopping keeps the epoch with
the best validation NDCG@10 and stops after ``patience`` epochs without improvement (or at the time
budget). RecBole's own protocol (history items removed) is written too, as a labelled extra.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time

import numpy as np
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed


def catalog_columns(dataset, catalog: list[str]) -> torch.Tensor:
    """RecBole's internal ids of seqbert's catalog items (every catalog item occurs in the .inter file)."""
    field = dataset.iid_field
    return torch.as_tensor([int(dataset.token2id(field, item)) for item in catalog], dtype=torch.long)


@torch.no_grad()
def rank_users(model, eval_data, columns: torch.Tensor, num_items: int) -> dict[str, np.ndarray]:
    """1-based pessimistic ranks of each user's target among the catalog items: history kept and removed."""
    model.eval()
    position = torch.full((int(eval_data._dataset.item_num),), -1, dtype=torch.long)
    position[columns] = torch.arange(len(columns))
    kept, removed = [], []
    for interaction, _history_index, positive_u, positive_i in eval_data:
        # Sequential full-sort batches hold one row per user (positive_u = 0..n-1) and no history index:
        # RecBole ranks sequential models with history kept. The removed variant masks the input sequence.
        scores = model.full_sort_predict(interaction.to(model.device)).view(-1, position.numel()).cpu()
        catalog_scores = scores[positive_u.cpu()][:, columns]
        targets = position[positive_i.cpu()]
        history = interaction[model.ITEM_SEQ].cpu()[positive_u.cpu()]
        seen = torch.zeros_like(scores, dtype=torch.bool)
        seen.scatter_(1, history, True)
        seen = seen[:, columns]  # column 0 (padding) is never a catalog item
        in_history = seen.gather(1, targets.clamp(min=0)[:, None]).squeeze(1)
        for masked, out in ((None, kept), (seen, removed)):
            variant = catalog_scores if masked is None else catalog_scores.masked_fill(masked, float("-inf"))
            target_scores = variant.gather(1, targets.clamp(min=0)[:, None])
            ranks = ((variant >= target_scores) | variant.isnan()).sum(1)
            miss = (targets < 0) | target_scores.squeeze(1).isnan()
            if masked is not None:
                miss |= in_history
            out.append(torch.where(miss, torch.full_like(ranks, num_items + 1), ranks))
    model.train()
    return {"history_kept": torch.cat(kept).numpy(), "history_removed": torch.cat(removed).numpy()}


def ndcg_at_10(ranks: np.ndarray) -> float:
    return float(np.where(ranks <= 10, 1.0 / np.log2(ranks + 1.0), 0.0).mean())


def main(spec_path: str) -> None:
    spec = json.loads(open(spec_path).read())
    torch.set_num_threads(int(spec["threads"]))
    os.makedirs(spec["work_dir"], exist_ok=True)
    os.chdir(spec["work_dir"])
    started = time.perf_counter()
    config = Config(
        model=spec["model"], dataset=spec["dataset_name"], config_file_list=[spec["config_file"]],
        config_dict={"data_path": spec["data_path"], "checkpoint_dir": spec["output"] + ".ckpt"},
    )  # fmt: skip
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    # Importing RecBole's models runs recbole/model/sequential_recommender/sine.py, which switches autograd's
    # anomaly detection on for the whole process (~1.5x slower steps on the CPU); no model here needs it.
    torch.autograd.set_detect_anomaly(False)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    columns = catalog_columns(dataset, spec["catalog"])
    num_items = len(columns)
    curve, best, best_state, best_epoch, waited = [], -1.0, None, 0, 0
    train_seconds, stopped_because = 0.0, "max_epochs"
    for epoch in range(int(spec["max_epochs"])):
        t0 = time.perf_counter()
        loss = trainer._train_epoch(train_data, epoch, show_progress=False)
        train_seconds += time.perf_counter() - t0
        ndcg = ndcg_at_10(rank_users(model, valid_data, columns, num_items)["history_kept"])
        loss = float(sum(loss)) if isinstance(loss, tuple) else float(loss)
        curve.append({"epoch": epoch + 1, "step": (epoch + 1) * len(train_data), "train_seconds": round(train_seconds, 2), "loss": loss, "val_ndcg@10": ndcg})
        print(json.dumps(curve[-1]), flush=True)
        if ndcg > best:
            best, best_epoch, waited = ndcg, epoch + 1, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
        if waited >= int(spec["patience"]):
            stopped_because = f"early stopping: no better validation NDCG@10 in {waited} epochs"
            break
        if time.perf_counter() - started > float(spec["time_budget_seconds"]):
            stopped_because = "time budget"
            break
    model.load_state_dict(best_state)
    ranks = rank_users(model, test_data, columns, num_items)
    result = {
        "model": spec["model"], "epochs": len(curve), "best_epoch": best_epoch, "validation_ndcg@10": best,
        "stopped_because": stopped_because, "train_seconds": round(train_seconds, 2),
        "wall_seconds": round(time.perf_counter() - started, 2), "train_examples": len(train_data._dataset),
        "num_parameters": sum(p.numel() for p in model.parameters()), "catalog_items": num_items,
        "test_ranks": ranks["history_kept"].tolist(), "test_ranks_history_removed": ranks["history_removed"].tolist(),
        "curve": curve,
    }  # fmt: skip
    open(spec["output"], "w").write(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
