"""Write the small result set the explorer opens with: ``python -m app.precompute [--model default]``.

Results go to ``app/precomputed/<model>/`` in circuitkit.results format (parquet + JSON), the same files
``circuitkit discover`` writes, so the app reads both the same way. Heads identification tables go beside
them. A few seconds to a minute per model on 2 CPU cores.
"""

from __future__ import annotations

import argparse

import pandas as pd

from app import data, methods
from circuitkit import results
from circuitkit.components import DEFAULT_FAMILIES
from circuitkit.edges.scores import EDGE_FAMILY
from circuitkit.heads import HeadIdConfig, identify_heads
from circuitkit.models import load_model
from circuitkit.models.zoo import PLANTED, resolve_builtin
from circuitkit.tasks import make_task, task_names

EDGE_PRECOMPUTE = ("eap", "eap-ig", "edge-patching")
"""Edge methods whose results ship for the planted models (small: exact edge patching takes seconds)."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.precompute", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="built-in model name or alias (default: default)")
    p.add_argument("--prompts", type=int, default=methods.DEFAULT_PROMPTS, help="prompt pairs per task")
    p.add_argument("--methods", nargs="*", default=None, help="method keys (default: every available)")
    p.add_argument("--families", nargs="*", default=list(DEFAULT_FAMILIES), help="component families")
    args = p.parse_args(argv)

    name = resolve_builtin(args.model) or args.model
    model = load_model(name)
    out = data.PRECOMPUTED / name
    keys = args.methods or list(methods.available())
    planted = name in PLANTED
    # A planted model carries one task by construction: its results, plus MLP nodes over all positions
    # and edge scores (the Circuit and Edge circuit pages overlay the card's planted nodes and edges).
    tasks = [PLANTED[name].task] if planted else task_names()
    families = [*args.families, "mlp_out_all"] if planted else args.families
    for task in tasks:
        dataset = make_task(task, model.tokenizer, args.prompts, seed=0, split="heldout").to(model.cfg.device)
        for method in keys:
            for family in families:
                spec = methods.Spec(name, task, method, family, "denoising", args.prompts)
                r = methods.run_on(spec, model, dataset)
                path = results.save(r, out, f"{task}_{method.replace('*', '_star')}_{family}")
                print(f"{path}: {r.provenance.seconds:.2f} s")
        for method in EDGE_PRECOMPUTE if planted else ():
            spec = methods.Spec(name, task, method, EDGE_FAMILY, "denoising", args.prompts)
            r = methods.run_on(spec, model, dataset)
            path = results.save(r, out, f"{task}_{method}_edges")
            print(f"{path}: {r.provenance.seconds:.2f} s")
        heads_data = make_task(task, model.tokenizer, 64, seed=0, split="heldout").to(model.cfg.device)
        ident = identify_heads(model, heads_data, HeadIdConfig(n_train_prompts=10, seed=0))
        ranking, codes = data.heads_paths(name, task, 10, 0)
        ranking.parent.mkdir(parents=True, exist_ok=True)
        pd.concat([ident.table("node"), ident.table("edge")], ignore_index=True).to_parquet(
            ranking, index=False
        )
        ident.code_histogram_table().to_parquet(codes, index=False)
        print(f"{ranking}: heads")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
