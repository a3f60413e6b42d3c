"""Weight projections that cut a non-aligned component's direct read or write of the task exactly.

``project_last`` (``PlantedConfig.project_last``): the last block's non-aligned components kept off the
answer directions.

A head or MLP in the last block reaches the logits only directly: through ``ln_final`` and the
unembedding. Its effect on a logit difference between answer tokens i and j is the centred output
``o - mean(o)`` dotted with ``ln_final.w * (W_U[:, i] - W_U[:, j])`` (divided by the final LayerNorm's
scale). So if the rows of its output weights are orthogonal to the span of those directions - centred
over d_model (LayerNorm removes the mean) and over the answer tokens (only differences count) - it
cannot move any answer logit difference at all, except by changing ``ln_final``'s scale.

Single-component strictness (``w_single``) pushes such components towards that state through the
loss, one noisy sampled row at a time; on IOI it left the last MLP at 6-9 % of the clean-corrupted
gap (validation's bar: 5 %) in every session-8 run. The projection reaches it exactly after every step.

``project_values`` (``PlantedConfig.project_values``): components below an aligned head that reads the
tokens are kept out of that head's value read space, so a token's identity reaches the head's values
only from the embedding (the planted edge). Paths through other components are left to the losses.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit.planted.graph import Node


def answer_basis(model: HookedTransformer, answer_ids: Int[Tensor, " n"]) -> Float[Tensor, "d_model k"]:
    """Orthonormal basis of the directions along which a residual write moves a logit difference
    between two answer tokens (``ln_final.w``-scaled unembedding columns, centred both ways)."""
    if len(answer_ids) < 2:
        raise ValueError("answer_basis needs at least two answer tokens (a logit difference)")
    u = model.W_U[:, answer_ids.to(model.W_U.device)].detach().float()
    if hasattr(model.ln_final, "w"):  # LN / RMS: the final norm's weight scales every direction
        u = model.ln_final.w.detach().float()[:, None] * u
    if model.cfg.normalization_type in ("LN", "LNPre"):
        u = u - u.mean(0, keepdim=True)  # LayerNorm centres the residual: the mean direction is inert
    u = u - u.mean(1, keepdim=True)  # only differences between answer tokens matter
    return _orthonormal(u)


def last_block_free(model: HookedTransformer, nodes: tuple[Node, ...]) -> list[str]:
    """Labels of the last block's non-aligned heads and MLP (``"L2H1"``, ``"MLP2"``)."""
    last = model.cfg.n_layers - 1
    aligned = {n.label for n in nodes}
    labels = [f"L{last}H{h}" for h in range(model.cfg.n_heads)] + [f"MLP{last}"]
    return [x for x in labels if x not in aligned]


@torch.no_grad()
def project_last_block(
    model: HookedTransformer, nodes: tuple[Node, ...], answer_ids: Int[Tensor, " n"]
) -> float:
    """Project the output weights of the last block's non-aligned heads and MLP off
    :func:`answer_basis`, in place. Returns the largest share of output-weight norm removed (how far
    training had drifted back since the last call)."""
    q = answer_basis(model, answer_ids).to(model.W_U.dtype)
    block = model.blocks[model.cfg.n_layers - 1]
    # W_out: [d_mlp, d_model]; a head's slice of W_O: [d_head, d_model] (a view: edited in place)
    weights = [
        block.mlp.W_out if label.startswith("MLP") else block.attn.W_O[int(label.split("H")[1])]
        for label in last_block_free(model, nodes)
    ]
    return _project_off(weights, q)


def intermediate_heads(nodes: tuple[Node, ...]) -> list[Node]:
    """Aligned heads that another aligned node reads (IOI's duplicate-token and S-inhibition heads): the
    planted graph gives them no edge to the logits."""
    read = {r for n in nodes for r in n.reads}
    return [n for n in nodes if n.is_head and n.name in read]


