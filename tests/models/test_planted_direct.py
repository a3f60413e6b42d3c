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
    with torch.no_grad():  # non-trivial norm weights, so the bases must include them
        for name, p in model.named_parameters():
            if name.startswith(("ln_final", "blocks.")) and ".ln" in f".{name}" and name.endswith(".w"):
                p.uniform_(0.5, 2.0)
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


READERS = (
    Node("dup", "duplicate token", 0, 1, "S2", reads=("tokens",)),
    Node("mid", "s-inhibition", 1, 2, "end", reads=("dup",)),
    Node("mover", "name mover", 2, 0, "end", reads=("mid", "tokens")),
)


@pytest.mark.parametrize("norm", ["LN", "RMS"])
def test_value_projection_hides_earlier_free_components_from_token_readers(norm):
    """After ``project_value_reads``, resampling any non-aligned head or MLP below the token reader leaves
    the reader's values unchanged along the direct path (every other component's output and the
    reader's ``ln1`` scale held at the unpatched run's); aligned components keep their effect, and a
    reader that does not read the tokens (``mid``) is not protected."""
    from circuitkit.planted.direct import project_value_reads, token_readers

    model = _model(norm)
    assert [n.label for n in token_readers(READERS)] == ["L2H0"]  # the layer-0 reader has nothing below
    tokens, other = torch.randint(0, 50, (6, 10)), torch.randint(0, 50, (6, 10))

    @torch.no_grad()
    def moved(hook: str, head: int | None, reader_layer: int, reader_head: int) -> float:
        _, cache = model.run_with_cache(tokens)
        _, src = model.run_with_cache(other)
        scale = f"blocks.{reader_layer}.ln1.hook_scale"
        v_name = f"blocks.{reader_layer}.attn.hook_v"

        def put(act, hook):
            if head is None:
                return src[hook.name]
            act = act.clone()
            act[:, :, head] = src[hook.name][:, :, head]
            return act

        patched_layer = int(hook.split(".")[1])
        held = [f"blocks.{i}.hook_mlp_out" for i in range(reader_layer)]
        held += [f"blocks.{i}.hook_attn_out" for i in range(reader_layer) if i != patched_layer]
        got: dict[str, torch.Tensor] = {}
        model.run_with_hooks(
            tokens,
            fwd_hooks=[
                (hook, put),
                *[(n, lambda a, hook: cache[hook.name]) for n in held if n != hook],
                (scale, lambda a, hook: cache[scale]),
                (v_name, lambda a, hook: got.setdefault("v", a)),
            ],
        )
        return float((got["v"][:, :, reader_head] - cache[v_name][:, :, reader_head]).abs().max())

    free = [("blocks.0.attn.hook_z", 0), ("blocks.1.attn.hook_z", 3), ("blocks.0.hook_mlp_out", None)]
    before = [moved(h, k, 2, 0) for h, k in free]
    assert min(before) > 1e-3
    assert 0 < project_value_reads(model, READERS) < 1
    after = [moved(h, k, 2, 0) for h, k in free]
    assert max(after) < 1e-5, after
    assert moved("blocks.0.attn.hook_z", 1, 2, 0) > 1e-3  # aligned: still read
    assert moved("blocks.0.attn.hook_z", 0, 1, 2) > 1e-3  # `mid` reads no tokens: not protected
    assert project_value_reads(model, READERS) < 1e-5
    heads_only = _model(norm)
    project_value_reads(heads_only, READERS, mlps=False)
    assert torch.equal(heads_only.blocks[0].mlp.W_out, _model(norm).blocks[0].mlp.W_out)


def test_value_projection_rate_decays_the_relay_geometrically():
    """``rate`` r removes that share of the read-space part per call: after k calls (the reader's W_V
    fixed) (1-r)^k of it is left; the part outside the read space never moves; rate 0 only measures."""
    from circuitkit.planted.direct import project_value_reads, token_readers, value_read_basis

    model = _model("LN")
    q = value_read_basis(model, token_readers(READERS))
    w = model.blocks[0].attn.W_O[0]  # non-aligned layer-0 head: [d_head, d_model]
    inside0, outside0 = (w @ q).norm().item(), (w - (w @ q) @ q.T).clone()
    before = model.blocks[0].attn.W_O.detach().clone()
    project_value_reads(model, READERS, rate=0.0)
    assert torch.equal(model.blocks[0].attn.W_O, before)
    for _ in range(3):
        project_value_reads(model, READERS, rate=0.25)
    assert (w @ q).norm().item() == pytest.approx(inside0 * 0.75**3, rel=1e-4)
    torch.testing.assert_close(w - (w @ q) @ q.T, outside0, atol=1e-5, rtol=0)
    assert torch.equal(model.blocks[0].attn.W_O[1], before[1])  # aligned head untouched


@pytest.mark.parametrize("norm", ["LN", "RMS"])
def test_intermediate_projection_cuts_only_the_direct_path_to_the_answers(norm):
    """After ``project_intermediate``, resampling the aligned head another node reads (``mid``) leaves
    every answer logit difference unchanged along its direct path (everything after it and ln_final's
    scale held at the unpatched run's); before, it moves them. The leaf head (``mover``) keeps its
    weights, and so does every non-aligned head."""
    from circuitkit.planted.direct import intermediate_heads, project_intermediate

    model = _model(norm)
    assert [n.name for n in intermediate_heads(READERS)] == ["dup", "mid"]
    answers = torch.tensor([3, 7, 11, 19, 23])
    tokens, other = torch.randint(0, 50, (6, 10)), torch.randint(0, 50, (6, 10))

    @torch.no_grad()
    def moved() -> float:
        _, cache = model.run_with_cache(tokens)
        _, src = model.run_with_cache(other)

        def put(act, hook):
            act = act.clone()
            act[:, :, 2] = src[hook.name][:, :, 2]
            return act

        held = [
            "blocks.1.hook_mlp_out",
            "blocks.2.hook_attn_out",
            "blocks.2.hook_mlp_out",
            "ln_final.hook_scale",
        ]
        hooks = [("blocks.1.attn.hook_z", put), *[(n, lambda a, hook: cache[hook.name]) for n in held]]
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks)[:, -1]
        ref = model(tokens)[:, -1]
        d = lambda x: x[:, answers[1:]] - x[:, answers[:1]]  # noqa: E731
        return float((d(logits) - d(ref)).abs().max())

    before_w = {k: v.clone() for k, v in model.state_dict().items()}
    assert moved() > 1e-3
    assert 0 < project_intermediate(model, READERS, answers) < 1
    assert moved() < 1e-4
    after = model.state_dict()
    changed = [k for k in after if not torch.equal(after[k], before_w[k])]
    assert changed == ["blocks.0.attn.W_O", "blocks.1.attn.W_O"]
    for layer, head in ((0, 1), (1, 2)):
        q = answer_basis(model, answers)
        assert float((model.blocks[layer].attn.W_O[head] @ q).norm()) < 1e-5
    for h in (0, 2, 3):  # the free heads of layer 0 and the mover's layer: untouched
        assert torch.equal(model.blocks[0].attn.W_O[h], before_w["blocks.0.attn.W_O"][h])
    assert torch.equal(model.blocks[2].attn.W_O, before_w["blocks.2.attn.W_O"])
