"""Small random models and clean / corrupted token pairs for the edge tests."""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig


def random_model(
    n_layers: int = 3,
    d_model: int = 24,
    n_heads: int = 3,
    d_mlp: int | None = 48,
    d_vocab: int = 40,
    seed: int = 1,
    normalization_type: str | None = "LN",
    attn_only: bool = False,
) -> HookedTransformer:
    """A float64 GPT-2-style model with random weights (queries sharpened so softmaxes are not flat)."""
    cfg = HookedTransformerConfig(
        n_layers=n_layers,
        d_model=d_model,
        n_heads=n_heads,
        d_head=d_model // n_heads,
        d_mlp=None if attn_only else d_mlp,
        d_vocab=d_vocab,
        n_ctx=16,
        act_fn="gelu_new",
        normalization_type=normalization_type,
        attn_only=attn_only,
        seed=seed,
        dtype=torch.float64,
        device="cpu",
    )
    model = HookedTransformer(cfg)
    model.eval()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_Q.mul_(4.0)
    return model


def pair_tokens(d_vocab: int, batch: int = 3, seq: int = 7, seed: int = 0, n_diff: int = 2):
    """Clean / corrupted tokens differing at ``n_diff`` positions after the first, and a logit-diff
    metric at the last position (linear in the logits)."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, d_vocab, (batch, seq), generator=g)
    corrupted = clean.clone()
    where = torch.randperm(seq - 2, generator=g)[:n_diff] + 1
    corrupted[:, where] = torch.randint(0, d_vocab, (batch, n_diff), generator=g)
    answer = torch.randint(0, d_vocab, (batch,), generator=g)
    wrong = (answer + 1) % d_vocab

    def metric(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1]
        return (last.gather(1, answer[:, None]) - last.gather(1, wrong[:, None])).mean()

    return clean, corrupted, metric
