"""Run configs: one dataclass per command, shared by Python, YAML and the command line.

Every field carries a docstring underneath it; ``field_docs`` reads those (as EleutherAI sparsify does via
simple_parsing) so ``--help`` documents every field. ``validate`` catches bad combinations before any work.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import math
import textwrap
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

LEGACY_FLAT_OPTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "gsae_beta": (("gsae",), "beta"),
    "matryoshka_group_fractions": (("matryoshka",), "group_fractions"),
    "matryoshka_sampled_prefixes": (("matryoshka",), "n_sampled_prefixes"),
    "zipf_alpha": (("mutual_choice", "feature_choice"), "zipf_alpha"),
}
"""Flat run-config keys of earlier versions -> (the architectures they belonged to, the nested option)."""


def _registry():
    """The architecture registry (imports sae-lens and torch, hence not at module import)."""
    from sae_training.architectures import registry

    return registry


class ConfigError(ValueError):
    """A config that cannot run, with a message saying what to change."""


@dataclass
class DataConfig:
    """Where tokens come from (shared by ``cache``, ``train`` and ``eval``)."""

    model: str = "default"
    """Model: a built-in name (tiny, default), a model folder, or a TransformerLens pretrained name."""
    text: str = "builtin"
    """Text source: 'builtin' (Python docs prose + task sentences, the zoo's mix), a file or folder of
    .txt/.rst/.md files, 'hf:<dir>' (a Hugging Face datasets folder saved with save_to_disk, of text or
    of token ids), or 'tasks:ioi,greater_than,filler' (generated sentences only)."""
    text_column: str = "text"
    """Column holding the text in a Hugging Face datasets folder, or its token ids (e.g. input_ids:
    rows that are whole contexts, BOS first, are used as they are; other rows are packed)."""
    context_size: int = 64
    """Tokens per context (BOS first); the BOS position is never trained on."""
    model_batch_size: int = 32
    """Contexts per model forward pass when computing activations."""
    lean_forward: bool = True
    """Compute activations with the fused no-grad forward (sae_training/activations/lean_forward.py:
    same values as TransformerLens's run_with_cache to float rounding, checked against it on first use,
    ~1.5x faster); False, or an architecture it does not cover, uses run_with_cache."""
    device: str | None = None
    """Torch device (None: CUDA when available, else CPU)."""
    seed: int = 0
    """Seed for data order, initialisation and sampling."""

    def validate_data(self) -> None:
        """Checks of the fields every command shares (types, device, text source); cheap, no model."""
        check_fields(self)
        check_device(self.device)
        if not self.text.startswith("tasks:"):
            check_text_source(self.text)
        if self.context_size < 2:
            raise ConfigError("--context-size must be >= 2 (BOS plus at least one token)")
        if self.model_batch_size < 1:
            raise ConfigError("--model-batch-size must be >= 1")


def check_device(device: str | None) -> None:
    """A device string torch knows and this machine has; ConfigError naming the fix otherwise."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device!r}: not a torch device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available here; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here; use cuda:0"
            )


def check_text_source(text: str) -> None:
    """'builtin', 'tasks:...', or an existing file / folder ('hf:<dir>' too)."""
    if text == "builtin" or text.startswith("tasks:"):
        return
    path = Path(text[3:] if text.startswith("hf:") else text).expanduser()
    if not path.exists():
        raise ConfigError(
            f"--text {text!r}: no such file or folder; pass an existing path, 'hf:<datasets folder>', "
            "'builtin' or 'tasks:ioi,greater_than,filler'"
        )


