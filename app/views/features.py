"""Features: a dictionary-latent dashboard (top-activating contexts, activation histogram, top
positive / negative logits, density), search latents by token, and steer or ablate a latent on a prompt."""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from app import state, widgets
from circuitkit.features import dashboard as dash
from circuitkit.viz import activation_histogram, density_histogram, top_examples, top_logits

sel = state.current()
st.title("Features")
if sel.dictionary is None:
    st.info(
        f"No dictionary selected for {sel.model}. Pick one in the sidebar; if the list is empty, "
        "train one with "
        "`python -m sae_training train ...` (sae_training ships some for the default model), or point "
        "$CIRCUITKIT_DICTIONARIES at a folder of sae-lens dictionaries."
    )
    st.stop()
model = state.model(sel.model)
try:
    sae = state.dictionary(sel.dictionary, str(model.cfg.device))
    hook_in, hook_out = dash.dictionary_hooks(sae)
except (FileNotFoundError, ValueError, KeyError, RuntimeError) as exc:
    widgets.fail(
        f"Could not load dictionary {sel.dictionary}", exc, "Pick another dictionary in the sidebar."
    )
    st.stop()
st.caption(
    f"{sel.model} · {sel.dictionary} · reads `{hook_in}`"
    + (f", writes `{hook_out}`" if hook_out != hook_in else "")
)

n_seqs = st.select_slider(
    "Token set (sequences × 32 tokens)",
    [64, 128, 256, 512],
    key=state.bind("n_seqs", [64, 128, 256, 512], 128, int),
)


try:
    with st.spinner(f"Encoding {n_seqs * 32:,} tokens with the dictionary ..."):
        tokens, acts = state.dictionary_activations(sel.model, sel.dictionary, int(n_seqs))
except ValueError as exc:
    widgets.fail("This dictionary does not fit this model", exc)
    st.stop()
density = dash.firing_densities(acts)
d_sae = acts.shape[-1]
alive = int((density > 0).sum())
c1, c2, c3 = st.columns(3)
c1.metric("latents", f"{d_sae:,}")
c2.metric("dead on this token set", f"{d_sae - alive:,}")
c3.metric("mean L0", f"{float((acts[:, 1:] > 0).sum(-1).float().mean()):.1f}")

with st.expander("Search latents by token"):
    word = st.text_input("Token (with its leading space, e.g. ' Mary')", key=state.bind("token", None, ""))
    if word:
        ids = model.tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            st.error(f"{word!r} is {len(ids)} tokens for this tokenizer; search one token at a time.")
        else:
            try:
                widgets.table(dash.latents_for_token(acts, tokens, ids[0]), f"latents_for_{word.strip()}")
            except ValueError as exc:
                widgets.fail("Search failed", exc)

default_latent = int(torch.argmax(density))
latent = st.number_input(
    f"Latent (0–{d_sae - 1})",
    0,
    d_sae - 1,
    key=state.bind("latent", None, default_latent, int, lo=0, hi=d_sae - 1),
)
state.publish("n_seqs", "token", "latent")
s = dash.summarize_latent(model, acts, tokens, int(latent))
st.subheader(f"Latent {latent}")
st.metric("firing density", f"{s.density:.4%}")
if not s.examples:
    st.info(
        "This latent never fires on the token set: it is dead here. Try a larger token set or another latent."
    )
else:
    widgets.figure(
        top_examples([t for t, _ in s.examples], [a for _, a in s.examples]), f"latent_{latent}_examples"
    )
left, right = st.columns(2)
with left:
    if s.firing.numel():
        widgets.figure(activation_histogram(s.firing), f"latent_{latent}_histogram")
    pos, neg = dash.logit_effects(model, sae, int(latent))
    widgets.figure(top_logits(pos, neg), f"latent_{latent}_logits")
with right:
    logd = np.log10(density[density > 0].numpy())
    widgets.figure(
        density_histogram(logd, selected=float(np.log10(s.density)) if s.density > 0 else None),
        f"{sel.dictionary}_densities",
    )

st.subheader("Steer or ablate this latent on a prompt")
with st.form("intervene"):
    prompt = st.text_input("Prompt", value="When Mary and John went to the store, John gave a drink to")
    mode = st.radio("Intervention", ["ablate", "steer"], horizontal=True)
    value = st.slider("Steering coefficient (steer only)", -20.0, 20.0, 5.0, 0.5)
    go = st.form_submit_button("Apply", type="primary")
if go:
    toks = model.to_tokens(prompt)
    with torch.no_grad():
        before = model(toks)[0, -1]
    after = dash.intervene(model, sae, toks, int(latent), mode=mode, value=value)[0, -1]
    widgets.table(dash.prediction_change(model, before, after), f"latent_{latent}_{mode}_predictions")
