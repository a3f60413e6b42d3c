"""RelP: forward values bit-identical under every rule; each rule changes the gradients; the
coefficients match closed forms on a one-layer model."""

from __future__ import annotations

import itertools

import pytest
import torch

from circuitkit.patching.attribution import attribution_patching, grad_run
from circuitkit.patching.relp import RelPRules, relevance_patching, rule_hooks

from .toy import pair_tokens, random_model

RULE_SETS = [RelPRules(*flags) for flags in itertools.product([False, True], repeat=4)]


@pytest.fixture(scope="module")
def gated():
    return random_model(n_layers=2, gated_mlp=True, act_fn="silu", d_vocab=50)


@pytest.fixture(scope="module")
def one_layer():
    return random_model(n_layers=1, d_vocab=30, seed=5)


@pytest.mark.parametrize("which", ["small_random", "gated"])
def test_forward_outputs_bit_identical(request, which):
    model = request.getfixturevalue(which)
    tokens, _, _ = pair_tokens(model.cfg.d_vocab, 2, 6)
    with torch.no_grad():
        plain = model(tokens)
    for rules in RULE_SETS:
        with torch.enable_grad():
            ruled = model.run_with_hooks(tokens, fwd_hooks=rule_hooks(model, rules))
        assert torch.equal(ruled, plain), rules


@pytest.mark.parametrize(
    ("which", "rule"),
    [
        ("small_random", "ln"),
        ("small_random", "attention"),
        ("small_random", "identity"),
        ("gated", "half"),
        ("gated", "identity"),
    ],
)
def test_each_rule_changes_the_gradients(request, which, rule):
    model = request.getfixturevalue(which)
    clean, _, metric = pair_tokens(model.cfg.d_vocab, 2, 6)
    hooks = ["blocks.0.hook_resid_pre", "blocks.0.attn.hook_q"]
    _, _, plain = grad_run(model, clean, metric, hooks)
    _, _, ruled = grad_run(model, clean, metric, hooks, rule_hooks(model, RelPRules.parse(rule)))
    assert (plain[hooks[0]] - ruled[hooks[0]]).abs().max() > 1e-6
    if rule == "attention":  # queries only feed the pattern, which the AH-rule holds constant
        assert ruled[hooks[1]].abs().max() == 0 and plain[hooks[1]].abs().max() > 0


def _ln_rule_grad(x_grad_out, w, scale):
    """d/dx of LayerNorm with its scale constant: centre(w * g) / scale (per position)."""
    v = w * x_grad_out / scale
    return v - v.mean(-1, keepdim=True)


def test_closed_form_coefficients_one_layer(one_layer):
    """LN + identity rules on one layer: the coefficients at resid_mid and mlp.hook_pre by hand."""
    model = one_layer
    clean, _, metric = pair_tokens(model.cfg.d_vocab, 2, 5, seed=1)
    names = [
        "blocks.0.hook_resid_mid",
        "blocks.0.mlp.hook_pre",
        "blocks.0.ln2.hook_scale",
        "ln_final.hook_scale",
    ]
    rules = RelPRules(ln=True, attention=False, identity=True, half=False)
    _, _, grads = grad_run(model, clean, metric, names[:2], rule_hooks(model, rules))
    _, cache = model.run_with_cache(clean, names_filter=lambda n: n in names)
    # The metric: mean over the batch of W_U[:, a] - W_U[:, a + 1] read at the last position.
    _, _, metric_grad_logits = _metric_logit_grad(model, clean, metric)
    g_final = metric_grad_logits @ model.W_U.T  # d m / d ln_final output   [b, p, d]
    g_resid_post = _ln_rule_grad(g_final, model.ln_final.w, cache["ln_final.hook_scale"])
    pre = cache["blocks.0.mlp.hook_pre"]
    act = torch.nn.functional.gelu(pre, approximate="tanh")
    g_pre = (
        (g_resid_post @ model.blocks[0].mlp.W_out.T) * act / (pre + 1e-6 * torch.where(pre >= 0, 1.0, -1.0))
    )
    torch.testing.assert_close(grads["blocks.0.mlp.hook_pre"], g_pre, rtol=1e-9, atol=1e-12)
    g_ln2_out = g_pre @ model.blocks[0].mlp.W_in.T
    g_mid = g_resid_post + _ln_rule_grad(g_ln2_out, model.blocks[0].ln2.w, cache["blocks.0.ln2.hook_scale"])
    torch.testing.assert_close(grads["blocks.0.hook_resid_mid"], g_mid, rtol=1e-9, atol=1e-12)


def _metric_logit_grad(model, tokens, metric):
    logits = model(tokens).detach().requires_grad_(True)
    with torch.enable_grad():
        m = metric(logits)
        (g,) = torch.autograd.grad(m, [logits])
    return logits, m, g


def test_relp_with_no_rules_is_atp(small_random):
    clean, corrupted, metric = pair_tokens(small_random.cfg.d_vocab, 2, 6)
    a = attribution_patching(small_random, clean, corrupted, metric)
    r = relevance_patching(small_random, clean, corrupted, metric, rules="none")
    for f in a.grids:
        torch.testing.assert_close(r.grids[f], a.grids[f], rtol=0, atol=0)
    r2 = relevance_patching(small_random, clean, corrupted, metric, rules="ln+identity")
    assert r2.options["rules"] == "ln+identity" and r2.passes == 3
    assert not torch.allclose(r2.grids["resid_pre"], a.grids["resid_pre"])


def test_rule_parsing():
    assert RelPRules.parse("all") == RelPRules(True, True, True, True)
    assert RelPRules.parse("ln,ah").attention and not RelPRules.parse("ln,ah").identity
    with pytest.raises(ValueError, match="unknown RelP rule"):
        RelPRules.parse("ln+softmax")


def test_attention_only_model_takes_every_rule():
    """No MLP: the identity and half rules have nothing to act on; the others still apply."""
    model = random_model(n_layers=2, attn_only=True, d_vocab=40)
    clean, corrupted, metric = pair_tokens(model.cfg.d_vocab, 2, 6)
    with torch.no_grad():
        plain = model(clean)
    with torch.enable_grad():
        ruled = model.run_with_hooks(clean, fwd_hooks=rule_hooks(model, RelPRules.parse("all")))
    assert torch.equal(ruled, plain)
    res = relevance_patching(model, clean, corrupted, metric, ["head", "attn_out"], rules="all")
    assert res.grids["head"].shape == (2, model.cfg.n_heads)


def test_ln_rule_detaches_every_normalisation_scale():
    """Post-norms (Gemma-2/3, OLMo-2) and q/k norms (Qwen3, Gemma-3) have hook_scales besides ln1 / ln2 /
    ln_final; the LN-rule must hold every one constant."""

    model = random_model(
        normalization_type="RMS", use_normalization_before_and_after=True, use_qk_norm=True, d_mlp=32
    )
    scales = {name for name in model.hook_dict if name.endswith("hook_scale")}
    assert {"blocks.0.ln1_post.hook_scale", "blocks.1.attn.k_norm.hook_scale"} <= scales
    hooked = {name for name, _ in rule_hooks(model, RelPRules(ln=True, identity=False, half=False))}
    assert hooked == scales
    only_layer_1 = {name for name, _ in rule_hooks(model, RelPRules(identity=False, layers=(1,)))}
    assert only_layer_1 == {s for s in scales if s.startswith("blocks.1.") or s == "ln_final.hook_scale"}
