# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %%
# ruff: noqa: E402, B018
# (notebook: imports follow the parameters cell; a cell's last bare expression is its displayed output)

# %% [markdown]
# # The IOI circuit, end to end
#
# Indirect-object identification (Wang et al. 2022, arXiv 2211.00593): in "When Mary and John went to
# the store, John gave a drink to", the model should say " Mary" (the indirect object, IO) rather than
# " John" (the subject, S). Corrupted prompts replace the repeated name with a third one (ABC), so the
# model has no reason to prefer either name. The metric is the logit difference IO − S at the last
# position.
#
# The notebook walks the circuit's story in eight steps, each with circuitkit's own functions and
# `circuitkit.viz` figures:
# 1. the task and the model's baseline;
# 2. activation patching over the residual stream, attention and MLP outputs, and heads;
# 3. sorting heads into roles;
# 4. AtP and RelP against activation patching;
# 5. discrete-SAE head identification against the ground truth;
# 6. dictionary features in the key MLPs and heads;
# 7. the final circuit's faithfulness and completeness;
# 8. the circuit as edges: exact edge patching, EAP and EAP-IG, and their top-k edge circuits.
#
# Every assertion below checks a number measured in this run against a floor stated next to it.

# %% tags=["parameters"]
MODEL = "default"  # "default" (ck-6l), "tiny" (ck-tiny), "planted-gt" / "planted-ioi" (planted), or "gpt2"
N_PROMPTS = 32  # prompt pairs for every method
DEVICE = None  # None: CUDA when present, else CPU
FAST = False  # fewer prompts and methods: the CI run
SEED = 0  # seed of the prompts
# step 6: None = the dictionaries shipped for the model, or a list of specs: shipped ids, sae-lens
# folders, sae-lens "release/sae_id" (e.g. "gpt2-small-res-jb/blocks.8.hook_resid_pre", from the HF cache)
DICTIONARIES = None
FIGURES = "auto"  # "png" (static, kaleido + Chromium), "html" (plotly.js inlined), "auto", "none"

# %%
import time

import features_step
import pandas as pd
import steps
import torch
from nbtools import check_agreement, check_skill, competence, planted_model, setup_figures, show

from circuitkit import viz
from circuitkit.components import head_label
from circuitkit.tasks import make_task
from circuitkit.tasks.ground_truth import ground_truth

pd.set_option("display.precision", 3)
pd.set_option("display.width", 160)
torch.manual_seed(SEED)
T0 = time.perf_counter()
print("figures:", setup_figures(FIGURES))
if FAST:  # the CI run: few prompts, two attribution methods, a short code book, a coarse curve
    N_PROMPTS = min(N_PROMPTS, 12)

# %%
model = steps.load_or_stop(MODEL, DEVICE)
if model is not None:
    NAME = model.cfg.model_name
    IS_GPT2 = NAME in ("gpt2", "gpt2-small")

# %% [markdown]
# ## 1. The task and the baseline
#
# Held-out prompts (templates and names kept out of the model's training mix where the task generator
# allows). Clean and corrupted prompts are position-aligned, BOS first.

# %%
data = make_task("ioi", model.tokenizer, N_PROMPTS, seed=SEED, split="heldout").to(model.cfg.device)
baseline = steps.baseline(model, data, "logit diff (IO - S)", "accuracy (IO beats S)", "corrupted (ABC)")
print(data.prompts[0], "->", repr(model.tokenizer.decode(data.answer_ids[0])))
print(data.corrupted_prompts[0])
baseline

# %%
LD_CLEAN, ACC_CLEAN = baseline.iloc[0]
SOLVES = competence(
    {
        f"the model solves IOI: accuracy {ACC_CLEAN:.3f} >= 0.9": ACC_CLEAN >= 0.9,
        f"clean logit difference {LD_CLEAN:.2f} >= 1.0": LD_CLEAN >= 1.0,
    }
)

# %% [markdown]
# ## 2. Activation patching
#
# Denoising: run the corrupted prompts and patch one component's clean activation in; the score is the
# change of the logit difference, normalised so 1 restores the clean behaviour. Residual stream, attention
# and MLP outputs by (layer, position); heads over all positions.

