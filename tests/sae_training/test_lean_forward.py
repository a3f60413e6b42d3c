"""The lean forward returns TransformerLens's run_with_cache activations, and steps aside where it cannot."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from sae_training.activations import lean_forward
from sae_training.activations.lean_forward import lean_run_with_cache, lean_unsupported, try_lean
from sae_training.activations.model_source import activations

BLOCK_HOOKS = [
    "hook_resid_pre", "ln1.hook_normalized", "attn.hook_z", "hook_attn_out", "hook_resid_mid",
    "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out", "hook_resid_post",
]  # fmt: skip


def random_model(**overrides) -> HookedTransformer:
    """A small float64 model with every weight and bias random (TransformerLens zero-initialises biases,
    which would hide a dropped bias)."""
    cfg = dict(
        n_layers=3, d_model=24, n_ctx=16, d_head=6, n_heads=4, d_mlp=40, d_vocab=37, act_fn="gelu",
        normalization_type="LN", dtype=torch.float64, seed=0,
    )  # fmt: skip
    cfg.update(overrides)
    model = HookedTransformer(HookedTransformerConfig(**cfg))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return model


def all_hooks(model: HookedTransformer) -> list[str]:
    names = ["hook_embed", "hook_pos_embed"]
    for layer in range(model.cfg.n_layers):
        names += [f"blocks.{layer}.{h}" for h in BLOCK_HOOKS if f"blocks.{layer}.{h}" in model.hook_dict]
    if model.cfg.attn_only:  # TransformerLens keeps hook_mlp_out on attention-only blocks, but never calls it
        names = [n for n in names if not any(part in n for part in ("mlp", "ln2", "resid_mid"))]
    return names


def assert_matches_run_with_cache(model, tokens, hooks, rtol):
    lean = lean_run_with_cache(model, tokens, hooks)
    _, cache = model.run_with_cache(tokens, names_filter=hooks)
    assert set(lean) == set(hooks)
    for h in hooks:
        assert lean[h].shape == cache[h].shape, h
        scale = cache[h].abs().max()
        assert (lean[h] - cache[h]).abs().max() <= rtol * scale, h


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"act_fn": "gelu_new", "normalization_type": "LNPre"},
        {"act_fn": "relu", "normalization_type": None},
        {"act_fn": "silu", "use_attn_scale": False},
        {"attn_only": True},
    ],
    ids=["gelu-LN", "gelu_new-LNPre", "relu-nonorm", "silu-noscale", "attn_only"],
)
def test_lean_forward_equals_run_with_cache_float64(overrides):
    model = random_model(**overrides)
    hooks = all_hooks(model)
    assert lean_unsupported(model, hooks) is None
    tokens = torch.randint(0, model.cfg.d_vocab, (3, 11), generator=torch.Generator().manual_seed(2))
    assert_matches_run_with_cache(model, tokens, hooks, rtol=1e-12)


def test_lean_forward_equals_run_with_cache_on_tiny(tiny):
    hooks = all_hooks(tiny)
    assert lean_unsupported(tiny, hooks) is None
    tokens = torch.randint(0, tiny.cfg.d_vocab, (4, 32), generator=torch.Generator().manual_seed(3))
    assert_matches_run_with_cache(tiny, tokens, hooks, rtol=1e-5)


def test_lean_stops_after_the_last_block_it_needs(tiny, monkeypatch):
    """Only blocks up to the deepest requested hook run (the mlp of a later block is never called)."""
    seen = []
    real = lean_forward._attention
    monkeypatch.setattr(lean_forward, "_attention", lambda attn, *a: seen.append(attn) or real(attn, *a))
    lean_run_with_cache(tiny, torch.zeros(1, 5, dtype=torch.long), ["blocks.0.hook_resid_post"])
    assert seen == [tiny.blocks[0].attn]


def test_unsupported_models_and_hooks_fall_back_to_transformer_lens():
    rotary = random_model(positional_embedding_type="rotary", rotary_dim=6)
    assert "positional_embedding_type" in lean_unsupported(rotary, ["blocks.0.hook_resid_post"])
    model = random_model()
    assert "hook" in lean_unsupported(model, ["blocks.0.attn.hook_pattern"])
    assert "not computed" in lean_unsupported(random_model(attn_only=True), ["blocks.0.hook_mlp_out"])
    tokens = torch.randint(0, 37, (2, 9))
    assert try_lean(rotary, tokens, ["blocks.1.hook_resid_post"]) is None
    # activations() still answers, from run_with_cache.
    _, cache = rotary.run_with_cache(tokens, names_filter=["blocks.1.hook_resid_post"])
    got = activations(rotary, tokens, ["blocks.1.hook_resid_post"])["blocks.1.hook_resid_post"]
    torch.testing.assert_close(got, cache["blocks.1.hook_resid_post"][:, 1:].reshape(-1, 24))


def test_attached_hooks_force_the_transformer_lens_path():
    """A user's hook that edits activations must take effect: the lean pass would skip it."""
    model = random_model()
    hook = "blocks.0.hook_resid_post"
    tokens = torch.randint(0, 37, (2, 9))
    model.add_hook("blocks.0.hook_attn_out", lambda act, hook: act * 0)
    try:
        assert lean_unsupported(model, [hook]) == "the model has hooks attached"
        assert try_lean(model, tokens, [hook]) is None
        _, cache = model.run_with_cache(tokens, names_filter=[hook])
        got = activations(model, tokens, [hook])[hook]
        torch.testing.assert_close(got, cache[hook][:, 1:].reshape(-1, 24))
    finally:
        model.reset_hooks()


