"""The sparse kernels and the sparse training step agree with dense autograd (the oracle) in values and
gradients."""

from __future__ import annotations

import pytest
import torch

from sae_training.architectures import ARCHITECTURES, StepInput
from sae_training.architectures.sparse_ops import (
    SparseCode,
    gather_pre_activations,
    per_token_topk,
    sparse_decode,
)


def test_gather_pre_activations_gradients_match_dense_autograd():
    n, d_in, d_sae, k = 37, 8, 50, 5
    x = torch.randn(n, d_in, dtype=torch.float64)
    W = torch.randn(d_in, d_sae, dtype=torch.float64, requires_grad=True)
    b = torch.randn(d_sae, dtype=torch.float64, requires_grad=True)
    b_pre = torch.randn(d_in, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(n, k, dtype=torch.float64)

    # Dense oracle: the full pre-activation matrix with autograd, then the same top-k entries.
    dense_pre = (x - b_pre) @ W + b
    rows, cols = per_token_topk(dense_pre.detach(), k)
    (dense_pre[rows, cols] * weights.reshape(-1)).sum().backward()
    oracle = [t.grad.clone() for t in (W, b, b_pre)]
    for t in (W, b, b_pre):
        t.grad = None

    x_c = x - b_pre
    with torch.no_grad():
        pre = x_c @ W + b
    vals = gather_pre_activations(pre, x_c, W, b, b_pre, rows, cols)
    assert torch.allclose(vals, dense_pre[rows, cols].detach())
    (vals * weights.reshape(-1)).sum().backward()
    for got, want in zip((W.grad, b.grad, b_pre.grad), oracle, strict=True):
        assert torch.allclose(got, want, atol=1e-10)


def test_sparse_decode_matches_dense_matmul_with_variable_counts():
    n, d_sae, d = 6, 20, 4
    W_dec = torch.randn(d_sae, d, dtype=torch.float64, requires_grad=True)
    # Tokens get 0, 1, 3, ... entries (as Mutual / Feature Choice produce); token 0 gets none.
    rows = torch.tensor([1, 2, 2, 2, 3, 5, 5])
    cols = torch.tensor([3, 0, 7, 19, 3, 1, 2])
    acts = torch.randn(7, dtype=torch.float64, requires_grad=True)
    code = SparseCode(rows, cols, acts, n)
    out = sparse_decode(code, W_dec)
    dense = code.to_dense(d_sae)
    oracle = dense @ W_dec
    assert torch.allclose(out, oracle)
    assert torch.equal(out[0], torch.zeros(d, dtype=torch.float64))
    g = torch.randn(n, d, dtype=torch.float64)
    grads = torch.autograd.grad((out * g).sum(), (W_dec, acts))
    oracle_grads = torch.autograd.grad((oracle * g).sum(), (W_dec, acts))
    for a, b in zip(grads, oracle_grads, strict=True):
        assert torch.allclose(a, b)


def dense_reference_step(sae, x, dead):
    """TopK + AuxK written with dense [tokens, latents] tensors and plain autograd (Gao et al. 2024)."""
    x_c = x - sae.b_dec
    pre = x_c @ sae.W_enc + sae.b_enc
    signed = sae.cfg.architecture() == "ck_abstopk"
    keep = torch.zeros_like(pre, dtype=torch.bool)
    keep.scatter_(1, (pre.abs() if signed else pre).topk(sae.cfg.k, dim=-1).indices, True)
    acts = (pre if signed else pre.relu()) * keep
    out = acts @ sae.W_dec + sae.b_dec
    mse = (out - x).pow(2).sum(-1).mean()
    n_dead = int(dead.sum())
    k_aux = min(sae.k_aux, n_dead)
    scores = (pre.abs() if signed else pre).detach().masked_fill(~dead, -torch.inf)
    aux_keep = torch.zeros_like(pre, dtype=torch.bool)
    aux_keep.scatter_(1, scores.topk(k_aux, dim=-1).indices, True)
    e_hat = ((pre if signed else pre.relu()) * aux_keep) @ sae.W_dec
    aux = (e_hat - (x - out).detach()).pow(2).sum(-1).mean()
    return mse + sae.cfg.aux_coefficient * min(n_dead / sae.k_aux, 1.0) * aux


@pytest.mark.parametrize(
    ("name", "n_dead", "dense_aux_max_ratio"),
    [("topk", 12, 4.0), ("topk", 12, 0.0), ("topk", 90, 4.0), ("abstopk", 30, 4.0), ("abstopk", 30, 0.0)],
)
def test_training_step_matches_dense_reference(name, n_dead, dense_aux_max_ratio):
    """The sparse step (sparse decode, selected-latents-only backward, both AuxK paths) gives the dense
    autograd loss and gradients; float64 so only summation order differs."""
    trainer, config = ARCHITECTURES[name]
    d_in, d_sae, k = 16, 128, 6
    sae = trainer(config(d_in=d_in, d_sae=d_sae, k=k, aux_k=8, dtype="float64"))
    sae.dense_aux_max_ratio = dense_aux_max_ratio
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_(std=0.1)
    x = torch.randn(64, d_in, dtype=torch.float64) * 2
    dead = torch.zeros(d_sae, dtype=torch.bool)
    dead[torch.randperm(d_sae)[:n_dead]] = True

    loss = sae.sparse_training_step(StepInput(x, dead)).loss
    grads = torch.autograd.grad(loss, list(sae.parameters()))
    ref = dense_reference_step(sae, x, dead)
    ref_grads = torch.autograd.grad(ref, list(sae.parameters()))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    for (pname, _), got, want in zip(sae.named_parameters(), grads, ref_grads, strict=True):
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-10), pname
