"""Registers the patching methods in :mod:`circuitkit.methods`, each with its declared options."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit.methods import MethodRequest, Option, measured, register
from circuitkit.patching.activation import activation_patching
from circuitkit.patching.attribution import atp_star, attribution_patching
from circuitkit.patching.integrated_gradients import integrated_gradients
from circuitkit.patching.relp import RelPRules, relevance_patching
from circuitkit.patching.scores import EstimatedEffects
from circuitkit.results import ResultTable, from_grids


def _args(req: MethodRequest) -> tuple[HookedTransformer, Tensor, Tensor, Callable[[Tensor], Tensor]]:
    d = req.data
    return (req.model, d.clean_tokens, d.corrupted_tokens, d.metric)


def _kw(req: MethodRequest) -> dict:
    return {"direction": req.direction, "ablation": req.ablation, "seed": req.seed}


def _table(r: EstimatedEffects) -> ResultTable:
    prov = measured(
        score_kind="effect" if r.signed else "magnitude",
        passes=r.passes,
        seconds=r.seconds,
        baseline_target=r.baseline_target,
        baseline_source=r.baseline_source,
    )
    return from_grids(r.grids, prov)


def rules_name(value: object) -> str:
    """RelP rules in any accepted form -> their canonical name (``"ln+identity"``)."""
    if isinstance(value, RelPRules):
        if value.layers is not None:
            raise ValueError("rules restricted to layers are not an option; call relevance_patching")
        return value.name
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not RelP rules; use e.g. ln+identity")
    return RelPRules.parse(value).name


@register("activation", "exact activation patching, one patched copy per component (batched)", exact=True)
def _activation(req: MethodRequest) -> ResultTable:
    t0 = time.perf_counter()
    grids: dict[str, torch.Tensor] = {}
    passes = 0.0
    for family in req.families:
        r = activation_patching(*_args(req), family, progress=req.progress, **_kw(req))
        grids[family] = r.effects()
        passes += 2 + r.scores.numel()  # two reference runs + one (partial) forward per component
    prov = measured(
        passes=passes,
        seconds=time.perf_counter() - t0,
        baseline_target=r.baseline_target,
        baseline_source=r.baseline_source,
    )
    return from_grids(grids, prov)


@register("atp", "attribution patching (AtP): 2 forwards + 1 backward for every family")
def _atp(req: MethodRequest) -> ResultTable:
    return _table(attribution_patching(*_args(req), req.families, **_kw(req)))


@register(
    "atp*",
    "AtP* (Kramár et al. 2024): AtP with the QK fix; option grad_drop=true adds GradDrop",
    options=(
        Option("qk_fix", bool, True, "recompute the attention softmax for query / key families"),
        Option("grad_drop", bool, False, "GradDrop: unsigned magnitudes over L extra backward passes"),
    ),
)
def _atp_star(req: MethodRequest) -> ResultTable:
    o = req.options
    return _table(
        atp_star(*_args(req), req.families, qk_fix=o["qk_fix"], grad_drop=o["grad_drop"], **_kw(req))
    )


@register(
    "relp",
    "relevance patching (RelP): AtP with LRP rules; option rules=ln+identity (+attention, half)",
    options=(
        Option(
            "rules",
            str,
            RelPRules().name,
            "LRP rules joined by + (ln, attention, identity, half; all; none)",
            normalize=rules_name,
        ),
    ),
)
def _relp(req: MethodRequest) -> ResultTable:
    rules = RelPRules.parse(req.options["rules"])
    return _table(relevance_patching(*_args(req), req.families, rules=rules, **_kw(req)))


@register(
    "ig",
    "integrated gradients along corrupted -> clean activations; option steps=10",
    options=(Option("steps", int, 10, "points on the straight path (midpoint rule)", minimum=1),),
)
def _ig(req: MethodRequest) -> ResultTable:
    steps = req.options["steps"]
    r = integrated_gradients(*_args(req), req.families, steps=steps, progress=req.progress, **_kw(req))
    return _table(r)
