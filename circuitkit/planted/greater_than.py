"""The planted greater-than circuit: a high-level model after Hanna et al. 2023 ("How does GPT-2 compute
greater-than?", arXiv 2305.00586).

Prompts "The [NOUN] lasted from the year [C][YY] to the year [C]"; the next token is a two-digit year.

* ``tens`` and ``units`` (heads L0H1 and L0H3 at END, attending to YY): the tens and the units digit of
  YY, moved to END in parallel by two heads (Hanna et al.'s heads at END that attend to YY);
* ``greater`` (MLP 1 at END): the start year 10 x tens + units, assembled from the two digits;
* ``answer`` (MLP 2 at END): that year turned into the "greater" distribution (Hanna et al.'s late MLPs);
* output: uniform over the ``window`` two-digit years just after the year (99 alone when none is
  later). GPT-2 puts its mass on the years just after YY too (Hanna et al., Fig. 2); a window also makes
  the units digit matter: with every later year equally likely (``window=None``) an intervention on the
  units head moves the metric little.

An intervention on ``tens`` keeps the base prompt's units digit (and the other way round), so each head
moves a known part of the answer; ``greater`` and ``answer`` carry the whole year.

A first version built the year with MLP 0 at YY and moved it with layer-1 heads. SIIT did not train it
in 2,000 steps: all four layer-0 heads learned to copy the YY token to END (attention END -> YY 1.00), the
downstream MLP read that redundant copy, and the aligned units head stayed idle (own effect 0.05). Here
the aligned heads are those layer-0 copies.
"""

from __future__ import annotations

import random

import torch
from jaxtyping import Float
from torch import Tensor

from circuitkit.planted.graph import AlignedBatch, Node
from circuitkit.tasks import greater_than, vocab
from circuitkit.tasks.base import TaskError, check_single_tokens, encode_prompts


def default_nodes() -> tuple[Node, ...]:
    """Two heads and two MLPs in three layers."""
    return (
        Node("tens", "attends to YY (tens)", 0, 1, "end", reads=("tokens",)),
        Node("units", "attends to YY (units)", 0, 3, "end", reads=("tokens",)),
        Node("greater", "year MLP", 1, None, "end", reads=("tens", "units")),
        Node("answer", "greater-than MLP", 2, None, "end", reads=("greater",)),
    )


class GreaterThanHighLevel:
    """High-level causal model of greater-than over a tokenizer's vocabulary."""

    task = "greater_than"

    def __init__(
        self,
        tokenizer,
        nodes: tuple[Node, ...] | None = None,
        p_abc: float = 0.15,
        window: int | None = 10,
    ) -> None:
        if window is not None and window < 1:
            raise ValueError(f"window must be a positive number of years or None, got {window}")
        self.window = window
        """Years after ``greater`` that share the output mass; None: every later year."""
        self.tokenizer = tokenizer
        self.nodes = nodes or default_nodes()
        if [n.name for n in self.nodes] != [n.name for n in default_nodes()]:
            raise ValueError("greater-than nodes must be tens, units, greater, answer in order")
        self.p_abc = p_abc
        """Share of sampled rows with the corruption YY = 01."""
        self.vocab = len(tokenizer)
        years = check_single_tokens(tokenizer, [f"{i:02d}" for i in range(100)], "two-digit years")
        self.year_ids = torch.tensor([years[f"{i:02d}"] for i in range(100)])

    def sample(
        self,
        rng: random.Random,
        n: int,
        *,
        split: str = "train",
        template: str | None = None,
        p_abc: float | None = None,
    ) -> AlignedBatch:
        nouns = greater_than.nouns(split)
        p_abc = self.p_abc if p_abc is None else p_abc
        yys = [1 if rng.random() < p_abc else rng.choice(greater_than.YY_RANGE) for _ in range(n)]
        texts = [greater_than.fill(rng.choice(nouns), rng.choice(vocab.GT_CENTURIES), yy) for yy in yys]
        tokens = torch.tensor(encode_prompts(self.tokenizer, texts))
        if tokens.ndim != 2:
            raise TaskError("greater-than prompts tokenise to different lengths for this tokenizer")
        yy_pos = [i for i, t in enumerate(tokens[0].tolist()) if t == int(self.year_ids[yys[0]])]
        return AlignedBatch(
            tokens=tokens,
            positions={"YY": yy_pos[0], "end": tokens.shape[1] - 1},
            variables={"yy": torch.tensor(yys)},
            layout="greater_than",
        )

    def answer_ids(self) -> Tensor:
        """The two-digit year tokens: the answers whose probabilities the metric compares."""
        return self.year_ids.clone()

    def _answer(self, year: Tensor) -> Float[Tensor, "batch vocab"]:
        ys = torch.arange(100, device=year.device)
        later = ys[None, :] > year[:, None]
        if self.window is not None:
            later &= ys[None, :] <= year[:, None] + self.window
        later = later.float()
        later[later.sum(-1) == 0, 99] = 1.0
        later = later / later.sum(-1, keepdim=True)
        out = torch.zeros(len(year), self.vocab, device=year.device)
        out[:, self.year_ids.to(year.device)] = later
        return out

    def output(
        self, base: AlignedBatch, source: AlignedBatch | None = None, node: Tensor | None = None
    ) -> Float[Tensor, "batch vocab"]:
        yy = base.variables["yy"]
        if node is None or source is None:
            return self._answer(yy)
        src = source.variables["yy"]
        tens = torch.where(node == 0, src // 10, yy // 10)
        units = torch.where(node == 1, src % 10, yy % 10)
        year = torch.where((node == 2) | (node == 3), src, 10 * tens + units)
        return self._answer(year)
