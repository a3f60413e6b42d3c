"""TopK SAE with the AuxK dead-latent loss (Gao et al. 2024, "Scaling and evaluating sparse autoencoders").

z = ReLU(TopK_k(W_enc (x - b_pre) + b_enc)), x_hat = W_dec z + b_pre, decoder rows unit norm, tied init,
b_pre at the geometric median. Saved as sae-lens's own ``topk`` inference architecture (same encode /
decode), so sae-lens's ``TopKSAE`` is reused for inference.
"""

from __future__ import annotations

from dataclasses import dataclass

from sae_training.architectures.base import SparseCoderTrainingConfig, SparseCoderTrainingSAE
from sae_training.architectures.registry import register_architecture


@dataclass
class TopKConfig(SparseCoderTrainingConfig):
    """TopK SAE training config (all fields from ``SparseCoderTrainingConfig``)."""

    @classmethod
    def architecture(cls) -> str:
        return "ck_topk"


class TopKTrainer(SparseCoderTrainingSAE):
    """TopK + AuxK; everything is in the base class, whose default selection is per-token TopK."""

    def __init__(self, cfg: TopKConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)


register_architecture("topk", TopKTrainer, TopKConfig)
