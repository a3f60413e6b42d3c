"""Mutual Choice and Feature Choice SAEs with aux_zipf_loss (Ayonrinde 2024, "Adaptive Sparse Allocation
with Mutual Choice & Feature Choice Sparse Autoencoders", arXiv 2411.02124).

- **Mutual Choice**: one top-(k*B) over the whole [tokens x latents] matrix of a batch of B tokens: the
  total budget is fixed, per-token counts vary (the same operation as BatchTopK).
- **Feature Choice**: each latent takes its top-m tokens of the batch, m = ceil(k*B / d_sae), so the total
  budget is again about k*B. (The paper can also give latents Zipf-shaped capacities; we use the uniform
  capacity, its simplest setting.)
- **aux_zipf_loss**: AuxK generalised to *under-used* latents: rank latents by their running firing
  density; the target density of rank r follows a Zipf law c * r^-alpha, with c such that the targets sum
  to k (the active latents per token) once capped at 1 (a latent fires at most once per token: the
  excess of capped ranks is spread over the others); latents whose density is below their target
  reconstruct the residual as in AuxK (same normalised loss), from outside each token's main code.
  Ranks are by real usage (entries that fired, activation != 0): latents of equal density share the
  mean target of their ranks, and only latents used less than the average (k / d_sae) can be flagged.
  Without these two rules the law misfires on flat usage (under Feature Choice every latent takes m
  tokens, so all tie, and an argsort flagged an arbitrary ~15 %) and at the top (a dense latent at 0.9
  sits "below" a target capped at 1 and got the revival loss). The average rule is our reading of
  "under-used", which the paper targets at the tail; it is not a constant from the paper.

Both selections depend on the whole batch, so a trained dictionary is saved as sae-lens's ``jumprelu``
inference SAE with per-latent thresholds (a running average of the smallest selected pre-activation),
the conversion sae-lens itself uses for BatchTopK.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from sae_training.architectures.base import (
    SparseCoderTrainingConfig,
    SparseCoderTrainingSAE,
    StepInput,
)
from sae_training.architectures.registry import register_architecture
from sae_training.architectures.sparse_ops import SparseCode, sort_by_row
from sae_training.distributed import all_gather_rows, all_reduce_sum


@dataclass
class ChoiceConfig(SparseCoderTrainingConfig):
    """Shared fields of Mutual and Feature Choice."""

    zipf_alpha: float = 1.0
    """Exponent of the Zipf law giving each density rank its target density."""
    density_decay: float = 0.99
    """Decay of the running firing density per step."""
    threshold_decay: float = 0.9
    """Decay of the running inference threshold per step. 0.9 (a ~10-step window): the thresholds must
    follow the weights; at 0.99 a 40-step run saved Mutual Choice thresholds that fired 10.7 latents per
    token where training selected 8."""

    options: ClassVar[tuple[str, ...]] = ("zipf_alpha", "density_decay", "threshold_decay")

    @classmethod
    def check_options(cls, options: dict[str, Any], width: int, k: int) -> str | None:
        if not options["zipf_alpha"] > 0:
            return f"zipf_alpha {options['zipf_alpha']}: must be > 0"
        for name in ("density_decay", "threshold_decay"):
            if not 0 <= options[name] < 1:
                return f"{name} {options[name]}: must be in [0, 1)"
        return None

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
    """Target firing density of each density rank (rank 1 first): c * r^-alpha capped at 1, c chosen so
    the targets sum to k active latents per token (water-filling: the capped ranks' excess goes to the
    uncapped ones in proportion to the law)."""
    ranks = torch.arange(1, d_sae + 1, device=device, dtype=torch.float64)
    law = ranks.pow(-alpha)
    capped = torch.zeros(d_sae, dtype=torch.bool, device=device)
    k = min(float(k), float(d_sae))
    for _ in range(d_sae):  # at most one more rank is capped per pass; usually 1-3 passes
        scale = (k - capped.sum()) / law[~capped].sum()
        targets = torch.where(capped, torch.ones_like(law), scale * law)
        newly = targets > 1
        if not newly.any():
            break
        capped |= newly
    return targets.clamp(max=1.0).float()


def rank_targets(density: Float[Tensor, " d_sae"], targets: Float[Tensor, " d_sae"]) -> Tensor:
    """Each latent's target: that of its density rank, averaged over latents of equal density (ties)."""
    order = torch.argsort(density, descending=True, stable=True)
    sorted_density = density[order]
    _, group, counts = torch.unique_consecutive(sorted_density, return_inverse=True, return_counts=True)
    group_mean = torch.zeros(len(counts), dtype=targets.dtype, device=targets.device)
    group_mean.index_add_(0, group, targets).div_(counts.to(targets.dtype))
    out = torch.empty_like(targets)
    out[order] = group_mean[group]
    return out


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
        """Latents whose running density is below the Zipf target of their density rank (ties share
        their ranks' mean target) and below the average density k / d_sae."""
        density = self.density.float()
        law = zipf_targets(self.cfg.d_sae, self.cfg.k, self.cfg.zipf_alpha, density.device)
        targets = rank_targets(density, law)
        average = min(self.cfg.k, self.cfg.d_sae) / self.cfg.d_sae
        # A relative margin: float noise in a running average must not flag a latent sitting exactly on
        # the average (all latents under Feature Choice).
        margin = 1 - 1e-4
        return (density < targets * margin) & (density < average * margin)

    def extra_losses(self, step, code, pre, x, out, target):  # type: ignore[override]
        self.update_statistics(code, pre)
        # Densities are meaningless until the running average has seen ~1/(1-decay) batches.
        warming_up = self.n_updates < 1 / (1 - self.cfg.density_decay)
        mask = None if warming_up else self.under_used()
        return {"aux_zipf_loss": self.aux_reconstruction_loss(mask, pre, x, out, target, code)}

    @torch.no_grad()
    def update_statistics(self, code: SparseCode, pre: Tensor) -> None:
        if not self.training:
            return
        # Real usage: a selected entry whose activation is 0 (non-positive pre-activation, then ReLU) did
        # not fire; counting it would make every Feature Choice latent look equally used.
        active = code.cols[code.acts.detach() != 0]
        counts = torch.bincount(active, minlength=self.cfg.d_sae).to(self.dtype)
        fired = self._global_sum(counts) / self.n_global(code.n_tokens)
        d = self.cfg.density_decay if self.n_updates > 0 else 0.0
        self.density.mul_(d).add_((1 - d) * fired)
        batch_threshold = self.batch_threshold(code, pre)
        t = self.cfg.threshold_decay if self.n_updates > 0 else 0.0
        self.threshold.mul_(t).add_((1 - t) * batch_threshold)
        self.n_updates += 1

    def batch_threshold(self, code: SparseCode, pre: Tensor) -> Tensor:
        """Per latent, the smallest pre-activation the batch selection admitted (set by ``select``,
        global under DDP), floored at 0 since ReLU follows."""
        return self._cutoff.clamp_min(0).expand(self.cfg.d_sae).clone()

    # ---- DDP: the selections are over the global batch (Ayonrinde 2024 select per batch) --------------
    def _distributed(self) -> bool:
        return self.dist_info is not None and self.dist_info.enabled

    def n_global(self, n_local: int) -> int:
        """Tokens in the global batch (equal shares per process)."""
        return n_local * (self.dist_info.world_size if self._distributed() else 1)  # type: ignore[union-attr]

    def _global_sum(self, t: Tensor) -> Tensor:
        return all_reduce_sum(t, self.dist_info) if self._distributed() else t  # type: ignore[arg-type]

    def inference_state_keys(self) -> list[str]:
        return [*super().inference_state_keys(), "threshold"]


