"""EAP is the first-order term of edge patching; EAP-IG integrates it along the input path."""

from __future__ import annotations

import pytest
import torch

from circuitkit.edges import EdgeGraph, eap, eap_ig, edge_patching, patch_edges, split_inputs
from circuitkit.edges.activations import sender_hook_names, sender_outputs
from circuitkit.evaluation import pearson

from .toy import pair_tokens, random_model


@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_exact_where_metric_is_linear_in_the_receiver(direction):
    """Without a final LayerNorm the logits, and a logit difference, are linear in the unembedding's
    input: for every edge into ``logits`` EAP and EAP-IG equal exact edge patching."""
    model = random_model(n_layers=2, n_heads=2, normalization_type=None, seed=2)
    clean, corrupted, metric = pair_tokens(40, seed=3)
    exact = edge_patching(model, clean, corrupted, metric, direction=direction)
    r = len(exact.graph.receivers) - 1
    for est in (
        eap(model, clean, corrupted, metric, direction=direction),
        eap_ig(model, clean, corrupted, metric, steps=3, direction=direction),
    ):
        torch.testing.assert_close(est.scores[:, r], exact.scores[:, r], atol=1e-10, rtol=1e-8)
    # Inner receivers are not linear here (softmax, GELU): EAP only approximates them.
    inner = exact.graph.mask.clone()
    inner[:, r] = False
    assert not torch.allclose(
        eap(model, clean, corrupted, metric).scores[inner], exact.scores[inner], atol=1e-4
    )


def _scaled_edge_metric(model, target, metric, graph, s, r, eps, delta):
    """m with eps * (a_s,source - a_s,target) added to receiver r's input (TransformerLens hooks)."""
    recv = graph.receivers[r]
    name = graph.final_hook if recv.kind == "logits" else recv.hook_name

    def add(act, hook):
        act = act.clone()
        if recv.kind in ("q", "k", "v"):
            act[:, :, recv.head] += eps * delta[s]
        else:
            act += eps * delta[s]
        return act

    with split_inputs(model), torch.no_grad():
        return float(metric(model.run_with_hooks(target, fwd_hooks=[(name, add)])))


def test_eap_is_the_derivative_of_edge_patching():
    """EAP(s -> r) = d/d eps of m(input_r + eps * delta_s) at eps = 0, checked by central differences
    on a nonlinear (LayerNorm, GELU, softmax) float64 model, for every kind of receiver."""
    model = random_model(n_layers=3, n_heads=2, seed=5)
    clean, corrupted, metric = pair_tokens(40, seed=6)
    g = EdgeGraph.of(model)
    scores = eap(model, clean, corrupted, metric).scores
    names = sender_hook_names(g)
    _, cc = model.run_with_cache(clean, names_filter=lambda n: n in names)
    _, tc = model.run_with_cache(corrupted, names_filter=lambda n: n in names)
    delta = sender_outputs(model, g, dict(cc.items())) - sender_outputs(model, g, dict(tc.items()))
    eps = 1e-5
    for edge in [
        "embed->L0H1.q",
        "embed->L0H0.k",
        "L0H1->L2H0.v",
        "L1H0->MLP1.in",
        "MLP0->L1H1.q",
        "L2H1->logits",
    ]:
        s, r = g.parse_edge(edge)
        up = _scaled_edge_metric(model, corrupted, metric, g, s, r, eps, delta)
        down = _scaled_edge_metric(model, corrupted, metric, g, s, r, -eps, delta)
        assert float(scores[s, r]) == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8), edge


def test_eap_ig_completeness_over_the_embedding():
    """Summed over every edge out of ``embed``, EAP-IG is integrated gradients of the metric in the
    input embeddings: it tends to m(clean) - m(corrupted), the exact effect of patching every edge out
    of ``embed``, as steps grow (midpoint rule: error ~ 1 / steps^2). EAP's sum is far from it."""
    model = random_model(n_layers=2, n_heads=2, seed=7)
    clean, corrupted, metric = pair_tokens(40, seed=8, n_diff=3)
    g = EdgeGraph.of(model)
    out_of_embed = torch.zeros_like(g.mask)
    out_of_embed[0] = g.mask[0]
    base = float(metric(model(corrupted)))
    target = patch_edges(model, corrupted, clean, metric, out_of_embed) - base
    assert target == pytest.approx(float(metric(model(clean))) - base, abs=1e-10)
    errors = []
    for steps in (4, 16, 64):
        total = float(eap_ig(model, clean, corrupted, metric, steps=steps).scores[0].nansum())
        errors.append(abs(total - target))
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 1e-3 * abs(target)
    eap_total = float(eap(model, clean, corrupted, metric).scores[0].nansum())
    assert abs(eap_total - target) > 10 * errors[2]


def test_eap_tracks_edge_patching_on_tiny(tiny, tiny_ioi):
    d = tiny_ioi
    exact = edge_patching(tiny, d.clean_tokens, d.corrupted_tokens, d.metric).edge_values()
    approx = eap(tiny, d.clean_tokens, d.corrupted_tokens, d.metric)
    assert approx.passes == 3
    assert pearson(approx.edge_values(), exact) > 0.9
    assert not tiny.cfg.use_split_qkv_input and not tiny.cfg.use_hook_mlp_in
