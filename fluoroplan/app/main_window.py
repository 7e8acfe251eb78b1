"""The workstation window: open a CT, view it in three linked reformats and in 3-D.

The window only calls the engine (``fluoroplan.io``, the demo case) on a worker thread and
shows the results; it holds no planning logic.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, QStandardPaths, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QToolBar,
)

from fluoroplan.app.needle_view import NeedleView
from fluoroplan.app.qtcompat import emit
from fluoroplan.app.recovery import StartupRecovery, plan_key, remember_case_path, volume_key
from fluoroplan.app.reformat import display_axes
from fluoroplan.app.series_dialog import SeriesChooser
from fluoroplan.app.slice_view import PRESETS, SliceView, ViewerState
from fluoroplan.app.tasks import Task
from fluoroplan.app.view3d import View3D, extract_surfaces
from fluoroplan.io.errors import Cancelled, FluoroplanError
from fluoroplan.io.plan_json import plan_to_json
from fluoroplan.io.progress import Stage
from fluoroplan.io.volume import CTVolume
from fluoroplan.resources.demo import demo_case

log = logging.getLogger(__name__)

MAX_RECENT = 8
LAYOUT_VERSION = 2  # bump when the panes or docks change: an older saved layout is ignored
SHOW_STRUCTURES_KEY = "view/show_structures"  # the canal, foramina, ilia and ribs drawn
PRESET_KEYS = {"bone": "1", "soft tissue": "2", "metal": "3"}


def demo_root() -> Path:
    """Per-user folder of the demo case (e.g. ``~/.local/share/fluoroplan/demo``)."""
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericDataLocation)
    return Path(base) / "fluoroplan" / "demo"


def _setting_bool(value, default: bool) -> bool:
    """A QSettings boolean (an INI file gives it back as the string "true" / "false")."""
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def _is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _scan_then_load(path: Path, progress, cancel):
    """Worker: scan a folder; load at once when it holds a single series, else let the user
    choose. Returns ``("volume", CTVolume, description)`` or ``("choose", series, default)``."""
    from fluoroplan.io import default_series, load_ct, load_series, scan

    if path.is_file() and _is_nifti(path):
        return "volume", load_ct(path, progress=progress, cancel=cancel), path.name
    found = scan(path, Stage(progress, 0.0, 0.3, cancel), cancel)
    default = default_series(found)  # raises the specific error when nothing is usable
    if len(found) > 1:
        return "choose", found, default
    volume = load_series(default, Stage(progress, 0.3, 1.0, cancel), cancel)
    return "volume", volume, default.describe()


def _load_one(info, progress, cancel):
    from fluoroplan.io import load_series

    return "volume", load_series(info, progress, cancel), info.describe()


def _demo(root: Path, progress, cancel):
    dicom = demo_case(root, progress=Stage(progress, 0.0, 0.6, cancel))
    kind, volume, text = _scan_then_load(dicom, Stage(progress, 0.6, 1.0, cancel), cancel)
    return kind, volume, f"demo case: {text}", str(dicom)


class MainWindow(QMainWindow):
    """The fluoroplan workstation.

    Signals: ``volume_loaded(CTVolume)``; ``ready()`` once the reformats and the 3-D surfaces
    of the loaded volume are shown; ``error_reported(str)`` for every error shown to the user.

    When first shown (``offer_recoveries``, by default when ``interactive``) it offers the
    plans a previous session left unsaved (:meth:`offer_recoveries`).
    """

    volume_loaded = Signal(object)
    ready = Signal()
    error_reported = Signal(str)

    def __init__(self, settings: QSettings | None = None, interactive: bool = True,
                 offer_recoveries: bool | None = None):
        super().__init__()
        self.setObjectName("fluoroplan_main")
        self.setWindowTitle("fluoroplan")
        self.settings = settings if settings is not None else QSettings()
        self.interactive = interactive
        self.demo_root = demo_root()
        self.state = ViewerState(self)
        self.volume: CTVolume | None = None
        self.source: str = ""
        self.loaded_message = ""
        self.is_ready = False
        self.series_chooser: SeriesChooser | None = None
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._task: Task | None = None
        self._surface_task: Task | None = None
        self._pending_path: str | None = None
        self._restore_key: str | None = None  # series whose recovered plan is being opened
        self._offer_at_start = interactive if offer_recoveries is None else offer_recoveries
        self.startup_recovery: StartupRecovery | None = None
        self.active_view = "axial"

        self._build_views()
        self._build_actions()
        self._build_status_bar()
        from fluoroplan.app.planning import PlanningController

        self.planning = PlanningController(self)
        self._install_structures()
        self.rehearsal_windows: list = []  # open rehearsal windows (kept alive here)
        self.planning.doc.subscribe(self._on_plan_doc)
        self.setAcceptDrops(True)
        self.state.window_changed.connect(self._sync_preset_actions)
        self._restore_layout()

    # --- construction -----------------------------------------------------------------------
    def _build_views(self) -> None:
        self.views = {name: SliceView(name, self.state) for name in ("axial", "sagittal", "coronal")}
        self.view3d = View3D()
        self.needle_views = {k: NeedleView(k, self.state) for k in ("along", "across")}
        top = QSplitter(Qt.Orientation.Horizontal)
        top.setObjectName("split_top")
        top.addWidget(self.views["axial"])
        top.addWidget(self.views["sagittal"])
        top.addWidget(self.views["coronal"])
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.setObjectName("split_bottom")
        bottom.addWidget(self.view3d)
        bottom.addWidget(self.needle_views["along"])
        bottom.addWidget(self.needle_views["across"])
        outer = QSplitter(Qt.Orientation.Vertical)
        outer.setObjectName("split_outer")
        outer.addWidget(top)
        outer.addWidget(bottom)
        for s in (top, bottom, outer):
            s.setChildrenCollapsible(False)
            s.setSizes([1000] * s.count())
        self.splitters = [top, bottom, outer]
        self.setCentralWidget(outer)
        for v in self.views.values():
            v.hovered.connect(self._show_cursor)
            v.activated.connect(self._set_active_view)

    def _build_actions(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self.file_menu = file_menu
        self.act_open = QAction("&Open folder\u2026", self)
        self.act_open.setShortcut(QKeySequence.StandardKey.Open)
        self.act_open.setStatusTip("Open a folder of DICOM images (or a NIfTI file)")
        self.act_open.triggered.connect(self.choose_folder)
        file_menu.addAction(self.act_open)
        self.act_open_file = QAction("Open &file\u2026", self)
        self.act_open_file.setShortcut(QKeySequence("Ctrl+Alt+O"))
        self.act_open_file.setStatusTip("Open a CT file: a NIfTI volume, an Enhanced CT file, or "
                                        "one image of a DICOM series (its whole series opens)")
        self.act_open_file.triggered.connect(self.choose_file)
        file_menu.addAction(self.act_open_file)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self.act_demo = QAction("Open &demo case", self)
        self.act_demo.setStatusTip("Synthetic prone instrumented spine CT (written once per user)")
        self.act_demo.triggered.connect(self.open_demo)
        file_menu.addAction(self.act_demo)
        file_menu.addSeparator()
        self.act_screenshot = QAction("Save &screenshot\u2026", self)
        self.act_screenshot.triggered.connect(self._save_screenshot_dialog)
        file_menu.addAction(self.act_screenshot)
        file_menu.addSeparator()
        self.act_quit = QAction("&Quit", self)
        self.act_quit.setShortcut(QKeySequence("Ctrl+Q"))
        self.act_quit.triggered.connect(self.close)
        file_menu.addAction(self.act_quit)

        view_menu = menu.addMenu("&View")
        self.view_menu = view_menu
        self.preset_group = QActionGroup(self)
        self.preset_actions: dict[str, QAction] = {}
        toolbar = QToolBar("Main", self)
        toolbar.setObjectName("toolbar_main")
        toolbar.addAction(self.act_open)
        toolbar.addAction(self.act_demo)
        toolbar.addSeparator()
        toolbar.addWidget(QLabel(" Window: "))
        for name, (w, lv) in PRESETS.items():
            act = QAction(name.capitalize(), self)
            act.setCheckable(True)
            act.setShortcut(QKeySequence(PRESET_KEYS[name]))
            act.setToolTip(f"{name.capitalize()} window W {w:.0f} / L {lv:.0f}  ({PRESET_KEYS[name]})")
            act.triggered.connect(lambda _=False, n=name: self.apply_preset(n))
            self.preset_group.addAction(act)
            self.preset_actions[name] = act
            toolbar.addAction(act)
            view_menu.addAction(act)
        self.preset_group.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
        view_menu.addSeparator()
        self.act_structures = QAction("Show &canal and bones", self)
        self.act_structures.setCheckable(True)
        self.act_structures.setChecked(_setting_bool(self.settings.value(SHOW_STRUCTURES_KEY), True))
        self.act_structures.setShortcut(QKeySequence("Ctrl+Shift+B"))
        self.act_structures.setToolTip(
            "Draw what the checks are measured against on the reformats: the spinal canal's "
            "lumen, the neural foramina, the ilia and the ribs found by the analysis "
            "(Ctrl+Shift+B)")
        self.act_structures.setStatusTip("Show or hide the segmented canal, foramina, ilia and ribs")
        self.act_structures.toggled.connect(self.show_structures)
        view_menu.addAction(self.act_structures)
        self.act_reset = QAction("&Reset zoom and pan", self)
        self.act_reset.setShortcut(QKeySequence("Ctrl+0"))
        self.act_reset.triggered.connect(self.reset_views)
        view_menu.addAction(self.act_reset)
        toolbar.addSeparator()
        toolbar.addAction(self.act_structures)
        toolbar.addAction(self.act_reset)
        self.addToolBar(toolbar)
        self.toolbar = toolbar

        training = menu.addMenu("&Training")
        self.training_menu = training
        self.act_rehearse = QAction("&Rehearse this case\u2026", self)
        self.act_rehearse.setStatusTip(
            "Open the fluoroscopy simulator on this CT and its analysis (the plan, if any, is "
            "the expert reference)")
        self.act_rehearse.triggered.connect(self.rehearse)
        self.act_rehearse.setEnabled(False)  # until the analysis is done
        training.addAction(self.act_rehearse)

        help_menu = menu.addMenu("&Help")
        act_help = QAction("Mouse and &keys", self)
        act_help.triggered.connect(self._show_help)
        help_menu.addAction(act_help)
        self._sync_preset_actions()

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.cursor_label = QLabel("")
        self.cursor_label.setObjectName("cursor_label")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setMaximumWidth(self.fontMetrics().averageCharWidth() * 40)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancel_button")
        self.cancel_button.clicked.connect(self.cancel_loading)
        sb.addPermanentWidget(self.cursor_label)
        sb.addPermanentWidget(self.progress_bar)
        sb.addPermanentWidget(self.cancel_button)
        self._set_busy(False)

    # --- layout memory ----------------------------------------------------------------------
    def _restore_layout(self) -> None:
        s = self.settings
        geometry = s.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            screen = self.screen().availableGeometry()
            self.resize(int(screen.width() * 0.85), int(screen.height() * 0.85))
        state = s.value(f"window/state{LAYOUT_VERSION}")
        if state is not None:
            self.restoreState(state, LAYOUT_VERSION)
        for sp in self.splitters:
            value = s.value(f"window/{sp.objectName()}{LAYOUT_VERSION}")
            if value is not None:
                sp.restoreState(value)

    def _save_layout(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue(f"window/state{LAYOUT_VERSION}", self.saveState(LAYOUT_VERSION))
        for sp in self.splitters:
            s.setValue(f"window/{sp.objectName()}{LAYOUT_VERSION}", sp.saveState())
        s.sync()

    # --- opening ----------------------------------------------------------------------------
    def start_folder(self) -> str:
        """Where the open dialogs start: the folder of the case last opened (the current one),
        else the home folder (nothing opened yet)."""
        for recent in self.recent_folders():
            p = Path(recent)
            folder = p.parent if p.is_file() or _is_nifti(p) else p
            if folder.is_dir():
                return str(folder)
        return str(Path.home())

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a CT folder", self.start_folder())
        if folder:
            self.open_folder(folder)

    def choose_file(self) -> None:
        name, _ = QFileDialog.getOpenFileName(
            self, "Open a CT file", self.start_folder(),
            "CT files (*.nii *.nii.gz *.dcm *.DCM *.ima *.IMA *);;NIfTI (*.nii *.nii.gz);;"
            "DICOM (*.dcm *.DCM *.ima *.IMA *);;All files (*)")
        if name:
            self.open_file(name)

    def open_file(self, path: str | os.PathLike) -> None:
        """Open one file: a NIfTI volume, an Enhanced (multi-frame) CT, or one image of a
        DICOM series, whose series is then opened from its folder (that series, without
        asking, when the folder holds several)."""
        path = Path(path)
        if _is_nifti(path):
            self.open_folder(path)
            return
        try:
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True)
            frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
        except (OSError, ValueError, pydicom.errors.InvalidDicomError) as exc:
            self.report_error(FluoroplanError(
                f"{path.name} is neither a NIfTI volume (.nii, .nii.gz) nor a DICOM file "
                f"({exc}). Choose a CT file, or open its folder with File > Open folder."),
                "opening a file")
            return
        if frames > 1:  # an Enhanced CT: the file is the whole series
            self.open_folder(path)
            return
        self._restore_key = uid or None
        self.open_folder(path.parent)

    def open_folder(self, path: str | os.PathLike) -> None:
        """Scan ``path`` and load its CT (asks which series when there are several)."""
        path = Path(path)
        self._pending_path = str(path)
        self._start(Task("open", lambda p, c: _scan_then_load(path, p, c)), f"Opening {path}")

    def open_demo(self) -> None:
        """Open the demo case, writing it first (once) under :attr:`demo_root`."""
        root = Path(self.demo_root)
        self._pending_path = None
        self._start(Task("demo", lambda p, c: _demo(root, p, c)), "Opening the demo case")

    def open_series(self, info) -> None:
        self._start(Task("load", lambda p, c: _load_one(info, p, c)), f"Loading {info.describe()}")

    # --- plans a previous session left unsaved ------------------------------------------------
    def showEvent(self, ev) -> None:  # noqa: N802
        super().showEvent(ev)
        if self._offer_at_start:
            self._offer_at_start = False
            QTimer.singleShot(0, self.offer_recoveries)

    def offer_recoveries(self) -> StartupRecovery | None:
        """Ask about each plan autosaved in the recovery folder (open its case and restore it,
        keep it for later, or discard it). Returns the offer, or None when there is nothing."""
        from fluoroplan.io.planfile import find_recoveries

        if self.startup_recovery is not None and not self.startup_recovery.done:
            return self.startup_recovery
        try:
            found = [r for r in find_recoveries() if r.plan.trajectories]
        except OSError as exc:
            log.warning("Could not look for autosaved plans: %s", exc)
            return None
        if not found:
            return None
        self.startup_recovery = StartupRecovery(self, found)
        self.startup_recovery.start()
        return self.startup_recovery

    def open_recovered(self, rec, path: str | os.PathLike) -> None:
        """Open the CT at ``path`` (its series, if the folder holds several), analyse it and
        restore the recovered plan ``rec`` without asking again."""
        key = plan_key(rec.plan)
        self.planning.pending_recovery = key
        self._restore_key = key
        self.open_folder(path)

    def _start(self, task: Task, message: str) -> None:
        if self._task is not None:
            self._task.cancel.cancel()
        self._task = task
        task.signals.progress.connect(self._on_progress)
        task.signals.succeeded.connect(self._on_loaded)
        task.signals.failed.connect(self._on_failed)
        self._set_busy(True, message)
        task.start(self._pool)

    def cancel_loading(self) -> None:
        for task in (self._task, self._surface_task):
            if task is not None:
                task.cancel.cancel()

    def view3d_axes(self) -> np.ndarray:
        """Screen-right of the 3-D view's initial camera (as the coronal reformat), LPS."""
        position = self.volume.patient_position if self.volume is not None else "HFS"
        return display_axes(position)["coronal"].right_lps

    def _on_progress(self, task: Task, fraction: float, message: str) -> None:
        if task is self._task or task is self._surface_task:
            self.progress_bar.setValue(int(round(fraction * 1000)))
            self.progress_bar.setFormat(f"{fraction * 100:.0f} %")
            self.statusBar().showMessage(message)

    def _on_failed(self, task: Task, exc: BaseException) -> None:
        if task is not self._task:
            return
        self._task = None
        self._set_busy(False)
        self._restore_key = self.planning.pending_recovery = None
        self.report_error(exc, "opening the CT")

    def _on_loaded(self, task: Task, result) -> None:
        if task is not self._task:
            return
        self._task = None
        self._set_busy(False)
        kind = result[0]
        if kind == "choose":
            _, found, default = result
            wanted = [i for i in found if self._restore_key is not None and i.usable
                      and i.series_instance_uid == self._restore_key]
            if wanted:  # restoring a plan, or a file the user opened: its series, unasked
                self.open_series(wanted[0])
                return
            self._choose_series(found, default)
            return
        _, volume, description, *source = result
        self._restore_key = None
        if self._pending_path is not None:
            self.add_recent(self._pending_path)
        where = self._pending_path if self._pending_path is not None else (source or [None])[0]
        if where is not None:
            remember_case_path(self.settings, volume_key(volume), str(Path(where).resolve()))
        self.set_volume(volume, description)

    def _choose_series(self, found, default) -> None:
        folder = self._pending_path or "the folder"
        dlg = SeriesChooser(found, default, folder, self)
        self.series_chooser = dlg

        def finished(code: int) -> None:
            self.series_chooser = None
            info = dlg.selected()
            dlg.deleteLater()
            if code == SeriesChooser.DialogCode.Accepted and info is not None:
                self.open_series(info)
            else:
                self._restore_key = self.planning.pending_recovery = None
                self.statusBar().showMessage("No series opened", 5000)

        dlg.finished.connect(finished)
        dlg.open()

    def set_volume(self, volume: CTVolume, description: str = "") -> None:
        """Show a loaded volume (reformats now, 3-D surfaces when computed)."""
        if self._surface_task is not None:
            self._surface_task.cancel.cancel()
            self._surface_task = None
        self.is_ready = False
        self.volume = volume
        self.source = description
        self.view3d.clear()
        self.state.set_volume(volume)
        ni, nj, nk = volume.shape_ijk
        sx, sy, sz = volume.spacing_mm
        desc = volume.identifiers.get("series_description") or description or "CT"
        self.setWindowTitle(f"fluoroplan \u2014 {desc} ({volume.patient_position})")
        notes = "; ".join(volume.notes)
        self.loaded_message = (
            f"Loaded {description or desc}: {ni}x{nj}x{nk} voxels of {sx:.2f}x{sy:.2f}x{sz:.2f} mm, "
            f"{volume.patient_position}" + (f". {notes}" if notes else "")
        )
        self.statusBar().showMessage(self.loaded_message)
        self.views[self.active_view].setFocus()
        emit(self.volume_loaded, volume)
        task = Task("surfaces", lambda p, c: extract_surfaces(volume, p, c))
        self._surface_task = task
        task.signals.progress.connect(self._on_progress)
        task.signals.succeeded.connect(self._on_surfaces)
        task.signals.failed.connect(self._on_surfaces_failed)
        self._set_busy(True, "Preparing the 3-D view")
        task.start(self._pool)

    def _on_surfaces(self, task: Task, surfaces) -> None:
        if task is not self._surface_task:
            return
        self._surface_task = None
        self._set_busy(False)
        self.view3d.set_surfaces(surfaces)
        self.statusBar().showMessage(self.loaded_message)
        self.is_ready = True
        emit(self.ready)

    def _on_surfaces_failed(self, task: Task, exc: BaseException) -> None:
        if task is not self._surface_task:
            return
        self._surface_task = None
        self._set_busy(False)
        if isinstance(exc, Cancelled):
            self.statusBar().showMessage("3-D surfaces not computed (cancelled)", 8000)
            return
        self.report_error(exc, "preparing the 3-D view")

    def _set_busy(self, busy: bool, message: str = "") -> None:
        self.progress_bar.setVisible(busy)
        self.cancel_button.setVisible(busy)
        if busy:
            self.progress_bar.setValue(0)
            self.progress_bar.setFormat("0 %")
            self.statusBar().showMessage(message)

    @property
    def busy(self) -> bool:
        return self._task is not None or self._surface_task is not None

    # --- errors -----------------------------------------------------------------------------
    def report_error(self, exc: BaseException, doing: str) -> None:
        """Tell the user what went wrong, in a dialog; never a traceback."""
        if isinstance(exc, Cancelled):
            title, text, box = "Cancelled", str(exc), QMessageBox.information
        elif isinstance(exc, FluoroplanError):
            title, text, box = "Cannot open the CT", str(exc), QMessageBox.warning
        elif isinstance(exc, OSError):
            what = exc.filename or ""
            text = f"Could not read {what}: {exc.strerror or exc}. Check that the folder is " \
                   "readable (permissions, a disconnected drive) and try again."
            title, box = "Cannot read the files", QMessageBox.warning
        else:
            log.error("Unexpected error while %s", doing, exc_info=exc)
            short = str(exc).splitlines()[0][:200] if str(exc) else ""
            text = (f"Unexpected error while {doing} ({type(exc).__name__}"
                    f"{': ' + short if short else ''}). The details were written to the log; "
                    "please report them.")
            title, box = "Unexpected error", QMessageBox.critical
        self.statusBar().showMessage(text.splitlines()[0], 10000)
        emit(self.error_reported, text)
        if self.interactive:
            box(self, title, text)
        else:
            log.error("%s: %s", title, text)

    # --- recent folders ---------------------------------------------------------------------
    def recent_folders(self) -> list[str]:
        value = self.settings.value("recent_folders", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def add_recent(self, path: str) -> None:
        path = str(Path(path).resolve())
        items = [p for p in self.recent_folders() if p != path]
        self.settings.setValue("recent_folders", [path, *items][:MAX_RECENT])

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        items = self.recent_folders()
        if not items:
            act = self.recent_menu.addAction("(none yet)")
            act.setEnabled(False)
            return
        for n, path in enumerate(items):
            act = self.recent_menu.addAction(f"&{n + 1} {path}")
            act.triggered.connect(lambda _=False, p=path: self.open_folder(p))
        self.recent_menu.addSeparator()
        clear = self.recent_menu.addAction("Clear list")
        clear.triggered.connect(lambda: self.settings.setValue("recent_folders", []))

    # --- views ------------------------------------------------------------------------------
    def apply_preset(self, name: str) -> None:
        w, lv = PRESETS[name]
        self.state.set_window(w, lv)

    def _sync_preset_actions(self) -> None:
        current = (self.state.window_width, self.state.window_level)
        for name, act in self.preset_actions.items():
            act.setChecked(PRESETS[name] == current)

    def reset_views(self) -> None:
        for v in self.views.values():
            v.reset_view()
        if self.view3d.surfaces is not None:
            self.view3d.reset_camera()
            self.view3d.render()

    def _install_structures(self) -> None:
        """The segmented structures under the trajectories on every reformat."""
        from fluoroplan.app.overlays import StructureOverlay

        def labels():
            analysis = self.planning.doc.analysis
            return None if analysis is None else analysis.anatomy.labels

        self.structure_overlay = StructureOverlay(labels)
        self.structure_overlay.enabled = self.act_structures.isChecked()
        for v in self.views.values():
            v.overlays.insert(0, self.structure_overlay)

        def on_doc(event: str, _detail) -> None:
            if event == "analysis":
                self.structure_overlay.clear()
                for v in self.views.values():
                    v.update()

        self.planning.doc.subscribe(on_doc)

    def show_structures(self, on: bool) -> None:
        """Draw (or not) the canal, foramina, ilia and ribs; remembered for the next session."""
        on = bool(on)
        if self.act_structures.isChecked() != on:
            self.act_structures.setChecked(on)  # toggled() comes back here
            return
        self.settings.setValue(SHOW_STRUCTURES_KEY, on)
        overlay = getattr(self, "structure_overlay", None)
        if overlay is not None:
            overlay.enabled = on
        for v in self.views.values():
            v.update()

    def _set_active_view(self, name: str) -> None:
        self.active_view = name

    def _show_cursor(self, lps) -> None:
        if lps is None or self.volume is None:
            self.cursor_label.setText("")
            return
        x, y, z = (float(v) for v in lps)
        hu = self.state.hu_at(lps)
        sides = f"{'L' if x >= 0 else 'R'} {abs(x):.1f}, {'P' if y >= 0 else 'A'} {abs(y):.1f}, " \
                f"{'H' if z >= 0 else 'F'} {abs(z):.1f}"
        self.cursor_label.setText(f"LPS ({x:.1f}, {y:.1f}, {z:.1f}) mm  [{sides}]   HU {hu}")

    def cursor_lps_hu(self) -> tuple[np.ndarray, int] | None:
        """The position and HU shown in the status bar (parsed back; for tests and scripts)."""
        import re

        m = re.search(r"LPS \((-?[\d.]+), (-?[\d.]+), (-?[\d.]+)\) mm.*HU (-?\d+)",
                      self.cursor_label.text())
        if not m:
            return None
        return np.array([float(m.group(i)) for i in (1, 2, 3)]), int(m.group(4))

    def _show_help(self) -> None:
        QMessageBox.information(
            self,
            "Mouse and keys",
            "Click or drag: set the crosshair (all views follow)\n"
            "Mouse wheel, Up/Down, PageUp/PageDown: scroll slices\n"
            "Ctrl+wheel or right-drag: zoom;  middle-drag: pan;  Ctrl+0: reset\n"
            "Shift+left-drag: window (left/right) and level (up/down)\n"
            "1 / 2 / 3: bone / soft tissue / metal window\n"
            "Ctrl+Shift+B: show or hide the canal (magenta), foramina, ilia and ribs\n"
            "Ctrl+Shift+L: biplane suite (the lateral plane's progression view beside)\n"
            "Ctrl+O: open a folder;  Ctrl+Q: quit\n\n"
            "Planning: select a target (Targets), Ctrl+P propose, Ctrl+Enter accept;\n"
            "T place a trajectory (click entry, then target); drag an end to move it;\n"
            "Delete remove;  Ctrl+Z / Ctrl+Shift+Z undo / redo;  Ctrl+S save;  Ctrl+E PDF\n"
            "C-arm: B bull's-eye, W working, P progression; Alt+arrows move the C-arm\n"
            "(Alt+Shift: 5 deg);  right-click a vertebra: this vertebra is ...\n\n"
            "The letters on the view edges give the patient's directions: R/L right/left, "
            "A/P anterior/posterior, H/F head/feet.",
        )

    # --- training -----------------------------------------------------------------------------
    def _on_plan_doc(self, event: str, _detail) -> None:
        if event == "analysis":
            self.act_rehearse.setEnabled(self.planning.doc.analysis_json is not None)

    def rehearsal_plan_json(self) -> dict | None:
        """The plan being made, as the rehearsal's expert reference: for each of its targets the
        selected trajectory (else the plan's first one for that target) is marked
        ``"reference": true``. None when the plan has no trajectory."""
        from fluoroplan.rehearsal.session import mark_reference

        doc = self.planning.doc
        if doc.plan is None or not doc.plan.trajectories:
            return None
        chosen: dict[tuple[str, str], str] = {}
        for t in doc.plan.trajectories:
            chosen.setdefault((t.target.kind, t.target.ref), t.id)
        selected = doc.selected
        if selected is not None:
            chosen[(selected.target.kind, selected.target.ref)] = selected.id
        plan_json = plan_to_json(doc.plan)
        for traj_id in chosen.values():
            plan_json = mark_reference(plan_json, traj_id)
        return plan_json

    def rehearse(self):
        """Open the rehearsal window on the loaded CT and its analysis (the current plan is the
        expert reference). Returns the window, or None before the analysis is done."""
        from fluoroplan.app.rehearsal_window import RehearsalWindow

        doc = self.planning.doc
        if doc.volume is None or doc.analysis_json is None:
            self.statusBar().showMessage("Wait for the analysis before rehearsing this case", 6000)
            return None
        for old in [w for w in self.rehearsal_windows if not w.isVisible()]:
            self.rehearsal_windows.remove(old)  # closed by the trainee: let it go
            old.deleteLater()
        win = RehearsalWindow(doc.volume, doc.analysis_json, self.rehearsal_plan_json(),
                              interactive=self.interactive, settings=self.settings,
                              labels=doc.analysis.anatomy.labels if doc.analysis else None)
        self.rehearsal_windows.append(win)
        win.show()
        return win

    # --- screenshots ------------------------------------------------------------------------
    def _save_screenshot_dialog(self) -> None:
        name, _ = QFileDialog.getSaveFileName(self, "Save screenshot", "fluoroplan.png",
                                              "PNG images (*.png)")
        if name:
            from fluoroplan.app.capture import capture_window

            if not capture_window(self).save(name, "PNG"):
                self.report_error(FluoroplanError(f"Could not write {name}. Choose another "
                                                  "folder or file name."), "saving")

    # --- drag and drop ----------------------------------------------------------------------
    def dragEnterEvent(self, ev) -> None:  # noqa: N802
        md = ev.mimeData()
        if md.hasUrls() and md.urls() and md.urls()[0].isLocalFile():
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:  # noqa: N802
        urls = ev.mimeData().urls()
        if not urls:
            return
        path = Path(urls[0].toLocalFile())
        if path.is_file() and not _is_nifti(path):
            path = path.parent  # a DICOM file: open its folder
        ev.acceptProposedAction()
        self.open_folder(path)

    # --- closing ----------------------------------------------------------------------------
    def closeEvent(self, ev) -> None:  # noqa: N802
        if not self.planning.confirm_close():
            ev.ignore()
            return
        for win in list(self.rehearsal_windows):
            win.close()
        self.cancel_loading()
        self.planning.shutdown()
        self._pool.waitForDone(10000)
        self._save_layout()
        self.view3d.finalize()
        super().closeEvent(ev)
