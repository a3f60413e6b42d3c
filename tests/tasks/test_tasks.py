"""Task datasets: corruption touches exactly the intended token, answers are right, errors are clear."""

from __future__ import annotations

import pytest
import torch

from circuitkit.tasks import TaskError, make_greater_than, make_ioi, make_task, vocab


@pytest.mark.parametrize("split", ["train", "heldout", "heldout_names"])
def test_ioi_corruption_changes_only_s2(tiny_model, split):
    tok = tiny_model.tokenizer
    d = make_ioi(tok, 40, seed=3, split=split)
    diff = d.clean_tokens != d.corrupted_tokens
    assert (diff.sum(1) == 1).all()
    assert (diff.float().argmax(1) == d.positions["S2"]).all()
    idx = torch.arange(len(d))
    # the corrupting name is a third name: neither IO nor S
    c = d.corrupted_tokens[idx, d.positions["S2"]]
    assert ((c != d.answer_ids) & (c != d.wrong_ids)).all()


def test_ioi_answers_and_positions(tiny_model):
    tok = tiny_model.tokenizer
    d = make_ioi(tok, 40, seed=5)
    idx = torch.arange(len(d))
    t = d.clean_tokens
    assert (t[idx, d.positions["IO"]] == d.answer_ids).all()
    assert (t[idx, d.positions["S1"]] == d.wrong_ids).all()
    assert (t[idx, d.positions["S2"]] == d.wrong_ids).all()
    assert (d.positions["S1+1"] == d.positions["S1"] + 1).all()
    assert (d.positions["end"] == t.shape[1] - 1).all()
    assert (t[:, 0] == tok.bos_token_id).all()
    for prompt, ans in zip(d.prompts, d.answer_ids, strict=True):
        # the answer name appears exactly once in the prompt, the subject twice
        name = tok.decode([int(ans)]).strip()
        assert prompt.split().count(name) + prompt.count(name + ".") + prompt.count(name + ",") >= 1
    # ABBA and BABA in equal numbers: IO first (ABBA) for even rows
    io_first = d.positions["IO"] < d.positions["S1"]
    assert io_first.sum() == len(d) // 2


def test_ioi_is_seeded_and_distinct(tiny_model):
    tok = tiny_model.tokenizer
    a, b, c = (make_ioi(tok, 30, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.clean_tokens, b.clean_tokens)
    assert not torch.equal(a.clean_tokens, c.clean_tokens)
    assert len(set(a.prompts)) == len(a.prompts)


def test_ioi_split_word_lists_are_disjoint_from_training():
    assert not set(vocab.IOI_TEMPLATES_HELDOUT) & set(vocab.IOI_TEMPLATES_TRAIN)
    assert not set(vocab.NAMES_HELDOUT) & set(vocab.NAMES_TRAIN)
    assert not set(vocab.PLACES_HELDOUT) & set(vocab.PLACES_TRAIN)
    assert not set(vocab.OBJECTS_HELDOUT) & set(vocab.OBJECTS_TRAIN)
    assert not set(vocab.GT_NOUNS_HELDOUT) & set(vocab.GT_NOUNS_TRAIN)


def test_greater_than_corruption_and_answers(tiny_model):
    tok = tiny_model.tokenizer
    d = make_greater_than(tok, 50, seed=2)
    diff = d.clean_tokens != d.corrupted_tokens
    assert (diff.sum(1) == 1).all()
    assert (diff.float().argmax(1) == d.positions["YY"]).all()
    idx = torch.arange(len(d))
    year_ids = d.extras["year_ids"]
    assert (d.corrupted_tokens[idx, d.positions["YY"]] == year_ids[1]).all()
    assert (d.clean_tokens[idx, d.positions["YY"]] == year_ids[d.extras["yy"]]).all()
    assert ((d.extras["yy"] >= 2) & (d.extras["yy"] <= 98)).all()
    for p, yy in zip(d.prompts, d.extras["yy"], strict=True):
        assert f"17{int(yy):02d} to the year 17" in p


def test_metrics_by_hand():
    from circuitkit.tasks import metrics

    logits = torch.zeros(2, 3, 10)
    logits[0, -1, 4], logits[0, -1, 7] = 3.0, 1.0
    logits[1, -1, 4], logits[1, -1, 7] = -1.0, 2.0
    ld = metrics.logit_diff(logits, torch.tensor([4, 4]), torch.tensor([7, 7]))
    assert torch.allclose(ld, torch.tensor([2.0, -3.0]))
    # prob diff: all mass on year 50 with YY=30 -> +1; with YY=60 -> -1
    year_ids = torch.arange(100) + 5
    lg = torch.full((2, 1, 110), -1e9)
    lg[:, 0, year_ids[50]] = 0.0
    pd = metrics.year_prob_diff(lg, year_ids, torch.tensor([30, 60]))
    assert torch.allclose(pd, torch.tensor([1.0, -1.0]))
    assert metrics.kl_to_clean(logits, logits).abs().max() < 1e-6
    assert metrics.normalized(0.5, 1.0, 0.0) == 0.5


def test_errors_are_clear(tiny_model):
    tok = tiny_model.tokenizer
    with pytest.raises(TaskError, match=r"not single tokens.*Xylophonistica"):
        make_ioi(tok, 10, names=["Mary", "John", "Xylophonistica"])
    with pytest.raises(TaskError, match=r"only .* can be made"):
        make_ioi(tok, 10**10)
    with pytest.raises(TaskError, match=r"only .* exist"):
        make_greater_than(tok, 10_000)
    with pytest.raises(TaskError, match="unknown task"):
        make_task("docstrings", tok)
    with pytest.raises(TaskError, match="different lengths"):
        make_ioi(tok, 10, templates=list(vocab.IOI_TEMPLATES_TRAIN[:3]))
    with pytest.raises(TaskError, match="at least 3"):
        make_ioi(tok, 10, names=["Mary", "John"])
