"""IOI probes outside the task's templates: does a model detect the *repeated* name, or use positions?

Each probe set places the repeated name somewhere the IOI templates never do. A model that suppresses
whichever name repeats scores a positive logit difference on every set; a positional shortcut (e.g.
"answer with the first name unless ...") fails some of them. Metric per prompt: the mean logit of the
names that do not repeat minus the logit of the repeated one, at the last position; accuracy: the top
name among them does not repeat.
"""

from __future__ import annotations

import random

import torch
from transformer_lens import HookedTransformer

from circuitkit.tasks import vocab
from circuitkit.tasks.base import check_single_tokens, encode_prompts

PROBES: dict[str, str] = {
    # [R] repeats; [X], [Y] are the other names.
    "standard": "When [X] and [R] met at the [PLACE], [R] showed the [OBJECT] to",
    "repeated first": "When [R], [X] and [Y] met at the [PLACE], [R] showed the [OBJECT] to",
    "repeated last": "When [X], [Y] and [R] met at the [PLACE], [R] showed the [OBJECT] to",
    "new name follows": "When [X] and [R] met at the [PLACE], [R] saw [Y] and showed the [OBJECT] to",
}


def probe_prompts(
    tokenizer, template: str, n: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokens [n, pos], the repeated name's id [n] and the other names' ids [n, k] for a probe template."""
    rng = random.Random(seed)
    names = vocab.NAMES_TRAIN
    ids = check_single_tokens(tokenizer, [" " + x for x in names], "probe names")
    texts, rep, others = [], [], []
    k = 2 if "[Y]" in template else 1
    for _ in range(n):
        r, x, y = rng.sample(names, 3)
        place, obj = rng.choice(vocab.PLACES_HELDOUT), rng.choice(vocab.OBJECTS_HELDOUT)
        texts.append(
            template.replace("[R]", r)
            .replace("[X]", x)
            .replace("[Y]", y)
            .replace("[PLACE]", place)
            .replace("[OBJECT]", obj)
        )
        rep.append(ids[" " + r])
        others.append([ids[" " + x], ids[" " + y]][:k])
    return torch.tensor(encode_prompts(tokenizer, texts)), torch.tensor(rep), torch.tensor(others)


def run_probes(model: HookedTransformer, n: int = 64, seed: int = 0) -> dict[str, dict[str, float]]:
    """Logit difference (non-repeated mean - repeated) and accuracy of ``model`` on every probe set."""
    out = {}
    for name, template in PROBES.items():
        tokens, rep, others = probe_prompts(model.tokenizer, template, n, seed)
        with torch.no_grad():
            logits = model(tokens.to(model.cfg.device))[:, -1].cpu()
        rows = torch.arange(n)
        rep_logit = logits[rows, rep]
        other_logits = logits.gather(1, others)
        out[name] = {
            "logit_diff": round(float((other_logits.mean(1) - rep_logit).mean()), 3),
            "accuracy": round(float((other_logits.max(1).values > rep_logit).float().mean()), 3),
            "n_prompts": n,
        }
    return out
