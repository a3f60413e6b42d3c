"""One small random-weight HookedTransformer per architecture family TransformerLens supports.

Each is two or three layers of a few dimensions in float64, so a method and its oracle can be compared to
1e-5 relative while the whole matrix stays fast. Query weights are scaled up so attention is far from
uniform (random initialisation gives near-uniform patterns, where a softmax looks linear and a wrong
query/key path would go unnoticed); soft-caps are set low enough to bend.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from circuitkit.patching.common import last_position_metric

BASE: dict[str, Any] = dict(
    n_layers=2,
    d_model=16,
    n_heads=2,
    d_head=8,
    d_mlp=32,
    d_vocab=23,
    n_ctx=16,
    act_fn="gelu_new",
    normalization_type="LN",
    dtype=torch.float64,
    device="cpu",
    seed=0,
)
ROTARY: dict[str, Any] = dict(positional_embedding_type="rotary", rotary_dim=4)
LLAMA: dict[str, Any] = dict(ROTARY, normalization_type="RMS", act_fn="silu", gated_mlp=True)

ARCHITECTURES: dict[str, tuple[str, dict[str, Any]]] = {
    "gpt2": ("GPT-2: LayerNorm, learned positions", {}),
    "gpt-neo": (
        "GPT-Neo: LayerNorm, learned positions, alternating local / global attention",
        dict(attn_types=["local", "global"], window_size=3, use_local_attn=True),
    ),
    "pythia": ("GPT-NeoX / Pythia: rotary, parallel attention + MLP", dict(ROTARY, parallel_attn_mlp=True)),
    "gpt-j": (
        "GPT-J: rotary on adjacent pairs, parallel attention + MLP",
        dict(ROTARY, parallel_attn_mlp=True, rotary_adjacent_pairs=True),
    ),
    "llama": (
        "Llama: RMSNorm, gated SiLU MLP, rotary, grouped-query attention",
        dict(LLAMA, n_layers=3, n_key_value_heads=1),
    ),
    "mistral": (
        "Mistral: Llama with local (sliding-window) attention",
        dict(LLAMA, attn_types=["local", "local"], window_size=3, use_local_attn=True),
    ),
    "gemma-2": (
        "Gemma-2: post-norms, attention and logit soft-caps, alternating local / global",
        dict(
            LLAMA,
            act_fn="gelu_pytorch_tanh",
            use_normalization_before_and_after=True,
            attn_scores_soft_cap=1.0,
            output_logits_soft_cap=2.0,
            attn_types=["local", "global"],
            window_size=3,
            use_local_attn=True,
        ),
    ),
    "qwen3": ("Qwen3 / Gemma-3: q/k RMSNorm per head", dict(LLAMA, n_layers=3, use_qk_norm=True)),
    "olmo-2": (
        "OLMo-2: q/k norm over whole projections",
        dict(LLAMA, original_architecture="Olmo2ForCausalLM"),
    ),
    "shortformer": (
        "shortformer positions (added to q / k inputs only)",
        dict(positional_embedding_type="shortformer"),
    ),
    "attn-only": ("attention-only (no MLPs)", dict(attn_only=True)),
    "left-padded": ("GPT-2 with a left-padding tokenizer and padded prompts", {}),
}


class LeftPadTokenizer:
    """The three fields TransformerLens reads to build a left-padding attention mask."""

    padding_side = "left"
    pad_token_id = 0
    bos_token_id = 1
    eos_token_id = 1


@dataclass
class Case:
    """A model and a prompt pair with a logit-difference metric at the last position."""

    name: str
    description: str
    model: HookedTransformer
    clean: torch.Tensor
    corrupted: torch.Tensor
    metric: Any
    """Unmarked metric: methods compute every position."""
    last_metric: Any
    """The same metric marked as reading the last position only (the fast paths)."""


@functools.cache
def case(name: str) -> Case:
    description, extra = ARCHITECTURES[name]
    cfg = HookedTransformerConfig(**{**BASE, **extra})
    torch.manual_seed(0)
    model = HookedTransformer(cfg)
    model.eval()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_Q.mul_(8.0)
            if not cfg.attn_only and cfg.normalization_type == "RMS":
                block.mlp.W_in.mul_(4.0)
    g = torch.Generator().manual_seed(1)
    batch, seq = 2, 5
    clean = torch.randint(2, cfg.d_vocab, (batch, seq), generator=g)
    corrupted = clean.clone()
    corrupted[:, [1, 3]] = torch.randint(2, cfg.d_vocab, (batch, 2), generator=g)
    if name == "left-padded":
        model.tokenizer = LeftPadTokenizer()  # type: ignore[assignment]
        clean[0, :2] = corrupted[0, :2] = 0  # prompt 0 is two tokens shorter, padded on the left
    answer = torch.randint(0, cfg.d_vocab, (batch,), generator=g)
    wrong = (answer + 1) % cfg.d_vocab

    def metric(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1]
        return (last.gather(1, answer[:, None]) - last.gather(1, wrong[:, None])).mean()

    return Case(name, description, model, clean, corrupted, metric, last_position_metric(metric))
