"""Discrete-SAE head identification (O'Neill & Bui 2024, arXiv 2405.12522)."""

from circuitkit.evaluation.ground_truth import RankingScore, roc_auc, score_ranking  # re-exported
from circuitkit.heads.dictionary import CodebookConfig, CodebookSAE, train_codebook
from circuitkit.heads.identify import HeadIdConfig, HeadIdentification, identify_from_vectors, identify_heads
from circuitkit.heads.scoring import code_counts, edge_scores, heads_from_edges, node_scores
from circuitkit.heads.vectors import head_output_vectors, positives_and_negatives

__all__ = [
    "CodebookConfig",
    "CodebookSAE",
    "HeadIdConfig",
    "HeadIdentification",
    "RankingScore",
    "code_counts",
    "edge_scores",
    "head_output_vectors",
    "heads_from_edges",
    "identify_from_vectors",
    "identify_heads",
    "node_scores",
    "positives_and_negatives",
    "roc_auc",
    "score_ranking",
    "train_codebook",
]
