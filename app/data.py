"""Where the explorer finds results: precomputed files written by the CLI, or a library run on demand.

Result files are circuitkit.results tables (``NAME.parquet`` + ``NAME.json``). The app looks in
``app/precomputed/`` (a small committed set for the default model, so ``make app`` opens with results
showing), then ``results/`` (the CLI's default output folder) and ``$CIRCUITKIT_RESULTS`` (colon-separated
folders), recursively, and picks the file whose provenance matches the view.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import streamlit as st

from circuitkit import results

APP_DIR = Path(__file__).resolve().parent
PRECOMPUTED = APP_DIR / "precomputed"
REPO_RESULTS = APP_DIR.parent / "results"


def result_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("CIRCUITKIT_RESULTS", "").split(os.pathsep) if p]
    return [d for d in (*extra, PRECOMPUTED, REPO_RESULTS) if d.is_dir()]


@st.cache_data(ttl=30, show_spinner=False)
def result_index(dirs: tuple[str, ...]) -> list[dict]:
    """Provenance of every result file under ``dirs`` (refreshed every 30 s so new CLI runs show up)."""
    rows = []
    for d in dirs:
        for js in sorted(Path(d).rglob("*.json")):
            if not js.with_suffix(".parquet").exists():
                continue
            try:
                prov = json.loads(js.read_text())["provenance"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            rows.append({"path": str(js.with_suffix("")), **prov})
    return rows


def find_result(
    *, model: str, task: str, method: str, family: str | None = None, **match
) -> results.ResultTable | None:
    """The first stored result whose provenance matches (and that holds ``family``), else None."""
    for row in result_index(tuple(str(d) for d in result_dirs())):
        if (row.get("model"), row.get("task"), row.get("method")) != (model, task, method):
            continue
        if any(row.get(k) != v for k, v in match.items()):
            continue
        table = load_result(row["path"])
        if family is None or family in table.families:
            return table
    return None


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


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


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
