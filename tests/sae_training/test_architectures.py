"""Each architecture's defining property, with numbers, on synthetic inputs (no model needed)."""

from __future__ import annotations

import math

import pytest
import torch

from sae_training.architectures import ARCHITECTURES, StepInput
from sae_training.architectures.base import geometric_median
from sae_training.architectures.choice import FeatureChoiceTrainer, zipf_targets
from sae_training.architectures.gsae import gradient_scores
from sae_training.architectures.matryoshka import prefix_widths


def make(name: str, d_in: int = 16, d_sae: int = 64, k: int = 4, **kw):
    trainer, config = ARCHITECTURES[name]
    if "transcoder" in name:
        kw.setdefault("d_out", 12)
    return trainer(config(d_in=d_in, d_sae=d_sae, k=k, **kw))


def test_topk_exactly_k_active_per_token():
    sae = make("topk")
    with torch.no_grad():
        sae.b_enc.fill_(10.0)  # every pre-activation positive, so ReLU keeps all k
    x = torch.randn(200, 16)
    code, _, _ = sae.sparse_encode(x)
    counts = torch.bincount(code.rows, minlength=200)
    assert torch.equal(counts, torch.full((200,), 4))
    assert (code.acts > 0).all()
    # ... and they are the k largest pre-activations of each token.
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    kth = pre.topk(4, dim=-1).values[:, -1]
    assert (code.to_dense(64).detach().gt(0).sum(-1) == 4).all()
    assert torch.all(code.acts.reshape(200, 4).detach().min(-1).values >= kth - 1e-5)


def test_abstopk_keeps_negative_activations_with_their_sign():
    sae = make("abstopk")
    x = torch.randn(300, 16)
    code, _, pre = sae.sparse_encode(x)
    acts = code.acts.detach()
    assert (acts < 0).sum() > 50, "a signed top-k on random weights selects many negative pre-activations"
    assert torch.allclose(acts, pre[code.rows, code.cols])  # kept as is: no ReLU
    # Selected by magnitude: every kept |value| >= every dropped |value| of the same token.
    dense = code.to_dense(64).detach()
    kept_min = torch.where(dense != 0, dense.abs(), torch.inf).min(-1).values
    dropped_max = torch.where(dense == 0, pre.abs(), -torch.inf).max(-1).values
    assert (kept_min >= dropped_max).all()


def test_mutual_choice_total_budget_fixed_per_token_counts_vary():
    sae = make("mutual_choice", k=4)
    x = torch.randn(128, 16) * torch.linspace(0.1, 3, 128)[:, None]  # tokens of very different norms
    code, _, pre = sae.sparse_encode(x)
    assert code.cols.numel() == 4 * 128
    # The selection is the global top-(k*B): every chosen pre-activation beats every one left out.
    chosen = torch.zeros_like(pre, dtype=torch.bool)
    chosen[code.rows, code.cols] = True
    assert pre[chosen].min() >= pre[~chosen].max()
    counts = torch.bincount(code.rows, minlength=128)
    assert counts.float().std() > 1.0
    assert counts.min() < 4 < counts.max()


def test_feature_choice_at_most_m_tokens_per_latent():
    sae: FeatureChoiceTrainer = make("feature_choice", k=4)
    x = torch.randn(100, 16)
    code, _, _ = sae.sparse_encode(x)
    m = sae.capacity(100)
    assert m == math.ceil(4 * 100 / 64)
    per_latent = torch.bincount(code.cols, minlength=64)
    assert per_latent.max() <= m
    assert torch.bincount(code.rows, minlength=100).float().std() > 0  # tokens get variable counts


def test_zipf_targets_sum_to_k_capped_at_one():
    t = zipf_targets(64, 16, 1.0, torch.device("cpu"))  # uncapped, rank 1 would want density 3.4
    assert math.isclose(float(t.sum()), 16.0, rel_tol=1e-5)
    assert (t <= 1).all() and (t[:-1] >= t[1:]).all() and t[0] == 1.0
    uncapped = t[t < 1]
    ranks = torch.arange(1, 65)[t < 1].float()
    torch.testing.assert_close(uncapped * ranks, torch.full_like(uncapped, float(uncapped[0] * ranks[0])))


