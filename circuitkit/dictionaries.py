"""One way to name a dictionary everywhere (Python, ``--option dictionaries=``, the explorer, notebooks).

A dictionary spec is one of:

* a shipped or saved id, ``<model>__<hook>__<run>`` (``circuitkit sae list``);
* a folder in sae-lens format (``cfg.json`` + ``sae_weights.safetensors``);
* a sae-lens pretrained release and SAE id, ``release/sae_id`` (``gpt2-small-res-jb/blocks.8.hook_resid_pre``;
  the SAE id may itself contain ``/``, as Gemma Scope's do), loaded with ``SAE.from_pretrained``. The
  release names a Hugging Face repository in sae-lens's ``pretrained_saes.yaml``; what is in the local
  cache loads without any network request (see :mod:`circuitkit.hub`), and a release missing from the
  cache while the hub is unreachable fails at once, naming release, repository, files and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from circuitkit import hub


class DictionaryLoadError(ValueError):
    """A dictionary spec names nothing loadable here; the message says what was tried and the fix."""


def parse_release(spec: str) -> tuple[str, str] | None:
    """``(release, sae_id)`` when ``spec`` starts with a release sae-lens knows, else None."""
    if "/" not in spec:
        return None
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    release, sae_id = spec.split("/", 1)
    return (release, sae_id) if release in get_pretrained_saes_directory() else None


def _release_files(release: str, sae_id: str) -> tuple[str, str, list[str] | None]:
    """Repository, folder in it, and the files sae-lens's own loader reads there (None: a converted format
    whose files this module does not list)."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    lookup = get_pretrained_saes_directory()[release]
    if sae_id not in lookup.saes_map:
        known = list(lookup.saes_map)
        raise DictionaryLoadError(
            f"sae-lens release {release!r} has no SAE {sae_id!r}; it has {len(known)}, e.g. "
            + ", ".join(known[:5])
        )
    folder = lookup.saes_map[sae_id]
    if lookup.conversion_func is None:
        return lookup.repo_id, folder, [f"{folder}/cfg.json", f"{folder}/sae_weights.safetensors"]
    return lookup.repo_id, folder, None


def load_release(release: str, sae_id: str, device: str = "cpu") -> Any:
    """``SAE.from_pretrained(release, sae_id)``: offline from the cache when the cache holds it, from the
    hub when reachable, else a :class:`DictionaryLoadError` naming release, repository, files and fix."""
    from sae_lens import SAE

    repo_id, folder, files = _release_files(release, sae_id)
    cached = hub.cached_files(repo_id, folder)
    missing = [f for f in files if f not in cached] if files is not None else ([] if cached else [folder])
    fetch = f"python -c \"from sae_lens import SAE; SAE.from_pretrained('{release}', '{sae_id}')\""
    if missing and not hub.hub_reachable():
        raise DictionaryLoadError(
            hub.missing_message(
                f"cannot load sae-lens release {release!r} SAE {sae_id!r}", repo_id, missing, fetch
            )
        )
    try:
        if missing:
            return SAE.from_pretrained(release, sae_id, device=device)
        with hub.offline():
            return SAE.from_pretrained(release, sae_id, device=device)
    except (OSError, ValueError) as exc:  # hub / format errors: say which release and where
        raise DictionaryLoadError(
            f"loading sae-lens release {release!r} SAE {sae_id!r} (repository {repo_id!r}, "
            f"folder {folder!r}) "
            f"from {'the hub' if missing else f'the HF cache ({hub.cache_dir()}, offline)'} failed: "
            f"{type(exc).__name__}: {exc}. Re-fetch it on a connected machine with `{fetch}`."
        ) from exc


def load_dictionary(spec: str | Path, device: str = "cpu") -> Any:
    """The sae-lens ``SAE`` a spec names (see the module docstring for the three forms)."""
    import sae_training.architectures  # noqa: F401  (registers our architectures with sae-lens)
    from sae_training.store import load_dictionary as load_saved

    text = str(spec)
    path = Path(text).expanduser()
    if (path / "cfg.json").is_file() or "/" not in text:
        return load_saved(path if path.is_dir() else text, device=device)
    release = parse_release(text)
    if release is not None:
        return load_release(*release, device=device)
    raise DictionaryLoadError(
        f"no dictionary {text!r}: not a folder with cfg.json + sae_weights.safetensors, not a shipped id "
        f"(<model>__<hook>__<run>), and {text.split('/', 1)[0]!r} is not a sae-lens release (releases are "
        "listed in sae_lens/pretrained_saes.yaml, e.g. gpt2-small-res-jb/blocks.8.hook_resid_pre)"
    )


def describe(spec: str, sae: Any):
    """A :class:`sae_training.store.DictionaryInfo` for a loaded dictionary of any spec (no eval.json for
    releases and folders of others' dictionaries)."""
    from sae_training.store import DictionaryInfo

    md = sae.cfg.metadata
    release = parse_release(spec)
    if release is not None:
        repo_id, folder, _ = _release_files(*release)
        path = (hub.snapshot(repo_id) or hub.cache_dir()) / folder
    else:
        path = Path(spec)
    return DictionaryInfo(
        id=spec,
        path=path,
        architecture=getattr(md, "circuitkit_architecture", None) or sae.cfg.architecture(),
        hook=md.hook_name,
        hook_out=getattr(md, "hook_name_out", None),
        head_index=getattr(md, "hook_head_index", None),
        d_in=int(sae.cfg.d_in),
        d_sae=int(sae.cfg.d_sae),
        eval=None,
    )
