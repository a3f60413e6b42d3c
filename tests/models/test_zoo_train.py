"""`circuitkit zoo train tiny` reproduces a model that solves IOI (about 2.5 minutes on 2 cores)."""

from __future__ import annotations

import pytest

from circuitkit.cli import main
from circuitkit.models import load_model, read_card


@pytest.mark.slow
def test_zoo_train_tiny_solves_ioi(tmp_path):
    out = tmp_path / "ck-tiny"
    assert main(["zoo", "train", "tiny", "--out", str(out), "--quiet", "--no-ground-truth"]) == 0
    card = read_card(out)
    assert card["recipe"]["name"] == "ck-tiny"
    assert card["task_scores"]["ioi"]["accuracy"] >= 0.95
    assert card["task_scores"]["ioi"]["logit_diff"] >= 3.0
    model = load_model(str(out), device="cpu")
    assert model.cfg.model_name == "ck-tiny"


def test_zoo_train_rejects_unknown_name(capsys):
    assert main(["zoo", "train", "huge"]) == 2
    assert "unknown built-in model 'huge'" in capsys.readouterr().err


def test_zoo_train_rejects_zero_threads(capsys):
    assert main(["zoo", "train", "tiny", "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err


def test_zoo_train_refuses_first_phase_for_a_one_phase_model(capsys, tmp_path):
    assert main(["zoo", "train", "tiny", "--first-phase", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "--first-phase applies to planted two-phase recipes only" in capsys.readouterr().err