def test_aux_zipf_ties_flag_no_latent_when_usage_is_uniform():
    """Feature Choice gives every latent the same usage: nobody is under-used (an argsort over ties would
    flag an arbitrary tail of them, the same ones every step)."""
    sae = make("feature_choice", k=4)
    sae.density.fill_(4 / 64)
    assert not sae.under_used().any()
    sae.density.mul_(1 + 1e-6 * torch.randn(64))  # float noise of a running average: still nobody
    assert not sae.under_used().any()
    # Three latents below the rest: exactly those are flagged.
    sae.density[[5, 17, 40]] = 0.01
    assert sae.under_used().nonzero().squeeze(1).tolist() == [5, 17, 40]


def test_aux_zipf_never_flags_the_densest_latents():
    """Targets capped at 1 mean "as dense as possible"; a latent there is not under-used."""
    sae = make("mutual_choice", k=16)
    law = zipf_targets(64, 16, 1.0, torch.device("cpu"))
    density = law * 0.999  # the densest two sit at 0.999 (< their capped target 1)
    density[50:] = 0.0  # the tail never fires
    sae.density.copy_(density[torch.randperm(64)])
    under = sae.under_used()
    assert not under[sae.density > 0.5].any()
    assert under[sae.density == 0].all()


@pytest.mark.parametrize("name", ["topk", "mutual_choice", "abstopk"])
def test_aux_candidates_exclude_the_main_code(name):
    """A latent in every token's main code must get no gradient from the auxiliary loss."""
    sae = make(name, k=4)
    with torch.no_grad():
        sae.b_enc[7] = 50.0  # latent 7 is selected for every token
    x = torch.randn(64, 16)
    code, _, pre = sae.sparse_encode(x)
    assert (code.cols == 7).sum() == 64
    out = sae.reconstruct(code, x)
    aux = sae.aux_reconstruction_loss(torch.ones(64, dtype=torch.bool), pre, x, out, x, code)
    (g,) = torch.autograd.grad(aux, sae.b_enc)
    assert g[7] == 0 and (g != 0).sum() > 4


def test_auxk_is_normalised_as_in_gao_et_al_code():
    """aux = alpha * Var(target) * ||e_hat - e||^2 / ||e - mean(e)||^2: its ratio to the main loss is
    alpha * NMSE_aux / FVU (the authors' normalized_mse), not the unnormalised alpha * ||e_hat - e||^2."""
    sae = make("topk", k=4, aux_k=8)
    x = torch.randn(128, 16) * 3
    dead = torch.zeros(64, dtype=torch.bool)
    dead[32:] = True
    out = sae.sparse_training_step(StepInput(x, dead_neuron_mask=dead))
    aux = out.losses["auxiliary_reconstruction_loss"]
    # Oracle: dense recomputation of the AuxK reconstruction from the top-8 dead latents per token.
    with torch.no_grad():
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
        in_main = out.code.to_dense(64) != 0
        scores = torch.where(dead & ~in_main, pre, -torch.inf)
        idx = scores.topk(8, dim=-1).indices
        acts = torch.zeros_like(pre).scatter(-1, idx, pre.gather(-1, idx).relu())
        e = x - out.sae_out
        e_hat = acts @ sae.W_dec
        nmse = (e_hat - e).pow(2).sum() / (e - e.mean(0)).pow(2).sum()
        var_x = (x - x.mean(0)).pow(2).sum(-1).mean()
        fvu = out.losses["mse_loss"] / var_x
    torch.testing.assert_close(aux.detach(), (1 / 32) * var_x * nmse, rtol=1e-4, atol=0)
    torch.testing.assert_close(
        aux.detach() / out.losses["mse_loss"].detach(), (1 / 32) * nmse / fvu, rtol=1e-4, atol=0
    )


