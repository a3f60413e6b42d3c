"""Registers feature-circuit node attribution in :mod:`circuitkit.methods` as ``features``.

Marks et al. (2024, "Sparse Feature Circuits"): every latent and error node of the given SAEs /
transcoders (Dunefsky et al. 2024) scored by AtP or IG, all dictionaries spliced in together::

    circuitkit discover --model default --task ioi --method features \\
        --option dictionaries=ck-6l__blocks.3.hook_resid_post__topk+ck-6l__blocks.3.attn.hook_z__attn-topk

The nodes are dictionary latents, not component families, so the request's ``families`` are not used:
the dictionaries named in the options decide what is scored. Rows have ``family`` ``latent`` or
``error``, ``component`` ``"{dictionary}/{latent}"`` or ``"{dictionary}/error"`` and the extra columns
``dictionary, latent, hook_in, hook_out``. Edges (``attribute_edges``, ``transcoder_edges``) are pairs of
nodes, not per-component scores, so they stay outside the registry.
"""

from __future__ import annotations

from collections.abc import Mapping

from circuitkit.features.attribution import FeatureAttribution, attribute_nodes
from circuitkit.methods import MethodRequest, Option, measured, register
from circuitkit.patching.registry import rules_name
from circuitkit.results import COLUMNS, ResultTable

EXTRA_COLUMNS = ("dictionary", "latent", "hook_in", "hook_out")


def load_dictionaries(spec, device: str) -> dict:
    """``spec`` -> {id: sae-lens SAE}.

    ``spec`` is ids, folders or sae-lens ``release/sae_id`` pairs (:mod:`circuitkit.dictionaries`) joined by
    ``+`` (the CLI form, since ``,`` separates options), a list of them, or SAE objects (a list, or a
    mapping that names them).
    """
    if isinstance(spec, str):
        spec = [s.strip() for s in spec.split("+") if s.strip()]
    items = list(spec.items()) if isinstance(spec, Mapping) else [(None, s) for s in spec]
    if not items:
        raise ValueError(_missing())
    out = {}
    for key, item in items:
        if isinstance(item, str):  # shipped id, sae-lens folder or sae-lens release/sae_id
            from circuitkit.dictionaries import load_dictionary

            out[key or item] = load_dictionary(item, device=device)
        else:
            meta = item.cfg.metadata
            out[key or meta.hook_name + (f"->{meta.hook_name_out}" if meta.hook_name_out else "")] = item
    return out


def _missing() -> str:
    return (
        "method 'features' needs the dictionaries to splice in: --option dictionaries=ID+ID (ids from "
        "`circuitkit sae list`, folders in sae-lens format, or sae-lens release/sae_id); from Python "
        "options={'dictionaries': [sae, ...]}"
    )


def to_result(attr: FeatureAttribution, by_position: bool) -> ResultTable:
    """A :class:`FeatureAttribution` as a registry :class:`ResultTable` (the request's part of the
    provenance is filled in by :func:`circuitkit.methods.run_method`)."""
    p = attr.provenance
    table = attr.table(by_position=by_position)[[*COLUMNS, *EXTRA_COLUMNS]]
    prov = measured(
        passes=float(p["passes"]),
        seconds=float(p["seconds"]),
        baseline_target=attr.metric_target,
        baseline_source=attr.metric_source,
        extra={"dictionaries": p["dictionaries"]},
    )
    return ResultTable(table.reset_index(drop=True), prov)


def _dictionaries(value: object) -> object:
    """Ids / folders joined by ``+`` (CLI), a list of them, or SAE objects (list or mapping)."""
    if isinstance(value, str):
        if not [s for s in value.split("+") if s.strip()]:
            raise ValueError(_missing())
        return value
    if isinstance(value, list | tuple | Mapping) and len(value) > 0:
        return value
    raise ValueError(_missing())


def _names(spec: object) -> list[str]:
    if isinstance(spec, Mapping):
        return [str(k) for k in spec]
    return [s if isinstance(s, str) else s.cfg.metadata.hook_name for s in spec]  # type: ignore[attr-defined]


OPTIONS = (
    Option(
        "dictionaries",
        str,
        None,
        "the dictionaries to splice in: ids (`circuitkit sae list`) or sae-lens folders joined by +; "
        "from Python also a list or mapping of SAEs",
        required=True,
        normalize=_dictionaries,
        record=lambda v: v if isinstance(v, str) else "+".join(_names(v)),
    ),
    Option("method", str, "atp", "node attribution", ("atp", "relp", "ig")),
    Option("ig_steps", int, 10, "integration steps (method=ig)", minimum=1),
    Option("rules", str, "ln+identity", "RelP rules (method=relp)", normalize=rules_name),
    Option("by_position", bool, False, "one row per position instead of summed over positions"),
)


@register(
    "features",
    "feature-circuit nodes (Marks et al. 2024): every SAE / transcoder latent and error node by AtP, "
    "RelP or IG",
    families=("latent", "error"),
    chooses_nodes=True,
    options=OPTIONS,
)
def _features(req: MethodRequest) -> ResultTable:
    opts = req.options
    if req.ablation != "patch":
        raise ValueError(
            f"method 'features' moves nodes to their values on the other prompts (ablation 'patch'); "
            f"got ablation {req.ablation!r}"
        )
    dictionaries = load_dictionaries(opts["dictionaries"], str(req.model.cfg.device))
    d = req.data
    attr = attribute_nodes(
        req.model,
        d.clean_tokens,
        d.corrupted_tokens,
        d.metric,
        dictionaries,
        method=opts["method"],
        direction=req.direction,
        ig_steps=opts["ig_steps"],
        rules=opts["rules"],
    )
    return to_result(attr, opts["by_position"])
