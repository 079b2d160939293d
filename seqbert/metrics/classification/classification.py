"""Binary-classification metric module (ROC-AUC, GAUC, PR-AUC, log loss, Brier score, ECE, temperature
scaling, bootstrap intervals) for purchase/click prediction."""

import datasets
import evaluate

from .classification_math import (
    bootstrap_classification_intervals,
    brier,
    expected_calibration_error,
    fit_temperature,
    grouped_auc_details,
    log_loss,
    pr_auc,
    probabilities_to_logits,
    roc_auc,
    temperature_scale,
)


_CITATION = """\
@article{hanley1982meaning,
  title={The meaning and use of the area under a receiver operating characteristic ({ROC}) curve},
  author={Hanley, James A. and McNeil, Barbara J.},
  journal={Radiology},
  volume={143},
  number={1},
  pages={29--36},
  year={1982}
}
@article{brier1950verification,
  title={Verification of forecasts expressed in terms of probability},
  author={Brier, Glenn W.},
  journal={Monthly Weather Review},
  volume={78},
  number={1},
  pages={1--3},
  year={1950}
}
@inproceedings{naeini2015obtaining,
  title={Obtaining Well Calibrated Probabilities Using {B}ayesian Binning},
  author={Naeini, Mahdi Pakdaman and Cooper, Gregory F. and Hauskrecht, Milos},
  booktitle={Proceedings of the AAAI Conference on Artificial Intelligence},
  year={2015}
}
@inproceedings{guo2017calibration,
  title={On Calibration of Modern Neural Networks},
  author={Guo, Chuan and Pleiss, Geoff and Sun, Yu and Weinberger, Kilian Q.},
  booktitle={Proceedings of the 34th International Conference on Machine Learning},
  year={2017}
}
"""

_DESCRIPTION = """\
Binary-classification metrics for predicted probabilities of the positive class (for example
"this session ends in a purchase"): ranking quality (ROC-AUC, tie-aware; PR-AUC as average
precision), probabilistic accuracy (log loss, Brier score) and calibration (expected calibration
error over equal-width bins). Optionally: group AUC (GAUC, per user: each user's ROC-AUC weighted by
the user's number of samples; users whose samples are all one class are skipped and counted),
temperature scaling fitted on validation logits (the metrics are then also reported for the
calibrated probabilities) and percentile-bootstrap confidence intervals.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): predicted probability of the positive class, in [0, 1].
    references (`list` of `int`): ground-truth labels, 0 or 1; both classes must be present.
    n_bins (`int`, defaults to 10): number of equal-width bins for the ECE.
    eps (`float`, defaults to 1e-15): probabilities are clipped to [eps, 1 - eps] in the log loss.
    groups (`list`, *optional*): one group key per prediction (e.g. the user id): adds `gauc`,
        `gauc_groups_used` and `gauc_groups_skipped` (groups with a single class).
    validation_predictions, validation_references (`list`, *optional*): validation probabilities and
        labels; a temperature T is fitted on their logits and `temperature` plus `calibrated_log_loss`,
        `calibrated_brier` and `calibrated_ece` (of sigmoid(logit(p) / T) on these predictions) are added.
    n_resamples (`int`, defaults to 0): with n > 0, `<metric>_low` / `<metric>_high` percentile-bootstrap
        bounds (`alpha`, defaults to 0.05, i.e. 95 % intervals; `seed`, defaults to 0) of every metric.
Returns:
    `roc_auc` (`float`): area under the ROC curve, in [0, 1], higher is better, 0.5 is chance;
    `pr_auc` (`float`): average precision, in [0, 1], higher is better, the positive rate is chance;
    `log_loss` (`float`): mean binary cross-entropy in nats, >= 0, lower is better;
    `brier` (`float`): mean squared error of the probabilities, in [0, 1], lower is better;
    `ece` (`float`): expected calibration error, in [0, 1], lower is better;
    and the optional keys above.
Examples:

    >>> import seqbert.metrics
    >>> classification = seqbert.metrics.load("classification")
    >>> results = classification.compute(
    ...     references=[0, 1, 1, 0, 1], predictions=[0.1, 0.8, 0.6, 0.4, 0.3], n_bins=5
    ... )
    >>> print({name: round(value, 4) for name, value in results.items()})
    {'roc_auc': 0.8333, 'pr_auc': 0.9167, 'log_loss': 0.5108, 'brier': 0.172, 'ece': 0.36}
    >>> results = classification.compute(
    ...     references=[0, 1, 1, 0, 1], predictions=[0.1, 0.8, 0.6, 0.4, 0.3], groups=[7, 7, 8, 8, 9]
    ... )
    >>> results["gauc"], results["gauc_groups_used"], results["gauc_groups_skipped"]
    (1.0, 2, 1)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Classification(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("int64")}
            ),
            # No format="numpy": datasets' numpy formatter turns float64 columns into float32.
            reference_urls=[
                "https://en.wikipedia.org/wiki/Receiver_operating_characteristic",
                "https://en.wikipedia.org/wiki/Brier_score",
            ],
        )

    def _compute(
        self,
        predictions: list[float],
        references: list[int],
        n_bins: int = 10,
        eps: float = 1e-15,
        groups: list | None = None,
        validation_predictions: list[float] | None = None,
        validation_references: list[int] | None = None,
        n_resamples: int = 0,
        alpha: float = 0.05,
        seed: int = 0,
    ) -> dict[str, float]:
        results = {
            "roc_auc": roc_auc(references, predictions),
            "pr_auc": pr_auc(references, predictions),
            "log_loss": log_loss(references, predictions, eps=eps),
            "brier": brier(references, predictions),
            "ece": expected_calibration_error(references, predictions, n_bins=n_bins),
        }
        if groups is not None:
            details = grouped_auc_details(references, predictions, groups)
            results.update(
                gauc=details["gauc"],
                gauc_groups_used=details["groups_used"],
                gauc_groups_skipped=details["groups_skipped"],
            )
        if validation_predictions is not None:
            if validation_references is None:
                raise ValueError("validation_predictions needs validation_references.")
            temperature = fit_temperature(probabilities_to_logits(validation_predictions), validation_references)
            calibrated = temperature_scale(probabilities_to_logits(predictions), temperature)
            results.update(
                temperature=temperature,
                calibrated_log_loss=log_loss(references, calibrated, eps=eps),
                calibrated_brier=brier(references, calibrated),
                calibrated_ece=expected_calibration_error(references, calibrated, n_bins=n_bins),
            )
        if n_resamples:
            intervals = bootstrap_classification_intervals(
                references, predictions, groups, n_resamples=n_resamples, alpha=alpha, seed=seed, n_bins=n_bins
            )
            for name, (low, high) in intervals.items():
                results[f"{name}_low"], results[f"{name}_high"] = low, high
        return results
