"""Saved dictionaries are plain sae-lens: every shipped and freshly trained one loads with
``sae_lens.SAE.load_from_disk`` in a process that never imported sae_training and encodes / decodes exactly
as our training module does; transcoders (no TopK transcoder in sae-lens 6.54) fail there with an error
naming ``import sae_training``. Registry name collisions raise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sae_training.architectures import ARCHITECTURES, RegistryCollision, register_all
from sae_training.store import PRETRAINED_DIR
from tests.sae_training.test_training import cfg_for

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("plain_saelens_worker.py")


def our_module(folder: Path):
    """The dictionary rebuilt as our training module (the oracle), from cfg.json + weights."""
    cfg = json.loads((folder / "cfg.json").read_text())
    md = cfg["metadata"]
    arch = md["circuitkit_architecture"]
    trainer, config = ARCHITECTURES[arch]
    details = md.get("training_architecture_details", {})
    kw = {"d_in": cfg["d_in"], "d_sae": cfg["d_sae"], "k": cfg.get("k", details.get("k", 1))}
    if "transcoder" in arch:
        kw["d_out"] = cfg["d_out"]
    sae = trainer(config(**kw))
    state = load_file(folder / "sae_weights.safetensors")
    missing, unexpected = sae.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"density", "n_updates"}, (missing, unexpected)
    return arch, sae.eval(), state


def expected_outputs(folder: Path, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    arch, sae, state = our_module(folder)
    with torch.no_grad():
        if arch in ("mutual_choice", "feature_choice"):
            # Batch-level selections are saved as per-latent thresholds (JumpReLU); that is the function.
            pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
            acts = pre.relu() * (pre > state["threshold"])
            return acts, acts @ sae.W_dec + sae.b_dec
        code, _, _ = sae.sparse_encode(x)
        return code.to_dense(sae.cfg.d_sae), sae.reconstruct(code, x)


def run_plain(folders: list[Path], out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(out), *map(str, folders)],
        env=env, capture_output=True, text=True, timeout=300, cwd=out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "report.json").read_text())


@pytest.mark.slow
def test_shipped_and_trained_dictionaries_load_in_plain_sae_lens(cache_dir, tiny, tmp_path):
    from sae_training.trainer import train

    shipped = sorted(p for p in (PRETRAINED_DIR / "ck-6l").iterdir() if (p / "cfg.json").is_file())
    assert len(shipped) == 14
    trained = []
    for arch in ARCHITECTURES:
        cfg = cfg_for(arch, cache_dir, tmp_path / arch, total_tokens=512 * 4, log_every=2)
        trained.append(train(cfg, model=tiny).out_dir)
    folders = [*shipped, *trained]
    out = tmp_path / "plain"
    out.mkdir()
    report = run_plain(folders, out)
    assert report.pop("_sae_training_imported") == {"value": "False"}

    from sae_lens import SAE

    n_plain = 0
    for folder in folders:
        entry = report[str(folder)]
        arch = json.loads((folder / "cfg.json").read_text())["metadata"]["circuitkit_architecture"]
        if "transcoder" in arch:
            # No sae-lens class computes a TopK transcoder: plain sae-lens must say what to import.
            assert entry.get("error_type") == "KeyError", entry
            assert "import sae_training" in entry["error"], entry
            sae = SAE.load_from_disk(folder)  # ... and with it imported (this process) it loads
            x = torch.randn(96, sae.cfg.d_in) * 2.0
            with torch.no_grad():
                got = (sae.encode(x), sae(x))  # forward: a skip-transcoder's decode lacks the skip term
        else:
            assert "error" not in entry, (folder.name, entry)
            n_plain += 1
            saved = load_file(out / entry["file"])
            x, got = saved["x"], (saved["acts"], saved["recon"])
            if arch == "gsae":
                assert entry["class"] == "TopKSAE"
        acts, recon = expected_outputs(folder, x)
        assert (acts != 0).any()
        torch.testing.assert_close(got[0], acts, atol=1e-5, rtol=1e-5, msg=f"{folder.name}: encode")
        torch.testing.assert_close(got[1], recon, atol=1e-4, rtol=1e-5, msg=f"{folder.name}: decode")
    assert n_plain == 8 + 6  # shipped: 8 SAEs; trained: every architecture but the two transcoders


def test_gsae_saves_as_topk_with_beta_and_encodes_with_gradient(tmp_path):
    from sae_lens import SAE

    from sae_training.architectures import StepInput
    from sae_training.architectures.gsae import encode_with_gradient

    trainer, config = ARCHITECTURES["gsae"]
    sae = trainer(config(d_in=16, d_sae=64, k=4, beta=3.0))
    with torch.no_grad():
        sae.b_enc.fill_(0.5)
    sae.save_inference_model(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == "topk"
    assert cfg["metadata"]["training_architecture_details"]["beta"] == 3.0
    loaded = SAE.load_from_disk(tmp_path)
    x, g = torch.randn(40, 16), torch.randn(40, 16)
    code, _, _ = sae.sparse_encode(x, StepInput(x, grad=g))
    torch.testing.assert_close(encode_with_gradient(loaded, x, g), code.to_dense(64).detach())
    plain_topk = sae.sparse_encode(x)[0].to_dense(64).detach()
    assert not torch.equal(encode_with_gradient(loaded, x, g), plain_topk)  # beta really came through


def test_registry_name_collision_raises_and_reimport_does_not():
    from sae_lens.registry import SAE_CLASS_REGISTRY, SAE_TRAINING_CLASS_REGISTRY
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

    register_all()  # our own classes again: a no-op
    name = ARCHITECTURES["topk"][1].architecture()
    saved = SAE_TRAINING_CLASS_REGISTRY[name]
    try:
        SAE_TRAINING_CLASS_REGISTRY[name] = (StandardSAE, StandardSAEConfig)  # type: ignore[assignment]
        with pytest.raises(RegistryCollision, match=f"'{name}' is already registered to .*StandardSAE"):
            register_all()
    finally:
        SAE_TRAINING_CLASS_REGISTRY[name] = saved
    taken = SAE_CLASS_REGISTRY["topk_transcoder (needs `import sae_training`)"]
    try:
        SAE_CLASS_REGISTRY[next(iter(SAE_CLASS_REGISTRY))]  # registry readable
        SAE_CLASS_REGISTRY["topk_transcoder (needs `import sae_training`)"] = (StandardSAE, StandardSAEConfig)
        with pytest.raises(RegistryCollision):
            register_all()
    finally:
        SAE_CLASS_REGISTRY["topk_transcoder (needs `import sae_training`)"] = taken
