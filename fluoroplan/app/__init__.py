"""The workstation (Qt + VTK). The only package that imports Qt; it calls the engine and holds
no planning logic. Qt is imported lazily so that ``import fluoroplan.app`` stays cheap."""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

ORGANIZATION = "fluoroplan"
APPLICATION = "fluoroplan"


def display_problem() -> str | None:
    """Why the window cannot be shown here, or None when it can."""
    if os.environ.get("QT_QPA_PLATFORM", "").startswith(("offscreen", "minimal")):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    if sys.platform in ("win32", "darwin"):
        return None
    return (
        "The workstation needs a display: run it in a desktop session, or without one "
        "through a virtual display, e.g. `xvfb-run -a fluoroplan gui ...`, or with "
        "QT_QPA_PLATFORM=offscreen for screenshots only."
    )


def prepare_environment() -> None:
    """Headless rendering set-up (STACK.md): VTK draws with OSMesa under Qt offscreen."""
    if os.environ.get("QT_QPA_PLATFORM", "").startswith("offscreen"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkOSOpenGLRenderWindow")


def application():
    """The QApplication (created once, with the names QSettings and QStandardPaths use)."""
    prepare_environment()
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setOrganizationName(ORGANIZATION)
        app.setApplicationName(APPLICATION)
        app.setApplicationDisplayName("fluoroplan")
    return app


def _setup_log_file() -> str | None:
    """Also log to ``<user data>/fluoroplan/fluoroplan.log``; return its path."""
    from PySide6.QtCore import QStandardPaths

    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericDataLocation)
    folder = os.path.join(base, "fluoroplan")
    try:
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "fluoroplan.log")
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("fluoroplan").addHandler(handler)
    return path


def run_app(volume=None, path=None, demo: bool = False, screenshot: str | None = None,
            timeout_s: float = 600.0, plan: str | None = None) -> int:
    """Open the workstation; optionally on a loaded ``volume``, a ``path`` or the demo case,
    and with ``plan`` (a plan file of that CT) opened once the analysis is done.

    With ``screenshot`` (a PNG file name) the window opens, loads, waits until the reformats,
    the 3-D view, the analysis, the plan (its first trajectory at its bull's-eye view) and the
    simulated fluoroscopy have rendered, saves a picture of the whole window and exits (no
    dialogs: an error is logged and the exit code is 2). Returns the exit code.
    """
    problem = display_problem()
    if problem:
        print(f"fluoroplan: {problem}", file=sys.stderr)
        return 2
    app = application()
    _setup_log_file()
    from PySide6.QtCore import QTimer

    from fluoroplan.app.main_window import MainWindow

    batch = screenshot is not None
    win = MainWindow(interactive=not batch)
    if plan is not None:
        win.planning.pending_plan = str(plan)

    if batch:
        from fluoroplan.app.batch import BatchScreenshot
        from fluoroplan.app.capture import capture_window

        run = BatchScreenshot(win, screenshot, "the window", timeout_s)

        def save() -> None:
            app.processEvents()
            win.view3d.render()
            run.save(capture_window(win))

        poll = QTimer(win)
        poll.setInterval(200)
        settled = {"n": 0}

        def check() -> None:
            # everything drawn and nothing computing, twice in a row (a finished task may queue
            # another drawing)
            if win.is_ready and win.planning.is_settled():
                settled["n"] += 1
            else:
                settled["n"] = 0
            if settled["n"] >= 2:
                poll.stop()
                if plan is not None and win.planning.doc.path is None:
                    run.fail(f"the plan {plan} could not be opened (see the log)")
                    return
                save()

        poll.timeout.connect(check)
        win.ready.connect(poll.start)
        win.error_reported.connect(run.fail)
    else:
        previous_hook = sys.excepthook

        def excepthook(kind, exc, tb):
            log.error("Unexpected error", exc_info=(kind, exc, tb))
            if issubclass(kind, KeyboardInterrupt):
                previous_hook(kind, exc, tb)
                return
            win.report_error(exc, "handling that action")

        sys.excepthook = excepthook

    win.show()
    if volume is not None:
        QTimer.singleShot(0, lambda: win.set_volume(volume, "the loaded case"))
    elif path is not None:
        QTimer.singleShot(0, lambda: win.open_folder(path))
    elif demo:
        QTimer.singleShot(0, win.open_demo)
    elif batch:
        print("fluoroplan: --screenshot needs a PATH or --demo to show", file=sys.stderr)
        return 2
    code = app.exec()
    return run.code if batch else int(code)


__all__ = ["run_app", "display_problem", "application"]
