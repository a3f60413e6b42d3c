"""The Hugging Face hub cache, offline first: what a repository has in the local cache, and loading from it
without touching the network.

The hub client, when the hub cannot be reached, retries every file it asks about before it falls back to
the cache: loading a cached GPT-2 that way took 132-151 s here, against 11-16 s with ``HF_HUB_OFFLINE=1``.
So whatever is complete in the cache is loaded under :func:`offline`; only what is missing goes to the
hub, and when the hub cannot be reached either, the error names the repository, the files and the fix
(:func:`missing_message`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlparse

_OFFLINE_LOCK = threading.RLock()

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
"""File endings that hold weights (``model.safetensors``, ``pytorch_model.bin``, TransformerLens's
``*.pth``)."""


def cache_dir() -> Path:
    """The hub cache folder in use (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``), read at call time."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def offline_requested() -> bool:
    """True when the user set ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the hub endpoint (``$HF_ENDPOINT``, default huggingface.co) accepts a TCP connection now."""
    from huggingface_hub import constants

    if offline_requested():
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def snapshot(repo_id: str, revision: str = "main") -> Path | None:
    """The cached snapshot of ``repo_id`` at ``revision`` (a branch in ``refs/`` or a commit), or None."""
    repo = cache_dir() / f"models--{repo_id.replace('/', '--')}"
    ref = repo / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    folder = repo / "snapshots" / commit
    return folder if folder.is_dir() else None


def cached_files(repo_id: str, folder: str = "", revision: str = "main") -> list[str]:
    """Paths (relative to the repository) of the files cached for ``repo_id`` under ``folder``."""
    snap = snapshot(repo_id, revision)
    if snap is None or not (snap / folder).is_dir():
        return []
    return sorted(str(p.relative_to(snap)) for p in (snap / folder).rglob("*") if p.is_file())


def missing_files(repo_id: str, required: Sequence[str], *, weights: bool = False) -> list[str]:
    """Which of ``required`` (paths in the repository) are not in the cache; with ``weights``, also
    ``"weights (*.safetensors / *.bin)"`` when no weight file is cached."""
    have = set(cached_files(repo_id))
    missing = [f for f in required if f not in have]
    if weights and not any(f.endswith(WEIGHT_SUFFIXES) for f in have):
        missing.append("weights (model.safetensors or pytorch_model.bin)")
    return missing


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Run the block in the hub client's offline mode (what ``HF_HUB_OFFLINE=1`` does): every file comes
    from the cache, no request is made. Restores the previous mode after.

    The hub client reads ``HF_HUB_OFFLINE`` once, at import, into ``huggingface_hub.constants``, which
    transformers and sae-lens consult at call time; that constant is switched here (and the environment
    variable, for processes started inside the block). Process-wide while the block runs.
    """
    from huggingface_hub import constants

    with _OFFLINE_LOCK:
        before_const, before_env = constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")
        constants.HF_HUB_OFFLINE = True
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = before_const
            if before_env is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = before_env


def missing_message(what: str, repo_id: str, files: Sequence[str], fetch: str) -> str:
    """One message for "not in the cache and the hub is unreachable": the repository, the files, the
    cache folder, and how to provide them (``fetch``: Python that downloads them on a connected
    machine)."""
    why = "HF_HUB_OFFLINE is set" if offline_requested() else "huggingface.co cannot be reached"
    return (
        f"{what}: Hugging Face repository {repo_id!r} has {', '.join(files)} missing from the local cache "
        f"({cache_dir()}) and {why}. To provide them: on a machine with network access run "
        f"`{fetch}`, then copy that machine's HF cache folder here (or point HF_HOME at a copy)."
    )
