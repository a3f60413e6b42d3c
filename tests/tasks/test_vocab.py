"""Task vocabularies on real tokenizers: GPT-2's BPE runs every split of both tasks (words it splits are
dropped with a notice, held-out IOI templates topped up to at least 3), and the built-in models' prompts
stay exactly the ones their cards were scored on."""

from __future__ import annotations

import hashlib
import logging

import pytest
import torch

from circuitkit.models.tokenizer import load_tokenizer
from circuitkit.models.zoo import builtin_dir
from circuitkit.tasks import TaskError, make_greater_than, make_ioi, make_task, vocab

# sha256 (first 16 hex) of prompts, tokens, answers and positions, computed with the code before task
# vocabularies were made tokenizer-aware: the card scores (seed 1234) and the notebooks' prompts (seed 0)
# must not move.
GOLDEN = {
    "ck-tiny/ioi/train/64/0": "f5a0234df09a8d2c",
    "ck-tiny/ioi/heldout/64/0": "7519fd1bebd34078",
    "ck-tiny/ioi/heldout_names/64/0": "9973732eff2c6716",
    "ck-tiny/ioi/heldout/256/1234": "8d84e73d78659f75",
    "ck-tiny/ioi/heldout_names/256/1234": "d23acbd2293fff1c",
    "ck-tiny/greater_than/train/64/0": "cd184b8c21714cb0",
    "ck-tiny/greater_than/heldout/96/1234": "9962ad9dbb02ad8f",
    "ck-6l/ioi/train/64/0": "718317f4595177ec",
    "ck-6l/ioi/heldout/64/0": "9437ae848923eaff",
    "ck-6l/ioi/heldout_names/64/0": "5623080b4cd08fab",
    "ck-6l/ioi/heldout/256/1234": "d2c425ed10c7c993",
    "ck-6l/ioi/heldout_names/256/1234": "aaa75ec2d48fdc66",
    "ck-6l/greater_than/train/64/0": "895c1ab1ff3ebf25",
    "ck-6l/greater_than/heldout/96/1234": "4a38f054a8f4e718",
}
IOI_SPLITS = ("train", "heldout", "heldout_names")
GT_SPLITS = ("train", "heldout")


def _digest(d) -> str:
    h = hashlib.sha256()
    h.update("\n".join(d.prompts + d.corrupted_prompts).encode())
    for t in (d.clean_tokens, d.corrupted_tokens, d.answer_ids, d.wrong_ids, *d.positions.values()):
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("model", ["ck-tiny", "ck-6l"])
def test_builtin_prompts_unchanged(model, caplog):
    tok = load_tokenizer(builtin_dir(model) / "tokenizer")
    assert vocab.keeps_task_words(tok)
    with caplog.at_level(logging.WARNING, logger="circuitkit.tasks"):
        for key, expected in GOLDEN.items():
            name, task, split, n, seed = key.split("/")
            if name == model:
                d = make_task(task, tok, int(n), seed=int(seed), split=split)
                assert _digest(d) == expected, key
                assert d.info.get("reserve_templates", []) == []
    assert caplog.records == []  # nothing dropped, nothing topped up: no notice


def _check_aligned(d, tok) -> None:
    """Position-aligned pairs, one changed token, answers where the positions say."""
    diff = d.clean_tokens != d.corrupted_tokens
    assert (diff.sum(1) == 1).all()
    assert (d.clean_tokens[:, 0] == tok.bos_token_id).all()
    assert (d.positions["end"] == d.clean_tokens.shape[1] - 1).all()
    # the prompts re-tokenise to exactly these tokens (BOS first): alignment is not an artefact
    for prompt, row in zip(d.prompts, d.clean_tokens, strict=True):
        assert tok.encode(prompt) == row[1:].tolist()


