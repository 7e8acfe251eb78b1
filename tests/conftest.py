"""Shared fixtures. Headless set-up follows ../shared/STACK.md."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.hookimpl(trylast=True)  # after pytest-xvfb has set DISPLAY
def pytest_configure(config):
    # autosaves and recovered plans of the tests never touch (or come from) the user's home
    if not os.environ.get("FLUOROPLAN_RECOVERY_DIR"):
        import tempfile

        os.environ["FLUOROPLAN_RECOVERY_DIR"] = tempfile.mkdtemp(prefix="fluoroplan-recovery-")
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkOSOpenGLRenderWindow")


def shared_data(*parts: str) -> Path:
    """Path inside ../shared/data, or skip the test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real scan not available: {path} (../shared/data is absent on this machine)")
    return path
