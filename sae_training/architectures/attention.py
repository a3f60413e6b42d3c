"""Attention-output SAEs on ``blocks.L.attn.hook_z`` (Kissane et al. 2024, "Interpreting Attention Layer
Outputs with Sparse Autoencoders").

The SAE reads z with the heads concatenated (d_in = n_heads * d_head) and is any of our architectures
(TopK by default) saved with ``reshape_activations="hook_z"`` so sae-lens reshapes ``[..., heads, d_head]``
itself when it is spliced in. A latent's decoder row splits into one block per head; pushing each block
through that head's W_O gives the latent's write to the residual stream per head, and the squared norms
of those writes (normalised) attribute the latent to heads.

Per-head dictionaries (``head_index`` in the run config) read a single head's z ([..., d_head]) and are
small; the discrete-SAE head identification (circuitkit/heads) trains one per head.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def head_attribution(
    W_dec: Float[Tensor, "d_sae n_heads_x_d_head"], W_O: Float[Tensor, "n_heads d_head d_model"]
) -> Float[Tensor, "d_sae n_heads"]:
    """Fraction of each latent's residual-stream write that goes through each head (rows sum to 1)."""
    n_heads, d_head, _ = W_O.shape
    if W_dec.shape[-1] != n_heads * d_head:
        raise ValueError(
            f"decoder width {W_dec.shape[-1]} != n_heads * d_head = {n_heads}*{d_head}: this dictionary was "
            "not trained on this layer's hook_z with heads concatenated."
        )
    blocks = W_dec.reshape(-1, n_heads, d_head)
    writes = torch.einsum("shd,hdm->shm", blocks, W_O.to(W_dec.dtype))
    power = writes.pow(2).sum(-1)
    return power / power.sum(-1, keepdim=True).clamp_min(1e-12)


def head_attribution_weights_only(W_dec: Float[Tensor, "d_sae n_heads_x_d_head"], n_heads: int) -> Tensor:
    """Same split using the decoder blocks' own norms (when W_O is not at hand)."""
    blocks = W_dec.reshape(W_dec.shape[0], n_heads, -1)
    power = blocks.pow(2).sum(-1)
    return power / power.sum(-1, keepdim=True).clamp_min(1e-12)
