"""One head's attention pattern on one prompt: query positions down, key positions across."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Float

from circuitkit.viz._common import SEQUENTIAL, position_labels, to_numpy


def attention_pattern(
    pattern: Float[np.ndarray, "query key"],
    tokens: Sequence[str] | None = None,
    *,
    title: str = "",
) -> go.Figure:
    """Heatmap of ``pattern[query, key]`` (rows sum to 1 for a softmax pattern), 0..1 colour range."""
    z = to_numpy(pattern, "pattern", ndim=2)
    if z.shape[0] != z.shape[1]:
        raise ValueError(f"an attention pattern is square [query, key], got shape {z.shape}")
    labels = position_labels(z.shape[0], tokens)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=labels,
            y=labels,
            colorscale=SEQUENTIAL,
            zmin=0.0,
            zmax=1.0,
            colorbar={"title": {"text": "attention"}},
            hovertemplate="query %{y}<br>key %{x}<br>%{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(title=title, xaxis_title="key position", yaxis_title="query position")
    fig.update_xaxes(type="category", tickangle=-45)
    # Query 0 at the top, as the pattern is written: causal masks show as an upper-right empty triangle.
    fig.update_yaxes(type="category", autorange="reversed")
    return fig
