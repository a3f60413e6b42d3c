"""The pieces every planted task shares: aligned nodes, aligned batches, the high-level model interface.

A *high-level causal model* (Geiger et al. 2022, "Inference with interchange interventions"; Gupta et
al. 2024, InterpBench, arXiv 2407.14494) computes a task's answer through named intermediate variables.
Each variable is *aligned* to one component of the transformer (an attention head's ``hook_z`` or an
MLP's ``hook_mlp_out``) at one named position. Strict interchange intervention training then makes the
transformer's component behave like the variable under interventions, and every other component inert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from jaxtyping import Float, Int
from torch import Tensor


@dataclass(frozen=True)
class Node:
    """One high-level variable and the component it is aligned to."""

    name: str
    """Short identifier, e.g. ``"duplicate"``."""
    role: str
    """Role in the literature's words (``"duplicate token"``, ``"name mover"`` ...)."""
    layer: int
    head: int | None
    """Head index, or None for the layer's MLP."""
    position: str
    """Named position (a key of :attr:`AlignedBatch.positions`) where the variable lives."""
    reads: tuple[str, ...] = ()
    """Names of the nodes this one reads (the planted edges into it); ``"tokens"`` for the input."""

    @property
    def is_head(self) -> bool:
        return self.head is not None

    @property
    def label(self) -> str:
        return f"L{self.layer}H{self.head}" if self.head is not None else f"MLP{self.layer}"

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "role": self.role,
            "layer": self.layer,
            "head": self.head,
            "label": self.label,
            "position": self.position,
            "reads": list(self.reads),
        }


@dataclass
class AlignedBatch:
    """Prompts that share one token layout, so every named position is one index for the whole batch."""

    tokens: Int[Tensor, "batch pos"]
    positions: dict[str, int]
    """Named position -> token index (the same in every row)."""
    variables: dict[str, Tensor] = field(default_factory=dict)
    """Per-row inputs of the high-level model (token ids of names, years ...)."""
    layout: str = ""
    """The template the rows were drawn from; a source batch for interventions uses the same one."""

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def permuted(self, generator: torch.Generator) -> AlignedBatch:
        """The same rows in a random order (a source batch must not pair rows by construction)."""
        idx = torch.randperm(len(self), generator=generator).to(self.tokens.device)
        return AlignedBatch(
            self.tokens[idx],
            dict(self.positions),
            {k: v[idx] for k, v in self.variables.items()},
            self.layout,
        )

    def to(self, device: torch.device | str) -> AlignedBatch:
        return AlignedBatch(
            self.tokens.to(device),
            dict(self.positions),
            {k: v.to(device) for k, v in self.variables.items()},
            self.layout,
        )


class HighLevelModel(Protocol):
    """A task's causal model: nodes, aligned batches, and its output under single-node interventions."""

    task: str
    nodes: tuple[Node, ...]

    def sample(self, rng, n: int, *, split: str = "train") -> AlignedBatch:
        """``n`` prompts of one randomly chosen layout (template), with their high-level inputs."""
        ...

    def answer_ids(self) -> Int[Tensor, " n"]:
        """Token ids of every answer the task can ask for (the logit differences the metric reads)."""
        ...

    def output(
        self,
        base: AlignedBatch,
        source: AlignedBatch | None = None,
        node: Int[Tensor, " batch"] | None = None,
    ) -> Float[Tensor, "batch vocab"]:
        """Target next-token distribution at the last position; row ``i`` with ``node[i] = k >= 0`` has
        node ``k`` set to its value on ``source`` row ``i`` (``-1``: no intervention)."""
        ...
