"""Tasks with clean / corrupted prompts, metrics and ground-truth circuits."""

from __future__ import annotations

from circuitkit.tasks.base import TaskDataset, TaskError
from circuitkit.tasks.greater_than import make_greater_than
from circuitkit.tasks.ioi import make_ioi

TASKS = {"ioi": make_ioi, "greater_than": make_greater_than}


def make_task(name: str, tokenizer, n_prompts: int = 64, **kwargs) -> TaskDataset:
    """Build a task dataset by name (``ioi``, ``greater_than``) for a tokenizer (``model.tokenizer``)."""
    key = name.replace("-", "_").lower()
    if key not in TASKS:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[key](tokenizer, n_prompts, **kwargs)


__all__ = ["TASKS", "TaskDataset", "TaskError", "make_greater_than", "make_ioi", "make_task"]
