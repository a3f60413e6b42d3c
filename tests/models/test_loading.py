"""load_model: built-in names and aliases, local folders, pretrained names offline, clear failures."""

from __future__ import annotations

import os
import time

import pytest
import torch
from transformer_lens import HookedTransformer

from circuitkit.models import ModelLoadError, load_model
from circuitkit.models import loading as loading_mod
from circuitkit.models.train import ZooConfig, gpt2_config, to_hooked
from circuitkit.models.zoo import read_model_dir, write_model_dir


def test_builtin_by_name_and_alias(tiny_model):
    assert isinstance(tiny_model, HookedTransformer)
    assert tiny_model.cfg.model_name == "ck-tiny"
    assert sum(p.numel() for p in tiny_model.parameters()) <= 1_000_000
    again = load_model("ck-tiny", device="cpu")
    tokens = tiny_model.to_tokens("When Mary and John went to the store")
    assert torch.equal(tiny_model(tokens), again(tokens))


def test_tokenizer_roundtrip(tiny_model):
    text = "When Mary and John went to the store, John gave a drink to Mary."
    tokens = tiny_model.to_tokens(text)
    assert tokens[0, 0] == tiny_model.tokenizer.bos_token_id
    assert tiny_model.to_string(tokens[0, 1:]) == text
    strs = tiny_model.to_str_tokens(text)
    assert strs[0] == "<|endoftext|>" and " Mary" in strs and " John" in strs


def test_default_model_shape(default_model):
    cfg = default_model.cfg
    assert cfg.n_layers >= 6 and cfg.d_model >= 256
    assert cfg.act_fn == "gelu" and cfg.normalization_type == "LN"


def test_local_folder_roundtrip(tmp_path, tiny_model):
    out = write_model_dir(tiny_model, tiny_model.tokenizer, {"name": "copy"}, tmp_path / "m")
    m = load_model(str(out), device="cpu")
    tokens = tiny_model.to_tokens("The war lasted from the year 1732 to the year 17")
    assert torch.equal(m(tokens), tiny_model(tokens))


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ModelLoadError, match="not a circuitkit model folder"):
        load_model(str(tmp_path))


def test_unknown_name():
    with pytest.raises(ModelLoadError, match="unknown model 'no-such-model'"):
        load_model("no-such-model")


def test_pretrained_name_offline_fails_at_once(monkeypatch, tmp_path):
    """gpt2 with an empty cache and no network: a clear message, not a hang or a deep stack trace."""
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)
    t0 = time.perf_counter()
    with pytest.raises(ModelLoadError) as err:
        load_model("gpt2")
    assert time.perf_counter() - t0 < 5
    msg = str(err.value)
    assert "repository 'gpt2'" in msg and "config.json" in msg and "weights" in msg
    assert "missing from the local cache" in msg and "HF_HUB_OFFLINE is set" in msg
    assert "HF_HOME" in msg and "built-in" in msg


def test_pretrained_name_with_unreachable_hub(monkeypatch, tmp_path):
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(loading_mod, "_hub_reachable", lambda *a, **k: False)
    with pytest.raises(ModelLoadError, match=r"pythia-70m.*'EleutherAI/pythia-70m'.*cannot be reached"):
        load_model("pythia-70m")


@pytest.fixture(scope="module")
def standin_home(tmp_path_factory):
    """A one-layer GPT-2 stand-in in a Hugging Face cache folder (HF_HOME layout)."""
    from circuitkit.models.standin import build_gpt2_standin

    home = tmp_path_factory.mktemp("hf_home")
    build_gpt2_standin(home, n_layers=1, d_model=32, n_heads=2)
    return home


def test_cached_model_loads_without_the_network(monkeypatch, standin_home):
    """Weights in the cache, hub unreachable: loaded from the cache with no lookup of any host (the hub
    client would otherwise retry every file for minutes before falling back to the cache)."""
    import socket

    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(standin_home / "hub"))
    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    lookups: list[str] = []

    def no_network(host, *args, **kwargs):
        lookups.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    model = load_model("gpt2", device="cpu")
    assert lookups == []
    assert hfc.HF_HUB_OFFLINE is False and "HF_HUB_OFFLINE" not in os.environ  # restored after
    assert (model.cfg.n_layers, model.cfg.d_model, model.cfg.n_ctx, model.cfg.d_vocab) == (1, 32, 1024, 50257)
    assert model.to_str_tokens(" Ella", prepend_bos=False) == [" Ell", "a"]  # GPT-2's own BPE
    assert model.to_tokens("Hello world")[0].tolist() == [50256, 15496, 995]


def test_incomplete_cache_fails_naming_repository_and_files(monkeypatch, standin_home, tmp_path):
    import shutil

    import huggingface_hub.constants as hfc

    home = tmp_path / "home"
    shutil.copytree(standin_home, home)
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(loading_mod, "_hub_reachable", lambda *a, **k: False)
    snap = next((home / "hub" / "models--gpt2" / "snapshots").iterdir())
    (snap / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match=r"repository 'gpt2' has weights .* missing .*HF_HOME"):
        load_model("gpt2")
    # weights there, tokenizer files gone: the offline load fails and says the snapshot is incomplete
    shutil.copy(
        next((standin_home / "hub" / "models--gpt2" / "snapshots").iterdir()) / "model.safetensors", snap
    )
    for name in ("tokenizer.json", "vocab.json", "merges.txt"):
        (snap / name).unlink()
    with pytest.raises(
        ModelLoadError, match=r"'gpt2'.*offline.*tokenizer has 1 tokens.*incomplete.*models--gpt2"
    ):
        load_model("gpt2")


def test_missing_builtin_weights(monkeypatch, tmp_path):
    from circuitkit.models import zoo

    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    with pytest.raises(ModelLoadError, match="zoo train ck-tiny"):
        load_model("tiny")


def test_training_conversion_is_exact():
    """The GPT-2 we train converts to a HookedTransformer computing the same function."""
    from transformers import GPT2LMHeadModel

    cfg = ZooConfig("t", n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=16)
    net = GPT2LMHeadModel(gpt2_config(cfg, 50)).eval()
    model = to_hooked(net, cfg)
    tokens = torch.randint(0, 50, (3, 16))
    with torch.no_grad():
        assert torch.allclose(model(tokens), net(tokens).logits, atol=1e-5)


def test_read_model_dir_keeps_ln_unfolded(tiny_model):
    # RelP's LN rule hooks hook_scale: the built-in models keep their LayerNorms
    assert "blocks.0.ln1.hook_scale" in tiny_model.hook_dict
    assert read_model_dir  # imported for its use above
