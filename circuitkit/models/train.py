"""Train a built-in toy model from scratch: tokenizer, GPT-2-style HookedTransformer, model card.

The models are small GPT-2-style transformers (learned absolute positions, LayerNorm, GELU MLPs,
untied embeddings) trained on natural text mixed with generated IOI, greater-than and filler
sentences, in the tradition of TransformerLens's attn-only-4l / gelu-2l. Everything is seeded, so
``circuitkit zoo train NAME`` reproduces a shipped model's recipe.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights
from transformers import GPT2Config, GPT2LMHeadModel

from circuitkit.models import corpus
from circuitkit.models.tokenizer import train_tokenizer

if TYPE_CHECKING:
    from circuitkit.planted.config import PlantedConfig


@dataclass
class ZooConfig:
    """Recipe of a built-in model: architecture, corpus mix and optimisation."""

    name: str
    """Model name in the zoo (also the folder name)."""
    n_layers: int = 4
    """Transformer blocks."""
    d_model: int = 128
    """Residual stream width."""
    n_heads: int = 4
    """Attention heads per layer (d_head = d_model / n_heads)."""
    d_mlp: int = 512
    """MLP hidden width (GELU)."""
    n_ctx: int = 64
    """Context length; natural-text rows are this long."""
    vocab_size: int = 1024
    """Byte-level BPE vocabulary size (task words are forced to single tokens)."""
    steps: int = 3000
    """Optimiser steps."""
    task_batch: int = 96
    """Sentences per task batch (each row: BOS + one generated sentence, padded)."""
    text_batch: int = 24
    """Rows of natural text per text batch."""
    text_every: int = 3
    """Every text_every-th step is a natural-text step; the others are task steps."""
    mix: dict[str, float] = field(default_factory=lambda: {"ioi": 0.5, "greater_than": 0.3, "filler": 0.2})
    """Proportions of generated sentence kinds in task batches."""
    lr: float = 2e-3
    """Peak learning rate (AdamW), linear warm-up then cosine decay to 10 %."""
    warmup: int = 200
    """Warm-up steps."""
    weight_decay: float = 0.05
    """AdamW weight decay."""
    seed: int = 0
    """Seeds weights, data order and generated sentences."""
    text_dir: str | None = None
    """Folder of natural text; None: the Python documentation sources (Debian python3.11-doc)."""
    max_text_chars: int | None = None
    """Read at most this many characters of natural text (None: all)."""

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.text_every < 1:
            raise ValueError("text_every must be >= 1")


def hooked_config(
    cfg: ZooConfig | PlantedConfig, d_vocab: int, device: str = "cpu"
) -> HookedTransformerConfig:
    """The zoo's GPT-2-style architecture (learned positions, LayerNorm, GELU, BOS prepended), shared by
    the naturally trained and the planted models."""
    return HookedTransformerConfig(
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        n_ctx=cfg.n_ctx,
        d_head=cfg.d_head,
        n_heads=cfg.n_heads,
        d_mlp=cfg.d_mlp,
        d_vocab=d_vocab,
        act_fn="gelu",
        normalization_type="LN",
        positional_embedding_type="standard",
        original_architecture="GPT2LMHeadModel",
        model_name=cfg.name,
        seed=cfg.seed,
        device=device,
        default_prepend_bos=True,
    )


def gpt2_config(cfg: ZooConfig, d_vocab: int) -> GPT2Config:
    """The same architecture as :func:`hooked_config`, as a Hugging Face GPT-2 (no dropout, untied)."""
    return GPT2Config(
        vocab_size=d_vocab,
        n_positions=cfg.n_ctx,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layers,
        n_head=cfg.n_heads,
        n_inner=cfg.d_mlp,
        activation_function="gelu",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=False,
    )


def to_hooked(net: GPT2LMHeadModel, cfg: ZooConfig, device: str = "cpu") -> HookedTransformer:
    """Convert a trained GPT-2 into a HookedTransformer (weights unprocessed: LN kept, not folded).

    The model has no tokenizer attached: TransformerLens reloads tokenizers from their saved folder, so
    the tokenizer is attached when the written model folder is read back (``zoo.read_model_dir``).
    """
    model = HookedTransformer(hooked_config(cfg, net.config.vocab_size, device))
    state = convert_gpt2_weights(net, model.cfg)
    state["unembed.b_U"] = torch.zeros_like(model.unembed.b_U)  # GPT-2's LM head has no bias
    model.load_state_dict(state, strict=False)
    model.eval()
    return model


def _lr_at(step: int, cfg: ZooConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


@dataclass
class TrainedModel:
    model: HookedTransformer
    tokenizer: object
    stats: dict


def train_model(
    cfg: ZooConfig,
    *,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainedModel:
    """Train a toy model per ``cfg`` on the CPU (or CUDA if present); return it with training stats."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    paragraphs, text_meta = corpus.load_text(cfg.text_dir, cfg.max_text_chars)
    sentences = corpus.task_sentences(random.Random(cfg.seed + 1), cfg.mix)
    tok_sample = [next(sentences) for _ in range(20_000)]
    tokenizer = train_tokenizer(paragraphs + tok_sample, cfg.vocab_size)
    bos = tokenizer.bos_token_id

    stream = torch.tensor(
        [t for ids in tokenizer(paragraphs, add_special_tokens=False)["input_ids"] for t in [*ids, bos]]
    )
    # Train as a Hugging Face GPT-2 (fused SDPA attention, ~1.5x faster on the CPU than the hooked
    # forward), then convert to a HookedTransformer with TransformerLens's own GPT-2 weight conversion;
    # the two agree to float precision (tests/models check it).
    net = GPT2LMHeadModel(gpt2_config(cfg, len(tokenizer))).to(device)
    net.train()
    decay = [p for n, p in net.named_parameters() if p.ndim >= 2 and "wpe" not in n]
    no_decay = [p for n, p in net.named_parameters() if not (p.ndim >= 2 and "wpe" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    n_tokens = 0
    ema: float | None = None
    bar = tqdm(range(cfg.steps), desc=f"train {cfg.name}", disable=not progress, unit="step")
    for step in bar:
        if step % cfg.text_every == cfg.text_every - 1:
            starts = torch.randint(0, len(stream) - cfg.n_ctx, (cfg.text_batch,), generator=gen)
            rows = torch.stack([stream[s : s + cfg.n_ctx - 1] for s in starts])
            tokens = torch.cat([torch.full((cfg.text_batch, 1), bos), rows], dim=1)
            mask = torch.ones_like(tokens[:, 1:], dtype=torch.bool)
        else:
            batch = [next(sentences) for _ in range(cfg.task_batch)]
            ids = tokenizer(batch, add_special_tokens=False)["input_ids"]
            width = min(cfg.n_ctx, 1 + max(map(len, ids)))
            tokens = torch.full((len(ids), width), bos)
            mask = torch.zeros((len(ids), width - 1), dtype=torch.bool)
            for i, row in enumerate(ids):
                row = row[: width - 1]
                tokens[i, 1 : 1 + len(row)] = torch.tensor(row)
                mask[i, : len(row)] = True
        tokens, mask = tokens.to(device), mask.to(device)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg)
        logits = net(tokens).logits[:, :-1]
        loss = F.cross_entropy(logits[mask], tokens[:, 1:][mask])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        n_tokens += int(mask.sum())
        value = loss.item()
        ema = value if ema is None else 0.98 * ema + 0.02 * value
        if step % 20 == 0:
            bar.set_postfix(loss=f"{ema:.3f}", tok_s=f"{n_tokens / (time.time() - t0):.0f}")
        if on_step is not None:
            on_step(step, value)
    net.eval()
    model = to_hooked(net, cfg, device)
    stats = {
        "steps": cfg.steps,
        "tokens": n_tokens,
        "final_loss_ema": round(ema or float("nan"), 4),
        "seconds": round(time.time() - t0, 1),
        "device": device,
        "torch": torch.__version__,
        "corpus": {
            **text_meta,
            "text_stream_tokens": len(stream),
            "mix": cfg.mix,
            "text_every": cfg.text_every,
        },
    }
    return TrainedModel(model=model, tokenizer=tokenizer, stats=stats)


def config_dict(cfg: ZooConfig) -> dict:
    return asdict(cfg)
