"""Exact activation patching (Meng et al. 2022; Wang et al. 2022; Heimersheim & Nanda 2024).

For each component, overwrite its activation in a *target* run with a *source* value and measure the
metric. Denoising: target = corrupted run, source = clean activations; noising: the reverse. Ablations
replace the source by zero, by the mean over prompts, or by a shuffled (resampled) prompt's activation.

Speed comes from computing only what a patch can change and the metric can read:

- the components of one layer are patched together, one copy per component stacked on the batch axis;
- a pass starts at the patched layer from the target run's residual stream (earlier layers are unchanged);
- a patch at position p leaves positions < p unchanged (causal attention), so those positions are not
  recomputed: attention reads their keys and values from the target run; and where the value written
  equals the target's own (the clean and corrupted prompts' shared prefix) a patch changes nothing, so
  sweeps start at the first position where the two runs differ;
- a metric that reads only the last position (every ``TaskDataset`` metric) gets the last layer's
  queries, MLP and unembedding at that position alone.

Numbers equal ``transformer_lens.patching`` on the same inputs up to float rounding (the tests check it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer
from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry
from transformer_lens.utilities import apply_softcap
from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

from circuitkit.components import Family, get_family
from circuitkit.patching.common import (  # noqa: F401  (Metric, check_metric: imported from here elsewhere)
    Ablation,
    Direction,
    Metric,
    attention_mask,
    check_metric,
    hook_names,
    metric_logits,
    reads_last_position_only,
    resample_permutation,
    shortformer_pos_embed,
    source_values,
    target_and_source,
)


@dataclass
class PatchingResult:
    """Metric after patching each component, on a grid whose axes are ``dims``."""

    family: str
    dims: tuple[str, ...]
    scores: Tensor
    baseline_target: float
    """Metric of the unpatched target run (corrupted when denoising)."""
    baseline_source: float
    """Metric of the unpatched source run (clean when denoising)."""
    provenance: dict = field(default_factory=dict)

    def normalized(self) -> Tensor:
        """(m - m_target) / (m_source - m_target): 1 where patching one component restores everything."""
        return (self.scores - self.baseline_target) / (self.baseline_source - self.baseline_target)

    def effects(self) -> Tensor:
        """m_patched - m_target: the change each patch makes, the quantity AtP / RelP / IG estimate."""
        return self.scores - self.baseline_target


def _components(family: Family, n_heads: int, seq_len: int) -> list[tuple[int | None, int | None]]:
    """(head, pos) per component of one layer, in grid order."""
    heads = range(n_heads) if family.head_axis is not None else [None]
    poss = range(seq_len) if family.pos_axis is not None else [None]
    if family.dims[1:] == ("pos", "head"):
        return [(h, p) for p in poss for h in heads]
    return [(h, p) for h in heads for p in poss]


def _mask(family: Family, act_shape: torch.Size, comps, device) -> Tensor:
    """Boolean [n_copies, *act_shape[1:]] mask: True where copy c takes the source value."""
    mask = torch.zeros((len(comps), *act_shape[1:]), dtype=torch.bool, device=device)
    for c, (h, p) in enumerate(comps):
        index: list = [c] + [slice(None)] * (len(act_shape) - 1)
        if family.pos_axis is not None:
            index[family.pos_axis] = p
        if family.head_axis is not None:
            index[family.head_axis] = h
        mask[tuple(index)] = True
    return mask


def activation_patching(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    family: str = "head",
    *,
    direction: Direction = "denoising",
    ablation: Ablation = "patch",
    layers: list[int] | None = None,
    max_batch: int = 2048,
    max_tokens: int | None = None,
    last_position_only: bool | None = None,
    seed: int = 0,
    progress: bool = False,
) -> PatchingResult:
    """Patch every component of ``family`` one at a time and return the metric for each.

    Args:
        metric: maps logits ``[batch, pos, vocab]`` to a scalar (e.g. ``TaskDataset.metric``).
        family: a key of :data:`circuitkit.components.FAMILIES` (``head``, ``resid_pre``, ``mlp_out`` ...).
        direction: ``denoising`` runs the corrupted prompts and patches in clean values; ``noising`` the
            reverse.
        ablation: ``patch`` (values from the other run), ``zero``, ``mean`` (mean over prompts of the
            other run) or ``resample`` (the other run's value from a shuffled prompt).
        max_batch: most sequences in one forward pass (copies x prompts); lower it to save memory.
        max_tokens: most token positions in one forward pass (default 8192 on a CPU, where larger
            passes thrash the caches, and 16384 on a GPU, where full-vocabulary logits bound it).
        last_position_only: the metric reads only the logits of the last position, so the last layer and
            the unembedding run there alone and position patches reuse the unchanged earlier positions.
            ``None`` detects it: metrics marked with :func:`circuitkit.tasks.metrics.last_position_metric`
            (every ``TaskDataset`` metric) read only the last position. ``False`` always computes every
            position (needed by a metric that reads other positions).
    Returns:
        :class:`PatchingResult` with ``scores`` of shape ``[n_layers, ...]`` per ``family.dims``.
    """
    fam = get_family(family)
    target, source = target_and_source(model, clean_tokens, corrupted_tokens, direction, ablation)
    device = model.cfg.device
    layers = list(range(model.cfg.n_layers)) if layers is None else layers
    hooks = hook_names(model, [family], layers)
    if max_tokens is None:
        max_tokens = 8192 if torch.device(device).type == "cpu" else 16384
    last_only = reads_last_position_only(metric) if last_position_only is None else last_position_only
    runner = _Runner(model, last_only, target)
    # Reusing the unchanged positions before a patch needs the target run's keys and values.
    reuse_prefix = last_only and runner.standard
    resid_names = {f"blocks.{layer}.hook_resid_pre" for layer in layers} | set(hooks)
    if reuse_prefix:
        for layer in range(min(layers), model.cfg.n_layers):
            resid_names |= {f"blocks.{layer}.attn.hook_k", f"blocks.{layer}.attn.hook_v"}

    with torch.no_grad():
        src_logits, src_cache = model.run_with_cache(source, names_filter=lambda n: n in hooks)
        tgt_logits, tgt_cache = model.run_with_cache(target, names_filter=lambda n: n in resid_names)
        base_src = float(check_metric(metric(src_logits)))
        base_tgt = float(check_metric(metric(tgt_logits)))
        del src_logits, tgt_logits
        batch, seq_len = target.shape
        perm = resample_permutation(batch, seed, device)
        comps = _components(fam, model.cfg.n_heads, seq_len)
        per_layer: list[Tensor] = []
        bar = tqdm(total=len(layers) * len(comps), desc=f"patch {family}", disable=not progress)
        for layer, hook in zip(layers, hooks, strict=True):
            value = source_values(src_cache[hook], ablation, perm)
            # Where the written value equals the target's own (the prompts' shared prefix, when patching
            # in the other run's values), a patch changes nothing: the metric stays at the baseline.
            first = _first_change(value, tgt_cache[hook], _seq_axis(fam))
            scores = torch.full((len(comps),), base_tgt, dtype=torch.float64)
            chunks = _chunks(
                comps, batch, seq_len, max_batch, max_tokens, first=first, reuse_prefix=reuse_prefix
            )
            bar.update(len(comps) - sum(len(idx) for idx, _ in chunks))
            for idx, start in chunks:
                chunk = [comps[i] for i in idx]
                n = len(chunk)
                patch_hook = _patch_hook(fam, chunk, value, batch, start)
                resid = tgt_cache[f"blocks.{layer}.hook_resid_pre"][:, start:].repeat(n, 1, 1)
                prefix = _prefix(model, tgt_cache, layer, start) if start > 0 else None
                logits = runner.run(resid, layer, [(hook, patch_hook)], prefix, n, start)
                logits = logits.view(n, batch, *logits.shape[1:])
                for i, c in enumerate(idx):
                    scores[c] = float(check_metric(metric(logits[i])))
                bar.update(n)
            # float64: the metric is a Python float already; keep every digit for exact comparisons.
            per_layer.append(scores.reshape(_grid_shape(fam, model.cfg.n_heads, seq_len)))
        bar.close()
    return PatchingResult(
        family=family,
        dims=fam.dims,
        scores=torch.stack(per_layer),
        baseline_target=base_tgt,
        baseline_source=base_src,
        provenance={
            "method": "activation_patching",
            "direction": direction,
            "ablation": ablation,
            "model": model.cfg.model_name,
            "n_prompts": int(batch),
            "layers": layers,
            "seed": seed,
        },
    )


_MIN_TOKENS = 1024
"""Fewest token positions worth a forward pass of their own: smaller ones are mostly Python overhead."""


def _seq_axis(fam: Family) -> int:
    """The activation's (query) position axis: 2 for ``hook_pattern`` [batch, head, q, k], else 1."""
    return 2 if fam.hook_kind == "hook_pattern" else 1


def _first_change(value: Tensor, target: Tensor, axis: int) -> int:
    """First position where the value written differs from the target's own activation (or its length)."""
    differs = (value != target).movedim(axis, 0).flatten(1).any(1)
    hits = torch.nonzero(differs)
    return int(hits[0]) if len(hits) else differs.shape[0]


def _chunks(
    comps: list[tuple[int | None, int | None]],
    batch: int,
    seq_len: int,
    max_batch: int,
    max_tokens: int,
    *,
    first: int = 0,
    reuse_prefix: bool = False,
) -> list[tuple[list[int], int]]:
    """Split one layer's components into forward passes: ``(component indices, first position run)``.

    Components at a position before ``first`` (where patching changes nothing) are left out. With
    ``reuse_prefix`` positions before a pass's start come from the target run: a family over all
    positions starts at ``first``; a family by position takes components in order of position and a pass
    starts at its earliest one, so late patches run short sequences — a pass grows until it is worth its
    overhead (``_MIN_TOKENS``) and never past ``max_tokens``.
    """
    if first >= seq_len:
        return []
    by_pos = comps[0][1] is not None
    if not by_pos:
        start = first if reuse_prefix else 0
        per = max(1, min(max_batch, max_tokens // (seq_len - start)) // batch)
        idx = list(range(len(comps)))
        return [(idx[i : i + per], start) for i in range(0, len(idx), per)]
    keep = [i for i in range(len(comps)) if comps[i][1] >= first]  # type: ignore[operator]
    if not reuse_prefix:
        per = max(1, min(max_batch, max_tokens // seq_len) // batch)
        return [(keep[i : i + per], 0) for i in range(0, len(keep), per)]
    order = sorted(keep, key=lambda i: comps[i][1])  # type: ignore[arg-type,return-value]
    out: list[tuple[list[int], int]] = []
    cur: list[int] = []
    start = 0
    for i in order:
        pos = comps[i][1]
        assert pos is not None
        if cur:
            tokens = (len(cur) + 1) * batch * (seq_len - start)
            full = len(cur) * batch * (seq_len - start) >= _MIN_TOKENS and pos != comps[cur[-1]][1]
            if full or tokens > max_tokens or (len(cur) + 1) * batch > max_batch:
                out.append((cur, start))
                cur = []
        if not cur:
            start = pos
        cur.append(i)
    if cur:
        out.append((cur, start))
    return out


def _patch_hook(fam: Family, chunk, value: Tensor, batch: int, start: int):
    """Forward hook writing ``value`` into copy c's component ``chunk[c]``; the run starts at ``start``."""
    n = len(chunk)
    if start:
        # The hook sees positions start.. only (the earlier ones come from the key/value prefix).
        axis = _seq_axis(fam)
        value = value.narrow(axis, start, value.shape[axis] - start)
        chunk = [(h, None if p is None else p - start) for h, p in chunk]

    def hook_fn(act: Tensor, hook) -> Tensor:
        act = act.view(n, batch, *act.shape[1:])
        mask = _mask(fam, (n, *act.shape[2:]), chunk, act.device)
        out = torch.where(mask[:, None], value[None], act)
        return out.reshape(n * batch, *act.shape[2:])

    return hook_fn


class _Runner:
    """Runs a HookedTransformer from a layer's residual stream, computing only what the metric reads.

    ``run`` is ``model.run_with_hooks(resid, start_at_layer=layer)`` — with the target prompts' padding
    mask and, on shortformer models, their positional embeddings, exactly as the unpatched forward —
    plus two savings that leave the numbers unchanged up to float rounding:

    - *key/value prefix*: when positions ``< start`` are unpatched they equal the target run's, so only
      positions ``start..`` are computed and attention reads the earlier keys and values from the
      target run (TransformerLens's own key/value cache entries; keys pass through the q/k norm first
      on models that have one, since ``attn.hook_k`` fires before it);
    - *last position*: when the metric reads only the last position, the last layer computes keys and
      values for every position but queries, MLP, final norm and unembedding for the last one alone.

    Both need a standard pre-norm block (no split q/k/v inputs, shortformer, post-norm, OLMo's
    whole-vector q/k norm, clipping, several devices) and unpadded prompts; other cases run the plain
    forward from the layer.
    """

    def __init__(self, model: HookedTransformer, last_only: bool, target: Int[Tensor, "batch pos"]):
        cfg = model.cfg
        self.model = model
        self.last_only = last_only
        self.mask = attention_mask(model, target)
        if self.mask is not None and bool(self.mask.all()):
            self.mask = None  # no padding in this batch: TransformerLens's mask changes nothing
        self.pos_embed = shortformer_pos_embed(model, target, self.mask)
        self.standard = self.mask is None and not (
            cfg.use_split_qkv_input
            or cfg.use_attn_in
            or cfg.positional_embedding_type == "shortformer"
            or cfg.original_architecture in POST_NORM_ARCHITECTURES
            or cfg.use_normalization_before_and_after
            or cfg.original_architecture in ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM")
            or cfg.clip_qkv is not None
            or cfg.n_devices > 1
            or cfg.attention_dir != "causal"
        )

    def run(
        self,
        resid: Float[Tensor, "copies pos d_model"],
        layer: int,
        fwd_hooks: list,
        prefix: list[tuple[Tensor, Tensor]] | None,
        n_copies: int,
        start: int = 0,
    ) -> Float[Tensor, "copies pos vocab"]:
        model = self.model
        if not self.standard:
            assert start == 0 and prefix is None, "the plain forward recomputes every position"
            mask = None if self.mask is None else self.mask.repeat(n_copies, 1)
            spe = None if self.pos_embed is None else self.pos_embed.repeat(n_copies, 1, 1)
            return model.run_with_hooks(
                resid,
                start_at_layer=layer,
                fwd_hooks=fwd_hooks,
                return_type="logits",
                attention_mask=mask,
                shortformer_pos_embed=spe,
            )
        last = model.cfg.n_layers - 1
        with model.hooks(fwd_hooks=fwd_hooks):
            for i in range(layer, model.cfg.n_layers):
                block = model.blocks[i]
                past = None if prefix is None else _entry(prefix[i - layer], n_copies)
                if self.last_only and i == last and i > layer and resid.shape[1] > 1:
                    # Keys and values of every position but the last, then the block on the last alone.
                    normed = block.ln1(resid[:, :-1])
                    _, k, v = block.attn.calculate_qkv_matrices(normed, normed, normed)
                    if past is not None:
                        k, v = torch.cat([past.past_keys, k], 1), torch.cat([past.past_values, v], 1)
                    past = TransformerLensKeyValueCacheEntry(k, v, frozen=True)
                    resid = resid[:, -1:]
                resid = block(resid, past_kv_cache_entry=past)
            if self.last_only:
                resid = resid[:, -1:]
            if model.cfg.normalization_type is not None:
                resid = model.ln_final(resid)
            return apply_softcap(model.unembed(resid), model.cfg.output_logits_soft_cap)


def _prefix(model: HookedTransformer, cache, layer: int, start: int) -> list[tuple[Tensor, Tensor]]:
    """The target run's keys (after any q/k norm) and values before ``start``, every layer from ``layer``."""
    out = []
    for i in range(layer, model.cfg.n_layers):
        k = cache[f"blocks.{i}.attn.hook_k"][:, :start]
        if model.cfg.use_qk_norm:
            # hook_k fires before the q/k norm; the key/value cache holds keys after it.
            attn = model.blocks[i].attn
            k = attn._apply_qk_norm(k, attn.k_norm)
        out.append((k, cache[f"blocks.{i}.attn.hook_v"][:, :start]))
    return out


def _entry(kv: tuple[Tensor, Tensor], n_copies: int) -> TransformerLensKeyValueCacheEntry | None:
    """A frozen key/value cache entry holding the target run's prefix, once per patched copy."""
    k, v = kv
    if k.shape[1] == 0:
        return None
    reps = (n_copies, 1, 1, 1)
    return TransformerLensKeyValueCacheEntry(k.repeat(*reps), v.repeat(*reps), frozen=True)


def _grid_shape(fam: Family, n_heads: int, seq_len: int) -> tuple[int, ...]:
    sizes = {"head": n_heads, "pos": seq_len}
    return tuple(sizes[d] for d in fam.dims[1:])
