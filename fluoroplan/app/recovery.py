"""The start-up offer of the plans a closed or crashed session left unsaved.

Every edit of an unsaved plan is autosaved to the recovery folder
(:func:`fluoroplan.io.planfile.autosave`). When the window starts, :class:`StartupRecovery`
asks about each autosaved plan in turn: it names the case (series description, number of
trajectories, autosave time) and, when the window remembers where that CT was loaded from
(:func:`remember_case_path`, kept in QSettings for the last :data:`MAX_CASE_PATHS` cases),
offers to open the case and restore the plan, to keep it for later, or to discard it (after a
confirmation). Without a known folder it says which series the plan belongs to and to open its
CT folder; the plan is then offered as soon as that CT's analysis is done
(``PlanningController._offer_recovery``).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtWidgets import QMessageBox

log = logging.getLogger(__name__)

MAX_CASE_PATHS = 50
CASE_PATHS_KEY = "recovery/case_paths"


# --- where each case was loaded from ------------------------------------------------------------
def volume_key(volume) -> str:
    """The key of a CT's autosave: its series UID, else its fingerprint (as ``planfile``)."""
    return str(volume.identifiers.get("series_instance_uid") or volume.fingerprint())


def plan_key(plan) -> str:
    """The key of a plan's autosave (the same rule as :func:`volume_key`, from the plan)."""
    s = plan.series
    return str(s.get("series_instance_uid") or s.get("fingerprint") or "unknown-series")


def case_paths(settings: QSettings) -> list[tuple[str, str]]:
    """``(series key, path)`` of the cases loaded, most recent first."""
    raw = settings.value(CASE_PATHS_KEY, "")
    try:
        items = json.loads(raw) if isinstance(raw, str) and raw else []
    except ValueError:
        return []
    return [(str(k), str(p)) for k, p in (i for i in items if isinstance(i, list) and len(i) == 2)]


def remember_case_path(settings: QSettings, key: str, path: str) -> None:
    """Remember that the CT of series ``key`` was loaded from ``path`` (kept for the last
    :data:`MAX_CASE_PATHS` cases)."""
    if not key or not path:
        return
    items = [(k, p) for k, p in case_paths(settings) if k != key]
    items = [(key, str(path)), *items][:MAX_CASE_PATHS]
    settings.setValue(CASE_PATHS_KEY, json.dumps([list(i) for i in items]))


def case_path(settings: QSettings, key: str) -> str | None:
    """Where the CT of series ``key`` was last loaded from, or None."""
    return next((p for k, p in case_paths(settings) if k == key), None)


# --- the offer ------------------------------------------------------------------------------------
def _when(saved_at: str) -> str:
    try:
        t = _dt.datetime.fromisoformat(saved_at)
    except ValueError:
        return saved_at
    return t.strftime("%Y-%m-%d %H:%M")


def describe(rec) -> str:
    """One sentence naming the case of a recovered plan, its size and when it was autosaved."""
    s = rec.plan.series
    desc = s.get("series_description") or "a CT without a series description"
    uid = s.get("series_instance_uid") or f"fingerprint {s.get('fingerprint') or '?'}"
    n = len(rec.plan.trajectories)
    return (f"An unsaved plan of the series '{desc}' ({uid}) with {n} "
            f"trajector{'y' if n == 1 else 'ies'} was autosaved on {_when(rec.saved_at)}.")