@dataclass
class TrainConfig(DataConfig):
    """One dictionary training run (``python -m sae_training train``)."""

    hook: str = "blocks.2.hook_resid_post"
    """Input hook point (TransformerLens name), e.g. blocks.2.hook_resid_post, blocks.1.attn.hook_z,
    blocks.1.ln2.hook_normalized (transcoder input)."""
    target_hook: str | None = None
    """What a transcoder reconstructs, e.g. blocks.1.hook_mlp_out (required for transcoders only)."""
    head_index: int | None = None
    """With a hook_z hook: train on this one head's output (a small per-head dictionary)."""
    architecture: str = "topk"
    """A registered architecture: topk, gsae, mutual_choice, feature_choice, abstopk, matryoshka,
    transcoder, skip_transcoder (sae_training/architectures; a new one registers itself)."""
    architecture_config: dict[str, Any] = field(default_factory=dict)
    """The architecture's own options (its config's ``options``), nested: in YAML
    ``architecture_config: {beta: 0.5}``, on the command line ``--gsae.beta 0.5`` (listed below per
    architecture). Missing options take the architecture's defaults; each is checked by its type."""
    width: int = 1024
    """Number of latents (d_sae)."""
    k: int = 32
    """Active latents per token (an average for mutual_choice / feature_choice)."""
    aux_k: int | None = None
    """Latents in the AuxK / aux_zipf loss per token (None: d_in // 2)."""
    aux_coefficient: float = 1 / 32
    """Weight of the AuxK / aux_zipf loss."""
    dead_tokens: int = 20_480
    """A latent that has not fired for this many training tokens counts as dead (AuxK, dead %). 20,480 is
    Bussmann et al.'s reference setting (BatchTopK / Matryoshka code: n_batches_to_dead 5 at batch 4096);
    200,000 (earlier versions) let latents silent on held-out text escape AuxK in short runs."""
    resample_every: int = 0
    """Every this many steps, until the learning rate starts to decay, re-initialise the latents dead by
    dead_tokens on the batch's worst-reconstructed tokens (Anthropic's resampling, Bricken et al. 2023; in
    Dunefsky et al.'s transcoder code). 0: never (AuxK alone)."""
    b_dec_init: Literal["geometric_median", "mean", "zeros"] = "geometric_median"
    """Initial decoder bias (b_pre): geometric median or mean of the first batch (of the target for
    transcoders)."""
    batch_size: int = 4096
    """Training tokens per optimiser step (global, across DDP processes)."""
    total_tokens: int = 2_000_000
    """Training tokens in all; steps = total_tokens // batch_size."""
    lr: float = 3e-3
    """Adam learning rate. 3e-3, not the 1e-3 common for sae-lens: our decoder rows stay at unit norm,
    so an Adam step turns them about 10x less than sae-lens's rows at norm 0.1 (its default 3e-4 is
    about our 3e-3). Measured (benchmarks/sae_quality_lr.py, ck-6l block 3, width 2048, k 32, 60
    steps): held-out FVU 0.171 at 1e-3, 0.117 at 3e-3, 0.104 at 1e-2; the shipped set uses 3e-3."""
    lr_warmup_steps: int = 20
    """Linear warm-up steps."""
    lr_decay_fraction: float = 0.2
    """Fraction of the steps, at the end, over which the learning rate decays linearly to zero."""
    adam_beta1: float = 0.9
    """Adam beta1."""
    adam_beta2: float = 0.999
    """Adam beta2."""
    buffer_tokens: int = 131_072
    """On-the-fly source: activations held in the shuffling buffer (>= 2 * batch_size)."""
    cache_dir: str | None = None
    """Train from a disk cache written by ``cache`` instead of running the model on the fly."""
    out_dir: str | None = None
    """Output folder (None: runs/sae/<dictionary id>)."""
    run_name: str | None = None
    """Last part of the dictionary id (None: <architecture>-<width>-k<k>)."""
    checkpoint_every: int = 200
    """Save a checkpoint every this many steps (also on Ctrl-C / SIGTERM); 0: only on signals and at
    the end."""
    resume: bool = False
    """Resume from out_dir/checkpoint (weights, optimiser, scheduler, step, data position)."""
    overwrite: bool = False
    """Start over in an out_dir that already holds a run (its checkpoint, weights and metrics are
    deleted). Without it (or resume) such a folder is refused, so no run is lost by accident."""
    log_every: int = 10
    """Append metrics to out_dir/metrics.jsonl every this many steps."""
    progress: bool = True
    """Show a progress bar."""
    wandb: bool = False
    """Also log to Weights & Biases (needs wandb installed and configured)."""
    dtype: Literal["float32", "float64"] = "float32"
    """Dictionary parameter dtype."""

    def __post_init__(self) -> None:
        # The nested options are resolved on construction (defaults filled in, values converted to their
        # types), so the saved config, checkpoints and resume checks see every option. Unknown names and
        # architectures are left for validate(), which names them.
        if not isinstance(self.architecture_config, dict):
            return
        reg = _registry()
        if self.architecture not in reg.ARCHITECTURES:
            return
        types_ = reg.option_types(self.architecture)
        resolved = reg.option_defaults(self.architecture)
        for key, value in self.architecture_config.items():
            resolved[key] = check_value(value, types_[key], key, self._where()) if key in types_ else value
        self.architecture_config = resolved

    def _where(self) -> str:
        return f"architecture_config of {self.architecture}"

    def validate(self) -> None:
        """Checks that need no model; raises ConfigError saying what to change."""
        self.validate_data()
        reg = _registry()
        if self.architecture not in reg.ARCHITECTURES:
            raise ConfigError(
                f"architecture = {self.architecture!r}: choose one of {', '.join(reg.ARCHITECTURES)}"
            )
        if not isinstance(self.architecture_config, dict):
            raise ConfigError(
                f"architecture_config = {self.architecture_config!r}: expected a mapping of option: value"
            )
        types_ = reg.option_types(self.architecture)
        unknown = sorted(set(self.architecture_config) - set(types_))
        if unknown:
            valid = ", ".join(types_) or "none"
            raise ConfigError(
                f"architecture_config: {', '.join(unknown)} is not an option of architecture "
                f"{self.architecture} (its options: {valid})"
            )
        problem = reg.ARCHITECTURES[self.architecture][1].check_options(
            self.architecture_config, self.width, self.k
        )
        if problem:
            raise ConfigError(problem)
        positive = {"lr": self.lr, "batch_size": self.batch_size, "dead_tokens": self.dead_tokens,
                    "log_every": self.log_every, "buffer_tokens": self.buffer_tokens}  # fmt: skip
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"--{name.replace('_', '-')} {value}: must be > 0")
        non_negative = {"aux_coefficient": self.aux_coefficient, "checkpoint_every": self.checkpoint_every,
                        "lr_warmup_steps": self.lr_warmup_steps,
                        "resample_every": self.resample_every}  # fmt: skip
        for name, value in non_negative.items():
            if value < 0:
                raise ConfigError(f"--{name.replace('_', '-')} {value}: must be >= 0")
        if self.aux_k is not None and self.aux_k < 1:
            raise ConfigError(f"--aux-k {self.aux_k}: must be >= 1 (or none for d_in // 2)")
        for name, beta in (("adam_beta1", self.adam_beta1), ("adam_beta2", self.adam_beta2)):
            if not 0 <= beta < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {beta}: must be in [0, 1)")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other: pick one")
        if self.width <= 0 or self.k <= 0:
            raise ConfigError(f"width ({self.width}) and k ({self.k}) must be positive")
        if self.k > self.width:
            raise ConfigError(f"k={self.k} is larger than width={self.width}: lower k or raise width")
        is_transcoder = self.is_transcoder
        if is_transcoder and not self.target_hook:
            raise ConfigError(
                f"architecture {self.architecture} needs target_hook (what it reconstructs), e.g. "
                "hook=blocks.1.ln2.hook_normalized target_hook=blocks.1.hook_mlp_out"
            )
        if self.target_hook and not is_transcoder:
            raise ConfigError(
                f"target_hook is set but architecture {self.architecture} reconstructs its own input; "
                "use architecture=transcoder or skip_transcoder, or drop target_hook"
            )
        if self.head_index is not None and not self.hook.endswith("attn.hook_z"):
            raise ConfigError(f"head_index is only meaningful with an attn.hook_z hook, not {self.hook}")
        if self.batch_size < 1 or self.total_tokens < self.batch_size:
            raise ConfigError(
                f"total_tokens ({self.total_tokens}) must be at least one batch ({self.batch_size})"
            )
        if self.cache_dir is None and self.buffer_tokens < 2 * self.batch_size:
            raise ConfigError(
                f"buffer_tokens={self.buffer_tokens} must be >= 2 * batch_size={2 * self.batch_size} "
                "so batches mix "
                "tokens from many contexts: raise buffer_tokens or lower batch_size"
            )
        if not 0 <= self.lr_decay_fraction <= 1:
            raise ConfigError("lr_decay_fraction must be in [0, 1]")

    @property
    def n_steps(self) -> int:
        return self.total_tokens // self.batch_size

    @property
    def is_transcoder(self) -> bool:
        """The architecture reconstructs ``target_hook`` (its config's ``reads_target``)."""
        arch = _registry().ARCHITECTURES.get(self.architecture)
        return bool(arch and arch[1].reads_target)

    @property
    def needs_gradients(self) -> bool:
        """Training reads dL/d(input) per token (its config's ``needs_gradients``: g-SAE)."""
        arch = _registry().ARCHITECTURES.get(self.architecture)
        return bool(arch and arch[1].needs_gradients)

    def default_run_name(self) -> str:
        return self.run_name or f"{self.architecture}-{self.width}-k{self.k}"