# %%
gt = ground_truth("gpt2" if IS_GPT2 else model, "ioi")
planted_model(bool(gt.details.get("planted")))
FAMILIES = ("resid_pre", "attn_out", "mlp_out", "head")
patching = steps.activation_patching(model, data, gt, FAMILIES)
steps.top_heads_table(patching, gt)

# %%
found = steps.check_head_recall(patching, gt)

# %% [markdown]
# ## 3. Heads sorted into roles
#
# Wang et al. read roles off attention at the task positions (name movers attend end → IO, S-inhibition
# end → S2, induction S2 → S1+1, duplicate-token S2 → S1, previous-token S1+1 → S1) and confirm them by
# path patching: which heads, through which input, feed the name movers. First the attention scores of
# every head, then two rounds of path patching (Goldowsky-Dill et al. 2023), denoising:
# * **senders → name movers' queries**: the heads whose clean output, reaching only the name-mover
#   candidates' queries, restores the logit difference are the S-inhibition heads;
# * **senders → S-inhibition heads' values**: the heads that feed them are the induction and
#   duplicate-token heads.

# %%
from circuitkit.patching.path import path_patching

ROLE_POSITIONS = {
    "name mover": ("end", "IO"),
    "s-inhibition": ("end", "S2"),
    "induction": ("S2", "S1+1"),
    "duplicate token": ("S2", "S1"),
    "previous token": ("S1+1", "S1"),
}
attention = steps.mean_attention(model, data, ROLE_POSITIONS)
role_of = {}
for h in steps.all_heads(model):
    best = max(ROLE_POSITIONS, key=lambda role: float(attention[role][h]))
    role_of[h] = best if float(attention[best][h]) > 0.3 else "other"
show(
    viz.layer_head_heatmap(
        attention["name mover"].numpy(),
        title="Mean attention end → IO (name movers)",
        colorbar_title="attention",
    ),
    width=650,
)