class StartupRecovery(QObject):
    """Asks about each recovered plan in turn (window-modal, non-blocking message boxes).

    ``box`` is the question shown now (object name ``startup_recovery_box``; its buttons are
    ``open_button`` — only when the CT's folder is known —, ``keep_button`` and
    ``discard_button``); ``confirm_box`` the confirmation of a discard
    (``recovery_discard_box``). ``finished()`` once every plan was answered or a case opened.
    """

    finished = Signal()

    OPEN_TEXT = "Open the case and restore the plan"
    KEEP_TEXT = "Keep for later"
    DISCARD_TEXT = "Discard"

    def __init__(self, window, recoveries):
        super().__init__(window)
        self.win = window
        self.queue = list(recoveries)
        self.current = None
        self.box: QMessageBox | None = None
        self.confirm_box: QMessageBox | None = None
        self.open_button = self.keep_button = self.discard_button = None
        self.kept: list = []
        self.discarded: list = []
        self.done = False

    def start(self) -> None:
        self._next()

    def _next(self) -> None:
        if not self.queue:
            self._finish()
            return
        self.current = self.queue.pop(0)
        self._ask(self.current)

    def _finish(self, message: str | None = None) -> None:
        self.current = None
        self.done = True
        if message is None and self.kept:
            n = len(self.kept)
            message = (f"{n} autosaved plan{'s are' if n > 1 else ' is'} kept; "
                       f"{'they are' if n > 1 else 'it is'} offered again when "
                       f"{'their CTs are' if n > 1 else 'its CT is'} opened")
        if message:
            self.win.statusBar().showMessage(message, 10000)
        self.finished.emit()

    def _ask(self, rec) -> None:
        key = plan_key(rec.plan)
        path = case_path(self.win.settings, key)
        text = describe(rec)
        if path is not None and Path(path).exists():
            info = f"Its CT was loaded from {path}."
        else:
            path = None
            gone = case_path(self.win.settings, key)
            where = f"It was loaded from {gone}, which is no longer there. " if gone else ""
            info = (f"{where}fluoroplan does not know where this CT is now: open its CT folder "
                    "(File > Open folder\u2026) and the plan is offered for restoring once the "
                    "analysis is done.")
        total = len(self.queue) + len(self.kept) + len(self.discarded) + 1
        box = QMessageBox(QMessageBox.Icon.Question, "Recover an unsaved plan?", text, parent=self.win)
        box.setObjectName("startup_recovery_box")
        box.setInformativeText(info)
        if total > 1:
            box.setWindowTitle(f"Recover an unsaved plan? ({total - len(self.queue)} of {total})")
        self.open_button = None
        if path is not None:
            self.open_button = box.addButton(self.OPEN_TEXT, QMessageBox.ButtonRole.AcceptRole)
        self.keep_button = box.addButton(self.KEEP_TEXT, QMessageBox.ButtonRole.RejectRole)
        self.discard_button = box.addButton(self.DISCARD_TEXT,
                                            QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(self.open_button or self.keep_button)
        box.setEscapeButton(self.keep_button)
        self.box = box

        def answered(_code: int) -> None:
            clicked = box.clickedButton()
            self.box = None
            box.deleteLater()
            if clicked is not None and clicked is self.open_button:
                self._open(rec, path)
            elif clicked is not None and clicked is self.discard_button:
                self._confirm_discard(rec)
            else:
                self.kept.append(rec)
                self._next()

        box.finished.connect(answered)
        box.open()

    def _confirm_discard(self, rec) -> None:
        n = len(rec.plan.trajectories)
        box = QMessageBox(
            QMessageBox.Icon.Warning, "Discard the autosaved plan?",
            f"{describe(rec)}\n\nDiscard it? Its {n} trajector{'y' if n == 1 else 'ies'} "
            "cannot be recovered afterwards.",
            QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel, self.win)
        box.setObjectName("recovery_discard_box")
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        self.confirm_box = box

        def answered(_code: int) -> None:
            sure = box.clickedButton() is box.button(QMessageBox.StandardButton.Discard)
            self.confirm_box = None
            box.deleteLater()
            if not sure:
                self._ask(rec)  # back to the question about this plan
                return
            try:
                rec.autosave_path.unlink(missing_ok=True)
            except OSError as exc:
                self.win.report_error(exc, "discarding the autosaved plan")
            else:
                self.discarded.append(rec)
                self.win.statusBar().showMessage("Discarded the autosaved plan", 6000)
            self._next()

        box.finished.connect(answered)
        box.open()

    def _open(self, rec, path: str) -> None:
        rest = self.queue
        self.queue = []
        self.kept.extend(rest)
        self.win.open_recovered(rec, path)
        self._finish(f"Opening {path} to restore its plan" + (
            f"; {len(rest)} more autosaved plan{'s' if len(rest) > 1 else ''} kept for later"
            if rest else ""))
