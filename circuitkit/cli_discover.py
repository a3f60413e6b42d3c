"""``circuitkit discover`` and ``circuitkit evaluate``: run methods on a task, write result files.

    circuitkit discover --model tiny --task ioi --method atp --families head,resid_pre --out results/
    circuitkit evaluate --model tiny --task ioi --method atp --method relp:rules=ln+identity --out results/

``discover`` writes ``OUT/{model}_{task}_{method}.parquet`` + ``.json`` (a :class:`ResultTable`).
``evaluate`` writes the exact activation-patching table, each method's table, ``correlation`` (Pearson /
Spearman per family with cost), and, where the model has a ground-truth circuit, ``ground_truth``
(ROC AUC, precision / recall / F1 of the head scores) and ``faithfulness`` (curve vs circuit size).

Edge methods (``eap``, ``eap-ig``, ``edge-patching``; :data:`circuitkit.edges.method.EDGE_METHODS`) are
evaluated against exact edge patching instead, beside any node methods in the same call::

    circuitkit evaluate --model tiny --task ioi --method eap --method eap-ig:steps=5 --out results/

writes ``{model}_{task}_edge-patching`` (the reference; ``--method edge-patching:implementation=loop``
chooses how it runs), each edge method's table, ``edge_correlation``, ``edge_faithfulness`` (top-k edges
kept, every other edge patched to its corrupted value) and, where the model's card has ground-truth
edges (planted circuits), ``edge_ground_truth`` (node-pair edges, see
:func:`circuitkit.edges.evaluation.score_against_node_edges`).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from circuitkit.components import DEFAULT_FAMILIES, FAMILIES


def _families(text: str) -> list[str]:
    fams = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in fams if f not in FAMILIES]
    if bad or not fams:
        raise argparse.ArgumentTypeError(f"unknown families {bad}; choose from {', '.join(FAMILIES)}")
    return fams


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _option(text: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} must be KEY=VALUE (e.g. steps=20)")
    return key.strip(), value.strip()


def _common(p: argparse.ArgumentParser) -> None:
    from circuitkit.tasks import task_names

    p.add_argument(
        "--model", default="tiny", help="built-in name (tiny, default), TransformerLens name or folder"
    )
    p.add_argument("--task", default="ioi", choices=task_names(), help="task whose prompts to use")
    p.add_argument(
        "--families",
        type=_families,
        default=list(DEFAULT_FAMILIES),
        help=f"comma-separated component families (default {','.join(DEFAULT_FAMILIES)}); "
        f"all: {','.join(FAMILIES)}",
    )
    p.add_argument(
        "--n-prompts",
        type=_positive_int,
        default=20,
        help="prompt pairs (refused up front when the estimated memory exceeds what is available)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the prompts (and resampling)")
    p.add_argument("--split", default="heldout", help="task split to draw prompts from")
    p.add_argument("--direction", default="denoising", choices=["denoising", "noising"])
    p.add_argument("--ablation", default="patch", choices=["patch", "zero", "mean", "resample"])
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--out", default="results", help="output folder for the result files (checked first)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register(subparsers) -> None:
    names = "activation, atp, atp*, relp, ig, heads, features and any other registered"
    d = subparsers.add_parser("discover", help="score components with one method and write a result table")
    _common(d)
    d.add_argument("--method", default="atp", help=f"method (registered: {names})")
    d.add_argument(
        "--option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method option, repeatable, parsed by the method's declared type "
        "(ig: steps=20; relp: rules=ln+identity; atp*: grad_drop=true)",
    )
    d.set_defaults(func=_cmd_discover)

    e = subparsers.add_parser(
        "evaluate", help="compare methods with activation patching; ROC / F1 vs ground truth; faithfulness"
    )
    _common(e)
    e.add_argument(
        "--method",
        action="append",
        default=None,
        metavar="SPEC",
        help="method spec NAME[:key=value,...], repeatable (default: AtP, AtP*, RelP variants, IG)",
    )
    e.add_argument(
        "--k",
        type=_positive_int,
        default=None,
        help="circuit size for precision/recall/F1 (default: true size)",
    )
    e.add_argument(
        "--faithfulness-ablation",
        default="mean",
        choices=["mean", "zero", "patch"],
        help="ablation outside C",
    )
    e.set_defaults(func=_cmd_evaluate)


def _checked_request(args: argparse.Namespace, specs: list[tuple[str, dict]]):
    """Validate everything (methods and options, device, output folder, memory) and then build the
    request: nothing expensive runs before the cheap checks pass."""
    from circuitkit.edges.method import EDGE_METHODS
    from circuitkit.methods import MethodRequest, check_request, resolved_model_name
    from circuitkit.models import load_model
    from circuitkit.resources import check_device, check_fits, check_writable_folder
    from circuitkit.tasks import make_task

    for name, options in specs:
        check_request(name, args.families, args.direction, args.ablation, options)
        if name in EDGE_METHODS and args.ablation != "patch":
            # Checked here too (the method checks when it runs) so a long node sweep cannot come first.
            raise ValueError(
                f"edge method {name!r} patches each edge with the other run's value; --ablation "
                f"{args.ablation} does not apply (use --ablation patch)"
            )
    check_device(args.device)
    check_writable_folder(args.out)
    model = load_model(args.model, device=args.device)
    probe = make_task(args.task, model.tokenizer, 2, seed=args.seed, split=args.split)  # split, lengths
    check_fits(model.cfg, args.n_prompts, probe.seq_len, model.cfg.device)
    data = make_task(args.task, model.tokenizer, args.n_prompts, seed=args.seed, split=args.split)
    return MethodRequest(
        model=model,
        data=data.to(model.cfg.device),
        families=args.families,
        direction=args.direction,
        ablation=args.ablation,
        seed=args.seed,
        options=dict(specs[0][1]) if len(specs) == 1 else {},
        progress=not args.quiet,
        model_name=resolved_model_name(str(args.model)),
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-").replace("*", "star")


def _cmd_discover(args: argparse.Namespace) -> int:
    from circuitkit.methods import run_method
    from circuitkit.results import save

    options = dict(args.option)
    if len(options) != len(args.option):
        keys = [k for k, _ in args.option]
        raise ValueError(f"--option given twice for {sorted({k for k in keys if keys.count(k) > 1})}")
    req = _checked_request(args, [(args.method, options)])
    result = run_method(args.method, req)
    stem = _slug(f"{Path(req.name).name}_{args.task}_{args.method.replace('*', 'star')}")
    if options:
        stem += "_" + _slug("_".join(f"{k}-{v}" for k, v in sorted(options.items())))
    path = save(result, args.out, stem)
    p = result.provenance
    print(f"{args.method}: {len(result.table)} components, {p.passes:g} passes, {p.seconds:.2f} s -> {path}")
    print(result.top(10)[["family", "component", "score"]].to_string(index=False))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from circuitkit.edges.method import EDGE_METHODS
    from circuitkit.evaluation.correlation import DEFAULT_METHODS, parse_method

    methods = args.method or list(DEFAULT_METHODS)
    parsed = [parse_method(m) for m in methods]
    edge_specs = [m for m, (name, _) in zip(methods, parsed, strict=True) if name in EDGE_METHODS]
    node_specs = [m for m in methods if m not in edge_specs]
    exact_specs = [("activation", {})] if node_specs else []
    if sum(name == "edge-patching" for name, _ in parsed) > 1:
        raise ValueError("--method edge-patching given twice; it is the one exact edge reference")
    req = _checked_request(args, exact_specs + parsed)
    base = _slug(f"{Path(req.name).name}_{args.task}")
    meta = {
        "model": req.name,
        "task": args.task,
        "families": args.families,
        "n_prompts": args.n_prompts,
        "direction": args.direction,
        "ablation": args.ablation,
        "seed": args.seed,
    }
    if node_specs:
        _evaluate_nodes(args, req, node_specs, base, meta)
    if edge_specs:
        _evaluate_edges(args, req, edge_specs, base, meta)
    return 0


def _evaluate_edges(args: argparse.Namespace, req, specs: list[str], base: str, meta: dict) -> None:
    """Edge methods against exact edge patching (correlation, faithfulness), and against the card's
    ground-truth edges where it has them (``--k``: circuit size for precision / recall)."""
    import dataclasses

    import pandas as pd

    from circuitkit.edges.evaluation import evaluate_edges, score_against_node_edges
    from circuitkit.evaluation.correlation import parse_method
    from circuitkit.methods import run_method
    from circuitkit.results import save, save_frame

    truth = _truth_edges(req.name, args.task)
    parsed = [(spec, *parse_method(spec)) for spec in specs]
    exact_options = next((opts for _, name, opts in parsed if name == "edge-patching"), {})
    approx = [spec for spec, name, _ in parsed if name != "edge-patching"]
    exact = run_method("edge-patching", dataclasses.replace(req, options=exact_options))
    found = evaluate_edges(req, approx, exact=exact)
    results: dict = {"edge-patching": exact, **found["results"]}  # type: ignore[dict-item]
    out = Path(args.out)
    for spec, res in results.items():
        save(res, out, _slug(f"{base}_{spec}"))
    corr: pd.DataFrame = found["correlation"]  # type: ignore[assignment]
    save_frame(corr, meta, out, f"{base}_edge_correlation")
    save_frame(found["faithfulness"], meta, out, f"{base}_edge_faithfulness")  # type: ignore[arg-type]
    pd.set_option("display.width", 160)
    if len(corr):
        cols = ["method", "pearson", "spearman", "pearson_without_top", "passes", "seconds", "exact_seconds"]
        print(corr[cols].to_string(index=False))
    if truth is None:
        print(f"no ground-truth edges for {req.name} / {args.task}; skipping the edge ROC table")
        return
    gt = pd.DataFrame(
        [{"method": spec, **score_against_node_edges(res, truth, args.k)} for spec, res in results.items()]
    )
    save_frame(gt, {**meta, "edges": [list(e) for e in truth]}, out, f"{base}_edge_ground_truth")
    print(gt.to_string(index=False))


def _truth_edges(model_name: str, task: str) -> list[tuple[str, str]] | None:
    """The ground-truth circuit's ``(sender, receiver)`` edges from the model's card, if it has them."""
    from circuitkit.tasks.ground_truth import ground_truth

    try:
        return ground_truth(model_name, task).edge_pairs()
    except KeyError:
        return None


def _evaluate_nodes(args: argparse.Namespace, req, methods: list[str], base: str, meta: dict) -> None:
    import pandas as pd

    from circuitkit.evaluation.correlation import correlation_table
    from circuitkit.evaluation.faithfulness import faithfulness_curve
    from circuitkit.evaluation.ground_truth import score_against_circuit
    from circuitkit.results import save, save_frame
    from circuitkit.tasks.ground_truth import ground_truth

    if args.k is not None and "head" in args.families:
        n_heads = req.model.cfg.n_layers * req.model.cfg.n_heads
        if args.k > n_heads:
            raise ValueError(f"--k {args.k} is more than the model's {n_heads} heads; use 1..{n_heads}")
    table, exact, approx = correlation_table(req, methods)
    out = Path(args.out)
    save(exact, out, f"{base}_activation")
    for spec, res in approx.items():
        save(res, out, _slug(f"{base}_{spec.replace('*', 'star')}"))
    save_frame(table, meta, out, f"{base}_correlation")
    pd.set_option("display.width", 160)
    print(
        table[["method", "family", "pearson", "spearman", "passes", "seconds", "speedup"]].to_string(
            index=False
        )
    )

    if "head" not in args.families:
        return
    try:
        circuit = ground_truth(req.name, args.task)
    except KeyError as exc:
        print(f"no ground-truth circuit for {req.name} / {args.task} ({exc}); skipping ROC and faithfulness")
        return
    rows, curves = [], []
    d = req.data
    for spec, res in {"activation": exact, **approx}.items():
        grid = res.grid("head")
        rows.append({"method": spec, **score_against_circuit(grid, circuit, args.k)})
        for k, f in faithfulness_curve(
            req.model,
            d.clean_tokens,
            d.metric,
            grid,
            reference_tokens=d.corrupted_tokens,
            ablation=args.faithfulness_ablation,
        ):
            curves.append({"method": spec, "k": k, "faithfulness": f})
    gt = pd.DataFrame(rows)
    save_frame(gt, {**meta, "circuit": circuit.source}, out, f"{base}_ground_truth")
    save_frame(
        pd.DataFrame(curves),
        {**meta, "ablation_outside": args.faithfulness_ablation},
        out,
        f"{base}_faithfulness",
    )
    print(gt.to_string(index=False))
