"""Ground-truth circuits: published ones for GPT-2 small, patching-derived ones for the built-in models.

GPT-2 small: IOI from Wang et al. (2022), greater-than from Hanna et al. (2023), as used by ACDC
(Conmy et al. 2023) and auto-circuit. Built-in models: derived by exhaustive activation patching when
the model is built (:func:`derive_circuit`) and stored in its card.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformer_lens import HookedTransformer

from circuitkit.components import head_label
from circuitkit.tasks.base import TaskDataset


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
    """The reference circuit for a model and task: published (gpt2) or from a built-in model's card."""
    from circuitkit.models import zoo

    name = model if isinstance(model, str) else model.cfg.model_name
    key = task.replace("-", "_")
    if name in ("gpt2", "gpt2-small") and key in GPT2_SMALL:
        return GPT2_SMALL[key]
    builtin = zoo.resolve_builtin(name)
    if builtin is not None:
        c = circuit_from_card(zoo.read_card(zoo.builtin_dir(builtin)), key)
        if c is not None:
            return c
    raise KeyError(
        f"no ground-truth circuit for model {name!r} and task {task!r}: known are GPT-2 small "
        f"({', '.join(GPT2_SMALL)}) and the built-in models' cards"
    )


# --- deriving a circuit by exhaustive activation patching -------------------------------------------

IOI_ROLE_POSITIONS = {
    # role: (query position, key position) whose mean attention identifies it (Wang et al. 2022)
    "name mover": ("end", "IO"),
    "s-inhibition": ("end", "S2"),
    "induction": ("S2", "S1+1"),
    "duplicate token": ("S2", "S1"),
    "previous token": ("S1+1", "S1"),
}


def _mean_attention(model: HookedTransformer, data: TaskDataset, q: str, k: str) -> torch.Tensor:
    """[n_layers, n_heads] mean attention from position ``q`` to position ``k`` on clean prompts."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(
            data.clean_tokens.to(model.cfg.device), names_filter=lambda n: n in names
        )
    idx = torch.arange(len(data))
    qp, kp = data.positions[q].cpu(), data.positions[k].cpu()
    return torch.stack([cache[n].cpu()[idx, :, qp, kp].mean(0) for n in names])


def derive_circuit(
    model: HookedTransformer, data: TaskDataset, *, threshold: float = 0.1, mlp_threshold: float = 0.1
) -> dict:
    """Heads (and MLP layers) whose single-component activation patch moves the normalised metric by at
    least ``threshold`` in the denoising or the noising direction, with roles read off attention.

    Returns a JSON-able dict for the model card.
    """
    from circuitkit.patching.activation import activation_patching

    n_heads = model.cfg.n_heads
    effects = {}
    for direction in ("denoising", "noising"):
        r = activation_patching(
            model, data.clean_tokens, data.corrupted_tokens, data.metric, "head", direction=direction
        )
        # denoising: share of the clean behaviour one head restores; noising: share of it one head's
        # corrupted value destroys ((m - m_clean) / (m_corrupted - m_clean)). Both are 0 for a bystander.
        effects[direction] = r.normalized()
    mlp = activation_patching(model, data.clean_tokens, data.corrupted_tokens, data.metric, "mlp_out_all")
    mlp_eff = mlp.normalized()

    role_scores = {}
    if data.task == "ioi":
        for role, (q, k) in IOI_ROLE_POSITIONS.items():
            role_scores[role] = _mean_attention(model, data, q, k)
    else:
        role_scores["attends to YY"] = _mean_attention(model, data, "end", "YY")

    heads = []
    for layer in range(model.cfg.n_layers):
        for head in range(n_heads):
            den, noi = float(effects["denoising"][layer, head]), float(effects["noising"][layer, head])
            if max(abs(den), abs(noi)) < threshold:
                continue
            best_role, best = "other", 0.3
            for role, att in role_scores.items():
                if float(att[layer, head]) > best:
                    best_role, best = role, float(att[layer, head])
            if best_role == "name mover" and den + noi < 0:
                best_role = "negative name mover"
            heads.append(
                {
                    "layer": layer,
                    "head": head,
                    "label": head_label(layer, head),
                    "role": best_role,
                    "effect_denoising": round(den, 4),
                    "effect_noising": round(noi, 4),
                }
            )
    mlps = [
        {"layer": layer, "effect_denoising": round(float(mlp_eff[layer]), 4)}
        for layer in range(model.cfg.n_layers)
        if abs(float(mlp_eff[layer])) >= mlp_threshold
    ]
    return {
        "heads": heads,
        "mlps": mlps,
        "threshold": threshold,
        "method": (
            "exhaustive activation patching of every head (hook_z, all positions), denoising and noising, "
            f"{len(data)} held-out prompts; kept if |normalised effect| >= {threshold}; roles from mean "
            "attention between task positions"
        ),
        "head_effects_denoising": [[round(float(x), 4) for x in row] for row in effects["denoising"]],
        "head_effects_noising": [[round(float(x), 4) for x in row] for row in effects["noising"]],
    }
