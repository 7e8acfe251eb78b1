"""Progress reporting and cancelling for long operations (used by the GUI worker and the CLI)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from fluoroplan.io.errors import Cancelled

ProgressCallback = Callable[[float, str], None]
"""``progress(fraction, message)``: fraction in [0, 1], message a short human sentence."""


class CancelToken:
    """Thread-safe flag a GUI sets and a worker polls (``token.check()`` raises Cancelled)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled()


def no_progress(fraction: float, message: str) -> None:
    """A progress callback that ignores everything."""


class Stage:
    """Maps a sub-task's 0..1 progress into ``[start, stop]`` of a parent callback."""

    def __init__(
        self,
        progress: ProgressCallback | None,
        start: float,
        stop: float,
        cancel: CancelToken | None = None,
    ):
        self._progress = progress or no_progress
        self._start, self._stop = start, stop
        self._cancel = cancel

    def __call__(self, fraction: float, message: str) -> None:
        if self._cancel is not None:
            self._cancel.check()
        f = self._start + (self._stop - self._start) * min(max(fraction, 0.0), 1.0)
        self._progress(f, message)
