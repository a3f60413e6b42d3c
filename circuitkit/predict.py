"""Next-token predictions for a prompt: the small library function behind the explorer's prompt box."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformer_lens import HookedTransformer


@dataclass(frozen=True)
class Prediction:
    tokens: list[str]
    """The prompt's tokens as strings, BOS first when prepended."""
    top: list[tuple[str, float, float]]
    """(token, probability, logit) of the k most likely next tokens, most likely first."""


def top_predictions(
    model: HookedTransformer, prompt: str, k: int = 10, prepend_bos: bool = True
) -> Prediction:
    if not prompt:
        raise ValueError("the prompt is empty: type some text")
    # truncate=False: TransformerLens would otherwise cut the prompt to n_ctx tokens silently and the
    # prediction shown would be for other text.
    tokens = model.to_tokens(prompt, prepend_bos=prepend_bos, truncate=False)
    if tokens.shape[1] > model.cfg.n_ctx:
        raise ValueError(
            f"the prompt has {tokens.shape[1]} tokens; {model.cfg.model_name} reads at most "
            f"{model.cfg.n_ctx} (BOS included): shorten it"
        )
    with torch.no_grad():
        logits = model(tokens)[0, -1].float()
    probs = torch.softmax(logits, -1)
    p, idx = probs.topk(min(k, probs.shape[0]))
    top = [
        (model.tokenizer.decode([int(i)]), float(pi), float(logits[i])) for pi, i in zip(p, idx, strict=True)
    ]
    return Prediction(tokens=model.to_str_tokens(tokens[0]), top=top)
