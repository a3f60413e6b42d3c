"""The component vocabulary: every family's hooks exist in a GPT-2-style model; labels round-trip."""

from __future__ import annotations

import pytest
from transformer_lens import HookedTransformer, HookedTransformerConfig

from circuitkit.components import FAMILIES, check_hook, component_label, get_family, parse_head


@pytest.fixture(scope="module")
def model():
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=20, n_ctx=8, act_fn="gelu_new"
    )
    m = HookedTransformer(cfg)
    m.set_use_attn_result(True)
    return m


def test_every_family_names_real_hooks_and_axes(model):
    import torch

    tokens = torch.randint(0, 20, (3, 5))
    _, cache = model.run_with_cache(tokens)
    for fam in FAMILIES.values():
        for layer in range(2):
            check_hook(model, fam.hook_name(layer))
            act = cache[fam.hook_name(layer)]
            if fam.pos_axis is not None:
                assert act.shape[fam.pos_axis] == 5, fam.name
            if fam.head_axis is not None:
                assert act.shape[fam.head_axis] == 2, fam.name
        assert fam.dims[0] == "layer" and len(fam.grid_shape(2, 2, 5)) == len(fam.dims)


def test_labels_and_errors(model):
    assert component_label("head", 3, 2) == "L3H2"
    assert component_label("head_q_pos", 3, 2, 5) == "L3H2.q@5"
    assert component_label("resid_pre", 1, None, 4) == "resid_pre L1@4"
    assert parse_head("L9H6") == parse_head("9.6") == (9, 6)
    with pytest.raises(ValueError, match="unknown component family"):
        get_family("neuron")
    with pytest.raises(ValueError, match="does not exist"):
        check_hook(model, "blocks.9.hook_resid_pre")
