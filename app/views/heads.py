"""Heads: discrete-SAE head identification (O'Neill & Bui 2024) scored against the ground truth, with
per-head code histograms (codes seen on positive vs negative prompts)."""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from app import data, state, widgets
from circuitkit.evaluation.ground_truth import roc_points
from circuitkit.heads import HeadIdConfig, identify_heads, score_ranking
from circuitkit.tasks.ground_truth import ground_truth
from circuitkit.viz import code_histograms, layer_head_heatmap, roc_curve

sel = state.current()
st.title("Heads")
st.caption(f"{sel.model} · task {sel.task} · discrete-SAE head identification (O'Neill & Bui 2024)")
model = state.model(sel.model)
n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads

c1, c2, c3, c4 = st.columns(4)
variant = c1.radio(
    "Variant", ["node", "edge"], horizontal=True, key=state.bind("variant", ["node", "edge"], "node")
)
n_prompts = c2.number_input(
    "Prompts scored", 4, 256, step=4, key=state.bind("n_prompts", None, 64, int, lo=4, hi=256)
)
n_train = c3.number_input(
    "Training prompts", 2, 64, step=2, key=state.bind("n_train", None, 10, int, lo=2, hi=64)
)
seed = c4.number_input("Seed", 0, 10_000, key=state.bind("seed", None, 0, int, lo=0, hi=10_000))
state.publish("variant", "n_prompts", "n_train", "seed")


@st.cache_resource(show_spinner=False, max_entries=16)
def run_identification(model_name: str, task: str, n_prompts: int, n_train: int, seed: int):
    """Library call, cached per settings; the result is read-only."""
    m = state.model(model_name)
    dataset = state.task_data(model_name, task, n_prompts)
    return identify_heads(m, dataset, HeadIdConfig(n_train_prompts=n_train, seed=seed))


stored = data.stored_heads(sel.model, sel.task, n_train, seed) if n_prompts == 64 else None
if stored is None:
    key = (sel.model, sel.task, int(n_prompts), int(n_train), int(seed))
    if key not in st.session_state.get("heads_done", set()):
        st.info("Not computed for these settings yet (a few seconds on the toy models).")
        if not st.button("Identify heads", type="primary"):
            st.stop()
    with st.status("Training the code-book SAE on head outputs ...") as status:
        ident = run_identification(sel.model, sel.task, int(n_prompts), int(n_train), int(seed))
        status.update(label="done", state="complete")
    st.session_state.setdefault("heads_done", set()).add(key)
    table, codes = ident.table(variant), ident.code_histogram_table()
else:
    table, codes = stored
    table = table[table["variant"] == variant] if "variant" in table else table
    st.caption("Loaded from precomputed results.")

grid = torch.full((n_layers, n_heads), float("nan"), dtype=torch.float64)
grid[torch.tensor(table["layer"].to_numpy()), torch.tensor(table["head"].to_numpy())] = torch.tensor(
    table["score"].to_numpy(dtype=float)
)
try:
    truth = ground_truth(sel.model, sel.task)
except KeyError as exc:
    truth = None
    st.caption(f"No ground truth to score against: {exc}")
widgets.figure(
    layer_head_heatmap(
        grid.numpy(),
        title=f"Head scores ({variant})",
        colorbar_title="score",
        highlight=list(truth.heads) if truth else [],
    ),
    f"heads_{sel.model}_{sel.task}_{variant}",
)
mask = truth.head_mask(n_layers, n_heads) if truth is not None else None
if mask is not None and not 0 < int(mask.sum()) < mask.numel():
    st.info(f"No ROC AUC: the ground truth holds {int(mask.sum())} of {mask.numel()} heads.")
elif mask is not None:
    rs = score_ranking(grid, mask)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("ROC AUC", f"{rs.roc_auc:.3f}")
    m2.metric(f"precision @ {rs.k}", f"{rs.precision:.2f}")
    m3.metric(f"recall @ {rs.k}", f"{rs.recall:.2f}")
    m4.metric("F1", f"{rs.f1:.2f}")
    fpr, tpr = roc_points(grid.numpy(), mask.numpy())
    widgets.figure(
        roc_curve({f"discrete SAE ({variant})": (fpr, tpr, rs.roc_auc)}), f"heads_roc_{sel.model}_{sel.task}"
    )

st.subheader("Ranking")
widgets.table(table.sort_values("rank"), f"heads_ranking_{sel.model}_{sel.task}_{variant}")

st.subheader("Code histograms")
ranked = table.sort_values("rank")["component"].tolist()
chosen = st.multiselect("Heads", ranked, default=ranked[:8], key="code_heads")
if chosen:
    per_head = {}
    for label in chosen:
        rows = codes[codes["component"] == label]
        pos = [c for c, n in zip(rows["code"], rows["n_positive"], strict=True) for _ in range(int(n))]
        neg = [c for c, n in zip(rows["code"], rows["n_negative"], strict=True) for _ in range(int(n))]
        per_head[label] = (pos, neg)
    widgets.figure(code_histograms(per_head), f"codes_{sel.model}_{sel.task}")
with st.expander("Code counts table"):
    widgets.table(pd.DataFrame(codes), f"codes_{sel.model}_{sel.task}_table")
