"""Types and helpers every patching method shares: metrics, inputs, source values, families, masks.

Activation patching (exact), attribution patching (AtP, AtP*), relevance patching (RelP), integrated
gradients and the feature-circuit methods all take the same inputs (position-aligned clean / corrupted
prompts, a scalar metric of the logits, a direction and an ablation) and move activations from a
*target* run towards a *source* run. What they share lives here so that each method's file holds only
its method.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuitkit.components import check_hook, get_family

if TYPE_CHECKING:  # the task layer imports the metric marker: keep this module free of transformer_lens
    from transformer_lens import HookedTransformer

Metric = Callable[[Float[Tensor, "batch pos vocab"]], Float[Tensor, ""]]
"""Logits ``[batch, pos, vocab]`` -> a scalar (a mean over prompts, e.g. ``TaskDataset.metric``)."""
Direction = Literal["denoising", "noising"]
Ablation = Literal["patch", "zero", "mean", "resample"]

_LAST_ONLY = "reads_last_position_only"


def last_position_metric(fn: Callable) -> Callable:
    """A metric that reads only ``logits[:, -1]``: a new callable, ``fn`` itself is left as it is.

    Patching methods then run the last layer and the unembedding at the last position alone and hand
    the metric logits of shape ``[batch, 1, vocab]``. Mark only metrics that index the last position
    (``-1``), never a fixed position number. Works as a decorator on functions and methods (the wrapper
    is a plain function, so it binds like the original).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    setattr(wrapper, _LAST_ONLY, True)
    return wrapper


def reads_last_position_only(metric: Callable) -> bool:
    """Whether ``metric`` (or the function behind a bound method) came from :func:`last_position_metric`."""
    return bool(getattr(metric, _LAST_ONLY, False))


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


def check_metric(value: object) -> Tensor:
    """The metric's value as a 0-d tensor, or a clear error when it is not a scalar."""
    if not isinstance(value, Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(
            f"the patching metric must return a scalar tensor, got {shape}; average over the batch "
            "(e.g. dataset.metric, which is per_prompt_metric(...).mean())"
        )
    return value.reshape(())


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


def resample_permutation(batch: int, seed: int, device: torch.device | str) -> Tensor:
    """The prompt shuffle used by ``ablation="resample"`` (seeded, so every method sees the same one)."""
    return torch.randperm(batch, generator=torch.Generator().manual_seed(seed)).to(device)


def target_and_source(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    direction: Direction,
    ablation: Ablation = "patch",
) -> tuple[Tensor, Tensor]:
    """(run whose gradients are taken / that is patched, run whose values are moved towards), checked.

    Denoising: the corrupted run is the target and clean values are patched in; noising the reverse.
    Both come back on the model's device.
    """
    check_inputs(clean_tokens, corrupted_tokens, direction, ablation)
    device = model.cfg.device
    clean_tokens, corrupted_tokens = clean_tokens.to(device), corrupted_tokens.to(device)
    if direction == "denoising":
        return corrupted_tokens, clean_tokens
    return clean_tokens, corrupted_tokens


def family_list(families: str | Sequence[str]) -> list[str]:
    """Family names as a list: ``"head"`` or ``"head,resid_pre"`` (CLI style) or a sequence of names.

    A bare string is a sequence of characters, so without this ``families="head"`` would ask for the
    families ``h``, ``e``, ``a``, ``d``.
    """
    names = families.split(",") if isinstance(families, str) else list(families)
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise ValueError("no component family given; pass e.g. families=['head', 'resid_pre']")
    for n in names:
        get_family(n)  # unknown names fail here, with the list of known ones
    return names


def check_family(model: HookedTransformer, family: str) -> None:
    """Refuse, by name, a family whose components this model does not have one per query head."""
    kind = get_family(family).hook_kind
    n_kv = model.cfg.n_key_value_heads
    if kind in ("hook_k", "hook_v") and n_kv not in (None, model.cfg.n_heads):
        raise ValueError(
            f"family {family!r}: {model.cfg.model_name} uses grouped-query attention (n_key_value_heads="
            f"{n_kv} < n_heads={model.cfg.n_heads}), so attn.{kind} has one entry per key/value group, "
            "not per head; patch heads through 'head' / 'head_q' / 'head_pattern' families instead"
        )


def hook_names(model: HookedTransformer, families: Sequence[str], layers: Sequence[int]) -> list[str]:
    """The hook of every (family, layer), checked to exist in ``model``; families sharing a hook share it."""
    for f in families:
        check_family(model, f)
    names = [get_family(f).hook_name(layer) for f in families for layer in layers]
    for n in names:
        check_hook(model, n)
    return names


def attention_mask(model: HookedTransformer, tokens: Int[Tensor, "batch pos"]) -> Tensor | None:
    """The padding mask TransformerLens builds for ``model(tokens)``, or None when it builds none.

    TransformerLens masks pad tokens (and offsets learned / rotary positions) only when the model's
    tokenizer pads on the left; runs started at a layer (``start_at_layer``) must be handed the same
    mask, or left-padded prompts are patched under another mask than their baselines.
    """
    from transformer_lens.utilities import get_attention_mask

    tok = model.tokenizer
    if tok is None or getattr(tok, "padding_side", "right") != "left":
        return None
    mask = get_attention_mask(tok, tokens, model.cfg.default_prepend_bos)
    return mask.to(tokens.device)


def shortformer_pos_embed(
    model: HookedTransformer, tokens: Int[Tensor, "batch pos"], mask: Tensor | None
) -> Tensor | None:
    """Positional embeddings a shortformer model adds inside attention (None for other models).

    ``run_with_hooks(resid, start_at_layer=L)`` on a shortformer model must be given them, else every
    layer from L on sees no positions.
    """
    if model.cfg.positional_embedding_type != "shortformer":
        return None
    with torch.no_grad():  # a constant of the run: no graph back to the embedding weights
        return model.pos_embed(tokens, 0, mask)


def metric_logits(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    last_only: bool,
) -> Float[Tensor, "batch pos vocab"]:
    """The model's logits on ``tokens`` as a metric needs them, under whatever hooks are active.

    With ``last_only`` (a metric that reads only the last position) the final norm and the unembedding
    run at the last position alone — on a small model with a large vocabulary the unembedding is a
    fifth of the forward pass — and the logits have one position.
    """
    from transformer_lens.utilities import apply_softcap

    if not last_only:
        return model(tokens, return_type="logits")
    resid = model(tokens, stop_at_layer=model.cfg.n_layers)[:, -1:]
    if model.cfg.normalization_type is not None:
        resid = model.ln_final(resid)
    return apply_softcap(model.unembed(resid), model.cfg.output_logits_soft_cap)
