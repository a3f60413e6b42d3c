"""`circuitkit evaluate` with edge methods: tables against exact edge patching and ground-truth edges."""

from __future__ import annotations

import pytest

from circuitkit.cli import main
from circuitkit.edges.evaluation import correlation, node_edge_scores
from circuitkit.methods import MethodRequest, run_method
from circuitkit.results import load, load_frame
from circuitkit.tasks import make_task
from circuitkit.tasks.ground_truth import Circuit

ARGS = ["--model", "tiny", "--task", "ioi", "--n-prompts", "4", "--quiet"]


def _planted_style_circuit(tiny_model, n_true: int = 3) -> Circuit:
    """A card-style circuit (edges between node *names*, as planted cards store them) whose edges are
    the ``n_true`` strongest node pairs of exact edge patching on the CLI's prompts."""
    data = make_task("ioi", tiny_model.tokenizer, 4, seed=0, split="heldout")
    exact = run_method("edge-patching", MethodRequest(tiny_model, data))
    pairs = node_edge_scores(exact).sort_values(ascending=False).index[:n_true]
    names = {"embed": "tokens", "logits": "logits"}
    nodes = []
    for label in sorted({x for pair in pairs for x in pair} - set(names)):
        names[label] = f"node_{label.lower()}"
        nodes.append({"name": names[label], "label": label})
    edges = [[names[a], names[b]] for a, b in pairs]
    return Circuit("ck-tiny", "ioi", {}, details={"nodes": nodes, "edges": edges})


def test_evaluate_edge_methods_writes_tables_and_ground_truth(tmp_path, tiny_model, monkeypatch, capsys):
    import circuitkit.tasks.ground_truth as gt_module

    circuit = _planted_style_circuit(tiny_model)
    truth = circuit.edge_pairs()
    assert truth is not None and len(truth) == 3
    monkeypatch.setattr(gt_module, "ground_truth", lambda model, task: circuit)

    rc = main(["evaluate", *ARGS, "--method", "eap", "--method", "eap-ig:steps=2", "--out", str(tmp_path)])
    assert rc == 0
    exact = load(tmp_path / "ck-tiny_ioi_edge-patching")
    eap = load(tmp_path / "ck-tiny_ioi_eap")
    eap_ig = load(tmp_path / "ck-tiny_ioi_eap-ig-steps-2")
    assert exact.provenance.method == "edge-patching" and exact.families == ["edge"]
    assert len(exact.table) == 479  # every edge of ck-tiny (README)
    assert eap_ig.provenance.options == {"steps": 2} and eap.provenance.n_prompts == 4
    # No node sweep ran: edge methods alone do not need activation patching.
    assert not (tmp_path / "ck-tiny_ioi_activation.json").exists()

    corr, meta = load_frame(tmp_path / "ck-tiny_ioi_edge_correlation")
    assert list(corr["method"]) == ["eap", "eap-ig:steps=2"] and meta["n_prompts"] == 4
    row = corr.set_index("method").loc["eap"]
    assert row["pearson"] == pytest.approx(correlation(exact, eap)["pearson"], abs=1e-9)
    assert row["passes"] == 3

    curve, _ = load_frame(tmp_path / "ck-tiny_ioi_edge_faithfulness")
    assert set(curve["method"]) == {"edge-patching", "eap", "eap-ig:steps=2"}
    assert curve["k"].max() <= 479

    gt, gt_meta = load_frame(tmp_path / "ck-tiny_ioi_edge_ground_truth")
    assert [tuple(e) for e in gt_meta["edges"]] == truth
    by = gt.set_index("method")
    # The truth is exact patching's top node pairs, so exact patching ranks it perfectly.
    assert by.loc["edge-patching", "roc_auc"] == 1.0 and by.loc["edge-patching", "precision"] == 1.0
    assert by["roc_auc"].between(0, 1).all() and set(by.index) == {"edge-patching", "eap", "eap-ig:steps=2"}
    assert "eap-ig:steps=2" in capsys.readouterr().out


def test_edge_pairs_maps_card_names_to_components():
    card = {
        "nodes": [{"name": "year", "label": "MLP0"}, {"name": "tens", "label": "L1H1"}],
        "edges": [["tokens", "year"], ["year", "tens"], ["tens", "logits"]],
    }
    c = Circuit("m", "greater_than", {}, details=card)
    assert c.edge_pairs() == [("tokens", "MLP0"), ("MLP0", "L1H1"), ("L1H1", "logits")]
    assert Circuit("m", "t", {}).edge_pairs() is None
    with pytest.raises(ValueError, match="unknown nodes"):
        Circuit("m", "t", {}, details={**card, "edges": [["year", "units"]]}).edge_pairs()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--method", "eap", "--ablation", "zero"], "--ablation patch"),
        (["--method", "eap-ig:steps=0"], "steps"),
        (["--method", "edge-patching", "--method", "edge-patching:implementation=loop"], "twice"),
        (["--method", "eap:bogus=1"], "bogus"),
    ],
)
def test_evaluate_edge_user_errors_are_one_line(tmp_path, capsys, extra, message):
    rc = main(["evaluate", *ARGS, *extra, "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())  # refused before anything ran or was written
