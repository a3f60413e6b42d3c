"""Build a planted built-in model: SIIT training, write the folder, validate, write the card."""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformer_lens import HookedTransformer

from circuitkit.models import zoo
from circuitkit.models.tokenizer import load_tokenizer
from circuitkit.planted import validate as v
from circuitkit.planted.config import PlantedConfig
from circuitkit.planted.graph import HighLevelModel, Node
from circuitkit.planted.probes import run_probes
from circuitkit.planted.siit import TrainedPlanted, high_level, train_planted
from circuitkit.tasks import ioi, make_greater_than, make_ioi
from circuitkit.tasks.base import TaskDataset

THRESHOLDS = {
    "accuracy": 0.95,
    "iia": 0.95,
    "aligned_effect": 0.10,
    "nonaligned_effect": 0.05,
    "behaviour_kl": 0.5,
}
"""What validation demands (issue 14): shares of the clean - corrupted metric gap for effects; and
(added in session 8, not in the issue) the mean KL in nats from the high-level model's output on held-out
prompts drawn as it draws them, ABC included: a model answering ABC prompts with a confident coin flip
(+-25 logits, 0 on average) passed every mean-based check."""

OUTPUT_READERS = {"ioi": ("name_mover", "backup_name_mover"), "greater_than": ("answer",)}


def task_data(task: str, tokenizer, n: int, seed: int) -> TaskDataset:
    """Held-out clean / corrupted prompts of the task (templates / nouns never in SIIT training)."""
    make = make_ioi if task == "ioi" else make_greater_than
    return make(tokenizer, n, seed=seed, split="heldout")


def planted_edges(task: str, nodes: tuple[Node, ...]) -> list[list[str]]:
    """Every planted edge as [sender, receiver] node names (``tokens`` = input, ``logits`` = output)."""
    edges = [[s, n.name] for n in nodes for s in n.reads]
    edges += [[name, "logits"] for name in OUTPUT_READERS[task]]
    return edges


def circuit_entry(task: str, nodes: tuple[Node, ...], cfg: PlantedConfig) -> dict:
    """The card's ``circuits[task]``: what :func:`circuitkit.tasks.ground_truth.ground_truth` reads."""
    return {
        "heads": [
            {"layer": n.layer, "head": n.head, "label": n.label, "role": n.role, "position": n.position}
            for n in nodes
            if n.head is not None
        ],
        "mlps": [{"layer": n.layer, "role": n.role, "position": n.position} for n in nodes if n.head is None],
        "planted": True,
        "nodes": [n.as_dict() for n in nodes],
        "edges": planted_edges(task, nodes),
        "method": (
            "planted by Strict interchange intervention training (Gupta et al. 2024, InterpBench, arXiv "
            f"2407.14494) against the high-level model in circuitkit/planted/{task}.py"
        ),
    }