@dataclass
class CacheConfig(DataConfig):
    """Write model activations to a sharded, memory-mapped disk cache (``python -m sae_training cache``)."""

    hooks: list[str] = field(default_factory=lambda: ["blocks.2.hook_resid_post"])
    """Hook points to cache (e.g. a transcoder's input and target hooks together)."""
    n_tokens: int = 1_000_000
    """Tokens to cache (BOS positions excluded)."""
    shard_tokens: int = 65_536
    """Tokens per shard file."""
    storage_dtype: Literal["float16", "float32"] = "float32"
    """On-disk dtype (float16 halves the size)."""
    with_gradients: bool = False
    """Also store dL/d(activation) per token for each hook (for g-SAE)."""
    out_dir: str = "runs/cache"
    """Output folder."""
    progress: bool = True
    """Show a progress bar."""

    def validate(self) -> None:
        self.validate_data()
        if not self.hooks:
            raise ConfigError("hooks is empty: name at least one hook point to cache")
        if self.n_tokens < 1 or self.shard_tokens < 1:
            raise ConfigError("n_tokens and shard_tokens must be positive")


@dataclass
class EvalConfig(DataConfig):
    """Evaluate a saved dictionary (``python -m sae_training eval``)."""

    dictionary: str = ""
    """Dictionary folder (cfg.json + sae_weights.safetensors) or a shipped dictionary id."""
    model: str = ""
    """Model (empty: the one named in the dictionary's metadata)."""
    n_contexts: int = 128
    """Held-out contexts to evaluate on."""
    dense_threshold: float = 0.1
    """A latent firing on more than this fraction of tokens counts as dense."""
    out_file: str | None = None
    """Where to write the JSON (None: eval.json beside the weights)."""

    def validate(self) -> None:
        self.validate_data()
        if not self.dictionary:
            raise ConfigError("dictionary is empty: pass a dictionary folder or id (--dictionary PATH)")
        if self.n_contexts < 1:
            raise ConfigError("n_contexts must be >= 1")
        if not 0 < self.dense_threshold <= 1:
            raise ConfigError(f"--dense-threshold {self.dense_threshold}: must be in (0, 1]")


