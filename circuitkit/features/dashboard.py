"""The data behind a dictionary-latent dashboard (Bricken et al. 2023; Neuronpedia's layout): run the
model over a token set, encode the hooked activation with the dictionary, and pick out one latent's
top-activating contexts, activation values, firing densities, decoder logit effects; plus the steering /
ablation of one latent on a prompt.

Dictionaries are sae-lens ``SAE`` objects: ``encode``, ``W_dec [d_sae, d_in]`` and
``cfg.metadata.hook_name`` (transcoders also ``hook_name_out``, where their decoder writes).
Nothing here mutates the model: hooks are passed per call and removed by TransformerLens afterwards.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit.components import check_hook
from circuitkit.features.splice import dictionary_hooks


def _head_index(sae) -> int | None:
    """The head a per-head ``hook_z`` dictionary reads (sae-lens ``hook_head_index``), else None."""
    return getattr(sae.cfg.metadata, "hook_head_index", None)


def _flat(act: Tensor, head: int | None = None) -> Tensor:
    """hook_z ``[batch, pos, n_heads, d_head]`` -> one head's ``[batch, pos, d_head]`` when ``head`` is
    given, else all heads concatenated ``[batch, pos, n_heads * d_head]``; other activations unchanged."""
    if act.ndim != 4:
        return act
    return act[..., head, :] if head is not None else act.flatten(-2)


def _encode(sae, act: Tensor, head: int | None) -> Tensor:
    """Encode a hook's activation: sae-lens ``hook_z`` dictionaries (``reshape_activations="hook_z"``)
    flatten ``[..., n_heads, d_head]`` themselves, so they get it unflattened; the rest get ``_flat``."""
    if act.ndim == 4 and head is None and getattr(sae.cfg, "reshape_activations", "none") == "hook_z":
        return sae.encode(act)
    return sae.encode(_flat(act, head))


def corpus_tokens(
    model: HookedTransformer, n_seqs: int = 128, seq_len: int = 32, seed: int = 0
) -> Int[Tensor, "seq pos"]:
    """Token windows (BOS first) from natural text and generated task sentences, half each.

    The dashboard's token set: small enough to encode in seconds on the toy models, varied enough that
    latents find their contexts.
    """
    from circuitkit.models import corpus

    rng = random.Random(seed)
    try:
        paragraphs, _ = corpus.load_text(max_chars=400_000)
    except Exception:  # no natural text installed: task sentences alone still make a dashboard
        paragraphs = []
    gen = corpus.task_sentences(rng, {"ioi": 1.0, "greater_than": 1.0, "filler": 1.0})
    bos = model.tokenizer.bos_token_id
    bos = model.tokenizer.eos_token_id if bos is None else bos
    rows = []
    for i in range(n_seqs):
        text = rng.choice(paragraphs) if paragraphs and i % 2 == 0 else " ".join(next(gen) for _ in range(4))
        ids = model.tokenizer.encode(text, add_special_tokens=False)
        while len(ids) < seq_len - 1:  # short paragraph: pad with more sentences
            ids += model.tokenizer.encode(" " + next(gen), add_special_tokens=False)
        start = rng.randrange(0, len(ids) - (seq_len - 1) + 1)
        rows.append([bos, *ids[start : start + seq_len - 1]])
    return torch.tensor(rows, dtype=torch.long)


@torch.no_grad()
def encode_tokens(
    model: HookedTransformer, sae, tokens: Int[Tensor, "seq pos"], batch_size: int = 32
) -> Float[Tensor, "seq pos d_sae"]:
    """Dictionary activations on every token (on the CPU; the toy models' sets fit in memory)."""
    hook_in, _ = dictionary_hooks(sae)
    check_hook(model, hook_in)
    device = next(sae.parameters()).device
    out = []
    for start in range(0, tokens.shape[0], batch_size):
        batch = tokens[start : start + batch_size].to(model.cfg.device)
        _, cache = model.run_with_cache(
            batch, names_filter=hook_in, stop_at_layer=_stop_layer(model, hook_in)
        )
        head = _head_index(sae)
        act = cache[hook_in].to(device, sae.W_dec.dtype)
        width = _flat(act, head).shape[-1]
        if width != sae.cfg.d_in:
            raise ValueError(
                f"the dictionary reads d_in={sae.cfg.d_in} but {hook_in} has width {width}: "
                "pick a dictionary trained on this model and hook"
            )
        out.append(_encode(sae, act, head).float().cpu())
    return torch.cat(out)


def _stop_layer(model: HookedTransformer, hook: str) -> int | None:
    if hook.startswith("blocks."):
        return int(hook.split(".")[1]) + 1
    return None


@dataclass(frozen=True)
class LatentSummary:
    """One latent's dashboard data over a token set."""

    latent: int
    examples: list[tuple[list[str], list[float]]]
    """Top contexts, strongest first: (tokens, this latent's activation on each)."""
    firing: Float[Tensor, " n_firing"]
    """Activations where the latent fires (> 0), for the histogram."""
    density: float
    """Fraction of (non-BOS) tokens where it fires."""


def summarize_latent(
    model: HookedTransformer,
    acts: Float[Tensor, "seq pos d_sae"],
    tokens: Int[Tensor, "seq pos"],
    latent: int,
    *,
    k: int = 10,
    window: int = 12,
) -> LatentSummary:
    """Top-``k`` contexts (``window`` tokens ending a few after the peak), firing values and density.

    BOS (position 0) is left out: many latents fire on it and it says nothing about the text.
    """
    if not 0 <= latent < acts.shape[-1]:
        raise ValueError(f"latent {latent} is out of range: the dictionary has {acts.shape[-1]} latents")
    a = acts[:, 1:, latent]
    peak, where = a.max(dim=1)
    order = torch.argsort(peak, descending=True)[:k]
    examples = []
    for s in order.tolist():
        if float(peak[s]) <= 0:
            break
        p = int(where[s]) + 1
        lo, hi = max(1, p - window + 4), min(tokens.shape[1], p + 4)
        toks = model.to_str_tokens(tokens[s, lo:hi])
        examples.append((list(toks), acts[s, lo:hi, latent].tolist()))
    fired = a[a > 0]
    return LatentSummary(latent, examples, fired, float((a > 0).float().mean()))


def firing_densities(acts: Float[Tensor, "seq pos d_sae"]) -> Float[Tensor, " d_sae"]:
    """Per latent: fraction of non-BOS tokens where it fires."""
    return (acts[:, 1:] > 0).float().mean(dim=(0, 1))


@torch.no_grad()
def logit_effects(model: HookedTransformer, sae, latent: int, k: int = 10):
    """Tokens whose logits the latent's decoder direction raises / lowers most (direct path, W_dec @ W_U,
    final LayerNorm ignored as in Bricken et al.). Only for dictionaries writing to the residual stream
    or to a block output that adds into it."""
    _, hook_out = dictionary_hooks(sae)
    direction = sae.W_dec[latent].float().to(model.cfg.device)
    if "hook_z" in hook_out:  # attention-output SAE: decoder is in z space; map through W_O
        layer, head = int(hook_out.split(".")[1]), _head_index(sae)
        w_o = model.W_O[layer][head] if head is not None else model.W_O[layer].reshape(-1, model.cfg.d_model)
        direction = direction @ w_o
    effect = direction @ model.W_U.float()
    top, bottom = effect.topk(k), (-effect).topk(k)
    decode = lambda i: model.tokenizer.decode([int(i)])  # noqa: E731
    pos = [(decode(i), float(v)) for v, i in zip(top.values, top.indices, strict=True)]
    neg = [(decode(i), -float(v)) for v, i in zip(bottom.values, bottom.indices, strict=True)]
    return pos, neg


def latents_for_token(
    acts: Float[Tensor, "seq pos d_sae"], tokens: Int[Tensor, "seq pos"], token_id: int, k: int = 10
) -> pd.DataFrame:
    """Latents with the highest mean activation on occurrences of ``token_id`` (search by token)."""
    hit = tokens == token_id
    hit[:, 0] = False
    n = int(hit.sum())
    if n == 0:
        raise ValueError("this token does not occur in the dashboard's token set; try another one")
    mean = acts[hit].mean(0)
    top = mean.topk(min(k, mean.numel()))
    return pd.DataFrame(
        {
            "latent": top.indices.tolist(),
            "mean_activation": top.values.tolist(),
            "fires_on_fraction": (acts[hit][:, top.indices] > 0).float().mean(0).tolist(),
            "occurrences": n,
        }
    )


def intervene(
    model: HookedTransformer,
    sae,
    tokens: Int[Tensor, "batch pos"],
    latent: int,
    *,
    mode: str = "ablate",
    value: float = 5.0,
) -> Float[Tensor, "batch pos vocab"]:
    """Logits with one latent ablated or steered at every position.

    ``ablate`` subtracts the latent's own contribution (its activation times its decoder row) from the
    activation the decoder writes to; ``steer`` adds ``value`` times the decoder row. The rest of the
    activation, the dictionary's reconstruction error included, is left as it is.
    """
    if mode not in ("ablate", "steer"):
        raise ValueError(f"mode must be 'ablate' or 'steer', got {mode!r}")
    hook_in, hook_out = dictionary_hooks(sae)
    check_hook(model, hook_in)
    check_hook(model, hook_out)
    w = sae.W_dec[latent].detach()
    head = _head_index(sae)
    stash: dict[str, Tensor] = {}

    def read(act: Tensor, hook) -> Tensor:
        stash["z"] = _encode(sae, act.to(w.dtype), head)[..., latent]
        return act

    def write(act: Tensor, hook) -> Tensor:
        flat = _flat(act, head)
        coef = -stash["z"] if mode == "ablate" else torch.full(flat.shape[:-1], value, device=flat.device)
        delta = coef[..., None].to(flat.dtype) * w.to(flat.device, flat.dtype)
        if act.ndim == 4 and head is not None:
            out = act.clone()
            out[..., head, :] += delta
            return out
        return (flat + delta).view_as(act)

    hooks = [(hook_in, read), (hook_out, write)] if mode == "ablate" else [(hook_out, write)]
    with torch.no_grad():
        return model.run_with_hooks(tokens.to(model.cfg.device), fwd_hooks=hooks)


def prediction_change(
    model: HookedTransformer, before: Float[Tensor, " vocab"], after: Float[Tensor, " vocab"], k: int = 10
) -> pd.DataFrame:
    """Next-token probabilities before and after an intervention, for the union of both top-``k`` sets,
    sorted by the new probability."""
    p0, p1 = torch.softmax(before.float(), -1), torch.softmax(after.float(), -1)
    ids = torch.unique(torch.cat([p0.topk(k).indices, p1.topk(k).indices]))
    df = pd.DataFrame(
        {
            "token": [model.tokenizer.decode([int(i)]) for i in ids],
            "before": p0[ids].tolist(),
            "after": p1[ids].tolist(),
        }
    )
    df["change"] = df["after"] - df["before"]
    return df.sort_values("after", ascending=False, ignore_index=True)
