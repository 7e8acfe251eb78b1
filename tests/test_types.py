"""The type checker (mypy, configured in pyproject.toml) is clean on the domain model,
geometry, the planner and io - and it does catch a wrong type there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]

pytest.importorskip("mypy", reason="mypy is a test extra: bash tools/setup.sh --test")


def _mypy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mypy", *args], cwd=PROJECT,
                          capture_output=True, text=True, timeout=600)


def test_mypy_is_clean():
    run = _mypy()
    assert run.returncode == 0, run.stdout + run.stderr


def test_mypy_catches_a_wrong_type(tmp_path):
    bad = tmp_path / "bad_plan_use.py"
    bad.write_text(
        "from fluoroplan.model.plan import Needle\n"
        "def depth(n: Needle) -> str:\n"
        "    return n.max_depth_mm\n"  # a float, not text
    )
    run = _mypy("--config-file", str(PROJECT / "pyproject.toml"), str(bad))
    assert run.returncode == 1 and "Incompatible return value type" in run.stdout, run.stdout
