"""The component vocabulary: which activation a family names, and how it is addressed.

Names follow TransformerLens hook points exactly (``blocks.{L}.hook_resid_pre``, ``blocks.{L}.attn.hook_z``,
...). Heads are ``(layer, head)`` in code and ``L{l}H{h}`` on screen.

A *family* is one hook per layer, split into components by position and/or head. Its ``dims`` name the
axes of the score grid every method returns (``("layer", "pos")`` for the residual stream,
``("layer", "head")`` for heads over all positions, ``("layer", "pos", "head")`` for heads by position),
in the same order as ``transformer_lens.patching`` so grids can be compared directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # keeps `import circuitkit.components` (and the CLI's start) free of torch
    from transformer_lens import HookedTransformer


@dataclass(frozen=True)
class Family:
    """A family of components: one hook per layer, split by position and/or head."""

    name: str
    """Short name used everywhere (CLI, result tables), e.g. ``"head"`` or ``"resid_pre"``."""
    hook: str
    """Hook-name template with ``{layer}``."""
    pos_axis: int | None
    """Axis of the activation that indexes positions (None: the family spans all positions)."""
    head_axis: int | None
    """Axis that indexes heads (None: not split by head)."""
    dims: tuple[str, ...]
    """Names of the score grid's axes, e.g. ("layer", "pos")."""
    group: str = ""
    """Coarse kind for reporting: ``resid``, ``attn``, ``mlp`` or ``heads``."""

    def hook_name(self, layer: int) -> str:
        return self.hook.format(layer=layer)

    @property
    def hook_kind(self) -> str:
        """Last part of the hook name (``hook_z``, ``hook_pattern`` ...)."""
        return self.hook.split(".")[-1]

    @property
    def by_head(self) -> bool:
        return self.head_axis is not None

    @property
    def by_pos(self) -> bool:
        return self.pos_axis is not None

    def grid_shape(self, n_layers: int, n_heads: int, seq_len: int) -> tuple[int, ...]:
        sizes = {"layer": n_layers, "head": n_heads, "pos": seq_len}
        return tuple(sizes[d] for d in self.dims)


def _fam(name, hook, pos_axis, head_axis, dims, group) -> Family:
    return Family(name, hook, pos_axis, head_axis, dims, group)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        _fam("resid_pre", "blocks.{layer}.hook_resid_pre", 1, None, ("layer", "pos"), "resid"),
        _fam("resid_mid", "blocks.{layer}.hook_resid_mid", 1, None, ("layer", "pos"), "resid"),
        _fam("resid_post", "blocks.{layer}.hook_resid_post", 1, None, ("layer", "pos"), "resid"),
        _fam("attn_out", "blocks.{layer}.hook_attn_out", 1, None, ("layer", "pos"), "attn"),
        _fam("attn_out_all", "blocks.{layer}.hook_attn_out", None, None, ("layer",), "attn"),
        _fam("mlp_out", "blocks.{layer}.hook_mlp_out", 1, None, ("layer", "pos"), "mlp"),
        _fam("mlp_out_all", "blocks.{layer}.hook_mlp_out", None, None, ("layer",), "mlp"),
        # Heads over all positions: grid [layer, head] (transformer_lens ..._all_pos).
        _fam("head", "blocks.{layer}.attn.hook_z", None, 2, ("layer", "head"), "heads"),
        _fam("head_result", "blocks.{layer}.attn.hook_result", None, 2, ("layer", "head"), "heads"),
        _fam("head_q", "blocks.{layer}.attn.hook_q", None, 2, ("layer", "head"), "heads"),
        _fam("head_k", "blocks.{layer}.attn.hook_k", None, 2, ("layer", "head"), "heads"),
        _fam("head_v", "blocks.{layer}.attn.hook_v", None, 2, ("layer", "head"), "heads"),
        _fam("head_pattern", "blocks.{layer}.attn.hook_pattern", None, 1, ("layer", "head"), "heads"),
        # Heads by position: grid [layer, pos, head] (transformer_lens ..._by_pos).
        _fam("head_pos", "blocks.{layer}.attn.hook_z", 1, 2, ("layer", "pos", "head"), "heads"),
        _fam("head_result_pos", "blocks.{layer}.attn.hook_result", 1, 2, ("layer", "pos", "head"), "heads"),
        _fam("head_q_pos", "blocks.{layer}.attn.hook_q", 1, 2, ("layer", "pos", "head"), "heads"),
        _fam("head_k_pos", "blocks.{layer}.attn.hook_k", 1, 2, ("layer", "pos", "head"), "heads"),
        _fam("head_v_pos", "blocks.{layer}.attn.hook_v", 1, 2, ("layer", "pos", "head"), "heads"),
        # The pattern by destination (query) position: grid [layer, head, pos], as transformer_lens orders it.
        _fam("head_pattern_pos", "blocks.{layer}.attn.hook_pattern", 2, 1, ("layer", "head", "pos"), "heads"),
    )
}

DEFAULT_FAMILIES: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_out", "head")
"""The families of the RelP paper's table: residual, attention out, MLP out (by position) and heads."""


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


def component_label(family: str, layer: int, head: int | None = None, pos: int | None = None) -> str:
    """Screen name of one component: ``L3H2``, ``L3H2@5``, ``resid_pre L3@5``, ``mlp_out L3``."""
    fam = get_family(family)
    if fam.by_head:
        base = head_label(layer, int(head))  # type: ignore[arg-type]
        kind = fam.hook_kind.removeprefix("hook_")
        base = base if kind == "z" else f"{base}.{kind}"
    else:
        base = f"{fam.hook_kind.removeprefix('hook_')} L{layer}"
    return base if pos is None else f"{base}@{pos}"


def check_hook(model: HookedTransformer, hook_name: str) -> None:
    """Raise a clear error when a hook name does not exist in the model."""
    if hook_name.endswith("attn.hook_result") and not model.cfg.use_attn_result:
        # The hook point exists but never fires: patching it would silently do nothing.
        raise ValueError(
            f"hook {hook_name!r} does not exist in this run: per-head results are computed only after "
            "model.set_use_attn_result(True)"
        )
    if model.cfg.attn_only and any(part in hook_name for part in ("mlp", "ln2", "resid_mid")):
        # An attention-only block keeps these hook points but never runs them.
        raise ValueError(
            f"hook {hook_name!r} does not exist in {model.cfg.model_name}: it is attention-only (no MLPs)"
        )
    if hook_name not in model.hook_dict:
        near = [h for h in model.hook_dict if h.split(".")[-1] == hook_name.split(".")[-1]][:5]
        hint = ""
        if hook_name.endswith("attn.hook_result"):
            hint = " hook_result exists only with model.set_use_attn_result(True)."
        raise ValueError(
            f"hook {hook_name!r} does not exist in {model.cfg.model_name} "
            f"({model.cfg.n_layers} layers). Similar hooks: {near or 'none'}.{hint}"
        )
