"""g-SAE (Olmo et al. 2024, "Features that Make a Difference: Leveraging Gradients for Improved Dictionary
Learning").

A TopK SAE whose *selection* ranks latents by a_j + beta * a_j * |(W_dec grad)_j|, where a = ReLU(pre) and
grad = dL/dx is the LM loss's gradient at the hooked activation; the kept *values* are the ordinary
activations a_j. We divide the gradient by its mean per-token norm in the batch, so beta does not depend
on the loss's scale (our choice; the paper does not fix one). No public code exists; this follows the
paper's definition. Without a gradient (inference on plain activations) selection is plain TopK, so a
trained g-SAE is saved as sae-lens's own ``topk`` SAE (it loads without importing this package) with beta
in its metadata (``training_architecture_details.beta``); ``encode_with_gradient`` applies the g-SAE
selection to such a loaded ``TopKSAE``. Folders saved by earlier versions (architecture ``gsae``) still
load, as ``GradientTopKSAE``, after ``import sae_training``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
from torch import Tensor

from sae_training.architectures.base import SparseCoderTrainingConfig, SparseCoderTrainingSAE, StepInput
from sae_training.architectures.registry import register_architecture
from sae_training.architectures.sparse_ops import per_token_topk


def gradient_scores(
    pre: Float[Tensor, "n d_sae"],
    grad: Float[Tensor, "n d_in"],
    W_dec: Float[Tensor, "d_sae d_in"],
    beta: float,
) -> Float[Tensor, "n d_sae"]:
    """Selection scores a + beta * a * |W_dec grad| with the gradient normalised to unit mean norm."""
    acts = pre.relu()
    grad = grad / grad.norm(dim=-1).mean().clamp_min(1e-12)
    return acts * (1 + beta * (grad @ W_dec.T).abs())


@dataclass
class GradientTopKConfig(SparseCoderTrainingConfig):
    """g-SAE training config."""

    beta: float = 1.0
    """Weight of the gradient term in the selection score."""

    options: ClassVar[tuple[str, ...]] = ("beta",)
    needs_gradients: ClassVar[bool] = True

    @classmethod
    def check_options(cls, options: dict[str, Any], width: int, k: int) -> str | None:
        return None if options["beta"] >= 0 else f"--gsae.beta {options['beta']}: must be >= 0"

    @classmethod
    def architecture(cls) -> str:
        return "ck_gsae"

    @classmethod
    def inference_architecture(cls) -> str:
        return "topk"


def saved_beta(sae: TopKSAE) -> float:
    """beta of a g-SAE loaded from disk (its metadata), or a clear error for another TopK SAE."""
    legacy = getattr(sae.cfg, "beta", None)  # a GradientTopKSAEConfig (folders saved as ``gsae``)
    if legacy is not None:
        return float(legacy)
    details = getattr(sae.cfg.metadata, "training_architecture_details", None) or {}
    if "beta" not in details:
        raise ValueError(
            f"{getattr(sae.cfg.metadata, 'dictionary_id', 'this SAE')} was not trained as a g-SAE (no beta "
            "in its metadata's training_architecture_details): pass beta= explicitly"
        )
    return float(details["beta"])


def encode_with_gradient(
    sae: TopKSAE,
    x: Float[Tensor, "... d_in"],
    grad: Float[Tensor, "... d_in"],
    beta: float | None = None,
) -> Float[Tensor, "... d_sae"]:
    """Activations of a saved g-SAE (a sae-lens ``TopKSAE``) with the g-SAE selection: the k largest
    ``gradient_scores``, values ReLU(pre) as in training. ``beta`` defaults to the saved one."""
    beta = saved_beta(sae) if beta is None else beta
    shape = x.shape
    sae_in = sae.process_sae_in(x).reshape(-1, sae.cfg.d_in)
    pre = sae_in @ sae.W_enc + sae.b_enc
    scores = gradient_scores(pre, grad.reshape(-1, sae.cfg.d_in).to(pre.dtype), sae.W_dec, beta)
    rows, cols = per_token_topk(scores, sae.cfg.k)
    acts = torch.zeros_like(pre).index_put_((rows, cols), pre[rows, cols].relu())
    return acts.reshape(*shape[:-1], -1)


class GradientTopKTrainer(SparseCoderTrainingSAE):
    """TopK selection by activation x downstream gradient; trains on (activation, gradient) pairs."""

    def __init__(self, cfg: GradientTopKConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)

    def select(self, pre: Tensor, step: StepInput | None) -> tuple[Tensor, Tensor]:
        if step is None or step.grad is None:
            return per_token_topk(pre, self.cfg.k)
        with torch.no_grad():
            scores = gradient_scores(pre, step.grad.to(pre.dtype), self.W_dec, self.cfg.beta)
        return per_token_topk(scores, self.cfg.k)


@dataclass
class GradientTopKSAEConfig(TopKSAEConfig):
    """Inference config of a g-SAE."""

    beta: float = 1.0
    """Weight of the gradient term in the selection score."""

    @classmethod
    def architecture(cls) -> str:
        return "gsae"


class GradientTopKSAE(TopKSAE):
    """Legacy inference g-SAE (folders saved as ``gsae``): ``encode`` is plain TopK;
    ``encode_with_gradient`` selects by the g-SAE score."""

    cfg: GradientTopKSAEConfig  # type: ignore[assignment]

    def __init__(self, cfg: GradientTopKSAEConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)

    def encode_with_gradient(
        self, x: Float[Tensor, "... d_in"], grad: Float[Tensor, "... d_in"]
    ) -> Float[Tensor, "... d_sae"]:
        """Activations with the g-SAE selection (values are ReLU(pre), as in training)."""
        return encode_with_gradient(self, x, grad, self.cfg.beta)


# "gsae" is the name earlier versions saved inference folders under: they still load.
register_architecture(
    "gsae",
    GradientTopKTrainer,
    GradientTopKConfig,
    inference=("gsae", GradientTopKSAE, GradientTopKSAEConfig),
)
