"""Keeps ``None`` alive under PySide6 6.12 on Python 3.11 (the rehearsal window's guard).

Measured here (PySide6-Essentials 6.12.0, CPython 3.11.7): every call of a Qt method that
returns ``void`` (``QObject.setObjectName``, ``QWidget.update``, ``QLabel.setText``,
``QApplication.processEvents``, ...) lowers the reference count of ``None`` by one, the same
binding bug :mod:`fluoroplan.app.qtcompat` repairs for the bool ``Signal.emit`` returns. ``None``
starts with a few thousand references, so after some thousands of such calls (a few minutes of
clicking and painting) the interpreter aborts with "Fatal Python error: none_dealloc".
(Python >= 3.12 makes ``None`` immortal, which hides it.)

:func:`protect_none` probes for the loss and, when it finds it, raises ``None``'s reference
count far beyond what any session can lose (``None`` is never deallocated by a running
interpreter, so extra references change nothing else). It belongs with
:mod:`fluoroplan.app.qtcompat` for the whole application; it lives here until that module takes
it over, so the rehearsal window cannot crash this way.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject

_RESERVE = 1 << 40
_state = {"probed": False, "loses": False}


def void_call_loses_none() -> bool:
    """Whether a void Qt call drops a reference to ``None`` here (probed once, repaired)."""
    if not _state["probed"]:
        probe = QObject()
        before = sys.getrefcount(None)
        for _ in range(20):
            probe.setObjectName("probe")
        lost = before - sys.getrefcount(None)
        _state["probed"] = True
        _state["loses"] = lost >= 20
        if lost > 0:
            _add_none_refs(lost)
    return bool(_state["loses"])


def _add_none_refs(n: int) -> None:
    # CPython's PyObject starts with its Py_ssize_t reference count (3.11, non-debug build)
    cell = ctypes.c_ssize_t.from_address(id(None))
    cell.value += int(n)


def protect_none() -> bool:
    """Make ``None`` safe from the binding's lost references; True when it was needed."""
    if sys.version_info >= (3, 12) or not void_call_loses_none():
        return False
    if sys.getrefcount(None) < _RESERVE // 2:
        _add_none_refs(_RESERVE)
    return True
