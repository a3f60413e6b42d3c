"""Registers discrete-SAE head identification in :mod:`circuitkit.methods` as ``heads``."""

from __future__ import annotations

from circuitkit.heads.dictionary import CodebookConfig
from circuitkit.heads.identify import HeadIdConfig, identify_heads
from circuitkit.methods import MethodRequest, register
from circuitkit.results import ResultTable


def config_from_options(options: dict, seed: int) -> HeadIdConfig:
    """``--option`` values -> :class:`HeadIdConfig` (unknown keys are an error, not silently ignored)."""
    known = {"variant", "n_prompts", "n_train_prompts", "n_latents", "l1_coeff", "steps", "normalise"}
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for method 'heads'; known: {sorted(known)}")
    base, book = HeadIdConfig(), CodebookConfig()
    return HeadIdConfig(
        n_prompts=options.get("n_prompts", base.n_prompts),
        n_train_prompts=int(options.get("n_train_prompts", base.n_train_prompts)),
        codebook=CodebookConfig(
            n_latents=int(options.get("n_latents", book.n_latents)),
            l1_coeff=float(options.get("l1_coeff", book.l1_coeff)),
            n_steps=int(options.get("steps", book.n_steps)),
        ),
        normalise=bool(options.get("normalise", base.normalise)),
        seed=seed,
    )


@register(
    "heads",
    "discrete-SAE head identification (O'Neill & Bui 2024): head scores from codes unique to positive "
    "prompts; options variant=node|edge, n_prompts, n_train_prompts, n_latents, l1_coeff, steps, normalise",
    families=("head",),
)
def _heads(req: MethodRequest) -> ResultTable:
    cfg = config_from_options(dict(req.options), req.seed)
    result = identify_heads(req.model, req.data, cfg)
    return result.to_result(req.options.get("variant", "node"), model_name=req.name)
