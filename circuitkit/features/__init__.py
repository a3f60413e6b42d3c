"""Feature circuits over SAE / transcoder latents with error nodes (Marks et al. 2024) and weights-based
transcoder circuits (Dunefsky et al. 2024)."""

from circuitkit.features.attribution import FeatureAttribution, NodeScores, attribute_nodes
from circuitkit.features.circuit import (
    Faithfulness,
    FeatureCircuit,
    faithfulness,
    full_circuit,
    select_nodes,
)
from circuitkit.features.edges import ERROR, EdgeAttribution, attribute_edges
from circuitkit.features.splice import Dictionary, DictionaryError, SpliceRecord, place, run_spliced
from circuitkit.features.transcoders import TranscoderEdges, input_invariant, transcoder_edges

__all__ = [
    "ERROR",
    "Dictionary",
    "DictionaryError",
    "EdgeAttribution",
    "Faithfulness",
    "FeatureAttribution",
    "FeatureCircuit",
    "NodeScores",
    "SpliceRecord",
    "TranscoderEdges",
    "attribute_edges",
    "attribute_nodes",
    "faithfulness",
    "full_circuit",
    "input_invariant",
    "place",
    "run_spliced",
    "select_nodes",
    "transcoder_edges",
]
