"""Tabular baselines for purchase / conversion / click rows: one path for ``seqbert finetune`` and
``scripts/bench_purchase.py``.

:func:`fit_tabular_baselines` takes the labelled splits of :mod:`seqbert.data.labels`, computes the
features of :func:`seqbert.data.features.labelled_features` (every row from its own pre-cutoff events),
and fits logistic regression and LightGBM (scikit-learn's HistGradientBoosting when LightGBM is not
installed, said in the result), each with a small search selected on validation. Both see features
through :class:`ShiftRobustScaler`:

- features (near-)constant in training are dropped and listed: a feature that barely varies at the
  training cutoff carries no learnable signal, but its tiny standard deviation turns any later value
  into a z-score in the thousands, and a linear model then saturates on it;
- the rest are standardised with the training mean / std and clipped to ``±clip`` standard
  deviations, so a test value far outside the training range cannot move a logit without bound;
- :meth:`ShiftRobustScaler.shift_warnings` names features whose later values mostly lie outside
  what training saw (logged as a warning by :func:`fit_tabular_baselines`).

No torch here: plain numpy, scikit-learn and LightGBM.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datasets import Dataset

from .data.features import labelled_features
from .metrics.functional import log_loss

logger = logging.getLogger(__name__)

TABULAR_MODELS = ("logistic_regression", "lightgbm")
LOGISTIC_L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
"""Inverse-regularisation strengths tried by :class:`LogisticRegressionModel` are ``1 / (l2 * n)``."""
LIGHTGBM_GRID = (
    {"num_leaves": 15, "min_child_samples": 20},
    {"num_leaves": 15, "min_child_samples": 100},
    {"num_leaves": 63, "min_child_samples": 20},
    {"num_leaves": 63, "min_child_samples": 100},
)
"""The LightGBM search (learning rate 0.05, up to 1,000 rounds with early stopping on validation log loss)."""


@dataclass
class ShiftRobustScaler:
    """Standardise with the training statistics, drop near-constant training features, clip at ``±clip``.

    A feature is near-constant when its most common training value covers more than
    ``1 - min_varying_share`` of the rows (or its std is below ``min_std``).
    """

    clip: float = 5.0
    min_varying_share: float = 0.002
    min_std: float = 1e-6
    names: list[str] = field(default_factory=list)
    kept: np.ndarray | None = None
    dropped: list[str] = field(default_factory=list)

    def fit(self, features: np.ndarray, names: Sequence[str] | None = None) -> ShiftRobustScaler:
        x = np.asarray(features, dtype=np.float64)
        self.names = list(names) if names is not None else [f"feature_{i}" for i in range(x.shape[1])]
        keep = np.ones(x.shape[1], dtype=bool)
        for column in range(x.shape[1]):
            _, counts = np.unique(x[:, column], return_counts=True)
            varying_share = 1.0 - counts.max() / max(len(x), 1) if len(counts) else 0.0
            keep[column] = varying_share >= self.min_varying_share and x[:, column].std() >= self.min_std
        self.kept = keep
        self.dropped = [name for name, kept in zip(self.names, keep) if not kept]
        self.mean = x[:, keep].mean(0)
        self.std = x[:, keep].std(0)
        self.low, self.high = x[:, keep].min(0), x[:, keep].max(0)
        return self

    @property
    def kept_names(self) -> list[str]:
        return [name for name, kept in zip(self.names, self.kept) if kept]

    def transform(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float64)[:, self.kept]
        return np.clip((x - self.mean) / self.std, -self.clip, self.clip)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (for a model config): what :meth:`from_dict` and :func:`seqbert.inference.scale_tabular_features` need."""
        return {"names": list(self.names), "kept": [bool(k) for k in self.kept], "mean": self.mean.tolist(),
                "std": self.std.tolist(), "low": self.low.tolist(), "high": self.high.tolist(), "clip": self.clip}  # fmt: skip

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> ShiftRobustScaler:
        scaler = cls(clip=float(state["clip"]), names=list(state["names"]), kept=np.asarray(state["kept"], dtype=bool))
        scaler.dropped = [name for name, kept in zip(scaler.names, scaler.kept) if not kept]
        scaler.mean, scaler.std = np.asarray(state["mean"], dtype=np.float64), np.asarray(state["std"], dtype=np.float64)
        scaler.low, scaler.high = np.asarray(state["low"], dtype=np.float64), np.asarray(state["high"], dtype=np.float64)
        return scaler

    def shift_warnings(self, features: np.ndarray, *, max_outside_share: float = 0.05) -> list[str]:
        """Kept features whose values lie outside the training range (beyond ``clip`` std too) for more
        than ``max_outside_share`` of the rows, with that share."""
        x = np.asarray(features, dtype=np.float64)[:, self.kept]
        z = np.abs((x - self.mean) / self.std)
        outside = ((x < self.low) | (x > self.high)) & (z > self.clip)
        shares = outside.mean(0) if len(x) else np.zeros(x.shape[1])
        return [f"{name} ({share:.0%} of rows)" for name, share in zip(self.kept_names, shares) if share > max_outside_share]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _logistic_fit(x: np.ndarray, y: np.ndarray, l2: float, max_iter: int = 100) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression (mean log loss + ``l2 * |w|^2``): Newton's method with step halving,
    so separable data cannot make it diverge."""
    n, d = x.shape
    design = np.hstack([x, np.ones((n, 1))])
    prior = np.clip(y.mean(), 1e-6, 1 - 1e-6)
    beta = np.zeros(d + 1)
    beta[-1] = np.log(prior / (1 - prior))
    penalty = np.full(d + 1, 2 * l2)
    penalty[-1] = 1e-8

    def objective(b: np.ndarray) -> float:
        z = design @ b
        return float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * np.sum(penalty * b * b))

    current = objective(beta)
    for _ in range(max_iter):
        p = _sigmoid(design @ beta)
        gradient = design.T @ (p - y) / n + penalty * beta
        hessian = (design * (p * (1 - p))[:, None]).T @ design / n + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-4 and objective(beta - scale * step) > current:
            scale /= 2
        beta = beta - scale * step
        previous, current = current, objective(beta)
        if previous - current < 1e-10:
            break
    return beta[:-1], float(beta[-1])


class LogisticRegressionModel:
    """Logistic regression on :class:`ShiftRobustScaler` features, L2 strength chosen on validation log loss."""

    name = "logistic_regression"

    def fit(self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, seed: int = 0) -> LogisticRegressionModel:
        y, y_val = np.asarray(y, dtype=np.float64), np.asarray(y_val, dtype=np.float64)
        best = None
        for l2 in LOGISTIC_L2_GRID:
            weight, bias = _logistic_fit(x, y, l2)
            loss = log_loss(y_val, _sigmoid(x_val @ weight + bias))
            if best is None or loss < best[0]:
                best = (loss, l2, weight, bias)
        _, self.l2, self.weight, self.bias = best
        self.params = {"l2": self.l2}
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return _sigmoid(x @ self.weight + self.bias)


class _BoosterClassifier:
    """A trained LightGBM booster with scikit-learn's ``predict_proba`` shape (best iteration only)."""

    def __init__(self, booster: Any):
        self.booster = booster

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        positive = self.booster.predict(x, num_iteration=self.booster.best_iteration)
        return np.stack([1 - positive, positive], axis=1)


