"""Shared fixtures: seeded torch, the built-in models loaded once per session."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_model():
    from circuitkit.models import load_model

    return load_model("tiny", device="cpu")


@pytest.fixture(scope="session")
def default_model():
    from circuitkit.models import load_model

    return load_model("default", device="cpu")
