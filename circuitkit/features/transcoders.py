"""Weights-based transcoder circuits (Dunefsky, Chlenski & Nanda 2024, "Transcoders Find Interpretable
LLM Feature Circuits", arXiv 2406.11944), section 4.1.

A transcoder at layer L reads the MLP's input (``blocks.L.ln2.hook_normalized``) and predicts its output
(``blocks.L.hook_mlp_out``) through sparse latents. Upstream latent ``i`` writes ``f_i(x) W_dec[i]`` into
the residual stream; along the direct residual path its contribution to the pre-activation of a later
transcoder's latent ``j`` factorises as

    attribution[i, j] = f_i(x)             (input-dependent: the upstream activation)
                        * inv[i, j]        (input-invariant: weights only)
                        / sigma(x)         (the downstream LayerNorm scale, frozen as in the paper)

    inv[i, j] = (W_dec[i] - mean(W_dec[i])) . W_enc[:, j]

because LayerNorm centres its input and divides it by a per-token scale before ``hook_normalized``, which
is what the transcoder reads (in TransformerLens the gain ``w`` and bias ``b`` are applied after that
hook, so they are not part of the path to the encoder). Paths through attention layers in between are
separate terms and are not part of this decomposition.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit.features.splice import Dictionary, DictionaryError, place

_LN2_INPUT = re.compile(r"^blocks\.(\d+)\.ln2\.hook_normalized$")
_RESID_WRITE = re.compile(r"^blocks\.(\d+)\.hook_(mlp_out|attn_out)$")


@dataclass
class TranscoderEdges:
    """Direct-path attributions from an upstream transcoder's latents to a downstream one's."""

    upstream: str
    downstream: str
    input_invariant: Float[Tensor, "d_up d_down"]
    """Weights only: centred upstream decoder row dot the downstream encoder column."""
    input_dependent: Float[Tensor, "batch pos d_up"]
    """Upstream latent activations on the prompts."""
    ln_factor: Float[Tensor, "batch pos"]
    """1 / scale of the downstream ``ln2`` at each token (treated as a constant)."""

    def attribution(self, batch: int, pos: int) -> Float[Tensor, "d_up d_down"]:
        """Attribution of every upstream latent to every downstream pre-activation at one token."""
        return self.input_dependent[batch, pos, :, None] * self.input_invariant * self.ln_factor[batch, pos]

    def total(self) -> Float[Tensor, "d_up d_down"]:
        """Attributions summed over prompts and positions (no [batch, pos, d_up, d_down] tensor built)."""
        weight = (self.input_dependent * self.ln_factor[..., None]).sum((0, 1))
        return weight[:, None] * self.input_invariant


def input_invariant(model: HookedTransformer, upstream: Dictionary, downstream: Dictionary) -> Tensor:
    """``(W_dec_up - row means) @ W_enc_down``: the weights-only factor, [d_up, d_down]."""
    _downstream_layer(model, upstream, downstream)
    w_dec = upstream.sae.W_dec.reshape(upstream.d_sae, -1)
    centred = w_dec - w_dec.mean(-1, keepdim=True)
    return centred @ downstream.sae.W_enc


def _downstream_layer(model: HookedTransformer, upstream: Dictionary, downstream: Dictionary) -> int:
    down = _LN2_INPUT.match(downstream.hook_in)
    if down is None:
        raise DictionaryError(
            f"downstream dictionary {downstream.id!r} reads {downstream.hook_in!r}; the weights-based "
            "decomposition needs a transcoder reading an MLP input, 'blocks.L.ln2.hook_normalized'"
        )
    if model.cfg.normalization_type not in ("LN", "LNPre"):
        raise DictionaryError(
            f"the decomposition assumes LayerNorm before the MLP; this model uses "
            f"{model.cfg.normalization_type!r}"
        )
    up = _RESID_WRITE.match(upstream.hook_out)
    if up is None:
        raise DictionaryError(
            f"upstream dictionary {upstream.id!r} writes {upstream.hook_out!r}; it must write the residual "
            "stream through 'blocks.L.hook_mlp_out' (a transcoder) or 'blocks.L.hook_attn_out'"
        )
    up_layer, down_layer = int(up.group(1)), int(down.group(1))
    if up_layer > down_layer or (up_layer == down_layer and up.group(2) == "mlp_out"):
        raise DictionaryError(
            f"{upstream.id!r} (layer {up_layer} {up.group(2)}) does not write before {downstream.id!r} reads "
            f"(layer {down_layer} MLP input)"
        )
    return down_layer


def transcoder_edges(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    upstream: SAE,
    downstream: SAE,
    *,
    ids: Sequence[str] | None = None,
) -> TranscoderEdges:
    """The factorised direct-path attributions between two transcoders on ``tokens``."""
    pair = dict(zip(ids, (upstream, downstream), strict=True)) if ids else [upstream, downstream]
    placed = place(model, pair)
    # place() sorts by forward order; keep the caller's roles so a reversed pair gets a clear error
    up, down = placed if placed[0].sae is upstream else placed[::-1]
    layer = _downstream_layer(model, up, down)
    scale_hook = f"blocks.{layer}.ln2.hook_scale"
    hooks = {up.hook_in, scale_hook}
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens.to(model.cfg.device), names_filter=lambda n: n in hooks)
        dependent = up.encode(cache[up.hook_in])
        invariant = input_invariant(model, up, down)
    return TranscoderEdges(
        upstream=up.id,
        downstream=down.id,
        input_invariant=invariant.detach(),
        input_dependent=dependent.detach(),
        ln_factor=(1.0 / cache[scale_hook][..., 0]).detach(),
    )
