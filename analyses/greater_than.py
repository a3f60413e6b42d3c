# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# ruff: noqa: E402, B018
# (notebook: imports follow the parameters cell; a cell's last bare expression is its displayed output)

# %% [markdown]
# # The greater-than circuit, end to end
#
# Greater-than (Hanna et al. 2023, arXiv 2305.00586): after "The war lasted from the year 1732 to the
# year 17" a model that has the behaviour puts its next-token mass on two-digit years above 32. The
# corrupted prompt sets YY to 01, so every year is "greater". The metric is the probability difference
# P(year > YY) − P(year ≤ YY) at the last position.
#
# The notebook walks the circuit's story in seven steps, each with circuitkit's own functions and
# `circuitkit.viz` figures:
# 1. the task and the model's baseline;
# 2. activation patching over the residual stream, attention and MLP outputs, and heads;
# 3. the heads that attend to YY and the MLPs that compute "greater";
# 4. AtP and RelP against activation patching;
# 5. discrete-SAE head identification against the ground truth;
# 6. dictionary features: transcoder latents in the key MLPs (as Dunefsky et al. 2024 did for
#    greater-than);
# 7. the final circuit's faithfulness and completeness.
#
# Every assertion below checks a number measured in this run against a floor stated next to it.

# %% tags=["parameters"]
MODEL = "default"  # "default" (ck-6l), "tiny" (ck-tiny), or "gpt2" (GPT-2 small, where cached)
N_PROMPTS = 32  # prompt pairs for every method
DEVICE = None  # None: CUDA when present, else CPU
FAST = False  # fewer prompts and methods: the CI run
SEED = 0  # seed of the prompts
FIGURES = "auto"  # "png" (static, kaleido + Chromium), "html" (plotly.js inlined), "auto", "none"

# %%
import time

import pandas as pd
import plotly.express as px
import torch
from nbtools import check, setup_figures, show, stop_notebook

from circuitkit import viz
from circuitkit.components import head_label
from circuitkit.evaluation import correlation_table, faithfulness, faithfulness_curve, score_against_circuit
from circuitkit.heads import HeadIdConfig, identify_heads
from circuitkit.heads.dictionary import CodebookConfig
from circuitkit.methods import MethodRequest, run_method
from circuitkit.models import load_model
from circuitkit.models.loading import ModelLoadError
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
try:
    model = load_model(MODEL, device=DEVICE)
except ModelLoadError as exc:
    model = None
    stop_notebook(f"Cannot load {MODEL!r} here: {exc}")
if model is not None:
    model.eval()
    NAME = model.cfg.model_name
    IS_GPT2 = NAME in ("gpt2", "gpt2-small")
    print(
        f"{NAME}: {model.cfg.n_layers} layers, {model.cfg.n_heads} heads, d_model {model.cfg.d_model}, "
        f"device {model.cfg.device}"
    )

# %% [markdown]
# ## 1. The task and the baseline
#
# Held-out nouns; clean and corrupted prompts differ in the YY token only.

# %%
data = make_task("greater_than", model.tokenizer, N_PROMPTS, seed=SEED, split="heldout").to(model.cfg.device)
with torch.no_grad():
    clean_logits = model(data.clean_tokens)
    corrupted_logits = model(data.corrupted_tokens)
baseline = pd.DataFrame(
    {
        "prob diff P(>YY) - P(<=YY)": [
            float(data.metric(clean_logits)),
            float(data.metric(corrupted_logits)),
        ],
        "accuracy": [float(data.accuracy(clean_logits)), float(data.accuracy(corrupted_logits))],
    },
    index=["clean", "corrupted (YY = 01)"],
)
print(data.prompts[0])
print(data.corrupted_prompts[0])
baseline

# %%
# Probability of each two-digit year after each YY (the paper's Figure 2): mass above the diagonal.
year_ids, yy = data.extras["year_ids"], data.extras["yy"].cpu()
probs = torch.softmax(clean_logits[:, -1].float(), dim=-1)[:, year_ids].cpu()
order = yy.argsort()
# No circuitkit.viz builder draws this task-specific matrix: plain plotly.
show(
    px.imshow(
        probs[order].numpy(),
        x=[f"{y:02d}" for y in range(100)],
        y=[f"prompt {i}: YY={int(yy[i]):02d}" for i in order],
        color_continuous_scale="Blues",
        aspect="auto",
        labels={"x": "predicted year", "color": "probability"},
        title="P(next year) per prompt, sorted by YY: the mass lies right of each row's YY",
    ),
    width=800,
    height=max(300, 18 * len(order)),
)

