"""Dictionary training runs on disk: every ``metrics.jsonl`` that sae_training writes beside a run.

Looked for under ``runs/`` (sae_training's default output), ``sae_training/pretrained/`` (shipped
dictionaries) and ``$CIRCUITKIT_RUNS`` (colon-separated folders).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import streamlit as st

REPO = Path(__file__).resolve().parent.parent


def run_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("CIRCUITKIT_RUNS", "").split(os.pathsep) if p]
    return [d for d in (*extra, REPO / "runs", REPO / "sae_training" / "pretrained") if d.is_dir()]


def find_runs() -> dict[str, Path]:
    """Run name (its folder relative to the search root) -> metrics.jsonl path."""
    out: dict[str, Path] = {}
    for root in run_dirs():
        for path in sorted(root.rglob("metrics.jsonl")):
            out.setdefault(str(path.parent.relative_to(root)), path)
    return out


@st.cache_data(show_spinner=False, max_entries=128)
def _read(path: str, mtime: float) -> pd.DataFrame:
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue  # a line being written right now
    return pd.json_normalize(rows)


def read_metrics(path: Path) -> pd.DataFrame:
    """The run's metrics table (one row per logged step); re-read when the file changes."""
    return _read(str(path), path.stat().st_mtime).copy()
