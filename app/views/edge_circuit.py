"""Edge circuit: sender -> receiver edges scored by an edge method (EAP, EAP-IG, exact edge patching),
drawn over the model's nodes by layer, pruned by a top-k slider; click an edge (or pick it) for its
numbers. Where the model's card stores the circuit's edges (the planted models), the drawn edges are
coloured true / false against them and the missed ones are added.

Results come from files ``circuitkit discover`` / ``evaluate`` wrote (found by their full key, like the
node pages) or are computed here on demand through the method registry. The figure is
:func:`circuitkit.viz.edges.edge_circuit_figure`, the table :func:`circuitkit.viz.edges.select_edges`.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import data, methods, state, widgets
from circuitkit.edges.evaluation import score_against_node_edges
from circuitkit.edges.method import EDGE_METHODS
from circuitkit.edges.scores import EDGE_FAMILY
from circuitkit.results import ResultTable
from circuitkit.tasks.ground_truth import ground_truth
from circuitkit.viz.edges import edge_circuit_figure, select_edges, truth_overlap

LABELS = {
    "eap": "EAP (Syed et al. 2023), 3 passes",
    "eap-ig": "EAP-IG (Hanna et al. 2024), 5 steps",
    "edge-patching": "exact edge patching (slow on ck-6l: minutes)",
}

sel = state.current()
st.title("Edge circuit")
st.caption(f"{sel.model} · task {sel.task} · denoising (clean sender values into the corrupted run)")

options = [m for m in EDGE_METHODS if m in LABELS]
method = st.selectbox(
    "Edge scores from",
    options,
    format_func=LABELS.get,
    key=state.bind("edge_method", options, "eap"),
)
state.publish("edge_method")


def edge_result() -> ResultTable | None:
    """A stored result with this view's full key (default options, any prompt count), else one computed
    here this session, else None (a Run button)."""
    found = data.find_result(model=sel.model, task=sel.task, method=method, family=EDGE_FAMILY)
    if found is not None:
        return found
    spec = methods.Spec(sel.model, sel.task, method, EDGE_FAMILY, "denoising", methods.DEFAULT_PROMPTS)
    found = data.recall(spec)
    if found is None and st.button(f"Run {LABELS[method]}", type="primary", key="run_edges"):
        with st.status("Scoring every edge ...") as status:
            found = methods.run(spec)
            data.remember(spec, found)
            status.update(label=f"done in {found.provenance.seconds:.2f} s", state="complete")
    return found


result = edge_result()
if result is None:
    st.info(
        "No edge result for this view yet: press Run, or write one with "
        f"`circuitkit discover --model {sel.model} --task {sel.task} --method {method}`."
    )
    st.stop()

p = result.provenance
edges = select_edges(result, top_k=None)
n_edges = len(edges)
st.caption(
    f"{n_edges} edges · {p.n_prompts} prompts · {p.passes:g} passes, {p.seconds:.2f} s · "
    f"options {p.options or '-'}"
)
try:
    true_edges = ground_truth(sel.model, sel.task).edge_pairs()
except KeyError:
    true_edges = None
c1, c2 = st.columns([3, 1])
k = c1.slider(
    "Edges shown (top k by |score|)",
    1,
    n_edges,
    key=state.bind(
        "k_edges", None, min(n_edges, len(true_edges) if true_edges else 50), int, lo=1, hi=n_edges
    ),
)
overlay = c2.toggle(
    "Planted-edge overlay",
    key=state.bind("edge_overlay", [True, False], bool(true_edges), lambda s: s == "True"),
    disabled=not true_edges,
    help="Colour edges true / false against the edges stored in the model card (planted circuits).",
)
state.publish("k_edges", "edge_overlay")
truth = true_edges if (overlay and true_edges) else None

event = widgets.figure(
    edge_circuit_figure(result, top_k=k, truth=truth),
    f"edges_{sel.model}_{sel.task}_{method}",
    selectable=True,
)
if truth is not None:
    o = truth_overlap(result, truth, k)
    ranking = score_against_node_edges(result, truth, k=len(truth))
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("true edges drawn", f"{o['true_positives']} of {o['n_true']}")
    m2.metric("false edges drawn", o["false_positives"])
    m3.metric("true edges missed", o["misses"])
    m4.metric("ROC AUC (node pairs)", f"{ranking['roc_auc']:.3f}")
    st.caption(
        "A receiver's q, k and v count as one node pair (drawn if any of them is); ROC AUC ranks every "
        "(sender, receiver node) pair by its largest |score| against the card's planted edges."
    )
top = select_edges(result, top_k=k)[["sender", "receiver", "score"]].reset_index(drop=True)
top.insert(0, "rank", range(1, len(top) + 1))
widgets.table(top, f"edges_{sel.model}_{sel.task}_{method}_top{k}")

st.subheader("Edge details")
names = [f"{s}->{r}" for s, r in zip(top["sender"], top["receiver"], strict=True)]
points = (event or {}).get("selection", {}).get("points", [])
# Only the edges' midpoint markers carry [sender, receiver, score]; a click on a node has no customdata.
clicked = next((pt["customdata"] for pt in points if len(pt.get("customdata") or []) == 3), None)
if clicked is not None and f"{clicked[0]}->{clicked[1]}" in names:
    st.session_state["edge"] = f"{clicked[0]}->{clicked[1]}"
edge = st.selectbox(
    "Edge (or click an edge's midpoint in the graph)", names, key=state.bind("edge", names, names[0])
)
state.publish("edge")
sender, receiver = edge.split("->")
row = edges[(edges["sender"] == sender) & (edges["receiver"] == receiver)].iloc[0]
rank = names.index(edge) + 1
total = float(edges["score"].abs().sum())
c1, c2, c3, c4 = st.columns(4)
c1.metric("score", f"{row['score']:.4g}")
c2.metric("rank by |score|", f"{rank} of {n_edges}")
c3.metric("share of Σ|score|", f"{abs(row['score']) / total:.1%}" if total else "-")
c4.metric(
    "receiver", f"layer {int(row['layer'])}" + ("" if pd.isna(row["head"]) else f", head {int(row['head'])}")
)
st.markdown(f"**{sender} → {receiver}** · {p.method} · metric {p.metric} (m_patched − m_target)")
same_pair = edges[
    (edges["sender"] == sender) & (edges["receiver"].str.split(".").str[0] == receiver.split(".")[0])
]
if len(same_pair) > 1:
    st.caption(f"Every input of {receiver.split('.')[0]} from {sender}:")
    widgets.table(same_pair[["sender", "receiver", "score"]], f"edge_{sender}_{receiver.split('.')[0]}")
