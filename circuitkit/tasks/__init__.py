"""Tasks with clean / corrupted prompts, metrics and ground-truth circuits, read from the task registry
(:mod:`circuitkit.tasks.registry`: one module per task)."""

from __future__ import annotations

from circuitkit.tasks.base import TaskDataset, TaskError
from circuitkit.tasks.greater_than import make_greater_than
from circuitkit.tasks.ioi import make_ioi
from circuitkit.tasks.registry import TASKS, Task, all_tasks, get_task, register_task, task_names


def make_task(name: str, tokenizer, n_prompts: int = 64, **kwargs) -> TaskDataset:
    """Build a task dataset by name (``ioi``, ``greater_than``, any registered task) for a tokenizer
    (``model.tokenizer``)."""
    return get_task(name).make(tokenizer, n_prompts, **kwargs)


__all__ = [
    "TASKS",
    "Task",
    "TaskDataset",
    "TaskError",
    "all_tasks",
    "get_task",
    "make_greater_than",
    "make_ioi",
    "make_task",
    "register_task",
    "task_names",
]
