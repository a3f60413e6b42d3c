"""Node attribution: AtP equals the linear estimate computed by hand, IG converges to the exact effect."""

import pytest
import torch

from circuitkit.features import attribute_nodes, place, run_spliced


def grad_at_hook(model, tokens, metric, hook):
    """dm/d(activation at ``hook``) on the unspliced model, by a zero tensor added at the hook."""
    leaf = {}

    def add(act, hook):
        leaf["x"] = torch.zeros_like(act, requires_grad=True)
        return act + leaf["x"]

    with model.hooks(fwd_hooks=[(hook, add)]):
        m = metric(model(tokens))
    (g,) = torch.autograd.grad(m, [leaf["x"]])
    return g


@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_node_atp_equals_hand_computed_linear_estimate(tiny, ioi, dictionaries, direction):
    attr = attribute_nodes(
        tiny, ioi.clean_tokens, ioi.corrupted_tokens, ioi.metric, dictionaries, direction=direction
    )
    target, source = (
        (ioi.corrupted_tokens, ioi.clean_tokens)
        if direction == "denoising"
        else (ioi.clean_tokens, ioi.corrupted_tokens)
    )
    for d in place(tiny, dictionaries):
        g = grad_at_hook(tiny, target, ioi.metric, d.hook_out).flatten(2)  # [batch, pos, width]
        with torch.no_grad():
            _, tgt = tiny.run_with_cache(target, names_filter=lambda n, d=d: n in (d.hook_in, d.hook_out))
            _, src = tiny.run_with_cache(source, names_filter=lambda n, d=d: n in (d.hook_in, d.hook_out))
            f_t, f_s = d.encode(tgt[d.hook_in]), d.encode(src[d.hook_in])
            err_t = tgt[d.hook_out].flatten(2) - d.decode(f_t).flatten(2)
            err_s = src[d.hook_out].flatten(2) - d.decode(f_s).flatten(2)
        w_dec = d.sae.W_dec  # latent i writes W_dec[i]; its estimate is (f_s - f_t)_i W_dec[i] . dm/dx
        expected = ((f_s - f_t) * (g @ w_dec.T)).sum(0)
        torch.testing.assert_close(attr.scores[d.id].latents, expected, rtol=1e-4, atol=1e-6)
        expected_err = ((err_s - err_t) * g).sum(-1).sum(0)
        torch.testing.assert_close(attr.scores[d.id].error, expected_err, rtol=1e-4, atol=1e-6)
        # all nodes together give the AtP estimate of patching the whole activation
        whole = ((src[d.hook_out] - tgt[d.hook_out]).flatten(2) * g).sum()
        torch.testing.assert_close(torch.tensor(attr.scores[d.id].total()), whole, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("rules", ["ln+identity", "all"])
def test_node_relp_sums_to_the_components_relp_and_differs_from_atp(tiny, ioi, dictionaries, rules):
    """Linear decoders pass RelP's coefficients through unchanged: latents + error = the hook's RelP."""
    from circuitkit.patching.relp import relevance_patching

    data = (tiny, ioi.clean_tokens, ioi.corrupted_tokens, ioi.metric)
    relp = attribute_nodes(*data, dictionaries, method="relp", rules=rules)
    atp = attribute_nodes(*data, dictionaries)
    families = {"sae1": ("resid_pre", 1), "sae2": ("resid_pre", 2), "tc2": ("mlp_out", 2), "z1": ("head", 1)}
    grids = relevance_patching(*data, sorted({f for f, _ in families.values()}), rules=rules).grids
    for key, (family, layer) in families.items():
        whole = float(grids[family][layer].sum())
        assert relp.scores[key].total() == pytest.approx(whole, rel=1e-4, abs=1e-6)
    # the rules change the coefficients: some node's score moves
    diff = max((relp.scores[k].latents - atp.scores[k].latents).abs().max().item() for k in families)
    assert diff > 1e-4
    assert relp.provenance["rules"] == rules.replace("all", "ln+attention+identity+half")


def test_ig_converges_to_the_exact_effect_of_patching_the_dictionary(tiny, ioi, dictionaries):
    subset = {k: dictionaries[k] for k in ("sae1", "tc2")}
    ig = attribute_nodes(
        tiny, ioi.clean_tokens, ioi.corrupted_tokens, ioi.metric, subset, method="ig", ig_steps=16
    )
    dicts = place(tiny, subset)
    with torch.no_grad():
        _, clean = run_spliced(tiny, ioi.clean_tokens, dicts)
        for d in dicts:
            f_c, e_c = clean.latents[d.id], clean.errors[d.id]
            swap = {d.id: lambda f, e, f_c=f_c, e_c=e_c: (f_c, e_c)}
            logits, _ = run_spliced(tiny, ioi.corrupted_tokens, dicts, interventions=swap)
            exact = float(ioi.metric(logits)) - ig.metric_target
            assert abs(exact) > 0.05  # the test means something only if patching moves the metric
            assert ig.scores[d.id].total() == pytest.approx(exact, rel=0.02, abs=1e-3)
    table = ig.table()
    assert set(table["family"]) == {"latent", "error"}
    assert {"component", "score", "dictionary", "latent", "method", "direction"} <= set(table.columns)
    assert table["score"].sum() == pytest.approx(sum(s.total() for s in ig.scores.values()), rel=1e-6)


def test_metric_must_be_scalar(tiny, ioi, dictionaries):
    with pytest.raises(ValueError, match="scalar"):
        one = {"sae1": dictionaries["sae1"]}
        attribute_nodes(tiny, ioi.clean_tokens, ioi.corrupted_tokens, ioi.per_prompt_metric, one)
    with pytest.raises(ValueError, match="differ in shape"):
        attribute_nodes(tiny, ioi.clean_tokens, ioi.corrupted_tokens[:, :-1], ioi.metric, dictionaries)
