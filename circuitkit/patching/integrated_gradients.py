"""Integrated gradients at the node level: the expensive baseline among the patching estimates.

Sundararajan, Taly & Yan 2017 ("Axiomatic attribution for deep networks"), applied to internal
activations as in Marks et al. 2024 ("Sparse feature circuits") and Hanna et al. 2024 ("Have faith in
faithfulness"): for one hook at a time, the activation is moved along the straight line from its target
value to its source value, a(alpha) = a_t + alpha (a_s - a_t), while everything downstream is recomputed;
the gradients along the path are averaged (midpoint rule, ``steps`` points) and multiplied by
(a_s - a_t). By completeness, the scores of all components of one hook add up to the exact effect of
patching that whole hook as ``steps`` grows.

Cost: per family and layer one forward + backward over ``steps`` x batch sequences, started at the
patched layer (the residual stream before it is cached).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from circuitkit.components import DEFAULT_FAMILIES, get_family
from circuitkit.patching.attribution import family_sum
from circuitkit.patching.common import (
    Ablation,
    Direction,
    Metric,
    attention_mask,
    check_metric,
    family_list,
    hook_names,
    resample_permutation,
    shortformer_pos_embed,
    source_values,
    target_and_source,
)
from circuitkit.patching.scores import EstimatedEffects


def integrated_gradients(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    families: str | Sequence[str] = DEFAULT_FAMILIES,
    *,
    steps: int = 10,
    direction: Direction = "denoising",
    ablation: Ablation = "patch",
    seed: int = 0,
    max_batch: int = 1024,
    progress: bool = False,
) -> EstimatedEffects:
    """IG estimates of patching each component of ``families`` (signed, ``m_patched - m_target``).

    Args:
        steps: points on the path (midpoints of ``steps`` equal intervals); more is closer to exact.
        max_batch: most sequences in one forward; the path points are split into chunks to fit.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    t0 = time.perf_counter()
    families = family_list(families)
    target, source = target_and_source(model, clean_tokens, corrupted_tokens, direction, ablation)
    n_layers = model.cfg.n_layers
    layers = list(range(n_layers))
    names = hook_names(model, families, layers)
    resid = [f"blocks.{layer}.hook_resid_pre" for layer in layers]
    with torch.no_grad():
        t_logits, t_cache = model.run_with_cache(target, names_filter=lambda n: n in names or n in resid)
        s_logits, s_cache = model.run_with_cache(source, names_filter=lambda n: n in names)
        base_tgt = float(check_metric(metric(t_logits)))
        base_src = float(check_metric(metric(s_logits)))
    del t_logits, s_logits
    batch = target.shape[0]
    perm = resample_permutation(batch, seed, target.device)
    # Runs started at a layer get what model(target) used: the padding mask and shortformer positions.
    mask = attention_mask(model, target)
    spe = shortformer_pos_embed(model, target, mask)
    alphas = (torch.arange(steps, dtype=torch.float64) + 0.5) / steps
    per_chunk = max(1, max_batch // batch)
    grids: dict[str, list[Tensor]] = {f: [] for f in families}
    passes = 2.0
    work = [(f, layer) for f in families for layer in layers]
    for family, layer in tqdm(work, desc="integrated gradients", disable=not progress):
        fam = get_family(family)
        hook = fam.hook_name(layer)
        a_t = t_cache[hook]
        delta = source_values(s_cache[hook], ablation, perm) - a_t
        grad_sum = torch.zeros_like(a_t, dtype=torch.float64)
        for start in range(0, steps, per_chunk):
            al = alphas[start : start + per_chunk].to(a_t.device, a_t.dtype)
            n = al.shape[0]
            path = (a_t[None] + al.view(-1, *[1] * a_t.ndim) * delta[None]).reshape(n * batch, *a_t.shape[1:])
            path = path.detach().requires_grad_(True)

            def put(act: Tensor, hook, path=path) -> Tensor:
                return path

            with torch.enable_grad():
                logits = model.run_with_hooks(
                    t_cache[resid[layer]].repeat(n, 1, 1),
                    start_at_layer=layer,
                    fwd_hooks=[(hook, put)],
                    return_type="logits",
                    attention_mask=None if mask is None else mask.repeat(n, 1),
                    shortformer_pos_embed=None if spe is None else spe.repeat(n, 1, 1),
                )
                logits = logits.view(n, batch, *logits.shape[1:])
                # Sum of per-point metrics: each point's gradient is its own (points do not interact).
                total = sum(check_metric(metric(logits[i])) for i in range(n))
                (g,) = torch.autograd.grad(total, [path])
            grad_sum += g.view(n, *a_t.shape).sum(0).double()
            passes += 2.0 * n
        grids[family].append(family_sum(fam, delta.double() * grad_sum / steps))
    return EstimatedEffects(
        method="ig",
        grids={f: torch.stack(g).cpu() for f, g in grids.items()},
        baseline_target=base_tgt,
        baseline_source=base_src,
        passes=passes,
        seconds=time.perf_counter() - t0,
        direction=direction,
        ablation=ablation,
        n_prompts=int(batch),
        seed=seed,
        options={"steps": steps},
    )