def test_matryoshka_loss_includes_every_prefix_and_sums_them():
    sae = make("matryoshka", d_sae=64)
    x = torch.randn(50, 16)
    out = sae.sparse_training_step(StepInput(x))
    prefixes = [k for k in out.losses if k.startswith("mse_loss_prefix_")]
    assert [int(k.rsplit("_", 1)[1]) for k in prefixes] == [4, 8, 16, 32]
    aux = out.losses["auxiliary_reconstruction_loss"]
    reconstruction = [out.losses[k] for k in [*prefixes, "mse_loss"]]
    # Mean of the prefix losses, as in Bussmann et al.'s code, so AuxK keeps its weight; "sum" is the old way.
    assert torch.allclose(out.loss, sum(reconstruction) / 5 + aux)
    summed = make("matryoshka", d_sae=64, prefix_loss="sum")
    summed.load_state_dict(sae.state_dict())
    out_sum = summed.sparse_training_step(StepInput(x))
    assert torch.allclose(out_sum.loss, sum(out_sum.losses.values()))
    assert torch.allclose(out_sum.loss - aux, 5 * (out.loss - aux))
    # Narrower prefixes reconstruct no better than the full code here (untrained, random directions).
    assert out.losses["mse_loss_prefix_4"] > 0 and out.losses["mse_loss"] > 0
    sampled = make("matryoshka", d_sae=64, n_sampled_prefixes=3)
    w1, w2 = prefix_widths(sampled.cfg, 1), prefix_widths(sampled.cfg, 2)
    assert w1[-1] == w2[-1] == 64 and w1 != w2  # sampled per batch, always ending with the full width


def test_gsae_selection_follows_gradient_values_do_not():
    sae = make("gsae", beta=5.0)
    with torch.no_grad():
        sae.b_enc.fill_(1.0)
    x = torch.randn(40, 16)
    g1, g2 = torch.randn(40, 16), torch.randn(40, 16)
    c1, _, pre = sae.sparse_encode(x, StepInput(x, grad=g1))
    c2, _, _ = sae.sparse_encode(x, StepInput(x, grad=g2))
    s1 = set(zip(c1.rows.tolist(), c1.cols.tolist(), strict=True))
    s2 = set(zip(c2.rows.tolist(), c2.cols.tolist(), strict=True))
    assert len(s1 ^ s2) > 20, "different gradients must select different latents"
    # Values are the ordinary activations ReLU(pre) whichever gradient chose them.
    for c in (c1, c2):
        assert torch.allclose(c.acts.detach(), pre[c.rows, c.cols].relu())
    # Same gradient scaled: the score normalises the gradient, so selection is unchanged.
    c3, _, _ = sae.sparse_encode(x, StepInput(x, grad=g1 * 1000))
    assert torch.equal(c3.cols, c1.cols)
    # Zero gradient reduces to plain TopK.
    scores = gradient_scores(pre, torch.zeros_like(g1), sae.W_dec, 5.0)
    assert torch.allclose(scores, pre.relu())


def test_transcoder_reads_input_width_writes_output_width():
    sae = make("skip_transcoder", d_in=16, d_out=12)
    x, y = torch.randn(30, 16), torch.randn(30, 12)
    out = sae.sparse_training_step(StepInput(x, target=y))
    assert out.sae_out.shape == (30, 12)
    assert torch.allclose(out.losses["mse_loss"], (out.sae_out - y).pow(2).sum(-1).mean())
    with torch.no_grad():
        sae.W_skip.copy_(torch.randn(12, 16))
    out2 = sae.sparse_training_step(StepInput(x, target=y))
    assert torch.allclose(out2.sae_out - out.sae_out.detach(), x @ sae.W_skip.T, atol=1e-5)


