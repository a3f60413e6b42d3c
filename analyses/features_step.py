"""Step 6 of the notebooks: dictionary features in the key MLPs and attention layers.

Transcoders (Dunefsky et al. 2024, arXiv 2406.11944) stand in for an MLP with a sparse, wide one;
attention-output SAEs on ``hook_z`` (Kissane et al. 2024, arXiv 2406.17759) decompose what the heads of
a layer write. Every latent and the reconstruction-error node of each dictionary is scored by AtP on the
feature circuit, all dictionaries spliced in at once (Marks et al. 2024, arXiv 2403.19647), denoising as
in step 4. Each top latent is then shown by its top-activating contexts (Bricken et al. 2023): on the
task's own prompts and on the dashboard's token set, with ``circuitkit.features.dashboard``'s functions.

The dictionaries are the shipped ones, listed and loaded by ``sae_training``: nothing here depends on a
particular training run, so retrained dictionaries under the same ids drop in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import plotly.express as px
import torch
from nbtools import check, show
from steps import Attribution, Head, Patching
from transformer_lens import HookedTransformer

from circuitkit import viz
from circuitkit.components import head_label
from circuitkit.features import FeatureAttribution, attribute_nodes, dashboard, place, run_spliced
from circuitkit.tasks.base import TaskDataset


def _layer(hook: str) -> int:
    return int(hook.split(".")[1])


def _is_attention(info) -> bool:
    return info.hook.endswith("attn.hook_z")


def short_name(info) -> str:
    """``MLP 2 transcoder`` / ``attn 3 SAE`` (``attn 3 H1 SAE`` for a per-head one)."""
    if _is_attention(info):
        head = "" if info.head_index is None else f" H{info.head_index}"
        return f"attn {_layer(info.hook)}{head} SAE"
    if info.architecture == "transcoder":
        return f"MLP {_layer(info.hook)} transcoder"
    return f"{info.hook} {info.architecture}"


def key_mlp_layers(patching: Patching, k: int = 2) -> list[int]:
    """The ``k`` MLP layers whose outputs matter most to activation patching (|effect| summed over
    positions), strongest first."""
    return [int(i) for i in patching.exact.grid("mlp_out").abs().sum(1).argsort(descending=True)[:k]]


def choose_dictionaries(
    model_name: str, key_mlps: Sequence[int], key_heads: Sequence[Head]
) -> tuple[list, str]:
    """The shipped transcoders of the key MLP layers and the attention SAEs of the key heads' layers.

    Where no attention SAE reads a key head's layer, every shipped attention SAE is taken, and the note
    (second return) says that its latents describe other heads than the key ones.
    """
    # From the submodule: an editable install that maps sae_training as a namespace package (seen here)
    # does not run sae_training/__init__.py when the working directory is not the repository root.
    from sae_training.store import list_dictionaries

    shipped = list_dictionaries(model_name)
    transcoders = [d for d in shipped if d.architecture == "transcoder" and _layer(d.hook) in key_mlps]
    transcoders.sort(key=lambda d: key_mlps.index(_layer(d.hook)))
    attention = [d for d in shipped if _is_attention(d)]
    key_layers = {layer for layer, _ in key_heads}
    at_key = [
        d
        for d in attention
        if _layer(d.hook) in key_layers
        and (d.head_index is None or (_layer(d.hook), d.head_index) in key_heads)
    ]
    notes = []
    missing = [layer for layer in key_mlps if layer not in {_layer(d.hook) for d in transcoders}]
    if missing:
        notes.append(f"no transcoder shipped for MLP layer(s) {missing}")
    if attention and not at_key:
        at_key = attention
        notes.append(
            f"no attention SAE shipped for the key heads' layers {sorted(key_layers)}; the shipped one(s) at "
            f"layer(s) {sorted({_layer(d.hook) for d in attention})} describe the heads there instead"
        )
    elif not attention:
        notes.append("no attention SAE shipped")
    return transcoders + at_key, "; ".join(notes)


@dataclass
class FeatureStep:
    """Step 6's measurements."""

    names: dict[str, str]
    """Dictionary id -> short name (``MLP 0 transcoder``)."""
    attribution: FeatureAttribution
    """AtP of every latent and error node."""
    totals: pd.DataFrame
    """Per dictionary: latents' and error node's attribution, their sum, and step 4's AtP of the
    component the dictionary reads (equal up to float error: the error node makes the split exact)."""
    top: pd.DataFrame
    """The strongest latents of each dictionary with where and on what they fire."""
    clean_latents: dict[str, torch.Tensor]
    """Dictionary id -> its latents on the clean prompts ``[batch, pos, d_sae]``, for task-specific plots."""


def _position_labels(data: TaskDataset, tokens: Sequence[str]) -> list[str]:
    """``"12 ' 17' (YY)"``: index, prompt 0's token and the task's name for the position, if fixed."""
    labels = []
    for p, tok in enumerate(tokens):
        names = [n for n, v in data.positions.items() if bool((v == p).all())]
        labels.append(f"{p} {tok!r}" + (f" ({'/'.join(names)})" if names else ""))
    return labels


