"""Looking down the needle: oblique reformats along and across the selected trajectory.

- *Along*: the plane through the needle that contains the patient's left-right direction as
  far as it can (an oblique axial), needle vertical with the skin entry at the top.
- *Across*: the plane perpendicular to the needle, looked at from the entry (as in the
  bull's-eye view), at the target; the wheel moves it along the needle.

The 15-gauge needle is drawn to scale with clearance rings (2 and 5 mm around its surface).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen, QTransform
from PySide6.QtWidgets import QSizePolicy, QWidget

from fluoroplan.app.overlays import SELECTED_RGB
from fluoroplan.app.reformat import (
    direction_letter,
    display_axes,
    oblique_grid,
    reformat,
)
from fluoroplan.app.slice_view import draw_edge_letters, draw_scale_bar, windowed_image
from fluoroplan.geometry.conventions import NEEDLE_OUTER_DIAMETER_MM

CLEARANCE_RINGS_MM = (2.0, 5.0)
RING_RGB = ((120, 230, 120), (90, 170, 255))
ACROSS_SIZE_MM = 50.0
ALONG_WIDTH_MM = 60.0
ALONG_MARGIN_MM = 15.0


def needle_planes(entry_lps, aim_lps, patient_position: str, offset_mm: float = 0.0):
    """(along_grid, across_grid) of a needle from ``entry_lps`` to ``aim_lps``; the across plane
    sits ``offset_mm`` before the aim point (toward the entry)."""
    entry, aim = np.asarray(entry_lps, float), np.asarray(aim_lps, float)
    n = aim - entry
    length = float(np.linalg.norm(n))
    n = n / length
    h = display_axes(patient_position)["axial"].right_lps  # screen right of the axial view
    right = h - (h @ n) * n
    if np.linalg.norm(right) < 1e-3:  # a needle along left-right: use head-foot instead
        right = np.array([0.0, 0.0, 1.0]) - n[2] * n
    right /= np.linalg.norm(right)
    pixel = 0.4
    along = oblique_grid((entry + aim) / 2, right, n,
                         (ALONG_WIDTH_MM, length + 2 * ALONG_MARGIN_MM), pixel, "along")
    down = np.cross(n, right)
    centre = aim - offset_mm * n
    across = oblique_grid(centre, right, down, (ACROSS_SIZE_MM, ACROSS_SIZE_MM), 0.25, "across")
    return along, across


class NeedleView(QWidget):
    """One oblique reformat of the selected trajectory (``kind`` "along" or "across")."""

    def __init__(self, kind: str, state, parent=None):
        super().__init__(parent)
        self.kind = kind
        self.state = state  # the ViewerState (volume, window)
        self.setObjectName(f"view_{kind}")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(self.fontMetrics().height() * 8, self.fontMetrics().height() * 7)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.grid = None
        self.depth = 0.0
        self.entry = self.aim = None
        self.offset_mm = 0.0
        self.label = ""
        self._hu = None
        self._image: QImage | None = None
        state.window_changed.connect(self._on_window)

    def set_trajectory(self, entry_lps, aim_lps, label: str = "") -> None:
        """Show the needle ``entry -> aim`` (None: nothing)."""
        vol = self.state.volume
        if entry_lps is None or vol is None:
            self.grid, self._hu, self._image, self.entry, self.aim = None, None, None, None, None
            self.label = ""  # no caption of a needle that is not shown (another CT, none)
            self.update()
            return
        self.entry, self.aim = np.asarray(entry_lps, float), np.asarray(aim_lps, float)
        length = float(np.linalg.norm(self.aim - self.entry))
        self.offset_mm = float(np.clip(self.offset_mm, -10.0, length))
        self.label = label
        along, across = needle_planes(self.entry, self.aim, vol.patient_position, self.offset_mm)
        self.grid = along if self.kind == "along" else across
        centre = (self.entry + self.aim) / 2 if self.kind == "along" else \
            self.aim - self.offset_mm * (self.aim - self.entry) / length
        self.depth = self.grid.depth_of(centre)
        self._hu = reformat(vol, self.grid, self.depth)
        self._make_image()
        self.update()

    def _on_window(self) -> None:
        self._make_image()
        self.update()

    def _make_image(self) -> None:
        self._image = windowed_image(self._hu, self.state.window_width, self.state.window_level)

    def _image_rect(self) -> QRectF:
        """The area of the image: below the title, inside the edge letters, above the legend."""
        fm = self.fontMetrics()
        top, side = fm.height() * 1.4, fm.height() * 1.3
        return QRectF(side, top, max(self.width() - 2 * side, 1),
                      max(self.height() - top - fm.height() * 1.4, 1))

    def transform(self) -> QTransform:
        g = self.grid
        rows, cols = g.shape
        w_mm, h_mm = cols * g.pixel_mm[0], rows * g.pixel_mm[1]
        r = self._image_rect()
        s = min(r.width() / w_mm, r.height() / h_mm)
        t = QTransform()
        t.translate(r.center().x(), r.center().y())
        t.scale(s, s)
        t.translate(-w_mm / 2 + g.pixel_mm[0] / 2, -h_mm / 2 + g.pixel_mm[1] / 2)
        return t

    def widget_from_lps(self, lps) -> QPointF:
        uv = self.grid.uv_from_lps(np.asarray(lps, float))[0]
        return self.transform().map(QPointF(float(uv[0]), float(uv[1])))

    def pixels_per_mm(self) -> float:
        return self.transform().m11()

    def wheelEvent(self, ev) -> None:  # noqa: N802
        if self.kind != "across" or self.entry is None:
            return
        steps = ev.angleDelta().y() / 120.0
        self.offset_mm += steps * 1.0  # wheel up: toward the entry
        self.set_trajectory(self.entry, self.aim, self.label)

    def paintEvent(self, ev) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(0, 0, 0))
        fm = self.fontMetrics()
        title = "Along the needle" if self.kind == "along" else "Across the needle"
        if self._image is None:
            p.setPen(QColor("#9aa0a6"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter,
                       "Select a trajectory to look\nalong and across the needle")
            self._title(p, title, "")
            p.end()
            return
        g = self.grid
        t = self.transform()
        rows, cols = g.shape
        p.save()
        p.setTransform(t)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        p.drawImage(QRectF(-g.pixel_mm[0] / 2, -g.pixel_mm[1] / 2, cols * g.pixel_mm[0],
                           rows * g.pixel_mm[1]), self._image)
        p.restore()
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        scale = self.pixels_per_mm()
        r_needle = NEEDLE_OUTER_DIAMETER_MM / 2
        if self.kind == "across":
            c = self.widget_from_lps(self.aim - self.offset_mm * (self.aim - self.entry)
                                     / np.linalg.norm(self.aim - self.entry))
            for ring, rgb in zip(CLEARANCE_RINGS_MM, RING_RGB, strict=True):
                pen = QPen(QColor(*rgb))
                pen.setWidthF(1.5)
                pen.setStyle(Qt.PenStyle.DashLine)
                p.setPen(pen)
                p.setBrush(Qt.BrushStyle.NoBrush)
                p.drawEllipse(c, (r_needle + ring) * scale, (r_needle + ring) * scale)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(*SELECTED_RGB))
            rad = max(r_needle * scale, 2.0)
            p.drawEllipse(c, rad, rad)
            where = "at the target" if abs(self.offset_mm) < 0.05 else \
                f"{self.offset_mm:.0f} mm {'before' if self.offset_mm > 0 else 'beyond'} the target"
            sub = f"  viewed from the entry, {where} (wheel: move)"
        else:
            a, b = self.widget_from_lps(self.entry), self.widget_from_lps(self.aim)
            axis = b - a
            length = max(np.hypot(axis.x(), axis.y()), 1e-6)
            normal = QPointF(-axis.y() / length, axis.x() / length)
            for ring, rgb in zip(CLEARANCE_RINGS_MM, RING_RGB, strict=True):
                pen = QPen(QColor(*rgb))
                pen.setWidthF(1.2)
                pen.setStyle(Qt.PenStyle.DashLine)
                p.setPen(pen)
                off = normal * ((r_needle + ring) * scale)
                p.drawLine(a + off, b + off)
                p.drawLine(a - off, b - off)
            pen = QPen(QColor(*SELECTED_RGB))
            pen.setWidthF(max(NEEDLE_OUTER_DIAMETER_MM * scale, 2.0))
            pen.setCapStyle(Qt.PenCapStyle.FlatCap)
            p.setPen(pen)
            p.drawLine(a, b)
            sub = f"  entry at the top; {direction_letter(-g.axes.right_lps)} on the left"
        draw_edge_letters(p, self, self._image_rect(), g.axes.edge_letters())
        draw_scale_bar(p, self, scale)
        self._legend(p, fm)
        self._title(p, title, sub)
        p.end()

    def _legend(self, p: QPainter, fm) -> None:
        x = fm.height() * 0.4
        y = self.height() - fm.descent() - fm.height() * 0.15
        for ring, rgb in zip(CLEARANCE_RINGS_MM, RING_RGB, strict=True):
            p.setPen(QColor(*rgb))
            text = f"{ring:.0f} mm clearance  "
            p.drawText(QPointF(x, y), text)
            x += fm.horizontalAdvance(text)
        p.setPen(QColor(*SELECTED_RGB))
        p.drawText(QPointF(x, y), f"15-ga needle \u00d8 {NEEDLE_OUTER_DIAMETER_MM:.3f} mm")

    def _title(self, p: QPainter, title: str, sub: str) -> None:
        fm = self.fontMetrics()
        font = QFont(self.font())
        font.setBold(True)
        p.setFont(font)
        p.setPen(QColor(*SELECTED_RGB))
        x = fm.height() * 0.4
        y = fm.ascent() + fm.height() * 0.2
        p.drawText(QPointF(x, y), title)
        x += p.fontMetrics().horizontalAdvance(title)
        p.setFont(self.font())
        p.setPen(QColor("#c8ccd0"))
        p.drawText(QPointF(x, y), (f"  {self.label}" if self.label else "") + sub)
