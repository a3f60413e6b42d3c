"""Ground-truth circuits: published ones for GPT-2 small, patching-derived ones for the built-in models.

GPT-2 small: IOI from Wang et al. (2022), greater-than from Hanna et al. (2023), as used by ACDC
(Conmy et al. 2023) and auto-circuit; each registered task names its published circuits
(``Task.published_circuits``). Built-in models: derived by exhaustive activation patching when the model
is built (:func:`circuitkit.evaluation.derive_circuit.derive_circuit`, outside the task layer) and
stored in its card.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformer_lens import HookedTransformer


@dataclass(frozen=True)
class Circuit:
    """A set of heads (with roles) and MLP layers that carry a task's behaviour in one model."""

    model: str
    task: str
    heads: dict[tuple[int, int], str]
    """(layer, head) -> role."""
    mlps: tuple[int, ...] = ()
    source: str = ""
    details: dict = field(default_factory=dict)

    def head_set(self) -> set[tuple[int, int]]:
        return set(self.heads)

    def by_role(self) -> dict[str, list[tuple[int, int]]]:
        out: dict[str, list[tuple[int, int]]] = {}
        for h, role in sorted(self.heads.items()):
            out.setdefault(role, []).append(h)
        return out

    def edge_pairs(self) -> list[tuple[str, str]] | None:
        """The circuit's edges as ``(sender, receiver)`` component labels (``"L0H1"``, ``"MLP2"``,
        ``"tokens"``, ``"logits"``), when the card stores them (planted circuits: ``edges`` between node
        names, ``nodes`` naming each node's component); None otherwise."""
        edges, nodes = self.details.get("edges"), self.details.get("nodes")
        if not edges or not nodes:
            return None
        label = {"tokens": "tokens", "logits": "logits", **{n["name"]: n["label"] for n in nodes}}
        unknown = sorted({x for e in edges for x in e} - set(label))
        if unknown:
            raise ValueError(f"circuit of {self.model!r} / {self.task!r}: edges name unknown nodes {unknown}")
        return [(label[a], label[b]) for a, b in edges]

    def head_mask(self, n_layers: int, n_heads: int) -> torch.Tensor:
        """Boolean [n_layers, n_heads] membership grid (for ROC / precision-recall)."""
        mask = torch.zeros(n_layers, n_heads, dtype=torch.bool)
        for layer, head in self.heads:
            mask[layer, head] = True
        return mask


def _roles(**groups: list[str]) -> dict[tuple[int, int], str]:
    out = {}
    for role, heads in groups.items():
        for h in heads:
            layer, head = h.split(".")
            out[(int(layer), int(head))] = role.replace("_", " ")
    return out


GPT2_SMALL: dict[str, Circuit] = {
    "ioi": Circuit(
        model="gpt2",
        task="ioi",
        heads=_roles(
            name_mover=["9.6", "9.9", "10.0"],
            backup_name_mover=["9.0", "9.7", "10.1", "10.2", "10.6", "10.10", "11.2", "11.9"],
            negative_name_mover=["10.7", "11.10"],
            s_inhibition=["7.3", "7.9", "8.6", "8.10"],
            induction=["5.5", "5.8", "5.9", "6.9"],
            duplicate_token=["0.1", "0.10", "3.0"],
            previous_token=["2.2", "4.11"],
        ),
        source="Wang et al. 2022 (arXiv 2211.00593), as used by ACDC",
    ),
    "greater_than": Circuit(
        model="gpt2",
        task="greater_than",
        heads=_roles(
            attends_to_yy=["5.5", "6.1", "6.9", "7.10", "8.11", "9.1"],
            early=["0.1", "0.3", "0.5"],
        ),
        mlps=(0, 1, 2, 3, 8, 9, 10, 11),
        source="Hanna et al. 2023 (arXiv 2305.00586), as used by ACDC",
    ),
}


def circuit_from_card(card: dict, task: str) -> Circuit | None:
    entry = card.get("circuits", {}).get(task)
    if not entry:
        return None
    heads = {(h["layer"], h["head"]): h["role"] for h in entry["heads"]}
    return Circuit(
        model=card.get("name", ""),
        task=task,
        heads=heads,
        mlps=tuple(m["layer"] for m in entry.get("mlps", [])),
        source=entry.get("method", ""),
        details=entry,
    )


def ground_truth(model: HookedTransformer | str, task: str) -> Circuit:
    """The reference circuit for a model and task: published (gpt2), from the card of the model folder it
    was read from (a string may be that folder), or from a built-in model's card.

    The model's own folder comes first: a model re-trained with ``circuitkit zoo train NAME --out DIR``
    keeps NAME as its ``model_name``, and a circuit derived from *its* weights must not be replaced by
    the shipped model's."""
    from pathlib import Path

    from circuitkit.models import zoo
    from circuitkit.tasks.registry import get_task

    spec = get_task(task)
    key = spec.name
    folder = Path(model) if isinstance(model, str) else getattr(model, "circuitkit_dir", None)
    if folder is not None and zoo.is_model_dir(Path(folder)):
        card = zoo.read_card(Path(folder))
        own = circuit_from_card(card, key)
        if own is not None:
            return own
        model = card.get("name") or str(model)
    name = model if isinstance(model, str) else model.cfg.model_name
    published = spec.published_circuits(name) if spec.published_circuits else None
    if published is not None:
        return published
    builtin = zoo.resolve_builtin(name)
    if builtin is not None:
        c = circuit_from_card(zoo.read_card(zoo.builtin_dir(builtin)), key)
        if c is not None:
            return c
    raise KeyError(
        f"no ground-truth circuit for model {name!r} and task {task!r}: known are GPT-2 small "
        f"({', '.join(GPT2_SMALL)}) and the built-in models' cards"
    )
