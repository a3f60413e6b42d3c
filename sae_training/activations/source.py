"""What the trainer reads: batches of (input, target, gradient) rows, with a resumable position."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from jaxtyping import Float
from torch import Tensor


class Batch(NamedTuple):
    """One training batch (this process's share under DDP)."""

    x: Float[Tensor, "n d_in"]
    """Dictionary input."""
    target: Float[Tensor, "n d_out"] | None
    """Transcoder target (None: reconstruct x)."""
    grad: Float[Tensor, "n d_in"] | None
    """dL/dx per token (g-SAE), else None."""


class ActivationSource(Protocol):
    """Anything that yields batches and can save / restore its position."""

    d_in: int
    d_out: int

    def next_batch(self) -> Batch: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