# %%
PD_CLEAN, ACC_CLEAN = baseline.iloc[0]
check(PD_CLEAN >= 0.5, f"the model solves greater-than: probability difference {PD_CLEAN:.3f} >= 0.5")
check(ACC_CLEAN >= 0.8, f"accuracy {ACC_CLEAN:.3f} >= 0.8")

# %% [markdown]
# ## 2. Activation patching
#
# Denoising: run the corrupted prompts and patch one component's clean activation in; the score is the
# change of the probability difference, normalised so 1 restores the clean behaviour. Residual stream,
# attention and MLP outputs by (layer, position); heads over all positions.

# %%
gt = ground_truth("gpt2" if IS_GPT2 else model, "greater_than")
FAMILIES = ("resid_pre", "attn_out", "mlp_out", "head")
req = MethodRequest(model, data, families=FAMILIES)
exact = run_method("activation", req)
span = exact.provenance.extra["baseline_source"] - exact.provenance.extra["baseline_target"]
tokens = model.to_str_tokens(data.clean_tokens[0])
print(f"{exact.provenance.seconds:.1f} s, ground truth: {gt.source}")
for family in ("resid_pre", "attn_out", "mlp_out"):
    show(
        viz.layer_pos_heatmap(
            (exact.grid(family) / span).numpy(),
            tokens,
            title=f"Denoising {family}: normalised effect",
            colorbar_title="restored",
        )
    )

# %%
head_effect = exact.grid("head") / span
show(
    viz.layer_head_heatmap(
        head_effect.numpy(),
        title="Denoising each head (all positions): normalised effect; boxes: ground truth",
        colorbar_title="restored",
        highlight=sorted(gt.heads),
    ),
    width=700,
)
top = exact.top(12, family="head")[["component", "score"]].assign(normalised=lambda d: d.score / span)
top.assign(
    ground_truth=[gt.heads.get((int(r.layer), int(r.head)), "") for r in exact.top(12, "head").itertuples()]
)

# %%
k_top = 2 * len(gt.heads)
ranking = score_against_circuit(exact.grid("head"), gt, k=k_top)
print(
    f"ground truth: {len(gt.heads)} heads; activation patching ranks them with ROC AUC "
    f"{ranking['roc_auc']:.3f}"
)
check(
    ranking["recall"] >= 0.5,
    f"activation patching puts {ranking['recall']:.0%} of the ground-truth heads in its top {k_top} (>= 50%)",
)

# %% [markdown]
# ## 3. The heads that attend to YY and the MLPs that compute "greater"
#
# Hanna et al.: heads at the last position attend to YY and move it forward; MLPs then turn it into a
# distribution over later years. The attention end → YY of every head, the effect of each MLP layer
# patched whole (all positions), and path patching (Goldowsky-Dill et al. 2023) from every earlier head
# into the values of the two heads that attend to YY most, denoising.

# %%
from circuitkit.patching.path import path_patching

names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
with torch.no_grad():
    _, cache = model.run_with_cache(data.clean_tokens, names_filter=lambda n: n in names)
rows = torch.arange(len(data))
to_yy = torch.stack(
    [cache[n][rows, :, data.positions["end"], data.positions["YY"]].mean(0).cpu() for n in names]
)
del cache
show(
    viz.layer_head_heatmap(
        to_yy.numpy(), title="Mean attention end → YY", colorbar_title="attention", highlight=sorted(gt.heads)
    ),
    width=650,
)
mlp_all = run_method("activation", MethodRequest(model, data, families=("mlp_out_all",)))
mlp_effect = mlp_all.grid("mlp_out_all") / span
pd.DataFrame(
    {
        "MLP layer": range(model.cfg.n_layers),
        "normalised effect (all positions)": mlp_effect.numpy(),
        "ground truth": [layer in gt.mlps for layer in range(model.cfg.n_layers)],
    }
).set_index("MLP layer")

