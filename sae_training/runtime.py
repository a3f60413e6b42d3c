"""Process-level settings for training on the CPU."""

from __future__ import annotations

import ctypes
import sys
from functools import cache

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


@cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks for reuse instead of handing them back to the OS.

    Every training step frees and reallocates the same multi-MB tensors (LM activations, QKV, MLP
    hidden states, the [batch, width] pre-activations). Past glibc's dynamic mmap threshold each one is
    an mmap + munmap, so every step page-faults and zero-fills its memory afresh; on the 2-core CPU box
    that was ~10 % of a TopK run's wall time (benchmarks/sae_topk_vs_saelens.py: 40-42 s -> 37-38 s over
    three paired runs). Blocks below 32 MiB now come from the heap, and up to 1 GiB of free heap is kept.
    Process-wide and idempotent; a no-op (False) off Linux/glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl or another libc: leave its allocator alone
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
