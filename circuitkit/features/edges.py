"""Edge attribution between the nodes of two dictionaries (Marks et al. 2024, eq. 5).

For an upstream node ``u`` and a downstream node ``d`` the effect of ``u`` on the metric through ``d``
is estimated as ``dm/dd . dd/du . (u_source - u_target)``, all at the target run. An edge is a *direct*
effect: ``dd/du`` is taken with gradients stopped at the nodes of every dictionary spliced in between
(Marks et al.'s intermediate stop-gradients), so a path through an intermediate node is counted in the
two edges ``u -> node -> d`` and not again in ``u -> d``. For each chosen
downstream node one backward pass of ``sum_positions (dm/dd) * d`` yields the whole column of edges
from every upstream latent and the upstream error node; summing an edge column over all upstream nodes
gives the linear estimate of the downstream node's attribution carried by the upstream activation.
Downstream error nodes are handled the same way with ``(dm/d err) . err``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitkit.features.attribution import Dictionaries
from circuitkit.features.splice import place, run_spliced
from circuitkit.patching.common import Direction, Metric, check_metric, target_and_source

ERROR = -1
"""Index standing for a dictionary's error node in edge tables."""


@dataclass
class EdgeAttribution:
    """Edges from every upstream node to each chosen downstream node, summed over prompts and positions."""

    upstream: str
    downstream: str
    downstream_nodes: list[int]
    """Downstream latent indices (``ERROR`` = -1 for the error node), the columns of ``scores``."""
    scores: Float[Tensor, "n_up_plus_error n_down"]
    """Row ``i < d_sae_up`` is upstream latent ``i``; the last row is the upstream error node."""
    provenance: dict = field(default_factory=dict)

    def table(self, *, min_abs: float = 0.0) -> pd.DataFrame:
        """Tidy edge rows: upstream node, downstream node, score (largest |score| first)."""
        n_up = self.scores.shape[0] - 1
        rows = []
        for col, d in enumerate(self.downstream_nodes):
            for i in range(self.scores.shape[0]):
                s = float(self.scores[i, col])
                if abs(s) < min_abs or s == 0.0:
                    continue
                u = ERROR if i == n_up else i
                rows.append(
                    {
                        "source": f"{self.upstream}/{'error' if u == ERROR else u}",
                        "target": f"{self.downstream}/{'error' if d == ERROR else d}",
                        "source_latent": u,
                        "target_latent": d,
                        "score": s,
                    }
                )
        df = pd.DataFrame(rows, columns=["source", "target", "source_latent", "target_latent", "score"])
        df = df.reindex(df["score"].abs().sort_values(ascending=False).index).reset_index(drop=True)
        df["upstream"], df["downstream"] = self.upstream, self.downstream
        for key in ("method", "direction", "model", "task", "n_prompts"):
            df[key] = self.provenance.get(key)
        return df


def attribute_edges(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    dictionaries: Dictionaries,
    upstream: str,
    downstream: str,
    downstream_nodes: Sequence[int] | None = None,
    *,
    direction: Direction = "denoising",
    provenance: dict | None = None,
) -> EdgeAttribution:
    """AtP edges ``upstream -> downstream`` between two spliced dictionaries (ids as in ``place``).

    ``downstream_nodes``: downstream latent indices to explain (``ERROR`` for its error node); default
    every latent plus the error node, one backward pass each - pass the nodes kept by node pruning.
    """
    start = time.perf_counter()
    dicts = place(model, dictionaries)
    ids = [d.id for d in dicts]
    for name in (upstream, downstream):
        if name not in ids:
            raise ValueError(f"no spliced dictionary with id {name!r}; ids are {ids}")
    if ids.index(upstream) >= ids.index(downstream):
        raise ValueError(
            f"{upstream!r} does not come before {downstream!r} in the forward pass (order: {ids}); edges "
            "run from an earlier dictionary to a later one"
        )
    down = dicts[ids.index(downstream)]
    nodes = [*range(down.d_sae), ERROR] if downstream_nodes is None else list(downstream_nodes)
    bad = [n for n in nodes if not (n == ERROR or 0 <= n < down.d_sae)]
    if bad:
        raise ValueError(
            f"downstream nodes {bad[:5]} are not latents of {downstream!r} (0..{down.d_sae - 1}) or ERROR"
        )
    target, source = target_and_source(model, clean_tokens, corrupted_tokens, direction)
    with torch.no_grad():
        _, src = run_spliced(model, source, dicts)
    between = ids[ids.index(upstream) + 1 : ids.index(downstream)]
    # Stopping gradients at intermediate nodes leaves dm/d(downstream) unchanged (they lie upstream of it).
    logits, tgt = run_spliced(model, target, dicts, probes=True, stop_grads=between)
    m = check_metric(metric(logits))
    g_down_f, g_down_err = torch.autograd.grad(
        m, [tgt.probe_latents[downstream], tgt.probe_errors[downstream]], retain_graph=True
    )
    delta_f = (src.latents[upstream] - tgt.latents[upstream]).detach()
    delta_err = (src.errors[upstream] - tgt.errors[upstream]).detach()
    up_leaves = [tgt.probe_latents[upstream], tgt.probe_errors[upstream]]
    f_down, err_down = tgt.latents[downstream], tgt.errors[downstream]
    columns = []
    for j, node in enumerate(nodes):
        if node == ERROR:
            objective = (g_down_err * err_down).sum()
        else:
            objective = (g_down_f[..., node] * f_down[..., node]).sum()
        g_f, g_err = torch.autograd.grad(
            objective, up_leaves, retain_graph=j < len(nodes) - 1, allow_unused=True
        )
        g_f = torch.zeros_like(delta_f) if g_f is None else g_f
        g_err = torch.zeros_like(delta_err) if g_err is None else g_err
        col = torch.cat([(delta_f * g_f).sum((0, 1)), (delta_err * g_err).sum().reshape(1)])
        columns.append(col.detach())
    return EdgeAttribution(
        upstream=upstream,
        downstream=downstream,
        downstream_nodes=nodes,
        scores=torch.stack(columns, dim=1),
        provenance={
            "method": "feature_edges_atp",
            "direction": direction,
            "model": model.cfg.model_name,
            "n_prompts": int(clean_tokens.shape[0]),
            "passes": 3.0 + len(nodes),
            "seconds": time.perf_counter() - start,
            **(provenance or {}),
        },
    )
