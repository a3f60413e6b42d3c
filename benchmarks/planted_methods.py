"""Every node and edge method against the planted circuits of the shipped planted models (ck-planted-gt,
ck-planted-ioi).

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
import json
import time
from pathlib import Path

import torch

from circuitkit.edges.evaluation import faithfulness_curve as edge_faithfulness_curve
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
MODELS = ("ck-planted-gt", "ck-planted-ioi")
EDGE_SIZES = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50)
"""Edge circuit sizes of the edge faithfulness curves (top-k edges kept, the rest corrupted)."""


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
    run = run_method(name, req)
    seconds = time.perf_counter() - t0
    table = run.table
    node = table["receiver"].str.split(".").str[0]
    best = table.assign(node=node, abs=table["score"].abs()).groupby(["sender", "node"])["abs"].max()
    planted = planted_edge_names(circuit)
    labels = torch.tensor([(s, r) in planted for s, r in best.index])
    scores = torch.tensor(best.to_numpy(), dtype=torch.float64)
    r = score_ranking(scores, labels)
    sizes = [k for k in EDGE_SIZES if k <= len(table)]
    curve = edge_faithfulness_curve(model, data.clean_tokens, data.corrupted_tokens, data.metric, run, sizes)
    return {
        "method": label,
        "auc": r.roc_auc,
        "k": r.k,
        "precision": r.precision,
        "recall": r.recall,
        "n_edges": len(best),
        "curve": [(k, round(float(f), 4)) for k, f in curve],
        "passes": run.provenance.passes,
        "seconds": seconds,
    }


def node_curve(model, data, scores: torch.Tensor, n_l: int, n_h: int) -> list[tuple[int, float]]:
    """Faithfulness of the top-k heads and MLPs (one ranking) for every k, the rest mean-ablated."""
    order = torch.argsort(scores, descending=True, stable=True)
    out = []
    for k in range(len(scores) + 1):
        chosen = torch.zeros(len(scores), dtype=torch.bool)
        chosen[order[:k]] = True
        f = faithfulness(
            model,
            data.clean_tokens,
            data.metric,
            chosen[: n_l * n_h].view(n_l, n_h),
            chosen[n_l * n_h :],
            reference_tokens=data.corrupted_tokens,
            ablation="mean",
        )
        out.append((k, round(float(f.faithfulness), 4)))
    return out


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
    heads_only = score_ranking(head, head_true)
    # the top-k components as circuits of every size; unscored MLPs (heads method) rank last
    curve = node_curve(model, data, scores, n_l, n_h)
    return {
        "method": label,
        "auc": r.roc_auc,
        "auc_heads": heads_only.roc_auc,
        "k": r.k,
        "precision": r.precision,
        "recall": r.recall,
        "faithfulness": dict(curve)[r.k],
        "curve": curve,
        "passes": table.provenance.passes,
        "seconds": seconds,
    }


def write_outputs(rows: list[dict], edge_rows: list[dict], out: Path) -> None:
    """The rows as JSON and the faithfulness curves as one HTML figure per model (nodes, edges)."""
    from circuitkit.viz import faithfulness_curve

    out.mkdir(parents=True, exist_ok=True)
    (out / "planted_methods.json").write_text(json.dumps({"nodes": rows, "edges": edge_rows}, indent=1))
    for model in sorted({r["model"] for r in rows + edge_rows}):
        for kind, rs, x_title in (
            ("nodes", rows, "heads + MLPs kept (top-k)"),
            ("edges", edge_rows, "edges kept (top-k)"),
        ):
            curves = {
                r["method"]: ([k for k, _ in r["curve"]], [f for _, f in r["curve"]])
                for r in rs
                if r["model"] == model
            }
            if curves:
                fig = faithfulness_curve(curves, x_title=x_title)
                fig.update_layout(title=f"{model}: faithfulness of the top-k {kind}")
                fig.write_html(out / f"faithfulness_{model}_{kind}.html", include_plotlyjs="cdn")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--models", nargs="*", default=list(MODELS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="JSON + curve figures")
    args = p.parse_args()
    rows, edge_rows = [], []
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
            e = {"model": name, "task": task, **evaluate_edges(model, data, circuit, label, method, options)}
            edge_rows.append(e)
            print(
                f"  edges {label:22s} AUC {e['auc']:.3f}  P@{e['k']} {e['precision']:.2f} "
                f"R {e['recall']:.2f}  ({e['n_edges']} sender -> node edges)  {e['seconds']:.2f} s",
                flush=True,
            )
    write_outputs(rows, edge_rows, args.out)
    print(
        "\n| model | method | ROC AUC | P@k | R@k | faithfulness@k | faithfulness, mean over k | passes | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mean_f = sum(f for _, f in r["curve"]) / len(r["curve"])
        print(
            f"| {r['model']} | {r['method']} (nodes) | {r['auc']:.3f} (heads {r['auc_heads']:.3f}) | "
            f"{r['precision']:.2f} | {r['recall']:.2f} | {r['faithfulness']:.3f} | {mean_f:.3f} | "
            f"{r['passes']:.0f} | {r['seconds']:.2f} |"
        )
    for r in edge_rows:
        at_k = dict(r["curve"]).get(r["k"], float("nan"))
        mean_f = sum(f for _, f in r["curve"]) / len(r["curve"])
        print(
            f"| {r['model']} | {r['method']} (edges) | {r['auc']:.3f} | {r['precision']:.2f} | "
            f"{r['recall']:.2f} | {at_k:.3f} | {mean_f:.3f} | {r['passes']:.0f} | {r['seconds']:.2f} |"
        )


if __name__ == "__main__":
    main()
