"""Activation sources: on the fly from a model (shuffling buffer), from a disk cache, with gradients."""

from sae_training.activations.buffer import ShufflingBuffer
from sae_training.activations.cache import CachedActivations, read_meta, write_cache
from sae_training.activations.source import ActivationSource, Batch

__all__ = ["ActivationSource", "Batch", "CachedActivations", "ShufflingBuffer", "read_meta", "write_cache"]
