"""Every registered node method against the planted circuits of ck-planted-ioi and ck-planted-gt.

The planted models (circuitkit.planted, Strict IIT after Gupta et al. 2024, InterpBench) have a circuit
known by construction: 4 heads for IOI, 2 heads + 2 MLPs for greater-than, every other head and MLP
inert on the task. For each method: ROC AUC of |score| over heads and MLPs (all positions) against the
planted nodes, precision / recall of the top k (k = the circuit's size), faithfulness of that top-k
circuit (everything else mean-ablated over the corrupted prompts; Wang et al. 2022) and the cost
(passes over the batch as the method reports them, seconds on the shared 2-core machine).

    python benchmarks/planted_methods.py --prompts 64
"""

from __future__ import annotations

import argparse
import time

import torch

from circuitkit.evaluation.faithfulness import faithfulness
from circuitkit.evaluation.ground_truth import score_ranking
from circuitkit.methods import MethodRequest, available, run_method
from circuitkit.models import load_model, read_card
from circuitkit.models.zoo import builtin_dir
from circuitkit.planted.build import task_data
from circuitkit.tasks.ground_truth import ground_truth

# (label, registry name, options); heads scores heads only, the others heads and MLPs
METHODS: list[tuple[str, str, dict]] = [
    ("activation", "activation", {}),
    ("atp", "atp", {}),
    ("atp*", "atp*", {}),
    ("atp* +GradDrop", "atp*", {"grad_drop": True}),
    ("relp ln+identity", "relp", {"rules": "ln+identity"}),
    ("relp ln+identity+attention", "relp", {"rules": "ln+identity+attention"}),
    ("ig (10 steps)", "ig", {"steps": 10}),
    ("heads (discrete SAE)", "heads", {}),
]
EDGE_METHODS: list[tuple[str, str, dict]] = [
    ("edge-patching", "edge-patching", {}),
    ("eap", "eap", {}),
    ("eap-ig (5 steps)", "eap-ig", {"steps": 5}),
]
MODELS = ("ck-planted-gt",)


def planted_edge_names(circuit) -> set[tuple[str, str]]:
    """The card's planted edges as (sender, receiver node) names of circuitkit.edges' graph."""
    comp = {n["name"]: n["label"] for n in circuit.details["nodes"]}
    comp["tokens"], comp["logits"] = "embed", "logits"
    return {(comp[a], comp[b]) for a, b in circuit.details["edges"]}


def evaluate_edges(model, data, circuit, label: str, name: str, options: dict) -> dict:
    """ROC AUC and precision / recall at k of |edge score| against the planted edges; a receiver's q, k
    and v inputs are one node (the largest |score| of the three)."""
    req = MethodRequest(model=model, data=data, options=dict(options))
    t0 = time.perf_counter()
    table = run_method(name, req).table
    seconds = time.perf_counter() - t0
    node = table["receiver"].str.split(".").str[0]
    best = table.assign(node=node, abs=table["score"].abs()).groupby(["sender", "node"])["abs"].max()
    planted = planted_edge_names(circuit)
    labels = torch.tensor([(s, r) in planted for s, r in best.index])
    scores = torch.tensor(best.to_numpy(), dtype=torch.float64)
    r = score_ranking(scores, labels)
    return {
        "method": label,
        "auc": r.roc_auc,
        "k": r.k,
        "precision": r.precision,
        "recall": r.recall,
        "n_edges": len(best),
        "seconds": seconds,
    }


def evaluate(model, data, circuit, label: str, name: str, options: dict) -> dict:
    method = available()[name]
    fams = ("head",) if method.families == ("head",) else ("head", "mlp_out_all")
    req = MethodRequest(model=model, data=data, families=fams, options=dict(options))
    t0 = time.perf_counter()
    table = run_method(name, req)
    seconds = time.perf_counter() - t0
    n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
    head = table.grid("head").abs().nan_to_num(0.0)
    mlp = table.grid("mlp_out_all").abs().nan_to_num(0.0) if "mlp_out_all" in fams else torch.zeros(n_l)
    head_true = circuit.head_mask(n_l, n_h)
    mlp_true = torch.zeros(n_l, dtype=torch.bool)
    mlp_true[list(circuit.mlps)] = True
    scores = torch.cat([head.reshape(-1), mlp.double().reshape(-1)])
    labels = torch.cat([head_true.reshape(-1), mlp_true])
    r = score_ranking(scores, labels)
    # the top-k components as a circuit; unscored MLPs (heads method) count as not chosen
    chosen = torch.zeros_like(labels)
    chosen[torch.argsort(scores, descending=True, stable=True)[: r.k]] = True
    f = faithfulness(
        model,
        data.clean_tokens,
        data.metric,
        chosen[: n_l * n_h].view(n_l, n_h),
        chosen[n_l * n_h :],
        reference_tokens=data.corrupted_tokens,
        ablation="mean",
    )
    heads_only = score_ranking(head, head_true)
    return {
        "method": label,
        "auc": r.roc_auc,
        "auc_heads": heads_only.roc_auc,
        "k": r.k,
        "precision": r.precision,
        "recall": r.recall,
        "faithfulness": f.faithfulness,
        "passes": table.provenance.passes,
        "seconds": seconds,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--models", nargs="*", default=list(MODELS))
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    rows = []
    for name in args.models:
        model = load_model(name, device=args.device)
        task = next(iter(read_card(builtin_dir(name))["circuits"]))
        circuit = ground_truth(model, task)
        data = task_data(task, model.tokenizer, args.prompts, args.seed).to(args.device)
        planted = faithfulness(
            model,
            data.clean_tokens,
            data.metric,
            circuit.head_mask(model.cfg.n_layers, model.cfg.n_heads),
            torch.tensor([layer in circuit.mlps for layer in range(model.cfg.n_layers)]),
            reference_tokens=data.corrupted_tokens,
            ablation="mean",
        )
        print(f"{name} ({task}): planted circuit faithfulness {planted.faithfulness:.3f} (mean ablation)")
        for label, method, options in METHODS:
            row = {"model": name, "task": task, **evaluate(model, data, circuit, label, method, options)}
            rows.append(row)
            print(
                f"  {label:28s} AUC {row['auc']:.3f} (heads {row['auc_heads']:.3f})  P@{row['k']} "
                f"{row['precision']:.2f} R {row['recall']:.2f}  faithful {row['faithfulness']:.3f}  "
                f"passes {row['passes']:.0f}  {row['seconds']:.2f} s",
                flush=True,
            )
        for label, method, options in EDGE_METHODS:
            if method not in available():
                print(f"  {label:28s} not registered")
                continue
            e = evaluate_edges(model, data, circuit, label, method, options)
            print(
                f"  edges {label:22s} AUC {e['auc']:.3f}  P@{e['k']} {e['precision']:.2f} "
                f"R {e['recall']:.2f}  ({e['n_edges']} sender -> node edges)  {e['seconds']:.2f} s",
                flush=True,
            )
    print("\n| model | method | ROC AUC (heads+MLPs) | AUC heads | P@k | R@k | faithfulness@k | passes | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['method']} | {r['auc']:.3f} | {r['auc_heads']:.3f} | "
            f"{r['precision']:.2f} | {r['recall']:.2f} | {r['faithfulness']:.3f} | {r['passes']:.0f} | "
            f"{r['seconds']:.2f} |"
        )


if __name__ == "__main__":
    main()
