"""The ``heads`` method in the registry: a provenance-carrying result table over every head."""

import pytest

from circuitkit.methods import MethodRequest, run_method
from circuitkit.models import load_model
from circuitkit.tasks import make_task


def test_heads_method_returns_a_head_table_with_provenance():
    model = load_model("tiny", device="cpu")
    data = make_task("ioi", model.tokenizer, 16, seed=0)
    req = MethodRequest(model=model, data=data, families=("head",), options={"steps": 100, "n_latents": 50})
    result = run_method("heads", req)
    n = model.cfg.n_layers * model.cfg.n_heads
    assert len(result.table) == n and set(result.table["family"]) == {"head"}
    assert sorted(result.table["rank"]) == list(range(1, n + 1))
    assert result.provenance.method == "heads" and result.provenance.options["variant"] == "node"
    assert result.provenance.task == "ioi"
    assert result.provenance.direction == "none" and result.provenance.task == "ioi"
    assert result.provenance.extra["config"]["codebook"]["n_steps"] == 100
    assert result.grid("head").shape == (model.cfg.n_layers, model.cfg.n_heads)
    with pytest.raises(ValueError, match="unknown option"):
        run_method("heads", MethodRequest(model=model, data=data, families=("head",), options={"stpes": 1}))