# %%
yy_heads = [divmod(int(i), model.cfg.n_heads) for i in to_yy.flatten().argsort(descending=True)[:2]]
yy_heads = [h for h in yy_heads if h[0] > 0] or [(1, 0)]  # path patching needs senders before the receiver
to_values = path_patching(model, data.clean_tokens, data.corrupted_tokens, data.metric, yy_heads, ("v",))
print("heads attending to YY most:", [head_label(*h) for h in yy_heads])
show(
    viz.layer_head_heatmap(
        to_values.normalized().numpy(),
        colorbar_title="restored",
        title="Path patching: sender → YY heads' values",
        highlight=yy_heads,
    ),
    width=650,
)
found = [(int(r.layer), int(r.head)) for r in exact.top(k_top, "head").itertuples()]
listed = list(dict.fromkeys(found + yy_heads))
roles = pd.DataFrame(
    [
        {
            "head": head_label(*h),
            "patching (normalised)": float(head_effect[h]),
            "attention end → YY": float(to_yy[h]),
            "→ YY heads' v": float(to_values.normalized()[h]),
            "ground truth role": gt.heads.get(h, ""),
        }
        for h in listed
    ]
).set_index("head")
role_of = {
    (layer, head): ("attends to YY" if float(to_yy[layer, head]) > 0.3 else "other")
    for layer in range(model.cfg.n_layers)
    for head in range(model.cfg.n_heads)
}
roles

# %%
for h in listed[:3]:
    pattern = model.run_with_cache(data.clean_tokens[:1], names_filter=names[h[0]])[1][names[h[0]]][0, h[1]]
    show(
        viz.attention_pattern(pattern.cpu().numpy(), tokens, title=f"{head_label(*h)} attention, prompt 0"),
        width=600,
        height=520,
    )

# %% [markdown]
# ## 4. AtP and RelP against activation patching
#
# Attribution patching (AtP) linearises the metric in each activation: two forwards and one backward for
# every component at once. RelP (Jafari et al. 2025, arXiv 2508.21258) replaces the gradient by LRP
# propagation coefficients. Pearson r with the exact effects over each family's grid.

# %%
METHODS = (
    ["atp", "relp:rules=ln+identity"]
    if FAST
    else [
        "atp",
        "atp*",
        "relp:rules=ln",
        "relp:rules=ln+identity",
        "relp:rules=ln+identity+attention",
        "ig:steps=10",
    ]
)
# One family per call: the attribution methods are run family by family (see the report's note).
tables, approx = [], {spec: None for spec in METHODS}
for family in FAMILIES:
    sub = MethodRequest(model, data, families=(family,))
    table, _, results = correlation_table(sub, METHODS, exact=exact)
    tables.append(table)
    for spec, result in results.items():
        approx[spec] = result if approx[spec] is None else approx[spec] + result
corr = pd.concat(tables, ignore_index=True)
corr.pivot(index="method", columns="family", values="pearson").loc[METHODS, list(FAMILIES)]

# %%
for spec in ("atp", "relp:rules=ln+identity"):
    for family in ("resid_pre", "head"):
        labels = exact.family(family)["component"].tolist()
        show(
            viz.method_vs_patching_scatter(
                approx[spec].grid(family).numpy(),
                exact.grid(family).numpy(),
                labels,
                method_name=f"{spec} ({family})",
            ),
            width=600,
            height=450,
        )

# %%
r = corr.set_index(["method", "family"])["pearson"]
ATP_FLOOR, RELP_FLOOR, RELP = 0.5, 0.5, "relp:rules=ln+identity"
check(
    r["atp", "head"] >= ATP_FLOOR,
    f"AtP vs activation patching on heads: r = {r['atp', 'head']:.3f} >= {ATP_FLOOR}",
)
check(
    r[RELP, "head"] >= RELP_FLOOR,
    f"RelP (LN + identity) vs activation patching on heads: r = {r[RELP, 'head']:.3f} >= {RELP_FLOOR}",
)

# %% [markdown]
# ## 5. Discrete-SAE head identification
#
# O'Neill & Bui (2024, arXiv 2405.12522): each head's output on a prompt becomes a discrete code (the
# argmax latent of a small SAE trained on ten prompts); a head scores the codes it shows on prompts the
# model gets right and never on the corrupted ones. No forward pass is patched.

