"""Evaluation harness: how well approximations track activation patching, how well scores recover a
ground-truth circuit, and how faithful a circuit is."""

from circuitkit.evaluation.correlation import correlation_table, pearson, spearman
from circuitkit.evaluation.faithfulness import (
    FaithfulnessResult,
    circuit_metric,
    faithfulness,
    faithfulness_curve,
)
from circuitkit.evaluation.ground_truth import precision_recall_f1, roc_auc, score_against_circuit

__all__ = [
    "FaithfulnessResult",
    "circuit_metric",
    "correlation_table",
    "faithfulness",
    "faithfulness_curve",
    "pearson",
    "precision_recall_f1",
    "roc_auc",
    "score_against_circuit",
    "spearman",
]
