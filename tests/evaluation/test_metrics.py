"""ROC AUC, precision/recall/F1 and correlations against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from circuitkit.evaluation import pearson, precision_recall_f1, roc_auc, score_against_circuit, spearman
from circuitkit.tasks.ground_truth import Circuit


def test_roc_auc_hand_computed():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = torch.tensor([1, 0, 1, 0, 0, 1], dtype=torch.bool)
    # positives 0.9, 0.7, 0.4 vs negatives 0.8, 0.6, 0.5: pairs won 3 + 2 + 0 of 9
    assert roc_auc(scores, labels) == pytest.approx(5 / 9)
    assert roc_auc(torch.tensor([1.0, 1.0, 0.0]), torch.tensor([1, 0, 0], dtype=torch.bool)) == pytest.approx(
        0.75
    )
    with pytest.raises(ValueError, match="positives and negatives"):
        roc_auc(scores, torch.ones(6, dtype=torch.bool))


def test_precision_recall_f1():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = torch.tensor([1, 0, 1, 0, 0, 1], dtype=torch.bool)
    prf = precision_recall_f1(scores, labels, k=2)
    assert (prf.precision, prf.recall) == (0.5, pytest.approx(1 / 3))
    assert prf.f1 == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert precision_recall_f1(scores, labels).k == 3


def test_score_against_circuit():
    c = Circuit(model="m", task="ioi", heads={(1, 0): "name mover", (0, 1): "induction"})
    grid = torch.tensor([[0.0, -5.0], [4.0, 0.1]])
    out = score_against_circuit(grid, c)
    assert out["roc_auc"] == 1.0 and out["f1"] == 1.0 and out["n_true"] == 2
    assert score_against_circuit(grid, c, use_abs=False)["roc_auc"] == 0.5


def test_correlations():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert pearson(a, 2 * a + 1) == pytest.approx(1.0)
    assert spearman(a, a**3) == pytest.approx(1.0)
    assert pearson(a, -a) == pytest.approx(-1.0)
    assert spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 3.0, 2.0])) == pytest.approx(0.5)
