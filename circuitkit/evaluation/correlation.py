"""How well each approximation tracks activation patching: Pearson and Spearman per family, with cost.

The table of Jafari et al. 2025 (RelP, arXiv 2508.21258, Table 1) for any loadable model: for each
component family the exact activation-patching effects (m_patched - m_target) over the whole grid are
compared with each method's estimates. Unsigned methods (AtP* with GradDrop) are compared with the
magnitude |effect|. Cost is the method's passes and seconds beside the exact sweep's.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch import Tensor

from circuitkit.components import DEFAULT_FAMILIES
from circuitkit.evaluation.ground_truth import average_ranks
from circuitkit.methods import MethodRequest, run_method
from circuitkit.results import ResultTable


def pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two equally shaped tensors or arrays (flattened; pairs with a NaN left out;
    NaN when either side is constant)."""
    x, y = _pair(a, b)
    x, y = x - x.mean(), y - y.mean()
    denom = x.norm() * y.norm()
    return float("nan") if denom == 0 else float((x * y).sum() / denom)


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation (Pearson of average ranks, ties shared)."""
    x, y = _pair(a, b)
    return pearson(average_ranks(x), average_ranks(y))


def pearson_without_top(exact: Tensor, approx: Tensor) -> float:
    """Pearson r with the component of largest |exact effect| left out.

    On the toy models one layer-0 head carries most of each task's effect; a method that gets that one
    component roughly right has r near 1 whatever it does on the rest. This number shows the rest.
    """
    x, y = _pair(exact, approx)
    if x.numel() < 3:
        return float("nan")
    keep = torch.ones_like(x, dtype=torch.bool)
    keep[x.abs().argmax()] = False
    return pearson(x[keep], y[keep])


def _pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    a, b = torch.as_tensor(a).detach().cpu(), torch.as_tensor(b).detach().cpu()
    if a.shape != b.shape:
        raise ValueError(f"cannot correlate grids of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    x, y = a.reshape(-1).double(), b.reshape(-1).double()
    keep = ~(torch.isnan(x) | torch.isnan(y))
    return x[keep], y[keep]


def compare(exact: ResultTable, approx: ResultTable, families: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows (family, pearson, spearman, pearson_without_top, n) comparing an approximation's table with
    the exact one."""
    rows = []
    unsigned = approx.provenance.score_kind == "magnitude"
    for family in families or approx.families:
        e, a = exact.grid(family), approx.grid(family)
        e = e.abs() if unsigned else e
        rows.append(
            {
                "family": family,
                "pearson": pearson(e, a),
                "spearman": spearman(e, a),
                "pearson_without_top": pearson_without_top(e, a),
                "n": int(e.numel()),
            }
        )
    return pd.DataFrame(rows)


def parse_method(spec: str) -> tuple[str, dict[str, str]]:
    """``"relp:rules=ln+identity"`` or ``"ig:steps=20"`` or ``"atp*:grad_drop=true"`` -> (name, options).

    Values stay strings: :func:`circuitkit.methods.run_method` parses them by the method's declared
    option types (so ``grad_drop=no`` is ``False`` and ``grad_drop=maybe`` an error naming the option).
    """
    name, _, rest = spec.partition(":")
    options: dict[str, str] = {}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"method option {part!r} in {spec!r} must be key=value")
        if key.strip() in options:
            raise ValueError(f"method option {key.strip()!r} given twice in {spec!r}")
        options[key.strip()] = value.strip()
    return name.strip(), options


DEFAULT_METHODS = (
    "atp",
    "atp*",
    "atp*:grad_drop=true",
    "relp:rules=ln",
    "relp:rules=ln+identity",
    "relp:rules=ln+identity+attention",
    "ig:steps=10",
)


def correlation_table(
    req: MethodRequest,
    methods: Sequence[str] = DEFAULT_METHODS,
    exact: ResultTable | None = None,
) -> tuple[pd.DataFrame, ResultTable, dict[str, ResultTable]]:
    """Pearson / Spearman of every method with activation patching, per family, with cost.

    Args:
        req: model, prompts, families, direction and ablation shared by every method.
        methods: method specs (``name`` or ``name:key=value,...``) from :mod:`circuitkit.methods`.
        exact: a precomputed activation-patching table for the same request (computed when None).
    Returns:
        (table, exact result, {spec: approximate result}); table columns: model, task, method, family,
        pearson, spearman, pearson_without_top, n, passes, seconds, exact_passes, exact_seconds, speedup.
    """
    families = list(req.families or DEFAULT_FAMILIES)
    if exact is None:
        exact = run_method("activation", req)
    results: dict[str, ResultTable] = {}
    frames = []
    for spec in methods:
        name, options = parse_method(spec)
        sub = MethodRequest(**{**req.__dict__, "options": options, "families": families})
        approx = run_method(name, sub)
        results[spec] = approx
        df = compare(exact, approx, families)
        df.insert(0, "method", spec)
        df["passes"] = approx.provenance.passes
        df["seconds"] = approx.provenance.seconds
        frames.append(df)
    table = pd.concat(frames, ignore_index=True)
    table.insert(0, "task", req.data.task)
    table.insert(0, "model", req.name)
    table["exact_passes"] = exact.provenance.passes
    table["exact_seconds"] = exact.provenance.seconds
    table["speedup"] = table["exact_seconds"] / table["seconds"]
    return table, exact, results