# ---- YAML + command line --------------------------------------------------------------------------


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Docstrings written under dataclass fields, for this class and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not hasattr(klass, "__dataclass_fields__"):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _field_default(f) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


@cache
def field_types(cls: type) -> dict[str, Any]:
    """Each field's real type (annotations are strings under ``from __future__ import annotations``)."""
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """(X, True) for ``X | None`` / ``Optional[X]``; (tp, False) otherwise."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def type_label(tp: Any) -> str:
    """Short text for a type, shown in --help and in errors."""
    inner, optional = _unwrap_optional(tp)
    if typing.get_origin(inner) is Literal:
        label = "{" + ",".join(map(str, typing.get_args(inner))) + "}"
    elif typing.get_origin(inner) is list:
        label = f"{type_label(typing.get_args(inner)[0])},..."
    else:
        label = getattr(inner, "__name__", str(inner))
    return label + ("|none" if optional else "")


def parse_text(text: str, tp: Any, name: str) -> Any:
    """Parse one command-line value as ``tp``; ConfigError naming ``--name`` and what it expects."""
    flag = "--" + name.replace("_", "-")
    inner, optional = _unwrap_optional(tp)
    if optional and text.strip().lower() in ("none", "null", ""):
        return None
    origin = typing.get_origin(inner)
    if origin is list:
        (item,) = typing.get_args(inner)
        return [parse_text(t.strip(), item, name) for t in text.split(",") if t.strip()]
    if origin is Literal:
        for choice in typing.get_args(inner):
            if text == str(choice):
                return choice
        raise ConfigError(f"{flag} {text!r}: choose one of {', '.join(map(str, typing.get_args(inner)))}")
    if inner is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{flag} {text!r}: expected true or false")
    if inner is int:
        try:
            return int(text)
        except ValueError:
            pass
        try:  # 2e6, 1_000_000.0: accepted when whole
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value == int(value):
            return int(value)
        raise ConfigError(f"{flag} {text!r}: expected a whole number")
    if inner is float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{flag} {text!r}: expected a number, e.g. 3e-3") from None
        if not math.isfinite(value):
            raise ConfigError(f"{flag} {text!r}: expected a finite number")
        return value
    if inner is str:
        return text
    raise TypeError(f"no command-line parser for field {name} of type {tp!r}")  # a bug, not user error


def check_value(value: Any, tp: Any, name: str, where: str) -> Any:
    """A value from YAML or Python checked against the field's type (ints accepted for floats);
    returns it (a float for a float field); ConfigError naming ``where`` otherwise."""
    inner, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: {name} may not be null; expected {type_label(tp)}")
    origin = typing.get_origin(inner)
    ok: bool
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {name} = {value!r}: expected a list of {type_label(inner)}")
        (item,) = typing.get_args(inner)
        return [check_value(v, item, name, where) for v in value]
    if origin is Literal:
        ok = value in typing.get_args(inner)
        if not ok:
            choices = ", ".join(map(str, typing.get_args(inner)))
            raise ConfigError(f"{where}: {name} = {value!r}: choose one of {choices}")
        return value
    if inner is bool:
        ok = isinstance(value, bool)
    elif inner is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif inner is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif inner is str:
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        raise ConfigError(f"{where}: {name} = {value!r}: expected {type_label(tp)}")
    return value


def check_fields(cfg: Any, where: str = "config") -> None:
    """Every field of a config dataclass has a value of its type (Python callers bypass the parser)."""
    for f in fields(cfg):
        setattr(cfg, f.name, check_value(getattr(cfg, f.name), field_types(type(cfg))[f.name], f.name, where))


def format_value(value: Any) -> str:
    """A field value as command-line text (inverse of ``parse_text``)."""
    if value is None:
        return "none"
    if isinstance(value, list):
        return ",".join(format_value(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def add_config_arguments(parser, cls: type) -> None:
    """One ``--field-name`` option per dataclass field, its help the field's docstring."""
    docs = field_docs(cls)
    parser.add_argument(
        "--config", default=None, help="YAML file with any of the fields below (CLI options override it)"
    )
    types_ = field_types(cls)
    for f in fields(cls):
        if f.name == "architecture_config":
            continue  # one option per architecture, below
        flag = "--" + f.name.replace("_", "-")
        parser.add_argument(
            flag,
            dest=f.name,
            default=None,
            metavar=type_label(types_[f.name]),
            help=f"{docs.get(f.name, '')} [default: {format_value(_field_default(f))}]".replace("%", "%%"),
        )
    if "architecture_config" in types_:
        add_architecture_arguments(parser)


