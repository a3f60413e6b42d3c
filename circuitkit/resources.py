"""Checks a command makes before any expensive work: the device exists, the output folder takes files,
and a request's tensors fit in memory (an estimate, refused by name with the figure)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def check_device(device: str | None) -> None:
    """``--device`` names a device torch knows and that this machine has (``cuda`` without CUDA is a user
    error, not a torch traceback later)."""
    if device is None:
        return
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a device; use cpu, cuda, cuda:1, mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: this machine has no CUDA device; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s); use cuda:0 .. "
                f"cuda:{torch.cuda.device_count() - 1}"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available here; use --device cpu")


def check_writable_folder(folder: str | Path, flag: str = "--out") -> Path:
    """Create ``folder`` if needed and prove a file can be written there (then removed); raise a one-line
    ``ValueError`` naming ``flag`` otherwise. Call it before computing what will be written."""
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {folder} is a file, not a folder; give a folder for the result files")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(
            f"{flag} {folder} cannot hold files ({exc.strerror}); give a writable folder"
        ) from None
    return path


def available_bytes(device: str | torch.device) -> int:
    """Memory a new allocation can use on ``device``: free GPU memory, or the kernel's MemAvailable."""
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil  # not on Linux's /proc: fall back to psutil (a transformers dependency)

    return int(psutil.virtual_memory().available)


def estimate_request_bytes(cfg, n_prompts: int, seq_len: int) -> int:
    """Peak memory of running the methods on ``n_prompts`` prompt pairs of ``seq_len`` tokens, an
    estimate from the model's shape.

    Every method runs the whole batch at once: per token, the logits (``d_vocab``) and per layer the
    residual stream, attention (queries, keys, values, pattern and scores over ``seq_len``) and MLP
    activations, each in float32. Clean and corrupted runs plus one backward (gradients the same size)
    make three copies; exact patching batches several patched copies of the smaller prompts, which this
    factor also covers.
    """
    d_head = cfg.d_head * cfg.n_heads
    per_layer = 6 * cfg.d_model + 4 * d_head + 2 * (cfg.d_mlp or 0) + 2 * cfg.n_heads * seq_len
    per_token = 2 * cfg.d_vocab + cfg.n_layers * per_layer
    return 3 * 4 * n_prompts * seq_len * per_token


def check_fits(
    cfg, n_prompts: int, seq_len: int, device: str | torch.device, flag: str = "--n-prompts"
) -> None:
    """Refuse (``ValueError`` naming ``flag``, with the figures) a request estimated to need more memory
    than ``device`` has available."""
    need = estimate_request_bytes(cfg, n_prompts, seq_len)
    have = available_bytes(device)
    if need > have:
        per = max(need // max(n_prompts, 1), 1)
        raise ValueError(
            f"{flag} {n_prompts}: about {_gib(need)} would be needed ({seq_len} tokens per prompt, "
            f"{cfg.n_layers} layers, vocabulary {cfg.d_vocab}) but {_gib(have)} is available on "
            f"{torch.device(device)}; use at most --n-prompts {max(have // per, 1)}"
        )


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"
