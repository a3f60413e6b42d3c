"""Held-out FVU at equal L0 of our TopK trainer and sae-lens's TopKTrainingSAE, trained on the same
in-memory activations with the same batches, for a few learning rates.

The two parameterise the decoder differently (ours: unit-norm rows with the parallel gradient removed,
Gao et al. 2024; sae-lens: free rows initialised at norm 0.1 with TopK on decoder-norm-scaled
activations), so one shared learning rate favours one of them: sae-lens's rows at norm 0.1 move about
10x further in direction per Adam step than our unit-norm rows. This sweep shows both at each rate and,
for a fair comparison, each at its own best rate. "ours" is the trainer's default init (tied encoder
scaled by the least-squares s on the first batch, ``fit_encoder_scale``); "ours s=1" is plain tied init.
``--normalize`` rescales all activations (both trainers) by one constant so the mean norm is sqrt(d_in),
as Gao et al. 2024 train on normalised inputs; FVU does not depend on that constant.

    python benchmarks/sae_quality_lr.py --model default --hook blocks.3.hook_resid_post --width 2048 --k 32
    python benchmarks/sae_quality_lr.py --steps 240 --train-contexts 8192 --lrs 3e-3,1e-2,2e-2 \
        --warmup 20 --decay-fraction 0.2     # our trainer's default schedule, given to both
"""

from __future__ import annotations

import argparse
import time

import torch


def fvu(out: torch.Tensor, x: torch.Tensor) -> float:
    return float((out - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def l0(n_active: torch.Tensor, n_tokens: int) -> float:
    return float(n_active) / n_tokens


def schedule(args):
    """The same lr schedule for both trainers: our trainer's (linear warm-up, constant, linear decay to zero
    over the last ``--decay-fraction`` of steps); --warmup 0 --decay-fraction 0 is sae-lens's default."""
    from types import SimpleNamespace

    from sae_training.trainer import lr_factor

    cfg = SimpleNamespace(
        n_steps=args.steps, lr_warmup_steps=args.warmup, lr_decay_fraction=args.decay_fraction
    )
    return lambda step: lr_factor(step, cfg)


def train_ours(train_x, batches, eval_x, args, lr: float, fit: bool = True) -> tuple[float, float]:
    from sae_training.architectures import StepInput
    from sae_training.architectures.topk import TopKConfig, TopKTrainer

    torch.manual_seed(args.seed)
    sae = TopKTrainer(TopKConfig(d_in=train_x.shape[1], d_sae=args.width, k=args.k, fit_encoder_scale=fit))
    sae.init_biases(train_x[batches[0]], train_x[batches[0]], "geometric_median")
    sae.fit_encoder_scale(train_x[batches[0]])  # as the trainer does at step 0
    opt = torch.optim.Adam(sae.parameters(), lr=lr, fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule(args))
    dead = torch.zeros(args.width, dtype=torch.bool)
    for idx in batches:
        loss = sae.sparse_training_step(StepInput(train_x[idx], dead)).loss
        opt.zero_grad()
        loss.backward()
        sae.remove_parallel_decoder_grad()
        opt.step()
        sched.step()
        sae.normalize_decoder()
    with torch.no_grad():
        code, _, _ = sae.sparse_encode(eval_x)
        return fvu(sae.reconstruct(code, eval_x), eval_x), l0((code.acts != 0).sum(), len(eval_x))


def train_theirs(train_x, batches, eval_x, args, lr: float) -> tuple[float, float]:
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    torch.manual_seed(args.seed)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=train_x.shape[1], d_sae=args.width, k=args.k))
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule(args))
    dead = torch.zeros(args.width, dtype=torch.bool)
    for i, idx in enumerate(batches):
        loss = sae.training_forward_pass(TrainStepInput(train_x[idx], {}, dead, i, False)).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)  # as sae-lens's SAETrainer does
        opt.step()
        sched.step()
    with torch.no_grad():
        z = sae.encode(eval_x)
        return fvu(sae.decode(z), eval_x), l0((z != 0).sum(), len(eval_x))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--hook", default="blocks.3.hook_resid_post")
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--train-contexts", type=int, default=2304, help="contexts of 64 tokens to train on")
    p.add_argument("--lrs", default="1e-3,3e-3,1e-2,3e-2")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed (batches use seed + 1)")
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps (both trainers)")
    p.add_argument(
        "--decay-fraction", type=float, default=0.0, help="final fraction of steps with linear decay"
    )
    p.add_argument("--normalize", action="store_true", help="scale activations to mean norm sqrt(d_in)")
    p.add_argument("--plain-tied", action="store_true", help="also train ours with s = 1 (plain tied init)")
    args = p.parse_args()

    from circuitkit.models import load_model
    from sae_training.activations.model_source import activations
    from sae_training.activations.text import context_batches

    model = load_model(args.model, device="cpu")

    def acts(split: str, n_contexts: int) -> torch.Tensor:
        batches = context_batches(model.tokenizer, "builtin", 64, 64, split, 0)
        return torch.cat(
            [activations(model, next(batches), [args.hook])[args.hook] for _ in range(n_contexts // 64)]
        )

    train_x, eval_x = acts("train", args.train_contexts), acts("eval", 128)
    if args.normalize:
        c = train_x.shape[1] ** 0.5 / float(train_x.norm(dim=-1).mean())
        train_x, eval_x = train_x * c, eval_x * c
    g = torch.Generator().manual_seed(args.seed + 1)
    batches = [torch.randint(0, train_x.shape[0], (args.batch,), generator=g) for _ in range(args.steps)]
    print(
        f"{args.model} {args.hook}: width {args.width}, k {args.k}, batch {args.batch}, "
        f"{args.steps} steps on {train_x.shape[0]:,} training rows; held-out FVU on {eval_x.shape[0]:,} rows"
        + ("; activations normalised to mean norm sqrt(d_in)" if args.normalize else "; raw activations")
        + f"; lr warm-up {args.warmup} steps, decay over the last {args.decay_fraction:g} of steps (both)"
    )
    best: dict[str, tuple[float, float, float]] = {}
    for lr in (float(s) for s in args.lrs.split(",")):
        runs = [("ours", train_ours, {})]
        if args.plain_tied:
            runs.append(("ours s=1", train_ours, {"fit": False}))
        runs.append(("sae-lens", train_theirs, {}))
        parts = []
        for name, run, kw in runs:
            t = time.perf_counter()
            f, n = run(train_x, batches, eval_x, args, lr, **kw)
            parts.append(f"{name} FVU {f:.4f} L0 {n:.1f} ({time.perf_counter() - t:.0f} s)")
            if name not in best or f < best[name][0]:
                best[name] = (f, n, lr)
        print(f"  lr {lr:g}: " + "   ".join(parts), flush=True)
    print("  each at its own best lr (the fair comparison; the two parameterise step size differently):")
    for name, (f, n, lr) in best.items():
        print(f"    {name:9s} FVU {f:.4f} L0 {n:.1f} at lr {lr:g}")


if __name__ == "__main__":
    main()
