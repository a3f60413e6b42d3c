"""Per-head code histograms for discrete-SAE head identification (O'Neill & Bui 2024).

Each (prompt, head) gets one code, the argmax latent of a small SAE over head outputs; a head that
takes codes on positive prompts it never takes on negative ones is a circuit candidate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def code_histograms(
    codes: Mapping[str, tuple[Sequence[int], Sequence[int]]],
    *,
    cols: int = 4,
    title: str = "Codes per head: positive vs negative prompts",
) -> go.Figure:
    """One panel per head: ``codes[label] = (codes on positive prompts, codes on negative prompts)``.

    Codes are categories, so the x axis is categorical; overlaid bars show which codes are exclusive.
    """
    if not codes:
        raise ValueError("no heads to draw: pass at least one head's codes")
    labels = list(codes)
    rows = -(-len(labels) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=labels)
    for i, label in enumerate(labels):
        pos, neg = codes[label]
        for name, values, colour in (("positive", pos, "#2ca02c"), ("negative", neg, "#7f7f7f")):
            fig.add_trace(
                go.Histogram(
                    x=[str(int(c)) for c in values],
                    name=name,
                    legendgroup=name,
                    showlegend=i == 0,
                    marker_color=colour,
                    opacity=0.7,
                    meta={"head": label, "kind": name},
                ),
                row=i // cols + 1,
                col=i % cols + 1,
            )
        fig.update_xaxes(type="category", row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(barmode="overlay", height=230 * rows + 80, title=title)
    return fig
