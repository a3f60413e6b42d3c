"""Discrete-SAE head identification (O'Neill & Bui 2024, "Sparse Autoencoders Enable Scalable and
Reliable Circuit Identification in Language Models", arXiv 2405.12522).

1. Per-head outputs ``z @ W_O`` averaged over positions on positive prompts (the model is right) and on
   negative prompts (the task's corruption, where the mechanism should not fire).
2. One small SAE over every head's vectors, trained on the vectors of a handful of prompts.
3. Each (prompt, head) becomes a discrete code: its argmax latent.
4. A head scores the number of codes it shows on positives and never on negatives; a head pair scores
   the number of such code pairs. Heads are ranked by score; no forward pass is patched.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit.components import head_label
from circuitkit.heads.dictionary import CodebookConfig, input_scale, train_codebook
from circuitkit.heads.scoring import EdgeToHead, code_counts, edge_scores, heads_from_edges, node_scores
from circuitkit.heads.vectors import head_output_vectors, positives_and_negatives
from circuitkit.tasks.base import TaskDataset

METHOD = "discrete_sae_heads"


@dataclass
class HeadIdConfig:
    """Settings of discrete-SAE head identification."""

    n_prompts: int | None = 64
    """Most positive prompts to score (each with its negative partner); None keeps every correct one."""
    n_train_prompts: int = 10
    """Prompts whose head vectors train the SAE, half positives and half their negatives (paper: 5-10)."""
    codebook: CodebookConfig = field(default_factory=CodebookConfig)
    """The small SAE: latents, L1 weight, steps."""
    normalise: bool = False
    """Divide a head's unique-positive code count by its number of distinct codes."""
    edge_to_head: EdgeToHead = "sum"
    """How pair scores become head scores in the edge variant (see ``heads_from_edges``)."""
    top_fraction: float = 0.25
    """Share of ordered pairs kept when ``edge_to_head="top_pairs"``."""
    seed: int = 0
    """Seeds the choice of training prompts and the SAE's initialisation."""

    def __post_init__(self) -> None:
        if self.n_train_prompts < 2:
            raise ValueError(
                f"n_train_prompts must be >= 2 (one positive and one negative), got {self.n_train_prompts}"
            )
        if self.n_prompts is not None and self.n_prompts < 1:
            raise ValueError(f"n_prompts must be >= 1 or None, got {self.n_prompts}")


