"""The planning workstation's controller, :class:`PlanningController`: its signals, and the
construction that adds the planning docks, actions and views to a :class:`MainWindow` and
connects them. What it does is in the mixins it is made of (one submodule each)."""

from __future__ import annotations

from PySide6.QtCore import QObject, QThreadPool, QTimer, Signal
from PySide6.QtGui import QUndoStack

from fluoroplan.app.carm_pane import CArmPane
from fluoroplan.app.document import PlanDocument
from fluoroplan.app.overlays import MeasurementOverlay, TrajectoryOverlay, TrajectoryTool
from fluoroplan.app.panels import NotesPanel, PlanPanel, ProposalsPanel, TargetsPanel
from fluoroplan.app.planning.analysis import AnalysisMixin
from fluoroplan.app.planning.autosave import AutosaveMixin
from fluoroplan.app.planning.chrome import ChromeMixin
from fluoroplan.app.planning.editing import EditingMixin
from fluoroplan.app.planning.files import FilesMixin
from fluoroplan.app.planning.labels import LabelsMixin
from fluoroplan.app.planning.measuring import MeasuringMixin
from fluoroplan.app.planning.rechecks import RechecksMixin
from fluoroplan.app.planning.views import ViewsMixin
from fluoroplan.app.tasks import Task

LIVE_DELAY_MS = 60  # 3-D, needle views and C-arm follow a drag after this rest
RECHECK_DELAY_MS = 120


class PlanningController(ChromeMixin, AnalysisMixin, AutosaveMixin, ViewsMixin,
                         EditingMixin, MeasuringMixin, RechecksMixin, LabelsMixin, FilesMixin,
                         QObject):
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
        self.preview = None  # the proposal looked at before it is accepted (a Trajectory)
        self.preview_others: list = []  # the other proposals of its target, drawn faint
        self.drag_ms: list[float] = []
        self.analysis_done = False
        self._autosave_warned = False

        self.measuring: str | None = None  # "distance" or "angle" while one is measured
        self._measure_pts: list = []
        self._measure_cursor = None
        self.overlay = TrajectoryOverlay(self)
        self.measure_overlay = MeasurementOverlay(self)
        self.tool = TrajectoryTool(self)
        for v in window.views.values():
            v.overlays.append(self.overlay)
            v.overlays.append(self.measure_overlay)
            v.tool = self.tool
            v.context_requested.connect(self._view_context_menu)
        self.carm = CArmPane(self)
        self.targets_panel = TargetsPanel()
        self.proposals_panel = ProposalsPanel()
        self.plan_panel = PlanPanel()
        self.notes_panel = NotesPanel()
        self.notes: list = []  # planner.notes.Note: the CT's, the analysis' and the plan's
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
        self.proposals_panel.preview_changed.connect(self._preview_changed)
        self.plan_panel.selection_changed.connect(self._plan_row_selected)
        self.notes_panel.note_chosen.connect(self._show_note_subject)
