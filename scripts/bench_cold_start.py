"""Cold start: how next-item quality degrades when a user's history holds items never seen in training.

For each fraction p, p of every test history's events get an item id that is not in the training
vocabulary (so they encode as [UNK], or as a hash bucket with `unseen_items="hash"`), chosen with
a fixed seed; targets are unchanged. Every variant is scored by the same full-ranking evaluator as
training, and the Markov baseline is shown for reference.

Example (after `seqbert demo`):
    python scripts/bench_cold_start.py --model runs/demo/seqbert-pretrained --data runs/demo/prepared
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from torch.utils.data import DataLoader

from seqbert import SeqBertForMaskedBehaviorModeling
from seqbert.baselines import fit_next_item_baselines
from seqbert.collators import DataCollatorWithLeftPadding
from seqbert.evaluation import evaluate_scorer, model_scorer
from seqbert.prepared import PreparedData, encode_for_next_item


def with_unseen_items(rows: dict[str, list], fraction: float, seed: int) -> dict[str, list]:
    """A copy of the history columns with ``fraction`` of the items replaced by unseen ids."""
    rng = np.random.default_rng(seed)
    items = [[f"__unseen_{row}_{position}__" if rng.random() < fraction else item for position, item in enumerate(sequence)]
             for row, sequence in enumerate(rows["item_ids"])]
    return {**rows, "item_ids": items}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Saved masked-behavior model folder.")
    parser.add_argument("--data", required=True, help="Prepared-data folder the model was trained on.")
    parser.add_argument("--fractions", default="0,0.1,0.25,0.5", help="Comma-separated shares of unseen history items.")
    parser.add_argument("--split", default="test", choices=["validation", "test"], help="Split to evaluate.")
    parser.add_argument("--seed", type=int, default=0, help="Seed for choosing the replaced events.")
    args = parser.parse_args()

    data = PreparedData.load(args.data)
    model = SeqBertForMaskedBehaviorModeling.from_pretrained(args.model).eval()
    tokenizer = data.tokenizer
    max_length = model.config.max_position_embeddings
    scorers = {"seqbert": model_scorer(model), "markov": fit_next_item_baselines(data.splits["train"], tokenizer)["markov"]}
    split = data.splits[args.split]
    for fraction in (float(value) for value in args.fractions.split(",")):
        rows = split.from_dict(with_unseen_items(split.to_dict(), fraction, args.seed), features=split.features)
        encoded = encode_for_next_item(rows, tokenizer, max_length)
        unknown = sum(sum(1 for token in ids if token == tokenizer.unk_token_id) for ids in encoded["input_ids"])
        loader = DataLoader(encoded, batch_size=256, collate_fn=DataCollatorWithLeftPadding())
        for name, scorer in scorers.items():
            metrics = evaluate_scorer(scorer, loader, num_special_tokens=tokenizer.num_special_tokens)
            print(json.dumps({"unseen_fraction": fraction, "model": name, "unknown_tokens": unknown,
                              "ndcg@10": round(metrics["ndcg@10"], 4), "hr@10": round(metrics["hr@10"], 4),
                              "users": metrics["count"]}))


if __name__ == "__main__":
    main()
