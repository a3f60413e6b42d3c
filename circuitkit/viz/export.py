"""Figure export for downloads: standalone HTML with plotly.js inlined (works offline), PNG via kaleido.

Kaleido 1.x renders through a local Chrome/Chromium (found on PATH); where none exists, PNG export is
unavailable and :func:`figure_to_png` says so instead of failing deep inside kaleido.
"""

from __future__ import annotations

import plotly.graph_objects as go


class PngExportError(RuntimeError):
    """PNG rendering is not possible here (no kaleido or no Chromium)."""


def figure_to_html(fig: go.Figure) -> str:
    """A standalone HTML page with plotly.js embedded (no CDN), so it opens offline."""
    return fig.to_html(include_plotlyjs=True, full_html=True)


def figure_to_png(fig: go.Figure, *, width: int = 1000, height: int | None = None, scale: float = 2) -> bytes:
    """PNG bytes of the figure; raises :class:`PngExportError` with a fix when rendering is unavailable."""
    try:
        return fig.to_image(format="png", width=width, height=height or fig.layout.height or 500, scale=scale)
    except Exception as exc:  # kaleido reports a missing browser with several exception types
        raise PngExportError(
            f"PNG export failed ({type(exc).__name__}: {exc}). Install Chromium (Debian: apt-get install "
            "chromium, or `bash scripts/system-deps.sh`) for kaleido; HTML export still works."
        ) from exc
