"""Line figures over a sweep: faithfulness against circuit size, ROC curves against a ground truth.

Faithfulness as in Marks et al. (2024): (m(C) − m(∅)) / (m(M) − m(∅)), 1 when the circuit alone recovers
the full model's metric. ROC: ranking components by score against a ground-truth circuit (O'Neill & Bui
2024 report ROC AUC for head identification).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from circuitkit.viz._common import to_numpy


def faithfulness_curve(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str = "Faithfulness against circuit size",
    x_title: str = "circuit size (components)",
) -> go.Figure:
    """One line per method: ``curves[name] = (sizes, faithfulness)``; dotted lines at 0 and 1."""
    fig = go.Figure()
    for name, (sizes, values) in curves.items():
        x, y = to_numpy(sizes, f"{name} sizes", 1), to_numpy(values, f"{name} faithfulness", 1)
        if x.shape != y.shape:
            raise ValueError(f"{name}: {x.size} sizes but {y.size} faithfulness values")
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name))
    for level in (0.0, 1.0):
        fig.add_hline(y=level, line={"dash": "dot", "color": "grey"})
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title="faithfulness")
    return fig


def roc_points(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) of ranking by ``scores`` against boolean ``labels``, tied scores entering together.

    A plotting helper: the points the ROC figure draws, from (0, 0) to (1, 1).
    """
    s, y = to_numpy(scores, "scores").ravel(), np.asarray(labels, dtype=bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("a ROC curve needs at least one member and one non-member of the circuit")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # Keep only the last index of each run of equal scores, so ties move the curve diagonally.
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def roc_curve(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float], float]],
    *,
    title: str = "ROC against the ground-truth circuit",
) -> go.Figure:
    """One line per method: ``curves[name] = (fpr, tpr, auc)``; the chance diagonal dotted."""
    fig = go.Figure()
    for name, (fpr, tpr, auc) in curves.items():
        x, y = to_numpy(fpr, f"{name} fpr", 1), to_numpy(tpr, f"{name} tpr", 1)
        if x.shape != y.shape:
            raise ValueError(f"{name}: {x.size} false-positive rates but {y.size} true-positive rates")
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"{name} (AUC {auc:.3f})", meta={"auc": auc}))
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "grey"})
    )
    fig.update_layout(
        title=title,
        xaxis_title="false-positive rate",
        yaxis_title="true-positive rate",
        xaxis={"range": [0, 1]},
        yaxis={"range": [0, 1.02]},
    )
    return fig
