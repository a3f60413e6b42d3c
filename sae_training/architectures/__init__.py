"""Dictionary architectures, registered into sae-lens on import.

Training classes (``register_sae_training_class``) are ours; inference classes reuse sae-lens's
(``topk``, ``abstopk``, ``jumprelu``) wherever the trained dictionary computes exactly their function, so
a saved SAE loads in plain sae-lens, without importing this package (g-SAE too: its inference encode is
TopK, beta kept in the metadata). sae-lens 6.54 has no TopK transcoder (its ``Transcoder`` is ReLU, its
others JumpReLU), so transcoders are saved under an architecture name that says what to import
(``TOPK_TRANSCODER``): plain sae-lens then fails with a ``KeyError`` naming ``import sae_training``.
A name that sae-lens (or anyone) already registered for a different class raises: we never shadow, and
never silently skip, someone else's architecture.
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
    LEGACY_NAMES,
    TOPK_SKIP_TRANSCODER,
    TOPK_TRANSCODER,
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
    TOPK_TRANSCODER: (TopKTranscoder, TopKTranscoderConfig),
    TOPK_SKIP_TRANSCODER: (TopKSkipTranscoder, TopKSkipTranscoderConfig),
    # Names earlier versions saved under (cfg.json "architecture"), so those folders still load.
    "gsae": (GradientTopKSAE, GradientTopKSAEConfig),
    LEGACY_NAMES[TOPK_TRANSCODER]: (TopKTranscoder, TopKTranscoderConfig),
    LEGACY_NAMES[TOPK_SKIP_TRANSCODER]: (TopKSkipTranscoder, TopKSkipTranscoderConfig),
}


class RegistryCollision(ValueError):
    """An architecture name we register is already taken by a different class."""


def _same_class(a: type, b: type) -> bool:
    # By qualified name, not identity: a re-imported module (importlib.reload, a second sys.path entry)
    # defines new class objects for the same code, which is a re-registration, not a collision.
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def _register(registry: dict, register, name: str, cls: type, config: type) -> None:
    existing = registry.get(name)
    if existing is None:
        register(name, cls, config)
        return
    if not (_same_class(existing[0], cls) and _same_class(existing[1], config)):
        raise RegistryCollision(
            f"sae-lens architecture {name!r} is already registered to {existing[0].__module__}."
            f"{existing[0].__qualname__}; sae_training would register {cls.__module__}.{cls.__qualname__} "
            "under the same name: rename one of them"
        )


def register_all() -> None:
    """Register our classes with sae-lens; re-registering our own is a no-op, any other owner raises."""
    for trainer, config in ARCHITECTURES.values():
        _register(
            SAE_TRAINING_CLASS_REGISTRY, register_sae_training_class, config.architecture(), trainer, config
        )
    for name, (cls, config) in _INFERENCE.items():
        _register(SAE_CLASS_REGISTRY, register_sae_class, name, cls, config)


register_all()

__all__ = [
    "ARCHITECTURES",
    "TOPK_SKIP_TRANSCODER",
    "TOPK_TRANSCODER",
    "TRANSCODERS",
    "RegistryCollision",
    "SparseCoderTrainingConfig",
    "SparseCoderTrainingSAE",
    "SparseStepOutput",
    "StepInput",
    "register_all",
]
