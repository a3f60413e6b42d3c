"""Where the explorer finds results: result files written by the CLI (or by ``app.precompute``), or
a library run on demand kept for the session.

Result files are :mod:`circuitkit.results` tables (``NAME.parquet`` + ``NAME.json``). The app looks in
``$CIRCUITKIT_RESULTS`` (colon-separated folders), ``app/precomputed/`` (a small committed set for the
default model, so ``make app`` opens with results showing) and ``results/`` (``circuitkit discover``'s
default output folder), recursively, and picks the file whose provenance has the view's full key:
model, task, split, method, direction, ablation, options (defaults filled in), prompts and family.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import streamlit as st

from circuitkit import results
from circuitkit.methods import get_method, lookup_key

APP_DIR = Path(__file__).resolve().parent
PRECOMPUTED = APP_DIR / "precomputed"
REPO_RESULTS = APP_DIR.parent / "results"


def result_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("CIRCUITKIT_RESULTS", "").split(os.pathsep) if p]
    return [d for d in (*extra, PRECOMPUTED, REPO_RESULTS, Path.cwd() / "results") if d.is_dir()]


def result_index(dirs: tuple[str, ...]) -> list[dict]:
    """Provenance of every result file under ``dirs``, read afresh on every call (each file's JSON is
    cached by path and modification time), so a result the CLI has just written shows at once. JSON
    files that are not results (summary tables, other tools' files) have no ``provenance``; a result
    file that cannot be read raises."""
    rows = []
    for d in dict.fromkeys(str(Path(p).resolve()) for p in dirs):
        for js in sorted(Path(d).rglob("*.json")):
            if js.with_suffix(".parquet").exists():
                row = _provenance(str(js), js.stat().st_mtime)
                if row is not None:
                    rows.append(row)
    return rows


@st.cache_data(show_spinner=False, max_entries=4096)
def _provenance(path: str, mtime: float) -> dict | None:
    meta = json.loads(Path(path).read_text())
    if not isinstance(meta, dict) or "provenance" not in meta:
        return None
    prov = results.provenance_from_dict(meta["provenance"], path)
    return {"path": str(Path(path).with_suffix("")), **vars(prov)}


def find_result(
    *,
    model: str,
    task: str,
    method: str,
    family: str | None = None,
    direction: str = "denoising",
    ablation: str = "patch",
    options: Mapping[str, Any] | None = None,
    n_prompts: int | None = None,
    split: str = "heldout",
) -> results.ResultTable | None:
    """The first stored result with this full key (and that holds ``family``), else None. Options are
    compared after filling in the method's defaults, so a file that recorded only some of them (or a
    file from before options were recorded in full) still matches its view and a GradDrop or
    zero-ablation result never stands in for the default one."""
    want = {
        "model": model,
        "task": task,
        "split": split,
        "method": method,
        **lookup_key(method, direction, ablation, options),
    }
    m = get_method(method)
    for row in result_index(tuple(str(d) for d in result_dirs())):
        if n_prompts is not None and row.get("n_prompts") != n_prompts:
            continue
        if any(row.get(k) != v for k, v in want.items() if k != "options"):
            continue
        if _resolved(m, row.get("options") or {}) != want["options"]:
            continue
        table = load_result(row["path"])
        if family is None or family in table.families:
            return table
    return None


def _resolved(method, stored: Mapping[str, Any]) -> dict[str, Any] | None:
    from circuitkit.methods import OptionError, recorded_options

    try:
        return recorded_options(method, method.resolve_options(stored))
    except OptionError:
        return None  # options this method no longer takes: not the same question


@st.cache_data(show_spinner=False, max_entries=64)
def _load(path: str, mtime: float) -> tuple:
    r = results.load(path)
    return r.table, r.provenance


def load_result(path: str) -> results.ResultTable:
    mtime = Path(path).with_suffix(".parquet").stat().st_mtime
    table, prov = _load(path, mtime)
    return results.ResultTable(table.copy(), prov)


def remember(key: tuple, result: results.ResultTable) -> None:
    """Keep an on-demand result for this session (the heavy run is not repeated on every rerun)."""
    st.session_state.setdefault("computed", {})[key] = result


def recall(key: tuple) -> results.ResultTable | None:
    return st.session_state.get("computed", {}).get(key)


def heads_paths(model: str, task: str, n_train: int, seed: int) -> tuple[Path, Path]:
    stem = PRECOMPUTED / model / f"heads_{task}_t{n_train}_s{seed}"
    return stem.with_name(stem.name + ".parquet"), stem.with_name(stem.name + "_codes.parquet")


def stored_heads(model: str, task: str, n_train: int, seed: int):
    """(ranking table with both variants, code counts) precomputed for these settings, else None."""
    import pandas as pd

    ranking, codes = heads_paths(model, task, int(n_train), int(seed))
    if not (ranking.exists() and codes.exists()):
        return None
    return pd.read_parquet(ranking), pd.read_parquet(codes)
