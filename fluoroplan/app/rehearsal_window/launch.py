"""Opening the rehearsal window: :func:`open_rehearsal` on a loaded case and
:func:`run_rehearsal`, the application around it (or, with a screenshot name, one shot taken
and a picture of the window saved, for batch runs)."""

from __future__ import annotations

import sys

from PySide6.QtCore import QTimer

from fluoroplan.app import application, display_problem
from fluoroplan.app.batch import BatchScreenshot
from fluoroplan.app.rehearsal_window.window import RehearsalWindow


def open_rehearsal(volume, analysis_json: dict, plan_json: dict | None = None,
                   trainee: str = "", interactive: bool = True,
                   labels=None, biplane: bool = False) -> RehearsalWindow:
    """Open (show) the rehearsal window on a loaded volume and its analysis (``labels``: its
    label volume, measured again when not given); the expert plan (``plan_json``, optional)
    stays hidden until an attempt ends; ``biplane``: a biplane suite. Needs a QApplication."""
    application()
    win = RehearsalWindow(volume, analysis_json, plan_json, trainee, interactive=interactive,
                          labels=labels, biplane=biplane)
    win.show()
    return win


def run_rehearsal(volume, analysis_json: dict, plan_json: dict | None = None,
                  trainee: str = "", screenshot: str | None = None,
                  timeout_s: float = 300.0, labels=None, biplane: bool = False) -> int:
    """The application around :func:`open_rehearsal`; returns the exit code.

    With ``screenshot`` (a PNG name) the window opens, takes one fluoro shot once the attempt
    is ready, saves a picture of itself and exits (no dialogs; errors give exit code 2).
    """
    problem = display_problem()
    if problem:
        print(f"fluoroplan: {problem}", file=sys.stderr)
        return 2
    app = application()
    batch = screenshot is not None
    win = open_rehearsal(volume, analysis_json, plan_json, trainee, interactive=not batch,
                         labels=labels, biplane=biplane)
    if batch:
        run = BatchScreenshot(win, screenshot, "the rehearsal window", timeout_s)

        def save() -> None:
            win.take_shot()
            if biplane:
                win.take_lateral_shot()
            app.processEvents()
            run.save(win.grab().toImage())

        if not win.targets:
            print("fluoroplan: the analysis found no target to rehearse", file=sys.stderr)
            return 2
        win.session_ready.connect(lambda: QTimer.singleShot(200, save))
        win.error_reported.connect(run.fail)
    code = app.exec()
    return run.code if batch else int(code)
