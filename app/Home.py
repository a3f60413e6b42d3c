"""circuitkit explorer. Run with ``make app`` (``streamlit run app/Home.py``).

This file is the router: it draws the shared sidebar (model / task / dictionary) and runs the page
picked in the navigation. Pages live in ``app/pages/`` and only call circuitkit / sae_training and draw
``circuitkit.viz`` figures.
"""

from __future__ import annotations

import streamlit as st

from app import state

st.set_page_config(page_title="circuitkit", layout="wide")

PAGES = [
    st.Page(
        "pages/model_prompt.py",
        title="Model & prompt",
        url_path="model",
        default=True,
    ),
    st.Page("pages/patching.py", title="Patching", url_path="patching"),
    st.Page("pages/circuit.py", title="Circuit", url_path="circuit"),
    st.Page("pages/heads.py", title="Heads", url_path="heads"),
    st.Page("pages/features.py", title="Features", url_path="features"),
    st.Page("pages/training_runs.py", title="Training runs", url_path="training"),
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
nav.run()
