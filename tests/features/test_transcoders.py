"""Transcoder circuits: input-invariant x input-dependent terms equal the attribution from autograd."""

import pytest
import torch

from circuitkit.features import DictionaryError, transcoder_edges


def test_factorised_terms_equal_autograd_attribution(tiny, ioi, dictionaries):
    up, down = dictionaries["tc1"], dictionaries["tc2"]
    tokens = ioi.clean_tokens
    edges = transcoder_edges(tiny, tokens, up, down)
    assert edges.input_invariant.shape == (up.cfg.d_sae, down.cfg.d_sae)

    # autograd: downstream pre-activations as a function of the residual stream entering ln2 of layer 2,
    # with the LayerNorm scale frozen (as in the paper), read off by a zero tensor added at resid_mid
    store = {}

    def add_probe(act, hook):
        store["probe"] = torch.zeros_like(act, requires_grad=True)
        return act + store["probe"]

    def capture(act, hook):
        store["ln_out"] = act
        return act

    hooks = [
        ("blocks.2.hook_resid_mid", add_probe),
        ("blocks.2.ln2.hook_scale", lambda act, hook: act.detach()),
        ("blocks.2.ln2.hook_normalized", capture),
    ]
    with tiny.hooks(fwd_hooks=hooks):
        tiny(tokens)
    pre = store["ln_out"] @ down.W_enc + down.b_enc
    with torch.no_grad():
        _, cache = tiny.run_with_cache(tokens, names_filter="blocks.1.ln2.hook_normalized")
        f_up = up.encode(cache["blocks.1.ln2.hook_normalized"])
    b, p = 1, tokens.shape[1] - 1
    for j in (0, 3, 17):
        (g,) = torch.autograd.grad(pre[b, p, j], [store["probe"]], retain_graph=True)
        # d pre_j / d f_i along the residual path is W_dec[i] . g; times the activation f_i
        autograd = f_up[b, p] * (up.W_dec @ g[b, p])
        torch.testing.assert_close(edges.attribution(b, p)[:, j], autograd, rtol=1e-4, atol=1e-6)
    # the invariant factor is weights only: the same for other prompts
    other = transcoder_edges(tiny, ioi.corrupted_tokens, up, down)
    assert torch.equal(other.input_invariant, edges.input_invariant)
    total = edges.total()
    manual = sum(edges.attribution(bb, pp) for bb in range(tokens.shape[0]) for pp in range(tokens.shape[1]))
    torch.testing.assert_close(total, manual, rtol=1e-4, atol=1e-5)


def test_decomposition_refuses_wrong_order_and_non_mlp_inputs(tiny, ioi, dictionaries):
    with pytest.raises(DictionaryError, match="does not write before"):
        transcoder_edges(tiny, ioi.clean_tokens, dictionaries["tc2"], dictionaries["tc1"])
    with pytest.raises(DictionaryError, match=r"ln2\.hook_normalized"):
        transcoder_edges(tiny, ioi.clean_tokens, dictionaries["tc1"], dictionaries["sae2"])
