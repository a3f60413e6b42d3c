"""Exact edge activation patching: the effect of one edge's sender value on one receiver's input.

Path patching per edge (Wang et al. 2022; Goldowsky-Dill et al. 2023), the reference the edge scores of
ACDC (Conmy et al. 2023) and EAP / EAP-IG estimate. Patching edge ``s -> r`` in the target run means

    input of r  :=  input of r (target run)  +  a_s,source - a_s,target

with every other receiver reading the residual stream as the target run computes it; ``r``'s changed
output then flows through the rest of the model as usual. Denoising: target = corrupted prompts,
source = clean ones; noising: the reverse. The score is ``m_patched - m_target``.

:func:`edge_patching` does every edge in batched forwards: the edges into one layer's receivers share
passes that start at that layer from the target run's residual stream, one patched copy per edge on the
batch axis. Only what an edge changes is computed: the receiver's one head (its query, key or value) or
its MLP, from the first position where any sender differs between the runs (earlier positions are the
target run's; attention reads their keys and values from it), and, for a metric that reads the last
position only, the last layer and the unembedding at that position alone.

:func:`edge_patching_loop` is the plain definition — one TransformerLens forward per edge with a hook on
the receiver's input — kept as the oracle for tests and the benchmark. :func:`patch_edges` runs a model
with any *set* of edges patched at once (every edge out of one node: that node patched; every edge outside
a circuit: the circuit run of faithfulness).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer
from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry
from transformer_lens.utilities import apply_softcap
from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

from circuitkit.edges.activations import head_outputs, sender_hook_names, sender_outputs
from circuitkit.edges.graph import QKV, EdgeGraph, Receiver, check_edge_model, split_inputs
from circuitkit.edges.scores import EdgeScores
from circuitkit.patching.activation import Direction, Metric, check_metric
from circuitkit.patching.attribution import target_and_source
from circuitkit.tasks.metrics import reads_last_position_only

EdgeSpec = Bool[Tensor, "n_senders n_receivers"] | Sequence[str] | Sequence[tuple[str, str]] | None


def as_edge_mask(graph: EdgeGraph, edges: EdgeSpec) -> Tensor:
    """Edges given as a bool mask, names or pairs (None: every edge) -> a checked ``[S, R]`` bool mask."""
    if edges is None:
        return graph.mask.clone()
    if isinstance(edges, Tensor):
        if edges.shape != graph.mask.shape or edges.dtype != torch.bool:
            raise ValueError(f"an edge mask must be a bool tensor of shape {tuple(graph.mask.shape)}")
        if (edges & ~graph.mask).any():
            raise ValueError("the edge mask marks pairs that are not edges (sender after receiver)")
        return edges.cpu().clone()
    return graph.edge_mask(list(edges))


def _check_fast(model: HookedTransformer) -> None:
    """Refuse, by name, blocks the batched passes do not reproduce (they compute attention themselves)."""
    cfg = model.cfg
    why = []
    if cfg.use_split_qkv_input or cfg.use_attn_in or cfg.use_hook_mlp_in:
        why.append("split-input hooks switched on")
    if cfg.original_architecture in POST_NORM_ARCHITECTURES or getattr(
        cfg, "use_normalization_before_and_after", False
    ):
        why.append("post-norms")
    if cfg.positional_embedding_type != "standard":
        why.append(f"{cfg.positional_embedding_type} position embeddings")
    if cfg.use_qk_norm or cfg.clip_qkv is not None or cfg.attention_dir != "causal":
        why.append("q/k norms, q/k/v clipping or non-causal attention")
    if cfg.attn_scores_soft_cap > 0 or cfg.use_attention_sinks or cfg.use_logn_attn:
        why.append("attention soft-capping, sinks or log-n scaling")
    if cfg.load_in_4bit or cfg.n_key_value_heads is not None or cfg.n_devices > 1:
        why.append("4-bit weights, grouped-query attention or several devices")
    if why:
        raise ValueError(
            f"batched edge patching computes one head's attention itself and supports standard GPT-2-style "
            f"blocks; {cfg.model_name} has {', '.join(why)}. Use edge_patching_loop (method option "
            "implementation=loop), which runs TransformerLens's own forward per edge"
        )


def _first_change(delta: Tensor) -> int:
    """First position where any sender's output differs between the runs (its length if none)."""
    differs = (delta != 0).any(-1).any(1).any(0)  # [pos]
    hits = torch.nonzero(differs)
    return int(hits[0]) if len(hits) else delta.shape[2]


