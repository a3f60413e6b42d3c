"""The discovery methods the explorer can run, and how it calls them.

The library's method registry (``circuitkit.methods``) names the methods and runs them; where it is not
installed, activation patching is called directly. Either way a run returns a
:class:`circuitkit.results.ResultTable`.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from app import state
from circuitkit import results

DIRECTIONS = ["denoising", "noising"]
DEFAULT_PROMPTS = 32
FEATURE_PROMPTS = 16
LABELS = {
    "activation": "activation patching",
    "atp": "AtP",
    "atp*": "AtP*",
    "atp_star": "AtP*",
    "relp": "RelP",
    "ig": "integrated gradients",
}


class Spec(NamedTuple):
    """One patching view: what to run on which prompts."""

    model: str
    task: str
    method: str
    family: str
    direction: str
    n_prompts: int


def _registry():
    try:
        from circuitkit import methods as registry
    except ImportError:
        return None
    return registry


def available(family: str | None = None) -> dict[str, str]:
    """Method key -> display name, activation patching first: the registry's methods that score every
    family (``family=None``) or that can score ``family``."""
    reg = _registry()
    keys = ["activation"]
    if reg is not None:
        for name, m in reg.available().items():
            fits = m.families is None if family is None else (m.families is None or family in m.families)
            if name != "activation" and fits:
                keys.append(name)
    return {k: LABELS.get(k, k) for k in keys}


def run(spec: Spec) -> results.ResultTable:
    """Run one method on one family over held-out task prompts (the app's cached model and prompts)."""
    return run_on(spec, state.model(spec.model), state.task_data(spec.model, spec.task, spec.n_prompts))


def run_on(spec: Spec, model, data) -> results.ResultTable:
    """Run one method on one family of ``model`` over ``data`` through the library's registry."""
    reg = _registry()
    if reg is not None:
        req = reg.MethodRequest(
            model=model, data=data, families=[spec.family], direction=spec.direction, model_name=spec.model
        )
        t0 = time.perf_counter()
        out = reg.run_method(spec.method, req)
        if not out.provenance.seconds:
            out.provenance.seconds = time.perf_counter() - t0
        return out
    if spec.method != "activation":
        raise ValueError(f"method {spec.method!r} needs circuitkit.methods, which is not installed")
    from circuitkit.patching.activation import activation_patching

    t0 = time.perf_counter()
    r = activation_patching(
        model, data.clean_tokens, data.corrupted_tokens, data.metric, spec.family, direction=spec.direction
    )
    seconds = time.perf_counter() - t0
    prov = results.Provenance(
        model=spec.model,
        task=spec.task,
        method="activation",
        metric=data.metric_name,
        direction=spec.direction,
        n_prompts=len(data),
        seed=data.seed,
        score_kind="effect",
        passes=float(r.scores.numel() + 2),
        seconds=seconds,
        extra={"baseline_target": r.baseline_target, "baseline_source": r.baseline_source},
    )
    return results.from_grids({spec.family: r.scores - r.baseline_target}, prov)


def feature_nodes(model_name: str, task: str, dictionary_ids: tuple[str, ...], method: str) -> pd.DataFrame:
    """Every latent and error node of the dictionaries, spliced in together, scored by AtP or RelP
    (``circuitkit.features.attribute_nodes``) on held-out prompts, summed over positions."""
    from circuitkit.features import attribute_nodes

    model = state.model(model_name)
    data = state.task_data(model_name, task, FEATURE_PROMPTS)
    dicts = {d: state.dictionary(d, str(model.cfg.device)) for d in dictionary_ids}
    attr = attribute_nodes(model, data.clean_tokens, data.corrupted_tokens, data.metric, dicts, method=method)
    return attr.table()


def correlation(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(Pearson r, Spearman rho) from circuitkit.evaluation; Pearson alone from circuitkit.viz without it."""
    try:
        from circuitkit.evaluation import pearson, spearman
    except ImportError:
        from circuitkit.viz import pearson_r

        return pearson_r(x, y), float("nan")
    a, b = torch.as_tensor(np.asarray(x, dtype=float)), torch.as_tensor(np.asarray(y, dtype=float))
    return pearson(a, b), spearman(a, b)
