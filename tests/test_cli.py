"""The ``circuitkit`` command: help, zoo listing, and its error discipline. Every bad input below is
one line on stderr naming the input, exit code 2, before any result is computed or written; a bug
keeps its traceback."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from circuitkit.cli import main


def test_help_runs():
    out = subprocess.run([sys.executable, "-m", "circuitkit.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "zoo" in out.stdout and "--debug" in out.stdout


def test_zoo_list(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert "ck-tiny" in out and "ck-6l" in out and "IOI acc" in out


def _discover(tmp_path, *extra: str) -> list[str]:
    return [
        "discover",
        "--model",
        "tiny",
        "--n-prompts",
        "4",
        "--out",
        str(tmp_path / "out"),
        "--quiet",
        *extra,
    ]


def _evaluate(tmp_path, *extra: str) -> list[str]:
    return [
        "evaluate",
        "--model",
        "tiny",
        "--n-prompts",
        "4",
        "--out",
        str(tmp_path / "out"),
        "--quiet",
        *extra,
    ]


# (command builder, extra args, text the one-line message must contain)
BAD = [
    (_discover, ["--method", "atp*", "--option", "grad_drop=maybe"], "option 'grad_drop' of method 'atp*'"),
    (_discover, ["--method", "atp", "--option", "foo=1"], "unknown option(s) ['foo'] for method 'atp'"),
    (_discover, ["--method", "ig", "--option", "steps=0"], "option 'steps' of method 'ig'"),
    (_discover, ["--method", "ig", "--option", "steps=fast"], "option 'steps' of method 'ig'"),
    (_discover, ["--method", "relp", "--option", "rules=ln+magic"], "unknown RelP rule"),
    (_discover, ["--method", "ig", "--option", "steps=2", "--option", "steps=3"], "--option given twice"),
    (_discover, ["--method", "acdc"], "unknown method 'acdc'"),
    (_discover, ["--method", "heads", "--families", "mlp_out"], "scores only the families head"),
    (_discover, ["--method", "features"], "needs the dictionaries"),
    (_discover, ["--device", "banana"], "--device 'banana' is not a device"),
    (_discover, ["--split", "nowhere"], "split 'nowhere'"),
    (_discover, ["--n-prompts", "2000000"], "--n-prompts 2000000: about"),
    (_discover, ["--n-prompts", "200000"], "use at most --n-prompts"),
    (_evaluate, ["--method", "atp*:grad_drop=maybe"], "option 'grad_drop' of method 'atp*'"),
    (_evaluate, ["--method", "ig:steps"], "must be key=value"),
    (_evaluate, ["--k", "999", "--families", "head"], "--k 999 is more than the model's 16 heads"),
]
if not torch.cuda.is_available():
    BAD.append((_discover, ["--device", "cuda"], "no CUDA device"))


@pytest.mark.parametrize(("command", "extra", "message"), BAD, ids=[" ".join(b[1]) for b in BAD])
def test_user_errors_are_one_line_exit_2_before_any_work(command, extra, message, tmp_path, capsys):
    t0 = time.perf_counter()
    assert main(command(tmp_path, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("circuitkit: error: ") and "\n" not in err and "Traceback" not in err, err
    assert message in err, err
    assert not list((tmp_path / "out").glob("*.parquet")), "nothing may be written"
    assert time.perf_counter() - t0 < 60  # refused up front (a 2M-prompt run would take minutes)


@pytest.mark.parametrize(
    "extra",
    [
        ["--n-prompts", "0"],
        ["--k", "0"],
        ["--families", "head,bogus"],
        ["--task", "nope"],
        ["--n-prompts", "x"],
    ],
)
def test_argument_errors_exit_2(extra, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(_evaluate(tmp_path, *extra))
    assert exc.value.code == 2
    assert "error: argument" in capsys.readouterr().err


def test_out_that_is_a_file_or_not_writable_is_refused_before_computing(tmp_path, capsys):
    afile = tmp_path / "results.txt"
    afile.write_text("keep me")
    assert main([*_discover(tmp_path)[:-3], "--out", str(afile), "--quiet"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert afile.read_text() == "keep me"
    assert main([*_discover(tmp_path)[:-3], "--out", str(afile / "sub"), "--quiet"]) == 2
    assert f"--out {afile / 'sub'} cannot hold files" in capsys.readouterr().err


def test_grad_drop_no_is_false_and_recorded_typed(tmp_path):
    from circuitkit.results import list_results, load

    assert (
        main(_discover(tmp_path, "--method", "atp*", "--option", "grad_drop=no", "--families", "head")) == 0
    )
    (stem,) = list_results(tmp_path / "out")
    p = load(stem).provenance
    assert p.options == {"qk_fix": True, "grad_drop": False}
    assert p.score_kind == "effect"  # GradDrop on would give unsigned magnitudes
    assert p.model == "ck-tiny"  # the alias typed is resolved


def test_a_bug_keeps_its_traceback_and_debug_shows_user_errors(tmp_path, monkeypatch):
    from circuitkit import methods

    method = methods.get_method("atp")

    def broken(req):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (a bug)")

    monkeypatch.setitem(methods.REGISTRY, "atp", methods.Method(**{**method.__dict__, "run": broken}))
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        main(_discover(tmp_path, "--method", "atp", "--families", "head"))
    with pytest.raises(ValueError, match="unknown method"):
        main(["--debug", *_discover(tmp_path, "--method", "acdc")])
