"""Activations (and LM-loss gradients) at hook points, read from a HookedTransformer.

Rows are tokens with the BOS position dropped (its activations are outliers no dictionary should spend
latents on). ``attn.hook_z`` is flattened to heads concatenated ([n_heads * d_head]) or, with a head
index, reduced to that head ([d_head]).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from sae_training.activations.lean_forward import try_lean, try_lean_with_gradients
from sae_training.config import ConfigError


def check_hook(model: HookedTransformer, hook: str) -> None:
    """Raise ConfigError if ``hook`` is not a hook point of ``model``, naming close alternatives."""
    if hook in model.hook_dict:
        return
    suffix = hook.split(".")[-1]
    near = [h for h in model.hook_dict if h.endswith(suffix)][:6] or list(model.hook_dict)[:6]
    raise ConfigError(
        f"hook {hook!r} is not in the model ({model.cfg.n_layers} layers); "
        f"hook points like it: {', '.join(near)}"
    )


def hook_layer(hook: str) -> int | None:
    """The block a hook belongs to (None: after the last block)."""
    m = re.match(r"blocks\.(\d+)\.", hook)
    if m:
        return int(m.group(1))
    return -1 if hook.startswith("hook_") else None


def flatten_activation(act: Tensor, hook: str, head_index: int | None) -> Float[Tensor, "batch pos d"]:
    """[batch, pos, d] from a hook's activation (hook_z: heads concatenated, or one head)."""
    if act.ndim == 4:
        if head_index is not None:
            return act[:, :, head_index, :]
        return act.flatten(2)
    return act


def _token_rows(act: Tensor, hook: str, head_index: int | None) -> Float[Tensor, "n_tokens d"]:
    """[batch * (pos - 1), d]: one row per non-BOS token of a hook's (flattened) activation."""
    act = flatten_activation(act, hook, head_index)[:, 1:]
    return act.reshape(-1, act.shape[-1])


def hook_width(model: HookedTransformer, hook: str, head_index: int | None = None) -> int:
    """Width of a hook's (flattened) activation, from one short forward pass."""
    check_hook(model, hook)
    tokens = torch.zeros(1, 2, dtype=torch.long, device=model.cfg.device)
    _, cache = model.run_with_cache(tokens, names_filter=[hook], stop_at_layer=_stop(hook, model))
    return flatten_activation(cache[hook], hook, head_index).shape[-1]


def _stop(hook: str, model: HookedTransformer) -> int | None:
    layer = hook_layer(hook)
    if layer is None:
        return None
    return max(layer, 0) + 1 if layer + 1 < model.cfg.n_layers else None


@torch.no_grad()
def activations(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    hooks: list[str],
    head_index: int | None = None,
    lean: bool = True,
) -> dict[str, Float[Tensor, "n_tokens d"]]:
    """Activations at ``hooks`` for every non-BOS token, as [batch * (pos - 1), d].

    ``lean``: use the fused forward of ``lean_forward`` where it applies (checked against
    TransformerLens on first use; ~1.5x faster on the built-in models), else ``run_with_cache``.
    """
    cache = try_lean(model, tokens, hooks) if lean else None
    if cache is None:
        layers = [_stop(h, model) for h in hooks]
        stop = None if any(s is None for s in layers) else max(layers)  # type: ignore[type-var]
        _, cache = model.run_with_cache(tokens.to(model.cfg.device), names_filter=hooks, stop_at_layer=stop)
    return {h: _token_rows(cache[h], h, head_index) for h in hooks}


def _tl_activations_with_gradients(
    model: HookedTransformer, tokens: Int[Tensor, "batch pos"], hooks: Sequence[str]
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """TransformerLens: activations and dL/d(activation) at ``hooks``, [batch, pos, ...] each."""
    stash: dict[str, Tensor] = {}
    probes: dict[str, list[Tensor]] = {h: [] for h in hooks}

    def capture(act: Tensor, hook) -> Tensor:
        # Add a zero leaf rather than detaching: the graph stays whole, so gradients reach every hook
        # (a detached leaf at a later hook would cut the path to the earlier ones). A hook can fire more
        # than once per forward (TransformerLens runs ln1 once each for the Q, K and V inputs, all on the
        # same value): each call gets its own probe and the gradients are summed.
        probe = torch.zeros_like(act, requires_grad=True)
        stash[hook.name] = act.detach()
        probes[hook.name].append(probe)
        return act + probe

    with torch.enable_grad():
        loss = model.run_with_hooks(
            tokens.to(model.cfg.device),
            return_type="loss",
            loss_per_token=True,
            fwd_hooks=[(h, capture) for h in hooks],
        ).sum()
        flat = [p for h in hooks for p in probes[h]]
        flat_grads = iter(torch.autograd.grad(loss, flat))
    grads = [sum(next(flat_grads) for _ in probes[h]) for h in hooks]
    return {h: stash[h] for h in hooks}, dict(zip(hooks, grads, strict=True))


def activations_with_gradients(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    hooks: list[str],
    head_index: int | None = None,
    lean: bool = True,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Activations and dL/d(activation), L = summed next-token cross-entropy over the batch.

    The summed (not mean) loss makes each token's gradient independent of the batch size; g-SAE
    normalises the gradient's scale anyway. Parameters get no gradient (only the hooked tensors do).
    ``lean``: forward and backward through the fused pass of ``lean_forward`` where it applies (checked
    against TransformerLens, activations and gradients, on first use).
    """
    got = try_lean_with_gradients(model, tokens, hooks, _tl_activations_with_gradients) if lean else None
    acts, grads = got if got is not None else _tl_activations_with_gradients(model, tokens, hooks)
    return (
        {h: _token_rows(acts[h], h, head_index) for h in hooks},
        {h: _token_rows(grads[h], h, head_index) for h in hooks},
    )
