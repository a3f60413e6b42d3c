"""The conformance matrix: one cell per (architecture, method or option), each exact or refused by name.

A cell function takes a :class:`Case` and returns the largest relative error of circuitkit against its
oracle (``transformer_lens.patching``, finite differences, autograd on hooked forwards,
``run_with_cache``), or raises the method's own error when it refuses the model. ``EXPECTED_REFUSALS``
says which cells refuse and which words the error must contain; any other refusal, or an expected
refusal that does not happen, fails the matrix. Run ``python -m tests.conformance.cells`` to print it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import torch
import transformer_lens.patching as tlp
from sae_lens import StandardSAE, StandardSAEConfig, Transcoder, TranscoderConfig
from sae_lens.saes.sae import SAEMetadata
from transformer_lens import ActivationCache

from circuitkit.components import get_family
from circuitkit.features import ERROR, attribute_edges, attribute_nodes, place, run_spliced
from circuitkit.patching.activation import activation_patching
from circuitkit.patching.attribution import atp_star, attribution_patching
from circuitkit.patching.common import resample_permutation
from circuitkit.patching.integrated_gradients import integrated_gradients
from circuitkit.patching.path import path_patching
from circuitkit.patching.relp import relevance_patching

from .models import ARCHITECTURES, Case, case
from .oracles import capture, check_fd, component_masks, frozen_rule_hooks, grad_at, linear_grid, rel_err

TOL = 1e-5
os.environ.setdefault("TQDM_DISABLE", "1")  # transformer_lens.patching draws a bar per sweep

# The per-architecture families: every hook kind whose patch is reused differently (residual, MLP, head
# output, keys through the key/value prefix, values, patterns); tests/patching covers the rest on GPT-2.
TL_PATCH = {
    "resid_pre": tlp.get_act_patch_resid_pre,
    "mlp_out": tlp.get_act_patch_mlp_out,
    "head": tlp.get_act_patch_attn_head_out_all_pos,
    "head_pos": tlp.get_act_patch_attn_head_out_by_pos,
    "head_k_pos": tlp.get_act_patch_attn_head_k_by_pos,
    "head_v": tlp.get_act_patch_attn_head_v_all_pos,
    "head_pattern_pos": tlp.get_act_patch_attn_head_pattern_by_pos,
}


def _tl_reference(c: Case, family: str, direction: str = "denoising", ablation: str = "patch"):
    target, source = (c.corrupted, c.clean) if direction == "denoising" else (c.clean, c.corrupted)
    with torch.no_grad():
        _, cache = c.model.run_with_cache(source)
    perm = resample_permutation(target.shape[0], 0, "cpu")
    change = {
        "patch": lambda v: v,
        "zero": torch.zeros_like,
        "mean": lambda v: v.mean(0, keepdim=True).expand_as(v),
        "resample": lambda v: v[perm],
    }[ablation]
    cache = ActivationCache({k: change(v) for k, v in cache.items()}, c.model)
    with torch.no_grad():
        return TL_PATCH[family](c.model, target, cache, c.metric)


def activation(family: str) -> Callable[[Case], float]:
    def cell(c: Case) -> float:
        with torch.no_grad():
            fast = activation_patching(c.model, c.clean, c.corrupted, c.last_metric, family, max_tokens=1)
            plain = activation_patching(c.model, c.clean, c.corrupted, c.metric, family)
        ref = _tl_reference(c, family)
        return max(rel_err(fast.scores, ref), rel_err(plain.scores, ref))

    return cell


def activation_options(c: Case) -> float:
    """Every direction x ablation on the residual stream (heads: the family cells)."""
    errs = []
    for family in ("resid_pre",):
        for direction in ("denoising", "noising"):
            for ablation in ("patch", "zero", "mean", "resample"):
                with torch.no_grad():
                    ours = activation_patching(
                        c.model, c.clean, c.corrupted, c.last_metric, family,
                        direction=direction, ablation=ablation,
                    )  # fmt: skip
                errs.append(rel_err(ours.scores, _tl_reference(c, family, direction, ablation)))
    return max(errs)


def path(c: Case) -> float:
    """Path patching into the last layer's head 0 (q, k, v) against a one-sender-at-a-time oracle."""
    model, last = c.model, c.model.cfg.n_layers - 1
    res = path_patching(model, c.clean, c.corrupted, c.metric, [(last, 0)], ("q", "k", "v"))
    z = [f"blocks.{i}.attn.hook_z" for i in range(last)]
    recv = [f"blocks.{last}.attn.hook_{x}" for x in "qkv"]
    t = capture(model, c.corrupted, z)
    s = capture(model, c.clean, z)
    ref = torch.full_like(res.scores, float("nan"))
    for layer in range(last):
        for head in range(model.cfg.n_heads):

            def freeze(act, hook, layer=layer, head=head):
                out = t[hook.name].clone()
                if hook.name == f"blocks.{layer}.attn.hook_z":
                    out[:, :, head] = s[hook.name][:, :, head]
                return out

            rec = {}
            with torch.no_grad(), model.hooks(fwd_hooks=[(n, freeze) for n in z]):
                rec = capture(model, c.corrupted, recv)

            def put(act, hook, rec=rec):
                act = act.clone()
                act[:, :, 0] = rec[hook.name][:, :, 0]
                return act

            with torch.no_grad(), model.hooks(fwd_hooks=[(n, put) for n in recv]):
                ref[layer, head] = float(c.metric(model(c.corrupted)))
    return rel_err(res.scores[:last], ref[:last])


