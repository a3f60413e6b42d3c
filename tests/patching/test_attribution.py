"""AtP equals the hand-computed linear estimate; AtP*'s QK fix is exact where only the softmax is
non-linear; GradDrop's defining identities."""

from __future__ import annotations

import functools

import pytest
import torch

from circuitkit.components import FAMILIES
from circuitkit.patching.activation import activation_patching
from circuitkit.patching.attribution import atp_star, attribution_patching
from circuitkit.patching.relp import relevance_patching

from .toy import pair_tokens, random_model


@pytest.fixture(scope="module")
def linear_readout():
    """One attention-only layer, no LayerNorm: the metric is linear in everything after the softmax."""
    return random_model(n_layers=1, attn_only=True, normalization_type=None, d_vocab=40)


def _hand_estimate(model, tokens_t, tokens_s, metric, hook):
    """(a_s - a_t) . dm/da for one whole hook, from an explicit leaf variable."""
    _, cache_s = model.run_with_cache(tokens_s, names_filter=hook)
    _, cache_t = model.run_with_cache(tokens_t, names_filter=hook)
    x = cache_t[hook].clone().requires_grad_(True)
    with torch.enable_grad():
        m = metric(model.run_with_hooks(tokens_t, fwd_hooks=[(hook, lambda a, hook: x)]))
        (g,) = torch.autograd.grad(m, [x])
    return cache_s[hook] - cache_t[hook], g


def test_atp_equals_hand_computed_linear_estimate(small_random):
    clean, corrupted, metric = pair_tokens(small_random.cfg.d_vocab, 3, 6)
    res = attribution_patching(
        small_random, clean, corrupted, metric, ["mlp_out", "head", "head_pattern_pos"]
    )
    assert res.passes == 3
    delta, g = _hand_estimate(small_random, corrupted, clean, metric, "blocks.1.hook_mlp_out")
    torch.testing.assert_close(res.grids["mlp_out"][1], (delta * g).sum((0, 2)), rtol=1e-10, atol=1e-12)
    delta, g = _hand_estimate(small_random, corrupted, clean, metric, "blocks.0.attn.hook_z")
    torch.testing.assert_close(res.grids["head"][0], (delta * g).sum((0, 1, 3)), rtol=1e-10, atol=1e-12)
    delta, g = _hand_estimate(small_random, corrupted, clean, metric, "blocks.1.attn.hook_pattern")
    torch.testing.assert_close(
        res.grids["head_pattern_pos"][1], (delta * g).sum((0, 3)), rtol=1e-10, atol=1e-12
    )


def test_atp_is_the_derivative_of_the_patching_effect(small_random):
    """Patching a_t + eps (a_s - a_t): the effect divided by eps tends to the AtP score."""
    clean, corrupted, metric = pair_tokens(small_random.cfg.d_vocab, 2, 6, seed=3)
    atp = attribution_patching(small_random, clean, corrupted, metric, ["resid_pre"]).grids["resid_pre"]
    hook, pos, eps = "blocks.1.hook_resid_pre", 3, 1e-6
    _, cs = small_random.run_with_cache(clean, names_filter=hook)
    _, ct = small_random.run_with_cache(corrupted, names_filter=hook)

    def nudge(act, hook):
        act = act.clone()
        act[:, pos] += eps * (cs[hook.name][:, pos] - ct[hook.name][:, pos])
        return act

    with torch.no_grad():
        m0 = metric(small_random(corrupted))
        m1 = metric(small_random.run_with_hooks(corrupted, fwd_hooks=[(hook, nudge)]))
    assert float((m1 - m0) / eps) == pytest.approx(float(atp[1, pos]), rel=1e-4, abs=1e-9)


