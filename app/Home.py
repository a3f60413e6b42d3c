"""circuitkit explorer: entry page. Run with ``make app`` (``streamlit run app/Home.py``)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from circuitkit.models import ALIASES, BUILTIN, DEFAULT_MODEL, ModelLoadError, load_model, read_card
from circuitkit.models.zoo import builtin_dir
from circuitkit.predict import top_predictions

st.set_page_config(page_title="circuitkit", layout="wide")


@st.cache_resource(show_spinner="Loading model ...")
def cached_model(name: str):
    return load_model(name)


names = list(BUILTIN)
default = st.query_params.get("model", DEFAULT_MODEL)
default = ALIASES.get(default, default)
model_name = st.sidebar.selectbox("Model", names, index=names.index(default) if default in names else 0)
st.query_params["model"] = model_name

st.title("circuitkit")
st.caption("Train dictionaries, find circuits, look at them.")

try:
    model = cached_model(model_name)
except ModelLoadError as exc:
    st.error(f"Could not load {model_name}: {exc}")
    st.stop()

card = read_card(builtin_dir(model_name))
st.header(f"Model: {model_name}")
st.write(card.get("description", ""))
cfg = model.cfg
c1, c2, c3, c4 = st.columns(4)
c1.metric("layers", cfg.n_layers)
c2.metric("d_model", cfg.d_model)
c3.metric("heads / layer", cfg.n_heads)
c4.metric("parameters", f"{card.get('n_params', sum(p.numel() for p in model.parameters())):,}")

scores = card.get("task_scores", {})
if scores:
    st.subheader("Task scores (held-out prompts)")
    rows = []
    for task, s in scores.items():
        metric = "logit_diff" if "logit_diff" in s else "prob_diff"
        rows.append(
            {
                "task": task,
                "accuracy": s["accuracy"],
                "metric": metric,
                "clean": s[metric],
                "corrupted": s[f"{metric}_corrupted"],
                "prompts": s["n_prompts"],
            }
        )
    st.dataframe(pd.DataFrame(rows), hide_index=True)

train = card.get("training", {})
with st.expander("Training data and run"):
    st.json({"recipe": card.get("recipe", {}), "training": train})

st.subheader("Prompt")
prompt = st.text_input(
    "Prompt",
    value=st.query_params.get("prompt", "When Mary and John went to the store, John gave a drink to"),
)
st.query_params["prompt"] = prompt
k = st.slider("Top predictions", 1, 30, 10)
try:
    pred = top_predictions(model, prompt, k)
except ValueError as exc:
    st.error(str(exc))
    st.stop()
st.markdown("**Tokens** (BOS first): " + " ".join(f"`{t}`" for t in pred.tokens))
st.dataframe(
    pd.DataFrame(pred.top, columns=["token", "probability", "logit"]).assign(rank=lambda d: d.index + 1),
    hide_index=True,
)
