"""The explorer on a shipped planted model: the Circuit page draws heads and MLPs with the planted edges
and counts true / false positives as the library does; the Edge circuit page colours the shipped edge
result against the card's planted edges."""

from __future__ import annotations

import numpy as np
import pytest

from circuitkit.models.zoo import PLANTED, builtin_dir, is_model_dir
from tests.app.conftest import assert_clean, figures, open_page

SHIPPED = sorted(n for n in PLANTED if is_model_dir(builtin_dir(n)))

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not SHIPPED, reason="no planted model ships")]


@pytest.fixture(params=SHIPPED)
def planted(request):
    return request.param, PLANTED[request.param].task


def test_circuit_page_draws_planted_nodes_and_edges(planted):
    from circuitkit.tasks.ground_truth import ground_truth

    name, task = planted
    truth = ground_truth(name, task)
    n_true = len(truth.heads) + len(truth.mlps)
    at = open_page("views/circuit.py", model=name, task=task)
    assert_clean(at)
    graph = next(f for f in figures(at) if f.layout.title.text.startswith(f"Top {n_true} heads and MLPs"))
    drawn = {label for t in graph.data if t.customdata is not None for label, _ in t.customdata}
    assert {f"MLP{la}" for la in truth.mlps} <= drawn
    # the card's effects rank heads and MLPs together; the counts are those of that ranking
    heads = np.asarray(truth.details["head_effects_denoising"]).ravel()
    mlps = np.asarray(truth.details["mlp_effects_denoising"])
    n_heads = len(truth.details["head_effects_denoising"][0])
    labels = [f"L{i // n_heads}H{i % n_heads}" for i in range(len(heads))] + [
        f"MLP{i}" for i in range(len(mlps))
    ]
    order = np.argsort(-np.abs(np.concatenate([heads, mlps])), kind="stable")[:n_true]
    true = {f"L{la}H{h}" for la, h in truth.heads} | {f"MLP{la}" for la in truth.mlps}
    tp = sum(labels[i] in true for i in order)
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["true positives"]) == tp and int(metrics["false positives"]) == n_true - tp
    # planted edges between drawn nodes are lines in the graph
    lines = [t for t in graph.data if t.mode == "lines"]
    assert lines, "the planted edges are drawn"
    # an MLP node has no attention pattern: picking it says so instead of failing
    at.selectbox(key="node").set_value(f"MLP{(truth.mlps or [0])[0]}").run()  # IOI's circuit has no MLP
    assert_clean(at)


def test_edge_page_marks_planted_edges(planted):
    from app import data
    from circuitkit.tasks.ground_truth import ground_truth
    from circuitkit.viz.edges import truth_overlap

    name, task = planted
    stored = data.find_result(model=name, task=task, method="eap", family="edge")
    if stored is None:
        pytest.skip(f"no shipped EAP result for {name}")
    truth = ground_truth(name, task).edge_pairs()
    at = open_page("views/edge_circuit.py", model=name, task=task, edge_method="eap")
    assert_clean(at)
    shown = {m.label: m.value for m in at.metric}
    want = truth_overlap(stored, truth, len(truth))
    assert shown["true edges drawn"] == f"{want['true_positives']} of {len(truth)}"
    assert int(shown["false edges drawn"]) == want["false_positives"]
    fig = next(f for f in figures(at) if "edges" in (f.layout.title.text or ""))
    names = {t.name for t in fig.data}
    assert "true edge missed by the top k" in names
