"""Per-head output vectors and the positive / negative prompt sets of discrete-SAE head identification.

O'Neill & Bui (2024, "Sparse Autoencoders Enable Scalable and Reliable Circuit Identification in Language
Models", arXiv 2405.12522) describe each attention head on a prompt by its output written into the
residual stream, ``z @ W_O`` for that head (``attn.hook_result`` in TransformerLens terms), averaged over
positions. Positives are prompts the model completes correctly; negatives are prompts on which the task's
mechanism should not fire (IOI with a third name so that no name repeats; greater-than with year "01").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit.tasks.base import TaskDataset


def head_output_vectors(
    model: HookedTransformer, tokens: Int[Tensor, "batch pos"], *, batch_size: int = 64
) -> Float[Tensor, "batch n_layers n_heads d_model"]:
    """Each head's output ``z @ W_O`` (without ``b_O``), averaged over all positions, BOS included.

    Averaging commutes with the linear map ``W_O``, so the mean of ``hook_z`` over positions is projected
    once instead of materialising ``hook_result`` for every position.
    """
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, pos], got shape {tuple(tokens.shape)}")
    device = model.cfg.device
    names = {f"blocks.{layer}.attn.hook_z" for layer in range(model.cfg.n_layers)}
    out = []
    with torch.no_grad():
        for start in range(0, tokens.shape[0], batch_size):
            chunk = tokens[start : start + batch_size].to(device)
            _, cache = model.run_with_cache(chunk, names_filter=lambda n: n in names)
            per_layer = [
                torch.einsum("bhd,hdm->bhm", cache[f"blocks.{layer}.attn.hook_z"].mean(1), model.W_O[layer])
                for layer in range(model.cfg.n_layers)
            ]
            out.append(torch.stack(per_layer, dim=1))
    return torch.cat(out)


@dataclass(frozen=True)
class PromptSets:
    """Positive prompts (the model answers correctly) and their paired negatives (the corruptions)."""

    positive_tokens: Int[Tensor, "n_pos pos"]
    negative_tokens: Int[Tensor, "n_neg pos"]
    positive_index: Int[Tensor, " n_pos"]
    """Indices into the task dataset of the kept prompts (their corruptions are the negatives)."""
    accuracy: float
    """Share of the dataset's clean prompts the model got right (before filtering)."""


def positives_and_negatives(
    model: HookedTransformer, data: TaskDataset, *, max_prompts: int | None = None
) -> PromptSets:
    """Clean prompts the model gets right, and the corrupted partners of those same prompts.

    "Right" is the task's own criterion (``per_prompt_metric > 0``: IOI logit difference, greater-than
    probability difference). Pairing keeps the two sets the same size and the same templates.
    """
    device = model.cfg.device
    with torch.no_grad():
        logits = model(data.clean_tokens.to(device))
        correct = (data.per_prompt_metric(logits.float()).cpu() > 0).nonzero().flatten()
    accuracy = len(correct) / len(data)
    if len(correct) < 2:
        raise ValueError(
            f"the model gets only {len(correct)} of {len(data)} {data.task} prompts right, too few to "
            "form positives; use a model that solves the task or draw more prompts"
        )
    if max_prompts is not None:
        correct = correct[:max_prompts]
    return PromptSets(
        positive_tokens=data.clean_tokens[correct],
        negative_tokens=data.corrupted_tokens[correct],
        positive_index=correct,
        accuracy=accuracy,
    )
