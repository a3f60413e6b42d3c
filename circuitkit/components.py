"""The component vocabulary: which activation a family names, and how it is addressed.

Names follow TransformerLens hook points exactly (``blocks.{L}.hook_resid_pre``, ``blocks.{L}.attn.hook_z``,
...). Heads are ``(layer, head)`` in code and ``L{l}H{h}`` on screen.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformer_lens import HookedTransformer


@dataclass(frozen=True)
class Family:
    """A family of components: one hook per layer, split by position and/or head."""

    name: str
    hook: str
    """Hook-name template with ``{layer}``."""
    pos_axis: int | None
    """Axis of the activation that indexes positions (None: the family spans all positions)."""
    head_axis: int | None
    """Axis that indexes heads (None: not split by head)."""
    dims: tuple[str, ...]
    """Names of the score grid's axes, e.g. ("layer", "pos")."""

    def hook_name(self, layer: int) -> str:
        return self.hook.format(layer=layer)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("resid_pre", "blocks.{layer}.hook_resid_pre", 1, None, ("layer", "pos")),
        Family("resid_mid", "blocks.{layer}.hook_resid_mid", 1, None, ("layer", "pos")),
        Family("resid_post", "blocks.{layer}.hook_resid_post", 1, None, ("layer", "pos")),
        Family("attn_out", "blocks.{layer}.hook_attn_out", 1, None, ("layer", "pos")),
        Family("mlp_out", "blocks.{layer}.hook_mlp_out", 1, None, ("layer", "pos")),
        Family("mlp_out_all", "blocks.{layer}.hook_mlp_out", None, None, ("layer",)),
        Family("head", "blocks.{layer}.attn.hook_z", None, 2, ("layer", "head")),
        Family("head_pos", "blocks.{layer}.attn.hook_z", 1, 2, ("layer", "pos", "head")),
        Family("head_q", "blocks.{layer}.attn.hook_q", None, 2, ("layer", "head")),
        Family("head_k", "blocks.{layer}.attn.hook_k", None, 2, ("layer", "head")),
        Family("head_v", "blocks.{layer}.attn.hook_v", None, 2, ("layer", "head")),
        Family("head_pattern", "blocks.{layer}.attn.hook_pattern", None, 1, ("layer", "head")),
    )
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown component family {name!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def head_label(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def parse_head(label: str) -> tuple[int, int]:
    """``"L9H6"`` or ``"9.6"`` -> ``(9, 6)``."""
    s = label.strip().upper()
    if s.startswith("L") and "H" in s:
        layer, head = s[1:].split("H")
    else:
        layer, head = s.split(".")
    return int(layer), int(head)


def check_hook(model: HookedTransformer, hook_name: str) -> None:
    """Raise a clear error when a hook name does not exist in the model."""
    if hook_name not in model.hook_dict:
        near = [h for h in model.hook_dict if h.split(".")[-1] == hook_name.split(".")[-1]][:5]
        raise ValueError(
            f"hook {hook_name!r} does not exist in {model.cfg.model_name} "
            f"({model.cfg.n_layers} layers). Similar hooks: {near or 'none'}."
        )
