"""The analyses notebooks execute end to end in fast mode on the built-in models, with no error outputs.

Each notebook asserts its own measured numbers in cells (the model solves the task, activation patching
recovers the ground-truth heads, AtP / RelP correlation and circuit faithfulness above stated floors), so
an executed notebook without errors means those claims held on this run.

IOI runs on ck-tiny; greater-than on ck-6l, because ck-tiny barely separates clean from corrupted
greater-than prompts (its card: prob diff 0.84 vs 0.77), which leaves the normalised patching effects
dominated by noise on a handful of prompts.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

ANALYSES = Path(__file__).resolve().parents[2] / "analyses"


def _runner():
    spec = importlib.util.spec_from_file_location("analyses_run", ANALYSES / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _outputs_text(nb: nbformat.NotebookNode) -> str:
    return "".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )


def _planted_cases() -> list:
    """(notebook, planted model) for every planted model whose weights ship."""
    from circuitkit.models.zoo import PLANTED, builtin_dir, is_model_dir

    nb = {"ioi": "ioi", "greater_than": "greater_than"}
    return [
        pytest.param(nb[cfg.task], name, id=f"{nb[cfg.task]}-{name}")
        for name, cfg in PLANTED.items()
        if is_model_dir(builtin_dir(name))
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "model"), [("ioi", "tiny"), ("greater_than", "default"), *_planted_cases()])
def test_notebook_executes_in_fast_mode(name, model, tmp_path):
    run = _runner()
    params = {"MODEL": model, "FAST": True, "N_PROMPTS": 8, "FIGURES": "none"}
    nb, _ = run.execute(name, params, timeout=600, failed_to=tmp_path / f"{name}.failed.ipynb")
    assert run.error_outputs(nb) == []
    text = _outputs_text(nb)
    # The in-cell assertions ran and printed what they checked (a skipped cell would not print).
    assert text.count("ok: ") >= 5, text[-2000:]
    # the built-in models solve both tasks: no competence check is skipped
    assert "does not solve the task" not in text and "not met: " not in text, text[-3000:]
    assert "faithfulness of the found circuit" in text
    if "planted" in model:  # agreement floors are findings there, printed either way
        assert "planted ground truth" in text and "EAP against exact edge patching" in text
    else:
        assert "ok: EAP against exact edge patching" in text  # step 8 (edges) ran and its floor held
    if model == "default":  # ck-6l ships transcoders: step 6 ran on them and its own check held
        assert "ok: latents + error node = AtP" in text, text[-2000:]


def test_error_outputs_are_found():
    run = _runner()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x")]
    nb.cells[0].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[])]
    assert run.error_outputs(nb) == ["cell 0: ValueError: bad"]


def test_parameters_are_injected_after_the_parameters_cell():
    run = _runner()
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import os"),
        nbformat.v4.new_code_cell("MODEL = 'default'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(MODEL)"),
    ]
    out = run.with_parameters(nb, {"MODEL": "tiny", "FAST": True})
    assert [c.source for c in out.cells][
        2
    ] == "# Parameters injected by analyses/run.py\nMODEL = 'tiny'\nFAST = True\n"
    assert out.cells[2].metadata["tags"] == ["injected-parameters"]
    with pytest.raises(ValueError, match="parameters"):
        run.with_parameters(nbformat.v4.new_notebook(), {"MODEL": "tiny"})


def test_gpt2_unreachable_stops_cleanly(monkeypatch):
    """MODEL='gpt2' without cached weights: the load cell says why and every later cell is skipped."""
    monkeypatch.setenv(
        "HF_HUB_OFFLINE", "1"
    )  # the kernel inherits it: no network probe, same answer anywhere
    run = _runner()
    nb, _ = run.execute("ioi", {"MODEL": "gpt2", "FAST": True, "FIGURES": "none"}, timeout=300)
    text = _outputs_text(nb)
    if "Cannot load 'gpt2'" not in text:
        pytest.skip("GPT-2 small weights are reachable here; the notebook ran on them")
    assert "The rest of this notebook is skipped." in text
    assert "ok: " not in text
