"""A cheap attribution method against exact activation patching, one point per component.

The comparison of Nanda (2023) / Kramár et al. (2024, AtP*) and Jafari et al. (2025, RelP): how well a
method's scores track activation patching, summarised by Pearson's r.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from circuitkit.evaluation.correlation import pearson
from circuitkit.viz._common import to_numpy


def method_vs_patching_scatter(
    method_scores,
    patching_scores,
    labels: Sequence[str],
    *,
    method_name: str = "method",
    reference_name: str = "activation patching",
    r: float | None = None,
) -> go.Figure:
    """Scatter of ``method_scores`` (y) against ``patching_scores`` (x), with the y = x line and r.

    Both inputs are flattened in the same (row-major) order as ``labels``. ``r`` is the correlation to
    print; when None it is
    :func:`circuitkit.evaluation.correlation.pearson` of the two.
    """
    y = to_numpy(method_scores, "method_scores").ravel()
    x = to_numpy(patching_scores, "patching_scores").ravel()
    if x.shape != y.shape:
        raise ValueError(
            f"method scores ({y.size}) and patching scores ({x.size}) differ in size; "
            "compare the same components of the same family"
        )
    if len(labels) != x.size:
        raise ValueError(f"got {len(labels)} labels for {x.size} components; pass one label per component")
    r = pearson(x, y) if r is None else float(r)
    lo = float(np.nanmin(np.concatenate([x, y]))) if x.size else 0.0
    hi = float(np.nanmax(np.concatenate([x, y]))) if x.size else 1.0
    fig = go.Figure(
        [
            go.Scatter(
                x=x,
                y=y,
                mode="markers",
                text=list(labels),
                name="components",
                hovertemplate="%{text}<br>patching %{x:.4g}<br>method %{y:.4g}<extra></extra>",
            ),
            go.Scatter(
                x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line={"dash": "dot", "color": "grey"}
            ),
        ]
    )
    fig.update_layout(
        title=f"{method_name} vs {reference_name}: Pearson r = {r:.3f}",
        xaxis_title=reference_name,
        yaxis_title=method_name,
        meta={"pearson_r": r},
    )
    return fig
