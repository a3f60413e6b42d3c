"""Sparse encode / decode kernels shared by every dictionary architecture.

A dictionary's code is a list of (token, latent, value) triples sorted by token. The encoder's dense
pre-activations are computed once without autograd; only the selected entries carry gradients, and both
the decode and the encoder's backward pass touch only the selected rows of the weights. These are the two
speed levers of EleutherAI's ``sparsify`` (Gao et al. 2024, "Scaling and evaluating sparse
autoencoders", appendix on sparse kernels), written here with ``embedding_bag`` so they run on CPU and CUDA.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor


class SparseCode(NamedTuple):
    """The selected (token, latent) pairs of a batch, sorted by token."""

    rows: Int[Tensor, " nnz"]
    """Token index of each entry, ascending."""
    cols: Int[Tensor, " nnz"]
    """Latent index of each entry."""
    acts: Float[Tensor, " nnz"]
    """The latent's activation (after the architecture's nonlinearity); carries gradients."""
    n_tokens: int
    """Number of tokens in the batch (tokens may have no entry)."""

    def offsets(self) -> Int[Tensor, " n_tokens"]:
        """Start of each token's entries, for ``embedding_bag``."""
        tokens = torch.arange(self.n_tokens, device=self.rows.device)
        return torch.searchsorted(self.rows, tokens)

    def to_dense(self, d_sae: int) -> Float[Tensor, "n_tokens d_sae"]:
        """Dense [tokens, latents] activations (for metrics and tests, not the training path)."""
        out = self.acts.new_zeros(self.n_tokens, d_sae)
        return out.index_put((self.rows, self.cols), self.acts, accumulate=True)


class _GatherPreActivations(torch.autograd.Function):
    """Selected entries of ``pre = (x - b_pre) @ W_enc + b_enc`` with a backward pass over those entries only.

    The forward receives the dense ``pre`` (computed without autograd); the backward accumulates
    ``grad W_enc[:, j] += g * x_centered[token]`` for the selected pairs only (an ``embedding_bag`` of the
    inputs, grouped by latent) instead of a dense ``x.T @ G`` over all latents.
    """

    @staticmethod
    def forward(ctx, pre, x_centered, W_enc, b_enc, b_pre, rows, cols):  # type: ignore[override]
        ctx.save_for_backward(x_centered, W_enc, rows, cols)
        ctx.d_sae = W_enc.shape[1]
        return pre[rows, cols]

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x_centered, W_enc, rows, cols = ctx.saved_tensors
        d_sae = ctx.d_sae
        grad_W_enc = grad_b_enc = grad_b_pre = None
        grad_b_enc_full = grad.new_zeros(d_sae).index_add_(0, cols, grad)
        if ctx.needs_input_grad[2]:
            # One embedding_bag sums g * x over each latent's tokens (entries grouped by latent).
            order, offsets = group_by_latent(cols, d_sae)
            grad_W_enc = F.embedding_bag(
                rows[order], x_centered, offsets, mode="sum", per_sample_weights=grad[order]
            ).T
        if ctx.needs_input_grad[3]:
            grad_b_enc = grad_b_enc_full
        if ctx.needs_input_grad[4]:
            # x_centered = x - b_pre, so d pre[t, j] / d b_pre = -W_enc[:, j]: summed over all entries.
            grad_b_pre = -(W_enc @ grad_b_enc_full)
        return None, None, grad_W_enc, grad_b_enc, grad_b_pre, None, None


def group_by_latent(cols: Int[Tensor, " nnz"], d_sae: int) -> tuple[Tensor, Tensor]:
    """(order, offsets): ``order`` lists the entries latent by latent, ``offsets[j]`` is where latent j's
    entries start in it, so ``embedding_bag`` can sum per latent."""
    # Latent ids fit in int32, and sorting int32 is ~3x faster than int64 argsort on CPU; stable so
    # the summation order (hence the float result) is deterministic.
    small = torch.int16 if d_sae <= 2**15 else torch.int32
    order = torch.sort(cols.to(small), stable=True).indices
    counts = torch.bincount(cols, minlength=d_sae)
    return order, torch.cumsum(counts, 0) - counts


class _DecoderGradient(torch.autograd.Function):
    """Identity on the decoded output that supplies ``grad W_dec`` by touching only the selected rows.

    ``embedding_bag``'s own weight gradient is a dense scatter that sorts the entries and is several
    times slower than the decode; here the entries are grouped by latent once and one ``embedding_bag``
    over the output gradient sums ``g[t] * act[t, j]`` into each selected row ``j``.
    """

    @staticmethod
    def forward(ctx, out, W_dec, rows, cols, acts):  # type: ignore[override]
        ctx.save_for_backward(rows, cols, acts)
        ctx.d_sae = W_dec.shape[0]
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        rows, cols, acts = ctx.saved_tensors
        order, offsets = group_by_latent(cols, ctx.d_sae)
        grad_W_dec = F.embedding_bag(
            rows[order], grad.contiguous(), offsets, mode="sum", per_sample_weights=acts[order]
        )
        return grad, grad_W_dec, None, None, None


def gather_pre_activations(
    pre: Float[Tensor, "n_tokens d_sae"],
    x_centered: Float[Tensor, "n_tokens d_in"],
    W_enc: Float[Tensor, "d_in d_sae"],
    b_enc: Float[Tensor, " d_sae"],
    b_pre: Float[Tensor, " d_in"],
    rows: Int[Tensor, " nnz"],
    cols: Int[Tensor, " nnz"],
) -> Float[Tensor, " nnz"]:
    """Pre-activations at the selected pairs, differentiable w.r.t. ``W_enc``, ``b_enc`` and ``b_pre``."""
    return _GatherPreActivations.apply(pre, x_centered.detach(), W_enc, b_enc, b_pre, rows, cols)


def sparse_decode(
    code: SparseCode, W_dec: Float[Tensor, "d_sae d_out"], bias: Float[Tensor, " d_out"] | None = None
) -> Float[Tensor, "n_tokens d_out"]:
    """``sum_j acts[t, j] * W_dec[j] (+ bias)``, touching only the selected decoder rows (forward and
    backward)."""
    # embedding_bag differentiates the activations (a per-entry dot product); the decoder's gradient
    # comes from _DecoderGradient, which is much cheaper than embedding_bag's dense weight backward.
    out = F.embedding_bag(code.cols, W_dec.detach(), code.offsets(), mode="sum", per_sample_weights=code.acts)
    if W_dec.requires_grad and torch.is_grad_enabled():
        out = _DecoderGradient.apply(out, W_dec, code.rows, code.cols, code.acts.detach())
    return out if bias is None else out + bias


def per_token_topk(scores: Float[Tensor, "n_tokens d_sae"], k: int) -> tuple[Tensor, Tensor]:
    """(rows, cols) of the k largest scores of every token, sorted by token."""
    n = scores.shape[0]
    cols = torch.topk(scores, k, dim=-1, sorted=False).indices.reshape(-1)
    rows = torch.arange(n, device=scores.device).repeat_interleave(k)
    return rows, cols


def sort_by_row(rows: Tensor, cols: Tensor) -> tuple[Tensor, Tensor]:
    """Pairs reordered so tokens are ascending (``embedding_bag`` needs contiguous bags)."""
    order = torch.argsort(rows, stable=True)
    return rows[order], cols[order]
