"""Batched activation patching equals transformer_lens.patching on the same inputs."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import transformer_lens.patching as tlp
from transformer_lens import ActivationCache

from circuitkit.components import get_family
from circuitkit.patching.activation import _chunks, _components, activation_patching
from circuitkit.tasks.metrics import last_position_metric

from .toy import pair_tokens, random_model

# transformer_lens.patching stores its scores in a float32 tensor whatever the model's dtype, so on the
# float64 random models the comparison is "equal after rounding to float32" (relative 1e-6).
# family -> transformer_lens function
TL = {
    "resid_pre": tlp.get_act_patch_resid_pre,
    "resid_mid": tlp.get_act_patch_resid_mid,
    "attn_out": tlp.get_act_patch_attn_out,
    "mlp_out": tlp.get_act_patch_mlp_out,
    "head": tlp.get_act_patch_attn_head_out_all_pos,
    "head_q": tlp.get_act_patch_attn_head_q_all_pos,
    "head_k": tlp.get_act_patch_attn_head_k_all_pos,
    "head_v": tlp.get_act_patch_attn_head_v_all_pos,
    "head_pattern": tlp.get_act_patch_attn_head_pattern_all_pos,
    "head_pos": tlp.get_act_patch_attn_head_out_by_pos,
    "head_q_pos": tlp.get_act_patch_attn_head_q_by_pos,
    "head_k_pos": tlp.get_act_patch_attn_head_k_by_pos,
    "head_v_pos": tlp.get_act_patch_attn_head_v_by_pos,
    "head_pattern_pos": tlp.get_act_patch_attn_head_pattern_by_pos,
}


def _reference(model, family, target, source, metric, ablation="patch"):
    """transformer_lens.patching on the target run with a cache of the source run (or its mean)."""
    _, cache = model.run_with_cache(source)
    if ablation == "mean":
        cache = ActivationCache({k: v.mean(0, keepdim=True).expand_as(v) for k, v in cache.items()}, model)
    return TL[family](model, target, cache, metric)


@pytest.mark.parametrize("family", list(TL))
def test_equals_transformer_lens_on_tiny(tiny, tiny_ioi, family):
    data = tiny_ioi
    with torch.no_grad():
        ours = activation_patching(tiny, data.clean_tokens, data.corrupted_tokens, data.metric, family).scores
        ref = _reference(tiny, family, data.corrupted_tokens, data.clean_tokens, data.metric).cpu()
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours.float(), ref.float(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("direction", ["denoising", "noising"])
@pytest.mark.parametrize("family", ["resid_pre", "attn_out", "mlp_out", "head", "head_q", "head_pattern_pos"])
def test_equals_transformer_lens_on_random_model(small_random, family, direction):
    clean, corrupted, metric = pair_tokens(small_random.cfg.d_vocab, 3, 7)
    target, source = (corrupted, clean) if direction == "denoising" else (clean, corrupted)
    with torch.no_grad():
        ours = activation_patching(small_random, clean, corrupted, metric, family, direction=direction)
        ref = _reference(small_random, family, target, source, metric)
    torch.testing.assert_close(ours.scores.float(), ref, rtol=1e-6, atol=1e-7)


LAST_ONLY_FAMILIES = [
    "resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "head", "head_pos", "head_k_pos",
    "head_v_pos", "head_q_pos", "head_pattern_pos", "head_pattern",
]  # fmt: skip


@pytest.mark.parametrize("family", LAST_ONLY_FAMILIES)
def test_last_position_path_equals_transformer_lens(small_random, family):
    """The key/value-prefix and last-position savings change nothing: float64 model, relative 1e-6."""
    clean, corrupted, metric = pair_tokens(small_random.cfg.d_vocab, 3, 9, seed=3, n_diff=3)
    marked = last_position_metric(lambda logits: metric(logits))
    with torch.no_grad():
        # max_tokens=1 forces one pass per position group, so every start position is exercised.
        fast = activation_patching(small_random, clean, corrupted, marked, family, max_tokens=1)
        if family in TL:
            ref = _reference(small_random, family, corrupted, clean, metric)
        else:  # transformer_lens.patching has no resid_post sweep: compare with the plain forward
            ref = activation_patching(small_random, clean, corrupted, metric, family).scores.float()
    torch.testing.assert_close(fast.scores.float(), ref, rtol=1e-6, atol=1e-7)


def test_last_position_path_on_deeper_model_with_rotary():
    """Rotary positions need the key/value cache offset right; a 3-layer rotary RMS-norm model checks it
    against transformer_lens.patching (the plain forward), not against the fast path itself."""
    model = random_model(
        n_layers=3, positional_embedding_type="rotary", rotary_dim=8, normalization_type="RMS"
    )
    clean, corrupted, metric = pair_tokens(model.cfg.d_vocab, 2, 8, seed=4, n_diff=3)
    with torch.no_grad():
        for family in ("head_pos", "resid_pre", "head_k_pos"):
            fast = activation_patching(model, clean, corrupted, last_position_metric(metric), family)
            ref = _reference(model, family, corrupted, clean, metric)
            torch.testing.assert_close(fast.scores.float(), ref, rtol=1e-6, atol=1e-7)


def test_last_position_metric_wraps_without_marking_the_callers_function():
    from circuitkit.patching.common import reads_last_position_only

    def metric(logits):
        return logits[:, -1].sum()

    marked = last_position_metric(metric)
    assert marked is not metric
    assert reads_last_position_only(marked) and not reads_last_position_only(metric)
    logits = torch.randn(2, 3, 5)
    assert marked(logits) == metric(logits)


def test_chunks_cover_each_component_once_and_start_before_it():
    comps = _components(get_family("head_pos"), n_heads=3, seq_len=7)
    for max_tokens in (1, 50, 10_000):
        for first in (0, 3):
            chunks = _chunks(comps, 4, 7, 64, max_tokens, first=first, reuse_prefix=True)
            seen = sorted(i for idx, _ in chunks for i in idx)
            assert seen == [i for i, (_, p) in enumerate(comps) if p >= first]
            for idx, start in chunks:
                assert all(comps[i][1] >= start >= first for i in idx)
                assert len(idx) * 4 <= 64
    # Late positions run short sequences: some pass starts after position 0.
    assert max(start for _, start in _chunks(comps, 4, 7, 64, 10_000, reuse_prefix=True)) > 0
    heads = _components(get_family("head"), n_heads=3, seq_len=7)
    assert {start for _, start in _chunks(heads, 4, 7, 64, 10_000, first=5, reuse_prefix=True)} == {5}
    assert _chunks(heads, 4, 7, 64, 10_000, first=7, reuse_prefix=True) == []


def test_patches_before_the_first_difference_leave_the_baseline_exactly(small_random):
    """Prompts sharing a prefix: patching there writes the target's own values, so nothing changes."""
    clean, corrupted, metric = pair_tokens(small_random.cfg.d_vocab, 3, 9, seed=5, n_diff=1)
    first = int((clean != corrupted).any(0).nonzero()[0])
    assert first > 1
    res = activation_patching(small_random, clean, corrupted, last_position_metric(metric), "resid_pre")
    assert (res.scores[:, :first] == res.baseline_target).all()
    assert (res.scores[0, first:] != res.baseline_target).any()


