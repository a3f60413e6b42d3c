"""The method registry: every circuit-discovery method behind one call, for the CLI, app and notebooks.

A method takes a :class:`MethodRequest` (model, task data, component families, direction, ablation,
options) and returns a :class:`circuitkit.results.ResultTable`. Register a new one with::

    from circuitkit.methods import MethodRequest, register

    @register("heads", "discrete-SAE head identification (O'Neill & Bui 2024)", families=("head",))
    def _heads(req: MethodRequest) -> ResultTable:
        ...

``circuitkit discover --method NAME`` then finds it. A method whose nodes are not component families
(``features``: dictionary latents and error nodes) registers with ``chooses_nodes=True``; its options
say what to score and ``req.families`` is ignored. Method options come as ``key=value`` strings from
the CLI (``--option steps=20``) and are passed through ``req.options`` (values parsed as JSON when they
can be: numbers, booleans).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from transformer_lens import HookedTransformer

from circuitkit.components import DEFAULT_FAMILIES
from circuitkit.results import Provenance, ResultTable, from_grids
from circuitkit.tasks.base import TaskDataset


@dataclass
class MethodRequest:
    """Everything a method needs to score components."""

    model: HookedTransformer
    data: TaskDataset
    """Clean / corrupted prompts with their metric."""
    families: Sequence[str] = DEFAULT_FAMILIES
    """Component families to score (keys of :data:`circuitkit.components.FAMILIES`)."""
    direction: str = "denoising"
    """``denoising`` (corrupted run, clean values in) or ``noising``."""
    ablation: str = "patch"
    """``patch``, ``zero``, ``mean`` or ``resample``."""
    seed: int = 0
    """Seed for resampling / training inside a method."""
    options: dict = field(default_factory=dict)
    """Method-specific options (``steps`` for IG, ``rules`` for RelP ...)."""
    progress: bool = False
    """Show progress bars on long sweeps."""
    model_name: str = ""
    """Name recorded in the provenance (default: ``model.cfg.model_name``)."""

    @property
    def name(self) -> str:
        return self.model_name or self.model.cfg.model_name


@dataclass(frozen=True)
class Method:
    """A registered method."""

    name: str
    description: str
    run: Callable[[MethodRequest], ResultTable]
    families: tuple[str, ...] | None = None
    """Families the method can score (None: every family)."""
    exact: bool = False
    """True for activation patching, the reference the others are compared with."""
    chooses_nodes: bool = False
    """True when the method's nodes are not component families (feature circuits: dictionary latents
    and error nodes): its options choose what is scored and ``MethodRequest.families`` is not used."""


REGISTRY: dict[str, Method] = {}


def register(
    name: str,
    description: str,
    *,
    families: Sequence[str] | None = None,
    exact: bool = False,
    chooses_nodes: bool = False,
) -> Callable[[Callable[[MethodRequest], ResultTable]], Callable[[MethodRequest], ResultTable]]:
    """Decorator: add a method under ``name`` (re-registering a name replaces it)."""

    def deco(fn: Callable[[MethodRequest], ResultTable]) -> Callable[[MethodRequest], ResultTable]:
        fams = tuple(families) if families else None
        REGISTRY[name] = Method(name, description, fn, fams, exact, chooses_nodes)
        return fn

    return deco


def get_method(name: str) -> Method:
    _load_builtin()
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def available() -> dict[str, Method]:
    _load_builtin()
    return dict(REGISTRY)


def run_method(name: str, req: MethodRequest) -> ResultTable:
    """Run a registered method, checking its families first (unless the method chooses its own nodes)."""
    method = get_method(name)
    if method.families is not None and not method.chooses_nodes:
        bad = [f for f in req.families if f not in method.families]
        if bad:
            raise ValueError(f"method {name!r} scores only {method.families}; not {bad}")
    return method.run(req)


_LOADED = False


def _load_builtin() -> None:
    """Import the modules that register methods (the patching ones here; others on import)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib

    for module in (
        "circuitkit.patching.registry",
        "circuitkit.heads.method",
        "circuitkit.features.method",
        "circuitkit.edges.method",
    ):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a package another engineer has not shipped yet
            if exc.name is None or not module.startswith(exc.name):
                raise


def patching_table(req: MethodRequest, method: str, result) -> ResultTable:
    """An activation-patching result (one family) -> table of effects (m_patched - m_target)."""
    prov = Provenance(
        model=req.name,
        task=req.data.task,
        method=method,
        metric=req.data.metric_name,
        ablation=req.ablation,
        direction=req.direction,
        n_prompts=len(req.data),
        seed=req.seed,
        score_kind="effect",
        extra={"baseline_target": result.baseline_target, "baseline_source": result.baseline_source},
    )
    return from_grids({result.family: result.effects()}, prov)


def timed(fn: Callable[[], ResultTable]) -> ResultTable:
    t0 = time.perf_counter()
    out = fn()
    out.provenance.seconds = time.perf_counter() - t0
    return out
