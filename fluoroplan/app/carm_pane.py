"""The virtual C-arm: a simulated fluoroscopy image (DRR) at any C-arm pose.

The sliders and keys move the C-arm as its own control does, in table terms (rotation and
angulation; for a prone patient 0/0 is a straight PA). Every pose is shown with the sentence
in room terms that names the patient's side, and with the DICOM patient-relative pair. While
a slider moves a 256-pixel preview is rendered; once it rests (or is released) a 512-pixel
image, with the check whether metal hides the target pedicle or the needle path. Rendering runs
on a worker thread; a request made while one renders replaces any older waiting request.
"""

from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from fluoroplan.app.qtcompat import emit
from fluoroplan.app.tasks import Task
from fluoroplan.geometry.carm import CArmPose, check_reachable, signed
from fluoroplan.geometry.conventions import LATERAL_PLANE_LIMITS

PREVIEW_PX = 256
FULL_PX = 512
FULL_DELAY_MS = 250


def _render(att, pose: CArmPose, iso, size: int, needles, screws, visibility_fn, progress,
            cancel, shown_px: float = 512.0, lateral: CArmPose | None = None):
    from fluoroplan.geometry.drr import render_drr

    t0 = time.perf_counter()
    # the marks (letters, scale, needles, screws) are the ones every fluoroscopy image carries;
    # letters about 14 screen pixels high however small the pane shows the image
    kw = dict(trajectories=needles or None, screws=screws,
              scale_at_lps=needles[0].tip_lps if needles else None,
              mark_scale=max(1.0, 0.7 * 512.0 / max(shown_px, 1.0)))
    drr = render_drr(att, pose, iso, size=size, **kw)
    vis = visibility_fn(pose) if visibility_fn is not None else None
    # the biplane suite's lateral plane, at its own pose (rendered when it changed)
    lat = None if lateral is None else render_drr(att, lateral, iso, size=size, **kw)
    return drr, vis, (time.perf_counter() - t0) * 1000.0, lat


