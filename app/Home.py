"""circuitkit explorer. Run with ``make app`` (``streamlit run app/Home.py``).

This file is the router: it draws the shared sidebar (model / task / dictionary) and runs the page
picked in the navigation. Pages live in ``app/views/`` (one page per file) and only call circuitkit /
sae_training and draw ``circuitkit.viz`` figures. The folder is deliberately not called ``pages/``:
Streamlit treats a ``pages/`` folder beside the entry script as legacy multipage pages and, on a freshly
started server, serves a deep link (``/patching?...``) from that file directly, without this router, so
the shared selection would be missing.

The server binds to 127.0.0.1 (``make app``); to expose it on a network on purpose, run
``make app APP_ADDRESS=0.0.0.0``.
"""

from __future__ import annotations

import streamlit as st

from app import state, widgets

st.set_page_config(page_title="circuitkit", layout="wide")

PAGES = [
    st.Page(
        "views/model_prompt.py",
        title="Model & prompt",
        url_path="model",
        default=True,
    ),
    st.Page("views/patching.py", title="Patching", url_path="patching"),
    st.Page("views/circuit.py", title="Circuit", url_path="circuit"),
    st.Page("views/edge_circuit.py", title="Edge circuit", url_path="edge-circuit"),
    st.Page("views/feature_circuit.py", title="Feature circuit", url_path="feature-circuit"),
    st.Page("views/heads.py", title="Heads", url_path="heads"),
    st.Page("views/features.py", title="Features", url_path="features"),
    st.Page("views/training_runs.py", title="Training runs", url_path="training"),
]

# No page icons: Streamlit turns a page's Material icon into the favicon by fetching it from Google's
# font CDN, which breaks offline use; the default favicon is bundled.
nav = st.navigation(PAGES)
st.sidebar.title("circuitkit")
selection = state.sidebar()
if selection is None:
    st.title("circuitkit")
    st.error(
        "No model is available, so no page can be shown. Build the built-in models with "
        "`circuitkit zoo train tiny` (minutes) or `make zoo`, then reload."
    )
    st.stop()
st.session_state["selection"] = selection
try:
    nav.run()
except Exception as exc:  # shown in the page, message first and the traceback in an expander
    widgets.fail(f"The {nav.title} page failed", exc)
