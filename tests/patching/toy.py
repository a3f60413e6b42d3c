"""Small random GPT-2-style models and clean/corrupted token pairs for the patching tests."""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig


def random_model(
    n_layers=2,
    d_model=32,
    n_heads=4,
    d_mlp=64,
    d_vocab=50,
    n_ctx=16,
    seed=0,
    dtype=torch.float64,
    normalization_type="LN",
    act_fn="gelu_new",
    **kw,
) -> HookedTransformer:
    """A randomly initialised GPT-2-style model (LayerNorm, GELU, learned positions)."""
    cfg = HookedTransformerConfig(
        n_layers=n_layers,
        d_model=d_model,
        n_heads=n_heads,
        d_head=d_model // n_heads,
        d_mlp=d_mlp,
        d_vocab=d_vocab,
        n_ctx=n_ctx,
        act_fn=act_fn,
        normalization_type=normalization_type,
        seed=seed,
        dtype=dtype,
        device="cpu",
        **kw,
    )
    model = HookedTransformer(cfg)
    model.eval()
    if normalization_type is None:
        # Random init gives tiny attention scores; sharpen them so the softmax is far from linear.
        with torch.no_grad():
            for block in model.blocks:
                block.attn.W_Q.mul_(6.0)
    return model


def pair_tokens(
    d_vocab: int, batch: int, seq: int, seed: int = 0, n_diff: int = 2, corrupt_last: bool = False
):
    """Clean / corrupted token pairs differing at ``n_diff`` positions, and a logit-diff metric."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, d_vocab, (batch, seq), generator=g)
    corrupted = clean.clone()
    where = torch.randperm(seq - 1, generator=g)[:n_diff] + 1
    if corrupt_last:
        where[0] = seq - 1
    corrupted[:, where] = torch.randint(0, d_vocab, (batch, n_diff), generator=g)
    answer = torch.randint(0, d_vocab, (batch,), generator=g)
    wrong = (answer + 1) % d_vocab

    def metric(logits):
        last = logits[:, -1]
        return (last.gather(1, answer[:, None]) - last.gather(1, wrong[:, None])).mean()

    return clean, corrupted, metric