@dataclass
class HeadIdentification:
    """Scores of every head (node variant) and head pair (edge variant), with the codes behind them."""

    n_layers: int
    n_heads: int
    node_scores: Float[Tensor, "n_layers n_heads"]
    edge_scores: Float[Tensor, "n_components n_components"]
    """Ordered pair scores over heads flattened as ``layer * n_heads + head``."""
    edge_head_scores: Float[Tensor, "n_layers n_heads"]
    pos_codes: Int[Tensor, "n_pos n_components"]
    neg_codes: Int[Tensor, "n_neg n_components"]
    n_latents: int
    losses: list[float]
    """SAE training loss per step."""
    provenance: dict

    def scores(self, variant: str = "node") -> Float[Tensor, "n_layers n_heads"]:
        if variant == "node":
            return self.node_scores
        if variant == "edge":
            return self.edge_head_scores
        raise ValueError(f"variant must be 'node' or 'edge', got {variant!r}")

    def ranking(self, variant: str = "node") -> list[tuple[int, int]]:
        """Heads from highest to lowest score (ties in flattened (layer, head) order)."""
        flat = self.scores(variant).flatten()
        order = torch.argsort(flat, descending=True, stable=True).tolist()
        return [divmod(i, self.n_heads) for i in order]

    def table(self, variant: str = "node") -> pd.DataFrame:
        """One row per head: component, layer, head, score, rank, code counts, and provenance columns."""
        scores = self.scores(variant).flatten()
        rank = torch.empty_like(scores, dtype=torch.long)
        rank[torch.argsort(scores, descending=True, stable=True)] = torch.arange(1, len(scores) + 1)
        pos_keys = [set(self.pos_codes[:, i].tolist()) for i in range(scores.numel())]
        neg_keys = [set(self.neg_codes[:, i].tolist()) for i in range(scores.numel())]
        rows = []
        for i in range(scores.numel()):
            layer, head = divmod(i, self.n_heads)
            rows.append(
                {
                    "component": head_label(layer, head),
                    "layer": layer,
                    "head": head,
                    "score": float(scores[i]),
                    "rank": int(rank[i]),
                    "n_codes_positive_only": len(pos_keys[i] - neg_keys[i]),
                    "n_codes_negative_only": len(neg_keys[i] - pos_keys[i]),
                    "n_codes": len(pos_keys[i] | neg_keys[i]),
                }
            )
        df = pd.DataFrame(rows)
        return _with_provenance(df, {**self.provenance, "variant": variant})

    def to_result(self, variant: str = "node", *, model_name: str | None = None):
        """The head scores as a :class:`circuitkit.results.ResultTable` (family ``head``), with the code
        counts and rank as extra columns."""
        from circuitkit.results import Provenance, from_grids

        prov = self.provenance
        extra = {k: v for k, v in prov.items() if k not in ("model", "task", "metric")}
        result = from_grids(
            {"head": self.scores(variant)},
            Provenance(
                model=model_name or prov.get("model", ""),
                task=prov.get("task", "custom"),
                method=f"heads_{variant}",
                metric=prov.get("metric", ""),
                ablation="none",
                direction="none",
                n_prompts=int(prov.get("n_prompts", 0)),
                seed=int(prov.get("seed", 0)),
                score_kind="magnitude",
                passes=2.0,
                seconds=float(prov.get("seconds", 0.0)),
                extra={**extra, "variant": variant},
            ),
        )
        counts = self.table(variant)[["rank", "n_codes_positive_only", "n_codes_negative_only", "n_codes"]]
        result.table = pd.concat([result.table, counts.reset_index(drop=True)], axis=1)
        return result

    def edge_table(self, top: int | None = None) -> pd.DataFrame:
        """Ordered head pairs with a nonzero score, best first (``top`` rows at most)."""
        flat = self.edge_scores.flatten()
        order = torch.argsort(flat, descending=True, stable=True)
        order = order[flat[order] > 0]
        if top is not None:
            order = order[:top]
        n = self.n_layers * self.n_heads
        rows = []
        for rank, idx in enumerate(order.tolist(), start=1):
            (l1, h1), (l2, h2) = divmod(idx // n, self.n_heads), divmod(idx % n, self.n_heads)
            rows.append(
                {
                    "component": f"{head_label(l1, h1)}->{head_label(l2, h2)}",
                    "sender": head_label(l1, h1),
                    "receiver": head_label(l2, h2),
                    "score": float(flat[idx]),
                    "rank": rank,
                }
            )
        df = pd.DataFrame(rows, columns=["component", "sender", "receiver", "score", "rank"])
        return _with_provenance(df, {**self.provenance, "variant": "edge"})

    def codes_by_head(self) -> dict[str, tuple[list[int], list[int]]]:
        """``label -> (codes on positives, codes on negatives)``: the input of
        ``circuitkit.viz.heads.code_histograms``."""
        out = {}
        for i in range(self.n_layers * self.n_heads):
            label = head_label(*divmod(i, self.n_heads))
            out[label] = (self.pos_codes[:, i].tolist(), self.neg_codes[:, i].tolist())
        return out

    def code_histogram_table(self) -> pd.DataFrame:
        """Tidy counts: one row per (head, code) seen at least once, with positive and negative counts."""
        pos = code_counts(self.pos_codes, self.n_latents)
        neg = code_counts(self.neg_codes, self.n_latents)
        head_idx, code = ((pos + neg) > 0).nonzero(as_tuple=True)
        df = pd.DataFrame(
            {
                "component": [head_label(*divmod(int(i), self.n_heads)) for i in head_idx],
                "layer": (head_idx // self.n_heads).tolist(),
                "head": (head_idx % self.n_heads).tolist(),
                "code": code.tolist(),
                "n_positive": pos[head_idx, code].tolist(),
                "n_negative": neg[head_idx, code].tolist(),
            }
        )
        return _with_provenance(df, {**self.provenance, "variant": "codes"})


def _with_provenance(df: pd.DataFrame, provenance: dict) -> pd.DataFrame:
    for key in ("method", "variant", "metric", "model", "task", "seed", "n_prompts", "n_train_prompts"):
        df[key] = provenance.get(key)
    df.attrs["provenance"] = provenance
    return df


def identify_from_vectors(
    pos_vectors: Float[Tensor, "n_pos n_layers n_heads d_model"],
    neg_vectors: Float[Tensor, "n_neg n_layers n_heads d_model"],
    cfg: HeadIdConfig | None = None,
    *,
    provenance: dict | None = None,
) -> HeadIdentification:
    """The method on precomputed head vectors: train the code book, take codes, score heads and pairs.

    The SAE trains on ``cfg.n_train_prompts // 2`` randomly chosen positives and as many negatives (every
    head's vector of each), then codes every prompt in both sets.
    """
    cfg = cfg or HeadIdConfig()
    if pos_vectors.ndim != 4 or pos_vectors.shape[1:] != neg_vectors.shape[1:]:
        raise ValueError(
            "positive and negative vectors must both be [n_prompts, n_layers, n_heads, d_model] with the "
            f"same trailing shape, got {tuple(pos_vectors.shape)} and {tuple(neg_vectors.shape)}"
        )
    n_layers, n_heads, d_model = pos_vectors.shape[1:]
    gen = torch.Generator().manual_seed(cfg.seed)
    n_half = max(1, cfg.n_train_prompts // 2)
    pick_pos = torch.randperm(pos_vectors.shape[0], generator=gen)[:n_half].to(pos_vectors.device)
    pick_neg = torch.randperm(neg_vectors.shape[0], generator=gen)[:n_half].to(neg_vectors.device)
    train = torch.cat([pos_vectors[pick_pos], neg_vectors[pick_neg]]).reshape(-1, d_model).float()
    scale = input_scale(train) if cfg.codebook.scale_inputs else 1.0
    sae, losses = train_codebook(train * scale, cfg.codebook, seed=cfg.seed)
    n_comp = n_layers * n_heads
    pos_codes = sae.codes(pos_vectors.reshape(-1, n_comp, d_model).float() * scale).cpu()
    neg_codes = sae.codes(neg_vectors.reshape(-1, n_comp, d_model).float() * scale).cpu()
    k = cfg.codebook.n_latents
    nodes = node_scores(pos_codes, neg_codes, k, normalise=cfg.normalise).view(n_layers, n_heads)
    edges = edge_scores(pos_codes, neg_codes, k, normalise=cfg.normalise)
    edge_heads = heads_from_edges(edges, how=cfg.edge_to_head, top_fraction=cfg.top_fraction)
    prov = {
        "method": METHOD,
        "seed": cfg.seed,
        "n_prompts": int(pos_vectors.shape[0]),
        "n_train_prompts": 2 * n_half,
        "config": asdict(cfg),
        "input_scale": scale,
        "final_loss": losses[-1],
        **(provenance or {}),
    }
    return HeadIdentification(
        n_layers=n_layers,
        n_heads=n_heads,
        node_scores=nodes,
        edge_scores=edges,
        edge_head_scores=edge_heads.view(n_layers, n_heads),
        pos_codes=pos_codes,
        neg_codes=neg_codes,
        n_latents=k,
        losses=losses,
        provenance=prov,
    )


def identify_heads(
    model: HookedTransformer, data: TaskDataset, cfg: HeadIdConfig | None = None
) -> HeadIdentification:
    """Rank ``model``'s heads for ``data``'s task: positives are the clean prompts it gets right,
    negatives their corruptions (IOI: a third name; greater-than: year 01).

    Returns :class:`HeadIdentification`; ``.table()`` is the tidy, provenance-carrying result.
    """
    cfg = cfg or HeadIdConfig()
    start = time.perf_counter()
    sets = positives_and_negatives(model, data, max_prompts=cfg.n_prompts)
    pos = head_output_vectors(model, sets.positive_tokens)
    neg = head_output_vectors(model, sets.negative_tokens)
    result = identify_from_vectors(
        pos,
        neg,
        cfg,
        provenance={
            "model": model.cfg.model_name,
            "task": data.task,
            "metric": data.metric_name,
            "split": data.split,
            "data_seed": data.seed,
            "model_accuracy": sets.accuracy,
            "negatives": "the task's corrupted prompts (IOI: ABC third name; greater-than: year 01)",
        },
    )
    result.provenance["seconds"] = time.perf_counter() - start
    return result
