"""Exact activation patching against transformer_lens.patching on a GPT-2-small-shaped model, per family.

    python benchmarks/patching_gpt2_speed.py --n-prompts 8 --seq-len 16 --threads 1

A random-weight HookedTransformer with GPT-2 small's dimensions (12 layers, 12 heads, d_model 768,
d_mlp 3072, vocabulary 50257, learned positions, LayerNorm, GELU) needs no download. The prompts are
IOI-shaped: clean and corrupted share their first tokens and differ at two positions (one of them the
one before last, as IOI's second subject is), and the metric is a logit difference at the last position
marked with ``last_position_metric`` as every task metric is. Prints, per family: seconds for
transformer_lens.patching and for circuitkit on the same inputs in one process, the ratio and the largest
difference; then AtP for every family at once (passes and seconds).
"""

from __future__ import annotations

import argparse
import time

import torch
import transformer_lens.patching as tlp
from transformer_lens import HookedTransformer, HookedTransformerConfig

from circuitkit.patching.activation import activation_patching
from circuitkit.patching.attribution import attribution_patching
from circuitkit.patching.common import last_position_metric

TL = {
    "head": tlp.get_act_patch_attn_head_out_all_pos,
    "resid_pre": tlp.get_act_patch_resid_pre,
    "attn_out": tlp.get_act_patch_attn_out,
    "mlp_out": tlp.get_act_patch_mlp_out,
    "head_pos": tlp.get_act_patch_attn_head_out_by_pos,
}


def gpt2_shaped(seed: int = 0) -> HookedTransformer:
    cfg = HookedTransformerConfig(
        n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257, n_ctx=1024,
        act_fn="gelu_new", normalization_type="LN", seed=seed, device="cpu",
    )  # fmt: skip
    return HookedTransformer(cfg).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-prompts", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=16)
    ap.add_argument("--families", default=",".join(TL))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    tlp.tqdm = lambda it, **kw: it  # its progress bar would swamp the table
    model = gpt2_shaped()
    g = torch.Generator().manual_seed(0)
    batch, seq = args.n_prompts, args.seq_len
    clean = torch.randint(0, 50257, (batch, seq), generator=g)
    corrupted = clean.clone()
    corrupted[:, [seq // 2, seq - 2]] = torch.randint(0, 50257, (batch, 2), generator=g)
    answer, wrong = torch.randint(0, 50257, (2, batch), generator=g)

    @last_position_metric
    def metric(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1]
        return (last.gather(1, answer[:, None]) - last.gather(1, wrong[:, None])).mean()

    fams = args.families.split(",")
    print(f"GPT-2-shaped random model, {batch} prompts x {seq} tokens, {args.threads} thread(s)")
    print("| family | transformer_lens s | circuitkit s | ratio | max \\|diff\\| |\n|---|---|---|---|---|")
    for fam in fams:
        t0 = time.perf_counter()
        _, cache = model.run_with_cache(clean)
        ref = TL[fam](model, corrupted, cache, metric)
        t_tl = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = activation_patching(model, clean, corrupted, metric, fam)
        t_ours = time.perf_counter() - t0
        diff = (ours.scores.float() - ref.float()).abs().max().item()
        print(f"| {fam} | {t_tl:.1f} | {t_ours:.1f} | {t_tl / t_ours:.1f}x | {diff:.1e} |", flush=True)
    t0 = time.perf_counter()
    r = attribution_patching(model, clean, corrupted, metric, fams)
    print(f"AtP, all {len(fams)} families at once: {r.passes:g} passes, {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
