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


def test_a_model_read_from_a_folder_takes_that_folders_circuit(tmp_path):
    """A copy of ck-tiny whose card lists another head (as a re-trained model's would): the loaded model
    and the folder's path both give the copy's circuit, the built-in name still the shipped one; a folder
    whose card has no circuit for the task falls back to the built-in card of the name it records."""
    import json
    import shutil

    from circuitkit.models import zoo
    from circuitkit.models.loading import load_model

    folder = tmp_path / "retrained"
    shutil.copytree(zoo.builtin_dir("ck-tiny"), folder)
    card = json.loads((folder / "card.json").read_text())
    shipped = ground_truth("ck-tiny", "ioi")
    other = next((layer, 3 - head) for layer, head in shipped.heads if (layer, 3 - head) not in shipped.heads)
    card["circuits"]["ioi"]["heads"] = [{"layer": other[0], "head": other[1], "role": "re-derived"}]
    (folder / "card.json").write_text(json.dumps(card))
    model = load_model(folder)
    assert model.cfg.model_name == "ck-tiny"
    assert set(ground_truth(model, "ioi").heads) == {other}
    assert set(ground_truth(str(folder), "ioi").heads) == {other}
    assert ground_truth("ck-tiny", "ioi").heads == shipped.heads
    del card["circuits"]["ioi"]
    (folder / "card.json").write_text(json.dumps(card))
    assert ground_truth(load_model(folder), "ioi").heads == shipped.heads
