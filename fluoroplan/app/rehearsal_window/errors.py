"""The rehearsal window's error reporting: a refused action or a failure becomes a dialog
(or, without dialogs, a log line) that says what went wrong and what to do; the window goes
on."""

from __future__ import annotations

import logging

from PySide6.QtWidgets import QMessageBox

from fluoroplan.app.messages import unexpected_error
from fluoroplan.app.qtcompat import emit
from fluoroplan.io.errors import FluoroplanError
from fluoroplan.rehearsal.session import NeedleInBone, RehearsalError

log = logging.getLogger(__package__)


class ErrorsMixin:
    """:meth:`report_error` of :class:`~fluoroplan.app.rehearsal_window.RehearsalWindow`."""

    # --- errors -----------------------------------------------------------------------------
    def report_error(self, exc: BaseException, doing: str) -> None:
        """A dialog that says what went wrong and what to do; the window goes on."""
        if isinstance(exc, NeedleInBone):
            title = "The needle is in bone"
            text = f"{exc}."[0].upper() + f"{exc}."[1:]
            text += (" Use Withdraw (W) until the tip is out of the bone, then pick the new "
                     "line and place the needle again.")
        elif isinstance(exc, RehearsalError):
            title = "Not possible now"
            text = str(exc)[:1].upper() + str(exc)[1:] + "."
        elif isinstance(exc, (FluoroplanError, OSError)):
            title = "Cannot do that"
            text = str(exc)[:1].upper() + str(exc)[1:]
            if isinstance(exc, OSError):
                text = (f"Could not use {exc.filename or 'the file'}: {exc.strerror or exc}. "
                        "Choose another folder or file name.")
        else:
            title, text = unexpected_error(
                exc, doing, "The attempt goes on; the details were written to the log.", log)
        self.statusBar().showMessage(text.splitlines()[0], 10000)
        emit(self.error_reported, text)
        if self.interactive:
            QMessageBox.warning(self, title, text)
        else:
            log.error("%s: %s", title, text)
