"""Display helpers: every figure with PNG / HTML downloads, every table with a CSV download.

Downloads are deferred callables, so nothing is rendered until a user asks. PNG comes from kaleido,
which drives the local Chromium; without one the PNG button is replaced by a note (the figure's own
toolbar camera still saves a PNG in the browser, offline).
"""

from __future__ import annotations

import re
import shutil
import traceback

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from circuitkit.viz import figure_to_html, figure_to_png

PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "figure"


def png_available() -> bool:
    return any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "chrome"))


def figure(fig: go.Figure, name: str, *, key: str | None = None, selectable: bool = False):
    """Draw a figure with download buttons; returns the selection state when ``selectable``."""
    key = key or _slug(name)
    fig.update_layout(template="plotly_white")
    event = st.plotly_chart(
        fig,
        config=PLOTLY_CONFIG,
        key=f"chart_{key}",
        on_select="rerun" if selectable else "ignore",
        selection_mode=("points",) if selectable else ("points", "box", "lasso"),
    )
    c1, c2, _ = st.columns([1, 1, 4])
    c1.download_button(
        "HTML",
        data=lambda: figure_to_html(fig),
        file_name=f"{_slug(name)}.html",
        mime="text/html",
        key=f"html_{key}",
        on_click="ignore",
        icon=":material/download:",
    )
    if png_available():
        c2.download_button(
            "PNG",
            data=lambda: figure_to_png(fig),
            file_name=f"{_slug(name)}.png",
            mime="image/png",
            key=f"png_{key}",
            on_click="ignore",
            icon=":material/download:",
        )
    else:
        c2.caption("PNG: toolbar camera (no Chromium for server-side PNG)")
    return event


def table(df: pd.DataFrame, name: str, *, key: str | None = None, **kwargs) -> None:
    """Draw a table with a CSV download button."""
    key = key or _slug(name)
    st.dataframe(df, hide_index=True, key=f"df_{key}", **kwargs)
    st.download_button(
        "CSV",
        data=df.to_csv(index=False).encode(),
        file_name=f"{_slug(name)}.csv",
        mime="text/csv",
        key=f"csv_{key}",
        on_click="ignore",
        icon=":material/download:",
    )


def fail(what: str, exc: BaseException, fix: str = "") -> None:
    """An inline error that says what failed and what to do, with the traceback in a closed expander
    (a user error's message is the whole story; anything else is a bug to report with the detail)."""
    msg = f"**{what}**: {exc}" if str(exc) else f"**{what}**: {type(exc).__name__}"
    if fix:
        msg += f"\n\n{fix}"
    st.error(msg, icon=":material/error:")
    with st.expander("Detail"):
        st.code("".join(traceback.format_exception(exc)), language=None)
