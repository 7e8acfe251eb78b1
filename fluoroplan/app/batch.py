"""Book-keeping of a ``--screenshot`` run (no dialogs): save the picture, or fail, or time out,
and remember the exit code."""

from __future__ import annotations

import sys

from PySide6.QtCore import QTimer
from PySide6.QtGui import QImage


class BatchScreenshot:
    """Closes ``window`` after saving ``path`` (exit code 0) or after a failure or ``timeout_s``
    seconds without a picture (exit code 2, the reason on stderr). ``what`` names the window
    in the messages."""

    def __init__(self, window, path, what: str, timeout_s: float):
        self.window, self.path, self.what, self.timeout_s = window, str(path), what, timeout_s
        self.code = 0
        QTimer.singleShot(int(timeout_s * 1000), self._too_long)

    def save(self, image: QImage) -> None:
        if not image.save(self.path, "PNG"):
            self.fail(f"could not write {self.path}")
            return
        print(f"Saved a screenshot of {self.what} to {self.path}")
        self.window.close()

    def fail(self, message: str) -> None:
        print(f"fluoroplan: {message}", file=sys.stderr)
        self.code = 2
        self.window.close()

    def _too_long(self) -> None:
        if self.window.isVisible():
            self.fail(f"{self.what} had nothing to show after {self.timeout_s:.0f} s; giving up")
