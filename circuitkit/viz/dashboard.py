"""Moved to :mod:`circuitkit.features.dashboard` (viz only draws; this computes the data).

Kept so that ``from circuitkit.viz import dashboard`` in existing code (app/, analyses/) still works.
"""

from circuitkit.features.dashboard import (  # noqa: F401
    LatentSummary,
    corpus_tokens,
    dictionary_hooks,
    encode_tokens,
    firing_densities,
    intervene,
    latents_for_token,
    logit_effects,
    prediction_change,
    summarize_latent,
)
