"""Wide dictionaries: training-step speed and peak memory of our TopK trainer against sae-lens's
``TopKTrainingSAE`` (its dense default and its ``use_sparse_activations`` option), at widths 16k-131k on
d_in 768 random activations (GPT-2-small-shaped; no model needed).

Each (implementation, width) runs in its own subprocess, so its peak resident memory (``ru_maxrss``) is
its own: it includes the Python/torch baseline (~0.3 GB), the weights, Adam's state and the step's
temporaries. Steps follow each trainer's own loop (ours: sparse step, decoder-gradient projection, fused
Adam, decoder renorm; sae-lens's SAETrainer: its step, grad-norm clipping, Adam), with 10 % of the
latents dead so both pay for AuxK. Prints one row per width with tok/s and peak GB, and the ratios.

    nice -n 10 python benchmarks/sae_wide.py --widths 16384,32768,65536,131072 --batch 1024 --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def one_run(impl: str, width: int, d_in: int, k: int, batch: int, steps: int, device: str) -> dict:
    """Train ``steps`` timed steps (after one warm-up) in this process; tok/s and peak RSS in GB."""
    import torch

    torch.manual_seed(0)
    acts = torch.randn(4 * batch, d_in, device=device)
    dead = torch.zeros(width, dtype=torch.bool, device=device)
    dead[: width // 10] = True
    if impl == "ours":
        from sae_training.architectures import StepInput
        from sae_training.architectures.topk import TopKConfig, TopKTrainer

        sae = TopKTrainer(TopKConfig(d_in=d_in, d_sae=width, k=k, device=device))
        opt = torch.optim.Adam(sae.parameters(), lr=1e-4, fused=device.split(":")[0] in ("cpu", "cuda"))

        def step(x):
            loss = sae.sparse_training_step(StepInput(x, dead)).loss
            opt.zero_grad()
            loss.backward()
            sae.remove_parallel_decoder_grad()
            opt.step()
            sae.normalize_decoder()
    else:
        from sae_lens.saes.sae import TrainStepInput
        from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

        cfg = TopKTrainingSAEConfig(
            d_in=d_in, d_sae=width, k=k, device=device, use_sparse_activations=impl == "sae-lens-sparse"
        )
        sae = TopKTrainingSAE(cfg)
        opt = torch.optim.Adam(sae.parameters(), lr=1e-4)

        def step(x):
            loss = sae.training_forward_pass(TrainStepInput(x, {}, dead, 0, False)).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
            opt.step()

    times = []
    for i in range(steps + 1):
        x = acts[torch.randint(0, acts.shape[0], (batch,))]
        t = time.perf_counter()
        step(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= 1:
            times.append(time.perf_counter() - t)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB
    return {"tok_s": batch * len(times) / sum(times), "peak_gb": peak_gb}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", default="16384,32768,65536,131072")
    p.add_argument("--d-in", type=int, default=768)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--impls", default="ours,sae-lens-dense,sae-lens-sparse")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        impl, width = args.child.split(":")
        res = one_run(impl, int(width), args.d_in, args.k, args.batch, args.steps, args.device)
        print(json.dumps(res))
        return

    import torch

    print(f"d_in {args.d_in}, k {args.k}, batch {args.batch}, {args.steps} timed steps, {args.device}, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    impls = args.impls.split(",")
    print(f"{'width':>7} " + " ".join(f"{i + ' tok/s':>22} {i + ' GB':>19}" for i in impls))
    for width in map(int, args.widths.split(",")):
        row: dict[str, dict] = {}
        for impl in impls:
            cmd = [sys.executable, __file__, "--child", f"{impl}:{width}", "--d-in", str(args.d_in),
                   "--k", str(args.k), "--batch", str(args.batch), "--steps", str(args.steps),
                   "--device", args.device]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
            if proc.returncode != 0:
                row[impl] = {"tok_s": float("nan"), "peak_gb": float("nan")}
                errors = [line for line in proc.stderr.splitlines() if "Error" in line.split(":")[0]]
                print(f"  {impl} at {width} failed: {(errors or ['?'])[-1][:160]}", flush=True)
                continue
            row[impl] = json.loads(proc.stdout.strip().splitlines()[-1])
        cells = " ".join(f"{row[i]['tok_s']:>22.0f} {row[i]['peak_gb']:>19.2f}" for i in impls)
        print(f"{width:>7} {cells}", flush=True)
        ours = row.get("ours")
        for other in impls[1:]:
            if ours and other in row:
                print(f"        ours / {other}: tok/s x{ours['tok_s'] / row[other]['tok_s']:.2f}, "
                      f"peak memory x{ours['peak_gb'] / row[other]['peak_gb']:.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
