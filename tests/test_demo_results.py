"""`seqbert demo` prints its results table from the training scripts' metrics (the Quickstart's last step)."""

from __future__ import annotations

from seqbert.demo import format_results


def test_results_table_includes_temperature_scaled_rows():
    """The fine-tuning metrics hold "<model>_temperature_scaled" rows with only log loss, Brier and ECE
    (the demo failed on them with KeyError: 'count'); they reuse the unscaled model's AUC and count."""
    ranking = {"ndcg@10": 0.05, "hr@10": 0.1, "mrr": 0.04, "count": 120.0}
    pretrain = {"metrics": {"test": {"seqbert": ranking, "popularity": ranking}}}
    finetune = {
        "cutoffs": {"horizon_seconds": 7 * 86400},
        "metrics": {"test": {
            "seqbert": {"count": 3675.0, "roc_auc": 0.8804, "pr_auc": 0.2203, "log_loss": 0.1265, "brier": 0.03, "ece": 0.004},
            "seqbert_temperature_scaled": {"log_loss": 0.1267, "brier": 0.03, "ece": 0.004},
        }},
    }  # fmt: skip
    table = format_results(pretrain, finetune)
    scaled = next(line for line in table.splitlines() if line.startswith("seqbert_temperature_scaled"))
    assert scaled.split() == ["seqbert_temperature_scaled", "0.8804", "0.1267", "0.2203", "3675"]
    assert "Purchase within 7.0 days (test)" in table
