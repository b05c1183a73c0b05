"""Break test 12's findings outside the sharded worlds themselves (those are in tests/scaling)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from counterfeed.cli import main

QUICKSTART = str(Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml")


def _cli(args: list[str], capsys) -> tuple[int, str]:
    """The command's exit code and its stdout + stderr, as a shell would see them."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("command", ["validate", "run"])
def test_an_output_folder_that_cannot_be_made_is_refused_by_validate_as_by_run(command, capsys):
    """``validate --out /proc/nope`` said ok and ``run`` then refused it: both refuse it now, before
    anything is simulated, naming ``--out`` and the folder (exit 2)."""
    code, out = _cli([command, QUICKSTART, "--out", "/proc/nope", "--quiet", "--set", "population.users=40"], capsys)
    assert code == 2, out
    assert "--out: cannot create the run directories in '/proc/nope': no folder can be made in '/proc'" in out
    assert "sessions" not in out  # nothing was simulated


def test_a_writable_output_folder_passes_and_the_check_leaves_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out = _cli(["validate", QUICKSTART, "--out", str(tmp_path / "a" / "b")], capsys)
    assert code == 0, out
    assert os.listdir(tmp_path) == []  # neither the folders to create nor the check's own
    code, out = _cli(["validate", QUICKSTART, "--out", str(tmp_path)], capsys)
    assert code == 0 and os.listdir(tmp_path) == []
