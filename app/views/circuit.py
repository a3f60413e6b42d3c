"""Circuit: heads ranked by a method's scores as a layered graph, pruned by a size slider, overlaid on
the ground-truth circuit; faithfulness against size; click a head for its attention pattern. (The
feature circuit over dictionary latents is its own page.)

When the ground truth holds MLPs and edges (the planted models' cards), the MLPs join the graph as nodes
(scored over all positions) and the planted edges are drawn between the true nodes, so true positives,
false positives and misses are seen among heads and MLPs alike; the Edge circuit page scores the edges.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
import torch

from app import data, methods, state, widgets
from circuitkit.components import head_label
from circuitkit.evaluation import faithfulness_curve as faithfulness_sweep
from circuitkit.evaluation.ground_truth import (
    card_head_effects,
    circuit_overlap,
    roc_auc,
    roc_points,
    top_k_mask,
)
from circuitkit.tasks.ground_truth import ground_truth
from circuitkit.viz import attention_pattern, circuit_graph, faithfulness_curve, roc_curve

sel = state.current()
st.title("Circuit")
st.caption(f"{sel.model} · task {sel.task}")
model = state.model(sel.model)
n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads

CARD = "card"
sources = {CARD: "model card: activation patching (denoising), all prompts"}
sources.update({k: f"{v} (stored or run here)" for k, v in methods.available("head").items()})
source = st.selectbox(
    "Head scores from", list(sources), format_func=sources.get, key=state.bind("scores", list(sources), CARD)
)
state.publish("scores")


try:
    truth = ground_truth(sel.model, sel.task)
except KeyError as exc:
    truth = None
    st.warning(f"No ground truth to overlay: {exc}")
# Planted circuits name MLPs and edges and claim every other component inert: draw MLPs as nodes too
# (also where the circuit has none, as IOI's: that they stay out is part of the claim), and the edges.
with_mlps = truth is not None and (bool(truth.mlps) or bool(truth.details.get("planted")))


def stored_or_run(family: str, what: str, **button) -> np.ndarray | None:
    """The source method's grid for ``family``: stored, computed this session, or after pressing Run."""
    n = int(st.session_state.get("n", methods.DEFAULT_PROMPTS))
    spec = methods.Spec(sel.model, sel.task, source, family, "denoising", n)
    found = data.find_result(
        model=sel.model, task=sel.task, method=source, family=family, direction="denoising"
    ) or data.recall(spec)
    if found is None and st.button(f"Run {sources[source]} on {what}", **button):
        with st.status("Running ...") as status:
            found = methods.run(spec)
            data.remember(spec, found)
            status.update(label=f"done in {found.provenance.seconds:.2f} s", state="complete")
    return None if found is None else found.grid(family).numpy()


def head_scores() -> np.ndarray | None:
    """[n_layers, n_heads] scores from the card (library-derived when the model was built) or a result."""
    if source == CARD:
        effects = card_head_effects(sel.model, sel.task)
        return None if effects is None else effects.numpy()
    return stored_or_run("head", "heads", type="primary")


def mlp_scores() -> np.ndarray | None:
    """[n_layers] MLP scores over all positions: the card's, or the source method's ``mlp_out_all``."""
    if source == CARD:
        effects = truth.details.get("mlp_effects_denoising") if truth is not None else None
        return None if effects is None else np.asarray(effects, dtype=float)
    if source not in methods.available("mlp_out_all"):
        return None
    return stored_or_run("mlp_out_all", "MLPs", key="run_mlps")


scores = head_scores()
if scores is None:
    st.info("No head scores for this view yet: pick another source or press Run.")
    st.stop()
mlp = mlp_scores() if with_mlps else None
if with_mlps and mlp is None:
    st.caption("MLP nodes are left out: no MLP scores from this source yet (press Run on MLPs).")

