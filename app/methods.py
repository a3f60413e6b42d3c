"""The discovery methods the explorer can run, and how it calls them: always through the library's
method registry (:func:`circuitkit.methods.run_method`), so a result made here has the same provenance
as one the CLI writes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import pandas as pd

from app import state
from circuitkit import methods as registry
from circuitkit.evaluation.correlation import compare
from circuitkit.results import ResultTable

DIRECTIONS = ["denoising", "noising"]
DEFAULT_PROMPTS = 32
FEATURE_PROMPTS = 16
LABELS = {
    "activation": "activation patching",
    "atp": "AtP",
    "atp*": "AtP*",
    "relp": "RelP",
    "ig": "integrated gradients",
    "heads": "discrete-SAE heads",
}


class Spec(NamedTuple):
    """One patching view: what to run on which prompts."""

    model: str
    task: str
    method: str
    family: str
    direction: str
    n_prompts: int
    options: tuple[tuple[str, Any], ...] = ()
    """Method options as sorted (key, value) pairs (hashable, so a spec can key the session cache)."""


def available(family: str | None = None) -> dict[str, str]:
    """Method key -> display name, activation patching first: the registry's methods that score every
    family (``family=None``) or that can score ``family`` (methods that choose their own nodes, such as
    feature circuits, have their own page)."""
    keys = ["activation"]
    for name, m in registry.available().items():
        if name == "activation" or m.chooses_nodes:
            continue
        if m.families is None if family is None else (m.families is None or family in m.families):
            keys.append(name)
    return {k: LABELS.get(k, k) for k in keys}


def run(spec: Spec) -> ResultTable:
    """Run one method on one family over held-out task prompts (the app's cached model and prompts)."""
    return run_on(spec, state.model(spec.model), state.task_data(spec.model, spec.task, spec.n_prompts))


def run_on(spec: Spec, model, data) -> ResultTable:
    """Run one method on one family of ``model`` over ``data`` through the library's registry."""
    req = registry.MethodRequest(
        model=model,
        data=data,
        families=[spec.family],
        direction=spec.direction,
        options=dict(spec.options),
        model_name=spec.model,
    )
    return registry.run_method(spec.method, req)


def feature_nodes(model_name: str, task: str, dictionary_ids: tuple[str, ...], method: str) -> pd.DataFrame:
    """Every latent and error node of the dictionaries, spliced in together, scored by AtP or RelP
    through the registry's ``features`` method on held-out prompts, summed over positions."""
    model = state.model(model_name)
    data = state.task_data(model_name, task, FEATURE_PROMPTS)
    dicts = {d: state.dictionary(d, str(model.cfg.device)) for d in dictionary_ids}
    req = registry.MethodRequest(
        model=model, data=data, options={"dictionaries": dicts, "method": method}, model_name=model_name
    )
    return registry.run_method("features", req).table


def correlation(result: ResultTable, reference: ResultTable, family: str) -> Mapping[str, float]:
    """Pearson r and Spearman rho of a method's scores with activation patching's for one family, by
    :func:`circuitkit.evaluation.correlation.compare` (unsigned methods against |effect|)."""
    row = compare(reference, result, [family]).iloc[0]
    return {"pearson": float(row["pearson"]), "spearman": float(row["spearman"])}
