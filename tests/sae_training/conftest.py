"""Shared fixtures: the tiny built-in model and one small activation cache (with gradients) read by
most tests."""

from __future__ import annotations

import pytest
import torch

HOOKS = [
    "blocks.1.hook_resid_post",
    "blocks.1.ln2.hook_normalized",
    "blocks.1.hook_mlp_out",
    "blocks.1.attn.hook_z",
]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny():
    from circuitkit.models import load_model

    return load_model("tiny", device="cpu")


@pytest.fixture(scope="session")
def cache_dir(tiny, tmp_path_factory):
    """8k tokens of the tiny model at four hooks of layer 1, with LM-loss gradients, in 2 shards."""
    from sae_training.activations import write_cache
    from sae_training.config import CacheConfig

    out = tmp_path_factory.mktemp("cache")
    cfg = CacheConfig(
        model="tiny", hooks=HOOKS, n_tokens=8192, shard_tokens=4096, with_gradients=True, context_size=32,
        model_batch_size=64, out_dir=str(out), progress=False,
    )  # fmt: skip
    write_cache(cfg, tiny, "ck-tiny")
    return out
