"""Shared explorer state: the sidebar (model / task / dictionary), URL-bound widgets, cached resources.

Every widget whose value matters for a view is bound to ``st.query_params`` so a URL reproduces it.
Models, task datasets and dictionaries live in ``st.cache_resource`` and are shared by every session:
pages only read them (library functions add hooks inside context managers that remove them).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from circuitkit.models import DEFAULT_MODEL, load_model
from circuitkit.models.zoo import BUILTIN, builtin_dir, is_model_dir
from circuitkit.tasks import make_task, task_names

NO_DICTIONARY = "(none)"


@dataclass(frozen=True)
class Selection:
    """What the shared sidebar selected; every page reads it."""

    model: str
    """Built-in model name (``ck-6l``, ``ck-tiny``) or another loadable name."""
    task: str
    """Task name from the task registry (:func:`circuitkit.tasks.task_names`)."""
    dictionary: str | None
    """Dictionary id from ``sae_training.list_dictionaries`` or None."""


def available_models() -> list[str]:
    """Built-in models whose weights are on disk, the default first, then the names listed in
    ``$CIRCUITKIT_MODELS`` (comma-separated: TransformerLens names such as ``gpt2`` or model folders)."""
    present = [n for n in BUILTIN if is_model_dir(builtin_dir(n))]
    extra = [n.strip() for n in os.environ.get("CIRCUITKIT_MODELS", "").split(",") if n.strip()]
    return sorted(present, key=lambda n: n != DEFAULT_MODEL) + [n for n in extra if n not in present]


def _extra_dictionaries() -> dict[str, Path]:
    """sae-lens dictionary folders (``cfg.json`` + weights) under ``$CIRCUITKIT_DICTIONARIES``."""
    out = {}
    for root in filter(None, os.environ.get("CIRCUITKIT_DICTIONARIES", "").split(os.pathsep)):
        for cfg in sorted(Path(root).rglob("cfg.json")):
            out[str(cfg.parent)] = cfg.parent
    return out


def available_dictionaries(model_name: str) -> list[str]:
    """Dictionary ids shipped or trained for a model (sae_training), then folders from the environment."""
    from sae_training.store import list_dictionaries

    ids = [str(getattr(d, "id", d)) for d in list_dictionaries(model_name)]
    return ids + list(_extra_dictionaries())


def bind(
    key: str,
    options: Sequence[Any] | None = None,
    default: Any = None,
    cast: Callable[[str], Any] = str,
    *,
    lo: float | None = None,
    hi: float | None = None,
) -> str:
    """Seed the widget ``key`` from the URL (once per session) and return the key to pass to the widget.

    A URL value that cannot be read, is not among ``options`` or lies outside ``lo..hi`` (a stale,
    hand-edited or hostile link) is replaced by ``default`` with a visible notice naming both, so the
    page renders and the user knows what changed. Call it where the notice should appear.
    """
    if key not in st.session_state:
        raw = st.query_params.get(key)
        value = default
        if raw is not None:
            try:
                value = cast(raw)
            except (TypeError, ValueError):
                _notice(key, raw, default, "cannot be read")
                value = default
            else:
                value = _checked(key, raw, value, options, default, lo, hi)
        st.session_state[key] = value
    else:
        value = st.session_state[key]
        if (options is not None and value not in options) or not _in_range(value, lo, hi):
            # The choices changed under the widget (another model, a shorter list): back to the default.
            st.session_state[key] = default
    return key


def _in_range(value: Any, lo: float | None, hi: float | None) -> bool:
    try:
        return (lo is None or value >= lo) and (hi is None or value <= hi)
    except TypeError:
        return False


def _checked(key: str, raw: str, value: Any, options, default: Any, lo, hi) -> Any:
    if options is not None and value not in options:
        shown = ", ".join(map(str, list(options)[:8])) + (", ..." if len(options) > 8 else "")
        _notice(key, raw, default, f"is not one of {shown}")
        return default
    if not _in_range(value, lo, hi):
        _notice(
            key,
            raw,
            default,
            f"is outside {lo:g}..{hi:g}" if lo is not None and hi is not None else "is out of range",
        )
        return default
    return value


def _notice(key: str, raw: str, default: Any, why: str) -> None:
    st.warning(
        f"Link parameter `{key}={raw}` {why}; showing `{default}` instead.", icon=":material/link_off:"
    )


def publish(*keys: str) -> None:
    """Write the widgets' current values to the URL."""
    for key in keys:
        value = st.session_state.get(key)
        if value is None:
            st.query_params.pop(key, None)
        else:
            st.query_params[key] = str(value)


