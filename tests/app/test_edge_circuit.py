"""The Edge circuit page in AppTest: an EAP result written by the CLI is drawn as stored (figure, table,
edge details), the slider and the URL drive what is shown, a bad link value gets a visible notice."""

from __future__ import annotations

import numpy as np
import pytest

from tests.app.conftest import assert_clean, figures, open_page

pytestmark = pytest.mark.slow

PAGE = "views/edge_circuit.py"


@pytest.fixture(scope="module")
def cli_eap(tmp_path_factory):
    """An EAP result for ck-tiny / IOI written by ``circuitkit discover`` (the alias ``tiny``)."""
    from circuitkit.cli import main
    from circuitkit.results import list_results, load

    out = tmp_path_factory.mktemp("cli_edges")
    args = ["discover", "--model", "tiny", "--task", "ioi", "--method", "eap", "--n-prompts", "4"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    (stem,) = list_results(out)
    return out, load(stem)


def _midpoints(at):
    """(sender, receiver, score) of every edge drawn on the page's edge figure."""
    fig = next(f for f in figures(at) if any(t.name == "edges" for t in f.data))
    mids = next(t for t in fig.data if t.name == "edges")
    return [(str(s), str(r), float(v)) for s, r, v in mids.customdata]


def test_cli_eap_result_is_drawn_as_stored(cli_eap, monkeypatch):
    from circuitkit.viz.edges import select_edges

    out, stored = cli_eap
    monkeypatch.setenv("CIRCUITKIT_RESULTS", str(out))
    at = open_page(PAGE, model="ck-tiny", task="ioi", edge_method="eap", k_edges=12)
    assert_clean(at)
    assert not [b for b in at.button if b.key == "run_edges"]  # found on disk, nothing to run
    want = select_edges(stored, top_k=12)
    drawn = _midpoints(at)
    assert [(s, r) for s, r, _ in drawn] == list(zip(want["sender"], want["receiver"], strict=True))
    np.testing.assert_allclose([v for *_, v in drawn], want["score"].to_numpy(), rtol=1e-6)
    table = at.dataframe[0].value
    assert table["sender"].tolist() == want["sender"].tolist() and len(table) == 12

    # The slider changes how many edges are drawn, and the URL follows.
    at.slider(key="k_edges").set_value(5).run()
    assert_clean(at)
    assert len(_midpoints(at)) == 5 and at.query_params["k_edges"] in ("5", ["5"])

    # Picking an edge (the fallback to clicking it) shows that edge's numbers.
    third = f"{want['sender'].iloc[2]}->{want['receiver'].iloc[2]}"
    at.selectbox(key="edge").set_value(third).run()
    assert_clean(at)
    shown = {m.label: m.value for m in at.metric}
    assert float(shown["score"]) == pytest.approx(float(want["score"].iloc[2]), rel=1e-3)
    assert shown["rank by |score|"] == f"3 of {len(stored.table)}"


def test_edge_page_without_a_result_offers_run_and_bad_links_get_a_notice(tmp_path, monkeypatch):
    monkeypatch.setenv("CIRCUITKIT_RESULTS", str(tmp_path))
    at = open_page(PAGE, model="ck-tiny", task="greater_than", edge_method="acdc")
    assert_clean(at)
    assert any("edge_method=acdc" in w.value and "instead" in w.value for w in at.warning)
    assert at.selectbox(key="edge_method").value == "eap"
    at.button(key="run_edges").click().run()  # computed here through the registry's eap
    assert_clean(at)
    assert len(_midpoints(at)) == 50
    assert at.dataframe[0].value["score"].abs().is_monotonic_decreasing
