"""Faithfulness and completeness of a circuit of heads and MLPs, and faithfulness-vs-size curves.

Wang et al. 2022 (IOI) and Marks et al. 2024 ("Sparse feature circuits"):

    faithfulness(C) = (m(C) - m(empty)) / (m(M) - m(empty)),    completeness(C) = faithfulness(M \\ C)

m(C) is the metric on the clean prompts with every head and MLP *outside* C ablated; m(M) runs the full
model (nothing ablated), m(empty) ablates every head and MLP (embeddings and unembedding stay). The
ablation is stated with every number: ``mean`` (each component's mean activation over the reference
prompts, per position — the corrupted prompts by default), ``zero``, or ``patch`` (the component's
activation on each prompt's corrupted partner).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit.patching.activation import Metric, check_metric

CircuitAblation = Literal["mean", "zero", "patch"]


@dataclass(frozen=True)
class FaithfulnessResult:
    """Metric values and faithfulness of one circuit."""

    faithfulness: float
    metric_circuit: float
    metric_full: float
    metric_empty: float
    n_heads: int
    n_mlps: int
    ablation: str


def _check_masks(model: HookedTransformer, heads: Tensor, mlps: Tensor) -> tuple[Tensor, Tensor]:
    cfg = model.cfg
    if tuple(heads.shape) != (cfg.n_layers, cfg.n_heads):
        raise ValueError(
            f"head mask must be [n_layers, n_heads] = {(cfg.n_layers, cfg.n_heads)}, got {tuple(heads.shape)}"
        )
    if tuple(mlps.shape) != (cfg.n_layers,):
        raise ValueError(f"MLP mask must be [n_layers] = ({cfg.n_layers},), got {tuple(mlps.shape)}")
    return heads.bool().cpu(), mlps.bool().cpu()


def _reference(model, clean, reference, ablation: CircuitAblation) -> dict[str, Tensor]:
    names = [f"blocks.{i}.attn.hook_z" for i in range(model.cfg.n_layers)]
    if not model.cfg.attn_only:
        names += [f"blocks.{i}.hook_mlp_out" for i in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(reference, names_filter=lambda n: n in names)
    out = {}
    for n in names:
        a = cache[n]
        if ablation == "mean":
            a = a.mean(0, keepdim=True).expand(clean.shape[0], *a.shape[1:])
        elif ablation == "zero":
            a = torch.zeros((clean.shape[0], *a.shape[1:]), dtype=a.dtype, device=a.device)
        elif ablation == "patch":
            if a.shape[0] != clean.shape[0]:
                raise ValueError("patch ablation needs one reference (corrupted) prompt per clean prompt")
        else:
            raise ValueError(f"ablation must be mean, zero or patch, got {ablation!r}")
        out[n] = a
    return out


def circuit_metric(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    heads: Bool[Tensor, "layer head"],
    mlps: Bool[Tensor, " layer"] | None = None,
    *,
    reference_tokens: Int[Tensor, "batch_ref pos"] | None = None,
    ablation: CircuitAblation = "mean",
    _ref: dict[str, Tensor] | None = None,
) -> float:
    """The metric with every head and MLP outside the circuit ablated (nothing ablated: the full model)."""
    device = model.cfg.device
    mlps = torch.ones(model.cfg.n_layers, dtype=torch.bool) if mlps is None else mlps
    heads, mlps = _check_masks(model, heads, mlps)
    clean_tokens = clean_tokens.to(device)
    if reference_tokens is not None and reference_tokens.shape[1] != clean_tokens.shape[1]:
        raise ValueError(
            f"reference prompts have {reference_tokens.shape[1]} positions, clean ones "
            f"{clean_tokens.shape[1]}; position-wise ablation needs equal lengths"
        )
    ref = _ref
    hooks = []
    for layer in range(model.cfg.n_layers):
        out_heads = (~heads[layer]).nonzero().flatten().tolist()
        if out_heads:
            ref = ref or _reference(
                model, clean_tokens, _ref_tokens(clean_tokens, reference_tokens), ablation
            )
            idx = torch.tensor(out_heads, device=device)
            value = ref[hook_name_z(layer)]

            def ablate_heads(z: Tensor, hook, idx=idx, value=value) -> Tensor:
                z = z.clone()
                z[:, :, idx] = value[:, :, idx]
                return z

            hooks.append((hook_name_z(layer), ablate_heads))
        if not mlps[layer] and not model.cfg.attn_only:
            ref = ref or _reference(
                model, clean_tokens, _ref_tokens(clean_tokens, reference_tokens), ablation
            )
            name = f"blocks.{layer}.hook_mlp_out"
            hooks.append((name, lambda a, hook, value=ref[name]: value))
    with torch.no_grad():
        logits = model.run_with_hooks(clean_tokens, fwd_hooks=hooks) if hooks else model(clean_tokens)
        return float(check_metric(metric(logits)))


def hook_name_z(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def _ref_tokens(clean: Tensor, reference: Tensor | None) -> Tensor:
    return (clean if reference is None else reference).to(clean.device)


def faithfulness(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    heads: Bool[Tensor, "layer head"],
    mlps: Bool[Tensor, " layer"] | None = None,
    *,
    reference_tokens: Int[Tensor, "batch_ref pos"] | None = None,
    ablation: CircuitAblation = "mean",
    complement: bool = False,
) -> FaithfulnessResult:
    """(m(C) - m(empty)) / (m(M) - m(empty)); with ``complement=True`` the completeness, C -> M \\ C.

    Exactly 1 for the full model and 0 for the empty circuit, by construction.
    """
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    mlps = torch.ones(n_layers, dtype=torch.bool) if mlps is None else mlps
    heads, mlps = _check_masks(model, heads, mlps)
    if complement:
        heads, mlps = ~heads, ~mlps
    if model.cfg.attn_only:
        mlps = torch.zeros_like(mlps)
    ref = _reference(
        model,
        clean_tokens.to(model.cfg.device),
        _ref_tokens(clean_tokens.to(model.cfg.device), reference_tokens),
        ablation,
    )
    kw = {"reference_tokens": reference_tokens, "ablation": ablation, "_ref": ref}
    full = circuit_metric(
        model, clean_tokens, metric, torch.ones(n_layers, n_heads, dtype=torch.bool), None, **kw
    )
    empty = circuit_metric(
        model,
        clean_tokens,
        metric,
        torch.zeros(n_layers, n_heads, dtype=torch.bool),
        torch.zeros(n_layers, dtype=torch.bool),
        **kw,
    )
    m_c = circuit_metric(model, clean_tokens, metric, heads, mlps, **kw)
    if full == empty:
        raise ValueError(
            "m(M) equals m(empty): the ablation removes nothing the metric sees; faithfulness is undefined"
        )
    return FaithfulnessResult(
        faithfulness=(m_c - empty) / (full - empty),
        metric_circuit=m_c,
        metric_full=full,
        metric_empty=empty,
        n_heads=int(heads.sum()),
        n_mlps=int(mlps.sum()),
        ablation=ablation,
    )


def faithfulness_curve(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    head_scores: Tensor,
    sizes: Sequence[int] | None = None,
    *,
    reference_tokens: Int[Tensor, "batch_ref pos"] | None = None,
    ablation: CircuitAblation = "mean",
    keep_mlps: bool = True,
    use_abs: bool = True,
) -> list[tuple[int, float]]:
    """Faithfulness of the top-k heads by score for each k in ``sizes``.

    The curve is over heads: MLPs are kept (``keep_mlps``, default) or ablated in every circuit *and*
    in m(empty), which is "no heads" here, so k = 0 gives exactly 0 and, with MLPs kept, k = all heads
    gives exactly 1.
    """
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    if tuple(head_scores.shape) != (n_layers, n_heads):
        raise ValueError(f"head scores must be [{n_layers}, {n_heads}], got {tuple(head_scores.shape)}")
    s = head_scores.abs() if use_abs else head_scores
    order = torch.argsort(s.reshape(-1).double().nan_to_num(float("-inf")), descending=True, stable=True)
    sizes = list(range(0, n_layers * n_heads + 1)) if sizes is None else list(sizes)
    device = model.cfg.device
    clean_tokens = clean_tokens.to(device)
    ref = _reference(model, clean_tokens, _ref_tokens(clean_tokens, reference_tokens), ablation)
    kw = {"reference_tokens": reference_tokens, "ablation": ablation, "_ref": ref}
    mlps = torch.full((n_layers,), keep_mlps, dtype=torch.bool)
    full = circuit_metric(
        model, clean_tokens, metric, torch.ones(n_layers, n_heads, dtype=torch.bool), None, **kw
    )
    empty = circuit_metric(
        model, clean_tokens, metric, torch.zeros(n_layers, n_heads, dtype=torch.bool), mlps, **kw
    )
    out = []
    for k in sizes:
        mask = torch.zeros(n_layers * n_heads, dtype=torch.bool)
        mask[order[:k]] = True
        m = circuit_metric(model, clean_tokens, metric, mask.view(n_layers, n_heads), mlps, **kw)
        out.append((k, (m - empty) / (full - empty)))
    return out