ATP_FAMILIES = ("resid_pre", "attn_out", "mlp_out", "head", "head_pos")


def _families(c: Case, families) -> list[str]:
    return [f for f in families if not (c.model.cfg.attn_only and f.startswith("mlp"))]


def _linear_oracle(c, families, direction="denoising", ablation="patch", frozen=()):
    model = c.model
    target, source = (c.corrupted, c.clean) if direction == "denoising" else (c.clean, c.corrupted)
    layers = list(range(model.cfg.n_layers))
    out = {}
    for f in families:
        fam = get_family(f)
        names = [fam.hook_name(i) for i in layers]
        base, src = capture(model, target, names), capture(model, source, names)
        perm = resample_permutation(target.shape[0], 0, "cpu")
        if ablation == "zero":
            src = {k: torch.zeros_like(v) for k, v in src.items()}
        elif ablation == "mean":
            src = {k: v.mean(0, keepdim=True).expand_as(v) for k, v in src.items()}
        elif ablation == "resample":
            src = {k: v[perm] for k, v in src.items()}
        delta = {k: src[k] - base[k] for k in names}
        out[f] = linear_grid(model, target, c.metric, fam, layers, base, delta, frozen)
    return out


def atp(c: Case) -> float:
    fams = _families(c, ATP_FAMILIES)
    errs = []
    ref = _linear_oracle(c, fams)
    for metric in (c.metric, c.last_metric):
        ours = attribution_patching(c.model, c.clean, c.corrupted, metric, fams)
        errs += [rel_err(ours.grids[f], ref[f]) for f in fams]
    return max(errs)


def atp_options(c: Case) -> float:
    """Noising and the zero / mean / resample ablations on the residual stream."""
    errs = []
    for direction, ablation in (("noising", "patch"), ("denoising", "zero"), ("denoising", "mean"),
                                ("noising", "resample")):  # fmt: skip
        ours = attribution_patching(
            c.model, c.clean, c.corrupted, c.metric, ["resid_pre"], direction=direction, ablation=ablation
        )
        ref = _linear_oracle(c, ["resid_pre"], direction, ablation)
        errs.append(rel_err(ours.grids["resid_pre"], ref["resid_pre"]))
    return max(errs)


QK = ("head_q", "head_k", "head_q_pos", "head_k_pos")