class _EdgeRunner:
    """Target-run tensors and the partial forwards that patch one receiver input per batch copy."""

    def __init__(self, model: HookedTransformer, tc: dict[str, Tensor], delta: Tensor, last_only: bool):
        self.model, self.tc, self.delta = model, tc, delta
        self.cfg = model.cfg
        self.last_only = last_only
        self.batch, self.seq = delta.shape[1], delta.shape[2]
        # Earlier positions equal the target run's only when the metric cannot read them.
        self.start = _first_change(delta) if last_only else 0

    def query_positions(self, layer: int) -> slice:
        """Positions whose block output must be computed at ``layer``."""
        if self.last_only and layer == self.cfg.n_layers - 1:
            return slice(self.seq - 1, self.seq)
        return slice(self.start, self.seq)

    def attention(self, layer: int, senders: Tensor, kinds: Tensor, heads: Tensor) -> Tensor:
        """Logits with copy ``c``'s head ``heads[c]`` reading ``senders[c]``'s source value in its
        query / key / value input (``kinds[c]`` = 0 / 1 / 2)."""
        block, tc, start = self.model.blocks[layer], self.tc, self.start
        attn = block.attn
        x = tc[f"blocks.{layer}.hook_resid_pre"][None, :, start:] + self.delta[senders][:, :, start:]
        xn = block.ln1(x)  # [n, batch, pos - start, d_model]
        w = torch.stack([attn.W_Q, attn.W_K, attn.W_V])[kinds, heads]  # [n, d_model, d_head]
        b = torch.stack([attn.b_Q, attn.b_K, attn.b_V])[kinds, heads]  # [n, d_head]
        new = torch.einsum("nbpd,nde->nbpe", xn, w) + b[:, None, None]
        qkv = []
        for i, x_kind in enumerate(QKV):
            t = tc[f"blocks.{layer}.attn.hook_{x_kind}"][:, :, heads].permute(2, 0, 1, 3).clone()
            sel = kinds == i
            t[sel, :, start:] = new[sel]
            qkv.append(t)  # [n, batch, pos, d_head]
        qp = self.query_positions(layer)
        q, k, v = qkv[0][:, :, qp], qkv[1], qkv[2]
        scores = q @ k.transpose(-1, -2) / attn.attn_scale  # [n, batch, q_pos, k_pos]
        q_idx = torch.arange(self.seq, device=q.device)[qp]
        causal = torch.arange(self.seq, device=q.device)[None, :] <= q_idx[:, None]
        pattern = torch.softmax(scores.masked_fill(~causal, float("-inf")), -1).to(v.dtype)
        z = pattern @ v
        z_t = tc[f"blocks.{layer}.attn.hook_z"][:, qp][:, :, heads].permute(2, 0, 1, 3)
        out = torch.einsum("nbpe,nem->nbpm", z - z_t, attn.W_O[heads])
        if self.cfg.attn_only:  # no MLP: the block's output is resid_pre + attention
            return self.finish(tc[f"blocks.{layer}.hook_resid_post"][None, :, qp] + out, layer)
        resid_mid = tc[f"blocks.{layer}.hook_resid_mid"][None, :, qp] + out
        return self.finish(resid_mid + block.mlp(block.ln2(resid_mid)), layer)

    def mlp(self, layer: int, senders: Tensor) -> Tensor:
        """Logits with copy ``c``'s MLP input reading ``senders[c]``'s source value."""
        block, qp = self.model.blocks[layer], self.query_positions(layer)
        resid_mid = self.tc[f"blocks.{layer}.hook_resid_mid"][None, :, qp]
        x = resid_mid + self.delta[senders][:, :, qp]
        return self.finish(resid_mid + block.mlp(block.ln2(x)), layer)

    def logits(self, senders: Tensor) -> Tensor:
        """Logits with copy ``c``'s unembedding input reading ``senders[c]``'s source value."""
        qp = slice(self.seq - 1, self.seq) if self.last_only else slice(0, self.seq)
        final = self.tc[f"blocks.{self.cfg.n_layers - 1}.hook_resid_post"][None, :, qp]
        x = final + self.delta[senders][:, :, qp]
        return self._unembed(x.reshape(-1, *x.shape[2:]))

    def finish(self, resid_post: Float[Tensor, "n batch pos d_model"], layer: int) -> Tensor:
        """Run the layers after ``layer`` on each copy's residual stream.

        Returns logits ``[n * batch, pos, vocab]``.
        """
        n = resid_post.shape[0]
        resid = resid_post.reshape(n * self.batch, *resid_post.shape[2:])
        last = self.cfg.n_layers - 1
        for i in range(layer + 1, self.cfg.n_layers):
            block = self.model.blocks[i]
            past = self._past(i, n)
            if self.last_only and i == last and resid.shape[1] > 1:
                # Keys and values of every position, then the block at the last position alone.
                normed = block.ln1(resid[:, :-1])
                _, k, v = block.attn.calculate_qkv_matrices(normed, normed, normed)
                if past is not None:
                    k, v = torch.cat([past.past_keys, k], 1), torch.cat([past.past_values, v], 1)
                past = TransformerLensKeyValueCacheEntry(k, v, frozen=True)
                resid = resid[:, -1:]
            resid = block(resid, past_kv_cache_entry=past)
        return self._unembed(resid)

    def _past(self, layer: int, n: int) -> TransformerLensKeyValueCacheEntry | None:
        """The target run's keys and values before ``start`` at ``layer``, once per copy."""
        if not self.start:
            return None
        k = self.tc[f"blocks.{layer}.attn.hook_k"][:, : self.start].repeat(n, 1, 1, 1)
        v = self.tc[f"blocks.{layer}.attn.hook_v"][:, : self.start].repeat(n, 1, 1, 1)
        return TransformerLensKeyValueCacheEntry(k, v, frozen=True)

    def _unembed(self, resid: Float[Tensor, "copies pos d_model"]) -> Tensor:
        model = self.model
        if self.last_only:
            resid = resid[:, -1:]
        if self.cfg.normalization_type is not None:
            resid = model.ln_final(resid)
        return apply_softcap(model.unembed(resid), self.cfg.output_logits_soft_cap)


