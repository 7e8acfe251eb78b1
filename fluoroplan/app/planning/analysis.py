"""Loading a CT and its analysis, and the worker tasks of the planning controller: whether
anything is computing, cancelling, shutting down, progress, and what a failed task tells the
user (the error dialogs).

The analysis itself is :func:`.workers._analyse`, looked up on its module when a CT is
loaded, so that whatever stands there (the tests keep one analysis per CT) is what runs.
"""

from __future__ import annotations

import logging

from PySide6.QtWidgets import QMessageBox

from fluoroplan.app.messages import count, unexpected_error
from fluoroplan.app.planning import workers
from fluoroplan.app.qtcompat import emit
from fluoroplan.app.tasks import Task
from fluoroplan.geometry.drr import AttenuationVolume
from fluoroplan.io.errors import Cancelled, FluoroplanError

log = logging.getLogger(__package__)


class AnalysisMixin:
    """The CT's analysis and the worker tasks of :class:`PlanningController`."""

    # --- state ------------------------------------------------------------------------------
    @property
    def position(self) -> str:
        """How the patient lies for the procedure (the plan's; C-arm words use it)."""
        plan = self.doc.plan
        return plan.procedure_position if plan is not None else "HFP"

    @property
    def busy(self) -> bool:
        return any(t is not None for t in (self.analysis_task, self.propose_task, self.pdf_task,
                                           self.recheck_task, self.relabel_task, self.att_task))

    def is_settled(self) -> bool:
        """Nothing is computing or waiting to be drawn (for screenshots and tests)."""
        return (self.analysis_done and not self.busy and not self.pending_checks
                and not self._recheck_timer.isActive() and not self._live_timer.isActive()
                and not self.carm.busy and self.att is not None)

    def cancel(self) -> None:
        for t in (self.analysis_task, self.propose_task, self.relabel_task):
            if t is not None:
                t.cancel.cancel()

    def shutdown(self) -> None:
        self.stack.cleanChanged.disconnect()
        self.stack.indexChanged.disconnect()
        self.cancel()
        for t in (self.recheck_task, self.att_task):
            if t is not None:
                t.cancel.cancel()
        self._live_timer.stop()
        self._recheck_timer.stop()
        self.pool.waitForDone(15000)
        self.carm.pool.waitForDone(15000)

    # --- loading and the analysis -------------------------------------------------------------
    def _on_volume(self, volume) -> None:
        for t in (self.analysis_task, self.propose_task, self.relabel_task, self.recheck_task,
                  self.att_task):
            if t is not None:
                t.cancel.cancel()
        self.analysis_task = self.propose_task = self.relabel_task = self.recheck_task = None
        self.att_task = None
        self.analysis_done = False
        self.att = None
        self.pending_checks.clear()
        self.stale_checks.clear()
        self.stack.clear()
        self.proposals_panel.set_results([])
        self.doc.reset(volume)
        self.carm.set_patient_position(self.position)
        self.name_nudges(self.position)
        self.targets_panel.status.setText("Analysing the CT (vertebrae, implants, halos)\u2026")
        att_task = Task("attenuation", lambda p, c: AttenuationVolume.from_ct(volume))
        self.att_task = att_task
        att_task.signals.succeeded.connect(self._on_att)
        att_task.signals.failed.connect(self._on_task_failed)
        att_task.start(self.carm.pool)
        task = Task("analysis", lambda p, c: workers._analyse(volume, p, c))
        self.analysis_task = task
        self._run(task, self._on_analysis, "Analysing")

    def _run(self, task: Task, done, label: str) -> None:
        task.label = label
        task.signals.progress.connect(self._on_progress)
        task.signals.succeeded.connect(done)
        task.signals.failed.connect(self._on_task_failed)
        if label:
            self._show_busy(label, 0.0)
        task.start(self.pool)
        self._update_actions()

    def _on_progress(self, task, fraction: float, message: str) -> None:
        if task in (self.analysis_task, self.propose_task, self.relabel_task, self.pdf_task):
            self._show_busy(task.label, fraction)
            self.win.statusBar().showMessage(message)

    def _on_att(self, task, att) -> None:
        if task is not self.att_task:
            return
        self.att_task = None
        self.att = att
        self.carm.refresh()

    def _on_analysis(self, task, result) -> None:
        if task is not self.analysis_task:
            return
        self.analysis_task = None
        self._show_busy(None)
        self.doc.set_analysis(*result)
        self.analysis_done = True
        found = result[2].findings
        self.win.statusBar().showMessage(
            f"Analysis: {count(len(found.vertebrae), 'vertebra', 'vertebrae')}, "
            f"{count(len(found.screws), 'screw')}, {count(len(result[3]), 'target')}", 8000)
        wanted, self.pending_recovery = self.pending_recovery, None
        if self.pending_plan:
            path, self.pending_plan = self.pending_plan, None
            self.open_plan(path)
        else:
            if wanted is not None and wanted != self.series_key():
                self.error(FluoroplanError(
                    f"The CT opened is not the series of the recovered plan ({wanted}); the "
                    "plan was not restored and its autosave is kept. Open the CT folder the "
                    "plan was made on."), "restoring the plan")
            self._offer_recovery(restore=wanted is not None and wanted == self.series_key())
        self._update_actions()
        emit(self.analysis_ready)

    def _on_task_failed(self, task, exc) -> None:
        doing = {"analysis": "analysing the CT", "propose": "proposing trajectories",
                 "recheck": "checking the trajectory", "relabel": "renaming the levels",
                 "attenuation": "preparing the simulated fluoroscopy",
                 "labels": "importing the vertebra labels",
                 "pdf": "writing the PDF report"}.get(task.name, task.name)
        current_analysis = task.name == "analysis" and task is self.analysis_task
        for attr in ("analysis_task", "propose_task", "recheck_task", "relabel_task", "att_task",
                     "pdf_task"):
            if getattr(self, attr) is task:
                setattr(self, attr, None)
        if task.name == "recheck":
            self.pending_checks.discard(getattr(task, "traj_id", ""))
        manual = False
        if current_analysis:
            self.pending_recovery = None
            self.analysis_done = True  # nothing more will come; the CT is still shown
            manual = self.start_manual_planning()
        self._show_busy(None)
        self._update_actions()
        if isinstance(exc, Cancelled):
            self.win.statusBar().showMessage(f"Stopped {doing}" + (
                "; plan by hand: place a trajectory (T)" if manual else ""), 8000)
            if manual:
                emit(self.analysis_ready)
            return
        if manual:
            exc = FluoroplanError(
                f"{self._describe(exc, doing)[1].rstrip('.')}.\n\nYou can still plan by "
                "hand: place a trajectory (T: click the skin entry, then the target). The spinal "
                "canal and the levels are unknown on this CT, so the checks that need them "
                "say UNKNOWN (not checked); metal, lung, skin and C-arm checks are made.")
        self.error(exc, doing)
        if manual:
            emit(self.analysis_ready)
        if task.name == "recheck":
            self._queue_rechecks()

    def start_manual_planning(self) -> bool:
        """After an analysis that failed (a slab, a head CT) or was stopped: plan by hand on
        the CT as it is, with no vertebrae, canal, implants or levels (each check that needs
        them says UNKNOWN). False when there is no CT."""
        from fluoroplan.planner.case import PlanningCase

        volume = self.doc.volume
        if volume is None:
            return False
        empty = {"vertebrae": [], "screws": [], "rods": [], "cages": [], "warnings": [
            "The analysis did not finish: no vertebrae, spinal canal, implants or levels are "
            "known on this CT. Trajectories can be placed by hand; the checks that need the "
            "canal or the levels say UNKNOWN.",
        ], "notes": list(volume.notes), "manual": True}
        case = PlanningCase(volume, empty)
        self.doc.set_analysis(None, empty, case, [])
        self.targets_panel.status.setText(
            "No analysis: the spinal canal and the levels are UNKNOWN on this CT. Plan by hand: "
            "place a trajectory (T); the checks that need the canal or the levels say UNKNOWN.")
        return True

    def error(self, exc: BaseException, doing: str) -> None:
        """A dialog saying what went wrong and what to do; the window carries on."""
        title, text = self._describe(exc, doing)
        self.win.statusBar().showMessage(text.splitlines()[0], 10000)
        if self.win.interactive:
            QMessageBox.warning(self.win, title, text)
        else:
            log.error("%s: %s", title, text)

    @staticmethod
    def _describe(exc: BaseException, doing: str) -> tuple[str, str]:
        """(title, text) of the dialog for ``exc``."""
        if isinstance(exc, FluoroplanError):
            title, text = f"Problem {doing}", str(exc)
        elif isinstance(exc, OSError):
            title = f"Problem {doing}"
            text = (f"Could not use {exc.filename or 'the file'}: {exc.strerror or exc}. Choose "
                    "another folder or file name, or check the permissions and the free space.")
        elif isinstance(exc, ValueError):
            title, text = f"Problem {doing}", f"{exc}."
        else:
            title, text = unexpected_error(
                exc, doing, "The plan is unchanged; the details were written to the log, please "
                "report them.", log)
        return title, text
