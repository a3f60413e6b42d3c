"""Edge attribution patching (EAP) and EAP with integrated gradients (EAP-IG).

EAP (Syed, Rager & Conmy 2023, "Attribution patching outperforms automated circuit discovery",
arXiv 2310.10348) estimates the effect of patching edge ``s -> r`` to first order at the target run:

    score(s -> r) = (a_s,source - a_s,target) . dm/d(input of r)        (summed over prompts, positions)

One forward + backward on the target prompts gives every receiver's gradient and a forward on the source
prompts every sender's value: 3 passes for every edge of the model.

EAP-IG (Hanna, Pezzelle & Belinkov 2024, "Have faith in faithfulness", arXiv 2403.17806) replaces the
gradient by its average along the straight path between the target and the source *input embeddings*
(``blocks.0.hook_resid_pre``), ``x(alpha) = x_target + alpha (x_source - x_target)``, at the midpoints of
``steps`` equal intervals. Summed over every edge out of ``embed`` it is integrated gradients of the
metric in the embeddings, so that sum tends to ``m(source) - m(target)`` (the exact effect of patching
every edge out of ``embed``, i.e. the whole source run) as ``steps`` grows.
"""

from __future__ import annotations

import time

import torch
from jaxtyping import Int
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit.edges.activations import (
    receiver_hook_names,
    sender_hook_names,
    sender_outputs,
    stack_receivers,
)
from circuitkit.edges.graph import EdgeGraph, check_edge_model, split_inputs
from circuitkit.edges.scores import EdgeScores
from circuitkit.patching.activation import Direction, Metric, check_metric
from circuitkit.patching.attribution import grad_run, source_deltas, target_and_source


def _products(delta: Tensor, grads: Tensor, graph: EdgeGraph) -> Tensor:
    """``delta[s] . grads[r]`` summed over prompts, positions and d_model, NaN off the edge mask."""
    d = delta.detach().reshape(delta.shape[0], -1).double()
    g = grads.detach().reshape(grads.shape[0], -1).double()
    out = (d @ g.T).cpu()
    return out.masked_fill(~graph.mask, float("nan"))


def eap(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    *,
    direction: Direction = "denoising",
) -> EdgeScores:
    """EAP scores of every edge (Syed et al. 2023): 2 forwards + 1 backward.

    Args:
        metric: logits ``[batch, pos, vocab]`` -> scalar (a mean over prompts, e.g. ``TaskDataset.metric``).
        direction: ``denoising`` takes gradients on the corrupted run and moves senders towards their
            clean values; ``noising`` the reverse.
    """
    t0 = time.perf_counter()
    check_edge_model(model)
    graph = EdgeGraph.of(model)
    target, source = target_and_source(model, clean_tokens, corrupted_tokens, direction)
    s_names, r_names = sender_hook_names(graph), receiver_hook_names(graph)
    with split_inputs(model):
        base_tgt, acts, grads = grad_run(model, target, metric, r_names + s_names)
    base_src, delta = source_deltas(model, source, {n: acts[n] for n in s_names}, metric, "patch", 0)
    d_send = sender_outputs(model, graph, delta)
    g_recv = stack_receivers(graph, grads)
    scores = _products(d_send, g_recv, graph)
    return EdgeScores(
        "eap",
        graph,
        scores,
        base_tgt,
        base_src,
        passes=3.0,
        seconds=time.perf_counter() - t0,
        direction=direction,
        n_prompts=int(target.shape[0]),
    )


def eap_ig(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    *,
    steps: int = 5,
    direction: Direction = "denoising",
) -> EdgeScores:
    """EAP-IG scores of every edge (Hanna et al. 2024): gradients averaged over ``steps`` points of the
    straight path from the target to the source input embeddings; 2 + 2 * steps passes."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    t0 = time.perf_counter()
    check_edge_model(model)
    graph = EdgeGraph.of(model)
    target, source = target_and_source(model, clean_tokens, corrupted_tokens, direction)
    s_names, r_names = sender_hook_names(graph), receiver_hook_names(graph)
    acts_t: dict[str, Tensor] = {}
    acts_s: dict[str, Tensor] = {}
    with torch.no_grad():
        logits_t, cache_t = model.run_with_cache(target, names_filter=lambda n: n in s_names)
        logits_s, cache_s = model.run_with_cache(source, names_filter=lambda n: n in s_names)
        acts_t, acts_s = dict(cache_t.items()), dict(cache_s.items())
        base_tgt = float(check_metric(metric(logits_t)))  # type: ignore[arg-type]
        base_src = float(check_metric(metric(logits_s)))  # type: ignore[arg-type]
        del logits_t, logits_s
    x_t, x_s = acts_t["blocks.0.hook_resid_pre"], acts_s["blocks.0.hook_resid_pre"]
    grad_sum: Tensor | None = None
    with split_inputs(model):
        for k in range(steps):
            alpha = (k + 0.5) / steps
            x = x_t + alpha * (x_s - x_t)

            def embed(act: Tensor, hook, x=x) -> Tensor:
                return x.clone().requires_grad_(True)

            _, _, grads = grad_run(model, target, metric, r_names, [("blocks.0.hook_resid_pre", embed)])
            g = stack_receivers(graph, grads).double()
            grad_sum = g if grad_sum is None else grad_sum + g
    assert grad_sum is not None
    d_send = sender_outputs(model, graph, {n: acts_s[n] - acts_t[n] for n in s_names})
    scores = _products(d_send, grad_sum / steps, graph)
    return EdgeScores(
        "eap-ig",
        graph,
        scores,
        base_tgt,
        base_src,
        passes=2.0 + 2 * steps,
        seconds=time.perf_counter() - t0,
        direction=direction,
        n_prompts=int(target.shape[0]),
        options={"steps": steps},
    )
