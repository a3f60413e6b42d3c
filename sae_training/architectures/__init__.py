"""Dictionary architectures, registered into sae-lens on import.

Training classes (``register_sae_training_class``) are ours; inference classes reuse sae-lens's
(``topk``, ``abstopk``, ``jumprelu``) where the trained dictionary is exactly one of them, and we register
the ones sae-lens lacks (``gsae``, ``topk_transcoder``, ``topk_skip_transcoder``).
"""

from __future__ import annotations

from sae_lens.registry import (
    SAE_CLASS_REGISTRY,
    SAE_TRAINING_CLASS_REGISTRY,
    register_sae_class,
    register_sae_training_class,
)

from sae_training.architectures.abstopk import AbsTopKConfig, AbsTopKTrainer
from sae_training.architectures.base import (
    SparseCoderTrainingConfig,
    SparseCoderTrainingSAE,
    SparseStepOutput,
    StepInput,
)
from sae_training.architectures.choice import (
    FeatureChoiceConfig,
    FeatureChoiceTrainer,
    MutualChoiceConfig,
    MutualChoiceTrainer,
)
from sae_training.architectures.gsae import (
    GradientTopKConfig,
    GradientTopKSAE,
    GradientTopKSAEConfig,
    GradientTopKTrainer,
)
from sae_training.architectures.matryoshka import MatryoshkaConfig, MatryoshkaTrainer
from sae_training.architectures.topk import TopKConfig, TopKTrainer
from sae_training.architectures.transcoder import (
    SkipTranscoderTrainer,
    SkipTranscoderTrainingConfig,
    TopKSkipTranscoder,
    TopKSkipTranscoderConfig,
    TopKTranscoder,
    TopKTranscoderConfig,
    TranscoderTrainer,
    TranscoderTrainingConfig,
)

# Short names used by the run config -> (training class, its config class).
ARCHITECTURES: dict[str, tuple[type[SparseCoderTrainingSAE], type[SparseCoderTrainingConfig]]] = {
    "topk": (TopKTrainer, TopKConfig),
    "gsae": (GradientTopKTrainer, GradientTopKConfig),
    "mutual_choice": (MutualChoiceTrainer, MutualChoiceConfig),
    "feature_choice": (FeatureChoiceTrainer, FeatureChoiceConfig),
    "abstopk": (AbsTopKTrainer, AbsTopKConfig),
    "matryoshka": (MatryoshkaTrainer, MatryoshkaConfig),
    "transcoder": (TranscoderTrainer, TranscoderTrainingConfig),
    "skip_transcoder": (SkipTranscoderTrainer, SkipTranscoderTrainingConfig),
}
TRANSCODERS = ("transcoder", "skip_transcoder")

_INFERENCE = {
    "gsae": (GradientTopKSAE, GradientTopKSAEConfig),
    "topk_transcoder": (TopKTranscoder, TopKTranscoderConfig),
    "topk_skip_transcoder": (TopKSkipTranscoder, TopKSkipTranscoderConfig),
}


def register_all() -> None:
    """Register our classes with sae-lens (idempotent: a second import must not raise)."""
    for trainer, config in ARCHITECTURES.values():
        name = config.architecture()
        if name not in SAE_TRAINING_CLASS_REGISTRY:
            register_sae_training_class(name, trainer, config)
    for name, (cls, config) in _INFERENCE.items():
        if name not in SAE_CLASS_REGISTRY:
            register_sae_class(name, cls, config)


register_all()

__all__ = [
    "ARCHITECTURES",
    "TRANSCODERS",
    "SparseCoderTrainingConfig",
    "SparseCoderTrainingSAE",
    "SparseStepOutput",
    "StepInput",
    "register_all",
]
