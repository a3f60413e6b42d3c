"""Word lists shared by the task generators and the toy-model corpus.

Every list is split into a *train* part (used in the task sentences the toy models are trained on) and a
*held-out* part (never seen in a task sentence during training). Held-out names still occur in the
corpus' filler sentences so that their embeddings are learned; what is held out is the IOI structure
around them. Evaluations on the built-in models use the held-out parts, so a score measures the learned
algorithm, not memorised sentences.

The built-in tokenizers keep every word here as one token (they were trained to). Other tokenizers split
some (GPT-2: " Ella" -> "ĠEll" + "a"), and a task's prompts must line up token by token, so
:func:`single_token_ids` drops, per tokenizer, the words it splits, with a one-line notice, and the task
fails only when too few remain. When fewer than 3 held-out IOI templates share one token length, a
tokenizer that splits some task word (one these lists were not built for) draws from
:data:`IOI_TEMPLATES_HELDOUT_RESERVE` too. The built-in tokenizers keep every task word whole and are
left as their cards were scored: their held-out IOI prompts use the one held-out template of the
commonest length (each has a different token length there, since template words like "walked" split).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

log = logging.getLogger("circuitkit.tasks")

NAMES_TRAIN: tuple[str, ...] = (
    "Mary", "John", "Alice", "Bob", "Anna", "James", "Sarah", "David", "Laura", "Michael",
    "Emma", "Daniel", "Kate", "Paul", "Lisa", "Mark", "Julia", "Peter", "Rose", "Tom",
    "Grace", "Sam", "Helen", "Jack", "Lucy", "Adam", "Clara", "Ben", "Nina", "Henry",
    "Amy", "Ryan", "Sophie", "Eric", "Ella", "Oscar", "Jane", "Max", "Eva", "Leo",
    "Ruth", "Carl", "Iris", "Hugo", "Diana", "Felix", "Olga", "Ivan", "Chris", "Anne",
    "Joe", "Mike", "Sara", "Jim", "Tim", "Dan", "Bill", "Jean", "Andrew", "Rachel",
    "Jacob", "Matt", "Dave", "Kelly", "Karen", "Brian", "Scott", "Jason", "Patrick", "Martin",
    "Nick", "Richard", "Robert", "Thomas", "Charles", "Martha", "Edward", "Philip",
)  # fmt: skip
NAMES_HELDOUT: tuple[str, ...] = (
    "Victor", "Alex", "Susan", "Frank", "Linda", "George", "Nora", "Kevin", "Maria", "Steve",
    "Vera", "Luke", "Emily", "Roger", "Tina", "Simon",
)  # fmt: skip

PLACES_TRAIN: tuple[str, ...] = (
    "store", "park", "school", "station", "garden", "office", "beach", "market", "library",
    "restaurant", "hospital", "house", "church", "museum",
)  # fmt: skip
PLACES_HELDOUT: tuple[str, ...] = ("hotel", "cafe", "river", "bank", "theater")

OBJECTS_TRAIN: tuple[str, ...] = (
    "drink", "book", "ring", "bag", "letter", "kiss", "basketball", "computer", "necklace",
    "snack", "bone", "apple", "key", "flower", "ticket", "hat",
)  # fmt: skip
OBJECTS_HELDOUT: tuple[str, ...] = ("gift", "pen", "card", "watch", "coin")

# IOI templates after Wang et al. (2022), "Interpretability in the Wild". [A] is the indirect object,
# [B] the subject (written here in the BABA order; ABBA swaps the first two names). Prompts end right
# before the answer name.
IOI_TEMPLATES_TRAIN: tuple[str, ...] = (
    "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to",
    "When [B] and [A] went to the [PLACE], [B] gave the [OBJECT] to",
    "After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to",
    "While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to",
    "Then, [B] and [A] had a long argument, and afterwards [B] said to",
    "The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to",
    "Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to",
    "Then, [B] and [A] were thinking about going to the [PLACE]. [B] wanted to give a [OBJECT] to",
    "When [B] and [A] arrived at the [PLACE], [B] passed the [OBJECT] to",
    "Afterwards [B] and [A] went to the [PLACE]. [B] brought a [OBJECT] to",
    "Once [B] and [A] left the [PLACE], [B] handed the [OBJECT] to",
)  # fmt: skip
IOI_TEMPLATES_HELDOUT: tuple[str, ...] = (
    "Then, [B] and [A] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to",
    "When [B] and [A] met at the [PLACE], [B] showed the [OBJECT] to",
    "Later [B] and [A] walked to the [PLACE], and [B] sent a [OBJECT] to",
)  # fmt: skip
# Used only when fewer than MIN_IOI_TEMPLATES held-out templates share one token length for a tokenizer
# (GPT-2's BPE: 20, 15 and 16 tokens). Never in a toy model's training sentences, so still held out; the
# first from Wang et al.'s template list, the others written in the held-out templates' pattern.
IOI_TEMPLATES_HELDOUT_RESERVE: tuple[str, ...] = (
    "While [B] and [A] were commuting to the [PLACE], [B] gave a [OBJECT] to",
    "Later [B] and [A] drove to the [PLACE], and [B] lent a [OBJECT] to",
    "Yesterday [B] and [A] walked to the [PLACE], and [B] sold a [OBJECT] to",
    "When [B] and [A] sat in the [PLACE], [B] handed a [OBJECT] to",
    "While [B] and [A] waited at the [PLACE], [B] passed a [OBJECT] to",
)  # fmt: skip
MIN_IOI_TEMPLATES = 3
"""Fewest IOI templates of one token length a held-out split is drawn from before the reserve is used."""

# Greater-than nouns after Hanna et al. (2023), "How does GPT-2 compute greater-than?".
GT_NOUNS_TRAIN: tuple[str, ...] = (
    "war", "expedition", "project", "siege", "reign", "journey", "trial", "drought", "voyage",
    "campaign", "festival", "strike", "occupation", "crisis", "famine", "contract",
)  # fmt: skip
GT_NOUNS_HELDOUT: tuple[str, ...] = ("dynasty", "pilgrimage", "plague", "rebellion", "survey")
GT_TEMPLATE = "The [NOUN] lasted from the year [C][YY] to the year [C]"
GT_CENTURIES: tuple[str, ...] = ("11", "12", "13", "14", "15", "16", "17", "18", "19")


def all_names() -> tuple[str, ...]:
    return NAMES_TRAIN + NAMES_HELDOUT


def task_words() -> list[str]:
    """Words (with GPT-2-style leading space) that every built-in tokenizer must keep as single tokens."""
    words = [" " + w for w in all_names()]
    words += [" " + w for w in PLACES_TRAIN + PLACES_HELDOUT + OBJECTS_TRAIN + OBJECTS_HELDOUT]
    words += [" " + w for w in GT_NOUNS_TRAIN + GT_NOUNS_HELDOUT]
    words += [" " + c for c in GT_CENTURIES] + [f"{i:02d}" for i in range(100)]
    return words


def keeps_task_words(tokenizer) -> bool:
    """Whether ``tokenizer`` keeps every word of :func:`task_words` as one token, as the built-in models'
    tokenizers were trained to."""
    return all(len(tokenizer.encode(w, add_special_tokens=False)) == 1 for w in task_words())


def single_token_ids(
    tokenizer, words: Sequence[str], what: str, *, minimum: int = 1, strict: bool = False
) -> dict[str, int]:
    """Map each word this tokenizer keeps whole (words written with their leading space) to its token id.

    Words the tokenizer splits are dropped with a one-line notice on the ``circuitkit.tasks`` logger;
    ``strict`` (words the caller chose) raises instead, naming every one. Raises
    :class:`~circuitkit.tasks.base.TaskError` when fewer than ``minimum`` remain.
    """
    from circuitkit.tasks.base import TaskError

    ids: dict[str, int] = {}
    split: list[str] = []
    for w in words:
        toks = tokenizer.encode(w, add_special_tokens=False)
        if len(toks) == 1:
            ids[w] = toks[0]
        else:
            split.append(f"{w!r} -> {tokenizer.convert_ids_to_tokens(toks)}")
    if split and (strict or len(ids) < minimum):
        raise TaskError(
            f"{len(split)} {what} are not single tokens for this tokenizer, which the task needs for "
            "position-aligned prompts: "
            + "; ".join(split[:12])
            + ("; ..." if len(split) > 12 else "")
            + (
                f"; {len(ids)} remain, {minimum} needed"
                if len(ids) < minimum
                else ". Pass word lists that this tokenizer keeps whole (e.g. names=[...])."
            )
        )
    if split:
        log.warning(
            "%s: dropped %d of %d that this tokenizer splits: %s",
            what,
            len(split),
            len(words),
            "; ".join(split[:8]) + ("; ..." if len(split) > 8 else ""),
        )
    return ids
