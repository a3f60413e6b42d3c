"""The small code-book SAE of discrete-SAE head identification (O'Neill & Bui 2024, arXiv 2405.12522).

A ReLU sparse autoencoder with a tied pre-encoder / post-decoder bias and unit-norm dictionary vectors in
both the encoder and the decoder (gradient components parallel to each vector removed, then renormalised
after every step), trained full-batch with Adam on ``MSE + l1_coeff * mean_i ||f_i||_1`` over the head
vectors of a handful of prompts. Its use is discrete: a vector's *code* is its argmax latent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn


@dataclass
class CodebookConfig:
    """How to train the code-book SAE."""

    n_latents: int = 200
    """Dictionary size; the paper uses 200 latents for GPT-2 small."""
    l1_coeff: float = 0.02
    """Weight of the L1 penalty on latent activations (the paper: 0.02, 0.05 for docstring)."""
    n_steps: int = 500
    """Full-batch Adam steps (the paper's 500 epochs over its ~10 training prompts)."""
    lr: float = 1e-3
    """Adam learning rate."""
    scale_inputs: bool = True
    """Rescale vectors so their mean squared norm is ``d_model`` before training and encoding. The L1
    weight is only comparable across models when inputs are on one scale; GPT-2's head outputs happen to
    be near it, the toy models' are not. Argmax codes do not depend on a global scale otherwise."""

    def __post_init__(self) -> None:
        if self.n_latents < 2:
            raise ValueError(f"n_latents must be at least 2, got {self.n_latents}")
        if self.l1_coeff < 0:
            raise ValueError(f"l1_coeff must be >= 0, got {self.l1_coeff}")
        if self.n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {self.n_steps}")


class CodebookSAE(nn.Module):
    """ReLU SAE with unit-norm encoder rows and decoder rows and one tied bias."""

    def __init__(self, d_in: int, n_latents: int, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(d_in))
        self.W_enc = nn.Parameter(torch.randn(n_latents, d_in, generator=generator))
        bound = 1 / d_in**0.5
        self.b_enc = nn.Parameter(torch.rand(n_latents, generator=generator) * 2 * bound - bound)
        self.W_dec = nn.Parameter(torch.randn(n_latents, d_in, generator=generator))
        self.renormalize()

    @torch.no_grad()
    def renormalize(self) -> None:
        """Put every encoder and decoder vector back on the unit sphere (Adam's momentum drifts them)."""
        self.W_enc.div_(self.W_enc.norm(dim=-1, keepdim=True))
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True))

    @torch.no_grad()
    def remove_parallel_grads(self) -> None:
        """Keep only the gradient component tangent to each unit vector (Bricken et al. 2023)."""
        for w in (self.W_enc, self.W_dec):
            if w.grad is not None:
                w.grad -= (w.grad * w).sum(-1, keepdim=True) * w

    def encode(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... n_latents"]:
        return torch.relu((x - self.bias) @ self.W_enc.T + self.b_enc)

    def decode(self, f: Float[Tensor, "... n_latents"]) -> Float[Tensor, "... d_in"]:
        return f @ self.W_dec + self.bias

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.encode(x)
        return f, self.decode(f)

    def codes(self, x: Float[Tensor, "... d_in"]) -> Int[Tensor, "*shape"]:
        """The discrete code of each vector: its argmax latent."""
        with torch.no_grad():
            return self.encode(x).argmax(-1)


def sae_loss(x: Tensor, f: Tensor, x_hat: Tensor, l1_coeff: float) -> Tensor:
    """Element-mean squared error plus ``l1_coeff`` times the mean L1 norm of the latent vectors."""
    return (x_hat - x).pow(2).mean() + l1_coeff * f.abs().sum(-1).mean()


def input_scale(vectors: Float[Tensor, "n d_in"]) -> float:
    """Factor that makes the mean squared norm of ``vectors`` equal to ``d_in``."""
    ms = vectors.pow(2).sum(-1).mean()
    if ms <= 0:
        raise ValueError("all head vectors are zero; the model's heads write nothing on these prompts")
    return float((vectors.shape[-1] / ms).sqrt())


def train_codebook(
    vectors: Float[Tensor, "n d_in"], cfg: CodebookConfig, *, seed: int = 0
) -> tuple[CodebookSAE, list[float]]:
    """Train a :class:`CodebookSAE` full-batch on ``vectors`` (already scaled); returns it and the losses."""
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise ValueError(f"vectors must be a non-empty [n, d_in] matrix, got {tuple(vectors.shape)}")
    gen = torch.Generator().manual_seed(seed)
    # callers may hold gradients off (the app, benchmarks): training needs them, whatever the context
    with torch.enable_grad():
        vectors = vectors.detach().clone()
        sae = CodebookSAE(vectors.shape[1], cfg.n_latents, generator=gen).to(vectors.device, vectors.dtype)
        opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
        losses = []
        for _ in range(cfg.n_steps):
            f, x_hat = sae(vectors)
            loss = sae_loss(vectors, f, x_hat, cfg.l1_coeff)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            sae.remove_parallel_grads()
            opt.step()
            sae.renormalize()
            losses.append(loss.detach())
    # one host sync at the end, not one per step (matters on CUDA)
    return sae, torch.stack(losses).tolist()
