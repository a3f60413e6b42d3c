"""Execute the analyses notebooks from their jupytext sources and write the executed ``.ipynb``.

    python analyses/run.py                  # full mode, both notebooks -> analyses/*.ipynb
    python analyses/run.py ioi --fast       # one notebook, CI settings
    python analyses/run.py --set MODEL='"tiny"' --out /tmp/nb

Parameters are injected papermill-style: a cell tagged ``injected-parameters`` right after the cell
tagged ``parameters``. A notebook whose execution raised, or that holds an error output, fails the run.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from datetime import datetime
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent
NOTEBOOKS = ("ioi", "greater_than")


def with_parameters(nb: nbformat.NotebookNode, parameters: dict) -> nbformat.NotebookNode:
    """A copy of ``nb`` with a cell assigning ``parameters`` after its ``parameters`` cell."""
    nb = nbformat.from_dict(nb)
    index = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), None)
    if index is None:
        raise ValueError("the notebook has no cell tagged 'parameters' to inject values after")
    if parameters:
        source = "# Parameters injected by analyses/run.py\n" + "".join(
            f"{key} = {value!r}\n" for key, value in parameters.items()
        )
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
        nb.cells.insert(index + 1, cell)
    return nb


def error_outputs(nb: nbformat.NotebookNode) -> list[str]:
    """``ename: evalue`` of every error output in an executed notebook."""
    return [
        f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]


def execute(
    name: str, parameters: dict | None = None, *, timeout: int = 3600, failed_to: Path | None = None
) -> tuple[nbformat.NotebookNode, float]:
    """Run ``analyses/<name>.py`` as a notebook (working directory ``analyses/``); returns it and seconds."""
    if name not in NOTEBOOKS:
        raise ValueError(f"unknown notebook {name!r}; choose from {', '.join(NOTEBOOKS)}")
    nb = with_parameters(jupytext.read(HERE / f"{name}.py"), parameters or {})
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
    )
    t0 = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:
        if failed_to is not None:  # keep the partial notebook: its outputs say how far it got
            nbformat.write(nb, failed_to)
        raise RuntimeError(f"{name} failed (partial notebook: {failed_to}):\n{exc}") from exc
    seconds = time.perf_counter() - t0
    errors = error_outputs(nb)
    if errors:
        raise RuntimeError(f"{name}: error outputs: {errors}")
    return nb, seconds


def cell_seconds(nb: nbformat.NotebookNode) -> list[tuple[int, float, str]]:
    """(cell index, seconds, first line) of each executed code cell, from nbclient's timing metadata."""
    out = []
    for i, cell in enumerate(nb.cells):
        timing = cell.metadata.get("execution", {})
        start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if cell.cell_type == "code" and start and end:
            seconds = datetime.fromisoformat(end.rstrip("Z")) - datetime.fromisoformat(start.rstrip("Z"))
            out.append((i, seconds.total_seconds(), cell.source.splitlines()[0] if cell.source else ""))
    return out


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise SystemExit(f"--set value {text!r} must be a Python literal: quote strings") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", default=list(NOTEBOOKS), help="notebooks to run (default: all)")
    parser.add_argument("--fast", action="store_true", help="FAST = True (the CI settings)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a parameter, e.g. --set MODEL='\"gpt2\"' (repeatable)")  # fmt: skip
    parser.add_argument("--timings", action="store_true", help="print each cell's seconds")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the executed .ipynb")
    args = parser.parse_args(argv)
    parameters: dict = {"FAST": True} if args.fast else {}
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f"--set takes NAME=VALUE, got {item!r}")
        parameters[key.strip()] = _literal(value)
    for name in args.names:
        args.out.mkdir(parents=True, exist_ok=True)
        nb, seconds = execute(name, parameters, failed_to=args.out / f"{name}.failed.ipynb")
        path = args.out / f"{name}.ipynb"
        nbformat.write(nb, path)
        print(f"{name}: executed in {seconds:.0f} s -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
        if args.timings:
            for index, cell_s, first in cell_seconds(nb):
                print(f"  cell {index:3d} {cell_s:7.1f} s  {first[:70]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
