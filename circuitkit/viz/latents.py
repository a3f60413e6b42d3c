"""Pieces of a dictionary-latent dashboard, after Bricken et al. (2023) and Neuronpedia: the latent's
top-activating contexts with tokens highlighted, its activation histogram, the logits its decoder
direction promotes and suppresses, and where its firing density falls among all latents."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from circuitkit.viz._common import to_numpy

HIGHLIGHT = [[0.0, "#ffffff"], [1.0, "#e6550d"]]


def top_examples(
    tokens: Sequence[Sequence[str]],
    activations: Sequence[Sequence[float]],
    *,
    title: str = "Top-activating examples",
) -> go.Figure:
    """Each row one context; each cell a token shaded by the latent's activation on it.

    ``tokens[i]`` and ``activations[i]`` have equal lengths; rows may differ (short rows are padded with
    empty cells). Row 0 (the strongest example) is at the top.
    """
    if len(tokens) != len(activations):
        raise ValueError(f"{len(tokens)} token rows but {len(activations)} activation rows")
    width = max((len(t) for t in tokens), default=0)
    z = np.full((len(tokens), width), np.nan)
    text = [[""] * width for _ in tokens]
    for i, (toks, acts) in enumerate(zip(tokens, activations, strict=True)):
        if len(toks) != len(acts):
            raise ValueError(f"example {i}: {len(toks)} tokens but {len(acts)} activations")
        z[i, : len(acts)] = to_numpy(acts)
        text[i][: len(toks)] = [t.replace(" ", "␣") for t in toks]
    top = float(np.nanmax(z)) if np.isfinite(z).any() else 1.0
    fig = go.Figure(
        go.Heatmap(
            z=z,
            text=text,
            texttemplate="%{text}",
            colorscale=HIGHLIGHT,
            zmin=0.0,
            zmax=max(top, 1e-9),
            showscale=True,
            colorbar={"title": {"text": "activation"}},
            hovertemplate="%{text}: %{z:.3g}<extra></extra>",
            xgap=1,
            ygap=3,
        )
    )
    fig.update_layout(title=title, height=max(220, 34 * len(tokens) + 90))
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(
        autorange="reversed",
        tickvals=list(range(len(tokens))),
        ticktext=[f"#{i + 1}" for i in range(len(tokens))],
        showgrid=False,
    )
    return fig


def activation_histogram(
    values, *, title: str = "Activation histogram (non-zero)", nbins: int = 50, log_y: bool = True
) -> go.Figure:
    """Histogram of a latent's activations (pass the firing ones: zeros would swamp the plot)."""
    x = to_numpy(values, "values").ravel()
    fig = go.Figure(go.Histogram(x=x, nbinsx=nbins, name="activation"))
    fig.update_layout(title=title, xaxis_title="activation", yaxis_title="count", bargap=0.02)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def top_logits(
    positive: Sequence[tuple[str, float]],
    negative: Sequence[tuple[str, float]],
    *,
    title: str = "Logits the latent promotes / suppresses",
) -> go.Figure:
    """Two horizontal bar charts: tokens whose logits the decoder direction raises most and lowers most.

    Each list is (token, value), strongest first.
    """
    fig = go.Figure()
    for name, rows, colour in (("positive", positive, "#d62728"), ("negative", negative, "#1f77b4")):
        fig.add_trace(
            go.Bar(
                y=[t.replace(" ", "␣") for t, _ in rows],
                x=[float(v) for _, v in rows],
                orientation="h",
                name=name,
                marker_color=colour,
            )
        )
    fig.update_layout(title=title, xaxis_title="logit effect", barmode="overlay")
    fig.update_yaxes(autorange="reversed", type="category")
    return fig


def density_histogram(
    log10_density,
    *,
    selected: float | None = None,
    title: str = "Firing density of all latents",
) -> go.Figure:
    """Histogram of log10(firing frequency) across a dictionary's latents, a line at ``selected``.

    Dead latents (density 0) have log10 = -inf; pass them filtered out and report their count apart.
    """
    x = to_numpy(log10_density, "log10_density").ravel()
    fig = go.Figure(go.Histogram(x=x, nbinsx=50, name="latents"))
    if selected is not None:
        fig.add_vline(x=float(selected), line={"color": "#e6550d", "width": 3})
    fig.update_layout(
        title=title, xaxis_title="log10 firing frequency", yaxis_title="latents", meta={"selected": selected}
    )
    return fig