def _component_atp(info, atp) -> float:
    """Step 4's AtP of what the dictionary reads: the MLP's output (a transcoder's or an ``hook_mlp_out``
    SAE's), the layer's heads (``hook_z``), or the residual stream; NaN for a hook step 4 did not score."""
    layer = _layer(info.hook)
    if _is_attention(info):
        grid = atp.grid("head")[layer]
        return float(grid.sum() if info.head_index is None else grid[info.head_index])
    if info.architecture == "transcoder" or info.hook.endswith("hook_mlp_out"):
        return float(atp.grid("mlp_out")[layer].sum())
    if info.hook.endswith("hook_resid_pre"):
        return float(atp.grid("resid_pre")[layer].sum())
    if info.hook.endswith("hook_attn_out"):
        return float(atp.grid("attn_out")[layer].sum())
    return float("nan")


def _top_tokens(model: HookedTransformer, tokens, acts, latent: int, n: int = 3) -> str:
    """The distinct tokens where ``latent`` fires most (BOS left out), strongest first."""
    a = acts[:, 1:, latent].flatten()
    seen: list[str] = []
    for i in a.argsort(descending=True).tolist():
        if float(a[i]) <= 0 or len(seen) == n:
            break
        tok = model.to_single_str_token(int(tokens[:, 1:].flatten()[i]))
        if repr(tok) not in seen:
            seen.append(repr(tok))
    return ", ".join(seen)


@torch.no_grad()
def encode(model: HookedTransformer, saes: dict, tokens, batch_size: int = 32) -> dict[str, torch.Tensor]:
    """Every dictionary's latents ``[seq, pos, d_sae]`` (on the CPU) on ``tokens``, read off the spliced
    forward pass the attribution uses, so per-head ``hook_z`` SAEs are fed exactly as there. (Not
    ``dashboard.encode_tokens``: it flattens ``hook_z`` before an SAE that reshapes it itself.)"""
    dicts = place(model, saes)
    out: dict[str, list[torch.Tensor]] = {d.id: [] for d in dicts}
    for start in range(0, tokens.shape[0], batch_size):
        _, record = run_spliced(model, tokens[start : start + batch_size], dicts)
        for d in dicts:
            out[d.id].append(record.latents[d.id].float().cpu())
    return {ident: torch.cat(chunks) for ident, chunks in out.items()}


