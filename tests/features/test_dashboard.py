import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig

from circuitkit.features import dashboard

HOOK = "blocks.1.hook_resid_post"


def _sae(d_in: int, d_sae: int = 24, hook: str = HOOK) -> StandardSAE:
    cfg = StandardSAEConfig(d_in=d_in, d_sae=d_sae)
    cfg.metadata.hook_name = hook
    torch.manual_seed(0)
    sae = StandardSAE(cfg)
    with torch.no_grad():  # a positive encoder bias so most latents fire somewhere
        sae.b_enc.fill_(0.05)
    return sae


@pytest.fixture(scope="module")
def setup(tiny_model):
    sae = _sae(tiny_model.cfg.d_model)
    tokens = dashboard.corpus_tokens(tiny_model, n_seqs=12, seq_len=16, seed=0)
    acts = dashboard.encode_tokens(tiny_model, sae, tokens, batch_size=5)
    return tiny_model, sae, tokens, acts


def test_encoded_activations_match_the_hooked_activation(setup):
    model, sae, tokens, acts = setup
    assert tokens.shape == (12, 16) and (tokens[:, 0] == model.tokenizer.bos_token_id).all()
    _, cache = model.run_with_cache(tokens, names_filter=HOOK)
    torch.testing.assert_close(acts, sae.encode(cache[HOOK]).detach())


def test_latent_summary_takes_the_strongest_contexts(setup):
    model, _, tokens, acts = setup
    density = dashboard.firing_densities(acts)
    latent = int(density.argmax())
    s = dashboard.summarize_latent(model, acts, tokens, latent, k=3)
    peaks = [max(a) for _, a in s.examples]
    assert peaks == sorted(peaks, reverse=True)
    assert peaks[0] == pytest.approx(float(acts[:, 1:, latent].max()))
    assert all(len(t) == len(a) for t, a in s.examples)
    assert s.density == pytest.approx(float(density[latent]))
    assert torch.equal(s.firing, acts[:, 1:, latent][acts[:, 1:, latent] > 0])
    with pytest.raises(ValueError, match="out of range"):
        dashboard.summarize_latent(model, acts, tokens, 10_000)


def test_logit_effects_are_decoder_times_unembedding(setup):
    model, sae, _, _ = setup
    pos, neg = dashboard.logit_effects(model, sae, 3, k=4)
    effect = sae.W_dec[3].detach() @ model.W_U.detach()
    assert [v for _, v in pos] == pytest.approx(effect.topk(4).values.tolist(), abs=1e-5)
    assert [v for _, v in neg] == pytest.approx((-(-effect).topk(4).values).tolist(), abs=1e-5)


def test_latents_for_token_ranks_by_mean_activation(setup):
    _, _, tokens, acts = setup
    tok = int(tokens[0, 3])
    df = dashboard.latents_for_token(acts, tokens, tok, k=5)
    hit = tokens == tok
    hit[:, 0] = False
    assert df["latent"].tolist() == acts[hit].mean(0).topk(5).indices.tolist()
    with pytest.raises(ValueError, match="does not occur"):
        dashboard.latents_for_token(acts, tokens, -1)


def test_ablation_removes_exactly_the_latents_contribution_and_leaves_no_hooks(setup):
    model, sae, tokens, _ = setup
    batch = tokens[:2]
    latent = 5

    def manual(act, hook):
        return act - sae.encode(act)[..., latent : latent + 1] * sae.W_dec[latent]

    with torch.no_grad():
        expected = model.run_with_hooks(batch, fwd_hooks=[(HOOK, manual)])
        clean = model(batch)
    got = dashboard.intervene(model, sae, batch, latent, mode="ablate")
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(dashboard.intervene(model, sae, batch, latent, mode="steer", value=0.0), clean)
    # The latent fires on this batch, so removing it must change the logits.
    _, cache = model.run_with_cache(batch, names_filter=HOOK)
    assert float(sae.encode(cache[HOOK])[..., latent].abs().sum()) > 0
    assert float((got - clean).abs().max()) > 0
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())


def test_mismatched_dictionary_width_gets_a_clear_error(setup):
    model, _, tokens, _ = setup
    with pytest.raises(ValueError, match="d_in=7"):
        dashboard.encode_tokens(model, _sae(7), tokens[:2])


def test_prediction_change_reports_both_distributions(setup):
    model, _, _, _ = setup
    before, after = torch.zeros(model.cfg.d_vocab), torch.zeros(model.cfg.d_vocab)
    after[7] = 5.0
    df = dashboard.prediction_change(model, before, after, k=3)
    assert df.loc[0, "token"] == model.tokenizer.decode([7])
    p = torch.softmax(after, -1)
    assert df.loc[0, "after"] == pytest.approx(float(p[7]))
    assert df.loc[0, "before"] == pytest.approx(1 / model.cfg.d_vocab)
    assert (df["change"] == df["after"] - df["before"]).all()


def test_per_head_hook_z_dictionary_reads_and_ablates_only_its_head(setup):
    model, _, tokens, _ = setup
    hook = "blocks.0.attn.hook_z"
    sae = _sae(model.cfg.d_head, hook=hook)
    sae.cfg.metadata.hook_head_index = 1
    batch = tokens[:2]
    _, cache = model.run_with_cache(batch, names_filter=hook)
    torch.testing.assert_close(
        dashboard.encode_tokens(model, sae, batch), sae.encode(cache[hook][:, :, 1]).detach()
    )

    def manual(act, hook):
        out = act.clone()
        z = sae.encode(act[:, :, 1])[..., 2:3]
        out[:, :, 1] = act[:, :, 1] - z * sae.W_dec[2]
        return out

    with torch.no_grad():
        expected = model.run_with_hooks(batch, fwd_hooks=[(hook, manual)])
    torch.testing.assert_close(dashboard.intervene(model, sae, batch, 2, mode="ablate"), expected)


def test_native_hook_z_dictionary_gets_all_heads_unflattened(setup):
    """sae-lens hook_z dictionaries (the shipped attention SAEs) flatten the heads themselves."""
    model, _, tokens, _ = setup
    hook = "blocks.1.attn.hook_z"
    cfg = StandardSAEConfig(d_in=model.cfg.n_heads * model.cfg.d_head, d_sae=24, reshape_activations="hook_z")
    cfg.metadata.hook_name = hook
    torch.manual_seed(1)
    sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.b_enc.fill_(0.05)
    batch = tokens[:3]
    _, cache = model.run_with_cache(batch, names_filter=hook)
    want = torch.relu((cache[hook].flatten(-2) - sae.b_dec) @ sae.W_enc + sae.b_enc).detach()
    acts = dashboard.encode_tokens(model, sae, batch)
    torch.testing.assert_close(acts, want)
    latent = int(acts.sum((0, 1)).argmax())
    out = dashboard.intervene(model, sae, batch, latent, mode="ablate")
    assert out.shape == (3, batch.shape[1], model.cfg.d_vocab)
