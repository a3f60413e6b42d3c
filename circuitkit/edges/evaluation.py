"""Evaluating edge scores: against exact edge patching, against ground-truth edges, and by faithfulness.

- **Correlation** (as the node-level table of Jafari et al. 2025 and Syed et al. 2023's comparison with
  ACDC): Pearson / Spearman of a method's scores with exact edge patching over every edge, and Pearson
  without the largest edge (on the toy models a few edges carry most of the effect).
- **Ground truth**: ROC AUC and top-k precision / recall / F1 of ``|score|`` against a set of true edges
  (Conmy et al. 2023; the planted-circuit models ship theirs), through
  :mod:`circuitkit.evaluation.ground_truth`.
- **Faithfulness** of the top-k edge circuit C (Hanna et al. 2024; Marks et al. 2024):
  ``(m(C) - m(empty)) / (m(M) - m(empty))`` where m(C) runs the clean prompts with every edge *outside*
  C patched to its corrupted sender value (:func:`circuitkit.edges.patching.patch_edges`); m(M) is the
  clean run and m(empty), every edge patched, is exactly the corrupted run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit.edges.graph import EdgeGraph
from circuitkit.edges.patching import EdgeSpec, as_edge_mask, patch_edges
from circuitkit.edges.scores import EdgeScores, edge_matrix, graph_of
from circuitkit.evaluation.correlation import parse_method, pearson, pearson_without_top, spearman
from circuitkit.evaluation.ground_truth import score_ranking
from circuitkit.patching.activation import Metric
from circuitkit.results import ResultTable


def edge_scores(result: EdgeScores | ResultTable) -> tuple[EdgeGraph, Float[Tensor, "n_senders n_receivers"]]:
    """(graph, ``[n_senders, n_receivers]`` score matrix) of an edge result in either form."""
    if isinstance(result, EdgeScores):
        return result.graph, result.scores
    g = graph_of(result)
    return g, edge_matrix(result.table, g)


def correlation(exact: EdgeScores | ResultTable, approx: EdgeScores | ResultTable) -> dict[str, float]:
    """Pearson r, Spearman rho and Pearson without the top edge of ``approx`` against ``exact``."""
    g1, e = edge_scores(exact)
    g2, a = edge_scores(approx)
    if g1 != g2:
        raise ValueError(f"the two results are on different graphs ({g1} vs {g2})")
    e, a = e[g1.mask], a[g1.mask]
    return {
        "pearson": pearson(e, a),
        "spearman": spearman(e, a),
        "pearson_without_top": pearson_without_top(e, a),
        "n": int(g1.mask.sum()),
    }


def score_against_edges(
    result: EdgeScores | ResultTable,
    truth: EdgeSpec,
    k: int | None = None,
    use_abs: bool = True,
) -> dict[str, float]:
    """ROC AUC and top-k precision / recall / F1 of the edge ranking against the true edges.

    Args:
        truth: the true edges (names ``"L0H2->L3H1.q"``, pairs, or a bool mask).
        k: circuit size for precision / recall (default: as many edges as the truth has).
    """
    g, s = edge_scores(result)
    labels = as_edge_mask(g, truth)
    scores = s.abs() if use_abs else s
    out = asdict(score_ranking(scores[g.mask], labels[g.mask], k=k))
    return out


def node_edge_scores(result: EdgeScores | ResultTable, use_abs: bool = True) -> pd.Series:
    """Edge scores collapsed to node pairs: ``(sender, receiver node)`` -> the largest ``|score|`` over the
    receiver's inputs (a head's q, k and v), indexed by e.g. ``("L0H2", "L3H1")``, ``("MLP1", "logits")``.

    For ground truths drawn between components rather than their inputs (planted circuits' edges).
    """
    g, s = edge_scores(result)
    s = s.abs() if use_abs else s
    rows = [(g.senders[i].name, g.receivers[j].node, float(s[i, j])) for i, j in g.mask.nonzero().tolist()]
    df = pd.DataFrame(rows, columns=["sender", "receiver", "score"])
    return df.groupby(["sender", "receiver"], sort=False)["score"].max()


def score_against_node_edges(
    result: EdgeScores | ResultTable, truth: Sequence[tuple[str, str]], k: int | None = None
) -> dict[str, float]:
    """ROC AUC and top-k precision / recall / F1 of node-pair edges (see :func:`node_edge_scores`)
    against true ``(sender, receiver)`` node pairs (``"embed"`` or ``"tokens"`` for the input)."""
    scores = node_edge_scores(result)
    want = {("embed" if a == "tokens" else a, b) for a, b in truth}
    if unknown := want - set(scores.index):
        raise ValueError(f"true edges {sorted(unknown)[:5]} are not node pairs of this model's edge graph")
    labels = torch.tensor([pair in want for pair in scores.index])
    return asdict(score_ranking(torch.tensor(scores.to_numpy()), labels, k=k))


def top_edges(
    result: EdgeScores | ResultTable, k: int, use_abs: bool = True
) -> Bool[Tensor, "n_senders n_receivers"]:
    """Mask of the ``k`` edges of largest ``|score|`` (NaN scores never chosen)."""
    g, s = edge_scores(result)
    flat = (s.abs() if use_abs else s).masked_fill(~g.mask, float("nan")).reshape(-1)
    order = torch.argsort(flat.nan_to_num(float("-inf")), descending=True, stable=True)[:k]
    mask = torch.zeros(flat.shape, dtype=torch.bool)
    mask[order] = True
    return mask.reshape(g.mask.shape) & g.mask


def faithfulness(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    circuit: EdgeSpec,
) -> float:
    """``(m(C) - m(empty)) / (m(M) - m(empty))`` of an edge circuit, everything outside it corrupted."""
    g = EdgeGraph.of(model)
    keep = as_edge_mask(g, circuit)
    with torch.no_grad():
        full = float(metric(model(clean_tokens.to(model.cfg.device))))
        empty = float(metric(model(corrupted_tokens.to(model.cfg.device))))
    if full == empty:
        raise ValueError("the clean and corrupted runs have the same metric; faithfulness is undefined")
    m_c = patch_edges(model, clean_tokens, corrupted_tokens, metric, g.mask & ~keep)
    return (m_c - empty) / (full - empty)


def faithfulness_curve(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    result: EdgeScores | ResultTable,
    sizes: Sequence[int],
) -> list[tuple[int, float]]:
    """Faithfulness of the top-k edges by ``|score|`` for each k in ``sizes``."""
    return [
        (k, faithfulness(model, clean_tokens, corrupted_tokens, metric, top_edges(result, k))) for k in sizes
    ]


DEFAULT_EDGE_METHODS = ("eap", "eap-ig:steps=5")


def evaluate_edges(
    req,
    methods: Sequence[str] = DEFAULT_EDGE_METHODS,
    *,
    exact: ResultTable | None = None,
    truth: EdgeSpec = None,
    sizes: Sequence[int] = (1, 2, 5, 10, 20, 50, 100),
) -> dict[str, pd.DataFrame | ResultTable | dict[str, ResultTable]]:
    """Everything ``circuitkit evaluate`` reports for edges, for one request (model, prompts, direction).

    Returns ``{"exact": edge-patching table, "results": {spec: table}, "correlation": frame,
    "faithfulness": frame (method, k, faithfulness), "ground_truth": frame (only with ``truth``)}``.
    """
    from circuitkit.methods import MethodRequest, run_method

    if exact is None:
        exact = run_method("edge-patching", req)
    results: dict[str, ResultTable] = {}
    corr, curves, gt = [], [], []
    d = req.data
    n_edges = int(graph_of(exact).mask.sum())
    sizes = [k for k in sizes if k <= n_edges]
    for spec in ["edge-patching", *methods]:
        if spec == "edge-patching":
            res = exact
        else:
            name, options = parse_method(spec)
            res = run_method(name, MethodRequest(**{**req.__dict__, "options": options}))
            results[spec] = res
            p = res.provenance
            corr.append({"method": spec, **correlation(exact, res), "passes": p.passes, "seconds": p.seconds})
        for k, f in faithfulness_curve(req.model, d.clean_tokens, d.corrupted_tokens, d.metric, res, sizes):
            curves.append({"method": spec, "k": k, "faithfulness": f})
        if truth is not None:
            gt.append({"method": spec, **score_against_edges(res, truth)})
    table = pd.DataFrame(corr)
    table["exact_passes"] = exact.provenance.passes
    table["exact_seconds"] = exact.provenance.seconds
    out: dict = {
        "exact": exact,
        "results": results,
        "correlation": table,
        "faithfulness": pd.DataFrame(curves),
    }
    if truth is not None:
        out["ground_truth"] = pd.DataFrame(gt)
    return out
