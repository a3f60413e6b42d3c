"""The correlation table (RelP paper, Table 1) for the built-in toy models: every approximation against
activation patching per family, with cost; plus ROC AUC of head scores against the ground truth.

    python benchmarks/patching_correlation.py --models tiny,default --tasks ioi,greater_than --n-prompts 20

Prints markdown tables: Pearson / Spearman per method and family with cost; Pearson with the strongest
component (largest |exact effect|) left out, because on the toy models one layer-0 head carries most of
each task and alone makes r near 1; ROC AUC / F1 of head scores per method.
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from circuitkit.components import DEFAULT_FAMILIES
from circuitkit.evaluation.correlation import DEFAULT_METHODS, correlation_table
from circuitkit.evaluation.ground_truth import score_against_circuit
from circuitkit.methods import MethodRequest
from circuitkit.models import load_model
from circuitkit.tasks import make_task
from circuitkit.tasks.ground_truth import ground_truth


def _markdown(df: pd.DataFrame) -> str:
    """A markdown table without the optional ``tabulate`` dependency."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny,default")
    ap.add_argument("--tasks", default="ioi,greater_than")
    ap.add_argument("--n-prompts", type=int, default=20)
    ap.add_argument("--split", default="heldout", help="prompt split (heldout: unseen templates / nouns)")
    ap.add_argument("--families", default=",".join(DEFAULT_FAMILIES))
    ap.add_argument("--methods", default=";".join(DEFAULT_METHODS), help="method specs separated by ;")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None, help="write the combined table as CSV here")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    tables, gts = [], []
    for model_name in args.models.split(","):
        model = load_model(model_name, device=args.device)
        for task in args.tasks.split(","):
            data = make_task(task, model.tokenizer, args.n_prompts, seed=0, split=args.split).to(
                model.cfg.device
            )
            req = MethodRequest(model, data, args.families.split(","), model_name=model_name)
            table, exact, approx = correlation_table(req, args.methods.split(";"))
            tables.append(table)
            try:
                circuit = ground_truth(model_name, task)
            except KeyError:
                continue
            for spec, res in {"activation": exact, **approx}.items():
                if "head" in res.families:
                    gts.append(
                        {
                            "model": model_name,
                            "task": task,
                            "method": spec,
                            **score_against_circuit(res.grid("head"), circuit),
                        }
                    )
    all_tables = pd.concat(tables, ignore_index=True)
    wide = all_tables.pivot_table(
        index=["model", "task", "method"], columns="family", values=["pearson", "spearman"], sort=False
    )
    wide.columns = [f"{fam} {value[0].upper()}" for value, fam in wide.columns]
    cost = all_tables.groupby(["model", "task", "method"], sort=False)[
        ["passes", "seconds", "speedup"]
    ].first()
    print(f"## Correlation with activation patching (P = Pearson, S = Spearman), {args.n_prompts} prompts\n")
    print(_markdown(wide.join(cost).round(3).reset_index()))
    rest = all_tables.pivot_table(
        index=["model", "task", "method"], columns="family", values="pearson_without_top", sort=False
    )
    print("\n## Pearson with the strongest component left out\n")
    print(_markdown(rest.round(3).reset_index()))
    if gts:
        print("\n## Head scores against the ground-truth circuit\n")
        print(_markdown(pd.DataFrame(gts).round(3)))
    if args.out:
        all_tables.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
