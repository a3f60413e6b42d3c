"""Edges sum to the linear estimate they split; faithfulness is 1 for the whole model, 0 for nothing."""

import pytest
import torch

from circuitkit.features import (
    ERROR,
    attribute_edges,
    attribute_nodes,
    faithfulness,
    full_circuit,
    place,
    select_nodes,
)


def _oracle_edges(tiny, ioi, d1, d2, nodes, detach=()):
    """d(sum_pos g * node)/d(x at d1's hook) . (x_clean - x_corrupt) on the plain model, autograd only;
    ``detach``: hooks whose value passes no gradient (the direct-edge stop-gradients)."""

    def node_value(act2, g_f, g_err, node):
        f2 = d2.encode(act2)
        if node == ERROR:
            return (g_err * (act2 - d2.decode(f2))).sum()
        return (g_f[..., node] * f2[..., node]).sum()

    grads = {}

    def probe(act, hook, name):
        grads[name] = torch.zeros_like(act, requires_grad=True)
        return act + grads[name]

    cache = {}

    def keep(act, hook):
        cache["x2"] = act
        return act

    fwd = [
        (d1.hook_out, lambda a, hook: probe(a, hook, "x1")),
        *((h, lambda a, hook: a.detach()) for h in detach),
        (d2.hook_out, lambda a, hook: probe(a, hook, "x2")),
        (d2.hook_out, keep),
    ]
    with tiny.hooks(fwd_hooks=fwd):
        m = ioi.metric(tiny(ioi.corrupted_tokens))
    (g_x2,) = torch.autograd.grad(m, [grads["x2"]], retain_graph=True)
    g_f = g_x2 @ d2.sae.W_dec.T  # dm/d(latents of sae2), error held fixed
    with torch.no_grad():
        _, c = tiny.run_with_cache(ioi.clean_tokens, names_filter=d1.hook_out)
        _, k = tiny.run_with_cache(ioi.corrupted_tokens, names_filter=d1.hook_out)
        delta = c[d1.hook_out] - k[d1.hook_out]
    out = []
    for node in nodes:
        value = node_value(cache["x2"], g_f, g_x2, node)
        (g1,) = torch.autograd.grad(value, [grads["x1"]], retain_graph=True)
        out.append((g1 * delta).sum())
    return torch.stack(out)


def test_edge_column_sums_to_the_downstream_node_estimate(tiny, ioi, dictionaries):
    pair = {"sae1": dictionaries["sae1"], "sae2": dictionaries["sae2"]}
    nodes = [0, 5, ERROR]
    edges = attribute_edges(
        tiny, ioi.clean_tokens, ioi.corrupted_tokens, ioi.metric, pair, "sae1", "sae2", nodes
    )
    assert edges.scores.shape == (pair["sae1"].cfg.d_sae + 1, 3)
    d1, d2 = place(tiny, pair)
    expected = _oracle_edges(tiny, ioi, d1, d2, nodes)
    torch.testing.assert_close(edges.scores.sum(0), expected, rtol=1e-3, atol=1e-5)
    table = edges.table()
    assert {"source", "target", "score"} <= set(table.columns)
    assert table["score"].abs().is_monotonic_decreasing


def test_edges_are_direct_across_an_intermediate_transcoder(tiny, ioi, dictionaries):
    """Marks et al. 2024: a transcoder spliced between two SAEs stops the path through layer 1's MLP, so
    the SAE -> SAE edge becomes the direct path only (the oracle detaches blocks.1.hook_mlp_out)."""
    three = {k: dictionaries[k] for k in ("sae1", "tc1", "sae2")}
    nodes = [0, 5, ERROR]
    args = (tiny, ioi.clean_tokens, ioi.corrupted_tokens, ioi.metric)
    direct = attribute_edges(*args, three, "sae1", "sae2", nodes).scores.sum(0)
    total = attribute_edges(*args, {k: three[k] for k in ("sae1", "sae2")}, "sae1", "sae2", nodes)
    d1, _, d2 = place(tiny, three)
    expected = _oracle_edges(tiny, ioi, d1, d2, nodes, detach=["blocks.1.hook_mlp_out"])
    torch.testing.assert_close(direct, expected, rtol=1e-3, atol=1e-5)
    assert (direct - total.scores.sum(0)).abs().max() > 1e-3  # the MLP path was there and is gone


def test_faithfulness_is_one_for_the_model_and_zero_for_the_empty_circuit(tiny, ioi, dictionaries):
    dicts = place(tiny, dictionaries)
    for ablation in ("mean", "zero", "patch"):
        kw = {"corrupted_tokens": ioi.corrupted_tokens} if ablation == "patch" else {}
        kw["ablation"] = ablation
        full = faithfulness(tiny, ioi.clean_tokens, ioi.metric, dictionaries, full_circuit(dicts), **kw)
        assert full.faithfulness == 1.0 and full.metric_circuit == full.metric_full
        nothing = full_circuit(dicts, keep=False)
        empty = faithfulness(tiny, ioi.clean_tokens, ioi.metric, dictionaries, nothing, **kw)
        assert empty.faithfulness == 0.0
    with torch.no_grad():
        assert full.metric_full == pytest.approx(float(ioi.metric(tiny(ioi.clean_tokens))), abs=0)


def test_circuit_from_attribution_and_its_complement(tiny, ioi, dictionaries):
    pair = {"sae1": dictionaries["sae1"], "tc2": dictionaries["tc2"]}
    attr = attribute_nodes(tiny, ioi.clean_tokens, ioi.corrupted_tokens, ioi.metric, pair)
    circuit = select_nodes(attr, top_k=10)
    assert circuit.n_nodes == 10
    assert circuit.complement().n_nodes == sum(d.cfg.d_sae + 1 for d in pair.values()) - 10
    kw = {"ablation": "patch", "corrupted_tokens": ioi.corrupted_tokens}
    patched = faithfulness(tiny, ioi.clean_tokens, ioi.metric, pair, circuit, **kw)
    assert patched.metric_full != patched.metric_empty
    assert len(circuit.nodes_table()) == 10
    with pytest.raises(ValueError, match="exactly one"):
        select_nodes(attr)
