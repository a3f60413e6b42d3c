"""A discovered circuit as a layered graph, optionally overlaid on a ground-truth circuit.

Nodes are components (heads ``L{l}H{h}``, MLPs, dictionary latents) placed by layer; colour is the
node's role or its score; with a ground truth, the marker says whether a node is a true positive, a
false positive, or a miss (in the ground truth, not found) — the comparison ACDC (Conmy et al. 2023)
and auto-circuit draw as ROC points, shown here node by node.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from circuitkit.viz._common import DIVERGING, symmetric_range

STATUS_SYMBOL = {
    "found": "circle",
    "true positive": "circle",
    "false positive": "x",
    "miss": "circle-open",
}


def node_status(in_circuit: bool, in_truth: bool | None) -> str | None:
    """``found`` without a ground truth; else true positive / false positive / miss; None: not drawn."""
    if in_truth is None:
        return "found" if in_circuit else None
    if in_circuit:
        return "true positive" if in_truth else "false positive"
    return "miss" if in_truth else None


def _positions(nodes: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """x: rank within the node's layer (by ``column`` when given, else table order); y: layer."""
    order = nodes["column"] if "column" in nodes.columns else pd.Series(range(len(nodes)), index=nodes.index)
    x = order.groupby(nodes["layer"]).rank(method="first").to_numpy() - 1
    # Centre each layer's row so small layers sit in the middle, like a layered drawing.
    width = nodes.groupby("layer")["layer"].transform("size").to_numpy()
    return x - (width - 1) / 2, nodes["layer"].to_numpy(dtype=float)


def circuit_graph(
    nodes: pd.DataFrame,
    edges: pd.DataFrame | None = None,
    *,
    truth: Collection[str] | None = None,
    color_by: Literal["role", "score"] = "role",
    title: str = "Circuit",
) -> go.Figure:
    """Draw the circuit's nodes (and edges) layer by layer.

    Args:
        nodes: one row per candidate component: ``node`` (unique label), ``layer`` (int), ``score``
            (float), ``in_circuit`` (bool); optional ``role`` (str) and ``column`` (order within a layer).
            Pass every candidate when giving ``truth``, so misses have a place.
        edges: optional ``src``, ``dst`` (node labels) and ``weight``; edges touching an undrawn node
            are skipped.
        truth: labels of the ground-truth circuit's nodes, or None for no overlay.
        color_by: ``role`` (one legend entry per role) or ``score`` (diverging, centred at 0).
    Each node trace carries ``customdata = [[label, score], ...]`` so a click can name the node.
    """
    need = {"node", "layer", "score", "in_circuit"}
    if missing := need - set(nodes.columns):
        raise ValueError(f"the nodes table lacks columns {sorted(missing)}; it has {list(nodes.columns)}")
    if nodes["node"].duplicated().any():
        dup = nodes.loc[nodes["node"].duplicated(), "node"].tolist()[:5]
        raise ValueError(f"node labels must be unique; repeated: {dup}")
    if color_by not in ("role", "score"):
        raise ValueError(f"color_by must be 'role' or 'score', got {color_by!r}")
    truth_set = None if truth is None else set(truth)
    if truth_set is not None and (unknown := truth_set - set(nodes["node"])):
        raise ValueError(f"ground-truth nodes {sorted(unknown)[:5]} are not among the candidate nodes")
    df = nodes.copy()
    df["x"], df["y"] = _positions(df)
    df["status"] = [
        node_status(bool(c), None if truth_set is None else n in truth_set)
        for n, c in zip(df["node"], df["in_circuit"], strict=True)
    ]
    df = df[df["status"].notna()]
    if "role" not in df.columns:
        df["role"] = "component"
    df["role"] = df["role"].fillna("other").astype(str)

    fig = go.Figure()
    if edges is not None and len(edges):
        _add_edges(fig, df, edges)
    half = symmetric_range(df["score"].to_numpy(dtype=float)) if len(df) else 1.0
    groups = df.groupby("role", sort=True) if color_by == "role" else df.groupby("status", sort=False)
    palette = qualitative.D3
    for i, (key, part) in enumerate(groups):
        marker: dict = {
            "size": 18,
            "symbol": [STATUS_SYMBOL[s] for s in part["status"]],
            "line": {"width": 2},
        }
        if color_by == "role":
            marker["color"] = palette[i % len(palette)]
        else:
            marker.update(
                color=part["score"].to_numpy(dtype=float),
                colorscale=DIVERGING,
                cmin=-half,
                cmax=half,
                cmid=0.0,
                showscale=i == 0,
                colorbar={"title": {"text": "score"}},
            )
        fig.add_trace(
            go.Scatter(
                x=part["x"].to_numpy(),
                y=part["y"].to_numpy(),
                mode="markers+text",
                text=part["node"].tolist(),
                textposition="top center",
                customdata=np.array(
                    [[n, float(s)] for n, s in zip(part["node"], part["score"], strict=True)], dtype=object
                ),
                marker=marker,
                name=str(key),
                hovertemplate="%{customdata[0]}<br>score %{customdata[1]:.4g}<br>"
                + ("role " + str(key) if color_by == "role" else "%{fullData.name}")
                + "<extra></extra>",
            )
        )
    if truth_set is not None:
        # Legend entries for the marker shapes, which each role trace mixes.
        for status in ("true positive", "false positive", "miss"):
            fig.add_trace(
                go.Scatter(
                    x=[None],
                    y=[None],
                    mode="markers",
                    marker={"symbol": STATUS_SYMBOL[status], "size": 12, "color": "black"},
                    name=status,
                    legendgroup="status",
                )
            )
    n_layers = int(nodes["layer"].max()) + 1 if len(nodes) else 0
    fig.update_yaxes(
        tickvals=list(range(n_layers)),
        ticktext=[f"L{layer}" for layer in range(n_layers)],
        title="layer",
        zeroline=False,
        range=[-0.5, n_layers - 0.5],
    )
    fig.update_xaxes(showticklabels=False, zeroline=False, showgrid=False)
    fig.update_layout(title=title, height=140 + 90 * max(n_layers, 1), clickmode="event+select")
    return fig


def _add_edges(fig: go.Figure, df: pd.DataFrame, edges: pd.DataFrame) -> None:
    need = {"src", "dst", "weight"}
    if missing := need - set(edges.columns):
        raise ValueError(f"the edges table lacks columns {sorted(missing)}; it has {list(edges.columns)}")
    where = {n: (x, y) for n, x, y in zip(df["node"], df["x"], df["y"], strict=True)}
    drawn = edges[edges["src"].isin(where) & edges["dst"].isin(where)]
    top = float(drawn["weight"].abs().max()) if len(drawn) else 1.0
    for src, dst, w in zip(drawn["src"], drawn["dst"], drawn["weight"], strict=True):
        (x0, y0), (x1, y1) = where[src], where[dst]
        fig.add_trace(
            go.Scatter(
                x=[x0, x1],
                y=[y0, y1],
                mode="lines",
                line={
                    "width": 0.5 + 4 * abs(float(w)) / (top or 1.0),
                    "color": "#d62728" if w > 0 else "#1f77b4",
                },
                opacity=0.5,
                hoverinfo="skip",
                showlegend=False,
                meta={"edge": [src, dst, float(w)]},
            )
        )
