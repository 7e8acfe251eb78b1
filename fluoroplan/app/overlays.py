"""Trajectories drawn on the reformats, and the mouse tool that places and drags them.

A trajectory is drawn as its projection onto the view plane: the stretch within
:data:`SLAB_MM` of the shown slice solid, the rest dashed; the entry as an open circle, the
target as a filled one. The tool places a trajectory (click the entry, then the target, in any
reformat) and drags either end of a trajectory within the plane of the view it is dragged in.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QPainter, QPen

SLAB_MM = 3.0  # the part of a trajectory this close to the slice is drawn solid
HANDLE_PX = 9.0  # grab distance of an end, widget pixels
SELECTED_RGB = (255, 205, 0)  # the selected trajectory (yellow, like the DRR needle)
OTHER_RGB = (0, 200, 255)  # other trajectories of the plan (cyan)
TARGET_RGB = (255, 70, 70)  # the current target


def solid_interval(depth0: float, depth1: float, slice_depth: float,
                   slab_mm: float = SLAB_MM) -> tuple[float, float] | None:
    """Parameters ``t`` in [0, 1] of the segment (depths ``depth0`` -> ``depth1`` along the view
    normal) within ``slab_mm`` of ``slice_depth``, or None when no part is that close."""
    d0, d1 = depth0 - slice_depth, depth1 - slice_depth
    if abs(d1 - d0) < 1e-9:
        return (0.0, 1.0) if abs(d0) <= slab_mm else None
    ta, tb = (-slab_mm - d0) / (d1 - d0), (slab_mm - d0) / (d1 - d0)
    lo, hi = max(0.0, min(ta, tb)), min(1.0, max(ta, tb))
    return (lo, hi) if lo < hi else None


class TrajectoryOverlay:
    """Paints the plan's trajectories (and the one being placed or dragged) on a SliceView.

    ``controller`` provides ``drawn_trajectories()`` -> list of (id, entry, aim, target,
    selected), ``placing_points()`` -> (entry or None, cursor or None), and
    ``current_target_point()``.
    """

    def __init__(self, controller):
        self.controller = controller

    def paint(self, p: QPainter, view) -> None:
        grid = view.grid
        if grid is None:
            return
        slice_depth = grid.depth_of(view.state.crosshair_lps)
        unit = max(1.0, view.fontMetrics().height() / 9.0)
        p.save()
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        target = self.controller.current_target_point()
        if target is not None:
            c = view.widget_from_lps(target)
            pen = QPen(QColor(*TARGET_RGB))
            pen.setWidthF(unit * 1.5)
            p.setPen(pen)
            r = unit * 5
            p.drawLine(c + QPointF(-r, -r), c + QPointF(r, r))
            p.drawLine(c + QPointF(-r, r), c + QPointF(r, -r))
        items = sorted(self.controller.drawn_trajectories(), key=lambda it: it[4])
        for _tid, entry, aim, tgt, selected in items:
            rgb = SELECTED_RGB if selected else OTHER_RGB
            self._segment(p, view, entry, aim, slice_depth, rgb, unit * (2.2 if selected else 1.5))
            if not np.allclose(aim, tgt):  # the slide along a screw after the contact
                self._segment(p, view, aim, tgt, slice_depth, rgb, unit * 1.2)
            self._ends(p, view, entry, tgt, rgb, unit, selected)
        entry, cursor = self.controller.placing_points()
        if entry is not None:
            pen = QPen(QColor(*SELECTED_RGB))
            pen.setWidthF(unit * 1.5)
            p.setPen(pen)
            a = view.widget_from_lps(entry)
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawEllipse(a, unit * 4, unit * 4)
            if cursor is not None:
                pen.setStyle(Qt.PenStyle.DashLine)
                p.setPen(pen)
                p.drawLine(a, view.widget_from_lps(cursor))
        p.restore()

    def _segment(self, p, view, a_lps, b_lps, slice_depth, rgb, width) -> None:
        grid = view.grid
        a, b = view.widget_from_lps(a_lps), view.widget_from_lps(b_lps)
        pen = QPen(QColor(*rgb))
        pen.setWidthF(width)
        pen.setCapStyle(Qt.PenCapStyle.FlatCap)
        pen.setStyle(Qt.PenStyle.DashLine)
        p.setPen(pen)
        p.drawLine(a, b)
        solid = solid_interval(grid.depth_of(a_lps), grid.depth_of(b_lps), slice_depth)
        if solid is not None:
            pen.setStyle(Qt.PenStyle.SolidLine)
            pen.setWidthF(width * 1.4)
            p.setPen(pen)
            lo, hi = solid
            p.drawLine(a + (b - a) * lo, a + (b - a) * hi)

    def _ends(self, p, view, entry, target, rgb, unit, selected) -> None:
        pen = QPen(QColor(*rgb))
        pen.setWidthF(unit * 1.5)
        p.setPen(pen)
        r = unit * (4.5 if selected else 3.5)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawEllipse(view.widget_from_lps(entry), r, r)
        p.setBrush(QColor(*rgb))
        p.drawEllipse(view.widget_from_lps(target), r * 0.8, r * 0.8)


class TrajectoryTool:
    """Left-button handling on the reformats for trajectories.

    Placing (``controller.placing``): the first click sets the entry, the second the target.
    Otherwise a press on an end of a trajectory drags that end (in the view's plane, at the
    end's own depth), a press elsewhere falls through to the crosshair.
    """

    def __init__(self, controller):
        self.controller = controller
        self.dragging: tuple[str, str, float] | None = None  # (id, "entry"|"target", depth)

    @staticmethod
    def _lps_at(view, pos: QPointF, depth: float | None = None) -> np.ndarray:
        if depth is None:
            return view.lps_from_widget(pos)
        inv, _ = view.transform().inverted()
        q = inv.map(QPointF(pos))
        return view.grid.lps_from_uv(np.array([[q.x(), q.y()]]), depth)[0]

    def end_at(self, view, pos: QPointF) -> tuple[str, str] | None:
        """The trajectory end under ``pos`` (selected trajectory first), or None."""
        best, best_d = None, HANDLE_PX * max(1.0, view.fontMetrics().height() / 16.0)
        items = sorted(self.controller.drawn_trajectories(), key=lambda it: not it[4])
        for tid, entry, _aim, target, _sel in items:
            for which, lps in (("entry", entry), ("target", target)):
                w = view.widget_from_lps(lps)
                d = float(np.hypot(w.x() - pos.x(), w.y() - pos.y()))
                if d < best_d - 0.5:
                    best, best_d = (tid, which), d
        return best

    def press(self, view, pos: QPointF) -> bool:
        c = self.controller
        if c.placing:
            c.place_point(self._lps_at(view, pos))
            return True
        hit = self.end_at(view, pos)
        if hit is None:
            return False
        tid, which = hit
        traj = c.doc.trajectory(tid)
        end = traj.entry_lps if which == "entry" else traj.target_lps
        self.dragging = (tid, which, view.grid.depth_of(end))
        c.begin_drag(tid, which)
        return True

    def move(self, view, pos: QPointF) -> None:
        if self.dragging is None:
            return
        tid, which, depth = self.dragging
        self.controller.drag_to(self._lps_at(view, pos, depth))

    def release(self, view, pos: QPointF) -> None:
        if self.dragging is None:
            return
        tid, which, depth = self.dragging
        self.dragging = None
        self.controller.end_drag(self._lps_at(view, pos, depth))

    def hover(self, view, pos: QPointF) -> None:
        c = self.controller
        if c.placing:
            c.placing_cursor(self._lps_at(view, pos))
            view.setCursor(Qt.CursorShape.CrossCursor)
        elif self.end_at(view, pos) is not None:
            view.setCursor(Qt.CursorShape.SizeAllCursor)
        else:
            view.unsetCursor()
