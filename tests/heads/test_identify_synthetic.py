"""The whole method on planted head vectors, where the right answer is known by construction."""

import pytest
import torch

from circuitkit.heads import CodebookConfig, HeadIdConfig, identify_from_vectors, roc_auc, train_codebook


def planted(n_prompts=40, n_layers=3, n_heads=4, d=16, seed=0):
    """Circuit heads write one of several prompt-dependent directions on positives and a fixed one on
    negatives; other heads draw from the same distribution on both."""
    g = torch.Generator().manual_seed(seed)
    circuit = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    circuit[1, 2] = circuit[2, 0] = circuit[0, 3] = True
    protos = torch.randn(n_layers, n_heads, 6, d, generator=g) * 3

    def draw(positive: bool):
        out = torch.empty(n_prompts, n_layers, n_heads, d)
        for layer in range(n_layers):
            for head in range(n_heads):
                if circuit[layer, head] and not positive:
                    idx = torch.zeros(n_prompts, dtype=torch.long)
                elif circuit[layer, head]:
                    idx = torch.randint(1, 6, (n_prompts,), generator=g)
                else:
                    idx = torch.randint(0, 3, (n_prompts,), generator=g)
                out[:, layer, head] = protos[layer, head, idx] + 0.05 * torch.randn(n_prompts, d, generator=g)
        return out

    return draw(True), draw(False), circuit


def test_planted_circuit_heads_rank_first():
    pos, neg, circuit = planted()
    cfg = HeadIdConfig(n_train_prompts=10, codebook=CodebookConfig(n_latents=64, n_steps=300))
    result = identify_from_vectors(pos, neg, cfg)
    assert roc_auc(result.node_scores, circuit) > 0.9
    assert set(result.ranking()[:3]) == {(1, 2), (2, 0), (0, 3)}
    assert roc_auc(result.edge_head_scores, circuit) > 0.9
    table = result.table()
    assert len(table) == 12 and table["rank"].min() == 1
    assert {"method", "model", "task", "seed", "n_prompts"} <= set(table.columns)
    assert result.edge_table(top=5)["score"].is_monotonic_decreasing
    hist = result.code_histogram_table()
    assert hist.groupby("component")["n_positive"].sum().eq(40).all()
    assert set(result.codes_by_head()) == set(table["component"])


def test_codebook_dictionary_stays_unit_norm_and_learns():
    x = torch.randn(50, 8) * 2
    sae, losses = train_codebook(x, CodebookConfig(n_latents=20, n_steps=200))
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(20))
    torch.testing.assert_close(sae.W_enc.norm(dim=-1), torch.ones(20))
    assert losses[-1] < 0.5 * losses[0]
    assert torch.equal(sae.codes(x), sae.encode(x).argmax(-1))
    with torch.no_grad():  # callers that switched gradients off still get a trained code book
        _, losses_no_grad = train_codebook(x, CodebookConfig(n_latents=20, n_steps=200))
    assert losses_no_grad == losses


def test_bad_inputs_are_refused():
    pos, neg, _ = planted(n_prompts=4)
    with pytest.raises(ValueError, match="same trailing shape"):
        identify_from_vectors(pos, neg[:, :2])
    with pytest.raises(ValueError, match="n_train_prompts"):
        HeadIdConfig(n_train_prompts=1)
