"""The cost of g-SAE's extra backward pass: tokens/s of producing a training batch (LM forward only vs LM
forward + backward to the hooked activation) and of the dictionary step (TopK vs g-SAE selection), in one
process on the same model, hook and text.

    python benchmarks/sae_gsae_cost.py --model default --hook blocks.3.hook_resid_post
"""

from __future__ import annotations

import argparse
import time

import torch


def timed(fn, repeats: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny")
    p.add_argument("--hook", default="blocks.2.hook_resid_post")
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--contexts", type=int, default=32)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    from circuitkit.models import load_model
    from sae_training.activations.model_source import activations, activations_with_gradients
    from sae_training.activations.text import context_batches
    from sae_training.architectures import StepInput
    from sae_training.architectures.gsae import GradientTopKConfig, GradientTopKTrainer
    from sae_training.architectures.topk import TopKConfig, TopKTrainer

    model = load_model(args.model, device=args.device)
    tokens = next(context_batches(model.tokenizer, "builtin", args.context, args.contexts, "train", 0))
    n_tok = tokens.shape[0] * (tokens.shape[1] - 1)
    # TransformerLens (run_with_cache / run_with_hooks) against our lean pass, for both kinds of batch.
    t_fwd_tl = timed(lambda: activations(model, tokens, [args.hook], lean=False), args.repeats)
    t_bwd_tl = timed(lambda: activations_with_gradients(model, tokens, [args.hook], lean=False), args.repeats)
    t_fwd = timed(lambda: activations(model, tokens, [args.hook]), args.repeats)
    t_bwd = timed(lambda: activations_with_gradients(model, tokens, [args.hook]), args.repeats)
    acts, grads = activations_with_gradients(model, tokens, [args.hook])
    x, g = acts[args.hook], grads[args.hook]
    d = x.shape[1]
    topk = TopKTrainer(TopKConfig(d_in=d, d_sae=args.width, k=args.k, device=args.device))
    gsae = GradientTopKTrainer(GradientTopKConfig(d_in=d, d_sae=args.width, k=args.k, device=args.device))
    t_topk = timed(lambda: topk.sparse_training_step(StepInput(x)).loss.backward(), args.repeats)
    t_gsae = timed(lambda: gsae.sparse_training_step(StepInput(x, grad=g)).loss.backward(), args.repeats)
    print(f"{args.model} {args.hook}, {n_tok} tokens per batch, device {args.device}")
    print(
        f"  TransformerLens: forward {n_tok / t_fwd_tl:,.0f} tok/s, forward + backward "
        f"{n_tok / t_bwd_tl:,.0f} tok/s; lean pass {t_fwd_tl / t_fwd:.2f}x / {t_bwd_tl / t_bwd:.2f}x faster"
    )
    print(
        f"  activations: LM forward (stops at the hook's layer) {n_tok / t_fwd:,.0f} tok/s; "
        f"forward + backward for dL/dx {n_tok / t_bwd:,.0f} tok/s  -> {t_bwd / t_fwd:.2f}x the time"
    )
    print(
        f"  dictionary step: TopK {n_tok / t_topk:,.0f} tok/s; g-SAE {n_tok / t_gsae:,.0f} tok/s "
        f"-> {t_gsae / t_topk:.2f}x the time"
    )
    print(
        "  whole step (activations + dictionary): g-SAE costs "
        f"{(t_bwd + t_gsae) / (t_fwd + t_topk):.2f}x TopK"
    )


if __name__ == "__main__":
    main()