def atp_star_qk(c: Case) -> float:
    """QK fix: exact new patterns (TransformerLens's own forward, every component patched in its own
    copy of the batch), then linear from pattern to metric (autograd at attn.hook_pattern)."""
    model = c.model
    ours = atp_star(model, c.clean, c.corrupted, c.metric, list(QK))
    layers = range(model.cfg.n_layers)
    names = [f"blocks.{i}.attn.hook_{x}" for i in layers for x in ("q", "k", "pattern")]
    t, s = capture(model, c.corrupted, names), capture(model, c.clean, names)
    errs = []
    batch = c.corrupted.shape[0]
    for f in QK:
        fam = get_family(f)
        grid = torch.zeros_like(ours.grids[f])
        for layer in layers:
            hook, pat = fam.hook_name(layer), f"blocks.{layer}.attn.hook_pattern"
            comps = component_masks(fam, t[hook].shape)
            patched = torch.cat([torch.where(mask, s[hook], t[hook]) for _, mask in comps])
            tokens = c.corrupted.repeat(len(comps), 1)
            with model.hooks(fwd_hooks=[(hook, lambda a, hook, p=patched: p)]):
                new = capture(model, tokens, [pat])[pat].view(len(comps), batch, *t[pat].shape[1:])
            g = grad_at(model, c.corrupted, c.metric, pat, t[pat])
            check_fd(model, c.corrupted, c.metric, pat, t[pat], new[0] - t[pat], g)
            for i, (index, _) in enumerate(comps):
                grid[(layer, *index)] = float((g * (new[i] - t[pat])).sum())
        errs.append(rel_err(ours.grids[f], grid))
    return max(errs)


def atp_star_graddrop(c: Case) -> float:
    """GradDrop: sum over dropped layers of |AtP| with that layer's attention and MLP outputs detached."""
    model = c.model
    fams = _families(c, ("resid_pre", "head_pos"))
    ours = atp_star(model, c.clean, c.corrupted, c.metric, fams, qk_fix=False, grad_drop=True)
    n = model.cfg.n_layers
    total = {f: 0.0 for f in fams}
    for dropped in range(n):
        names = [f"blocks.{dropped}.hook_attn_out", f"blocks.{dropped}.hook_mlp_out"]
        names = [x for x in names if x in model.hook_dict]
        # Detaching a layer's outputs in the backward = freezing them at their target values in the
        # forward, for the finite difference.
        frozen_vals = capture(model, c.corrupted, names)
        frozen = [(x, lambda a, hook, v=frozen_vals: v[hook.name]) for x in names]
        ref = _linear_oracle(c, fams, frozen=frozen)
        for f in fams:
            total[f] = total[f] + ref[f].abs()
    return max(rel_err(ours.grids[f], total[f] / max(n - 1, 1)) for f in fams)


def relp(rule: str) -> Callable[[Case], float]:
    def cell(c: Case) -> float:
        fams = _families(c, ("resid_pre", "attn_out", "mlp_out", "head"))
        ours = relevance_patching(c.model, c.clean, c.corrupted, c.metric, fams, rules=rule)
        rules = {"ln", "attention", "identity", "half"} if rule == "all" else {rule}
        ref = _linear_oracle(c, fams, frozen=frozen_rule_hooks(c.model, c.corrupted, rules))
        return max(rel_err(ours.grids[f], ref[f]) for f in fams)

    return cell


def ig(c: Case) -> float:
    """Integrated gradients (3 midpoints) against finite differences at each path point."""
    model, steps = c.model, 3
    fams = _families(c, ("resid_pre", "head", "mlp_out"))
    ours = integrated_gradients(model, c.clean, c.corrupted, c.metric, fams, steps=steps)
    layers = list(range(model.cfg.n_layers))
    errs = []
    for f in fams:
        fam = get_family(f)
        names = [fam.hook_name(i) for i in layers]
        t, s = capture(model, c.corrupted, names), capture(model, c.clean, names)
        delta = {k: s[k] - t[k] for k in names}
        ref = 0
        for k in range(steps):
            alpha = (k + 0.5) / steps
            point = {n: t[n] + alpha * delta[n] for n in names}
            ref = ref + linear_grid(model, c.corrupted, c.metric, fam, layers, point, delta) / steps
        errs.append(rel_err(ours.grids[f], ref))
    return max(errs)


