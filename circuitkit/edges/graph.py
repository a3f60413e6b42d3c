"""The edge vocabulary: senders (what writes into the residual stream) -> receivers (what reads it).

An *edge* is a direct path through the residual stream, in TransformerLens terms:

- **senders** write into the residual stream: ``embed`` (token + position embeddings,
  ``hook_embed + hook_pos_embed``), each head's output ``L{l}H{h}`` (``attn.hook_z[:, :, h] @ W_O[h]``,
  the per-head ``attn.hook_result`` without the shared bias ``b_O``) and each MLP's output ``MLP{l}``
  (``blocks.{l}.hook_mlp_out``);
- **receivers** read a copy of it: each head's query / key / value input ``L{l}H{h}.q`` / ``.k`` / ``.v``
  (``blocks.{l}.hook_q_input`` / ``hook_k_input`` / ``hook_v_input``, head ``h``, with
  ``cfg.use_split_qkv_input``), each MLP's input ``MLP{l}.in`` (``blocks.{l}.hook_mlp_in``, with
  ``cfg.use_hook_mlp_in``) and the unembedding's input ``logits`` (the last ``hook_resid_post``, before
  ``ln_final``).

A receiver's input is the sum of every earlier sender's output plus constant biases, so the edge
``s -> r`` is the term ``a_s`` in ``r``'s input and nothing else: patching it changes that one copy of the
residual stream, while every other receiver still reads ``a_s`` as the run computed it. A head sends to
every receiver in a later layer and to its own layer's MLP (the MLP reads ``resid_mid``); an MLP sends to
later layers; ``embed`` sends to everything.

Names used in result tables (``sender``, ``receiver`` columns; ``component`` = ``"sender->receiver"``):
senders ``embed``, ``L1H3``, ``MLP2``; receivers ``L2H0.q``, ``L2H0.k``, ``L2H0.v``, ``MLP3.in``,
``logits``. A receiver's *node* (for drawing) is its name before the dot (``L2H0``, ``MLP3``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import torch
from jaxtyping import Bool
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit.components import head_label

QKV = ("q", "k", "v")
SenderKind = Literal["embed", "head", "mlp"]
ReceiverKind = Literal["q", "k", "v", "mlp", "logits"]


@dataclass(frozen=True)
class Sender:
    """A component that writes into the residual stream."""

    kind: SenderKind
    layer: int
    """Layer of the component (``embed``: -1, before every block)."""
    head: int | None = None

    @property
    def name(self) -> str:
        if self.kind == "embed":
            return "embed"
        if self.kind == "head":
            return head_label(self.layer, int(self.head))  # type: ignore[arg-type]
        return f"MLP{self.layer}"


@dataclass(frozen=True)
class Receiver:
    """A component input that reads the residual stream."""

    kind: ReceiverKind
    layer: int
    """Layer of the component (``logits``: ``n_layers``, after every block)."""
    head: int | None = None

    @property
    def name(self) -> str:
        if self.kind == "logits":
            return "logits"
        if self.kind == "mlp":
            return f"MLP{self.layer}.in"
        return f"{head_label(self.layer, int(self.head))}.{self.kind}"  # type: ignore[arg-type]

    @property
    def node(self) -> str:
        """The component this input belongs to (``L2H0``, ``MLP3``, ``logits``)."""
        return self.name.split(".")[0]

    @property
    def hook_name(self) -> str:
        """The TransformerLens hook holding this input (with the split-input settings on)."""
        if self.kind == "logits":
            raise ValueError("the logits receiver reads the last hook_resid_post; use EdgeGraph.final_hook")
        if self.kind == "mlp":
            return f"blocks.{self.layer}.hook_mlp_in"
        return f"blocks.{self.layer}.hook_{self.kind}_input"


@dataclass(frozen=True)
class EdgeGraph:
    """Every sender and receiver of a model, in forward order, and which pairs are edges.

    Senders: ``embed``, then per layer its heads and its MLP. Receivers: per layer the heads' q inputs,
    k inputs, v inputs (head order within each), the MLP input, and finally ``logits``.
    """

    n_layers: int
    n_heads: int
    has_mlp: bool

    @classmethod
    def of(cls, model: HookedTransformer) -> EdgeGraph:
        cfg = model.cfg
        return cls(cfg.n_layers, cfg.n_heads, not cfg.attn_only)

    @cached_property
    def senders(self) -> list[Sender]:
        out = [Sender("embed", -1)]
        for layer in range(self.n_layers):
            out += [Sender("head", layer, h) for h in range(self.n_heads)]
            if self.has_mlp:
                out.append(Sender("mlp", layer))
        return out

    @cached_property
    def receivers(self) -> list[Receiver]:
        out: list[Receiver] = []
        for layer in range(self.n_layers):
            for kind in QKV:
                out += [Receiver(kind, layer, h) for h in range(self.n_heads)]  # type: ignore[arg-type]
            if self.has_mlp:
                out.append(Receiver("mlp", layer))
        out.append(Receiver("logits", self.n_layers))
        return out

    @property
    def final_hook(self) -> str:
        """Hook of the ``logits`` receiver's input: the residual stream before ``ln_final``."""
        return f"blocks.{self.n_layers - 1}.hook_resid_post"

    @cached_property
    def sender_index(self) -> dict[str, int]:
        return {s.name: i for i, s in enumerate(self.senders)}

    @cached_property
    def receiver_index(self) -> dict[str, int]:
        return {r.name: i for i, r in enumerate(self.receivers)}

    @staticmethod
    def connects(s: Sender, r: Receiver) -> bool:
        """Whether ``s`` writes into the residual stream before ``r`` reads it."""
        if s.kind == "embed" or r.kind == "logits":
            return True
        if r.kind == "mlp" and s.kind == "head":
            return s.layer <= r.layer  # the MLP reads resid_mid, after its own layer's heads
        return s.layer < r.layer

    @cached_property
    def mask(self) -> Bool[Tensor, "n_senders n_receivers"]:
        """True where ``(sender, receiver)`` is an edge."""
        return torch.tensor([[self.connects(s, r) for r in self.receivers] for s in self.senders])

    @property
    def n_edges(self) -> int:
        return int(self.mask.sum())

    def edges(self) -> list[tuple[int, int]]:
        """Every edge as ``(sender index, receiver index)``, in (sender, receiver) order."""
        return [tuple(x) for x in self.mask.nonzero().tolist()]  # type: ignore[misc]

    def edge_name(self, s: int, r: int) -> str:
        return f"{self.senders[s].name}->{self.receivers[r].name}"

    def parse_edge(self, edge: str | tuple[str, str]) -> tuple[int, int]:
        """``"L0H2->L3H1.q"`` or ``("L0H2", "L3H1.q")`` -> (sender index, receiver index), checked."""
        s_name, r_name = edge.split("->") if isinstance(edge, str) else edge
        s_name, r_name = s_name.strip(), r_name.strip()
        if s_name not in self.sender_index:
            raise ValueError(f"unknown sender {s_name!r}; senders are embed, L{{l}}H{{h}} and MLP{{l}}")
        if r_name not in self.receiver_index:
            raise ValueError(
                f"unknown receiver {r_name!r}; receivers are L{{l}}H{{h}}.q/.k/.v, MLP{{l}}.in and logits"
            )
        s, r = self.sender_index[s_name], self.receiver_index[r_name]
        if not self.mask[s, r]:
            raise ValueError(
                f"{s_name}->{r_name} is not an edge: {s_name} does not write before {r_name} reads"
            )
        return s, r

    def edge_mask(self, edges: Sequence[str | tuple[str, str] | tuple[int, int]]) -> Tensor:
        """A boolean ``[n_senders, n_receivers]`` mask holding the given edges."""
        m = torch.zeros_like(self.mask)
        for e in edges:
            s, r = e if isinstance(e, tuple) and isinstance(e[0], int) else self.parse_edge(e)  # type: ignore[arg-type]
            m[s, r] = True
        return m


