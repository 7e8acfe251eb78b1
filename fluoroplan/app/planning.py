"""The planning workstation's controller: analysis, targets, proposals, edits, views, files.

It calls the engine (``segmentation.analysis``, ``planner``, ``geometry``, ``io.planfile``) on
worker threads and shows the results; the plan lives in a :class:`PlanDocument`, every edit is
an undoable command on it (``app/undo.py``), and every edit is autosaved.

Dragging an end of a trajectory redraws the reformats at once with the moved line (depth and
bull's-eye angles are plain geometry, shown at once too); the 3-D view, the needle views and
the C-arm follow after a short rest, and the checks are re-run on a worker thread.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
)

from fluoroplan.app.carm_pane import CArmPane
from fluoroplan.app.document import PlanDocument, same_geometry
from fluoroplan.app.overlays import TrajectoryOverlay, TrajectoryTool
from fluoroplan.app.panels import PlanPanel, ProposalsPanel, TargetsPanel
from fluoroplan.app.qtcompat import emit
from fluoroplan.app.tasks import Task
from fluoroplan.app.undo import AddTrajectory, EditTrajectory, Relabel, RemoveTrajectory
from fluoroplan.geometry.conventions import NEEDLE_OUTER_DIAMETER_MM
from fluoroplan.geometry.render3d import ellipsoid_actor
from fluoroplan.io.errors import Cancelled, FluoroplanError

log = logging.getLogger(__name__)

LIVE_DELAY_MS = 60  # 3-D, needle views and C-arm follow a drag after this rest
RECHECK_DELAY_MS = 120
LOOSE_RGB = (1.0, 0.42, 0.1)
TIGHT_RGB = (0.55, 0.62, 0.85)
ROD_RGB = (0.6, 0.75, 0.95)
CAGE_RGB = (0.3, 0.9, 0.6)
CONNECTOR_RGB = (0.72, 0.55, 1.0)  # cross-links: violet, apart from the rods' blue
LEVEL_LABEL_BACK_MM = 40.0
CEMENT_RGB = (1.0, 0.96, 0.78)  # bone cement: yellow-white, as bright as it reads on CT
CEMENT_CALLOUT_MM = (60.0, 40.0)  # cement label: this far to screen-right, toward the viewer
NEEDLE_RGB = (1.0, 0.8, 0.0)
OTHER_NEEDLE_RGB = (0.0, 0.78, 1.0)


def _write_pdf(plan, volume, path, anonymize, progress, cancel):
    from fluoroplan.report.pdf import write_plan_pdf

    return write_plan_pdf(plan, volume, path, anonymize=anonymize, progress=progress)


def _analyse(volume, progress, cancel, label_map: str | None = None):
    from fluoroplan.io.progress import Stage
    from fluoroplan.segmentation.analysis import analyze

    analysis = analyze(volume, progress=Stage(progress, 0.0, 0.9, cancel), cancel=cancel,
                       label_map=label_map)
    return _case_state(volume, analysis, progress)


def label_map_source(path: str | Path) -> Path:
    """What to read for a chosen label map: a TotalSegmentator per-structure mask
    (``vertebrae_L3.nii.gz``, ``sacrum.nii.gz``) stands for its whole folder; anything else
    (a multilabel NIfTI, a ``.seg.nrrd``, a folder) is read as it is."""
    p = Path(path)
    name = p.name.lower()
    if p.is_file() and (name.startswith("vertebrae_") or name.startswith("sacrum.")):
        return p.parent
    return p


def _case_state(volume, analysis, progress):
    from fluoroplan.planner.case import PlanningCase
    from fluoroplan.planner.targets import targets_from_analysis

    progress(0.92, "Preparing the planning look-ups")
    aj = analysis.to_json()
    case = PlanningCase(volume, aj, labels=analysis.anatomy.labels)
    return analysis, aj, case, targets_from_analysis(case)


def _propose_all(case, target, progress, cancel):
    from fluoroplan.planner.approaches import applicable
    from fluoroplan.planner.propose import propose

    jobs = applicable(case, target)
    out = []
    for n, (approach, side) in enumerate(jobs):
        progress(n / max(len(jobs), 1), f"Proposing {approach} ({side}) for {target.ref}")
        out.append(propose(case, target, approach, side, cancel))
    progress(1.0, "Proposals ready")
    return out


class PlanningController(QObject):
    """Adds the planning docks, actions and views to a :class:`MainWindow` and runs them.

    Signals: ``analysis_ready()`` once the analysis of a loaded CT is shown;
    ``proposals_ready()``; ``checks_updated(str)`` when a trajectory's checks arrive.
    """

    analysis_ready = Signal()
    proposals_ready = Signal()
    checks_updated = Signal(str)
    pdf_written = Signal(str)

    def __init__(self, window):
        super().__init__(window)
        self.win = window
        self.doc = PlanDocument()
        self.stack = QUndoStack(self)
        self.pool = QThreadPool(self)  # analysis, proposals and checks, one at a time
        self.pool.setMaxThreadCount(1)
        self.att = None  # AttenuationVolume of the loaded CT
        self.att_task: Task | None = None
        self.analysis_task: Task | None = None
        self.propose_task: Task | None = None
        self.recheck_task: Task | None = None
        self.relabel_task: Task | None = None
        self.pdf_task: Task | None = None
        self.pending_checks: set[str] = set()
        self.stale_checks: set[str] = set()  # checked against a replaced analysis
        self.pending_plan: str | None = None
        self.pending_recovery: str | None = None  # series key: restore its autosave unasked
        self.proposals_for: str | None = None
        self.placing = False
        self._place_entry = None
        self._place_cursor = None
        self._drag: dict | None = None
        self._live_preview = None  # checks of the dragged trajectory, when they arrive
        self.drag_ms: list[float] = []
        self.analysis_done = False
        self._autosave_warned = False

        self.overlay = TrajectoryOverlay(self)
        self.tool = TrajectoryTool(self)
        for v in window.views.values():
            v.overlays.append(self.overlay)
            v.tool = self.tool
            v.context_requested.connect(self._view_context_menu)
        self.carm = CArmPane(self)
        self.targets_panel = TargetsPanel()
        self.proposals_panel = ProposalsPanel()
        self.plan_panel = PlanPanel()
        self._build_docks()
        self._build_actions()
        self._build_status()

        self._live_timer = QTimer(self)
        self._live_timer.setSingleShot(True)
        self._live_timer.setInterval(LIVE_DELAY_MS)
        self._live_timer.timeout.connect(self._follow_views)
        self._recheck_timer = QTimer(self)
        self._recheck_timer.setSingleShot(True)
        self._recheck_timer.setInterval(RECHECK_DELAY_MS)
        self._recheck_timer.timeout.connect(self._start_recheck)

        self.doc.subscribe(self._on_doc)
        self.stack.indexChanged.connect(self._after_edit)
        self.stack.cleanChanged.connect(lambda _clean: self._update_title())
        window.volume_loaded.connect(self._on_volume)
        window.state.crosshair_changed.connect(self._crosshair_moved)
        self.targets_panel.target_chosen.connect(self._target_chosen)
        self.targets_panel.relabel_requested.connect(self.ask_relabel)
        self.proposals_panel.propose_clicked.connect(self.propose)
        self.proposals_panel.accept_clicked.connect(self.accept)
        self.plan_panel.selection_changed.connect(self._plan_row_selected)

    # --- construction -----------------------------------------------------------------------
    def _build_docks(self) -> None:
        w = self.win
        self.docks = {}
        area = Qt.DockWidgetArea.RightDockWidgetArea
        for name, title, widget in (("carm", "Virtual C-arm", self.carm),
                                    ("targets", "Targets", self.targets_panel),
                                    ("proposals", "Proposals", self.proposals_panel),
                                    ("plan", "Plan", self.plan_panel)):
            dock = QDockWidget(title, w)
            dock.setObjectName(f"dock_{name}")
            dock.setWidget(widget)
            dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                             | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
            w.addDockWidget(area, dock)
            self.docks[name] = dock
        w.splitDockWidget(self.docks["carm"], self.docks["targets"], Qt.Orientation.Vertical)
        w.tabifyDockWidget(self.docks["targets"], self.docks["proposals"])
        w.tabifyDockWidget(self.docks["proposals"], self.docks["plan"])
        self.docks["targets"].raise_()
        w.resizeDocks([self.docks["carm"]], [int(w.width() * 0.3) or 420],
                      Qt.Orientation.Horizontal)
        w.resizeDocks([self.docks["carm"], self.docks["targets"]], [540, 460],
                      Qt.Orientation.Vertical)

    def _action(self, text: str, slot, shortcut=None, tip: str = "", menu=None) -> QAction:
        act = QAction(text, self.win)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        key = act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        act.setToolTip(f"{tip or text.replace('&', '').rstrip('.…')}" + (f" ({key})" if key else ""))
        act.setStatusTip(tip or text.replace("&", ""))
        act.triggered.connect(lambda _=False: slot())
        self.win.addAction(act)
        if menu is not None:
            menu.addAction(act)
        return act

    def _build_actions(self) -> None:
        w = self.win
        bar = w.menuBar()
        file_menu = w.file_menu
        first = file_menu.actions()[3] if len(file_menu.actions()) > 3 else None
        plan_menu = QMenu("Plan file", w)
        self.act_open_plan = self._action("Open &plan\u2026", self.choose_plan, "Ctrl+Shift+O",
                                          "Open a saved plan of this CT", plan_menu)
        self.act_save = self._action("&Save plan", self.save, QKeySequence.StandardKey.Save,
                                     "Save the plan", plan_menu)
        self.act_save_as = self._action("Save plan &as\u2026", self.save_as, "Ctrl+Shift+S",
                                        "Save the plan under a new name", plan_menu)
        self.act_pdf = self._action("&Export PDF report\u2026", self.export_pdf, "Ctrl+E",
                                    "Write the plan report as a PDF", plan_menu)
        for act in plan_menu.actions():
            file_menu.insertAction(first, act)
        file_menu.insertSeparator(first)
        self.act_import_labels = self._action(
            "&Import vertebra labels\u2026", self.choose_labels,
            tip="Replace the vertebrae found by fluoroplan with a label map made elsewhere "
                "(TotalSegmentator multilabel NIfTI or one mask of its output folder, 3D Slicer "
                ".seg.nrrd); undoable")
        file_menu.insertAction(first, self.act_import_labels)
        file_menu.insertSeparator(first)

        edit = QMenu("&Edit", w)
        bar.insertMenu(w.view_menu.menuAction(), edit)
        self.act_undo = self.stack.createUndoAction(w, "&Undo")
        self.act_undo.setShortcut(QKeySequence.StandardKey.Undo)
        self.act_redo = self.stack.createRedoAction(w, "&Redo")
        self.act_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        for act in (self.act_undo, self.act_redo):
            w.addAction(act)
            edit.addAction(act)
        edit.addSeparator()
        self.act_propose = self._action("&Propose", self.propose, "Ctrl+P",
                                        "Propose trajectories for the selected target", edit)
        self.act_accept = self._action("&Accept proposal", self.accept_selected, "Ctrl+Return",
                                       "Add the selected proposal to the plan", edit)
        self.act_place = self._action("Place &trajectory", self.toggle_place, "T",
                                      "Click the entry, then the target, in any reformat", edit)
        self.act_place.setCheckable(True)
        self.act_remove = self._action("&Remove trajectory", self.remove_selected,
                                       QKeySequence.StandardKey.Delete,
                                       "Remove the selected trajectory from the plan", edit)
        self.act_cancel = self._action("Cancel placing", self.cancel_place, "Esc")
        self.act_relabel = self._action("This vertebra &is\u2026", self.relabel_at_crosshair,
                                        "Ctrl+L", "Name the vertebra at the crosshair; all "
                                        "levels follow", edit)

        carm = QMenu("&C-arm", w)
        bar.insertMenu(w.view_menu.menuAction(), carm)
        self.act_views = {}
        for name, text, key in (("bullseye", "&Bull's-eye view", "B"),
                                ("working_view", "&Working view", "W"),
                                ("progression", "&Progression view", "P")):
            self.act_views[name] = self._action(text, lambda n=name: self.go_view(n), key,
                                                menu=carm)
        carm.addSeparator()
        for text, key, d in (("Rotate \u2212", "Alt+Left", (-1, 0)), ("Rotate +", "Alt+Right", (1, 0)),
                             ("Angulate +", "Alt+Up", (0, 1)), ("Angulate \u2212", "Alt+Down", (0, -1)),
                             ("Rotate \u2212 5", "Alt+Shift+Left", (-5, 0)),
                             ("Rotate + 5", "Alt+Shift+Right", (5, 0)),
                             ("Angulate + 5", "Alt+Shift+Up", (0, 5)),
                             ("Angulate \u2212 5", "Alt+Shift+Down", (0, -5))):
            self._action(text, lambda d=d: self.carm.nudge(*d), key, menu=carm)

        for act in (self.act_place, self.act_remove):
            self.plan_panel.add_button(act)
        tb = w.toolbar
        tb.addSeparator()
        for act in (self.act_undo, self.act_redo, self.act_propose, self.act_place,
                    self.act_views["bullseye"]):
            tb.addAction(act)
        self._update_actions()

    def _build_status(self) -> None:
        sb = self.win.statusBar()
        self.progress = QProgressBar()
        self.progress.setObjectName("planning_progress")
        self.progress.setRange(0, 1000)
        self.progress.setMaximumWidth(self.win.fontMetrics().averageCharWidth() * 30)
        self.cancel_button = QPushButton("Stop")
        self.cancel_button.setObjectName("planning_cancel")
        self.cancel_button.setToolTip("Stop the analysis or the proposals")
        self.cancel_button.clicked.connect(self.cancel)
        self.task_label = QLabel("")
        sb.addPermanentWidget(self.task_label)
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.cancel_button)
        self._show_busy(None)

    def _show_busy(self, text: str | None, fraction: float = 0.0) -> None:
        busy = text is not None
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.task_label.setVisible(busy)
        if busy:
            self.task_label.setText(text)
            self.progress.setValue(int(round(fraction * 1000)))

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

    def _update_actions(self) -> None:
        has_case = self.doc.case is not None
        sel = self.doc.selected is not None
        target = self.doc.target(self.doc.target_id)
        self.act_propose.setEnabled(has_case and target is not None and self.propose_task is None)
        self.act_place.setEnabled(has_case)
        self.act_remove.setEnabled(sel)
        self.act_accept.setEnabled(self.proposals_panel.selected() is not None)
        self.act_relabel.setEnabled(has_case and self.relabel_task is None)
        self.act_import_labels.setEnabled(self.doc.volume is not None and self.analysis_done
                                          and self.analysis_task is None
                                          and self.relabel_task is None)
        for act in self.act_views.values():
            act.setEnabled(sel)
        self.act_save.setEnabled(self.doc.plan is not None)
        self.act_save_as.setEnabled(self.doc.plan is not None)
        self.act_open_plan.setEnabled(self.doc.volume is not None)
        self.act_pdf.setEnabled(self.doc.plan is not None and self.pdf_task is None)
        self.carm.trajectory_changed(sel)
        self.proposals_panel.set_busy(self.propose_task is not None,
                                      has_case and target is not None)

    def _update_title(self) -> None:
        base = self.win.windowTitle().lstrip("*")
        name = Path(self.doc.path).name if self.doc.path else None
        if name and f"[{name}]" not in base:
            base = base.split("  [")[0] + f"  [{name}]"
        self.win.setWindowTitle(("*" if not self.stack.isClean() else "") + base)

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
        self.targets_panel.status.setText("Analysing the CT (vertebrae, implants, halos)\u2026")
        from fluoroplan.geometry.drr import AttenuationVolume

        att_task = Task("attenuation", lambda p, c: AttenuationVolume.from_ct(volume))
        self.att_task = att_task
        att_task.signals.succeeded.connect(self._on_att)
        att_task.signals.failed.connect(self._on_task_failed)
        att_task.start(self.carm.pool)
        task = Task("analysis", lambda p, c: _analyse(volume, p, c))
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
        n_screws = len(result[1].get("screws", []))
        self.win.statusBar().showMessage(
            f"Analysis: {len(result[1].get('vertebrae', []))} vertebrae, {n_screws} screws, "
            f"{len(result[3])} targets", 8000)
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
        for attr in ("analysis_task", "propose_task", "recheck_task", "relabel_task", "att_task",
                     "pdf_task"):
            if getattr(self, attr) is task:
                setattr(self, attr, None)
        if task.name == "recheck":
            self.pending_checks.discard(getattr(task, "traj_id", ""))
        if task.name == "analysis":
            self.pending_recovery = None
            self.analysis_done = True  # nothing more will come; the CT is still shown
            self.targets_panel.status.setText(
                "No analysis: targets can be placed by hand once a new analysis succeeds.")
        self._show_busy(None)
        self._update_actions()
        if isinstance(exc, Cancelled):
            self.win.statusBar().showMessage(f"Stopped {doing}", 8000)
            return
        self.error(exc, doing)
        if task.name == "recheck":
            self._queue_rechecks()

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
            log.error("Unexpected error while %s", doing, exc_info=exc)
            short = str(exc).splitlines()[0][:200] if str(exc) else ""
            title = "Unexpected error"
            text = (f"Unexpected error while {doing} ({type(exc).__name__}"
                    f"{': ' + short if short else ''}). The plan is unchanged; the details were "
                    "written to the log, please report them.")
        return title, text

    # --- document events ----------------------------------------------------------------------
    def _on_doc(self, event: str, detail) -> None:
        if event == "analysis":
            self.targets_panel.populate(self.doc.analysis_json, self.doc.targets)
            self._draw_implants()
            self.proposals_panel.set_target(self.doc.target(self.doc.target_id))
            if self.doc.case is not None and self.doc.trajectories:
                # the checks were made against the previous analysis: make them again
                self.stale_checks.update(t.id for t in self.doc.trajectories)
                self.pending_checks.update(self.stale_checks)
                self._recheck_timer.start()
                self._refresh_plan_panel()
        elif event in ("plan", "trajectories"):
            self._queue_rechecks()
            self._refresh_plan_panel()
            self._draw_trajectories()
            self._redraw_2d()
            self._follow_views()
        elif event == "selection":
            self._refresh_plan_panel()
            self._draw_trajectories()
            self._redraw_2d()
            self._follow_views()
            traj = self.doc.selected
            if traj is not None:
                self.win.statusBar().showMessage(f"Selected {traj.id}", 4000)
        elif event == "target":
            self.proposals_panel.set_target(self.doc.target(detail))
            self._redraw_2d()
        elif event == "path":
            self._update_title()
        self._update_actions()

    def _refresh_plan_panel(self) -> None:
        self.plan_panel.populate(self.doc.trajectories, self.doc.selected_id, self.pending_checks)
        traj = self.doc.selected
        self.plan_panel.show_checks(traj, traj is not None and traj.id in self.pending_checks)
        self._show_live(traj)

    def _show_live(self, traj) -> None:
        if traj is None:
            self.plan_panel.live.setText("")
            return
        from fluoroplan.geometry.carm import bullseye_pose

        pose = bullseye_pose(traj.entry_lps, traj.aim_lps, self.position)
        self.plan_panel.live.setText(
            f"<b>{traj.id}</b>: depth {traj.depth_mm:.1f} mm ({traj.needle.gauge} G "
            f"{traj.needle.length_mm:.0f} mm needle); bull's-eye: {pose.text} "
            f"({pose.dicom_text})")

    def _after_edit(self, _index: int) -> None:
        self._update_title()
        self.autosave()

    def autosave(self) -> None:
        plan = self.doc.plan
        if plan is None:
            return
        from fluoroplan.io.planfile import autosave

        try:
            autosave(plan, self.doc.path)
        except (OSError, FluoroplanError) as exc:
            if not self._autosave_warned:
                self._autosave_warned = True
                self.error(exc, "autosaving the plan (your edits are kept in this window; "
                                "save the plan to keep them)")

    def series_key(self) -> str | None:
        """The key of the loaded CT's autosave (its series UID, else its fingerprint)."""
        vol = self.doc.volume
        if vol is None:
            return None
        return str(vol.identifiers.get("series_instance_uid") or vol.fingerprint())

    def _offer_recovery(self, restore: bool = False) -> None:
        """Offer the autosave of the loaded CT's unsaved plan; with ``restore`` (the user chose
        it at start-up) restore it without asking."""
        from fluoroplan.io.planfile import find_recovery

        key = self.series_key()
        try:
            rec = find_recovery(series_uid=key)
        except FluoroplanError as exc:
            self.win.statusBar().showMessage(f"An autosave could not be read: {exc}", 10000)
            return
        if rec is None or not rec.plan.trajectories:
            if restore:
                self.win.statusBar().showMessage(
                    "The autosaved plan of this CT is no longer there; nothing was restored",
                    10000)
            return
        if restore:
            self.restore_recovery(rec)
            return
        if not self.win.interactive:
            return
        box = QMessageBox(QMessageBox.Icon.Question, "Recover the plan?",
                          f"{rec.text} Restore it?", QMessageBox.StandardButton.Yes
                          | QMessageBox.StandardButton.Discard
                          | QMessageBox.StandardButton.Cancel, self.win)
        box.setObjectName("recovery_box")
        box.button(QMessageBox.StandardButton.Cancel).setText("Keep for later")
        box.setDefaultButton(QMessageBox.StandardButton.Yes)
        box.setEscapeButton(QMessageBox.StandardButton.Cancel)  # closing it loses nothing

        def done(_code: int) -> None:
            clicked = box.clickedButton()
            box.deleteLater()
            if clicked is box.button(QMessageBox.StandardButton.Yes):
                self.restore_recovery(rec)
            elif clicked is box.button(QMessageBox.StandardButton.Discard):
                self._confirm_discard_recovery(rec, key)
            else:
                self.win.statusBar().showMessage(
                    "The autosaved plan is kept; it is offered again when this CT is opened",
                    8000)

        box.finished.connect(done)
        box.open()

    def _confirm_discard_recovery(self, rec, key: str) -> None:
        """Discarding an autosaved plan loses it: ask first (Cancel keeps it)."""
        n = len(rec.plan.trajectories)
        box = QMessageBox(
            QMessageBox.Icon.Warning, "Discard the autosaved plan?",
            f"{rec.text}\n\nDiscard it? Its {n} trajector{'y' if n == 1 else 'ies'} cannot be "
            "recovered afterwards.",
            QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel, self.win)
        box.setObjectName("recovery_discard_box")
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)

        def answered(_code: int) -> None:
            sure = box.clickedButton() is box.button(QMessageBox.StandardButton.Discard)
            box.deleteLater()
            if not sure:
                self.win.statusBar().showMessage("The autosaved plan is kept", 6000)
                return
            from fluoroplan.io.planfile import discard_recovery

            try:
                discard_recovery(series_uid=key)
            except OSError as exc:
                self.win.report_error(exc, "discarding the autosaved plan")
            else:
                self.win.statusBar().showMessage("Discarded the autosaved plan", 6000)

        box.finished.connect(answered)
        box.open()

    def restore_recovery(self, rec) -> None:
        """Make the recovered plan ``rec`` (of the loaded CT) the plan being edited; it is not
        saved anywhere, so the window shows unsaved changes. The autosave is kept until the
        plan is saved."""
        self.doc.set_plan(rec.plan, None)
        self.stack.clear()
        self.stack.resetClean()
        self._mark_dirty()
        self.win.statusBar().showMessage(
            f"Restored the autosaved plan ({len(rec.plan.trajectories)} trajectories); save it "
            "to keep it", 10000)

    def _mark_dirty(self) -> None:
        # a recovered plan is not saved anywhere: make the stack unclean with no undo step
        self.stack.setClean()
        self.stack.resetClean()
        self._update_title()

    # --- targets and proposals ---------------------------------------------------------------
    def _target_chosen(self, target_id, point) -> None:
        self.doc.set_target(target_id)
        if point is not None:
            self.win.state.set_crosshair(np.asarray(point, float))
        if target_id is not None and self.proposals_for != target_id:
            self.proposals_panel.set_results([])

    def select_target(self, target_id: str) -> None:
        t = self.doc.target(target_id)
        if t is None:
            raise KeyError(target_id)
        key = f"screw:{t.ref}" if t.kind == "loose-screw" else (
            f"vertebra:{t.ref}" if t.kind == "fracture" else f"cage:{t.ref}")
        if not self.targets_panel.select_key(key):
            self._target_chosen(target_id, t.point_lps)

    def propose(self) -> None:
        target = self.doc.target(self.doc.target_id)
        if self.doc.case is None or target is None:
            self.win.statusBar().showMessage(
                "Select a target first (Targets: a loose screw, a fracture, a cage)", 8000)
            return
        if self.propose_task is not None:
            return
        case = self.doc.case
        task = Task("propose", lambda p, c: _propose_all(case, target, p, c))
        task.target_id = target.id
        self.propose_task = task
        self.docks["proposals"].raise_()
        self._run(task, self._on_proposals, f"Proposing for {target.ref}")

    def _on_proposals(self, task, results) -> None:
        if task is not self.propose_task:
            return
        self.propose_task = None
        self._show_busy(None)
        self.proposals_for = task.target_id
        self.proposals_panel.set_results(results)
        self._update_actions()
        n_ok = sum(1 for r in results if hasattr(r, "entry_lps"))
        self.win.statusBar().showMessage(
            f"{n_ok} of {len(results)} approaches found a trajectory; select one and Accept "
            "(Ctrl+Enter)", 10000)
        emit(self.proposals_ready)

    def accept_selected(self) -> None:
        traj = self.proposals_panel.selected()
        if traj is not None:
            self.accept(traj)

    def accept(self, traj) -> None:
        from dataclasses import replace

        traj = replace(traj, id=self.doc.unique_id(traj.id))
        self.stack.push(AddTrajectory(self.doc, traj, f"accept {traj.id}"))
        self.docks["plan"].raise_()

    def _plan_row_selected(self, traj_id) -> None:
        """A trajectory chosen in the Plan table: select it and show its target's slices."""
        self.doc.select(traj_id)
        traj = self.doc.selected
        if traj is not None:
            self.win.state.set_crosshair(traj.target_lps)

    def remove_selected(self) -> None:
        if self.doc.selected is not None:
            self.stack.push(RemoveTrajectory(self.doc, self.doc.selected_id))

    # --- placing and dragging ---------------------------------------------------------------
    def toggle_place(self) -> None:
        if self.placing:
            self.cancel_place()
            return
        if self.doc.case is None:
            self.win.statusBar().showMessage("Wait for the analysis before placing a trajectory",
                                             8000)
            self.act_place.setChecked(False)
            return
        self.placing = True
        self._place_entry = self._place_cursor = None
        self.act_place.setChecked(True)
        self.win.statusBar().showMessage(
            "Placing a trajectory: click the skin entry, then the target, in any reformat "
            "(Esc cancels)")

    def cancel_place(self) -> None:
        if self._drag is not None:
            self.cancel_drag()
        if not self.placing:
            return
        self.placing = False
        self._place_entry = self._place_cursor = None
        self.act_place.setChecked(False)
        self.win.statusBar().showMessage("Placing cancelled", 3000)
        self._redraw_2d()

    def place_point(self, lps) -> None:
        lps = np.asarray(lps, float)
        if self._place_entry is None:
            self._place_entry = lps
            self.win.statusBar().showMessage("Entry set; now click the target (Esc cancels)")
            self._redraw_2d()
            return
        entry, self._place_entry = self._place_entry, None
        self.placing = False
        self.act_place.setChecked(False)
        try:
            traj = self.new_trajectory(entry, lps)
        except ValueError as exc:
            self.error(exc, "placing the trajectory")
            self._redraw_2d()
            return
        self.stack.push(AddTrajectory(self.doc, traj, f"place {traj.id}"))

    def placing_cursor(self, lps) -> None:
        if self._place_entry is not None:
            self._place_cursor = np.asarray(lps, float)
            self._redraw_2d()

    def placing_points(self):
        return (self._place_entry, self._place_cursor) if self.placing else (None, None)

    def new_trajectory(self, entry_lps, target_lps):
        """A hand-placed trajectory toward the current target (or a manual one at the click);
        the planner decides its side and level (``planner.propose.manual_trajectory``)."""
        from dataclasses import replace

        from fluoroplan.planner.propose import manual_trajectory
        from fluoroplan.planner.targets import manual_target

        case = self.doc.case
        target = self.doc.target(self.doc.target_id)
        if target is None:  # a new manual target, named uniquely in this plan
            n = sum(t.approach == "manual" for t in self.doc.trajectories) + 1
            target = manual_target(case, target_lps, f"manual-{n}")
        traj = manual_trajectory(case, entry_lps, target_lps, target)
        return replace(traj, id=self.doc.unique_id(traj.id))

    def begin_drag(self, traj_id: str, which: str) -> None:
        before = self.doc.trajectory(traj_id)
        self._drag = {"id": traj_id, "which": which, "before": before, "preview": before}
        self._live_preview = None
        self.doc.select(traj_id)

    def _moved(self, lps):
        d = self._drag
        kw = {"entry_lps": lps} if d["which"] == "entry" else {"target_lps": lps}
        return d["before"].moved(**kw)

    def drag_to(self, lps) -> None:
        """Move the dragged end: the reformats redraw now, the rest after a rest."""
        if self._drag is None:
            return
        t0 = time.perf_counter()
        try:
            preview = self._moved(np.asarray(lps, float))
        except ValueError:  # the ends would meet
            return
        self._drag["preview"] = preview
        self._live_preview = None
        for v in self.win.views.values():
            v.repaint()
        self._show_live(preview)
        self.drag_ms.append((time.perf_counter() - t0) * 1000.0)
        self._live_timer.start()
        self._recheck_timer.start()

    def end_drag(self, lps) -> None:
        if self._drag is None:
            return
        d, self._drag = self._drag, None
        try:
            after = d["before"].moved(**({"entry_lps": np.asarray(lps, float)}
                                         if d["which"] == "entry"
                                         else {"target_lps": np.asarray(lps, float)}))
        except ValueError:
            after = d["preview"]
        if same_geometry(after, d["before"]):
            self._redraw_2d()
            return
        self.stack.push(EditTrajectory(self.doc, d["before"], after,
                                       f"move the {d['which']} of {after.id}"))

    def cancel_drag(self) -> None:
        self._drag = None
        self._redraw_2d()
        self._follow_views()

    def move_end(self, traj_id: str, which: str, lps) -> None:
        """Move an end of a trajectory as one undoable edit (what a drag ends with)."""
        self.begin_drag(traj_id, which)
        self.end_drag(lps)

    def drawn_trajectories(self):
        out = []
        drag = self._drag
        for t in self.doc.trajectories:
            if drag is not None and t.id == drag["id"]:
                t = drag["preview"]
            out.append((t.id, t.entry_lps, t.aim_lps, t.target_lps, t.id == self.doc.selected_id))
        return out

    def shown_selected(self):
        """The selected trajectory as drawn (the drag preview while an end is dragged)."""
        if self._drag is not None and self._drag["id"] == self.doc.selected_id:
            return self._drag["preview"]
        return self.doc.selected

    def current_target_point(self):
        t = self.doc.target(self.doc.target_id)
        return None if t is None else t.point_lps

    # --- checks -----------------------------------------------------------------------------
    def _queue_rechecks(self) -> None:
        for t in self.doc.trajectories:
            if not t.checks:
                self.pending_checks.add(t.id)
        if self.pending_checks and self.doc.case is not None:
            self._recheck_timer.start()

    def _start_recheck(self) -> None:
        if self.recheck_task is not None or self.doc.case is None:
            if self.recheck_task is not None:
                self._recheck_timer.start()
            return
        traj = None
        if self._drag is not None:  # live checks of the dragged end
            traj = self._drag["preview"]
        else:
            for tid in list(self.pending_checks):
                traj = self.doc.trajectory(tid)
                if traj is not None and (not traj.checks or tid in self.stale_checks):
                    break
                self.pending_checks.discard(tid)
                self.stale_checks.discard(tid)
                traj = None
        if traj is None:
            self._refresh_plan_panel()
            return
        from fluoroplan.planner.propose import recheck

        case = self.doc.case
        task = Task("recheck", lambda p, c: recheck(case, traj))
        task.traj_id = traj.id
        task.case = case
        self.recheck_task = task
        self._run(task, self._on_recheck, "")

    def _on_recheck(self, task, traj) -> None:
        if task is not self.recheck_task:
            return
        self.recheck_task = None
        if task.case is not self.doc.case:  # the analysis was replaced meanwhile: again
            self._recheck_timer.start()
            return
        if self.doc.update_checked(traj):
            self.pending_checks.discard(traj.id)
            self.stale_checks.discard(traj.id)
            emit(self.checks_updated, traj.id)
        elif self._drag is not None and same_geometry(self._drag["preview"], traj):
            self._live_preview = traj
            self.plan_panel.show_checks(traj, False)
        if self.pending_checks:
            self._start_recheck()
        else:
            self._refresh_plan_panel()
            self._update_actions()
            if self.doc.selected is not None:
                self.carm.refresh()

    # --- drawing ------------------------------------------------------------------------------
    def _redraw_2d(self) -> None:
        for v in self.win.views.values():
            v.update()

    def _follow_views(self) -> None:
        self._draw_trajectories()
        traj = self.shown_selected()
        for nv in self.win.needle_views.values():
            if traj is None:
                nv.set_trajectory(None, None)
            else:
                nv.set_trajectory(traj.entry_lps, traj.aim_lps, traj.id)
        if self._drag is not None:
            self.carm.render_preview()
        else:
            self.carm.refresh()

    def _draw_implants(self) -> None:
        v3 = self.win.view3d
        for g in ("implants", "levels"):
            v3.remove_group(g)
        aj = self.doc.analysis_json
        # the metal surface becomes translucent so the screws' colours show through it
        v3.set_metal_opacity(1.0 if aj is None else 0.3)
        if aj is None:
            v3.render()
            return
        for s in aj.get("screws", []):
            rgb = LOOSE_RGB if s.get("loose") else TIGHT_RGB
            head, tip = np.asarray(s["head_lps"], float), np.asarray(s["tip_lps"], float)
            v3.add_cylinder(head, tip, s.get("diameter_mm", 6.0) / 2 + 0.4, rgb=rgb,
                            group="implants")
            # the shaft is inside bone: a coloured cap just beyond the tulip (about 15 mm
            # behind the head) shows which screw is loose
            axis = (tip - head) / max(float(np.linalg.norm(tip - head)), 1e-6)
            v3.add_cylinder(head - 19.0 * axis, head - 16.0 * axis, 4.5, rgb=rgb, group="implants")
        for r in aj.get("rods", []):
            pts = np.asarray(r.get("points_lps", []), float)
            for a, b in zip(pts[:-1], pts[1:], strict=True):
                v3.add_cylinder(a, b, r.get("diameter_mm", 5.5) / 2 + 0.2, rgb=ROD_RGB,
                                group="implants")
        for c in aj.get("cages", []):
            centre = np.asarray(c["center_lps"], float)
            ext = c.get("extent_mm") or [10.0, 10.0, 10.0]
            half = 0.5 * float(ext[-1])
            v3.add_cylinder(centre - [0, 0, half], centre + [0, 0, half], 0.5 * float(ext[0]),
                            rgb=CAGE_RGB, opacity=0.6, group="implants")
        rod_r = np.mean([r.get("diameter_mm", 5.5) for r in aj.get("rods", [])] or [5.5]) / 2
        for c in aj.get("connectors", []):
            a, b = (np.asarray(p, float) for p in c["ends_lps"])
            v3.add_cylinder(a, b, rod_r + 0.2, rgb=CONNECTOR_RGB, group="implants")
        self._draw_cement(aj.get("cement", []))
        axes = self.win.view3d_axes()
        for v in aj.get("vertebrae", []):
            # beside the vertebra and behind it (toward the camera looking at the back), so
            # that ribs do not hide the thoracic labels
            c = np.asarray(v["centroid_lps"], float) + np.array([0.0, LEVEL_LABEL_BACK_MM, 0.0])
            v3.add_label(c - axes * 45.0, v["label"], rgb=(1.0, 0.85, 0.4), group="levels")
        v3.render()

    def _draw_cement(self, cement: list[dict]) -> None:
        """Each cement deposit as a translucent ellipsoid filling its box; it lies inside bone,
        so a thin line leads from it to a "cement" label beside the spine, toward the viewer."""
        volume = self.doc.volume
        if volume is None or not cement:
            return
        from fluoroplan.app.reformat import display_axes

        v3 = self.win.view3d
        coronal = display_axes(volume.patient_position)["coronal"]
        out = (CEMENT_CALLOUT_MM[0] * coronal.right_lps
               - CEMENT_CALLOUT_MM[1] * coronal.into_screen_lps)
        for c in cement:
            lo, hi = (np.asarray(x, float) for x in c["bbox_ijk"])
            corners = np.array([[x, y, z] for x in (lo[0], hi[0] - 1) for y in (lo[1], hi[1] - 1)
                                for z in (lo[2], hi[2] - 1)])
            lps = volume.lps_from_ijk_points(corners)
            voxel_mm = np.abs(volume.lps_from_ijk[:3, :3]).sum(axis=1)  # one voxel's LPS size
            semi_mm = 0.5 * (lps.max(axis=0) - lps.min(axis=0) + voxel_mm)
            centre = np.asarray(c["center_lps"], float)
            v3.add_actor(ellipsoid_actor(centre, semi_mm, CEMENT_RGB, 0.7), group="implants")
            v3.add_polyline(np.array([centre, centre + out]), rgb=CEMENT_RGB, width_px=2.0,
                            group="implants")
            v3.add_label(centre + out, "cement", rgb=CEMENT_RGB, group="implants")

    def _draw_trajectories(self) -> None:
        v3 = self.win.view3d
        v3.remove_group("trajectories")
        r = NEEDLE_OUTER_DIAMETER_MM / 2
        for tid, entry, aim, target, selected in self.drawn_trajectories():
            rgb = NEEDLE_RGB if selected else OTHER_NEEDLE_RGB
            v3.add_cylinder(entry, aim, r, rgb=rgb, group="trajectories")
            # the skin entry, large enough to see when the needle points at the camera
            n = (aim - entry) / max(float(np.linalg.norm(aim - entry)), 1e-6)
            v3.add_cylinder(entry - 1.5 * n, entry, 3.5, rgb=rgb, group="trajectories")
            if not np.allclose(aim, target):
                v3.add_cylinder(aim, target, r, rgb=rgb, group="trajectories")
            del tid
        v3.render()

    def _crosshair_moved(self) -> None:
        if self.doc.selected is None and self.att is not None and self.analysis_done:
            self.carm.refresh()

    # --- the C-arm pane's questions -----------------------------------------------------------
    def drr_context(self):
        if self.att is None:
            return None, None, [], [], None
        traj = self.shown_selected()
        iso = traj.aim_lps if traj is not None else self.win.state.crosshair_lps
        needles = [] if traj is None else [(traj.entry_lps, traj.aim_lps)]
        aj = self.doc.analysis_json or {}
        screws = [(np.asarray(s["head_lps"], float), np.asarray(s["tip_lps"], float),
                   bool(s.get("loose"))) for s in aj.get("screws", [])]
        vis_fn = None
        case = self.doc.case
        if traj is not None and case is not None:
            from fluoroplan.planner.checks import visibility_check

            def vis_fn(pose, case=case, traj=traj):
                return visibility_check(case, traj, pose)
        return self.att, iso, needles, screws, vis_fn

    def named_pose(self, name: str):
        traj = self.shown_selected()
        if traj is None or self.doc.volume is None:
            return None
        from fluoroplan.geometry.carm import pose_from_json

        blocks = traj.views
        if name not in blocks:
            if self.doc.case is None:
                return None
            from fluoroplan.planner.checks import views_for

            blocks = views_for(self.doc.case, traj)[0]
        block = blocks[name]
        pose = pose_from_json(block, self.position)
        label = {"bullseye": "Bull's-eye", "working_view": "Working view",
                 "progression": "Progression view"}[name]
        self.carm.angles_label.setToolTip(block.get("how", ""))
        return pose, f"{label} of {traj.id}"

    def go_view(self, name: str) -> None:
        if not self.carm.go_to(name):
            self.win.statusBar().showMessage("Select a trajectory first", 5000)
        self.docks["carm"].raise_()

    # --- relabelling --------------------------------------------------------------------------
    def _vertebra_at(self, lps):
        an = self.doc.analysis
        if an is None:
            return None
        vol = self.doc.volume
        ijk = np.round(vol.ijk_from_lps_points(np.asarray(lps, float))[0]).astype(int)
        labels = an.anatomy.labels
        ni, nj, nk = vol.shape_ijk
        if 0 <= ijk[0] < ni and 0 <= ijk[1] < nj and 0 <= ijk[2] < nk:
            value = int(labels[ijk[2], ijk[1], ijk[0]])
            for v in an.anatomy.vertebrae:
                if value and v.label_value == value:
                    return v.index, v.label
        best = None
        for v in self.doc.analysis_json.get("vertebrae", []):
            d = float(np.linalg.norm(np.asarray(v["centroid_lps"]) - lps))
            if d < 25.0 and (best is None or d < best[0]):
                best = (d, v["index"], v["label"])
        return None if best is None else best[1:]

    def _view_context_menu(self, lps, global_pos) -> None:
        found = self._vertebra_at(lps)
        menu = QMenu(self.win)
        act_relabel = None
        if found is not None:
            act_relabel = menu.addAction(f"This vertebra ({found[1]}) is \u2026")
        act_place = menu.addAction("Place a trajectory (T)")
        act_place.setEnabled(self.doc.case is not None)
        chosen = menu.exec(global_pos)
        if chosen is act_relabel and found is not None:
            self.ask_relabel(*found)
        elif chosen is act_place:
            self.toggle_place()

    def relabel_at_crosshair(self) -> None:
        found = self._vertebra_at(self.win.state.crosshair_lps)
        if found is None:
            self.win.statusBar().showMessage(
                "Put the crosshair on a vertebra (click it) to name it", 6000)
            return
        self.ask_relabel(*found)

    def ask_relabel(self, index: int, current: str) -> None:
        from fluoroplan.segmentation.levels import LEVELS

        items = list(LEVELS)
        level, ok = QInputDialog.getItem(
            self.win, "Name this vertebra",
            f"The vertebra now labelled {current} is:\n(every other level follows by counting)",
            items, items.index(current) if current in items else 0, False)
        if ok and level and level != current:
            self.relabel(index, level)

    def relabel(self, index: int, level: str) -> None:
        """Rename all levels from "vertebra ``index`` is ``level``" (worker; undoable)."""
        if self.doc.analysis is None or self.relabel_task is not None:
            return
        analysis, volume = self.doc.analysis, self.doc.volume
        before = self.doc.analysis_state()

        def work(progress, cancel):
            progress(0.1, f"Renaming the levels ({level})")
            return _case_state(volume, analysis.relabel(index, level), progress)

        task = Task("relabel", work)
        task.before = before
        task.text = f"name vertebra {index + 1} {level}"
        self.relabel_task = task
        self._run(task, self._on_relabel, "Renaming levels")

    def _on_relabel(self, task, result) -> None:
        if task is not self.relabel_task:
            return
        self.relabel_task = None
        self._show_busy(None)
        self.stack.push(Relabel(self.doc, task.before, result, task.text))
        emit(self.analysis_ready)

    # --- vertebra labels made elsewhere ---------------------------------------------------------
    def choose_labels(self) -> None:
        start = str(self.win.settings.value("labels_folder", self._plan_folder()))
        name, _ = QFileDialog.getOpenFileName(
            self.win, "Import vertebra labels (for a TotalSegmentator folder, pick any of its "
            "vertebrae_*.nii.gz)", start,
            "Label maps (*.nii.gz *.nii *.seg.nrrd *.nrrd);;All files (*)")
        if name:
            self.import_labels(name)

    def import_labels(self, path: str | Path) -> bool:
        """Analyse the CT again with the vertebrae of a label map made elsewhere (worker) and
        replace the analysis as one undoable step (the plan's trajectories are kept and
        re-checked against the new analysis). An unusable map is explained in a dialog and the
        analysis is unchanged. False when nothing was started."""
        if self.doc.volume is None or self.analysis_task is not None \
                or self.relabel_task is not None:
            self.win.statusBar().showMessage(
                "Open a CT and wait for its analysis before importing vertebra labels", 8000)
            return False
        source = label_map_source(path)
        volume = self.doc.volume
        task = Task("labels", lambda p, c: _analyse(volume, p, c, label_map=str(source)))
        task.before = self.doc.analysis_state()
        task.source = source
        task.text = f"import vertebra labels from {source.name}"
        self.relabel_task = task
        self.win.settings.setValue("labels_folder", str(Path(path).parent))
        self._run(task, self._on_labels, f"Reading the labels of {source.name}")
        return True

    def _on_labels(self, task, result) -> None:
        if task is not self.relabel_task:
            return
        self.relabel_task = None
        self._show_busy(None)
        self.stack.push(Relabel(self.doc, task.before, result, task.text))
        levels = [v["label"] for v in result[1].get("vertebrae", [])]
        self.win.statusBar().showMessage(
            f"Vertebrae from {task.source.name}: {', '.join(levels)}; {len(result[3])} targets "
            "(Ctrl+Z goes back to the previous analysis)", 10000)
        self._update_actions()
        emit(self.analysis_ready)

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
        from fluoroplan.io.planfile import load_plan

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
        from fluoroplan.io.planfile import save_plan

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
