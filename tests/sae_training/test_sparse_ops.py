"""The sparse kernels agree with dense autograd (the oracle) in values and gradients."""

from __future__ import annotations

import torch

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
