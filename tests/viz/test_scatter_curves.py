import numpy as np
import pytest

from circuitkit.viz import faithfulness_curve, method_vs_patching_scatter, roc_curve


def test_scatter_points_labels_and_r_in_title():
    patch = np.array([[0.1, 0.9], [0.4, -0.2]])
    method = np.array([[0.2, 0.7], [0.5, -0.1]])
    labels = ["L0H0", "L0H1", "L1H0", "L1H1"]
    fig = method_vs_patching_scatter(method, patch, labels, method_name="AtP")
    pts = fig.data[0]
    np.testing.assert_array_equal(np.asarray(pts.x), patch.ravel())
    np.testing.assert_array_equal(np.asarray(pts.y), method.ravel())
    assert list(pts.text) == labels
    r = np.corrcoef(patch.ravel(), method.ravel())[0, 1]
    assert fig.layout.meta["pearson_r"] == pytest.approx(r)
    assert f"r = {r:.3f}" in fig.layout.title.text
    # A given r (e.g. from circuitkit.evaluation) is what is printed.
    assert "r = 0.123" in method_vs_patching_scatter(method, patch, labels, r=0.123).layout.title.text
    with pytest.raises(ValueError, match="one label per component"):
        method_vs_patching_scatter(method, patch, labels[:3])
    with pytest.raises(ValueError, match="differ in size"):
        method_vs_patching_scatter(method[:1], patch, labels)


def test_faithfulness_and_roc_curves_carry_their_points():
    fig = faithfulness_curve({"AtP": ([1, 2, 4], [0.1, 0.5, 0.9]), "RelP": ([1, 2], [0.3, 0.8])})
    assert [t.name for t in fig.data] == ["AtP", "RelP"]
    np.testing.assert_array_equal(np.asarray(fig.data[0].x), [1, 2, 4])
    np.testing.assert_array_equal(np.asarray(fig.data[1].y), [0.3, 0.8])
    with pytest.raises(ValueError, match="2 sizes but 1"):
        faithfulness_curve({"x": ([1, 2], [0.5])})
    roc = roc_curve({"sae": ([0, 0.5, 1], [0, 0.9, 1], 0.87)})
    assert roc.data[0].name == "sae (AUC 0.870)" and roc.data[0].meta["auc"] == 0.87
    np.testing.assert_array_equal(np.asarray(roc.data[0].y), [0, 0.9, 1])
    assert roc.data[-1].name == "chance"
