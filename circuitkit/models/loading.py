"""``load_model``: one entry point for built-in toy models, TransformerLens pretrained names and folders."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
from transformer_lens import HookedTransformer

from circuitkit.models import zoo


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says what was tried and how to provide the weights."""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _hub_reachable(host: str = "huggingface.co", timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _pretrained_repo(name: str) -> str | None:
    """The Hugging Face repo behind a TransformerLens pretrained name, or None if it is not one."""
    from transformer_lens import loading_from_pretrained as lfp

    try:
        return lfp.get_official_model_name(name)
    except ValueError:
        return None


def _is_cached(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo, "config.json")
    return isinstance(hit, str)


def load_model(name_or_path: str | Path, device: str | torch.device | None = None) -> HookedTransformer:
    """Load a HookedTransformer in eval mode.

    Resolution order:
      1. a built-in toy model (``ck-tiny``, ``ck-6l``; aliases ``tiny``, ``default``);
      2. a local model folder as written by ``circuitkit zoo train`` (``model.safetensors`` +
         ``config.json`` + ``tokenizer/``);
      3. a TransformerLens pretrained name (``gpt2``, ``pythia-70m``, ``attn-only-4l``, ...), from the
         Hugging Face cache, or downloaded when the hub is reachable.
    Fails at once with :class:`ModelLoadError` when none applies or the weights are unreachable.
    """
    device = torch.device(device) if device is not None else default_device()
    name = str(name_or_path)
    builtin = zoo.resolve_builtin(name)
    if builtin is not None:
        path = zoo.builtin_dir(builtin)
        if not zoo.is_model_dir(path):
            raise ModelLoadError(
                f"built-in model {builtin!r} has no weights at {path}; the checkout may be incomplete. "
                f"Re-create them with `circuitkit zoo train {builtin}`."
            )
        return zoo.read_model_dir(path, device)

    path = Path(name).expanduser()
    if path.is_dir():
        if zoo.is_model_dir(path):
            return zoo.read_model_dir(path, device)
        raise ModelLoadError(
            f"{path} is a folder but not a circuitkit model folder (it needs model.safetensors, "
            "config.json and tokenizer/, as `circuitkit zoo train --out` writes)."
        )

    repo = _pretrained_repo(name)
    if repo is None:
        known = ", ".join(sorted(zoo.BUILTIN) + sorted(zoo.ALIASES))
        raise ModelLoadError(
            f"unknown model {name!r}: not a built-in model ({known}), not a folder, and not a "
            "TransformerLens pretrained name (see "
            "transformer_lens.loading_from_pretrained.OFFICIAL_MODEL_NAMES)."
        )
    cached = _is_cached(repo)
    if not cached and not _hub_reachable():
        from huggingface_hub.constants import HF_HUB_CACHE

        raise ModelLoadError(
            f"weights for {name!r} (Hugging Face repo {repo!r}) are not in the local cache ({HF_HUB_CACHE}) "
            "and huggingface.co cannot be reached. Tried: built-in models, a local folder, the HF cache, "
            'the hub. To provide them: run `python -c "from transformer_lens import HookedTransformer; '
            f"HookedTransformer.from_pretrained('{name}')\"` on a machine with network access and copy its "
            "HF cache here (or set HF_HOME to it), or use a built-in model such as 'default'."
        )
    try:
        model = HookedTransformer.from_pretrained(name, device=str(device))
    except Exception as exc:  # transformers / hub errors are deep and varied: say what we were doing
        raise ModelLoadError(
            f"loading {name!r} from {'the HF cache' if cached else 'the hub'} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    model.eval()
    return model
