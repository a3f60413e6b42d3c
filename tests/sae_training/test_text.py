"""Text sources: contexts from text and from pre-tokenized Hugging Face datasets folders."""

from __future__ import annotations

from itertools import islice

import pytest
import torch

from sae_training.activations.text import EVAL_EVERY, TextSourceError, text_stream, token_contexts


@pytest.fixture()
def hf_dir(tmp_path):
    datasets = pytest.importorskip("datasets")

    def save(name: str, columns: dict) -> str:
        path = tmp_path / name
        datasets.Dataset.from_dict(columns).save_to_disk(str(path))
        return f"hf:{path}"

    return save


def test_text_contexts_are_the_texts_tokenized_and_packed(tiny, hf_dir):
    texts = [f"Paragraph number {i} says something about snakes and ladders." for i in range(60)]
    source = hf_dir("text", {"text": texts})
    ctx = list(islice(token_contexts(tiny.tokenizer, source, 16), 20))
    bos, eos = tiny.tokenizer.bos_token_id, tiny.tokenizer.eos_token_id
    assert all(c.shape == (16,) and c[0] == bos for c in ctx)
    # The stream is the training texts in the stream's order, each followed by EOS, cut into 15-token bodies.
    stream = list(islice(text_stream(source, "train", 0), 40))
    expected = [t for text in stream for t in (*tiny.tokenizer.encode(text, add_special_tokens=False), eos)]
    assert torch.cat([c[1:] for c in ctx]).tolist() == expected[: 15 * 20]


def test_pre_tokenized_contexts_are_used_as_they_are(tiny, hf_dir):
    bos = tiny.tokenizer.bos_token_id
    rows = [[bos, *range(100 + i, 115 + i)] for i in range(40)]
    source = hf_dir("tokens", {"input_ids": rows})
    train = [c.tolist() for c in islice(token_contexts(tiny.tokenizer, source, 16, column="input_ids"), 38)]
    held_out = [r for i, r in enumerate(rows) if i % EVAL_EVERY == 0]
    assert sorted(train) == sorted(r for r in rows if r not in held_out)
    evals = [
        c.tolist() for c in islice(token_contexts(tiny.tokenizer, source, 16, "eval", column="input_ids"), 2)
    ]
    assert sorted(evals) == sorted(held_out)


def test_pre_tokenized_rows_of_other_lengths_are_packed(tiny, hf_dir):
    rows = [list(range(10 + i, 17 + i)) for i in range(30)]
    source = hf_dir("ragged", {"input_ids": rows})
    ctx = next(token_contexts(tiny.tokenizer, source, 16, column="input_ids"))
    first = next(text_stream(source, "train", 0, "input_ids"))
    assert ctx[0] == tiny.tokenizer.bos_token_id
    assert ctx[1:8].tolist() == first and ctx[8] == tiny.tokenizer.eos_token_id


def test_bad_hf_columns_say_what_to_set(hf_dir):
    source = hf_dir(
        "numbers", {"text": ["a paragraph of text that is long enough"] * 3, "score": [1.0, 2.0, 3.0]}
    )
    with pytest.raises(TextSourceError, match=r"no column 'body'.*set text_column"):
        next(text_stream(source, "train", 0, "body"))
    with pytest.raises(TextSourceError, match="holds float, not text or token ids"):
        next(text_stream(source, "train", 0, "score"))
