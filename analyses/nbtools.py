"""Notebook plumbing for the analyses: how figures reach a reader offline, and stopping a notebook cleanly.

Figures: the committed ``.ipynb`` must show its plots without a kernel and without the internet. Where
kaleido can drive a Chromium (Debian's ``chromium``; ``BROWSER_PATH`` may point at it), every figure is
embedded as a static PNG (a few tens of KB each). Elsewhere plotly's ``notebook`` renderer is used, which
inlines plotly.js (~4.6 MB) once per notebook and keeps the figures interactive.

No science lives here: the notebooks call circuitkit for every number.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from typing import Literal

import plotly.graph_objects as go
import plotly.io as pio

FigureMode = Literal["auto", "png", "html", "none"]

_MODE: str = "none"
_STOPPED = False
_SOLVES = True


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


def _chromium() -> str | None:
    for candidate in (os.environ.get("BROWSER_PATH"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate) or (os.path.isfile(candidate) and candidate)):
            return found
    return None


def setup_figures(mode: FigureMode = "auto") -> str:
    """Choose how ``show`` embeds figures and return the choice (``png``, ``html`` or ``none``).

    ``auto``: static PNG when kaleido finds a Chromium, else the ``notebook`` renderer; outside a notebook
    (``python analyses/ioi.py``) figures are built but not drawn.
    """
    global _MODE
    if mode not in ("auto", "png", "html", "none"):
        raise ValueError(f"figure mode must be auto, png, html or none, got {mode!r}")
    if mode == "auto":
        mode = "none" if not _in_notebook() else ("png" if _chromium() else "html")
    if mode == "png":
        browser = _chromium()
        if browser is None:
            raise RuntimeError(
                "PNG figures need a Chromium for kaleido: install Debian's chromium "
                "(bash scripts/system-deps.sh) or set BROWSER_PATH, or use FIGURES='html'"
            )
        os.environ.setdefault("BROWSER_PATH", browser)
        import kaleido

        # One browser for the whole notebook: without the server kaleido starts Chromium per figure (~3 s).
        with contextlib.suppress(RuntimeError):  # already running: the cell was re-run
            kaleido.start_sync_server(silence_warnings=True)
    elif mode == "html":
        pio.renderers.default = "notebook"
    _MODE = mode
    return mode


def show(fig: go.Figure, *, width: int = 900, height: int | None = None) -> None:
    """Draw ``fig`` the way ``setup_figures`` chose."""
    if _MODE == "none":
        return
    if _MODE == "png":
        import warnings

        from IPython.display import Image, display

        from circuitkit.viz import figure_to_png

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # kaleido: "kopts ignored if using a server"
            png = figure_to_png(fig, width=width, height=height or fig.layout.height or 450, scale=1)
        display(Image(png, width=width))
        return
    fig.update_layout(width=width, height=height or fig.layout.height)
    fig.show()


def stop_notebook(reason: str) -> None:
    """Print ``reason`` and stop here, without an error: later cells run as empty cells in a notebook,
    and a script exits with status 0."""
    global _STOPPED
    print(reason)
    print("The rest of this notebook is skipped.")
    if not _in_notebook():
        sys.exit(0)
    if _STOPPED:
        return
    from IPython import get_ipython

    # Every later cell becomes empty: the executed notebook ends cleanly with no error outputs.
    get_ipython().input_transformers_post.append(lambda lines: [])
    _STOPPED = True


def check(condition: bool, claim: str) -> None:
    """An assertion on a measured number that prints what it checked, so the executed notebook says so."""
    if not condition:
        raise AssertionError(f"FAILED: {claim}")
    print(f"ok: {claim}")


def competence(claims: dict[str, bool]) -> bool:
    """Whether the model does the task, from the notebook's baseline claims (claim -> held). Prints each
    claim; when one fails, says that the checks of competence below (:func:`check_skill`) are skipped.

    A model that does not do the task (GPT-2's random-weight stand-in, a model being trained) still runs
    every step and every check that holds for any model; only floors that presuppose the behaviour are
    skipped, each with a line saying so."""
    global _SOLVES
    for claim, held in claims.items():
        print(f"{'ok' if held else 'not met'}: {claim}")
    _SOLVES = all(claims.values())
    if not _SOLVES:
        print(
            "skip: the model does not solve the task, so the checks that presuppose it (ground-truth "
            "recall, correlation and faithfulness floors) are skipped below; every other check runs"
        )
    return _SOLVES


def check_skill(condition: bool, claim: str) -> None:
    """:func:`check` for a claim that holds only for a model that does the task; skipped, visibly, when
    :func:`competence` said it does not."""
    if not _SOLVES:
        print(f"skipped (the model does not solve the task): {claim}")
        return
    check(condition, claim)


_PLANTED = False


def planted_model(planted: bool) -> None:
    """Say whether the model's ground truth is planted (Strict IIT). Method-agreement floors (a method's
    correlation with activation patching) were set on naturally trained models, where many components
    carry a share of the task; on a planted circuit nearly every component is exactly 0 and the two or
    three live ones are AND gates, so agreement is what the run measures: see :func:`check_agreement`."""
    global _PLANTED
    _PLANTED = planted
    if planted:
        print("planted ground truth: method-agreement floors are reported as findings, not asserted")


def check_agreement(condition: bool, claim: str) -> None:
    """:func:`check_skill` for agreement between methods; on a planted model a miss is printed as a
    finding (with its number) instead of failing the notebook."""
    if _PLANTED and _SOLVES and not condition:
        print(f"finding (planted model, floor not asserted): not {claim}")
        return
    check_skill(condition, claim)
