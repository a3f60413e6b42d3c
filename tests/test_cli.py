from __future__ import annotations

import subprocess
import sys

from circuitkit.cli import main


def test_help_runs():
    out = subprocess.run([sys.executable, "-m", "circuitkit.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "zoo" in out.stdout


def test_zoo_list(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert "ck-tiny" in out and "ck-6l" in out and "IOI acc" in out
