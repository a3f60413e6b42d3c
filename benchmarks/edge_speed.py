"""Edge methods on the built-in models: EAP's cost, exact edge patching against a per-edge loop of
TransformerLens hooks, and how well EAP / EAP-IG track exact edge patching.

    python benchmarks/edge_speed.py                       # ck-6l speed + correlations on both models / tasks
    python benchmarks/edge_speed.py --loop-edges all      # time the loop over every edge (slow)

1. EAP over every edge of ck-6l: passes and seconds.
2. Speed: ``circuitkit.edges.edge_patching`` (batched) against ``edge_patching_loop`` (one
   TransformerLens forward per edge, hook on the receiver's split input) on the same edges (a random
   sample of ``--loop-edges`` edges, seeded), with the largest difference between their numbers; then the
   batched sweep over every edge, and the loop's time for every edge extrapolated from the sample.
3. Correlation: for each model and task, Pearson r / Spearman rho / Pearson without the top edge of EAP
   and EAP-IG against exact edge patching over every edge, their seconds, and the faithfulness of each
   method's top-k edge circuit (everything outside it patched to the corrupted run).
"""

from __future__ import annotations

import argparse
import time

import torch

from circuitkit.edges import EdgeGraph, eap, eap_ig, edge_patching, edge_patching_loop
from circuitkit.edges.evaluation import correlation, faithfulness_curve
from circuitkit.models import load_model
from circuitkit.tasks import make_task


def speed(args: argparse.Namespace) -> None:
    model = load_model(args.speed_model, device=args.device)
    data = make_task(args.task, model.tokenizer, args.n_prompts, seed=0, split="heldout").to(
        str(model.cfg.device)
    )
    g = EdgeGraph.of(model)
    d = (model, data.clean_tokens, data.corrupted_tokens, data.metric)
    print(
        f"\n## speed: {args.speed_model} ({model.cfg.n_layers}L x {model.cfg.n_heads}H, {g.n_edges} edges), "
        f"{args.task}, {args.n_prompts} prompts x {data.seq_len} tokens, {torch.get_num_threads()} thread(s)"
    )
    eap(*d)  # warm-up: the first backward pays one-off allocation costs
    e = eap(*d)
    print(f"EAP, every edge: {e.passes:g} passes, {e.seconds:.2f} s")
    if args.loop_edges == "all":
        sample = g.mask.clone()
    else:
        idx = g.mask.nonzero()
        pick = torch.randperm(len(idx), generator=torch.Generator().manual_seed(0))[: int(args.loop_edges)]
        sample = torch.zeros_like(g.mask)
        sample[idx[pick, 0], idx[pick, 1]] = True
    n = int(sample.sum())
    loop = edge_patching_loop(*d, edges=sample)
    fast = edge_patching(*d, edges=sample)
    diff = float((loop.scores[sample] - fast.scores[sample]).abs().max())
    print(
        f"same {n} edges: loop {loop.seconds:.1f} s, batched {fast.seconds:.1f} s, "
        f"ratio {loop.seconds / fast.seconds:.1f}x, max |diff| {diff:.1e}"
    )
    full = edge_patching(*d)
    per_edge = loop.seconds / n
    print(
        f"every edge: batched {full.seconds:.1f} s; loop extrapolated {per_edge * g.n_edges:.0f} s "
        f"({per_edge * 1e3:.1f} ms/edge): ratio {per_edge * g.n_edges / full.seconds:.1f}x"
    )


def correlations(args: argparse.Namespace) -> None:
    print(
        "\n## correlation with exact edge patching (every edge; denoising; "
        f"{args.n_prompts} held-out prompts, seed 0); faithfulness of the top-k edge circuit"
    )
    ks = [int(k) for k in args.k.split(",")]
    head = f"{'model':7s} {'task':13s} {'method':14s} {'r':>6s} {'rho':>6s} {'r w/o top':>9s} {'s':>7s} "
    print(head + " ".join(f"{'F@' + str(k):>7s}" for k in ks))
    for name in args.models.split(","):
        model = load_model(name, device=args.device)
        for task in args.tasks.split(","):
            data = make_task(task, model.tokenizer, args.n_prompts, seed=0, split="heldout")
            data = data.to(str(model.cfg.device))
            d = (model, data.clean_tokens, data.corrupted_tokens, data.metric)
            exact = edge_patching(*d)
            methods = {
                "edge patching": exact,
                "EAP": eap(*d),
                **{f"EAP-IG ({s})": eap_ig(*d, steps=s) for s in args.ig_steps},
            }
            for label, res in methods.items():
                c = correlation(exact, res)
                faith = dict(faithfulness_curve(*d, res, ks))
                print(
                    f"{model.cfg.model_name:7s} {task:13s} {label:14s} {c['pearson']:6.3f} "
                    f"{c['spearman']:6.3f} {c['pearson_without_top']:9.3f} {res.seconds:7.2f} "
                    + " ".join(f"{faith[k]:7.3f}" for k in ks),
                    flush=True,
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed-model", default="default", help="model of the speed comparison")
    ap.add_argument("--task", default="ioi", help="task of the speed comparison")
    ap.add_argument("--n-prompts", type=int, default=16)
    ap.add_argument("--loop-edges", default="300", help="edges in the loop comparison (a number or 'all')")
    ap.add_argument("--models", default="tiny,default", help="models of the correlation table")
    ap.add_argument("--tasks", default="ioi,greater_than")
    ap.add_argument("--ig-steps", type=lambda s: [int(x) for x in s.split(",")], default=[5, 20])
    ap.add_argument("--k", default="10,50,200", help="circuit sizes for faithfulness")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: speed, correlation")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    if "speed" not in args.skip:
        speed(args)
    if "correlation" not in args.skip:
        correlations(args)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
