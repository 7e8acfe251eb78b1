"""The layout the README and docs/architecture.md describe, checked on the source: every import
of a fluoroplan module (at module level or inside a function) points down the layers; the core
packages import nothing of fluoroplan inside functions (no lazy import dodging a cycle); only
the workstation imports Qt; no module grows past 1000 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fluoroplan"

# what each part may import (besides itself)
ALLOWED = {
    "errors": set(),
    "geometry": {"errors"},
    "model": {"errors", "geometry"},
    "io": {"errors", "geometry", "model"},
    "resources": {"errors", "geometry", "model", "io"},
    "segmentation": {"errors", "geometry", "model", "io"},
    "planner": {"errors", "geometry", "model", "io", "segmentation"},
    "report": {"errors", "geometry", "model", "io", "segmentation", "planner"},
    "rehearsal": {"errors", "geometry", "model", "io", "segmentation", "planner"},
    "app": {"errors", "geometry", "model", "io", "segmentation", "planner", "report",
            "rehearsal", "resources"},
    "commands": {"errors", "geometry", "model", "io", "segmentation", "planner", "report",
                 "rehearsal", "resources", "app"},
    "cli": {"errors", "io", "commands"},
    "__init__": set(),
}
CORE = ("errors", "geometry", "model", "io", "resources", "segmentation", "planner", "report",
        "rehearsal")
LAZY_ALLOWED = {
    # (file, imported module): why the import waits for the call
    ("report/pdf.py", "fluoroplan.geometry.render3d"): "VTK is loaded only to draw the 3-D figure",
}
MAX_LINES = 1000


def _sources():
    return sorted(PACKAGE.rglob("*.py"))


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py") if rel.parts else ""


def _imports(path: Path):
    """(node, imported module, at module level?) of every fluoroplan import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set()
    for node in tree.body:
        top.add(id(node))
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks are module level
            top.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name == "fluoroplan" or name.startswith("fluoroplan."):
                yield node, name, id(node) in top
            elif name.split(".")[0] in ("PySide6", "shiboken6"):
                yield node, name, id(node) in top


def test_imports_point_down_the_layers():
    wrong = []
    for path in _sources():
        part = _part(path)
        for node, name, _ in _imports(path):
            if not name.startswith("fluoroplan"):
                continue
            if name == "fluoroplan":
                continue  # the root package: its version only
            target = name.split(".")[1]
            if target != part and target not in ALLOWED[part]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{node.lineno} ({part}) imports {name}")
    assert not wrong, "imports that point up the layers:\n" + "\n".join(wrong)


def test_no_lazy_imports_in_the_core():
    lazy = []
    for path in _sources():
        rel = path.relative_to(PACKAGE).as_posix()
        if _part(path) not in CORE:
            continue
        for node, name, at_top in _imports(path):
            if not at_top and name.startswith("fluoroplan") and (rel, name) not in LAZY_ALLOWED:
                lazy.append(f"{rel}:{node.lineno} imports {name} inside a function")
    assert not lazy, "\n".join(lazy)


def test_only_the_app_imports_qt():
    qt = [f"{path.relative_to(PACKAGE)}:{node.lineno} imports {name}"
          for path in _sources() if _part(path) not in ("app",)
          for node, name, at_top in _imports(path)
          if name.split(".")[0] in ("PySide6", "shiboken6") and at_top]
    assert not qt, "\n".join(qt)


def test_no_module_past_1000_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in _sources()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these along their responsibilities: {long}"


@pytest.mark.parametrize("bad, part", [
    ("from fluoroplan.app.main_window import MainWindow\n", "planner"),
    ("def f():\n    from fluoroplan.planner.case import PlanningCase\n", "segmentation"),
])
def test_the_checks_catch_a_wrong_import(tmp_path, bad, part):
    f = tmp_path / "x.py"
    f.write_text(bad)
    found = list(_imports(f))
    assert found
    node, name, at_top = found[0]
    target = name.split(".")[1]
    assert target not in ALLOWED[part] or not at_top
