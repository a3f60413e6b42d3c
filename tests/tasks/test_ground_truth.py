from __future__ import annotations

import pytest

from circuitkit.tasks.ground_truth import GPT2_SMALL, ground_truth


def test_gpt2_small_circuits_match_the_papers():
    ioi = ground_truth("gpt2", "ioi")
    assert ioi.heads[(9, 6)] == "name mover" and ioi.heads[(9, 9)] == "name mover"
    assert ioi.heads[(7, 3)] == "s inhibition"
    assert len(ioi.heads) == 26
    gt = GPT2_SMALL["greater_than"]
    assert (9, 1) in gt.heads and 8 in gt.mlps
    assert ioi.head_mask(12, 12).sum() == 26


@pytest.mark.parametrize("name", ["tiny", "default"])
@pytest.mark.parametrize("task", ["ioi", "greater_than"])
def test_builtin_models_have_patching_derived_circuits(name, task):
    c = (
        ground_truth(name if name != "tiny" else "ck-tiny", task)
        if name == "tiny"
        else ground_truth("ck-6l", task)
    )
    assert len(c.heads) >= 1
    assert "activation patching" in c.source
    # every listed head moved the normalised metric by at least the threshold in one direction
    thr = c.details["threshold"]
    for h in c.details["heads"]:
        assert max(abs(h["effect_denoising"]), abs(h["effect_noising"])) >= thr


def test_unknown_ground_truth():
    with pytest.raises(KeyError, match="no ground-truth circuit"):
        ground_truth("pythia-70m", "ioi")
