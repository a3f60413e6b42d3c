"""Model & prompt: the model's card, a prompt (typed or a task example) with its tokens, the top
next-token predictions, and the task metric for an answer pair."""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from app import state, widgets
from circuitkit.models import ModelLoadError, read_card
from circuitkit.models.zoo import builtin_dir, resolve_builtin
from circuitkit.predict import top_predictions
from circuitkit.tasks import metrics

sel = state.current()
st.title("Model & prompt")
try:
    model = state.model(sel.model)
except ModelLoadError as exc:
    widgets.fail(f"Could not load {sel.model}", exc, "Pick another model in the sidebar.")
    st.stop()

builtin = resolve_builtin(sel.model)
card = read_card(builtin_dir(builtin)) if builtin else {}
st.header(f"Model: {sel.model}")
st.write(card.get("description", ""))
cfg = model.cfg
c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("layers", cfg.n_layers)
c2.metric("d_model", cfg.d_model)
c3.metric("heads / layer", cfg.n_heads)
c4.metric("vocabulary", f"{cfg.d_vocab:,}")
c5.metric("parameters", f"{card.get('n_params', sum(p.numel() for p in model.parameters())):,}")

scores = card.get("task_scores", {})
if scores:
    st.subheader("Task scores (held-out prompts, from the model card)")
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
    widgets.table(pd.DataFrame(rows), f"{sel.model}_task_scores")
if card:
    with st.expander("Training data and run"):
        st.json({"recipe": card.get("recipe", {}), "training": card.get("training", {})})

st.subheader("Prompt")
source = st.radio(
    "Prompt source",
    ["task example", "typed"],
    horizontal=True,
    key=state.bind("source", ["task example", "typed"], "task example"),
)
data = state.task_data(sel.model, sel.task, 16)
answer, wrong = "", ""
if source == "task example":
    idx = st.number_input(
        "Example", 0, len(data) - 1, key=state.bind("example", None, 0, int, lo=0, hi=len(data) - 1)
    )
    prompt = data.prompts[idx]
    answer = model.tokenizer.decode([int(data.answer_ids[idx])])
    wrong = model.tokenizer.decode([int(data.wrong_ids[idx])])
    st.code(prompt, language=None)
    state.publish("source", "example")
else:
    prompt = st.text_input(
        "Prompt",
        key=state.bind("prompt", None, "When Mary and John went to the store, John gave a drink to"),
    )
    state.publish("source", "prompt")
k = st.slider("Top predictions", 1, 30, key=state.bind("k", None, 10, int, lo=1, hi=30))
state.publish("k")
try:
    pred = top_predictions(model, prompt, k)
except ValueError as exc:
    widgets.fail("Cannot run this prompt", exc)
    st.stop()
st.markdown("**Tokens** (BOS first): " + " ".join(f"`{t}`" for t in pred.tokens))
top = pd.DataFrame(pred.top, columns=["token", "probability", "logit"])
top.insert(0, "rank", range(1, len(top) + 1))
widgets.table(top, "top_predictions")

st.subheader("Metric for an answer pair")
if source == "task example" and data.metric_name != "logit_diff":
    # A task metric that is not a token pair (greater-than: over all 100 years): the task's own.
    with torch.no_grad():
        value = float(data.per_prompt_metric(model(data.clean_tokens))[idx])
    st.metric(f"{data.metric_name} (the task's metric)", f"{value:.4f}")
else:
    a1, a2 = st.columns(2)
    answer = a1.text_input("Answer token", value=answer or " Mary", key=f"answer_{prompt}")
    wrong = a2.text_input("Competing token", value=wrong or " John", key=f"wrong_{prompt}")
    ids = [model.tokenizer.encode(w, add_special_tokens=False) for w in (answer, wrong)]
    if any(len(t) != 1 for t in ids):
        st.error(
            f"Both must be single tokens for this tokenizer: {answer!r} -> {len(ids[0])} tokens, "
            f"{wrong!r} -> {len(ids[1])} tokens. Include the leading space (e.g. ' Mary')."
        )
    else:
        with torch.no_grad():
            logits = model(model.to_tokens(prompt, truncate=False))  # length checked above
        ld = float(
            metrics.logit_diff(
                logits,
                torch.tensor([ids[0][0]], device=logits.device),
                torch.tensor([ids[1][0]], device=logits.device),
            )[0]
        )
        st.metric(f"logit({answer!r}) − logit({wrong!r})", f"{ld:.4f}")
