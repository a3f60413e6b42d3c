"""An edge circuit as a layered graph: nodes by layer, edges by score (width = |score|, colour = sign).

A pure function of an edge :class:`circuitkit.results.ResultTable` (rows of family ``edge`` with
``sender`` / ``receiver`` columns, as ``circuitkit discover --method eap|eap-ig|edge-patching`` writes).
Layout: ``embed`` at the bottom, each layer's heads in a row with its MLP half a row above them (the MLP
reads after its own layer's heads), ``logits`` on top. An edge ends at its receiver node, slightly left
for a query, centred for a key, right for a value (dash: solid / dash / dot). Positive effects red,
negative blue, as in the heatmaps. Every drawn edge has a marker at its middle whose ``customdata`` is
``[sender, receiver, score]``, so a click names the edge.

With a ground truth (``truth``: true ``(sender, receiver node)`` pairs, e.g. a planted circuit's edges) the
colour says whether an edge is true instead: drawn true edges green, drawn edges outside the truth grey,
true edges that the top k missed orange and dotted; the true circuit's nodes are ringed in green.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from circuitkit.results import ResultTable

_DASH = {"q": "solid", "k": "dash", "v": "dot"}
_OFFSET = {"q": -0.22, "k": 0.0, "v": 0.22}
_POS, _NEG = "#d62728", "#1f77b4"
_TRUE, _FALSE, _MISSED = "#2ca02c", "#9e9e9e", "#ff7f0e"
N_WIDTHS = 6
"""Edges are drawn in this many width classes (one plotly trace per class, sign and dash)."""


def select_edges(result: ResultTable, top_k: int | None = 50, threshold: float | None = None) -> pd.DataFrame:
    """The edges to draw: the ``top_k`` by ``|score|`` (None: all) with ``|score| >= threshold``.

    Returns the edge rows (``sender``, ``receiver``, ``score`` ...) sorted by ``|score|``, largest first.
    """
    t = result.table
    if "sender" not in t.columns or "receiver" not in t.columns:
        raise ValueError(
            "not an edge result: the table has no sender / receiver columns (use an edge method)"
        )
    df = t[t["family"] == "edge"].dropna(subset=["score"])
    df = df.loc[df["score"].abs().sort_values(ascending=False, kind="stable").index]
    if threshold is not None:
        df = df[df["score"].abs() >= threshold]
    if top_k is not None:
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        df = df.head(top_k)
    return df


def _truth_pairs(truth) -> set[tuple[str, str]]:
    """True edges as (sender, receiver node) with the input called ``embed`` as in the edge graph."""
    return {("embed" if a == "tokens" else a, b.split(".")[0]) for a, b in truth}


def edge_truth_table(edges: pd.DataFrame, truth) -> pd.DataFrame:
    """Edge rows with a ``true`` column: whether (sender, receiver node) is a true edge."""
    want = _truth_pairs(truth)
    node = edges["receiver"].str.split(".").str[0]
    return edges.assign(true=[(s, r) in want for s, r in zip(edges["sender"], node, strict=True)])


def truth_overlap(result: ResultTable, truth, k: int) -> dict[str, int]:
    """True positives, false positives and misses of the top ``k`` edges against true node pairs; a
    receiver's q, k and v inputs count as one node pair (found if any of them is drawn)."""
    want = _truth_pairs(truth)
    top = edge_truth_table(select_edges(result, top_k=k), truth)
    pairs = list(zip(top["sender"], top["receiver"].str.split(".").str[0], top["true"], strict=True))
    found = {(s, r) for s, r, t in pairs if t}
    drawn_false = {(s, r) for s, r, t in pairs if not t}
    return {
        "true_positives": len(found),
        "false_positives": len(drawn_false),
        "misses": len(want - found),
        "n_true": len(want),
    }


def _shape(result: ResultTable) -> tuple[int, int]:
    """(n_layers, n_heads) from the provenance (edge methods record them), else from the table."""
    x = result.provenance.extra
    if "n_layers" in x and "n_heads" in x:
        return int(x["n_layers"]), int(x["n_heads"])
    t = result.table
    heads = t["head"].dropna()
    return int(t["layer"].max()), int(heads.max()) + 1 if len(heads) else 1


def node_xy(node: str, n_layers: int, n_heads: int) -> tuple[float, float]:
    """Where a node sits: ``embed`` (y -1), ``L{l}H{h}`` (x h, y l), ``MLP{l}`` (x n_heads, y l + 0.5),
    ``logits`` (y n_layers)."""
    mid = (n_heads - 1) / 2
    if node == "embed":
        return mid, -1.0
    if node == "logits":
        return mid, float(n_layers)
    if node.startswith("MLP"):
        return float(n_heads), int(node[3:]) + 0.5
    layer, head = node[1:].split("H")
    return float(head), float(layer)


