"""Sender outputs and receiver inputs as stacked tensors, in :class:`EdgeGraph` order.

Senders are read from hooks every model has (``blocks.0.hook_resid_pre`` for the embeddings,
``attn.hook_z`` times ``W_O`` per head, ``hook_mlp_out``); receivers from the split-input hooks that
:func:`circuitkit.edges.graph.split_inputs` turns on.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit.edges.graph import QKV, EdgeGraph


def sender_hook_names(graph: EdgeGraph) -> list[str]:
    names = ["blocks.0.hook_resid_pre"]
    for layer in range(graph.n_layers):
        names.append(f"blocks.{layer}.attn.hook_z")
        if graph.has_mlp:
            names.append(f"blocks.{layer}.hook_mlp_out")
    return names


def head_outputs(model: HookedTransformer, layer: int, z: Float[Tensor, "batch pos head d_head"]) -> Tensor:
    """Each head's write into the residual stream, ``z_h @ W_O[h]`` (no ``b_O``).

    Returns ``[head, batch, pos, d_model]``.
    """
    return torch.einsum("bphe,hem->hbpm", z, model.blocks[layer].attn.W_O)


def sender_outputs(
    model: HookedTransformer, graph: EdgeGraph, acts: dict[str, Tensor]
) -> Float[Tensor, "n_senders batch pos d_model"]:
    """Every sender's output, stacked in graph order, from activations at :func:`sender_hook_names`.

    No autograd graph is kept (the weights ``W_O`` require grad in a loaded model).
    """
    with torch.no_grad():
        parts = [acts["blocks.0.hook_resid_pre"][None]]
        for layer in range(graph.n_layers):
            parts.append(head_outputs(model, layer, acts[f"blocks.{layer}.attn.hook_z"]))
            if graph.has_mlp:
                parts.append(acts[f"blocks.{layer}.hook_mlp_out"][None])
        return torch.cat(parts)


def receiver_hook_names(graph: EdgeGraph) -> list[str]:
    names = []
    for layer in range(graph.n_layers):
        names += [f"blocks.{layer}.hook_{x}_input" for x in QKV]
        if graph.has_mlp:
            names.append(f"blocks.{layer}.hook_mlp_in")
    return [*names, graph.final_hook]


def stack_receivers(
    graph: EdgeGraph, values: dict[str, Tensor]
) -> Float[Tensor, "n_receivers batch pos d_model"]:
    """Per-receiver tensors (inputs or their gradients) stacked in graph order.

    ``hook_{q,k,v}_input`` hold ``[batch, pos, head, d_model]``; each head is one receiver.
    """
    parts = []
    for layer in range(graph.n_layers):
        for x in QKV:
            parts.append(values[f"blocks.{layer}.hook_{x}_input"].permute(2, 0, 1, 3))
        if graph.has_mlp:
            parts.append(values[f"blocks.{layer}.hook_mlp_in"][None])
    parts.append(values[graph.final_hook][None])
    return torch.cat(parts)