def check_edge_model(model: HookedTransformer) -> None:
    """Refuse, by name, models whose residual stream is not a plain sum of these senders."""
    cfg = model.cfg
    problems = []
    if cfg.parallel_attn_mlp:
        problems.append("parallel attention and MLP (the MLP reads resid_pre, not resid_mid)")
    if getattr(cfg, "n_key_value_heads", None) is not None:
        problems.append("grouped-query attention (keys / values shared between heads)")
    if cfg.positional_embedding_type == "shortformer":
        problems.append("shortformer position embeddings (added to q / k inputs, not the residual)")
    from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

    if cfg.original_architecture in POST_NORM_ARCHITECTURES:
        problems.append("post-norms (a block's output is normalised before it enters the residual stream)")
    if problems:
        raise ValueError(
            f"edge methods need every block's output added straight to the residual stream; "
            f"{cfg.model_name} has {'; '.join(problems)}"
        )


@contextmanager
def split_inputs(model: HookedTransformer) -> Iterator[None]:
    """Turn on per-receiver input hooks (``hook_q_input`` ... ``hook_mlp_in``), restoring the settings after.

    Models are shared (the app caches them), so the flags are put back however the block exits.
    """
    cfg = model.cfg
    saved = (cfg.use_split_qkv_input, cfg.use_hook_mlp_in, cfg.use_attn_in)
    try:
        cfg.use_split_qkv_input = True
        cfg.use_attn_in = False
        if not cfg.attn_only:
            cfg.use_hook_mlp_in = True
        yield
    finally:
        cfg.use_split_qkv_input, cfg.use_hook_mlp_in, cfg.use_attn_in = saved
