"""Byte-level BPE tokenizers for the built-in models, built with Hugging Face ``tokenizers``.

GPT-2 style (leading-space tokens, byte fallback, ``<|endoftext|>`` as BOS/EOS/PAD) with one change:
digit runs are cut into pairs before BPE, so "1732" becomes " 17" + "32" as in GPT-2's vocabulary and
the greater-than task reads the same way. Every task word is forced to be a single token.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from circuitkit.tasks import vocab

SPECIAL = "<|endoftext|>"


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, *, word_repeats: int = 50_000
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts``; task words are repeated so BPE merges each into one token.

    The repeats must outnumber the commonest pairs of the natural text, else BPE spends its merges there
    first; each task word then costs a few merges of the vocabulary.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r" ?\d\d"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[SPECIAL],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    words = vocab.task_words()

    def stream():
        yield from texts
        for w in words:
            yield w * word_repeats

    tok.train_from_iterator(stream(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=SPECIAL, eos_token=SPECIAL, pad_token=SPECIAL, unk_token=None
    )
    fast.model_max_length = 10**6
    missing = [w for w in words if len(fast.encode(w, add_special_tokens=False)) != 1]
    if missing:
        raise RuntimeError(f"tokenizer failed to keep task words whole: {missing[:10]}; raise vocab_size")
    return fast


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: Path) -> None:
    tokenizer.save_pretrained(str(directory))


def load_tokenizer(directory: Path | str) -> PreTrainedTokenizerFast:
    """Load from the saved directory; TransformerLens later reloads it from this same path."""
    return AutoTokenizer.from_pretrained(str(directory))
