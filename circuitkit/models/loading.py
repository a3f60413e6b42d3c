"""``load_model``: one entry point for built-in toy models, TransformerLens pretrained names and folders."""

from __future__ import annotations

from pathlib import Path

import torch
from transformer_lens import HookedTransformer

from circuitkit import hub
from circuitkit.models import zoo


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says what was tried and how to provide the weights."""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _hub_reachable(timeout: float = 2.0) -> bool:
    # a module-level name so tests can stand in an unreachable hub
    return hub.hub_reachable(timeout)


def _pretrained_repo(name: str) -> str | None:
    """The Hugging Face repo behind a TransformerLens pretrained name, or None if it is not one."""
    from transformer_lens import loading_from_pretrained as lfp

    try:
        return lfp.get_official_model_name(name)
    except ValueError:
        return None


def _missing_from_cache(repo: str) -> list[str]:
    """What ``repo`` lacks in the local cache to load offline: ``config.json`` and a weights file."""
    return hub.missing_files(repo, ["config.json"], weights=True)


def load_model(name_or_path: str | Path, device: str | torch.device | None = None) -> HookedTransformer:
    """Load a HookedTransformer in eval mode.

    Resolution order:
      1. a built-in toy model (``ck-tiny``, ``ck-6l``; aliases ``tiny``, ``default``);
      2. a local model folder as written by ``circuitkit zoo train`` (``model.safetensors`` +
         ``config.json`` + ``tokenizer/``);
      3. a TransformerLens pretrained name (``gpt2``, ``pythia-70m``, ``attn-only-4l``, ...): from the
         Hugging Face cache without any network request when the cache holds its config and weights
         (``HF_HOME`` / ``HF_HUB_CACHE`` say where), else downloaded when the hub is reachable.
    Fails at once with :class:`ModelLoadError` when none applies or the weights are unreachable, naming
    the repository, the missing files and how to provide them.
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
    missing = _missing_from_cache(repo)
    if missing and not _hub_reachable():
        raise ModelLoadError(
            hub.missing_message(
                f"cannot load {name!r}",
                repo,
                missing,
                f'python -c "from transformer_lens import HookedTransformer; '
                f"HookedTransformer.from_pretrained('{name}')\"",
            )
            + " Tried: built-in models, a local folder, the HF cache. Or use a built-in model such as "
            "'default'."
        )
    # A complete cache loads offline: with the hub unreachable the client would otherwise retry every
    # file it looks up for minutes before falling back to the very same cached files.
    source = "the hub" if missing else f"the HF cache ({hub.cache_dir()}, offline)"
    try:
        if missing:
            model = HookedTransformer.from_pretrained(name, device=str(device))
        else:
            with hub.offline():
                model = HookedTransformer.from_pretrained(name, device=str(device))
    except Exception as exc:  # transformers / hub errors are deep and varied: say what we were doing
        raise ModelLoadError(
            f"loading {name!r} (Hugging Face repository {repo!r}) from {source} failed: "
            f"{type(exc).__name__}: {exc}"
            + (
                ""
                if missing
                else ". The cached snapshot may be incomplete: copy the whole folder "
                f"models--{repo.replace('/', '--')} from a cache that loads it."
            )
        ) from exc
    tok = model.tokenizer
    if not missing and (tok is None or len(tok) < model.cfg.d_vocab // 2):
        # transformers builds an empty tokenizer, silently, when a cached snapshot lacks its files
        raise ModelLoadError(
            f"loading {name!r} from {source}: its tokenizer has {0 if tok is None else len(tok)} tokens for "
            f"a vocabulary of {model.cfg.d_vocab}; the cached snapshot of repository {repo!r} is incomplete "
            "(tokenizer.json or vocab.json + merges.txt missing): copy the whole folder "
            f"models--{repo.replace('/', '--')} from a cache that loads it."
        )
    model.eval()
    return model
