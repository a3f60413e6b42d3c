"""AbsTopK SAE (arXiv 2510.00404, "AbsTopK: Rethinking Sparse Autoencoders For Bidirectional Features").

Keeps the k pre-activations of largest magnitude with their sign and no ReLU, so one latent can encode
both poles of a concept. sae-lens ships ``AbsTopKTrainingSAE``/``AbsTopKSAE``; we reuse its inference
class (``abstopk``) and train with our sparse path (same forward, faster backward).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from sae_training.architectures.base import SparseCoderTrainingConfig, SparseCoderTrainingSAE, StepInput
from sae_training.architectures.registry import register_architecture
from sae_training.architectures.sparse_ops import per_token_topk


@dataclass
class AbsTopKConfig(SparseCoderTrainingConfig):
    """AbsTopK training config."""

    @classmethod
    def architecture(cls) -> str:
        return "ck_abstopk"

    @classmethod
    def inference_architecture(cls) -> str:
        return "abstopk"


class AbsTopKTrainer(SparseCoderTrainingSAE):
    """Signed top-k by magnitude."""

    def __init__(self, cfg: AbsTopKConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)

    def select(self, pre: Tensor, step: StepInput | None) -> tuple[Tensor, Tensor]:
        return per_token_topk(pre.abs(), self.cfg.k)

    def nonlinearity(self, values: Tensor) -> Tensor:
        return values

    def aux_scores(self, pre: Tensor) -> Tensor:
        return pre.abs()


register_architecture("abstopk", AbsTopKTrainer, AbsTopKConfig)