# %%
head_cfg = HeadIdConfig(
    n_prompts=N_PROMPTS, seed=SEED, codebook=CodebookConfig(n_steps=100) if FAST else CodebookConfig()
)
ident = identify_heads(model, data, head_cfg)
truth = gt.head_mask(model.cfg.n_layers, model.cfg.n_heads)
curves = {}
scores_table = []
for name, scores in {
    "discrete SAE (nodes)": ident.scores("node"),
    "discrete SAE (edges)": ident.scores("edge"),
    "activation patching |effect|": exact.grid("head").abs(),
    "AtP |effect|": approx["atp"].grid("head").abs(),
}.items():
    s = score_against_circuit(scores, gt, use_abs=False)
    curves[name] = (*viz.roc_points(scores.flatten().numpy(), truth.flatten().numpy()), s["roc_auc"])
    scores_table.append({"method": name, **s})
show(viz.roc_curve(curves, title="Heads ranked against the ground-truth circuit"), width=700)
pd.DataFrame(scores_table).set_index("method")

# %%
codes = ident.codes_by_head()
show(viz.code_histograms({head_label(*h): codes[head_label(*h)] for h in sorted(gt.heads)[:8]}), width=900)

# %% [markdown]
# ## 6. Dictionary features
#
# Transcoders (Dunefsky et al. 2024) replace an MLP by a sparse wide one; attention-output SAEs (Kissane
# et al. 2024) decompose `hook_z`. Their latents are attributed with AtP on the feature circuit
# (Marks et al. 2024), error nodes included.

# %%
from circuitkit.features import attribute_nodes

try:
    from sae_training import list_dictionaries, load_dictionary

    shipped = list_dictionaries(NAME)
except ImportError:  # the dictionary trainer is not installed
    shipped = []
key_mlps = [int(i) for i in exact.grid("mlp_out").abs().sum(1).argsort(descending=True)[:2]]
chosen = [
    d
    for d in shipped
    if (d.architecture == "transcoder" and int(d.hook.split(".")[1]) in key_mlps)
    or d.hook.endswith("attn.hook_z")
]
if not chosen:  # no transcoder / attention SAE shipped yet: the residual-stream TopK SAEs show the method
    chosen = [d for d in shipped if d.architecture == "topk" and "resid" in d.hook]
print("key MLP layers by activation patching:", key_mlps)
print("dictionaries used:", [d.id for d in chosen] or f"none shipped for {NAME}: step 6 is skipped")
if chosen:
    dictionaries = {d.id: load_dictionary(d.id, device=str(model.cfg.device)) for d in chosen}
    feats = attribute_nodes(model, data.clean_tokens, data.corrupted_tokens, data.metric, dictionaries)
    feature_table = feats.table()
    feature_table = feature_table.loc[feature_table["score"].abs().sort_values(ascending=False).index]
    display_table = feature_table[["component", "family", "layer", "score"]].head(12)
else:
    display_table = None
display_table

# %% [markdown]
# ## 7. The circuit's faithfulness and completeness
#
# The found circuit: the heads activation patching ranks in its top 2·|ground truth|, and every MLP.
# Faithfulness = (m(C) − m(∅)) / (m(M) − m(∅)) with everything outside C mean-ablated over the corrupted
# prompts; completeness ablates C instead (Wang et al. 2022; Marks et al. 2024).

# %%
circuit = torch.zeros(model.cfg.n_layers, model.cfg.n_heads, dtype=torch.bool)
for h in found:
    circuit[h] = True
