"""The task dataset type shared by every task: aligned clean / corrupted prompts, answers and metrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuitkit.tasks.metrics import last_position_metric

MetricName = str
"""Name of a task's metric as results record it (``logit_diff``, ``prob_diff``)."""


class TaskError(ValueError):
    """A task cannot be built as asked (bad words for this tokenizer, lengths, sizes)."""


@dataclass(frozen=True)
class TaskDataset:
    """Clean and corrupted prompts of one task, tokenised for one model, position-aligned.

    Every clean prompt has the same token length as every other and as its corrupted partner, so that
    position-wise patching compares like with like. Tokens include the BOS token at position 0.
    """

    task: str
    """Task name, e.g. ``"ioi"`` or ``"greater_than"``."""
    prompts: list[str]
    corrupted_prompts: list[str]
    clean_tokens: Int[Tensor, "batch pos"]
    corrupted_tokens: Int[Tensor, "batch pos"]
    answer_ids: Int[Tensor, " batch"]
    """Token id of the correct next token (IOI: the indirect object)."""
    wrong_ids: Int[Tensor, " batch"]
    """Token id of the competing next token (IOI: the subject; greater-than: unused, the YY token)."""
    positions: dict[str, Int[Tensor, " batch"]]
    """Named positions that matter (IOI: IO, S1, S1+1, S2, end; greater-than: YY, end)."""
    metric_name: MetricName
    seed: int
    split: str
    extras: dict[str, Tensor] = field(default_factory=dict)
    """Task-specific tensors (greater-than: ``yy`` per prompt, ``year_ids`` for 00..99)."""
    info: dict[str, object] = field(default_factory=dict)
    """JSON-able description of how the prompts were drawn (templates used, word lists)."""

    def __len__(self) -> int:
        return self.clean_tokens.shape[0]

    @property
    def seq_len(self) -> int:
        return self.clean_tokens.shape[1]

    @property
    def end_pos(self) -> int:
        return self.seq_len - 1

    def to(self, device: torch.device | str) -> TaskDataset:
        move = lambda t: t.to(device)  # noqa: E731
        return TaskDataset(
            task=self.task,
            prompts=self.prompts,
            corrupted_prompts=self.corrupted_prompts,
            clean_tokens=move(self.clean_tokens),
            corrupted_tokens=move(self.corrupted_tokens),
            answer_ids=move(self.answer_ids),
            wrong_ids=move(self.wrong_ids),
            positions={k: move(v) for k, v in self.positions.items()},
            metric_name=self.metric_name,
            seed=self.seed,
            split=self.split,
            extras={k: move(v) for k, v in self.extras.items()},
            info=self.info,
        )

    @last_position_metric
    def per_prompt_metric(self, logits: Float[Tensor, "batch pos vocab"]) -> Float[Tensor, " batch"]:
        """The task's metric for each prompt, from logits over the full sequence (the registered task's
        ``metric``; every registered metric reads the last position only)."""
        from circuitkit.tasks.registry import get_task

        return get_task(self.task).metric(self, logits)

    @last_position_metric
    def metric(self, logits: Float[Tensor, "batch pos vocab"]) -> Float[Tensor, ""]:
        """The task's metric averaged over prompts: a differentiable scalar."""
        return self.per_prompt_metric(logits).mean()

    def accuracy(self, logits: Float[Tensor, "batch pos vocab"]) -> float:
        """IOI: answer logit above the subject's; greater-than: more mass on later years."""
        return float((self.per_prompt_metric(logits) > 0).float().mean())


def encode_prompts(tokenizer, prompts: Sequence[str], *, prepend_bos: bool = True) -> list[list[int]]:
    """Tokenise without padding, with BOS first when asked (as ``HookedTransformer.to_tokens`` does)."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    out = []
    for p in prompts:
        ids = tokenizer.encode(p, add_special_tokens=False)
        out.append(([bos] if prepend_bos else []) + list(ids))
    return out


def check_single_tokens(tokenizer, words: Sequence[str], what: str) -> dict[str, int]:
    """Map each word (with its leading space) to its one token id, or raise naming every offender."""
    ids: dict[str, int] = {}
    bad: list[str] = []
    for w in words:
        toks = tokenizer.encode(w, add_special_tokens=False)
        if len(toks) != 1:
            bad.append(f"{w!r} -> {len(toks)} tokens {tokenizer.convert_ids_to_tokens(toks)}")
        else:
            ids[w] = toks[0]
    if bad:
        raise TaskError(
            f"{len(bad)} {what} are not single tokens for this tokenizer, which the task needs for "
            "position-aligned prompts: "
            + "; ".join(bad[:12])
            + ("; ..." if len(bad) > 12 else "")
            + ". Pass word lists that this tokenizer keeps whole (e.g. names=[...])."
        )
    return ids
