"""Faithfulness: exactly 1 for the full model and 0 for the empty circuit; curves; completeness."""

from __future__ import annotations

import pytest
import torch
from patching.toy import pair_tokens, random_model

from circuitkit.evaluation import circuit_metric, faithfulness, faithfulness_curve


@pytest.fixture(scope="module")
def setup():
    model = random_model(n_layers=2, n_heads=4, d_vocab=40, seed=1)
    clean, corrupted, metric = pair_tokens(40, 4, 6, seed=5)
    return model, clean, corrupted, metric


@pytest.mark.parametrize("ablation", ["mean", "zero", "patch"])
def test_full_is_one_and_empty_is_zero(setup, ablation):
    model, clean, corrupted, metric = setup
    ones, zeros = torch.ones(2, 4, dtype=torch.bool), torch.zeros(2, 4, dtype=torch.bool)
    full = faithfulness(model, clean, metric, ones, reference_tokens=corrupted, ablation=ablation)
    empty = faithfulness(
        model,
        clean,
        metric,
        zeros,
        torch.zeros(2, dtype=torch.bool),
        reference_tokens=corrupted,
        ablation=ablation,
    )
    assert full.faithfulness == 1.0 and empty.faithfulness == 0.0
    assert full.metric_full == pytest.approx(float(metric(model(clean))), abs=0)
    # completeness of the full circuit = faithfulness of the empty one
    assert (
        faithfulness(
            model, clean, metric, ones, reference_tokens=corrupted, ablation=ablation, complement=True
        ).faithfulness
        == 0.0
    )


def test_partial_circuit_uses_the_stated_ablation(setup):
    model, clean, corrupted, metric = setup
    heads = torch.zeros(2, 4, dtype=torch.bool)
    heads[1, 2] = True
    m = circuit_metric(model, clean, metric, heads, reference_tokens=corrupted, ablation="mean")
    # by hand: overwrite every other head's z with its mean over the corrupted prompts
    _, cache = model.run_with_cache(corrupted)

    def hook(z, hook):
        layer = int(hook.name.split(".")[1])
        keep = heads[layer]
        mean = cache[hook.name].mean(0, keepdim=True).expand_as(z)
        return torch.where(keep[None, None, :, None], z, mean)

    hooks = [(f"blocks.{layer}.attn.hook_z", hook) for layer in range(2)]
    assert m == pytest.approx(float(metric(model.run_with_hooks(clean, fwd_hooks=hooks))), rel=1e-12)


def test_curve_ends(setup):
    model, clean, corrupted, metric = setup
    scores = torch.randn(2, 4)
    curve = faithfulness_curve(
        model, clean, metric, scores, [0, 3, 8], reference_tokens=corrupted, keep_mlps=False
    )
    assert [k for k, _ in curve] == [0, 3, 8]
    assert curve[0][1] == 0.0
    with pytest.raises(ValueError, match="head scores must be"):
        faithfulness_curve(model, clean, metric, torch.zeros(3, 4))
