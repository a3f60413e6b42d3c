"""The edge-level step of an analysis notebook, as one call: exact edge patching, EAP and EAP-IG, how they
compare, how faithful their top-k edge circuits are, and the figures to show.

The notebooks (``analyses/``) call :func:`edge_step` and display ``step.figures`` with their own
``show``; nothing here prints or draws to the screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go

from circuitkit.edges.evaluation import evaluate_edges
from circuitkit.methods import MethodRequest
from circuitkit.results import ResultTable
from circuitkit.viz.edges import edge_circuit_figure, select_edges


@dataclass
class EdgeStep:
    """What the edge step found."""

    exact: ResultTable
    """Exact edge patching, every edge."""
    results: dict[str, ResultTable]
    """Each approximate method's table, by spec (``eap``, ``eap-ig:steps=5``)."""
    correlation: pd.DataFrame
    """method, pearson, spearman, pearson_without_top, n, passes, seconds (against exact patching)."""
    faithfulness: pd.DataFrame
    """method, k, faithfulness of the top-k edges (everything else patched to the corrupted run)."""
    top: pd.DataFrame
    """The exact top-``k`` edges: sender, receiver, score."""
    figures: dict[str, go.Figure]
    """``edges: <method>`` -> the top-``k`` edge graph of each method, exact first."""


def edge_step(
    model,
    data,
    *,
    methods: Sequence[str] = ("eap", "eap-ig:steps=5"),
    k: int = 20,
    sizes: Sequence[int] = (1, 2, 5, 10, 20, 50, 100, 200),
    model_name: str = "",
) -> EdgeStep:
    """Run the edge methods on a task's prompt pairs (denoising) and collect tables and figures."""
    req = MethodRequest(model, data, model_name=model_name)
    out = evaluate_edges(req, methods, sizes=sizes)
    exact: ResultTable = out["exact"]  # type: ignore[assignment]
    results: dict[str, ResultTable] = out["results"]  # type: ignore[assignment]
    figures = {
        f"edges: {spec}": edge_circuit_figure(res, top_k=k)
        for spec, res in {"edge-patching": exact, **results}.items()
    }
    top = select_edges(exact, top_k=k)[["sender", "receiver", "score"]].reset_index(drop=True)
    return EdgeStep(exact, results, out["correlation"], out["faithfulness"], top, figures)  # type: ignore[arg-type]