def test_a_lean_pass_that_disagrees_is_caught_and_not_used(monkeypatch):
    """The first-use check against run_with_cache turns a mismatch into a warning and the TL path."""
    model = random_model()
    monkeypatch.setitem(lean_forward._ACT_FNS, "gelu", torch.relu)
    tokens = torch.randint(0, 37, (2, 9))
    with pytest.warns(UserWarning, match="disagrees with TransformerLens"):
        assert try_lean(model, tokens, ["blocks.2.hook_resid_post"]) is None
    got = activations(model, tokens, ["blocks.2.hook_resid_post"])["blocks.2.hook_resid_post"]
    _, cache = model.run_with_cache(tokens, names_filter=["blocks.2.hook_resid_post"])
    torch.testing.assert_close(got, cache["blocks.2.hook_resid_post"][:, 1:].reshape(-1, 24))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"act_fn": "gelu_new", "normalization_type": "LNPre"},
        {"act_fn": "relu", "normalization_type": None},
        {"attn_only": True},
    ],
    ids=["gelu-LN", "gelu_new-LNPre", "relu-nonorm", "attn_only"],
)
def test_lean_gradients_equal_transformer_lens_float64(overrides):
    """Activations and LM-loss gradients at every supported hook, against TransformerLens's loss."""
    from sae_training.activations.lean_forward import lean_activations_with_gradients
    from sae_training.activations.model_source import _tl_activations_with_gradients

    model = random_model(**overrides)
    hooks = [h for h in all_hooks(model) if h != "hook_pos_embed"]
    assert lean_unsupported(model, hooks, gradients=True) is None
    tokens = torch.randint(0, model.cfg.d_vocab, (3, 11), generator=torch.Generator().manual_seed(4))
    (la, lg), (ra, rg) = (
        lean_activations_with_gradients(model, tokens, hooks),
        _tl_activations_with_gradients(model, tokens, hooks),
    )
    for h in hooks:
        torch.testing.assert_close(la[h], ra[h], rtol=1e-10, atol=1e-12)
        assert rg[h].abs().max() > 0, h  # a gradient that is there to compare
        # Relative to the largest gradient: without normalisation the random model's gradients span ~1e6,
        # and small entries lose digits to the large ones (a logic error is off by O(1)).
        assert (lg[h] - rg[h]).abs().max() <= 1e-8 * rg[h].abs().max(), h
    assert all(p.grad is None for p in model.parameters())


def test_gradient_path_falls_back_and_is_checked(tiny, monkeypatch):
    from sae_training.activations.model_source import activations_with_gradients

    hooks = ["blocks.1.hook_resid_post", "blocks.1.ln2.hook_normalized"]
    tokens = torch.randint(0, tiny.cfg.d_vocab, (2, 12), generator=torch.Generator().manual_seed(5))
    lean_a, lean_g = activations_with_gradients(tiny, tokens, hooks)
    tl_a, tl_g = activations_with_gradients(tiny, tokens, hooks, lean=False)
    for h in hooks:
        torch.testing.assert_close(lean_a[h], tl_a[h], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(lean_g[h], tl_g[h], rtol=1e-4, atol=1e-6)
    # A wrong lean pass (logits off by 1 %) is caught on first use and not used.
    from sae_training.activations.model_source import _tl_activations_with_gradients

    real = lean_forward._forward

    def wrong(*args, **kwargs):
        out = real(*args, **kwargs)
        return None if out is None else out * 1.01

    monkeypatch.setattr(lean_forward, "_forward", wrong)
    model, hook = random_model(), ["blocks.0.hook_resid_post"]
    with pytest.warns(UserWarning, match="gradient blocks.0.hook_resid_post"):
        got = lean_forward.try_lean_with_gradients(
            model, torch.randint(0, 37, (2, 9)), hook, _tl_activations_with_gradients
        )
    assert got is None


def test_ln1_gradient_sums_the_q_k_and_v_paths():
    """TransformerLens calls ln1 three times (Q, K, V inputs); the gradient at ln1.hook_normalized is the
    sum over the three, checked against a finite difference of the loss along a random direction."""
    from sae_training.activations.model_source import _tl_activations_with_gradients

    model, hook = random_model(), "blocks.1.ln1.hook_normalized"
    tokens = torch.randint(0, 37, (2, 9), generator=torch.Generator().manual_seed(6))
    _, grads = _tl_activations_with_gradients(model, tokens, [hook])
    direction = torch.randn(
        grads[hook].shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7)
    )

    def loss(eps: float) -> float:
        shift = lambda act, hook: act + eps * direction  # noqa: E731 - applied at all three calls
        with torch.no_grad():
            out = model.run_with_hooks(
                tokens, return_type="loss", loss_per_token=True, fwd_hooks=[(hook, shift)]
            )
        return float(out.sum())

    numeric = (loss(1e-6) - loss(-1e-6)) / 2e-6
    assert abs(numeric - float((grads[hook] * direction).sum())) <= 1e-6 * abs(numeric)
