"""The planted IOI circuit: a high-level model after Wang et al. 2022 ("Interpretability in the Wild").

Prompts name two people in a first clause (name *slots* 1 and 2) and repeat one of them as the subject
S2 of the second clause; the answer is the other one, the indirect object. The high-level model:

* ``duplicate`` (duplicate-token head at S2): the name S2 repeats (its token), or none when S2 repeats
  neither slot (the ABC corruption);
* ``s_inhibition`` (S-inhibition head at END, attends to S2): the same value, moved to END;
* ``name_mover`` and ``backup_name_mover`` (heads at END, attend to IO): the name in the slot *not*
  inhibited (both slots, half each, when nothing is inhibited), copied to the output;
* output: main x name mover + backup x backup name mover (distributions over the vocabulary;
  ``mover_weights``, 0.6 / 0.4 by default). When the two agree - every unintervened prompt - the answer
  is the indirect object with all the mass. The log-odds log(main / backup) is the margin by which the
  name mover must outweigh the backup under an intervention: 0.41 nats at 0.6 / 0.4 is a knife edge for
  top-1 IIA, 1.73 at 0.85 / 0.15 is not.

The two name movers read ``s_inhibition`` in parallel, so each moves the answer on its own and an
intervention on one of them moves a known share of the output.

The inhibited name is carried as an identity (which name), not a position (which slot). A first
version carried the slot, as Wang et al. found GPT-2's S-inhibition signal to be mostly positional; SIIT
training stalled on it (behaviour loss flat for 500 steps, from scratch and from ck-tiny's weights),
while the identity version trains. On IOI prompts a head at S2 that copies its own token is
interchangeable with one that attends to S1 (they differ only when S2 repeats nothing, and then
neither name is inhibited either way), so the duplicate-token node's attention to S1 is measured and
reported, not forced.

Training helpers (both off by default): ``attention_targets`` gives each aligned head's pattern under
the roles above, for an auxiliary attention loss (``PlantedConfig.w_attn``); ``augment`` inserts filler
tokens and replaces template words in a share of the training batches, so that the circuit finds the
names by content and carries over to held-out templates (without it, a model at 100 % on the training
templates scored 72-81 % on the held-out ones).
"""

from __future__ import annotations

import random

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuitkit.planted.graph import AlignedBatch, Node
from circuitkit.tasks import ioi, vocab
from circuitkit.tasks.base import TaskError, check_single_tokens, encode_prompts

NAME_MOVER_WEIGHTS = (0.6, 0.4)
AUGMENTED = "|augmented, prefix "
"""Marks an augmented batch's layout; the number after it is the count of filler tokens after BOS."""


def default_nodes() -> tuple[Node, ...]:
    """Four heads in three layers."""
    return (
        Node("duplicate", "duplicate token", 0, 1, "S2", reads=("tokens",)),
        Node("s_inhibition", "s-inhibition", 1, 2, "end", reads=("duplicate",)),
        Node("name_mover", "name mover", 2, 0, "end", reads=("s_inhibition", "tokens")),
        Node("backup_name_mover", "backup name mover", 2, 3, "end", reads=("s_inhibition", "tokens")),
    )


