"""A lean forward pass that returns the same hook activations as ``run_with_cache`` (and, for g-SAE, the
same LM-loss gradients at the hooks as a probe through ``run_with_hooks``).

Activation collection is most of a dictionary's training time on a small model (the LM forward was ~80 %
of our TopK run's wall time, benchmarks/sae_topk_vs_saelens.py). TransformerLens's forward is written
for inspection, not speed: LayerNorm as five element-wise passes, GELU and the causal mask as separate
passes over [batch, head, query, key] scores, a NaN scrub of the pattern, Q, K and V as three matmuls.
This pass reads the same weights and computes the same function with fused kernels
(``F.layer_norm``, one QKV matmul, ``F.scaled_dot_product_attention``, ``F.gelu``), keeping only the
requested hooks and stopping after the last block it needs.

It covers the architecture of the built-in models and GPT-2-style models (absolute positions,
LayerNorm / LayerNormPre / no norm, standard attention and MLP, GELU / ReLU / SiLU). Anything else,
any hook this pass does not produce, or a model with hooks attached falls back to ``run_with_cache``
(``lean_unsupported`` says why). Each (model, hooks) pair is checked once against ``run_with_cache`` on
a few of the real contexts before first use, so a TransformerLens change that this pass does not mirror
becomes a warning and a fallback, not silently different activations.
"""

from __future__ import annotations

import re
import warnings
import weakref
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.components import (
    MLP,
    Attention,
    Embed,
    LayerNorm,
    LayerNormPre,
    PosEmbed,
    TransformerBlock,
    Unembed,
)

_ACT_FNS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,
    # TransformerLens's gelu_new / gelu_fast / gelu_pytorch_tanh are all the tanh approximation.
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}

# Config fields whose non-default values change the forward in ways this pass does not mirror.
_DEFAULTS: dict[str, object] = {
    "positional_embedding_type": "standard",
    "attention_dir": "causal",
    "n_key_value_heads": None,
    "parallel_attn_mlp": False,
    "gated_mlp": False,
    "use_split_qkv_input": False,
    "use_attn_in": False,
    "use_local_attn": False,
    "attn_scores_soft_cap": -1.0,
    "clip_qkv": None,
    "use_logn_attn": False,
    "use_attention_sinks": False,
    "post_embedding_ln": False,
    "use_normalization_before_and_after": False,
    "load_in_4bit": False,
    "use_qk_norm": False,
    "n_devices": 1,
}

_BLOCK_HOOK = re.compile(
    r"blocks\.(\d+)\.(hook_resid_pre|hook_resid_mid|hook_resid_post|hook_attn_out|hook_mlp_out|"
    r"ln1\.hook_normalized|ln2\.hook_normalized|attn\.hook_z|mlp\.hook_pre|mlp\.hook_post)$"
)
_TOP_HOOKS = ("hook_embed", "hook_pos_embed")
_MLP_PART = re.compile(r"mlp|ln2|resid_mid")


def lean_unsupported(model: HookedTransformer, hooks: Sequence[str], gradients: bool = False) -> str | None:
    """Why the lean pass cannot serve ``hooks`` for ``model`` (None: it can); ``gradients``: also the
    LM-loss gradients, which need ln_final and the unembedding."""
    cfg = model.cfg
    if gradients:
        if type(model.unembed) is not Unembed or getattr(cfg, "output_logits_soft_cap", -1.0) > 0:
            return "non-standard unembedding"
        ln_final = getattr(model, "ln_final", None)
        if ln_final is not None and type(ln_final) not in (LayerNorm, LayerNormPre, torch.nn.Identity):
            return f"final norm class {type(ln_final).__name__}"
    for name, default in _DEFAULTS.items():
        if getattr(cfg, name, default) != default:
            return f"cfg.{name}={getattr(cfg, name)!r}"
    if cfg.dtype not in (torch.float32, torch.float64):
        return f"dtype {cfg.dtype}"
    if not cfg.attn_only and cfg.act_fn not in _ACT_FNS:
        return f"act_fn {cfg.act_fn!r}"
    if cfg.normalization_type not in ("LN", "LNPre", None):
        return f"normalization_type {cfg.normalization_type!r}"
    if model.tokenizer is not None and model.tokenizer.padding_side == "left":
        return "left padding (TransformerLens then builds an attention mask)"
    if type(model.embed) is not Embed or type(model.pos_embed) is not PosEmbed:
        return "non-standard embedding"
    for block in model.blocks:
        if type(block) is not TransformerBlock or type(block.attn) is not Attention:
            return f"block class {type(block).__name__} / {type(block.attn).__name__}"
        if getattr(block.attn, "q_norm", None) is not None:
            return "QK norm"
        if not cfg.attn_only and type(block.mlp) is not MLP:
            return f"MLP class {type(block.mlp).__name__}"
        for ln in (block.ln1, getattr(block, "ln2", None)):
            if ln is not None and type(ln) not in (LayerNorm, LayerNormPre, torch.nn.Identity):
                return f"norm class {type(ln).__name__}"
    for h in hooks:
        m = _BLOCK_HOOK.match(h)
        if h not in _TOP_HOOKS and not m:
            return (
                f"hook {h!r} (lean hooks: resid, attn/mlp out, ln normalized, attn.hook_z, mlp.hook_pre/post)"
            )
        if h not in model.hook_dict or (m and cfg.attn_only and _MLP_PART.search(h)):
            return f"hook {h!r} is not computed by this model"
    if _has_hooks(model):
        return "the model has hooks attached"
    return None


