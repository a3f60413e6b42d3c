"""Typed results with provenance: one tidy table per method run, saved as parquet + JSON.

Every discovery method returns a :class:`ResultTable`: a pandas frame with one row per component
(``family, layer, head, pos, component, score``, plus any extra columns a method adds, e.g. ``sender`` /
``receiver`` for edges or ``dictionary`` / ``latent`` for feature nodes) and a :class:`Provenance` saying
how the numbers were obtained. The provenance is built once, from the request, by
:func:`circuitkit.methods.run_method`; its :meth:`Provenance.key` is what the app looks results up by.
The CLI writes them, the app and the notebooks read them, so nobody recomputes anything.

On disk a result named ``NAME`` is two files in one folder: ``NAME.parquet`` (the table) and
``NAME.json`` (provenance and the baselines). Both are written atomically (temporary file, then
``os.replace``) so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from circuitkit.components import component_label, get_family

COLUMNS = ("family", "layer", "head", "pos", "component", "score")


@dataclass
class Provenance:
    """How a table of scores was obtained. A number without its provenance is not a result."""

    model: str
    """Resolved model name (``ck-tiny`` even when the user typed the alias ``tiny``; ``gpt2``; a path)."""
    task: str
    """Task name (``ioi``, ``greater_than``) or ``custom``."""
    method: str
    """Method key in :mod:`circuitkit.methods` (``activation``, ``atp``, ``atp*``, ``relp``, ``ig`` ...)."""
    metric: str
    """What the score measures (``logit_diff``, ``prob_diff``)."""
    ablation: str = "patch"
    """What replaced the activation: ``patch`` (the other run), ``zero``, ``mean`` or ``resample``."""
    direction: str = "denoising"
    """``denoising`` (corrupted run, clean values patched in) or ``noising`` (the reverse)."""
    n_prompts: int = 0
    """Number of prompt pairs the scores average over."""
    seed: int = 0
    """Seed of the prompts (and of resampling)."""
    score_kind: str = "effect"
    """``effect``: change of the metric from the target run's (exact or estimated); ``metric``: the
    patched metric itself; ``magnitude``: an unsigned importance (AtP* GradDrop)."""
    passes: float = 0.0
    """Forward + backward passes over the batch spent (a backward counts as one pass)."""
    seconds: float = 0.0
    """Wall-clock seconds spent computing the scores."""
    split: str = "heldout"
    """Task split the prompts were drawn from."""
    options: dict[str, Any] = field(default_factory=dict)
    """Every declared option of the method with the value used (defaults filled in), JSON-able."""
    baseline_target: float | None = None
    """Metric of the unpatched target run (the corrupted run when denoising); None when not measured."""
    baseline_source: float | None = None
    """Metric of the unpatched source run (the clean run when denoising); None when not measured."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else a method records to reproduce the run (dictionaries used, code-book settings)."""

    def key(self) -> tuple:
        """What identifies a result (everything but cost and seed-free details): two results with equal
        keys answer the same question. ``options`` enter as sorted JSON so the key is hashable."""
        return (
            self.model,
            self.task,
            self.split,
            self.method,
            self.direction,
            self.ablation,
            self.n_prompts,
            self.seed,
            json.dumps(self.options, sort_keys=True, default=_json_default),
        )


@dataclass
class ResultTable:
    """A tidy table of component scores with provenance."""

    table: pd.DataFrame
    provenance: Provenance

    @property
    def families(self) -> list[str]:
        return list(dict.fromkeys(self.table["family"]))

    def family(self, name: str) -> pd.DataFrame:
        return self.table[self.table["family"] == name]

    def grid(self, family: str, value: str = "score") -> Tensor:
        """The scores of one family back as a grid shaped by the family's ``dims`` (NaN where absent)."""
        return to_grid(self.table, family, value)

    def top(self, k: int, family: str | None = None, by_abs: bool = True) -> pd.DataFrame:
        df = self.table if family is None else self.family(family)
        key = df["score"].abs() if by_abs else df["score"]
        return df.loc[key.sort_values(ascending=False).index[:k]]

    def __add__(self, other: ResultTable) -> ResultTable:
        """Concatenate the tables of two runs of the same method (different families)."""
        return ResultTable(pd.concat([self.table, other.table], ignore_index=True), self.provenance)


def grid_to_frame(scores: Tensor, family: str) -> pd.DataFrame:
    """A score grid of one family -> tidy rows (``family, layer, head, pos, component, score``)."""
    fam = get_family(family)
    if scores.ndim != len(fam.dims):
        raise ValueError(f"a {family} grid has axes {fam.dims}; got a tensor of shape {tuple(scores.shape)}")
    idx = torch.cartesian_prod(*[torch.arange(n) for n in scores.shape]).reshape(-1, scores.ndim)
    cols = {d: idx[:, i].tolist() for i, d in enumerate(fam.dims)}
    n = idx.shape[0]
    layer = cols["layer"]
    head = cols.get("head", [None] * n)
    pos = cols.get("pos", [None] * n)
    df = pd.DataFrame(
        {
            "family": [family] * n,
            "layer": pd.array(layer, dtype="Int64"),
            "head": pd.array(head, dtype="Int64"),
            "pos": pd.array(pos, dtype="Int64"),
            "component": [component_label(family, a, b, c) for a, b, c in zip(layer, head, pos, strict=True)],
            "score": scores.detach().double().cpu().reshape(-1).numpy(),
        }
    )
    return df