# --------------------------------------------------------------------------------------- features


def _dictionaries(c: Case) -> dict:
    """Random sae-lens SAEs on layer 0's and the last layer's output, a transcoder on layer 1's MLP."""
    model, d = c.model, c.model.cfg.d_model
    last = model.cfg.n_layers - 1
    torch.manual_seed(0)
    out = {}
    for key, hook in (("up", "blocks.0.hook_resid_post"), ("down", f"blocks.{last}.hook_resid_post")):
        cfg = StandardSAEConfig(d_in=d, d_sae=12, dtype="float64", metadata=SAEMetadata(hook_name=hook))
        out[key] = StandardSAE(cfg)
    if not model.cfg.attn_only:
        tc = TranscoderConfig(
            d_in=d, d_sae=12, d_out=d, dtype="float64", apply_b_dec_to_input=False,
            metadata=SAEMetadata(
                hook_name="blocks.1.ln2.hook_normalized", hook_name_out="blocks.1.hook_mlp_out"
            ),
        )  # fmt: skip
        out["mid"] = Transcoder(tc)
    for sae in out.values():
        with torch.no_grad():
            sae.b_enc.normal_(0, 0.1)
        sae.eval().requires_grad_(False)
    return out


def features_splice(c: Case) -> float:
    """Splicing (no intervention) leaves the logits as run_with_cache gives them."""
    dicts = place(c.model, _dictionaries(c))
    with torch.no_grad():
        spliced, _ = run_spliced(c.model, c.corrupted, dicts, probes=False)
        plain, _ = c.model.run_with_cache(c.corrupted)
    return rel_err(spliced, plain)


def features_nodes(method: str) -> Callable[[Case], float]:
    """Node scores per latent (summed over positions) against finite differences along the latent's
    decoder write (error node: along the error's change), for AtP, RelP (ln+identity) and IG."""

    def cell(c: Case) -> float:
        model, saes = c.model, _dictionaries(c)
        steps = 2
        res = attribute_nodes(
            model, c.clean, c.corrupted, c.metric, saes, method=method, ig_steps=steps, rules="ln+identity"
        )
        frozen = frozen_rule_hooks(model, c.corrupted, {"ln", "identity"}) if method == "relp" else []
        errs = []
        for d in place(model, saes):
            _, tgt = run_spliced(model, c.corrupted, [d])
            _, src = run_spliced(model, c.clean, [d])
            df = (src.latents[d.id] - tgt.latents[d.id]).detach()
            derr = (src.errors[d.id] - tgt.errors[d.id]).detach()
            x_t = capture(model, c.corrupted, [d.hook_out])[d.hook_out]
            x_s = capture(model, c.clean, [d.hook_out])[d.hook_out]
            alphas = [(k + 0.5) / steps for k in range(steps)] if method == "ig" else [0.0]
            ref_lat = torch.zeros(d.d_sae, dtype=torch.float64)
            ref_err = 0.0
            for alpha in alphas:
                base = x_t + alpha * (x_s - x_t)
                g = grad_at(model, c.corrupted, c.metric, d.hook_out, base, frozen)
                check_fd(model, c.corrupted, c.metric, d.hook_out, base, x_s - x_t, g, frozen)
                ref_lat += (df * (g @ d.sae.W_dec.T)).sum((0, 1))
                ref_err += float((derr * g).sum())
            scale = len(alphas)
            errs.append(rel_err(res.scores[d.id].latents.sum(0), ref_lat / scale))
            err_total = torch.tensor(float(res.scores[d.id].error.sum()))
            errs.append(rel_err(err_total, torch.tensor(ref_err / scale)))
        return max(errs)

    return cell


