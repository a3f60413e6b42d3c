"""The steps the IOI and greater-than notebooks share: each function runs one step with circuitkit's own
functions, draws its ``circuitkit.viz`` figures through ``nbtools.show`` and returns what later steps
and the notebook's assertions need.

Each notebook keeps its own story (task, role analysis, markdown findings); what is the same for any
task with clean / corrupted prompt pairs and a ground-truth circuit lives here once. Every number comes
from circuitkit: these functions only choose what to run and how to lay it out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from jaxtyping import Float
from nbtools import check_agreement, check_skill, show, stop_notebook
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit import viz
from circuitkit.components import head_label
from circuitkit.evaluation import correlation_table, faithfulness, faithfulness_curve, score_against_circuit
from circuitkit.evaluation.ground_truth import roc_points
from circuitkit.heads import HeadIdConfig, identify_heads
from circuitkit.heads.dictionary import CodebookConfig
from circuitkit.methods import MethodRequest, run_method
from circuitkit.models import load_model
from circuitkit.models.loading import ModelLoadError
from circuitkit.results import ResultTable
from circuitkit.tasks.base import TaskDataset
from circuitkit.tasks.ground_truth import Circuit as GroundTruth

Head = tuple[int, int]

# ---------------------------------------------------------------------------------------------- model


def load_or_stop(name: str, device: str | None) -> HookedTransformer | None:
    """The model in eval mode, or None after stopping the notebook cleanly (weights not reachable)."""
    try:
        model = load_model(name, device=device)
    except ModelLoadError as exc:
        stop_notebook(f"Cannot load {name!r} here: {exc}")
        return None
    model.eval()
    cfg = model.cfg
    print(
        f"{cfg.model_name}: {cfg.n_layers} layers, {cfg.n_heads} heads, d_model {cfg.d_model}, "
        f"device {cfg.device}"
    )
    return model


@torch.no_grad()
def baseline(
    model: HookedTransformer, data: TaskDataset, metric_name: str, accuracy_name: str, corrupted_name: str
) -> pd.DataFrame:
    """Metric and accuracy on the clean and corrupted prompts (rows ``clean`` and ``corrupted_name``)."""
    clean, corrupted = model(data.clean_tokens), model(data.corrupted_tokens)
    return pd.DataFrame(
        {
            metric_name: [float(data.metric(clean)), float(data.metric(corrupted))],
            accuracy_name: [float(data.accuracy(clean)), float(data.accuracy(corrupted))],
        },
        index=["clean", corrupted_name],
    )


# ---------------------------------------------------------------------------- 2. activation patching


@dataclass
class Patching:
    """Step 2's measurements."""

    exact: ResultTable
    """Denoising activation patching over every family asked for."""
    span: float
    """m(clean) − m(corrupted): the normaliser that makes 1 mean "restores the clean behaviour"."""
    tokens: list[str]
    """Prompt 0's tokens, the position axis (prompts are position-aligned)."""

    @property
    def head_effect(self) -> Float[Tensor, "layer head"]:
        return self.exact.grid("head") / self.span

    def found_heads(self, k: int) -> list[Head]:
        """The ``k`` heads with the largest |effect|, strongest first."""
        return [(int(r.layer), int(r.head)) for r in self.exact.top(k, "head").itertuples()]


def activation_patching(
    model: HookedTransformer, data: TaskDataset, gt: GroundTruth, families: Sequence[str]
) -> Patching:
    """Denoising activation patching; draws the (layer, position) heatmaps and the head heatmap."""
    exact = run_method("activation", MethodRequest(model, data, families=tuple(families)))
    p = exact.provenance
    out = Patching(exact, p.baseline_source - p.baseline_target, model.to_str_tokens(data.clean_tokens[0]))
    print(f"{exact.provenance.seconds:.1f} s, ground truth: {gt.source}")
    for family in families:
        if family == "head":
            continue
        grid = (exact.grid(family) / out.span).numpy()
        title = f"Denoising {family}: normalised effect"
        show(viz.layer_pos_heatmap(grid, out.tokens, title=title, colorbar_title="restored"))
    if "head" in families:
        show(
            viz.layer_head_heatmap(
                out.head_effect.numpy(),
                title="Denoising each head (all positions): normalised effect; boxes: ground truth",
                colorbar_title="restored",
                highlight=sorted(gt.heads),
            ),
            width=700,
        )
    return out


