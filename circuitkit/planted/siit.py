"""Strict interchange intervention training (SIIT) of a small GPT-2-style transformer.

Gupta et al. 2024 ("InterpBench: semi-synthetic transformers for evaluating mechanistic
interpretability techniques", arXiv 2407.14494), building on interchange intervention training (IIT,
Geiger et al. 2022, "Inducing causal structure for interpretable neural networks"). Three losses on
task prompts, at the last position, against the high-level model's output distribution:

* **behaviour**: the plain forward pass matches the high-level output;
* **IIT**: run a *source* prompt, copy one aligned node's activation (a head's ``hook_z`` or an MLP's
  ``hook_mlp_out``, at the node's position) into the *base* prompt's run; the output must match the
  high-level model's output under the same intervention;
* **strictness**: resample-ablate non-aligned components (every position) and aligned components at
  their non-aligned positions (each independently with probability ``p_strict``); the output must stay
  the high-level output of the base prompt.

Natural-text next-token loss is mixed in (as for ck-tiny / ck-6l) so that the weights serve language
too; the planted circuit is what carries the task.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from circuitkit.models import corpus
from circuitkit.models.train import hooked_config
from circuitkit.planted.config import PlantedConfig
from circuitkit.planted.direct import (
    answer_basis,
    intermediate_heads,
    last_block_free,
    project_intermediate,
    project_last_block,
    project_value_reads,
    token_readers,
    value_read_basis,
)
from circuitkit.planted.graph import AlignedBatch, HighLevelModel, Node


def high_level(task: str, tokenizer, **extra) -> HighLevelModel:
    """The task's high-level causal model for a tokenizer."""
    if task == "ioi":
        from circuitkit.planted.ioi import IOIHighLevel

        return IOIHighLevel(tokenizer, **extra)
    from circuitkit.planted.greater_than import GreaterThanHighLevel

    return GreaterThanHighLevel(tokenizer, **extra)


# --- interventions ------------------------------------------------------------------------------------


def cache_components(model: HookedTransformer, tokens: Tensor) -> dict[str, Tensor]:
    """Every head's ``hook_z`` and every MLP's ``hook_mlp_out`` on ``tokens`` (no gradient)."""
    names = {f"blocks.{layer}.attn.hook_z" for layer in range(model.cfg.n_layers)}
    names |= {f"blocks.{layer}.hook_mlp_out" for layer in range(model.cfg.n_layers)}
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    return {k: v.detach() for k, v in cache.items()}


@dataclass
class PatchMasks:
    """Where to take source values, per layer: [batch, pos, head] masks for heads, [batch, pos] for MLPs."""

    heads: list[Tensor]
    mlps: list[Tensor]

    @classmethod
    def empty(cls, model: HookedTransformer, batch: int, pos: int) -> PatchMasks:
        dev = model.cfg.device
        n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
        return cls(
            [torch.zeros(batch, pos, n_h, dtype=torch.bool, device=dev) for _ in range(n_l)],
            [torch.zeros(batch, pos, dtype=torch.bool, device=dev) for _ in range(n_l)],
        )


def end_logits(
    model: HookedTransformer, tokens: Tensor, end: int, hooks: list[tuple[str, Callable]] | None = None
) -> Float[Tensor, "batch vocab"]:
    """Logits at position ``end`` only: the unembedding of the other positions is a third of a small
    model's forward pass and the SIIT losses never read it."""
    resid = model.run_with_hooks(tokens, fwd_hooks=hooks or [], stop_at_layer=model.cfg.n_layers)
    return model.unembed(model.ln_final(resid[:, end : end + 1]))[:, 0]


def patch_hooks(source: dict[str, Tensor], masks: PatchMasks) -> list[tuple[str, Callable]]:
    """Hooks that replace the masked head / MLP outputs by the source run's values."""
    hooks: list[tuple[str, Callable]] = []
    for layer in range(len(masks.heads)):
        if masks.heads[layer].any():
            name, m = f"blocks.{layer}.attn.hook_z", masks.heads[layer]
            hooks.append((name, lambda z, hook, m=m, s=source[name]: torch.where(m[..., None], s, z)))
        if masks.mlps[layer].any():
            name, m = f"blocks.{layer}.hook_mlp_out", masks.mlps[layer]
            hooks.append((name, lambda x, hook, m=m, s=source[name]: torch.where(m[..., None], s, x)))
    return hooks


