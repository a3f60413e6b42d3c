"""The architecture registry: one call per architecture, in the architecture's own module.

An architecture is a training class (a ``SparseCoderTrainingSAE``) and its config (a
``SparseCoderTrainingConfig``, an sae-lens ``TrainingSAEConfig``). ``register_architecture(name, trainer,
config)`` makes ``name`` a value of the run config's ``architecture`` and registers the training class with
sae-lens; the config's own ``options`` (a tuple of its field names) become the run config's nested
``architecture_config`` (``--<name>.<option>`` on the command line, ``architecture_config: {...}`` in YAML),
parsed by their annotated types. So a new architecture is one module: its config (with ``options``), its
trainer, and this call (see tests/sae_training/test_new_architecture.py).
"""

from __future__ import annotations

import typing
from functools import cache
from typing import Any

from sae_lens.registry import (
    SAE_CLASS_REGISTRY,
    SAE_TRAINING_CLASS_REGISTRY,
    register_sae_class,
    register_sae_training_class,
)

ARCHITECTURES: dict[str, tuple[type, type]] = {}
"""Run-config name -> (training class, its config class), in registration order."""


class RegistryCollision(ValueError):
    """An architecture name we register is already taken by a different class."""


def _same_class(a: type, b: type) -> bool:
    # By qualified name, not identity: a re-imported module (importlib.reload, a second sys.path entry)
    # defines new class objects for the same code, which is a re-registration, not a collision.
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def register_in_saelens(registry: dict, register, name: str, cls: type, config: type) -> None:
    """Register ``cls`` under ``name`` with sae-lens; our own class again is a no-op, another raises."""
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


def register_architecture(
    name: str,
    trainer: type,
    config: type,
    *,
    inference: tuple[str, type, type] | None = None,
) -> None:
    """Make ``name`` a run-config architecture trained by ``trainer`` with ``config``.

    Registers the training class with sae-lens under ``config.architecture()`` and, if given, an inference
    class ``(sae-lens name, class, config class)`` that ``config.inference_architecture()`` names (not
    needed when the dictionary saves as one of sae-lens's own classes). A run-config name already taken by
    another class raises ``RegistryCollision``.
    """
    existing = ARCHITECTURES.get(name)
    if existing is not None and not (_same_class(existing[0], trainer) and _same_class(existing[1], config)):
        raise RegistryCollision(
            f"architecture {name!r} is already registered to {existing[0].__module__}."
            f"{existing[0].__qualname__}: choose another name"
        )
    unknown = [o for o in config.options if o not in config.__dataclass_fields__]
    if unknown:
        raise TypeError(f"{config.__qualname__}.options names {unknown}, which are not fields of it")
    register_in_saelens(
        SAE_TRAINING_CLASS_REGISTRY, register_sae_training_class, config.architecture(), trainer, config
    )
    if inference is not None:
        register_in_saelens(SAE_CLASS_REGISTRY, register_sae_class, *inference)
    ARCHITECTURES[name] = (trainer, config)


def unregister_architecture(name: str) -> None:
    """Remove ``name`` (and its sae-lens training class); for tests that register a scratch one."""
    _, config = ARCHITECTURES.pop(name)
    SAE_TRAINING_CLASS_REGISTRY.pop(config.architecture(), None)
    option_types.cache_clear()


def architecture_config_class(name: str) -> type:
    """The config class of a registered architecture; KeyError if none."""
    return ARCHITECTURES[name][1]


@cache
def option_types(name: str) -> dict[str, Any]:
    """The options of architecture ``name`` with their annotated types, in declaration order."""
    config = ARCHITECTURES[name][1]
    hints = typing.get_type_hints(config)
    return {o: hints[o] for o in config.options}


def option_defaults(name: str) -> dict[str, Any]:
    """The options of architecture ``name`` at their defaults."""
    from dataclasses import MISSING

    config = ARCHITECTURES[name][1]
    out = {}
    for o in config.options:
        f = config.__dataclass_fields__[o]
        out[o] = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
    return out