def _target_names(graph: EdgeGraph) -> list[str]:
    names = sender_hook_names(graph)
    for layer in range(graph.n_layers):
        names += [f"blocks.{layer}.hook_{x}" for x in ("resid_pre", "resid_mid", "resid_post")]
        names += [f"blocks.{layer}.attn.hook_{x}" for x in QKV]
    return [*names, graph.final_hook]


def _reference_runs(model, graph, target, source, metric, names):
    with torch.no_grad():
        t_logits, tc = model.run_with_cache(target, names_filter=lambda n: n in names)
        s_names = sender_hook_names(graph)
        s_logits, sc = model.run_with_cache(source, names_filter=lambda n: n in s_names)
        base_tgt = float(check_metric(metric(t_logits)))
        base_src = float(check_metric(metric(s_logits)))
        delta = sender_outputs(model, graph, dict(sc.items())) - sender_outputs(
            model, graph, dict(tc.items())
        )
    return dict(tc.items()), delta, base_tgt, base_src


def edge_patching(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    *,
    edges: EdgeSpec = None,
    direction: Direction = "denoising",
    max_tokens: int | None = None,
    progress: bool = False,
) -> EdgeScores:
    """Exact effect ``m_patched - m_target`` of patching each edge alone, batched.

    Args:
        metric: logits ``[batch, pos, vocab]`` -> scalar; a metric marked by
            :func:`circuitkit.tasks.metrics.last_position_metric` (every task metric) lets the passes
            skip positions and layers it cannot see.
        edges: which edges to score (default every edge): a bool ``[n_senders, n_receivers]`` mask or
            names (``"L0H2->L3H1.q"``); unscored edges are NaN.
        max_tokens: most token positions in one forward (default 8192 on a CPU, 16384 on a GPU).
    """
    t0 = time.perf_counter()
    check_edge_model(model)
    _check_fast(model)
    graph = EdgeGraph.of(model)
    want = as_edge_mask(graph, edges)
    target, source = target_and_source(model, clean_tokens, corrupted_tokens, direction)
    last_only = reads_last_position_only(metric)
    tc, delta, base_tgt, base_src = _reference_runs(
        model, graph, target, source, metric, _target_names(graph)
    )
    er = _EdgeRunner(model, tc, delta, last_only)
    if max_tokens is None:
        max_tokens = 8192 if torch.device(str(model.cfg.device)).type == "cpu" else 16384
    batch = target.shape[0]
    per = max(1, max_tokens // (batch * max(1, er.seq - er.start)))
    scores = torch.full(graph.mask.shape, float("nan"), dtype=torch.float64)
    device = delta.device
    bar = tqdm(total=int(want.sum()), desc="edge patching", disable=not progress)

    def sweep(pairs: list[tuple[int, int]], run) -> None:
        for i in range(0, len(pairs), per):
            chunk = pairs[i : i + per]
            with torch.no_grad():
                logits = run(chunk)
            logits = logits.view(len(chunk), batch, *logits.shape[1:])
            for c, (s, r) in enumerate(chunk):
                scores[s, r] = float(check_metric(metric(logits[c]))) - base_tgt
            bar.update(len(chunk))

    if er.start >= er.seq:  # the runs do not differ: no edge changes anything
        scores[want] = 0.0
    else:
        recv = graph.receivers
        for layer in range(graph.n_layers + 1):
            idx = [j for j, r in enumerate(recv) if r.layer == layer]
            pairs = [(s, j) for j in idx for s in want[:, j].nonzero().flatten().tolist()]
            attn_pairs = [p for p in pairs if recv[p[1]].kind in QKV]
            mlp_pairs = [p for p in pairs if recv[p[1]].kind == "mlp"]
            logit_pairs = [p for p in pairs if recv[p[1]].kind == "logits"]

            def run_attn(chunk, layer=layer):
                rs = [recv[j] for _, j in chunk]
                return er.attention(
                    layer,
                    torch.tensor([s for s, _ in chunk], device=device),
                    torch.tensor([QKV.index(r.kind) for r in rs], device=device),
                    torch.tensor([r.head for r in rs], device=device),
                )

            sweep(attn_pairs, run_attn)
            sweep(
                mlp_pairs,
                lambda chunk, layer=layer: er.mlp(layer, torch.tensor([s for s, _ in chunk], device=device)),
            )
            sweep(logit_pairs, lambda chunk: er.logits(torch.tensor([s for s, _ in chunk], device=device)))
    bar.close()
    n_edges = int(want.sum())
    return EdgeScores(
        "edge-patching",
        graph,
        scores,
        base_tgt,
        base_src,
        passes=2.0 + n_edges,
        seconds=time.perf_counter() - t0,
        direction=direction,
        n_prompts=int(batch),
        options={"edges": "all" if edges is None else n_edges},
    )


def _add_at(receiver: Receiver, value: Tensor):
    """Forward hook adding ``value`` [batch, pos, d_model] to one receiver's input."""

    def hook(act: Tensor, hook) -> Tensor:
        act = act.clone()
        if receiver.kind in QKV:
            act[:, :, receiver.head] += value
        else:
            act += value
        return act

    return hook


def _receiver_hook(graph: EdgeGraph, r: Receiver) -> str:
    return graph.final_hook if r.kind == "logits" else r.hook_name


def edge_patching_loop(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    *,
    edges: EdgeSpec = None,
    direction: Direction = "denoising",
    progress: bool = False,
) -> EdgeScores:
    """The definition, one edge at a time: a full TransformerLens forward on the target prompts with
    ``a_s,source - a_s,target`` added to the receiver's split input hook. Slow; any architecture
    :func:`check_edge_model` accepts."""
    t0 = time.perf_counter()
    check_edge_model(model)
    graph = EdgeGraph.of(model)
    want = as_edge_mask(graph, edges)
    target, source = target_and_source(model, clean_tokens, corrupted_tokens, direction)
    _tc, delta, base_tgt, base_src = _reference_runs(
        model, graph, target, source, metric, sender_hook_names(graph)
    )
    scores = torch.full(graph.mask.shape, float("nan"), dtype=torch.float64)
    pairs = want.nonzero().tolist()
    with split_inputs(model), torch.no_grad():
        for s, r in tqdm(pairs, desc="edge patching (loop)", disable=not progress):
            recv = graph.receivers[r]
            logits = model.run_with_hooks(
                target, fwd_hooks=[(_receiver_hook(graph, recv), _add_at(recv, delta[s]))]
            )
            scores[s, r] = float(check_metric(metric(logits))) - base_tgt
    return EdgeScores(
        "edge-patching",
        graph,
        scores,
        base_tgt,
        base_src,
        passes=2.0 + len(pairs),
        seconds=time.perf_counter() - t0,
        direction=direction,
        n_prompts=int(target.shape[0]),
        options={"implementation": "loop"},
    )


def patch_edges(
    model: HookedTransformer,
    run_tokens: Int[Tensor, "batch pos"],
    source_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    edges: EdgeSpec,
) -> float:
    """The metric of ``run_tokens`` with every given edge patched at once.

    For each edge ``s -> r`` in the set, ``r``'s input takes ``s``'s output from the ``source_tokens`` run
    in place of ``s``'s output in *this* run (which upstream patches may already have changed); every
    other term of every receiver's input is this run's. Patching every edge out of one node is patching
    that node; patching every edge outside a circuit C, with the corrupted prompts as source, is the
    circuit run of faithfulness.
    """
    check_edge_model(model)
    graph = EdgeGraph.of(model)
    want = as_edge_mask(graph, edges)
    device = model.cfg.device
    run_tokens, source_tokens = run_tokens.to(device), source_tokens.to(device)
    s_names = sender_hook_names(graph)
    with torch.no_grad():
        _, sc = model.run_with_cache(source_tokens, names_filter=lambda n: n in s_names)
        src = sender_outputs(model, graph, dict(sc.items()))
    # Senders of this run in graph order, filled as the forward reaches them.
    cur: list[Tensor] = []

    def keep_embed(act: Tensor, hook) -> None:
        cur.clear()
        cur.append(act[None])

    def keep_heads(z: Tensor, hook) -> None:
        cur.append(head_outputs(model, int(hook.name.split(".")[1]), z))

    def keep_mlp(act: Tensor, hook) -> None:
        cur.append(act[None])

    def receive(act: Tensor, hook) -> Tensor:
        done = torch.cat(cur)  # senders written so far
        n = done.shape[0]
        diff = src[:n] - done  # [senders, batch, pos, d_model]
        name = hook.name
        if name == graph.final_hook:
            cols = [len(graph.receivers) - 1]
        else:
            layer, kind = int(name.split(".")[1]), name.split(".")[-1]
            cols = [
                j
                for j, r in enumerate(graph.receivers)
                if r.layer == layer and r.hook_name.split(".")[-1] == kind
            ]
        m = want[:n, cols].to(diff.dtype).to(diff.device)  # [senders, receivers at this hook]
        add = torch.einsum("sbpd,sr->bprd", diff, m)
        return act + (add if act.ndim == 4 else add[:, :, 0])

    hooks: list = [("blocks.0.hook_resid_pre", keep_embed)]
    for layer in range(graph.n_layers):
        hooks += [(f"blocks.{layer}.hook_{x}_input", receive) for x in QKV]
        hooks.append((f"blocks.{layer}.attn.hook_z", keep_heads))
        if graph.has_mlp:
            hooks += [(f"blocks.{layer}.hook_mlp_in", receive), (f"blocks.{layer}.hook_mlp_out", keep_mlp)]
    hooks.append((graph.final_hook, receive))
    with split_inputs(model), torch.no_grad():
        logits = model.run_with_hooks(run_tokens, fwd_hooks=hooks)
    return float(check_metric(metric(logits)))
