"""Training runs: loss, L0, FVU and dead-fraction curves from sae_training's JSONL metrics, several runs
compared, and FVU against L0 across runs (the sparsity-fidelity frontier)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import runs, state, widgets
from circuitkit.viz import fvu_vs_l0, training_curves

st.title("Training runs")
found = runs.find_runs()
if not found:
    st.info(
        "No dictionary training runs found (metrics.jsonl under runs/ or sae_training/pretrained/). "
        "Train one with `python -m sae_training train ...`, or point $CIRCUITKIT_RUNS at a folder of runs."
    )
    st.stop()

names = list(found)
sel = state.current()
preferred = [n for n in names if sel.model in n] or names
chosen = st.multiselect("Runs", names, default=preferred[:6], key="runs")
if not chosen:
    st.info("Pick at least one run.")
    st.stop()
tables = {name: runs.read_metrics(found[name]) for name in chosen}
numeric = sorted({c for df in tables.values() for c in df.select_dtypes("number").columns})
x_options = [c for c in ("step", "tokens", "n_tokens") if c in numeric] or numeric[:1]
x = st.selectbox("x axis", x_options, key=state.bind("x", x_options, x_options[0]))
wanted = [m for m in ("loss", "l0", "fvu", "dead_fraction") if m in numeric]
metrics = st.multiselect("Metrics", [c for c in numeric if c != x], default=wanted, key="run_metrics")
state.publish("x")
if metrics:
    widgets.figure(training_curves(tables, metrics, x=x), "training_curves")

if {"l0", "fvu"} <= set(numeric):
    last = [
        {"run": name, "l0": float(df["l0"].dropna().iloc[-1]), "fvu": float(df["fvu"].dropna().iloc[-1])}
        for name, df in tables.items()
        if {"l0", "fvu"} <= set(df.columns) and df["l0"].notna().any() and df["fvu"].notna().any()
    ]
    if last:
        summary = pd.DataFrame(last)
        widgets.figure(fvu_vs_l0(summary), "fvu_vs_l0")
        widgets.table(summary, "runs_final_l0_fvu")
