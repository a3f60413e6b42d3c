"""Registers discrete-SAE head identification in :mod:`circuitkit.methods` as ``heads``."""

from __future__ import annotations

from circuitkit.heads.dictionary import CodebookConfig
from circuitkit.heads.identify import HeadIdConfig, identify_heads
from circuitkit.methods import MethodRequest, Option, measured, register
from circuitkit.results import ResultTable

_BASE, _BOOK = HeadIdConfig(), CodebookConfig()
OPTIONS = (
    Option(
        "variant", str, "node", "node scores, or head scores from co-occurring code pairs", ("node", "edge")
    ),
    Option("n_prompts", int, 64, "most positive prompts scored (each with its negative)", minimum=1),
    Option("n_train_prompts", int, _BASE.n_train_prompts, "prompts that train the code book", minimum=2),
    Option("n_latents", int, _BOOK.n_latents, "code-book size", minimum=2),
    Option("l1_coeff", float, _BOOK.l1_coeff, "L1 weight of the code book", minimum=0),
    Option("steps", int, _BOOK.n_steps, "code-book training steps", minimum=1),
    Option("normalise", bool, _BASE.normalise, "divide a head's count by its distinct codes"),
)


def config_from_options(options: dict, seed: int) -> HeadIdConfig:
    """Resolved options (see :data:`OPTIONS`) -> :class:`HeadIdConfig`."""
    return HeadIdConfig(
        n_prompts=options["n_prompts"],
        n_train_prompts=options["n_train_prompts"],
        codebook=CodebookConfig(
            n_latents=options["n_latents"], l1_coeff=options["l1_coeff"], n_steps=options["steps"]
        ),
        normalise=options["normalise"],
        seed=seed,
    )


@register(
    "heads",
    "discrete-SAE head identification (O'Neill & Bui 2024): head scores from codes unique to positive "
    "prompts",
    families=("head",),
    options=OPTIONS,
    patches=False,
)
def _heads(req: MethodRequest) -> ResultTable:
    ident = identify_heads(req.model, req.data, config_from_options(req.options, req.seed))
    result = ident.to_result(req.options["variant"], model_name=req.name)
    p = result.provenance
    result.provenance = measured(
        score_kind=p.score_kind,
        passes=p.passes,
        seconds=p.seconds,
        extra={k: v for k, v in p.extra.items() if k not in ("n_prompts", "seed", "split", "variant")},
    )
    return result
