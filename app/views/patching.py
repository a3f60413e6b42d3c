"""Patching: a method's scores for one component family as heatmaps, compared with exact activation
patching (Pearson r), with the cost of each. Reads stored results; computes on demand."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import data, methods, state, widgets
from circuitkit.components import DEFAULT_FAMILIES, FAMILIES
from circuitkit.tasks.ground_truth import ground_truth
from circuitkit.viz import layer_head_heatmap, layer_pos_heatmap, method_vs_patching_scatter

sel = state.current()
st.title("Patching")
st.caption(f"{sel.model} · task {sel.task}")

METHODS = methods.available()
FAMS = [f for f in (*DEFAULT_FAMILIES, "attn_out_all", "mlp_out_all") if f in FAMILIES]
c1, c2, c3, c4 = st.columns(4)
method = c1.selectbox(
    "Method", list(METHODS), format_func=METHODS.get, key=state.bind("method", list(METHODS), "activation")
)
family = c2.selectbox("Component family", FAMS, key=state.bind("family", FAMS, "head"))
direction = c3.selectbox(
    "Direction", methods.DIRECTIONS, key=state.bind("direction", methods.DIRECTIONS, "denoising")
)
n_prompts = c4.number_input(
    "Prompts", 4, 256, step=4, key=state.bind("n", None, methods.DEFAULT_PROMPTS, int, lo=4, hi=256)
)
state.publish("method", "family", "direction", "n")


def get(method_key: str, *, compute: bool) -> object:
    """Stored result, else this session's, else (when asked) a fresh run with a progress indicator."""
    spec = methods.Spec(sel.model, sel.task, method_key, family, direction, int(n_prompts))
    found = data.find_result(
        model=sel.model,
        task=sel.task,
        method=method_key,
        family=family,
        direction=direction,
        n_prompts=int(n_prompts),
    ) or data.recall(spec)
    if found is not None or not compute:
        return found
    with st.status(f"Running {METHODS[method_key]} on {family} ...", expanded=False) as status:
        try:
            result = methods.run(spec)
        except ValueError as exc:  # a request the method refuses (family, prompts): said in the page
            status.update(label="failed", state="error")
            widgets.fail(f"{METHODS[method_key]} failed", exc, "Change the family or the number of prompts.")
            return None
        status.update(
            label=f"{METHODS[method_key]}: done in {result.provenance.seconds:.2f} s", state="complete"
        )
    data.remember(spec, result)
    return result


result = get(method, compute=False)
reference = result if method == "activation" else get("activation", compute=False)
missing = [m for m, r in ((method, result), ("activation", reference)) if r is None]
if missing:
    names = " and ".join(METHODS[m] for m in dict.fromkeys(missing))
    st.info(
        f"No stored result for {names} on this view. Run it here (seconds on the toy models) "
        "or with `circuitkit discover`."
    )
    if st.button("Run", type="primary", key="run_patching"):
        result = get(method, compute=True)
        reference = result if method == "activation" else get("activation", compute=True)
if result is None:
    st.stop()

prov = result.provenance
grid = result.grid(family).numpy()
dims = FAMILIES[family].dims
title = f"{METHODS[method]} · {family} · {prov.direction} · Δ{prov.metric} ({prov.score_kind})"
model = state.model(sel.model)
if dims == ("layer", "head"):
    try:
        truth = list(ground_truth(sel.model, sel.task).heads)
    except KeyError as exc:
        truth = []
        st.caption(f"No ground-truth overlay: {exc}")
    fig = layer_head_heatmap(grid, title=title, colorbar_title="Δ metric", highlight=truth)
    st.caption("Boxes: the ground-truth circuit's heads." if truth else "")
else:
    dataset = state.task_data(sel.model, sel.task, prov.n_prompts, prov.seed)
    if dims == ("layer", "pos"):
        tokens = model.to_str_tokens(dataset.clean_tokens[0])
    else:
        grid, tokens = grid.reshape(-1, 1), ["all positions"]
    fig = layer_pos_heatmap(grid, tokens, title=title, colorbar_title="Δ metric")
    st.caption(
        "Position labels: the first clean prompt (every prompt has the same length and template slots)."
    )
widgets.figure(fig, f"{sel.model}_{sel.task}_{method}_{family}")

st.subheader("Cost")
cost = [{"method": METHODS[method], "passes": prov.passes, "seconds": prov.seconds}]
if method != "activation" and reference is not None:
    rp = reference.provenance
    cost.append({"method": METHODS["activation"], "passes": rp.passes, "seconds": rp.seconds})
widgets.table(pd.DataFrame(cost), f"cost_{method}_{family}")

if method != "activation" and reference is not None:
    st.subheader(f"{METHODS[method]} against activation patching")
    a = result.family(family).set_index("component")["score"]
    b = reference.family(family).set_index("component")["score"]
    joined = pd.concat([a.rename("method"), b.rename("activation")], axis=1, join="inner").dropna()
    corr = methods.correlation(result, reference, family)
    r = corr["pearson"]
    m1, m2 = st.columns(2)
    m1.metric("Pearson r", f"{r:.3f}")
    m2.metric("Spearman ρ", f"{corr['spearman']:.3f}")
    if prov.score_kind == "magnitude":
        st.caption("Unsigned scores: compared with |activation-patching effect|.")
    widgets.figure(
        method_vs_patching_scatter(
            joined["method"], joined["activation"], list(joined.index), method_name=METHODS[method], r=r
        ),
        f"scatter_{method}_{family}",
    )

with st.expander("Result table and provenance"):
    widgets.table(result.family(family), f"{sel.model}_{sel.task}_{method}_{family}_table")
    st.json(vars(prov))