def edge_circuit_figure(
    result: ResultTable,
    *,
    top_k: int | None = 50,
    threshold: float | None = None,
    title: str | None = None,
    truth=None,
) -> go.Figure:
    """Draw the selected edges of an edge result (see :func:`select_edges`) over the model's nodes;
    ``truth`` (true ``(sender, receiver node)`` pairs) colours them true / false and adds the missed ones."""
    n_layers, n_heads = _shape(result)
    edges = select_edges(result, top_k, threshold)
    want = _truth_pairs(truth) if truth is not None else None
    fig = go.Figure()
    top = float(edges["score"].abs().max()) if len(edges) else 1.0
    top = top or 1.0
    mids: list[tuple[float, float, str, str, float]] = []
    groups: dict[tuple[int, bool, str], tuple[list, list]] = {}
    for s, r, score in zip(edges["sender"], edges["receiver"], edges["score"], strict=True):
        x0, y0 = node_xy(s, n_layers, n_heads)
        node, _, kind = r.partition(".")
        x1, y1 = node_xy(node, n_layers, n_heads)
        x1 += _OFFSET.get(kind, 0.0)
        width = min(N_WIDTHS - 1, int(abs(score) / top * N_WIDTHS))
        colour = (_POS if score > 0 else _NEG) if want is None else (_TRUE if (s, node) in want else _FALSE)
        xs, ys = groups.setdefault((width, colour, _DASH.get(kind, "solid")), ([], []))
        xs += [x0, x1, None]
        ys += [y0, y1, None]
        mids.append(((x0 + x1) / 2, (y0 + y1) / 2, s, r, float(score)))
    for (width, colour, dash), (xs, ys) in sorted(groups.items()):
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={"width": 0.7 + 1.3 * width, "color": colour, "dash": dash},
                opacity=0.35 + 0.1 * width,
                hoverinfo="skip",
                showlegend=False,
            )
        )
    if want is not None:
        drawn = {(s, r.split(".")[0]) for s, r in zip(edges["sender"], edges["receiver"], strict=True)}
        xs, ys = [], []
        for s, r in sorted(want - drawn):
            (x0, y0), (x1, y1) = node_xy(s, n_layers, n_heads), node_xy(r, n_layers, n_heads)
            xs += [x0, x1, None]
            ys += [y0, y1, None]
        for name, colour, dash, x, y in (
            ("true edge (drawn)", _TRUE, "solid", [None], [None]),
            ("not in the true circuit", _FALSE, "solid", [None], [None]),
            ("true edge missed by the top k", _MISSED, "dot", xs or [None], ys or [None]),
        ):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    mode="lines",
                    line={"width": 2.5, "color": colour, "dash": dash},
                    name=name,
                    hoverinfo="skip",
                )
            )
    # Every node, faint unless an edge touches it.
    used = set(edges["sender"]) | {r.split(".")[0] for r in edges["receiver"]}
    nodes = ["embed"] + [f"L{la}H{h}" for la in range(n_layers) for h in range(n_heads)]
    has_mlp = result.provenance.extra.get("has_mlp", True)
    nodes += [f"MLP{la}" for la in range(n_layers)] if has_mlp else []
    nodes.append("logits")
    xy = np.array([node_xy(n, n_layers, n_heads) for n in nodes])
    on = np.array([n in used for n in nodes])
    in_truth = {x for pair in want for x in pair} if want is not None else set()
    fig.add_trace(
        go.Scatter(
            x=xy[:, 0],
            y=xy[:, 1],
            mode="markers+text",
            text=nodes,
            textposition="top center",
            marker={
                "size": 14,
                "color": ["#444" if o else "#ddd" for o in on],
                "symbol": ["square" if n.startswith("MLP") else "circle" for n in nodes],
                "line": {"width": [3 if n in in_truth else 0 for n in nodes], "color": _TRUE},
            },
            name="nodes",
            hovertemplate="%{text}<extra></extra>",
            showlegend=False,
        )
    )
    if mids:
        m = np.array([(x, y) for x, y, *_ in mids])
        fig.add_trace(
            go.Scatter(
                x=m[:, 0],
                y=m[:, 1],
                mode="markers",
                marker={"size": 7, "color": [_POS if sc > 0 else _NEG for *_, sc in mids], "opacity": 0.6},
                customdata=np.array([[s, r, sc] for *_, s, r, sc in mids], dtype=object),
                hovertemplate="%{customdata[0]} → %{customdata[1]}<br>"
                "score %{customdata[2]:.4g}<extra></extra>",
                name="edges",
                showlegend=False,
            )
        )
    p = result.provenance
    fig.update_yaxes(
        tickvals=[-1, *range(n_layers), n_layers],
        ticktext=["embed", *[f"L{la}" for la in range(n_layers)], "logits"],
        zeroline=False,
        range=[-1.6, n_layers + 0.6],
    )
    fig.update_xaxes(showticklabels=False, zeroline=False, showgrid=False, range=[-0.8, n_heads + 0.8])
    shown = f"top {len(edges)} edges" + (f", |score| ≥ {threshold:g}" if threshold is not None else "")
    fig.update_layout(
        title=title or f"{p.method} edges, {p.model} / {p.task} ({shown})",
        height=160 + 80 * (n_layers + 2),
        clickmode="event+select",
    )
    return fig