def to_grid(table: pd.DataFrame, family: str, value: str = "score") -> Tensor:
    """Rows of one family -> a float64 grid shaped by the family's ``dims`` (NaN where a row is missing)."""
    fam = get_family(family)
    df = table[table["family"] == family]
    if df.empty:
        have = sorted(set(table["family"])) if "family" in table else []
        raise ValueError(f"no rows of family {family!r} in this table; it has {have}")
    shape = tuple(int(df[d].max()) + 1 for d in fam.dims)
    grid = torch.full(shape, float("nan"), dtype=torch.float64)
    index = tuple(torch.tensor(df[d].astype(int).to_numpy()) for d in fam.dims)
    grid[index] = torch.tensor(df[value].to_numpy(dtype="float64"))
    return grid


def from_grids(grids: dict[str, Tensor], provenance: Provenance) -> ResultTable:
    """Grids keyed by family -> one :class:`ResultTable`."""
    frames = [grid_to_frame(g, fam) for fam, g in grids.items()]
    return ResultTable(pd.concat(frames, ignore_index=True), provenance)


def _atomic_write(path: Path, write: Callable[[str], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save(result: ResultTable, folder: str | Path, name: str) -> Path:
    """Write ``folder/name.parquet`` and ``folder/name.json``; returns the parquet path."""
    folder = Path(folder)
    pq = folder / f"{name}.parquet"
    meta = {"provenance": asdict(result.provenance), "saved_at": _now()}
    _atomic_write(pq, lambda p: result.table.to_parquet(p, index=False))

    def write_json(p: str) -> None:
        with open(p, "w") as f:
            json.dump(meta, f, indent=2, default=_json_default)

    _atomic_write(folder / f"{name}.json", write_json)
    return pq


def _json_default(obj: object) -> object:
    if isinstance(obj, Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} in a result's JSON provenance")


def load(path: str | Path) -> ResultTable:
    """Read a result from ``NAME.parquet`` / ``NAME.json`` (either path, or the stem)."""
    stem = _stem(path)
    pq, js = stem.parent / f"{stem.name}.parquet", stem.parent / f"{stem.name}.json"
    for p in (pq, js):
        if not p.exists():
            raise FileNotFoundError(f"result file {p} is missing; a result is NAME.parquet plus NAME.json")
    table = pd.read_parquet(pq)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{pq} is not a circuitkit result table: columns {missing} are missing")
    with open(js) as f:
        meta = json.load(f)
    return ResultTable(table, provenance_from_dict(meta.get("provenance"), js))


def provenance_from_dict(raw: object, where: str | Path = "provenance") -> Provenance:
    """A stored provenance dict -> :class:`Provenance`. Files written before options and baselines
    were typed fields kept them in ``extra``; they are moved to their fields here."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} holds no 'provenance' object; it is not a circuitkit result")
    raw = dict(raw)
    extra = dict(raw.get("extra") or {})
    if "options" not in raw and isinstance(extra.get("options"), dict):
        raw["options"] = extra.pop("options")
    for k in ("baseline_target", "baseline_source"):
        if k not in raw and k in extra:
            raw[k] = extra.pop(k)
    raw["extra"] = extra
    names = {f.name for f in fields(Provenance)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f"{where}: unknown provenance field(s) {unknown}; written by a newer circuitkit?")
    missing = [n for n in ("model", "task", "method", "metric") if n not in raw]
    if missing:
        raise ValueError(f"{where}: provenance lacks {missing}")
    return Provenance(**raw)


def list_results(folder: str | Path) -> Iterable[Path]:
    """Result stems in a folder (each with both files present), sorted by name."""
    folder = Path(folder)
    return sorted(p.with_suffix("") for p in folder.glob("*.parquet") if p.with_suffix(".json").exists())


def save_frame(frame: pd.DataFrame, meta: dict, folder: str | Path, name: str) -> Path:
    """Write any summary table (correlations, curves) as ``name.parquet`` + ``name.json``, atomically."""
    folder = Path(folder)
    pq = folder / f"{name}.parquet"
    _atomic_write(pq, lambda p: frame.to_parquet(p, index=False))

    def write_json(p: str) -> None:
        with open(p, "w") as f:
            json.dump({"meta": meta, "saved_at": _now()}, f, indent=2, default=_json_default)

    _atomic_write(folder / f"{name}.json", write_json)
    return pq


def load_frame(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Read a summary table written by :func:`save_frame`: (frame, meta)."""
    stem = _stem(path)
    with open(stem.parent / f"{stem.name}.json") as f:
        meta = json.load(f)
    return pd.read_parquet(stem.parent / f"{stem.name}.parquet"), meta.get("meta", {})


def _stem(path: str | Path) -> Path:
    """``NAME`` from ``NAME``, ``NAME.parquet`` or ``NAME.json``; names may hold dots (dictionary ids and
    sae-lens SAE ids do: ``blocks.0.hook_resid_pre``), so only those two suffixes are cut."""
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".parquet", ".json") else path


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
