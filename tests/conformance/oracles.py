"""Oracles written independently of circuitkit: finite differences on hooked TransformerLens forwards.

A first-order patching estimate of component c is the directional derivative of the metric along the
component's part of the patch, d/de m(a + e * delta_c) at e = 0. Central differences in float64 give it
to ~1e-10 relative. RelP's rules are oracled the same way on a *rule-frozen* forward: a forward whose
value at the target run is unchanged but whose derivative is the rule's (a normalisation scale, a
pattern or an activation ratio replaced by its target-run value), so its finite difference is the
rule's gradient without sharing any code with the implementation under test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from transformer_lens import HookedTransformer

EPS = 1e-5

Hook = tuple[str, Callable]


def rel_err(ours: Tensor, ref: Tensor) -> float:
    """max |ours - ref| / max |ref| (the matrix's measure; 1e-5 passes)."""
    ours, ref = torch.as_tensor(ours).double().cpu(), torch.as_tensor(ref).double().cpu()
    if ours.shape != ref.shape:
        raise AssertionError(f"shape {tuple(ours.shape)} vs oracle {tuple(ref.shape)}")
    return float((ours - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


def capture(model: HookedTransformer, tokens: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
    """Activations at ``names`` (first firing of each) in a plain forward."""
    out: dict[str, Tensor] = {}

    def keep(act: Tensor, hook) -> Tensor:
        out.setdefault(hook.name, act.detach().clone())
        return act

    with torch.no_grad(), model.hooks(fwd_hooks=[(n, keep) for n in dict.fromkeys(names)]):
        model(tokens)
    return out


def metric_with(model, tokens, metric, hooks: Sequence[Hook]) -> float:
    with torch.no_grad(), model.hooks(fwd_hooks=list(hooks)):
        return float(metric(model(tokens)))


def directional(
    model, tokens, metric, hook: str, base: Tensor, direction: Tensor, frozen: Sequence[Hook] = ()
) -> float:
    """d/de m with ``hook``'s value replaced by ``base + e * direction``, central difference."""

    def put(e: float) -> Hook:
        return (hook, lambda act, hook: base + e * direction)

    hi = metric_with(model, tokens, metric, [*frozen, put(EPS)])
    lo = metric_with(model, tokens, metric, [*frozen, put(-EPS)])
    return (hi - lo) / (2 * EPS)


def component_masks(family, act_shape, n_layers_unused=None) -> list[tuple[tuple, Tensor]]:
    """(grid index within a layer, boolean mask over the activation) per component of ``family``."""
    pos_axis, head_axis = family.pos_axis, family.head_axis
    shape = act_shape[1:]
    n_pos = act_shape[pos_axis] if pos_axis is not None else 1
    n_head = act_shape[head_axis] if head_axis is not None else 1
    out = []
    for h in range(n_head):
        for p in range(n_pos):
            mask = torch.zeros(shape, dtype=torch.bool)
            index: list = [slice(None)] * len(shape)
            if pos_axis is not None:
                index[pos_axis - 1] = p
            if head_axis is not None:
                index[head_axis - 1] = h
            mask[tuple(index)] = True
            key = {"pos": p, "head": h}
            out.append((tuple(key[d] for d in family.dims[1:]), mask))
    return out


def grad_at(model, tokens, metric, hook: str, value: Tensor, frozen: Sequence[Hook] = ()) -> Tensor:
    """dm/d(hook) by autograd, with ``hook``'s value replaced by ``value`` (a zero probe added to it).

    Checked against a central finite difference along ``value``'s own direction so that a mistake in
    this oracle cannot hide a mistake in the method."""
    probe = torch.zeros_like(value, requires_grad=True)
    with torch.enable_grad(), model.hooks(fwd_hooks=[*frozen, (hook, lambda act, hook: value + probe)]):
        (g,) = torch.autograd.grad(metric(model(tokens)), [probe], allow_unused=True)
    return torch.zeros_like(value) if g is None else g


def check_fd(model, tokens, metric, hook, value, direction, g, frozen=()) -> None:
    """The finite difference along ``direction`` equals the autograd gradient's dot product."""
    fd = directional(model, tokens, metric, hook, value, direction, frozen)
    auto = float((g * direction).sum())
    scale = float((g * direction).abs().sum()) + 1e-12
    if abs(fd - auto) > 1e-6 * scale + 1e-10:
        raise AssertionError(f"oracle self-check at {hook}: finite difference {fd} vs autograd {auto}")


def linear_grid(model, target, metric, family, layers, base, delta, frozen: Sequence[Hook] = ()) -> Tensor:
    """Grid [layer, ...] of each component's delta . dm/da at ``base`` (autograd, finite-difference checked).

    ``base`` / ``delta``: hook name -> activation at which to differentiate / the patch's change.
    """
    grids = []
    for layer in layers:
        name = family.hook_name(layer)
        a, d = base[name], delta[name]
        g = grad_at(model, target, metric, name, a, frozen)
        check_fd(model, target, metric, name, a, d, g, frozen)
        sizes = {"pos": a.shape[family.pos_axis] if family.pos_axis else 1,
                 "head": a.shape[family.head_axis] if family.head_axis else 1}  # fmt: skip
        grid = torch.zeros([sizes[x] for x in family.dims[1:]], dtype=torch.float64)
        for index, mask in component_masks(family, a.shape):
            grid[index] = float((g * d * mask).sum())
        grids.append(grid)
    return torch.stack(grids)


# ------------------------------------------------------------------------------ rule-frozen forwards


def frozen_rule_hooks(model: HookedTransformer, target: Tensor, rules: set[str]) -> list[Hook]:
    """Hooks giving a forward equal to the model's at ``target`` whose derivative follows RelP's rules."""
    cfg = model.cfg
    names = [n for n in model.hook_dict if n.endswith("hook_scale")] if "ln" in rules else []
    if "attention" in rules:
        names += [f"blocks.{i}.attn.hook_pattern" for i in range(cfg.n_layers)]
    mlp = not cfg.attn_only and ("identity" in rules or ("half" in rules and cfg.gated_mlp))
    if mlp:
        for i in range(cfg.n_layers):
            names += [f"blocks.{i}.mlp.hook_pre", f"blocks.{i}.mlp.hook_post"]
            if cfg.gated_mlp:
                names.append(f"blocks.{i}.mlp.hook_pre_linear")
    const = capture(model, target, names)
    hooks: list[Hook] = []
    for n in names:
        if n.endswith("hook_scale") or n.endswith("hook_pattern"):
            hooks.append((n, lambda act, hook: const[hook.name]))
    if not mlp:
        return hooks
    live: dict[str, Tensor] = {}

    def save(act: Tensor, hook) -> Tensor:
        live[hook.name] = act
        return act

    def post(act: Tensor, hook) -> Tensor:
        p = hook.name.rsplit(".", 1)[0]
        pre, pre_c, y_c = live[p + ".hook_pre"], const[p + ".hook_pre"], const[hook.name]
        fn = model.blocks[int(hook.name.split(".")[1])].mlp.act_fn
        stab = pre_c + 1e-6 * torch.where(pre_c >= 0, 1.0, -1.0)
        # The identity rule: linear in pre with slope act(x) / x at the target run.
        gate = fn(pre_c) + (pre - pre_c) * (fn(pre_c) / stab) if "identity" in rules else fn(pre)
        if not cfg.gated_mlp:
            return y_c + (gate - fn(pre_c))
        lin, lin_c = live[p + ".hook_pre_linear"], const[p + ".hook_pre_linear"]
        half = 0.5 if "half" in rules else 1.0
        return y_c + half * ((gate - fn(pre_c)) * lin_c + fn(pre_c) * (lin - lin_c))

    for i in range(cfg.n_layers):
        hooks.append((f"blocks.{i}.mlp.hook_pre", save))
        if cfg.gated_mlp:
            hooks.append((f"blocks.{i}.mlp.hook_pre_linear", save))
        hooks.append((f"blocks.{i}.mlp.hook_post", post))
    return hooks