n_total = n_layers * n_heads + (n_layers if mlp is not None else 0)
n_true = (len(truth.heads) + (len(truth.mlps) if mlp is not None else 0)) if truth is not None else 0
default_k = min(n_total, n_true if with_mlps else max(8, n_true))
c1, c2, c3 = st.columns([2, 1, 1])
k = c1.slider(
    "Circuit size (top heads and MLPs by |score|)"
    if mlp is not None
    else "Circuit size (top heads by |score|)",
    1,
    n_total,
    key=state.bind("k_heads", None, default_k, int, lo=1, hi=n_total),
)
color_by = c2.radio(
    "Colour by", ["role", "score"], horizontal=True, key=state.bind("color", ["role", "score"], "role")
)
overlay = c3.toggle(
    "Ground-truth overlay", key=state.bind("overlay", [True, False], truth is not None, lambda s: s == "True")
)
state.publish("k_heads", "color", "overlay")

n_head_nodes = n_layers * n_heads
all_scores = scores.ravel() if mlp is None else np.concatenate([scores.ravel(), mlp.ravel()])
flat = np.abs(all_scores)
keep = top_k_mask(torch.tensor(all_scores), k).numpy().ravel()
roles = truth.heads if truth is not None else {}
mlp_roles = {}
if truth is not None:
    mlp_roles = {n["layer"]: n["role"] for n in truth.details.get("nodes", []) if n.get("head") is None}