def patched_logits(
    model: HookedTransformer, tokens: Tensor, source: dict[str, Tensor], masks: PatchMasks
) -> Float[Tensor, "batch pos vocab"]:
    """Forward ``tokens`` with the masked head / MLP outputs replaced by the source run's values."""
    return model.run_with_hooks(tokens, fwd_hooks=patch_hooks(source, masks))


def iit_masks(
    model: HookedTransformer, nodes: tuple[Node, ...], batch: AlignedBatch, node: Tensor
) -> PatchMasks:
    """Row ``i`` patches node ``node[i]`` at its position (``-1``: nothing)."""
    masks = PatchMasks.empty(model, len(batch), batch.tokens.shape[1])
    for k, n in enumerate(nodes):
        rows = node == k
        pos = batch.positions[n.position]
        if n.head is not None:
            masks.heads[n.layer][rows, pos, n.head] = True
        else:
            masks.mlps[n.layer][rows, pos] = True
    return masks


def strict_masks(
    model: HookedTransformer,
    nodes: tuple[Node, ...],
    batch: AlignedBatch,
    p: float,
    generator: torch.Generator,
    p_max: float | None = None,
    p_mlp: float | None = None,
) -> PatchMasks:
    """Each non-aligned component (each aligned one off its position) ablated per row with probability p
    (``p_mlp`` for MLPs when given).

    With ``p_max``, each row draws its own probability uniformly from [p, p_max]: rows near p_max ablate
    almost every non-aligned component at once, so a task signal copied redundantly by several of them
    (a vote that survives any single ablation) is still penalised."""
    b, pos = batch.tokens.shape
    n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
    p_row = torch.full((b,), p) if p_max is None else p + (p_max - p) * torch.rand(b, generator=generator)
    p_row_mlp = p_row if p_mlp is None else torch.full((b,), p_mlp)
    draw_h = torch.rand(n_l, b, n_h, generator=generator) < p_row[None, :, None]
    draw_m = torch.rand(n_l, b, generator=generator) < p_row_mlp[None, :]
    heads = [draw_h[layer][:, None, :].expand(b, pos, n_h).clone() for layer in range(n_l)]
    mlps = [draw_m[layer][:, None].expand(b, pos).clone() for layer in range(n_l)]
    for n in nodes:  # an aligned component keeps its own position
        if n.head is not None:
            heads[n.layer][:, batch.positions[n.position], n.head] = False
        else:
            mlps[n.layer][:, batch.positions[n.position]] = False
    dev = model.cfg.device
    return PatchMasks([h.to(dev) for h in heads], [m.to(dev) for m in mlps])


def single_masks(
    model: HookedTransformer,
    nodes: tuple[Node, ...],
    batch: AlignedBatch,
    generator: torch.Generator,
    weights: Tensor | None = None,
) -> tuple[PatchMasks, Tensor]:
    """Row ``i`` resample-ablates one non-aligned head or MLP, drawn uniformly (or per ``weights``, one
    non-negative number per component in the pick order below), at every position: the intervention
    validation bounds (one component at a time). Returns the masks and each row's pick (index into the
    heads ``layer * n_heads + head`` first, then the MLPs ``n_layers * n_heads + layer``)."""
    b, pos = batch.tokens.shape
    n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
    heads = {(n.layer, n.head) for n in nodes if n.head is not None}
    mlps = {n.layer for n in nodes if n.head is None}
    cand = [l_ * n_h + h for l_ in range(n_l) for h in range(n_h) if (l_, h) not in heads]
    cand += [n_l * n_h + l_ for l_ in range(n_l) if l_ not in mlps]
    if not cand:
        raise ValueError("single-component strictness needs a non-aligned component; every one is aligned")
    if weights is None:
        pick = torch.tensor(cand)[torch.randint(0, len(cand), (b,), generator=generator)]
    else:
        w = weights.detach().float().cpu()[cand]
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError("single_masks: weights must be non-negative with a positive non-aligned sum")
        pick = torch.tensor(cand)[torch.multinomial(w, b, replacement=True, generator=generator)]
    masks = PatchMasks.empty(model, b, pos)
    pick = pick.to(masks.mlps[0].device)
    for layer in range(n_l):
        for h in range(n_h):
            masks.heads[layer][pick == layer * n_h + h, :, h] = True
        masks.mlps[layer][pick == n_l * n_h + layer, :] = True
    return masks, pick


