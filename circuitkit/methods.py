"""The method registry: every circuit-discovery method behind one call, for the CLI, app and notebooks.

A method takes a :class:`MethodRequest` (model, task data, component families, direction, ablation,
options) and returns a :class:`circuitkit.results.ResultTable`. Register a new one with::

    from circuitkit.methods import MethodRequest, Option, register

    @register(
        "heads",
        "discrete-SAE head identification (O'Neill & Bui 2024)",
        families=("head",),
        options=(Option("steps", int, 300, "code-book training steps", minimum=1),),
    )
    def _heads(req: MethodRequest) -> ResultTable:
        steps = req.options["steps"]  # already an int, default filled in
        ...

``circuitkit discover --method NAME`` then finds it. Options are a declared schema: each has a type, a
default, and optionally choices or a minimum. :func:`run_method` (every caller's path: CLI, Python, app)
resolves the request's options against it before the method runs, so an unknown or ill-typed option
fails by name (``atp* --option grad_drop=maybe`` is an error, ``grad_drop=no`` is ``False``) and the
method sees typed values with every default filled in. A method registered without ``options`` takes
none. A method whose nodes are not component families (``features``: dictionary latents and error
nodes) registers with ``chooses_nodes=True``; its options say what to score and ``req.families`` is
ignored. A method that does not patch (``heads``) registers with ``patches=False``: its results record
direction and ablation ``none``.

:func:`run_method` also builds the result's provenance once, from the request (method = registry key,
resolved model name, task, split, direction, ablation, resolved options); methods fill only what they
measured (cost, score kind, baselines, ``extra``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from transformer_lens import HookedTransformer

from circuitkit.components import DEFAULT_FAMILIES
from circuitkit.results import Provenance, ResultTable
from circuitkit.tasks.base import TaskDataset

DIRECTIONS = ("denoising", "noising")
ABLATIONS = ("patch", "zero", "mean", "resample")


class OptionError(ValueError):
    """A method option is unknown, of the wrong type or out of range (a user error)."""


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
    """Method-specific options (``steps`` for IG, ``rules`` for RelP ...), checked against the method's
    declared schema by :func:`run_method` (strings from the CLI or a URL are parsed by type)."""
    progress: bool = False
    """Show progress bars on long sweeps."""
    model_name: str = ""
    """Name recorded in the provenance (default: the built-in name, else ``model.cfg.model_name``)."""

    @property
    def name(self) -> str:
        return resolved_model_name(self.model_name or self.model.cfg.model_name)


def resolved_model_name(name: str) -> str:
    """The canonical name of a model: a built-in alias (``tiny``) -> its name (``ck-tiny``)."""
    from circuitkit.models.zoo import resolve_builtin

    return resolve_builtin(str(name)) or str(name)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean; use true or false")


@dataclass(frozen=True)
class Option:
    """One declared method option."""

    name: str
    type: type
    """``bool``, ``int``, ``float`` or ``str``: a string value (CLI, URL) is parsed as this type; a Python
    value must be an instance (an int is accepted for a float; a bool is not an int)."""
    default: Any
    """Value used when the option is not given; ``None`` with ``required=True`` means it must be given."""
    help: str = ""
    choices: tuple[Any, ...] | None = None
    """Allowed values (after parsing), when the option is a choice."""
    minimum: float | None = None
    """Smallest allowed value of a numeric option."""
    required: bool = False
    normalize: Callable[[Any], Any] | None = None
    """Checks and canonicalises a value of any accepted form (e.g. RelP rules ``"ln,identity"`` ->
    ``"ln+identity"``, or SAE objects for ``features``); raises ``ValueError`` for a bad one. Replaces the
    type check when given."""
    record: Callable[[Any], Any] | None = None
    """The value as a provenance stores it (JSON-able), when the resolved value is not (SAE objects)."""

    def resolve(self, method: str, value: Any) -> Any:
        where = f"option {self.name!r} of method {method!r}"
        try:
            if self.normalize is not None:
                value = self.normalize(value)
            elif isinstance(value, str) and self.type is not str:
                value = _parse_bool(value) if self.type is bool else self.type(value.strip())
            elif self.type is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            elif not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
                raise ValueError(f"{value!r} is of type {type(value).__name__}, not {self.type.__name__}")
        except ValueError as exc:
            raise OptionError(f"{where}: {exc}") from None
        if self.choices is not None and value not in self.choices:
            raise OptionError(f"{where}: {value!r} is not one of {', '.join(map(str, self.choices))}")
        if self.minimum is not None and value < self.minimum:
            raise OptionError(f"{where}: {value!r} is below its minimum {self.minimum:g}")
        return value

    def describe(self) -> str:
        kind = "|".join(map(str, self.choices)) if self.choices else self.type.__name__
        default = "required" if self.required else f"default {self.default!r}"
        return f"{self.name}={kind} ({default}){': ' + self.help if self.help else ''}"


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
    options: tuple[Option, ...] = ()
    """The declared options; any other option is an error."""
    patches: bool = True
    """False for methods that do not patch (head identification): direction and ablation are recorded
    as ``none`` and are not part of what the method's results are looked up by."""

    def option(self, name: str) -> Option:
        for o in self.options:
            if o.name == name:
                return o
        raise KeyError(name)

    def resolve_options(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """``given`` checked against the schema, parsed by type, defaults filled in."""
        given = dict(given or {})
        names = [o.name for o in self.options]
        unknown = sorted(set(given) - set(names))
        if unknown:
            takes = f"it takes {', '.join(names)}" if names else "it takes no options"
            raise OptionError(f"unknown option(s) {unknown} for method {self.name!r}; {takes}")
        out = {}
        for o in self.options:
            if o.name in given:
                out[o.name] = o.resolve(self.name, given[o.name])
            elif o.required:
                raise OptionError(f"method {self.name!r} needs {o.help or 'it'} (option {o.name}=...)")
            else:
                out[o.name] = o.default
        return out

    def recorded(self, direction: str, ablation: str) -> tuple[str, str]:
        """(direction, ablation) as this method's results record them."""
        return (direction, ablation) if self.patches else ("none", "none")


REGISTRY: dict[str, Method] = {}


def register(
    name: str,
    description: str,
    *,
    families: Sequence[str] | None = None,
    exact: bool = False,
    chooses_nodes: bool = False,
    options: Sequence[Option] = (),
    patches: bool = True,
) -> Callable[[Callable[[MethodRequest], ResultTable]], Callable[[MethodRequest], ResultTable]]:
    """Decorator: add a method under ``name``. A name registered by another function raises (the same
    function registering again, as on a module reload, replaces itself)."""
    opts = tuple(options)
    seen = [o.name for o in opts]
    if len(set(seen)) != len(seen):
        raise ValueError(f"method {name!r} declares option names twice: {seen}")

    def deco(fn: Callable[[MethodRequest], ResultTable]) -> Callable[[MethodRequest], ResultTable]:
        old = REGISTRY.get(name)
        if old is not None and _origin(old.run) != _origin(fn):
            raise ValueError(
                f"method {name!r} is already registered by {'.'.join(_origin(old.run))}; pick another name"
            )
        fams = tuple(families) if families else None
        REGISTRY[name] = Method(name, description, fn, fams, exact, chooses_nodes, opts, patches)
        return fn

    return deco


def _origin(fn: Callable) -> tuple[str, str]:
    return (getattr(fn, "__module__", ""), getattr(fn, "__qualname__", repr(fn)))


def get_method(name: str) -> Method:
    _load_builtin()
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def available() -> dict[str, Method]:
    _load_builtin()
    return dict(REGISTRY)


def check_request(
    name: str, families: Sequence[str], direction: str, ablation: str, options: Mapping
) -> dict:
    """Validate everything about a request that needs no model: the method, its families, direction,
    ablation and options. Returns the resolved options. Callers (CLI, app) run this before loading."""
    method = get_method(name)
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r} is not one of {', '.join(DIRECTIONS)}")
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation {ablation!r} is not one of {', '.join(ABLATIONS)}")
    if method.families is not None and not method.chooses_nodes:
        bad = [f for f in families if f not in method.families]
        if bad:
            raise ValueError(
                f"method {name!r} scores only the families {', '.join(method.families)}; not {bad}"
            )
    return method.resolve_options(options)


