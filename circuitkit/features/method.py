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
from circuitkit.methods import MethodRequest, register
from circuitkit.results import COLUMNS, Provenance, ResultTable

OPTIONS = {"dictionaries", "method", "ig_steps", "rules", "by_position"}
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


def to_result(attr: FeatureAttribution, req: MethodRequest, by_position: bool) -> ResultTable:
    """A :class:`FeatureAttribution` as a registry :class:`ResultTable` with its provenance."""
    p = attr.provenance
    table = attr.table(by_position=by_position)[[*COLUMNS, *EXTRA_COLUMNS]]
    prov = Provenance(
        model=req.name,
        task=req.data.task,
        method="features",
        metric=req.data.metric_name,
        ablation="patch",
        direction=req.direction,
        n_prompts=len(req.data),
        seed=req.seed,
        score_kind="effect",
        passes=float(p["passes"]),
        seconds=float(p["seconds"]),
        extra={
            "options": {
                "method": p["method"].removeprefix("feature_"),
                "ig_steps": p["ig_steps"],
                "rules": p.get("rules"),
            },
            "dictionaries": p["dictionaries"],
            "by_position": by_position,
            "baseline_target": attr.metric_target,
            "baseline_source": attr.metric_source,
        },
    )
    return ResultTable(table.reset_index(drop=True), prov)


@register(
    "features",
    "feature-circuit nodes (Marks et al. 2024): every SAE / transcoder latent and error node by AtP, "
    "RelP or IG; "
    "options dictionaries=ID+ID (required), method=atp|relp|ig, ig_steps=10, rules=ln+identity, "
    "by_position=false",
    families=("latent", "error"),
    chooses_nodes=True,
)
def _features(req: MethodRequest) -> ResultTable:
    opts = dict(req.options)
    unknown = set(opts) - OPTIONS
    if unknown:
        raise ValueError(
            f"unknown option(s) {sorted(unknown)} for method 'features'; known: {sorted(OPTIONS)}"
        )
    if "dictionaries" not in opts:
        raise ValueError(_missing())
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
        method=opts.get("method", "atp"),
        direction=req.direction,
        ig_steps=int(opts.get("ig_steps", 10)),
        rules=str(opts.get("rules", "ln+identity")),
    )
    return to_result(attr, req, bool(opts.get("by_position", False)))