def children(nodes: tuple[Node, ...], k: int) -> list[int]:
    """Indices of the nodes that read node ``k`` (its planted out-edges to other nodes)."""
    return [j for j, n in enumerate(nodes) if nodes[k].name in n.reads]


def blocked_iit(
    model: HookedTransformer,
    nodes: tuple[Node, ...],
    base: AlignedBatch,
    node: Tensor,
    generator: torch.Generator,
    p_block: float,
    p_freeze: float,
) -> tuple[PatchMasks, Tensor]:
    """What an IIT row freezes at the *base* run's values besides the intervention, and which rows are
    blocked.

    * blocked rows (probability ``p_block``, nodes that have children): every child of the intervened
      node keeps its base value, so the intervention can reach the output only through a path the
      high-level model does not have; the target is the base output. This trains away skip edges (a
      head read directly by a later MLP that should read it only through the node in between), which
      single-node interventions and strictness leave alone and path patching finds.
    * every non-aligned component (and aligned one off its position) is frozen at its base value with
      probability ``p_freeze``, so an intervention may not travel through a non-aligned relay.
    """
    b, pos = base.tokens.shape
    masks = (
        strict_masks(model, nodes, base, p_freeze, generator)
        if p_freeze > 0
        else PatchMasks.empty(model, b, pos)
    )
    blocked = torch.zeros(b, dtype=torch.bool)
    if p_block > 0:
        draw = torch.rand(b, generator=generator) < p_block
        node_cpu = node.cpu()
        for k in range(len(nodes)):
            kids = children(nodes, k)
            rows = draw & (node_cpu == k)
            if not kids or not rows.any():
                continue
            blocked |= rows
            for j in kids:
                n = nodes[j]
                rr = rows.to(model.cfg.device)
                if n.head is not None:
                    masks.heads[n.layer][rr, base.positions[n.position], n.head] = True
                else:
                    masks.mlps[n.layer][rr, base.positions[n.position]] = True
    return masks, blocked.to(model.cfg.device)


def merge_patches(
    source: dict[str, Tensor], source_masks: PatchMasks, base: dict[str, Tensor], base_masks: PatchMasks
) -> tuple[dict[str, Tensor], PatchMasks]:
    """One cache and mask set that takes the source's value where ``source_masks`` is set and else the
    base run's value where ``base_masks`` is set (the source wins where both are)."""
    cache, heads, mlps = {}, [], []
    for layer, (sm, bm) in enumerate(zip(source_masks.heads, base_masks.heads, strict=True)):
        name = f"blocks.{layer}.attn.hook_z"
        cache[name] = torch.where(sm[..., None], source[name], base[name])
        heads.append(sm | bm)
    for layer, (sm, bm) in enumerate(zip(source_masks.mlps, base_masks.mlps, strict=True)):
        name = f"blocks.{layer}.hook_mlp_out"
        cache[name] = torch.where(sm[..., None], source[name], base[name])
        mlps.append(sm | bm)
    return cache, PatchMasks(heads, mlps)


def with_pairs(
    hl: HighLevelModel, base: AlignedBatch, source: AlignedBatch, p: float, generator: torch.Generator
) -> AlignedBatch:
    """``source`` with a share ``p`` of its rows replaced by the base rows' minimal pairs (the high-level
    model's ``counterfactual``), row for row."""
    make = getattr(hl, "counterfactual", None)
    if make is None:
        raise ValueError(
            f"p_pair needs a high-level model with minimal pairs; {hl.task!r} has none: set p_pair=0"
        )
    pair = make(base, generator)
    rows = (torch.rand(len(base), generator=generator) < p).to(base.tokens.device)
    return select_rows(rows, pair, source)


def logit_pair(hl: HighLevelModel, batch: AlignedBatch) -> Tensor:
    """The high-level model's ``logit_pair`` (the two tokens whose logit difference is the task metric)."""
    make = getattr(hl, "logit_pair", None)
    if make is None:
        raise ValueError(
            f"w_logit_diff needs a high-level model with a logit pair; {hl.task!r} has none: "
            "set w_logit_diff=0"
        )
    return make(batch)


def pair_rows(nodes: tuple[Node, ...], pair_nodes: tuple[str, ...], node: Tensor) -> Tensor:
    """Rows whose IIT intervention is on one of ``pair_nodes`` (by name)."""
    names = [n.name for n in nodes]
    unknown = set(pair_nodes) - set(names)
    if unknown:
        raise ValueError(f"pair_nodes {sorted(unknown)} are not aligned nodes; choose from {names}")
    keep = torch.tensor([n in pair_nodes for n in names], device=node.device)
    return keep[node.clamp_min(0)] & (node >= 0)


