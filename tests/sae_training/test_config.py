"""Every bad configuration fails before any work, with a message that says what to change; the command
line documents every field and reads YAML with per-field overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from transformer_lens import HookedTransformer, HookedTransformerConfig

from sae_training.cli import build_parser
from sae_training.config import (
    CacheConfig,
    ConfigError,
    EvalConfig,
    TrainConfig,
    config_from_args,
    field_docs,
)
from sae_training.trainer import check_against_model, train


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"architecture": "matryoshka", "width": 100}, "not divisible into the Matryoshka groups"),
        ({"k": 2000, "width": 1024}, "k=2000 is larger than width=1024"),
        ({"architecture": "transcoder"}, "needs target_hook"),
        ({"target_hook": "blocks.1.hook_mlp_out"}, "use architecture=transcoder"),
        ({"architecture": "sparse_magic"}, "architecture = .sparse_magic.: choose one of topk"),
        ({"head_index": 2}, "head_index is only meaningful with an attn.hook_z hook"),
        ({"buffer_tokens": 1000, "batch_size": 4096}, "raise buffer_tokens or lower batch_size"),
        ({"total_tokens": 100, "batch_size": 4096}, "must be at least one batch"),
    ],
)
def test_static_validation_messages(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes).validate()


def test_matryoshka_width_that_divides_is_accepted():
    TrainConfig(architecture="matryoshka", width=512).validate()


def _small_model(d_model: int) -> HookedTransformer:
    cfg = HookedTransformerConfig(n_layers=2, d_model=d_model, n_ctx=16, d_head=16, d_vocab=50, act_fn="gelu")
    return HookedTransformer(cfg)


def test_hook_not_in_model_names_alternatives():
    model = _small_model(32)
    with pytest.raises(
        ConfigError,
        match=r"hook 'blocks.7.hook_resid_post' is not in the model \(2 layers\).*blocks.0.hook_resid_post",
    ):
        check_against_model(TrainConfig(hook="blocks.7.hook_resid_post"), model)


def test_d_in_mismatch_between_cache_and_model():
    model = _small_model(32)
    with pytest.raises(
        ConfigError, match=r"d_in mismatch: the cache has width 96 .* the model's hook has 32"
    ):
        check_against_model(TrainConfig(hook="blocks.1.hook_resid_post"), model, source_d_in=96)


def test_cache_errors_before_training(cache_dir, tiny, tmp_path):
    with pytest.raises(ConfigError, match="not in the cache"):
        train(
            TrainConfig(
                hook="blocks.0.hook_resid_post",
                cache_dir=str(cache_dir),
                out_dir=str(tmp_path),
                progress=False,
                batch_size=512,
                total_tokens=1024,
            ),
            model=tiny,
        )
    with pytest.raises(ConfigError, match="no checkpoint"):
        train(
            TrainConfig(
                hook="blocks.1.hook_resid_post",
                cache_dir=str(cache_dir),
                out_dir=str(tmp_path / "x"),
                resume=True,
                progress=False,
                batch_size=512,
                total_tokens=1024,
            ),
            model=tiny,
        )


def test_resume_refuses_a_mismatched_config(cache_dir, tiny, tmp_path):
    kw = {"hook": "blocks.1.hook_resid_post", "cache_dir": str(cache_dir), "out_dir": str(tmp_path),
          "progress": False,
          "batch_size": 512, "total_tokens": 512 * 4, "width": 64, "k": 4}  # fmt: skip
    train(TrainConfig(**kw), model=tiny, stop_after_steps=2)
    with pytest.raises(ConfigError, match=r"(?s)--resume refused.*width: 64 \(checkpoint\) vs 128 \(now\)"):
        train(TrainConfig(**{**kw, "width": 128, "resume": True}), model=tiny)


def test_gsae_needs_gradients_in_the_cache(tmp_path, tiny):
    from sae_training.activations import write_cache

    write_cache(
        CacheConfig(
            model="tiny",
            hooks=["blocks.0.hook_resid_post"],
            n_tokens=600,
            context_size=16,
            out_dir=str(tmp_path / "c"),
            progress=False,
        ),
        tiny,
        "ck-tiny",
    )
    with pytest.raises(ConfigError, match="--with-gradients true"):
        train(
            TrainConfig(
                architecture="gsae",
                hook="blocks.0.hook_resid_post",
                cache_dir=str(tmp_path / "c"),
                batch_size=256,
                total_tokens=512,
                progress=False,
                out_dir=str(tmp_path / "o"),
            ),
            model=tiny,
        )


@pytest.mark.parametrize("cls", [TrainConfig, CacheConfig, EvalConfig])
def test_every_field_has_a_docstring_shown_in_help(cls, capsys):
    docs = field_docs(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    assert set(names) <= set(docs), sorted(set(names) - set(docs))
    command = {TrainConfig: "train", CacheConfig: "cache", EvalConfig: "eval"}[cls]
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in names:
        if name == "architecture_config":  # one flag per architecture's option, each with its doc
            from sae_training.architectures import ARCHITECTURES, option_types
            from sae_training.config import option_flag

            for arch, (_, config) in ARCHITECTURES.items():
                for option in option_types(arch):
                    assert option_flag(arch, option) in text
                    assert " ".join(field_docs(config)[option].split())[:30] in text
            continue
        assert "--" + name.replace("_", "-") in text
        assert " ".join(docs[name].split())[:30] in text


def test_yaml_then_command_line_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "architecture: matryoshka\nwidth: 256\nk: 8\narchitecture_config: {group_fractions: [0.5, 0.5]}\n"
    )
    args = build_parser().parse_args(
        [
            "train",
            "--config",
            str(path),
            "--k",
            "16",
            "--resume",
            "true",
            "--target-hook",
            "none",
            "--lr",
            "3e-4",
        ]
    )
    cfg = config_from_args(TrainConfig, args)
    assert (cfg.architecture, cfg.width, cfg.k, cfg.resume, cfg.target_hook, cfg.lr) == (
        "matryoshka",
        256,
        16,
        True,
        None,
        3e-4,
    )
    assert cfg.architecture_config == {
        "group_fractions": [0.5, 0.5],
        "n_sampled_prefixes": 0,
        "prefix_loss": "mean",
    }
    path.write_text("widht: 3\n")
    with pytest.raises(ConfigError, match=r"unknown field.*widht"):
        config_from_args(TrainConfig, build_parser().parse_args(["train", "--config", str(path)]))


def test_circuitkit_cli_has_the_sae_commands():
    from circuitkit.cli import build_parser as ck_parser

    parser = ck_parser()
    args = parser.parse_args(["sae", "train", "--width", "64"])
    assert args.width == "64" and args.func.__name__ == "cmd_train"


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).resolve().parents[2] / "configs" / "sae").glob("*.yaml"))
)
def test_example_configs_are_valid(path):
    cfg = config_from_args(TrainConfig, build_parser().parse_args(["train", "--config", str(path)]))
    cfg.validate()


def _non_default(tp, default):
    """A value of type ``tp`` different from ``default``."""
    import typing

    from sae_training.config import _unwrap_optional

    inner, optional = _unwrap_optional(tp)
    if optional and default is not None:
        return None
    origin = typing.get_origin(inner)
    if origin is typing.Literal:
        return next(c for c in typing.get_args(inner) if c != default)
    if origin is list:
        return [0.25, 0.75] if typing.get_args(inner)[0] is float else ["a", "b"]
    if inner is bool:
        return not default
    if inner is int:
        return (default or 0) + 7
    if inner is float:
        return (default or 0.0) + 0.125
    return "some/other-value"


@pytest.mark.parametrize("cls", [TrainConfig, CacheConfig, EvalConfig])
def test_every_field_round_trips_cli_yaml_python(cls, tmp_path):
    """Each field, set to a non-default value of its real type, survives CLI text, YAML and Python."""
    from sae_training.config import field_types, format_value, load_yaml, to_yaml

    types_ = field_types(cls)
    default = cls()
    values = {
        f.name: _non_default(types_[f.name], getattr(default, f.name))
        for f in dataclasses.fields(cls)
        if f.name != "architecture_config"  # nested per architecture: the test below
    }
    cfg = cls(**values)
    command = {TrainConfig: "train", CacheConfig: "cache", EvalConfig: "eval"}[cls]
    argv = [command]
    for name, value in values.items():
        argv += ["--" + name.replace("_", "-"), format_value(value)]
    from_cli = config_from_args(cls, build_parser().parse_args(argv))
    assert from_cli == cfg
    for name, value in values.items():  # by type too: 7 is not "7", 0.125 is not "0.125"
        assert type(getattr(from_cli, name)) is type(value), name
    path = tmp_path / "cfg.yaml"
    path.write_text(to_yaml(cfg))
    assert cls(**load_yaml(path, cls)) == cfg
    assert cls(**dataclasses.asdict(cfg)) == cfg


def _architectures_with_options():
    from sae_training.architectures import ARCHITECTURES, option_types

    return [name for name in ARCHITECTURES if option_types(name)]


@pytest.mark.parametrize("arch", _architectures_with_options())
def test_every_architecture_option_round_trips_cli_yaml_python(arch, tmp_path):
    """Each architecture's own options, set to non-default values of their real types, survive
    ``--<arch>.<option>`` text, the nested YAML ``architecture_config`` and Python, by type."""
    from sae_training.architectures import TRANSCODERS, option_defaults, option_types
    from sae_training.config import format_value, load_yaml, option_flag, to_yaml

    types_, defaults = option_types(arch), option_defaults(arch)
    options = {name: _non_default(tp, defaults[name]) for name, tp in types_.items()}
    if arch == "matryoshka":  # fractions that divide the default width and sum to 1
        options["group_fractions"] = [0.25, 0.75]
    for decay in ("density_decay", "threshold_decay"):  # Mutual / Feature Choice: in [0, 1)
        if decay in options:
            options[decay] = 0.5
    data = {"target_hook": "blocks.1.hook_mlp_out"} if arch in TRANSCODERS else {}
    cfg = TrainConfig(architecture=arch, architecture_config=options, **data)
    assert cfg.architecture_config == options
    argv = ["train", "--architecture", arch] + (["--target-hook", data["target_hook"]] if data else [])
    for name, value in options.items():
        argv += [option_flag(arch, name), format_value(value)]
    from_cli = config_from_args(TrainConfig, build_parser().parse_args(argv))
    assert from_cli == cfg
    for name, value in options.items():
        assert type(from_cli.architecture_config[name]) is type(value), name
    path = tmp_path / "cfg.yaml"
    path.write_text(to_yaml(cfg))
    assert "architecture_config:" in path.read_text()
    assert TrainConfig(**load_yaml(path, TrainConfig)) == cfg
    assert TrainConfig(**dataclasses.asdict(cfg)) == cfg
    cfg.validate()
    # Only the options given are needed; the rest take the architecture's defaults (saved resolved).
    first = next(iter(options))
    partial = TrainConfig(architecture=arch, architecture_config={first: options[first]}, **data)
    assert partial.architecture_config == {**defaults, first: options[first]}


def test_option_values_are_checked_by_type(tmp_path):
    with pytest.raises(ConfigError, match=r"--gsae.beta 'high': expected a number"):
        config_from_args(TrainConfig, build_parser().parse_args(["train", "--architecture", "gsae",
                                                                 "--gsae.beta", "high"]))  # fmt: skip
    path = tmp_path / "run.yaml"
    path.write_text("architecture: matryoshka\narchitecture_config: {n_sampled_prefixes: 2.5}\n")
    with pytest.raises(ConfigError, match=rf"--config {path}: architecture_config: n_sampled_prefixes = 2.5"):
        config_from_args(TrainConfig, build_parser().parse_args(["train", "--config", str(path)]))
    path.write_text("architecture: gsae\narchitecture_config: {beta: 1}\n")  # an int for a float: 1.0
    cfg = config_from_args(TrainConfig, build_parser().parse_args(["train", "--config", str(path)]))
    assert cfg.architecture_config == {"beta": 1.0} and type(cfg.architecture_config["beta"]) is float
    with pytest.raises(ConfigError, match="must be >= 0"):
        TrainConfig(architecture="gsae", architecture_config={"beta": -1.0}).validate()


def test_an_option_of_another_architecture_is_refused_by_name(tmp_path):
    message = r"--gsae.beta is an option of architecture gsae, but the architecture is topk: drop it or pass"
    with pytest.raises(ConfigError, match=message + " --architecture gsae"):
        config_from_args(TrainConfig, build_parser().parse_args(["train", "--gsae.beta", "0.5"]))
    with pytest.raises(ConfigError, match=r"beta is not an option of architecture matryoshka \(its options: "
                                          r"group_fractions, n_sampled_prefixes, prefix_loss\)"):  # fmt: skip
        TrainConfig(architecture="matryoshka", architecture_config={"beta": 0.5}).validate()
    path = tmp_path / "run.yaml"  # the YAML names gsae, the command line switches to topk
    path.write_text("architecture: gsae\narchitecture_config: {beta: 0.5}\n")
    args = build_parser().parse_args(["train", "--config", str(path), "--architecture", "topk"])
    with pytest.raises(ConfigError, match="beta is not an option of architecture topk"):
        config_from_args(TrainConfig, args).validate()


def test_flat_keys_of_earlier_versions_warn_and_name_the_nested_form(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("architecture: matryoshka\nwidth: 256\nmatryoshka_sampled_prefixes: 3\n")
    with pytest.warns(FutureWarning, match=r"matryoshka_sampled_prefixes is deprecated; write "
                                           r"architecture_config: \{n_sampled_prefixes: ...\}"):  # fmt: skip
        cfg = config_from_args(TrainConfig, build_parser().parse_args(["train", "--config", str(path)]))
    assert cfg.architecture_config["n_sampled_prefixes"] == 3
    with pytest.warns(FutureWarning, match=r"--gsae-beta is deprecated; write --gsae.beta"):
        cfg = config_from_args(
            TrainConfig, build_parser().parse_args(["train", "--architecture", "gsae", "--gsae-beta", "0.25"])
        )
    assert cfg.architecture_config == {"beta": 0.25}
    # Every old train_config.yaml holds every flat key at its default: those of other architectures drop.
    path.write_text("architecture: topk\ngsae_beta: 1.0\nzipf_alpha: 1.0\nmatryoshka_sampled_prefixes: 0\n")
    assert config_from_args(TrainConfig, build_parser().parse_args(["train", "--config", str(path)])) == (
        TrainConfig(architecture="topk")
    )
    path.write_text("architecture: topk\nzipf_alpha: 2.0\n")  # a real setting that would be ignored
    message = r"zipf_alpha is an option of mutual_choice / feature_choice, not of architecture topk"
    with pytest.raises(ConfigError, match=message):
        config_from_args(TrainConfig, build_parser().parse_args(["train", "--config", str(path)]))
