"""Edge scores: one ``[n_senders, n_receivers]`` matrix per method run, and its result table.

Every edge method (exact edge patching, EAP, EAP-IG) returns :class:`EdgeScores`; ``to_table`` turns it
into the :class:`circuitkit.results.ResultTable` the CLI writes and the app reads: one row per edge with
``family = "edge"``, ``sender``, ``receiver``, ``component = "sender->receiver"``, ``layer`` = the
receiver's layer (``n_layers`` for ``logits``), ``head`` = the receiver's head (empty for MLPs and
logits), ``pos`` empty (edges span every position) and ``score`` = the (estimated) effect
``m_patched - m_target`` of patching that edge alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from circuitkit.edges.graph import EdgeGraph
from circuitkit.results import Provenance, ResultTable

EDGE_FAMILY = "edge"


@dataclass
class EdgeScores:
    """Effect of patching each edge, exact or estimated, with what it cost."""

    method: str
    """Method key (``edge-patching``, ``eap``, ``eap-ig``)."""
    graph: EdgeGraph
    scores: Float[Tensor, "n_senders n_receivers"]
    """float64 on the CPU; NaN where ``(sender, receiver)`` is not an edge (or was not scored)."""
    baseline_target: float
    """Metric of the unpatched target run (corrupted when denoising)."""
    baseline_source: float
    """Metric of the unpatched source run (clean when denoising)."""
    passes: float
    """Forward and backward passes over the batch (a backward counts as one; partial forwards count as
    the fraction of layers they run)."""
    seconds: float
    direction: str = "denoising"
    n_prompts: int = 0
    options: dict = field(default_factory=dict)

    def edge_values(self) -> Float[Tensor, " n_edges"]:
        """Scores of every edge, in :meth:`EdgeGraph.edges` order."""
        return self.scores[self.graph.mask]

    def to_table(
        self, model: str, task: str = "custom", metric: str = "metric", seed: int = 0
    ) -> ResultTable:
        g = self.graph
        s_idx, r_idx = g.mask.nonzero(as_tuple=True)
        senders = [g.senders[i].name for i in s_idx.tolist()]
        recvs = [g.receivers[i] for i in r_idx.tolist()]
        table = pd.DataFrame(
            {
                "family": EDGE_FAMILY,
                "layer": pd.array([r.layer for r in recvs], dtype="Int64"),
                "head": pd.array([r.head for r in recvs], dtype="Int64"),
                "pos": pd.array([None] * len(recvs), dtype="Int64"),
                "component": [f"{s}->{r.name}" for s, r in zip(senders, recvs, strict=True)],
                "score": self.scores[s_idx, r_idx].numpy(),
                "sender": senders,
                "receiver": [r.name for r in recvs],
            }
        )
        extra: dict[str, Any] = {"n_layers": g.n_layers, "n_heads": g.n_heads, "has_mlp": g.has_mlp}
        typed = {f.name for f in fields(Provenance)}
        baselines = {"baseline_target": self.baseline_target, "baseline_source": self.baseline_source}
        # Provenance has typed baseline fields once the results refactor lands; before it, they are extras.
        kw: dict[str, Any] = dict(baselines) if "baseline_target" in typed else {}
        if not kw:
            extra.update(baselines)
        if "options" in typed:
            kw["options"] = dict(self.options)
        else:
            extra["options"] = dict(self.options)
        prov = Provenance(
            model=model,
            task=task,
            method=self.method,
            metric=metric,
            ablation="patch",
            direction=self.direction,
            n_prompts=self.n_prompts,
            seed=seed,
            score_kind="effect",
            passes=self.passes,
            seconds=self.seconds,
            extra=extra,
            **kw,
        )
        return ResultTable(table, prov)


def edge_matrix(
    table: pd.DataFrame, graph: EdgeGraph, value: str = "score"
) -> Float[Tensor, "n_senders n_receivers"]:
    """Edge rows of a result table back as a ``[n_senders, n_receivers]`` matrix (NaN where absent)."""
    df = table[table["family"] == EDGE_FAMILY]
    if df.empty or "sender" not in df.columns:
        raise ValueError("this table has no edge rows (family 'edge' with sender / receiver columns)")
    out = torch.full(graph.mask.shape, float("nan"), dtype=torch.float64)
    s = [graph.sender_index[x] for x in df["sender"]]
    r = [graph.receiver_index[x] for x in df["receiver"]]
    out[s, r] = torch.tensor(df[value].to_numpy(dtype="float64"))
    return out


def graph_of(result: ResultTable) -> EdgeGraph:
    """The edge graph a stored edge result was computed on (from its provenance)."""
    x = result.provenance.extra
    if "n_layers" not in x:
        raise ValueError(
            "this result's provenance does not describe an edge graph (not an edge method's table)"
        )
    return EdgeGraph(int(x["n_layers"]), int(x["n_heads"]), bool(x["has_mlp"]))