def merge_cache_rows(rows: Tensor, a: dict[str, Tensor], b: dict[str, Tensor]) -> dict[str, Tensor]:
    """Row ``i`` of each cached activation from ``a`` where ``rows[i]``, else from ``b`` (same keys)."""
    return {k: torch.where(rows.view(-1, *[1] * (x.ndim - 1)), a[k], x) for k, x in b.items()}


def select_rows(rows: Tensor, a: AlignedBatch, b: AlignedBatch) -> AlignedBatch:
    """Row ``i`` of ``a`` where ``rows[i]``, else of ``b`` (same layout: ``b``'s positions are kept)."""
    return AlignedBatch(
        torch.where(rows[:, None], a.tokens, b.tokens),
        dict(b.positions),
        {k: torch.where(rows, a.variables[k], x) for k, x in b.variables.items()},
        b.layout,
    )


def logit_match(
    logits: Float[Tensor, "batch vocab"],
    reference: Float[Tensor, "batch vocab"],
    target: Float[Tensor, "batch vocab"],
) -> Tensor:
    """Squared difference of ``logits`` and ``reference``, each centred over the tokens any row of
    ``target`` puts mass on, summed over those tokens, averaged over rows: zero exactly when every logit
    difference between answer tokens is unchanged (the softmax ignores a shift common to all)."""
    cols = (target > 0).any(0)
    a, b = logits[:, cols].float(), reference[:, cols].float()
    d = (a - a.mean(-1, keepdim=True)) - (b - b.mean(-1, keepdim=True))
    return d.pow(2).sum(-1).mean()


def logit_diff_match(
    logits: Float[Tensor, "batch vocab"],
    reference: Float[Tensor, "batch vocab"],
    pair: Int[Tensor, "batch 2"],
    per_row: bool = False,
) -> Tensor:
    """Mean over rows (``per_row``: each row's value) of the squared change of ``logits[a] - logits[b]``
    from ``reference``'s, with ``(a, b) = pair[row]``: zero exactly when each row's task logit
    difference is unchanged."""
    sq = pair_change(logits, reference, pair).pow(2)
    return sq if per_row else sq.mean()


def pair_change(
    logits: Float[Tensor, "batch vocab"],
    reference: Float[Tensor, "batch vocab"],
    pair: Int[Tensor, "batch 2"],
) -> Float[Tensor, " batch"]:
    """Each row's signed change of ``logits[a] - logits[b]`` from ``reference``'s, ``(a, b) = pair[row]``."""
    rows = torch.arange(len(pair), device=pair.device)

    def diff(x: Tensor) -> Tensor:
        return x[rows, pair[:, 0]].float() - x[rows, pair[:, 1]].float()

    return diff(logits) - diff(reference)


def component_mean_change(
    logits: Float[Tensor, "batch vocab"],
    reference: Float[Tensor, "batch vocab"],
    pair: Int[Tensor, "batch 2"],
    pick: Int[Tensor, " batch"],
) -> Tensor:
    """Sum over the picked components of (their share of rows) x (mean signed change of the task logit
    difference over their rows)^2: what validation measures (a component's mean effect over prompts),
    without penalising row-to-row scatter that averages out."""
    d = pair_change(logits, reference, pair)
    pick = pick.to(d.device)
    n = int(pick.max()) + 1
    counts = torch.bincount(pick, minlength=n).float()
    means = torch.zeros(n, device=d.device).index_add(0, pick, d) / counts.clamp_min(1)
    return (counts / len(d) * means.pow(2)).sum()


def single_loss(
    cfg: PlantedConfig,
    logits: Float[Tensor, "batch vocab"],
    reference: Float[Tensor, "batch vocab"],
    pair: Int[Tensor, "batch 2"],
    pick: Int[Tensor, " batch"],
    soft: Bool[Tensor, " batch"] | None,
) -> Tensor:
    """Single-component strictness as the recipe asks: every row's squared change, each component's
    mean change (``single_mean``) or means on the split rows only (``single_soft_mean``); in shares of
    the batch's mean reference logit difference (``single_relative``). Whether ``reference`` carries a
    gradient (``single_live``) is the caller's choice."""
    if cfg.single_mean:
        loss = component_mean_change(logits, reference, pair, pick)
    elif cfg.single_soft_mean:
        if soft is None:
            raise ValueError("single_soft_mean needs the split rows (soft)")
        loss = split_change_loss(logits, reference, pair, pick, soft)
    else:
        loss = logit_diff_match(logits, reference, pair)
    if cfg.single_relative:
        gap = pair_change(reference, torch.zeros_like(reference), pair).mean().clamp_min(1.0)
        loss = loss / gap.pow(2)
    return loss