class IOIHighLevel:
    """High-level causal model of IOI over a tokenizer's vocabulary."""

    task = "ioi"

    def __init__(
        self,
        tokenizer,
        nodes: tuple[Node, ...] | None = None,
        p_abc: float = 0.25,
        augment: float = 0.0,
        p_filler: float = 0.25,
        max_prefix: int = 3,
        mover_weights: tuple[float, float] = NAME_MOVER_WEIGHTS,
        answer_prob: float = 1.0,
    ) -> None:
        self.tokenizer = tokenizer
        self.nodes = nodes or default_nodes()
        if [n.name for n in self.nodes] != [n.name for n in default_nodes()]:
            raise ValueError(
                "IOI nodes must be duplicate, s_inhibition, name_mover, backup_name_mover in order"
            )
        self.p_abc = p_abc
        """Share of sampled rows with the ABC corruption (S2 repeats neither slot)."""
        self.augment = augment
        """Share of *training* batches that are augmented (held-out prompts never are): 0 to
        ``max_prefix`` filler tokens after BOS (one count per batch, so the batch keeps one layout),
        and each non-name token but BOS and END replaced by a filler token with probability
        ``p_filler``. The trained circuit then finds names by content, not by template position."""
        w_main, w_backup = mover_weights
        if not (w_main > w_backup > 0 and abs(w_main + w_backup - 1) < 1e-9):
            raise ValueError(
                f"mover_weights must be (main, backup) with main > backup > 0, summing to 1: {mover_weights}"
            )
        self.mover_weights = (float(w_main), float(w_backup))
        """Output = main x name mover + backup x backup name mover; the log-odds log(main / backup) is
        the margin by which the name mover must outweigh the backup (0.6 / 0.4: 0.41 nats)."""
        if not 0.5 < answer_prob <= 1.0:
            raise ValueError(f"answer_prob must be in (0.5, 1], got {answer_prob}")
        self.answer_prob = float(answer_prob)
        """Mass each name mover puts on the name it moves (the rest on the inhibited name). Below 1 the
        target logit difference is finite (log(p / (1 - p))), so the losses pin it: with a one-hot
        target any component may add margin for free (the KL saturates), and a non-aligned MLP or a
        direct S-inhibition -> logits path moved the logit difference by 16-22 % unpenalised."""
        self.p_filler = p_filler
        self.max_prefix = max_prefix
        self.vocab = len(tokenizer)
        self._layouts: dict[tuple[str, str], list[int]] = {}
        self._filler: Tensor | None = None

    def filler_tokens(self) -> Tensor:
        """Lower-case single-word tokens of the vocabulary that are no name and no held-out place or
        object (so augmentation never shows the held-out test words)."""
        if self._filler is None:
            banned = {w.lower() for w in (*vocab.all_names(), *vocab.PLACES_HELDOUT, *vocab.OBJECTS_HELDOUT)}
            keep = []
            for i in range(self.vocab):
                text = self.tokenizer.decode([i])
                word = text[1:]
                alpha = len(word) >= 2 and word.isalpha() and word.islower()
                if text.startswith(" ") and alpha and word not in banned:
                    keep.append(i)
            self._filler = torch.tensor(keep)
        return self._filler

    def _augmented(
        self, rng: random.Random, tokens: Tensor, positions: dict[str, int], k: int
    ) -> tuple[Tensor, dict[str, int]]:
        gen = torch.Generator().manual_seed(rng.getrandbits(62))
        filler = self.filler_tokens()
        b, n_pos = tokens.shape
        keep = torch.zeros(n_pos, dtype=torch.bool)
        keep[[0, *positions.values()]] = True
        swap = (torch.rand(b, n_pos, generator=gen) < self.p_filler) & ~keep
        random_words = filler[torch.randint(0, len(filler), (b, n_pos), generator=gen)]
        tokens = torch.where(swap, random_words, tokens)
        if k:
            prefix = filler[torch.randint(0, len(filler), (b, k), generator=gen)]
            tokens = torch.cat([tokens[:, :1], prefix, tokens[:, 1:]], dim=1)
            positions = {name: p + k for name, p in positions.items()}
        return tokens, positions

    # --- prompts ---------------------------------------------------------------------------------------
    def _layout(self, template: str, split: str) -> list[int]:
        """Token indices of slot 1, slot 2 and S2 in a template (checked to be single-token names)."""
        key = (template, split)
        if key not in self._layouts:
            w = ioi.word_lists(split)
            a, b = w["names"][0], w["names"][1]
            text = ioi.fill(template, a, b, w["places"][0], w["objects"][0], "BABA")
            ids = encode_prompts(self.tokenizer, [text])[0]
            name_ids = check_single_tokens(self.tokenizer, [" " + a, " " + b], "IOI names")
            where = [i for i, t in enumerate(ids) if t in name_ids.values()]
            if len(where) != 3:
                raise TaskError(f"template {template!r} does not hold exactly three single-token names")
            self._layouts[key] = [*where, len(ids)]
        return self._layouts[key]

    def sample(
        self,
        rng: random.Random,
        n: int,
        *,
        split: str = "train",
        template: str | None = None,
        p_abc: float | None = None,
    ) -> AlignedBatch:
        w = ioi.word_lists(split)
        prefix: int | None = None  # filler tokens after BOS; None: no augmentation
        if template is None:
            template = rng.choice(w["templates"])
            if split == "train" and self.augment > 0 and rng.random() < self.augment:
                prefix = rng.randint(0, self.max_prefix)
        elif AUGMENTED in template:  # a source batch for an augmented base batch: the same layout
            template, k = template.split(AUGMENTED)
            prefix = int(k)
        slot1, slot2, s2, length = self._layout(template, split)
        p_abc = self.p_abc if p_abc is None else p_abc
        texts, n1, n2, n3 = [], [], [], []
        for i in range(n):
            a, b, c = rng.sample(w["names"], 3)
            order = "ABBA" if i % 2 == 0 else "BABA"
            text = ioi.fill(template, a, b, rng.choice(w["places"]), rng.choice(w["objects"]), order)
            texts.append(text)
            first, second = (a, b) if order == "ABBA" else (b, a)
            third = c if rng.random() < p_abc else b
            n1.append(first), n2.append(second), n3.append(third)
        ids = check_single_tokens(self.tokenizer, [" " + x for x in set(n1 + n2 + n3)], "IOI names")
        tokens = torch.tensor(encode_prompts(self.tokenizer, texts))
        if tokens.shape[1] != length:
            raise TaskError(f"template {template!r} tokenises to different lengths for different words")
        n3_ids = torch.tensor([ids[" " + x] for x in n3])
        tokens[:, s2] = n3_ids
        positions = {"slot1": slot1, "slot2": slot2, "S2": s2, "end": length - 1}
        layout = template
        if prefix is not None:
            tokens, positions = self._augmented(rng, tokens, positions, prefix)
            layout = f"{template}{AUGMENTED}{prefix}"
        return AlignedBatch(
            tokens=tokens,
            positions=positions,
            variables={
                "slot1": torch.tensor([ids[" " + x] for x in n1]),
                "slot2": torch.tensor([ids[" " + x] for x in n2]),
                "S2": n3_ids,
            },
            layout=layout,
        )

    # --- minimal pairs (PlantedConfig.p_pair) -------------------------------------------------------------
    def counterfactual(self, batch: AlignedBatch, generator: torch.Generator) -> AlignedBatch:
        """Each row's minimal pair: the same prompt with S2 changed. A row whose S2 repeats a slot gets the
        other slot's name or (half the time) a third name, the ABC corruption; an ABC row gets one of
        the slots. The names stay the base's, so a component that relays the repeated name's identity
        is tested with a value that matters in the base prompt (an independent source's repeated name
        is usually absent from the base, and inhibiting an absent name changes nothing)."""
        v = batch.variables
        dev = batch.tokens.device
        b = len(batch)
        names = self._name_ids(dev)
        in1, in2 = v["S2"] == v["slot1"], v["S2"] == v["slot2"]
        r = torch.rand(b, generator=generator).to(dev)
        # a third name: any name but the two slots
        pick = torch.randint(0, len(names) - 2, (b,), generator=generator).to(dev)
        in_slots = (names[None, :] == v["slot1"][:, None]) | (names[None, :] == v["slot2"][:, None])
        order = torch.argsort(in_slots.to(torch.int8), dim=1, stable=True)  # names not in a slot first
        third = names[order[torch.arange(b, device=dev), pick]]
        other = torch.where(in1, v["slot2"], v["slot1"])
        new_s2 = torch.where(
            in1 | in2, torch.where(r < 0.5, other, third), torch.where(r < 0.5, v["slot1"], v["slot2"])
        )
        tokens = batch.tokens.clone()
        tokens[:, batch.positions["S2"]] = new_s2
        return AlignedBatch(tokens, dict(batch.positions), {**v, "S2": new_s2}, batch.layout)

    @staticmethod
    def logit_pair(batch: AlignedBatch) -> Int[Tensor, "batch 2"]:
        """Slot 1's and slot 2's names: their logit difference, signed by which one is the answer, is
        the IOI metric (``PlantedConfig.w_logit_diff`` keeps it unchanged under resample ablation)."""
        return torch.stack([batch.variables["slot1"], batch.variables["slot2"]], dim=-1)

    def answer_ids(self) -> Int[Tensor, " names"]:
        """Every name either split may ask for: the tokens whose logit differences are the metric."""
        words = sorted({" " + x for x in vocab.all_names()})
        return torch.tensor(sorted(check_single_tokens(self.tokenizer, words, "IOI names").values()))

    def _name_ids(self, device) -> Tensor:
        if not hasattr(self, "_names"):
            words = [" " + x for x in ioi.word_lists("train")["names"]]
            ids = check_single_tokens(self.tokenizer, words, "IOI names")
            self._names = torch.tensor(sorted(ids.values()))
        return self._names.to(device)

    # --- where the aligned heads look (optional auxiliary loss, PlantedConfig.w_attn) ---------------------
    def attention_targets(self, batch: AlignedBatch) -> dict[str, Float[Tensor, "batch pos"]]:
        """Each aligned head's attention pattern at its own position under the high-level model (Wang et
        al.'s roles): the duplicate-token head at S2 attends to the earlier occurrence of S2's name (BOS
        when S2 repeats neither slot), the S-inhibition head at END to S2, the name movers at END to the
        slot of the name they move (half on each slot when nothing is inhibited)."""
        v, pos = batch.variables, batch.positions
        b, n_pos = batch.tokens.shape
        rows = torch.arange(b, device=batch.tokens.device)
        in1, in2 = v["S2"] == v["slot1"], v["S2"] == v["slot2"]
        dup = torch.zeros(b, n_pos, device=batch.tokens.device)
        dup[rows, pos["slot1"]] = in1.float()
        dup[rows, pos["slot2"]] = in2.float()
        dup[rows, 0] = (~(in1 | in2)).float()
        s_inh = torch.zeros(b, n_pos, device=batch.tokens.device)
        s_inh[:, pos["S2"]] = 1.0
        mover = torch.zeros(b, n_pos, device=batch.tokens.device)
        mover[rows, pos["slot1"]] = torch.where(in1, 0.0, torch.where(in2, 1.0, 0.5))
        mover[rows, pos["slot2"]] = 1.0 - mover[rows, pos["slot1"]]
        return {"duplicate": dup, "s_inhibition": s_inh, "name_mover": mover, "backup_name_mover": mover}

    # --- the causal model ------------------------------------------------------------------------------
    @staticmethod
    def duplicate(v: dict[str, Tensor]) -> Int[Tensor, " batch"]:
        """The repeated name's token id: S2's token when a first-clause slot holds it, else -1."""
        dup = (v["S2"] == v["slot1"]) | (v["S2"] == v["slot2"])
        return torch.where(dup, v["S2"], torch.full_like(v["S2"], -1))

    def _mover(self, inhibited: Tensor, v: dict[str, Tensor]) -> Float[Tensor, "batch vocab"]:
        """The first-clause name that is not inhibited (``answer_prob`` of the mass, the rest on the
        inhibited one); half on each when neither is."""
        out = torch.zeros(len(inhibited), self.vocab, device=inhibited.device)
        rows = torch.arange(len(inhibited), device=inhibited.device)
        q = self.answer_prob
        w1 = torch.where(inhibited == v["slot1"], 1 - q, torch.where(inhibited == v["slot2"], q, 0.5))
        out[rows, v["slot1"]] += w1
        out[rows, v["slot2"]] += 1 - w1
        return out

    def output(
        self, base: AlignedBatch, source: AlignedBatch | None = None, node: Tensor | None = None
    ) -> Float[Tensor, "batch vocab"]:
        v = base.variables
        inhibited = self.duplicate(v)
        if node is None or source is None:
            return self._mover(inhibited, v)
        inhibited = torch.where((node == 0) | (node == 1), self.duplicate(source.variables), inhibited)
        mover = self._mover(inhibited, v)
        source_mover = self._mover(self.duplicate(source.variables), source.variables)
        w_main, w_backup = self.mover_weights
        main = torch.where((node == 2)[:, None], source_mover, mover)
        backup = torch.where((node == 3)[:, None], source_mover, mover)
        return w_main * main + w_backup * backup
