"""Splicing sae-lens dictionaries (SAEs and transcoders) into a HookedTransformer, error terms kept.

Marks et al. (2024, "Sparse Feature Circuits", arXiv 2403.19647) write each spliced activation as
``x = decode(f) + err`` with ``f = encode(x_in)`` the dictionary latents and ``err = x - decode(f)`` the
error node, so that the forward pass stays exact and every part of ``x`` is accounted for by some node.

Here the forward value is kept bit-identical: with no intervention the hook returns ``x`` itself plus
*probes*, zero tensors that require grad, entering as ``x + probe_f @ W_dec + probe_err``. Their
gradients are the partial derivatives of anything downstream with respect to the latents (holding the
error fixed) and to the error node, while gradients into earlier layers still flow through ``x`` with
the identity Jacobian of the exact model. An *intervention* replaces ``(f, err)`` by ``(f', err')`` and
the hook returns ``x + (decode(f') - decode(f)) + (err' - err)``, which equals ``decode(f') + err'`` and
is ``x`` exactly when nothing changes.

A dictionary reads ``cfg.metadata.hook_name`` and writes ``cfg.metadata.hook_name_out`` (transcoders,
Dunefsky et al. 2024) or the same hook (SAEs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit.components import check_hook

Intervention = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""``(f, err) -> (f', err')`` for one dictionary: latents [batch, pos, d_sae], error in hook shape."""


class DictionaryError(ValueError):
    """A dictionary does not fit the model it is spliced into (hook, width, normalisation)."""


@dataclass(frozen=True)
class Dictionary:
    """A dictionary placed in a model: what it reads, what it writes, how its vectors are shaped."""

    id: str
    """Names the dictionary in results (e.g. ``blocks.1.hook_resid_pre`` or a sae-lens id)."""
    sae: SAE
    hook_in: str
    hook_out: str
    in_shape: tuple[int, ...]
    """Trailing shape of the input hook's activation (e.g. ``(d_model,)`` or ``(n_heads, d_head)``)."""
    out_shape: tuple[int, ...]

    @property
    def d_sae(self) -> int:
        return int(self.sae.cfg.d_sae)

    @property
    def is_transcoder(self) -> bool:
        return self.hook_in != self.hook_out

    def _native_z(self) -> bool:
        return getattr(self.sae.cfg, "reshape_activations", "none") == "hook_z"

    def encode(self, x: Float[Tensor, "batch pos *in_shape"]) -> Float[Tensor, "batch pos d_sae"]:
        return self.sae.encode(x if self._native_z() else x.flatten(2))

    def decode(self, f: Float[Tensor, "batch pos d_sae"]) -> Float[Tensor, "batch pos *out_shape"]:
        out = self.sae.decode(f)
        return out.reshape(*f.shape[:2], *self.out_shape)

    def write(self, delta_f: Float[Tensor, "batch pos d_sae"]) -> Float[Tensor, "batch pos *out_shape"]:
        """The linear part of ``decode``: what a change of the latents adds to the output hook."""
        return (delta_f @ self.sae.W_dec).reshape(*delta_f.shape[:2], *self.out_shape)


def dictionary_hooks(sae: SAE) -> tuple[str, str]:
    """(hook the dictionary reads, hook its decoder writes to); equal for SAEs, differ for transcoders."""
    meta = sae.cfg.metadata
    hook_in = getattr(meta, "hook_name", None)
    if not hook_in:
        raise DictionaryError(
            "dictionary has no cfg.metadata.hook_name; set it to the TransformerLens hook it was "
            "trained on (e.g. 'blocks.1.hook_resid_pre')"
        )
    return hook_in, getattr(meta, "hook_name_out", None) or hook_in


def _probe_hooks(model: HookedTransformer, hooks: set[str]) -> tuple[dict[str, tuple[int, ...]], list[str]]:
    """Trailing activation shape of each hook and the order the hooks fire in (a two-token forward).

    ``model.hook_dict`` is in module-registration order, which is not the forward order
    (``blocks.L.hook_resid_pre`` is registered after the block's attention hooks).
    """
    tokens = torch.zeros(1, 2, dtype=torch.long, device=model.cfg.device)
    shapes: dict[str, tuple[int, ...]] = {}

    def note(act: Tensor, hook) -> Tensor:
        shapes.setdefault(hook.name, tuple(act.shape[2:]))
        return act

    with torch.no_grad(), model.hooks(fwd_hooks=[(h, note) for h in hooks]):
        model(tokens)
    return shapes, list(shapes)