def _has_hooks(model: HookedTransformer) -> bool:
    return any(hp._forward_hooks or hp._backward_hooks for hp in model.hook_dict.values())


Hook = Callable[[str, Tensor], Tensor]


def _norm(ln: torch.nn.Module, x: Tensor, hook: Hook, name: str) -> Tensor:
    """TransformerLens LayerNorm / LayerNormPre: hook_normalized is taken before the affine map."""
    if isinstance(ln, torch.nn.Identity):
        return x
    normalized = hook(name, F.layer_norm(x, (x.shape[-1],), eps=ln.eps))
    if isinstance(ln, LayerNorm):
        return torch.addcmul(ln.b, normalized, ln.w)
    return normalized


def _attention(attn: Attention, x: Tensor, hook: Hook, name: str) -> Tensor:
    B, P, d = x.shape
    H, dh = attn.W_Q.shape[0], attn.W_Q.shape[2]
    # [3H, d, dh] -> [d, 3H*dh]: Q, K and V of all heads in one matmul.
    W = torch.cat([attn.W_Q, attn.W_K, attn.W_V]).permute(1, 0, 2).reshape(d, 3 * H * dh)
    b = torch.cat([attn.b_Q, attn.b_K, attn.b_V]).reshape(-1)
    qkv = torch.addmm(b, x.reshape(B * P, d), W).view(B, P, 3, H, dh).permute(2, 0, 3, 1, 4)
    z = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True, scale=1.0 / attn.attn_scale)
    z = hook(name, z.transpose(1, 2).contiguous())  # [B, P, H, dh], TransformerLens's hook_z layout
    return torch.addmm(attn.b_O, z.reshape(B * P, H * dh), attn.W_O.reshape(H * dh, -1)).view(B, P, -1)


def _forward(
    model: HookedTransformer, tokens: Int[Tensor, "batch pos"], hook: Hook, n_blocks: int, logits: bool
) -> Tensor | None:
    """Run the first ``n_blocks`` blocks (and, with ``logits``, ln_final and the unembedding), passing every
    hooked tensor through ``hook(name, tensor)`` and carrying on with what it returns."""
    cfg = model.cfg
    P = tokens.shape[1]
    embed = hook("hook_embed", F.embedding(tokens, model.embed.W_E))
    pos = hook("hook_pos_embed", model.pos_embed.W_pos[:P].unsqueeze(0).expand_as(embed))
    resid = embed + pos
    for layer in range(n_blocks):
        block, p = model.blocks[layer], f"blocks.{layer}."
        resid = hook(p + "hook_resid_pre", resid)
        h = _norm(block.ln1, resid, hook, p + "ln1.hook_normalized")
        attn_out = hook(p + "hook_attn_out", _attention(block.attn, h, hook, p + "attn.hook_z"))
        resid = resid + attn_out
        if not cfg.attn_only:
            resid = hook(p + "hook_resid_mid", resid)
            h = _norm(block.ln2, resid, hook, p + "ln2.hook_normalized")
            mlp = block.mlp
            pre = hook(
                p + "mlp.hook_pre",
                torch.addmm(mlp.b_in, h.reshape(-1, h.shape[-1]), mlp.W_in).view(*h.shape[:2], -1),
            )
            post = hook(p + "mlp.hook_post", _ACT_FNS[cfg.act_fn](pre))
            mlp_out = torch.addmm(mlp.b_out, post.reshape(-1, post.shape[-1]), mlp.W_out).view_as(resid)
            resid = resid + hook(p + "hook_mlp_out", mlp_out)
        resid = hook(p + "hook_resid_post", resid)
    if not logits:
        return None
    ln_final = getattr(model, "ln_final", None)  # TransformerLens has none without normalisation
    x = resid if ln_final is None else _norm(ln_final, resid, hook, "ln_final.hook_normalized")
    return torch.addmm(model.unembed.b_U, x.reshape(-1, x.shape[-1]), model.unembed.W_U).view(
        *x.shape[:2], -1
    )


def _last_block(hooks: Sequence[str]) -> int:
    return max((int(m.group(1)) for h in hooks if (m := _BLOCK_HOOK.match(h))), default=-1)


@torch.no_grad()
def lean_run_with_cache(
    model: HookedTransformer, tokens: Int[Tensor, "batch pos"], hooks: Sequence[str]
) -> dict[str, Float[Tensor, "batch pos ..."]]:
    """``model.run_with_cache(tokens, names_filter=hooks)[1]`` for the hooks ``lean_unsupported`` allows,
    to float rounding. Call ``lean_unsupported`` first."""
    want, out = set(hooks), {}

    def keep(name: str, t: Tensor) -> Tensor:
        if name in want:
            out[name] = t
        return t

    _forward(model, tokens.to(model.W_E.device), keep, _last_block(hooks) + 1, logits=False)
    return out


