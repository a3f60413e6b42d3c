"""Validation of a planted model: does the planted circuit, and only it, carry the task?

The checks of the InterpBench recipe (Gupta et al. 2024, arXiv 2407.14494) on held-out prompts:

* task accuracy and the clean - corrupted metric gap (the normaliser of every effect below);
* interchange intervention accuracy (IIA, Geiger et al. 2022) per aligned node: patch the node from a
  source prompt into a base prompt; the model's top token must be a top token of the high-level model
  under the same intervention;
* each aligned node's own effect, patched at its position between clean and corrupted prompts;
* every non-aligned head and MLP patched (all positions) clean -> corrupted, corrupted -> clean, and
  resample-ablated: its largest effect;
* path patching (Wang et al. 2022) of every head -> head edge: the planted edges against the rest.
"""

from __future__ import annotations

import random

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit.patching.activation import activation_patching
from circuitkit.patching.path import path_patching
from circuitkit.planted.graph import HighLevelModel, Node
from circuitkit.planted.siit import (
    PatchMasks,
    cache_components,
    iit_masks,
    patched_logits,
    soft_cross_entropy,
)
from circuitkit.tasks.base import TaskDataset


def interchange_accuracy(
    model: HookedTransformer,
    hl: HighLevelModel,
    *,
    n: int = 64,
    split: str = "heldout",
    layouts: list[str] | None = None,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """IIA per node over ``n`` base / source pairs per layout (clean prompts, sources shuffled).

    ``iia``: all pairs; ``iia_changed``: only pairs where the intervention changes the high-level
    model's output distribution (the informative ones); ``kl``: mean KL(high-level || model) under the
    intervention, which also grades the partial moves (a backup name mover shifts 40 % of the mass).
    """
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    layouts = layouts or [None]  # type: ignore[list-item]
    out: dict[str, dict[str, float]] = {}
    for k, node in enumerate(hl.nodes):
        hits, total, hits_c, total_c, kl = 0, 0, 0, 0, 0.0
        for layout in layouts:
            base = hl.sample(rng, n, split=split, template=layout, p_abc=0.0).to(model.cfg.device)
            source = hl.sample(rng, n, split=split, template=base.layout, p_abc=0.0).permuted(gen)
            source = source.to(model.cfg.device)
            which = torch.full((n,), k, device=model.cfg.device)
            with torch.no_grad():
                logits = patched_logits(
                    model,
                    base.tokens,
                    cache_components(model, source.tokens),
                    iit_masks(model, hl.nodes, base, which),
                )[:, base.positions["end"]]
            target = hl.output(base, source, which)
            top = logits.argmax(-1)
            rows = torch.arange(n, device=top.device)
            ok = target[rows, top] >= target.max(-1).values - 1e-6
            changed = (hl.output(base) - target).abs().sum(-1) > 1e-6
            hits += int(ok.sum())
            total += n
            hits_c += int(ok[changed].sum())
            total_c += int(changed.sum())
            kl += float(soft_cross_entropy(logits, target)) * n
        out[node.name] = {
            "iia": round(hits / total, 4),
            "iia_changed": round(hits_c / max(1, total_c), 4),
            "n_pairs": total,
            "n_changed": total_c,
            "kl": round(kl / total, 4),
        }
    return out


def behaviour_fit(
    model: HookedTransformer,
    hl: HighLevelModel,
    *,
    n: int = 64,
    split: str = "heldout",
    layouts: list[str] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Mean KL(high-level output || model) at END on ``n`` unpatched held-out prompts per layout, drawn as
    the high-level model draws them (IOI: a quarter ABC, whose answer is an even split of the two names).

    Accuracy and the clean - corrupted gap are means that a model answering ABC prompts with a confident
    coin flip (+-20 logits, averaging to 0) passes; this is the per-prompt check. IOI adds ``kl_abc`` /
    ``kl_repeated`` and ``abc_abs_logit_diff`` (mean |slot-1 - slot-2 logit| on ABC prompts)."""
    rng = random.Random(seed)
    layouts = layouts or [None]  # type: ignore[list-item]
    kls, abc_rows, gaps = [], [], []
    for layout in layouts:
        batch = hl.sample(rng, n, split=split, template=layout).to(model.cfg.device)
        with torch.no_grad():
            logits = model(batch.tokens)[:, batch.positions["end"]].float()
        target = hl.output(batch)
        logp = torch.log_softmax(logits, -1)
        ent = torch.where(target > 0, target * target.clamp_min(1e-12).log(), torch.zeros_like(target))
        kls.append((ent - target * logp).sum(-1))
        v = batch.variables
        if {"S2", "slot1", "slot2"} <= set(v):
            abc_rows.append((v["S2"] != v["slot1"]) & (v["S2"] != v["slot2"]))
            rows = torch.arange(len(batch), device=logits.device)
            gaps.append(logits[rows, v["slot1"]] - logits[rows, v["slot2"]])
    kl = torch.cat(kls)
    out = {"kl": round(float(kl.mean()), 4), "n_prompts": len(kl)}
    if abc_rows:
        abc, gap = torch.cat(abc_rows), torch.cat(gaps)
        out["kl_abc"] = round(float(kl[abc].mean()), 4) if abc.any() else float("nan")
        out["kl_repeated"] = round(float(kl[~abc].mean()), 4)
        out["abc_abs_logit_diff"] = round(float(gap[abc].abs().mean()), 4) if abc.any() else float("nan")
    return out


def node_effect(
    model: HookedTransformer, data: TaskDataset, node: Node, position: Int[Tensor, " batch"]
) -> dict[str, float]:
    """The node's own effect at its position, normalised by the clean - corrupted gap: ``denoising``
    (m_patched - m_corrupted) / gap, the share restored; ``noising`` (m_patched - m_clean) / gap, minus
    the share removed."""
    dev = model.cfg.device
    clean, corrupted = data.clean_tokens.to(dev), data.corrupted_tokens.to(dev)
    with torch.no_grad():
        m_clean = float(data.metric(model(clean)))
        m_corr = float(data.metric(model(corrupted)))
        out = {}
        for direction, (target, source) in {
            "denoising": (corrupted, clean),
            "noising": (clean, corrupted),
        }.items():
            masks = PatchMasks.empty(model, len(data), data.seq_len)
            rows = torch.arange(len(data), device=dev)
            if node.head is not None:
                masks.heads[node.layer][rows, position.to(dev), node.head] = True
            else:
                masks.mlps[node.layer][rows, position.to(dev)] = True
            m = float(data.metric(patched_logits(model, target, cache_components(model, source), masks)))
            base = m_corr if direction == "denoising" else m_clean
            out[direction] = round((m - base) / (m_clean - m_corr), 4)
    return out


def component_effects(model: HookedTransformer, data: TaskDataset, seed: int = 0) -> dict[str, Tensor]:
    """Normalised effects of every head ([layer, head]) and MLP ([layer]), all positions, three ways.

    ``denoising`` / ``noising``: patch between clean and corrupted prompts; ``resample``: the clean run
    with the component's value from another (shuffled) corrupted prompt. All as shares of the gap.
    """
    dev = model.cfg.device
    with torch.no_grad():
        gap = float(data.metric(model(data.clean_tokens.to(dev)))) - float(
            data.metric(model(data.corrupted_tokens.to(dev)))
        )
    out: dict[str, Tensor] = {}
    for fam in ("head", "mlp_out_all"):
        for name, kw in (
            ("denoising", dict(direction="denoising")),
            ("noising", dict(direction="noising")),
            ("resample", dict(direction="noising", ablation="resample", seed=seed)),
        ):
            r = activation_patching(model, data.clean_tokens, data.corrupted_tokens, data.metric, fam, **kw)
            key = f"{'heads' if fam == 'head' else 'mlps'}_{name}"
            out[key] = (r.effects() / gap).cpu()
    return out


def edge_scores(
    model: HookedTransformer, data: TaskDataset
) -> Float[Tensor, "recv_layer recv_head send_layer send_head"]:
    """Path-patching score of every head -> head edge (denoising, normalised by the gap; NaN: no edge)."""
    n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
    out = torch.full((n_l, n_h, n_l, n_h), float("nan"), dtype=torch.float64)
    for layer in range(1, n_l):
        for head in range(n_h):
            r = path_patching(model, data.clean_tokens, data.corrupted_tokens, data.metric, [(layer, head)])
            out[layer, head] = r.normalized()
    return out


def planted_edges(nodes: tuple[Node, ...]) -> list[tuple[Node, Node]]:
    """(sender, receiver) pairs of aligned heads that the high-level model connects."""
    by_name = {n.name: n for n in nodes}
    return [
        (by_name[s], r)
        for r in nodes
        for s in r.reads
        if s in by_name and by_name[s].head is not None and r.head is not None
    ]


def edge_report(nodes: tuple[Node, ...], scores: Tensor) -> dict:
    """Planted edges' scores, the largest unplanted one, and whether every planted edge ranks above it."""
    planted = {(s.layer, s.head, r.layer, r.head) for s, r in planted_edges(nodes)}
    n_l, n_h = scores.shape[:2]
    rows = []
    for rl in range(n_l):
        for rh in range(n_h):
            for sl in range(n_l):
                for sh in range(n_h):
                    v = float(scores[rl, rh, sl, sh])
                    if v == v:  # not NaN
                        rows.append(((sl, sh, rl, rh), v))
    planted_vals = {k: v for k, v in rows if k in planted}
    others = sorted(((abs(v), k) for k, v in rows if k not in planted), key=lambda t: t[0], reverse=True)
    smallest = min((abs(v) for v in planted_vals.values()), default=float("nan"))
    if not planted_vals:
        return {"planted": {}, "largest_unplanted": [], "all_planted_above_unplanted": True}
    return {
        "planted": {f"L{k[0]}H{k[1]}->L{k[2]}H{k[3]}": round(v, 4) for k, v in planted_vals.items()},
        "largest_unplanted": [
            {"edge": f"L{k[0]}H{k[1]}->L{k[2]}H{k[3]}", "abs_score": round(v, 4)} for v, k in others[:3]
        ],
        "all_planted_above_unplanted": bool(others[0][0] < smallest) if others else True,
    }


def aligned_components(nodes: tuple[Node, ...]) -> tuple[set[tuple[int, int]], set[int]]:
    return {(n.layer, n.head) for n in nodes if n.head is not None}, {
        n.layer for n in nodes if n.head is None
    }


def summarise_components(nodes: tuple[Node, ...], effects: dict[str, Tensor]) -> dict:
    """Largest |effect| of a non-aligned head and MLP, per way of patching, and the worst offender."""
    heads, mlps = aligned_components(nodes)
    worst: dict[str, object] = {}
    for key, grid in effects.items():
        if key.startswith("heads"):
            cand = [
                (abs(float(grid[layer, h])), f"L{layer}H{h}")
                for layer in range(grid.shape[0])
                for h in range(grid.shape[1])
                if (layer, h) not in heads
            ]
        else:
            cand = [
                (abs(float(grid[layer])), f"MLP{layer}")
                for layer in range(grid.shape[0])
                if layer not in mlps
            ]
        v, who = max(cand) if cand else (0.0, "-")
        worst[key] = {"max_abs_nonaligned": round(v, 4), "component": who}
    return worst


# --- edges with MLPs and the logits: path patching over every component --------------------------------

Component = tuple[int, int | None]
"""(layer, head) for a head, (layer, None) for the layer's MLP."""


def _out_hook(c: Component) -> str:
    return f"blocks.{c[0]}.attn.hook_z" if c[1] is not None else f"blocks.{c[0]}.hook_mlp_out"


def _in_hooks(c: Component | str) -> list[str]:
    if isinstance(c, str):  # "logits"
        return ["ln_final.hook_normalized"]
    layer, head = c
    if head is None:
        return [f"blocks.{layer}.ln2.hook_normalized"]
    return [f"blocks.{layer}.attn.hook_{x}" for x in ("q", "k", "v")]


def _precedes(s: Component, r: Component | str) -> bool:
    """Whether the sender's output reaches the receiver's input (a layer's heads feed its MLP)."""
    if isinstance(r, str):  # "logits"
        return True
    r_layer, r_head = r
    return s[0] < r_layer or (s[0] == r_layer and r_head is None and s[1] is not None)


def component_edge_scores(
    model: HookedTransformer,
    data: TaskDataset,
    senders: list[Component],
    receivers: list[Component | str],
    direction: str = "denoising",
) -> dict[tuple[Component, Component | str], float]:
    """Path patching (Wang et al. 2022; Goldowsky-Dill et al. 2023) of sender -> receiver for heads, MLPs
    and the logits, denoising, normalised by the clean - corrupted gap.

    Step 1 runs the corrupted prompts with the sender's output (``hook_z`` / ``hook_mlp_out``) from the
    clean run and every other head and MLP frozen at its corrupted value, and records the receiver's
    input (a head's q, k and v; an MLP's ``ln2.hook_normalized``; the final norm's output for the
    logits). Step 2 runs the corrupted prompts with only that input replaced. Equal to
    :func:`circuitkit.patching.path.path_patching` with ``freeze_mlps=True`` for head -> head edges.

    ``direction="noising"`` swaps the roles (the corrupted sender into the clean run, everything else
    frozen clean); its score is the share of the gap *removed*, so both directions are positive for an
    edge that carries the task. An AND-gated edge (the units digit counts only with the clean tens digit)
    shows in one direction only.
    """
    if direction not in ("denoising", "noising"):
        raise ValueError(f"direction must be 'denoising' or 'noising', got {direction!r}")
    dev = model.cfg.device
    clean, corrupted = data.clean_tokens.to(dev), data.corrupted_tokens.to(dev)
    if direction == "noising":
        clean, corrupted = corrupted, clean
    n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
    outs = {f"blocks.{layer}.attn.hook_z" for layer in range(n_l)} | {
        f"blocks.{layer}.hook_mlp_out" for layer in range(n_l)
    }
    with torch.no_grad():
        c_logits, c_cache = model.run_with_cache(clean, names_filter=lambda n: n in outs)
        t_logits, t_cache = model.run_with_cache(corrupted, names_filter=lambda n: n in outs)
        m_clean, m_corr = float(data.metric(c_logits)), float(data.metric(t_logits))
        scores = {}
        for s in senders:

            def freeze(act: Tensor, hook, s=s) -> Tensor:
                value = t_cache[hook.name].clone()
                if hook.name == _out_hook(s):
                    if s[1] is None:
                        value = c_cache[hook.name]
                    else:
                        value[:, :, s[1]] = c_cache[hook.name][:, :, s[1]]
                return value

            for r in receivers:
                if not _precedes(s, r):
                    continue
                recorded: dict[str, Tensor] = {}

                def record(act: Tensor, hook, recorded=recorded) -> Tensor:
                    recorded[hook.name] = act.clone()
                    return act

                ins = _in_hooks(r)
                model.run_with_hooks(
                    corrupted, fwd_hooks=[(n, freeze) for n in outs] + [(n, record) for n in ins]
                )

                def put(act: Tensor, hook, r=r, recorded=recorded) -> Tensor:
                    if r == "logits" or r[1] is None:  # type: ignore[index]
                        return recorded[hook.name]
                    act = act.clone()
                    act[:, :, r[1]] = recorded[hook.name][:, :, r[1]]  # type: ignore[index]
                    return act

                m = float(data.metric(model.run_with_hooks(corrupted, fwd_hooks=[(n, put) for n in ins])))
                scores[(s, r)] = (m - m_corr) / (m_clean - m_corr)
    del n_h
    return scores


def component_edge_report(nodes: tuple[Node, ...], edges: list[list[str]], scores: dict) -> dict:
    """Planted edges (node names, ``logits``) against every other scored component edge."""
    comp = {n.name: (n.layer, n.head) for n in nodes}
    comp["logits"] = "logits"  # type: ignore[assignment]
    planted = {(comp[a], comp[b]) for a, b in edges if a in comp and b in comp}

    def label(c) -> str:
        return c if c == "logits" else (f"L{c[0]}H{c[1]}" if c[1] is not None else f"MLP{c[0]}")

    planted_vals = {k: v for k, v in scores.items() if k in planted}
    # by score only: on ties the keys would be compared, and a head and "logits" do not order
    others = sorted(
        ((abs(v), k) for k, v in scores.items() if k not in planted), key=lambda x: x[0], reverse=True
    )
    smallest = min((abs(v) for v in planted_vals.values()), default=float("nan"))
    return {
        "planted": {f"{label(a)}->{label(b)}": round(v, 4) for (a, b), v in planted_vals.items()},
        "largest_unplanted": [
            {"edge": f"{label(a)}->{label(b)}", "abs_score": round(v, 4)} for v, (a, b) in others[:3]
        ],
        "n_edges_scored": len(scores),
        "all_planted_found": len(planted_vals) == len(planted),
        "all_planted_above_unplanted": bool(others[0][0] < smallest) if others else True,
    }


def all_components(model: HookedTransformer) -> list[Component]:
    out: list[Component] = []
    for layer in range(model.cfg.n_layers):
        out += [(layer, h) for h in range(model.cfg.n_heads)] + [(layer, None)]
    return out
