"""The training-side base class every circuitkit dictionary shares, built on sae-lens's ``TrainingSAE``.

Why our own training class rather than sae-lens's ``TopKTrainingSAE``: sae-lens densifies the code
(``[tokens, d_sae]``) and decodes with a dense matmul, and its backward pass runs over every latent.
Ours keeps the code sparse (``SparseCode``) so decode and the encoder's backward touch only the selected
latents (the speed levers in Gao et al. 2024 and EleutherAI sparsify), keeps decoder rows at unit norm
(Gao et al. 2024, section 2.4) instead of rescaling activations by decoder norms, and accepts the extra
inputs some architectures need (a target for transcoders, a gradient for g-SAE). The parameters keep
sae-lens's names and shapes (``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_out]``, ``b_enc``, ``b_dec``), and
``save_inference_model`` writes an inference architecture that sae-lens already has (``topk``,
``abstopk``, ``jumprelu``) or one we register, so ``sae_lens.SAE.load_from_disk`` loads the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from jaxtyping import Float
from sae_lens.registry import get_sae_class
from sae_lens.saes.sae import (
    SAEConfig,
    TrainCoefficientConfig,
    TrainingSAE,
    TrainingSAEConfig,
    TrainStepInput,
    TrainStepOutput,
)
from torch import Tensor, nn

from sae_training.architectures.sparse_ops import (
    SparseCode,
    gather_pre_activations,
    per_token_topk,
    sparse_decode,
)
from sae_training.distributed import DistInfo, global_batch_variance


@dataclass
class SparseCoderTrainingConfig(TrainingSAEConfig):
    """Fields every circuitkit dictionary shares (on top of sae-lens's ``d_in``, ``d_sae``, ``dtype``...)."""

    k: int = 32
    """Active latents per token (the average per token for Mutual / Feature Choice)."""
    rescale_acts_by_decoder_norm: bool = False
    """Kept False: decoder rows stay at unit norm, so there is nothing to rescale (sae-lens inference
    field)."""
    aux_k: int | None = None
    """Dead latents used by the auxiliary loss per token (None: d_in // 2, Gao et al. 2024 appendix B.1)."""
    aux_coefficient: float = 1 / 32
    """Weight of the auxiliary (AuxK) loss, alpha in Gao et al. 2024 (on their normalised MSE, see
    ``aux_reconstruction_loss``)."""
    decoder_init_norm: float | None = 1.0
    """Decoder rows start (and stay) at unit norm."""
    fit_encoder_scale: bool = True
    """Scale the tied encoder (W_enc = s * W_dec^T) so the first batch's initial reconstruction has the
    least-squares scale (see ``fit_encoder_scale``). False keeps s = 1 (plain tied init)."""

    options: ClassVar[tuple[str, ...]] = ()
    """This architecture's own fields that a run sets (the run config's nested ``architecture_config``,
    ``--<architecture>.<option>`` on the command line); the other fields come from the shared run config."""
    reads_target: ClassVar[bool] = False
    """True for transcoders: the dictionary reconstructs ``target_hook``, not its input."""
    needs_gradients: ClassVar[bool] = False
    """True when training needs dL/d(input) per token (g-SAE)."""

    @classmethod
    def check_options(cls, options: dict[str, Any], width: int, k: int) -> str | None:
        """What is wrong with these option values for this width and k (a message naming the fix), or
        None. Called before any work, by the run config's ``validate``."""
        return None

    @classmethod
    def architecture(cls) -> str:  # pragma: no cover - abstract in practice
        raise NotImplementedError

    @classmethod
    def inference_architecture(cls) -> str:
        """The sae-lens architecture the trained dictionary is saved as."""
        return "topk"

    def get_inference_config_class(self) -> type[SAEConfig]:
        return get_sae_class(self.inference_architecture())[1]

    @property
    def d_target(self) -> int:
        """Width of what the dictionary reconstructs (``d_in`` for an SAE, ``d_out`` for a transcoder)."""
        return int(getattr(self, "d_out", self.d_in))


class StepInput(TrainStepInput):
    """sae-lens's step input plus what our architectures need.

    ``target`` is the activation to reconstruct (the MLP output for transcoders; None means ``sae_in``),
    ``grad`` is dL/d(sae_in) per token (g-SAE), ``seed`` seeds per-step randomness (sampled Matryoshka
    prefixes) so a resumed run draws the same numbers.
    """

    def __init__(
        self,
        sae_in: Tensor,
        dead_neuron_mask: Tensor | None = None,
        n_training_steps: int = 0,
        target: Tensor | None = None,
        grad: Tensor | None = None,
        seed: int = 0,
    ):
        super().__init__(
            sae_in=sae_in,
            coefficients={},
            dead_neuron_mask=dead_neuron_mask,
            n_training_steps=n_training_steps,
            is_logging_step=False,
        )
        self.target = target
        self.grad = grad
        self.seed = seed


class SparseStepOutput(NamedTuple):
    """What one training step computed."""

    loss: Tensor
    """Total loss to call backward on."""
    losses: dict[str, Tensor]
    """Named parts of the loss (``mse_loss`` plus the architecture's extras)."""
    code: SparseCode
    """Selected (token, latent, activation) triples."""
    sae_out: Float[Tensor, "n_tokens d_out"]
    """Reconstruction."""
    target: Float[Tensor, "n_tokens d_out"]
    """What was reconstructed."""


class SparseCoderTrainingSAE(TrainingSAE[Any]):
    """A dictionary trained with a sparse code (see module docstring). Subclasses choose ``select``."""

    cfg: SparseCoderTrainingConfig
    b_enc: nn.Parameter

    dist_info: DistInfo | None = None
    """Set by the trainer under DDP: batch statistics (and batch-level selections) span all processes."""

    dense_aux_max_ratio: float = 4.0
    """AuxK takes the dense-on-candidates path while candidates <= this many times ``k_aux``."""

    # ---- construction -------------------------------------------------------------------------------
    def initialize_weights(self) -> None:
        d_in, d_sae, d_out = self.cfg.d_in, self.cfg.d_sae, self.cfg.d_target
        kw = {"dtype": self.dtype, "device": self.device}
        W_dec = torch.randn(d_sae, d_out, **kw)
        W_dec /= W_dec.norm(dim=-1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        if d_in == d_out:
            # Tied init (Gao et al. 2024 section 2.3): the encoder starts as the decoder's transpose.
            W_enc = W_dec.T.clone().contiguous()
        else:
            W_enc = torch.randn(d_in, d_sae, **kw)
            W_enc /= W_enc.norm(dim=0, keepdim=True)
        self.W_enc = nn.Parameter(W_enc)
        self.b_enc = nn.Parameter(torch.zeros(d_sae, **kw))
        self.b_dec = nn.Parameter(torch.zeros(d_out, **kw))

    def get_coefficients(self) -> dict[str, float | TrainCoefficientConfig]:
        return {}

    @property
    def k_aux(self) -> int:
        return self.cfg.aux_k if self.cfg.aux_k is not None else max(1, self.cfg.d_in // 2)

    # ---- the sparse path (what our trainer uses) ----------------------------------------------------
    def b_pre(self) -> Tensor:
        """The bias subtracted before encoding (``b_dec`` for SAEs; zero for transcoders)."""
        if self.cfg.apply_b_dec_to_input:
            return self.b_dec
        return self.b_dec.new_zeros(self.cfg.d_in)

    def pre_activations(self, x: Float[Tensor, "n d_in"], out: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(x - b_pre, dense pre-activations); the latter without autograd (see
        ``gather_pre_activations``), written into ``out`` if given."""
        x_centered = x - self.b_pre()
        with torch.no_grad():
            pre = torch.addmm(self.b_enc, x_centered, self.W_enc, out=out)
        return x_centered, pre

    def _pre_workspace(self, n_tokens: int) -> Tensor:
        """A [n_tokens, d_sae] buffer reused by every training step for the dense pre-activations.

        It is the largest tensor of a step; on CPU a fresh allocation of that size is a new memory
        mapping whose page faults cost about half as much as the encoder's matrix product. The training
        step reads it only during its forward pass (no backward saves it), so reuse is safe.
        """
        buf = self.__dict__.get("_pre_buffer")
        if buf is None or buf.shape[0] != n_tokens or buf.device != self.W_enc.device:
            buf = torch.empty(n_tokens, self.cfg.d_sae, dtype=self.W_enc.dtype, device=self.W_enc.device)
            self.__dict__["_pre_buffer"] = buf
        return buf

    def select(self, pre: Tensor, step: StepInput | None) -> tuple[Tensor, Tensor]:
        """(rows, cols) of the active pairs, sorted by row. Default: per-token TopK (Gao et al. 2024)."""
        return per_token_topk(pre, self.cfg.k)

    def nonlinearity(self, values: Tensor) -> Tensor:
        """Applied to the selected pre-activations (ReLU after TopK, as in Gao et al. 2024)."""
        return values.relu()

    def sparse_encode(
        self, x: Float[Tensor, "n d_in"], step: StepInput | None = None, pre_out: Tensor | None = None
    ) -> tuple[SparseCode, Tensor, Tensor]:
        """(code, x_centered, dense pre-activations); the latter written into ``pre_out`` if given."""
        x_centered, pre = self.pre_activations(x, pre_out)
        rows, cols = self.select(pre, step)
        values = gather_pre_activations(pre, x_centered, self.W_enc, self.b_enc, self.b_pre(), rows, cols)
        return SparseCode(rows, cols, self.nonlinearity(values), x.shape[0]), x_centered, pre

    def reconstruct(self, code: SparseCode, x: Tensor) -> Float[Tensor, "n d_out"]:
        """Decode a code (``x`` is the input, used by skip connections)."""
        return sparse_decode(code, self.W_dec, self.b_dec)

    def sparse_training_step(self, step: StepInput) -> SparseStepOutput:
        """Loss for one batch: summed squared error per token, averaged over tokens, plus extras."""
        x = step.sae_in.to(self.dtype)
        target = x if step.target is None else step.target.to(self.dtype)
        code, _, pre = self.sparse_encode(x, step, self._pre_workspace(x.shape[0]))
        out = self.reconstruct(code, x)
        mse = (out - target).pow(2).sum(-1).mean()
        losses = {"mse_loss": mse, **self.extra_losses(step, code, pre, x, out, target)}
        return SparseStepOutput(sum(losses.values()), losses, code, out, target)  # type: ignore[arg-type]

    def extra_losses(
        self, step: StepInput, code: SparseCode, pre: Tensor, x: Tensor, out: Tensor, target: Tensor
    ) -> dict[str, Tensor]:
        """AuxK: the top ``k_aux`` dead latents reconstruct the (detached) residual (Gao et al. 2024)."""
        return {
            "auxiliary_reconstruction_loss": self.aux_reconstruction_loss(
                step.dead_neuron_mask, pre, x, out, target, code
            )
        }

    def aux_scores(self, pre: Tensor) -> Tensor:
        """How the auxiliary loss ranks candidate latents (pre-activation; |pre| for signed codes)."""
        return pre

    def aux_reconstruction_loss(
        self,
        candidate_mask: Tensor | None,
        pre: Float[Tensor, "n d_sae"],
        x: Float[Tensor, "n d_in"],
        out: Float[Tensor, "n d_out"],
        target: Float[Tensor, "n d_out"],
        code: SparseCode | None = None,
    ) -> Tensor:
        """AuxK (Gao et al. 2024): per token, the top ``k_aux`` candidate latents reconstruct the detached
        residual e = target - out; the loss is their normalised MSE, as in the authors' released code
        (``normalized_mse``: ||e_hat - e||^2 / ||e - mean(e)||^2), times alpha.

        The authors' main loss is itself a normalised MSE (FVU); ours is the summed squared error, i.e.
        FVU times the target's variance, so the auxiliary term is multiplied by that (detached) variance
        to keep their ratio: aux / main = alpha * NMSE_aux / FVU, whatever the activations' scale. An
        unnormalised alpha * ||e_hat - e||^2 is ~FVU times weaker, and left many latents dead.

        Pairs already in the main ``code`` are not candidates for that token: the residual is what the
        main code left over, so a latent the token already uses must not reconstruct it a second time.
        """
        n_candidates = 0 if candidate_mask is None else int(candidate_mask.sum())
        if n_candidates == 0:
            return out.new_zeros(())
        k_aux = min(self.k_aux, n_candidates)
        # Rank only the candidate columns: a masked copy of the full [n, d_sae] scores and a top-k over
        # all of them cost several times the whole TopK step when few latents are dead.
        candidates = candidate_mask.nonzero().squeeze(1)
        scores = self.aux_scores(pre.index_select(1, candidates))
        if code is not None and code.cols.numel():
            position = torch.full((self.cfg.d_sae,), -1, dtype=torch.long, device=pre.device)
            position[candidates] = torch.arange(n_candidates, device=pre.device)
            in_main = position[code.cols]
            used = in_main >= 0
            scores[code.rows[used], in_main[used]] = -torch.inf
        rows, sub_cols = per_token_topk(scores, k_aux)
        usable = scores[rows, sub_cols] > -torch.inf  # fewer than k_aux candidates left for a token
        rows, sub_cols = rows[usable], sub_cols[usable]
        if n_candidates <= self.dense_aux_max_ratio * k_aux:
            e_hat = self._aux_decode_on_candidates(x, candidates, rows, sub_cols)
        else:
            cols = candidates[sub_cols]
            values = gather_pre_activations(
                pre, x - self.b_pre(), self.W_enc, self.b_enc, self.b_pre(), rows, cols
            )
            e_hat = sparse_decode(SparseCode(rows, cols, self.nonlinearity(values), x.shape[0]), self.W_dec)
        residual = (target - out).detach()
        with torch.no_grad():  # over the global batch under DDP, so every process scales alike
            residual_var = global_batch_variance(residual, self.dist_info)
            target_var = global_batch_variance(target, self.dist_info)
        if residual_var <= 0:
            return out.new_zeros(())
        nmse = (e_hat - residual).pow(2).sum(-1).mean() / residual_var
        return self.cfg.aux_coefficient * target_var * nmse

    def _aux_decode_on_candidates(
        self, x: Tensor, candidates: Tensor, rows: Tensor, sub_cols: Tensor
    ) -> Float[Tensor, "n d_out"]:
        """The AuxK reconstruction as dense products over the candidate latents only.

        When the candidates are few (typically a small fraction of the width is dead), [n, candidates]
        matrix products run at BLAS speed and beat the gather/scatter kernels of the sparse path, whose
        cost grows with the n * k_aux selected entries (k_aux = d_in / 2 is large). Same value and
        gradients as the sparse path: unselected entries are multiplied by zero.
        """
        W_enc = self.W_enc.index_select(1, candidates)
        pre = torch.addmm(self.b_enc.index_select(0, candidates), x - self.b_pre(), W_enc)
        selected = torch.zeros_like(pre, dtype=torch.bool)
        selected[rows, sub_cols] = True
        acts = self.nonlinearity(pre) * selected
        return acts @ self.W_dec.index_select(0, candidates)

    # ---- resampling dead latents (Bricken et al. 2023) ------------------------------------------------
    @torch.no_grad()
    def resample_dead(
        self,
        dead: Tensor,
        x: Float[Tensor, "n d_in"],
        target: Float[Tensor, "n d_out"],
        optimizer: torch.optim.Optimizer | None,
        generator: torch.Generator,
    ) -> int:
        """Re-initialise the ``dead`` latents on the inputs this dictionary reconstructs worst.

        Anthropic's resampling (Bricken et al. 2023, "Towards Monosemanticity"; Dunefsky et al.'s
        transcoder code runs it too): draw tokens with probability proportional to their squared
        reconstruction error; each dead latent gets one token's normalised residual as its decoder row and
        the token's centred input as its encoder column, at the mean norm of the live columns (Anthropic
        use 0.2 x that norm under an L1 penalty; under TopK a latent must out-score live ones for a slot)
        and a bias that centres it on the batch; its Adam moments are reset. Returns how many latents were
        resampled. Same result on every DDP process when given the gathered batch and one seed.
        """
        idx = dead.nonzero().squeeze(1)
        if idx.numel() == 0 or idx.numel() == self.cfg.d_sae:
            return 0
        x = x.to(self.dtype)
        target = target.to(self.dtype)
        code, x_centered, _ = self.sparse_encode(x)
        residual = target - self.reconstruct(code, x)
        weights = residual.pow(2).sum(-1)
        if not bool((weights > 0).any()):
            return 0
        n = min(idx.numel(), int((weights > 0).sum()))
        idx = idx[:n]
        rows = torch.multinomial(weights.cpu(), n, replacement=False, generator=generator).to(x.device)
        center = x_centered.mean(0)
        enc_dirs = x_centered[rows] - center
        enc_dirs /= enc_dirs.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        dec_dirs = residual[rows] / residual[rows].norm(dim=-1, keepdim=True).clamp_min(1e-8)
        alive = torch.ones(self.cfg.d_sae, dtype=torch.bool, device=x.device)
        alive[idx] = False
        scale = self.W_enc[:, alive].norm(dim=0).mean()
        self.W_dec.data[idx] = dec_dirs
        self.W_enc.data[:, idx] = enc_dirs.T * scale
        self.b_enc.data[idx] = -(center @ self.W_enc.data[:, idx])
        if optimizer is not None:
            for param, index in (
                (self.W_dec, (idx,)),
                (self.W_enc, (slice(None), idx)),
                (self.b_enc, (idx,)),
            ):
                state = optimizer.state.get(param, {})
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        state[key][index] = 0.0
        return n

    # ---- unit-norm decoder (Gao et al. 2024 section 2.4) -------------------------------------------
    @torch.no_grad()
    def remove_parallel_decoder_grad(self) -> None:
        """Drop the gradient component along each decoder row, so a step does not change its norm."""
        if self.W_dec.grad is None:
            return
        W = self.W_dec.data
        parallel = (self.W_dec.grad * W).sum(-1, keepdim=True)
        self.W_dec.grad.sub_(parallel * W)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec.data /= self.W_dec.data.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def init_biases(self, x: Tensor, target: Tensor, method: str = "geometric_median") -> None:
        """b_dec at the geometric median (or mean) of the data (Gao et al. 2024); of the target for
        transcoders."""
        data = target.to(self.dtype)
        self.b_dec.data.copy_(geometric_median(data) if method == "geometric_median" else data.mean(0))

    @torch.no_grad()
    def fit_encoder_scale(self, x: Float[Tensor, "n d_in"]) -> float:
        """Scale a tied encoder by the s minimising ||s * W_dec^T z(x) - (x - b_pre)||^2 on ``x``.

        Gao et al. 2024 (section 2.3) start the encoder at the decoder's transpose, but with unit-norm
        rows the initial code overshoots: the k selected rows are the ones most aligned with the input,
        so their summed projections overshoot it (least-squares s = 0.57 on ck-6l's block-3 residual
        stream, width 2048, k 32), and Adam's first steps are spent shrinking the encoder. b_enc is zero
        at init and every selection rule here (TopK, |TopK|, batch choice, g-SAE scores) ranks by a
        positively homogeneous score, so scaling W_enc by s > 0 keeps the selected latents and scales
        their activations by s: the fit is exact, in closed form. (sae-lens shrinks both sides instead,
        rows at norm 0.1, Anthropic's April 2024 update; ours keeps the decoder at unit norm.) Only for
        tied SAEs (encoder = decoder^T); returns s (1.0 if skipped).
        """
        tied = self.cfg.d_in == self.cfg.d_target and self.cfg.apply_b_dec_to_input
        if not (self.cfg.fit_encoder_scale and tied):
            return 1.0
        x = x.to(self.dtype)
        code, x_centered, _ = self.sparse_encode(x)
        dictionary = sparse_decode(code, self.W_dec, torch.zeros_like(self.b_dec))
        denom = dictionary.pow(2).sum()
        if denom <= 0:  # nothing selected (e.g. all pre-activations negative): leave the init alone
            return 1.0
        s = float((dictionary * x_centered).sum() / denom)
        if s > 0:
            self.W_enc.mul_(s)
        return s

    # ---- the dense sae-lens API (inference-style calls, sae-lens's own trainer) --------------------
    def encode_with_hidden_pre(self, x: Tensor) -> tuple[Tensor, Tensor]:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        code, _, pre = self.sparse_encode(flat, None)
        dense = code.to_dense(self.cfg.d_sae)
        return dense.reshape(*shape[:-1], -1), pre.reshape(*shape[:-1], -1)

    def calculate_aux_loss(
        self, step_input: TrainStepInput, feature_acts: Tensor, hidden_pre: Tensor, sae_out: Tensor
    ) -> dict[str, Tensor]:
        x = step_input.sae_in.reshape(-1, self.cfg.d_in)
        dense = feature_acts.reshape(x.shape[0], self.cfg.d_sae)
        rows, cols = dense.nonzero().unbind(1)
        loss = self.aux_reconstruction_loss(
            step_input.dead_neuron_mask,
            hidden_pre.reshape(-1, self.cfg.d_sae),
            x,
            sae_out.reshape(x.shape[0], -1),
            x,
            SparseCode(rows, cols, dense[rows, cols], x.shape[0]),
        )
        return {"auxiliary_reconstruction_loss": loss}

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        """sae-lens's step API on top of ``sparse_training_step`` (dense feature_acts for its logging)."""
        step = (
            step_input
            if isinstance(step_input, StepInput)
            else StepInput(step_input.sae_in, step_input.dead_neuron_mask, step_input.n_training_steps)
        )
        res = self.sparse_training_step(step)
        return TrainStepOutput(
            sae_in=step.sae_in,
            sae_out=res.sae_out,
            feature_acts=res.code.to_dense(self.cfg.d_sae),
            hidden_pre=torch.zeros(0),
            loss=res.loss,
            losses=res.losses,
        )

    # ---- saving ----------------------------------------------------------------------------------
    def process_state_dict_for_saving_inference(self, state_dict: dict[str, Any]) -> None:
        """Keep only what the inference class has (training-only buffers are dropped)."""
        keep = set(self.inference_state_keys())
        for key in list(state_dict):
            if key not in keep:
                del state_dict[key]

    def inference_state_keys(self) -> list[str]:
        return ["W_enc", "b_enc", "W_dec", "b_dec"]


def geometric_median(points: Float[Tensor, "n d"], iterations: int = 20, eps: float = 1e-6) -> Tensor:
    """Weiszfeld's algorithm: the point minimising the summed Euclidean distance to ``points``."""
    median = points.mean(0)
    for _ in range(iterations):
        weights = 1.0 / (points - median).norm(dim=-1).clamp_min(eps)
        new = (weights[:, None] * points).sum(0) / weights.sum()
        if (new - median).norm() < eps * (1 + median.norm()):
            return new
        median = new
    return median
