"""Rehearsal mode: the window that turns the workstation into a fluoroscopy simulator.

The trainee picks a target, drives the virtual C-arm like the console's controls (rotation =
table primary angle, angulation = table secondary angle), takes counted fluoro shots (the
monitor changes only on a shot), declares the bull's-eye and the working view, picks the
needle's entry and target on an axial reformat, advances and withdraws the needle, checks it
on progression (lateral) shots, and ends the attempt to see the score. The expert plan stays
hidden until the attempt has ended.

All the simulation and scoring is :class:`fluoroplan.rehearsal.session.RehearsalSession`; this
window only drives it and shows its state. Keys (window-wide):

- Left/Right: rotation -1/+1 deg (Shift: 5 deg); Down/Up: angulation -1/+1 deg (Shift: 5 deg)
- Space or F (foot pedal): fluoro shot
- A: advance the needle 2 mm (Shift+A: 5 mm); W: withdraw 2 mm (Shift+W: 5 mm)
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from fluoroplan.app.qtcompat import emit
from fluoroplan.app.rehearsal_views import FluoroView, PlacementView, ScoreDialog
from fluoroplan.app.slice_view import ViewerState
from fluoroplan.app.tasks import Task
from fluoroplan.io.errors import FluoroplanError

log = logging.getLogger(__name__)

ADVANCE_MM = 2.0
ADVANCE_BIG_MM = 5.0
NUDGE_MM = 1.0
SLIDER_STEPS_PER_DEG = 10  # the sliders move in 0.1 deg


def _lps_words(p) -> str:
    x, y, z = (float(v) for v in p)
    return (f"({x:.1f}, {y:.1f}, {z:.1f}) mm  [{'L' if x >= 0 else 'R'} {abs(x):.0f}, "
            f"{'P' if y >= 0 else 'A'} {abs(y):.0f}, {'H' if z >= 0 else 'F'} {abs(z):.0f}]")


def _build_session(case, target, plan_json, trainee, progress, cancel):
    """Worker: the session (the expert reference is computed here) and a first render that
    builds the attenuation volume, so the first shot is quick. Not counted: no shot event."""
    from fluoroplan.rehearsal.session import RehearsalSession

    progress(0.1, f"Preparing the rehearsal of {target.description or target.id}")
    session = RehearsalSession(case, target, plan_json=plan_json, trainee=trainee)
    cancel.check()
    progress(0.7, "Preparing the simulated fluoroscopy")
    session.renderer(session.pose, session.setup.isocenter_lps, [])
    return session


class RehearsalWindow(QMainWindow):
    """Rehearsal of one case: the trainee's fluoroscopy simulator.

    Parameters
    ----------
    volume : CTVolume
        The loaded CT.
    analysis_json : dict
        Its analysis (``analyze(volume).to_json()``), from which the targets are listed.
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
                 settings: QSettings | None = None, labels=None):
        super().__init__()
        from fluoroplan.planner.case import PlanningCase
        from fluoroplan.planner.targets import targets_from_analysis

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

        self.viewer = ViewerState(self)
        self._build_central()
        self._build_panel()
        self._build_actions()
        self._build_replay_bar()
        self.viewer.set_volume(volume)
        desc = volume.identifiers.get("series_description") if hasattr(volume, "identifiers") \
            else ""
        self.setWindowTitle(f"fluoroplan rehearsal \u2014 {desc or 'CT'}")
        self.trainee_edit.setText(trainee)
        self.resize(1400, 900)
        if self.targets:
            self.start_attempt(self._default_target_index())
        else:
            self.status_label.setText("The analysis found no target to rehearse (no loose "
                                      "screw, fracture or cage).")
        self._refresh()

    # --- construction -----------------------------------------------------------------------
    def _build_central(self) -> None:
        self.fluoro = FluoroView()
        self.axial = PlacementView(self.viewer)
        self.axial.picked.connect(self._on_picked)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.setObjectName("rehearsal_split")
        split.addWidget(self.fluoro)
        split.addWidget(self.axial)
        split.setChildrenCollapsible(False)
        split.setSizes([1000, 1000])
        self.split = split

    def _build_panel(self) -> None:
        panel = QWidget()
        panel.setObjectName("rehearsal_panel")
        lay = QVBoxLayout(panel)

        who = QGroupBox("Attempt")
        form = QFormLayout(who)
        self.trainee_edit = QLineEdit()
        self.trainee_edit.setObjectName("trainee_edit")
        self.trainee_edit.setPlaceholderText("trainee's name")
        self.trainee_edit.textChanged.connect(self._on_trainee)
        form.addRow("Trainee", self.trainee_edit)
        self.target_combo = QComboBox()
        self.target_combo.setObjectName("target_combo")
        self.target_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.target_combo.setMinimumContentsLength(24)
        for t in self.targets:
            self.target_combo.addItem(t.description or t.id, t.id)
        self.target_combo.activated.connect(self._on_target_chosen)
        form.addRow("Target", self.target_combo)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setObjectName("status_label")
        form.addRow(self.status_label)
        lay.addWidget(who)

        carm = QGroupBox("C-arm (table terms, as on the console)")
        grid = QGridLayout(carm)
        self.rot_slider, self.rot_spin = self._angle_controls("rotation")
        self.ang_slider, self.ang_spin = self._angle_controls("angulation")
        grid.addWidget(QLabel("Rotation (primary)  \u2190/\u2192"), 0, 0)
        grid.addWidget(self.rot_slider, 0, 1)
        grid.addWidget(self.rot_spin, 0, 2)
        grid.addWidget(QLabel("Angulation (secondary)  \u2193/\u2191"), 1, 0)
        grid.addWidget(self.ang_slider, 1, 1)
        grid.addWidget(self.ang_spin, 1, 2)
        self.angle_label = QLabel("")
        self.angle_label.setObjectName("angle_label")
        self.angle_label.setWordWrap(True)
        self.angle_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid.addWidget(self.angle_label, 2, 0, 1, 3)
        self.sentence_label = QLabel("")
        self.sentence_label.setObjectName("sentence_label")
        self.sentence_label.setWordWrap(True)
        font = self.sentence_label.font()
        font.setBold(True)
        self.sentence_label.setFont(font)
        grid.addWidget(self.sentence_label, 3, 0, 1, 3)
        row = QHBoxLayout()
        self.fluoro_button = QPushButton("Fluoro (Space / F)")
        self.fluoro_button.setObjectName("fluoro_button")
        self.fluoro_button.setStyleSheet("QPushButton { font-weight: bold; }")
        self.fluoro_button.clicked.connect(self.take_shot)
        row.addWidget(self.fluoro_button)
        self.lateral_button = QPushButton("Progression view")
        self.lateral_button.setObjectName("lateral_button")
        self.lateral_button.setToolTip("Drive the C-arm to a lateral of the needle (then take "
                                       "a shot to see it)")
        self.lateral_button.clicked.connect(self.go_lateral)
        row.addWidget(self.lateral_button)
        grid.addLayout(row, 4, 0, 1, 3)
        self.dose_label = QLabel("")
        self.dose_label.setObjectName("dose_label")
        grid.addWidget(self.dose_label, 5, 0, 1, 3)
        lay.addWidget(carm)

        views = QGroupBox("Task 1: views")
        vl = QVBoxLayout(views)
        self.phase_label = QLabel("")
        self.phase_label.setObjectName("phase_label")
        self.phase_label.setWordWrap(True)
        vl.addWidget(self.phase_label)
        row = QHBoxLayout()
        self.bullseye_button = QPushButton("Bull's-eye reached")
        self.bullseye_button.setObjectName("bullseye_button")
        self.bullseye_button.clicked.connect(lambda: self.declare("screw-bullseye"))
        self.working_button = QPushButton("Working view reached")
        self.working_button.setObjectName("working_button")
        self.working_button.clicked.connect(lambda: self.declare("working-view"))
        row.addWidget(self.bullseye_button)
        row.addWidget(self.working_button)
        vl.addLayout(row)
        lay.addWidget(views)

        needle = QGroupBox("Task 2: needle")
        nl = QVBoxLayout(needle)
        row = QHBoxLayout()
        self.pick_entry_button = QPushButton("Pick entry")
        self.pick_entry_button.setObjectName("pick_entry_button")
        self.pick_entry_button.setCheckable(True)
        self.pick_entry_button.clicked.connect(lambda on: self.set_pick_mode("entry" if on
                                                                             else None))
        self.pick_target_button = QPushButton("Pick target")
        self.pick_target_button.setObjectName("pick_target_button")
        self.pick_target_button.setCheckable(True)
        self.pick_target_button.clicked.connect(lambda on: self.set_pick_mode("target" if on
                                                                              else None))
        row.addWidget(self.pick_entry_button)
        row.addWidget(self.pick_target_button)
        nl.addLayout(row)
        self.picks_label = QLabel("")
        self.picks_label.setObjectName("picks_label")
        self.picks_label.setWordWrap(True)
        nl.addWidget(self.picks_label)
        nudge = QGridLayout()
        nudge.addWidget(QLabel("Nudge the picked point 1 mm:"), 0, 0, 1, 4)
        self.nudge_buttons = {}
        for col, (name, text, tip) in enumerate((
                ("left", "\u25c0", "toward screen left"), ("right", "\u25b6", "toward screen right"),
                ("up", "\u25b2", "toward screen top"), ("down", "\u25bc", "toward screen bottom"),
                ("in", "slice +", "one slice further in"), ("out", "slice \u2212",
                                                              "one slice back"))):
            b = QPushButton(text)
            b.setObjectName(f"nudge_{name}")
            b.setToolTip(f"move the point being picked {tip}")
            b.clicked.connect(lambda _=False, n=name: self.nudge(n))
            nudge.addWidget(b, 1 + col // 4, col % 4)
            self.nudge_buttons[name] = b
        nl.addLayout(nudge)
        self.place_button = QPushButton("Place needle on this line")
        self.place_button.setObjectName("place_button")
        self.place_button.clicked.connect(self.place_needle)
        nl.addWidget(self.place_button)
        row = QGridLayout()
        self.step_buttons = {}
        for n, (name, text, kind, mm) in enumerate((
                ("adv", f"Advance {ADVANCE_MM:.0f} mm (A)", "advance", ADVANCE_MM),
                ("adv5", f"Advance {ADVANCE_BIG_MM:.0f} mm (Shift+A)", "advance", ADVANCE_BIG_MM),
                ("wd", f"Withdraw {ADVANCE_MM:.0f} mm (W)", "withdraw", ADVANCE_MM),
                ("wd5", f"Withdraw {ADVANCE_BIG_MM:.0f} mm (Shift+W)", "withdraw",
                 ADVANCE_BIG_MM))):
            b = QPushButton(text)
            b.setObjectName(f"step_{name}")
            b.clicked.connect(lambda _=False, k=kind, m=mm: self.step_needle(k, m))
            row.addWidget(b, n // 2, n % 2)
            self.step_buttons[name] = b
        nl.addLayout(row)
        self.needle_label = QLabel("")
        self.needle_label.setObjectName("needle_label")
        self.needle_label.setWordWrap(True)
        nl.addWidget(self.needle_label)
        self.depth_label = QLabel("")
        self.depth_label.setObjectName("depth_label")
        self.depth_label.setWordWrap(True)
        nl.addWidget(self.depth_label)
        lay.addWidget(needle)

        self.end_button = QPushButton("End attempt")
        self.end_button.setObjectName("end_button")
        self.end_button.clicked.connect(self.end_attempt)
        lay.addWidget(self.end_button)
        lay.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(panel)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        chars = self.fontMetrics().averageCharWidth()
        scroll.setMinimumWidth(min(panel.minimumSizeHint().width() + chars * 4, chars * 90))
        outer = QSplitter(Qt.Orientation.Horizontal)
        outer.setObjectName("rehearsal_outer")
        outer.addWidget(self.split)
        outer.addWidget(scroll)
        outer.setStretchFactor(0, 3)
        outer.setStretchFactor(1, 1)
        outer.setChildrenCollapsible(False)
        outer.setSizes([chars * 150, chars * 80])
        container = QWidget()
        self.central_layout = QVBoxLayout(container)
        self.central_layout.setContentsMargins(0, 0, 0, 0)
        self.central_layout.addWidget(outer, 1)
        self.setCentralWidget(container)
        self.panel = panel

    def _angle_controls(self, which: str) -> tuple[QSlider, QDoubleSpinBox]:
        from fluoroplan.geometry.conventions import DEFAULT_CARM_LIMITS

        lo, hi = (DEFAULT_CARM_LIMITS.rotation_deg if which == "rotation"
                  else DEFAULT_CARM_LIMITS.angulation_deg)
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setObjectName(f"{which}_slider")
        slider.setRange(int(lo * SLIDER_STEPS_PER_DEG), int(hi * SLIDER_STEPS_PER_DEG))
        slider.setSingleStep(SLIDER_STEPS_PER_DEG)
        slider.setPageStep(5 * SLIDER_STEPS_PER_DEG)
        slider.setTracking(False)  # one C-arm move when the slider is let go
        slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the arrow keys drive the C-arm
        slider.valueChanged.connect(lambda v: self._on_slider())
        spin = QDoubleSpinBox()
        spin.setObjectName(f"{which}_spin")
        spin.setRange(lo, hi)
        spin.setDecimals(1)
        spin.setSingleStep(1.0)
        spin.setSuffix(" \u00b0")
        spin.setKeyboardTracking(False)
        spin.valueChanged.connect(lambda v: self._on_spin())
        return slider, spin

    def _build_actions(self) -> None:
        menu = self.menuBar()
        f = menu.addMenu("&File")
        self.act_new = self._action("&New attempt", "Ctrl+N", self._new_attempt_same_target)
        self.act_save = self._action("&Save attempt\u2026", "Ctrl+S", self._save_dialog)
        self.act_open = self._action("&Open attempt to replay\u2026", "Ctrl+O", self._open_dialog)
        self.act_summary = self._action("&Export summary PDF\u2026", "Ctrl+E",
                                        self._summary_dialog)
        self.act_close = self._action("&Close", "Ctrl+W", self.close)
        for a in (self.act_new, self.act_save, self.act_open, self.act_summary):
            f.addAction(a)
        f.addSeparator()
        f.addAction(self.act_close)

        c = menu.addMenu("&C-arm")
        self.carm_actions = []
        for text, keys, fn in (
                ("Rotate +1 deg", ["Right"], lambda: self.rotate(1.0)),
                ("Rotate -1 deg", ["Left"], lambda: self.rotate(-1.0)),
                ("Rotate +5 deg", ["Shift+Right"], lambda: self.rotate(5.0)),
                ("Rotate -5 deg", ["Shift+Left"], lambda: self.rotate(-5.0)),
                ("Angulate +1 deg", ["Up"], lambda: self.angulate(1.0)),
                ("Angulate -1 deg", ["Down"], lambda: self.angulate(-1.0)),
                ("Angulate +5 deg", ["Shift+Up"], lambda: self.angulate(5.0)),
                ("Angulate -5 deg", ["Shift+Down"], lambda: self.angulate(-5.0)),
                ("Fluoro shot", ["Space", "F"], self.take_shot),
                ("Progression (lateral) view", ["L"], self.go_lateral)):
            act = self._action(text, keys, fn)
            c.addAction(act)
            self.carm_actions.append(act)
        n = menu.addMenu("&Needle")
        self.needle_actions = []
        for text, keys, fn in (
                (f"Advance {ADVANCE_MM:.0f} mm", ["A"],
                 lambda: self.step_needle("advance", ADVANCE_MM)),
                (f"Advance {ADVANCE_BIG_MM:.0f} mm", ["Shift+A"],
                 lambda: self.step_needle("advance", ADVANCE_BIG_MM)),
                (f"Withdraw {ADVANCE_MM:.0f} mm", ["W"],
                 lambda: self.step_needle("withdraw", ADVANCE_MM)),
                (f"Withdraw {ADVANCE_BIG_MM:.0f} mm", ["Shift+W"],
                 lambda: self.step_needle("withdraw", ADVANCE_BIG_MM)),
                ("End attempt", [], self.end_attempt)):
            act = self._action(text, keys, fn)
            n.addAction(act)
            self.needle_actions.append(act)
        h = menu.addMenu("&Help")
        h.addAction(self._action("Keys", [], self._show_help))

    def _action(self, text: str, keys, fn) -> QAction:
        act = QAction(text, self)
        if isinstance(keys, str):
            keys = [keys]
        if keys:
            act.setShortcuts([QKeySequence(k) for k in keys])
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        act.triggered.connect(lambda _=False: fn())
        self.addAction(act)  # shortcuts work while the menus are closed
        return act

    def _build_replay_bar(self) -> None:
        bar = QWidget()
        bar.setObjectName("replay_bar")
        row = QHBoxLayout(bar)
        row.addWidget(QLabel("Replay:"))
        self.replay_buttons = {}
        for name, text in (("first", "|\u25c0"), ("prev", "\u25c0"), ("next", "\u25b6"),
                           ("last", "\u25b6|")):
            b = QPushButton(text)
            b.setObjectName(f"replay_{name}")
            b.clicked.connect(lambda _=False, n=name: self._replay_button(n))
            row.addWidget(b)
            self.replay_buttons[name] = b
        self.replay_slider = QSlider(Qt.Orientation.Horizontal)
        self.replay_slider.setObjectName("replay_slider")
        self.replay_slider.valueChanged.connect(self.replay_step)
        row.addWidget(self.replay_slider, 1)
        self.replay_label = QLabel("")
        self.replay_label.setObjectName("replay_label")
        row.addWidget(self.replay_label)
        leave = QPushButton("Back to the attempt")
        leave.setObjectName("replay_leave")
        leave.clicked.connect(self.leave_replay)
        row.addWidget(leave)
        bar.setVisible(False)
        self.central_layout.addWidget(bar)
        self.replay_bar = bar

    def _default_target_index(self) -> int:
        for i, t in enumerate(self.targets):
            if t.kind == "loose-screw":
                return i
        return 0

    # --- the attempt ------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._task is not None

    def start_attempt(self, index: int) -> None:
        """Start a new attempt at target ``index`` (the session is prepared on a worker)."""
        if self.replay_data is not None:
            self.leave_replay()
        target = self.targets[index]
        self.target_combo.setCurrentIndex(index)
        if self.session is not None:
            self.session.unsubscribe(self._on_event)
        self.session = None
        self.entry_pick = self.target_pick = None
        self.depth_text = ""
        self._shot_key = None
        self.set_pick_mode(None)
        self.fluoro.set_shot(None)
        self.viewer.set_crosshair(target.point_lps)
        if self.score_dialog is not None:
            self.score_dialog.close()
            self.score_dialog = None
        task = Task("rehearsal", lambda p, c: _build_session(
            self.case, target, self.plan_json, self.trainee_edit.text().strip(), p, c))
        self._task = task
        task.signals.progress.connect(self._on_task_progress)
        task.signals.succeeded.connect(self._on_session)
        task.signals.failed.connect(self._on_session_failed)
        self.status_label.setText(f"Preparing the rehearsal of {target.description}\u2026")
        self._refresh()
        task.start(self._pool)

    def _on_task_progress(self, task, fraction: float, message: str) -> None:
        if task is self._task:
            self.status_label.setText(message)

    def _on_session(self, task, session) -> None:
        if task is not self._task:
            return
        self._task = None
        session.trainee = self.trainee_edit.text().strip()
        self.session = session
        session.subscribe(self._on_event)
        ph = session.phase
        self.status_label.setText(
            f"Target: {session.target.description}. Reach the views of Task 1, declaring each "
            f"one (first: {ph.label if ph else '-'}); then place and drive the needle.")
        self._refresh()
        emit(self.session_ready)

    def _on_session_failed(self, task, exc) -> None:
        if task is not self._task:
            return
        self._task = None
        self.status_label.setText("This target cannot be rehearsed.")
        self._refresh()
        self.report_error(exc, "preparing the rehearsal")

    def _new_attempt_same_target(self) -> None:
        if self.targets:
            self.start_attempt(self.target_combo.currentIndex())

    def _on_target_chosen(self, index: int) -> None:
        if self.session is not None and index == self.targets.index(self.session.target):
            return
        self.start_attempt(index)

    def _on_trainee(self, text: str) -> None:
        if self.session is not None and not self.session.state.ended:
            self.session.trainee = text.strip()

    def _on_event(self, session, event: dict) -> None:
        self._refresh()

    def _do(self, what: str, fn):
        """Run a session action; a refused action becomes a dialog, the window goes on."""
        if self.session is None or self.replay_data is not None:
            return None
        try:
            return fn(self.session)
        except FluoroplanError as exc:
            self.report_error(exc, what)
        except Exception as exc:  # an engine bug must not take the trainee's attempt down
            self.report_error(exc, what)
        return None

    def rotate(self, d_deg: float) -> None:
        self._do("rotating the C-arm", lambda s: s.rotate(d_deg))

    def angulate(self, d_deg: float) -> None:
        self._do("angulating the C-arm", lambda s: s.angulate(d_deg))

    def move_to(self, rotation_deg: float, angulation_deg: float) -> None:
        self._do("moving the C-arm", lambda s: s.move_to(rotation_deg, angulation_deg))

    def _on_slider(self) -> None:
        if self._syncing or self.session is None:
            return
        self.move_to(self.rot_slider.value() / SLIDER_STEPS_PER_DEG,
                     self.ang_slider.value() / SLIDER_STEPS_PER_DEG)

    def _on_spin(self) -> None:
        if self._syncing or self.session is None:
            return
        self.move_to(self.rot_spin.value(), self.ang_spin.value())

    def go_lateral(self) -> None:
        """Drive the C-arm to the progression (lateral) view of the needle line (no shot)."""
        self._do("turning to the progression view",
                 lambda s: s.move_to(*s.lateral_pose().table_angles_deg))

    def take_shot(self) -> None:
        """A fluoro shot: the monitor shows the new image, the counters go up."""
        s = self.session
        if s is None or self.replay_data is not None:
            return
        drr = self._do("taking the shot", lambda s: s.shot())
        if drr is None:
            return
        st = s.state
        r, a = st.table_deg
        self.depth_text = self._depth_now()
        self._shot_key = self._needle_key()
        self.fluoro.set_shot(drr.image, drr.projection,
                             f"Shot {st.shots}: rotation {r:+.1f}\u00b0, angulation {a:+.1f}\u00b0")
        self._refresh()
        emit(self.shot_taken, st.shots)

    def _needle_key(self):
        st = self.session.state
        tip = None if st.entry_lps is None else tuple(np.round(st.tip_lps, 4))
        return (tuple(np.round(st.table_deg, 4)), tip)

    def _depth_now(self) -> str:
        """The depth read-out the new shot allows (only a progression view shows depth)."""
        from fluoroplan.rehearsal.session import RehearsalError

        s = self.session
        if s.state.entry_lps is None or s.state.depth_mm <= 0.0:
            return ""
        try:
            d = s.depth_reading()
        except RehearsalError as exc:
            return f"Depth not readable on this shot: {exc}."
        ahead = d["mm_anterior_of_posterior_wall"]
        where = (f"{ahead:.1f} mm anterior of the posterior wall of the body"
                 if ahead >= 0 else f"{-ahead:.1f} mm behind the posterior wall of the body")
        return (f"Depth on this lateral shot: tip {where} "
                f"({100 * d['fraction_of_body_depth']:.0f} % of the body's depth).")

    def declare(self, phase_name: str) -> None:
        s = self.session
        if s is None or self.replay_data is not None:
            return
        ph = s.phase
        if ph is None or ph.name != phase_name:
            from fluoroplan.rehearsal.session import RehearsalError

            want = ph.label if ph is not None else "nothing (Task 1 is done)"
            self.report_error(RehearsalError(f"the view to declare now is the {want}"),
                              "declaring the view")
            return
        self._do("declaring the view", lambda s: s.declare_view())

    # needle
    def set_pick_mode(self, mode: str | None) -> None:
        self.axial.pick_mode = mode
        self.pick_entry_button.setChecked(mode == "entry")
        self.pick_target_button.setChecked(mode == "target")
        self.axial.update()
        self._refresh_picks()

    def _on_picked(self, mode: str, lps) -> None:
        self.set_pick(mode, lps)

    def set_pick(self, mode: str, lps) -> None:
        """Set the picked entry or target (LPS mm) as a click on the axial view does."""
        p = np.asarray(lps, float).reshape(3).copy()
        if mode == "entry":
            self.entry_pick = p
        else:
            self.target_pick = p
        self._refresh_picks()
        self._refresh()

    def nudge(self, direction: str) -> None:
        """Move the point being picked by 1 mm on the axial screen or one slice."""
        mode = self.axial.pick_mode
        point = self.entry_pick if mode == "entry" else self.target_pick if mode else None
        if point is None:
            self.report_error(FluoroplanError(
                "choose Pick entry or Pick target and click the axial view first; the arrows "
                "then move that point"), "nudging")
            return
        a = self.viewer.axes["axial"]
        step = {"left": -a.right_lps, "right": a.right_lps, "up": -a.down_lps,
                "down": a.down_lps}.get(direction)
        if step is None:
            depth = self.viewer.grids["axial"].depth_step_mm
            step = (1 if direction == "in" else -1) * depth * a.into_screen_lps
            self.viewer.set_crosshair(self.viewer.crosshair_lps + step)
        else:
            step = NUDGE_MM * step
        self.set_pick(mode, point + step)

    def place_needle(self) -> None:
        if self.entry_pick is None or self.target_pick is None:
            self.report_error(FluoroplanError(
                "pick an entry and a target on the axial view first (Pick entry, click; Pick "
                "target, click; scroll the slices with the mouse wheel)"), "placing the needle")
            return
        e, t = self.entry_pick.copy(), self.target_pick.copy()
        if self._do("placing the needle", lambda s: s.place(e, t)) is not None:
            self.set_pick_mode(None)

    def step_needle(self, kind: str, mm: float) -> None:
        if kind == "advance":
            self._do("advancing the needle", lambda s: s.advance(mm))
        else:
            self._do("withdrawing the needle", lambda s: s.withdraw(mm))

    def end_attempt(self):
        """End the attempt; show the score dialog; returns the Score (None if refused)."""
        s = self.session
        if s is None or self.replay_data is not None:
            return None
        score = self._do("ending the attempt", lambda s: s.end())
        if score is None:
            return None
        self.finished_attempts.append(s.attempt_json())
        self.show_score(score, f"{s.trainee or '(unnamed)'} \u2014 {s.target.description}")
        emit(self.attempt_ended, score)
        return score

    def show_score(self, score, title: str = "") -> ScoreDialog:
        if self.score_dialog is not None:
            self.score_dialog.close()
        self.score_dialog = ScoreDialog(score, title, self)
        self.score_dialog.show()
        return self.score_dialog

    # --- showing the state ------------------------------------------------------------------
    def _refresh(self) -> None:
        if self.replay_data is not None:
            self._show_replay_state()
            return
        s = self.session
        live = s is not None and not s.state.ended
        for w in (self.rot_slider, self.rot_spin, self.ang_slider, self.ang_spin,
                  self.fluoro_button, self.end_button, self.pick_entry_button,
                  self.pick_target_button, *self.nudge_buttons.values()):
            w.setEnabled(live)
        for act in (*self.carm_actions, *self.needle_actions):
            act.setEnabled(live)
        self.act_save.setEnabled(s is not None)
        self.target_combo.setEnabled(not self.busy)
        if s is None:
            self.angle_label.setText("")
            self.sentence_label.setText("")
            self.dose_label.setText("")
            self.phase_label.setText("")
            self.needle_label.setText("")
            self.depth_label.setText("")
            for b in (self.bullseye_button, self.working_button, self.place_button,
                      self.lateral_button, *self.step_buttons.values()):
                b.setEnabled(False)
            self._refresh_picks()
            return
        st = s.state
        self._show_pose(s.setup, st)
        ph = s.phase
        names = [p.name for p in s.setup.phases]
        self.bullseye_button.setVisible("screw-bullseye" in names)
        self.bullseye_button.setEnabled(live and ph is not None and ph.name == "screw-bullseye")
        self.working_button.setEnabled(live and ph is not None and ph.name == "working-view")
        self.phase_label.setText(self._phase_text(s.setup, st))
        placed = st.entry_lps is not None
        self.place_button.setEnabled(live and ph is None and self.entry_pick is not None
                                     and self.target_pick is not None)
        for b in self.step_buttons.values():
            b.setEnabled(live and placed)
        self.lateral_button.setEnabled(live and placed)
        self._show_needle(s.setup, st)
        self.depth_label.setText(self.depth_text)
        stale = ""
        if self.fluoro.has_image and self._shot_key != self._needle_key():
            stale = ("The C-arm or the needle has moved since this shot: take a shot to see "
                     "the current view.")
        self.fluoro.set_stale(stale)
        expert = None
        if st.ended:
            ref = s.setup.reference
            expert = (np.asarray(ref["entry_lps"], float), np.asarray(ref["target_lps"], float))
        self._set_axial_marks(st, expert)

    def _show_pose(self, setup, st) -> None:
        pose = setup.pose(st.table_deg)
        r, a = st.table_deg
        self._syncing = True
        try:
            self.rot_slider.setValue(int(round(r * SLIDER_STEPS_PER_DEG)))
            self.ang_slider.setValue(int(round(a * SLIDER_STEPS_PER_DEG)))
            self.rot_spin.setValue(r)
            self.ang_spin.setValue(a)
        finally:
            self._syncing = False
        limit = "  (the C-arm is at its limit)" if st.clamped else ""
        self.angle_label.setText(
            f"Table: rotation {r:+.1f}\u00b0, angulation {a:+.1f}\u00b0{limit}\n"
            f"{pose.dicom_text} (patient-relative, {setup.patient_position})")
        self.sentence_label.setText(pose.text[0].upper() + pose.text[1:])
        self.dose_label.setText(
            f"Shots {st.shots}   fluoro time {st.fluoro_s:.1f} s   DAP proxy "
            f"{st.dap_cm2s:.0f} cm\u00b2\u00b7s")

    def _phase_text(self, setup, st) -> str:
        lines = []
        for i, p in enumerate(setup.phases):
            if p.name in st.declared:
                lines.append(f"\u2713 {p.label}: declared")
            elif i == st.phase_index:
                lines.append(f"\u25b6 now: reach the {p.label}, take a shot to check, declare it")
            else:
                lines.append(f"\u2022 then: the {p.label}")
        if st.phase_index >= len(setup.phases):
            lines.append("Task 1 done: pick the needle's entry and target on the axial view.")
        return "\n".join(lines)

    def _show_needle(self, setup, st) -> None:
        if st.entry_lps is None:
            self.needle_label.setText("Needle not placed yet.")
            return
        txt = (f"Needle {setup.needle_length_mm:.0f} mm: {st.depth_mm:.1f} mm inserted, "
               f"{setup.needle_length_mm - st.depth_mm:.1f} mm outside")
        if st.corrections:
            txt += f"; {st.corrections} correction(s)"
        self.needle_label.setText(txt)

    def _set_axial_marks(self, st, expert) -> None:
        needle = None
        if st.entry_lps is not None and st.depth_mm > 0.0:
            needle = (st.entry_lps.copy(), st.tip_lps.copy())
        entry = self.entry_pick if self.entry_pick is not None else st.entry_lps
        target = self.target_pick if self.target_pick is not None else st.aim_lps
        self.axial.set_marks(entry, target, needle, expert)

    def _refresh_picks(self) -> None:
        parts = []
        for name, p in (("Entry", self.entry_pick), ("Target", self.target_pick)):
            parts.append(f"{name}: {_lps_words(p) if p is not None else 'not picked'}")
        self.picks_label.setText("\n".join(parts))

    # --- errors -----------------------------------------------------------------------------
    def report_error(self, exc: BaseException, doing: str) -> None:
        """A dialog that says what went wrong and what to do; the window goes on."""
        from fluoroplan.rehearsal.session import NeedleInBone, RehearsalError

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
            log.error("Unexpected error while %s", doing, exc_info=exc)
            short = str(exc).splitlines()[0][:200] if str(exc) else ""
            title = "Unexpected error"
            text = (f"Unexpected error while {doing} ({type(exc).__name__}"
                    f"{': ' + short if short else ''}). The attempt goes on; the details were "
                    "written to the log.")
        self.statusBar().showMessage(text.splitlines()[0], 10000)
        emit(self.error_reported, text)
        if self.interactive:
            QMessageBox.warning(self, title, text)
        else:
            log.error("%s: %s", title, text)

    # --- files ------------------------------------------------------------------------------
    def save_attempt(self, path) -> Path:
        """Save the current attempt (ended or not) as ``fluoroplan.rehearsal/1`` JSON."""
        if self.session is None:
            raise FluoroplanError("there is no attempt to save yet")
        path = Path(path)
        self.session.save(path)
        self.statusBar().showMessage(f"Attempt saved to {path}", 8000)
        return path

    def _save_dialog(self) -> None:
        s = self.session
        if s is None:
            return
        stem = f"rehearsal-{(s.trainee or 'trainee').replace(' ', '_')}-" \
               f"{s.target.ref}-{s.started[:16].replace(':', '')}.json"
        name, _ = QFileDialog.getSaveFileName(self, "Save attempt", stem,
                                              "Rehearsal attempts (*.json)")
        if name:
            try:
                self.save_attempt(name)
            except (FluoroplanError, OSError) as exc:
                self.report_error(exc, "saving the attempt")

    def _open_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Open an attempt to replay", "",
                                              "Rehearsal attempts (*.json)")
        if name:
            self.open_attempt(name)

    def export_summary(self, pdf_path, attempts: list[dict] | None = None) -> Path | None:
        """Write the summary sheet of ``attempts`` (default: those ended in this window)."""
        from fluoroplan.rehearsal.summary import write_summary_pdf

        attempts = list(self.finished_attempts if attempts is None else attempts)
        if not attempts:
            self.report_error(FluoroplanError(
                "no attempt to summarise: end an attempt here or choose saved attempt files"),
                "exporting the summary")
            return None
        try:
            out = write_summary_pdf(attempts, pdf_path)
        except (FluoroplanError, OSError) as exc:
            self.report_error(exc, "exporting the summary")
            return None
        self.statusBar().showMessage(f"Summary of {len(attempts)} attempt(s) saved to {out}",
                                     8000)
        return out

    def _summary_dialog(self) -> None:
        from fluoroplan.rehearsal.session import load_attempt

        names, _ = QFileDialog.getOpenFileNames(
            self, "Attempts to add to the summary (cancel: only those ended here)", "",
            "Rehearsal attempts (*.json)")
        attempts = list(self.finished_attempts)
        try:
            attempts += [load_attempt(n) for n in names]
        except (FluoroplanError, OSError) as exc:
            self.report_error(exc, "reading the attempts")
            return
        if not attempts:
            self.export_summary("", [])
            return
        out, _ = QFileDialog.getSaveFileName(self, "Save the summary sheet",
                                             "rehearsal-summary.pdf", "PDF (*.pdf)")
        if out:
            self.export_summary(out, attempts)

    # --- replay -----------------------------------------------------------------------------
    def open_attempt(self, path_or_json) -> bool:
        """Open a saved attempt and replay it here (step through its states)."""
        from fluoroplan.rehearsal.session import RehearsalSetup, load_attempt, replay

        try:
            attempt = (load_attempt(path_or_json) if isinstance(path_or_json, (str, Path))
                       else path_or_json)
            setup = RehearsalSetup.from_json(attempt)
            states = list(replay(attempt))
        except (FluoroplanError, OSError, KeyError, ValueError) as exc:
            if isinstance(exc, (KeyError, ValueError)):
                exc = FluoroplanError(f"this file is not a readable rehearsal attempt "
                                      f"({type(exc).__name__}: {exc})")
            self.report_error(exc, "opening the attempt")
            return False
        if not states:
            self.report_error(FluoroplanError("the attempt has no events to replay"),
                              "opening the attempt")
            return False
        want = attempt.get("case", {}).get("fingerprint")
        have = self.volume.fingerprint() if hasattr(self.volume, "fingerprint") else None
        same_ct = not (want and have and want != have)
        self.set_pick_mode(None)
        self.replay_data = {"attempt": attempt, "setup": setup, "states": states,
                            "same_ct": same_ct, "images": {}, "index": 0}
        self.replay_bar.setVisible(True)
        self.panel.setEnabled(False)
        for act in (*self.carm_actions, *self.needle_actions):
            act.setEnabled(False)
        self.replay_slider.blockSignals(True)
        self.replay_slider.setRange(0, len(states) - 1)
        self.replay_slider.setValue(0)
        self.replay_slider.blockSignals(False)
        who = attempt.get("trainee") or "(unnamed)"
        note = "" if same_ct else " (made on another CT: the shots cannot be re-rendered)"
        self.statusBar().showMessage(f"Replaying the attempt of {who}{note}")
        self.replay_step(0)
        return True

    def replay_step(self, index: int) -> None:
        rd = self.replay_data
        if rd is None:
            return
        index = int(min(max(index, 0), len(rd["states"]) - 1))
        rd["index"] = index
        if self.replay_slider.value() != index:
            self.replay_slider.blockSignals(True)
            self.replay_slider.setValue(index)
            self.replay_slider.blockSignals(False)
        self._show_replay_state()

    def _replay_button(self, name: str) -> None:
        rd = self.replay_data
        if rd is None:
            return
        last = len(rd["states"]) - 1
        i = {"first": 0, "prev": rd["index"] - 1, "next": rd["index"] + 1, "last": last}[name]
        self.replay_step(i)

    def _show_replay_state(self) -> None:
        from fluoroplan.geometry.carm import pose_from_json
        from fluoroplan.rehearsal.score import Score

        rd = self.replay_data
        i = rd["index"]
        setup, states, events = rd["setup"], rd["states"], rd["attempt"]["events"]
        st = states[i]
        self._show_pose(setup, st)
        self.phase_label.setText(self._phase_text(setup, st))
        self._show_needle(setup, st)
        self.depth_label.setText("")
        ev = events[i]
        self.replay_label.setText(f"step {i + 1}/{len(states)}: {ev['type']} at "
                                  f"{float(ev.get('t_s', 0.0)):.1f} s")
        # the monitor: the last shot taken up to this step, re-rendered from its pose
        j = next((k for k in range(i, -1, -1) if events[k]["type"] == "shot"), None)
        if j is None:
            self.fluoro.set_shot(None)
        elif rd["same_ct"]:
            if j not in rd["images"]:
                shot_state = states[j]
                pose = pose_from_json(events[j]["pose"], setup.patient_position, **setup.chain)
                needles = []
                if shot_state.entry_lps is not None and shot_state.depth_mm >= 0.5:
                    needles = [(shot_state.entry_lps.copy(), shot_state.tip_lps)]
                rd["images"][j] = self._renderer()(pose, setup.isocenter_lps, needles)
            drr = rd["images"][j]
            r, a = states[j].table_deg
            self.fluoro.set_shot(drr.image, drr.projection,
                                 f"Replay, shot {states[j].shots}: rotation {r:+.1f}\u00b0, "
                                 f"angulation {a:+.1f}\u00b0")
        else:
            self.fluoro.set_shot(None)
            self.fluoro.empty_text = "Shot taken (made on another CT: not re-rendered)"
        expert = None
        if st.ended:
            ref = setup.reference
            expert = (np.asarray(ref["entry_lps"], float), np.asarray(ref["target_lps"], float))
        needle = None
        if st.entry_lps is not None and st.depth_mm > 0.0:
            needle = (st.entry_lps.copy(), st.tip_lps.copy())
        self.axial.set_marks(st.entry_lps, st.aim_lps, needle, expert)
        self.picks_label.setText("\n".join(
            f"{name}: {_lps_words(p) if p is not None else 'not placed yet'}"
            for name, p in (("Entry", st.entry_lps), ("Target", st.aim_lps))))
        if st.ended and i == len(states) - 1 and rd["attempt"].get("score"):
            self.status_label.setText(
                f"Replayed attempt scored {float(rd['attempt']['score']['total']):.1f} / 100")
            if self.score_dialog is None or self.score_dialog.score is not rd.get("score"):
                rd["score"] = Score.from_json(rd["attempt"]["score"])
                self.show_score(rd["score"], f"Replay: {rd['attempt'].get('trainee') or ''}")

    def _renderer(self):
        if self.session is not None:
            return self.session.renderer
        if not hasattr(self, "_own_renderer"):
            from fluoroplan.rehearsal.session import DrrRenderer

            self._own_renderer = DrrRenderer(self.volume)
        return self._own_renderer

    @property
    def replay_index(self) -> int | None:
        return None if self.replay_data is None else self.replay_data["index"]

    def leave_replay(self) -> None:
        if self.replay_data is None:
            return
        self.replay_data = None
        self.replay_bar.setVisible(False)
        self.panel.setEnabled(True)
        self.fluoro.empty_text = "No shot yet.\nPress Space or F (Fluoro) to take one."
        self.fluoro.set_shot(None)
        self._shot_key = None
        if self.session is not None and self.session.last_image is not None:
            self.fluoro.set_shot(self.session.last_image.image,
                                 self.session.last_image.projection, "last shot of this attempt")
            self._shot_key = None
        self._refresh_picks()
        self._refresh()

    # --- misc -------------------------------------------------------------------------------
    def _show_help(self) -> None:
        QMessageBox.information(
            self, "Keys",
            "Left/Right: rotation -1/+1 deg (Shift: 5 deg)\n"
            "Down/Up: angulation -1/+1 deg (Shift: 5 deg)\n"
            "Space or F (foot pedal): fluoro shot\n"
            "L: progression (lateral) view of the needle\n"
            "A: advance the needle 2 mm (Shift+A: 5 mm)\n"
            "W: withdraw 2 mm (Shift+W: 5 mm)\n\n"
            "Angles are table-relative, as on the C-arm console; the sentence under them "
            "says where the detector is in room terms.")

    def closeEvent(self, ev) -> None:  # noqa: N802 (Qt)
        if self._task is not None:
            self._task.cancel.cancel()
        self._pool.waitForDone(10000)
        super().closeEvent(ev)


def open_rehearsal(volume, analysis_json: dict, plan_json: dict | None = None,
                   trainee: str = "", interactive: bool = True,
                   labels=None) -> RehearsalWindow:
    """Open (show) the rehearsal window on a loaded volume and its analysis (``labels``: its
    label volume, measured again when not given); the expert plan (``plan_json``, optional)
    stays hidden until an attempt ends. Needs a QApplication."""
    from fluoroplan.app import application

    application()
    win = RehearsalWindow(volume, analysis_json, plan_json, trainee, interactive=interactive,
                          labels=labels)
    win.show()
    return win


def run_rehearsal(volume, analysis_json: dict, plan_json: dict | None = None,
                  trainee: str = "", screenshot: str | None = None,
                  timeout_s: float = 300.0, labels=None) -> int:
    """The application around :func:`open_rehearsal`; returns the exit code.

    With ``screenshot`` (a PNG name) the window opens, takes one fluoro shot once the attempt
    is ready, saves a picture of itself and exits (no dialogs; errors give exit code 2).
    """
    from fluoroplan.app import application, display_problem

    problem = display_problem()
    if problem:
        print(f"fluoroplan: {problem}", file=sys.stderr)
        return 2
    app = application()
    batch = screenshot is not None
    win = open_rehearsal(volume, analysis_json, plan_json, trainee, interactive=not batch,
                         labels=labels)
    if batch:
        from fluoroplan.app.batch import BatchScreenshot

        run = BatchScreenshot(win, screenshot, "the rehearsal window", timeout_s)

        def save() -> None:
            win.take_shot()
            app.processEvents()
            run.save(win.grab().toImage())

        if not win.targets:
            print("fluoroplan: the analysis found no target to rehearse", file=sys.stderr)
            return 2
        win.session_ready.connect(lambda: QTimer.singleShot(200, save))
        win.error_reported.connect(run.fail)
    code = app.exec()
    return run.code if batch else int(code)


__all__ = ["RehearsalWindow", "open_rehearsal", "run_rehearsal"]
