"""Splicing keeps the forward pass exact, and dictionaries that do not fit are refused clearly."""

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig, Transcoder, TranscoderConfig
from sae_lens.saes.sae import SAEMetadata

from circuitkit.features import DictionaryError, place, run_spliced


def test_splicing_with_error_nodes_leaves_logits_unchanged(tiny, ioi, dictionaries):
    with torch.no_grad():
        plain = tiny(ioi.clean_tokens)
        spliced, rec = run_spliced(tiny, ioi.clean_tokens, place(tiny, dictionaries))
    assert torch.equal(plain, spliced)
    # with probes attached (the attribution pass) the forward value is still the model's, bit for bit
    probed, _ = run_spliced(tiny, ioi.clean_tokens, place(tiny, dictionaries), probes=True)
    assert torch.equal(plain, probed.detach())
    for ident, sae in dictionaries.items():
        f, err = rec.latents[ident], rec.errors[ident]
        assert f.shape[-1] == sae.cfg.d_sae
        assert (f > 0).float().mean() < 0.9  # sparse-ish, input-dependent latents
        assert err.abs().max() > 0  # the dictionaries are imperfect: error nodes carry something


def test_intervention_that_changes_nothing_is_exact_and_one_that_does_matters(tiny, ioi, dictionaries):
    dicts = place(tiny, dictionaries)
    with torch.no_grad():
        plain = tiny(ioi.clean_tokens)
        same, _ = run_spliced(tiny, ioi.clean_tokens, dicts, interventions={"sae1": lambda f, e: (f, e)})
        zeroed, _ = run_spliced(
            tiny, ioi.clean_tokens, dicts, interventions={"sae1": lambda f, e: (torch.zeros_like(f), e)}
        )
    assert torch.equal(plain, same)
    assert not torch.allclose(plain, zeroed, atol=1e-3)


def test_forward_order_and_transcoder_hooks(tiny, dictionaries):
    dicts = place(tiny, dictionaries)
    assert [d.id for d in dicts] == ["sae1", "z1", "tc1", "sae2", "tc2"]
    tc1 = dicts[2]
    assert tc1.is_transcoder and tc1.hook_in == "blocks.1.ln2.hook_normalized"
    assert tc1.hook_out == "blocks.1.hook_mlp_out"


def test_bad_d_in_gives_a_clear_error(tiny):
    cfg = StandardSAEConfig(d_in=64, d_sae=32, metadata=SAEMetadata(hook_name="blocks.1.hook_resid_pre"))
    with pytest.raises(DictionaryError, match=r"d_in=64.*width 96"):
        place(tiny, [StandardSAE(cfg)])


def test_bad_transcoder_output_width_missing_and_unknown_hooks(tiny):
    d = tiny.cfg.d_model
    tc = Transcoder(
        TranscoderConfig(
            d_in=d,
            d_sae=8,
            d_out=d + 1,
            apply_b_dec_to_input=False,
            metadata=SAEMetadata(
                hook_name="blocks.0.ln2.hook_normalized", hook_name_out="blocks.0.hook_mlp_out"
            ),
        )
    )
    with pytest.raises(DictionaryError, match="decodes to width 97"):
        place(tiny, [tc])
    with pytest.raises(DictionaryError, match=r"no cfg\.metadata\.hook_name"):
        place(tiny, [StandardSAE(StandardSAEConfig(d_in=d, d_sae=8))])
    bad = StandardSAEConfig(d_in=d, d_sae=8, metadata=SAEMetadata(hook_name="blocks.9.hook_resid_pre"))
    with pytest.raises(DictionaryError, match="does not exist"):
        place(tiny, [StandardSAE(bad)])
    twice = StandardSAEConfig(d_in=d, d_sae=8, metadata=SAEMetadata(hook_name="blocks.0.hook_resid_pre"))
    with pytest.raises(DictionaryError, match="same hook"):
        place(tiny, [StandardSAE(twice), StandardSAE(twice)])
