import numpy as np
import pytest
import torch

from circuitkit.viz import attention_pattern, layer_head_heatmap, layer_pos_heatmap


def test_layer_pos_heatmap_data_equals_input_with_unique_token_labels():
    scores = torch.tensor([[0.5, -2.0, 0.0], [1.5, 0.25, -0.75]])
    fig = layer_pos_heatmap(scores, ["<bos>", " John", " John"], title="t")
    (hm,) = fig.data
    np.testing.assert_array_equal(np.asarray(hm.z), scores.numpy())
    # Repeated tokens keep distinct ticks (plotly would merge equal category labels).
    assert list(hm.x) == ["0 <bos>", "1 ␣John", "2 ␣John"]
    assert list(hm.y) == ["L0", "L1"]
    # Diverging and centred: zero sits mid-scale and the range is symmetric around it.
    assert hm.zmid == 0 and hm.zmin == -2.0 and hm.zmax == 2.0


def test_layer_pos_heatmap_rejects_wrong_token_count():
    with pytest.raises(ValueError, match="one label per position"):
        layer_pos_heatmap(np.zeros((2, 3)), ["a", "b"])


def test_layer_head_heatmap_labels_every_cell():
    scores = np.arange(6, dtype=float).reshape(2, 3) - 2
    fig = layer_head_heatmap(scores, highlight=[(1, 2)])
    (hm,) = fig.data
    np.testing.assert_array_equal(np.asarray(hm.z), scores)
    assert np.asarray(hm.text).tolist() == [["L0H0", "L0H1", "L0H2"], ["L1H0", "L1H1", "L1H2"]]
    assert hm.zmid == 0 and hm.zmax == 3.0 and hm.zmin == -3.0
    (box,) = fig.layout.shapes
    assert (box.x0, box.x1, box.y0, box.y1) == (1.5, 2.5, 0.5, 1.5)
    with pytest.raises(ValueError, match="outside"):
        layer_head_heatmap(scores, highlight=[(2, 0)])


def test_attention_pattern_keeps_values_and_rejects_non_square():
    pattern = torch.tril(torch.ones(3, 3))
    pattern = pattern / pattern.sum(-1, keepdim=True)
    fig = attention_pattern(pattern, ["<bos>", " a", " b"])
    np.testing.assert_allclose(np.asarray(fig.data[0].z), pattern.numpy())
    assert list(fig.data[0].y) == ["0 <bos>", "1 ␣a", "2 ␣b"]
    with pytest.raises(ValueError, match="square"):
        attention_pattern(np.zeros((2, 3)))
