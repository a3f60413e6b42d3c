"""Discrete-SAE head identification vs exact activation patching of every head, in one process.

For each task: seconds for head identification (O'Neill & Bui 2024) and for the exhaustive head
activation-patching sweep (denoising + noising, the reference the ground truth is derived from), their
ratio, and each ranking's ROC AUC / precision / recall / F1 against the model's ground-truth circuit.
Goal from issue 4: head identification <= 10 s on the default model.

    python benchmarks/heads_speed.py --model default --prompts 64 --seeds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from circuitkit.heads import HeadIdConfig, identify_heads, score_ranking
from circuitkit.models import load_model
from circuitkit.patching.activation import activation_patching
from circuitkit.tasks import make_task
from circuitkit.tasks.ground_truth import ground_truth


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="default")
    p.add_argument("--prompts", type=int, default=64, help="positive prompts scored (and as many negatives)")
    p.add_argument("--train-prompts", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3, help="SAE seeds to average the scores over")
    p.add_argument("--device", default=None)
    args = p.parse_args()
    torch.set_grad_enabled(False)
    model = load_model(args.model, device=args.device)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    print(f"model {model.cfg.model_name} ({n_layers}x{n_heads} heads) on {model.cfg.device}")
    header = (
        f"{'task':13s} {'variant':7s} {'heads s':>8s} {'patch s':>8s} {'ratio':>6s} "
        f"{'AUC':>12s} {'P@k':>5s} {'R@k':>5s} {'F1':>5s} {'patch AUC':>9s} {'k':>3s}"
    )
    print(header)
    for task in ("ioi", "greater_than"):
        data = make_task(task, model.tokenizer, args.prompts, seed=0)
        mask = ground_truth(model, task).head_mask(n_layers, n_heads)
        identify_heads(model, data, HeadIdConfig(n_prompts=args.prompts, n_train_prompts=args.train_prompts))
        times, results = [], []
        for seed in range(args.seeds):
            cfg = HeadIdConfig(n_prompts=args.prompts, n_train_prompts=args.train_prompts, seed=seed)
            t0 = time.perf_counter()
            results.append(identify_heads(model, data, cfg))
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        effects = []
        for direction in ("denoising", "noising"):
            r = activation_patching(
                model, data.clean_tokens, data.corrupted_tokens, data.metric, "head", direction=direction
            )
            # denoising: share of the clean metric restored; noising: share of it destroyed
            effects.append(r.normalized())
        t_patch = time.perf_counter() - t0
        patch_score = torch.maximum(effects[0].abs(), effects[1].abs())
        usable = 0 < int(mask.sum()) < mask.numel()
        patch_auc = score_ranking(patch_score, mask).roc_auc if usable else float("nan")
        for variant in ("node", "edge"):
            if not usable:
                n_gt = int(mask.sum())
                print(f"{task:13s} {variant:7s} ground truth has {n_gt}/{mask.numel()} heads: no AUC")
                continue
            scores = [score_ranking(r.scores(variant), mask) for r in results]
            aucs = [s.roc_auc for s in scores]
            t = statistics.median(times)
            print(
                f"{task:13s} {variant:7s} {t:8.2f} {t_patch:8.2f} {t_patch / t:6.1f} "
                f"{statistics.mean(aucs):6.3f}±{statistics.pstdev(aucs):.3f} "
                f"{statistics.mean(s.precision for s in scores):5.2f} "
                f"{statistics.mean(s.recall for s in scores):5.2f} "
                f"{statistics.mean(s.f1 for s in scores):5.2f} "
                f"{patch_auc:9.3f} {scores[0].k:3d}"
            )


if __name__ == "__main__":
    main()