@torch.no_grad()
def project_intermediate(
    model: HookedTransformer, nodes: tuple[Node, ...], answer_ids: Int[Tensor, " n"]
) -> float:
    """Project the output weights of the :func:`intermediate_heads` off :func:`answer_basis`, in place,
    cutting their direct path to the answer logit differences (up to ``ln_final``'s scale). IOI's
    S-inhibition head wrote straight to the logits (0.50 of the gap by path patching in run U1, above
    the backup name mover's planted edges) instead of only through the name movers' queries. Returns
    the largest share of output-weight norm removed."""
    heads = intermediate_heads(nodes)
    if not heads:
        return 0.0
    q = answer_basis(model, answer_ids).to(model.W_U.dtype)
    return _project_off([model.blocks[n.layer].attn.W_O[n.head] for n in heads], q)


def _project_off(weights: list[Tensor], q: Float[Tensor, "d_model r"], rate: float = 1.0) -> float:
    """Remove from each weight's rows (in place) ``rate`` times their part in the span of ``q``'s
    orthonormal columns (1: all of it); returns the largest share of a weight's norm in that span."""
    removed = 0.0
    for w in weights:
        part = (w @ q) @ q.T
        removed = max(removed, float(part.norm() / w.norm().clamp_min(1e-12)))
        w -= rate * part
    return removed


def _norm_read(model: HookedTransformer, layer: int, w: Float[Tensor, "d_model k"]) -> Tensor:
    """Directions of the residual stream that ``w`` reads through block ``layer``'s ``ln1``."""
    ln = model.blocks[layer].ln1
    if hasattr(ln, "w"):
        w = ln.w.detach().float()[:, None] * w
    if model.cfg.normalization_type in ("LN", "LNPre"):
        w = w - w.mean(0, keepdim=True)
    return w


def _orthonormal(w: Float[Tensor, "d_model k"]) -> Float[Tensor, "d_model r"]:
    """Orthonormal basis of the column space of ``w`` (rank-deficient directions dropped)."""
    left, s, _ = torch.linalg.svd(w, full_matrices=False)
    return left[:, s > s.max() * 1e-5]


def token_readers(nodes: tuple[Node, ...]) -> list[Node]:
    """Aligned heads whose planted inputs include the tokens (IOI's name movers copy the name)."""
    return [n for n in nodes if n.is_head and "tokens" in n.reads and n.layer > 0]


def value_read_basis(model: HookedTransformer, readers: list[Node]) -> Float[Tensor, "d_model r"]:
    """Orthonormal basis of the residual directions the readers' values read (``ln1``-scaled, centred
    ``W_V`` columns, all readers together)."""
    w_v = [model.blocks[n.layer].attn.W_V[n.head].detach().float() for n in readers]  # [d_model, d_head]
    cols = [_norm_read(model, n.layer, w) for n, w in zip(readers, w_v, strict=True)]
    return _orthonormal(torch.cat(cols, dim=1))


@torch.no_grad()
def project_value_reads(
    model: HookedTransformer, nodes: tuple[Node, ...], mlps: bool = True, rate: float = 1.0
) -> float:
    """Project the output weights of every non-aligned head and MLP below a token-reading aligned head
    (:func:`token_readers`) off that head's value read space, in place: the planted edge is tokens ->
    reader, so the reader must copy the token from the embedding, not from a non-aligned relay. On IOI,
    session 9 measured the non-aligned layer-0 heads attending to themselves at the name positions and
    their copies of the name reaching the name movers' values: resampling one of them moved the logit
    difference by 7-9 % of the gap, 0.4-2 % with the name movers' values held. ``mlps``: the MLPs too,
    not only the heads. ``rate`` < 1 removes only that share of the part per call: applied after every
    optimiser step it decays the relay geometrically (a gradual hand-over to the planted edge; removing a
    relay the trained circuit runs through all at once collapsed the logit difference from 15.6 to 0.8).
    Returns the largest share of output-weight norm in the read space before the call."""
    readers = token_readers(nodes)
    if not readers:
        return 0.0
    aligned = {n.label for n in nodes}
    removed = 0.0
    for layer in range(max(n.layer for n in readers)):
        q = value_read_basis(model, [n for n in readers if n.layer > layer]).to(model.W_U.dtype)
        block = model.blocks[layer]
        weights = [block.attn.W_O[h] for h in range(model.cfg.n_heads) if f"L{layer}H{h}" not in aligned]
        if mlps and f"MLP{layer}" not in aligned:
            weights.append(block.mlp.W_out)
        removed = max(removed, _project_off(weights, q, rate))
    return removed