@pytest.mark.parametrize("split", IOI_SPLITS)
def test_ioi_every_split_on_gpt2(gpt2_tokenizer, split, caplog):
    tok = gpt2_tokenizer
    with caplog.at_level(logging.WARNING, logger="circuitkit.tasks"):
        d = make_task("ioi", tok, 16, seed=0, split=split)
    _check_aligned(d, tok)
    idx = torch.arange(len(d))
    assert (d.clean_tokens[idx, d.positions["IO"]] == d.answer_ids).all()
    assert (d.clean_tokens[idx, d.positions["S2"]] == d.wrong_ids).all()
    assert (diff := d.clean_tokens != d.corrupted_tokens).float().argmax(1).eq(d.positions["S2"]).all(), diff
    text = "\n".join(r.getMessage() for r in caplog.records)
    if split != "heldout_names":  # the training names hold the two GPT-2 splits
        assert "Ella" in text and "Olga" in text and "dropped 2 of" in text
        assert all("\n" not in r.getMessage() for r in caplog.records)  # one line each
        assert not any(" Ella" in p or " Olga" in p for p in d.prompts)
    if split == "train":
        assert len(d.info["templates"]) >= 3 and d.info["reserve_templates"] == []
    else:
        templates = d.info["templates"]
        assert len(templates) >= vocab.MIN_IOI_TEMPLATES
        assert not set(templates) & set(vocab.IOI_TEMPLATES_TRAIN)  # still held out
        assert set(d.info["reserve_templates"]) <= set(vocab.IOI_TEMPLATES_HELDOUT_RESERVE)
        assert "held-out reserve" in text
        # the draw uses more than one template
        assert len({p.split(",")[0].split()[0] for p in d.prompts}) >= 2


@pytest.mark.parametrize("split", GT_SPLITS)
def test_greater_than_every_split_on_gpt2(gpt2_tokenizer, split):
    tok = gpt2_tokenizer
    d = make_task("greater_than", tok, 48, seed=0, split=split)
    _check_aligned(d, tok)
    idx = torch.arange(len(d))
    year_ids = d.extras["year_ids"]
    assert (d.clean_tokens[idx, d.positions["YY"]] == year_ids[d.extras["yy"]]).all()
    assert (d.corrupted_tokens[idx, d.positions["YY"]] == year_ids[1]).all()
    assert d.info["years_dropped"] == []  # the 1700s read as " 17" + "YY" throughout in GPT-2


def test_greater_than_drops_years_gpt2_reads_whole(gpt2_tokenizer, caplog):
    tok = gpt2_tokenizer
    with caplog.at_level(logging.WARNING, logger="circuitkit.tasks"):
        d = make_greater_than(tok, 200, century="18")
    assert 30 in d.info["years_dropped"] and 50 in d.info["years_dropped"]  # " 1830", " 1850" are tokens
    assert not set(d.extras["yy"].tolist()) & set(d.info["years_dropped"])
    assert "1850" in caplog.text
    with pytest.raises(TaskError, match=r"' 1901'.*century"):  # the corruption itself is one token
        make_greater_than(tok, 10, century="19")


def test_too_few_remain_is_an_error(gpt2_tokenizer):
    tok = gpt2_tokenizer
    with pytest.raises(TaskError, match=r"not single tokens.*Xylophonistica"):
        make_ioi(tok, 10, names=["Mary", "John", "Xylophonistica"])  # words the caller chose: strict

    class SplitsMostNames:
        """GPT-2's tokenizer, except that every name but two is cut in two."""

        bos_token_id = tok.bos_token_id

        def encode(self, text, add_special_tokens=False):
            ids = tok.encode(text, add_special_tokens=add_special_tokens)
            name = text.strip()
            if name in vocab.all_names() and name not in ("Mary", "John"):
                return ids + ids
            return ids

        def __getattr__(self, attr):
            return getattr(tok, attr)

    with pytest.raises(TaskError, match=r"2 remain, 3 needed"):
        make_ioi(SplitsMostNames(), 8)


def test_single_token_ids_keeps_order_and_ids(gpt2_tokenizer):
    tok = gpt2_tokenizer
    ids = vocab.single_token_ids(tok, [" Mary", " Ella", " John"], "names")
    assert list(ids) == [" Mary", " John"]
    assert ids[" Mary"] == tok.encode(" Mary")[0] and len(tok.encode(" Ella")) == 2
