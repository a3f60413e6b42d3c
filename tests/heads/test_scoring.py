"""Node and edge scores against counts done by hand (ranking scores: tests/evaluation/test_metrics.py)."""

import torch

from circuitkit.heads.scoring import code_counts, edge_scores, heads_from_edges, node_scores

# 3 heads, codes per prompt: head 0 differs between positives and negatives, head 1 never does,
# head 2 shares one code (4) and has one positive-only code (5)
POS = torch.tensor([[0, 2, 4], [1, 2, 5], [0, 2, 4]])
NEG = torch.tensor([[3, 2, 4], [3, 2, 4]])


def test_node_scores_count_codes_unique_to_positives():
    assert node_scores(POS, NEG, 6).tolist() == [2.0, 0.0, 1.0]
    # normalised by the head's distinct codes: head 0 has {0, 1, 3}, head 1 {2}, head 2 {4, 5}
    torch.testing.assert_close(node_scores(POS, NEG, 6, normalise=True), torch.tensor([2 / 3, 0.0, 0.5]))


def test_edge_scores_count_code_pairs_unique_to_positives():
    e = edge_scores(POS, NEG, 6)
    # pairs seen on positives for (h0, h1): (0,2), (1,2); on negatives: (3,2) -> 2 unique
    # (h1, h2): positives (2,4), (2,5); negatives (2,4) -> 1; (h0, h2): (0,4), (1,5) vs (3,4) -> 2
    expected = torch.tensor([[0, 2, 2], [2, 0, 1], [2, 1, 0]], dtype=torch.float)
    torch.testing.assert_close(e, expected)
    assert heads_from_edges(e, how="sum").tolist() == [8.0, 6.0, 6.0]
    # top third of the 9 ordered pairs = 3 pairs, all among the score-2 pairs (0,1), (0,2), (1,0)
    assert heads_from_edges(e, how="top_pairs", top_fraction=1 / 3).tolist() == [3.0, 2.0, 1.0]


def test_code_counts_histogram():
    counts = code_counts(POS, 6)
    assert counts.shape == (3, 6)
    assert counts[0].tolist() == [2, 1, 0, 0, 0, 0]
    assert counts.sum().item() == POS.numel()
