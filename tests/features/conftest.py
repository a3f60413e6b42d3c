"""Tiny dictionaries trained in seconds on the tiny model's task prompts, for the feature-circuit tests.

About a hundred Adam steps on ~800 activation vectors: not good dictionaries, but real sae-lens objects with
sparse, input-dependent latents and nonzero error terms, which is all the properties under test need.
"""

from __future__ import annotations

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig, Transcoder, TranscoderConfig
from sae_lens.saes.sae import SAEMetadata

from circuitkit.models import load_model
from circuitkit.tasks import make_task


def train_dictionary(sae, x_in, x_out, *, steps: int = 120, l1: float = 3e-3, lr: float = 3e-3):
    """Minimal loop: normalised MSE + L1, Adam. Mutates and returns ``sae``."""
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    target = x_out.reshape(x_out.shape[0], -1)
    norm = target.pow(2).sum(-1).mean()
    for _ in range(steps):
        f = sae.encode(x_in)
        out = sae.decode(f).reshape(target.shape)
        loss = (out - target).pow(2).sum(-1).mean() / norm + l1 * f.abs().sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return sae.eval().requires_grad_(False)


@pytest.fixture(scope="session")
def tiny():
    return load_model("tiny", device="cpu")


@pytest.fixture(scope="session")
def ioi(tiny):
    return make_task("ioi", tiny.tokenizer, 8, seed=0)


@pytest.fixture(scope="session")
def dictionaries(tiny):
    """Two residual SAEs, an attention-output (hook_z) SAE and two transcoders, keyed by id."""
    torch.manual_seed(0)
    d_model = tiny.cfg.d_model
    tokens = torch.cat(
        [
            make_task("ioi", tiny.tokenizer, 24, seed=1).clean_tokens,
            make_task("ioi", tiny.tokenizer, 24, seed=1).corrupted_tokens,
        ]
    )
    hooks = {
        "blocks.1.hook_resid_pre",
        "blocks.2.hook_resid_pre",
        "blocks.1.attn.hook_z",
        "blocks.1.ln2.hook_normalized",
        "blocks.1.hook_mlp_out",
        "blocks.2.ln2.hook_normalized",
        "blocks.2.hook_mlp_out",
    }
    with torch.no_grad():
        _, cache = tiny.run_with_cache(tokens, names_filter=lambda n: n in hooks)
    out = {}
    for layer in (1, 2):
        hook = f"blocks.{layer}.hook_resid_pre"
        cfg = StandardSAEConfig(d_in=d_model, d_sae=2 * d_model, metadata=SAEMetadata(hook_name=hook))
        x = cache[hook].flatten(0, 1)
        out[f"sae{layer}"] = train_dictionary(StandardSAE(cfg), x, x)
        hin, hout = f"blocks.{layer}.ln2.hook_normalized", f"blocks.{layer}.hook_mlp_out"
        tcfg = TranscoderConfig(
            d_in=d_model,
            d_sae=2 * d_model,
            d_out=d_model,
            apply_b_dec_to_input=False,
            metadata=SAEMetadata(hook_name=hin, hook_name_out=hout),
        )
        out[f"tc{layer}"] = train_dictionary(
            Transcoder(tcfg), cache[hin].flatten(0, 1), cache[hout].flatten(0, 1)
        )
    z = cache["blocks.1.attn.hook_z"].flatten(0, 1)
    zcfg = StandardSAEConfig(
        d_in=z.shape[-2] * z.shape[-1],
        d_sae=2 * d_model,
        reshape_activations="hook_z",
        metadata=SAEMetadata(hook_name="blocks.1.attn.hook_z"),
    )
    out["z1"] = train_dictionary(StandardSAE(zcfg), z, z)
    return out