def features_edges(c: Case) -> float:
    """Edges up -> down (direct: the transcoder between them passes no gradient) against autograd."""
    model, saes = c.model, _dictionaries(c)
    nodes = [0, 3, ERROR]
    res = attribute_edges(model, c.clean, c.corrupted, c.metric, saes, "up", "down", nodes)
    d = {x.id: x for x in place(model, saes)}
    up, down = d["up"], d["down"]
    probes: dict = {}

    def probe(act, hook):
        probes[hook.name] = torch.zeros_like(act, requires_grad=True)
        return act + probes[hook.name]

    acts: dict = {}

    def keep(act, hook):
        acts[hook.name] = act
        return act

    fwd = [(up.hook_out, probe), (down.hook_out, probe), (down.hook_out, keep)]
    if "mid" in d:
        fwd.append((d["mid"].hook_out, lambda a, hook: a.detach()))
    with model.hooks(fwd_hooks=fwd):
        m = c.metric(model(c.corrupted))
    (g_down,) = torch.autograd.grad(m, [probes[down.hook_out]], retain_graph=True)
    x_up_s = capture(model, c.clean, [up.hook_out])[up.hook_out]
    delta = x_up_s - capture(model, c.corrupted, [up.hook_out])[up.hook_out]
    x_down = acts[down.hook_out]
    f_down = down.encode(x_down)
    g_f = g_down @ down.sae.W_dec.T
    ref = []
    for node in nodes:
        if node == ERROR:
            value = (g_down * (x_down - down.decode(f_down))).sum()
        else:
            value = (g_f[..., node] * f_down[..., node]).sum()
        (g_up,) = torch.autograd.grad(value, [probes[up.hook_out]], retain_graph=True)
        ref.append((g_up * delta).sum())
    return rel_err(res.scores.sum(0), torch.stack(ref).detach())


# ----------------------------------------------------------------------------- sae_training (read-only)


def _lean_hooks(c: Case) -> list[str]:
    hooks = ["blocks.0.hook_resid_post", "blocks.1.attn.hook_z", "blocks.1.ln1.hook_normalized"]
    if not c.model.cfg.attn_only:
        hooks += ["blocks.1.mlp.hook_post", "blocks.0.hook_mlp_out"]
    return hooks


class Refused(ValueError):
    """A cell whose implementation declines the model, with its reason."""


def lean_forward(c: Case) -> float:
    from sae_training.activations.lean_forward import lean_run_with_cache, lean_unsupported

    hooks = _lean_hooks(c)
    reason = lean_unsupported(c.model, hooks)
    if reason is not None:
        raise Refused(reason)
    ours = lean_run_with_cache(c.model, c.corrupted, hooks)
    ref = capture(c.model, c.corrupted, hooks)
    return max(rel_err(ours[h], ref[h]) for h in hooks)


def gsae_gradients(c: Case) -> float:
    from sae_training.activations.lean_forward import lean_activations_with_gradients, lean_unsupported

    hooks = [h for h in _lean_hooks(c) if not h.endswith("ln1.hook_normalized")]
    reason = lean_unsupported(c.model, hooks, gradients=True)
    if reason is not None:
        raise Refused(reason)
    _, grads = lean_activations_with_gradients(c.model, c.corrupted, hooks)
    probes: dict = {}

    def probe(act, hook):
        probes[hook.name] = torch.zeros_like(act, requires_grad=True)
        return act + probes[hook.name]

    with c.model.hooks(fwd_hooks=[(h, probe) for h in hooks]):
        loss = c.model(c.corrupted, return_type="loss", loss_per_token=True).sum()
    ref = torch.autograd.grad(loss, [probes[h] for h in hooks])
    return max(rel_err(grads[h], r) for h, r in zip(hooks, ref, strict=True))


# ------------------------------------------------------------------------------------------ matrix

