"""Path patching: batched senders equal a one-sender-at-a-time oracle; no path, no effect."""

from __future__ import annotations

import pytest
import torch

from circuitkit.patching.path import path_patching

from .toy import pair_tokens, random_model


@pytest.fixture(scope="module")
def model():
    return random_model(n_layers=3, n_heads=3, d_vocab=40, seed=2)


def _oracle(model, target, source, metric, sender, receivers, inputs):
    """Wang et al.'s three steps for one sender, written plainly."""
    _, tc = model.run_with_cache(target)
    _, sc = model.run_with_cache(source)

    def freeze(z, hook):
        layer = int(hook.name.split(".")[1])
        z = tc[hook.name].clone()
        if layer == sender[0]:
            z[:, :, sender[1]] = sc[hook.name][:, :, sender[1]]
        return z

    rec = {}
    names = [f"blocks.{r[0]}.attn.hook_{x}" for r in receivers for x in inputs]
    hooks = [(f"blocks.{i}.attn.hook_z", freeze) for i in range(model.cfg.n_layers)]
    hooks += [(n, lambda a, hook: rec.__setitem__(hook.name, a.clone())) for n in set(names)]
    model.run_with_hooks(target, fwd_hooks=hooks)

    def put(a, hook):
        layer = int(hook.name.split(".")[1])
        a = a.clone()
        for lay, h in receivers:
            if lay == layer:
                a[:, :, h] = rec[hook.name][:, :, h]
        return a

    return float(metric(model.run_with_hooks(target, fwd_hooks=[(n, put) for n in set(names)])))


@pytest.mark.parametrize("inputs", [("q",), ("k", "v")])
def test_equals_one_at_a_time_oracle(model, inputs):
    clean, corrupted, metric = pair_tokens(40, 3, 6, seed=1)
    receivers = [(2, 0), (2, 2)]
    with torch.no_grad():
        res = path_patching(model, clean, corrupted, metric, receivers, inputs, max_batch=7)
        for layer in range(2):
            for head in range(3):
                want = _oracle(model, corrupted, clean, metric, (layer, head), receivers, inputs)
                assert res.scores[layer, head].item() == pytest.approx(want, rel=1e-10, abs=1e-12)
    assert torch.isnan(res.scores[2]).all()


def test_no_path_no_effect(model):
    """A sender in the receiver's own layer cannot reach its inputs."""
    clean, corrupted, metric = pair_tokens(40, 2, 6, seed=2)
    res = path_patching(model, clean, corrupted, metric, [(1, 0)], senders=[(1, 1), (1, 2), (0, 1)])
    torch.testing.assert_close(res.effects()[1, 1:], torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12)
    assert abs(res.effects()[0, 1].item()) > 1e-6
    with pytest.raises(ValueError, match="outside the model"):
        path_patching(model, clean, corrupted, metric, [(5, 0)])
