"""Mutual Choice and Feature Choice SAEs with aux_zipf_loss (Ayonrinde 2024, "Adaptive Sparse Allocation
with Mutual Choice & Feature Choice Sparse Autoencoders", arXiv 2411.02124).

- **Mutual Choice**: one top-(k*B) over the whole [tokens x latents] matrix of a batch of B tokens: the
  total budget is fixed, per-token counts vary (the same operation as BatchTopK).
- **Feature Choice**: each latent takes its top-m tokens of the batch, m = ceil(k*B / d_sae), so the total
  budget is again about k*B. (The paper can also give latents Zipf-shaped capacities; we use the uniform
  capacity, its simplest setting.)
- **aux_zipf_loss**: AuxK generalised to *under-used* latents: rank latents by their running firing
  density; the target density of rank r follows a Zipf law k * r^-alpha / sum_r' r'^-alpha; latents whose
  density is below their target reconstruct the residual as in AuxK.

Both selections depend on the whole batch, so a trained dictionary is saved as sae-lens's ``jumprelu``
inference SAE with per-latent thresholds (a running average of the smallest selected pre-activation),
the conversion sae-lens itself uses for BatchTopK.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sae_training.architectures.base import (
    SparseCoderTrainingConfig,
    SparseCoderTrainingSAE,
    StepInput,
)
from sae_training.architectures.sparse_ops import SparseCode, sort_by_row


@dataclass
class ChoiceConfig(SparseCoderTrainingConfig):
    """Shared fields of Mutual and Feature Choice."""

    zipf_alpha: float = 1.0
    """Exponent of the Zipf law giving each density rank its target density."""
    density_decay: float = 0.99
    """Decay of the running firing density per step."""
    threshold_decay: float = 0.99
    """Decay of the running inference threshold per step."""

    @classmethod
    def inference_architecture(cls) -> str:
        return "jumprelu"


@dataclass
class MutualChoiceConfig(ChoiceConfig):
    """Mutual Choice training config."""

    @classmethod
    def architecture(cls) -> str:
        return "ck_mutual_choice"


@dataclass
class FeatureChoiceConfig(ChoiceConfig):
    """Feature Choice training config."""

    @classmethod
    def architecture(cls) -> str:
        return "ck_feature_choice"


def zipf_targets(d_sae: int, k: float, alpha: float, device: torch.device) -> Tensor:
    """Target firing density of each density rank (rank 1 first); they sum to k active latents per token."""
    ranks = torch.arange(1, d_sae + 1, device=device, dtype=torch.float32)
    law = ranks.pow(-alpha)
    return (k * law / law.sum()).clamp(max=1.0)


class _ChoiceTrainer(SparseCoderTrainingSAE):
    """Shared state: running densities (for aux_zipf_loss) and inference thresholds."""

    cfg: ChoiceConfig

    def __init__(self, cfg: ChoiceConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)
        kw = {"device": self.device, "dtype": self.dtype}
        self.register_buffer("density", torch.zeros(cfg.d_sae, **kw))
        self.register_buffer("threshold", torch.zeros(cfg.d_sae, **kw))
        self.register_buffer("n_updates", torch.zeros((), **kw))

    def under_used(self) -> Tensor:
        """Latents whose running density is below the Zipf target of their density rank."""
        order = torch.argsort(self.density, descending=True)
        targets = torch.empty_like(self.density)
        targets[order] = zipf_targets(self.cfg.d_sae, self.cfg.k, self.cfg.zipf_alpha, self.device).to(
            self.dtype
        )
        return self.density < targets

    def extra_losses(self, step, code, pre, x, out, target):  # type: ignore[override]
        self.update_statistics(code, pre)
        # Densities are meaningless until the running average has seen ~1/(1-decay) batches.
        warming_up = self.n_updates < 1 / (1 - self.cfg.density_decay)
        mask = None if warming_up else self.under_used()
        return {"aux_zipf_loss": self.aux_reconstruction_loss(mask, pre, x, out, target)}

    @torch.no_grad()
    def update_statistics(self, code: SparseCode, pre: Tensor) -> None:
        if not self.training:
            return
        fired = torch.bincount(code.cols, minlength=self.cfg.d_sae).to(self.dtype) / code.n_tokens
        d = self.cfg.density_decay if self.n_updates > 0 else 0.0
        self.density.mul_(d).add_((1 - d) * fired)
        batch_threshold = self.batch_threshold(code, pre)
        t = self.cfg.threshold_decay if self.n_updates > 0 else 0.0
        self.threshold.mul_(t).add_((1 - t) * batch_threshold)
        self.n_updates += 1

    def batch_threshold(self, code: SparseCode, pre: Tensor) -> Tensor:
        raise NotImplementedError

    def inference_state_keys(self) -> list[str]:
        return [*super().inference_state_keys(), "threshold"]


class MutualChoiceTrainer(_ChoiceTrainer):
    """Global top-(k*B) over tokens x latents."""

    def __init__(self, cfg: MutualChoiceConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)

    def select(self, pre: Tensor, step: StepInput | None) -> tuple[Tensor, Tensor]:
        n, d_sae = pre.shape
        flat = torch.topk(pre.reshape(-1), min(self.cfg.k * n, n * d_sae), sorted=False).indices
        return sort_by_row(flat // d_sae, flat % d_sae)

    def batch_threshold(self, code: SparseCode, pre: Tensor) -> Tensor:
        # One threshold for all latents: the smallest selected pre-activation (never below 0: ReLU follows).
        chosen = pre[code.rows, code.cols]
        return chosen.min().clamp_min(0).expand(self.cfg.d_sae)


class FeatureChoiceTrainer(_ChoiceTrainer):
    """Each latent picks its top-m tokens of the batch."""

    def __init__(self, cfg: FeatureChoiceConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)

    def capacity(self, n_tokens: int) -> int:
        """m: tokens each latent may take, so that the total is about k * n_tokens."""
        return max(1, min(n_tokens, math.ceil(self.cfg.k * n_tokens / self.cfg.d_sae)))

    def select(self, pre: Tensor, step: StepInput | None) -> tuple[Tensor, Tensor]:
        n, d_sae = pre.shape
        m = self.capacity(n)
        rows = torch.topk(pre.T, m, dim=-1, sorted=False).indices.reshape(-1)
        cols = torch.arange(d_sae, device=pre.device).repeat_interleave(m)
        return sort_by_row(rows, cols)

    def batch_threshold(self, code: SparseCode, pre: Tensor) -> Tensor:
        # Per latent: the m-th largest pre-activation in the batch (its selection cut-off).
        m = self.capacity(code.n_tokens)
        return torch.topk(pre.T, m, dim=-1).values[:, -1].clamp_min(0)
