"""Command line: ``python -m sae_training {cache,train,eval,ship,list}`` (also ``circuitkit sae ...``).

Each command's options are its config dataclass's fields (``--help`` shows every field's docstring);
``--config run.yaml`` supplies any of them and command-line options override the file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sae_training.activations.text import TextSourceError
from sae_training.config import (
    CacheConfig,
    ConfigError,
    EvalConfig,
    TrainConfig,
    add_config_arguments,
    config_from_args,
)


def cmd_train(args: argparse.Namespace) -> int:
    from sae_training.trainer import train

    cfg = config_from_args(TrainConfig, args)
    result = train(cfg)
    if result.interrupted:
        return 130
    print(f"saved {result.dictionary_id} to {result.out_dir}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from circuitkit.models import load_model
    from sae_training.activations import write_cache
    from sae_training.trainer import model_display_name, resolve_device

    cfg = config_from_args(CacheConfig, args)
    cfg.validate()
    model = load_model(cfg.model, device=resolve_device(cfg.device))
    out = write_cache(cfg, model, model_display_name(cfg.model))
    print(f"wrote {cfg.n_tokens} tokens of {', '.join(cfg.hooks)} to {out}")
    return 0


def run_eval(cfg: EvalConfig, model=None):
    """Evaluate and write the JSON; returns (result, path written)."""
    import torch

    from circuitkit.models import load_model
    from sae_training.activations.text import context_batches
    from sae_training.evaluate import evaluate
    from sae_training.store import load_dictionary, resolve_dictionary
    from sae_training.trainer import resolve_device

    cfg.validate()
    device = resolve_device(cfg.device)
    path = resolve_dictionary(cfg.dictionary)
    sae = load_dictionary(path, device=str(device))
    if model is None:
        model = load_model(cfg.model or sae.cfg.metadata.get("model_name"), device=device)
    batches = context_batches(
        model.tokenizer, cfg.text, cfg.context_size, cfg.n_contexts, "eval", cfg.seed, cfg.text_column
    )
    tokens = next(batches)
    with torch.no_grad():
        result = evaluate(
            sae, model, tokens, batch_size=cfg.model_batch_size, dense_threshold=cfg.dense_threshold
        )
    out = Path(cfg.out_file) if cfg.out_file else path / "eval.json"
    out.write_text(
        json.dumps(
            {
                **result.to_dict(),
                "eval_config": {
                    "text": cfg.text,
                    "n_contexts": cfg.n_contexts,
                    "context_size": cfg.context_size,
                    "split": "eval",
                },
            },
            indent=2,
        )
    )
    return result, out


def cmd_eval(args: argparse.Namespace) -> int:
    from sae_training.evaluate import format_table

    result, out = run_eval(config_from_args(EvalConfig, args))
    print(format_table(result))
    print(f"wrote {out}")
    return 0


def cmd_ship(args: argparse.Namespace) -> int:
    from sae_training.ship import ship

    ship(
        args.model,
        only=args.only,
        force=args.force,
        total_tokens=args.total_tokens,
        cache_tokens=args.cache_tokens,
        device=args.device,
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from sae_training.store import list_dictionaries

    for d in list_dictionaries(args.model):
        ev = d.eval or {}
        print(
            f"{d.id:70s} {d.architecture:16s} d_sae={d.d_sae:<6d} FVU={ev.get('fvu', float('nan')):.3f} "
            f"L0={ev.get('l0', float('nan')):.1f} CE-rec={ev.get('ce_loss_recovered', float('nan')):.3f}"
        )
    return 0


def add_commands(sub) -> None:
    """Add cache/train/eval/ship/list to an argparse subparsers object."""
    p = sub.add_parser("train", help="train one dictionary", description=TrainConfig.__doc__)
    add_config_arguments(p, TrainConfig)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser(
        "cache", help="write activations to a sharded disk cache", description=CacheConfig.__doc__
    )
    add_config_arguments(p, CacheConfig)
    p.set_defaults(func=cmd_cache)
    p = sub.add_parser(
        "eval",
        help="evaluate a saved dictionary (JSON beside the weights + table)",
        description=EvalConfig.__doc__,
    )
    add_config_arguments(p, EvalConfig)
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("ship", help="(re)train and evaluate the shipped dictionaries of a built-in model")
    p.add_argument("--model", default="default", help="built-in model (default: ck-6l)")
    p.add_argument("--only", default=None, help="comma-separated run names to (re)build (default: all)")
    p.add_argument("--force", action="store_true", help="rebuild dictionaries that already exist")
    p.add_argument("--total-tokens", type=int, default=None, help="override training tokens per dictionary")
    p.add_argument(
        "--cache-tokens",
        type=int,
        default=None,
        help="tokens cached once, with gradients (default: ship.CACHE_TOKENS); dictionaries train several "
        "epochs on them",
    )
    p.add_argument("--device", default=None, help="torch device")
    p.set_defaults(func=cmd_ship)
    p = sub.add_parser("list", help="list shipped dictionaries with their eval scores")
    p.add_argument("--model", default="default", help="built-in model")
    p.set_defaults(func=cmd_list)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sae_training", description="Train, cache, evaluate and ship SAEs and transcoders."
    )
    add_commands(p.add_subparsers(dest="command", required=True))
    return p


def register(subparsers) -> None:
    """``circuitkit sae ...``: the same commands under the circuitkit CLI."""
    p = subparsers.add_parser("sae", help="train / cache / evaluate / ship dictionaries (SAEs, transcoders)")
    add_commands(p.add_subparsers(dest="sae_command", required=True))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, FileNotFoundError, TextSourceError) as exc:
        print(f"sae_training: error: {exc}", file=sys.stderr)
        return 2
