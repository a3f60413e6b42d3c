"""Task metrics: logit difference and its normalised form, probability difference, KL to clean.

Every function takes the model's full logits ``[batch, pos, vocab]`` and reads the last position, the
one that predicts the answer, and returns a per-prompt tensor (differentiable, for attribution methods).
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

# The marker wraps, never mutates, the caller's function; it lives with the patching helpers.
from circuitkit.patching.common import last_position_metric, reads_last_position_only  # noqa: F401


def _last(logits: Float[Tensor, "batch pos vocab"]) -> Float[Tensor, "batch vocab"]:
    if logits.ndim != 3:
        raise ValueError(f"expected logits of shape [batch, pos, vocab], got {tuple(logits.shape)}")
    return logits[:, -1, :]


def logit_diff(
    logits: Float[Tensor, "batch pos vocab"],
    answer_ids: Int[Tensor, " batch"],
    wrong_ids: Int[Tensor, " batch"],
) -> Float[Tensor, " batch"]:
    """logit(answer) - logit(wrong) at the last position (Wang et al. 2022)."""
    last = _last(logits)
    idx = torch.arange(last.shape[0], device=last.device)
    return last[idx, answer_ids] - last[idx, wrong_ids]


def normalized(
    value: Tensor | float, clean_value: Tensor | float, corrupted_value: Tensor | float
) -> Tensor | float:
    """(m - m_corrupted) / (m_clean - m_corrupted): 1 at the clean run, 0 at the corrupted run."""
    return (value - corrupted_value) / (clean_value - corrupted_value)


def year_prob_diff(
    logits: Float[Tensor, "batch pos vocab"],
    year_ids: Int[Tensor, " 100"],
    yy: Int[Tensor, " batch"],
) -> Float[Tensor, " batch"]:
    """P(year > YY) - P(year <= YY) over the 100 two-digit year tokens (Hanna et al. 2023).

    Probabilities come from the softmax over the whole vocabulary, as in the paper.
    """
    probs = torch.softmax(_last(logits).float(), dim=-1)[:, year_ids]  # [batch, 100]
    years = torch.arange(100, device=probs.device)
    greater = years[None, :] > yy[:, None]
    return (probs * greater).sum(-1) - (probs * ~greater).sum(-1)


def kl_to_clean(
    logits: Float[Tensor, "batch pos vocab"], clean_logits: Float[Tensor, "batch pos vocab"]
) -> Float[Tensor, " batch"]:
    """KL(clean || patched) of the next-token distribution at the last position."""
    logp = torch.log_softmax(_last(logits).float(), -1)
    logq = torch.log_softmax(_last(clean_logits).float(), -1)
    return (logq.exp() * (logq - logp)).sum(-1)
