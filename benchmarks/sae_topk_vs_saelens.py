"""Our TopK trainer against sae-lens's ``LanguageModelSAETrainingRunner`` on the same model, hook, width,
k, batch and text, in one process.

Prints (1) end-to-end training tokens/s (LM forward + SAE step, both on the fly), (2) SAE-step-only
tokens/s on identical pre-computed activations, (3) held-out FVU / L0 / CE-loss recovered of both trained
dictionaries, evaluated by the same code. Both train at the same --lr, which favours sae-lens (its decoder
rows at norm 0.1 turn ~10x more per Adam step than our unit-norm rows); sae_quality_lr.py compares each at
its own best lr. Usage:

    python benchmarks/sae_topk_vs_saelens.py --model default --hook blocks.3.hook_resid_post \
        --width 2048 --k 32 --batch 4096 --tokens 400000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def buffer_tokens(args) -> int:
    """Activation buffer size shared by both trainers."""
    return max(2 * args.batch, 65536)


def sae_lens_run(model, ds, args, out: Path):
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAEConfig

    # sae-lens 6.54's mixing buffer holds n_batches_in_buffer * context_size tokens (it must be >= the batch):
    # the same number of tokens as ours, also serving half before each refill.
    n_buffer = buffer_tokens(args) // args.context
    cfg = LanguageModelSAERunnerConfig(
        sae=TopKTrainingSAEConfig(d_in=model.cfg.d_model, d_sae=args.width, k=args.k, device=args.device),
        model_name="circuitkit", hook_name=args.hook, dataset_path="", is_dataset_tokenized=True,
        streaming=False,
        context_size=args.context, training_tokens=args.tokens, train_batch_size_tokens=args.batch,
        store_batch_size_prompts=args.lm_batch, n_batches_in_buffer=n_buffer, lr=args.lr, device=args.device,
        logger=LoggingConfig(log_to_wandb=False, eval_every_n_wandb_logs=10**9), output_path=str(out),
        checkpoint_path=str(out / "ckpt"), n_checkpoints=0, n_eval_batches=1, verbose=False,
        n_batches_for_norm_estimate=4,
    )  # fmt: skip
    runner = LanguageModelSAETrainingRunner(cfg, override_model=model, override_dataset=ds)
    t = time.perf_counter()
    runner.run()
    return time.perf_counter() - t


def ours_run(model, ds_dir: Path, args, out: Path):
    from sae_training.config import TrainConfig
    from sae_training.trainer import train

    cfg = TrainConfig(
        text=f"hf:{ds_dir}", text_column="input_ids",  # the same tokenized contexts sae-lens reads
        model=args.model, hook=args.hook, width=args.width, k=args.k, batch_size=args.batch,
        total_tokens=args.tokens, context_size=args.context, model_batch_size=args.lm_batch,
        buffer_tokens=buffer_tokens(args), lr=args.lr,
        out_dir=str(out), progress=False, checkpoint_every=0, device=args.device, lr_decay_fraction=0.0,
        lr_warmup_steps=0,  # sae-lens default: constant lr, no warm-up
    )  # fmt: skip
    t = time.perf_counter()
    train(cfg, model=model)
    return time.perf_counter() - t


def step_only(args, acts: torch.Tensor, steps: int = 10):
    """Tokens/s of one optimiser step on the same activations: ours vs sae-lens's TopKTrainingSAE, each
    doing what its trainer does per step (ours: sparse step, decoder-gradient projection, fused Adam,
    decoder renorm; sae-lens's SAETrainer: dense step, grad-norm clipping, Adam)."""
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    from sae_training.architectures import StepInput
    from sae_training.architectures.topk import TopKConfig, TopKTrainer

    d = acts.shape[1]
    ours = TopKTrainer(TopKConfig(d_in=d, d_sae=args.width, k=args.k, device=args.device))
    theirs = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d, d_sae=args.width, k=args.k, device=args.device))
    dead = torch.zeros(args.width, dtype=torch.bool, device=args.device)
    dead[: args.width // 10] = True  # some dead latents, so both pay for their AuxK loss
    fused = args.device.split(":")[0] in ("cpu", "cuda")
    our_opt = torch.optim.Adam(ours.parameters(), lr=1e-4, fused=fused)
    their_opt = torch.optim.Adam(theirs.parameters(), lr=1e-4)

    def our_step(x):
        loss = ours.sparse_training_step(StepInput(x, dead)).loss
        our_opt.zero_grad()
        loss.backward()
        ours.remove_parallel_decoder_grad()
        our_opt.step()
        ours.normalize_decoder()

    def their_step(x):
        loss = theirs.training_forward_pass(TrainStepInput(x, {}, dead, 0, False)).loss
        their_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
        their_opt.step()

    # Interleaved, so a change in machine load affects both alike.
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    for i in range(steps + 2):
        x = acts[torch.randint(0, acts.shape[0], (args.batch,))]
        for name, fn in (("ours", our_step), ("theirs", their_step)):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn(x)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            if i >= 2:
                times[name].append(time.perf_counter() - t)
    return tuple(args.batch * len(v) / sum(v) for v in times.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny")
    p.add_argument("--hook", default="blocks.2.hook_resid_post")
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--tokens", type=int, default=400_000)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--lm-batch", type=int, default=32, help="contexts per LM forward pass (both trainers)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--skip-end-to-end", action="store_true")
    p.add_argument("--repeats", type=int, default=2, help="end-to-end runs of each, alternating")
    args = p.parse_args()

    from circuitkit.models import load_model
    from sae_training.activations.model_source import activations
    from sae_training.activations.text import context_batches
    from sae_training.evaluate import evaluate
    from sae_training.store import load_dictionary

    model = load_model(args.model, device=args.device)
    n_ctx = args.tokens // (args.context - 1) + 64
    tokens = next(context_batches(model.tokenizer, "builtin", args.context, n_ctx, "train", 0))
    acts = torch.cat(
        [activations(model, tokens[i : i + 64], [args.hook])[args.hook] for i in range(0, 256, 64)]
    )

    ours_sps, theirs_sps = step_only(args, acts)
    print(
        f"SAE step only ({args.device}, d_in {acts.shape[1]}, width {args.width}, k {args.k}, batch "
        f"{args.batch}):"
    )
    print(
        f"  ours {ours_sps:,.0f} tok/s   sae-lens {theirs_sps:,.0f} tok/s   "
        f"ratio {ours_sps / theirs_sps:.2f}x",
        flush=True,
    )
    # The LM forward both trainers share: TransformerLens's run_with_cache (what sae-lens calls) against
    # our lean forward (what our trainer calls), on the same contexts.
    lm = tokens[: args.lm_batch]
    for name, lean in (("transformer_lens run_with_cache", False), ("ours (lean forward)", True)):
        activations(model, lm, [args.hook], lean=lean)
        t = time.perf_counter()
        for _ in range(10):
            activations(model, lm, [args.hook], lean=lean)
        dt = (time.perf_counter() - t) / 10
        print(
            f"LM forward to {args.hook}, {lm.shape[0]} contexts: {name} {lm[:, 1:].numel() / dt:,.0f} tok/s"
        )
    if args.skip_end_to_end:
        return
    from datasets import Dataset

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # Both trainers read the same pre-tokenized contexts (BOS first), as a datasets folder.
        ds = Dataset.from_dict({"input_ids": tokens.tolist()})
        ds.save_to_disk(str(tmp / "tokens"))
        # Runs alternate (ours, sae-lens, ours, ...) so machine-load drift hits both; the best of each is
        # the least noisy estimate of what the code costs.
        t_ours, t_theirs = [], []
        for r in range(args.repeats):
            t_ours.append(ours_run(model, tmp / "tokens", args, tmp / f"ours{r}"))
            print(f"end to end, {args.tokens:,} tokens, run {r + 1}: ours {t_ours[-1]:.1f} s", flush=True)
            t_theirs.append(sae_lens_run(model, ds, args, tmp / f"saelens{r}"))
            print(f"  sae-lens {t_theirs[-1]:.1f} s   ratio {t_theirs[-1] / t_ours[-1]:.2f}x", flush=True)
        best_ours, best_theirs = min(t_ours), min(t_theirs)
        what = f"LM forward + SAE training, LM batch {args.lm_batch}"
        print(f"end to end, {args.tokens:,} tokens ({what}), best of {args.repeats}:")
        ours_rate, theirs_rate = args.tokens / best_ours, args.tokens / best_theirs
        ratio = best_theirs / best_ours
        print(f"  ours {ours_rate:,.0f} tok/s   sae-lens {theirs_rate:,.0f} tok/s   ratio {ratio:.2f}x")
        eval_tokens = next(context_batches(model.tokenizer, "builtin", args.context, 128, "eval", 0))
        saelens_dir = next(p.parent for p in (tmp / "saelens0").rglob("cfg.json"))
        for name, path in (("ours", tmp / "ours0"), ("sae-lens", saelens_dir)):
            sae = load_dictionary(path, device=args.device)
            if not sae.cfg.metadata.get("hook_name"):
                sae.cfg.metadata.hook_name = args.hook
            r = evaluate(sae, model, eval_tokens, batch_size=32)
            print(
                f"  {name:9s} held-out FVU {r.fvu:.4f}  L0 {r.l0:.1f}  CE-loss recovered "
                f"{r.ce_loss_recovered:.4f}  "
                f"dead {r.dead_fraction:.3f}"
            )


if __name__ == "__main__":
    main()
