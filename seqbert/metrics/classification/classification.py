"""Binary-classification metric module (ROC-AUC, PR-AUC, log loss, Brier score, ECE) for purchase/click prediction."""

import datasets
import evaluate

from .classification_math import brier, expected_calibration_error, log_loss, pr_auc, roc_auc


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
error over equal-width bins).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): predicted probability of the positive class, in [0, 1].
    references (`list` of `int`): ground-truth labels, 0 or 1; both classes must be present.
    n_bins (`int`, defaults to 10): number of equal-width bins for the ECE.
    eps (`float`, defaults to 1e-15): probabilities are clipped to [eps, 1 - eps] in the log loss.
Returns:
    `roc_auc` (`float`): area under the ROC curve, in [0, 1], higher is better, 0.5 is chance;
    `pr_auc` (`float`): average precision, in [0, 1], higher is better, the positive rate is chance;
    `log_loss` (`float`): mean binary cross-entropy in nats, >= 0, lower is better;
    `brier` (`float`): mean squared error of the probabilities, in [0, 1], lower is better;
    `ece` (`float`): expected calibration error, in [0, 1], lower is better.
Examples:

    >>> import seqbert.metrics
    >>> classification = seqbert.metrics.load("classification")
    >>> results = classification.compute(
    ...     references=[0, 1, 1, 0, 1], predictions=[0.1, 0.8, 0.6, 0.4, 0.3], n_bins=5
    ... )
    >>> print({name: round(value, 4) for name, value in results.items()})
    {'roc_auc': 0.8333, 'pr_auc': 0.9167, 'log_loss': 0.5108, 'brier': 0.172, 'ece': 0.36}
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
        self, predictions: list[float], references: list[int], n_bins: int = 10, eps: float = 1e-15
    ) -> dict[str, float]:
        return {
            "roc_auc": roc_auc(references, predictions),
            "pr_auc": pr_auc(references, predictions),
            "log_loss": log_loss(references, predictions, eps=eps),
            "brier": brier(references, predictions),
            "ece": expected_calibration_error(references, predictions, n_bins=n_bins),
        }