def place(
    model: HookedTransformer, dictionaries: Sequence[SAE] | Mapping[str, SAE] | Sequence[Dictionary]
) -> list[Dictionary]:
    """Check each dictionary against ``model`` and return them in forward order.

    Raises :class:`DictionaryError` when a hook name is unset or unknown, when ``d_in`` (or a
    transcoder's output width) does not match the hook's activation width, when activation
    normalisation is not folded, or when two dictionaries would write the same hook.
    """
    if isinstance(dictionaries, Mapping):
        items = list(dictionaries.items())
    else:
        items = [(None, d) for d in dictionaries]
    pending = []
    for key, d in items:
        sae = d.sae if isinstance(d, Dictionary) else d
        if not isinstance(sae, SAE):
            raise DictionaryError(f"expected a sae-lens SAE (or transcoder), got {type(sae).__name__}")
        hook_in, hook_out = dictionary_hooks(sae)
        for h in (hook_in, hook_out):
            try:
                check_hook(model, h)
            except ValueError as exc:
                raise DictionaryError(f"dictionary for {hook_in!r}: {exc}") from exc
        if getattr(sae.cfg, "normalize_activations", "none") != "none":
            raise DictionaryError(
                f"dictionary for {hook_in!r} normalises activations at run time "
                f"({sae.cfg.normalize_activations!r}), so decode is not affine in the latents; fold the "
                "scaling into the weights first (e.g. sae.fold_activation_norm_scaling_factor(...))"
            )
        if sae.W_dec.device.type != torch.device(model.cfg.device).type:
            raise DictionaryError(
                f"dictionary for {hook_in!r} is on {sae.W_dec.device} but the model is on "
                f"{model.cfg.device}; move it first: sae.to(model.cfg.device)"
            )
        ident = key or (d.id if isinstance(d, Dictionary) else None)
        ident = ident or (hook_in if hook_in == hook_out else f"{hook_in}->{hook_out}")
        pending.append((ident, sae, hook_in, hook_out))
    shapes, fired = _probe_hooks(model, {h for _, _, a, b in pending for h in (a, b)})
    out = []
    for ident, sae, hook_in, hook_out in pending:
        width_in, width_out = math.prod(shapes[hook_in]), math.prod(shapes[hook_out])
        if sae.cfg.d_in != width_in:
            raise DictionaryError(
                f"dictionary {ident!r} has d_in={sae.cfg.d_in}, but hook {hook_in!r} of "
                f"{model.cfg.model_name} carries vectors of width {width_in} (shape {shapes[hook_in]}); it "
                "was trained for another model or hook - load the dictionary made for this hook, or fix "
                "cfg.metadata.hook_name"
            )
        if sae.W_dec.shape[-1] != width_out:
            raise DictionaryError(
                f"dictionary {ident!r} decodes to width {sae.W_dec.shape[-1]}, but its output hook "
                f"{hook_out!r} carries width {width_out}; set cfg.metadata.hook_name_out to the hook it "
                "was trained to predict"
            )
        out.append(Dictionary(ident, sae, hook_in, hook_out, shapes[hook_in], shapes[hook_out]))
    order = {name: i for i, name in enumerate(fired)}
    out.sort(key=lambda d: order[d.hook_out])
    ids, writes = [d.id for d in out], [d.hook_out for d in out]
    if len(set(writes)) != len(writes):
        raise DictionaryError(f"two dictionaries write the same hook: {writes}; splice one per hook")
    if len(set(ids)) != len(ids):
        raise DictionaryError(f"dictionary ids must be unique, got {ids}")
    reads_of_others = {d.hook_in for d in out if d.is_transcoder}
    if reads_of_others & set(writes):
        raise DictionaryError(
            f"a transcoder reads hook(s) {sorted(reads_of_others & set(writes))} that another dictionary "
            "writes; their order would be ambiguous"
        )
    return out


@dataclass
class SpliceRecord:
    """What the spliced forward pass saw, per dictionary id."""

    latents: dict[str, Float[Tensor, "batch pos d_sae"]] = field(default_factory=dict)
    errors: dict[str, Tensor] = field(default_factory=dict)
    """``x_out - decode(f)`` in the output hook's shape."""
    probe_latents: dict[str, Tensor] = field(default_factory=dict)
    """Zero leaves added through ``W_dec``: their ``.grad`` is d(output)/d(latents), error held fixed."""
    probe_errors: dict[str, Tensor] = field(default_factory=dict)
    inputs: dict[str, Tensor] = field(default_factory=dict)


def splice_hooks(
    dicts: Sequence[Dictionary],
    record: SpliceRecord,
    *,
    probes: bool = False,
    interventions: Mapping[str, Intervention] | None = None,
    stop_grads: Collection[str] = (),
) -> list[tuple[str, Callable]]:
    """Forward hooks that splice ``dicts`` in and fill ``record``; pass them to ``model.hooks``.

    ``stop_grads``: ids of dictionaries whose nodes pass no gradient back (their output hook's value is
    detached, same value): Marks et al.'s intermediate stop-gradients, which make an edge across them a
    direct effect.
    """
    interventions = interventions or {}
    hooks: list[tuple[str, Callable]] = []
    for d in dicts:

        def read(act: Tensor, hook, d=d) -> Tensor:
            record.inputs[d.id] = act
            return act

        def write(act: Tensor, hook, d=d) -> Tensor:
            x_in = act if not d.is_transcoder else record.inputs[d.id]
            record.inputs[d.id] = x_in
            f = d.encode(x_in)
            err = act - d.decode(f)
            record.latents[d.id], record.errors[d.id] = f, err
            if d.id in interventions:
                f_new, err_new = interventions[d.id](f, err)
                return act + (d.decode(f_new) - d.decode(f)) + (err_new - err)
            if d.id in stop_grads:
                act = act.detach()
            if not probes:
                return act
            probe_f = torch.zeros_like(f, requires_grad=True)
            probe_err = torch.zeros_like(act, requires_grad=True)
            record.probe_latents[d.id], record.probe_errors[d.id] = probe_f, probe_err
            return act + d.write(probe_f) + probe_err

        if d.is_transcoder:
            hooks.append((d.hook_in, read))
        hooks.append((d.hook_out, write))
    return hooks


def run_spliced(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    dicts: Sequence[Dictionary],
    *,
    probes: bool = False,
    interventions: Mapping[str, Intervention] | None = None,
    stop_grads: Collection[str] = (),
) -> tuple[Float[Tensor, "batch pos vocab"], SpliceRecord]:
    """One forward pass with ``dicts`` spliced in; gradients are enabled unless the caller disables them."""
    record = SpliceRecord()
    fwd = splice_hooks(dicts, record, probes=probes, interventions=interventions, stop_grads=stop_grads)
    with model.hooks(fwd_hooks=fwd):
        logits = model(tokens.to(model.cfg.device))
    return logits, record