def validate_model(
    model: HookedTransformer, hl: HighLevelModel, *, n_prompts: int = 128, n_iia: int = 64, seed: int = 7
) -> dict:
    """Every validation number of a planted model, with pass / fail against :data:`THRESHOLDS`."""
    t0 = time.time()
    data = task_data(hl.task, model.tokenizer, n_prompts, seed).to(model.cfg.device)
    with torch.no_grad():
        clean, corrupted = model(data.clean_tokens), model(data.corrupted_tokens)
    m_clean, m_corr = float(data.metric(clean)), float(data.metric(corrupted))
    layouts = list(ioi.word_lists("heldout")["templates"]) if hl.task == "ioi" else None
    iia = v.interchange_accuracy(model, hl, n=n_iia, split="heldout", layouts=layouts, seed=seed)
    fit = v.behaviour_fit(model, hl, n=n_iia, split="heldout", layouts=layouts, seed=seed)
    effects = v.component_effects(model, data, seed=seed)
    own = {}
    for n in hl.nodes:
        own[n.name] = {
            "at_position": v.node_effect(model, data, n, data.positions[n.position]),
            "all_positions": {
                d: round(
                    float(
                        effects[f"{'heads' if n.head is not None else 'mlps'}_{d}"][n.layer, n.head]
                        if n.head is not None
                        else effects[f"mlps_{d}"][n.layer]
                    ),
                    4,
                )
                for d in ("denoising", "noising", "resample")
            },
        }
    nonaligned = v.summarise_components(hl.nodes, effects)
    edges = v.edge_report(hl.nodes, v.edge_scores(model, data))
    comps = v.all_components(model)
    by_direction = {
        d: v.component_edge_scores(model, data, comps, [*comps, "logits"], direction=d)
        for d in ("denoising", "noising")
    }
    # an edge is found by path patching in either direction (an AND-gated edge shows in one only)
    both = {
        k: max(abs(by_direction["denoising"][k]), abs(by_direction["noising"][k]))
        for k in by_direction["denoising"]
    }
    comp_edges = v.component_edge_report(hl.nodes, planted_edges(hl.task, hl.nodes), both)
    comp_edges["by_direction"] = {
        d: v.component_edge_report(hl.nodes, planted_edges(hl.task, hl.nodes), sc)["planted"]
        for d, sc in by_direction.items()
    }
    checks = {
        "accuracy": float(data.accuracy(clean)) >= THRESHOLDS["accuracy"],
        "behaviour": fit["kl"] <= THRESHOLDS["behaviour_kl"],
        "iia": all(x["iia"] >= THRESHOLDS["iia"] for x in iia.values()),
        # denoising restores a share of the gap (> 0), noising removes one (normalised effect < 0); a
        # node counts when either is at least the threshold: an AND-gated node (the units digit matters
        # only next to the clean tens digit) restores nothing into a YY = 01 run by the high-level
        # model itself, and both numbers are reported
        "aligned_effect": all(
            max(o["at_position"]["denoising"], -o["at_position"]["noising"]) >= THRESHOLDS["aligned_effect"]
            for o in own.values()
        ),
        "nonaligned_effect": all(
            x["max_abs_nonaligned"] < THRESHOLDS["nonaligned_effect"] for x in nonaligned.values()
        ),
        "edges": edges["all_planted_above_unplanted"],
        "component_edges": comp_edges["all_planted_found"] and comp_edges["all_planted_above_unplanted"],
    }
    return {
        "split": "heldout",
        "n_prompts": n_prompts,
        "seed": seed,
        "task": {
            "accuracy": round(float(data.accuracy(clean)), 4),
            "metric": data.metric_name,
            "clean": round(m_clean, 4),
            "corrupted": round(m_corr, 4),
            "gap": round(m_clean - m_corr, 4),
        },
        "iia": iia,
        "behaviour_fit": fit,
        "aligned_effects": own,
        "nonaligned_max_effects": nonaligned,
        "edges_path_patching": edges,
        "edges_components": comp_edges,
        "head_effects": {
            k: [[round(float(x), 4) for x in row] for row in g]
            for k, g in effects.items()
            if k.startswith("heads")
        },
        "mlp_effects": {
            k: [round(float(x), 4) for x in g] for k, g in effects.items() if k.startswith("mlps")
        },
        "thresholds": THRESHOLDS,
        "checks": checks,
        "passed": all(checks.values()),
        "seconds": round(time.time() - t0, 1),
    }


def describe(cfg: PlantedConfig) -> str:
    what = {
        "ioi": "a planted IOI circuit (duplicate-token -> S-inhibition -> name mover + backup name mover)",
        "greater_than": (
            "a planted greater-than circuit (tens and units heads at END -> year MLP -> greater-than MLP)"
        ),
    }[cfg.task]
    return (
        f"{cfg.n_layers}-layer GPT-2-style transformer (d_model {cfg.d_model}, {cfg.n_heads} heads, GELU MLP "
        f"{cfg.d_mlp}, LayerNorm, learned positions, untied embeddings) trained from scratch with Strict IIT "
        f"so that {what} carries the task and every other head and MLP is inert on it; Python-documentation "
        f"prose mixed in (next-token loss). Tokenizer shared with {cfg.tokenizer_from}."
    )