def option_flag(architecture: str, option: str) -> str:
    """``--gsae.beta``, ``--matryoshka.group-fractions``: one architecture's option on the command line."""
    return f"--{architecture.replace('_', '-')}.{option.replace('_', '-')}"


def add_architecture_arguments(parser) -> None:
    """``--<architecture>.<option>`` for every registered architecture's options (a group each), plus the
    flat flags of earlier versions (hidden; they warn and name the new flag)."""
    import argparse

    reg = _registry()
    for name, (_, config) in reg.ARCHITECTURES.items():
        types_ = reg.option_types(name)
        if not types_:
            continue
        docs = field_docs(config)
        defaults = reg.option_defaults(name)
        group = parser.add_argument_group(
            f"{name} options (--architecture {name}; YAML: architecture_config: {{option: value}})"
        )
        for option, tp in types_.items():
            group.add_argument(
                option_flag(name, option),
                dest=f"{name}.{option}",
                default=None,
                metavar=type_label(tp),
                help=f"{docs.get(option, '')} [default: {format_value(defaults[option])}]".replace("%", "%%"),
            )
    for legacy in LEGACY_FLAT_OPTIONS:
        parser.add_argument("--" + legacy.replace("_", "-"), dest=f"legacy.{legacy}", help=argparse.SUPPRESS)