class GradientBoostingModel:
    """LightGBM (or, without it, scikit-learn's HistGradientBoosting) with :data:`LIGHTGBM_GRID` searched on
    validation log loss, early stopping on validation, unweighted classes (probabilities keep the prior)."""

    name = "lightgbm"

    def fit(self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, seed: int = 0) -> GradientBoostingModel:
        try:
            import lightgbm
        except ImportError:  # pragma: no cover - depends on the environment
            lightgbm = None
        best = None
        for options in LIGHTGBM_GRID:
            if lightgbm is not None:
                params = {
                    "objective": "binary", "learning_rate": 0.05, "bagging_fraction": 0.8, "bagging_freq": 1,
                    "feature_fraction": 0.8, "lambda_l2": 1.0, "seed": seed, "num_threads": 1, "verbose": -1,
                    "deterministic": True, **options,
                }  # fmt: skip
                train = lightgbm.Dataset(x, label=y)
                booster = lightgbm.train(
                    params, train, num_boost_round=1000, valid_sets=[lightgbm.Dataset(x_val, label=y_val, reference=train)],
                    callbacks=[lightgbm.early_stopping(50, verbose=False)],
                )  # fmt: skip
                model = _BoosterClassifier(booster)
                backend = f"lightgbm {lightgbm.__version__}"
            else:
                from sklearn.ensemble import HistGradientBoostingClassifier

                model = HistGradientBoostingClassifier(
                    max_iter=1000, learning_rate=0.05, max_leaf_nodes=options["num_leaves"],
                    min_samples_leaf=options["min_child_samples"], l2_regularization=1.0, early_stopping=True,
                    validation_fraction=0.1, n_iter_no_change=50, random_state=seed,
                )  # fmt: skip
                model.fit(x, y)
                backend = "sklearn HistGradientBoostingClassifier (lightgbm not installed)"
            loss = log_loss(np.asarray(y_val, dtype=np.float64), model.predict_proba(x_val)[:, 1])
            if best is None or loss < best[0]:
                best = (loss, options, model)
        _, options, self.model = best
        rounds = getattr(getattr(self.model, "booster", None), "best_iteration", None)
        self.params = {**options, **({"rounds": int(rounds)} if rounds else {})}
        self.backend = backend
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(x)[:, 1]


