"""The ``circuitkit`` command.

Error discipline: a user error (a bad argument, option, name, path, a model that cannot be loaded) is one
line on stderr naming the input and the fix, exit code 2, raised before any expensive work starts
(commands validate every argument up front). Anything else is a bug and keeps its traceback.
``circuitkit --debug ...`` (or ``CIRCUITKIT_DEBUG=1``) shows the traceback of user errors too.
"""

from __future__ import annotations

import argparse
import os
import sys


def _cmd_zoo_list(args: argparse.Namespace) -> int:
    from circuitkit.models import zoo

    aliases = {name: ",".join(a for a, n in zoo.ALIASES.items() if n == name) or "-" for name in zoo.BUILTIN}
    w_name, w_alias = max(map(len, zoo.BUILTIN)), max(map(len, aliases.values()))
    for name, cfg in zoo.BUILTIN.items():
        card = zoo.read_card(zoo.builtin_dir(name))
        scores = card.get("task_scores", {})
        ioi = scores.get("ioi", {})
        gt = scores.get("greater_than", {})
        present = "ok" if zoo.is_model_dir(zoo.builtin_dir(name)) else "missing (run zoo train)"
        print(
            f"{name:{w_name}s}  aliases={aliases[name]:{w_alias}s}  "
            f"{cfg.n_layers}L d{cfg.d_model} h{cfg.n_heads} vocab {cfg.vocab_size}  weights: {present}  "
            f"IOI acc {ioi.get('accuracy', float('nan')):.3f} ld {ioi.get('logit_diff', float('nan')):.2f}  "
            f"GT pd {gt.get('prob_diff', float('nan')):.3f}"
        )
    return 0


def _cmd_zoo_train(args: argparse.Namespace) -> int:
    from circuitkit.models.build import build_builtin

    if args.threads is not None:
        if args.threads < 1:
            print(f"error: --threads must be at least 1, got {args.threads}", file=sys.stderr)
            return 2
        import torch

        torch.set_num_threads(args.threads)
    out = build_builtin(
        args.name,
        out_dir=args.out,
        steps=args.steps,
        seed=args.seed,
        text_dir=args.text_dir,
        ground_truth=not args.no_ground_truth,
        progress=not args.quiet,
        first_phase=args.first_phase,
    )
    print(f"wrote {out}")
    return 0


def _cmd_zoo_circuits(args: argparse.Namespace) -> int:
    from circuitkit.models.build import refresh_circuits

    print(f"updated {refresh_circuits(args.name)}/card.json")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="circuitkit",
        description="Mechanistic-interpretability workbench: built-in toy models, tasks, circuit discovery.",
    )
    p.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of user errors too (bugs always have one)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    zoo = sub.add_parser("zoo", help="the built-in toy-model zoo").add_subparsers(
        dest="zoo_command", required=True
    )
    ls = zoo.add_parser("list", help="list built-in models with their task scores")
    ls.set_defaults(func=_cmd_zoo_list)
    tr = zoo.add_parser(
        "train",
        help="re-train a built-in model from its seed (tokenizer, weights, card, ground-truth circuits)",
    )
    tr.add_argument("name", help="built-in model name or alias (ck-tiny/tiny, ck-6l/default)")
    tr.add_argument("--out", default=None, help="output folder (default: the zoo folder inside the package)")
    tr.add_argument("--steps", type=int, default=None, help="override the recipe's optimiser steps")
    tr.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    tr.add_argument("--text-dir", default=None, help="folder of natural text (default: Python docs sources)")
    tr.add_argument("--no-ground-truth", action="store_true", help="skip the patching-derived circuits")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.add_argument(
        "--first-phase",
        default=None,
        help="planted two-phase recipes: a folder holding the first phase alone (same recipe, checked); "
        "only the fine-tuning phase trains",
    )
    tr.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's); a model card's training.threads is what reproduces "
        "its shipped weights bit for bit on CPU (float sums depend on the thread count)",
    )
    tr.set_defaults(func=_cmd_zoo_train)
    ci = zoo.add_parser("circuits", help="re-derive a built-in model's task scores and circuits in its card")
    ci.add_argument("name", help="built-in model name or alias")
    ci.set_defaults(func=_cmd_zoo_circuits)
    __import__("sae_training.cli").cli.register(sub)  # `circuitkit sae ...` (cache, train, eval, ship, list)
    __import__("circuitkit.cli_discover").cli_discover.register(sub)  # `circuitkit discover`, `evaluate`
    return p


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is written for the user (a bad input), not a bug. ``RuntimeError``
    is not one of them: torch raises it for shape and device bugs, which need their traceback."""
    from circuitkit.models.corpus import CorpusError
    from circuitkit.models.loading import ModelLoadError

    return (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, ModelLoadError, CorpusError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("CIRCUITKIT_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except user_errors() as exc:
        if debug:
            raise
        print(f"circuitkit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
