"""Attribution patching (AtP) and AtP* for every component family at once.

AtP (Nanda 2023, "Attribution patching"; Syed, Rager & Conmy 2023) replaces the forward pass per
component of activation patching by a first-order Taylor estimate at the target run:

    effect(n) ~ (a_source(n) - a_target(n)) . dm/da(n)   (summed over the batch, the metric is a mean)

Cost: a no-grad forward on the source prompts, one forward and one backward on the target prompts — for
every family at once.

AtP* (Kramár, Lieberum, Shah & Nanda 2024, "AtP*: An efficient and scalable method for localizing LLM
behaviour to components", arXiv 2403.00745) fixes AtP's two failure modes:

* **QK fix**: a query or key's effect passes through the attention softmax, whose linearisation misses
  saturated changes. For query/key families the new attention pattern is recomputed exactly and only the
  step from pattern to metric is linearised: effect ~ (P_patched - P_target) . dm/dP.
* **GradDrop**: a node's effect can be cancelled downstream. One extra backward per layer l with the
  gradient through layer l's residual contributions (attention and MLP outputs) dropped; the score is
  sum_l |AtP_l(n)| / (L - 1), an unsigned magnitude.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit.components import DEFAULT_FAMILIES, Family, get_family
from circuitkit.patching.common import (
    Ablation,
    Direction,
    Metric,
    attention_mask,
    check_metric,
    family_list,
    hook_names,
    metric_logits,
    reads_last_position_only,
    resample_permutation,
    source_values,
    target_and_source,
)
from circuitkit.patching.scores import EstimatedEffects

Hook = tuple[str, Callable]
QK_FAMILIES = ("head_q", "head_k", "head_q_pos", "head_k_pos")


def family_sum(fam: Family, product: Float[Tensor, "batch ..."]) -> Tensor:
    """Sum an elementwise product over every axis except the family's position / head axes.

    The batch axis is summed too: the metric is a mean over prompts, so its gradient already carries
    the 1/batch and the per-prompt estimates add up to the estimate for the mean.
    """
    keep = sorted(a for a in (fam.pos_axis, fam.head_axis) if a is not None)
    drop = [a for a in range(product.ndim) if a not in keep]
    out = product.sum(dim=drop) if drop else product
    # Axes come out in activation order; reorder to the family's dims (after "layer").
    order = {fam.pos_axis: "pos", fam.head_axis: "head"}
    names = [order[a] for a in keep]
    return out.permute([names.index(d) for d in fam.dims[1:]]) if names else out


def grad_run(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    hook_names: Sequence[str],
    extra_hooks: Sequence[Hook] = (),
) -> tuple[float, dict[str, Tensor], dict[str, Tensor]]:
    """One forward and one backward: the metric, and the activations and gradients at ``hook_names``.

    ``extra_hooks`` run before the capture (RelP's rules, GradDrop's detaches). Gradients come from
    ``torch.autograd.grad`` so no parameter ``.grad`` is touched and the model is not modified.
    """
    acts: dict[str, Tensor] = {}

    def capture(act: Tensor, hook) -> Tensor:
        if not act.requires_grad:  # parameters frozen, or a rule made this a detached value
            act = act.detach().requires_grad_(True)
        acts[hook.name] = act
        return act

    def leaf(act: Tensor, hook) -> Tensor:
        # Makes the graph exist even when the model's parameters do not require grad.
        return act if act.requires_grad else act.detach().requires_grad_(True)

    # Rotary and ALiBi models have no hook_pos_embed; hook only the embeddings this model has.
    leaves = [name for name in ("hook_embed", "hook_pos_embed") if name in model.hook_dict]
    hooks = [*((name, leaf) for name in leaves), *extra_hooks]
    hooks += [(name, capture) for name in dict.fromkeys(hook_names)]
    keys = list(dict.fromkeys(hook_names))
    with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
        logits = metric_logits(model, tokens, reads_last_position_only(metric))
        m = check_metric(metric(logits))
        inputs = [acts[n] for n in keys]
        grads = torch.autograd.grad(m, inputs, allow_unused=True)
    # Keyed by the order asked for, not the order the hooks fired in.
    out_grads = {
        n: (torch.zeros_like(a) if g is None else g) for n, a, g in zip(keys, inputs, grads, strict=True)
    }
    return float(m.detach()), {n: a.detach() for n, a in acts.items()}, out_grads


def _estimate(
    fams: Sequence[Family],
    layers: Sequence[int],
    delta: dict[str, Tensor],
    grads: dict[str, Tensor],
) -> dict[str, Tensor]:
    out = {}
    for fam in fams:
        per_layer = [family_sum(fam, delta[fam.hook_name(lay)] * grads[fam.hook_name(lay)]) for lay in layers]
        out[fam.name] = torch.stack(per_layer).double().cpu()
    return out


def source_deltas(
    model: HookedTransformer,
    source: Tensor,
    target_acts: dict[str, Tensor],
    metric: Metric,
    ablation: Ablation,
    seed: int,
) -> tuple[float, dict[str, Tensor]]:
    """Run the source prompts once (no grad): the source metric and a_source - a_target per hook."""
    names = list(target_acts)
    cache: dict[str, Tensor] = {}

    def keep(act: Tensor, hook) -> None:
        cache[hook.name] = act

    with torch.no_grad(), model.hooks(fwd_hooks=[(n, keep) for n in names]):
        logits = metric_logits(model, source, reads_last_position_only(metric))
        base = float(check_metric(metric(logits)))
    perm = resample_permutation(source.shape[0], seed, source.device)
    return base, {n: source_values(cache[n], ablation, perm) - target_acts[n] for n in names}


class LinearRun(NamedTuple):
    """Everything a first-order estimate needs, from one gradient run and one source run (3 passes)."""

    target: Int[Tensor, "batch pos"]
    """Tokens of the run the gradients are taken on."""
    base_target: float
    base_source: float
    acts: dict[str, Tensor]
    """Target-run activation per hook name."""
    grads: dict[str, Tensor]
    """dm/da at the target run per hook name."""
    delta: dict[str, Tensor]
    """a_source - a_target per hook name (the ablation applied to the source values)."""


def linear_run(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    names: Sequence[str],
    *,
    direction: Direction,
    ablation: Ablation,
    seed: int,
    extra_hooks: Sequence[Hook] = (),
) -> LinearRun:
    """A forward + backward on the target prompts and a forward on the source prompts, at ``names``."""
    target, source = target_and_source(model, clean_tokens, corrupted_tokens, direction, ablation)
    base_tgt, acts, grads = grad_run(model, target, metric, names, extra_hooks)
    base_src, delta = source_deltas(model, source, acts, metric, ablation, seed)
    return LinearRun(target, base_tgt, base_src, acts, grads, delta)


def attribution_patching(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    families: str | Sequence[str] = DEFAULT_FAMILIES,
    *,
    direction: Direction = "denoising",
    ablation: Ablation = "patch",
    layers: Sequence[int] | None = None,
    seed: int = 0,
    extra_hooks: Sequence[Hook] = (),
    method: str = "atp",
    options: dict | None = None,
) -> EstimatedEffects:
    """AtP estimates of the effect of patching every component of ``families``: 2 forwards, 1 backward.

    Returns :class:`EstimatedEffects` whose grids match :func:`activation_patching`'s ``effects()``
    (``m_patched - m_target``) to first order; several families in one call give the same grids as one
    call per family. ``extra_hooks`` are forward hooks applied during the gradient pass (RelP uses them
    for its propagation rules).
    """
    t0 = time.perf_counter()
    families = family_list(families)
    layers = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    run = linear_run(
        model,
        clean_tokens,
        corrupted_tokens,
        metric,
        hook_names(model, families, layers),
        direction=direction,
        ablation=ablation,
        seed=seed,
        extra_hooks=extra_hooks,
    )
    return EstimatedEffects(
        method=method,
        grids=_estimate([get_family(f) for f in families], layers, run.delta, run.grads),
        baseline_target=run.base_target,
        baseline_source=run.base_source,
        passes=3.0,
        seconds=time.perf_counter() - t0,
        direction=direction,
        ablation=ablation,
        n_prompts=int(run.target.shape[0]),
        seed=seed,
        options=dict(options or {}),
    )


# ---------------------------------------------------------------------------------------------- AtP*


def _check_qk_fixable(model: HookedTransformer, target: Tensor) -> None:
    """Refuse, naming the feature, models whose attention the QK fix's recomputation does not model.

    The fix recomputes each pattern as softmax(causal-masked q . k / attn_scale) from ``attn.hook_q`` /
    ``attn.hook_k``; anything else between those hooks and the pattern would make its numbers wrong.
    """
    cfg = model.cfg
    unsupported = {
        f"{cfg.positional_embedding_type} positions (applied after attn.hook_q / hook_k)": (
            cfg.positional_embedding_type not in ("standard", "shortformer")
        ),
        "soft-capped attention scores": cfg.attn_scores_soft_cap not in (-1, -1.0, None),
        "grouped-query attention (n_key_value_heads)": cfg.n_key_value_heads not in (None, cfg.n_heads),
        "q/k normalisation (use_qk_norm)": bool(cfg.use_qk_norm)
        or cfg.original_architecture in ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM"),
        "local attention windows (attn_types / window_size)": any(
            getattr(b.attn, "attn_type", "global") == "local" for b in model.blocks
        ),
        "clipped q/k/v (clip_qkv)": cfg.clip_qkv is not None,
        "log-n attention scaling (use_logn_attn)": bool(cfg.use_logn_attn),
        "attention sinks (use_attention_sinks)": bool(cfg.use_attention_sinks),
        "non-causal attention": cfg.attention_dir != "causal",
    }
    mask = attention_mask(model, target)
    unsupported["left-padded prompts (padding mask)"] = mask is not None and not bool(mask.all())
    found = [name for name, present in unsupported.items() if present]
    if found:
        raise ValueError(
            f"the AtP* QK fix recomputes attention as softmax(causal q.k / attn_scale) and does not model "
            f"{'; '.join(found)} of {cfg.model_name}; use method='atp' (or qk_fix=False) on this model"
        )


def _scores(q: Tensor, k: Tensor, scale: float) -> Tensor:
    """Causally masked attention scores [batch, head, query, key] from q, k [batch, pos, head, d_head]."""
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) / scale
    n = s.shape[-1]
    mask = torch.ones(n, n, dtype=torch.bool, device=s.device).triu(1)
    return s.masked_fill(mask, float("-inf"))


def qk_fix_estimates(
    q_t: Tensor, k_t: Tensor, q_s: Tensor, k_s: Tensor, grad_pattern: Tensor, scale: float
) -> dict[str, Tensor]:
    """AtP* QK-fix estimates for one layer, every head: exact new patterns, linear from pattern to metric.

    Args:
        q_t, k_t: target-run queries and keys ``[batch, pos, head, d_head]``; q_s, k_s: their source values.
        grad_pattern: dm/dP at the target run ``[batch, head, query, key]``.
    Returns:
        ``head_q`` / ``head_k`` ``[head]`` (every position patched) and ``head_q_pos`` / ``head_k_pos``
        ``[pos, head]`` (one position patched).
    """
    q_t, k_t, q_s, k_s, g = (x.double() for x in (q_t, k_t, q_s, k_s, grad_pattern))
    s_t = _scores(q_t, k_t, scale)
    p_t = s_t.softmax(-1)
    pg = (p_t * g).sum(-1)  # [b, h, q]: the target pattern's term
    # Queries: patching q at position p changes row p alone, so the by-position estimate is the row sum.
    dq_rows = (_scores(q_s, k_t, scale).softmax(-1) * g).sum(-1) - pg  # [b, h, q]
    # Keys, all positions: every score recomputed.
    dk_all = ((_scores(q_t, k_s, scale).softmax(-1) - p_t) * g).sum((-1, -2))  # [b, h]
    # Keys at one position s: column s of the scores changes; the softmax renormalises each row.
    # With A = exp(S'[q, s] - logZ[q]): new row = P_t * r except column s = A * r, r = 1/(1 - P_t[q, s] + A).
    s_new = torch.einsum("bqhd,bkhd->bhqk", q_t, k_s) / scale
    log_z = torch.logsumexp(s_t, -1, keepdim=True)
    a = torch.exp(s_new - log_z)
    r = 1.0 / (1.0 - p_t + a)
    per_qs = r * (pg[..., None] - p_t * g) + a * r * g - pg[..., None]  # [b, h, q, s]
    causal = torch.ones_like(per_qs[0, 0], dtype=torch.bool).tril()
    dk_pos = per_qs.masked_fill(~causal, 0.0).sum(-2)  # [b, h, s]
    return {
        "head_q": dq_rows.sum((0, 2)),
        "head_k": dk_all.sum(0),
        "head_q_pos": dq_rows.sum(0).T,
        "head_k_pos": dk_pos.sum(0).T,
    }


def atp_star(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    families: str | Sequence[str] = DEFAULT_FAMILIES,
    *,
    direction: Direction = "denoising",
    ablation: Ablation = "patch",
    qk_fix: bool = True,
    grad_drop: bool = False,
    seed: int = 0,
) -> EstimatedEffects:
    """AtP* (Kramár et al. 2024): AtP with the QK fix for query/key families and optional GradDrop.

    With ``grad_drop=False`` scores stay signed effects (AtP with exact softmax for queries and keys).
    With ``grad_drop=True`` every score becomes sum_l |AtP_l| / (L - 1) over L extra forward/backward
    passes, each with the gradient through one layer's attention and MLP outputs dropped: an unsigned
    magnitude for ranking (compare it with |activation-patching effect|).
    """
    t0 = time.perf_counter()
    families = family_list(families)
    fams = [get_family(f) for f in families]
    n_layers = model.cfg.n_layers
    layers = list(range(n_layers))
    names = hook_names(model, families, layers)
    want_qk = qk_fix and any(f in QK_FAMILIES for f in families)
    if want_qk:
        _check_qk_fixable(model, target_and_source(model, clean_tokens, corrupted_tokens, direction)[0])
        for layer in layers:
            names += [f"blocks.{layer}.attn.hook_{x}" for x in ("q", "k", "pattern")]
    run = linear_run(
        model,
        clean_tokens,
        corrupted_tokens,
        metric,
        names,
        direction=direction,
        ablation=ablation,
        seed=seed,
    )
    target, acts, delta = run.target, run.acts, run.delta
    passes = 3.0

    def estimates(grads: dict[str, Tensor]) -> dict[str, Tensor]:
        grids = _estimate(fams, layers, delta, grads)
        if want_qk:
            fixed = []
            for layer in layers:
                h = f"blocks.{layer}.attn.hook_"
                q_t, k_t = acts[h + "q"], acts[h + "k"]
                q_s, k_s = q_t + delta[h + "q"], k_t + delta[h + "k"]
                scale = float(model.blocks[layer].attn.attn_scale)
                fixed.append(qk_fix_estimates(q_t, k_t, q_s, k_s, grads[h + "pattern"], scale))
            for f in families:
                if f in QK_FAMILIES:
                    grids[f] = torch.stack([x[f] for x in fixed]).double().cpu()
        return grids

    grids = estimates(run.grads)
    if grad_drop:
        total = {f: torch.zeros_like(g) for f, g in grids.items()}
        for dropped in layers:

            def drop(act: Tensor, hook) -> Tensor:
                # Same value, no gradient back through this layer's contribution to the residual stream.
                return act.detach()

            drop_hooks = [(f"blocks.{dropped}.hook_attn_out", drop), (f"blocks.{dropped}.hook_mlp_out", drop)]
            _, _, grads_l = grad_run(model, target, metric, names, drop_hooks)
            for f, g in estimates(grads_l).items():
                total[f] += g.abs()
            passes += 2.0
        grids = {f: g / max(n_layers - 1, 1) for f, g in total.items()}
    return EstimatedEffects(
        method="atp*",
        grids=grids,
        baseline_target=run.base_target,
        baseline_source=run.base_source,
        passes=passes,
        seconds=time.perf_counter() - t0,
        direction=direction,
        ablation=ablation,
        n_prompts=int(target.shape[0]),
        seed=seed,
        signed=not grad_drop,
        options={"qk_fix": qk_fix, "grad_drop": grad_drop},
    )
