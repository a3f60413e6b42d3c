"""Edge-level circuit discovery: sender -> receiver edges, exact edge patching, EAP and EAP-IG."""

from circuitkit.edges.eap import eap, eap_ig
from circuitkit.edges.graph import EdgeGraph, Receiver, Sender, split_inputs
from circuitkit.edges.patching import edge_patching, edge_patching_loop, patch_edges
from circuitkit.edges.scores import EDGE_FAMILY, EdgeScores, edge_matrix, graph_of

__all__ = [
    "EDGE_FAMILY",
    "EdgeGraph",
    "EdgeScores",
    "Receiver",
    "Sender",
    "eap",
    "eap_ig",
    "edge_matrix",
    "edge_patching",
    "edge_patching_loop",
    "graph_of",
    "patch_edges",
    "split_inputs",
]
