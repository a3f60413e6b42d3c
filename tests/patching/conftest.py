"""Shared fixtures: the built-in tiny model with IOI prompts, and small random GPT-2-style models."""

from __future__ import annotations

import pytest
import torch

from .toy import random_model


@pytest.fixture(scope="session")
def tiny():
    from circuitkit.models import load_model

    torch.manual_seed(0)
    return load_model("tiny", device="cpu")


@pytest.fixture(scope="session")
def tiny_ioi(tiny):
    from circuitkit.tasks import make_task

    return make_task("ioi", tiny.tokenizer, 3, seed=0, split="heldout")


@pytest.fixture(scope="session")
def small_random():
    return random_model()


@pytest.fixture(scope="session")
def gpt2_shaped():
    """GPT-2-small's shape (12 layers, d_model 768, 12 heads, d_mlp 3072) with a small vocabulary."""
    return random_model(
        n_layers=12, d_model=768, n_heads=12, d_mlp=3072, d_vocab=100, n_ctx=8, dtype=torch.float32
    )
