"""Model loading and the built-in toy-model zoo."""

from circuitkit.models.loading import ModelLoadError, default_device, load_model
from circuitkit.models.zoo import ALIASES, BUILTIN, DEFAULT_MODEL, read_card

__all__ = [
    "ALIASES",
    "BUILTIN",
    "DEFAULT_MODEL",
    "ModelLoadError",
    "default_device",
    "load_model",
    "read_card",
]
