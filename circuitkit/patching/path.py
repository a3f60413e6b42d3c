"""Path patching between attention heads: sender -> receiver via the receivers' queries, keys or values.

Wang et al. 2022 ("Interpretability in the wild", IOI), Goldowsky-Dill et al. 2023 ("Localizing model
behavior with path patching"). For each sender head s:

1. run the target prompts with s's output (``hook_z``) replaced by its source value and *every other*
   head's output frozen at its target value, so the change reaches later layers only along paths that
   leave s and go straight through the residual stream (MLPs recompute unless ``freeze_mlps``);
2. record the receivers' inputs (``hook_q`` / ``hook_k`` / ``hook_v`` of the receiver heads) in that run;
3. run the target prompts again with only those receiver inputs replaced, and measure the metric.

Denoising: target = corrupted prompts, source = clean ones; noising: the reverse. All senders are done
together: one patched copy per sender on the batch axis, two forwards in all (per chunk).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Int
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit.components import head_label
from circuitkit.patching.common import Direction, Metric, check_inputs, check_metric

ReceiverInput = Literal["q", "k", "v"]


@dataclass
class PathPatchingResult:
    """Metric after patching each sender -> receivers path; ``scores[layer, head]`` (NaN: not a sender)."""

    scores: Tensor
    receivers: list[tuple[int, int]]
    receiver_inputs: tuple[str, ...]
    baseline_target: float
    baseline_source: float
    seconds: float = 0.0
    provenance: dict = field(default_factory=dict)

    def effects(self) -> Tensor:
        return self.scores - self.baseline_target

    def normalized(self) -> Tensor:
        return self.effects() / (self.baseline_source - self.baseline_target)


def path_patching(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    receivers: Sequence[tuple[int, int]],
    receiver_inputs: Sequence[ReceiverInput] = ("q", "k", "v"),
    senders: Sequence[tuple[int, int]] | None = None,
    *,
    direction: Direction = "denoising",
    freeze_mlps: bool = False,
    max_batch: int = 1024,
) -> PathPatchingResult:
    """Effect of each sender head on the metric through the given receiver heads' inputs.

    Args:
        receivers: ``(layer, head)`` pairs whose inputs are patched.
        receiver_inputs: which inputs of the receivers carry the path (``q``, ``k``, ``v``).
        senders: heads to test (default: every head in a layer before the last receiver's).
        freeze_mlps: also freeze MLP outputs in step 1 (paths through MLPs are then excluded).
    """
    t0 = time.perf_counter()
    check_inputs(clean_tokens, corrupted_tokens, direction, "patch")
    cfg = model.cfg
    if not receivers:
        raise ValueError("give at least one receiver head (layer, head)")
    for layer, head in receivers:
        if not (0 <= layer < cfg.n_layers and 0 <= head < cfg.n_heads):
            raise ValueError(
                f"receiver {head_label(layer, head)} is outside the model ({cfg.n_layers}x{cfg.n_heads})"
            )
    bad = [x for x in receiver_inputs if x not in ("q", "k", "v")]
    if bad or not receiver_inputs:
        raise ValueError(f"receiver inputs must be among q, k, v; got {list(receiver_inputs)}")
    n_kv = cfg.n_key_value_heads
    if n_kv not in (None, cfg.n_heads) and {"k", "v"} & set(receiver_inputs):
        raise ValueError(
            f"receiver inputs k / v: {cfg.model_name} uses grouped-query attention (n_key_value_heads="
            f"{n_kv} < n_heads={cfg.n_heads}), so a receiver head shares its keys and values with its group; "
            "patch receivers through 'q' only"
        )
    last = max(layer for layer, _ in receivers)
    if senders is None:
        senders = [(layer, h) for layer in range(last) for h in range(cfg.n_heads)]
    device = cfg.device
    clean_tokens, corrupted_tokens = clean_tokens.to(device), corrupted_tokens.to(device)
    target, source = (
        (corrupted_tokens, clean_tokens) if direction == "denoising" else (clean_tokens, corrupted_tokens)
    )
    z_names = [f"blocks.{layer}.attn.hook_z" for layer in range(cfg.n_layers)]
    mlp_names = [f"blocks.{layer}.hook_mlp_out" for layer in range(cfg.n_layers)] if freeze_mlps else []
    recv_layers = sorted({layer for layer, _ in receivers})
    recv_names = [f"blocks.{layer}.attn.hook_{x}" for layer in recv_layers for x in receiver_inputs]
    batch = target.shape[0]
    scores = torch.full((cfg.n_layers, cfg.n_heads), float("nan"), dtype=torch.float64)
    with torch.no_grad():
        t_logits, t_cache = model.run_with_cache(
            target, names_filter=lambda n: n in z_names or n in mlp_names
        )
        s_logits, s_cache = model.run_with_cache(source, names_filter=lambda n: n in z_names)
        base_tgt, base_src = float(check_metric(metric(t_logits))), float(check_metric(metric(s_logits)))
        per_chunk = max(1, max_batch // batch)
        for start in range(0, len(senders), per_chunk):
            chunk = list(senders[start : start + per_chunk])
            n = len(chunk)
            tokens = target.repeat(n, 1)

            def freeze(act: Tensor, hook, chunk=chunk, n=n) -> Tensor:
                frozen = t_cache[hook.name].repeat(n, *[1] * (act.ndim - 1)).clone()
                layer = int(hook.name.split(".")[1])
                for c, (s_layer, s_head) in enumerate(chunk):
                    if s_layer == layer:
                        frozen[c * batch : (c + 1) * batch, :, s_head] = s_cache[hook.name][:, :, s_head]
                return frozen

            step1 = [(name, freeze) for name in z_names]
            step1 += [(name, lambda act, hook, n=n: t_cache[hook.name].repeat(n, 1, 1)) for name in mlp_names]
            recorded: dict[str, Tensor] = {}

            def record(act: Tensor, hook, recorded=recorded) -> Tensor:
                recorded[hook.name] = act
                return act

            # Layers after the last receiver cannot change what the receivers read.
            model.run_with_hooks(
                tokens, fwd_hooks=step1 + [(r, record) for r in recv_names], stop_at_layer=last + 1
            )

            def put(act: Tensor, hook, recorded=recorded) -> Tensor:
                layer = int(hook.name.split(".")[1])
                heads = [h for lay, h in receivers if lay == layer]
                act = act.clone()
                act[:, :, heads] = recorded[hook.name][:, :, heads]
                return act

            logits = model.run_with_hooks(tokens, fwd_hooks=[(r, put) for r in recv_names])
            logits = logits.view(n, batch, *logits.shape[1:])
            for c, (s_layer, s_head) in enumerate(chunk):
                scores[s_layer, s_head] = float(check_metric(metric(logits[c])))
    return PathPatchingResult(
        scores=scores,
        receivers=list(receivers),
        receiver_inputs=tuple(receiver_inputs),
        baseline_target=base_tgt,
        baseline_source=base_src,
        seconds=time.perf_counter() - t0,
        provenance={
            "method": "path_patching",
            "direction": direction,
            "model": cfg.model_name,
            "n_prompts": int(batch),
            "receivers": [head_label(*r) for r in receivers],
            "receiver_inputs": list(receiver_inputs),
            "freeze_mlps": freeze_mlps,
        },
    )
