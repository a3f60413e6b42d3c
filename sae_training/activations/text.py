"""Token contexts from text: local files or folders, Hugging Face ``datasets`` folders, the built-in
corpus, or the task generators.

Every source is a deterministic, endless stream (it cycles), so a data position is just "how many
contexts were consumed" and a resumed run replays to the same place. Paragraphs are split into a train
and an eval part (every 20th paragraph is eval), so evaluation reads text the dictionary never saw.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import torch
from jaxtyping import Int
from torch import Tensor

EVAL_EVERY = 20
TEXT_SUFFIXES = (".txt", ".rst", ".md")


class TextSourceError(ValueError):
    """A text source that cannot be read, with what to do instead."""


def _paragraphs_from_path(path: Path) -> list[str]:
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(TEXT_SUFFIXES))
    )
    out = []
    for f in files:
        for block in f.read_text(encoding="utf-8", errors="ignore").split("\n\n"):
            block = " ".join(block.split())
            if len(block) >= 20:
                out.append(block)
    if not out:
        raise TextSourceError(
            f"{path} holds no text in {TEXT_SUFFIXES} files (paragraphs of >= 20 characters)"
        )
    return out


def _paragraphs_from_hf(path: Path, column: str) -> list[str] | list[list[int]]:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a dependency of sae-lens
        raise TextSourceError("reading a Hugging Face datasets folder needs `pip install datasets`") from exc
    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"] if "train" in ds else next(iter(ds.values()))
    if column not in ds.column_names:
        raise TextSourceError(
            f"{path} has no column {column!r} (columns: {ds.column_names}); set text_column"
        )
    values = ds[column]
    first = next((v for v in values if v is not None), None)
    if isinstance(first, list) and (not first or isinstance(first[0], int)):
        # A pre-tokenized dataset (as sae-lens's is_dataset_tokenized): rows of token ids.
        return [list(v) for v in values if v]
    if not isinstance(first, str):
        raise TextSourceError(
            f"column {column!r} of {path} holds {type(first).__name__}, not text or token ids; "
            "set text_column"
        )
    return [t for t in values if isinstance(t, str) and t.strip()]


def _generated(kinds: list[str], rng: random.Random) -> Iterator[str]:
    from circuitkit.models import corpus
    from circuitkit.tasks.registry import all_tasks

    valid = {n for n, t in all_tasks().items() if t.sample_sentence is not None} | {"filler"}
    bad = set(kinds) - valid
    if bad:
        raise TextSourceError(f"unknown task generator(s) {sorted(bad)}; use some of {sorted(valid)}")
    return corpus.task_sentences(rng, {k: 1.0 for k in kinds})


def text_stream(source: str, split: str, seed: int, column: str = "text") -> Iterator[str | list[int]]:
    """An endless stream of texts (or, from a pre-tokenized datasets folder, token-id rows) from ``source``
    (see ``DataConfig.text``) for ``split`` ('train'/'eval')."""
    rng = random.Random(f"{seed}-{split}")
    if source.startswith("tasks:"):
        yield from _generated(source.removeprefix("tasks:").split(","), rng)
        return
    if source == "builtin":
        from circuitkit.models import corpus

        paragraphs, _ = corpus.load_text(max_chars=2_000_000)
        tasks = _generated(["ioi", "greater_than", "filler"], rng)
    elif source.startswith("hf:"):
        paragraphs, tasks = _paragraphs_from_hf(Path(source[3:]), column), None
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise TextSourceError(
                f"text source {source!r} is neither 'builtin', 'tasks:...', 'hf:<dir>' nor an "
                "existing file or folder"
            )
        paragraphs, tasks = _paragraphs_from_path(path), None
    keep = (lambda i: i % EVAL_EVERY == 0) if split == "eval" else (lambda i: i % EVAL_EVERY != 0)
    chosen = [p for i, p in enumerate(paragraphs) if keep(i)]
    if not chosen:
        chosen = paragraphs  # a tiny source: evaluate on what there is
    epoch = 0
    while True:
        order = list(range(len(chosen)))
        random.Random(f"{seed}-{split}-{epoch}").shuffle(order)
        for i in order:
            yield chosen[i]
            if tasks is not None:
                # The built-in mix: one generated task/filler sentence per paragraph, as the zoo trained on.
                yield next(tasks)
        epoch += 1


def token_contexts(
    tokenizer, source: str, context_size: int, split: str = "train", seed: int = 0, column: str = "text"
) -> Iterator[Int[Tensor, " context_size"]]:
    """Endless [BOS] + (context_size - 1) tokens, packed from the concatenated texts (EOS between texts).

    Token-id rows of a pre-tokenized dataset that already are such a context (``context_size`` long,
    BOS first, as sae-lens's tokenized datasets are) are used as they are; other rows are packed like text.
    """
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else bos
    if bos is None:
        raise TextSourceError("the tokenizer has neither a BOS nor an EOS token to start contexts with")
    body = context_size - 1
    pending: list[int] = []
    stream = text_stream(source, split, seed, column)
    while True:
        # Texts are encoded 256 at a time: one batched call to a fast tokenizer instead of one call per
        # text (per-call overhead was ~2 s per 400k training tokens); the ids are the same.
        texts = list(islice(stream, 256))
        if not texts:
            return
        strings = [t for t in texts if isinstance(t, str)]
        encoded = iter(tokenizer(strings, add_special_tokens=False)["input_ids"] if strings else ())
        for text in texts:
            if not isinstance(text, str) and len(text) == context_size and text[0] == bos:
                yield torch.tensor(text, dtype=torch.long)
                continue
            ids = next(encoded) if isinstance(text, str) else text
            pending.extend(ids)
            pending.append(eos)
            while len(pending) >= body:
                yield torch.tensor([bos, *pending[:body]], dtype=torch.long)
                pending = pending[body:]


def context_batches(
    tokenizer,
    source: str,
    context_size: int,
    batch: int,
    split: str = "train",
    seed: int = 0,
    column: str = "text",
    skip_contexts: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[Int[Tensor, "batch context_size"]]:
    """Batches of contexts, starting after ``skip_contexts`` (a resumed run's data position, counted in
    this shard). With ``world_size`` > 1 the stream is sharded: process ``rank`` reads contexts
    rank, rank + world_size, ... of the one stream every process builds from the same seed, so no two
    processes read the same context and together they read what one process would."""
    stream = token_contexts(tokenizer, source, context_size, split, seed, column)
    if world_size > 1:
        stream = islice(stream, rank, None, world_size)
    if skip_contexts:
        next(islice(stream, skip_contexts - 1, skip_contexts), None)
    while True:
        yield torch.stack(list(islice(stream, batch)))
