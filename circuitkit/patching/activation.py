"""Exact activation patching (Meng et al. 2022; Wang et al. 2022; Heimersheim & Nanda 2024).

For each component, overwrite its activation in a *target* run with a *source* value and measure the
metric. Denoising: target = corrupted run, source = clean activations; noising: the reverse. Ablations
replace the source by zero, by the mean over prompts, or by a shuffled (resampled) prompt's activation.

Speed: every component of one layer is patched in one forward pass — the copies are stacked along the
batch axis — and the pass starts at that layer from the cached residual stream, since layers before the
patched one are unaffected. Numbers equal ``transformer_lens.patching`` on the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from circuitkit.components import Family, check_hook, get_family

Metric = Callable[[Float[Tensor, "batch pos vocab"]], Float[Tensor, ""]]
Direction = Literal["denoising", "noising"]
Ablation = Literal["patch", "zero", "mean", "resample"]


@dataclass
class PatchingResult:
    """Metric after patching each component, on a grid whose axes are ``dims``."""

    family: str
    dims: tuple[str, ...]
    scores: Tensor
    baseline_target: float
    """Metric of the unpatched target run (corrupted when denoising)."""
    baseline_source: float
    """Metric of the unpatched source run (clean when denoising)."""
    provenance: dict = field(default_factory=dict)

    def normalized(self) -> Tensor:
        """(m - m_target) / (m_source - m_target): 1 where patching one component restores everything."""
        return (self.scores - self.baseline_target) / (self.baseline_source - self.baseline_target)

    def effects(self) -> Tensor:
        """m_patched - m_target: the change each patch makes, the quantity AtP / RelP / IG estimate."""
        return self.scores - self.baseline_target


def source_values(value: Tensor, ablation: Ablation, perm: Tensor | None = None) -> Tensor:
    """What a patch writes in: the other run's activation, or zero / its mean over prompts / a shuffle."""
    if ablation == "patch":
        return value
    if ablation == "zero":
        return torch.zeros_like(value)
    if ablation == "mean":
        return value.mean(0, keepdim=True).expand_as(value)
    if ablation == "resample":
        if perm is None:
            raise ValueError("resample ablation needs a permutation of the prompts")
        return value[perm]
    raise ValueError(f"ablation must be patch, zero, mean or resample, got {ablation!r}")


def resample_permutation(batch: int, seed: int, device) -> Tensor:
    """The prompt shuffle used by ``ablation="resample"`` (seeded, so every method sees the same one)."""
    return torch.randperm(batch, generator=torch.Generator().manual_seed(seed)).to(device)


def check_inputs(clean_tokens: Tensor, corrupted_tokens: Tensor, direction: str, ablation: str) -> None:
    """Clear errors for inputs every patching method rejects."""
    if clean_tokens.shape != corrupted_tokens.shape:
        raise ValueError(
            f"clean tokens {tuple(clean_tokens.shape)} and corrupted tokens {tuple(corrupted_tokens.shape)} "
            "differ in shape; patching needs position-aligned prompt pairs of equal length"
        )
    if clean_tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, pos], got shape {tuple(clean_tokens.shape)}")
    if direction not in ("denoising", "noising"):
        raise ValueError(f"direction must be 'denoising' or 'noising', got {direction!r}")
    if ablation not in ("patch", "zero", "mean", "resample"):
        raise ValueError(f"ablation must be patch, zero, mean or resample, got {ablation!r}")


def check_metric(value) -> Tensor:
    """The metric's value as a 0-d tensor, or a clear error when it is not a scalar."""
    return _check_metric(value)


