"""ROC AUC, ROC points, precision/recall/F1 and correlations against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from circuitkit.evaluation import pearson, precision_recall_f1, roc_auc, score_against_circuit, spearman
from circuitkit.evaluation.correlation import pearson_without_top
from circuitkit.evaluation.ground_truth import roc_points, score_ranking
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


def test_score_ranking_roc_auc_and_top_k():
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
    labels = torch.tensor([False, False, True, True])
    # member pairs outranking non-members: 0.35>0.1, 0.8>0.1, 0.8>0.4 -> 3 of 4
    assert roc_auc(scores, labels) == 0.75
    assert roc_auc(torch.ones(4), labels) == 0.5  # all tied: chance
    r = score_ranking(scores, labels)
    assert (r.roc_auc, r.k, r.precision, r.recall, r.n_true, r.n_total) == (0.75, 2, 0.5, 0.5, 2, 4)
    r3 = score_ranking(scores, labels, k=3)
    assert r3.recall == 1.0 and r3.precision == pytest.approx(2 / 3)


def test_roc_points_area_equals_mann_whitney_auc_with_ties():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 6, size=40).astype(float)  # many ties
    labels = rng.random(40) < 0.3
    fpr, tpr = roc_points(scores, labels)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(roc_auc(torch.tensor(scores), torch.tensor(labels)), abs=1e-12)
    with pytest.raises(ValueError, match="at least one member"):
        roc_points(scores, np.zeros(40, bool))


def test_pearson_takes_arrays_and_matches_numpy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50)
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert np.isnan(pearson(np.ones(5), x[:5]))
    assert pearson(np.r_[x, np.nan], np.r_[y, 1.0]) == pytest.approx(pearson(x, y))  # NaN pairs dropped


def test_pearson_without_top_drops_the_dominant_component():
    # One huge component both agree on; the rest anti-correlated: r ~ 1 overall, -1 without it.
    exact = torch.tensor([100.0, 1.0, 2.0, 3.0])
    approx = torch.tensor([100.0, 3.0, 2.0, 1.0])
    assert pearson(exact, approx) > 0.99
    assert pearson_without_top(exact, approx) == pytest.approx(-1.0)
    # "Strongest" is by magnitude: a large negative effect is left out the same way.
    assert pearson_without_top(-exact, approx) == pytest.approx(pearson(-exact[1:], approx[1:]))
