"""Step 6's choice of dictionaries: the shipped transcoders of the key MLP layers, in the order of their
importance, and the attention SAEs of the key heads' layers (or, failing those, every attention SAE, with
a note saying so)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ANALYSES = Path(__file__).resolve().parents[2] / "analyses"
sys.path.insert(0, str(ANALYSES))
features_step = pytest.importorskip("features_step")
store = pytest.importorskip("sae_training.store")


def _layer(hook: str) -> int:
    return int(hook.split(".")[1])


def test_transcoders_of_the_key_layers_in_order_of_importance():
    shipped = [d for d in store.list_dictionaries("ck-6l") if d.architecture == "transcoder"]
    if len(shipped) < 2:
        pytest.skip("fewer than two transcoders shipped for ck-6l")
    key = [_layer(shipped[-1].hook), _layer(shipped[0].hook)]  # deliberately not in layer order
    chosen, _ = features_step.choose_dictionaries("ck-6l", key, [])
    transcoders = [d for d in chosen if d.architecture == "transcoder"]
    assert [_layer(d.hook) for d in transcoders] == key
    assert all(features_step.short_name(d).startswith("MLP ") for d in transcoders)


def test_attention_saes_of_the_key_heads_layers_or_a_note():
    attention = [d for d in store.list_dictionaries("ck-6l") if d.hook.endswith("attn.hook_z")]
    if not attention:
        pytest.skip("no attention SAE shipped for ck-6l")
    layer = _layer(attention[0].hook)
    head = attention[0].head_index or 0
    chosen, note = features_step.choose_dictionaries("ck-6l", [], [(layer, head)])
    assert attention[0].id in [d.id for d in chosen]
    assert "attention" not in note
    other = next(i for i in range(64) if i not in {_layer(d.hook) for d in attention})
    chosen, note = features_step.choose_dictionaries("ck-6l", [], [(other, 0)])
    assert {d.id for d in chosen} == {d.id for d in attention}
    assert f"key heads' layers [{other}]" in note


def test_unknown_model_has_no_dictionaries():
    chosen, note = features_step.choose_dictionaries("no-such-model", [0], [(0, 0)])
    assert chosen == []
    assert "no transcoder" in note
