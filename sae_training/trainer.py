"""The training loop: data source -> dictionary step -> optimiser, with logging, checkpoints and resume.

Checkpoints (``out_dir/checkpoint/state.pt``, written atomically: temp file + rename) hold the weights,
optimiser, scheduler, step, dead-latent counters, data position and the run config; ``resume`` refuses a
checkpoint whose config differs in anything that shapes the result. Ctrl-C and SIGTERM finish the current
step, write a checkpoint and stop.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from sae_training.architectures import ARCHITECTURES, SparseCoderTrainingSAE, StepInput
from sae_training.config import ConfigError, TrainConfig, config_diff, to_yaml
from sae_training.distributed import (
    DistInfo,
    all_gather_rows,
    all_reduce_sum,
    barrier,
    init_distributed,
    shutdown,
    wrap,
)
from sae_training.runtime import keep_freed_memory

# Fields that may change between a run and its resumption without changing what it computes.
RESUMABLE_FIELDS = {"resume", "overwrite", "progress", "checkpoint_every", "log_every", "device", "out_dir",
                    "wandb", "total_tokens", "model_batch_size"}  # fmt: skip
# What a run leaves in its folder; a folder holding any of them is resumed, overwritten or refused.
RUN_FILES = ("checkpoint", "metrics.jsonl", "sae_weights.safetensors", "cfg.json")


@dataclass
class TrainResult:
    """What a run produced."""

    out_dir: Path
    """Folder holding cfg.json + sae_weights.safetensors (sae-lens format), train_config.yaml,
    metrics.jsonl."""
    dictionary_id: str
    """model__hook__run."""
    steps: int
    """Optimiser steps completed."""
    interrupted: bool
    """True if a signal stopped the run (a checkpoint was written; resume with --resume true)."""
    final_metrics: dict[str, float]
    """Last logged metrics."""


def resolve_device(device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_display_name(model_name: str) -> str:
    """Canonical zoo name for built-in models (tiny -> ck-tiny), else the last path part."""
    from circuitkit.models import zoo

    return zoo.resolve_builtin(model_name) or Path(model_name).name or model_name


def dictionary_id(cfg: TrainConfig, model_name: str) -> str:
    hook = cfg.hook + (f".h{cfg.head_index}" if cfg.head_index is not None else "")
    return f"{model_display_name(model_name)}__{hook}__{cfg.default_run_name()}"


def build_dictionary(
    cfg: TrainConfig, d_in: int, d_out: int, metadata: dict[str, Any], device: torch.device
) -> SparseCoderTrainingSAE:
    """The training module for ``cfg.architecture`` (an sae-lens ``TrainingSAE``)."""
    trainer_cls, config_cls = ARCHITECTURES[cfg.architecture]
    kw: dict[str, Any] = {
        "d_in": d_in, "d_sae": cfg.width, "k": cfg.k, "aux_k": cfg.aux_k,
        "aux_coefficient": cfg.aux_coefficient,
        "dtype": cfg.dtype, "device": str(device),
    }  # fmt: skip
    if cfg.is_transcoder:
        kw["d_out"] = d_out
    elif d_out != d_in:
        raise ConfigError(f"d_in mismatch: input width {d_in} != target width {d_out} for a non-transcoder")
    kw.update(copy.deepcopy(cfg.architecture_config))  # the architecture's own options (its config's fields)
    if cfg.hook.endswith("attn.hook_z") and cfg.head_index is None:
        kw["reshape_activations"] = "hook_z"
    sae_cfg = config_cls(**kw)
    from sae_lens.saes.sae import SAEMetadata

    sae_cfg.metadata = SAEMetadata(**metadata)
    torch.manual_seed(cfg.seed)
    sae = trainer_cls(sae_cfg)
    return sae.to(device)


def resample_due(step: int, cfg: TrainConfig) -> bool:
    """Resample after ``step`` optimiser steps: every ``resample_every``, until the lr decay starts."""
    if not cfg.resample_every or step % cfg.resample_every:
        return False
    return step < int(cfg.n_steps * (1 - cfg.lr_decay_fraction))


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, constant, then linear decay to zero over the last ``lr_decay_fraction`` of steps."""
    n = cfg.n_steps
    warm = min(1.0, (step + 1) / max(1, cfg.lr_warmup_steps))
    decay_start = int(n * (1 - cfg.lr_decay_fraction))
    if step < decay_start or cfg.lr_decay_fraction == 0:
        return warm
    return warm * max(0.0, (n - step) / max(1, n - decay_start))


