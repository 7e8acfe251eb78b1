"""The plan's files from the planning controller: opening a plan of the loaded CT, saving
(and what happens when the disk refuses), the PDF report (worker), and asking about unsaved
changes on close."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox

from fluoroplan.app.planning.workers import _write_pdf
from fluoroplan.app.qtcompat import emit
from fluoroplan.app.tasks import Task
from fluoroplan.io.errors import FluoroplanError
from fluoroplan.io.planfile import load_plan, save_plan

log = logging.getLogger(__package__)


class FilesMixin:
    """Plan files and the PDF report of :class:`PlanningController`."""

    # --- files --------------------------------------------------------------------------------
    def _plan_folder(self) -> str:
        if self.doc.path:
            return str(Path(self.doc.path).parent)
        return str(self.win.settings.value("plan_folder", str(Path.home())))

    def choose_plan(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self.win, "Open a plan", self._plan_folder(),
                                              "fluoroplan plans (*.json)")
        if name:
            self.open_plan(name)

    def open_plan(self, path: str) -> bool:
        """Open a plan file of the loaded CT (refused, with the reason, for another CT)."""
        if self.doc.volume is None:
            self.error(FluoroplanError("Open the CT first, then the plan made on it."),
                       "opening the plan")
            return False
        try:
            plan = load_plan(path, self.doc.volume)
        except (FluoroplanError, OSError) as exc:
            self.error(exc, "opening the plan")
            return False
        self.stack.clear()
        self.doc.set_plan(plan, str(path))
        self.carm.set_patient_position(self.position)
        self.name_nudges(self.position)
        self.win.settings.setValue("plan_folder", str(Path(path).parent))
        self._update_title()
        self.win.statusBar().showMessage(
            f"Opened {Path(path).name}: {len(plan.trajectories)} trajectories", 8000)
        if self.doc.selected is not None:
            self.win.state.set_crosshair(self.doc.selected.target_lps)
            self.carm.go_to("bullseye")
            self.docks["plan"].raise_()
        return True

    def save(self) -> bool:
        if self.doc.path is None:
            return self.save_as()
        return self.save_to(self.doc.path)

    def save_as(self) -> bool:
        start = str(Path(self._plan_folder()) / "plan.json")
        name, _ = QFileDialog.getSaveFileName(self.win, "Save the plan", start,
                                              "fluoroplan plans (*.json)")
        if not name:
            return False
        if not name.lower().endswith(".json"):
            name += ".json"
        return self.save_to(name)

    def save_to(self, path: str) -> bool:
        if self.doc.plan is None:
            return False
        try:
            save_plan(self.doc.plan, path)
        except (FluoroplanError, OSError) as exc:
            return self._save_failed(exc)
        self.stack.setClean()
        self.doc.set_path(str(path))
        self.win.settings.setValue("plan_folder", str(Path(path).parent))
        self.win.statusBar().showMessage(f"Saved the plan to {path}", 8000)
        self._update_title()
        return True

    def _save_failed(self, exc: BaseException) -> bool:
        """The plan could not be written: say why and offer to save it elsewhere at once. The
        plan stays open, unchanged and in its recovery copy whatever the answer."""
        title, text = self._describe(exc, "saving the plan")
        text += ("\n\nThe plan is still open and unchanged, and its recovery copy is kept. "
                 "Save it under another name or in another folder now?")
        self.win.statusBar().showMessage(text.splitlines()[0], 10000)
        self.autosave()  # the recovery copy holds this very plan
        if not self.win.interactive:
            log.error("%s: %s", title, text)
            return False
        buttons = QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Cancel
        answer = QMessageBox.warning(self.win, title, text, buttons,
                                     QMessageBox.StandardButton.Save)
        if answer == QMessageBox.StandardButton.Save:
            return self.save_as()
        return False

    def export_pdf(self, path: str | None = None, anonymize: bool = False) -> bool:
        """Write the plan's PDF report (worker thread); ``pdf_written(path)`` when done."""
        if self.doc.plan is None or self.pdf_task is not None:
            return False
        if path is None:
            start = str(Path(self._plan_folder()) / "plan.pdf")
            path, _ = QFileDialog.getSaveFileName(self.win, "Export the plan report", start,
                                                  "PDF (*.pdf)")
            if not path:
                return False
            if not path.lower().endswith(".pdf"):
                path += ".pdf"
        plan, volume = self.doc.plan, self.doc.volume
        task = Task("pdf", lambda p, c: _write_pdf(plan, volume, path, anonymize, p, c))
        task.path = path
        self.pdf_task = task
        self._run(task, self._on_pdf, "Writing the report")
        return True

    def _on_pdf(self, task, _info) -> None:
        if task is not self.pdf_task:
            return
        self.pdf_task = None
        self._show_busy(None)
        self._update_actions()
        self.win.statusBar().showMessage(f"Wrote the report {task.path}", 8000)
        emit(self.pdf_written, str(task.path))

    def confirm_close(self) -> bool:
        """Ask before closing with unsaved changes; False to stay open."""
        if self.stack.isClean() or not self.win.interactive:
            return True
        answer = QMessageBox.question(
            self.win, "Unsaved changes",
            "The plan has changes that are not saved (an autosaved copy exists). Save them?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Save)
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        return answer == QMessageBox.StandardButton.Discard
