"""Line figures over a sweep: faithfulness against circuit size, ROC curves against a ground truth.

Faithfulness as in Marks et al. (2024): (m(C) − m(∅)) / (m(M) − m(∅)), 1 when the circuit alone recovers
the full model's metric. ROC: ranking components by score against a ground-truth circuit (O'Neill & Bui
2024 report ROC AUC for head identification).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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


def roc_curve(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float], float]],
    *,
    title: str = "ROC against the ground-truth circuit",
) -> go.Figure:
    """One line per method: ``curves[name] = (fpr, tpr, auc)``; the chance diagonal dotted.

    The points come from :func:`circuitkit.evaluation.ground_truth.roc_points`.
    """
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
