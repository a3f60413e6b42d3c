"""The task registry: a task is one module that declares a :class:`Task` and registers it.

Every consumer reads the registry, never a hard-coded list: the CLI's ``--task`` choices, the explorer's
task picker, :func:`circuitkit.tasks.make_task`, a dataset's metric (:meth:`TaskDataset.per_prompt_metric`),
the ground-truth role reading (:func:`circuitkit.evaluation.derive_circuit.derive_circuit`) and the
generated sentences of the zoo's corpus and sae_training's ``tasks:`` text source (``sample_sentence``).

Adding a task is one module (plus its tests)::

    # circuitkit/tasks/my_task.py  (or any module a user imports)
    from circuitkit.tasks.registry import Task, register_task

    def make_my_task(tokenizer, n_prompts=64, *, seed=0, split="heldout") -> TaskDataset: ...
    def my_metric(data, logits):  # per prompt, reads logits[:, -1] only
        ...

    TASK = register_task(Task(
        name="my_task", description="...", make=make_my_task, metric=my_metric, metric_name="logit_diff",
        positions=("X", "end"), corruption="X -> a random token", splits=("train", "heldout"),
    ))

and, for a built-in task, its module name in :data:`BUILTIN_MODULES`. ``tests/tasks/test_registry.py``
registers a toy third task this way and runs it through ``make_task``, the metric and a method.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jaxtyping import Float
from torch import Tensor

from circuitkit.tasks.base import TaskError

if TYPE_CHECKING:
    from circuitkit.tasks.base import TaskDataset
    from circuitkit.tasks.ground_truth import Circuit

BUILTIN_MODULES = ("circuitkit.tasks.ioi", "circuitkit.tasks.greater_than")
"""Modules that register the built-in tasks (imported on first use of the registry)."""


@dataclass(frozen=True)
class Task:
    """Everything circuitkit needs to know about a task."""

    name: str
    """Registry key (``ioi``); also ``TaskDataset.task``."""
    description: str
    """One line for listings (CLI help, explorer)."""
    make: Callable[..., TaskDataset]
    """``make(tokenizer, n_prompts, *, seed, split, **kwargs) -> TaskDataset``: aligned clean / corrupted
    prompts."""
    metric: Callable[[TaskDataset, Float[Tensor, "batch pos vocab"]], Float[Tensor, " batch"]]
    """Per-prompt metric from full logits; must read only the last position (``logits[:, -1]``), which
    activation patching relies on to run the last layer at one position."""
    metric_name: str
    """Name of the metric recorded in results (``logit_diff``, ``prob_diff``)."""
    positions: tuple[str, ...]
    """Named positions every dataset of the task carries (``TaskDataset.positions`` keys)."""
    corruption: str
    """How a corrupted prompt differs from its clean one."""
    splits: tuple[str, ...] = ("train", "heldout")
    """Splits ``make`` accepts."""
    sample_sentence: Callable[[random.Random, str], str] | None = None
    """One complete training sentence (answer included) for text corpora: ``(rng, split) -> str``."""
    role_positions: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Ground-truth roles read from attention: role -> (query position, key position)."""
    published_circuits: Callable[[str], Circuit | None] | None = None
    """Model name -> a published ground-truth circuit (e.g. GPT-2 small's), or None."""
    extra: dict[str, Any] = field(default_factory=dict)


TASKS: dict[str, Task] = {}
_LOADED = False


def register_task(task: Task) -> Task:
    """Add ``task``; a name taken by a different task raises (re-registering the same object is a no-op)."""
    old = TASKS.get(task.name)
    if old is not None and old is not task and old.make is not task.make:
        raise ValueError(f"task {task.name!r} is already registered (by {old.make.__module__})")
    TASKS[task.name] = task
    return task


def _load_builtin() -> None:
    global _LOADED
    if not _LOADED:
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        _LOADED = True


def get_task(name: str) -> Task:
    """The registered task ``name`` (``-`` and case are forgiven: ``greater-than``)."""
    _load_builtin()
    key = name.replace("-", "_").lower()
    if key not in TASKS:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[key]


def task_names() -> list[str]:
    _load_builtin()
    return sorted(TASKS)


def all_tasks() -> dict[str, Task]:
    _load_builtin()
    return dict(TASKS)