def top_heads_table(patching: Patching, gt: GroundTruth, k: int = 12) -> pd.DataFrame:
    """The ``k`` strongest heads: raw and normalised effect, ground-truth role."""
    top = patching.exact.top(k, family="head")
    return top[["component", "score"]].assign(
        normalised=top.score / patching.span,
        ground_truth=[gt.heads.get((int(r.layer), int(r.head)), "") for r in top.itertuples()],
    )


def check_head_recall(patching: Patching, gt: GroundTruth, floor: float = 0.5) -> list[Head]:
    """Assert that the top 2·|ground truth| heads hold ``floor`` of the ground truth; returns those heads."""
    k_top = 2 * len(gt.heads)
    ranking = score_against_circuit(patching.exact.grid("head"), gt, k=k_top)
    auc = ranking["roc_auc"]
    print(f"ground truth: {len(gt.heads)} heads; activation patching ranks them with ROC AUC {auc:.3f}")
    check_skill(
        ranking["recall"] >= floor,
        f"activation patching puts {ranking['recall']:.0%} of the ground-truth heads in its top {k_top} "
        f"(>= {floor:.0%})",
    )
    return patching.found_heads(k_top)


# ---------------------------------------------------------------------------------------- 3. heads


def attention_names(model: HookedTransformer) -> list[str]:
    return [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]


@torch.no_grad()
def mean_attention(
    model: HookedTransformer, data: TaskDataset, pairs: Mapping[str, tuple[str, str]]
) -> dict[str, Float[Tensor, "layer head"]]:
    """Per named (query, key) pair of task positions: every head's attention, averaged over prompts."""
    names = attention_names(model)
    _, cache = model.run_with_cache(data.clean_tokens, names_filter=lambda n: n in names)
    rows = torch.arange(len(data))
    return {
        role: torch.stack(
            [cache[n][rows, :, data.positions[q], data.positions[k]].mean(0).cpu() for n in names]
        )
        for role, (q, k) in pairs.items()
    }


def all_heads(model: HookedTransformer, layers: Iterable[int] | None = None) -> list[Head]:
    layers = range(model.cfg.n_layers) if layers is None else layers
    return [(layer, head) for layer in layers for head in range(model.cfg.n_heads)]


@torch.no_grad()
def show_attention_patterns(model: HookedTransformer, data: TaskDataset, heads: Iterable[Head]) -> None:
    """Each head's attention pattern on prompt 0."""
    tokens = model.to_str_tokens(data.clean_tokens[0])
    names = attention_names(model)
    for layer, head in heads:
        _, cache = model.run_with_cache(data.clean_tokens[:1], names_filter=names[layer])
        pattern = cache[names[layer]][0, head].cpu().numpy()
        title = f"{head_label(layer, head)} attention, prompt 0"
        show(viz.attention_pattern(pattern, tokens, title=title), width=600, height=520)


# ------------------------------------------------------------------------ 4. AtP / RelP vs patching


FAST_METHODS = ("atp", "relp:rules=ln+identity")
"""Attribution methods of the CI run: AtP and the RelP variant the floors are stated for."""
FULL_METHODS = (
    "atp",
    "atp*",
    "relp:rules=ln",
    "relp:rules=ln+identity",
    "relp:rules=ln+identity+attention",
    "ig:steps=10",
)


@dataclass
class Attribution:
    """Step 4's measurements."""

    correlations: pd.DataFrame
    """One row per (method, family): Pearson r and the rest of ``correlation_table``'s columns."""
    results: dict[str, ResultTable]
    """Method spec -> its scores over every family."""
    methods: tuple[str, ...]
    families: tuple[str, ...]

    def pearson(self) -> pd.Series:
        return self.correlations.set_index(["method", "family"])["pearson"]

    def pivot(self) -> pd.DataFrame:
        """Pearson r, a row per method and a column per family, in the order they were run."""
        table = self.correlations.pivot(index="method", columns="family", values="pearson")
        return table.loc[list(self.methods), list(self.families)]


