"""The rehearsal window itself: :class:`RehearsalWindow`, its signals, its state and its
construction; the widgets, the attempt, the read-outs, the errors, the files and the replay
are the mixins it is made of (the other submodules of this package)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSettings, QThreadPool, Signal
from PySide6.QtWidgets import QMainWindow, QMessageBox

from fluoroplan.app.rehearsal_window.attempt import AttemptMixin
from fluoroplan.app.rehearsal_window.display import DisplayMixin
from fluoroplan.app.rehearsal_window.errors import ErrorsMixin
from fluoroplan.app.rehearsal_window.files import FilesMixin
from fluoroplan.app.rehearsal_window.panel import PanelMixin
from fluoroplan.app.rehearsal_window.replay import ReplayMixin
from fluoroplan.app.rehearsal_window.views import ScoreDialog
from fluoroplan.app.slice_view import ViewerState, spine_box
from fluoroplan.app.tasks import Task
from fluoroplan.planner.case import PlanningCase
from fluoroplan.planner.targets import targets_from_analysis


class RehearsalWindow(PanelMixin, AttemptMixin, DisplayMixin, ErrorsMixin, FilesMixin,
                      ReplayMixin, QMainWindow):
    """Rehearsal of one case: the trainee's fluoroscopy simulator.

    Parameters
    ----------
    volume : CTVolume
        The loaded CT.
    analysis_json : dict
        Its analysis (``analysis_json(analyze(volume))``), from which the targets are listed.
    plan_json : dict, optional
        The case's plan; a trajectory marked ``"reference": true`` is the expert reference of
        its target (else the automatic proposal). Never shown before an attempt ends.
    trainee : str
        The trainee's name (editable in the window).
    interactive : bool
        Show dialogs (False: errors are only logged and emitted, for batch screenshots).

    Signals: ``session_ready()`` when an attempt can start; ``shot_taken(int)`` after each
    shot (the shot count); ``attempt_ended(object)`` with the :class:`Score`;
    ``error_reported(str)`` for every error shown.
    """

    session_ready = Signal()
    shot_taken = Signal(int)
    attempt_ended = Signal(object)
    error_reported = Signal(str)

    def __init__(self, volume, analysis_json: dict, plan_json: dict | None = None,
                 trainee: str = "", interactive: bool = True,
                 settings: QSettings | None = None, labels=None, biplane: bool = False):
        super().__init__()
        self.setObjectName("fluoroplan_rehearsal")
        self.interactive = interactive
        self.settings = settings if settings is not None else QSettings()
        self.volume = volume
        self.plan_json = plan_json
        # the analysis' label volume (canal, bones) when the caller has it; else measured again
        self.case = PlanningCase(volume, analysis_json, labels=labels)
        self.targets = targets_from_analysis(self.case)
        self.session = None
        self.score_dialog: ScoreDialog | None = None
        self.finished_attempts: list[dict] = []  # attempt JSON of every attempt ended here
        self.replay_data: dict | None = None  # the attempt being replayed, its states, images
        self.entry_pick: np.ndarray | None = None
        self.target_pick: np.ndarray | None = None
        self.depth_text = ""
        self._shot_key = None  # (table angles, needle) of the image on the monitor
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._task: Task | None = None
        self._syncing = False
        self._saved_events: int | None = None  # the session's event count when last saved

        self.viewer = ViewerState(self)
        self._build_central()
        self._build_panel()
        self._build_actions()
        self._build_replay_bar()
        self.viewer.set_volume(volume)
        # the axial pane zooms on the spine (vertebrae, screws, the skin behind), not the
        # whole field
        self.viewer.focus_box = spine_box(self.case.findings, volume)
        self.axial.reset_view()
        desc = volume.identifiers.get("series_description") if hasattr(volume, "identifiers") \
            else ""
        self.setWindowTitle(f"fluoroplan rehearsal \u2014 {desc or 'CT'}")
        self.trainee_edit.setText(trainee)
        self.biplane_check.setChecked(bool(biplane))
        self.resize(1400, 900)
        if self.targets:
            self.start_attempt(self._default_target_index())
        else:
            self.status_label.setText("The analysis found no target to rehearse (no loose "
                                      "screw, fracture or cage).")
        self._refresh()

    # --- misc -------------------------------------------------------------------------------
    def _show_help(self) -> None:
        QMessageBox.information(
            self, "Keys",
            "Left/Right: rotation -1/+1 deg (Shift: 5 deg)\n"
            "Down/Up: angulation -1/+1 deg (Shift: 5 deg)\n"
            "Space or F (foot pedal): fluoro shot\n"
            "L: progression (lateral) view of the needle\n"
            "G: lateral plane shot (biplane suite)\n"
            "A: advance the needle 2 mm (Shift+A: 5 mm)\n"
            "W: withdraw 2 mm (Shift+W: 5 mm)\n\n"
            "Angles are table-relative, as on the C-arm console; the sentence under them "
            "says where the detector is in room terms.")

    def confirm_close(self) -> bool:
        """Whether the window may close: an attempt with work in it (a scored one above all)
        that was not saved since is offered to be saved first (Save / Discard / Cancel).
        Without dialogs (batch runs) it closes."""
        s = self.session
        if not self.interactive or s is None or self.replay_data is not None:
            return True
        worked = any(e["type"] != "start" for e in s.events)
        if not worked or self._saved_events == len(s.events):
            return True
        what = "The scored attempt" if s.score is not None else "This attempt"
        answer = QMessageBox.question(
            self, "Save the attempt?",
            f"{what} of {s.trainee or 'the trainee'} ({s.target.description}) has not been "
            "saved. Save it before closing?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Save)
        if answer == QMessageBox.StandardButton.Cancel:
            return False
        if answer == QMessageBox.StandardButton.Save:
            self._save_dialog()
            return self._saved_events == len(s.events)  # a cancelled save keeps it open
        return True

    def closeEvent(self, ev) -> None:  # noqa: N802 (Qt)
        if not self.confirm_close():
            ev.ignore()
            return
        if self._task is not None:
            self._task.cancel.cancel()
        self._pool.waitForDone(10000)
        super().closeEvent(ev)
