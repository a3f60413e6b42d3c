"""Strict IIT machinery: the high-level models' answers under interventions, and the patching masks.

No shipped model needed: the high-level models are checked against hand-computed answers, the patching
helpers against defining properties (no mask = plain forward; every component patched everywhere =
the source run's logits, a TransformerLens forward of the source prompts).
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from transformer_lens import HookedTransformer

from circuitkit.patching.path import path_patching
from circuitkit.planted.greater_than import GreaterThanHighLevel
from circuitkit.planted.ioi import IOIHighLevel
from circuitkit.planted.siit import (
    PatchMasks,
    cache_components,
    end_logits,
    iit_masks,
    patched_logits,
    single_masks,
    soft_cross_entropy,
    strict_masks,
)
from circuitkit.planted.validate import component_edge_scores, edge_report, planted_edges
from circuitkit.tasks import make_ioi


@pytest.fixture(scope="module")
def ioi_hl(tiny_model):
    return IOIHighLevel(tiny_model.tokenizer)


def test_ioi_prompts_line_up_with_variables(ioi_hl, tiny_model):
    b = ioi_hl.sample(random.Random(0), 16, p_abc=0.5)
    tok = b.tokens
    assert torch.equal(tok[:, b.positions["slot1"]], b.variables["slot1"])
    assert torch.equal(tok[:, b.positions["slot2"]], b.variables["slot2"])
    assert torch.equal(tok[:, b.positions["S2"]], b.variables["S2"])
    assert b.positions["end"] == tok.shape[1] - 1
    dup = ioi_hl.duplicate(b.variables)
    first = b.variables["S2"] == b.variables["slot1"]
    second = b.variables["S2"] == b.variables["slot2"]
    assert first.any() and second.any() and (dup == -1).any()  # BABA, ABBA and ABC rows all drawn
    assert torch.equal(dup == -1, ~(first | second)) and torch.equal(
        dup[dup != -1], b.variables["S2"][dup != -1]
    )


def test_ioi_high_level_answers(ioi_hl):
    rng = random.Random(1)
    base = ioi_hl.sample(rng, 32, p_abc=0.0)
    v = base.variables
    io = torch.where(v["S2"] == v["slot1"], v["slot2"], v["slot1"])
    s = v["S2"]
    out = ioi_hl.output(base)
    assert torch.equal(out.argmax(-1), io) and torch.allclose(out.max(-1).values, torch.ones(32))
    # intervening on the duplicate (or S-inhibition) node inhibits the source's repeated name: half on
    # each base name when the base prompt lacks it, the other base name when the base prompt has it
    source = ioi_hl.sample(rng, 32, template=base.layout, p_abc=0.0)
    source.variables["S2"][:4] = v["slot1"][:4]  # rows 0-3: the source repeats base's first-slot name
    source.variables["slot1"][:4] = v["slot1"][:4]
    s2 = source.variables["S2"]
    lacks = (s2 != v["slot1"]) & (s2 != v["slot2"])
    assert not lacks[:4].any() and lacks.sum() > 20
    r = torch.arange(32)[lacks]
    for k in (0, 1):
        out = ioi_hl.output(base, source, torch.full((32,), k))
        assert torch.equal(out[:4].argmax(-1), v["slot2"][:4])
        assert torch.allclose(out[r, v["slot1"][lacks]], torch.full((len(r),), 0.5))
        assert torch.allclose(out[r, v["slot2"][lacks]], torch.full((len(r),), 0.5))
    assert not torch.equal(io, s)
    src_io = ioi_hl.output(source).argmax(-1)
    rows = torch.arange(32)
    for k, share in ((2, 0.6), (3, 0.4)):
        out = ioi_hl.output(base, source, torch.full((32,), k))
        differs = src_io != io
        assert torch.allclose(out[rows, src_io][differs], torch.full((int(differs.sum()),), share))
    # ABC rows: nothing inhibited, half on each first-clause name, none on the third name
    abc = ioi_hl.sample(rng, 8, p_abc=1.0)
    out = ioi_hl.output(abc)
    r = torch.arange(8)
    assert torch.allclose(out[r, abc.variables["slot1"]], torch.full((8,), 0.5))
    assert torch.all(out[r, abc.variables["S2"]] == 0)


def test_greater_than_high_level_answers(tiny_model):
    hl = GreaterThanHighLevel(tiny_model.tokenizer)
    base = hl.sample(random.Random(0), 4, p_abc=0.0)
    source = hl.sample(random.Random(1), 4, p_abc=0.0)
    base.variables["yy"] = torch.tensor([32, 57, 90, 5])
    source.variables["yy"] = torch.tensor([81, 14, 9, 99])
    years = hl.year_ids

    def first_year(dist: torch.Tensor) -> list[int]:
        mass = dist[:, years]
        return [int(torch.nonzero(row)[0]) for row in mass]

    assert first_year(hl.output(base)) == [33, 58, 91, 6]
    assert first_year(hl.output(base, source, torch.full((4,), 0))) == [83, 18, 1, 96]  # tens from source
    assert first_year(hl.output(base, source, torch.full((4,), 1))) == [32, 55, 99, 10]  # units from source
    for whole_year in (2, 3):  # the year MLP and the greater-than MLP carry the source's year
        got = first_year(hl.output(base, source, torch.full((4,), whole_year)))
        assert got == [82, 15, 10, 99]  # nothing later than 99: 99
    mixed = hl.output(base, source, torch.tensor([0, 1, -1, 3]))
    assert first_year(mixed) == [83, 55, 91, 99]
    out = hl.output(base)
    assert torch.allclose(out.sum(-1), torch.ones(4))
    # the window: the ten years after 32 share the mass, later ones get none; 90 leaves only 91..99
    assert torch.allclose(out[0, years[33:43]], torch.full((10,), 0.1))
    assert torch.all(out[0, years[43:]] == 0) and torch.all(out[0, years[:33]] == 0)
    assert torch.allclose(out[2, years[91:]], torch.full((9,), 1 / 9))
    every_later = GreaterThanHighLevel(tiny_model.tokenizer, window=None).output(base)
    assert torch.allclose(every_later[0, years[33:]], torch.full((67,), 1 / 67))
    with pytest.raises(ValueError, match="window"):
        GreaterThanHighLevel(tiny_model.tokenizer, window=0)
    assert base.positions["end"] == base.tokens.shape[1] - 1
    yy_tokens = hl.sample(random.Random(5), 8, p_abc=0.0)
    assert torch.equal(yy_tokens.tokens[:, yy_tokens.positions["YY"]], years[yy_tokens.variables["yy"]])


def test_patched_logits_defining_properties(tiny_model: HookedTransformer, ioi_hl):
    base = ioi_hl.sample(random.Random(2), 6)
    source = ioi_hl.sample(random.Random(3), 6, template=base.layout)
    cache = cache_components(tiny_model, source.tokens)
    b, p = base.tokens.shape
    with torch.no_grad():
        none = patched_logits(tiny_model, base.tokens, cache, PatchMasks.empty(tiny_model, b, p))
        assert torch.allclose(none, tiny_model(base.tokens), atol=1e-5)
        end = base.positions["end"]
        assert torch.allclose(end_logits(tiny_model, base.tokens, end), none[:, end], atol=1e-5)
        assert torch.allclose(end_logits(tiny_model, base.tokens, end - 3), none[:, end - 3], atol=1e-5)
        # every head and MLP from the source, everywhere: only embeddings differ, and the last layer's
        # residual is embeddings + all heads + all MLPs, so positions whose tokens agree match the source
        full = PatchMasks.empty(tiny_model, b, p)
        for m in full.heads + full.mlps:
            m.fill_(True)
        out = patched_logits(tiny_model, base.tokens, cache, full)
        ref = tiny_model(source.tokens)
        same = (base.tokens == source.tokens).all(0)
        assert torch.allclose(out[:, same], ref[:, same], atol=1e-4)
        assert not torch.allclose(out[:, ~same], ref[:, ~same], atol=1e-2)


def test_masks_touch_only_what_they_should(tiny_model, ioi_hl):
    base = ioi_hl.sample(random.Random(4), 8)
    nodes = ioi_hl.nodes
    which = torch.tensor([0, 1, 2, 3, -1, 0, 1, 2])
    m = iit_masks(tiny_model, nodes, base, which)
    assert sum(int(x.sum()) for x in m.heads) == 7 and sum(int(x.sum()) for x in m.mlps) == 0
    for k, n in enumerate(nodes):
        rows = (which == k).nonzero().flatten()
        assert m.heads[n.layer][rows, base.positions[n.position], n.head].all()
    s = strict_masks(tiny_model, nodes, base, 1.0, torch.Generator().manual_seed(0))
    for n in nodes:  # with p = 1 everything is ablated except each aligned head at its own position
        assert not s.heads[n.layer][:, base.positions[n.position], n.head].any()
        others = [q for q in range(base.tokens.shape[1]) if q != base.positions[n.position]]
        assert s.heads[n.layer][:, others, n.head].all()
    assert all(x.all() for x in s.mlps)
    s0 = strict_masks(tiny_model, nodes, base, 0.0, torch.Generator().manual_seed(0))
    assert not any(x.any() for x in s0.heads + s0.mlps)
    # p_max: each row its own probability in [p, p_max]; rows differ in how much they ablate, and the
    # share ablated over many rows is the interval's mean
    big = ioi_hl.sample(random.Random(6), 400)
    sv = strict_masks(tiny_model, nodes, big, 0.0, torch.Generator().manual_seed(1), p_max=1.0)
    per_row = torch.stack([h[:, 0, :].float().mean(-1) for h in sv.heads]).mean(0)
    assert per_row.min() < 0.15 and per_row.max() > 0.85
    assert abs(float(per_row.mean()) - 0.5) < 0.05
    # a separate MLP probability: heads untouched, every MLP ablated everywhere
    sm = strict_masks(tiny_model, nodes, base, 0.0, torch.Generator().manual_seed(0), p_mlp=1.0)
    assert not any(x.any() for x in sm.heads) and all(x.all() for x in sm.mlps)
    same = strict_masks(tiny_model, nodes, base, 0.3, torch.Generator().manual_seed(5), p_mlp=0.3)
    ref = strict_masks(tiny_model, nodes, base, 0.3, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(same.heads + same.mlps, ref.heads + ref.mlps, strict=True))


def test_single_masks_ablate_one_non_aligned_component_per_row_everywhere(tiny_model, ioi_hl):
    """Each row ablates exactly one component, at every position; never an aligned head; over many rows
    every non-aligned head and MLP is drawn about equally often (a mask that skipped the MLPs, ablated an
    aligned head, or only the aligned position would fail)."""
    n_l, n_h = tiny_model.cfg.n_layers, tiny_model.cfg.n_heads
    nodes = ioi_hl.nodes
    aligned = {(n.layer, n.head) for n in nodes}
    big = ioi_hl.sample(random.Random(7), 600)
    pos = big.tokens.shape[1]
    m, pick = single_masks(tiny_model, nodes, big, torch.Generator().manual_seed(0))
    per_row = sum(x.sum((1, 2)) for x in m.heads) + sum(x.sum(1) for x in m.mlps)
    assert (per_row == pos).all()
    for layer in range(n_l):
        for h in range(n_h):
            hit = m.heads[layer][:, :, h]
            assert (hit.all(1) == (pick == layer * n_h + h)).all() and (hit.any(1) == hit.all(1)).all()
            assert not ((layer, h) in aligned and hit.any())
        assert (m.mlps[layer].all(1) == (pick == n_l * n_h + layer)).all()
    counts = torch.bincount(pick, minlength=n_l * n_h + n_l)
    want = [k for k in range(n_l * n_h + n_l) if k >= n_l * n_h or divmod(k, n_h) not in aligned]
    assert set(counts.nonzero().flatten().tolist()) == set(want)
    share = counts[want].float() / len(pick)
    assert (share - 1 / len(want)).abs().max() < 0.05
    # weights: picks follow them over the non-aligned components; an aligned one is never drawn
    w = torch.zeros(n_l * n_h + n_l)
    mlp_last = n_l * n_h + n_l - 1
    w[mlp_last], w[want[0]] = 3.0, 1.0
    n = ioi_hl.nodes[0]
    w[n.layer * n_h + n.head] = 100.0  # aligned: ignored
    _, wp = single_masks(tiny_model, nodes, big, torch.Generator().manual_seed(1), w)
    assert set(wp.unique().tolist()) == {mlp_last, want[0]}
    assert abs(float((wp == mlp_last).float().mean()) - 0.75) < 0.06
    with pytest.raises(ValueError, match="non-negative"):
        single_masks(tiny_model, nodes, big, torch.Generator(), torch.zeros(n_l * n_h + n_l))


def test_soft_cross_entropy_is_kl():
    logits = torch.randn(5, 7)
    target = torch.softmax(torch.randn(5, 7), -1)
    kl = torch.nn.functional.kl_div(torch.log_softmax(logits, -1), target, reduction="batchmean")
    assert torch.allclose(soft_cross_entropy(logits, target), kl, atol=1e-6)
    assert float(soft_cross_entropy(target.log(), target)) == pytest.approx(0.0, abs=1e-6)


def test_edge_report_ranks_planted_against_the_rest(ioi_hl):
    nodes = ioi_hl.nodes
    assert {(s.name, r.name) for s, r in planted_edges(nodes)} == {
        ("duplicate", "s_inhibition"),
        ("s_inhibition", "name_mover"),
        ("s_inhibition", "backup_name_mover"),
    }
    scores = torch.full((3, 4, 3, 4), float("nan"), dtype=torch.float64)
    for layer in (1, 2):
        scores[layer, :, :layer] = 0.01
    scores[1, 2, 0, 1] = 0.9  # duplicate -> s-inhibition
    scores[2, 0, 1, 2] = 0.5
    scores[2, 3, 1, 2] = 0.3
    assert edge_report(nodes, scores)["all_planted_above_unplanted"]
    scores[2, 1, 0, 2] = -0.35  # an unplanted edge stronger than the weakest planted one
    rep = edge_report(nodes, scores)
    assert not rep["all_planted_above_unplanted"]
    assert rep["largest_unplanted"][0]["edge"] == "L0H2->L2H1"


def test_component_edges_equal_path_patching_with_frozen_mlps(tiny_model):
    data = make_ioi(tiny_model.tokenizer, 8, seed=0)
    senders = [(0, h) for h in range(4)] + [(0, None), (1, 2)]
    receivers = [(1, 1), (2, 0), (1, None), "logits"]
    got = component_edge_scores(tiny_model, data, senders, receivers)
    assert ((1, 2), (1, 1)) not in got and ((0, None), (1, None)) in got and ((1, 2), (1, None)) in got
    for r in ((1, 1), (2, 0)):
        ref = path_patching(
            tiny_model, data.clean_tokens, data.corrupted_tokens, data.metric, [r], freeze_mlps=True
        ).normalized()
        for s in senders:
            if s[1] is not None and s[0] < r[0]:
                assert got[(s, r)] == pytest.approx(float(ref[s]), abs=1e-4)
    # noising: the corrupted sender into the clean run, the share of the gap removed = path patching
    # with the two prompt sets swapped
    noi = component_edge_scores(tiny_model, data, senders, receivers, direction="noising")
    ref = path_patching(
        tiny_model, data.corrupted_tokens, data.clean_tokens, data.metric, [(1, 1)], freeze_mlps=True
    ).normalized()
    for s in senders[:4]:
        assert noi[(s, (1, 1))] == pytest.approx(float(ref[s]), abs=1e-4)
    assert max(abs(noi[k] - got[k]) for k in got) > 1e-3  # the two directions are not the same numbers
    with pytest.raises(ValueError, match="direction"):
        component_edge_scores(tiny_model, data, senders, [(1, 1)], direction="both")
    # an edge into the logits is the sender's direct effect: all of them together with the embeddings
    # and every other component's direct effect make up the whole clean - corrupted gap
    assert any(abs(got[(s, "logits")]) > 1e-3 for s in senders)


def test_validation_rejects_a_naturally_trained_model(tiny_model):
    """Negative control: ck-tiny carries IOI through one head that no planted node names, so the checks
    that pass for a planted model must fail for it."""
    from circuitkit.planted.validate import component_effects, summarise_components

    hl = IOIHighLevel(tiny_model.tokenizer)
    data = make_ioi(tiny_model.tokenizer, 16, seed=1)
    worst = summarise_components(hl.nodes, component_effects(tiny_model, data))
    assert worst["heads_denoising"]["max_abs_nonaligned"] > 0.5
    assert worst["heads_denoising"]["component"] == "L0H3"


def test_strictness_curriculum_and_node_sampling():
    from circuitkit.planted.config import PlantedConfig
    from circuitkit.planted.siit import sample_nodes, strict_scale

    plain = PlantedConfig(name="x", task="ioi")
    assert [strict_scale(s, plain) for s in (0, 5, 500)] == [1.0, 1.0, 1.0]  # default: no curriculum
    cur = PlantedConfig(name="x", task="ioi", strict_start=100, strict_ramp=50)
    assert strict_scale(0, cur) == 0.0 and strict_scale(99, cur) == 0.0
    assert strict_scale(124, cur) == pytest.approx(0.5) and strict_scale(149, cur) == 1.0
    assert strict_scale(1000, cur) == 1.0
    jump = PlantedConfig(name="x", task="ioi", strict_start=10)
    assert strict_scale(9, jump) == 0.0 and strict_scale(10, jump) == 1.0
    # uniform by default, and the same draws as the code before the option existed
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(sample_nodes(plain, 4, 64, g1), torch.randint(0, 4, (64,), generator=g2))
    weighted = PlantedConfig(name="x", task="ioi", iit_node_weights=(0.0, 1.0, 3.0, 0.0))
    draws = sample_nodes(weighted, 4, 4000, torch.Generator().manual_seed(1))
    counts = torch.bincount(draws, minlength=4)
    assert counts[0] == 0 and counts[3] == 0 and 2.5 < counts[2] / counts[1] < 3.5
    with pytest.raises(ValueError):
        sample_nodes(PlantedConfig(name="x", task="ioi", iit_node_weights=(1.0, 1.0)), 4, 8, g1)


def test_ioi_attention_targets_and_recorded_patterns(ioi_hl, tiny_model):
    from circuitkit.planted.siit import attention_hooks, attention_loss

    b = ioi_hl.sample(random.Random(6), 24, p_abc=0.3)
    v, pos = b.variables, b.positions
    t = ioi_hl.attention_targets(b)
    assert set(t) == {n.name for n in ioi_hl.nodes}
    for x in t.values():
        assert torch.allclose(x.sum(-1), torch.ones(24))
    in1, in2 = v["S2"] == v["slot1"], v["S2"] == v["slot2"]
    abc = ~(in1 | in2)
    assert in1.any() and in2.any() and abc.any()
    # duplicate-token head: the earlier occurrence of S2's name, BOS when there is none
    assert torch.all(t["duplicate"][in1, pos["slot1"]] == 1) and torch.all(
        t["duplicate"][in2, pos["slot2"]] == 1
    )
    assert torch.all(t["duplicate"][abc, 0] == 1)
    assert torch.all(t["s_inhibition"][:, pos["S2"]] == 1)
    # name movers: the indirect object's slot, which holds the high-level answer
    io_slot = torch.where(in1, pos["slot2"], pos["slot1"])
    rows = torch.arange(24)
    assert torch.all(t["name_mover"][rows[~abc], io_slot[~abc]] == 1)
    answer = ioi_hl.output(b).argmax(-1)
    assert torch.equal(b.tokens[rows[~abc], io_slot[~abc]], answer[~abc])
    assert torch.allclose(
        t["name_mover"][abc][:, [pos["slot1"], pos["slot2"]]], torch.full((int(abc.sum()), 2), 0.5)
    )
    # the hooks record the aligned head's row of the pattern at its own position
    store: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        tiny_model.run_with_hooks(b.tokens, fwd_hooks=attention_hooks(ioi_hl.nodes, b, store))
        _, cache = tiny_model.run_with_cache(b.tokens)
    for n in ioi_hl.nodes:
        ref = cache[f"blocks.{n.layer}.attn.hook_pattern"][:, n.head, pos[n.position]]
        assert torch.allclose(store[n.name], ref)
    exact = {k: t[k] for k in ("duplicate", "s_inhibition")}  # one-hot targets: loss 0
    assert float(attention_loss(exact, {k: t[k] for k in exact})) == pytest.approx(0.0, abs=1e-6)
    assert float(attention_loss(store, t)) > 0.1


def test_sink_hooks_record_free_heads_attention_to_bos_below_the_token_readers(ioi_hl, tiny_model):
    """``sink_hooks`` record key 0 of every non-aligned head's pattern in the layers below the name
    movers (not the aligned duplicate head, not the readers' layer) at the named positions."""
    from circuitkit.planted.siit import sink_hooks

    b = ioi_hl.sample(random.Random(3), 6)
    store: list[torch.Tensor] = []
    at = ("slot1", "S2")
    with torch.no_grad():
        tiny_model.run_with_hooks(b.tokens, fwd_hooks=sink_hooks(tiny_model, ioi_hl.nodes, b, at, store))
        _, cache = tiny_model.run_with_cache(b.tokens)
    q = [b.positions[p] for p in at]
    aligned = {(n.layer, n.head) for n in ioi_hl.nodes if n.head is not None}
    want = []
    for layer in (0, 1):  # name movers sit in layer 2
        heads = [h for h in range(tiny_model.cfg.n_heads) if (layer, h) not in aligned]
        want.append(cache[f"blocks.{layer}.attn.hook_pattern"][:, heads][:, :, q, 0])
    assert len(store) == 2 and all(torch.equal(x, y) for x, y in zip(store, want, strict=True))
    assert store[0].shape == (6, tiny_model.cfg.n_heads - 1, 2)
    with pytest.raises(ValueError, match="sink_positions"):
        sink_hooks(tiny_model, ioi_hl.nodes, b, ("nowhere",), store)


def test_ioi_augmentation_keeps_layouts_and_spares_held_out_prompts(tiny_model):
    from circuitkit.planted.ioi import AUGMENTED
    from circuitkit.tasks import vocab

    hl = IOIHighLevel(tiny_model.tokenizer, augment=1.0, p_filler=0.5)
    filler = set(hl.filler_tokens().tolist())
    tok = tiny_model.tokenizer
    banned = {
        tok.encode(" " + w)[0] for w in vocab.all_names() + vocab.PLACES_HELDOUT + vocab.OBJECTS_HELDOUT
    }
    assert len(filler) > 100 and not filler & banned
    rng, gen = random.Random(3), torch.Generator().manual_seed(0)
    prefixes = set()
    for _ in range(12):
        b = hl.sample(rng, 16)
        assert AUGMENTED in b.layout
        s = hl.sample(rng, 16, template=b.layout).permuted(gen)
        assert s.tokens.shape == b.tokens.shape and s.positions == b.positions and s.layout == b.layout
        for x in (b, s):
            for k in ("slot1", "slot2", "S2"):
                assert torch.equal(x.tokens[:, x.positions[k]], x.variables[k])
            assert (x.tokens[:, 0] == tok.bos_token_id).all()
        prefixes.add(int(b.layout.split(AUGMENTED)[1]))
        plain_len = hl.sample(random.Random(0), 1, template=b.layout.split(AUGMENTED)[0]).tokens.shape[1]
        assert b.tokens.shape[1] == plain_len + int(b.layout.split(AUGMENTED)[1])
    assert len(prefixes) > 1
    # held-out prompts are never augmented (validation draws them), and augment=0 draws the old prompts
    held = hl.sample(random.Random(1), 8, split="heldout")
    assert AUGMENTED not in held.layout
    a = IOIHighLevel(tok).sample(random.Random(9), 8)
    assert torch.equal(a.tokens, IOIHighLevel(tok, augment=0.0).sample(random.Random(9), 8).tokens)


def test_ioi_mover_weights_set_the_intervention_shares(tiny_model):
    hl = IOIHighLevel(tiny_model.tokenizer, mover_weights=(0.85, 0.15))
    rng = random.Random(4)
    base = hl.sample(rng, 32, p_abc=0.0)
    source = hl.sample(rng, 32, template=base.layout, p_abc=0.0)
    io, src_io = hl.output(base).argmax(-1), hl.output(source).argmax(-1)
    rows = torch.arange(32)[src_io != io]
    for k, share in ((2, 0.85), (3, 0.15)):
        out = hl.output(base, source, torch.full((32,), k))
        assert torch.allclose(out[rows, src_io[rows]], torch.full((len(rows),), share))
        assert torch.allclose(out[rows, io[rows]], torch.full((len(rows),), 1 - share))
    with pytest.raises(ValueError):
        IOIHighLevel(tiny_model.tokenizer, mover_weights=(0.4, 0.6))


def test_ioi_answer_prob_pins_the_target_logit_difference(tiny_model):
    """Each mover puts answer_prob on the name it moves and the rest on the inhibited name, so the
    target's IO - S logit difference is log(q / (1 - q)), not unbounded; with no name inhibited the
    two names get half each; an intervened name mover mixes the two movers' soft outputs."""
    q, (wm, wb) = 0.8, (0.75, 0.25)
    hl = IOIHighLevel(tiny_model.tokenizer, answer_prob=q, mover_weights=(wm, wb))
    rng = random.Random(5)
    base = hl.sample(rng, 64, p_abc=0.0)
    v = base.variables
    io = torch.where(v["S2"] == v["slot1"], v["slot2"], v["slot1"])
    rows = torch.arange(64)
    out = hl.output(base)
    assert torch.allclose(out[rows, io], torch.full((64,), q))
    assert torch.allclose(out[rows, v["S2"]], torch.full((64,), 1 - q))
    assert torch.allclose(out.sum(-1), torch.ones(64))
    abc = hl.sample(rng, 64, p_abc=1.0)
    out = hl.output(abc)
    assert torch.allclose(out[rows, abc.variables["slot1"]], torch.full((64,), 0.5))
    assert torch.allclose(out[rows, abc.variables["slot2"]], torch.full((64,), 0.5))
    # name mover patched from an ABC source: main mover half / half, backup keeps the base's answer
    src = hl.sample(rng, 64, template=base.layout, p_abc=1.0)
    out = hl.output(base, src, torch.full((64,), 2))
    expect_io = (
        wm * 0.5 * (src.variables["slot1"] == io).float() + wm * 0.5 * (src.variables["slot2"] == io).float()
    )
    assert torch.allclose(out[rows, io], expect_io + wb * q)
    for bad in (0.5, 1.2):
        with pytest.raises(ValueError, match="answer_prob"):
            IOIHighLevel(tiny_model.tokenizer, answer_prob=bad)


def test_zoo_ioi_recipe_builds_its_high_level(tiny_model):
    from circuitkit.models import zoo
    from circuitkit.planted.siit import high_level

    recipe = {**zoo.PLANTED_EXPERIMENTAL, **zoo.PLANTED}["ck-planted-ioi"]
    assert recipe.init_from is None
    for cfg in recipe.phases():  # every phase (a fine-tuning phase may change the high-level model)
        hl = high_level(cfg.task, tiny_model.tokenizer, **cfg.extra)
        assert cfg.iit_node_weights is None or len(cfg.iit_node_weights) == len(hl.nodes)
        assert cfg.d_model % cfg.n_heads == 0
        assert cfg.pair_nodes is None or set(cfg.pair_nodes) <= {n.name for n in hl.nodes}
        b = hl.sample(random.Random(0), 4)
        assert hl.output(b).shape == (4, len(tiny_model.tokenizer))


def test_card_validates_against_the_last_phase_high_level(tiny_model, monkeypatch):
    """A fine-tuning phase that changes the high-level model (IOI's mover shares) is what the model is
    trained to last, so the card validates against it, not against the first phase's."""
    import dataclasses

    from circuitkit.models import zoo
    from circuitkit.planted import build

    seen = []

    def fake_validate(model, hl):
        seen.append(hl)
        return {"head_effects": {"heads_denoising": []}, "mlp_effects": {"mlps_denoising": []}}

    monkeypatch.setattr(build, "validate_model", fake_validate)
    monkeypatch.setattr(build, "run_probes", lambda model: {})
    monkeypatch.setattr("circuitkit.models.build.task_scores", lambda model: {})
    recipe = zoo.PLANTED["ck-planted-ioi"]
    first, last = (p.extra["mover_weights"] for p in recipe.phases())
    assert first != last  # the shipped recipe changes them in phase two
    build.make_card(recipe, tiny_model, {})
    assert seen[-1].mover_weights == tuple(last)
    one_phase = dataclasses.replace(recipe, finetune=None)
    build.make_card(one_phase, tiny_model, {})
    assert seen[-1].mover_weights == tuple(first)


def test_component_edge_report_survives_tied_scores(ioi_hl):
    from circuitkit.planted.validate import component_edge_report

    edges = [["duplicate", "s_inhibition"], ["name_mover", "logits"]]
    scores = {((0, 1), (1, 2)): 0.9, ((2, 0), "logits"): 0.5, ((0, 2), "logits"): 0.0, ((0, 2), (1, 0)): 0.0}
    rep = component_edge_report(ioi_hl.nodes, edges, scores)  # ties between a head and "logits" key
    assert rep["all_planted_found"] and rep["all_planted_above_unplanted"]


def test_blocked_and_frozen_iit_rows(tiny_model, ioi_hl):
    """Blocked rows freeze exactly the intervened node's children at their positions (nodes without
    children are never blocked); frozen components take the base run's values, the intervention the
    source's, and the source wins where both are set."""
    from circuitkit.planted.siit import blocked_iit, children, merge_patches

    nodes = ioi_hl.nodes  # duplicate -> s_inhibition -> name_mover, backup_name_mover
    assert [children(nodes, k) for k in range(4)] == [[1], [2, 3], [], []]
    base = ioi_hl.sample(random.Random(7), 8)
    node = torch.tensor([0, 1, 2, 3, -1, 0, 1, 2])
    masks, blocked = blocked_iit(tiny_model, nodes, base, node, torch.Generator().manual_seed(0), 1.0, 0.0)
    assert blocked.tolist() == [True, True, False, False, False, True, True, False]
    end = base.positions["end"]
    want = {(1, 2): [0, 5], (2, 0): [1, 6], (2, 3): [1, 6]}  # (layer, head) of each child -> its rows
    for layer, m in enumerate(masks.heads):
        for h in range(m.shape[-1]):
            rows = want.get((layer, h), [])
            assert m[:, end, h].nonzero().flatten().tolist() == rows
            assert not m[:, :end, h].any()
    assert not any(x.any() for x in masks.mlps)
    none, unblocked = blocked_iit(tiny_model, nodes, base, node, torch.Generator().manual_seed(0), 0.0, 0.0)
    assert not unblocked.any() and not any(x.any() for x in none.heads + none.mlps)
    frozen, _ = blocked_iit(tiny_model, nodes, base, node, torch.Generator().manual_seed(0), 0.0, 1.0)
    assert all(x.all() for x in frozen.mlps)  # p_freeze 1: every MLP everywhere

    src_cache = cache_components(tiny_model, ioi_hl.sample(random.Random(8), 8, template=base.layout).tokens)
    base_cache = cache_components(tiny_model, base.tokens)
    iit = iit_masks(tiny_model, nodes, base, node)
    cache, merged = merge_patches(src_cache, iit, base_cache, masks)
    name = "blocks.1.attn.hook_z"
    assert torch.equal(cache[name][0, end, 2], base_cache[name][0, end, 2])  # row 0 blocks L1H2: base
    assert torch.equal(cache[name][1, end, 2], src_cache[name][1, end, 2])  # row 1 intervenes on L1H2
    assert merged.heads[1][[0, 1], end, 2].all() and not merged.heads[1][4].any()
    both = iit_masks(tiny_model, nodes, base, torch.full((8,), 1))
    cache2, _ = merge_patches(src_cache, both, base_cache, both)
    assert torch.equal(cache2[name][:, end, 2], src_cache[name][:, end, 2])  # the source wins


def test_ioi_minimal_pairs_change_only_s2_and_always_the_answer(tiny_model):
    """A base row's minimal pair keeps every token but S2 and the names in the slots, and its high-level
    output differs from the base's on every row; ``with_pairs`` takes exactly the chosen share of rows
    from it, and refuses a high-level model without minimal pairs."""
    from circuitkit.planted.greater_than import GreaterThanHighLevel
    from circuitkit.planted.ioi import AUGMENTED
    from circuitkit.planted.siit import with_pairs

    hl = IOIHighLevel(tiny_model.tokenizer, augment=1.0)
    rng, gen = random.Random(6), torch.Generator().manual_seed(6)
    base = hl.sample(rng, 200, p_abc=0.3)
    assert AUGMENTED in base.layout  # an augmented layout (filler prefix) keeps its positions
    pair = hl.counterfactual(base, gen)
    s2 = base.positions["S2"]
    keep = torch.ones(base.tokens.shape[1], dtype=torch.bool)
    keep[s2] = False
    assert torch.equal(pair.tokens[:, keep], base.tokens[:, keep])
    assert torch.equal(pair.tokens[:, s2], pair.variables["S2"])
    assert (pair.variables["S2"] != base.variables["S2"]).all()
    for k in ("slot1", "slot2"):
        assert torch.equal(pair.variables[k], base.variables[k])
    v, pv = base.variables, pair.variables
    dup = (v["S2"] == v["slot1"]) | (v["S2"] == v["slot2"])
    pair_dup = (pv["S2"] == pv["slot1"]) | (pv["S2"] == pv["slot2"])
    assert pair_dup[~dup].all()  # an ABC row becomes an IOI row
    assert 0.3 < (~pair_dup[dup]).float().mean() < 0.7  # an IOI row: the other slot or a third name
    assert ((hl.output(pair) - hl.output(base)).abs().sum(-1) > 0.5).all()
    source = hl.sample(rng, 200, template=base.layout)
    assert torch.equal(with_pairs(hl, base, source, 0.0, gen).tokens, source.tokens)
    assert torch.equal(with_pairs(hl, base, source, 1.0, gen).variables["slot1"], v["slot1"])
    mixed = with_pairs(hl, base, source, 0.5, gen)
    from_pair = (mixed.tokens[:, keep] == base.tokens[:, keep]).all(-1)
    assert 0.35 < from_pair.float().mean() < 0.65
    assert torch.equal(mixed.variables["S2"][~from_pair], source.variables["S2"][~from_pair])
    with pytest.raises(ValueError, match="p_pair"):
        gt = GreaterThanHighLevel(tiny_model.tokenizer)
        with_pairs(gt, gt.sample(rng, 4), gt.sample(rng, 4), 0.5, gen)


def test_pair_nodes_keep_independent_sources_for_the_other_nodes(tiny_model):
    """``pair_rows`` marks exactly the rows intervening on a named node (never a row with no
    intervention), ``select_rows`` takes those rows' tokens and variables from the first batch and the
    rest from the second, and an unknown node name is refused by name."""
    from circuitkit.planted.siit import pair_rows, select_rows

    hl = IOIHighLevel(tiny_model.tokenizer)
    node = torch.tensor([0, 1, 2, 3, -1, 1, 3, 0])
    rows = pair_rows(hl.nodes, ("s_inhibition", "backup_name_mover"), node)
    assert rows.tolist() == [False, True, False, True, False, True, True, False]
    rng = random.Random(3)
    a = hl.sample(rng, 8)
    b = hl.sample(rng, 8, template=a.layout)
    mixed = select_rows(rows, a, b)
    for i in range(8):
        src = a if rows[i] else b
        assert torch.equal(mixed.tokens[i], src.tokens[i])
        assert all(int(mixed.variables[k][i]) == int(src.variables[k][i]) for k in a.variables)
    with pytest.raises(ValueError, match="name_mvr"):
        pair_rows(hl.nodes, ("name_mvr",), node)


def test_logit_match_sees_only_logit_differences_between_answer_tokens():
    """Zero under a shift common to all logits and for changes outside the tokens the targets put mass
    on; the squared change of the centred answer logits otherwise (one logit +1 among three answer
    tokens: (2/3)^2 + 2 (1/3)^2 = 2/3 for that row)."""
    from circuitkit.planted.siit import logit_match

    target = torch.zeros(2, 6)
    target[0, 1], target[1, 2], target[1, 3] = 1.0, 0.5, 0.5
    ref = torch.randn(2, 6)
    assert float(logit_match(ref + 3.0, ref, target)) < 1e-9
    outside = ref.clone()
    outside[:, [0, 4, 5]] += torch.randn(2, 3) * 10
    assert float(logit_match(outside, ref, target)) == 0.0
    moved = ref.clone()
    moved[0, 1] += 1.0
    assert abs(float(logit_match(moved, ref, target)) - (2 / 3) / 2) < 1e-5


def test_logit_diff_match_is_the_squared_change_of_each_rows_pair_difference(tiny_model):
    """Per row, (change of logit[a] - logit[b])^2: zero under a common shift and for changes to any other
    token, 4 for a row whose a-logit rises by 2, averaged over rows; IOI's pair is the two slots' names,
    and a high-level model without a pair is refused."""
    from circuitkit.planted.greater_than import GreaterThanHighLevel
    from circuitkit.planted.siit import logit_diff_match, logit_pair

    ref = torch.randn(3, 8)
    pair = torch.tensor([[1, 2], [3, 0], [5, 6]])
    assert float(logit_diff_match(ref + 5.0, ref, pair)) < 1e-9
    other = ref.clone()
    other[:, 4] += 10.0
    other[0, 7] -= 3.0
    assert float(logit_diff_match(other, ref, pair)) == 0.0
    moved = ref.clone()
    moved[1, 3] += 2.0
    assert abs(float(logit_diff_match(moved, ref, pair)) - 4 / 3) < 1e-5
    hl = IOIHighLevel(tiny_model.tokenizer)
    batch = hl.sample(random.Random(0), 6)
    got = logit_pair(hl, batch)
    assert torch.equal(got[:, 0], batch.variables["slot1"]) and torch.equal(
        got[:, 1], batch.variables["slot2"]
    )
    with pytest.raises(ValueError, match="w_logit_diff"):
        gt = GreaterThanHighLevel(tiny_model.tokenizer)
        logit_pair(gt, gt.sample(random.Random(0), 2))


def test_component_mean_change_penalises_mean_effects_not_scatter(tiny_model):
    """Rows of component 0 change by +1 and -1 (mean 0: no penalty), component 1's row by +2 (share 1/4,
    mean 2: 1.0), component 2's row not at all: 1.0, where the per-row loss gives (1 + 1 + 4) / 4."""
    from circuitkit.planted.siit import component_mean_change, logit_diff_match, logit_pair

    hl = IOIHighLevel(tiny_model.tokenizer)
    batch = hl.sample(random.Random(1), 4)
    pair = logit_pair(hl, batch)
    ref = torch.randn(4, len(tiny_model.tokenizer))
    moved = ref.clone()
    for row, change in enumerate([1.0, -1.0, 2.0, 0.0]):
        moved[row, pair[row, 0]] += change
    pick = torch.tensor([0, 0, 1, 2])
    assert abs(float(component_mean_change(moved, ref, pair, pick)) - 1.0) < 1e-5
    assert abs(float(logit_diff_match(moved, ref, pair)) - 1.5) < 1e-5
    assert abs(float(component_mean_change(moved, ref, pair, torch.tensor([0, 1, 2, 3]))) - 1.5) < 1e-5


def test_single_loss_scale_pressure_detached_live_relative():
    """The single-component loss under a common scale ``a`` of every logit, each row's task logit
    difference 5 ablated against 6 unablated: against a detached reference growing ``a`` pays (the
    feedback loop behind the collapses: d/da < 0); against the live reference shrinking pays (d/da > 0,
    resisted by the behaviour loss); in shares of the gap (``single_relative``) the scale is free (0)
    and the value is the squared share (1/6)^2."""
    from circuitkit.planted.config import PlantedConfig
    from circuitkit.planted.siit import single_loss

    rows = torch.arange(12)
    pair = torch.stack([rows % 4, rows % 4 + 4], 1)
    ablated, unablated = torch.zeros(12, 8), torch.zeros(12, 8)
    ablated[rows, pair[:, 0]], unablated[rows, pair[:, 0]] = 5.0, 6.0
    pick, soft = rows % 3, torch.zeros(12, dtype=torch.bool)

    def grad(live: bool, relative: bool) -> tuple[float, float]:
        cfg = PlantedConfig(name="t", task="ioi", single_mean=True, single_relative=relative)
        a = torch.tensor(1.0, requires_grad=True)
        ref = a * unablated if live else (a * unablated).detach()
        loss = single_loss(cfg, a * ablated, ref, pair, pick, soft)
        loss.backward()
        return float(loss), float(a.grad)

    assert grad(False, False) == pytest.approx((1.0, 2 * (5 - 6) * 5))
    assert grad(True, False) == pytest.approx((1.0, 2.0))
    value, slope = grad(True, True)
    assert value == pytest.approx(1 / 36) and abs(slope) < 1e-6
    per_row = PlantedConfig(name="t", task="ioi")  # no single_mean: every row's squared change
    assert float(single_loss(per_row, ablated, unablated, pair, pick, soft)) == pytest.approx(1.0)


def test_split_change_loss_takes_means_on_split_rows_only(tiny_model):
    """Hard rows change by 1 and 3 (squared: 1 + 9), the two split rows of one component by +2 and -2
    (mean 0): (1 + 9) / 4 = 2.5; all rows per-row would give (1 + 9 + 4 + 4) / 4 = 4.5; split rows of
    different components keep their squared means (share 1/2 x (4 + 4) / 2 = 2 more)."""
    from circuitkit.planted.siit import split_change_loss

    ref = torch.zeros(4, 10)
    pair = torch.tensor([[1, 2]] * 4)
    moved = ref.clone()
    moved[:, 1] = torch.tensor([1.0, 3.0, 2.0, -2.0])
    soft = torch.tensor([False, False, True, True])
    same = torch.tensor([5, 6, 0, 0])
    assert abs(float(split_change_loss(moved, ref, pair, same, soft)) - 2.5) < 1e-5
    none = torch.zeros(4, dtype=torch.bool)
    assert abs(float(split_change_loss(moved, ref, pair, same, none)) - 4.5) < 1e-5
    apart = torch.tensor([5, 6, 0, 1])
    assert abs(float(split_change_loss(moved, ref, pair, apart, soft)) - 4.5) < 1e-5


@pytest.mark.parametrize("single_mode", ["single_soft_mean", "single_mean"])
def test_training_loop_runs_every_option(tiny_model, single_mode):
    """Four SIIT steps on a tiny IOI recipe with every option on: every loss is reported and finite, and
    the weights move."""
    from circuitkit.planted.config import PlantedConfig
    from circuitkit.planted.siit import train_planted

    cfg = PlantedConfig(
        name="t", task="ioi", d_model=32, n_heads=4, d_mlp=64, n_ctx=32, steps=4, warmup=1, batch=8,
        text_batch=2, max_text_chars=20_000, p_block=0.5, p_freeze=0.5, p_pair=0.5, w_logit=1.0,
        w_logit_diff=1.0, pair_nodes=("duplicate", "s_inhibition"), w_attn=1.0, p_strict_mlp=0.7,
        iit_node_weights=(1.0, 1.0, 2.0, 1.0), extra={"augment": 0.5}, w_single=1.0, single_independent=0.5,
        single_focus=0.5, single_swap=0.5, project_last=single_mode == "single_mean",
        project_values=single_mode == "single_mean", w_sink=float(single_mode == "single_soft_mean"),
        sink_positions=("slot1", "slot2", "S2"), single_live=True,
        single_relative=single_mode == "single_mean", **{single_mode: True},
    )  # fmt: skip
    steps: list[dict] = []
    trained = train_planted(
        cfg,
        tiny_model.tokenizer,
        progress=False,
        on_step=lambda s, m: steps.append(
            {k: v.detach().clone() for k, v in m.state_dict().items()} if s in (0, 3) else {}
        ),
    )
    ema = trained.stats["final_losses_ema"]
    want = {"behaviour", "iit", "strict", "logit", "logit_diff", "single", "attn", "text"}
    assert set(ema) == want | ({"sink"} if cfg.w_sink else set())
    assert all(math.isfinite(v) for v in ema.values())
    # the per-component running squared change: every non-aligned head and MLP, none of the aligned
    sq = trained.stats["single_sq_change_ema"]
    aligned = {f"L{n.layer}H{n.head}" for n in trained.high_level.nodes}
    assert len(sq) == 3 * 4 + 3 - 4 and not aligned & set(sq) and {"MLP0", "MLP2"} <= set(sq)
    assert any(v != 1.0 for v in sq.values())  # updated from the measured changes (starts at 1)
    first, last = steps[0], steps[3]
    assert any(not torch.equal(first[k], last[k]) for k in first if k.endswith("W_Q"))
    if cfg.project_last:  # the last block's free MLP and heads stay off the answer directions
        from circuitkit.planted.direct import answer_basis

        q = answer_basis(trained.model, trained.high_level.answer_ids())
        assert trained.stats["project_last"]["components"] == ["L2H1", "L2H2", "MLP2"]
        assert trained.stats["project_last"]["directions"] == q.shape[1] > 10
        w = trained.model.blocks[2].mlp.W_out.detach()
        assert float((w @ q).norm()) < 1e-4 * float(w.norm())
        assert float((trained.model.blocks[2].attn.W_O[1].detach() @ q).norm()) < 1e-4
        pv = trained.stats["project_values"]
        assert pv["readers"] == ["L2H0", "L2H3"] and pv["directions"] == 2 * 8 and pv["rate"] == 1.0
        assert pv["left_in_read_space"] < 1e-4
        from circuitkit.planted.direct import value_read_basis

        v = value_read_basis(trained.model, [n for n in trained.high_level.nodes if n.label == "L2H0"])
        assert float((trained.model.blocks[0].attn.W_O[0].detach() @ v).norm()) < 1e-4
        assert float((trained.model.blocks[1].mlp.W_out.detach() @ v).norm()) < 1e-4
    else:
        assert "project_last" not in trained.stats and "project_values" not in trained.stats


def test_finetune_phase_starts_from_the_first_phases_weights(tiny_model, tmp_path):
    """``finetune`` adds a second phase with the overrides applied; ``init`` starts from the given weights
    (lr 0: weights stay exactly the donor's, so a phase that re-initialised would fail); build_planted runs
    both phases and the card records them."""
    from circuitkit.models import zoo
    from circuitkit.planted.build import build_planted
    from circuitkit.planted.config import PlantedConfig
    from circuitkit.planted.siit import train_planted

    small = dict(
        name="t", task="ioi", d_model=32, n_heads=4, d_mlp=64, n_ctx=32, steps=2, warmup=1, batch=4,
        text_batch=2, max_text_chars=20_000,
    )  # fmt: skip
    cfg = PlantedConfig(**small, finetune={"steps": 3, "w_single": 1.0, "lr": 1e-4})
    one, two = cfg.phases()
    assert (one.steps, one.w_single, one.finetune) == (2, 0.0, None)
    assert (two.steps, two.w_single, two.lr, two.finetune, two.init_from) == (3, 1.0, 1e-4, None, None)
    assert PlantedConfig(**small).phases() == [PlantedConfig(**small)]
    with pytest.raises(ValueError, match="unknown fields"):
        PlantedConfig(**small, finetune={"stepz": 3})

    donor = train_planted(one, tiny_model.tokenizer, progress=False).model
    frozen = train_planted(
        PlantedConfig(**{**small, "steps": 1, "lr": 0.0}), tiny_model.tokenizer, progress=False, init=donor
    ).model
    want, got = donor.state_dict(), frozen.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)

    lines: list[str] = []
    out = build_planted(cfg, out_dir=tmp_path / "m", validate=False, progress=False, log=lines.append)
    card = zoo.read_card(out)
    assert card["recipe"]["finetune"] == {"steps": 3, "w_single": 1.0, "lr": 1e-4}
    assert [p["steps"] for p in card["training"]["phases"]] == [2, 3] and card["training"]["steps"] == 5
    assert any(x.startswith("phase 2") for x in lines)

    # a saved first phase: only the fine-tuning phase trains, from exactly those weights (lr 0 here)
    first = build_planted(PlantedConfig(**small), out_dir=tmp_path / "p1", validate=False, progress=False)
    zero = PlantedConfig(**small, finetune={"steps": 1, "lr": 0.0})
    again = build_planted(zero, out_dir=tmp_path / "p2", validate=False, progress=False, first_phase=first)
    w1, w2 = zoo.read_model_dir(first).state_dict(), zoo.read_model_dir(again).state_dict()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    phases = zoo.read_card(again)["training"]["phases"]
    assert phases[0]["from_folder"] == str(first) and phases[1]["steps"] == 1
    with pytest.raises(ValueError, match=r"another first-phase recipe \(fields differ: \['seed'\]"):
        build_planted(
            PlantedConfig(**{**small, "seed": 1}, finetune={"steps": 1}),
            out_dir=tmp_path / "p3", validate=False, progress=False, first_phase=first,
        )  # fmt: skip
    with pytest.raises(ValueError, match="needs a two-phase recipe"):
        build_planted(PlantedConfig(**small), out_dir=tmp_path / "p4", progress=False, first_phase=first)


