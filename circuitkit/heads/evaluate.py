"""Scoring a head ranking against a ground-truth circuit: ROC AUC and precision / recall / F1 at k.

O'Neill & Bui report ROC AUC and a "F1" that is a harmonic mean of TPR and TNR; here precision, recall
and F1 are the standard ones, at a stated circuit size k (default: the ground truth's size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor


def roc_auc(scores: Float[Tensor, "*shape"], labels: Bool[Tensor, "*shape"]) -> float:
    """Area under the ROC curve: the probability that a random member outranks a random non-member,
    ties counting one half (Mann-Whitney U / (n_pos * n_neg))."""
    s, y = scores.flatten().double().cpu(), labels.flatten().bool().cpu()
    if s.shape != y.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} differ in shape")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs at least one member and one non-member of the circuit")
    diff = s[y][:, None] - s[~y][None, :]
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


@dataclass(frozen=True)
class RankingScore:
    """How well a ranking recovers a ground-truth set."""

    roc_auc: float
    k: int
    """Circuit size: the top-k components count as predicted."""
    precision: float
    recall: float
    f1: float
    n_true: int
    n_total: int


def score_ranking(
    scores: Float[Tensor, "*shape"], labels: Bool[Tensor, "*shape"], *, k: int | None = None
) -> RankingScore:
    """ROC AUC, and precision / recall / F1 of the top ``k`` (default: as many as the ground truth)."""
    s, y = scores.flatten().cpu(), labels.flatten().bool().cpu()
    n_true = int(y.sum())
    k = n_true if k is None else k
    if not 0 < k <= s.numel():
        raise ValueError(f"k must be in 1..{s.numel()}, got {k}")
    top = torch.argsort(s, descending=True, stable=True)[:k]
    hits = int(y[top].sum())
    precision, recall = hits / k, hits / max(n_true, 1)
    f1 = 0.0 if hits == 0 else 2 * precision * recall / (precision + recall)
    return RankingScore(roc_auc(s, y), k, precision, recall, f1, n_true, s.numel())
