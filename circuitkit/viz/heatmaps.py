"""Patching-score heatmaps: layer x position and layer x head, diverging and centred at 0.

The standard views of activation patching (Meng et al. 2022, Wang et al. 2022): one cell per component,
red where restoring the component raises the metric, blue where it lowers it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Float

from circuitkit.viz._common import DIVERGING, layer_labels, position_labels, symmetric_range, to_numpy


def _diverging(
    z: np.ndarray, x: list[str], y: list[str], text: list[list[str]], colorbar_title: str, hover: str
) -> go.Heatmap:
    """A heatmap trace on the diverging scale, white at 0 and symmetric about it."""
    half = symmetric_range(z)
    return go.Heatmap(
        z=z,
        x=x,
        y=y,
        text=text,
        colorscale=DIVERGING,
        zmid=0.0,
        zmin=-half,
        zmax=half,
        colorbar={"title": {"text": colorbar_title}},
        hovertemplate=hover,
    )


def layer_pos_heatmap(
    scores: Float[np.ndarray, "layer pos"],
    tokens: Sequence[str] | None = None,
    *,
    title: str = "",
    colorbar_title: str = "score",
) -> go.Figure:
    """Heatmap of ``scores[layer, pos]``; the position axis is labelled with the prompt's tokens.

    Layer 0 is drawn at the bottom, as the residual stream flows upward.
    """
    z = to_numpy(scores, "scores", ndim=2)
    n_layers, n_pos = z.shape
    x = position_labels(n_pos, tokens)
    y = layer_labels(n_layers)
    text = [[f"{y[i]} · {x[j]}" for j in range(n_pos)] for i in range(n_layers)]
    fig = go.Figure(_diverging(z, x, y, text, colorbar_title, "%{text}<br>%{z:.4g}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="position", yaxis_title="layer")
    fig.update_xaxes(tickangle=-45, type="category")
    fig.update_yaxes(type="category")
    return fig


def layer_head_heatmap(
    scores: Float[np.ndarray, "layer head"],
    *,
    title: str = "",
    colorbar_title: str = "score",
    highlight: Sequence[tuple[int, int]] = (),
) -> go.Figure:
    """Heatmap of ``scores[layer, head]``, each cell labelled ``L{l}H{h}``.

    ``highlight`` draws a box around the given heads (e.g. a ground-truth circuit).
    """
    z = to_numpy(scores, "scores", ndim=2)
    n_layers, n_heads = z.shape
    labels = [[f"L{layer}H{head}" for head in range(n_heads)] for layer in range(n_layers)]
    x = [f"H{h}" for h in range(n_heads)]
    hover = "%{text}: %{z:.4g}<extra></extra>"
    fig = go.Figure(_diverging(z, x, layer_labels(n_layers), labels, colorbar_title, hover))
    for layer, head in highlight:
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise ValueError(f"highlighted head L{layer}H{head} is outside the {n_layers}x{n_heads} grid")
        fig.add_shape(
            type="rect",
            x0=head - 0.5,
            x1=head + 0.5,
            y0=layer - 0.5,
            y1=layer + 0.5,
            line={"color": "black", "width": 2},
        )
    fig.update_layout(title=title, xaxis_title="head", yaxis_title="layer")
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return fig
