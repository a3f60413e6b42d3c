"""The result of an approximate patching method: one estimated-effect grid per component family.

Attribution (AtP, AtP*), relevance (RelP) and integrated gradients all estimate, for every component,
the change of the metric that patching it would make (``m_patched - m_target``), the quantity
:meth:`PatchingResult.effects` gives exactly. They share this result type and its conversion to a tidy
:class:`circuitkit.results.ResultTable`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from circuitkit.results import Provenance, ResultTable, from_grids


@dataclass
class EstimatedEffects:
    """Estimated effect of patching each component, per family, with the cost of getting it."""

    method: str
    """Method key (``atp``, ``atp*``, ``relp``, ``ig``)."""
    grids: dict[str, Tensor]
    """family -> grid shaped by the family's ``dims`` (float64, on the CPU)."""
    baseline_target: float
    """Metric of the unpatched target run (corrupted when denoising)."""
    baseline_source: float
    """Metric of the unpatched source run (clean when denoising)."""
    passes: float
    """Forward and backward passes over the batch (a backward counts as one)."""
    seconds: float
    """Wall-clock seconds."""
    direction: str = "denoising"
    ablation: str = "patch"
    n_prompts: int = 0
    seed: int = 0
    signed: bool = True
    """False when the scores are magnitudes (AtP* GradDrop)."""
    options: dict = field(default_factory=dict)
    """Method options (rules, steps, ...)."""

    def to_table(self, model: str, task: str = "custom", metric: str = "metric") -> ResultTable:
        prov = Provenance(
            model=model,
            task=task,
            method=self.method,
            metric=metric,
            ablation=self.ablation,
            direction=self.direction,
            n_prompts=self.n_prompts,
            seed=self.seed,
            score_kind="effect" if self.signed else "magnitude",
            passes=self.passes,
            seconds=self.seconds,
            extra={
                "options": self.options,
                "baseline_target": self.baseline_target,
                "baseline_source": self.baseline_source,
            },
        )
        return from_grids(self.grids, prov)
