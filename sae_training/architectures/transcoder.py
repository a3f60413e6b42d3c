"""TopK transcoders and skip-transcoders (Dunefsky et al. 2024, "Transcoders Find Interpretable LLM Feature
Circuits"; skip connection: Paulo et al. 2025, "Transcoders Beat Sparse Autoencoders for
Interpretability").

A transcoder reads the MLP's input (``blocks.L.ln2.hook_normalized``) and reconstructs the MLP's output
(``blocks.L.hook_mlp_out``) through a wide sparse layer; a skip-transcoder adds a linear map
``W_skip x``. sae-lens can load transcoders (``Transcoder``, ``SkipTranscoder``) but not train them, and
its classes use a ReLU (or JumpReLU) encoder, which computes a different function from a TopK one. So we
register sae-lens's classes with a TopK activation under names that tell a plain sae-lens user what is
missing (``TOPK_TRANSCODER``): loading one without ``import sae_training`` fails in sae-lens's registry
with ``KeyError: 'topk_transcoder (needs `import sae_training`)'`` rather than a bare unknown name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from sae_lens.saes.topk_sae import TopK
from sae_lens.saes.transcoder import SkipTranscoder, SkipTranscoderConfig, Transcoder, TranscoderConfig
from torch import Tensor, nn

from sae_training.architectures.base import (
    SparseCoderTrainingConfig,
    SparseCoderTrainingSAE,
    geometric_median,
)
from sae_training.architectures.registry import register_architecture
from sae_training.architectures.sparse_ops import SparseCode, sparse_decode

TOPK_TRANSCODER = "topk_transcoder (needs `import sae_training`)"
"""Inference architecture name of a TopK transcoder (cfg.json ``architecture``)."""
TOPK_SKIP_TRANSCODER = "topk_skip_transcoder (needs `import sae_training`)"
"""Inference architecture name of a TopK skip-transcoder."""
LEGACY_NAMES = {TOPK_TRANSCODER: "topk_transcoder", TOPK_SKIP_TRANSCODER: "topk_skip_transcoder"}
"""The names earlier versions saved under (still loadable after ``import sae_training``)."""


@dataclass
class TranscoderTrainingConfig(SparseCoderTrainingConfig):
    """TopK transcoder training config."""

    d_out: int = 0
    """Width of the target activation (the MLP output)."""
    apply_b_dec_to_input: bool = False
    """Transcoders subtract nothing from their input (their b_dec lives in the output space)."""

    center_input: bool = True
    """Start b_enc at -c W_enc with c the geometric median (or mean, as --b-dec-init) of the inputs: the
    encoder then sees centred inputs at init, as Dunefsky et al.'s transcoders do with an input-side b_dec
    at the inputs' geometric median. Folded into b_enc, so the saved function is still sae-lens's
    Transcoder (no input bias). False: b_enc starts at 0 and latents whose direction opposes the inputs'
    mean start (and often stay) silent."""

    reads_target: ClassVar[bool] = True
    options: ClassVar[tuple[str, ...]] = ("center_input",)

    @classmethod
    def architecture(cls) -> str:
        return "ck_transcoder"

    @classmethod
    def inference_architecture(cls) -> str:
        return TOPK_TRANSCODER


@dataclass
class SkipTranscoderTrainingConfig(TranscoderTrainingConfig):
    """TopK skip-transcoder training config."""

    @classmethod
    def architecture(cls) -> str:
        return "ck_skip_transcoder"

    @classmethod
    def inference_architecture(cls) -> str:
        return TOPK_SKIP_TRANSCODER


class TranscoderTrainer(SparseCoderTrainingSAE):
    """Sparse MLP replacement: encode the MLP input, decode to the MLP output."""

    cfg: TranscoderTrainingConfig

    def __init__(self, cfg: TranscoderTrainingConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)

    @torch.no_grad()
    def init_biases(self, x: Tensor, target: Tensor, method: str = "geometric_median") -> None:
        """b_dec at the target's geometric median (or mean); with ``center_input``, b_enc = -c W_enc for
        the inputs' c (Dunefsky et al. 2024 subtract an input-side b_dec initialised there)."""
        super().init_biases(x, target, method)
        if self.cfg.center_input:
            data = x.to(self.dtype)
            center = geometric_median(data) if method == "geometric_median" else data.mean(0)
            self.b_enc.data.copy_(-(center @ self.W_enc))


class SkipTranscoderTrainer(TranscoderTrainer):
    """Transcoder plus a dense linear skip ``x @ W_skip.T`` (zero-initialised, as in sae-lens)."""

    def __init__(self, cfg: SkipTranscoderTrainingConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)
        self.W_skip = nn.Parameter(torch.zeros(cfg.d_out, cfg.d_in, dtype=self.dtype, device=self.device))

    def reconstruct(self, code: SparseCode, x: Tensor) -> Tensor:
        return sparse_decode(code, self.W_dec, self.b_dec) + x @ self.W_skip.T

    def inference_state_keys(self) -> list[str]:
        return [*super().inference_state_keys(), "W_skip"]


@dataclass
class TopKTranscoderConfig(TranscoderConfig):
    """Inference config of a TopK transcoder."""

    k: int = 32
    """Active latents per token."""

    @classmethod
    def architecture(cls) -> str:
        return TOPK_TRANSCODER


class TopKTranscoder(Transcoder):
    """sae-lens ``Transcoder`` with a TopK activation."""

    cfg: TopKTranscoderConfig  # type: ignore[assignment]

    def __init__(self, cfg: TopKTranscoderConfig):
        super().__init__(cfg)

    def get_activation_fn(self) -> Callable[[Tensor], Tensor]:
        return TopK(self.cfg.k)


@dataclass
class TopKSkipTranscoderConfig(SkipTranscoderConfig):
    """Inference config of a TopK skip-transcoder."""

    k: int = 32
    """Active latents per token."""

    @classmethod
    def architecture(cls) -> str:
        return TOPK_SKIP_TRANSCODER


class TopKSkipTranscoder(SkipTranscoder):
    """sae-lens ``SkipTranscoder`` with a TopK activation."""

    cfg: TopKSkipTranscoderConfig  # type: ignore[assignment]

    def __init__(self, cfg: TopKSkipTranscoderConfig):
        super().__init__(cfg)

    def get_activation_fn(self) -> Callable[[Tensor], Tensor]:
        return TopK(self.cfg.k)


register_architecture(
    "transcoder", TranscoderTrainer, TranscoderTrainingConfig,
    inference=(TOPK_TRANSCODER, TopKTranscoder, TopKTranscoderConfig),
)  # fmt: skip
register_architecture(
    "skip_transcoder", SkipTranscoderTrainer, SkipTranscoderTrainingConfig,
    inference=(TOPK_SKIP_TRANSCODER, TopKSkipTranscoder, TopKSkipTranscoderConfig),
)  # fmt: skip
