"""Deriving a model's ground-truth circuit for a task by exhaustive activation patching.

Runs when a built-in model is built (``circuitkit zoo train`` / ``zoo circuits``); the result goes into
the model's card, where :func:`circuitkit.tasks.ground_truth.ground_truth` reads it. It lives here, not
in the task layer, because it runs the patching engine; roles come from the task's declared
``role_positions`` (:class:`circuitkit.tasks.registry.Task`).
"""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer

from circuitkit.components import head_label
from circuitkit.patching.activation import activation_patching
from circuitkit.tasks.base import TaskDataset
from circuitkit.tasks.registry import get_task


def _mean_attention(model: HookedTransformer, data: TaskDataset, q: str, k: str) -> torch.Tensor:
    """[n_layers, n_heads] mean attention from position ``q`` to position ``k`` on clean prompts."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(
            data.clean_tokens.to(model.cfg.device), names_filter=lambda n: n in names
        )
    idx = torch.arange(len(data))
    qp, kp = data.positions[q].cpu(), data.positions[k].cpu()
    return torch.stack([cache[n].cpu()[idx, :, qp, kp].mean(0) for n in names])


def derive_circuit(
    model: HookedTransformer, data: TaskDataset, *, threshold: float = 0.1, mlp_threshold: float = 0.1
) -> dict:
    """Heads (and MLP layers) whose single-component activation patch moves the normalised metric by at
    least ``threshold`` in the denoising or the noising direction, with roles read off attention between
    the task's declared role positions.

    Returns a JSON-able dict for the model card.
    """
    n_heads = model.cfg.n_heads
    effects = {}
    for direction in ("denoising", "noising"):
        r = activation_patching(
            model, data.clean_tokens, data.corrupted_tokens, data.metric, "head", direction=direction
        )
        # denoising: share of the clean behaviour one head restores; noising: share of it one head's
        # corrupted value destroys ((m - m_clean) / (m_corrupted - m_clean)). Both are 0 for a bystander.
        effects[direction] = r.normalized()
    mlp = activation_patching(model, data.clean_tokens, data.corrupted_tokens, data.metric, "mlp_out_all")
    mlp_eff = mlp.normalized()

    role_scores = {
        role: _mean_attention(model, data, q, k)
        for role, (q, k) in get_task(data.task).role_positions.items()
    }

    heads = []
    for layer in range(model.cfg.n_layers):
        for head in range(n_heads):
            den, noi = float(effects["denoising"][layer, head]), float(effects["noising"][layer, head])
            if max(abs(den), abs(noi)) < threshold:
                continue
            best_role, best = "other", 0.3
            for role, att in role_scores.items():
                if float(att[layer, head]) > best:
                    best_role, best = role, float(att[layer, head])
            if best_role == "name mover" and den + noi < 0:
                best_role = "negative name mover"
            heads.append(
                {
                    "layer": layer,
                    "head": head,
                    "label": head_label(layer, head),
                    "role": best_role,
                    "effect_denoising": round(den, 4),
                    "effect_noising": round(noi, 4),
                }
            )
    mlps = [
        {"layer": layer, "effect_denoising": round(float(mlp_eff[layer]), 4)}
        for layer in range(model.cfg.n_layers)
        if abs(float(mlp_eff[layer])) >= mlp_threshold
    ]
    return {
        "heads": heads,
        "mlps": mlps,
        "threshold": threshold,
        "method": (
            "exhaustive activation patching of every head (hook_z, all positions), denoising and noising, "
            f"{len(data)} held-out prompts; kept if |normalised effect| >= {threshold}; roles from mean "
            "attention between task positions"
        ),
        "head_effects_denoising": [[round(float(x), 4) for x in row] for row in effects["denoising"]],
        "head_effects_noising": [[round(float(x), 4) for x in row] for row in effects["noising"]],
    }