faith = faithfulness(model, data.clean_tokens, data.metric, circuit, reference_tokens=data.corrupted_tokens)
complete = faithfulness(
    model, data.clean_tokens, data.metric, circuit, reference_tokens=data.corrupted_tokens, complement=True
)
truth_faith = faithfulness(
    model, data.clean_tokens, data.metric, truth, reference_tokens=data.corrupted_tokens
)
pd.DataFrame(
    [
        {
            "circuit": f"found ({len(found)} heads + all MLPs)",
            "faithfulness": faith.faithfulness,
            "m(C)": faith.metric_circuit,
            "m(M)": faith.metric_full,
            "m(empty)": faith.metric_empty,
        },
        {
            "circuit": "complement of found (completeness)",
            "faithfulness": complete.faithfulness,
            "m(C)": complete.metric_circuit,
            "m(M)": complete.metric_full,
            "m(empty)": complete.metric_empty,
        },
        {
            "circuit": f"ground truth ({len(gt.heads)} heads + all MLPs)",
            "faithfulness": truth_faith.faithfulness,
            "m(C)": truth_faith.metric_circuit,
            "m(M)": truth_faith.metric_full,
            "m(empty)": truth_faith.metric_empty,
        },
    ]
).set_index("circuit")

# %%
n_heads_total = model.cfg.n_layers * model.cfg.n_heads
sizes = sorted(
    {s for s in ((0, 1, 2, 4) if FAST else (0, 1, 2, 4, 8, 16)) if s < n_heads_total} | {n_heads_total}
)
fc = {}
rankings = {
    "activation patching": exact.grid("head"),
    "AtP": approx["atp"].grid("head"),
    "discrete SAE": ident.scores("node"),
}
for name, scores in list(rankings.items())[: 1 if FAST else None]:
    pts = faithfulness_curve(
        model, data.clean_tokens, data.metric, scores, sizes, reference_tokens=data.corrupted_tokens
    )
    fc[name] = ([k for k, _ in pts], [f for _, f in pts])
show(viz.faithfulness_curve(fc, x_title="heads kept (all MLPs kept)"), width=750)

# %%
nodes = pd.DataFrame(
    [
        {
            "node": head_label(layer, head),
            "layer": layer,
            "score": float(head_effect[layer, head]),
            "in_circuit": bool(circuit[layer, head]),
            "role": role_of[(layer, head)],
        }
        for layer in range(model.cfg.n_layers)
        for head in range(model.cfg.n_heads)
    ]
)
show(
    viz.circuit_graph(nodes, truth=[head_label(*h) for h in gt.heads], title="Found circuit vs ground truth"),
    width=900,
)

# %%
FAITH_FLOOR = 0.6
check(
    faith.faithfulness >= FAITH_FLOOR,
    f"faithfulness of the found circuit {faith.faithfulness:.3f} >= {FAITH_FLOOR}",
)
print(f"notebook ran in {time.perf_counter() - T0:.0f} s")

# %% [markdown]
# ## Findings on ck-6l (the committed run: 32 held-out prompt pairs, seed 0)
#
# Measured in the cells above; re-running may move the last digits.
# * **The model solves greater-than**: P(year > YY) − P(year ≤ YY) is 0.895 on clean prompts (accuracy
#   100 %) and 0.347 with YY = 01.
# * **One layer-0 head moves YY to the end**: L0H7 attends from the last position to YY (0.89) and its
#   clean output restores 96 % of the probability difference; no other head reaches 2.1 %. L3H4 also
#   attends to YY (0.88) but patching it changes the metric by 0.2 %, and path patching into its values
#   from earlier heads restores < 0.1 %.
# * **MLPs**: MLP 0 patched whole restores 99.5 %; MLPs 1-3 restore 14-23 % each and MLP 4 14 %, MLP 5
#   3.5 % — the early-MLP-then-later-MLPs shape Hanna et al. describe, but with MLP 0 (right after L0H7)
#   doing most of it.
# * **AtP and RelP**: Pearson r with activation patching is ≥ 0.999 on attention outputs and heads;
#   on the residual stream and MLP outputs AtP gives 0.958 / 0.963, RelP with LN + identity rules 0.980
#   / 0.982 (LN rule alone 0.942 / 0.943), IG 1.000.
# * **Discrete-SAE head identification** ranks the ground-truth head with ROC AUC 0.979, but not first
#   (precision at k = 1 is 0); activation patching and AtP rank it first.
# * **Faithfulness**: the found circuit (L0H7, L2H1 and every MLP) gives 0.897, the ground truth's
#   single head 0.873; the complement gives 0.001, so the circuit is complete.
# * **Dictionary features (step 6)** were skipped: no transcoders were listed for ck-6l when this ran
#   (the MLP-0 transcoder has been shipped since; re-run `python analyses/run.py greater_than`).
