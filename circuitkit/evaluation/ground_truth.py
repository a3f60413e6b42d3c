"""Scores against a ground-truth circuit: ROC AUC and precision / recall / F1 at a given size.

Standard definitions (not the TPR/TNR harmonic mean O'Neill & Bui 2024 call F1): components are ranked
by score; the top ``k`` are the predicted circuit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from circuitkit.tasks.ground_truth import Circuit


def _flat(scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    if scores.shape != labels.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} must have one shape")
    s, y = scores.reshape(-1).double(), labels.reshape(-1).bool()
    keep = ~torch.isnan(s)
    return s[keep], y[keep]


def roc_auc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve: P(score of a random positive > that of a random negative), ties 1/2.

    Computed exactly from average ranks (the Mann-Whitney U statistic).
    """
    s, y = _flat(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC AUC needs positives and negatives; got {n_pos} positives, {n_neg} negatives")
    ranks = _average_ranks(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def _average_ranks(x: Tensor) -> Tensor:
    """1-based ranks with ties sharing their average rank."""
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks[order] = torch.arange(1, len(x) + 1, dtype=torch.float64)
    uniq, inverse = torch.unique(x, return_inverse=True)
    sums = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inverse, ranks)
    counts = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inverse, torch.ones_like(ranks))
    return (sums / counts)[inverse]


@dataclass(frozen=True)
class PRF:
    """Precision, recall and F1 of the top-``k`` components as the predicted circuit."""

    k: int
    precision: float
    recall: float
    f1: float


def precision_recall_f1(scores: Tensor, labels: Tensor, k: int | None = None) -> PRF:
    """Top-``k`` by score (default: as many as the true circuit has) against the labels."""
    s, y = _flat(scores, labels)
    k = int(y.sum()) if k is None else k
    if not 0 < k <= len(s):
        raise ValueError(f"circuit size k must be in 1..{len(s)}, got {k}")
    top = torch.argsort(s, descending=True, stable=True)[:k]
    tp = int(y[top].sum())
    precision, recall = tp / k, tp / max(int(y.sum()), 1)
    f1 = 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)
    return PRF(k, precision, recall, f1)


def score_against_circuit(
    head_scores: Tensor, circuit: Circuit, k: int | None = None, use_abs: bool = True
) -> dict[str, float]:
    """ROC AUC and top-k precision / recall / F1 of a [layer, head] score grid against a circuit's heads."""
    if head_scores.ndim != 2:
        raise ValueError(f"head scores must be a [layer, head] grid, got shape {tuple(head_scores.shape)}")
    labels = circuit.head_mask(*head_scores.shape)
    s = head_scores.abs() if use_abs else head_scores
    prf = precision_recall_f1(s, labels, k)
    return {
        "roc_auc": roc_auc(s, labels),
        "k": prf.k,
        "precision": prf.precision,
        "recall": prf.recall,
        "f1": prf.f1,
        "n_true": int(labels.sum()),
    }
