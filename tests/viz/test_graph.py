import numpy as np
import pandas as pd
import pytest

from circuitkit.viz import circuit_graph, node_status


def _nodes():
    return pd.DataFrame(
        {
            "node": ["L0H0", "L0H1", "L1H0", "L1H1", "MLP1"],
            "layer": [0, 0, 1, 1, 1],
            "score": [0.9, -0.3, 0.05, 0.6, 0.2],
            "in_circuit": [True, True, False, True, False],
            "role": ["name mover", "other", "induction", "name mover", "mlp"],
        }
    )


def test_status_table():
    assert node_status(True, None) == "found" and node_status(False, None) is None
    assert node_status(True, True) == "true positive"
    assert node_status(True, False) == "false positive"
    assert node_status(False, True) == "miss"
    assert node_status(False, False) is None


def _drawn(fig):
    out = {}
    for t in fig.data:
        if t.customdata is not None:
            for (label, score), symbol in zip(t.customdata, t.marker.symbol, strict=True):
                out[label] = (float(score), symbol, t.name)
    return out


def test_overlay_marks_true_false_positives_and_misses():
    fig = circuit_graph(_nodes(), truth={"L0H0", "L1H0"}, color_by="role")
    drawn = _drawn(fig)
    # L0H1 and L1H1 found but not in truth; L1H0 missed; MLP1 neither, so not drawn.
    assert drawn == {
        "L0H0": (0.9, "circle", "name mover"),
        "L0H1": (-0.3, "x", "other"),
        "L1H0": (0.05, "circle-open", "induction"),
        "L1H1": (0.6, "x", "name mover"),
    }
    assert {t.name for t in fig.data if t.customdata is None} >= {"true positive", "false positive", "miss"}


def test_score_colouring_and_edges():
    edges = pd.DataFrame({"src": ["L0H0", "L0H0"], "dst": ["L1H1", "MLP1"], "weight": [0.5, -1.0]})
    fig = circuit_graph(_nodes(), edges, color_by="score")
    node_traces = [t for t in fig.data if t.customdata is not None]
    colours = np.concatenate([np.asarray(t.marker.color, dtype=float) for t in node_traces])
    scores = np.concatenate([np.asarray(t.customdata[:, 1], dtype=float) for t in node_traces])
    np.testing.assert_array_equal(colours, scores)
    assert sorted(scores) == sorted([0.9, -0.3, 0.6])
    assert node_traces[0].marker.cmid == 0 and node_traces[0].marker.cmax == 0.9
    # The edge to MLP1 (not drawn) is skipped; the drawn one keeps its endpoints and weight.
    (edge,) = [t for t in fig.data if t.meta and "edge" in t.meta]
    assert edge.meta["edge"] == ["L0H0", "L1H1", 0.5]


def test_bad_tables_get_clear_errors():
    with pytest.raises(ValueError, match="lacks columns"):
        circuit_graph(_nodes().drop(columns="score"))
    with pytest.raises(ValueError, match="not among the candidate"):
        circuit_graph(_nodes(), truth={"L9H9"})
    with pytest.raises(ValueError, match="unique"):
        circuit_graph(pd.concat([_nodes(), _nodes()]))