def build_planted(
    cfg: PlantedConfig,
    *,
    out_dir: str | Path | None = None,
    steps: int | None = None,
    seed: int | None = None,
    text_dir: str | None = None,
    validate: bool = True,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    first_phase: str | Path | None = None,
) -> Path:
    """Train a planted model from its recipe (optionally overridden), write its folder and card.

    ``log`` receives a line of smoothed losses every 50 steps (for runs without a progress bar).
    ``first_phase``: a model folder written by this recipe's first phase alone (its card's recipe must
    equal it); a two-phase recipe then trains only the fine-tuning phase from those weights."""
    overrides = {
        k: x for k, x in {"steps": steps, "seed": seed, "text_dir": text_dir}.items() if x is not None
    }
    cfg = dataclasses.replace(cfg, **overrides)
    tokenizer = load_tokenizer(zoo.builtin_dir(cfg.tokenizer_from) / "tokenizer")
    trained, phase_stats = None, []
    phases = cfg.phases()
    if first_phase is not None:
        trained = load_first_phase(first_phase, phases, tokenizer)
        phase_stats.append(trained.stats)
    for k, phase in enumerate(phases):
        if k < len(phase_stats):
            continue
        if log is not None and k:
            log(f"phase {k + 1}: fine-tuning with {cfg.finetune}")
        init = trained.model if trained is not None else None
        if init is not None:  # continue from the weights as a model folder stores them (fp16), so a
            # fine-tuning phase run from a saved first phase (``init_from=<folder>``) gives the same model
            with torch.no_grad():
                for x in init.parameters():
                    x.copy_(x.half().float())
        trained = train_planted(phase, tokenizer, progress=progress, log=log, init=init)
        phase_stats.append(trained.stats)
    assert trained is not None
    stats = dict(trained.stats)
    if len(phase_stats) > 1:
        stats["phases"] = phase_stats
        stats["steps"] = sum(s["steps"] for s in phase_stats)
        stats["seconds"] = round(sum(s["seconds"] for s in phase_stats), 1)
    target = Path(out_dir) if out_dir else zoo.builtin_dir(cfg.name)
    zoo.write_model_dir(trained.model, tokenizer, {"name": cfg.name}, target)
    # validated on the weights read back from disk (fp16 storage), i.e. what users load
    model = zoo.read_model_dir(target, trained.model.cfg.device)
    card = make_card(cfg, model, stats, validate=validate)
    zoo.write_card(target, card)
    return target


def _recipe_key(cfg: PlantedConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


def load_first_phase(folder: str | Path, phases: list[PlantedConfig], tokenizer) -> TrainedPlanted:
    """A saved first phase of a two-phase recipe, checked against it (recipe fields added since are
    taken at their defaults, which leave training unchanged)."""
    if len(phases) < 2:
        raise ValueError("first_phase= needs a two-phase recipe (PlantedConfig.finetune set)")
    folder = Path(folder)
    if not zoo.is_model_dir(folder):
        raise ValueError(f"first_phase={str(folder)!r} is not a model folder (config.json + weights)")
    card = zoo.read_card(folder)
    try:
        saved = PlantedConfig(**card["recipe"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"first_phase={str(folder)!r}: its card has no planted recipe ({e})") from e
    if _recipe_key(saved) != _recipe_key(phases[0]):
        a, b = dataclasses.asdict(saved), dataclasses.asdict(phases[0])
        diff = sorted(k for k in b if json.dumps(a[k]) != json.dumps(b[k]))
        raise ValueError(
            f"first_phase={str(folder)!r} was trained with another first-phase recipe (fields differ: "
            f"{diff}); train both phases instead (drop first_phase)"
        )
    model = zoo.read_model_dir(folder)
    hl = high_level(phases[0].task, tokenizer, **phases[0].extra)
    stats = {**card.get("training", {}), "from_folder": str(folder)}
    return TrainedPlanted(model=model, tokenizer=tokenizer, high_level=hl, stats=stats)


def make_card(cfg: PlantedConfig, model: HookedTransformer, stats: dict, *, validate: bool = True) -> dict:
    from circuitkit.models.build import task_scores

    # the model is trained last against the final phase's high-level model (a fine-tuning phase may
    # change it, e.g. the IOI mover shares), so that is the one it is validated and described against
    hl = high_level(cfg.task, model.tokenizer, **cfg.phases()[-1].extra)
    card = {
        "name": cfg.name,
        "kind": "planted",
        "description": describe(cfg),
        "recipe": dataclasses.asdict(cfg),
        "n_params": sum(p.numel() for p in model.parameters()),
        "training": {**stats, "python": platform.python_version()},
        "task_scores": task_scores(model),
        "circuits": {cfg.task: circuit_entry(cfg.task, hl.nodes, cfg)},
        "probes": run_probes(model),
    }
    if validate:
        val = validate_model(model, hl)
        card["validation"] = val
        # what the explorer's Circuit page reads as "model card" scores (as the derived circuits store)
        card["circuits"][cfg.task]["head_effects_denoising"] = val["head_effects"]["heads_denoising"]
        card["circuits"][cfg.task]["mlp_effects_denoising"] = val["mlp_effects"]["mlps_denoising"]
    return card


def revalidate(name: str) -> Path:
    """Recompute a shipped planted model's card numbers from its weights, in place."""
    key = zoo.resolve_builtin(name)
    cfg = zoo.BUILTIN.get(key) if key else None
    if not isinstance(cfg, PlantedConfig):
        raise ValueError(f"{name!r} is not a planted built-in model; choose one of {', '.join(zoo.PLANTED)}")
    path = zoo.builtin_dir(cfg.name)
    card = zoo.read_card(path)
    model = zoo.read_model_dir(path)
    zoo.write_card(path, make_card(cfg, model, card.get("training", {})))
    return path
