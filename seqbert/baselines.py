"""Non-neural baselines, fitted on the training split and scored by the same evaluator.

Next item: popularity and Markov scorers on token ids from the same tokenizer, so their catalog is
exactly the model's. Classification (purchase / conversion / click): logistic regression and
gradient-boosted trees on the tabular features of :mod:`seqbert.data.features`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from datasets import Dataset

from .modeling_seqbert import last_token_index
from .tokenization_seqbert import BehaviorTokenizer


def _flatten(sequences: Iterable[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ids and offsets of the sequences."""
    rows = [np.asarray(sequence, dtype=np.int64) for sequence in sequences]
    offsets = np.concatenate([[0], np.cumsum([len(row) for row in rows])]).astype(np.int64)
    return (np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)), offsets


class PopularityRecommender:
    """Scores every item by its number of occurrences in the training sequences (a true count)."""

    def __init__(self, train_input_ids: Iterable[Sequence[int]], *, vocab_size: int, num_special_tokens: int):
        flat, _ = _flatten(train_input_ids)
        counts = np.bincount(flat[flat >= num_special_tokens], minlength=vocab_size)[num_special_tokens:]
        self.counts = torch.as_tensor(counts, dtype=torch.float32)

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.counts.to(batch["input_ids"].device).expand(batch["input_ids"].shape[0], -1)


class MarkovRecommender:
    """First-order item-to-item transitions (``a`` directly followed by ``b`` in training), with
    popularity as a small back-off so unseen transitions still rank by popularity.

    Scores for a batch are built from the transition rows of each sequence's last real item
    (the one before the appended ``[MASK]``), never materialising an items x items matrix.
    """

    def __init__(
        self,
        train_input_ids: Iterable[Sequence[int]],
        *,
        vocab_size: int,
        num_special_tokens: int,
        backoff: float = 1e-3,
    ):
        sequences = list(train_input_ids)
        flat, offsets = _flatten(sequences)
        self.num_special_tokens = num_special_tokens
        num_items = vocab_size - num_special_tokens
        same_row = np.ones(len(flat), dtype=bool)
        row_starts = offsets[1:-1]
        # No transition across sequence boundaries (trailing empty rows start at len(flat): skip them).
        same_row[row_starts[row_starts < len(flat)]] = False
        source, target = flat[:-1], flat[1:]
        valid = same_row[1:] & (source >= num_special_tokens) & (target >= num_special_tokens)
        pairs = (source[valid] - num_special_tokens) * num_items + (target[valid] - num_special_tokens)
        keys, counts = np.unique(pairs, return_counts=True)
        self.sources, self.targets = keys // num_items, keys % num_items
        self.counts = counts.astype(np.float32)
        self.row_starts = np.searchsorted(self.sources, np.arange(num_items + 1))
        popularity = PopularityRecommender(sequences, vocab_size=vocab_size, num_special_tokens=num_special_tokens)
        self.backoff_scores = backoff * popularity.counts / max(float(popularity.counts.max()), 1.0)

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        batch_size = input_ids.shape[0]
        # The event before the appended mask is at last_token_index - 1.
        previous = input_ids[torch.arange(batch_size), (last_token_index(attention_mask) - 1).clamp(min=0)]
        items = (previous - self.num_special_tokens).cpu().numpy()
        scores = self.backoff_scores.expand(batch_size, -1).clone()
        known = items >= 0
        starts = np.where(known, self.row_starts[items.clip(min=0)], 0)
        ends = np.where(known, self.row_starts[items.clip(min=0) + 1], 0)
        lengths = ends - starts
        rows = np.repeat(np.arange(batch_size), lengths)
        flat = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) if lengths.sum() else np.zeros(0, int)
        scores[torch.as_tensor(rows), torch.as_tensor(self.targets[flat])] += torch.as_tensor(self.counts[flat])
        return scores.to(input_ids.device)


class LogisticRegressionBaseline:
    """Standardised features → logistic regression (L2, full-batch L-BFGS): the tabular baseline."""

    def __init__(self, l2: float = 1e-3, max_iter: int = 200):
        self.l2, self.max_iter = l2, max_iter

    def fit(self, features: np.ndarray, labels: np.ndarray) -> LogisticRegressionBaseline:
        x = torch.as_tensor(features, dtype=torch.float64)
        y = torch.as_tensor(labels, dtype=torch.float64)
        self.mean, self.std = x.mean(0), x.std(0).clamp(min=1e-6)
        x = (x - self.mean) / self.std
        self.weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
        prior = y.mean().clamp(1e-6, 1 - 1e-6)
        self.bias = torch.log(prior / (1 - prior)).clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS([self.weight, self.bias], max_iter=self.max_iter, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ self.weight + self.bias, y)
            loss = loss + self.l2 * self.weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        return self

    @torch.no_grad()
    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        x = (torch.as_tensor(features, dtype=torch.float64) - self.mean) / self.std
        return torch.sigmoid(x @ self.weight + self.bias).numpy()


class GradientBoostingBaseline:
    """scikit-learn ``HistGradientBoostingClassifier`` on the same features: practitioners' default.

    Unweighted (so the probabilities keep the data's positive rate), seeded, with early stopping on an
    internal 10 % validation split when there are enough rows. Needs scikit-learn
    (``pip install "seqbert[baselines]"`` or ``pip install scikit-learn``).
    """

    def __init__(
        self,
        *,
        max_iter: int = 300,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 40,
        l2_regularization: float = 1.0,
        seed: int = 0,
    ):
        self.options = {
            "max_iter": max_iter,
            "learning_rate": learning_rate,
            "max_leaf_nodes": max_leaf_nodes,
            "min_samples_leaf": min_samples_leaf,
            "l2_regularization": l2_regularization,
            "random_state": seed,
        }

    def fit(self, features: np.ndarray, labels: np.ndarray) -> GradientBoostingBaseline:
        try:
            from sklearn.ensemble import HistGradientBoostingClassifier
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError("GradientBoostingBaseline needs scikit-learn: pip install 'seqbert[baselines]' (or scikit-learn)") from error
        labels = np.asarray(labels)
        early = len(labels) >= 2_000 and labels.sum() >= 20
        self.model = HistGradientBoostingClassifier(
            early_stopping=early, validation_fraction=0.1 if early else None, n_iter_no_change=20, **self.options
        )
        self.model.fit(np.asarray(features, dtype=np.float64), labels)
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(np.asarray(features, dtype=np.float64))[:, 1]


def fit_next_item_baselines(train_split: Dataset, tokenizer: BehaviorTokenizer) -> dict[str, Callable]:
    """Popularity and Markov scorers fitted on every training event (not only the model's window),
    with the model's own catalog: what every next-item comparison in seqbert reports."""
    from .prepared import encode_for_pretraining

    longest = max((len(row) for row in train_split["item_ids"]), default=0) + 1
    train_ids = encode_for_pretraining(train_split, tokenizer, longest)["input_ids"]
    catalog = {"vocab_size": tokenizer.vocab_size, "num_special_tokens": tokenizer.num_special_tokens}
    return {"popularity": PopularityRecommender(train_ids, **catalog), "markov": MarkovRecommender(train_ids, **catalog)}


__all__ = [
    "GradientBoostingBaseline",
    "LogisticRegressionBaseline",
    "MarkovRecommender",
    "PopularityRecommender",
    "fit_next_item_baselines",
]
