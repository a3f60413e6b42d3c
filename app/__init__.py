"""The circuitkit explorer (Streamlit). Thin: it calls circuitkit and draws circuitkit.viz figures."""
