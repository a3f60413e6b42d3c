"""Issue 13 for sae_training: a user error is one line naming the input and the fix, exit code 2, before
any expensive work (the model is never loaded); runs never destroy earlier work; metrics stay one line
per step across kills and resumes; damaged files are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sae_training.cli import main
from sae_training.config import ConfigError, TrainConfig
from sae_training.trainer import train

RESID = "blocks.1.hook_resid_post"


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if anything loads a model: errors must come before that."""
    import circuitkit.models

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the user error was reported")

    monkeypatch.setattr(circuitkit.models, "load_model", refuse)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def _bad_inputs(tmp: Path) -> list[tuple[list[str], str]]:
    (tmp / "wrong_type.yaml").write_text("width: wide\n")
    (tmp / "syntax.yaml").write_text("width: [1, 2\nk: 3\n")
    (tmp / "wrong_lr.yaml").write_text("lr: fast\n")
    trunc = tmp / "trunc" / "checkpoint"
    trunc.mkdir(parents=True)
    good = {"a": torch.zeros(1000)}
    torch.save(good, trunc / "state.pt")
    data = (trunc / "state.pt").read_bytes()
    (trunc / "state.pt").write_bytes(data[: len(data) // 2])
    foreign = tmp / "foreign" / "checkpoint"
    foreign.mkdir(parents=True)
    torch.save({"weights": torch.zeros(3), "fn": Path("x")}, foreign / "state.pt")  # pickled object
    other = tmp / "other" / "checkpoint"
    other.mkdir(parents=True)
    torch.save({"weights": torch.zeros(3)}, other / "state.pt")  # loads, but not ours
    base = ["train", "--model", "tiny", "--hook", RESID, "--progress", "false"]
    return [
        ([*base, "--lr", "-0.01"], "--lr -0.01: must be > 0"),
        ([*base, "--lr", "fast"], "--lr 'fast': expected a number"),
        ([*base, "--b-dec-init", "banana"], "--b-dec-init 'banana': choose one of geometric_median"),
        ([*base, "--dtype", "float16"], "--dtype 'float16': choose one of float32, float64"),
        ([*base, "--width", "1.5"], "--width '1.5': expected a whole number"),
        ([*base, "--resume", "maybe"], "--resume 'maybe': expected true or false"),
        ([*base, "--config", str(tmp / "wrong_type.yaml")], "wrong_type.yaml: width = 'wide': expected int"),
        ([*base, "--config", str(tmp / "wrong_lr.yaml")], "wrong_lr.yaml: lr = 'fast': expected float"),
        ([*base, "--config", str(tmp / "syntax.yaml")], "syntax.yaml: not valid YAML (line"),
        ([*base, "--config", str(tmp / "absent.yaml")], "absent.yaml: no such file"),
        ([*base, "--device", "cuda"] if not torch.cuda.is_available() else [*base, "--device", "cuda:99"],
         "--device cuda"),
        ([*base, "--device", "banana"], "--device 'banana': not a torch device"),
        ([*base, "--text", str(tmp / "missing.txt")], "missing.txt': no such file or folder"),
        ([*base, "--out-dir", str(tmp / "trunc"), "--resume", "true"],
         "trunc/checkpoint/state.pt cannot be read"),
        ([*base, "--out-dir", str(tmp / "foreign"), "--resume", "true"],
         "foreign/checkpoint/state.pt cannot be read"),
        ([*base, "--out-dir", str(tmp / "other"), "--resume", "true"], "is not a sae_training checkpoint"),
        ([*base, "--out-dir", str(tmp / "trunc")], "already holds a run (checkpoint)"),
        ([*base, "--resume", "true", "--overwrite", "true"], "contradict"),
        (["cache", "--model", "tiny", "--storage-dtype", "float8"],
         "--storage-dtype 'float8': choose one of"),
        (["eval", "--dictionary", "x", "--n-contexts", "many"],
         "--n-contexts 'many': expected a whole number"),
    ]  # fmt: skip


def test_bad_inputs_are_one_line_exit_2_before_the_model(tmp_path, capsys, no_model):
    for argv, expected in _bad_inputs(tmp_path):
        code, err = run_cli(argv, capsys)
        assert code == 2, (argv, err)
        assert expected in err, (argv, err)
        assert len(err.splitlines()) == 1, (argv, err)
        assert err.startswith("sae_training: error: ")


def test_damaged_dictionary_files_are_named(tmp_path, capsys, no_model):
    from sae_training.store import PRETRAINED_DIR

    src = PRETRAINED_DIR / "ck-6l" / "ck-6l__blocks.3.hook_resid_post__topk"
    cases = {
        "malformed": ('{"d_in": 256,', None, "cfg.json is not valid JSON"),
        "empty": ("", None, "cfg.json is not valid JSON"),
        "foreign": ('{"hello": 1}', None, "cfg.json lacks architecture, d_in, d_sae"),
        "truncated": (None, 0.5, "sae_weights.safetensors is truncated or damaged"),
        "header": (None, 0.00001, "sae_weights.safetensors is truncated or damaged"),
    }
    for name, (cfg_text, keep, expected) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "cfg.json").write_text(cfg_text if cfg_text is not None else (src / "cfg.json").read_text())
        weights = (src / "sae_weights.safetensors").read_bytes()
        (folder / "sae_weights.safetensors").write_bytes(
            weights[: int(len(weights) * keep)] if keep else weights
        )
        code, err = run_cli(["eval", "--dictionary", str(folder), "--model", "tiny"], capsys)
        assert code == 2 and expected in err and str(folder) in err, (name, err)
        assert len(err.splitlines()) == 1


def test_parsed_dtypes_work(tmp_path):
    from sae_training.cli import build_parser
    from sae_training.config import CacheConfig, config_from_args

    cfg = config_from_args(TrainConfig, build_parser().parse_args(["train", "--dtype", "float64"]))
    assert cfg.dtype == "float64"
    cfg = config_from_args(CacheConfig, build_parser().parse_args(["cache", "--storage-dtype", "float16"]))
    assert cfg.storage_dtype == "float16"


def _small(cache_dir, out, **kw) -> TrainConfig:
    base = {"model": "tiny", "hook": RESID, "width": 64, "k": 4, "batch_size": 256, "total_tokens": 256 * 12,
            "cache_dir": str(cache_dir), "out_dir": str(out), "progress": False, "log_every": 1,
            "checkpoint_every": 0, "lr_warmup_steps": 2}  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_rerun_without_resume_is_refused_and_overwrite_starts_over(cache_dir, tiny, tmp_path):
    train(_small(cache_dir, tmp_path), model=tiny, stop_after_steps=3)
    before = (tmp_path / "checkpoint" / "state.pt").read_bytes()
    with pytest.raises(ConfigError, match=r"already holds a run .*--resume true.*--overwrite true"):
        train(_small(cache_dir, tmp_path), model=tiny)
    assert (tmp_path / "checkpoint" / "state.pt").read_bytes() == before  # untouched
    assert _steps(tmp_path) == [1, 2, 3]
    train(_small(cache_dir, tmp_path, overwrite=True), model=tiny)
    assert _steps(tmp_path) == list(range(1, 13))  # the old run's lines are gone, not appended to


@pytest.mark.slow
def test_metrics_one_line_per_step_across_kill_and_resume(cache_dir, tiny, tmp_path):
    """A SIGKILL loses the steps since the last checkpoint; the resumed run logs them again, once."""
    train(_small(cache_dir, tmp_path), model=tiny, stop_after_steps=5)
    ckpt = tmp_path / "checkpoint" / "state.pt"
    at_step_5 = ckpt.read_bytes()
    train(_small(cache_dir, tmp_path, resume=True), model=tiny, stop_after_steps=8)
    assert _steps(tmp_path) == list(range(1, 9))
    ckpt.write_bytes(at_step_5)  # as if killed at step 8 before writing its checkpoint
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 9, "lo')  # ... mid-way through writing a line
    train(_small(cache_dir, tmp_path, resume=True), model=tiny)
    assert _steps(tmp_path) == list(range(1, 13))


def test_checkpoints_load_without_pickled_code(cache_dir, tiny, tmp_path):
    from sae_training.trainer import load_checkpoint

    train(_small(cache_dir, tmp_path, total_tokens=256 * 2), model=tiny)
    state = torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=True)  # raises if pickled code
    assert state["step"] == 2 and load_checkpoint(tmp_path / "checkpoint" / "state.pt")["world_size"] == 1
