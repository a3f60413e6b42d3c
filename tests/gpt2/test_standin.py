"""GPT-2 by name, offline, through the stand-in: both tasks in every split, the published ground truths,
and ``circuitkit discover`` / ``evaluate`` for every registered method."""

from __future__ import annotations

import pytest
import torch

from circuitkit.cli import main
from circuitkit.models import load_model
from circuitkit.results import list_results, load, load_frame
from circuitkit.tasks import make_task
from circuitkit.tasks.ground_truth import ground_truth
from tests.gpt2.conftest import RELEASE_SPEC

SPLITS = {"ioi": ("train", "heldout", "heldout_names"), "greater_than": ("train", "heldout")}


def test_loads_by_name_with_gpt2s_tokenizer(gpt2_home, use_hf_home):
    use_hf_home(gpt2_home)
    model = load_model("gpt2", device="cpu")
    assert model.cfg.model_name == "gpt2" and model.cfg.d_vocab == 50257 and model.cfg.n_ctx == 1024
    assert model.to_tokens("Hello world")[0].tolist() == [50256, 15496, 995]
    for task, splits in SPLITS.items():
        for split in splits:
            d = make_task(task, model.tokenizer, 6, seed=1, split=split)
            with torch.no_grad():
                m = d.per_prompt_metric(model(d.clean_tokens))
            assert m.shape == (6,) and torch.isfinite(m).all()
    ioi, gt = ground_truth(model, "ioi"), ground_truth(model, "greater_than")
    assert "Wang" in ioi.source and ioi.heads[(9, 9)] == "name mover" and len(ioi.heads) == 26
    assert "Hanna" in gt.source and (9, 1) in gt.heads and gt.mlps == (0, 1, 2, 3, 8, 9, 10, 11)


METHODS = [
    ("activation", []),
    ("atp", []),
    ("atp*", ["grad_drop=true"]),
    ("relp", ["rules=ln+identity"]),
    ("ig", ["steps=2"]),
    ("heads", ["steps=20"]),
    ("eap", []),
    ("eap-ig", ["steps=2"]),
    ("edge-patching", []),
    ("features", [f"dictionaries={RELEASE_SPEC}"]),
]
NODE_METHODS = ("activation", "atp", "atp*", "relp", "ig")


def test_discover_every_method_by_name(gpt2_home, use_hf_home, tmp_path):
    from circuitkit.methods import available

    assert {m for m, _ in METHODS} >= set(available()), "a registered method is not exercised here"
    use_hf_home(gpt2_home)
    for i, (method, options) in enumerate(METHODS):
        task = ("ioi", "greater_than")[i % 2]
        families = "head" if method == "heads" else "head,mlp_out"
        args = ["discover", "--model", "gpt2", "--task", task, "--method", method, "--families", families]
        args += ["--n-prompts", "2", "--out", str(tmp_path / method), "--quiet"]
        for option in options:
            args += ["--option", option]
        assert main(args) == 0, method
        (stem,) = list_results(tmp_path / method)
        res = load(stem)
        assert res.provenance.task == task and res.provenance.n_prompts == 2
        assert len(res.table) > 0 and res.table["score"].notna().all()
        if method == "features":  # the sae-lens release's latents, by their spec
            assert set(res.table["dictionary"]) == {RELEASE_SPEC}
            assert (res.table["family"] == "latent").sum() == 128
        elif method in ("eap", "eap-ig", "edge-patching"):  # one row per sender -> receiver edge
            assert set(res.table["family"]) == {"edge"} and res.table["receiver"].iloc[-1] == "logits"
        elif method in NODE_METHODS:
            assert res.grid("head").shape == (2, 4)


def test_evaluate_against_the_published_circuit(gpt2_grid_home, use_hf_home, tmp_path):
    """GPT-2 small's head grid: ROC / precision against Wang et al.'s 26 heads (a random model ranks
    them by chance, so only the bookkeeping is checked)."""
    use_hf_home(gpt2_grid_home)
    args = ["evaluate", "--model", "gpt2", "--task", "ioi", "--method", "atp", "--families", "head"]
    assert main([*args, "--n-prompts", "2", "--out", str(tmp_path), "--quiet"]) == 0
    gt, meta = load_frame(tmp_path / "gpt2_ioi_ground_truth")
    assert "Wang" in meta["circuit"]
    assert set(gt["method"]) == {"activation", "atp"} and (gt["n_true"] == 26).all()
    assert gt["roc_auc"].between(0, 1).all()
    corr, _ = load_frame(tmp_path / "gpt2_ioi_correlation")
    assert corr["pearson"].between(-1, 1).all()


def test_release_missing_from_the_cache_fails_at_once(gpt2_home, use_hf_home, monkeypatch):
    from circuitkit import hub
    from circuitkit.dictionaries import DictionaryLoadError, load_dictionary

    use_hf_home(gpt2_home)
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    sae = load_dictionary(RELEASE_SPEC)
    assert sae.cfg.metadata.hook_name == "blocks.0.hook_resid_pre" and sae.cfg.d_in == 64
    with pytest.raises(DictionaryLoadError) as err:
        load_dictionary("gpt2-small-res-jb/blocks.7.hook_resid_pre")
    msg = str(err.value)
    assert "'gpt2-small-res-jb'" in msg and "'jbloom/GPT2-Small-SAEs-Reformatted'" in msg
    assert "blocks.7.hook_resid_pre/sae_weights.safetensors" in msg and "SAE.from_pretrained(" in msg
    assert "HF_HOME" in msg
    with pytest.raises(DictionaryLoadError, match="not a sae-lens release"):
        load_dictionary("no-such-release/blocks.0")