def _check_metric(value) -> Tensor:
    if not isinstance(value, Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(
            f"the patching metric must return a scalar tensor, got {shape}; average over the batch "
            "(e.g. dataset.metric, which is per_prompt_metric(...).mean())"
        )
    return value.reshape(())


def _components(family: Family, n_heads: int, seq_len: int) -> list[tuple[int | None, int | None]]:
    """(head, pos) per component of one layer, in grid order."""
    heads = range(n_heads) if family.head_axis is not None else [None]
    poss = range(seq_len) if family.pos_axis is not None else [None]
    if family.dims[1:] == ("pos", "head"):
        return [(h, p) for p in poss for h in heads]
    return [(h, p) for h in heads for p in poss]


def _mask(family: Family, act_shape: torch.Size, comps, device) -> Tensor:
    """Boolean [n_copies, *act_shape[1:]] mask: True where copy c takes the source value."""
    mask = torch.zeros((len(comps), *act_shape[1:]), dtype=torch.bool, device=device)
    for c, (h, p) in enumerate(comps):
        index: list = [c] + [slice(None)] * (len(act_shape) - 1)
        if family.pos_axis is not None:
            index[family.pos_axis] = p
        if family.head_axis is not None:
            index[family.head_axis] = h
        mask[tuple(index)] = True
    return mask


def activation_patching(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    family: str = "head",
    *,
    direction: Direction = "denoising",
    ablation: Ablation = "patch",
    layers: list[int] | None = None,
    max_batch: int = 2048,
    seed: int = 0,
    progress: bool = False,
) -> PatchingResult:
    """Patch every component of ``family`` one at a time and return the metric for each.

    Args:
        metric: maps logits ``[batch, pos, vocab]`` to a scalar (e.g. ``TaskDataset.metric``).
        family: a key of :data:`circuitkit.components.FAMILIES` (``head``, ``resid_pre``, ``mlp_out`` ...).
        direction: ``denoising`` runs the corrupted prompts and patches in clean values; ``noising`` the
            reverse.
        ablation: ``patch`` (values from the other run), ``zero``, ``mean`` (mean over prompts of the
            other run) or ``resample`` (the other run's value from a shuffled prompt).
        max_batch: most sequences in one forward pass (copies x prompts); lower it to save memory.
    Returns:
        :class:`PatchingResult` with ``scores`` of shape ``[n_layers, ...]`` per ``family.dims``.
    """
    fam = get_family(family)
    check_inputs(clean_tokens, corrupted_tokens, direction, ablation)
    device = model.cfg.device
    clean_tokens, corrupted_tokens = clean_tokens.to(device), corrupted_tokens.to(device)
    target, source = (
        (corrupted_tokens, clean_tokens) if direction == "denoising" else (clean_tokens, corrupted_tokens)
    )
    layers = list(range(model.cfg.n_layers)) if layers is None else layers
    hooks = [fam.hook_name(layer) for layer in layers]
    for h in hooks:
        check_hook(model, h)
    resid_names = [f"blocks.{layer}.hook_resid_pre" for layer in layers]

    with torch.no_grad():
        src_logits, src_cache = model.run_with_cache(source, names_filter=lambda n: n in hooks)
        tgt_logits, tgt_cache = model.run_with_cache(target, names_filter=lambda n: n in resid_names)
        base_src = float(_check_metric(metric(src_logits)))
        base_tgt = float(_check_metric(metric(tgt_logits)))
        del src_logits, tgt_logits
        batch, seq_len = target.shape
        perm = resample_permutation(batch, seed, device)
        per_layer: list[Tensor] = []
        for layer, hook in tqdm(
            list(zip(layers, hooks, strict=True)), desc=f"patch {family}", disable=not progress
        ):
            value = source_values(src_cache[hook], ablation, perm)
            comps = _components(fam, model.cfg.n_heads, seq_len)
            per_copy = max(1, max_batch // batch)
            scores = []
            for start in range(0, len(comps), per_copy):
                chunk = comps[start : start + per_copy]
                n = len(chunk)

                def patch_hook(act: Tensor, hook, chunk=chunk, n=n, value=value) -> Tensor:
                    act = act.view(n, batch, *act.shape[1:])
                    mask = _mask(fam, (n, *act.shape[2:]), chunk, act.device)
                    out = torch.where(mask[:, None], value[None], act)
                    return out.reshape(n * batch, *act.shape[2:])

                resid = tgt_cache[f"blocks.{layer}.hook_resid_pre"].repeat(n, 1, 1)
                logits = model.run_with_hooks(
                    resid, start_at_layer=layer, fwd_hooks=[(hook, patch_hook)], return_type="logits"
                )
                logits = logits.view(n, batch, *logits.shape[1:])
                scores += [float(_check_metric(metric(logits[i]))) for i in range(n)]
            # float64: the metric is a Python float already; keep every digit for exact comparisons.
            shape = _grid_shape(fam, model.cfg.n_heads, seq_len)
            per_layer.append(torch.tensor(scores, dtype=torch.float64).reshape(shape))
    return PatchingResult(
        family=family,
        dims=fam.dims,
        scores=torch.stack(per_layer),
        baseline_target=base_tgt,
        baseline_source=base_src,
        provenance={
            "method": "activation_patching",
            "direction": direction,
            "ablation": ablation,
            "model": model.cfg.model_name,
            "n_prompts": int(batch),
            "layers": layers,
            "seed": seed,
        },
    )


def _grid_shape(fam: Family, n_heads: int, seq_len: int) -> tuple[int, ...]:
    sizes = {"head": n_heads, "pos": seq_len}
    return tuple(sizes[d] for d in fam.dims[1:])