def test_mean_ablation_equals_transformer_lens_with_mean_cache(small_random):
    clean, corrupted, metric = pair_tokens(small_random.cfg.d_vocab, 4, 6, seed=1)
    with torch.no_grad():
        ours = activation_patching(small_random, clean, corrupted, metric, "head_pos", ablation="mean")
        ref = _reference(small_random, "head_pos", corrupted, clean, metric, ablation="mean")
    torch.testing.assert_close(ours.scores.float(), ref, rtol=1e-6, atol=1e-7)


# family -> (transformer_lens patch setter, activation name), for a subset of layers via index_df.
SETTERS = {
    "head": (tlp.layer_head_vector_patch_setter, "z"),
    "resid_pre": (tlp.layer_pos_patch_setter, "resid_pre"),
    "head_v_pos": (tlp.layer_pos_head_vector_patch_setter, "v"),
}


@pytest.mark.parametrize("family", list(SETTERS))
def test_equals_transformer_lens_on_gpt2_small_shape(gpt2_shaped, family):
    """GPT-2 small's shape at random init; two layers keep transformer_lens's loop short."""
    model = gpt2_shaped
    clean, corrupted, metric = pair_tokens(model.cfg.d_vocab, 2, 4, seed=2)
    layers = [0, 11]
    dims = get_family(family).dims
    sizes = {"layer": layers, "head": range(model.cfg.n_heads), "pos": range(clean.shape[1])}
    index = pd.MultiIndex.from_product([sizes[d] for d in dims], names=list(dims)).to_frame(index=False)
    setter, act_name = SETTERS[family]
    with torch.no_grad():
        ours = activation_patching(model, clean, corrupted, metric, family, layers=layers).scores
        _, cache = model.run_with_cache(clean)
        ref = tlp.generic_activation_patch(
            model, corrupted, cache, metric, patch_setter=setter, activation_name=act_name, index_df=index
        )
    # float32 model: batched and one-at-a-time forwards round differently in the last bits.
    torch.testing.assert_close(ours.reshape(-1).float(), ref, rtol=1e-5, atol=1e-5)


def test_bad_inputs_have_clear_errors(small_random):
    clean, corrupted, metric = pair_tokens(small_random.cfg.d_vocab, 2, 5)
    with pytest.raises(ValueError, match="differ in shape"):
        activation_patching(small_random, clean, corrupted[:, :4], metric)
    with pytest.raises(ValueError, match="scalar"):
        activation_patching(small_random, clean, corrupted, lambda logits: logits[:, -1, 0])
    with pytest.raises(ValueError, match="unknown component family"):
        activation_patching(small_random, clean, corrupted, metric, "heads_everywhere")
    with pytest.raises(ValueError, match="does not exist"):
        activation_patching(small_random, clean, corrupted, metric, "head", layers=[7])
