"""``circuitkit.planted.direct``: the last block's non-aligned components kept off the answer directions.

Defining property, checked with numbers on random models (LayerNorm and RMSNorm): after the projection,
resample-patching a last-block non-aligned head or MLP leaves every answer-token logit difference
unchanged once ``ln_final``'s scale is held at the unpatched run's (its only remaining path); before
the projection the same patch moves them. Aligned components and earlier blocks keep their weights.
"""

from __future__ import annotations

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from circuitkit.planted.direct import answer_basis, last_block_free, project_last_block
from circuitkit.planted.graph import Node

NODES = (
    Node("a", "aligned head", 0, 1, "end"),
    Node("b", "aligned last-block head", 2, 0, "end"),
)


def _model(norm: str) -> HookedTransformer:
    torch.manual_seed(0)
    cfg = HookedTransformerConfig(
        n_layers=3, d_model=32, n_heads=4, d_head=8, d_mlp=64, d_vocab=50, n_ctx=12, act_fn="gelu",
        normalization_type=norm, seed=0,
    )  # fmt: skip
    model = HookedTransformer(cfg)
    with torch.no_grad():  # a non-trivial final norm weight, so the basis must include it
        model.ln_final.w.uniform_(0.5, 2.0)
    return model


def _answer_diffs(model: HookedTransformer, tokens, answers, patch: tuple[str, torch.Tensor, int | None]):
    """Logit differences answer[k] - answer[0] at the last position, with one component's output
    replaced by ``value`` and ln_final's scale held at the unpatched run's."""
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == "ln_final.hook_scale")
    scale = cache["ln_final.hook_scale"]
    hook_name, value, head = patch

    def put(act, hook):
        if head is None:
            return value
        act = act.clone()
        act[:, :, head] = value[:, :, head]
        return act

    hooks = [(hook_name, put), ("ln_final.hook_scale", lambda a, hook: scale)]
    logits = model.run_with_hooks(tokens, fwd_hooks=hooks)[:, -1]
    return logits[:, answers[1:]] - logits[:, answers[:1]]


@pytest.mark.parametrize("norm", ["LN", "RMS"])
def test_projection_silences_the_last_blocks_free_components_and_nothing_else(norm):
    model = _model(norm)
    answers = torch.tensor([3, 7, 11, 19, 23])
    tokens, other = torch.randint(0, 50, (6, 10)), torch.randint(0, 50, (6, 10))
    assert last_block_free(model, NODES) == ["L2H1", "L2H2", "L2H3", "MLP2"]

    @torch.no_grad()
    def effects():
        _, src = model.run_with_cache(other)
        clean = model(tokens)[:, -1]
        ref = clean[:, answers[1:]] - clean[:, answers[:1]]
        out = {}
        for label, hook, head in [
            ("MLP2", "blocks.2.hook_mlp_out", None),
            ("L2H1", "blocks.2.attn.hook_z", 1),
            ("L2H0", "blocks.2.attn.hook_z", 0),  # aligned: keeps its effect
            ("MLP1", "blocks.1.hook_mlp_out", None),  # earlier block: untouched
        ]:
            moved = _answer_diffs(model, tokens, answers, (hook, src[hook], head)) - ref
            out[label] = float(moved.abs().max())
        return out

    before = {k: v.clone() for k, v in model.state_dict().items()}
    was = effects()
    assert was["MLP2"] > 1e-3 and was["L2H1"] > 1e-3  # the patch moved the answers before
    removed = project_last_block(model, NODES, answers)
    now = effects()
    assert now["MLP2"] < 1e-5 and now["L2H1"] < 1e-5
    assert now["L2H0"] > 1e-3 and now["MLP1"] > 1e-3
    assert 0 < removed < 1
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"blocks.2.mlp.W_out", "blocks.2.attn.W_O"}
    # the aligned head's slice of W_O is untouched
    assert torch.equal(before["blocks.2.attn.W_O"][0], after["blocks.2.attn.W_O"][0])
    assert project_last_block(model, NODES, answers) < 1e-5  # idempotent


def test_answer_basis_spans_every_answer_difference_and_no_more():
    model = _model("LN")
    answers = torch.tensor([3, 7, 11, 19, 23])
    q = answer_basis(model, answers)
    assert q.shape == (32, 4)  # five answers: four independent differences
    assert torch.allclose(q.T @ q, torch.eye(4), atol=1e-5)
    u = model.ln_final.w.detach()[:, None] * model.W_U.detach()[:, answers]
    diff = u[:, 2] - u[:, 4]
    diff = diff - diff.mean()  # LayerNorm centres: the mean direction is inert
    assert torch.allclose(q @ (q.T @ diff), diff, atol=1e-5)
    other = u[:, 0] - model.ln_final.w.detach() * model.W_U.detach()[:, 30]  # a non-answer token
    other = other - other.mean()
    assert (q @ (q.T @ other) - other).norm() > 0.1 * other.norm()
    with pytest.raises(ValueError, match="at least two answer tokens"):
        answer_basis(model, torch.tensor([3]))
