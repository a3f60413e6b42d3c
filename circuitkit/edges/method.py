"""Registers the edge methods in :mod:`circuitkit.methods`: ``edge-patching``, ``eap``, ``eap-ig``.

Each writes one row per edge of the model (``family = "edge"``, ``sender``, ``receiver`` columns; see
:mod:`circuitkit.edges.scores`). Edges are the model's own graph, not component families, so the methods
register with ``chooses_nodes=True`` and ``--families`` does not apply; patching is with the other run's
values (``--ablation patch``) in either direction.
"""

from __future__ import annotations

from typing import Any, cast

from circuitkit import methods
from circuitkit.edges.eap import eap, eap_ig
from circuitkit.edges.patching import edge_patching, edge_patching_loop
from circuitkit.edges.scores import EdgeScores
from circuitkit.methods import MethodRequest, register
from circuitkit.patching.activation import Direction
from circuitkit.results import ResultTable

EDGE_METHODS = ("edge-patching", "eap", "eap-ig")
"""The registered methods that score edges (rows of family ``edge``); ``edge-patching`` is their exact
reference, as ``activation`` is the node methods'."""

_Option = getattr(methods, "Option", None)  # declared option schemas (after the registry refactor)


def _options(*specs: tuple) -> dict[str, Any]:
    """``options=(Option(...), ...)`` where the registry declares options; nothing where it does not."""
    if _Option is None:
        return {}
    return {"options": tuple(_Option(*a, **kw) for a, kw in specs)}


def _check(req: MethodRequest) -> None:
    if req.ablation != "patch":
        raise ValueError(
            f"edge methods patch each edge with the other run's sender value; ablation {req.ablation!r} "
            "is not supported (use --ablation patch)"
        )


def _direction(req: MethodRequest) -> Direction:
    if req.direction not in ("denoising", "noising"):
        raise ValueError(f"direction must be denoising or noising, got {req.direction!r}")
    return cast(Direction, req.direction)


def _table(req: MethodRequest, scores: EdgeScores) -> ResultTable:
    d = req.data
    return scores.to_table(req.name, d.task, d.metric_name, seed=req.seed)


def _args(req: MethodRequest) -> tuple:
    d = req.data
    return (req.model, d.clean_tokens, d.corrupted_tokens, d.metric)


@register(
    "edge-patching",
    "exact edge activation patching: every sender -> receiver edge patched alone (batched)",
    chooses_nodes=True,
    **_options(
        (
            (
                "implementation",
                str,
                "batched",
                "batched passes, or loop: one TransformerLens forward per edge",
            ),
            {"choices": ("batched", "loop")},
        )
    ),
)
def _edge_patching(req: MethodRequest) -> ResultTable:
    _check(req)
    fn = edge_patching_loop if req.options.get("implementation", "batched") == "loop" else edge_patching
    return _table(req, fn(*_args(req), direction=_direction(req), progress=req.progress))


@register(
    "eap",
    "edge attribution patching (Syed et al. 2023): every edge from 2 forwards + 1 backward",
    chooses_nodes=True,
)
def _eap(req: MethodRequest) -> ResultTable:
    _check(req)
    return _table(req, eap(*_args(req), direction=_direction(req)))


@register(
    "eap-ig",
    "EAP-IG (Hanna et al. 2024): EAP with gradients averaged along the input-embedding path; option steps=5",
    chooses_nodes=True,
    **_options((("steps", int, 5, "points on the path from corrupted to clean embeddings"), {"minimum": 1})),
)
def _eap_ig(req: MethodRequest) -> ResultTable:
    _check(req)
    steps = int(req.options.get("steps", 5))
    return _table(req, eap_ig(*_args(req), steps=steps, direction=_direction(req)))