def compare_attribution(
    model: HookedTransformer, data: TaskDataset, patching: Patching, families: Sequence[str], *, fast: bool
) -> Attribution:
    """Every method's scores (``FAST_METHODS`` or ``FULL_METHODS``) and their correlation with activation
    patching, family by family.

    One family per call: attribution over several families in one call was reported to fail (being
    fixed in circuitkit/patching/attribution.py); per family the numbers are the same.
    """
    methods = FAST_METHODS if fast else FULL_METHODS
    tables, results = [], {}
    for family in families:
        table, _, by_method = correlation_table(
            MethodRequest(model, data, families=(family,)), list(methods), exact=patching.exact
        )
        tables.append(table)
        for spec, result in by_method.items():
            results[spec] = result if spec not in results else results[spec] + result
    return Attribution(pd.concat(tables, ignore_index=True), results, tuple(methods), tuple(families))


def show_scatters(attribution: Attribution, patching: Patching, families: Sequence[str]) -> None:
    """AtP and RelP (LN + identity) vs activation patching, one scatter per (method, family)."""
    for spec in FAST_METHODS:
        for family in families:
            labels = patching.exact.family(family)["component"].tolist()
            fig = viz.method_vs_patching_scatter(
                attribution.results[spec].grid(family).numpy(),
                patching.exact.grid(family).numpy(),
                labels,
                method_name=f"{spec} ({family})",
            )
            show(fig, width=600, height=450)


def check_correlations(attribution: Attribution, floors: Mapping[str, float], family: str = "head") -> None:
    """Assert Pearson r >= floor on ``family`` for each method spec in ``floors``."""
    r = attribution.pearson()
    for spec, floor in floors.items():
        check_agreement(
            r[spec, family] >= floor,
            f"{spec} vs activation patching on {family}s: r = {r[spec, family]:.3f} >= {floor}",
        )


# ----------------------------------------------------------------------- 5. discrete-SAE head id


def identify(
    model: HookedTransformer,
    data: TaskDataset,
    gt: GroundTruth,
    patching: Patching,
    attribution: Attribution,
    *,
    n_prompts: int,
    seed: int,
    fast: bool,
):
    """Discrete-SAE head identification (O'Neill & Bui 2024) ranked against the ground truth next to
    activation patching and AtP; draws the ROC curves and returns (identification, scores table)."""
    with torch.no_grad():
        n_right = int((data.per_prompt_metric(model(data.clean_tokens)) > 0).sum())
    if n_right < 2:  # positives are prompts the model gets right (O'Neill & Bui): none to learn codes from
        print(
            f"skipped: the model gets {n_right} of {len(data)} prompts right; discrete-SAE identification "
            "needs at least 2 (its positives)"
        )
        return None, None
    cfg = HeadIdConfig(
        n_prompts=n_prompts, seed=seed, codebook=CodebookConfig(n_steps=100) if fast else CodebookConfig()
    )
    ident = identify_heads(model, data, cfg)
    truth = gt.head_mask(model.cfg.n_layers, model.cfg.n_heads)
    curves, rows = {}, []
    for name, scores in {
        "discrete SAE (nodes)": ident.scores("node"),
        "discrete SAE (edges)": ident.scores("edge"),
        "activation patching |effect|": patching.exact.grid("head").abs(),
        "AtP |effect|": attribution.results["atp"].grid("head").abs(),
    }.items():
        s = score_against_circuit(scores, gt, use_abs=False)
        curves[name] = (*roc_points(scores.flatten().numpy(), truth.flatten().numpy()), s["roc_auc"])
        rows.append({"method": name, **s})
    show(viz.roc_curve(curves, title="Heads ranked against the ground-truth circuit"), width=700)
    return ident, pd.DataFrame(rows).set_index("method")