def dictionary_features(
    model: HookedTransformer,
    data: TaskDataset,
    patching: Patching,
    attribution: Attribution,
    infos: Sequence,
    *,
    n_latents: int = 5,
    n_corpus: int = 128,
    n_shown: int = 1,
) -> FeatureStep:
    """Attribute every latent of ``infos`` (loaded with ``sae_training.load_dictionary``), tabulate the
    ``n_latents`` strongest per dictionary, and draw the attributions and the top ``n_shown`` latents'
    top-activating contexts (task prompts and ``n_corpus`` dashboard windows)."""
    from circuitkit.dictionaries import load_dictionary

    device = str(model.cfg.device)
    saes = {d.id: load_dictionary(d.id, device=device) for d in infos}
    names = {d.id: short_name(d) for d in infos}
    feats = attribute_nodes(
        model, data.clean_tokens, data.corrupted_tokens, data.metric, saes, provenance={"method": "atp"}
    )
    span = patching.span

    totals = pd.DataFrame(
        [
            {
                "dictionary": names[d.id],
                "latents": float(feats.scores[d.id].latents.sum()),
                "error node": float(feats.scores[d.id].error.sum()),
                "latents + error": feats.scores[d.id].total(),
                "AtP of the component (step 4)": _component_atp(d, attribution.results["atp"]),
                "explained variance": (d.eval or {}).get("explained_variance"),
            }
            for d in infos
        ]
    ).set_index("dictionary")

    # Where and on what each strong latent fires: the task prompts (clean and corrupted) and a corpus.
    corpus = dashboard.corpus_tokens(model, n_seqs=n_corpus, seq_len=32)
    clean, corrupted = data.clean_tokens.cpu(), data.corrupted_tokens.cpu()
    positions = _position_labels(data, model.to_str_tokens(data.clean_tokens[0]))
    acts = {
        name: encode(model, saes, tokens)
        for name, tokens in (("clean", clean), ("corrupted", corrupted), ("corpus", corpus))
    }
    rows, shown = [], []
    for d in infos:
        sae, s = saes[d.id], feats.scores[d.id]
        by_latent = s.latents.sum(0).cpu()
        acts_clean, acts_corrupted, acts_corpus = (acts[k][d.id] for k in ("clean", "corrupted", "corpus"))
        per_head = None
        if _is_attention(d) and d.head_index is None:  # share of each head in the latent's decoder row
            w = sae.W_dec.detach().float().cpu().reshape(sae.cfg.d_sae, model.cfg.n_heads, -1).norm(dim=-1)
            per_head = w / w.sum(-1, keepdim=True)
        for rank, latent in enumerate(by_latent.abs().argsort(descending=True)[:n_latents].tolist()):
            peak = int(s.latents[:, latent].abs().argmax())
            row = {
                "dictionary": names[d.id],
                "latent": latent,
                "attribution": float(by_latent[latent]),
                "normalised": float(by_latent[latent]) / span,
                "peak position": positions[peak],
                "mean act. clean": float(acts_clean[:, peak, latent].mean()),
                "mean act. corrupted": float(acts_corrupted[:, peak, latent].mean()),
                "top task tokens": _top_tokens(model, clean, acts_clean, latent),
                "top corpus tokens": _top_tokens(model, corpus, acts_corpus, latent),
                "corpus density": float(dashboard.firing_densities(acts_corpus)[latent]),
            }
            if per_head is not None:
                head = int(per_head[latent].argmax())
                row["main head (decoder share)"] = (
                    f"{head_label(_layer(d.hook), head)} ({float(per_head[latent, head]):.0%})"
                )
            rows.append(row)
            if rank < n_shown:
                shown.append((d.id, latent, acts_clean, acts_corpus))
    top = pd.DataFrame(rows)

    # Attribution of the strongest latents next to each dictionary's error node, as fractions of the span.
    bars = pd.concat(
        [
            top.assign(node=top.dictionary + " / " + top.latent.astype(str))[
                ["dictionary", "node", "normalised"]
            ],
            pd.DataFrame(
                {
                    "dictionary": totals.index,
                    "node": totals.index + " / error",
                    "normalised": totals["error node"].to_numpy() / span,
                }
            ),
        ]
    )
    # No circuitkit.viz builder draws a bar chart of node attributions: plain plotly.
    fig = px.bar(
        bars,
        x="normalised",
        y="node",
        color="dictionary",
        orientation="h",
        title="AtP of the strongest latents and the error nodes (fraction of the clean behaviour restored)",
        labels={"normalised": "normalised attribution", "node": ""},
    )
    fig.update_yaxes(autorange="reversed", type="category")
    show(fig, width=900, height=max(350, 22 * len(bars) + 120))

    for ident, latent, acts_clean, acts_corpus in shown:
        task = dashboard.summarize_latent(model, acts_clean, clean, latent, k=4).examples
        text = dashboard.summarize_latent(model, acts_corpus, corpus, latent, k=6).examples
        examples = task + text
        if not examples:
            print(f"{names[ident]} latent {latent} fires on none of these tokens")
            continue
        show(
            viz.top_examples(
                [t for t, _ in examples],
                [a for _, a in examples],
                title=f"{names[ident]} latent {latent}: task prompts (#1-{len(task)}), then corpus contexts",
            ),
            width=950,
        )
    return FeatureStep(names, feats, totals, top, acts["clean"])


def run(
    model: HookedTransformer,
    data: TaskDataset,
    patching: Patching,
    attribution: Attribution,
    found: Sequence[Head],
    *,
    fast: bool,
    dictionaries: Sequence[str] | None = None,
) -> FeatureStep | None:
    """Step 6 end to end: pick the shipped dictionaries of the key MLPs and heads (or take the
    ``dictionaries`` specs given: shipped ids, sae-lens folders, sae-lens ``release/sae_id``), say which,
    and run ``dictionary_features`` on them; None (and a line saying so) where there are none."""
    key_mlps = key_mlp_layers(patching)
    if dictionaries:
        from circuitkit.dictionaries import describe, load_dictionary

        device = str(model.cfg.device)
        chosen, note = [describe(s, load_dictionary(s, device=device)) for s in dictionaries], ""
    else:
        chosen, note = choose_dictionaries(model.cfg.model_name, key_mlps, found)
    print(f"key MLP layers by activation patching: {key_mlps}; key heads: {[head_label(*h) for h in found]}")
    print("dictionaries:", [d.id for d in chosen] or "none shipped for this model: step 6 is skipped")
    if note:
        print("note:", note)
    if not chosen:
        return None
    n_corpus, n_shown = (32, 1) if fast else (128, 2)
    return dictionary_features(model, data, patching, attribution, chosen, n_corpus=n_corpus, n_shown=n_shown)


def check_feature_split(step: FeatureStep, span: float, tolerance: float = 0.02) -> None:
    """Assert that each dictionary's latents plus its error node add up to step 4's AtP of the component
    it reads, within ``tolerance`` of the metric's clean − corrupted span: the attribution is split over
    features without losing or inventing any of it."""
    gaps = (step.totals["latents + error"] - step.totals["AtP of the component (step 4)"]).abs()
    if gaps.isna().any():
        print("not compared (step 4 did not score what they read):", list(gaps.index[gaps.isna()]))
    gap = gaps.dropna().max()
    check(
        float(gap) <= tolerance * abs(span),
        f"latents + error node = AtP of each dictionary's component: largest gap {gap:.2g} "
        f"<= {tolerance} x span {abs(span):.3g}",
    )
