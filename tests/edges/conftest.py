"""Fixtures for the edge tests: the built-in tiny model with a few IOI prompts."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def tiny():
    from circuitkit.models import load_model

    torch.manual_seed(0)
    return load_model("tiny", device="cpu")


@pytest.fixture(scope="session")
def tiny_ioi(tiny):
    from circuitkit.tasks import make_task

    return make_task("ioi", tiny.tokenizer, 3, seed=0, split="heldout")
