"""Indirect object identification (Wang et al. 2022, "Interpretability in the Wild", arXiv 2211.00593).

Prompts like "When Mary and John went to the store, John gave a drink to" -> " Mary". Both name orders
(ABBA and BABA) are drawn in equal numbers. The corrupted prompt is the ABC version: the repeated subject
S2 is replaced by a third name, so exactly one token changes and no name repeats.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from circuitkit.tasks import vocab
from circuitkit.tasks.base import TaskDataset, TaskError, encode_prompts
from circuitkit.tasks.registry import Task, register_task

SPLITS = ("train", "heldout", "heldout_names")


def word_lists(split: str) -> dict[str, tuple[str, ...]]:
    """Names, places, objects and templates of a split.

    ``train``: what the toy models' IOI training sentences use. ``heldout``: templates, places and
    objects never in an IOI training sentence (names from the training list). ``heldout_names``: the
    held-out templates with names that never appear in an IOI training sentence either (they do appear
    in the corpus' filler and copy sentences) - the hardest generalisation test.
    """
    if split == "train":
        return dict(
            names=vocab.NAMES_TRAIN,
            places=vocab.PLACES_TRAIN,
            objects=vocab.OBJECTS_TRAIN,
            templates=vocab.IOI_TEMPLATES_TRAIN,
        )
    if split in ("heldout", "heldout_names"):
        return dict(
            names=vocab.NAMES_HELDOUT if split == "heldout_names" else vocab.NAMES_TRAIN,
            places=vocab.PLACES_HELDOUT,
            objects=vocab.OBJECTS_HELDOUT,
            templates=vocab.IOI_TEMPLATES_HELDOUT,
        )
    raise TaskError(f"unknown IOI split {split!r}; choose one of {SPLITS}")


def fill(template: str, a: str, b: str, place: str, obj: str, order: str) -> str:
    """Fill a BABA-written template; ``order="ABBA"`` swaps the first two names."""
    if order == "ABBA":
        # swap only the first mention of each name: "[B] and [A]" -> "[A] and [B]"
        template = template.replace("[B]", "[X]", 1).replace("[A]", "[B]", 1).replace("[X]", "[A]", 1)
    return template.replace("[A]", a).replace("[B]", b).replace("[PLACE]", place).replace("[OBJECT]", obj)


def sample_sentence(rng: random.Random, split: str = "train") -> str:
    """One complete IOI sentence for the training corpus, answer and full stop included."""
    w = word_lists(split)
    a, b = rng.sample(w["names"], 2)
    t = rng.choice(w["templates"])
    order = rng.choice(("ABBA", "BABA"))
    return fill(t, a, b, rng.choice(w["places"]), rng.choice(w["objects"]), order) + f" {a}."


def _template_lengths(tokenizer, candidates: Sequence[str], names, place: str, obj: str) -> dict[str, int]:
    # names, places and objects are single tokens, so one filling gives every prompt's length
    return {
        t: len(encode_prompts(tokenizer, [fill(t, names[0], names[1], place, obj, "BABA")])[0])
        for t in candidates
    }


def _largest_group(lengths: dict[str, int], prefer: Sequence[str] = ()) -> list[str]:
    """The templates of the commonest token length (ties: more of ``prefer``, then the shorter length)."""
    groups: dict[int, list[str]] = {}
    for t, n in lengths.items():
        groups.setdefault(n, []).append(t)
    best = max(groups, key=lambda n: (len(groups[n]), sum(t in prefer for t in groups[n]), -n))
    return groups[best]


def _choose_templates(
    tokenizer, split: str, templates: Sequence[str] | None, names, place: str, obj: str
) -> tuple[list[str], list[str]]:
    """The templates to draw from, all of one token length, and which of them came from the reserve.

    Given ``templates`` must already have one length. Otherwise the split's templates of the commonest
    length; a held-out split with fewer than :data:`vocab.MIN_IOI_TEMPLATES` of one length adds
    :data:`vocab.IOI_TEMPLATES_HELDOUT_RESERVE` and takes the commonest length of the union - for
    tokenizers the word lists were not built for (any that splits a task word, e.g. GPT-2's BPE).
    """
    if templates is not None:
        lengths = _template_lengths(tokenizer, tuple(templates), names, place, obj)
        if len(set(lengths.values())) > 1:
            raise TaskError(
                "the given IOI templates tokenise to different lengths "
                f"{sorted(set(lengths.values()))}; prompts must align by position: pass templates of one "
                "length"
            )
        return list(templates), []
    own = word_lists(split)["templates"]
    used = _largest_group(_template_lengths(tokenizer, own, names, place, obj))
    if len(used) >= vocab.MIN_IOI_TEMPLATES or split == "train" or vocab.keeps_task_words(tokenizer):
        # Tokenizers built for these word lists (the built-in models') draw from the held-out templates
        # alone, as their card scores were measured: on ck-tiny and ck-6l that is one template.
        return used, []
    n_own = len(used)
    pool = own + vocab.IOI_TEMPLATES_HELDOUT_RESERVE
    used = _largest_group(_template_lengths(tokenizer, pool, names, place, obj), prefer=own)
    reserve = [t for t in used if t not in own]
    vocab.log.warning(
        "IOI %s templates: at most %d of the %d share one token length with this tokenizer (%d needed); "
        "drawing from %d of one length, %d of them from the held-out reserve",
        split,
        n_own,
        len(own),
        vocab.MIN_IOI_TEMPLATES,
        len(used),
        len(reserve),
    )
    return used, reserve


def make_ioi(
    tokenizer,
    n_prompts: int = 64,
    *,
    seed: int = 0,
    split: str = "heldout",
    names: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    places: Sequence[str] | None = None,
    objects: Sequence[str] | None = None,
    prepend_bos: bool = True,
) -> TaskDataset:
    """Draw ``n_prompts`` distinct IOI prompts and their ABC corruptions, tokenised and aligned.

    Args:
        tokenizer: a Hugging Face tokenizer (``model.tokenizer``).
        n_prompts: number of distinct prompts (even numbers give an exact ABBA/BABA balance).
        seed: seeds the draw; the same seed gives the same dataset.
        split: ``"heldout"`` (templates, places, objects never in the toy models' IOI training
            sentences), ``"heldout_names"`` (names too) or ``"train"``. Word-list arguments override the
            split's lists.
        prepend_bos: put the BOS token first, as ``HookedTransformer.to_tokens`` does by default.

    Words of the split's lists that the tokenizer splits into several tokens are dropped, with a one-line
    notice on the ``circuitkit.tasks`` logger (GPT-2: " Ella", " Olga"); word lists passed as arguments
    must be single tokens. Templates are grouped by token length and the largest group of equal length is
    used, so every prompt lines up position by position; held-out splits top up from
    ``vocab.IOI_TEMPLATES_HELDOUT_RESERVE`` when fewer than 3 held-out templates share a length
    (``info["reserve_templates"]`` lists them). Pass ``templates`` to choose them yourself.
    """
    if n_prompts < 1:
        raise TaskError(f"n_prompts must be at least 1, got {n_prompts}")
    w = word_lists(split)
    # Words of the split's lists that this tokenizer splits are dropped (with a notice); words the caller
    # passed are used as given or refused by name.
    name_ids = vocab.single_token_ids(
        tokenizer, [" " + n for n in dict.fromkeys(names or w["names"])], "IOI names", minimum=3,
        strict=names is not None,
    )  # fmt: skip
    names = tuple(n[1:] for n in name_ids)
    if len(names) < 3:
        raise TaskError("IOI needs at least 3 distinct names (A, B and the corrupting C)")
    places = tuple(
        p[1:]
        for p in vocab.single_token_ids(
            tokenizer, [" " + p for p in places or w["places"]], "IOI places", strict=places is not None
        )
    )
    objects = tuple(
        o[1:]
        for o in vocab.single_token_ids(
            tokenizer, [" " + o for o in objects or w["objects"]], "IOI objects", strict=objects is not None
        )
    )
    used, reserve_used = _choose_templates(tokenizer, split, templates, names, places[0], objects[0])

    # 2 orders x templates x ordered (A, B) x C x place x object
    n_possible = 2 * len(used) * len(names) * (len(names) - 1) * (len(names) - 2) * len(places) * len(objects)
    if n_prompts > n_possible:
        raise TaskError(
            f"asked for {n_prompts} distinct IOI prompts but only {n_possible} can be made from "
            f"{len(used)} templates and {len(names)} names: ask for fewer or pass more names/templates"
        )

    rng = random.Random(seed)
    seen: set[tuple] = set()
    rows = []
    while len(rows) < n_prompts:
        order = "ABBA" if len(rows) % 2 == 0 else "BABA"
        a, b, c = rng.sample(names, 3)
        key = (order, rng.choice(used), a, b, c, rng.choice(places), rng.choice(objects))
        if key in seen:
            continue
        seen.add(key)
        rows.append(key)

    prompts, corrupted, answers, wrongs = [], [], [], []
    pos = {k: [] for k in ("IO", "S1", "S1+1", "S2", "end")}
    for order, t, a, b, c, place, obj in rows:
        clean = fill(t, a, b, place, obj, order)
        ids = encode_prompts(tokenizer, [clean], prepend_bos=prepend_bos)[0]
        a_id, b_id = name_ids[" " + a], name_ids[" " + b]
        b_pos = [i for i, x in enumerate(ids) if x == b_id]
        a_pos = [i for i, x in enumerate(ids) if x == a_id]
        if len(b_pos) != 2 or len(a_pos) != 1:
            raise TaskError(f"template {t!r} does not place the names as IOI needs (one IO, two S)")
        corr_ids = list(ids)
        corr_ids[b_pos[1]] = name_ids[" " + c]
        prompts.append(clean)
        corrupted.append(tokenizer.decode(corr_ids[1:] if prepend_bos else corr_ids))
        answers.append(a_id)
        wrongs.append(b_id)
        pos["IO"].append(a_pos[0])
        pos["S1"].append(b_pos[0])
        pos["S1+1"].append(b_pos[0] + 1)
        pos["S2"].append(b_pos[1])
        pos["end"].append(len(ids) - 1)
    clean_tokens = torch.tensor(encode_prompts(tokenizer, prompts, prepend_bos=prepend_bos))
    corrupted_tokens = clean_tokens.clone()
    s2 = torch.tensor(pos["S2"])
    c_ids = torch.tensor([name_ids[" " + r[4]] for r in rows])
    corrupted_tokens[torch.arange(len(rows)), s2] = c_ids
    return TaskDataset(
        task="ioi",
        prompts=prompts,
        corrupted_prompts=corrupted,
        clean_tokens=clean_tokens,
        corrupted_tokens=corrupted_tokens,
        answer_ids=torch.tensor(answers),
        wrong_ids=torch.tensor(wrongs),
        positions={k: torch.tensor(v) for k, v in pos.items()},
        metric_name="logit_diff",
        seed=seed,
        split=split,
        info={
            "templates": used,
            "reserve_templates": reserve_used,
            "n_names": len(names),
            "corruption": "ABC (S2 -> third name)",
        },
    )


def _metric(data: TaskDataset, logits: torch.Tensor) -> torch.Tensor:
    from circuitkit.tasks.metrics import logit_diff

    return logit_diff(logits, data.answer_ids, data.wrong_ids)


def _published(model_name: str):
    from circuitkit.tasks.ground_truth import GPT2_SMALL

    return GPT2_SMALL["ioi"] if model_name in ("gpt2", "gpt2-small") else None


TASK = register_task(
    Task(
        name="ioi",
        description="indirect object identification (Wang et al. 2022)",
        make=make_ioi,
        metric=_metric,
        metric_name="logit_diff",
        positions=("IO", "S1", "S1+1", "S2", "end"),
        corruption="ABC: S2 replaced by a third name (one token changes)",
        splits=SPLITS,
        sample_sentence=sample_sentence,
        role_positions={
            # role: (query position, key position) whose mean attention identifies it (Wang et al. 2022)
            "name mover": ("end", "IO"),
            "s-inhibition": ("end", "S2"),
            "induction": ("S2", "S1+1"),
            "duplicate token": ("S2", "S1"),
            "previous token": ("S1+1", "S1"),
        },
        published_circuits=_published,
    )
)
