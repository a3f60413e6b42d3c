"""Head and head-pair scores from discrete codes (O'Neill & Bui 2024, arXiv 2405.12522).

Node score of a head: the number of distinct codes it takes on positive prompts and never on negative
ones (optionally divided by the number of distinct codes it takes at all). Edge score of an ordered head
pair (h1, h2), h1 != h2: the number of distinct code pairs (code of h1, code of h2) seen together on some
positive prompt and on no negative prompt. All counts are computed with one ``unique`` / ``isin`` over
packed integer keys, so scoring is a few tensor operations however many heads there are.
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

EdgeToHead = Literal["top_pairs", "sum"]


def _check_codes(pos: Tensor, neg: Tensor) -> None:
    if pos.ndim != 2 or neg.ndim != 2 or pos.shape[1] != neg.shape[1]:
        raise ValueError(
            f"codes must be [n_prompts, n_heads] with the same n_heads, got {tuple(pos.shape)} and "
            f"{tuple(neg.shape)}"
        )
    if pos.shape[0] == 0 or neg.shape[0] == 0:
        raise ValueError("need at least one positive and one negative prompt")


def _distinct_keys(keys: Int[Tensor, "*shape"]) -> Tensor:
    return torch.unique(keys.flatten())


def node_scores(
    pos_codes: Int[Tensor, "n_pos n_heads"],
    neg_codes: Int[Tensor, "n_neg n_heads"],
    n_latents: int,
    *,
    normalise: bool = False,
) -> Float[Tensor, " n_heads"]:
    """Distinct codes per head seen on positives and never on negatives (/ all its distinct codes)."""
    _check_codes(pos_codes, neg_codes)
    n_heads = pos_codes.shape[1]
    head = torch.arange(n_heads, device=pos_codes.device)
    pos_keys = _distinct_keys(head * n_latents + pos_codes)
    neg_keys = _distinct_keys(head * n_latents + neg_codes)
    only_pos = pos_keys[~torch.isin(pos_keys, neg_keys)]
    score = torch.bincount(only_pos // n_latents, minlength=n_heads).float()
    if normalise:
        all_keys = torch.unique(torch.cat([pos_keys, neg_keys]))
        score = score / torch.bincount(all_keys // n_latents, minlength=n_heads).float()
    return score


def edge_scores(
    pos_codes: Int[Tensor, "n_pos n_heads"],
    neg_codes: Int[Tensor, "n_neg n_heads"],
    n_latents: int,
    *,
    normalise: bool = False,
) -> Float[Tensor, "n_heads n_heads"]:
    """Distinct code pairs per ordered head pair seen on positives and never on negatives.

    ``normalise`` divides by the number of distinct pairs seen on positives plus those seen on
    negatives, as the paper's code does. The diagonal (a head with itself) is zero.
    """
    _check_codes(pos_codes, neg_codes)
    n_heads = pos_codes.shape[1]
    k = n_latents

    def pair_keys(codes: Tensor) -> Tensor:
        # key = ((h1 * H + h2) * K + c1) * K + c2: one integer per (head pair, code pair)
        pair = torch.arange(n_heads * n_heads, device=codes.device).view(n_heads, n_heads)
        c1, c2 = codes[:, :, None], codes[:, None, :]
        return _distinct_keys((pair * k + c1) * k + c2)

    pos_keys, neg_keys = pair_keys(pos_codes), pair_keys(neg_codes)
    only_pos = pos_keys[~torch.isin(pos_keys, neg_keys)]
    size = n_heads * n_heads
    score = torch.bincount(only_pos // (k * k), minlength=size).float()
    if normalise:
        total = torch.bincount(pos_keys // (k * k), minlength=size) + torch.bincount(
            neg_keys // (k * k), minlength=size
        )
        score = score / total.clamp(min=1).float()
    score = score.view(n_heads, n_heads)
    score.fill_diagonal_(0)
    return score


def heads_from_edges(
    edges: Float[Tensor, "n_heads n_heads"], *, how: EdgeToHead = "sum", top_fraction: float = 0.25
) -> Float[Tensor, " n_heads"]:
    """Per-head scores from pair scores.

    ``sum``: a head's total score over its pairs (both directions). ``top_pairs``: how often the head
    appears in the top ``top_fraction`` of ordered pairs, the paper's reading (its code keeps the first
    ``n_heads**2 // 2`` head mentions, i.e. the top quarter of pairs). Ties in ``top_pairs`` are broken
    by pair order, which is arbitrary; ``sum`` has no ties to break.
    """
    n_heads = edges.shape[0]
    if how == "sum":
        return edges.sum(0) + edges.sum(1)
    if how == "top_pairs":
        if not 0 < top_fraction <= 1:
            raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
        n_top = max(1, int(top_fraction * n_heads * n_heads))
        order = torch.argsort(edges.flatten(), descending=True, stable=True)[:n_top]
        members = torch.cat([order // n_heads, order % n_heads])
        return torch.bincount(members, minlength=n_heads).float()
    raise ValueError(f"how must be 'sum' or 'top_pairs', got {how!r}")


def code_counts(codes: Int[Tensor, "n n_heads"], n_latents: int) -> Int[Tensor, "n_heads n_latents"]:
    """How many prompts gave each head each code (the histogram data the app draws)."""
    n_heads = codes.shape[1]
    head = torch.arange(n_heads, device=codes.device)
    keys = (head * n_latents + codes).flatten()
    return torch.bincount(keys, minlength=n_heads * n_latents).view(n_heads, n_latents)
