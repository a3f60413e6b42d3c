"""Both analyses notebooks run to the end with ``MODEL="gpt2"`` (the stand-in, by name, offline): every
step runs; the checks that presuppose a model doing the task are skipped with a line saying so (random
weights do not solve IOI or greater-than); step 6 splices a sae-lens release named ``release/sae_id``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.gpt2.conftest import RELEASE_SPEC

ANALYSES = Path(__file__).resolve().parents[2] / "analyses"


def _runner():
    spec = importlib.util.spec_from_file_location("analyses_run", ANALYSES / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ioi", "greater_than"])
def test_notebook_runs_to_the_end_on_gpt2(name, gpt2_grid_home, use_hf_home, tmp_path):
    use_hf_home(gpt2_grid_home)  # the kernel inherits HF_HOME
    run = _runner()
    params = {
        "MODEL": "gpt2",
        "FAST": True,
        "N_PROMPTS": 4,
        "FIGURES": "none",
        "DICTIONARIES": [RELEASE_SPEC],
    }
    nb, _ = run.execute(name, params, timeout=900, failed_to=tmp_path / f"{name}.failed.ipynb")
    assert run.error_outputs(nb) == []
    text = "".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    assert "Cannot load" not in text and "gpt2: 12 layers, 12 heads" in text
    assert "skip: the model does not solve the task" in text  # said once, visibly
    assert text.count("skipped (the model does not solve the task)") >= 3  # recall, r floors, faithfulness
    assert "ground truth: 26 heads" in text or "ground truth: 9 heads" in text  # Wang et al. / Hanna et al.
    # step 6 ran on the release and its exactness check (no competence needed) held
    assert RELEASE_SPEC in text and "ok: latents + error node = AtP" in text
    assert "notebook ran in" in text  # the last cell ran
