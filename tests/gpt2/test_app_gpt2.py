"""The explorer opens on GPT-2 by name (the stand-in, offline): a black-box AppTest of the entry page with
the model set to ``gpt2`` in the URL, and the sidebar's sae-lens ``release/sae_id`` field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gpt2.conftest import RELEASE_SPEC

APP = Path(__file__).resolve().parents[2] / "app" / "Home.py"


@pytest.mark.slow
def test_explorer_opens_on_gpt2(gpt2_home, use_hf_home, monkeypatch):
    from streamlit.testing.v1 import AppTest

    use_hf_home(gpt2_home)
    monkeypatch.setenv("CIRCUITKIT_MODELS", "gpt2")
    at = AppTest.from_file(str(APP), default_timeout=300)
    at.query_params["model"] = "gpt2"
    at.query_params["release"] = RELEASE_SPEC
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    selection = at.session_state["selection"]
    assert selection.model == "gpt2" and selection.dictionary == RELEASE_SPEC
    shown = " ".join(str(getattr(e, "value", "")) for e in [*at.markdown, *at.caption, *at.metric])
    # the model page shows the stand-in: GPT-2's vocabulary and a task prompt in GPT-2's tokens
    assert "50,257" in shown and "`<|endoftext|>`" in shown
