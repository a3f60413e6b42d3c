"""Launched by test_distributed.py under torchrun: one DDP training run on a cache (argv: cache_dir
out_dir)."""

import sys

import torch

from sae_training.trainer import train

if __name__ == "__main__":
    torch.set_num_threads(1)
    cache_dir, out_dir = sys.argv[1], sys.argv[2]
    from tests.sae_training.test_distributed import ddp_config

    train(ddp_config(cache_dir, out_dir))