def lean_activations_with_gradients(
    model: HookedTransformer, tokens: Int[Tensor, "batch pos"], hooks: Sequence[str]
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Activations at ``hooks`` and the gradient there of the summed next-token cross-entropy (what
    TransformerLens's ``return_type="loss", loss_per_token=True`` summed gives), [batch, pos, ...] each.
    Parameters get no gradient."""
    want, acts, probes = set(hooks), {}, {}

    def probe(name: str, t: Tensor) -> Tensor:
        if name not in want:
            return t
        # A zero leaf added (not a detached copy) keeps the graph whole, so every hook gets its gradient.
        acts[name] = t.detach()
        probes[name] = torch.zeros_like(t, requires_grad=True)
        return t + probes[name]

    tokens = tokens.to(model.W_E.device)
    with torch.enable_grad():
        logits = _forward(model, tokens, probe, model.cfg.n_layers, logits=True)
        assert logits is not None
        loss = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), reduction="sum"
        )
        grads = torch.autograd.grad(loss, [probes[h] for h in hooks])
    return {h: acts[h] for h in hooks}, dict(zip(hooks, grads, strict=True))


_checked: weakref.WeakKeyDictionary[HookedTransformer, dict[tuple[str, ...], bool]] = (
    weakref.WeakKeyDictionary()
)


def _disagreement(lean: dict[str, Tensor], ref: dict[str, Tensor], rtol: float, what: str) -> str | None:
    for h, r in ref.items():
        err = (lean[h].double() - r.double()).abs().max().item()
        scale = r.abs().max().item() + 1e-12
        if lean[h].shape != r.shape or not err <= rtol * scale:
            return f"{what} {h}: max |diff| {err:.3g} vs max |value| {scale:.3g}"
    return None


def lean_matches_transformer_lens(
    model: HookedTransformer, tokens: Int[Tensor, "batch pos"], hooks: Sequence[str], rtol: float = 1e-4
) -> str | None:
    """Compare the lean pass with ``run_with_cache`` on ``tokens``: None if every hook agrees to ``rtol``
    of its largest magnitude, else the first disagreement."""
    lean = lean_run_with_cache(model, tokens, hooks)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens.to(model.W_E.device), names_filter=list(hooks))
    return _disagreement(lean, {h: cache[h] for h in hooks}, rtol, "activation")


def _first_use_ok(
    model: HookedTransformer, key: tuple, reason: str | None, compare: Callable[[], str | None]
) -> bool:
    """Whether the lean pass serves ``key`` (checked once per model and key; a disagreement warns)."""
    if _has_hooks(model):  # not cached: the hooks may be removed later
        return False
    seen = _checked.setdefault(model, {})
    if key not in seen:
        if reason is None:
            reason = compare()
            if reason is not None:
                warnings.warn(
                    f"lean forward disagrees with TransformerLens ({reason}); using TransformerLens",
                    stacklevel=3,
                )
        seen[key] = reason is None
    return seen[key]


def try_lean(
    model: HookedTransformer, tokens: Int[Tensor, "batch pos"], hooks: Sequence[str]
) -> dict[str, Tensor] | None:
    """The lean pass's activations, or None where it does not apply (the caller then uses TransformerLens).

    The first call per (model, hooks) checks the pass against TransformerLens on two of these contexts.
    """
    key = ("activations", *sorted(hooks))
    small = tokens[:2, : min(tokens.shape[1], 32)]
    reason = lean_unsupported(model, hooks) if key not in _checked.get(model, {}) else None
    if not _first_use_ok(model, key, reason, lambda: lean_matches_transformer_lens(model, small, hooks)):
        return None
    return lean_run_with_cache(model, tokens, hooks)


def try_lean_with_gradients(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    hooks: Sequence[str],
    reference: Callable[
        [HookedTransformer, Tensor, Sequence[str]], tuple[dict[str, Tensor], dict[str, Tensor]]
    ],
    rtol: float = 1e-4,
) -> tuple[dict[str, Tensor], dict[str, Tensor]] | None:
    """``lean_activations_with_gradients``, or None where it does not apply; the first call per (model,
    hooks) compares activations and gradients with ``reference`` (the TransformerLens version)."""
    key = ("gradients", *sorted(hooks))
    small = tokens[:2, : min(tokens.shape[1], 32)]

    def compare() -> str | None:
        (la, lg), (ra, rg) = (
            lean_activations_with_gradients(model, small, hooks),
            reference(model, small, hooks),
        )
        return _disagreement(la, ra, rtol, "activation") or _disagreement(lg, rg, rtol, "gradient")

    reason = lean_unsupported(model, hooks, gradients=True) if key not in _checked.get(model, {}) else None
    if not _first_use_ok(model, key, reason, compare):
        return None
    return lean_activations_with_gradients(model, tokens, hooks)
