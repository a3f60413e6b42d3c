"""Dictionary architectures, registered into sae-lens on import.

Each architecture's module defines its config (with its own ``options``), its training class, and calls
``register_architecture`` (``registry.py``): that is all a new architecture needs. Training classes are
ours; inference classes reuse sae-lens's (``topk``, ``abstopk``, ``jumprelu``) wherever the trained
dictionary computes exactly their function, so a saved SAE loads in plain sae-lens, without importing this
package (g-SAE too: its inference encode is TopK, beta kept in the metadata). sae-lens 6.54 has no TopK
transcoder (its ``Transcoder`` is ReLU, its others JumpReLU), so transcoders are saved under an
architecture name that says what to import (``TOPK_TRANSCODER``): plain sae-lens then fails with a
``KeyError`` naming ``import sae_training``. A name that sae-lens (or anyone) already registered for a
different class raises: we never shadow, and never silently skip, someone else's architecture.
"""

from __future__ import annotations

from sae_lens.registry import SAE_CLASS_REGISTRY, register_sae_class

from sae_training.architectures import (  # each module registers its architecture(s)
    abstopk,  # noqa: F401
    choice,  # noqa: F401
    gsae,
    matryoshka,  # noqa: F401
    topk,  # noqa: F401
    transcoder,  # noqa: F401
)
from sae_training.architectures.base import (
    SparseCoderTrainingConfig,
    SparseCoderTrainingSAE,
    SparseStepOutput,
    StepInput,
)
from sae_training.architectures.registry import (
    ARCHITECTURES,
    RegistryCollision,
    architecture_config_class,
    option_defaults,
    option_types,
    register_architecture,
    register_in_saelens,
    unregister_architecture,
)
from sae_training.architectures.transcoder import (
    LEGACY_NAMES,
    TOPK_SKIP_TRANSCODER,
    TOPK_TRANSCODER,
    TopKSkipTranscoder,
    TopKSkipTranscoderConfig,
    TopKTranscoder,
    TopKTranscoderConfig,
)

BUILTIN = ("topk", "gsae", "mutual_choice", "feature_choice", "abstopk", "matryoshka", "transcoder",
           "skip_transcoder")  # fmt: skip
"""The architectures this package defines (others may register more), in the order --help lists them."""
for _name in BUILTIN:
    ARCHITECTURES[_name] = ARCHITECTURES.pop(_name)
TRANSCODERS = tuple(name for name, (_, config) in ARCHITECTURES.items() if config.reads_target)

# Names earlier versions saved transcoders under (cfg.json "architecture"), so those folders still load.
_LEGACY_INFERENCE = {
    LEGACY_NAMES[TOPK_TRANSCODER]: (TopKTranscoder, TopKTranscoderConfig),
    LEGACY_NAMES[TOPK_SKIP_TRANSCODER]: (TopKSkipTranscoder, TopKSkipTranscoderConfig),
}


def register_all() -> None:
    """Register the built-in classes with sae-lens again (each module did on import); re-registering our
    own is a no-op, a name another owner took raises ``RegistryCollision``."""
    for name in BUILTIN:
        trainer, config = ARCHITECTURES[name]
        register_architecture(name, trainer, config)
    for name, cls, config in (
        ("gsae", gsae.GradientTopKSAE, gsae.GradientTopKSAEConfig),
        (TOPK_TRANSCODER, TopKTranscoder, TopKTranscoderConfig),
        (TOPK_SKIP_TRANSCODER, TopKSkipTranscoder, TopKSkipTranscoderConfig),
        *((n, c, k) for n, (c, k) in _LEGACY_INFERENCE.items()),
    ):
        register_in_saelens(SAE_CLASS_REGISTRY, register_sae_class, name, cls, config)


register_all()

__all__ = [
    "ARCHITECTURES",
    "BUILTIN",
    "TOPK_SKIP_TRANSCODER",
    "TOPK_TRANSCODER",
    "TRANSCODERS",
    "RegistryCollision",
    "SparseCoderTrainingConfig",
    "SparseCoderTrainingSAE",
    "SparseStepOutput",
    "StepInput",
    "architecture_config_class",
    "option_defaults",
    "option_types",
    "register_all",
    "register_architecture",
    "unregister_architecture",
]
