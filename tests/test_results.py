"""Result tables: grid <-> rows round trip, parquet + JSON save/load with provenance."""

from __future__ import annotations

import pytest
import torch

from circuitkit.results import Provenance, from_grids, list_results, load, load_frame, save, save_frame


def _result():
    grids = {
        "head": torch.randn(3, 4, dtype=torch.float64),
        "head_pos": torch.randn(3, 5, 4, dtype=torch.float64),
    }
    prov = Provenance(model="m", task="ioi", method="atp", metric="logit_diff", n_prompts=7, seed=3, passes=3)
    return grids, from_grids(grids, prov)


def test_grid_round_trip():
    grids, res = _result()
    assert len(res.table) == 12 + 60
    for fam, g in grids.items():
        torch.testing.assert_close(res.grid(fam), g, rtol=0, atol=0)
    row = res.table[(res.table.family == "head_pos") & (res.table.layer == 2) & (res.table.pos == 4)]
    assert row["head"].tolist() == [0, 1, 2, 3] and row["score"].tolist() == grids["head_pos"][2, 4].tolist()
    assert res.top(1)["score"].abs().item() == max(g.abs().max().item() for g in grids.values())


def test_save_load(tmp_path):
    grids, res = _result()
    path = save(res, tmp_path / "out", "tiny_ioi_atp")
    assert path.exists() and not list((tmp_path / "out").glob("*.tmp"))
    back = load(tmp_path / "out" / "tiny_ioi_atp")
    assert back.provenance == res.provenance
    torch.testing.assert_close(back.grid("head_pos"), grids["head_pos"], rtol=0, atol=0)
    assert list_results(tmp_path / "out") == [tmp_path / "out" / "tiny_ioi_atp"]
    save_frame(res.table.head(3), {"note": "x"}, tmp_path, "summary")
    frame, meta = load_frame(tmp_path / "summary.parquet")
    assert len(frame) == 3 and meta == {"note": "x"}


def test_errors(tmp_path):
    _, res = _result()
    with pytest.raises(ValueError, match="no rows of family"):
        res.grid("mlp_out")
    with pytest.raises(FileNotFoundError, match="missing"):
        load(tmp_path / "nothing")
    with pytest.raises(ValueError, match="axes"):
        from_grids({"head": torch.zeros(2, 2, 2)}, res.provenance)


def test_edge_tables_with_extra_columns_round_trip(tmp_path):
    import pandas as pd

    from circuitkit.results import ResultTable

    table = pd.DataFrame(
        {
            "family": ["edge", "edge"],
            "layer": pd.array([0, 1], dtype="Int64"),
            "head": pd.array([None, None], dtype="Int64"),
            "pos": pd.array([None, None], dtype="Int64"),
            "component": ["L0H1->L1H0", "mlp0->resid_post"],
            "score": [0.5, -0.25],
            "sender": ["L0H1", "mlp0"],
            "receiver": ["L1H0", "resid_post"],
        }
    )
    prov = Provenance(model="ck-tiny", task="ioi", method="eap", metric="logit_diff", options={"steps": 5})
    back = load(save(ResultTable(table, prov), tmp_path, "edges"))
    pd.testing.assert_frame_equal(back.table, table)
    assert back.families == ["edge"] and back.provenance.key() == prov.key()


def test_legacy_files_move_options_and_baselines_to_their_fields(tmp_path):
    import json

    _, res = _result()
    save(res, tmp_path, "old")
    meta = json.loads((tmp_path / "old.json").read_text())
    prov = meta["provenance"]
    for k in ("options", "baseline_target", "baseline_source", "split"):
        prov.pop(k)
    prov["extra"] = {"options": {"rules": "ln"}, "baseline_target": 0.1, "baseline_source": 2.0}
    (tmp_path / "old.json").write_text(json.dumps(meta))
    p = load(tmp_path / "old").provenance
    assert (p.options, p.baseline_target, p.baseline_source, p.extra) == ({"rules": "ln"}, 0.1, 2.0, {})
    prov["surprise"] = 1
    (tmp_path / "old.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unknown provenance field"):
        load(tmp_path / "old")
