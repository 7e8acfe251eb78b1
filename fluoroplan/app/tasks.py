"""Running engine calls off the GUI thread.

A :class:`Task` wraps a function ``fn(progress, cancel) -> result`` (the engine's own
signature for long operations) and runs it on a :class:`QThreadPool`. Its progress callback
emits a signal which Qt queues to the receivers in the GUI thread, so widgets are only touched
there. Connect the signals to methods of a QObject living in the GUI thread (not to lambdas),
so the connection is queued; every signal carries the task, so a receiver can ignore a task it
has abandoned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, QThreadPool, Signal

from fluoroplan.app.qtcompat import emit
from fluoroplan.io.errors import FluoroplanError
from fluoroplan.io.progress import CancelToken

log = logging.getLogger(__name__)


class TaskSignals(QObject):
    progress = Signal(object, float, str)  # task, fraction, message
    succeeded = Signal(object, object)  # task, result
    failed = Signal(object, object)  # task, exception


class Task:
    """``fn(progress, cancel)`` on a worker thread; results and errors come back as signals."""

    def __init__(self, name: str, fn: Callable, cancel: CancelToken | None = None):
        self.name = name
        self.fn = fn
        self.cancel = cancel or CancelToken()
        self.signals = TaskSignals()

    def start(self, pool: QThreadPool) -> None:
        pool.start(self.run)  # the pool's runnable keeps this task alive while it runs

    def _progress(self, fraction: float, message: str) -> None:
        self.cancel.check()
        emit(self.signals.progress, self, float(fraction), str(message))

    def run(self) -> None:
        try:
            result = self.fn(self._progress, self.cancel)
        except Exception as exc:  # every failure goes back to the GUI, which explains it
            if not isinstance(exc, (FluoroplanError, OSError)):
                log.exception("%s failed", self.name)
            emit(self.signals.failed, self, exc)
        else:
            emit(self.signals.succeeded, self, result)