nodes = pd.DataFrame(
    {
        "node": [head_label(*divmod(i, n_heads)) for i in range(n_head_nodes)],
        "layer": [i // n_heads for i in range(n_head_nodes)],
        "column": [i % n_heads for i in range(n_head_nodes)],
        "score": scores.ravel(),
        "role": [roles.get(divmod(i, n_heads), "not in ground truth") for i in range(n_head_nodes)],
    }
)
if mlp is not None:
    nodes = pd.concat(
        [
            nodes,
            pd.DataFrame(
                {
                    "node": [f"MLP{la}" for la in range(n_layers)],
                    "layer": list(range(n_layers)),
                    "column": [n_heads] * n_layers,
                    "score": mlp.ravel(),
                    "role": [
                        mlp_roles.get(la, "MLP (ground truth)" if la in truth.mlps else "not in ground truth")
                        for la in range(n_layers)
                    ],
                }
            ),
        ],
        ignore_index=True,
    )
nodes["in_circuit"] = keep
truth_labels = None
if overlay and truth is not None:
    truth_labels = {head_label(*h) for h in roles}
    truth_labels |= {f"MLP{la}" for la in truth.mlps} if mlp is not None else set()
planted = truth.edge_pairs() if (overlay and truth is not None and mlp is not None) else None
edges = None
if planted:
    drawn = set(nodes["node"])
    edges = pd.DataFrame(
        [(a, b, 1.0) for a, b in planted if a in drawn and b in drawn], columns=["src", "dst", "weight"]
    )
what = "heads and MLPs" if mlp is not None else "heads"
fig = circuit_graph(
    nodes, edges, truth=truth_labels, color_by=color_by, title=f"Top {k} {what} · {sources[source]}"
)
event = widgets.figure(fig, f"circuit_{sel.model}_{sel.task}", selectable=True)

if planted:
    st.caption(
        f"Grey lines: the {len(planted)} planted edges between true nodes (tokens → … → logits); the Edge "
        "circuit page scores every edge and marks the true ones."
    )
if truth is not None and mlp is not None:
    is_true = np.array([n in (truth_labels or set()) for n in nodes["node"]])
    tp, fp = int((keep & is_true).sum()), int((keep & ~is_true).sum())
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("true positives", tp)
    m2.metric("false positives", fp)
    m3.metric("misses", int(is_true.sum()) - tp)
    m4.metric("precision / recall", f"{tp / max(1, k):.2f} / {tp / max(1, int(is_true.sum())):.2f}")
    st.caption(f"Ground truth: {truth.source}")
    mask = torch.tensor(is_true)
    if 0 < int(mask.sum()) < mask.numel():
        fpr, tpr = roc_points(flat, is_true)
        auc = roc_auc(torch.tensor(flat), mask)
        widgets.figure(roc_curve({sources[source]: (fpr, tpr, auc)}), f"roc_{sel.model}_{sel.task}")
elif truth is not None:
    overlap = circuit_overlap(torch.tensor(scores), truth, k)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("true positives", overlap.true_positives)
    m2.metric("false positives", overlap.false_positives)
    m3.metric("misses", overlap.misses)
    m4.metric("precision / recall", f"{overlap.precision:.2f} / {overlap.recall:.2f}")
    st.caption(f"Ground truth: {truth.source}")
    mask = truth.head_mask(n_layers, n_heads)
    if 0 < int(mask.sum()) < mask.numel():
        fpr, tpr = roc_points(flat, mask.numpy().ravel())
        auc = roc_auc(torch.tensor(flat), mask)
        widgets.figure(roc_curve({sources[source]: (fpr, tpr, auc)}), f"roc_{sel.model}_{sel.task}")
    else:
        st.info(
            f"No ROC curve: the ground truth holds {int(mask.sum())} of {mask.numel()} heads, "
            "so a ranking cannot be scored."
        )

st.subheader("Faithfulness against circuit size")
key = ("faith", sel.model, sel.task, source)
curve = st.session_state.get(key)
if curve is None:
    st.caption(
        "Top-k heads by |score| kept, every other head mean-ablated (mean over the corrupted prompts), "
        "MLPs kept: (m(C) − m(∅)) / (m(M) − m(∅))."
    )
if curve is None and st.button("Compute faithfulness curve", key="faith_run"):
    with st.status("Ablating everything outside circuits of growing size ...") as status:
        dataset = state.task_data(sel.model, sel.task, 32)
        curve = faithfulness_sweep(
            model,
            dataset.clean_tokens,
            dataset.metric,
            torch.tensor(scores),
            reference_tokens=dataset.corrupted_tokens,
            ablation="mean",
        )
        st.session_state[key] = curve
        status.update(label="done", state="complete")
if curve is not None:
    sizes, values = zip(*curve, strict=True)
    fig = faithfulness_curve({sources[source]: (list(sizes), list(values))}, x_title="heads kept (top-k)")
    fig.add_vline(x=k, line={"dash": "dash", "color": "#e6550d"})
    widgets.figure(fig, f"faithfulness_{sel.model}_{sel.task}")
    widgets.table(
        pd.DataFrame({"heads": sizes, "faithfulness": values}), f"faithfulness_{sel.model}_{sel.task}"
    )

st.subheader("Node details")
clicked = None
if event and event.get("selection", {}).get("points"):
    cd = event["selection"]["points"][0].get("customdata")
    clicked = cd[0] if cd else None
labels = nodes["node"].tolist()
if clicked in labels:
    st.session_state["node"] = clicked
node = st.selectbox(
    "Node (or click one in the graph)",
    labels,
    key=state.bind("node", labels, labels[int(np.argmax(flat))]),
)
state.publish("node")
row = nodes.iloc[labels.index(node)]
st.markdown(
    f"**{node}** · score {row['score']:.4g} · role: {row['role']} · in circuit: {bool(row['in_circuit'])}"
)
if node.startswith("MLP"):
    st.caption("An MLP has no attention pattern: pick a head to see where it attends.")
    st.stop()
layer, head = divmod(labels.index(node), n_heads)
dataset = state.task_data(sel.model, sel.task, 16)
ex = st.number_input(
    "Prompt", 0, len(dataset) - 1, key=state.bind("example", None, 0, int, lo=0, hi=len(dataset) - 1)
)
state.publish("example")
hook = f"blocks.{layer}.attn.hook_pattern"
with torch.no_grad():
    _, cache = model.run_with_cache(dataset.clean_tokens[ex : ex + 1], names_filter=hook)
tokens = model.to_str_tokens(dataset.clean_tokens[ex])
widgets.figure(
    attention_pattern(cache[hook][0, head].cpu(), tokens, title=f"{node} attention on a clean prompt"),
    f"attention_{node}",
)
