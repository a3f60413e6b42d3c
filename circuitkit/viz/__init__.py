"""Plotly figure builders: pure functions from tables/tensors to ``go.Figure``, shared by the explorer
(``app/``) and the notebooks (``analyses/``)."""

from circuitkit.viz.attention import attention_pattern
from circuitkit.viz.curves import faithfulness_curve, roc_curve
from circuitkit.viz.export import PngExportError, figure_to_html, figure_to_png
from circuitkit.viz.graph import circuit_graph, node_status
from circuitkit.viz.heads import code_histograms
from circuitkit.viz.heatmaps import layer_head_heatmap, layer_pos_heatmap
from circuitkit.viz.latents import activation_histogram, density_histogram, top_examples, top_logits
from circuitkit.viz.scatter import method_vs_patching_scatter
from circuitkit.viz.training import fvu_vs_l0, training_curves

__all__ = [
    "PngExportError",
    "activation_histogram",
    "attention_pattern",
    "circuit_graph",
    "code_histograms",
    "density_histogram",
    "faithfulness_curve",
    "figure_to_html",
    "figure_to_png",
    "fvu_vs_l0",
    "layer_head_heatmap",
    "layer_pos_heatmap",
    "method_vs_patching_scatter",
    "node_status",
    "roc_curve",
    "top_examples",
    "top_logits",
    "training_curves",
]