def make_source(cfg: TrainConfig, model, info: DistInfo, device: torch.device):
    """The activation source the config names (disk cache or on-the-fly buffer)."""
    from sae_training.activations import CachedActivations, ShufflingBuffer

    local_batch = cfg.batch_size // info.world_size
    if cfg.cache_dir:
        return CachedActivations(
            cfg.cache_dir, cfg.hook, target_hook=cfg.target_hook, head_index=cfg.head_index,
            with_gradients=cfg.needs_gradients, batch_size=cfg.batch_size, seed=cfg.seed,
            rank=info.rank, world_size=info.world_size, device=device,
        )  # fmt: skip
    return ShufflingBuffer(
        model, cfg.hook, target_hook=cfg.target_hook, head_index=cfg.head_index,
        with_gradients=cfg.needs_gradients, text=cfg.text, text_column=cfg.text_column,
        context_size=cfg.context_size, model_batch_size=cfg.model_batch_size,
        buffer_tokens=cfg.buffer_tokens // info.world_size, batch_size=local_batch,
        seed=cfg.seed, device=device, lean_forward=cfg.lean_forward,
        total_rows=cfg.n_steps * local_batch, rank=info.rank, world_size=info.world_size,
    )  # fmt: skip


def check_against_model(cfg: TrainConfig, model, source_d_in: int | None = None) -> tuple[int, int]:
    """Hook existence and widths, before any training: returns (d_in, d_out)."""
    from sae_training.activations.model_source import hook_width

    d_in = hook_width(model, cfg.hook, cfg.head_index)
    if cfg.head_index is not None and not 0 <= cfg.head_index < model.cfg.n_heads:
        raise ConfigError(
            f"head_index {cfg.head_index} out of range: the model has {model.cfg.n_heads} heads per layer"
        )
    d_out = hook_width(model, cfg.target_hook) if cfg.target_hook else d_in
    if source_d_in is not None and source_d_in != d_in:
        raise ConfigError(
            f"d_in mismatch: the cache has width {source_d_in} for {cfg.hook} but the model's hook "
            f"has {d_in}; "
            "was the cache written from another model?"
        )
    return d_in, d_out


