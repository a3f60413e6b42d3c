"""Launched by test_distributed.py under torchrun (2 gloo processes): argv cache_dir out_root.

1. Sharding: the on-the-fly source, with activations replaced by (context fingerprint, position) rows,
   serves each rank's batches; they are saved for the parent to compare with one process's.
2. DDP training on the cache for topk, mutual_choice and feature_choice.
3. Kill and resume: a topk run stopped at step 7, then resumed to the end.
"""

import sys
from pathlib import Path

import torch

from sae_training.trainer import train

if __name__ == "__main__":
    torch.set_num_threads(1)
    cache_dir, out_root = sys.argv[1], Path(sys.argv[2])
    from sae_training.distributed import init_distributed
    from tests.sae_training.test_distributed import ddp_config, served_rows

    info = init_distributed(torch.device("cpu"))
    torch.save(served_rows(info), out_root / f"served_rank{info.rank}.pt")
    for arch in ("topk", "mutual_choice", "feature_choice"):
        train(ddp_config(cache_dir, out_root / arch, architecture=arch))
    train(ddp_config(cache_dir, out_root / "resume"), stop_after_steps=7)
    train(ddp_config(cache_dir, out_root / "resume", resume=True))