def _legacy_option(key: str, value: Any, architecture: str, where: str, flag: bool) -> tuple[str, Any] | None:
    """A flat key of earlier versions (``gsae_beta: 0.5``) as (option, value) of ``architecture``, with a
    FutureWarning naming the nested form; None (dropped) when it belongs to another architecture and holds
    that option's default (as every old train_config.yaml does); ConfigError when it would be ignored."""
    import warnings

    owners, option = LEGACY_FLAT_OPTIONS[key]
    shown = "--" + key.replace("_", "-") if flag else key
    owner = architecture if architecture in owners else owners[0]
    new = option_flag(owner, option) if flag else f"architecture_config: {{{option}: ...}}"
    if architecture not in owners:
        reg = _registry()
        default = reg.option_defaults(owners[0])[option]
        if value == default:
            return None
        raise ConfigError(
            f"{where}: {shown} is an option of {' / '.join(owners)}, not of architecture {architecture}; "
            f"drop it, or set --architecture {owners[0]} and write {new}"
        )
    warnings.warn(
        f"{where}: {shown} is deprecated; write {new} (architecture {architecture})",
        FutureWarning,
        stacklevel=3,
    )
    return option, value


def config_from_args(cls: type, args) -> Any:
    """Defaults, then the YAML file, then command-line options (``--<architecture>.<option>`` into the
    nested ``architecture_config``)."""
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        values.update(load_yaml(args.config, cls))
    types_ = field_types(cls)
    for f in fields(cls):
        raw = getattr(args, f.name, None)
        if raw is not None:
            values[f.name] = parse_text(raw, types_[f.name], f.name)
    if "architecture_config" in types_:
        architecture = values.get("architecture", _field_default(cls.__dataclass_fields__["architecture"]))
        nested = dict(values.get("architecture_config") or {})
        nested.update(_options_from_args(args, architecture))
        values["architecture_config"] = nested
    return cls(**values)


def _options_from_args(args, architecture: str) -> dict[str, Any]:
    """The ``--<architecture>.<option>`` (and legacy flat) flags given, parsed by type; ConfigError for an
    option of another architecture than the one chosen."""
    reg = _registry()
    out: dict[str, Any] = {}
    for dest, raw in vars(args).items():
        if raw is None or "." not in dest:
            continue
        owner, option = dest.split(".", 1)
        if owner == "legacy":
            owners, nested = LEGACY_FLAT_OPTIONS[option]
            tp = reg.option_types(owners[0])[nested]
            got = _legacy_option(option, parse_text(raw, tp, option), architecture, "command line", True)
            if got is not None:
                out.setdefault(*got)
            continue
        if owner != architecture:
            raise ConfigError(
                f"{option_flag(owner, option)} is an option of architecture {owner}, but the architecture "
                f"is {architecture}: drop it or pass --architecture {owner}"
            )
        out[option] = parse_text(raw, reg.option_types(owner)[option], f"{owner}.{option}")
    return out


def load_yaml(path: str | Path, cls: type) -> dict[str, Any]:
    """Fields from a YAML file, each checked against its type; ConfigError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"--config {path}: not valid YAML{at}; fix the file's syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of field: value")
    known = {f.name for f in fields(cls)}
    where = f"--config {path}"
    if "architecture_config" in known:
        architecture = data.get("architecture", _field_default(cls.__dataclass_fields__["architecture"]))
        nested = data.get("architecture_config") or {}
        if not isinstance(nested, dict):
            raise ConfigError(
                f"{where}: architecture_config = {nested!r}: expected a mapping of option: value"
            )
        for key in [k for k in data if k in LEGACY_FLAT_OPTIONS]:
            got = _legacy_option(key, data.pop(key), str(architecture), where, False)
            if got is not None:
                nested.setdefault(*got)
        reg = _registry()
        if architecture in reg.ARCHITECTURES:
            types_ = reg.option_types(architecture)
            nested = {
                k: check_value(v, types_[k], k, f"{where}: architecture_config") if k in types_ else v
                for k, v in nested.items()
            }
        data["architecture_config"] = nested
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"--config {path}: unknown field(s) {', '.join(unknown)}; "
            f"valid fields: {', '.join(sorted(known))}"
        )
    types_ = field_types(cls)
    return {k: check_value(v, types_[k], k, f"--config {path}") for k, v in data.items()}


def to_yaml(cfg: Any) -> str:
    return yaml.safe_dump(asdict(cfg), sort_keys=False)


def config_diff(saved: dict[str, Any], current: dict[str, Any], ignore: set[str]) -> list[str]:
    """Fields whose values differ, as 'name: saved -> current' lines."""
    out = []
    for key in sorted(set(saved) | set(current)):
        if key in ignore:
            continue
        a, b = saved.get(key), current.get(key)
        if isinstance(a, float) and isinstance(b, float) and math.isclose(a, b):
            continue
        if a != b:
            out.append(f"{key}: {a!r} (checkpoint) vs {b!r} (now)")
    return out