def test_auxk_reaches_only_dead_latents():
    sae = make("topk")
    x = torch.randn(64, 16)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[40:] = True
    out = sae.sparse_training_step(StepInput(x, dead_neuron_mask=dead))
    aux = out.losses["auxiliary_reconstruction_loss"]
    assert aux > 0
    (g,) = torch.autograd.grad(aux, sae.b_enc)
    assert (g[:40] == 0).all() and (g[40:] != 0).any()


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_decoder_rows_stay_unit_norm_after_a_step(name):
    sae = make(name)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    x = torch.randn(64, 16)
    y = torch.randn(64, 12) if "transcoder" in name else None
    out = sae.sparse_training_step(StepInput(x, target=y, grad=torch.randn(64, 16)))
    out.loss.backward()
    sae.remove_parallel_decoder_grad()
    parallel = (sae.W_dec.grad * sae.W_dec).sum(-1)
    assert parallel.abs().max() < 1e-5
    # After Adam (whose per-element scaling undoes the projection's exactness) rows drift off unit norm;
    # normalize_decoder brings every row back to norm 1 without turning it.
    opt.step()
    before = sae.W_dec.detach().clone()
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(64, 1) * 10 + 0.1)  # and from arbitrary norms too
    sae.normalize_decoder()
    assert torch.allclose(sae.W_dec.norm(dim=-1), torch.ones(64), atol=1e-5)
    cosine = torch.nn.functional.cosine_similarity(sae.W_dec.detach(), before, dim=-1)
    assert torch.allclose(cosine, torch.ones(64), atol=1e-5)


def test_attention_head_attribution_through_W_O():
    from sae_training.architectures.attention import head_attribution

    n_heads, d_head, d_model = 4, 3, 8
    W_O = torch.randn(n_heads, d_head, d_model)
    W_dec = torch.zeros(3, n_heads * d_head)
    W_dec[0, 2 * d_head : 3 * d_head] = torch.randn(d_head)  # latent 0 writes only through head 2
    W_dec[1, :d_head] = 1.0  # latent 1 through heads 0 and 3, with write norms in a known ratio
    W_dec[1, 3 * d_head :] = 1.0
    W_dec[2] = torch.randn(n_heads * d_head)
    attr = head_attribution(W_dec, W_O)
    assert torch.allclose(attr.sum(-1), torch.ones(3))
    assert torch.allclose(attr[0], torch.tensor([0.0, 0.0, 1.0, 0.0]))
    p0 = (torch.ones(d_head) @ W_O[0]).pow(2).sum()
    p3 = (torch.ones(d_head) @ W_O[3]).pow(2).sum()
    assert torch.allclose(attr[1], torch.stack([p0, 0 * p0, 0 * p0, p3]) / (p0 + p3))
    with pytest.raises(ValueError, match="not trained on this layer's hook_z"):
        head_attribution(torch.zeros(2, 5), W_O)


@pytest.mark.parametrize("name", ["topk", "abstopk", "matryoshka", "mutual_choice"])
def test_fit_encoder_scale_is_least_squares_and_keeps_the_selection(name):
    sae = make(name, d_in=32, d_sae=256, k=8)
    x = torch.randn(500, 32) * 3 + 1
    sae.init_biases(x, x, "mean")
    before, xc, _ = sae.sparse_encode(x)
    s = sae.fit_encoder_scale(x)
    after, _, _ = sae.sparse_encode(x)
    # Same latents, activations scaled by s (b_enc is zero at init, selection is scale-free).
    assert 0 < s < 1
    assert torch.equal(before.rows, after.rows) and torch.equal(before.cols, after.cols)
    torch.testing.assert_close(after.acts, s * before.acts, rtol=1e-4, atol=1e-5)
    # Least squares: the residual is orthogonal to the dictionary part, and no other scale does better.
    part = (after.to_dense(256) @ sae.W_dec).detach()
    assert abs(float((part * (xc - part)).sum())) < 1e-3 * float(part.pow(2).sum())
    err = lambda c: float((c * part - xc).pow(2).sum())  # noqa: E731
    assert err(1.0) < min(err(0.95), err(1.05), err(1 / s))


