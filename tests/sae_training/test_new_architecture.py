"""A new architecture is one file: a module that defines its config (with its own options), its training
class, and registers itself. Nothing else in sae_training changes, and the command line, YAML and the
saved run config all know its options by type."""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap

import pytest
import torch
from sae_lens import SAE

MODULE = '''
"""Shrunk TopK: TopK whose selected activations are multiplied by a fixed factor (a test architecture)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from torch import Tensor

from sae_training.architectures import (
    SparseCoderTrainingConfig,
    SparseCoderTrainingSAE,
    register_architecture,
)


@dataclass
class ShrunkTopKConfig(SparseCoderTrainingConfig):
    """Shrunk TopK training config."""

    shrink: float = 1.0
    """Factor applied to the selected activations."""
    mode: Literal["scale", "keep"] = "scale"
    """scale: multiply by shrink; keep: leave the activations alone."""

    options: ClassVar[tuple[str, ...]] = ("shrink", "mode")

    @classmethod
    def check_options(cls, options: dict[str, Any], width: int, k: int) -> str | None:
        return None if options["shrink"] > 0 else "--shrunk-topk.shrink must be > 0"

    @classmethod
    def architecture(cls) -> str:
        return "test_shrunk_topk"


class ShrunkTopKTrainer(SparseCoderTrainingSAE):
    cfg: ShrunkTopKConfig

    def __init__(self, cfg: ShrunkTopKConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)

    def nonlinearity(self, values: Tensor) -> Tensor:
        factor = self.cfg.shrink if self.cfg.mode == "scale" else 1.0
        return values.relu() * factor


register_architecture("shrunk_topk", ShrunkTopKTrainer, ShrunkTopKConfig)
'''


@pytest.fixture
def shrunk_topk(tmp_path):
    """Import the one-file architecture from a scratch folder; unregister it afterwards."""
    from sae_training.architectures import ARCHITECTURES, unregister_architecture

    path = tmp_path / "shrunk_topk_arch.py"
    path.write_text(textwrap.dedent(MODULE))
    spec = importlib.util.spec_from_file_location("shrunk_topk_arch", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["shrunk_topk_arch"] = module
    spec.loader.exec_module(module)
    try:
        assert "shrunk_topk" in ARCHITECTURES
        yield module
    finally:
        unregister_architecture("shrunk_topk")
        sys.modules.pop("shrunk_topk_arch", None)


def test_a_one_file_architecture_trains_from_the_command_line(shrunk_topk, cache_dir, tmp_path, capsys):
    from sae_training.cli import build_parser, main

    with pytest.raises(SystemExit):  # its options are documented in --help, grouped under its name
        build_parser().parse_args(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--shrunk-topk.shrink float" in help_text and "Factor applied to the selected" in help_text
    assert "--shrunk-topk.mode {scale,keep}" in help_text

    out = tmp_path / "run"
    argv = ["train", "--architecture", "shrunk_topk", "--shrunk-topk.shrink", "0.5", "--hook",
            "blocks.1.hook_resid_post", "--cache-dir", str(cache_dir), "--model", "tiny", "--width", "64",
            "--k", "4", "--batch-size", "256", "--total-tokens", "512", "--log-every", "1", "--progress",
            "false", "--out-dir", str(out)]  # fmt: skip
    assert main(argv) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    saved = (out / "train_config.yaml").read_text()
    assert "architecture: shrunk_topk" in saved
    assert "architecture_config:\n  shrink: 0.5\n  mode: scale\n" in saved

    # The run used the option: its activations are half of plain TopK's on the same weights.
    sae = SAE.load_from_disk(str(out))  # saved as sae-lens's own topk (the inherited default)
    trainer, config = shrunk_topk.ShrunkTopKTrainer, shrunk_topk.ShrunkTopKConfig
    module = trainer(config(d_in=sae.cfg.d_in, d_sae=64, k=4, shrink=0.5))
    module.load_state_dict({k: v for k, v in sae.state_dict().items()}, strict=False)
    x = torch.randn(8, sae.cfg.d_in)
    ours = module.sparse_encode(x)[0].to_dense(64).detach()
    torch.testing.assert_close(ours, 0.5 * sae.encode(x).detach())

    # A bad option value is refused by name, before any work.
    argv[argv.index("0.5")] = "-1"
    assert main(argv) == 2
    assert "--shrunk-topk.shrink must be > 0" in capsys.readouterr().err
    argv[argv.index("-1")] = "soft"
    assert main(argv) == 2
    assert "--shrunk-topk.shrink 'soft': expected a number" in capsys.readouterr().err


def test_a_one_file_architecture_round_trips_its_options_through_yaml(shrunk_topk, tmp_path):
    from sae_training.cli import build_parser
    from sae_training.config import TrainConfig, config_from_args, to_yaml

    cfg = TrainConfig(architecture="shrunk_topk", architecture_config={"shrink": 2, "mode": "keep"})
    assert cfg.architecture_config == {"shrink": 2.0, "mode": "keep"}
    assert type(cfg.architecture_config["shrink"]) is float
    path = tmp_path / "run.yaml"
    path.write_text(to_yaml(cfg))
    assert config_from_args(TrainConfig, build_parser().parse_args(["train", "--config", str(path)])) == cfg
    path.write_text("architecture: shrunk_topk\narchitecture_config: {mode: fast}\n")
    from sae_training.config import ConfigError

    with pytest.raises(ConfigError, match=r"mode = 'fast': choose one of scale, keep"):
        config_from_args(TrainConfig, build_parser().parse_args(["train", "--config", str(path)]))
