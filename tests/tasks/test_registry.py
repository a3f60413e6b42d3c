"""The task registry: a toy third task declared in ONE module (this one) is usable everywhere the built-in
tasks are: ``make_task``, the dataset's metric, the method registry, the CLI's ``--task``, ground truth
and the derivation of roles from attention. Nothing else is edited to add it."""

from __future__ import annotations

import random

import pytest
import torch

from circuitkit.tasks import TaskDataset, TaskError, get_task, make_task, task_names
from circuitkit.tasks.base import check_single_tokens, encode_prompts
from circuitkit.tasks.ground_truth import Circuit, ground_truth
from circuitkit.tasks.metrics import logit_diff
from circuitkit.tasks.registry import TASKS, Task, register_task
from circuitkit.tasks.vocab import NAMES_TRAIN

# --- the whole task: generator, metric, positions, corruption, ground truth ---------------------------


def make_repeat(tokenizer, n_prompts: int = 8, *, seed: int = 0, split: str = "heldout") -> TaskDataset:
    """ "A B C A B" -> " C": continue a repeated sequence; corrupted: the second A becomes a fourth name."""
    names = list(NAMES_TRAIN[:12])
    ids = check_single_tokens(tokenizer, [" " + n for n in names], "names")
    rng = random.Random(seed)
    prompts, corrupted, answers, wrongs = [], [], [], []
    for _ in range(n_prompts):
        a, b, c, d = rng.sample(names, 4)
        prompts.append(f" {a} {b} {c} {a} {b}")
        corrupted.append(f" {a} {b} {c} {d} {b}")
        answers.append(ids[" " + c])
        wrongs.append(ids[" " + a])
    clean = torch.tensor(encode_prompts(tokenizer, prompts))
    corr = torch.tensor(encode_prompts(tokenizer, corrupted))
    n = len(prompts)
    return TaskDataset(
        task="toy_repeat",
        prompts=prompts,
        corrupted_prompts=corrupted,
        clean_tokens=clean,
        corrupted_tokens=corr,
        answer_ids=torch.tensor(answers),
        wrong_ids=torch.tensor(wrongs),
        positions={"A2": torch.full((n,), 4), "end": torch.full((n,), 5)},
        metric_name="logit_diff",
        seed=seed,
        split=split,
    )


def repeat_metric(data: TaskDataset, logits: torch.Tensor) -> torch.Tensor:
    return logit_diff(logits, data.answer_ids, data.wrong_ids)


TOY_CIRCUIT = Circuit(model="ck-tiny", task="toy_repeat", heads={(1, 0): "induction"}, source="declared")


def toy_task() -> Task:
    return Task(
        name="toy_repeat",
        description="continue a repeated name sequence",
        make=make_repeat,
        metric=repeat_metric,
        metric_name="logit_diff",
        positions=("A2", "end"),
        corruption="second A -> a fourth name",
        role_positions={"looks back at A2": ("end", "A2")},
        published_circuits=lambda model: TOY_CIRCUIT if model == "ck-tiny" else None,
    )


# ------------------------------------------------------------------------------------------------------


@pytest.fixture
def registered():
    task = register_task(toy_task())
    yield task
    TASKS.pop("toy_repeat")


def test_builtin_tasks_are_registered_with_their_declarations():
    assert {"ioi", "greater_than"} <= set(task_names())
    assert get_task("greater-than").positions == ("YY", "end")
    assert "name mover" in get_task("ioi").role_positions
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        get_task("nope")


def test_a_third_task_is_one_module(registered, tmp_path):
    from circuitkit.cli import main
    from circuitkit.evaluation.derive_circuit import derive_circuit
    from circuitkit.methods import MethodRequest, run_method
    from circuitkit.models import load_model
    from circuitkit.results import list_results, load

    model = load_model("tiny", device="cpu")
    data = make_task("toy_repeat", model.tokenizer, 6)
    with torch.no_grad():
        logits = model(data.clean_tokens)
    want = logit_diff(logits, data.answer_ids, data.wrong_ids)
    torch.testing.assert_close(data.per_prompt_metric(logits), want)  # the task's own metric
    result = run_method("atp", MethodRequest(model, data, families=("head",)))
    assert (result.provenance.task, result.provenance.metric) == ("toy_repeat", "logit_diff")
    assert ground_truth("ck-tiny", "toy_repeat") is TOY_CIRCUIT
    derived = derive_circuit(model, data, threshold=0.0)
    assert {h["role"] for h in derived["heads"]} <= {"looks back at A2", "other"}
    # The CLI reads the registry when its parser is built.
    assert main(["discover", "--model", "tiny", "--task", "toy_repeat", "--n-prompts", "4", "--families",
                 "head", "--out", str(tmp_path), "--quiet"]) == 0  # fmt: skip
    (stem,) = list_results(tmp_path)
    assert load(stem).provenance.task == "toy_repeat"


def test_a_task_name_cannot_be_taken_twice(registered):
    with pytest.raises(ValueError, match="already registered"):
        register_task(Task(**{**registered.__dict__, "make": lambda *a, **k: None}))