def run_method(name: str, req: MethodRequest) -> ResultTable:
    """Run a registered method: check the request, resolve its options, run, and build the provenance
    from the request (the one place provenance is made)."""
    method = get_method(name)
    options = check_request(name, req.families, req.direction, req.ablation, req.options)
    result = method.run(dataclasses.replace(req, options=options))
    direction, ablation = method.recorded(req.direction, req.ablation)
    result.provenance = dataclasses.replace(
        result.provenance,
        model=req.name,
        task=req.data.task,
        split=req.data.split,
        method=name,
        metric=req.data.metric_name,
        direction=direction,
        ablation=ablation,
        n_prompts=len(req.data),
        seed=req.seed,
        options=recorded_options(method, options),
    )
    return result


def measured(
    *,
    score_kind: str = "effect",
    passes: float = 0.0,
    seconds: float = 0.0,
    baseline_target: float | None = None,
    baseline_source: float | None = None,
    extra: dict[str, Any] | None = None,
) -> Provenance:
    """The part of a provenance a method measures; :func:`run_method` fills in the rest from the
    request (model, task, split, method, metric, direction, ablation, prompts, seed, options)."""
    return Provenance(
        model="",
        task="",
        method="",
        metric="",
        score_kind=score_kind,
        passes=float(passes),
        seconds=float(seconds),
        baseline_target=None if baseline_target is None else float(baseline_target),
        baseline_source=None if baseline_source is None else float(baseline_source),
        extra=dict(extra or {}),
    )


def recorded_options(method: Method, options: Mapping[str, Any]) -> dict[str, Any]:
    """Resolved options as stored in a provenance (JSON-able: an option's ``record`` or the repr)."""
    out = {}
    for k, v in options.items():
        opt = next((o for o in method.options if o.name == k), None)
        if opt is not None and opt.record is not None:
            v = opt.record(v)
        try:
            json.dumps(v)
            out[k] = v
        except TypeError:
            out[k] = repr(v)
    return out


def lookup_key(name: str, direction: str, ablation: str, options: Mapping[str, Any] | None = None) -> dict:
    """The provenance fields a stored result of method ``name`` must have to answer a request with these
    settings: direction / ablation as the method records them and the options resolved with defaults."""
    method = get_method(name)
    d, a = method.recorded(direction, ablation)
    return {
        "direction": d,
        "ablation": a,
        "options": recorded_options(method, method.resolve_options(options)),
    }


_LOADED = False


def _load_builtin() -> None:
    """Import the modules that register the built-in methods (an import error is a bug: it propagates)."""
    global _LOADED
    if _LOADED:
        return
    import importlib

    for module in (
        "circuitkit.patching.registry",
        "circuitkit.heads.method",
        "circuitkit.features.method",
        "circuitkit.edges.method",
    ):
        importlib.import_module(module)
    _LOADED = True
