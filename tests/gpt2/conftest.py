"""The GPT-2 stand-in (GPT-2's real BPE, random weights) in local Hugging Face caches, built once per
session, and a fixture that points the hub client at one of them (in this process and in subprocesses).

Two shapes: ``gpt2_home`` is 2 layers x 4 heads, d_model 64 (CLI runs of every method); ``gpt2_grid_home``
has GPT-2 small's head grid, 12 layers x 12 heads (d_model 48), so that the published ground truths
(Wang et al. 2022, Hanna et al. 2023: heads up to L11H10) address real heads. Each cache also holds a
stand-in of the sae-lens release ``gpt2-small-res-jb``'s ``blocks.0.hook_resid_pre`` SAE.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

RELEASE_SPEC = "gpt2-small-res-jb/blocks.0.hook_resid_pre"


def _build(home: Path, n_layers: int, d_model: int, n_heads: int) -> Path:
    from circuitkit.models.standin import build_gpt2_standin, build_standin_release

    build_gpt2_standin(home, n_layers=n_layers, d_model=d_model, n_heads=n_heads)
    build_standin_release(home, d_model)
    return home


@pytest.fixture(scope="session")
def gpt2_home(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("gpt2_small_home"), 2, 64, 4)


@pytest.fixture(scope="session")
def gpt2_grid_home(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("gpt2_grid_home"), 12, 48, 12)


@pytest.fixture
def use_hf_home(monkeypatch) -> Callable[[Path], None]:
    """``use_hf_home(home)``: the hub client reads ``home``'s cache here and in child processes; the hub
    is unreachable as on these machines (no network, no HF_HUB_OFFLINE set by the user)."""
    import huggingface_hub.constants as hfc

    def use(home: Path) -> None:
        monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(home / "hub"))
        monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_HOME", str(home))
        monkeypatch.delenv("HF_HUB_CACHE", raising=False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    return use
