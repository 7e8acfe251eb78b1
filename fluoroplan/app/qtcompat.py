"""Work-arounds for bugs of the Qt binding in use.

PySide6 6.12.0 on Python 3.11: ``SignalInstance.emit()`` returns a bool without taking a
reference to it, so every emit from Python lowers the reference count of ``True``/``False``
by one. After some thousands of emits (progress reports, mouse moves) the interpreter aborts
with "Fatal Python error: bool_dealloc". (Python >= 3.12 makes bools immortal, which hides it.)
:func:`emit` restores the reference when the probe below finds the bug, and does nothing else
otherwise. Every ``.emit`` in ``fluoroplan.app`` goes through it.

The same release also drops a reference to ``None`` on every void Qt call, which no wrapper
can catch; that is why pyproject.toml requires PySide6-Essentials < 6.12. This module stays as
the safety net for the emit case and its probe documents the fault.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal


class _Probe(QObject):
    signal = Signal()


_py_incref = ctypes.pythonapi.Py_IncRef
_py_incref.argtypes = [ctypes.py_object]
_py_incref.restype = None


def _emit_loses_a_reference() -> bool:
    """Emit a few times and watch the returned bool's reference count; repair the probe's loss."""
    probe = _Probe()
    result = probe.signal.emit()
    if not isinstance(result, bool):
        return False
    before = sys.getrefcount(result)
    for _ in range(20):
        probe.signal.emit()
    lost = before - sys.getrefcount(result)
    if lost >= 20:
        for _ in range(lost + 1):  # the 20 emits and the first one
            _py_incref(result)
        return True
    return False


EMIT_LOSES_REFERENCE = _emit_loses_a_reference()


def emit(signal, *args):
    """``signal.emit(*args)``, keeping Python's reference counts right."""
    result = signal.emit(*args)
    if EMIT_LOSES_REFERENCE and isinstance(result, bool):
        _py_incref(result)
    return result
