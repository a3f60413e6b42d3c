"""Feature circuits: prune nodes (and edges) by attribution, and measure faithfulness by ablation.

Marks et al. (2024, "Sparse Feature Circuits", arXiv 2403.19647), section 3: a circuit C is the set of
latent and error nodes whose |attribution| passes a threshold; its faithfulness is
``(m(C) - m(empty)) / (m(M) - m(empty))``, where m(C) runs the model with every node outside C ablated at
every spliced dictionary (nodes inside C computed normally from the ablated upstream), m(M) is the
model itself and m(empty) ablates every node. Completeness is the same ratio for M minus C.
Ablations: ``mean`` (each node's mean over prompts, per position, from the evaluated run), ``zero``, or
``patch`` (its value on the paired corrupted prompt).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
import torch
from jaxtyping import Bool, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit.features.attribution import Dictionaries, FeatureAttribution
from circuitkit.features.splice import Dictionary, place, run_spliced
from circuitkit.patching.common import Metric, check_metric

Ablation = Literal["mean", "zero", "patch"]


@dataclass
class FeatureCircuit:
    """Kept nodes per dictionary (latents over all positions, and whether the error node is kept)."""

    latents: dict[str, Bool[Tensor, " d_sae"]]
    errors: dict[str, bool]
    edges: pd.DataFrame | None = None
    provenance: dict = field(default_factory=dict)

    @property
    def n_nodes(self) -> int:
        return int(sum(int(m.sum()) for m in self.latents.values()) + sum(self.errors.values()))

    def complement(self) -> FeatureCircuit:
        return FeatureCircuit(
            {k: ~v for k, v in self.latents.items()},
            {k: not v for k, v in self.errors.items()},
            provenance={**self.provenance, "complement": True},
        )

    def nodes_table(self) -> pd.DataFrame:
        rows = [
            {"dictionary": k, "latent": int(i), "component": f"{k}/{int(i)}"}
            for k, m in self.latents.items()
            for i in m.nonzero().flatten().tolist()
        ]
        rows += [
            {"dictionary": k, "latent": -1, "component": f"{k}/error"} for k, e in self.errors.items() if e
        ]
        return pd.DataFrame(rows, columns=["dictionary", "latent", "component"])


def full_circuit(dicts: list[Dictionary], keep: bool = True) -> FeatureCircuit:
    """Every node (``keep=True``) or none of them."""
    return FeatureCircuit(
        {d.id: torch.full((d.d_sae,), keep, dtype=torch.bool) for d in dicts}, {d.id: keep for d in dicts}
    )


def select_nodes(
    attribution: FeatureAttribution, *, threshold: float | None = None, top_k: int | None = None
) -> FeatureCircuit:
    """Nodes whose |attribution summed over positions| >= ``threshold``, or the ``top_k`` largest overall.

    Error nodes compete on the same footing as latents, as in Marks et al.
    """
    if (threshold is None) == (top_k is None):
        raise ValueError("give exactly one of threshold and top_k")
    totals = {k: s.latents.sum(0) for k, s in attribution.scores.items()}
    errors = {k: float(s.error.sum()) for k, s in attribution.scores.items()}
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        error_sizes = torch.tensor([abs(e) for e in errors.values()])
        flat = torch.cat([*(v.abs().flatten().cpu() for v in totals.values()), error_sizes])
        threshold = float(torch.topk(flat, min(top_k, flat.numel())).values[-1])
    latents = {k: v.abs() >= threshold for k, v in totals.items()}
    return FeatureCircuit(
        latents,
        {k: abs(e) >= threshold for k, e in errors.items()},
        provenance={**attribution.provenance, "threshold": threshold, "top_k": top_k},
    )


@dataclass(frozen=True)
class Faithfulness:
    """Metric with the circuit, with the full model and with nothing, and the normalised ratio."""

    metric_circuit: float
    metric_full: float
    metric_empty: float
    faithfulness: float
    ablation: str
    n_nodes: int


def _ablation_values(
    dicts: list[Dictionary], record, ablation: str, corrupted_record
) -> dict[str, tuple[Tensor, Tensor]]:
    out = {}
    for d in dicts:
        f, err = record.latents[d.id].detach(), record.errors[d.id].detach()
        if ablation == "mean":
            out[d.id] = (f.mean(0, keepdim=True).expand_as(f), err.mean(0, keepdim=True).expand_as(err))
        elif ablation == "zero":
            out[d.id] = (torch.zeros_like(f), torch.zeros_like(err))
        else:
            out[d.id] = (corrupted_record.latents[d.id].detach(), corrupted_record.errors[d.id].detach())
    return out


def circuit_metric(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    dicts: list[Dictionary],
    circuit: FeatureCircuit,
    ablated: Mapping[str, tuple[Tensor, Tensor]],
) -> float:
    """Metric with nodes outside ``circuit`` replaced by ``ablated[id] = (latents, error)`` values."""
    interventions = {}
    for d in dicts:
        keep_f = circuit.latents[d.id].to(model.cfg.device)
        keep_err = circuit.errors[d.id]
        f_abl, err_abl = ablated[d.id]

        def swap(f, err, keep_f=keep_f, keep_err=keep_err, f_abl=f_abl, err_abl=err_abl):
            return torch.where(keep_f, f, f_abl), err if keep_err else err_abl

        interventions[d.id] = swap
    with torch.no_grad():
        logits, _ = run_spliced(model, tokens, dicts, interventions=interventions)
        return float(check_metric(metric(logits)))


def faithfulness(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    dictionaries: Dictionaries,
    circuit: FeatureCircuit,
    *,
    ablation: Ablation = "mean",
    corrupted_tokens: Int[Tensor, "batch pos"] | None = None,
) -> Faithfulness:
    """``(m(C) - m(empty)) / (m(M) - m(empty))`` on ``tokens`` (usually the clean prompts)."""
    if ablation not in ("mean", "zero", "patch"):
        raise ValueError(f"ablation must be mean, zero or patch, got {ablation!r}")
    if ablation == "patch" and (corrupted_tokens is None or corrupted_tokens.shape != tokens.shape):
        raise ValueError("ablation='patch' needs corrupted_tokens of the same shape as tokens")
    dicts = place(model, dictionaries)
    missing = [d.id for d in dicts if d.id not in circuit.latents or d.id not in circuit.errors]
    if missing:
        raise ValueError(f"the circuit says nothing about dictionaries {missing}; give a mask for each")
    with torch.no_grad():
        logits, rec = run_spliced(model, tokens, dicts)
        m_full = float(check_metric(metric(logits)))
        corr = run_spliced(model, corrupted_tokens, dicts)[1] if ablation == "patch" else None
    ablated = _ablation_values(dicts, rec, ablation, corr)
    m_circuit = circuit_metric(model, tokens, metric, dicts, circuit, ablated)
    m_empty = circuit_metric(model, tokens, metric, dicts, full_circuit(dicts, keep=False), ablated)
    denom = m_full - m_empty
    score = (m_circuit - m_empty) / denom if denom != 0 else float("nan")
    return Faithfulness(m_circuit, m_full, m_empty, score, ablation, circuit.n_nodes)
