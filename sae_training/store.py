"""Shipped and saved dictionaries: find them by id, list them per model, load them as sae-lens SAEs.

A dictionary id names model, hook and run: ``<model>__<hook>__<run>`` (e.g.
``ck-6l__blocks.3.hook_resid_post__topk-512-k16``). Shipped dictionaries live in
``sae_training/pretrained/<model>/<id>/`` (``cfg.json`` + ``sae_weights.safetensors`` in sae-lens format,
``eval.json``, ``train_config.yaml``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sae_training.architectures  # noqa: F401  (registers our classes with sae-lens)
from sae_training.config import ConfigError

PRETRAINED_DIR = Path(__file__).parent / "pretrained"


@dataclass
class DictionaryInfo:
    """One saved dictionary, as listed (no weights loaded)."""

    id: str
    """model__hook__run."""
    path: Path
    """Folder with cfg.json + sae_weights.safetensors."""
    architecture: str
    """circuitkit architecture (topk, gsae, ..., transcoder) or the sae-lens one."""
    hook: str
    """Input hook."""
    hook_out: str | None
    """Output hook for transcoders."""
    head_index: int | None
    """Head for per-head hook_z dictionaries."""
    d_in: int
    """Input width."""
    d_sae: int
    """Number of latents."""
    eval: dict[str, Any] | None
    """eval.json contents, if present."""


def _is_dictionary(path: Path) -> bool:
    return (path / "cfg.json").is_file() and (path / "sae_weights.safetensors").is_file()


class DictionaryFileError(ConfigError):
    """A dictionary folder whose cfg.json or weights cannot be read."""


def read_cfg(path: Path) -> dict[str, Any]:
    """cfg.json of a dictionary folder; DictionaryFileError naming the file if it is not a usable one."""
    file = path / "cfg.json"
    try:
        cfg = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise DictionaryFileError(
            f"{file} is not valid JSON ({exc.msg}, line {exc.lineno}): restore it from the run's "
            "checkpoint or retrain"
        ) from None
    missing = [k for k in ("architecture", "d_in", "d_sae") if not isinstance(cfg, dict) or k not in cfg]
    if missing:
        raise DictionaryFileError(
            f"{file} lacks {', '.join(missing)}: not a sae-lens dictionary config; restore or retrain it"
        )
    return cfg


def check_weights(path: Path) -> None:
    """The safetensors header parses and the file is as long as it says (a truncated copy fails here,
    by name, instead of deep inside sae-lens)."""
    file = path / "sae_weights.safetensors"
    size = file.stat().st_size
    problem = None
    try:
        with file.open("rb") as fh:
            header_len = int.from_bytes(fh.read(8), "little")
            if header_len <= 0 or 8 + header_len > size:
                raise ValueError("header longer than the file")
            header = json.loads(fh.read(header_len))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + header_len + end != size:
            problem = f"{size} bytes where its header describes {8 + header_len + end}"
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        problem = f"unreadable header: {exc}"
    if problem:
        raise DictionaryFileError(f"{file} is truncated or damaged ({problem}); copy or retrain it")


def _info(path: Path) -> DictionaryInfo:
    cfg = read_cfg(path)
    md = cfg.get("metadata", {})
    ev = path / "eval.json"
    return DictionaryInfo(
        id=md.get("dictionary_id") or path.name,
        path=path,
        architecture=md.get("circuitkit_architecture") or cfg.get("architecture", "?"),
        hook=md.get("hook_name", ""),
        hook_out=md.get("hook_name_out"),
        head_index=md.get("hook_head_index"),
        d_in=int(cfg["d_in"]),
        d_sae=int(cfg["d_sae"]),
        eval=json.loads(ev.read_text()) if ev.is_file() else None,
    )


def list_dictionaries(model_name: str = "ck-6l", root: str | Path | None = None) -> list[DictionaryInfo]:
    """Shipped (or, with ``root``, saved) dictionaries for a model, sorted by id."""
    from circuitkit.models import zoo

    name = zoo.resolve_builtin(model_name) or model_name
    base = Path(root) if root is not None else PRETRAINED_DIR / name
    if not base.is_dir():
        return []
    found = [_info(p) for p in sorted(base.iterdir()) if p.is_dir() and _is_dictionary(p)]
    return [d for d in found if root is None or d.id.startswith(name)]


def resolve_dictionary(id_or_path: str | Path) -> Path:
    """Folder of a dictionary given its folder or its id; a clear error otherwise."""
    path = Path(id_or_path).expanduser()
    if _is_dictionary(path):
        return path
    text = str(id_or_path)
    model = text.split("__")[0]
    candidate = PRETRAINED_DIR / model / text
    if _is_dictionary(candidate):
        return candidate
    known = [d.id for d in list_dictionaries(model)] if "__" in text else []
    raise FileNotFoundError(
        f"no dictionary {text!r}: not a folder with cfg.json + sae_weights.safetensors, and not a shipped id"
        + (
            f" (shipped for {model}: {', '.join(known)})"
            if known
            else " (ids look like <model>__<hook>__<run>)"
        )
    )


def load_dictionary(id_or_path: str | Path, device: str = "cpu"):
    """The dictionary as an sae-lens inference ``SAE`` (``TopKSAE``, ``JumpReLUSAE``, transcoder, ...)."""
    from sae_lens import SAE

    path = resolve_dictionary(id_or_path)
    read_cfg(path)
    check_weights(path)
    return SAE.load_from_disk(path, device=str(device))
