"""The built-in toy-model zoo: recipes, on-disk format, and reading / writing a model folder.

A model folder holds ``model.safetensors`` (HookedTransformer state dict), ``config.json`` (the
HookedTransformerConfig fields needed to rebuild it), ``tokenizer/`` (a Hugging Face tokenizer
directory) and ``card.json`` (recipe, corpus, training stats, task scores, ground-truth circuits).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformer_lens import HookedTransformer, HookedTransformerConfig

from circuitkit.models.tokenizer import load_tokenizer
from circuitkit.models.train import ZooConfig
from circuitkit.planted.config import PlantedConfig

ZOO_DIR = Path(__file__).parent / "zoo"

BUILTIN: dict[str, ZooConfig | PlantedConfig] = {
    "ck-tiny": ZooConfig(
        name="ck-tiny",
        n_layers=4,
        d_model=96,
        n_heads=4,
        d_mlp=384,
        vocab_size=2048,
        steps=800,
        lr=3e-3,
        text_every=4,
        max_text_chars=1_500_000,
    ),
    "ck-6l": ZooConfig(
        name="ck-6l",
        n_layers=6,
        d_model=256,
        n_heads=8,
        d_mlp=1024,
        vocab_size=4096,
        steps=4000,
        lr=1e-3,
    ),
}
# Planted models (circuitkit.planted): Strict IIT puts a known many-part circuit in charge of one task.
PLANTED: dict[str, PlantedConfig] = {
    "ck-planted-gt": PlantedConfig(
        name="ck-planted-gt",
        task="greater_than",
        steps=2000,
        warmup=50,
        lr=3e-3,
        w_strict=3.0,
        p_strict=0.4,
        w_text=0.1,
        p_block=0.3,
        p_freeze=0.3,
    ),
    # Phase 1 (session 7's run P2, 3,000 steps): d_head 48 (copying ~80 names through d_head 24
    # stalled); attention-pattern loss on the aligned heads; strictness ramped in after 100 steps; IIT
    # rows weighted to the name mover; training batches augmented so the circuit carries over to held-out
    # templates; blocked / frozen IIT rows against skip edges and non-aligned relays; minimal-pair
    # sources (S2 changed, names kept) for strictness and for the duplicate / S-inhibition IIT rows only.
    # Alone it passes every check but single components (L0H0 resampled 0.185 of the gap, MLPs 0.05-0.08).
    # Phase 2 (session 8, run S12, 800 steps from phase 1's weights): single-component strictness - one
    # non-aligned head or MLP resample-ablated per row (half the rows from an independent prompt, picks
    # weighted to the components still moving it), each component's mean change of the logit difference
    # penalised. Keeps the behaviour fit (KL 0.12 nats; the per-row variant answered ABC prompts with a
    # confident coin flip, KL 3.0). Session 9 (run T1): the last block's free heads and MLP projected off
    # the answer-token logit-difference directions after every step (project_last; their only path is
    # direct): MLP2 0.084 -> 0.001. Passes every check but one: L0H0 resampled 0.073 (bar 0.05), through
    # its copy of each name at the name's own position, which the name movers' values read (README).
    # Session 10: the single-component loss against the live unablated run (single_live: a detached
    # one fed every collapse); every free head and MLP below the name movers kept out of their value
    # read space (project_values). Session 11: phase 2 trains a sharper high-level mover share (the
    # name mover's IIA tracked the intervened answer's target margin) and cuts the S-inhibition head's
    # direct write (project_intermediate).
    "ck-planted-ioi": PlantedConfig(
        name="ck-planted-ioi",
        task="ioi",
        d_model=192,
        steps=3000,
        warmup=100,
        p_strict=0.3,
        p_strict_mlp=0.8,
        w_strict=3.0,
        strict_start=100,
        strict_ramp=200,
        p_block=0.3,
        p_freeze=0.6,
        p_pair=0.8,
        pair_nodes=("duplicate", "s_inhibition"),
        iit_node_weights=(1.0, 1.0, 3.0, 1.5),
        w_attn=1.0,
        extra={"augment": 0.5, "mover_weights": (0.85, 0.15)},
        finetune={  # run N4 (session 11): every check passes (name-mover IIA 1.00)
            "steps": 1400,
            "warmup": 50,
            "lr": 3e-4,
            "strict_start": 0,
            "strict_ramp": 0,
            "p_block": 0.6,
            "iit_node_weights": (1.0, 2.0, 5.0, 1.5),
            "w_behaviour": 2.0,
            "w_single": 8.0,
            "single_independent": 0.5,
            "single_focus": 0.5,
            "single_mean": True,
            "single_live": True,
            "project_last": True,
            "project_values": True,
            # the S-inhibition head (read by the name movers) kept off the answer directions: its direct
            # write to the logits (0.21 of the gap in N2, unplanted) pulled intervened answers back to
            # the base's; with it cut, name-mover IIA 0.955 -> 0.997 over 3,840 pairs
            "project_intermediate": True,
            # the intervened answer's target margin log(0.985 / 0.015) = 4.2 nats (0.85 / 0.15: 1.7 nats,
            # name-mover IIA 0.885; 0.95 / 0.05: 0.932; 0.97 / 0.03: 0.943; 0.985 / 0.015: 0.953)
            "extra": {"augment": 0.5, "mover_weights": (0.985, 0.015)},
        },
    ),
}
# Recipes that did not reach a validated model in the time given: trainable with
# circuitkit.planted.build.build_planted(..., out_dir=...), not shipped, not in the zoo listing.
PLANTED_EXPERIMENTAL: dict[str, PlantedConfig] = {}
BUILTIN.update(PLANTED)
ALIASES = {
    "tiny": "ck-tiny",
    "default": "ck-6l",
    "planted-ioi": "ck-planted-ioi",
    "planted-gt": "ck-planted-gt",
}
DEFAULT_MODEL = "ck-6l"

CONFIG_KEYS = (
    "n_layers", "d_model", "n_ctx", "d_head", "n_heads", "d_mlp", "d_vocab", "act_fn", "normalization_type",
    "positional_embedding_type", "original_architecture", "model_name", "default_prepend_bos", "seed",
)  # fmt: skip


def resolve_builtin(name: str) -> str | None:
    """Canonical zoo name for a name or alias, or None."""
    key = ALIASES.get(name, name)
    return key if key in BUILTIN else None


def builtin_dir(name: str) -> Path:
    return ZOO_DIR / name


def is_model_dir(path: Path) -> bool:
    return (path / "model.safetensors").is_file() and (path / "config.json").is_file()


def write_model_dir(model: HookedTransformer, tokenizer, card: dict, out_dir: Path) -> Path:
    """Write weights, config, tokenizer and card into ``out_dir`` atomically (temp dir, then rename)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        # fp16 storage halves the shipped size; scores and circuits in the card are computed from the
        # weights read back from disk, so they describe exactly what users load.
        state = {
            k: (v.detach().half() if v.is_floating_point() else v.detach()).cpu().contiguous()
            for k, v in model.state_dict().items()
            if not k.endswith(("attn.mask", "attn.IGNORE"))  # buffers rebuilt from the config
        }
        save_file(state, str(tmp / "model.safetensors"))
        cfg = {k: getattr(model.cfg, k) for k in CONFIG_KEYS}
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        tokenizer.save_pretrained(str(tmp / "tokenizer"))
        (tmp / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        # mkdtemp makes a private folder; the model folder should read like any other
        tmp.chmod(0o755)
        (tmp / "model.safetensors").chmod(0o644)
        if out_dir.exists():
            backup = out_dir.with_name(out_dir.name + ".old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(out_dir, backup)
            os.replace(tmp, out_dir)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def read_model_dir(path: Path, device: str | torch.device = "cpu") -> HookedTransformer:
    """Rebuild a HookedTransformer from a model folder written by :func:`write_model_dir`."""
    path = Path(path)
    cfg_dict = json.loads((path / "config.json").read_text())
    tokenizer = load_tokenizer(path / "tokenizer")
    cfg = HookedTransformerConfig(**cfg_dict, device=str(device))
    model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    state = load_file(str(path / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # causal masks are buffers that the config rebuilds; any other gap is a broken folder
    missing = [k for k in missing if not k.endswith(("attn.mask", "attn.IGNORE"))]
    if missing or unexpected:
        raise ValueError(
            f"{path}/model.safetensors does not match config.json: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    model.to(device)
    model.eval()
    # where the card lives: ground_truth() reads this folder's circuits before the built-in ones
    model.circuitkit_dir = str(path)
    return model


def read_card(path: Path) -> dict:
    card = Path(path) / "card.json"
    return json.loads(card.read_text()) if card.is_file() else {}


def write_card(path: Path, card: dict) -> None:
    """Replace a model folder's card atomically."""
    path = Path(path)
    tmp = path / ".card.json.tmp"
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, path / "card.json")


def recipe_dict(cfg: ZooConfig) -> dict:
    return asdict(cfg)