def test_fit_encoder_scale_skips_untied_and_opt_out():
    x = torch.randn(100, 16)
    tc = make("transcoder")
    w = tc.W_enc.detach().clone()
    assert tc.fit_encoder_scale(x) == 1.0 and torch.equal(tc.W_enc, w)
    off = make("topk", fit_encoder_scale=False)
    w = off.W_enc.detach().clone()
    assert off.fit_encoder_scale(x) == 1.0 and torch.equal(off.W_enc, w)


@pytest.mark.parametrize("method", ["mean", "geometric_median"])
def test_transcoder_encoder_sees_centred_inputs_at_init(method):
    """center_input (default): b_enc = -c W_enc for the inputs' centre c, as Dunefsky et al.'s input-side
    b_dec; without it, inputs far from the origin push whole latents above or below every other."""
    x = torch.randn(400, 16) + 4 * torch.randn(16)  # a large shared offset, as LayerNorm outputs have
    target = torch.randn(400, 12)
    on, off = make("transcoder"), make("transcoder", center_input=False)
    off.load_state_dict(on.state_dict())
    on.init_biases(x, target, method)
    off.init_biases(x, target, method)
    center = x.mean(0) if method == "mean" else geometric_median(x)
    torch.testing.assert_close(on.b_enc, -(center @ on.W_enc))
    assert torch.equal(off.b_enc, torch.zeros(64))
    torch.testing.assert_close(on.b_dec, off.b_dec)  # the output bias is the target's either way
    if method == "mean":
        pre = x @ on.W_enc + on.b_enc
        assert pre.mean(0).abs().max() < 1e-4
    # More latents get selected somewhere in the batch when the inputs are centred.
    used_on = on.sparse_encode(x)[0].cols.unique().numel()
    used_off = off.sparse_encode(x)[0].cols.unique().numel()
    assert used_on > used_off


@pytest.mark.parametrize("name", ["topk", "transcoder"])
def test_resampling_reinitialises_only_the_dead_latents_and_their_adam_state(name):
    sae = make(name)
    x = torch.randn(256, 16) + 3.0
    target = x if name == "topk" else torch.randn(256, 12)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3)
    sae.sparse_training_step(StepInput(x, target=None if name == "topk" else target)).loss.backward()
    opt.step()
    before = {k: v.clone() for k, v in sae.state_dict().items()}
    dead = torch.zeros(64, dtype=torch.bool)
    dead[[3, 17, 40]] = True
    n = sae.resample_dead(dead, x, target, opt, torch.Generator().manual_seed(0))
    assert n == 3
    changed_dec = (sae.W_dec != before["W_dec"]).any(-1)
    changed_enc = (sae.W_enc != before["W_enc"]).any(0)
    assert torch.equal(changed_dec, dead) and torch.equal(changed_enc, dead)
    torch.testing.assert_close(sae.W_dec[dead].norm(dim=-1), torch.ones(3))
    # Encoder columns at the live columns' mean norm; each new latent is centred on the batch.
    live_norm = before["W_enc"][:, ~dead].norm(dim=0).mean()
    torch.testing.assert_close(sae.W_enc[:, dead].norm(dim=0), live_norm.expand(3))
    x_centered = x - sae.b_pre()
    pre = x_centered @ sae.W_enc[:, dead] + sae.b_enc[dead]
    torch.testing.assert_close(pre.mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    moments = {
        "W_dec": opt.state[sae.W_dec]["exp_avg"],
        "W_enc": opt.state[sae.W_enc]["exp_avg"].T,  # one row per latent, like the others
        "b_enc": opt.state[sae.b_enc]["exp_avg"],
    }
    for key, moment in moments.items():
        assert torch.all(moment[dead] == 0) and torch.any(moment[~dead] != 0), key
    # Nothing dead (or everything dead): nothing to do.
    assert sae.resample_dead(torch.zeros(64, dtype=torch.bool), x, target, opt, torch.Generator()) == 0
