import numpy as np
import pandas as pd
import pytest

from circuitkit.viz import (
    activation_histogram,
    code_histograms,
    density_histogram,
    fvu_vs_l0,
    top_examples,
    top_logits,
    training_curves,
)


def test_top_examples_rows_are_contexts_with_their_activations():
    toks = [["a", " b", " c"], ["d", " e"]]
    acts = [[0.0, 2.0, 0.5], [1.0, 0.0]]
    fig = top_examples(toks, acts)
    z = np.asarray(fig.data[0].z, dtype=float)
    np.testing.assert_array_equal(z[0], [0.0, 2.0, 0.5])
    np.testing.assert_array_equal(z[1, :2], [1.0, 0.0])
    assert np.isnan(z[1, 2])
    assert [list(r) for r in fig.data[0].text] == [["a", "␣b", "␣c"], ["d", "␣e", ""]]
    assert fig.data[0].zmax == 2.0
    with pytest.raises(ValueError, match="example 0"):
        top_examples([["a"]], [[1.0, 2.0]])


def test_histograms_and_logits_keep_their_values():
    vals = np.array([0.1, 0.5, 2.0])
    np.testing.assert_array_equal(np.asarray(activation_histogram(vals).data[0].x), vals)
    dens = density_histogram(np.array([-3.0, -2.0, -1.5]), selected=-2.0)
    np.testing.assert_array_equal(np.asarray(dens.data[0].x), [-3.0, -2.0, -1.5])
    assert dens.layout.shapes[0].x0 == -2.0
    fig = top_logits([(" Mary", 3.0), (" John", 2.0)], [(" the", -1.0)])
    assert list(fig.data[0].y) == ["␣Mary", "␣John"] and list(fig.data[0].x) == [3.0, 2.0]
    assert list(fig.data[1].y) == ["␣the"] and list(fig.data[1].x) == [-1.0]


def test_training_curves_one_line_per_run_and_metric():
    a = pd.DataFrame({"step": [0, 10, 20], "loss": [3.0, 2.0, 1.0], "l0": [50, 30, 20]})
    b = pd.DataFrame({"step": [0, 10], "loss": [4.0, 2.5], "fvu": [0.9, 0.4]})
    fig = training_curves({"a": a, "b": b}, metrics=("loss", "l0", "fvu"))
    lines = {(t.meta["run"], t.meta["metric"]): (list(t.x), list(t.y)) for t in fig.data}
    assert lines == {
        ("a", "loss"): ([0, 10, 20], [3.0, 2.0, 1.0]),
        ("a", "l0"): ([0, 10, 20], [50.0, 30.0, 20.0]),
        ("b", "loss"): ([0, 10], [4.0, 2.5]),
        ("b", "fvu"): ([0, 10], [0.9, 0.4]),
    }
    with pytest.raises(ValueError, match="no 'step' column"):
        training_curves({"c": pd.DataFrame({"loss": [1.0]})})
    summary = pd.DataFrame({"run": ["a", "b"], "l0": [20.0, 8.0], "fvu": [0.1, 0.3]})
    pts = fvu_vs_l0(summary).data[0]
    assert list(pts.x) == [20.0, 8.0] and list(pts.y) == [0.1, 0.3] and list(pts.text) == ["a", "b"]


def test_code_histograms_one_panel_per_head():
    fig = code_histograms({"L0H1": ([3, 3, 7], [1]), "L2H0": ([5], [5, 6])}, cols=2)
    got = {(t.meta["head"], t.meta["kind"]): list(t.x) for t in fig.data}
    assert got == {
        ("L0H1", "positive"): ["3", "3", "7"],
        ("L0H1", "negative"): ["1"],
        ("L2H0", "positive"): ["5"],
        ("L2H0", "negative"): ["5", "6"],
    }
    assert [a.text for a in fig.layout.annotations] == ["L0H1", "L2H0"]
