"""The construction of the rehearsal window: the fluoro monitor and the axial reformat side by
side, the control panel (attempt, C-arm, Task 1 views, Task 2 needle), the menus with their
keyboard shortcuts and the replay bar."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from fluoroplan.app.rehearsal_window.common import ADVANCE_BIG_MM, ADVANCE_MM, SLIDER_STEPS_PER_DEG
from fluoroplan.app.rehearsal_window.views import FluoroView, PlacementView
from fluoroplan.geometry.conventions import DEFAULT_CARM_LIMITS


class _SpaceToShot(QObject):
    """Event filter of the angle boxes: Space commits the typed angle (the C-arm moves there)
    and takes the shot, as the foot pedal does anywhere else in the window."""

    def __init__(self, parent, shoot):
        super().__init__(parent)
        self._shoot = shoot

    def eventFilter(self, obj, ev) -> bool:  # noqa: N802 (Qt)
        if (ev.type() == QEvent.Type.KeyPress and ev.key() == Qt.Key.Key_Space
                and ev.modifiers() == Qt.KeyboardModifier.NoModifier):
            box = obj if hasattr(obj, "interpretText") else obj.parent()
            box.interpretText()  # the typed value (valueChanged moves the C-arm)
            self._shoot()
            return True
        return False


# lines kept for each label whose text changes during an attempt, so that the buttons under
# it stay where the trainee's hand is (a longer text still shows, and then moves them)
LABEL_LINES = {"status_label": 3, "angle_label": 2, "sentence_label": 2, "dose_label": 1,
               "phase_label": 4, "picks_label": 3, "needle_label": 2, "depth_label": 3}


def keep_lines(label: QLabel, lines: int) -> None:
    """Reserve ``lines`` lines of text for a label (text at the top) whatever it shows."""
    label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
    label.setMinimumHeight(label.fontMetrics().lineSpacing() * lines
                           + 2 * label.margin() + 2)


class PanelMixin:
    """The widgets, menus and actions of
    :class:`~fluoroplan.app.rehearsal_window.RehearsalWindow`."""

    # --- construction -----------------------------------------------------------------------
    def _build_central(self) -> None:
        self.fluoro = FluoroView()
        self.axial = PlacementView(self.viewer)
        self.axial.picked.connect(self._on_picked)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.setObjectName("rehearsal_split")
        split.addWidget(self.fluoro)
        # a biplane suite's lateral plane (hidden on a monoplane suite)
        self.fluoro_lateral = FluoroView()
        self.fluoro_lateral.setObjectName("fluoro_lateral")
        self.fluoro_lateral.title = "Lateral plane (last image hold)"
        self.fluoro_lateral.empty_text = "No lateral shot yet.\nPress G (Lateral shot)."
        self.fluoro_lateral.hide()
        split.addWidget(self.fluoro_lateral)
        split.addWidget(self.axial)
        split.setChildrenCollapsible(False)
        split.setSizes([1000, 1000, 1000])  # the lateral monitor counts only when shown
        self.split = split

    def _build_panel(self) -> None:
        self._space_filter = _SpaceToShot(self, lambda: self.take_shot())
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
        self.biplane_check = QCheckBox("Biplane suite (a lateral plane beside the frontal)")
        self.biplane_check.setObjectName("biplane_check")
        self.biplane_check.setToolTip("The next attempt runs on a biplane suite: the lateral "
                                      "plane shoots the vertebra's true lateral (G) while the "
                                      "frontal plane stays where it is")
        self.biplane_check.toggled.connect(self._on_biplane)
        form.addRow(self.biplane_check)
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
        self.lateral_shot_button = QPushButton("Lateral shot (G)")
        self.lateral_shot_button.setObjectName("lateral_shot_button")
        self.lateral_shot_button.setToolTip("Biplane suite: a shot of the lateral plane (the "
                                            "vertebra's true lateral); the frontal plane stays")
        self.lateral_shot_button.clicked.connect(self.take_lateral_shot)
        self.lateral_shot_button.hide()
        row.addWidget(self.lateral_shot_button)
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
        for name, lines in LABEL_LINES.items():
            keep_lines(getattr(self, name), lines)

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
        # Space (the foot pedal) in a box being typed in: take the typed angle, then the shot
        spin.installEventFilter(self._space_filter)
        spin.lineEdit().installEventFilter(self._space_filter)
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
                ("Progression (lateral) view", ["L"], self.go_lateral),
                ("Lateral plane shot (biplane suite)", ["G"], self.take_lateral_shot)):
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
