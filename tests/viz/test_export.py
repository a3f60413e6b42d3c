import re
import shutil

import numpy as np
import pytest

from circuitkit.viz import figure_to_html, figure_to_png, layer_head_heatmap


def test_html_export_inlines_plotly_js_for_offline_use():
    html = figure_to_html(layer_head_heatmap(np.eye(2)))
    # No script is fetched from elsewhere (plotly.js mentions its CDN inside, only as a topojson default).
    assert "<script" in html and not re.search(r"<script[^>]*\bsrc=", html)
    assert len(html) > 1_000_000  # plotly.js itself is inside the page
    assert "L1H1" in html


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="kaleido needs Chromium: scripts/system-deps.sh")
def test_png_export_renders_offline():
    png = figure_to_png(layer_head_heatmap(np.eye(2)), width=300, height=200, scale=1)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # PNG header stores width and height big-endian at bytes 16..24.
    assert int.from_bytes(png[16:20], "big") == 300 and int.from_bytes(png[20:24], "big") == 200
