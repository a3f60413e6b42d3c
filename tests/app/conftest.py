"""Fixtures for the explorer's tests: a small dictionary and two training runs on disk, pointed to by
the environment variables the app reads, and a helper that opens a page in AppTest."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

APP = Path(__file__).resolve().parents[2] / "app" / "Home.py"
TIMEOUT = 300  # the first run loads the model; AppTest's default 3 s is far too short


def default_model_name() -> str:
    """The model the app opens on: the default (ck-6l) when its weights exist, else ck-tiny."""
    from app.state import available_models

    return available_models()[0]


@pytest.fixture(scope="session")
def app_model():
    from app import state

    return state.model(default_model_name())


@pytest.fixture(scope="session")
def dictionary_dir(tmp_path_factory, app_model) -> Path:
    """A small sae-lens StandardSAE on the app model's middle residual stream, saved in sae-lens format."""
    from sae_lens import StandardSAE, StandardSAEConfig

    root = tmp_path_factory.mktemp("dictionaries")
    layer = app_model.cfg.n_layers // 2
    cfg = StandardSAEConfig(d_in=app_model.cfg.d_model, d_sae=64)
    cfg.metadata.hook_name = f"blocks.{layer}.hook_resid_post"
    torch.manual_seed(0)
    sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.b_enc.fill_(0.05)
    out = root / "test-sae"
    sae.save_model(str(out))
    return out


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for name, scale in (("ck-run-a", 1.0), ("ck-run-b", 2.0)):
        (root / name).mkdir()
        with open(root / name / "metrics.jsonl", "w") as f:
            for step in range(0, 50, 10):
                row = {
                    "step": step,
                    "loss": scale / (step + 1),
                    "l0": 32 * scale - step / 10,
                    "fvu": 0.5 * scale / (1 + step / 10),
                    "dead_fraction": 0.01 * step / scale,
                }
                f.write(json.dumps(row) + "\n")
    return root


@pytest.fixture(autouse=True)
def app_env(monkeypatch, dictionary_dir, runs_dir):
    monkeypatch.setenv("CIRCUITKIT_DICTIONARIES", str(dictionary_dir.parent))
    monkeypatch.setenv("CIRCUITKIT_RUNS", str(runs_dir))


def open_page(page: str | None = None, **query):
    """AppTest on ``page`` (e.g. ``"views/patching.py"``) with URL query parameters, after one run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    for k, v in query.items():
        at.query_params[k] = str(v)
    at.run()
    if page is not None:
        at.switch_page(page)
        at.run()
    return at


def _decode(obj):
    """Plotly's typed arrays ``{"dtype", "bdata", "shape"}`` (base64) -> numpy, recursively."""
    if isinstance(obj, dict):
        if "bdata" in obj and "dtype" in obj:
            arr = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
            shape = obj.get("shape")
            return arr.reshape([int(n) for n in str(shape).split(",")]) if shape else arr
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def figures(at) -> list[go.Figure]:
    """Every plotly figure on the page, rebuilt from what the app sent to the browser."""
    out = []
    for el in at.get("plotly_chart"):
        spec = _decode(json.loads(el.proto.spec))
        out.append(go.Figure(spec, skip_invalid=True))
    return out


def selection(at):
    """The sidebar's selection (AppTest does not list the router's sidebar widgets after a page switch)."""
    return at.session_state["selection"]


def assert_clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
