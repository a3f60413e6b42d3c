"""Greater-than (Hanna et al. 2023, "How does GPT-2 compute greater-than?", arXiv 2305.00586).

Prompts like "The war lasted from the year 1732 to the year 17"; a model that has the behaviour puts its
next-token mass on two-digit years above 32. The corrupted prompt sets YY to 01 (so every year is
"greater"), changing exactly one token. Metric: P(year > YY) - P(year <= YY) at the last position.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from circuitkit.tasks import vocab
from circuitkit.tasks.base import TaskDataset, TaskError, encode_prompts
from circuitkit.tasks.registry import Task, register_task

YY_RANGE = range(2, 99)  # as in the paper: 01 is the corruption, 99 leaves nothing greater


def nouns(split: str) -> tuple[str, ...]:
    if split == "train":
        return vocab.GT_NOUNS_TRAIN
    if split == "heldout":
        return vocab.GT_NOUNS_HELDOUT
    raise TaskError(f"unknown greater-than split {split!r}; choose 'train' or 'heldout'")


def fill(noun: str, century: str, yy: int) -> str:
    return (
        vocab.GT_TEMPLATE.replace("[NOUN]", noun)
        .replace("[C]", century, 1)
        .replace("[YY]", f"{yy:02d}")
        .replace("[C]", century)
    )


def sample_sentence(rng: random.Random, split: str = "train") -> str:
    """One complete greater-than sentence for the training corpus: the end year is later."""
    yy = rng.choice(YY_RANGE)
    end = rng.randint(yy + 1, 99)
    return fill(rng.choice(nouns(split)), rng.choice(vocab.GT_CENTURIES), yy) + f"{end:02d}."


def _aligned_years(tokenizer, century: str, century_id: int, year_ids: list[int]) -> list[int]:
    """The YY of :data:`YY_RANGE` whose year " CYY" reads as the century token then the YY token; others
    (GPT-2 has " 1800", " 1930" as one token) are dropped with a notice. The corruption's 01 must read so."""

    def reads_split(yy: int) -> bool:
        return tokenizer.encode(f" {century}{yy:02d}", add_special_tokens=False) == [century_id, year_ids[yy]]

    if not reads_split(1):
        got = tokenizer.convert_ids_to_tokens(tokenizer.encode(f" {century}01", add_special_tokens=False))
        raise TaskError(
            f"this tokenizer does not read the corrupted year ' {century}01' as ' {century}' + '01' "
            f"({got}); choose another century (century='17')"
        )
    years = [yy for yy in YY_RANGE if reads_split(yy)]
    if len(years) < len(YY_RANGE):
        vocab.log.warning(
            "greater-than years: dropped %d of %d that this tokenizer does not read as ' %s' + YY: %s",
            len(YY_RANGE) - len(years),
            len(YY_RANGE),
            century,
            ", ".join(f"{century}{yy:02d}" for yy in YY_RANGE if yy not in years),
        )
    if not years:
        raise TaskError(f"no year {century}02-{century}98 reads as ' {century}' + 'YY' with this tokenizer")
    return years


def make_greater_than(
    tokenizer,
    n_prompts: int = 64,
    *,
    seed: int = 0,
    split: str = "heldout",
    nouns_: Sequence[str] | None = None,
    century: str = "17",
    prepend_bos: bool = True,
) -> TaskDataset:
    """Draw ``n_prompts`` distinct greater-than prompts with their YY -> 01 corruptions.

    ``split="heldout"`` uses nouns never in the toy models' greater-than training sentences. Nouns of the
    split that the tokenizer splits, and years it reads as one token (GPT-2: " 1800"), are dropped with a
    one-line notice on the ``circuitkit.tasks`` logger; nouns passed as ``nouns_`` must be single tokens.
    """
    if n_prompts < 1:
        raise TaskError(f"n_prompts must be at least 1, got {n_prompts}")
    ns = tuple(
        n[1:]
        for n in vocab.single_token_ids(
            tokenizer,
            [" " + n for n in nouns_ or nouns(split)],
            "greater-than nouns",
            strict=nouns_ is not None,
        )
    )
    century_id = vocab.single_token_ids(tokenizer, [" " + century], "century tokens", strict=True)[
        " " + century
    ]
    # the metric sums probabilities over all 100 two-digit years, so none may be dropped
    year_map = vocab.single_token_ids(
        tokenizer, [f"{i:02d}" for i in range(100)], "two-digit years", strict=True
    )
    year_ids = [year_map[f"{i:02d}"] for i in range(100)]
    years = _aligned_years(tokenizer, century, century_id, year_ids)
    n_possible = len(ns) * len(years)
    if n_prompts > n_possible:
        raise TaskError(
            f"asked for {n_prompts} distinct greater-than prompts but only {n_possible} exist for "
            f"{len(ns)} nouns x {len(years)} years: ask for fewer or pass more nouns"
        )
    rng = random.Random(seed)
    pairs = rng.sample([(n, yy) for n in ns for yy in years], n_prompts)
    prompts = [fill(n, century, yy) for n, yy in pairs]
    corrupted = [fill(n, century, 1) for n, _ in pairs]
    clean_ids = encode_prompts(tokenizer, prompts, prepend_bos=prepend_bos)
    corr_ids = encode_prompts(tokenizer, corrupted, prepend_bos=prepend_bos)
    if len({len(x) for x in clean_ids + corr_ids}) != 1:
        raise TaskError(
            "greater-than prompts tokenise to different lengths; this tokenizer splits the years as "
            f"{tokenizer.convert_ids_to_tokens(clean_ids[0])} - it must give ' {century}' and 'YY' tokens"
        )
    yy_positions = [
        next(i for i, (a, b) in enumerate(zip(c, k, strict=True)) if a != b)
        for c, k in zip(clean_ids, corr_ids, strict=True)
    ]
    seq_len = len(clean_ids[0])
    return TaskDataset(
        task="greater_than",
        prompts=prompts,
        corrupted_prompts=corrupted,
        clean_tokens=torch.tensor(clean_ids),
        corrupted_tokens=torch.tensor(corr_ids),
        answer_ids=torch.tensor([year_ids[min(yy + 1, 99)] for _, yy in pairs]),
        wrong_ids=torch.tensor([year_ids[yy] for _, yy in pairs]),
        positions={"YY": torch.tensor(yy_positions), "end": torch.full((n_prompts,), seq_len - 1)},
        metric_name="prob_diff",
        seed=seed,
        split=split,
        extras={"yy": torch.tensor([yy for _, yy in pairs]), "year_ids": torch.tensor(year_ids)},
        info={
            "century": century,
            "nouns": list(ns),
            "years_dropped": [yy for yy in YY_RANGE if yy not in years],
            "corruption": "YY -> 01",
        },
    )


def _metric(data: TaskDataset, logits: torch.Tensor) -> torch.Tensor:
    from circuitkit.tasks.metrics import year_prob_diff

    return year_prob_diff(logits, data.extras["year_ids"], data.extras["yy"])


def _published(model_name: str):
    from circuitkit.tasks.ground_truth import GPT2_SMALL

    return GPT2_SMALL["greater_than"] if model_name in ("gpt2", "gpt2-small") else None


TASK = register_task(
    Task(
        name="greater_than",
        description="greater-than over years (Hanna et al. 2023)",
        make=make_greater_than,
        metric=_metric,
        metric_name="prob_diff",
        positions=("YY", "end"),
        corruption="YY -> 01 (one token changes)",
        splits=("train", "heldout"),
        sample_sentence=sample_sentence,
        role_positions={"attends to YY": ("end", "YY")},
        published_circuits=_published,
    )
)
