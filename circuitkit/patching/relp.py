"""Relevance patching (RelP): AtP with LRP propagation rules, by hooks on a stock HookedTransformer.

Jafari, Eberle, Khakzar & Nanda 2025, "RelP: Faithful and efficient circuit discovery via relevance
patching" (arXiv 2508.21258). The gradient in AtP's (a_source - a_target) . dm/da is replaced by LRP
propagation coefficients from one modified backward pass. The rules change the backward pass only; the
forward values stay bit-identical, because each rule is written as ``value.detach() + (a term whose
value is exactly zero but whose gradient is the rule's)`` or as a plain detach:

* **LN-rule** (LayerNorm / RMSNorm): the normalisation scale is treated as a constant — every
  ``*.hook_scale`` (``ln1``, ``ln2``, the post-norms ``ln1_post`` / ``ln2_post``, the q/k norms
  ``attn.q_norm`` / ``attn.k_norm``, ``ln_final``) returns ``scale.detach()``; centring stays in the graph.
* **AH-rule** (attention): the softmax pattern is a constant — ``attn.hook_pattern`` returns
  ``pattern.detach()``; relevance flows through the values only. (Off by default, as in the authors'
  TransformerLens fork; on IOI it cuts the query/key route that carries the signal.)
* **Identity rule** (GELU / SiLU): act(x) -> x * (act(x) / x) with the ratio constant —
  ``mlp.hook_post`` returns ``act.detach() + (x - x.detach()) * (act / x_stab).detach()`` with
  ``x = mlp.hook_pre`` and x_stab = x + 1e-6 * sign(x).
* **Half rule** (gated MLPs, y = act(gate) * linear): each factor receives half —
  d/d factor = other factor / 2, combined with the identity rule on act(gate) when both are on.

Linear layers keep the plain gradient x input rule. Each rule is selected per call (:class:`RelPRules`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from jaxtyping import Int
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit.components import DEFAULT_FAMILIES
from circuitkit.patching.attribution import Hook, attribution_patching
from circuitkit.patching.common import Ablation, Direction, Metric
from circuitkit.patching.scores import EstimatedEffects

STABILISER = 1e-6


@dataclass(frozen=True)
class RelPRules:
    """Which LRP rules RelP applies, per component type."""

    ln: bool = True
    """LN-rule: LayerNorm / RMSNorm scale treated as constant (``hook_scale`` detached)."""
    attention: bool = False
    """AH-rule: attention pattern treated as constant (``attn.hook_pattern`` detached)."""
    identity: bool = True
    """Identity rule on the MLP activation function (GELU, SiLU ...)."""
    half: bool = True
    """Half rule on the product of a gated MLP (ignored for ungated MLPs)."""
    layers: tuple[int, ...] | None = None
    """Apply the attention / MLP rules only in these layers (None: all). LN-rule follows too, except
    ``ln_final`` which is always included when ``ln`` is on."""

    @property
    def name(self) -> str:
        on = [k for k in ("ln", "attention", "identity", "half") if getattr(self, k)]
        return "+".join(on) if on else "none"

    @classmethod
    def parse(cls, text: str) -> RelPRules:
        """``"ln+identity"``, ``"ln,attention,identity"``, ``"all"`` or ``"none"`` -> rules."""
        text = text.strip().lower()
        if text == "all":
            return cls(True, True, True, True)
        parts = {p for p in text.replace(",", "+").split("+") if p and p != "none"}
        aliases = {"ah": "attention", "attn": "attention", "lrp-ln": "ln", "id": "identity"}
        parts = {aliases.get(p, p) for p in parts}
        unknown = parts - {"ln", "attention", "identity", "half"}
        if unknown:
            raise ValueError(
                f"unknown RelP rule(s) {sorted(unknown)}; choose from ln, attention, identity, half"
            )
        return cls(*(k in parts for k in ("ln", "attention", "identity", "half")))


def _stabilise(x: Tensor) -> Tensor:
    sign = torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
    return x + STABILISER * sign


def rule_hooks(model: HookedTransformer, rules: RelPRules) -> list[Hook]:
    """Forward hooks implementing ``rules`` on ``model``; values unchanged, gradients LRP's."""
    layers = range(model.cfg.n_layers) if rules.layers is None else rules.layers
    hooks: list[Hook] = []

    def detach(act: Tensor, hook) -> Tensor:
        return act.detach()

    if rules.ln:
        # Every normalisation's scale: ln1 / ln2, the post-norms ln1_post / ln2_post (Gemma-2/3, OLMo-2)
        # and the q/k norms attn.q_norm / attn.k_norm (Qwen3, Gemma-3, OLMo-2), then ln_final.
        wanted = set(layers)
        for name in model.hook_dict:
            if not name.endswith("hook_scale"):
                continue
            parts = name.split(".")
            in_block = parts[0] == "blocks" and parts[1].isdigit()
            if name == "ln_final.hook_scale" or (in_block and int(parts[1]) in wanted):
                hooks.append((name, detach))
            elif not in_block:
                raise ValueError(f"the LN-rule does not know where normalisation {name!r} sits; turn it off")
    if rules.attention:
        hooks += [(f"blocks.{layer}.attn.hook_pattern", detach) for layer in layers]
    gated = bool(model.cfg.gated_mlp)
    # An attention-only model has no MLP, so the MLP rules have nothing to act on.
    if not model.cfg.attn_only and (rules.identity or (gated and rules.half)):
        for layer in layers:
            hooks += _mlp_hooks(model, layer, rules, gated)
    return hooks