def sidebar() -> Selection | None:
    """Draw the shared model / task / dictionary selectors; None (with an inline error) when no model."""
    models = available_models()
    if not models:
        st.sidebar.error(
            "No built-in model weights found. Build them with `circuitkit zoo train tiny` "
            "(a few minutes) or `make zoo`."
        )
        return None
    with st.sidebar:
        st.selectbox("Model", models, key=bind("model", models, models[0]))
        tasks = task_names()
        st.selectbox("Task", tasks, key=bind("task", tasks, "ioi" if "ioi" in tasks else tasks[0]))
        dicts = [NO_DICTIONARY, *available_dictionaries(st.session_state["model"])]
        st.selectbox(
            "Dictionary",
            dicts,
            key=bind("dictionary", dicts, dicts[1] if len(dicts) > 1 else NO_DICTIONARY),
            help="SAEs / transcoders from sae_training for this model (Features page, feature circuits).",
        )
        release = st.text_input(
            "or a sae-lens release/sae_id",
            key=bind("release", None, ""),
            help="e.g. gpt2-small-res-jb/blocks.8.hook_resid_pre, loaded with SAE.from_pretrained (HF cache)",
        ).strip()
    publish("model", "task", "dictionary")
    if release:
        publish("release")
    else:
        st.query_params.pop("release", None)
    d = release or st.session_state["dictionary"]
    return Selection(st.session_state["model"], st.session_state["task"], None if d == NO_DICTIONARY else d)


def current() -> Selection:
    """The sidebar's selection for this run (drawn by ``Home.py`` before every page)."""
    return st.session_state["selection"]


@st.cache_resource(show_spinner="Loading model ...", max_entries=4)
def model(name: str):
    """The model, loaded once per process and shared; never mutate it."""
    return load_model(name)


@st.cache_resource(show_spinner="Building task prompts ...", max_entries=16)
def task_data(model_name: str, task: str, n_prompts: int, seed: int = 0):
    """Held-out clean / corrupted prompts of a task for a model's tokenizer, on the model's device."""
    m = model(model_name)
    return make_task(task, m.tokenizer, n_prompts, seed=seed, split="heldout").to(m.cfg.device)


@st.cache_resource(show_spinner="Loading dictionary ...", max_entries=8)
def dictionary(dictionary_id: str, device: str):
    """A sae-lens SAE from sae_training, on ``device``; never mutate it."""
    if dictionary_id in _extra_dictionaries():
        from sae_lens import SAE

        sae = SAE.load_from_disk(dictionary_id, device=device)
    else:  # shipped id or sae-lens release/sae_id
        from circuitkit.dictionaries import load_dictionary

        sae = load_dictionary(dictionary_id, device=device)
    return sae.to(device).eval()


@st.cache_resource(show_spinner=False, max_entries=8)
def dictionary_activations(model_name: str, dictionary_id: str, n_seqs: int):
    """The dashboard's token set (``n_seqs`` x 32 tokens) and the dictionary's activations on it; shared
    by sessions, read-only."""
    from circuitkit.features import dashboard

    m = model(model_name)
    d = dictionary(dictionary_id, str(m.cfg.device))
    tokens = dashboard.corpus_tokens(m, n_seqs=n_seqs, seq_len=32)
    return tokens, dashboard.encode_tokens(m, d, tokens)
