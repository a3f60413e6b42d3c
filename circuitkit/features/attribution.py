"""Node attribution for dictionary latents and error nodes: AtP, RelP and integrated gradients.

Marks et al. (2024, "Sparse Feature Circuits", arXiv 2403.19647), section 2: the effect of moving node
``a`` from its value in the gradient ("target") run to its value in the other ("source") run is
estimated linearly, ``(a_source - a_target) . dm/da`` (attribution patching, AtP; Nanda 2023, Kramár et
al. 2024), or by integrated gradients along the straight path between the two values (Sundararajan et
al. 2017), ``(a_source - a_target) . mean_alpha dm/da|_(a_target + alpha (a_source - a_target))``, with
every other node of the same dictionary moved along the same path and downstream computed normally.
RelP (Jafari et al. 2025, arXiv 2508.21258) is AtP with the LRP propagation rules of
:mod:`circuitkit.patching.relp` on the model's LayerNorms, attention and MLPs during the gradient run;
the dictionaries' linear decoders keep the plain gradient, so latents + error still sum to the
component's RelP score.

``direction="denoising"`` takes gradients on the corrupted run and moves towards clean values (the
project's AtP convention); ``"noising"`` the reverse. Scores are for the metric as given, which is a mean
over prompts, so per-prompt contributions are summed over the batch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit.features.splice import Dictionary, place, run_spliced
from circuitkit.patching.common import Direction, Metric, check_metric, target_and_source
from circuitkit.patching.relp import RelPRules, rule_hooks

Method = Literal["atp", "relp", "ig"]
Dictionaries = Sequence[SAE] | Mapping[str, SAE] | Sequence[Dictionary]


@dataclass
class NodeScores:
    """Attribution of one dictionary's nodes, per position, summed over prompts."""

    latents: Float[Tensor, "pos d_sae"]
    error: Float[Tensor, " pos"]

    def total(self) -> float:
        return float(self.latents.sum() + self.error.sum())


@dataclass
class FeatureAttribution:
    """Scores of every latent and error node of every spliced dictionary."""

    scores: dict[str, NodeScores]
    """Dictionary id -> its node scores, in forward order."""
    hooks: dict[str, tuple[str, str]]
    """Dictionary id -> (input hook, output hook)."""
    metric_target: float
    """Metric of the unpatched gradient run (corrupted when denoising)."""
    metric_source: float
    provenance: dict = field(default_factory=dict)

    def table(self, *, by_position: bool = False, min_abs: float = 0.0) -> pd.DataFrame:
        """Tidy rows: family, layer, head, pos, component, score, then dictionary, latent, hooks.

        ``family`` is ``latent`` or ``error``; ``component`` is ``"{dictionary}/{latent}"`` or
        ``"{dictionary}/error"``; ``latent`` is -1 for error nodes. Without ``by_position`` scores are
        summed over positions.
        """
        frames = []
        for ident, s in self.scores.items():
            lat = s.latents if by_position else s.latents.sum(0, keepdim=True)
            err = s.error if by_position else s.error.sum(0, keepdim=True)
            pos_idx, lat_idx = (
                torch.nonzero(lat.abs() >= min_abs, as_tuple=True)
                if min_abs > 0
                else (
                    torch.arange(lat.shape[0]).repeat_interleave(lat.shape[1]),
                    torch.arange(lat.shape[1]).repeat(lat.shape[0]),
                )
            )
            err_pos = torch.arange(err.shape[0])
            err_pos = err_pos[err.abs() >= min_abs] if min_abs > 0 else err_pos
            n_lat, n_err = len(lat_idx), len(err_pos)
            hook_in, hook_out = self.hooks[ident]
            pos_col = pos_idx.tolist() + err_pos.tolist() if by_position else [None] * (n_lat + n_err)
            frames.append(
                pd.DataFrame(
                    {
                        "family": ["latent"] * n_lat + ["error"] * n_err,
                        "layer": pd.array([_layer_of(hook_out)] * (n_lat + n_err), dtype="Int64"),
                        "head": pd.array([None] * (n_lat + n_err), dtype="Int64"),
                        "pos": pd.array(pos_col, dtype="Int64"),
                        "component": [f"{ident}/{i}" for i in lat_idx.tolist()] + [f"{ident}/error"] * n_err,
                        "score": lat[pos_idx, lat_idx].double().tolist() + err[err_pos].double().tolist(),
                        "dictionary": ident,
                        "latent": lat_idx.tolist() + [-1] * n_err,
                        "hook_in": hook_in,
                        "hook_out": hook_out,
                    }
                )
            )
        df = pd.concat(frames, ignore_index=True)
        for key in ("method", "direction", "metric", "model", "task", "seed", "n_prompts"):
            df[key] = self.provenance.get(key)
        df.attrs["provenance"] = self.provenance
        return df


def _layer_of(hook: str) -> int | None:
    parts = hook.split(".")
    return int(parts[1]) if len(parts) > 1 and parts[0] == "blocks" and parts[1].isdigit() else None


