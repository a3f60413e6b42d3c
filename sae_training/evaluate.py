"""Evaluate a dictionary: reconstruction (FVU, explained variance), sparsity (L0, dead / dense fractions)
and faithfulness with the dictionary spliced into the model (CE-loss recovered, KL to the clean logits,
against a zero-ablation baseline), for SAEs and transcoders alike.

CE-loss recovered = (CE_zero - CE_spliced) / (CE_zero - CE_clean) (Bricken et al. 2023; Gao et al. 2024
use the same normalisation). The BOS position is never spliced: dictionaries are trained without it.
g-SAEs select latents with the LM gradient, so they are evaluated with the clean run's gradients.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor
from transformer_lens import HookedTransformer

from sae_training.activations.model_source import activations_with_gradients, check_hook, flatten_activation
from sae_training.config import ConfigError


@dataclass
class EvalResult:
    """Scores of one dictionary on held-out text."""

    dictionary_id: str
    """model__hook__run (from the dictionary's metadata)."""
    model: str
    """Model it was evaluated in."""
    hook: str
    """Input hook."""
    hook_out: str | None
    """Output hook (transcoders) or None."""
    n_tokens: int
    """Evaluated tokens (BOS excluded)."""
    fvu: float
    """Fraction of variance unexplained: sum ||x - x_hat||^2 / sum ||x - mean||^2."""
    explained_variance: float
    """1 - FVU."""
    l0: float
    """Mean active latents per token."""
    dead_fraction: float
    """Latents that never fired on the evaluated tokens."""
    dense_fraction: float
    """Latents firing on more than dense_threshold of the tokens."""
    ce_clean: float
    """LM loss of the unmodified model."""
    ce_spliced: float
    """LM loss with the dictionary's output in place of the activation."""
    ce_zero_ablation: float
    """LM loss with the activation zeroed (the baseline)."""
    ce_loss_recovered: float
    """(CE_zero - CE_spliced) / (CE_zero - CE_clean); 1 is perfect."""
    kl_spliced: float
    """Mean KL(clean || spliced) of the next-token distributions."""
    kl_zero_ablation: float
    """Mean KL(clean || zero-ablated)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _meta(sae) -> dict[str, Any]:
    md = sae.cfg.metadata
    hook = md.get("hook_name")
    if not hook:
        raise ConfigError("the dictionary's metadata names no hook_name: cannot tell where to splice it")
    return {
        "hook": hook,
        "hook_out": md.get("hook_name_out"),
        "head": md.get("hook_head_index"),
        "id": md.get("dictionary_id") or f"{md.get('model_name')}__{hook}",
        "model": md.get("model_name"),
    }


def _flat(act: Tensor, head: int | None) -> Tensor:
    return flatten_activation(act, "", head)


@torch.no_grad()
def evaluate(
    sae,
    model: HookedTransformer,
    tokens: Int[Tensor, "n_contexts pos"],
    *,
    batch_size: int = 16,
    dense_threshold: float = 0.1,
) -> EvalResult:
    """Score ``sae`` (an sae-lens inference SAE or transcoder) inside ``model`` on ``tokens``."""
    m = _meta(sae)
    hook, hook_out = m["hook"], m["hook_out"]
    check_hook(model, hook)
    if hook_out:
        check_hook(model, hook_out)
    uses_grad = hasattr(sae, "encode_with_gradient")
    # We hand the dictionary flat [n, n_heads * d_head] rows ourselves, so sae-lens's own hook_z reshaping
    # (which expects [..., n_heads, d_head]) is switched off while evaluating and restored afterwards.
    reshaping = getattr(sae, "hook_z_reshaping_mode", False)
    if reshaping:
        sae.turn_off_forward_pass_hook_z_reshaping()
    try:
        return _evaluate(sae, model, tokens, m, uses_grad, batch_size, dense_threshold)
    finally:
        if reshaping:
            sae.turn_on_forward_pass_hook_z_reshaping()


def _evaluate(sae, model, tokens, m, uses_grad, batch_size, dense_threshold) -> EvalResult:
    hook, hook_out, head = m["hook"], m["hook_out"], m["head"]
    device = next(sae.parameters()).device
    d_sae = sae.cfg.d_sae
    fires = torch.zeros(d_sae, dtype=torch.float64, device=device)
    sums = torch.zeros(5, dtype=torch.float64)  # err, sum x^2, n, nnz, ...
    target_sum = None
    ce = torch.zeros(3, dtype=torch.float64)
    kl = torch.zeros(2, dtype=torch.float64)
    n_positions = 0

    for start in range(0, tokens.shape[0], batch_size):
        batch = tokens[start : start + batch_size].to(model.cfg.device)
        grad = None
        if uses_grad:
            _, grads = activations_with_gradients(model, batch, [hook], head)
            grad = grads[hook]
        stash: dict[str, Tensor] = {}

        def dictionary_output(x_in: Tensor) -> tuple[Tensor, Tensor]:
            """(reconstruction, feature activations) for flat [n, d_in] inputs."""
            if grad is not None:  # noqa: B023 - the closures run inside this iteration only
                acts = sae.encode_with_gradient(x_in, grad.to(x_in.dtype))  # noqa: B023
                out = sae.decode(acts)
            else:
                acts = sae.encode(x_in)
                out = sae.forward(x_in) if hook_out else sae.decode(acts)
            return out, acts

        def record(x_in: Tensor, target: Tensor) -> Tensor:
            out, acts = dictionary_output(x_in)
            nonlocal target_sum
            err = (out - target).double().pow(2).sum()
            sums[0] += err.cpu()
            sums[1] += target.double().pow(2).sum().cpu()
            sums[2] += target.shape[0]
            active = acts != 0
            sums[3] += active.sum().cpu()
            fires.add_(active.sum(0).double())
            ts = target.double().sum(0).cpu()
            target_sum = ts if target_sum is None else target_sum + ts
            return out

        def splice_sae(act: Tensor, hook) -> Tensor:
            x = _flat(act, head)[:, 1:]
            b, p, d = x.shape
            out = record(x.reshape(-1, d), x.reshape(-1, d)).reshape(b, p, d).to(act.dtype)
            new = act.clone()
            if act.ndim == 4 and head is not None:
                new[:, 1:, head, :] = out
            elif act.ndim == 4:
                new[:, 1:] = out.reshape(b, p, act.shape[2], act.shape[3])
            else:
                new[:, 1:] = out
            return new

        def capture_in(act: Tensor, hook) -> Tensor:
            stash["in"] = act  # noqa: B023
            return act

        def splice_transcoder(act: Tensor, hook) -> Tensor:
            x_in = stash["in"][:, 1:]  # noqa: B023
            b, p, d = x_in.shape
            out = record(x_in.reshape(-1, d), act[:, 1:].reshape(b * p, -1)).reshape(b, p, -1).to(act.dtype)
            new = act.clone()
            new[:, 1:] = out
            return new

        def zero(act: Tensor, hook) -> Tensor:
            new = act.clone()
            if act.ndim == 4 and head is not None:
                new[:, 1:, head, :] = 0
            else:
                new[:, 1:] = 0
            return new

        if hook_out:
            splice_hooks = [(hook, capture_in), (hook_out, splice_transcoder)]
            zero_hooks = [(hook_out, zero)]
        else:
            splice_hooks = [(hook, splice_sae)]
            zero_hooks = [(hook, zero)]
        clean_logits = model(batch)
        spliced_logits = model.run_with_hooks(batch, fwd_hooks=splice_hooks)
        zero_logits = model.run_with_hooks(batch, fwd_hooks=zero_hooks)
        for i, logits in enumerate((clean_logits, spliced_logits, zero_logits)):
            lp = logits[:, :-1].log_softmax(-1)
            ce[i] += -lp.gather(-1, batch[:, 1:, None]).sum().double().cpu()
        clean_lp = clean_logits.log_softmax(-1)
        for i, logits in enumerate((spliced_logits, zero_logits)):
            kl[i] += (
                F.kl_div(logits.log_softmax(-1), clean_lp, log_target=True, reduction="sum").double().cpu()
            )
        n_positions += batch.shape[0] * (batch.shape[1] - 1)

    n = float(sums[2])
    variance = float(sums[1]) - float((target_sum**2).sum()) / n
    fvu = float(sums[0]) / max(variance, 1e-12)
    freq = fires / n
    ce_clean, ce_spliced, ce_zero = (float(c) / n_positions for c in ce)
    n_kl = tokens.shape[0] * tokens.shape[1]
    return EvalResult(
        dictionary_id=m["id"],
        model=m["model"] or "",
        hook=hook,
        hook_out=hook_out,
        n_tokens=int(n),
        fvu=fvu,
        explained_variance=1 - fvu,
        l0=float(sums[3]) / n,
        dead_fraction=float((freq == 0).double().mean()),
        dense_fraction=float((freq > dense_threshold).double().mean()),
        ce_clean=ce_clean,
        ce_spliced=ce_spliced,
        ce_zero_ablation=ce_zero,
        ce_loss_recovered=(ce_zero - ce_spliced) / (ce_zero - ce_clean)
        if ce_zero != ce_clean
        else float("nan"),
        kl_spliced=float(kl[0]) / n_kl,
        kl_zero_ablation=float(kl[1]) / n_kl,
    )


def format_table(result: EvalResult) -> str:
    """A two-column text table for the terminal."""
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in result.to_dict().items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
