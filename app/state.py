"""Shared explorer state: the sidebar (model / task / dictionary), URL-bound widgets, cached resources.

Every widget whose value matters for a view is bound to ``st.query_params`` so a URL reproduces it.
Models, task datasets and dictionaries live in ``st.cache_resource`` and are shared by every session:
pages only read them (library functions add hooks inside context managers that remove them).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from circuitkit.models import DEFAULT_MODEL, load_model
from circuitkit.models.zoo import BUILTIN, builtin_dir, is_model_dir
from circuitkit.tasks import TASKS, make_task

NO_DICTIONARY = "(none)"


@dataclass(frozen=True)
class Selection:
    """What the shared sidebar selected; every page reads it."""

    model: str
    """Built-in model name (``ck-6l``, ``ck-tiny``) or another loadable name."""
    task: str
    """Task key of :data:`circuitkit.tasks.TASKS`."""
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
    ids: list[str] = []
    try:
        from sae_training.store import list_dictionaries

        ids = [str(getattr(d, "id", d)) for d in list_dictionaries(model_name)]
    except (ImportError, FileNotFoundError, ValueError, KeyError):
        pass
    return ids + list(_extra_dictionaries())


def bind(key: str, options: Sequence[Any] | None = None, default: Any = None, cast=str) -> str:
    """Seed the widget ``key`` from the URL (once per session) and return the key to pass to the widget.

    Values outside ``options`` (a stale or hand-edited URL) fall back to ``default``.
    """
    if key not in st.session_state:
        raw = st.query_params.get(key)
        value = default
        if raw is not None:
            try:
                value = cast(raw)
            except (TypeError, ValueError):
                value = default
        st.session_state[key] = value
    if options is not None and st.session_state[key] not in options:
        st.session_state[key] = default
    return key


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
    st.sidebar.selectbox("Model", models, key=bind("model", models, models[0]))
    tasks = sorted(TASKS)
    st.sidebar.selectbox("Task", tasks, key=bind("task", tasks, "ioi"))
    dicts = [NO_DICTIONARY, *available_dictionaries(st.session_state["model"])]
    st.sidebar.selectbox(
        "Dictionary",
        dicts,
        key=bind("dictionary", dicts, dicts[1] if len(dicts) > 1 else NO_DICTIONARY),
        help="SAEs / transcoders from sae_training for this model (Features page, feature circuits).",
    )
    release = st.sidebar.text_input(
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
