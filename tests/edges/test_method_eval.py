"""Registered edge methods, their result tables on disk and the CLI, and the edge evaluation."""

from __future__ import annotations

import pytest
import torch

from circuitkit.edges import EdgeGraph, edge_matrix, edge_patching, graph_of
from circuitkit.edges.evaluation import (
    correlation,
    evaluate_edges,
    faithfulness,
    faithfulness_curve,
    score_against_edges,
    top_edges,
)
from circuitkit.methods import MethodRequest, run_method
from circuitkit.results import load, save

from .toy import pair_tokens, random_model


@pytest.fixture(scope="module")
def exact(tiny, tiny_ioi):
    return edge_patching(tiny, tiny_ioi.clean_tokens, tiny_ioi.corrupted_tokens, tiny_ioi.metric)


def test_eap_method_table_round_trips(tiny, tiny_ioi, tmp_path):
    res = run_method("eap", MethodRequest(tiny, tiny_ioi, model_name="tiny"))
    t = res.table
    g = EdgeGraph.of(tiny)
    assert len(t) == g.n_edges and set(t["family"]) == {"edge"}
    row = t[t["component"] == "L1H2->L3H0.k"].iloc[0]
    assert (row["sender"], row["receiver"], row["layer"], row["head"]) == ("L1H2", "L3H0.k", 3, 0)
    logits = t[t["receiver"] == "logits"]
    assert set(logits["layer"]) == {tiny.cfg.n_layers} and logits["head"].isna().all()
    assert res.provenance.method == "eap" and res.provenance.passes == 3
    back = load(save(res, tmp_path, "edges"))
    assert graph_of(back) == g
    torch.testing.assert_close(edge_matrix(back.table, g), edge_matrix(t, g), equal_nan=True)


def test_edge_methods_refuse_other_ablations(tiny, tiny_ioi):
    with pytest.raises(ValueError, match="ablation 'zero'"):
        run_method("eap", MethodRequest(tiny, tiny_ioi, ablation="zero"))


def test_cli_discover_writes_edge_results(tmp_path):
    from circuitkit.cli import main

    rc = main(
        [
            "discover",
            "--model",
            "tiny",
            "--method",
            "eap-ig",
            "--option",
            "steps=2",
            "--n-prompts",
            "3",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert rc == 0
    (path,) = tmp_path.glob("*.parquet")
    res = load(path)
    assert set(res.table["family"]) == {"edge"} and {"sender", "receiver"} <= set(res.table.columns)
    assert res.provenance.passes == 2 + 2 * 2


def test_correlation_and_ground_truth(exact):
    assert correlation(exact, exact)["pearson"] == pytest.approx(1.0)
    truth = top_edges(exact, 5)
    perfect = score_against_edges(exact, truth)
    assert perfect["roc_auc"] == pytest.approx(1.0) and perfect["precision"] == perfect["recall"] == 1.0
    flipped = exact.scores.clone()
    flipped[truth] = 0.0  # the true edges ranked last
    worse = score_against_edges(type(exact)(**{**exact.__dict__, "scores": flipped}), truth)
    assert worse["roc_auc"] < 0.5 and worse["precision"] == 0.0
    names = [exact.graph.edge_name(s, r) for s, r in truth.nonzero().tolist()]
    assert score_against_edges(exact, names) == perfect


def test_faithfulness_ends_and_curve(tiny, tiny_ioi, exact):
    d = tiny_ioi
    args = (tiny, d.clean_tokens, d.corrupted_tokens, d.metric)
    g = exact.graph
    assert faithfulness(*args, g.mask) == pytest.approx(1.0, abs=1e-6)
    assert faithfulness(*args, torch.zeros_like(g.mask)) == pytest.approx(0.0, abs=1e-6)
    curve = dict(faithfulness_curve(*args, exact, [1, 10, g.n_edges]))
    assert curve[g.n_edges] == pytest.approx(1.0, abs=1e-6)
    assert curve[10] > 0.5  # a few edges carry the toy model's IOI behaviour


def test_faithfulness_of_a_single_path_circuit():
    """In a circuit of only embed -> logits, every head and MLP reads corrupted senders: m(C) is the
    corrupted run's logits plus the clean-minus-corrupted embedding at the unembedding's input."""
    model = random_model(n_layers=1, n_heads=2, seed=12)
    clean, corrupted, metric = pair_tokens(40, seed=13)
    g = EdgeGraph.of(model)
    f = faithfulness(model, clean, corrupted, metric, ["embed->logits"])
    _, cc = model.run_with_cache(clean)
    _, tc = model.run_with_cache(corrupted)
    final = tc["blocks.0.hook_resid_post"] + cc["blocks.0.hook_resid_pre"] - tc["blocks.0.hook_resid_pre"]
    m_c = float(metric(model.unembed(model.ln_final(final))))
    full, empty = float(metric(model(clean))), float(metric(model(corrupted)))
    assert f == pytest.approx((m_c - empty) / (full - empty), abs=1e-9)
    assert g.n_edges > 1


def test_evaluate_edges_tables(tiny, tiny_ioi):
    req = MethodRequest(tiny, tiny_ioi, model_name="tiny")
    out = evaluate_edges(req, ["eap"], truth=["L0H3->MLP0.in", "MLP0->logits"], sizes=(1, 5))
    corr = out["correlation"]
    assert list(corr["method"]) == ["eap"] and corr["pearson"].iloc[0] > 0.9
    assert set(out["faithfulness"]["method"]) == {"edge-patching", "eap"}
    assert set(out["ground_truth"].columns) >= {"roc_auc", "precision", "recall", "f1"}


def test_notebook_step(tiny, tiny_ioi):
    from circuitkit.edges.step import edge_step

    step = edge_step(tiny, tiny_ioi, methods=["eap"], k=5, sizes=(5,))
    assert list(step.figures) == ["edges: edge-patching", "edges: eap"]
    assert len(step.top) == 5 and step.top["score"].abs().is_monotonic_decreasing
    clicks = next(t for t in step.figures["edges: edge-patching"].data if t.name == "edges").customdata
    assert [(s, r) for s, r, _ in clicks] == list(zip(step.top["sender"], step.top["receiver"], strict=True))


def test_node_pair_ground_truth(exact):
    from circuitkit.edges.evaluation import node_edge_scores, score_against_node_edges

    pairs = node_edge_scores(exact)
    g = exact.graph
    s = g.sender_index["L0H3"]
    assert pairs[("L0H3", "L2H1")] == max(
        abs(float(exact.scores[s, g.receiver_index[f"L2H1.{x}"]])) for x in "qkv"
    )
    best = list(pairs.sort_values(ascending=False).index[:3])
    res = score_against_node_edges(exact, [("tokens" if a == "embed" else a, b) for a, b in best])
    assert res["roc_auc"] == pytest.approx(1.0) and res["precision"] == 1.0
    with pytest.raises(ValueError, match="not node pairs"):
        score_against_node_edges(exact, [("L3H0", "L1H0")])