class _Scripted:
    """Stands in for a model: END logits scripted per row of one known batch."""

    def __init__(self, batch, end_logits):
        self.cfg = type("cfg", (), {"device": "cpu"})()
        self.batch, self.end_logits = batch, end_logits

    def __call__(self, tokens):
        assert torch.equal(tokens, self.batch.tokens)
        out = torch.zeros(*tokens.shape, self.end_logits.shape[-1])
        out[:, self.batch.positions["end"]] = self.end_logits
        return out


def test_behaviour_fit_catches_a_confident_coin_flip_on_abc_prompts(tiny_model, ioi_hl):
    """A model that reproduces the high-level output scores KL ~ 0; one that answers ABC prompts with
    +20 for the first name (a coin flip averaging out over prompts, invisible to accuracy and the mean
    gap) scores log 2-ish nats more per ABC prompt and |logit difference| 20 there, repeated rows intact."""
    from circuitkit.planted.validate import behaviour_fit

    batch = ioi_hl.sample(random.Random(3), 64, split="heldout")
    target = ioi_hl.output(batch)
    v = batch.variables
    abc = (v["S2"] != v["slot1"]) & (v["S2"] != v["slot2"])
    assert 0 < int(abc.sum()) < 64
    exact = target.clamp_min(1e-9).log()
    got = behaviour_fit(_Scripted(batch, exact), ioi_hl, n=64, seed=3)
    assert got["kl"] < 1e-4 and got["abc_abs_logit_diff"] < 1e-4
    flip = exact.clone()
    rows = abc.nonzero().flatten()
    flip[rows, v["slot1"][rows]] += 20.0
    bad = behaviour_fit(_Scripted(batch, flip), ioi_hl, n=64, seed=3)
    assert abs(bad["abc_abs_logit_diff"] - 20.0) < 1e-3 and bad["kl_repeated"] < 1e-4
    assert bad["kl_abc"] > 5 and bad["kl"] > 1