# %%
late = steps.all_heads(model, range(model.cfg.n_layers // 2, model.cfg.n_layers))
name_movers = sorted(late, key=lambda h: -float(attention["name mover"][h]))[:3]
to_movers = path_patching(model, data.clean_tokens, data.corrupted_tokens, data.metric, name_movers, ("q",))
s_inhibition = [
    divmod(int(i), model.cfg.n_heads)
    for i in to_movers.normalized().nan_to_num(0).flatten().argsort(descending=True)[:2]
]
to_s_inhibition = path_patching(
    model, data.clean_tokens, data.corrupted_tokens, data.metric, s_inhibition, ("v",)
)
print(
    "name-mover candidates (most end → IO attention in the second half):",
    [head_label(*h) for h in name_movers],
)
print("strongest senders into their queries:", [head_label(*h) for h in s_inhibition])
for result, title, receivers in (
    (to_movers, "sender → name-mover candidates' queries", name_movers),
    (to_s_inhibition, "sender → S-inhibition candidates' values", s_inhibition),
):
    show(
        viz.layer_head_heatmap(
            result.normalized().numpy(),
            colorbar_title="restored",
            title=f"Path patching: {title}",
            highlight=receivers,
        ),
        width=650,
    )

# %%
listed = list(dict.fromkeys(found + name_movers + s_inhibition))
roles = pd.DataFrame(
    [
        {
            "head": head_label(*h),
            "patching (normalised)": float(patching.head_effect[h]),
            "→ movers' q": float(to_movers.normalized()[h]),
            "→ S-inh. v": float(to_s_inhibition.normalized()[h]),
            **{f"att {role}": float(att[h]) for role, att in attention.items()},
            "attention role": role_of[h],
            "ground truth role": gt.heads.get(h, ""),
        }
        for h in listed
    ]
).set_index("head")
roles

# %%
steps.show_attention_patterns(model, data, listed[:3])

# %% [markdown]
# ## 4. AtP and RelP against activation patching
#
# Attribution patching (AtP) linearises the metric in each activation: two forwards and one backward for
# every component at once. RelP (Jafari et al. 2025, arXiv 2508.21258) replaces the gradient by LRP
# propagation coefficients. Pearson r with the exact effects over each family's grid.

# %%
attribution = steps.compare_attribution(model, data, patching, FAMILIES, fast=FAST)
attribution.pivot()

# %%
steps.show_scatters(attribution, patching, ("resid_pre", "head"))

# %%
steps.check_correlations(attribution, {"atp": 0.5, "relp:rules=ln+identity": 0.5})

# %% [markdown]
# ## 5. Discrete-SAE head identification
#
# O'Neill & Bui (2024, arXiv 2405.12522): each head's output on a prompt becomes a discrete code (the
# argmax latent of a small SAE trained on ten prompts); a head scores the codes it shows on prompts the
# model gets right and never on the corrupted ones. No forward pass is patched.

# %%
ident, head_scores = steps.identify(
    model, data, gt, patching, attribution, n_prompts=N_PROMPTS, seed=SEED, fast=FAST
)
head_scores

# %%
steps.show_codes(ident, gt.heads)

# %% [markdown]
# ## 6. Dictionary features
#
# Transcoders (Dunefsky et al. 2024) replace an MLP by a sparse wide one; attention-output SAEs (Kissane
# et al. 2024) decompose `hook_z`. The shipped ones for the two MLP layers that matter most to activation
# patching and for the found heads' layers are spliced in together with their error nodes, and every
# latent is attributed with AtP on the feature circuit (Marks et al. 2024). For each dictionary: its
# latents' and error node's share of the attribution, then its strongest latents, the position where
# their attribution concentrates, and the tokens they fire on, in the IOI prompts and in ordinary text.

# %%
features = features_step.run(model, data, patching, attribution, found, fast=FAST, dictionaries=DICTIONARIES)
features.totals if features else None

# %%
if features:
    features_step.check_feature_split(features, patching.span)
features.top if features else None

# %% [markdown]
# ## 7. The circuit's faithfulness and completeness
#
# The found circuit: the heads activation patching ranks in its top 2·|ground truth|, and every MLP.
# Faithfulness = (m(C) − m(∅)) / (m(M) − m(∅)) with everything outside C mean-ablated over the corrupted
# prompts; completeness ablates C instead (Wang et al. 2022).

# %%
faith = steps.circuit_faithfulness(model, data, gt, found)
faith.table(len(found), len(gt.heads))

# %%
steps.show_faithfulness_curves(model, data, patching, attribution, ident, fast=FAST)

# %%
steps.show_circuit_graph(model, patching, faith, gt, role_of)

# %%
FAITH_FLOOR = 0.6
check_skill(
    faith.found.faithfulness >= FAITH_FLOOR,
    f"faithfulness of the found circuit {faith.found.faithfulness:.3f} >= {FAITH_FLOOR}",
)

# %% [markdown]
# ## 8. Edges: exact edge patching, EAP and EAP-IG
#
# A circuit is a graph. An edge is a direct path through the residual stream from a sender (the
# embeddings, a head's output, an MLP's output) to a receiver (a head's query / key / value input, an
# MLP's input, the logits). Exact edge patching adds one edge's clean − corrupted sender value to its
# receiver alone, in the corrupted run; EAP (Syed et al. 2023) estimates every edge from one backward pass,
# EAP-IG (Hanna et al. 2024) averages that gradient over the path from corrupted to clean input
# embeddings. Faithfulness of a method's top-k edge circuit: the clean run with every edge outside it
# patched to its corrupted sender value (1 = the clean metric, 0 = the corrupted one).
# (`circuitkit.edges.step.edge_step`; the same tables as `circuitkit evaluate --method eap --method eap-ig`.)

# %%
from circuitkit.edges import EdgeGraph
from circuitkit.edges.step import edge_step

EDGE_LIMIT = 5000  # exact edge patching costs one partial forward per edge: GPT-2 small has ~32k edges
n_edges = int(EdgeGraph.of(model).mask.sum())
if n_edges > EDGE_LIMIT:
    edges = None
    print(f"skip: {n_edges} edges is more than {EDGE_LIMIT} for exact edge patching on this machine")
else:
    edges = edge_step(
        model,
        data,
        methods=("eap",) if FAST else ("eap", "eap-ig:steps=5"),
        k=20,
        sizes=(5, 20, 100) if FAST else (1, 2, 5, 10, 20, 50, 100, 200),
        model_name=MODEL,
    )
    print(f"{n_edges} edges; exact edge patching {edges.exact.provenance.seconds:.1f} s")
edges.correlation if edges else None

# %%
edges.faithfulness.pivot(index="k", columns="method", values="faithfulness") if edges else None

# %%
edges.top if edges else None

# %%
if edges:
    for fig in edges.figures.values():
        show(fig)

# %%
if edges:
    EDGE_FLOOR, EDGE_FAITH_FLOOR = 0.9, 0.8
    eap_r = float(edges.correlation.set_index("method").loc["eap", "pearson"])
    check_agreement(
        eap_r >= EDGE_FLOOR, f"EAP against exact edge patching: Pearson r {eap_r:.3f} >= {EDGE_FLOOR}"
    )
    exact_curve = edges.faithfulness.query("method == 'edge-patching'").set_index("k")["faithfulness"]
    top_k, top_f = int(exact_curve.index[-1]), float(exact_curve.iloc[-1])
    check_skill(
        top_f >= EDGE_FAITH_FLOOR,
        f"faithfulness of exact patching's top {top_k} edges {top_f:.3f} >= {EDGE_FAITH_FLOOR}",
    )
print(f"notebook ran in {time.perf_counter() - T0:.0f} s")

# %% [markdown]
# ## Findings on ck-6l (the committed run: 32 held-out prompt pairs, seed 0)
#
# Measured in the cells above; re-running may move the last digits.
# * **The model solves IOI**: logit difference IO − S 8.89 on clean prompts (accuracy 100 %), 0.07 on
#   the ABC corruptions (53 %).
# * **One layer-0 head carries the whole difference.** Patching L0H2's clean output (all positions) into
#   the corrupted run restores 124 % of the clean logit difference; no other head moves it by more than
#   5 %. L0H2 attends from the last position to S2 (0.86 of its attention), so the information "which
#   name was repeated" reaches the final position in layer 0. This is the card's ground truth (derived by
#   the same head patching), so the ROC AUC of 1.0 for every method in step 5 checks little: a one-head
#   ground truth is easy to rank.
# * **No GPT-2-like name-mover chain.** The heads that attend most from the end to IO (L4H0, L5H4,
#   0.50 / 0.48) change the metric by < 0.4 % when patched; path patching from every earlier head into
#   their queries restores at most 0.13 % (from L0H2). The S-inhibition → induction round is empty
#   here: both of its receivers are in layer 0, so no head can send to them.
# * **AtP and RelP agree with activation patching almost exactly** (Pearson r ≥ 0.997 on every family,
#   for AtP, AtP*, RelP with any rule set and IG): with one dominant component and a nearly linear
#   response, the toy model does not show the AtP failure modes the RelP paper reports on GPT-2.
# * **Faithfulness**: the found circuit (L0H2, L0H4 and every MLP, everything else mean-ablated over the
#   corrupted prompts) gives 1.26 — it over-restores, because ablating the other heads removes small
#   negative contributions; its complement gives 0.009, so the circuit is also complete.
# * **Dictionary features (step 6)**: the shipped transcoders of MLP 0 and MLP 2 (the two MLPs activation
#   patching ranks highest) and the layer-0 attention SAE (L0H2's layer), spliced in together, split each
#   component's AtP exactly into latents plus an error node (largest gap 2.1e-07). The latents carry most
#   of the MLPs' attribution — MLP 0: 5.55 of 6.89 (error node 1.35), MLP 2: 0.22 of 0.43 — but less of
#   the attention output's: 2.55 of 5.83, the error node 3.28 (explained variance of the attention SAE
#   0.72, of the transcoders 0.88 / 0.905). No single latent dominates: the strongest, MLP-0 latent 244,
#   carries 0.25 and attention-SAE latent 380 0.20; all of the top latents peak at the final " to". The
#   attention SAE's top latents are written mainly by L0H2 (decoder share 50–56 %), so the dictionary sees
#   the same head that activation patching found.
# * **Edges (step 8)**: exact edge patching of all 3,628 edges (82 s on the shared 2-core machine) puts
#   the circuit on one path, embed → L0H2.v (10.9) → MLP0.in (10.9) → logits (8.0); EAP tracks it with
#   Pearson r 0.995 / Spearman 0.975, EAP-IG (5 steps) 0.997 / 0.718; the top 50 edges of any of the three
#   are faithful (1.006–1.007), the top 5–20 over-restore (1.05–1.16).
