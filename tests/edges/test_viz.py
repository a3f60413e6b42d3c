"""The edge-circuit figure: which edges are drawn, where, and what a click on one returns."""

from __future__ import annotations

import pandas as pd
import pytest

from circuitkit.edges import EdgeGraph
from circuitkit.edges.scores import EdgeScores
from circuitkit.results import Provenance, ResultTable
from circuitkit.viz.edges import edge_circuit_figure, node_xy, select_edges, truth_overlap


@pytest.fixture()
def result() -> ResultTable:
    import torch

    g = EdgeGraph(n_layers=2, n_heads=2, has_mlp=True)
    scores = torch.zeros(g.mask.shape, dtype=torch.float64)
    for name, v in {
        "L0H1->L1H0.k": 3.0,
        "MLP1->logits": -2.0,
        "embed->L0H0.q": 1.0,
        "L0H0->MLP0.in": 0.1,
    }.items():
        scores[g.parse_edge(name)] = v
    return EdgeScores("eap", g, scores, 0.0, 1.0, 3, 0.1).to_table("toy", "ioi", "logit_diff")


def _clicks(fig):
    (trace,) = [t for t in fig.data if t.name == "edges"]
    return [(s, r, float(v)) for s, r, v in trace.customdata]


def test_top_k_and_threshold(result):
    assert list(select_edges(result, top_k=2)["component"]) == ["L0H1->L1H0.k", "MLP1->logits"]
    fig = edge_circuit_figure(result, top_k=3)
    assert _clicks(fig) == [("L0H1", "L1H0.k", 3.0), ("MLP1", "logits", -2.0), ("embed", "L0H0.q", 1.0)]
    assert [s for s, *_ in _clicks(edge_circuit_figure(result, top_k=None, threshold=0.5))] == [
        "L0H1",
        "MLP1",
        "embed",
    ]
    assert "edges" not in [t.name for t in edge_circuit_figure(result, top_k=0).data]


def test_width_and_colour_follow_the_score(result):
    fig = edge_circuit_figure(result, top_k=None, threshold=0.05)
    lines = [t for t in fig.data if t.mode == "lines"]
    by_width = {t.line.width: t for t in lines}
    widest = by_width[max(by_width)]
    assert widest.line.color == "#d62728" and widest.line.dash == "dash"  # L0H1 -> L1H0.k, +3
    neg = [t for t in lines if t.line.color == "#1f77b4"]
    assert len(neg) == 1 and neg[0].line.width < widest.line.width
    thinnest = by_width[min(by_width)]  # L0H0 -> MLP0.in, 0.1
    assert (thinnest.x[0], thinnest.y[0], thinnest.x[1]) == (*node_xy("L0H0", 2, 2), node_xy("MLP0", 2, 2)[0])
    # The key edge ends at its receiver head, a key sits at the node's centre.
    assert (widest.x[0], widest.y[0]) == node_xy("L0H1", 2, 2)
    assert (widest.x[1], widest.y[1]) == node_xy("L1H0", 2, 2)


def test_rejects_node_tables():
    node = ResultTable(
        pd.DataFrame(
            {
                "family": ["head"],
                "layer": [0],
                "head": [0],
                "pos": [None],
                "component": ["L0H0"],
                "score": [1.0],
            }
        ),
        Provenance("m", "t", "atp", "logit_diff"),
    )
    with pytest.raises(ValueError, match="not an edge result"):
        edge_circuit_figure(node)


def test_truth_overlay_marks_true_false_and_missed_edges(result):
    """Against true node pairs: a drawn true edge is green, a drawn false one grey, a true edge outside
    the top k is added as a dotted orange line, and the counts say the same."""
    truth = [("L0H1", "L1H0"), ("tokens", "L0H0"), ("L0H0", "MLP1")]  # the last one scores 0
    fig = edge_circuit_figure(result, top_k=2, truth=truth)
    lines = [t for t in fig.data if t.mode == "lines" and t.showlegend is False]
    colours = {t.line.color for t in lines}
    assert colours == {"#2ca02c", "#9e9e9e"}  # L0H1 -> L1H0.k true, MLP1 -> logits false
    (green,) = [t for t in lines if t.line.color == "#2ca02c"]
    assert (green.x[0], green.y[0]) == node_xy("L0H1", 2, 2)
    (missed,) = [t for t in fig.data if t.name == "true edge missed by the top k"]
    starts = {(x, y) for x, y in zip(missed.x[::3], missed.y[::3], strict=True)}
    assert starts == {node_xy("embed", 2, 2), node_xy("L0H0", 2, 2)}
    assert truth_overlap(result, truth, 2) == {
        "true_positives": 1,
        "false_positives": 1,
        "misses": 2,
        "n_true": 3,
    }
    # top 3 draws embed -> L0H0.q too: q, k and v of a receiver count as one true node pair
    assert truth_overlap(result, truth, 3)["true_positives"] == 2
    nodes = next(t for t in fig.data if t.name == "nodes")
    ringed = {n for n, w in zip(nodes.text, nodes.marker.line.width, strict=True) if w > 0}
    assert ringed == {"L0H1", "L1H0", "embed", "L0H0", "MLP1"}
    # without a truth the colour is the score's sign
    plain = {t.line.color for t in edge_circuit_figure(result, top_k=2).data if t.mode == "lines"}
    assert plain == {"#d62728", "#1f77b4"}
