"""Matryoshka SAE (Bussmann et al. 2025, "Learning Multi-Level Features with Matryoshka SAEs"; Nabeshima
2024).

Latents are split into nested prefixes; the loss sums the reconstruction loss of every prefix, each using
only the first w latents of the same TopK code, so early latents must reconstruct on their own. Prefix
widths are either fixed group boundaries (default fractions 1/16, 1/16, 1/8, 1/4, 1/2 of the width) or
sampled per batch (plus the full width). sae-lens ships ``MatryoshkaBatchTopKTrainingSAE``; ours keeps a
per-token TopK code, so the trained dictionary is an exact sae-lens ``topk`` SAE (no threshold
conversion), and it supports sampled prefixes, which sae-lens's does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from sae_training.architectures.base import SparseCoderTrainingConfig, SparseCoderTrainingSAE, StepInput
from sae_training.architectures.registry import register_architecture
from sae_training.architectures.sparse_ops import SparseCode, sparse_decode


@dataclass
class MatryoshkaConfig(SparseCoderTrainingConfig):
    """Matryoshka training config."""

    group_fractions: list[float] = field(default_factory=lambda: [1 / 16, 1 / 16, 1 / 8, 1 / 4, 1 / 2])
    """Fixed groups as fractions of the width; prefix i ends after group i (must sum to 1)."""
    n_sampled_prefixes: int = 0
    """If > 0, ignore the fixed groups and draw this many prefix widths per batch (plus the full width)."""

    prefix_loss: Literal["mean", "sum"] = "mean"
    """How the prefixes' reconstruction losses combine: their mean, as in Bussmann et al.'s code (so the
    AuxK term keeps the weight relative to reconstruction it has in a TopK SAE), or their sum (earlier
    versions: AuxK ~#prefixes times weaker, which left 20 %+ of the latents silent on held-out text)."""

    options: ClassVar[tuple[str, ...]] = ("group_fractions", "n_sampled_prefixes", "prefix_loss")

    @classmethod
    def check_options(cls, options: dict[str, Any], width: int, k: int) -> str | None:
        if options["n_sampled_prefixes"] < 0:
            return f"--matryoshka.n-sampled-prefixes {options['n_sampled_prefixes']}: must be >= 0"
        if options["n_sampled_prefixes"] > 0:
            return None
        fracs = options["group_fractions"]
        sizes = [f * width for f in fracs]
        if fracs and all(f > 0 for f in fracs):
            whole = all(abs(s - round(s)) <= 1e-6 and round(s) >= 1 for s in sizes)
            if whole and abs(sum(fracs) - 1) <= 1e-6:
                return None
        denom = max((round(1 / f) for f in fracs if f > 0), default=1)
        return (
            f"width {width} is not divisible into the Matryoshka groups {fracs} (each width*fraction must "
            "be a whole number >= 1 and the fractions must sum to 1): use a width that is a multiple of "
            f"{denom}, or change --matryoshka.group-fractions"
        )

    @classmethod
    def architecture(cls) -> str:
        return "ck_matryoshka"

    def group_sizes(self) -> list[int]:
        """Latents per fixed group (validated to be whole numbers summing to d_sae)."""
        return [round(f * self.d_sae) for f in self.group_fractions]


def prefix_widths(cfg: MatryoshkaConfig, seed: int) -> list[int]:
    """Prefix widths for one batch, ascending, ending with d_sae."""
    if cfg.n_sampled_prefixes > 0:
        gen = torch.Generator().manual_seed(seed)
        widths = torch.randint(1, cfg.d_sae, (cfg.n_sampled_prefixes,), generator=gen).tolist()
        return [*sorted(set(widths)), cfg.d_sae]
    ends, total = [], 0
    for size in cfg.group_sizes():
        total += size
        ends.append(total)
    return ends


class MatryoshkaTrainer(SparseCoderTrainingSAE):
    """TopK code; one reconstruction loss per nested prefix, averaged (``prefix_loss``).

    Bussmann et al.'s reference code (``GlobalBatchTopKMatryoshkaSAE.get_loss_dict``) averages the
    prefixes' losses and adds the AuxK term to that mean; summing them instead multiplies the
    reconstruction by the number of prefixes while AuxK stays put, so dead latents revive far more slowly.
    (Their mean also counts a b_dec-only reconstruction; ours does not.)
    """

    cfg: MatryoshkaConfig

    def __init__(self, cfg: MatryoshkaConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)

    def prefix_reconstructions(self, code: SparseCode, widths: list[int]) -> list[Tensor]:
        """Reconstruction using only latents < w, for each w (same code, entries past w weighted 0)."""
        outs = []
        for w in widths:
            keep = (code.cols < w).to(code.acts.dtype)
            outs.append(sparse_decode(code._replace(acts=code.acts * keep), self.W_dec, self.b_dec))
        return outs

    def sparse_training_step(self, step: StepInput):  # type: ignore[override]
        res = super().sparse_training_step(step)
        widths = prefix_widths(self.cfg, step.seed + step.n_training_steps)
        losses = dict(res.losses)
        del losses["mse_loss"]
        prefix_losses = {}
        # The full-width prefix is the ordinary reconstruction: reuse it rather than decode twice.
        for w, out in zip(widths[:-1], self.prefix_reconstructions(res.code, widths[:-1]), strict=True):
            prefix_losses[f"mse_loss_prefix_{w}"] = (out - res.target).pow(2).sum(-1).mean()
        prefix_losses["mse_loss"] = res.losses["mse_loss"]
        reconstruction = sum(prefix_losses.values())
        if self.cfg.prefix_loss == "mean":
            reconstruction = reconstruction / len(prefix_losses)
        # The logged parts stay each prefix's own squared error; the total combines them as configured.
        return res._replace(loss=reconstruction + sum(losses.values()), losses={**prefix_losses, **losses})


register_architecture("matryoshka", MatryoshkaTrainer, MatryoshkaConfig)