def _deltas(source, target, d: Dictionary) -> tuple[Tensor, Tensor]:
    return (
        (source.latents[d.id] - target.latents[d.id]).detach(),
        (source.errors[d.id] - target.errors[d.id]).detach(),
    )


def _reduce(delta_f: Tensor, g_f: Tensor, delta_err: Tensor, g_err: Tensor) -> NodeScores:
    return NodeScores(
        latents=(delta_f * g_f).sum(0).detach(),
        error=(delta_err * g_err).flatten(2).sum(-1).sum(0).detach(),
    )


def attribute_nodes(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    dictionaries: Dictionaries,
    *,
    method: Method = "atp",
    direction: Direction = "denoising",
    ig_steps: int = 10,
    rules: RelPRules | str = "ln+identity",
    provenance: dict | None = None,
) -> FeatureAttribution:
    """Score every latent and error node of ``dictionaries`` (spliced into ``model`` together).

    Args:
        metric: logits -> scalar (e.g. ``TaskDataset.metric``).
        dictionaries: sae-lens SAEs / transcoders (a mapping names them; otherwise ids are hook names).
        method: ``atp`` (one forward per run, one backward), ``relp`` (the same with LRP rules in the
            backward) or ``ig`` (``ig_steps`` forward + backward passes per dictionary, midpoint rule).
        rules: RelP's rules (``relp`` only), e.g. ``"ln+identity"``.
    """
    if method not in ("atp", "relp", "ig"):
        raise ValueError(f"method must be 'atp', 'relp' or 'ig', got {method!r}")
    if isinstance(rules, str):
        rules = RelPRules.parse(rules)
    if ig_steps < 1:
        raise ValueError(f"ig_steps must be >= 1, got {ig_steps}")
    start = time.perf_counter()
    dicts = place(model, dictionaries)
    target, source = target_and_source(model, clean_tokens, corrupted_tokens, direction)
    with torch.no_grad():
        src_logits, src = run_spliced(model, source, dicts)
        m_source = float(check_metric(metric(src_logits)))
    scores: dict[str, NodeScores] = {}
    if method in ("atp", "relp"):
        # The rules only change the graph the backward pass walks; forward values stay bit-identical.
        ctx = model.hooks(fwd_hooks=rule_hooks(model, rules)) if method == "relp" else nullcontext()
        with ctx:
            logits, tgt = run_spliced(model, target, dicts, probes=True)
        m = check_metric(metric(logits))
        leaves = [t for d in dicts for t in (tgt.probe_latents[d.id], tgt.probe_errors[d.id])]
        grads = torch.autograd.grad(m, leaves, allow_unused=True)  # one backward for every node
        grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves, strict=True)]
        for i, d in enumerate(dicts):
            delta_f, delta_err = _deltas(src, tgt, d)
            scores[d.id] = _reduce(delta_f, grads[2 * i], delta_err, grads[2 * i + 1])
        m_target = float(m.detach())
        passes = 3.0
    else:
        with torch.no_grad():
            tgt_logits, tgt = run_spliced(model, target, dicts)
            m_target = float(check_metric(metric(tgt_logits)))
        for d in dicts:
            delta_f, delta_err = _deltas(src, tgt, d)
            base_f, base_err = tgt.latents[d.id].detach(), tgt.errors[d.id].detach()
            sum_f, sum_err = torch.zeros_like(delta_f), torch.zeros_like(delta_err)
            for k in range(ig_steps):
                alpha = (k + 0.5) / ig_steps
                f_a = (base_f + alpha * delta_f).requires_grad_(True)
                err_a = (base_err + alpha * delta_err).requires_grad_(True)
                swap = {d.id: lambda f, e, f_a=f_a, err_a=err_a: (f_a, err_a)}
                logits, _ = run_spliced(model, target, dicts, interventions=swap)
                g_f, g_err = torch.autograd.grad(check_metric(metric(logits)), [f_a, err_a])
                sum_f += g_f
                sum_err += g_err
            scores[d.id] = _reduce(delta_f, sum_f / ig_steps, delta_err, sum_err / ig_steps)
        passes = 2.0 + 2.0 * ig_steps * len(dicts)
    return FeatureAttribution(
        scores=scores,
        hooks={d.id: (d.hook_in, d.hook_out) for d in dicts},
        metric_target=m_target,
        metric_source=m_source,
        provenance={
            "method": f"feature_{method}",
            "direction": direction,
            "ig_steps": ig_steps if method == "ig" else None,
            "rules": rules.name if method == "relp" else None,
            "model": model.cfg.model_name,
            "n_prompts": int(clean_tokens.shape[0]),
            "dictionaries": {
                d.id: {"hook_in": d.hook_in, "hook_out": d.hook_out, "d_sae": d.d_sae} for d in dicts
            },
            "passes": passes,
            "seconds": time.perf_counter() - start,
            **(provenance or {}),
        },
    )
