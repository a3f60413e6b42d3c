"""Registers the patching methods in :mod:`circuitkit.methods`."""

from __future__ import annotations

import time

import pandas as pd

from circuitkit.methods import MethodRequest, patching_table, register
from circuitkit.patching.activation import activation_patching
from circuitkit.patching.attribution import atp_star, attribution_patching
from circuitkit.patching.integrated_gradients import integrated_gradients
from circuitkit.patching.relp import RelPRules, relevance_patching
from circuitkit.results import ResultTable


def _args(req: MethodRequest) -> tuple:
    d = req.data
    return (req.model, d.clean_tokens, d.corrupted_tokens, d.metric)


def _kw(req: MethodRequest) -> dict:
    return {"direction": req.direction, "ablation": req.ablation, "seed": req.seed}


@register("activation", "exact activation patching, one patched copy per component (batched)", exact=True)
def _activation(req: MethodRequest) -> ResultTable:
    t0 = time.perf_counter()
    tables, passes = [], 0.0
    for family in req.families:
        r = activation_patching(*_args(req), family, progress=req.progress, **_kw(req))
        tables.append(patching_table(req, "activation", r))
        passes += 2 + r.scores.numel()  # two reference runs + one (partial) forward per component
    out = ResultTable(pd.concat([t.table for t in tables], ignore_index=True), tables[0].provenance)
    out.provenance.passes = passes
    out.provenance.seconds = time.perf_counter() - t0
    return out


@register("atp", "attribution patching (AtP): 2 forwards + 1 backward for every family")
def _atp(req: MethodRequest) -> ResultTable:
    r = attribution_patching(*_args(req), req.families, **_kw(req))
    return r.to_table(req.name, req.data.task, req.data.metric_name)


@register("atp*", "AtP* (Kramár et al. 2024): AtP with the QK fix; option grad_drop=true adds GradDrop")
def _atp_star(req: MethodRequest) -> ResultTable:
    opts = {k: req.options[k] for k in ("qk_fix", "grad_drop") if k in req.options}
    r = atp_star(*_args(req), req.families, **opts, **_kw(req))
    return r.to_table(req.name, req.data.task, req.data.metric_name)


@register(
    "relp", "relevance patching (RelP): AtP with LRP rules; option rules=ln+identity (+attention, half)"
)
def _relp(req: MethodRequest) -> ResultTable:
    rules = req.options.get("rules", RelPRules())
    r = relevance_patching(*_args(req), req.families, rules=rules, **_kw(req))
    return r.to_table(req.name, req.data.task, req.data.metric_name)


@register("ig", "integrated gradients along corrupted -> clean activations; option steps=10")
def _ig(req: MethodRequest) -> ResultTable:
    steps = int(req.options.get("steps", 10))
    r = integrated_gradients(*_args(req), req.families, steps=steps, progress=req.progress, **_kw(req))
    return r.to_table(req.name, req.data.task, req.data.metric_name)
