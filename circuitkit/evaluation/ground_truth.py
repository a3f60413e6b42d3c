"""Scores against a ground-truth circuit: ROC AUC, the ROC curve's points and precision / recall / F1.

Standard definitions (not the TPR/TNR harmonic mean O'Neill & Bui 2024 call F1): components are ranked
by score; the top ``k`` are the predicted circuit. Every ranking score in circuitkit (head
identification, patching methods, the explorer's ROC figures) comes from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from circuitkit.tasks.ground_truth import Circuit


def _flat(scores, labels) -> tuple[Tensor, Tensor]:
    """Flattened float64 scores and bool labels on the CPU, NaN scores left out (absent components)."""
    s, y = torch.as_tensor(scores).detach().cpu(), torch.as_tensor(labels).detach().cpu()
    # Compared flattened: a [layer, head] grid may come with its labels as a flat vector, or vice versa.
    if s.numel() != y.numel():
        raise ValueError(
            f"scores {tuple(s.shape)} and labels {tuple(y.shape)} differ in size; pass one label per score"
        )
    s, y = s.reshape(-1).double(), y.reshape(-1).bool()
    keep = ~torch.isnan(s)
    return s[keep], y[keep]


def _check_both_classes(y: Tensor) -> tuple[int, int]:
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"ROC needs positives and negatives (at least one member and one non-member of the circuit); "
            f"got {n_pos} positives, {n_neg} negatives"
        )
    return n_pos, n_neg


def roc_auc(scores: Float[Tensor, "*shape"], labels: Bool[Tensor, "*shape"]) -> float:
    """Area under the ROC curve: P(score of a random positive > that of a random negative), ties 1/2.

    Computed exactly from average ranks (the Mann-Whitney U statistic).
    """
    s, y = _flat(scores, labels)
    n_pos, n_neg = _check_both_classes(y)
    u = average_ranks(s)[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def roc_points(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) of ranking by ``scores`` against boolean ``labels``, from (0, 0) to (1, 1).

    Tied scores enter together, so ties move the curve diagonally and the area under these points equals
    :func:`roc_auc`.
    """
    s, y = _flat(scores, labels)
    n_pos, n_neg = _check_both_classes(y)
    s, y = s.numpy(), y.numpy()
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # Keep only the last index of each run of equal scores.
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def average_ranks(x: Float[Tensor, " n"]) -> Float[Tensor, " n"]:
    """1-based ranks with ties sharing their average rank (for ROC AUC and Spearman's rho)."""
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks[order] = torch.arange(1, len(x) + 1, dtype=torch.float64, device=x.device)
    uniq, inverse = torch.unique(x, return_inverse=True)
    sums = torch.zeros(len(uniq), dtype=torch.float64, device=x.device).index_add_(0, inverse, ranks)
    counts = torch.zeros(len(uniq), dtype=torch.float64, device=x.device).index_add_(
        0, inverse, torch.ones_like(ranks)
    )
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
    s, y = _flat(scores, labels)
    prf = precision_recall_f1(s, y, k)
    return RankingScore(roc_auc(s, y), prf.k, prf.precision, prf.recall, prf.f1, int(y.sum()), s.numel())


def score_against_circuit(
    head_scores: Tensor, circuit: Circuit, k: int | None = None, use_abs: bool = True
) -> dict[str, float]:
    """ROC AUC and top-k precision / recall / F1 of a [layer, head] score grid against a circuit's heads.

    Returns a dict with ``roc_auc, k, precision, recall, f1, n_true``.
    """
    if head_scores.ndim != 2:
        raise ValueError(f"head scores must be a [layer, head] grid, got shape {tuple(head_scores.shape)}")
    labels = circuit.head_mask(*head_scores.shape)
    out = asdict(score_ranking(head_scores.abs() if use_abs else head_scores, labels, k=k))
    del out["n_total"]
    return out


def top_k_mask(scores: Tensor, k: int, use_abs: bool = True) -> Tensor:
    """Boolean mask (shaped like ``scores``) of the ``k`` largest scores (by |score| when ``use_abs``);
    ties keep index order, as :func:`precision_recall_f1` ranks them."""
    s = torch.as_tensor(scores).double()
    flat = (s.abs() if use_abs else s).reshape(-1)
    if not 0 < k <= flat.numel():
        raise ValueError(f"circuit size k must be in 1..{flat.numel()}, got {k}")
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[torch.argsort(flat, descending=True, stable=True)[:k]] = True
    return mask.reshape(s.shape)


@dataclass(frozen=True)
class CircuitOverlap:
    """The top-``k`` heads of a score grid against a ground-truth circuit's heads."""

    k: int
    true_positives: int
    false_positives: int
    misses: int
    precision: float
    recall: float


def circuit_overlap(head_scores: Tensor, circuit: Circuit, k: int, use_abs: bool = True) -> CircuitOverlap:
    """Counts and precision / recall of the top-``k`` heads (by |score|) against ``circuit``."""
    labels = circuit.head_mask(*head_scores.shape)
    found = top_k_mask(head_scores, k, use_abs)
    tp = int((found & labels).sum())
    n_true = int(labels.sum())
    return CircuitOverlap(k, tp, k - tp, n_true - tp, tp / k, tp / max(n_true, 1))


def card_head_effects(model_name: str, task: str) -> Tensor | None:
    """[n_layers, n_heads] normalised denoising effects of every head stored in a built-in model's card
    when its circuit was derived (None when the card has none)."""
    from circuitkit.tasks.ground_truth import ground_truth

    try:
        circuit = ground_truth(model_name, task)
    except KeyError:
        return None
    effects = circuit.details.get("head_effects_denoising")
    return None if effects is None else torch.tensor(effects, dtype=torch.float64)
