"""Activation patching and AtP / RelP speed against transformer_lens.patching, on the same inputs.

    python benchmarks/patching_speed.py --model default --task ioi --n-prompts 20

Prints, per family: seconds for transformer_lens.patching and for circuitkit's batched sweep, the
ratio, and the largest difference between the two grids (should be float rounding only). Then AtP and
RelP for every family at once (3 passes) against the whole exact sweep.
"""

from __future__ import annotations

import argparse
import time

import torch
import transformer_lens.patching as tlp

from circuitkit.models import load_model
from circuitkit.patching.activation import activation_patching
from circuitkit.patching.attribution import attribution_patching
from circuitkit.patching.relp import relevance_patching
from circuitkit.tasks import make_task

TL = {
    "head": tlp.get_act_patch_attn_head_out_all_pos,
    "head_pos": tlp.get_act_patch_attn_head_out_by_pos,
    "resid_pre": tlp.get_act_patch_resid_pre,
    "attn_out": tlp.get_act_patch_attn_out,
    "mlp_out": tlp.get_act_patch_mlp_out,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--task", default="ioi")
    ap.add_argument("--n-prompts", type=int, default=20)
    ap.add_argument("--families", default=",".join(TL))
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    tlp.tqdm = lambda it, **kw: it  # its progress bar would swamp the table
    model = load_model(args.model, device=args.device)
    data = make_task(args.task, model.tokenizer, args.n_prompts, seed=0).to(model.cfg.device)
    fams = args.families.split(",")
    print(
        f"model {args.model} ({model.cfg.n_layers}L x {model.cfg.n_heads}H), {args.task}, "
        f"{args.n_prompts} prompts x {data.seq_len} tokens, device {model.cfg.device}"
    )
    print(f"{'family':10s} {'TL s':>8s} {'ours s':>8s} {'ratio':>7s} {'max |diff|':>11s}")
    exact_total = 0.0
    for fam in fams:
        t0 = time.perf_counter()
        _, cache = model.run_with_cache(data.clean_tokens)
        ref = TL[fam](model, data.corrupted_tokens, cache, data.metric)
        t_tl = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = activation_patching(model, data.clean_tokens, data.corrupted_tokens, data.metric, fam)
        t_ours = time.perf_counter() - t0
        exact_total += t_ours
        diff = (ours.scores.float() - ref.cpu().float()).abs().max().item()
        print(f"{fam:10s} {t_tl:8.2f} {t_ours:8.2f} {t_tl / t_ours:6.1f}x {diff:11.2e}")
    for name, fn in (("AtP", attribution_patching), ("RelP", relevance_patching)):
        t0 = time.perf_counter()
        r = fn(model, data.clean_tokens, data.corrupted_tokens, data.metric, fams)
        t = time.perf_counter() - t0
        print(
            f"{name} all {len(fams)} families: {r.passes:g} passes, {t:.3f} s; "
            f"{exact_total / t:.0f}x faster than circuitkit's exact sweep ({exact_total:.2f} s)"
        )


if __name__ == "__main__":
    main()