MODEL_CLASSES = {"logistic_regression": LogisticRegressionModel, "lightgbm": GradientBoostingModel}


@dataclass
class TabularResult:
    """Predicted probabilities per split of one tabular model, and how it was fitted."""

    model: str
    probabilities: dict[str, np.ndarray]
    params: dict[str, Any]
    feature_names: list[str]
    dropped_features: list[str]
    shift_warnings: dict[str, list[str]]
    backend: str = "numpy"


def fit_on_features(
    features: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    names: Sequence[str],
    models: Sequence[str] = TABULAR_MODELS,
    seed: int = 0,
) -> dict[str, TabularResult]:
    """Fit ``models`` on ``features["train"]`` (selected on ``"validation"``) and predict every split."""
    scaler = ShiftRobustScaler().fit(features["train"], names)
    if scaler.dropped:
        logger.info("tabular baseline: dropped %d near-constant training features: %s", len(scaler.dropped), ", ".join(scaler.dropped))
    warnings = {split: scaler.shift_warnings(x) for split, x in features.items() if split != "train"}
    for split, shifted in warnings.items():
        if shifted:
            logger.warning("tabular baseline: %s features far outside their training range (clipped at ±%g std): %s",
                           split, scaler.clip, ", ".join(shifted))  # fmt: skip
    scaled = {split: scaler.transform(x) for split, x in features.items()}
    results = {}
    for name in models:
        if name not in MODEL_CLASSES:
            raise ValueError(f"Unknown tabular model {name!r}; available: {', '.join(MODEL_CLASSES)}.")
        try:
            model = MODEL_CLASSES[name]().fit(scaled["train"], labels["train"], scaled["validation"], labels["validation"], seed)
        except ImportError:
            logger.warning("tabular baseline %s skipped: it needs lightgbm or scikit-learn (pip install 'seqbert[baselines]').", name)
            continue
        results[name] = TabularResult(
            model=name,
            probabilities={split: model.predict_proba(x) for split, x in scaled.items()},
            params=dict(model.params),
            feature_names=scaler.kept_names,
            dropped_features=list(scaler.dropped),
            shift_warnings=warnings,
            backend=getattr(model, "backend", "numpy"),
        )
    return results


def fit_tabular_baselines(
    sequences: Dataset,
    labelled: Mapping[str, Dataset],
    models: Sequence[str] = TABULAR_MODELS,
    *,
    seed: int = 0,
    utc_offset_seconds: int = 0,
    extra_features: Mapping[str, tuple[np.ndarray, Sequence[str]]] | None = None,
    precomputed: Mapping[str, tuple[np.ndarray, Sequence[str]]] | None = None,
) -> dict[str, TabularResult]:
    """The tabular baselines of labelled task splits (``train`` / ``validation`` / any others).

    Features: :func:`~seqbert.data.features.labelled_features` of each split (the catalog statistics of
    ``sequences`` strictly before each row's cutoff; ``precomputed`` when the caller already has them), plus
    ``extra_features`` per split (for example :func:`seqbert.embedding_features.pretrained_features`), then
    :func:`fit_on_features`.
    """
    features, labels, names = {}, {}, []
    for split, rows in labelled.items():
        if precomputed is not None:
            features[split], names = precomputed[split][0], list(precomputed[split][1])
        else:
            features[split], names = labelled_features(sequences, rows, utc_offset_seconds=utc_offset_seconds)
        labels[split] = np.asarray(rows["label"])
        if extra_features is not None:
            features[split] = np.concatenate([features[split], np.asarray(extra_features[split][0], dtype=np.float32)], axis=1)
    if extra_features is not None:
        names = [*names, *extra_features["train"][1]]
    return fit_on_features(features, labels, names, models, seed)


__all__ = [
    "LIGHTGBM_GRID",
    "LOGISTIC_L2_GRID",
    "TABULAR_MODELS",
    "GradientBoostingModel",
    "LogisticRegressionModel",
    "ShiftRobustScaler",
    "TabularResult",
    "fit_on_features",
    "fit_tabular_baselines",
]
