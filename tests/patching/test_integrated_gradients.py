"""Integrated gradients converge to the exact effect of patching along a straight path."""

from __future__ import annotations

import torch

from circuitkit.patching.activation import activation_patching
from circuitkit.patching.integrated_gradients import integrated_gradients

from .toy import pair_tokens, random_model


def test_converges_to_exact_effect(small_random):
    """Completeness: the scores of one hook's components add up to patching the whole hook."""
    clean, corrupted, metric = pair_tokens(small_random.cfg.d_vocab, 3, 6, seed=2)
    exact = activation_patching(small_random, clean, corrupted, metric, "mlp_out_all").effects()
    errors = []
    for steps in (1, 4, 32):
        ig = integrated_gradients(small_random, clean, corrupted, metric, ["mlp_out"], steps=steps)
        errors.append((ig.grids["mlp_out"].sum(-1) - exact).abs().max().item())
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 1e-3 * exact.abs().max().item()


def test_exact_in_one_step_when_the_metric_is_linear():
    model = random_model(n_layers=1, attn_only=True, normalization_type=None, d_vocab=40)
    clean, corrupted, metric = pair_tokens(model.cfg.d_vocab, 2, 6, seed=1)
    exact = activation_patching(model, clean, corrupted, metric, "head_pos").effects()
    ig = integrated_gradients(model, clean, corrupted, metric, ["head_pos"], steps=1, direction="denoising")
    torch.testing.assert_close(ig.grids["head_pos"], exact, rtol=1e-8, atol=1e-10)
    assert ig.options["steps"] == 1
