"""Exact edge patching: the batched sweep equals one TransformerLens forward per edge; edge sets equal
node patching where they must."""

from __future__ import annotations

import pytest
import torch

from circuitkit.edges import EdgeGraph, edge_patching, edge_patching_loop, patch_edges
from circuitkit.patching.activation import activation_patching

from .toy import pair_tokens, random_model


def _sample_edges(g: EdgeGraph, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` random edges plus one of every receiver kind, so each code path is checked."""
    edges = g.mask.nonzero()
    pick = torch.randperm(len(edges), generator=torch.Generator().manual_seed(seed))[:n]
    mask = torch.zeros_like(g.mask)
    mask[edges[pick, 0], edges[pick, 1]] = True
    for kind in ("q", "k", "v", "mlp", "logits"):
        r = next(
            j
            for j, rec in enumerate(g.receivers)
            if (rec.kind == kind and rec.layer > 0) or rec.kind == kind == "logits"
        )
        mask[g.mask[:, r].nonzero()[-1, 0], r] = True  # its latest sender
    return mask


def test_batched_equals_loop_on_tiny(tiny, tiny_ioi):
    d = tiny_ioi
    g = EdgeGraph.of(tiny)
    mask = _sample_edges(g, 40)
    fast = edge_patching(tiny, d.clean_tokens, d.corrupted_tokens, d.metric, max_tokens=600)
    loop = edge_patching_loop(tiny, d.clean_tokens, d.corrupted_tokens, d.metric, edges=mask)
    a, b = fast.scores[mask], loop.scores[mask]
    assert torch.isfinite(fast.edge_values()).all()
    assert b.abs().max() > 0.1  # some edges matter
    torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
    assert fast.baseline_target == pytest.approx(float(d.metric(tiny(d.corrupted_tokens))))


@pytest.mark.parametrize("direction", ["denoising", "noising"])
@pytest.mark.parametrize("last_only", [True, False])
def test_batched_equals_loop_every_edge(direction, last_only):
    model = random_model(n_layers=3, n_heads=2, seed=4)
    clean, corrupted, metric = pair_tokens(40, seed=5)
    if not last_only:
        base = metric

        def metric(logits):  # reads every position: no prefix / last-position savings allowed
            return base(logits) + 0.1 * logits[:, :, 3].mean()

    fast = edge_patching(model, clean, corrupted, metric, direction=direction, max_tokens=50)
    loop = edge_patching_loop(model, clean, corrupted, metric, direction=direction)
    torch.testing.assert_close(fast.scores, loop.scores, atol=1e-10, rtol=1e-8, equal_nan=True)
    assert loop.edge_values().abs().min() < loop.edge_values().abs().max() / 10  # not all alike


def test_attn_only_and_no_layernorm():
    model = random_model(n_layers=2, n_heads=2, attn_only=True, normalization_type=None, seed=6)
    clean, corrupted, metric = pair_tokens(40, seed=7)
    fast = edge_patching(model, clean, corrupted, metric)
    loop = edge_patching_loop(model, clean, corrupted, metric)
    torch.testing.assert_close(fast.scores, loop.scores, atol=1e-10, rtol=1e-8, equal_nan=True)


def test_single_out_edge_equals_node_patching(tiny, tiny_ioi):
    """The last MLP's only out-edge is MLP{L-1} -> logits, so patching that edge is patching the node."""
    d = tiny_ioi
    last = tiny.cfg.n_layers - 1
    edge = edge_patching(tiny, d.clean_tokens, d.corrupted_tokens, d.metric, edges=[f"MLP{last}->logits"])
    node = activation_patching(
        tiny, d.clean_tokens, d.corrupted_tokens, d.metric, "mlp_out_all", layers=[last]
    )
    g = edge.graph
    assert edge.scores[g.parse_edge(f"MLP{last}->logits")] == pytest.approx(
        float(node.effects()[0]), abs=1e-5
    )


def test_last_layer_heads_equal_head_patching_attn_only():
    """In an attention-only model a last-layer head's one out-edge goes to the logits."""
    model = random_model(n_layers=2, n_heads=3, attn_only=True, seed=8)
    clean, corrupted, metric = pair_tokens(40, seed=9)
    edge = edge_patching(model, clean, corrupted, metric, edges=[f"L1H{h}->logits" for h in range(3)])
    node = activation_patching(model, clean, corrupted, metric, "head", layers=[1])
    got = torch.stack([edge.scores[edge.graph.parse_edge(f"L1H{h}->logits")] for h in range(3)])
    torch.testing.assert_close(got, node.effects()[0], atol=1e-10, rtol=1e-8)
    # An earlier head has several out-edges; one of them alone is not the node.
    one = edge_patching(model, clean, corrupted, metric, edges=["L0H0->logits"]).scores.nansum()
    node0 = activation_patching(model, clean, corrupted, metric, "head", layers=[0]).effects()[0, 0]
    assert abs(float(one) - float(node0)) > 1e-3


@pytest.mark.parametrize("node", ["embed", "L0H3", "L2H1", "MLP1", "MLP3"])
def test_every_edge_out_of_a_node_is_node_patching(tiny, tiny_ioi, node):
    """Patching every out-edge of a node at once (each receiver reads the node's clean value, all else as
    the run computes it) is patching the node itself; for ``embed`` that is the whole clean run."""
    d = tiny_ioi
    g = EdgeGraph.of(tiny)
    mask = torch.zeros_like(g.mask)
    mask[g.sender_index[node]] = g.mask[g.sender_index[node]]
    got = patch_edges(tiny, d.corrupted_tokens, d.clean_tokens, d.metric, mask)
    if node == "embed":
        want = float(d.metric(tiny(d.clean_tokens)))
    else:
        layer = int(node[-1]) if node.startswith("MLP") else int(node[1])
        family = "mlp_out_all" if node.startswith("MLP") else "head"
        res = activation_patching(tiny, d.clean_tokens, d.corrupted_tokens, d.metric, family, layers=[layer])
        want = float(res.scores[0] if family == "mlp_out_all" else res.scores[0, int(node.split("H")[1])])
    assert got == pytest.approx(want, abs=1e-5)


def test_patch_edges_single_edge_is_edge_patching():
    model = random_model(n_layers=2, n_heads=2, seed=10)
    clean, corrupted, metric = pair_tokens(40, seed=11)
    g = EdgeGraph.of(model)
    scores = edge_patching(model, clean, corrupted, metric)
    base = float(metric(model(corrupted)))
    for name in ["embed->L1H1.k", "L0H0->MLP0.in", "MLP0->L1H0.v", "L1H1->logits"]:
        s, r = g.parse_edge(name)
        got = patch_edges(model, corrupted, clean, metric, g.edge_mask([name])) - base
        assert got == pytest.approx(float(scores.scores[s, r]), abs=1e-10)
    # Every edge patched: the clean run; none: the corrupted run.
    assert patch_edges(model, corrupted, clean, metric, g.mask) == pytest.approx(float(metric(model(clean))))
    assert patch_edges(model, corrupted, clean, metric, torch.zeros_like(g.mask)) == pytest.approx(base)
    assert not model.cfg.use_split_qkv_input and not any(h._forward_hooks for h in model.hook_dict.values())


def test_batched_refuses_rotary_by_name_and_the_loop_runs():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=1,
        d_model=16,
        n_heads=2,
        d_head=8,
        d_mlp=32,
        d_vocab=40,
        n_ctx=16,
        act_fn="gelu",
        positional_embedding_type="rotary",
        rotary_dim=8,
        dtype=torch.float64,
        device="cpu",
        seed=0,
    )
    model = HookedTransformer(cfg)
    clean, corrupted, metric = pair_tokens(40, seed=1)
    with pytest.raises(ValueError, match=r"rotary position embeddings.*edge_patching_loop"):
        edge_patching(model, clean, corrupted, metric)
    loop = edge_patching_loop(model, clean, corrupted, metric, edges=["embed->L0H1.k"])
    assert torch.isfinite(loop.scores[loop.graph.parse_edge("embed->L0H1.k")])