def test_atp_is_exact_where_the_metric_is_linear(linear_readout):
    clean, corrupted, metric = pair_tokens(linear_readout.cfg.d_vocab, 3, 6, seed=1)
    for family in ("head", "head_pos", "attn_out", "head_v"):
        exact = activation_patching(linear_readout, clean, corrupted, metric, family).effects()
        est = attribution_patching(linear_readout, clean, corrupted, metric, [family]).grids[family]
        torch.testing.assert_close(est, exact, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_qk_fix_is_exact_when_only_the_softmax_is_nonlinear(linear_readout, direction):
    """One attention-only layer without LayerNorm: pattern -> metric is linear, so recomputing the
    softmax exactly (AtP*) gives activation patching's numbers for queries and keys; plain AtP does not."""
    clean, corrupted, metric = pair_tokens(
        linear_readout.cfg.d_vocab, 3, 6, seed=2, n_diff=3, corrupt_last=True
    )
    fams = ["head_q", "head_k", "head_q_pos", "head_k_pos"]
    star = atp_star(linear_readout, clean, corrupted, metric, fams, direction=direction)
    plain = attribution_patching(linear_readout, clean, corrupted, metric, fams, direction=direction)
    for f in fams:
        exact = activation_patching(
            linear_readout, clean, corrupted, metric, f, direction=direction
        ).effects()
        torch.testing.assert_close(star.grids[f], exact, rtol=1e-8, atol=1e-10)
        assert (plain.grids[f] - exact).abs().max() > 1e-3 * exact.abs().max()


def test_graddrop_identities(small_random):
    """Two layers: dropping layer 0 leaves layer-1 gradients alone and dropping layer 1 leaves the
    gradient at the last MLP's output alone, so GD = 2 |AtP| there; upstream of it (layer 1's attention
    output feeds that MLP) it differs."""
    clean, corrupted, metric = pair_tokens(small_random.cfg.d_vocab, 3, 6, seed=4)
    fams = ["attn_out", "mlp_out", "resid_pre"]
    gd = atp_star(small_random, clean, corrupted, metric, fams, grad_drop=True)
    atp = attribution_patching(small_random, clean, corrupted, metric, fams)
    assert not gd.signed and gd.passes == 3 + 2 * small_random.cfg.n_layers
    torch.testing.assert_close(
        gd.grids["mlp_out"][1], 2 * atp.grids["mlp_out"][1].abs(), rtol=1e-10, atol=1e-12
    )
    assert (gd.grids["resid_pre"] >= 0).all() and (gd.grids["attn_out"] >= 0).all()
    assert not torch.allclose(gd.grids["attn_out"][1], 2 * atp.grids["attn_out"][1].abs())
    assert not torch.allclose(gd.grids["resid_pre"][1], 2 * atp.grids["resid_pre"][1].abs())


def test_bad_inputs(small_random):
    clean, corrupted, metric = pair_tokens(small_random.cfg.d_vocab, 2, 5)
    with pytest.raises(ValueError, match="differ in shape"):
        attribution_patching(small_random, clean[:1], corrupted, metric)
    with pytest.raises(ValueError, match="scalar"):
        attribution_patching(small_random, clean, corrupted, lambda logits: logits[:, -1])
    with pytest.raises(ValueError, match="unknown component family"):
        attribution_patching(small_random, clean, corrupted, metric, ["neurons"])
    with pytest.raises(ValueError, match="does not exist"):
        attribution_patching(small_random, clean, corrupted, metric, ["head_result"])


# Every family the tiny model has (hook_result needs set_use_attn_result): several share a hook
# (head / head_pos on hook_z, attn_out / attn_out_all) and the widths differ (d_model 96, d_head 24).
TINY_FAMILIES = [f for f in FAMILIES if "result" not in f]


@pytest.mark.parametrize(
    "method",
    [
        pytest.param(attribution_patching, id="atp"),
        pytest.param(atp_star, id="atp*"),
        pytest.param(functools.partial(atp_star, grad_drop=True), id="atp*-graddrop"),
        pytest.param(functools.partial(relevance_patching, rules="ln+identity"), id="relp"),
        pytest.param(functools.partial(relevance_patching, rules="all"), id="relp-all-rules"),
    ],
)
def test_several_families_in_one_call_equal_one_family_at_a_time(tiny, tiny_ioi, method):
    """Regression: a multi-family call was reported to fail with a size mismatch (96 vs 24) on the tiny
    model. Every family's grid from one call must equal the grid of a call with that family alone."""
    args = (tiny, tiny_ioi.clean_tokens, tiny_ioi.corrupted_tokens, tiny_ioi.metric)
    together = method(*args, TINY_FAMILIES)
    assert list(together.grids) == TINY_FAMILIES
    for family in TINY_FAMILIES:
        alone = method(*args, [family]).grids[family]
        assert together.grids[family].shape == alone.shape
        torch.testing.assert_close(together.grids[family], alone, rtol=1e-6, atol=1e-9, msg=family)


def test_families_as_a_string(small_random):
    clean, corrupted, metric = pair_tokens(small_random.cfg.d_vocab, 2, 5)
    one = attribution_patching(small_random, clean, corrupted, metric, "head")
    two = attribution_patching(small_random, clean, corrupted, metric, "head, mlp_out")
    assert list(one.grids) == ["head"] and list(two.grids) == ["head", "mlp_out"]
    torch.testing.assert_close(one.grids["head"], two.grids["head"])


@pytest.mark.parametrize("method", [attribution_patching, relevance_patching])
def test_last_position_metric_gives_the_same_estimates(small_random, method):
    """A metric marked as reading only the last position gets last-position logits: same numbers."""
    from circuitkit.tasks.metrics import last_position_metric

    clean, corrupted, metric = pair_tokens(small_random.cfg.d_vocab, 3, 7, seed=6)
    fams = ["resid_pre", "head", "mlp_out"]
    full = method(small_random, clean, corrupted, metric, fams)
    last = method(small_random, clean, corrupted, last_position_metric(lambda x: metric(x)), fams)
    assert last.baseline_target == pytest.approx(full.baseline_target, rel=1e-12)
    assert last.baseline_source == pytest.approx(full.baseline_source, rel=1e-12)
    for f in fams:
        torch.testing.assert_close(last.grids[f], full.grids[f], rtol=1e-9, atol=1e-12)