def split_change_loss(
    logits: Float[Tensor, "batch vocab"],
    reference: Float[Tensor, "batch vocab"],
    pair: Int[Tensor, "batch 2"],
    pick: Int[Tensor, " batch"],
    soft: Bool[Tensor, " batch"],
) -> Tensor:
    """Squared change of the logit difference on the ``~soft`` rows (summed, over all rows) plus, over
    the ``soft`` rows, :func:`component_mean_change` weighted by their share of rows."""
    sq = logit_diff_match(logits, reference, pair, per_row=True)
    hard = torch.where(soft, torch.zeros_like(sq), sq).mean()
    if not soft.any():
        return hard
    share = soft.float().mean()
    return hard + share * component_mean_change(logits[soft], reference[soft], pair[soft], pick[soft])


def soft_cross_entropy(logits: Float[Tensor, "batch vocab"], target: Float[Tensor, "batch vocab"]) -> Tensor:
    """KL(target || softmax(logits)) averaged over rows (cross-entropy minus the target's entropy)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    ent = torch.where(target > 0, target * target.clamp_min(1e-12).log(), torch.zeros_like(target)).sum(-1)
    return (ent - (target * logp).sum(-1)).mean()


# --- training -----------------------------------------------------------------------------------------


def _lr_at(step: int, cfg: PlantedConfig) -> float:
    import math

    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def strict_scale(step: int, cfg: PlantedConfig) -> float:
    """The strictness curriculum: 0 before ``strict_start``, then a linear ramp to 1 over ``strict_ramp``."""
    if step < cfg.strict_start:
        return 0.0
    if cfg.strict_ramp <= 0:
        return 1.0
    return min(1.0, (step - cfg.strict_start + 1) / cfg.strict_ramp)


def sample_nodes(cfg: PlantedConfig, n_nodes: int, batch: int, generator: torch.Generator) -> Tensor:
    """Which aligned node each row's IIT intervention patches (uniform, or per ``iit_node_weights``)."""
    if cfg.iit_node_weights is None:
        return torch.randint(0, n_nodes, (batch,), generator=generator)
    w = torch.tensor(cfg.iit_node_weights, dtype=torch.float)
    if len(w) != n_nodes or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"iit_node_weights needs {n_nodes} non-negative weights, got {cfg.iit_node_weights}")
    return torch.multinomial(w, batch, replacement=True, generator=generator)


def attention_hooks(
    nodes: tuple[Node, ...], batch: AlignedBatch, store: dict[str, Tensor]
) -> list[tuple[str, Callable]]:
    """Hooks that record each aligned head's attention pattern (over keys) at its own position."""
    hooks: list[tuple[str, Callable]] = []
    for n in nodes:
        if n.head is None:
            continue
        q = batch.positions[n.position]

        def keep(pattern: Tensor, hook, n=n, q=q) -> Tensor:
            store[n.name] = pattern[:, n.head, q]
            return pattern

        hooks.append((f"blocks.{n.layer}.attn.hook_pattern", keep))
    return hooks


def sink_hooks(
    model: HookedTransformer, nodes: tuple[Node, ...], batch: AlignedBatch, at: tuple[str, ...], store: list
) -> list[tuple[str, Callable]]:
    """Hooks that record, for every non-aligned head below a token reader (:func:`token_readers`), the
    attention to BOS (key 0) at the named positions ``at``: ``store`` gets one [batch, head, pos] tensor
    per layer."""
    readers = token_readers(nodes)
    if not at or not readers:
        return []
    unknown = set(at) - set(batch.positions)
    if unknown:
        raise ValueError(
            f"sink_positions {sorted(unknown)} are not positions of the task: {sorted(batch.positions)}"
        )
    aligned = {(n.layer, n.head) for n in nodes if n.head is not None}
    q = [batch.positions[p] for p in at]
    hooks: list[tuple[str, Callable]] = []
    for layer in range(max(n.layer for n in readers)):
        heads = [h for h in range(model.cfg.n_heads) if (layer, h) not in aligned]

        def keep(pattern: Tensor, hook, heads=heads) -> Tensor:
            store.append(pattern[:, heads][:, :, q, 0])
            return pattern

        if heads:
            hooks.append((f"blocks.{layer}.attn.hook_pattern", keep))
    return hooks


