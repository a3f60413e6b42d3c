"""On-the-fly activations from a model through a shuffling buffer.

Consecutive tokens of a context are strongly correlated, so the buffer holds activations from many
contexts and serves random halves of it: each refill keeps the unread half, tops up with fresh contexts,
and permutes (the mixing buffer of sae-lens and of Bricken et al. 2023). Its state (unread rows,
permutation generator, contexts consumed) is saved in checkpoints, so a resumed run reads exactly what an
uninterrupted one would have.
"""

from __future__ import annotations

from typing import Any

import torch
from transformer_lens import HookedTransformer

from sae_training.activations.model_source import activations, activations_with_gradients
from sae_training.activations.source import Batch
from sae_training.activations.text import context_batches


class ShufflingBuffer:
    """Batches of activations at ``hook`` (and ``target_hook``, gradients) from text run through ``model``."""

    def __init__(
        self,
        model: HookedTransformer,
        hook: str,
        *,
        target_hook: str | None = None,
        head_index: int | None = None,
        with_gradients: bool = False,
        text: str = "builtin",
        text_column: str = "text",
        context_size: int = 64,
        model_batch_size: int = 32,
        buffer_tokens: int = 131_072,
        batch_size: int = 4096,
        seed: int = 0,
        device: torch.device | str = "cpu",
        lean_forward: bool = True,
        total_rows: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.model, self.hook, self.target_hook, self.head_index = model, hook, target_hook, head_index
        self.with_gradients = with_gradients
        self.text, self.text_column, self.context_size = text, text_column, context_size
        self.model_batch_size, self.capacity, self.batch_size = model_batch_size, buffer_tokens, batch_size
        self.seed, self.device = seed, torch.device(device)
        self.lean_forward = lean_forward
        # Data-parallel shard: this process reads every world_size-th context of the shared stream.
        self.rank, self.world_size = rank, world_size
        # Rows the trainer will read in all (None: unknown). Near the end the buffer then tops up only
        # with what is still to be served, instead of running the model on a half-buffer of tokens no
        # step will see (that was ~13 % of the LM work of a 400k-token run with a 65k-token buffer).
        self.total_rows, self.served = total_rows, 0
        self.contexts_consumed = 0
        self.generator = torch.Generator().manual_seed(seed + 7919 * rank)
        self.data: dict[str, torch.Tensor] = {}
        self.pos = 0
        self._contexts = None

    # ---- reading ---------------------------------------------------------------------------------
    def _context_iter(self):
        if self._contexts is None:
            self._contexts = context_batches(
                self.model.tokenizer,
                self.text,
                self.context_size,
                self.model_batch_size,
                "train",
                self.seed,
                self.text_column,
                skip_contexts=self.contexts_consumed,
                rank=self.rank,
                world_size=self.world_size,
            )
        return self._contexts

    def _fresh_rows(self, n_rows: int) -> dict[str, torch.Tensor]:
        hooks = [self.hook] + ([self.target_hook] if self.target_hook else [])
        parts: dict[str, list[torch.Tensor]] = {"x": [], "target": [], "grad": []}
        got = 0
        while got < n_rows:
            tokens = next(self._context_iter())
            self.contexts_consumed += tokens.shape[0]
            if self.with_gradients:
                acts, grads = activations_with_gradients(
                    self.model, tokens, hooks, self.head_index, lean=self.lean_forward
                )
                parts["grad"].append(grads[self.hook].to(self.device))
            else:
                acts = activations(self.model, tokens, hooks, self.head_index, lean=self.lean_forward)
            parts["x"].append(acts[self.hook].to(self.device))
            if self.target_hook:
                parts["target"].append(acts[self.target_hook].to(self.device))
            got += acts[self.hook].shape[0]
        return {k: torch.cat(v) for k, v in parts.items() if v}

    def _refill(self) -> None:
        unread = {k: v[self.pos :] for k, v in self.data.items()}
        n_unread = next(iter(unread.values())).shape[0] if unread else 0
        want, last = self.capacity - n_unread, False
        if self.total_rows is not None:
            still = max(self.total_rows - self.served, self.batch_size) - n_unread
            if still <= want:
                want, last = still, True
        if want > 0:
            fresh = self._fresh_rows(want)
            merged = {k: torch.cat([unread[k], fresh[k]]) if unread else fresh[k] for k in fresh}
        else:
            merged = unread
        n = next(iter(merged.values())).shape[0]
        perm = torch.randperm(n, generator=self.generator).to(self.device)
        self.data = {k: v[perm] for k, v in merged.items()}
        self.pos = 0
        # Serve only half before the next refill, so every batch mixes old and new contexts (the last
        # fill, which holds just what remains to be served, is served whole).
        self.serve_until = n if last else max(self.batch_size, n // 2)

    def next_batch(self) -> Batch:
        if not self.data or self.pos + self.batch_size > getattr(self, "serve_until", 0):
            self._refill()
        s = slice(self.pos, self.pos + self.batch_size)
        self.pos += self.batch_size
        self.served += self.batch_size
        return Batch(
            self.data["x"][s],
            self.data["target"][s] if "target" in self.data else None,
            self.data["grad"][s] if "grad" in self.data else None,
        )

    @property
    def d_in(self) -> int:
        if not self.data:
            self._refill()
        return self.data["x"].shape[1]

    @property
    def d_out(self) -> int:
        if not self.data:
            self._refill()
        return self.data["target" if "target" in self.data else "x"].shape[1]

    # ---- resuming --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "contexts_consumed": self.contexts_consumed,
            "generator": self.generator.get_state(),
            "unread": {k: v[self.pos :].cpu() for k, v in self.data.items()},
            "serve_until": getattr(self, "serve_until", 0) - self.pos,
            "served": self.served,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.contexts_consumed = state["contexts_consumed"]
        self.generator.set_state(state["generator"])
        self.data = {k: v.to(self.device) for k, v in state["unread"].items()}
        self.pos = 0
        self.serve_until = state["serve_until"]
        self.served = state.get("served", 0)
        self._contexts = None
