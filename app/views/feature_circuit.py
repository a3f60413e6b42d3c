"""Feature circuit: dictionaries spliced into the model with their error nodes (Marks et al. 2024), every
latent and error node scored by AtP or RelP through the registry's ``features`` method; click a latent
for its top contexts and logit effects."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app import methods, state, widgets
from circuitkit.features import dashboard as dash
from circuitkit.viz import circuit_graph, top_examples, top_logits

sel = state.current()
st.title("Feature circuit")
st.caption(f"{sel.model} · task {sel.task}")
model = state.model(sel.model)

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
fc_k = c2.slider("Nodes shown (top |score|)", 5, 60, key=state.bind("fc_k", None, 20, int, lo=5, hi=60))
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