class DrrImage(QWidget):
    """The DRR with its marks (:mod:`fluoroplan.geometry.fluoro_marks`), scaled to fit and
    centred."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("drr_image")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(120, 120)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.drr = None
        self.image: QImage | None = None
        self.message = "The simulated fluoroscopy appears here once a CT is open"

    def set_drr(self, drr) -> None:
        self.drr = drr
        img = np.ascontiguousarray(drr.image)
        h, w = img.shape[:2]
        if img.ndim == 2:
            self.image = QImage(img.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
        else:
            self.image = QImage(img.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        self.update()

    def image_rect(self) -> QRectF:
        h, w = self.drr.image.shape[:2]
        s = min(self.width() / w, self.height() / h)
        return QRectF((self.width() - w * s) / 2, (self.height() - h * s) / 2, w * s, h * s)

    def widget_from_px(self, uv) -> QPointF:
        """Widget position of detector pixel ``(u, v)`` of the shown image."""
        r = self.image_rect()
        h, w = self.drr.image.shape[:2]
        return QPointF(r.left() + (uv[0] + 0.5) * r.width() / w,
                       r.top() + (uv[1] + 0.5) * r.height() / h)

    def widget_from_lps(self, lps) -> QPointF:
        return self.widget_from_px(self.drr.projection.detector_px_from_lps(np.asarray(lps, float)))

    def paintEvent(self, ev) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(0, 0, 0))
        if self.image is None:
            p.setPen(QColor("#9aa0a6"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       self.message)
            p.end()
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        p.drawImage(self.image_rect(), self.image)
        p.end()


class CArmPane(QWidget):
    """The virtual C-arm pane (see the module docstring).

    ``controller`` supplies ``drr_context()`` -> (attenuation volume or None, isocentre LPS,
    needles [NeedleMark], screws [ScrewMark], visibility function or None) and
    ``named_pose(name)`` -> (CArmPose, description) for "bullseye", "working_view" and
    "progression" of the selected trajectory (or None).
    Signals: ``rendered(size)`` after each image is shown.
    """

    rendered = Signal(int)

    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.setObjectName("carm_pane")
        self.controller = controller
        self.patient_position = "HFS"
        self.pose = CArmPose(0.0, 0.0, "HFS")
        self.pose_name = ""
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self._running: Task | None = None
        self._waiting: tuple | None = None
        self._shown_key = None
        self.preview_ms: list[float] = []
        self.full_ms: list[float] = []
        self.last_size = 0
        self._full_timer = QTimer(self)
        self._full_timer.setSingleShot(True)
        self._full_timer.setInterval(FULL_DELAY_MS)
        self._full_timer.timeout.connect(self.render_full)
        self._syncing = False
        self.biplane = False
        self.named_view: str | None = None  # the trajectory view the pose is, while it is
        self.lateral_pose: CArmPose | None = None
        self._lateral_key = None
        self._build()

    # --- construction -----------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        images = QHBoxLayout()
        self.view = DrrImage(self)
        images.addWidget(self.view, 1)
        # the biplane suite's lateral plane beside the frontal one (hidden on a monoplane)
        self.lateral = DrrImage(self)
        self.lateral.setObjectName("drr_lateral")
        self.lateral.message = ("The lateral plane shows the selected trajectory's progression "
                                "view")
        self.lateral.hide()
        images.addWidget(self.lateral, 1)
        layout.addLayout(images, 1)
        fm = self.fontMetrics()
        self.angles_label = QLabel("")
        self.angles_label.setObjectName("angles_label")
        self.angles_label.setWordWrap(True)
        self.angles_label.setMinimumHeight(fm.height() * 3)
        self.angles_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.angles_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.angles_label)
        self.lateral_label = QLabel("")
        self.lateral_label.setObjectName("lateral_label")
        self.lateral_label.setWordWrap(True)
        self.lateral_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.lateral_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.lateral_label.hide()
        layout.addWidget(self.lateral_label)
        self.visibility_label = QLabel("")
        self.visibility_label.setObjectName("visibility_label")
        self.visibility_label.setWordWrap(True)
        self.visibility_label.setMinimumHeight(fm.height() * 2)
        self.visibility_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.visibility_label)
        grid = QGridLayout()
        self.rotation = QSlider(Qt.Orientation.Horizontal)
        self.rotation.setRange(-1800, 1800)
        self.angulation = QSlider(Qt.Orientation.Horizontal)
        self.angulation.setRange(-900, 900)
        for row, (name, slider, keys) in enumerate((
                ("Rotation", self.rotation, "Alt+\u2190/\u2192"),
                ("Angulation", self.angulation, "Alt+\u2191/\u2193"))):
            slider.setObjectName(f"slider_{name.lower()}")
            slider.setSingleStep(10)
            slider.setPageStep(50)
            slider.setToolTip(f"C-arm {name.lower()} in table terms ({keys}; with Shift: 5 deg)")
            grid.addWidget(QLabel(name), row, 0)
            grid.addWidget(slider, row, 1)
            slider.valueChanged.connect(self._slider_moved)
            slider.sliderReleased.connect(self.render_full)
        layout.addLayout(grid)
        buttons = QHBoxLayout()
        self.buttons = {}
        for name, text, key in (("bullseye", "Bull's-eye", "B"), ("working_view", "Working", "W"),
                                ("progression", "Progression", "P")):
            b = QPushButton(f"{text} ({key})")
            b.setObjectName(f"button_{name}")
            b.setToolTip(f"Set the C-arm to the {text.lower()} view of the selected trajectory")
            b.clicked.connect(lambda _=False, n=name: self.go_to(n))
            buttons.addWidget(b)
            self.buttons[name] = b
        self.biplane_button = QPushButton("Biplane")
        self.biplane_button.setObjectName("button_biplane")
        self.biplane_button.setCheckable(True)
        self.biplane_button.setToolTip(
            "Biplane suite: the lateral plane shows the selected trajectory's progression view "
            "(the true lateral of its vertebra) beside the frontal plane")
        self.biplane_button.toggled.connect(self.set_biplane)
        buttons.addWidget(self.biplane_button)
        layout.addLayout(buttons)
        self._update_buttons(False)
        self._show_angles()

    # --- pose -------------------------------------------------------------------------------
    def set_patient_position(self, position: str) -> None:
        self.patient_position = position
        self.named_view = None
        self.set_pose(CArmPose.from_table_angles(0.0, 0.0, position), "straight PA (table 0/0)")

    def set_pose(self, pose: CArmPose, name: str = "", full: bool = True) -> None:
        """Show ``pose`` (a full render now, or a preview and a full one when it rests)."""
        self.pose = pose
        self.pose_name = name
        tp, ts = pose.table_angles_deg
        self._syncing = True
        self.rotation.setValue(int(round(tp * 10)))
        self.angulation.setValue(int(round(ts * 10)))
        self._syncing = False
        self._show_angles()
        if full:
            self.render_full()
        else:
            self.render_preview()

    def nudge(self, d_rotation: float, d_angulation: float) -> None:
        """Move the C-arm by table-relative degrees (the arrow keys with Alt)."""
        tp, ts = self.pose.table_angles_deg
        ts = float(np.clip(ts + d_angulation, -90.0, 90.0))
        pose = CArmPose.from_table_angles(tp + d_rotation, ts, self.patient_position)
        self.named_view = None  # moved by hand: no longer that trajectory's view
        self.set_pose(pose, "", full=False)

    def _slider_moved(self) -> None:
        if self._syncing:
            return
        pose = CArmPose.from_table_angles(self.rotation.value() / 10.0,
                                          self.angulation.value() / 10.0, self.patient_position)
        self.pose, self.pose_name = pose, ""
        self.named_view = None
        self._show_angles()
        self.render_preview()

    def go_to(self, name: str, full: bool = True) -> bool:
        """Set the C-arm to the selected trajectory's ``name`` view ("bullseye",
        "working_view", "progression"); it then follows that trajectory's edits and the
        selection (:meth:`follow`) until moved by hand."""
        found = self.controller.named_pose(name)
        if found is None:
            return False
        pose, description = found
        self.named_view = name
        self.set_pose(pose, description, full=full)
        return True

    def follow(self, full: bool = True) -> None:
        """The trajectory (or the selection) changed: a named view moves with it, its caption
        names the trajectory it now belongs to; with no trajectory left the pose stays and
        its caption no longer names one."""
        if self.named_view is not None:
            if self.go_to(self.named_view, full=full):
                return
            self.named_view = None
            self.pose_name = ""
            self._show_angles()
        if full:
            self.refresh()
        else:
            self.render_preview()

    # --- biplane -----------------------------------------------------------------------------
    def set_biplane(self, on: bool) -> None:
        """Show (or hide) the lateral plane beside the frontal one."""
        if bool(on) == self.biplane:
            return
        self.biplane = bool(on)
        if self.biplane_button.isChecked() != self.biplane:
            self.biplane_button.setChecked(self.biplane)
        self.lateral.setVisible(self.biplane)
        self.lateral_label.setVisible(self.biplane)
        self._lateral_key = None
        if self.biplane:
            self._update_lateral_pose()
        self.refresh()

    def _update_lateral_pose(self) -> None:
        """The lateral plane's pose: the selected trajectory's progression view (the true
        lateral of its vertebra), else a plain lateral (table rotation +90)."""
        found = self.controller.named_pose("progression")
        if found is not None:
            pose, description = found
        else:
            pose = CArmPose.from_table_angles(90.0, 0.0, self.patient_position)
            description = "lateral (table rotation +90); select a trajectory for its own"
        self.lateral_pose = pose
        reach = check_reachable(pose, LATERAL_PLANE_LIMITS)
        tp, ts = pose.table_angles_deg
        where = ("reachable by the lateral plane" if reach.reachable
                 else f"NOT reachable by the lateral plane: {reach.reason}")
        # one short line under the images (the pane is small); the whole pose in the tooltip
        short = description.split(": ", 1)[-1].replace(
            " (endplates and posterior wall in profile)", "")
        self.lateral_label.setText(f"Lateral plane: {short}; {where.split(':')[0]}.")
        self.lateral_label.setToolTip(
            f"{pose.text}. {pose.dicom_text}; table rotation {signed(tp)} deg, angulation "
            f"{signed(ts)} deg; {where}.")
        self.lateral_label.setStyleSheet("" if reach.reachable else
                                         "background: #5a3a00; color: #ffd27f;")

    def _update_buttons(self, enabled: bool) -> None:
        for b in self.buttons.values():
            b.setEnabled(enabled)

    def trajectory_changed(self, has_trajectory: bool) -> None:
        self._update_buttons(has_trajectory)
        if self.biplane:
            self._lateral_key = None
            self._update_lateral_pose()

    def angles_text(self) -> str:
        pose = self.pose
        tp, ts = pose.table_angles_deg
        head = f"{self.pose_name}: " if self.pose_name else ""
        return (f"{head}{pose.text}.\n{pose.dicom_text}; table rotation {signed(tp)} deg, "
                f"angulation {signed(ts)} deg ({pose.patient_position})")

    def _show_angles(self) -> None:
        self.angles_label.setText(self.angles_text())

    # --- rendering --------------------------------------------------------------------------
    def render_preview(self) -> None:
        self._request(PREVIEW_PX)
        self._full_timer.start()

    def render_full(self) -> None:
        self._full_timer.stop()
        self._request(FULL_PX)

    def refresh(self) -> None:
        """Re-render the current pose (the needles, the isocentre or the volume changed)."""
        self._shown_key = None
        self.render_full()

    def _request(self, size: int) -> None:
        att, iso, needles, screws, vis_fn = self.controller.drr_context()
        if att is None:
            return
        lateral = key = None
        if self.biplane:
            self._update_lateral_pose()
            key = (self.lateral_pose.primary_deg, self.lateral_pose.secondary_deg,
                   tuple(np.round(np.asarray(iso, float), 3)), size,
                   tuple((tuple(n.entry_lps), tuple(n.tip_lps)) for n in needles))
            if key != self._lateral_key:
                lateral = self.lateral_pose
        self._waiting = (self.pose, np.asarray(iso, float), size, needles, screws,
                         vis_fn if size == FULL_PX else None, time.perf_counter(),
                         (lateral, key))
        if self._running is None:
            self._start_waiting(att)

    def _start_waiting(self, att=None) -> None:
        if self._waiting is None:
            return
        if att is None:
            att = self.controller.drr_context()[0]
            if att is None:
                self._waiting = None
                return
        pose, iso, size, needles, screws, vis_fn, t_req, (lateral, key) = self._waiting
        self._waiting = None
        shown = float(min(self.view.width(), self.view.height()))
        task = Task("drr", lambda p, c: _render(att, pose, iso, size, needles, screws, vis_fn,
                                                p, c, shown, lateral))
        task.requested = (pose, size, t_req)
        task.lateral_key = key
        self._running = task
        task.signals.succeeded.connect(self._on_rendered)
        task.signals.failed.connect(self._on_failed)
        task.start(self.pool)

    def _on_rendered(self, task, result) -> None:
        if task is not self._running:
            return
        self._running = None
        drr, vis, _ms, lat = result
        pose, size, t_req = task.requested
        elapsed = (time.perf_counter() - t_req) * 1000.0
        self.view.set_drr(drr)
        if lat is not None and self.biplane:
            self.lateral.set_drr(lat)
            self._lateral_key = task.lateral_key
        self.view.repaint()
        (self.preview_ms if size == PREVIEW_PX else self.full_ms).append(elapsed)
        self.last_size = size
        if size == FULL_PX:
            self._show_visibility(vis)
        self._start_waiting()
        emit(self.rendered, size)

    def _on_failed(self, task, exc) -> None:
        if task is not self._running:
            return
        self._running = None
        self.view.message = f"The simulated image could not be made: {exc}"
        self.view.image = None
        self.view.update()
        self._start_waiting()

    def _show_visibility(self, check) -> None:
        if check is None:
            self.visibility_label.setText("")
            self.visibility_label.setStyleSheet("")
            return
        # the verdict, the tilt that clears it and the landmarks list; the rest in the tooltip
        parts = check.detail.split("; ")
        keep = [p for p in parts if not p.startswith(("metal -> landmark", "needed:"))
                and "seen end-on" not in p]
        text = "; ".join(keep)
        self.visibility_label.setToolTip(check.detail)
        if check.status != "pass":
            self.visibility_label.setText(f"\u26a0 Metal hides a landmark you need: {text}")
            self.visibility_label.setStyleSheet(
                "background: #5a3a00; color: #ffd27f; padding: 0.2em;")
        else:
            self.visibility_label.setText(f"Needed landmarks visible: {text}")
            self.visibility_label.setStyleSheet("color: #9fd89f;")

    @property
    def busy(self) -> bool:
        return self._running is not None or self._waiting is not None or \
            self._full_timer.isActive()

    def wait_idle(self, ms: int = 10000) -> None:
        self.pool.waitForDone(ms)