CELLS: dict[str, Callable[[Case], float]] = {
    **{f"act {f}": activation(f) for f in TL_PATCH},
    "act dir x ablation": activation_options,
    "path": path,
    "atp": atp,
    "atp dir x ablation": atp_options,
    "atp* qk": atp_star_qk,
    "atp* graddrop": atp_star_graddrop,
    **{f"relp {r}": relp(r) for r in ("ln", "attention", "identity", "half", "all")},
    "ig": ig,
    "feat splice": features_splice,
    "feat atp": features_nodes("atp"),
    "feat relp": features_nodes("relp"),
    "feat ig": features_nodes("ig"),
    "feat edges": features_edges,
    "lean forward": lean_forward,
    "g-sae grads": gsae_gradients,
}

_QK_REFUSED = {
    "gpt-neo": "local attention windows",
    "pythia": "rotary positions",
    "gpt-j": "rotary positions",
    "llama": "grouped-query attention",
    "mistral": "rotary positions",
    "gemma-2": "rotary positions",
    "qwen3": "q/k normalisation",
    "olmo-2": "q/k normalisation",
    "left-padded": "left-padded prompts",
}
_LEAN_REFUSED = {
    "pythia": "positional_embedding_type",
    "gpt-j": "positional_embedding_type",
    "llama": "positional_embedding_type",
    "mistral": "positional_embedding_type",
    "gemma-2": "positional_embedding_type",
    "qwen3": "positional_embedding_type",
    "olmo-2": "positional_embedding_type",
    "shortformer": "positional_embedding_type",
    "left-padded": "left padding",
    "gpt-neo": "use_local_attn",
}
EXPECTED_REFUSALS: dict[tuple[str, str], str] = {
    **{(m, "atp* qk"): why for m, why in _QK_REFUSED.items()},
    **{(m, "lean forward"): why for m, why in _LEAN_REFUSED.items()},
    **{(m, "g-sae grads"): why for m, why in _LEAN_REFUSED.items()},
    **{(m, "g-sae grads"): "final norm class RMSNorm" for m in ("llama", "mistral", "qwen3", "olmo-2")},
    ("gemma-2", "g-sae grads"): "non-standard unembedding",
    **{("llama", f"act {f}"): "grouped-query attention" for f in ("head_k_pos", "head_v")},
    ("llama", "path"): "grouped-query attention",
    ("attn-only", "act mlp_out"): "does not exist",
}


def run_cell(model: str, cell: str) -> tuple[str, float | str, float]:
    """("exact", max relative error, seconds) or ("refused", the error's message, seconds)."""
    t0 = time.perf_counter()
    try:
        err = CELLS[cell](case(model))
    except ValueError as exc:  # Refused, a method's ValueError or a DictionaryError
        return "refused", str(exc).split("\n")[0], time.perf_counter() - t0
    except Exception as exc:  # a crash is a failing cell, shown as such in the table
        return "error", f"{type(exc).__name__}: {exc}".split("\n")[0], time.perf_counter() - t0
    return "exact", err, time.perf_counter() - t0


def markdown(models=None, cells=None) -> str:
    """The matrix as a markdown table: a row per method or option, a column per architecture."""
    models, cells = list(models or ARCHITECTURES), list(cells or CELLS)
    lines = ["| method / option | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for cell in cells:
        row = []
        for m in models:
            status, detail, _ = run_cell(m, cell)
            if status == "error":
                row.append(f"**ERROR** {str(detail)[:80]}")
            elif status == "exact":
                row.append(f"{detail:.0e}" if detail <= TOL else f"**FAIL {detail:.0e}**")
            else:
                expected = EXPECTED_REFUSALS.get((m, cell))
                ok = expected is not None and expected in str(detail)
                row.append(f"refused: {expected}" if ok else f"**refused?** {str(detail)[:60]}")
        lines.append(f"| {cell} | " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(markdown(*(sys.argv[1:2] and [sys.argv[1].split(",")])))
