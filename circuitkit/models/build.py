"""Build a zoo model end to end: train, score the tasks on held-out prompts, derive circuits, write."""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path

import torch
from transformer_lens import HookedTransformer

from circuitkit.evaluation.derive_circuit import derive_circuit
from circuitkit.models import zoo
from circuitkit.models.train import ZooConfig, train_model
from circuitkit.planted.config import PlantedConfig
from circuitkit.tasks import make_greater_than, make_ioi

N_EVAL_IOI = 256
N_EVAL_GT = 96


def task_scores(model: HookedTransformer, seed: int = 1234) -> dict:
    """IOI and greater-than scores on held-out prompts (names, templates, nouns unseen in IOI /
    greater-than training sentences)."""
    out = {}
    evals = (
        ("ioi", make_ioi, N_EVAL_IOI, "heldout"),
        ("ioi_heldout_names", make_ioi, N_EVAL_IOI, "heldout_names"),
        ("greater_than", make_greater_than, N_EVAL_GT, "heldout"),
    )
    for name, make, n, split in evals:
        data = make(model.tokenizer, n, seed=seed, split=split).to(model.cfg.device)
        with torch.no_grad():
            clean = model(data.clean_tokens)
            corrupted = model(data.corrupted_tokens)
        key = "logit_diff" if data.metric_name == "logit_diff" else "prob_diff"
        out[name] = {
            "split": split,
            "n_prompts": n,
            "seed": seed,
            "accuracy": round(data.accuracy(clean), 4),
            key: round(float(data.metric(clean)), 4),
            f"{key}_corrupted": round(float(data.metric(corrupted)), 4),
        }
    return out


def build_builtin(
    name: str,
    *,
    out_dir: str | Path | None = None,
    steps: int | None = None,
    seed: int | None = None,
    text_dir: str | None = None,
    ground_truth: bool = True,
    progress: bool = True,
    first_phase: str | Path | None = None,
) -> Path:
    """Train a built-in model from its recipe (optionally overridden) and write its folder
    (``first_phase``: a planted two-phase recipe's saved first phase, see ``build_planted``)."""
    key = zoo.resolve_builtin(name)
    if key is None:
        raise ValueError(
            f"unknown built-in model {name!r}; choose one of "
            f"{', '.join(zoo.BUILTIN)} or {', '.join(zoo.ALIASES)}"
        )
    if isinstance(zoo.BUILTIN[key], PlantedConfig):
        from circuitkit.planted.build import build_planted

        return build_planted(
            zoo.PLANTED[key],
            out_dir=out_dir,
            steps=steps,
            seed=seed,
            text_dir=text_dir,
            validate=ground_truth,
            progress=progress,
            first_phase=first_phase,
        )
    if first_phase is not None:
        raise ValueError(f"--first-phase applies to planted two-phase recipes only; {key} is trained in one")
    cfg = zoo.BUILTIN[key]
    assert isinstance(cfg, ZooConfig)
    overrides = {
        k: v for k, v in {"steps": steps, "seed": seed, "text_dir": text_dir}.items() if v is not None
    }
    cfg = dataclasses.replace(cfg, **overrides)
    trained = train_model(cfg, progress=progress)
    target = Path(out_dir) if out_dir else zoo.builtin_dir(key)
    # Write first, then read back: the tokenizer must be loaded from its saved folder for TransformerLens,
    # and scoring the read-back model checks the files, not just the in-memory weights.
    zoo.write_model_dir(trained.model, trained.tokenizer, {"name": cfg.name}, target)
    model = zoo.read_model_dir(target, trained.model.cfg.device)
    scores = task_scores(model)
    card = {
        "name": cfg.name,
        "description": (
            f"{cfg.n_layers}-layer GPT-2-style transformer (d_model {cfg.d_model}, {cfg.n_heads} heads, "
            f"GELU MLP {cfg.d_mlp}, LayerNorm, learned positions, untied embeddings) trained from scratch "
            "on Python-documentation prose mixed with generated IOI, greater-than, filler and copy sentences."
        ),
        "recipe": zoo.recipe_dict(cfg),
        "n_params": sum(p.numel() for p in model.parameters()),
        "training": {**trained.stats, "python": platform.python_version()},
        "task_scores": scores,
    }
    if ground_truth:
        card["circuits"] = derive_circuits(model)
    zoo.write_card(target, card)
    return target


def derive_circuits(model: HookedTransformer) -> dict:
    """Patching-derived IOI and greater-than circuits for a model (64 held-out prompts each)."""
    out = {}
    for task, make in (("ioi", make_ioi), ("greater_than", make_greater_than)):
        data = make(model.tokenizer, 64, seed=7, split="heldout").to(model.cfg.device)
        out[task] = derive_circuit(model, data)
    return out


def refresh_circuits(name: str) -> Path:
    """Re-derive a built-in model's circuits (and task scores) from its shipped weights, in place."""
    key = zoo.resolve_builtin(name)
    if key is None:
        raise ValueError(f"unknown built-in model {name!r}; choose one of {', '.join(zoo.BUILTIN)}")
    if key in zoo.PLANTED:
        from circuitkit.planted.build import revalidate

        return revalidate(key)
    path = zoo.builtin_dir(key)
    model = zoo.read_model_dir(path)
    card = zoo.read_card(path)
    card["task_scores"] = task_scores(model)
    card["circuits"] = derive_circuits(model)
    zoo.write_card(path, card)
    return path
