"""Shared helpers of the figure builders: array conversion, labels, the diverging colour scale."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

# Positive effects red, negative blue, zero white: the convention of the patching literature's heatmaps.
DIVERGING = "RdBu_r"
SEQUENTIAL = "Blues"


def to_numpy(values, name: str = "values", ndim: int | None = None) -> np.ndarray:
    """A float numpy copy of a tensor / array / list, checked for its number of axes."""
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    arr = np.asarray(values, dtype=float)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} axes, got shape {arr.shape}")
    return arr


def layer_labels(n_layers: int) -> list[str]:
    return [f"L{layer}" for layer in range(n_layers)]


def position_labels(n_pos: int, tokens: Sequence[str] | None) -> list[str]:
    """One unique label per position: ``"3 ␣John"``.

    The index keeps labels unique: plotly merges categorical ticks with equal text, and prompts repeat
    tokens (IOI's subject appears twice). Leading spaces are shown as ␣ so they stay visible.
    """
    if tokens is None:
        return [str(i) for i in range(n_pos)]
    if len(tokens) != n_pos:
        raise ValueError(f"got {len(tokens)} token labels for {n_pos} positions; pass one label per position")
    return [f"{i} {t.replace(' ', '␣')}" for i, t in enumerate(tokens)]


def symmetric_range(z: np.ndarray) -> float:
    """Half-width of a colour range centred at 0 that covers every finite value (1 when all are 0)."""
    finite = np.abs(z[np.isfinite(z)])
    top = float(finite.max()) if finite.size else 0.0
    return top if top > 0 else 1.0
