"""Sharded, memory-mapped disk cache of activations (written by ``python -m sae_training cache``).

Layout of a cache folder::

    meta.json                                   model, hooks, widths, shards, dtype, text source
    shard_00000.<hook>.npy                      [n, d] activations (.npy, opened with mmap)
    shard_00000.<hook>.grad.npy                 [n, d] dL/d(activation), with --with-gradients

Reading is deterministic: epoch e visits the shards in a seeded order and each shard's rows in a seeded
permutation; batch i is rows [i*B, (i+1)*B) of that virtual sequence, and a DDP process takes rows
``rank::world`` of it. The position (epoch, offset) is all a resumed run needs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformer_lens import HookedTransformer

from sae_training.activations.model_source import activations, activations_with_gradients, check_hook
from sae_training.activations.source import Batch
from sae_training.activations.text import context_batches
from sae_training.config import CacheConfig, ConfigError
from sae_training.runtime import keep_freed_memory

META = "meta.json"


def _file(root: Path, shard: int, hook: str, grad: bool = False) -> Path:
    return root / f"shard_{shard:05d}.{hook}{'.grad' if grad else ''}.npy"


def write_cache(cfg: CacheConfig, model: HookedTransformer, model_name: str) -> Path:
    """Run ``model`` over the text and write ``cfg.n_tokens`` rows per hook to ``cfg.out_dir``."""
    cfg.validate()
    for h in cfg.hooks:
        check_hook(model, h)
    if model.cfg.device is None or str(model.cfg.device).startswith("cpu"):
        keep_freed_memory()
    root = Path(cfg.out_dir)
    root.mkdir(parents=True, exist_ok=True)
    storage = np.float16 if cfg.storage_dtype == "float16" else np.float32
    contexts = context_batches(
        model.tokenizer, cfg.text, cfg.context_size, cfg.model_batch_size, "train", cfg.seed, cfg.text_column
    )
    shards: list[int] = []
    widths: dict[str, int] = {}
    written, shard, fill = 0, 0, 0
    files: dict[str, np.memmap] = {}
    bar = tqdm(total=cfg.n_tokens, unit="tok", disable=not cfg.progress, desc="cache")

    def open_shard(n: int) -> None:
        files.clear()
        for h in cfg.hooks:
            files[h] = np.lib.format.open_memmap(
                _file(root, shard, h), mode="w+", dtype=storage, shape=(n, widths[h])
            )
            if cfg.with_gradients:
                files[h + ".grad"] = np.lib.format.open_memmap(
                    _file(root, shard, h, grad=True), mode="w+", dtype=storage, shape=(n, widths[h])
                )

    while written < cfg.n_tokens:
        tokens = next(contexts)
        if cfg.with_gradients:
            acts, grads = activations_with_gradients(model, tokens, cfg.hooks, lean=cfg.lean_forward)
        else:
            acts, grads = activations(model, tokens, cfg.hooks, lean=cfg.lean_forward), {}
        if not widths:
            widths = {h: int(a.shape[1]) for h, a in acts.items()}
        n_new = next(iter(acts.values())).shape[0]
        start = 0
        while start < n_new and written < cfg.n_tokens:
            if fill == 0:
                open_shard(min(cfg.shard_tokens, cfg.n_tokens - written))
            room = next(iter(files.values())).shape[0] - fill
            take = min(room, n_new - start)
            for h in cfg.hooks:
                files[h][fill : fill + take] = acts[h][start : start + take].cpu().numpy()
                if cfg.with_gradients:
                    files[h + ".grad"][fill : fill + take] = grads[h][start : start + take].cpu().numpy()
            fill, start, written = fill + take, start + take, written + take
            bar.update(take)
            if fill == next(iter(files.values())).shape[0]:
                for f in files.values():
                    f.flush()
                shards.append(fill)
                shard, fill = shard + 1, 0
    bar.close()
    meta = {
        "model": model_name,
        "hooks": cfg.hooks,
        "widths": widths,
        "n_heads": model.cfg.n_heads,
        "shard_sizes": shards,
        "n_tokens": written,
        "storage_dtype": cfg.storage_dtype,
        "with_gradients": cfg.with_gradients,
        "context_size": cfg.context_size,
        "text": cfg.text,
        "seed": cfg.seed,
    }
    (root / META).write_text(json.dumps(meta, indent=2))
    return root


def read_meta(cache_dir: str | Path) -> dict[str, Any]:
    path = Path(cache_dir) / META
    if not path.is_file():
        raise ConfigError(
            f"{cache_dir} is not an activation cache (no {META}); write one with `python -m "
            "sae_training cache`"
        )
    return json.loads(path.read_text())


class CachedActivations:
    """Batches read from a disk cache (see module docstring for the order)."""

    def __init__(
        self,
        cache_dir: str | Path,
        hook: str,
        *,
        target_hook: str | None = None,
        head_index: int | None = None,
        with_gradients: bool = False,
        batch_size: int = 4096,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.root = Path(cache_dir)
        self.meta = read_meta(cache_dir)
        for h in [hook] + ([target_hook] if target_hook else []):
            if h not in self.meta["hooks"]:
                raise ConfigError(
                    f"cache {cache_dir} holds hooks {self.meta['hooks']}, not {h!r}: re-run `cache` "
                    "with --hooks including it"
                )
        if with_gradients and not self.meta["with_gradients"]:
            raise ConfigError(
                f"g-SAE needs gradients but cache {cache_dir} has none: re-run `cache` with "
                "--with-gradients true"
            )
        if self.meta["n_tokens"] < batch_size:
            raise ConfigError(
                f"cache {cache_dir} has {self.meta['n_tokens']} tokens, fewer than one batch ({batch_size})"
            )
        self.hook, self.target_hook, self.head_index, self.with_gradients = (
            hook,
            target_hook,
            head_index,
            with_gradients,
        )
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.device, self.dtype = torch.device(device), dtype
        self.sizes: list[int] = self.meta["shard_sizes"]
        self.epoch, self.offset = 0, 0
        self._loaded: tuple[int, int] | None = None
        self._shard_data: dict[str, np.ndarray] = {}

    def _columns(self, hook: str) -> slice:
        width = self.meta["widths"][hook]
        if self.head_index is None or hook != self.hook:
            return slice(0, width)
        d_head = width // self.meta["n_heads"]
        return slice(self.head_index * d_head, (self.head_index + 1) * d_head)

    @property
    def d_in(self) -> int:
        s = self._columns(self.hook)
        return s.stop - s.start

    @property
    def d_out(self) -> int:
        return self.meta["widths"][self.target_hook] if self.target_hook else self.d_in

    def _order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.sizes), generator=g).tolist()

    def _shard_rows(self, epoch: int, shard: int) -> dict[str, np.ndarray]:
        if self._loaded != (epoch, shard):
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 7919 + shard)
            perm = torch.randperm(self.sizes[shard], generator=g).numpy()
            data = {
                "x": np.load(_file(self.root, shard, self.hook), mmap_mode="r")[:, self._columns(self.hook)][
                    perm
                ]
            }
            if self.target_hook:
                data["target"] = np.load(_file(self.root, shard, self.target_hook), mmap_mode="r")[perm]
            if self.with_gradients:
                data["grad"] = np.load(_file(self.root, shard, self.hook, grad=True), mmap_mode="r")[
                    :, self._columns(self.hook)
                ][perm]
            self._shard_data, self._loaded = data, (epoch, shard)
        return self._shard_data

    def _global_rows(self) -> dict[str, list[np.ndarray]]:
        """The next global batch as pieces, advancing (epoch, offset); an epoch's tail shorter than a
        batch is dropped."""
        total = sum(self.sizes)
        if self.offset + self.batch_size > total:
            self.epoch, self.offset = self.epoch + 1, 0
        order = self._order(self.epoch)
        pieces: dict[str, list[np.ndarray]] = {}
        need, pos, start = self.batch_size, 0, self.offset
        for shard in order:
            size = self.sizes[shard]
            if pos + size <= start:
                pos += size
                continue
            lo = start - pos
            take = min(size - lo, need)
            for k, v in self._shard_rows(self.epoch, shard).items():
                pieces.setdefault(k, []).append(v[lo : lo + take])
            need, start, pos = need - take, start + take, pos + size
            if need == 0:
                break
        self.offset += self.batch_size
        return pieces

    def next_batch(self) -> Batch:
        pieces = self._global_rows()
        out = {}
        for k, parts in pieces.items():
            rows = np.concatenate(parts)[self.rank :: self.world_size]
            out[k] = torch.from_numpy(np.ascontiguousarray(rows)).to(device=self.device, dtype=self.dtype)
        return Batch(out["x"], out.get("target"), out.get("grad"))

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.offset = state["epoch"], state["offset"]