class _StopFlag:
    """Set by SIGINT/SIGTERM; the loop checks it after every step."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            # Outside the main thread signals cannot be caught; the run then simply has no handler.
            with contextlib.suppress(ValueError):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a crash mid-write never leaves a half checkpoint


CHECKPOINT_KEYS = ("sae", "optimizer", "scheduler", "step", "tokens_since_fired", "source", "rng", "config")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by ``save_checkpoint``, loaded without running pickled code
    (``weights_only=True``); a damaged or foreign file is one ConfigError naming it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for bad files
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"checkpoint {path} cannot be read ({reason}): it is damaged or not a sae_training checkpoint; "
            "start over with --overwrite true or train into another --out-dir"
        ) from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ConfigError(
            f"checkpoint {path} is not a sae_training checkpoint (missing {', '.join(missing)}); start "
            "over with --overwrite true or train into another --out-dir"
        )
    return state


def prepare_run_dir(
    out_dir: Path, ckpt_path: Path, cfg: TrainConfig, info: DistInfo
) -> dict[str, Any] | None:
    """Refuse to destroy an earlier run: a folder holding one is resumed (the checkpoint, loaded and
    checked against ``cfg``), overwritten (``--overwrite``: its run files deleted) or refused."""
    existing = [name for name in RUN_FILES if (out_dir / name).exists()]
    if cfg.resume:
        if not ckpt_path.is_file():
            others = sorted(p.name for p in ckpt_path.parent.glob("state*.pt"))
            if others:
                # state.pt is one process's, state_rank{r}.pt a DDP job's: the world size changed.
                written_by = sum(name.startswith("state_rank") for name in others) or 1
                raise ConfigError(
                    f"--resume refused: {ckpt_path.parent} holds a checkpoint of {written_by} process(es) "
                    f"({', '.join(others)}) and this run has {info.world_size} (world size); resume with "
                    f"the same number of processes (torchrun --nproc_per_node {written_by})"
                )
            raise ConfigError(f"--resume: no checkpoint at {ckpt_path}; start without --resume")
        resumed = load_checkpoint(ckpt_path)
        diff = config_diff(resumed["config"], asdict(cfg), RESUMABLE_FIELDS)
        if diff:
            raise ConfigError(
                "--resume refused: the checkpoint was written with a different config:\n  "
                + "\n  ".join(diff)
                + "\nrun with the checkpoint's values or into a fresh out_dir"
            )
        saved_world = int(resumed.get("world_size", 1))
        if saved_world != info.world_size:
            raise ConfigError(
                f"--resume refused: the checkpoint was written by {saved_world} process(es) and this run "
                f"has {info.world_size} (world size); resume with --nproc_per_node {saved_world}"
            )
        return resumed
    if existing and not cfg.overwrite:
        raise ConfigError(
            f"--out-dir {out_dir} already holds a run ({', '.join(existing)}): continue it with --resume "
            "true, start over with --overwrite true, or pick another --out-dir"
        )
    if existing:
        barrier(info)  # every rank has looked before rank 0 deletes
        if info.is_main:
            for name in existing:
                target = out_dir / name
                shutil.rmtree(target) if target.is_dir() else target.unlink()
        barrier(info)
    return None


def truncate_metrics(path: Path, step: int) -> None:
    """Keep the metrics lines of steps <= ``step`` (the checkpoint's): after a kill, the lines logged
    since the last checkpoint are written again by the resumed run, so the log stays one line per step,
    in order. A torn last line (killed mid-write) is dropped too."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("step", step + 1) <= step:
            kept.append(line)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


def train(cfg: TrainConfig, *, model=None, stop_after_steps: int | None = None) -> TrainResult:
    """Train one dictionary as configured; returns where it was saved.

    ``stop_after_steps`` stops early as a signal would (checkpoint, no final save): for tests and for
    splitting a long run.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    # A process group the caller set up stays theirs: only one created here is destroyed at the end
    # (re-creating a group in the same torchrun process is racy).
    owns_group = not torch.distributed.is_initialized()
    info = init_distributed(device)
    if info.enabled and cfg.batch_size % info.world_size:
        raise ConfigError(f"batch_size {cfg.batch_size} must divide evenly among {info.world_size} processes")
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)  # the GPU init_distributed bound
    if device.type == "cpu":
        keep_freed_memory()

    meta_model = cfg.model
    source_d_in = None
    if cfg.cache_dir:
        from sae_training.activations import read_meta

        cache_meta = read_meta(cfg.cache_dir)
        meta_model = cache_meta["model"]
        if cfg.hook not in cache_meta["hooks"]:
            raise ConfigError(
                f"hook {cfg.hook!r} is not in the cache (it holds {cache_meta['hooks']}); re-run "
                "`cache` with it"
            )
        if cfg.target_hook and cfg.target_hook not in cache_meta["hooks"]:
            raise ConfigError(
                f"target_hook {cfg.target_hook!r} is not in the cache (it holds {cache_meta['hooks']})"
            )
        if cfg.needs_gradients and not cache_meta["with_gradients"]:
            raise ConfigError(
                f"{cfg.architecture} needs gradients but cache {cfg.cache_dir} has none: re-run `cache` with "
                "--with-gradients true"
            )
        width = cache_meta["widths"][cfg.hook]
        source_d_in = width // cache_meta["n_heads"] if cfg.head_index is not None else width

    # The run folder is settled (resume, overwrite or refuse) before the model is loaded: a refused
    # command costs nothing.
    dict_id = dictionary_id(cfg, meta_model)
    out_dir = Path(cfg.out_dir or Path("runs/sae") / dict_id)
    ckpt_path = out_dir / "checkpoint" / ("state.pt" if not info.enabled else f"state_rank{info.rank}.pt")
    resumed = prepare_run_dir(out_dir, ckpt_path, cfg, info)

    if model is None:
        from circuitkit.models import load_model

        model = load_model(meta_model, device=device)
    d_in, d_out = check_against_model(cfg, model, source_d_in)

    metadata = {
        "model_name": model_display_name(meta_model), "hook_name": cfg.hook,
        "hook_head_index": cfg.head_index,
        "hook_name_out": cfg.target_hook, "context_size": cfg.context_size, "prepend_bos": True,
        "dictionary_id": dict_id, "circuitkit_architecture": cfg.architecture, "skips_bos": True,
    }  # fmt: skip
    sae = build_dictionary(cfg, d_in, d_out, metadata, device)
    sae.dist_info = info  # batch-level selections and loss statistics over the global batch
    source = make_source(cfg, model, info, device)
    step_module = wrap(sae, info, device)
    # The fused kernel updates every parameter in one pass (about 5x faster than the per-tensor loop on
    # CPU); same Adam arithmetic.
    optimizer = torch.optim.Adam(
        sae.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
        fused=device.type in ("cpu", "cuda"),
    )  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    tokens_since_fired = torch.zeros(cfg.width, dtype=torch.long, device=device)
    step = 0
    if resumed is not None:
        sae.load_state_dict(resumed["sae"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        step = resumed["step"]
        tokens_since_fired = resumed["tokens_since_fired"].to(device)
        source.load_state_dict(resumed["source"])
        torch.set_rng_state(resumed["rng"])

    metrics_file = out_dir / "metrics.jsonl"
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "train_config.yaml").write_text(to_yaml(cfg))
        if resumed is not None:
            truncate_metrics(metrics_file, step)
        if cfg.progress:
            print(f"resolved config for {dict_id}:\n{to_yaml(cfg)}", flush=True)
    wandb_run = _init_wandb(cfg, dict_id) if (cfg.wandb and info.is_main) else None

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, {
            "sae": sae.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "step": step, "tokens_since_fired": tokens_since_fired.cpu(), "source": source.state_dict(),
            "rng": torch.get_rng_state(), "config": asdict(cfg), "world_size": info.world_size,
        })  # fmt: skip

    bar = tqdm(
        total=cfg.n_steps,
        initial=step,
        disable=not (cfg.progress and info.is_main),
        unit="step",
        desc=dict_id,
    )
    last: dict[str, float] = {}
    interrupted = False
    t0, tokens_at_t0 = time.perf_counter(), step * cfg.batch_size
    with _StopFlag() as stop:
        while step < cfg.n_steps:
            batch = source.next_batch()
            if step == 0 and resumed is None:
                init_target = batch.target if batch.target is not None else batch.x
                init_x = all_gather_rows(batch.x, info)
                if cfg.b_dec_init != "zeros":
                    sae.init_biases(init_x, all_gather_rows(init_target, info), cfg.b_dec_init)
                # After b_pre is set (the fit centres on it); every rank sees the same gathered rows, so
                # the fit is local (no collectives inside the selection).
                sae.dist_info = None
                sae.fit_encoder_scale(init_x)
                sae.dist_info = info
            dead = tokens_since_fired >= cfg.dead_tokens
            step_in = StepInput(batch.x, dead, step, target=batch.target, grad=batch.grad, seed=cfg.seed)
            sae.train()
            out = step_module(step_in)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            sae.remove_parallel_decoder_grad()
            optimizer.step()
            scheduler.step()
            sae.normalize_decoder()
            with torch.no_grad():
                # Selected with activation 0 (ReLU of a non-positive pre-activation) is not firing.
                fired = torch.bincount(out.code.cols[out.code.acts.detach() != 0], minlength=cfg.width)
                fired = all_reduce_sum(fired, info) > 0
                tokens_since_fired += cfg.batch_size
                tokens_since_fired[fired] = 0
            step += 1
            if resample_due(step, cfg):
                # Every process resamples from the gathered batch with the same generator: identical.
                target = batch.target if batch.target is not None else batch.x
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
                n = sae.resample_dead(
                    tokens_since_fired >= cfg.dead_tokens, all_gather_rows(batch.x, info),
                    all_gather_rows(target, info), optimizer, gen,
                )  # fmt: skip
                if n:
                    tokens_since_fired[:] = torch.where(
                        tokens_since_fired >= cfg.dead_tokens, 0, tokens_since_fired
                    )
            # On the training device: NCCL all-reduces CUDA tensors only.
            stop_now = torch.tensor(
                [1 if stop.signum is not None or step == stop_after_steps else 0], device=device
            )
            stop_now = bool(all_reduce_sum(stop_now, info).item())
            if step % cfg.log_every == 0 or step == cfg.n_steps or stop_now:
                last = _step_metrics(out, sae, dead, step, cfg, optimizer, t0, tokens_at_t0, info)
                if info.is_main:
                    with metrics_file.open("a") as f:
                        f.write(json.dumps(last) + "\n")
                    bar.set_postfix({"tok/s": f"{last['tokens_per_s']:.0f}", "loss": f"{last['loss']:.3g}",
                                     "L0": f"{last['l0']:.1f}", "FVU": f"{last['fvu']:.3f}",
                                     "dead%": f"{100 * last['dead_fraction']:.1f}"})  # fmt: skip
                    if wandb_run is not None:
                        wandb_run.log(last, step=step)
            bar.update(1)
            if stop_now:
                interrupted = True
                break
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.n_steps:
                checkpoint()
    bar.close()
    checkpoint()
    barrier(info)
    if not interrupted and info.is_main:
        sae.save_inference_model(out_dir)
    if interrupted and info.is_main:
        print(
            f"stopped at step {step}/{cfg.n_steps}; checkpoint at {ckpt_path} (continue with --resume true)",
            flush=True,
        )
    if wandb_run is not None:
        wandb_run.finish()
    barrier(info)
    if owns_group:
        shutdown(info)
    return TrainResult(out_dir, dict_id, step, interrupted, last)


def _step_metrics(out, sae, dead, step, cfg, optimizer, t0, tokens_at_t0, info) -> dict[str, float]:
    """Loss parts, L0, FVU, dead fraction and speed for the current batch (summed over DDP processes)."""
    with torch.no_grad():
        err = (out.sae_out - out.target).pow(2).sum()
        var = (out.target - out.target.mean(0)).pow(2).sum()
        n = torch.tensor(float(out.code.n_tokens), device=err.device)
        nnz = (out.code.acts.detach() != 0).sum().to(err.dtype)  # L0: latents that fired, not selected
        packed = all_reduce_sum(torch.stack([err, var, n, nnz]).double(), info)
        tokens = (step * cfg.batch_size) - tokens_at_t0
    metrics = {
        "step": step,
        "tokens": step * cfg.batch_size,
        "loss": float(out.loss.detach()),
        **{k: float(v.detach()) for k, v in out.losses.items()},
        "l0": float(packed[3] / packed[2]),
        "fvu": float(packed[0] / packed[1].clamp_min(1e-12)),
        "dead_fraction": float(dead.float().mean()),
        "lr": optimizer.param_groups[0]["lr"],
        "tokens_per_s": tokens / max(time.perf_counter() - t0, 1e-9),
    }
    return metrics


def _init_wandb(cfg: TrainConfig, dict_id: str):
    try:
        import wandb
    except ImportError as exc:
        raise ConfigError("wandb=true needs `pip install wandb` (or leave wandb off)") from exc
    return wandb.init(project="circuitkit-sae", name=dict_id, config=asdict(cfg))


def with_overrides(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    return replace(cfg, **changes)
