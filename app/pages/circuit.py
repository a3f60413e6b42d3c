"""Circuit: heads ranked by a method's scores as a layered graph, pruned by a size slider, overlaid on
the ground-truth circuit; faithfulness against size; click a head for its attention pattern. Below, the
feature circuit: dictionary latents and error nodes by AtP / RelP; click a latent for its top contexts
and logit effects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from app import data, methods, state, widgets
from circuitkit.components import head_label
from circuitkit.features import dashboard as dash
from circuitkit.models import read_card
from circuitkit.models.zoo import builtin_dir, resolve_builtin
from circuitkit.tasks.ground_truth import ground_truth
from circuitkit.viz import (
    attention_pattern,
    circuit_graph,
    faithfulness_curve,
    roc_curve,
    roc_points,
    top_examples,
    top_logits,
)

sel: state.Selection = st.session_state["selection"]
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


def head_scores() -> np.ndarray | None:
    """[n_layers, n_heads] scores from the card (library-derived when the model was built) or a result."""
    if source == CARD:
        builtin = resolve_builtin(sel.model)
        entry = read_card(builtin_dir(builtin)).get("circuits", {}).get(sel.task, {}) if builtin else {}
        effects = entry.get("head_effects_denoising")
        return None if effects is None else np.asarray(effects, dtype=float)
    n = int(st.session_state.get("n", methods.DEFAULT_PROMPTS))
    spec = methods.Spec(sel.model, sel.task, source, "head", "denoising", n)
    found = data.find_result(
        model=sel.model, task=sel.task, method=source, family="head", direction="denoising"
    ) or data.recall(spec)
    if found is None and st.button(f"Run {sources[source]} on heads", type="primary"):
        with st.status("Running ...") as status:
            found = methods.run(spec)
            data.remember(spec, found)
            status.update(label=f"done in {found.provenance.seconds:.2f} s", state="complete")
    return None if found is None else found.grid("head").numpy()


scores = head_scores()
if scores is None:
    st.info("No head scores for this view yet: pick another source or press Run.")
    st.stop()

try:
    truth = ground_truth(sel.model, sel.task)
except KeyError as exc:
    truth = None
    st.warning(f"No ground truth to overlay: {exc}")

n_total = n_layers * n_heads
default_k = min(n_total, max(8, len(truth.heads) if truth is not None else 0))
c1, c2, c3 = st.columns([2, 1, 1])
k = c1.slider(
    "Circuit size (top heads by |score|)", 1, n_total, key=state.bind("k_heads", None, default_k, int)
)
color_by = c2.radio(
    "Colour by", ["role", "score"], horizontal=True, key=state.bind("color", ["role", "score"], "role")
)
overlay = c3.toggle(
    "Ground-truth overlay", key=state.bind("overlay", [True, False], truth is not None, lambda s: s == "True")
)
state.publish("k_heads", "color", "overlay")

flat = np.abs(scores).ravel()
keep = np.zeros(n_total, bool)
keep[np.argsort(-flat, kind="stable")[:k]] = True
roles = truth.heads if truth is not None else {}
nodes = pd.DataFrame(
    {
        "node": [head_label(*divmod(i, n_heads)) for i in range(n_total)],
        "layer": [i // n_heads for i in range(n_total)],
        "column": [i % n_heads for i in range(n_total)],
        "score": scores.ravel(),
        "in_circuit": keep,
        "role": [roles.get(divmod(i, n_heads), "not in ground truth") for i in range(n_total)],
    }
)
truth_labels = {head_label(*h) for h in roles} if (overlay and truth is not None) else None
fig = circuit_graph(nodes, truth=truth_labels, color_by=color_by, title=f"Top {k} heads · {sources[source]}")
event = widgets.figure(fig, f"circuit_{sel.model}_{sel.task}", selectable=True)

if truth is not None:
    found = set(nodes.loc[nodes["in_circuit"], "node"])
    true = {head_label(*h) for h in roles}
    tp = len(found & true)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("true positives", tp)
    m2.metric("false positives", len(found - true))
    m3.metric("misses", len(true - found))
    m4.metric("precision / recall", f"{tp / max(len(found), 1):.2f} / {tp / max(len(true), 1):.2f}")
    st.caption(f"Ground truth: {truth.source}")
    mask = truth.head_mask(n_layers, n_heads)
    if 0 < int(mask.sum()) < mask.numel():
        from circuitkit.heads import roc_auc

        fpr, tpr = roc_points(flat, mask.numpy().ravel())
        auc = roc_auc(torch.tensor(flat), mask)
        widgets.figure(roc_curve({sources[source]: (fpr, tpr, auc)}), f"roc_{sel.model}_{sel.task}")
    else:
        st.info(
            f"No ROC curve: the ground truth holds {int(mask.sum())} of {mask.numel()} heads, "
            "so a ranking cannot be scored."
        )

st.subheader("Faithfulness against circuit size")
try:
    from circuitkit.evaluation import faithfulness_curve as faithfulness_sweep
except ImportError:
    faithfulness_sweep = None
if faithfulness_sweep is None:
    st.info("Faithfulness needs circuitkit.evaluation, which this installation does not have.")
else:
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
    "Head (or click a node in the graph)",
    labels,
    key=state.bind("node", labels, labels[int(np.argmax(flat))]),
)
state.publish("node")
layer, head = divmod(labels.index(node), n_heads)
row = nodes.iloc[labels.index(node)]
st.markdown(
    f"**{node}** · score {row['score']:.4g} · role: {row['role']} · in circuit: {bool(row['in_circuit'])}"
)
dataset = state.task_data(sel.model, sel.task, 16)
ex = st.number_input("Prompt", 0, len(dataset) - 1, key=state.bind("example", None, 0, int))
state.publish("example")
hook = f"blocks.{layer}.attn.hook_pattern"
with torch.no_grad():
    _, cache = model.run_with_cache(dataset.clean_tokens[ex : ex + 1], names_filter=hook)
tokens = model.to_str_tokens(dataset.clean_tokens[ex])
widgets.figure(
    attention_pattern(cache[hook][0, head].cpu(), tokens, title=f"{node} attention on a clean prompt"),
    f"attention_{node}",
)


st.header("Feature circuit")
st.caption(
    "Dictionaries spliced into the model with their error nodes (Marks et al. 2024); every latent and "
    "error node scored by AtP or RelP on the task's prompts, summed over positions and prompts."
)
all_dicts = state.available_dictionaries(sel.model)
if not all_dicts:
    st.info(
        f"No dictionaries for {sel.model}: train one with `python -m sae_training train ...` or ship the "
        "default set with `python -m sae_training ship --model default`."
    )
    st.stop()
preferred = [d for d in all_dicts if "transcoder" in d or "attn" in d]
chosen = st.multiselect(
    "Dictionaries spliced in",
    all_dicts,
    default=(preferred or all_dicts)[:3],
    key="fc_dicts",
    help="Several at once: each sees the others' reconstructions plus error, so scores are joint.",
)
c1, c2 = st.columns([1, 2])
fc_method = c1.radio(
    "Attribution", ["atp", "relp"], horizontal=True, key=state.bind("fc_method", ["atp", "relp"], "atp")
)
fc_k = c2.slider("Nodes shown (top |score|)", 5, 60, key=state.bind("fc_k", None, 20, int))
state.publish("fc_method", "fc_k")
fc_key = ("feature_circuit", sel.model, sel.task, tuple(chosen), fc_method)
nodes_table = st.session_state.get(fc_key)
if nodes_table is None and chosen and st.button("Attribute latents", type="primary", key="fc_run"):
    with st.status("Splicing the dictionaries and attributing every node ...") as status:
        nodes_table = methods.feature_nodes(sel.model, sel.task, tuple(chosen), fc_method)
        st.session_state[fc_key] = nodes_table
        status.update(label=f"{len(nodes_table):,} nodes scored", state="complete")
if nodes_table is None:
    st.info("Pick dictionaries and press *Attribute latents*.")
    st.stop()

top = nodes_table.reindex(nodes_table["score"].abs().sort_values(ascending=False).index).head(fc_k)
short = {d: d.split("__", 1)[-1] if "__" in d else Path(d).name for d in chosen}
fc_nodes = pd.DataFrame(
    {
        "node": [
            f"{short[d]} {'error' if lat < 0 else f'#{lat}'}"
            for d, lat in zip(top["dictionary"], top["latent"], strict=True)
        ],
        "layer": top["layer"].astype(int).to_numpy(),
        "score": top["score"].to_numpy(),
        "in_circuit": True,
        "role": [short[d] for d in top["dictionary"]],
        "dictionary": top["dictionary"].to_numpy(),
        "latent": top["latent"].astype(int).to_numpy(),
    }
)
fc_nodes["column"] = fc_nodes.groupby("layer").cumcount()
fc_event = widgets.figure(
    circuit_graph(fc_nodes, title=f"Top {fc_k} latent / error nodes · {fc_method}"),
    f"feature_circuit_{sel.model}_{sel.task}",
    key="fc_graph",
    selectable=True,
)
widgets.table(
    fc_nodes[["node", "layer", "score", "dictionary", "latent"]], f"feature_circuit_{sel.model}_{sel.task}"
)
latent_labels = fc_nodes.loc[fc_nodes["latent"] >= 0, "node"].tolist()
if latent_labels:
    fc_clicked = None
    if fc_event and fc_event.get("selection", {}).get("points"):
        cd = fc_event["selection"]["points"][0].get("customdata")
        fc_clicked = cd[0] if cd else None
    if fc_clicked in latent_labels:
        st.session_state["fc_node"] = fc_clicked
    picked = st.selectbox("Latent (or click a node in the graph)", latent_labels, key="fc_node")
    row = fc_nodes.loc[fc_nodes["node"] == picked].iloc[0]
    dict_id, latent = str(row["dictionary"]), int(row["latent"])
    st.markdown(
        f"**{picked}** · score {row['score']:.4g} · the full dashboard (histograms, steering) is on the "
        f"Features page with dictionary `{dict_id}`, latent {latent}."
    )
    with st.spinner("Encoding the dashboard's token set ..."):
        fc_tokens, fc_acts = state.dictionary_activations(sel.model, dict_id, 128)
    summary = dash.summarize_latent(model, fc_acts, fc_tokens, latent)
    left, right = st.columns(2)
    with left:
        if summary.examples:
            widgets.figure(
                top_examples([t for t, _ in summary.examples], [a for _, a in summary.examples]),
                f"latent_{latent}_examples",
                key="fc_examples",
            )
        else:
            st.info("This latent never fires on the dashboard's token set.")
    with right:
        pos, neg = dash.logit_effects(model, state.dictionary(dict_id, str(model.cfg.device)), latent)
        widgets.figure(top_logits(pos, neg), f"latent_{latent}_logits", key="fc_logits")