class MutualChoiceTrainer(_ChoiceTrainer):
    """Global top-(k*B) over tokens x latents."""

    def __init__(self, cfg: MutualChoiceConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)

    def select(self, pre: Tensor, step: StepInput | None) -> tuple[Tensor, Tensor]:
        n, d_sae = pre.shape
        budget = min(self.cfg.k * self.n_global(n), self.n_global(n) * d_sae)
        with torch.no_grad():
            if not self._distributed():
                values, flat = torch.topk(pre.reshape(-1), budget, sorted=False)
                self._cutoff = values.min()
                return sort_by_row(flat // d_sae, flat % d_sae)
            # The global top-`budget` is within the union of every process's local top-`budget`: gather
            # those values, take the global cut-off, keep the local entries at or above it.
            local = torch.topk(pre.reshape(-1), min(budget, n * d_sae), sorted=False).values
            gathered = all_gather_rows(local, self.dist_info)  # type: ignore[arg-type]
            self._cutoff = torch.topk(gathered, budget, sorted=False).values.min()
            rows, cols = (pre >= self._cutoff).nonzero(as_tuple=True)
            return rows, cols


class FeatureChoiceTrainer(_ChoiceTrainer):
    """Each latent picks its top-m tokens of the batch."""

    def __init__(self, cfg: FeatureChoiceConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)

    def capacity(self, n_tokens: int) -> int:
        """m: tokens each latent may take, so that the total is about k * n_tokens (global batch)."""
        return max(1, min(n_tokens, math.ceil(self.cfg.k * n_tokens / self.cfg.d_sae)))

    def select(self, pre: Tensor, step: StepInput | None) -> tuple[Tensor, Tensor]:
        n, d_sae = pre.shape
        m = self.capacity(self.n_global(n))
        with torch.no_grad():
            values, idx = torch.topk(pre.T, min(m, n), dim=-1, sorted=False)
            if not self._distributed():
                self._cutoff = values.min(-1).values
                rows = idx.reshape(-1)
                cols = torch.arange(d_sae, device=pre.device).repeat_interleave(min(m, n))
                return sort_by_row(rows, cols)
            # Per latent, its global top-m tokens: gather each process's local top-m values, take the
            # m-th largest of the union as the latent's cut-off, keep local entries at or above it.
            gathered = all_gather_rows(values.contiguous(), self.dist_info)  # type: ignore[arg-type]
            per_latent = gathered.reshape(-1, d_sae, values.shape[1]).permute(1, 0, 2).reshape(d_sae, -1)
            self._cutoff = torch.topk(per_latent, m, dim=-1, sorted=False).values.min(-1).values
            rows, cols = (pre >= self._cutoff).nonzero(as_tuple=True)
            return rows, cols


register_architecture("mutual_choice", MutualChoiceTrainer, MutualChoiceConfig)
register_architecture("feature_choice", FeatureChoiceTrainer, FeatureChoiceConfig)
