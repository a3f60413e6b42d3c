"""The ``features`` method in the registry: the same node scores as ``attribute_nodes``, as a result
table with provenance that saves and loads; the request's component families are not used."""

import pytest
import torch

from circuitkit.features import attribute_nodes
from circuitkit.methods import MethodRequest, available, run_method
from circuitkit.results import load, save


def test_features_method_equals_attribute_nodes(tiny, ioi, dictionaries, tmp_path):
    subset = {k: dictionaries[k] for k in ("sae1", "tc2", "z1")}
    # Component families in the request do not limit a method that chooses its own nodes.
    req = MethodRequest(tiny, ioi, families=("head", "resid_pre"), options={"dictionaries": subset})
    result = run_method("features", req)
    direct = attribute_nodes(tiny, ioi.clean_tokens, ioi.corrupted_tokens, ioi.metric, subset).table()
    assert set(result.table["family"]) == {"latent", "error"}
    assert len(result.table) == sum(d.cfg.d_sae + 1 for d in subset.values())
    torch.testing.assert_close(
        torch.tensor(result.table["score"].to_numpy()), torch.tensor(direct["score"].to_numpy())
    )
    assert list(result.table["component"]) == list(direct["component"])
    p = result.provenance
    assert (p.method, p.task, p.score_kind, p.passes, p.n_prompts) == (
        "features",
        "ioi",
        "effect",
        3.0,
        len(ioi),
    )
    assert set(p.extra["dictionaries"]) == set(subset)
    back = load(save(result, tmp_path, "features"))
    assert (
        back.table.equals(result.table) and back.provenance.extra["dictionaries"] == p.extra["dictionaries"]
    )
    assert available()["features"].chooses_nodes


def test_features_method_by_position_and_ig(tiny, ioi, dictionaries):
    subset = {"sae1": dictionaries["sae1"]}
    opts = {"dictionaries": subset, "by_position": True, "method": "ig", "ig_steps": 2}
    result = run_method("features", MethodRequest(tiny, ioi, options=opts))
    n_pos = ioi.clean_tokens.shape[1]
    assert len(result.table) == n_pos * (subset["sae1"].cfg.d_sae + 1)
    assert result.table["pos"].notna().all()
    o = result.provenance.options
    assert (o["method"], o["ig_steps"], o["by_position"], o["dictionaries"]) == ("ig", 2, True, "sae1")


def test_features_method_bad_requests(tiny, ioi, dictionaries):
    with pytest.raises(ValueError, match="needs the dictionaries"):
        run_method("features", MethodRequest(tiny, ioi))
    with pytest.raises(ValueError, match="unknown option"):
        run_method("features", MethodRequest(tiny, ioi, options={"dictionaries": dictionaries, "step": 1}))
    with pytest.raises(ValueError, match="ablation 'patch'"):
        run_method(
            "features", MethodRequest(tiny, ioi, ablation="mean", options={"dictionaries": dictionaries})
        )
    with pytest.raises(FileNotFoundError, match="no dictionary"):
        run_method("features", MethodRequest(tiny, ioi, options={"dictionaries": "ck-tiny__nowhere__x"}))
