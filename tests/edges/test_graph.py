"""The edge vocabulary: which pairs are edges, names, and the split-input settings put back."""

from __future__ import annotations

import pytest
import torch

from circuitkit.edges.graph import EdgeGraph, Receiver, Sender, split_inputs

from .toy import random_model


def test_edge_counts_and_rules():
    g = EdgeGraph(n_layers=2, n_heads=2, has_mlp=True)
    assert [s.name for s in g.senders] == ["embed", "L0H0", "L0H1", "MLP0", "L1H0", "L1H1", "MLP1"]
    names = [r.name for r in g.receivers]
    assert names[:7] == ["L0H0.q", "L0H1.q", "L0H0.k", "L0H1.k", "L0H0.v", "L0H1.v", "MLP0.in"]
    assert names[-1] == "logits"
    # Layer-0 heads' inputs: embed only (6). MLP0: embed + L0 heads (3). Layer-1 heads: embed, L0
    # heads, MLP0 (4 each, 6 inputs). MLP1: 6. logits: all 7 senders.
    assert g.n_edges == 6 + 3 + 24 + 6 + 7
    con = EdgeGraph.connects
    assert con(Sender("head", 1, 0), Receiver("mlp", 1))  # MLP reads resid_mid, after its heads
    assert not con(Sender("head", 1, 0), Receiver("q", 1, 1))  # heads of one layer read resid_pre
    assert not con(Sender("mlp", 1), Receiver("mlp", 1))
    assert con(Sender("mlp", 0), Receiver("v", 1, 1))


def test_attn_only_has_no_mlp_nodes():
    g = EdgeGraph(n_layers=2, n_heads=1, has_mlp=False)
    assert not any("MLP" in s.name for s in g.senders)
    assert g.n_edges == 3 * 1 + 3 * 2 + 3  # layer 0 q/k/v, layer 1 q/k/v, logits


def test_parse_edges():
    g = EdgeGraph(n_layers=3, n_heads=2, has_mlp=True)
    s, r = g.parse_edge("L0H1->L2H0.k")
    assert g.edge_name(s, r) == "L0H1->L2H0.k"
    assert g.parse_edge(("embed", "logits")) == (0, len(g.receivers) - 1)
    with pytest.raises(ValueError, match="not an edge"):
        g.parse_edge("L2H0->L1H0.q")
    with pytest.raises(ValueError, match="unknown receiver"):
        g.parse_edge("L0H0->L1H0.z")
    assert int(g.edge_mask(["L0H1->L2H0.k", "MLP1->logits"]).sum()) == 2


def test_split_inputs_restores_settings_on_error():
    model = random_model(n_layers=1)
    before = (model.cfg.use_split_qkv_input, model.cfg.use_hook_mlp_in)
    with pytest.raises(RuntimeError), split_inputs(model):
        assert model.cfg.use_split_qkv_input and model.cfg.use_hook_mlp_in
        raise RuntimeError("boom")
    assert (model.cfg.use_split_qkv_input, model.cfg.use_hook_mlp_in) == before == (False, False)
    assert torch.isfinite(model(torch.zeros(1, 3, dtype=torch.long))).all()