def _mlp_hooks(model: HookedTransformer, layer: int, rules: RelPRules, gated: bool) -> list[Hook]:
    mlp = model.blocks[layer].mlp
    if getattr(model.cfg, "act_fn", None) in ("solu_ln",) or not hasattr(mlp, "act_fn"):
        raise ValueError(
            f"the identity rule needs the MLP activation as a function of mlp.hook_pre; layer {layer}'s "
            f"MLP ({type(mlp).__name__}, act_fn {model.cfg.act_fn}) does not expose it. Turn the rule off."
        )
    saved: dict[str, Tensor] = {}

    def save(name: str):
        def hook(act: Tensor, hook) -> Tensor:
            saved[name] = act
            return act

        return hook

    def identity_term(pre: Tensor, act: Tensor) -> Tensor:
        """Value exactly zero; gradient wrt pre = act(pre) / pre (the identity rule)."""
        return (pre - pre.detach()) * (act / _stabilise(pre)).detach()

    def post(y: Tensor, hook) -> Tensor:
        pre = saved.pop("pre")
        if not gated:
            return y.detach() + identity_term(pre, y)
        lin = saved.pop("lin")
        g = mlp.act_fn(pre)
        g_term = identity_term(pre, g.detach()) if rules.identity else g - g.detach()
        u_term = lin - lin.detach()
        half = 0.5 if rules.half else 1.0
        # d y / d g = lin * half, d y / d lin = g * half; value of both terms exactly zero.
        return y.detach() + half * (g_term * lin.detach() + u_term * g.detach())

    hooks: list[Hook] = [(f"blocks.{layer}.mlp.hook_pre", save("pre"))]
    if gated:
        hooks.append((f"blocks.{layer}.mlp.hook_pre_linear", save("lin")))
    hooks.append((f"blocks.{layer}.mlp.hook_post", post))
    return hooks


def relevance_patching(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    families: str | Sequence[str] = DEFAULT_FAMILIES,
    *,
    rules: RelPRules | str = RelPRules(),
    direction: Direction = "denoising",
    ablation: Ablation = "patch",
    seed: int = 0,
) -> EstimatedEffects:
    """RelP scores for every component of ``families``: AtP's two forwards and one (modified) backward."""
    if isinstance(rules, str):
        rules = RelPRules.parse(rules)
    return attribution_patching(
        model,
        clean_tokens,
        corrupted_tokens,
        metric,
        families,
        direction=direction,
        ablation=ablation,
        seed=seed,
        extra_hooks=rule_hooks(model, rules),
        method="relp",
        options={"rules": rules.name, **{k: v for k, v in asdict(rules).items() if k != "layers"}},
    )
