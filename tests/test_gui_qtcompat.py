"""The signal-emit work-around keeps Python's reference counts steady (PySide6 6.12 bug)."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QObject, Signal  # noqa: E402

from fluoroplan.app.qtcompat import emit  # noqa: E402


class _Source(QObject):
    changed = Signal(float, str)


def test_many_emits_keep_bool_refcounts():
    src = _Source()
    got = []
    src.changed.connect(lambda f, m: got.append(f))
    before = (sys.getrefcount(True), sys.getrefcount(False))
    for n in range(5000):
        emit(src.changed, n / 5000, "progress")
    after = (sys.getrefcount(True), sys.getrefcount(False))
    assert len(got) == 5000
    assert abs(after[0] - before[0]) <= 2 and abs(after[1] - before[1]) <= 2
