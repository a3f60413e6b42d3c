"""The toy models' training corpus: natural text mixed with generated task and filler sentences.

Natural text comes from any folder of text files (by default the reStructuredText sources of the Python
documentation, Debian's ``python3.11-doc``). Task sentences come from the task generators' *train*
split, so evaluations on the held-out split measure generalisation.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from circuitkit.tasks import vocab

DEFAULT_TEXT_DIRS = (
    "/usr/share/doc/python3.11/html/_sources",
    "/usr/share/doc/python3-doc/html/_sources",
)
TEXT_SUFFIXES = (".txt", ".rst", ".md")

_MARKUP = re.compile(r"[:`*_|\\]+|\.\. [\w-]+::.*|<[^>]*>")
_WORDY = re.compile(r"[A-Za-z]")


class CorpusError(RuntimeError):
    """The natural-text part of the corpus cannot be found or is empty."""


def find_text_dir(text_dir: str | None = None) -> Path:
    """The folder of natural text to use, or an error saying how to get one."""
    candidates = [text_dir] if text_dir else list(DEFAULT_TEXT_DIRS)
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    raise CorpusError(
        f"no natural-text folder found (tried {', '.join(map(str, candidates))}). Install Debian's "
        "python3.11-doc (`apt-get install python3.11-doc`) or pass --text-dir with any folder of "
        ".txt/.rst/.md files."
    )


def clean_paragraphs(raw: str) -> list[str]:
    """Paragraphs of prose: markup stripped, code blocks, tables and directive lines dropped."""
    out = []
    for block in re.split(r"\n\s*\n", raw):
        lines = block.splitlines()
        if not lines or lines[0].startswith((" ", "\t", "..", ">>>", "=", "-", "+", "*")):
            continue
        text = " ".join(s.strip() for s in lines)
        text = _MARKUP.sub("", text)
        text = re.sub(r"\s+", " ", text).strip()
        letters = len(_WORDY.findall(text))
        if len(text) >= 40 and letters / len(text) > 0.7:
            out.append(text)
    return out


def load_text(text_dir: str | None = None, max_chars: int | None = None) -> tuple[list[str], dict]:
    """Read and clean every text file under the folder, in sorted (reproducible) order."""
    root = find_text_dir(text_dir)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(TEXT_SUFFIXES))
    paragraphs: list[str] = []
    n_chars = 0
    for f in files:
        for p in clean_paragraphs(f.read_text(encoding="utf-8", errors="ignore")):
            paragraphs.append(p)
            n_chars += len(p)
        if max_chars and n_chars >= max_chars:
            break
    if not paragraphs:
        raise CorpusError(f"{root} holds no usable prose in {TEXT_SUFFIXES} files")
    return paragraphs, {
        "text_dir": str(root),
        "n_files": len(files),
        "n_paragraphs": len(paragraphs),
        "n_chars": n_chars,
    }


FILLERS = (
    "[N] went to the [P].",
    "[N] likes the [O].",
    "[N] and [M] are friends.",
    "Yesterday [N] saw [M] at the [P].",
    "[N] said that the [O] was new.",
    "This is the [O] of [N].",
    "In [C][Y] the [G] began.",
    "The [G] ended in [C][Y].",
    # Copy sentences: one name, said twice. They teach every name (held-out ones too) to be copied from
    # context to the output, without the two-name structure of IOI.
    "The winner was [N], and everyone cheered for [N].",
    "[N] said hello, and we all waved to [N].",
    "Nobody knew [N] yet, so the [O] went back to [N].",
    "A letter came for [N], so I gave it to [N].",
)


def filler_sentence(rng: random.Random) -> str:
    """Plain sentences that use every name (held-out ones too), place, object, noun and year, so all
    their embeddings are learned, without the IOI or greater-than structure."""
    names = vocab.all_names()
    n, m = rng.sample(names, 2)
    t = rng.choice(FILLERS)
    return (
        t.replace("[N]", n)
        .replace("[M]", m)
        .replace("[P]", rng.choice(vocab.PLACES_TRAIN + vocab.PLACES_HELDOUT))
        .replace("[O]", rng.choice(vocab.OBJECTS_TRAIN + vocab.OBJECTS_HELDOUT))
        .replace("[G]", rng.choice(vocab.GT_NOUNS_TRAIN + vocab.GT_NOUNS_HELDOUT))
        .replace("[C]", " " + rng.choice(vocab.GT_CENTURIES))
        .replace("[Y]", f"{rng.randint(0, 99):02d}")
        .replace("  ", " ")
        .replace("In  ", "In ")
    )


def task_sentences(rng: random.Random, mix: dict[str, float]) -> Iterator[str]:
    """An endless stream of generated sentences in the given mix: ``filler`` or any registered task that
    declares a ``sample_sentence`` (the task registry, :mod:`circuitkit.tasks.registry`)."""
    from circuitkit.tasks.registry import get_task

    kinds = list(mix)
    weights = [mix[k] for k in kinds]
    makers: dict[str, Callable[[], str]] = {"filler": lambda: filler_sentence(rng)}
    for kind in kinds:
        if kind == "filler":
            continue
        sample = get_task(kind).sample_sentence
        if sample is None:
            raise ValueError(f"task {kind!r} declares no sample_sentence, so it cannot be in a corpus mix")
        makers[kind] = functools.partial(sample, rng, "train")
    while True:
        yield makers[rng.choices(kinds, weights)[0]]()