def attention_loss(patterns: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
    """Mean over aligned heads of the cross-entropy of the attention pattern to the target pattern."""
    terms = [
        -(targets[k] * patterns[k].float().clamp_min(1e-9).log()).sum(-1).mean()
        for k in patterns
        if k in targets
    ]
    return torch.stack(terms).mean()


def init_from_builtin(model: HookedTransformer, name: str) -> None:
    """Copy a built-in model's (or a model folder's) embeddings, unembedding, final norm and first blocks
    into ``model``."""
    from pathlib import Path

    from circuitkit.models import zoo

    folder = Path(name) if zoo.is_model_dir(Path(name)) else zoo.builtin_dir(name)
    donor = zoo.read_model_dir(folder, model.cfg.device).state_dict()
    own = model.state_dict()
    keep = {
        k: v.float()
        for k, v in donor.items()
        if k in own and (not k.startswith("blocks.") or int(k.split(".")[1]) < model.cfg.n_layers)
    }
    bad = [k for k, v in keep.items() if v.shape != own[k].shape]
    if bad:
        raise ValueError(f"init_from={name!r}: shapes differ for {bad[:4]}; use the donor's widths")
    model.load_state_dict(keep, strict=False)


@dataclass
class TrainedPlanted:
    model: HookedTransformer
    tokenizer: object
    high_level: HighLevelModel
    stats: dict


def train_planted(
    cfg: PlantedConfig,
    tokenizer,
    *,
    progress: bool = True,
    log_every: int = 50,
    log: Callable[[str], None] | None = None,
    on_step: Callable[[int, HookedTransformer], None] | None = None,
    init: HookedTransformer | None = None,
) -> TrainedPlanted:
    """Train a model per ``cfg`` with the three SIIT losses plus natural text (CPU, or CUDA if present).

    ``log`` receives a line of smoothed losses every ``log_every`` steps; ``on_step(step, model)`` is
    called after every step (checkpoints); ``init`` starts from that model's weights (a fine-tuning
    phase: same architecture)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    rng = random.Random(cfg.seed + 1)
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    hl = high_level(cfg.task, tokenizer, **cfg.extra)
    paragraphs, text_meta = corpus.load_text(cfg.text_dir, cfg.max_text_chars)
    bos = tokenizer.bos_token_id
    stream = torch.tensor(
        [t for ids in tokenizer(paragraphs, add_special_tokens=False)["input_ids"] for t in [*ids, bos]]
    )
    model = HookedTransformer(hooked_config(cfg, len(tokenizer), device))
    if cfg.init_from:
        init_from_builtin(model, cfg.init_from)
    if init is not None:
        model.load_state_dict(init.state_dict())
    answers = hl.answer_ids().to(device) if cfg.project_last or cfg.project_intermediate else None

    def project() -> None:
        if cfg.project_values:
            project_value_reads(model, hl.nodes, cfg.project_values_mlps, cfg.project_values_rate)
        if cfg.project_last:
            project_last_block(model, hl.nodes, answers)
        if cfg.project_intermediate:
            project_intermediate(model, hl.nodes, answers)

    project()
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "pos" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    ema: dict[str, float] = {}
    # per component (single_masks' pick order): running mean squared change of the task logit difference
    focus = torch.ones(cfg.n_layers * cfg.n_heads + cfg.n_layers)
    free = torch.ones_like(focus)  # 1 for the non-aligned components
    for n in hl.nodes:
        n_h, n_l = cfg.n_heads, cfg.n_layers
        free[n.layer * n_h + n.head if n.head is not None else n_l * n_h + n.layer] = 0
    bar = tqdm(range(cfg.steps), desc=f"SIIT {cfg.name}", disable=not progress, unit="step")
    for step in bar:
        base = hl.sample(rng, cfg.batch).to(device)
        source = hl.sample(rng, cfg.batch, template=base.layout).permuted(gen).to(device)
        independent = source
        if cfg.p_pair > 0:
            source = with_pairs(hl, base, source, cfg.p_pair, gen)
        end = base.positions["end"]
        src_cache = cache_components(model, source.tokens)
        model.train()
        node = sample_nodes(cfg, len(hl.nodes), cfg.batch, gen).to(device)
        patterns: dict[str, Tensor] = {}
        attn = attention_hooks(hl.nodes, base, patterns) if cfg.w_attn > 0 else []
        sinks: list[Tensor] = []
        if cfg.w_sink > 0:
            attn = attn + sink_hooks(model, hl.nodes, base, cfg.sink_positions, sinks)
        iit_source, iit_src_cache = source, src_cache
        ind_cache: dict[str, Tensor] | None = None
        if cfg.p_pair > 0 and cfg.pair_nodes is not None:
            paired = pair_rows(hl.nodes, cfg.pair_nodes, node)
            iit_source = select_rows(paired, source, independent)
            ind_cache = cache_components(model, independent.tokens)
            iit_src_cache = merge_cache_rows(paired, src_cache, ind_cache)
        iit_cache, iit_mask = iit_src_cache, iit_masks(model, hl.nodes, base, node)
        iit_target = hl.output(base, iit_source, node)
        if cfg.p_block > 0 or cfg.p_freeze > 0:
            frozen, blocked = blocked_iit(model, hl.nodes, base, node, gen, cfg.p_block, cfg.p_freeze)
            iit_cache, iit_mask = merge_patches(
                iit_src_cache, iit_mask, cache_components(model, base.tokens), frozen
            )
            iit_target = torch.where(blocked[:, None], hl.output(base), iit_target)
        base_target = hl.output(base)
        base_logits = end_logits(model, base.tokens, end, attn)
        losses = {
            "behaviour": soft_cross_entropy(base_logits, base_target),
            "iit": soft_cross_entropy(
                end_logits(model, base.tokens, end, patch_hooks(iit_cache, iit_mask)), iit_target
            ),
        }
        s_scale = strict_scale(step, cfg)
        with torch.set_grad_enabled(s_scale > 0):  # before the curriculum adds it: measured, not trained
            strict_logits = end_logits(
                model,
                base.tokens,
                end,
                patch_hooks(
                    src_cache,
                    strict_masks(
                        model, hl.nodes, base, cfg.p_strict, gen, cfg.p_strict_max, cfg.p_strict_mlp
                    ),
                ),
            )
            losses["strict"] = soft_cross_entropy(strict_logits, base_target)
            if cfg.w_logit > 0:
                losses["logit"] = logit_match(strict_logits, base_logits.detach(), base_target)
            if cfg.w_logit_diff > 0:
                pair = logit_pair(hl, base)
                losses["logit_diff"] = logit_diff_match(strict_logits, base_logits.detach(), pair)
            if cfg.w_single > 0:
                single_cache = src_cache
                if cfg.single_independent > 0 and independent is not source:
                    own = (torch.rand(cfg.batch, generator=gen) < cfg.single_independent).to(device)
                    if ind_cache is None:
                        ind_cache = cache_components(model, independent.tokens)
                    single_cache = merge_cache_rows(own, ind_cache, src_cache)
                weights = None
                if cfg.single_focus > 0:  # part of the rows go to the components that still matter most
                    weights = (1 - cfg.single_focus) * free / free.sum() + cfg.single_focus * (
                        focus * free / (focus * free).sum()
                    )
                # live: the unablated run keeps its gradient, so growing every logit does not pay
                single_base, ref = base, (base_logits if cfg.single_live else base_logits.detach())
                if cfg.single_swap > 0:  # swapped rows: the source prompt with the base's component
                    swap = (torch.rand(cfg.batch, generator=gen) < cfg.single_swap).to(device)
                    single_base = select_rows(swap, source, base)
                    base_cache = cache_components(model, base.tokens)
                    single_cache = merge_cache_rows(swap, base_cache, single_cache)
                    with torch.no_grad():
                        ref = torch.where(swap[:, None], end_logits(model, source.tokens, end), ref)
                single, pick = single_masks(model, hl.nodes, single_base, gen, weights)
                single_logits = end_logits(model, single_base.tokens, end, patch_hooks(single_cache, single))
                pair = logit_pair(hl, single_base)
                sq = logit_diff_match(single_logits, ref, pair, per_row=True)
                soft = None  # the split rows (IOI's ABC prompts), only where single_soft_mean reads them
                if cfg.single_soft_mean:
                    soft = hl.output(single_base).max(-1).values < 1 - 1e-6
                losses["single"] = single_loss(cfg, single_logits, ref, pair, pick, soft)
                with torch.no_grad():  # running mean squared change per component
                    pick = pick.to(sq.device)
                    for c in pick.unique().tolist():
                        focus[c] = 0.9 * focus[c] + 0.1 * float(sq[pick == c].mean())
        loss = (
            cfg.w_behaviour * losses["behaviour"]
            + cfg.w_iit * losses["iit"]
            + cfg.w_strict * s_scale * losses["strict"]
        )
        if cfg.w_logit > 0:
            loss = loss + cfg.w_logit * s_scale * losses["logit"]
        if cfg.w_logit_diff > 0:
            loss = loss + cfg.w_logit_diff * s_scale * losses["logit_diff"]
        if cfg.w_single > 0:
            loss = loss + cfg.w_single * s_scale * losses["single"]
        if cfg.w_attn > 0:
            losses["attn"] = attention_loss(patterns, hl.attention_targets(base))  # type: ignore[attr-defined]
            loss = loss + cfg.w_attn * losses["attn"]
        if sinks:
            losses["sink"] = -torch.cat([x.flatten() for x in sinks]).float().clamp_min(1e-9).log().mean()
            loss = loss + cfg.w_sink * losses["sink"]
        if step % cfg.text_every == 0:
            starts = torch.randint(0, len(stream) - cfg.n_ctx, (cfg.text_batch,), generator=gen)
            rows = torch.stack([stream[s : s + cfg.n_ctx - 1] for s in starts])
            tokens = torch.cat([torch.full((cfg.text_batch, 1), bos), rows], dim=1).to(device)
            losses["text"] = model(tokens, return_type="loss")
            loss = loss + cfg.w_text * losses["text"]
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        project()
        for k, v in losses.items():
            v = float(v.detach())
            ema[k] = v if k not in ema else 0.95 * ema[k] + 0.05 * v
        if step % 10 == 0:
            bar.set_postfix({k: f"{v:.3f}" for k, v in ema.items()})
        if log is not None and (step % log_every == 0 or step == cfg.steps - 1):
            log(
                f"step {step} "
                + " ".join(f"{k}={v:.4f}" for k, v in ema.items())
                + f" t={time.time() - t0:.0f}s"
            )
        if on_step is not None:
            on_step(step, model)
    model.eval()
    stats = {
        "steps": cfg.steps,
        "final_losses_ema": {k: round(v, 4) for k, v in ema.items()},
        "seconds": round(time.time() - t0, 1),
        "device": device,
        "threads": torch.get_num_threads(),  # CPU float sums depend on it: what reproduces the weights
        "torch": torch.__version__,
        "corpus": {**text_meta, "text_stream_tokens": len(stream), "text_every": cfg.text_every},
    }
    if cfg.project_values:
        stats["project_values"] = {
            "readers": [n.label for n in token_readers(hl.nodes)],
            "directions": int(value_read_basis(model, token_readers(hl.nodes)).shape[1]),
            "rate": cfg.project_values_rate,
            "mlps": cfg.project_values_mlps,
            # rate 0 only measures: the largest share of a relay's output weights still in the read space
            "left_in_read_space": round(
                project_value_reads(model, hl.nodes, cfg.project_values_mlps, rate=0.0), 4
            ),
        }
    if cfg.project_intermediate:
        stats["project_intermediate"] = [n.label for n in intermediate_heads(hl.nodes)]
    if cfg.project_last:
        stats["project_last"] = {
            "components": last_block_free(model, hl.nodes),
            "answer_tokens": len(answers),
            "directions": int(answer_basis(model, answers).shape[1]),
        }
    if cfg.w_single > 0:  # which non-aligned components were still hard to silence at the end
        n_h, n_l = cfg.n_heads, cfg.n_layers
        labels = [f"L{i // n_h}H{i % n_h}" for i in range(n_l * n_h)] + [f"MLP{i}" for i in range(n_l)]
        stats["single_sq_change_ema"] = {
            lab: round(float(f), 4) for lab, f, keep in zip(labels, focus, free, strict=True) if keep
        }
    return TrainedPlanted(model=model, tokenizer=tokenizer, high_level=hl, stats=stats)


def recipe_dict(cfg: PlantedConfig) -> dict:
    return asdict(cfg)