def show_codes(ident, heads: Iterable[Head], n: int = 8) -> None:
    if ident is None:  # step 5 was skipped
        return
    codes = ident.codes_by_head()
    show(viz.code_histograms({head_label(*h): codes[head_label(*h)] for h in sorted(heads)[:n]}), width=900)


# ------------------------------------------------------------------------- 7. faithfulness


@dataclass
class Faithfulness:
    """Step 7's measurements."""

    circuit: torch.Tensor
    """[layer, head] bool: the found circuit's heads (every MLP is kept)."""
    found: object
    complement: object
    truth: object

    def table(self, n_found: int, n_truth: int) -> pd.DataFrame:
        rows = []
        for name, f in (
            (f"found ({n_found} heads + all MLPs)", self.found),
            ("complement of found (completeness)", self.complement),
            (f"ground truth ({n_truth} heads + all MLPs)", self.truth),
        ):
            rows.append(
                {
                    "circuit": name,
                    "faithfulness": f.faithfulness,
                    "m(C)": f.metric_circuit,
                    "m(M)": f.metric_full,
                    "m(empty)": f.metric_empty,
                }
            )
        return pd.DataFrame(rows).set_index("circuit")


def circuit_faithfulness(
    model: HookedTransformer, data: TaskDataset, gt: GroundTruth, found: Sequence[Head]
) -> Faithfulness:
    """Faithfulness of the found heads, of their complement (completeness) and of the ground truth,
    everything outside the circuit mean-ablated over the corrupted prompts (Wang et al. 2022)."""
    circuit = torch.zeros(model.cfg.n_layers, model.cfg.n_heads, dtype=torch.bool)
    for h in found:
        circuit[h] = True
    truth = gt.head_mask(model.cfg.n_layers, model.cfg.n_heads)
    args = (model, data.clean_tokens, data.metric)
    ref = {"reference_tokens": data.corrupted_tokens}
    return Faithfulness(
        circuit,
        faithfulness(*args, circuit, **ref),
        faithfulness(*args, circuit, **ref, complement=True),
        faithfulness(*args, truth, **ref),
    )


def show_faithfulness_curves(
    model: HookedTransformer,
    data: TaskDataset,
    patching: Patching,
    attribution: Attribution,
    ident,
    *,
    fast: bool,
) -> None:
    """Faithfulness when keeping the top-k heads of activation patching, AtP and the discrete SAE (all
    MLPs kept); the CI run draws activation patching's curve alone, at fewer sizes."""
    rankings = {
        "activation patching": patching.exact.grid("head"),
        "AtP": attribution.results["atp"].grid("head"),
        **({"discrete SAE": ident.scores("node")} if ident is not None else {}),
    }
    if fast:
        rankings = {"activation patching": rankings["activation patching"]}
    n_heads = model.cfg.n_layers * model.cfg.n_heads
    sizes = (0, 1, 2, 4) if fast else (0, 1, 2, 4, 8, 16)
    sizes = sorted({s for s in sizes if s < n_heads} | {n_heads})
    curves = {}
    for name, scores in rankings.items():
        pts = faithfulness_curve(
            model, data.clean_tokens, data.metric, scores, sizes, reference_tokens=data.corrupted_tokens
        )
        curves[name] = ([k for k, _ in pts], [f for _, f in pts])
    show(viz.faithfulness_curve(curves, x_title="heads kept (all MLPs kept)"), width=750)


def show_circuit_graph(
    model: HookedTransformer,
    patching: Patching,
    faith: Faithfulness,
    gt: GroundTruth,
    role_of: Mapping[Head, str],
) -> None:
    """Every head as a node: its normalised patching effect, membership of the found circuit, its role."""
    effect = patching.head_effect
    nodes = pd.DataFrame(
        [
            {
                "node": head_label(layer, head),
                "layer": layer,
                "score": float(effect[layer, head]),
                "in_circuit": bool(faith.circuit[layer, head]),
                "role": role_of.get((layer, head), "other"),
            }
            for layer, head in all_heads(model)
        ]
    )
    truth = [head_label(*h) for h in gt.heads]
    show(viz.circuit_graph(nodes, truth=truth, title="Found circuit vs ground truth"), width=900)
