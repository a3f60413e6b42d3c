"""`circuitkit discover` / `evaluate` write result files that load back; the method registry."""

from __future__ import annotations

import pytest

from circuitkit.cli import main
from circuitkit.evaluation.correlation import parse_method
from circuitkit.methods import MethodRequest, available, get_method, register
from circuitkit.results import from_grids, list_results, load, load_frame


def test_discover_writes_a_loadable_table(tmp_path, capsys):
    rc = main(
        [
            "discover",
            "--model",
            "tiny",
            "--task",
            "ioi",
            "--method",
            "relp",
            "--option",
            "rules=ln",
            "--families",
            "head,mlp_out",
            "--n-prompts",
            "4",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert rc == 0
    (stem,) = list_results(tmp_path)
    res = load(stem)
    assert res.provenance.method == "relp" and res.provenance.options == {"rules": "ln"}
    assert res.provenance.model == "ck-tiny" and res.provenance.split == "heldout"
    assert res.provenance.baseline_target is not None and res.provenance.baseline_source is not None
    assert res.provenance.n_prompts == 4 and res.provenance.task == "ioi"
    assert set(res.families) == {"head", "mlp_out"}
    assert res.grid("head").shape == (4, 4)
    assert "relp" in capsys.readouterr().out


def test_evaluate_writes_correlations_and_ground_truth(tmp_path):
    rc = main(
        [
            "evaluate",
            "--model",
            "tiny",
            "--task",
            "ioi",
            "--method",
            "atp",
            "--method",
            "ig:steps=2",
            "--families",
            "head",
            "--n-prompts",
            "4",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert rc == 0
    corr, meta = load_frame(tmp_path / "ck-tiny_ioi_correlation")
    assert set(corr["method"]) == {"atp", "ig:steps=2"} and meta["task"] == "ioi"
    assert corr["pearson"].between(-1, 1).all()
    gt, _ = load_frame(tmp_path / "ck-tiny_ioi_ground_truth")
    assert gt["roc_auc"].between(0, 1).all()
    curve, _ = load_frame(tmp_path / "ck-tiny_ioi_faithfulness")
    ends = curve[curve["method"] == "atp"].set_index("k")["faithfulness"]
    assert ends.loc[0] == 0.0 and ends.loc[16] == 1.0


@pytest.fixture
def scratch_registry(monkeypatch):
    """The built-in methods in a copy of the registry, so methods a test registers do not leak."""
    from circuitkit import methods

    methods.available()  # load the built-in methods first
    monkeypatch.setattr(methods, "REGISTRY", dict(methods.REGISTRY))


def test_registry_accepts_new_methods(scratch_registry):
    @register("test-constant", "every head scores 1", families=("head",))
    def _const(req: MethodRequest):
        import torch

        from circuitkit.results import Provenance

        grid = torch.ones(req.model.cfg.n_layers, req.model.cfg.n_heads)
        return from_grids({"head": grid}, Provenance("m", "t", "test-constant", "x"))

    assert get_method("test-constant").families == ("head",)
    assert {"activation", "atp", "atp*", "relp", "ig"} <= set(available())
    with pytest.raises(ValueError, match="unknown method"):
        get_method("acdc")
    assert parse_method("relp:rules=ln+identity") == ("relp", {"rules": "ln+identity"})
    # Values stay strings; the method's schema types them.
    assert parse_method("atp*:grad_drop=true,qk_fix=no") == ("atp*", {"grad_drop": "true", "qk_fix": "no"})
    assert get_method("atp*").resolve_options({"grad_drop": "true", "qk_fix": "no"}) == {
        "qk_fix": False,
        "grad_drop": True,
    }


def test_registry_refuses_duplicates_and_checks_options_by_type(scratch_registry):
    from circuitkit.methods import Option, OptionError

    @register(
        "test-dup", "x", options=(Option("n", int, 1), Option("on", bool, False), Option("w", float, 0.5))
    )
    def _a(req):
        raise AssertionError

    with pytest.raises(ValueError, match="already registered"):

        @register("test-dup", "y")
        def _b(req):
            raise AssertionError

    with pytest.raises(ValueError, match="declares option names twice"):
        register("test-dup2", "z", options=(Option("n", int, 1), Option("n", int, 2)))
    m = get_method("test-dup")
    assert m.resolve_options({}) == {"n": 1, "on": False, "w": 0.5}
    assert m.resolve_options({"n": "3", "on": "yes", "w": 2}) == {"n": 3, "on": True, "w": 2.0}
    for bad in ({"n": True}, {"n": 1.5}, {"on": "maybe"}, {"on": 1}, {"w": "x"}, {"nn": 1}):
        with pytest.raises(OptionError, match=r"'n'|'on'|'w'|nn"):
            m.resolve_options(bad)
