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
    # Candidates: dead latents outside the token's main code.
    scores = (pre.abs() if signed else pre).detach().masked_fill(~dead | keep, -torch.inf)
    top = scores.topk(k_aux, dim=-1)
    aux_keep = torch.zeros_like(pre, dtype=torch.bool)
    aux_keep.scatter_(1, top.indices, top.values > -torch.inf)
    e_hat = ((pre if signed else pre.relu()) * aux_keep) @ sae.W_dec
    residual = (x - out).detach()
    # Gao et al.'s normalized MSE, scaled by the target's variance (our main loss is unnormalised).
    nmse = (e_hat - residual).pow(2).sum(-1).mean() / (residual - residual.mean(0)).pow(2).sum(-1).mean()
    return mse + sae.cfg.aux_coefficient * (x - x.mean(0)).pow(2).sum(-1).mean() * nmse


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


@pytest.mark.parametrize("d_sae", [2**15, 2**15 + 1, 65536, 131072])
def test_group_by_latent_holds_every_latent_id_at_wide_widths(d_sae):
    """Latent ids are sorted in int16 / int32 for speed: the largest id of each width survives it."""
    from sae_training.architectures.sparse_ops import group_by_latent

    cols = torch.tensor([d_sae - 1, 0, d_sae // 2, d_sae - 1, 1, d_sae - 2])
    order, offsets = group_by_latent(cols, d_sae)
    assert cols[order].tolist() == sorted(cols.tolist())
    assert offsets.shape == (d_sae,) and offsets[-1] == 4 and offsets[d_sae // 2] == 2


def test_131k_wide_topk_step_matches_dense_autograd():
    """A 131,072-latent TopK step (few tokens, narrow input, so it is cheap): loss and every gradient
    equal a dense autograd computation of the same function (no index overflow on the sparse path)."""
    from sae_training.architectures import ARCHITECTURES, StepInput

    trainer, config = ARCHITECTURES["topk"]
    d_sae, d_in, n, k = 131072, 8, 24, 4
    sae = trainer(config(d_in=d_in, d_sae=d_sae, k=k))
    with torch.no_grad():
        sae.b_enc.copy_(torch.randn(d_sae) * 0.1)
    x = torch.randn(n, d_in)
    out = sae.sparse_training_step(StepInput(x))
    grads = torch.autograd.grad(out.losses["mse_loss"], [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec])
    assert int(out.code.cols.max()) > 2**16  # latents past the int16 range were selected
    W_enc, b_enc, W_dec, b_dec = (
        p.detach().clone().requires_grad_() for p in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec)
    )
    pre = (x - b_dec) @ W_enc + b_enc
    idx = pre.topk(k, dim=-1).indices
    acts = torch.zeros_like(pre).scatter(-1, idx, pre.gather(-1, idx).relu())
    mse = ((acts @ W_dec + b_dec) - x).pow(2).sum(-1).mean()
    dense = torch.autograd.grad(mse, [W_enc, b_enc, W_dec, b_dec])
    torch.testing.assert_close(out.losses["mse_loss"], mse, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, dense, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
