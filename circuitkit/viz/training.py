"""Dictionary training curves across runs (loss, L0, FVU, dead fraction) and FVU against L0.

FVU = ‖x − x̂‖² / ‖x − mean(x)‖²; the sparsity-fidelity frontier (FVU against L0) is how Gao et al.
(2024) compare dictionaries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

DEFAULT_METRICS = ("loss", "l0", "fvu", "dead_fraction")


def training_curves(
    runs: Mapping[str, pd.DataFrame],
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    x: str = "step",
    cols: int = 2,
    log_y: Sequence[str] = ("loss",),
) -> go.Figure:
    """One panel per metric, one line per run (same colour for a run in every panel).

    ``runs[name]`` has a column ``x`` and some of ``metrics``; a panel skips runs without that column.
    """
    if not metrics:
        raise ValueError("pass at least one metric column to plot")
    rows = -(-len(metrics) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(metrics))
    palette = qualitative.Plotly
    for r, (name, df) in enumerate(runs.items()):
        if x not in df.columns:
            raise ValueError(f"run {name!r} has no {x!r} column (columns: {', '.join(map(str, df.columns))})")
        for i, metric in enumerate(metrics):
            if metric not in df.columns:
                continue
            part = df[[x, metric]].dropna()
            fig.add_trace(
                go.Scatter(
                    x=part[x].to_numpy(),
                    y=part[metric].to_numpy(dtype=float),
                    mode="lines",
                    name=name,
                    legendgroup=name,
                    showlegend=i == 0,
                    line={"color": palette[r % len(palette)]},
                    meta={"run": name, "metric": metric},
                ),
                row=i // cols + 1,
                col=i % cols + 1,
            )
    for i, metric in enumerate(metrics):
        fig.update_xaxes(title_text=x, row=i // cols + 1, col=i % cols + 1)
        if metric in log_y:
            fig.update_yaxes(type="log", row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(height=320 * rows, title="Training curves")
    return fig


def fvu_vs_l0(summary: pd.DataFrame, *, run: str = "run", l0: str = "l0", fvu: str = "fvu") -> go.Figure:
    """One point per run at its (L0, FVU); lower-left is better."""
    missing = [c for c in (run, l0, fvu) if c not in summary.columns]
    if missing:
        raise ValueError(f"the summary table lacks columns {missing}; it has {list(summary.columns)}")
    fig = go.Figure(
        go.Scatter(
            x=summary[l0].to_numpy(dtype=float),
            y=summary[fvu].to_numpy(dtype=float),
            text=summary[run].astype(str).tolist(),
            mode="markers+text",
            textposition="top center",
            hovertemplate="%{text}<br>L0 %{x:.3g}<br>FVU %{y:.4g}<extra></extra>",
        )
    )
    fig.update_layout(title="FVU against L0 (final values per run)", xaxis_title="L0", yaxis_title="FVU")
    return fig
