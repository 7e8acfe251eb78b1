"""Trajectories and segmented structures drawn on the reformats, and the mouse tool that places
and drags trajectories.

:class:`StructureOverlay` draws what the safety checks are measured against, from the
analysis' label volume cut on the view's plane (nearest voxel): the spinal canal's lumen
(outline and a faint fill), the lumbar neural foramina, and thin outlines of the ilia and ribs.

A trajectory is drawn as its projection onto the view plane: the stretch within
:data:`SLAB_MM` of the shown slice solid, the rest dashed; the entry as an open circle, the
target as a filled one. The tool places a trajectory (click the entry, then the target, in any
reformat) and drags either end of a trajectory within the plane of the view it is dragged in.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSizeF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPainterPath, QPen

from fluoroplan.model.anatomy import (
    CANAL_LABEL,
    FORAMEN_LABEL,
    ILIUM_LABEL,
    RIB_LABEL,
)

SLAB_MM = 3.0  # the part of a trajectory this close to the slice is drawn solid
HANDLE_PX = 9.0  # grab distance of an end, widget pixels
PROPOSAL_RGB = (220, 220, 220)  # proposals not looked at, faint
PROPOSAL_ALPHA = 120
SELECTED_RGB = (255, 205, 0)  # the selected trajectory (yellow, like the DRR needle)
OTHER_RGB = (0, 200, 255)  # other trajectories of the plan (cyan)
TARGET_RGB = (255, 70, 70)  # the current target


@dataclass(frozen=True)
class StructureStyle:
    """How one structure of the label volume is drawn: outline colour and alpha, outline width
    (in the overlays' line unit, always at least one screen pixel), fill alpha (0: none)."""

    value: int
    legend: str
    rgb: tuple[int, int, int]
    alpha: int
    width: float
    fill_alpha: int = 0
    region: bool = False  # outline the region only: its holes filled, specks left out


STRUCTURE_STYLES = (
    # the lumen the canal clearance is measured to: the boldest, with a faint fill
    StructureStyle(CANAL_LABEL, "spinal canal", (255, 60, 220), 255, 1.4, 48),
    StructureStyle(FORAMEN_LABEL, "neural foramen", (150, 120, 255), 235, 1.2, 40, True),
    # bones a path must not cross: thin and half transparent, around the bone (not around
    # each marrow space of it), so that the bone stays visible
    StructureStyle(ILIUM_LABEL, "ilium", (240, 200, 110), 170, 0.8, 0, True),
    StructureStyle(RIB_LABEL, "rib", (110, 225, 200), 170, 0.8, 0, True),
)
SPECK_PX = 3  # a region outline leaves out islands of fewer pixels
STRUCTURE_CACHE_SLICES = 24  # cut planes kept (all views together): scrolling back is free


def _edge_runs(mask: np.ndarray) -> np.ndarray:
    """The horizontal pixel edges between set and unset pixels of a 2-D bool ``mask``, merged
    into runs along the rows: (n, 3) int of (edge row e, first column, column past the end);
    edge row ``e`` lies between pixel rows ``e - 1`` and ``e``."""
    rows, cols = mask.shape
    padded = np.zeros((rows + 2, cols), bool)
    padded[1:-1] = mask
    edge = padded[1:] != padded[:-1]  # (rows + 1, cols)
    step = np.diff(edge.astype(np.int8), axis=1, prepend=0, append=0)
    starts = np.argwhere(step == 1)  # row-major: starts and ends of a row pair up in order
    ends = np.argwhere(step == -1)
    return np.column_stack([starts[:, 0], starts[:, 1], ends[:, 1]])


def region_mask(mask: np.ndarray, speck_px: int = SPECK_PX) -> np.ndarray:
    """The 2-D mask with its holes filled and its islands below ``speck_px`` pixels removed."""
    from scipy import ndimage

    filled = ndimage.binary_fill_holes(mask)
    lab, n = ndimage.label(filled)
    if n == 0:
        return filled
    size = np.bincount(lab.ravel())
    keep = size >= speck_px
    keep[0] = False
    return keep[lab]


def outline_path(mask: np.ndarray, pixel_mm: tuple[float, float],
                 offset: tuple[int, int] = (0, 0)) -> QPainterPath:
    """The outline of a 2-D bool mask along its pixels' edges, in plane mm with pixel (0, 0)'s
    centre at the origin (a view's image coordinates); ``offset`` (row, col) is where
    ``mask[0, 0]`` lies in the view's image (a crop of it)."""
    pu, pv = float(pixel_mm[0]), float(pixel_mm[1])
    r_off, c_off = offset[0] - 0.5, offset[1] - 0.5
    path = QPainterPath()
    for e, c0, c1 in _edge_runs(mask).tolist():  # horizontal edges
        y = (e + r_off) * pv
        path.moveTo((c0 + c_off) * pu, y)
        path.lineTo((c1 + c_off) * pu, y)
    for e, r0, r1 in _edge_runs(mask.T).tolist():  # vertical edges
        x = (e + c_off) * pu
        path.moveTo(x, (r0 + r_off) * pv)
        path.lineTo(x, (r1 + r_off) * pv)
    return path


@dataclass
class _StructureSlice:
    """One cut plane's drawing: the fill image (of the structures' bounding box, at
    ``fill_rect`` in plane mm) and an outline per structure present."""

    fill: QImage | None
    fill_rect: QRectF | None
    outlines: list  # (StructureStyle, QPainterPath)
    build_ms: float


class StructureOverlay:
    """Paints the segmented structures of the label volume on a SliceView.

    ``labels_source()`` returns the analysis' label volume (uint8 ``[k, j, i]`` on the CT grid)
    or None. Each view's cut is computed once per plane and depth (nearest voxel) and kept
    (:data:`STRUCTURE_CACHE_SLICES`), so moving the crosshair within a plane redraws from the
    cache. ``enabled`` switches it off; :meth:`clear` forgets the cuts (a new analysis).
    ``build_ms`` / ``paint_ms`` keep the last timings (a cut computed; one view painted).
    """

    def __init__(self, labels_source: Callable[[], np.ndarray | None],
                 styles: tuple[StructureStyle, ...] = STRUCTURE_STYLES):
        self.labels_source = labels_source
        self.styles = styles
        self.enabled = True
        self._cache: OrderedDict = OrderedDict()
        self._lut = np.zeros((256, 4), np.uint8)
        for st in styles:
            if st.fill_alpha:
                self._lut[st.value] = (*st.rgb, st.fill_alpha)
        self.build_ms: list[float] = []
        self.paint_ms: list[float] = []
        self.cache_hits: dict[str, int] = {}  # per view: cuts taken from the cache
        self.legend_rects: dict[str, QRectF] = {}  # per view: where the legend was drawn
        self.legend_shown: dict[str, list[str]] = {}  # per view: its entries

    def clear(self) -> None:
        self._cache.clear()

    def labels_for(self, view) -> np.ndarray | None:
        """The label volume if it can be drawn on this view (on the shown CT's grid)."""
        vol = view.state.volume
        labels = self.labels_source()
        if labels is None or vol is None or view.grid is None:
            return None
        if labels.shape != vol.hu.shape:  # an analysis of another CT (still being replaced)
            return None
        return labels

    def slice_for(self, view) -> _StructureSlice | None:
        labels = self.labels_for(view)
        if labels is None:
            return None
        grid = view.grid
        depth = grid.depth_of(view.state.crosshair_lps)
        key = (view.name, id(labels), id(view.state.volume), grid.shape, round(depth, 3))
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            self.cache_hits[view.name] = self.cache_hits.get(view.name, 0) + 1
            return hit
        hit = self._build(view.state.volume, labels, grid, depth)
        self._cache[key] = hit
        while len(self._cache) > STRUCTURE_CACHE_SLICES:
            self._cache.popitem(last=False)
        self.build_ms = (self.build_ms + [hit.build_ms])[-50:]
        return hit

    def _build(self, volume, labels, grid, depth) -> _StructureSlice:
        from fluoroplan.app.reformat import reformat_labels

        t0 = time.perf_counter()
        cut = reformat_labels(volume, labels, grid, depth)
        lowest = min(st.value for st in self.styles)
        any_row = np.flatnonzero((cut >= lowest).any(axis=1))
        if not len(any_row):
            return _StructureSlice(None, None, [], (time.perf_counter() - t0) * 1000.0)
        any_col = np.flatnonzero((cut[any_row[0]:any_row[-1] + 1] >= lowest).any(axis=0))
        r0, c0 = int(any_row[0]), int(any_col[0])
        crop = cut[r0:any_row[-1] + 1, c0:any_col[-1] + 1]  # the structures' bounding box
        present = set(np.unique(crop[crop >= lowest]).tolist())
        outlines = []
        for st in self.styles:
            if st.value not in present:
                continue
            mask = crop == st.value
            if st.region:
                mask = region_mask(mask)
            outlines.append((st, outline_path(mask, grid.pixel_mm, (r0, c0))))
        fill = fill_rect = None
        if any(st.fill_alpha and st.value in present for st in self.styles):
            rgba = np.ascontiguousarray(self._lut[crop])
            rows, cols = crop.shape
            fill = QImage(rgba.data, cols, rows, cols * 4, QImage.Format.Format_RGBA8888).copy()
            pu, pv = grid.pixel_mm
            fill_rect = QRectF((c0 - 0.5) * pu, (r0 - 0.5) * pv, cols * pu, rows * pv)
        return _StructureSlice(fill, fill_rect, outlines, (time.perf_counter() - t0) * 1000.0)

    def paint(self, p: QPainter, view) -> None:
        self.legend_rects.pop(view.name, None)
        self.legend_shown.pop(view.name, None)
        if not self.enabled:
            return
        t0 = time.perf_counter()
        cut = self.slice_for(view)
        if cut is None or (cut.fill is None and not cut.outlines):
            return
        unit = max(1.0, view.fontMetrics().height() / 9.0)
        p.save()
        p.setTransform(view.transform())
        if cut.fill is not None:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
            p.drawImage(cut.fill_rect, cut.fill)
        p.setBrush(Qt.BrushStyle.NoBrush)
        for st, path in cut.outlines:
            colour = QColor(*st.rgb)
            colour.setAlpha(st.alpha)
            pen = QPen(colour)
            pen.setCosmetic(True)  # screen pixels, whatever the zoom
            pen.setWidthF(max(1.0, st.width * unit))
            p.setPen(pen)
            p.drawPath(path)
        p.restore()
        self._legend(p, view, [st for st, _ in cut.outlines], unit)
        self.paint_ms = (self.paint_ms + [(time.perf_counter() - t0) * 1000.0])[-50:]

    def _legend(self, p: QPainter, view, shown: list[StructureStyle], unit: float) -> None:
        """What the colours are, bottom right of the view: only what this cut shows."""
        if not shown:
            return
        font = QFont(view.font())
        font.setPointSizeF(max(6.0, view.font().pointSizeF() * 0.85))
        p.save()
        p.setFont(font)
        fm = p.fontMetrics()
        line = fm.height()
        swatch = line * 1.1
        width = swatch + fm.averageCharWidth() + max(fm.horizontalAdvance(st.legend) for st in shown)
        pad = line * 0.3
        vfm = view.fontMetrics()
        right = view.width() - vfm.height() * 0.4
        bottom = view.height() - vfm.height() * 1.35  # above the footer line
        box = QRectF(right - width - 2 * pad, bottom - len(shown) * line - 2 * pad,
                     width + 2 * pad, len(shown) * line + 2 * pad)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 150))
        p.drawRect(box)
        self.legend_rects[view.name] = box
        self.legend_shown[view.name] = [st.legend for st in shown]
        for n, st in enumerate(shown):
            y = box.top() + pad + n * line
            colour = QColor(*st.rgb)
            sw = QRectF(box.left() + pad, y + line * 0.25, swatch, line * 0.5)
            fill = QColor(colour)
            fill.setAlpha(max(st.fill_alpha * 2, 0))
            p.setBrush(fill if st.fill_alpha else Qt.BrushStyle.NoBrush)
            pen = QPen(colour)
            pen.setWidthF(max(1.0, st.width * unit))
            p.setPen(pen)
            p.drawRect(sw)
            p.setPen(QColor("#e6e8ea"))
            p.drawText(QPointF(sw.right() + fm.averageCharWidth(), y + fm.ascent()), st.legend)
        p.restore()


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
        proposals = getattr(self.controller, "drawn_proposals", lambda: [])()
        for entry, aim, tgt, current in proposals:
            if current:
                continue  # drawn last, over the plan's trajectories
            rgb = PROPOSAL_RGB
            self._segment(p, view, entry, aim, slice_depth, rgb, unit * 1.0, alpha=PROPOSAL_ALPHA)
            if not np.allclose(aim, tgt):
                self._segment(p, view, aim, tgt, slice_depth, rgb, unit * 0.8,
                              alpha=PROPOSAL_ALPHA)
        items = sorted(self.controller.drawn_trajectories(), key=lambda it: it[4])
        items += [(None, e, a, t, True) for e, a, t, cur in proposals if cur]
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

    def _segment(self, p, view, a_lps, b_lps, slice_depth, rgb, width, alpha=255) -> None:
        grid = view.grid
        a, b = view.widget_from_lps(a_lps), view.widget_from_lps(b_lps)
        pen = QPen(QColor(*rgb, alpha))
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
        if getattr(c, "measuring", None) is not None:
            c.measure_point(view, self._lps_at(view, pos))
            return True
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
        if getattr(c, "measuring", None) is not None:
            c.measure_cursor(self._lps_at(view, pos))
            view.setCursor(Qt.CursorShape.CrossCursor)
        elif c.placing:
            c.placing_cursor(self._lps_at(view, pos))
            view.setCursor(Qt.CursorShape.CrossCursor)
        elif self.end_at(view, pos) is not None:
            view.setCursor(Qt.CursorShape.SizeAllCursor)
        else:
            view.unsetCursor()


MEASURE_RGB = (120, 255, 160)  # measurements: light green, apart from needles and structures


class MeasurementOverlay:
    """Paints the plan's distances and angles on the reformat they lie in (every point within
    half a slice and 1 mm of the shown plane), and the one being measured.

    ``controller`` provides ``doc.measurements`` and ``measuring_points()``."""

    TOLERANCE_MM = 1.0

    def __init__(self, controller):
        self.controller = controller

    def in_plane(self, view, points) -> bool:
        grid = view.grid
        here = grid.depth_of(view.state.crosshair_lps)
        tol = 0.5 * grid.depth_step_mm + self.TOLERANCE_MM
        return all(abs(grid.depth_of(q) - here) <= tol for q in points)

    def paint(self, p: QPainter, view) -> None:
        if view.grid is None:
            return
        unit = max(1.0, view.fontMetrics().height() / 9.0)
        p.save()
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        for m in self.controller.doc.measurements:
            if self.in_plane(view, m.points_lps):
                self._draw(p, view, m.points_lps, f"{m.id} {m.text}", unit, Qt.PenStyle.SolidLine)
        pts = self.controller.measuring_points()
        if pts:
            self._draw(p, view, pts, "", unit, Qt.PenStyle.DashLine)
        p.restore()

    def _draw(self, p, view, points, label: str, unit: float, style) -> None:
        w = [view.widget_from_lps(q) for q in points]
        pen = QPen(QColor(*MEASURE_RGB))
        pen.setWidthF(unit * 1.2)
        pen.setStyle(style)
        p.setPen(pen)
        for a, b in zip(w[:-1], w[1:], strict=True):
            p.drawLine(a, b)
        pen.setStyle(Qt.PenStyle.SolidLine)
        p.setPen(pen)
        for q in w:  # end ticks: short crosses
            r = unit * 3
            p.drawLine(q + QPointF(-r, 0), q + QPointF(r, 0))
            p.drawLine(q + QPointF(0, -r), q + QPointF(0, r))
        if label:
            at = w[1] if len(w) == 3 else (w[0] + w[1]) / 2
            fm = view.fontMetrics()
            box = QRectF(at + QPointF(unit * 4, -fm.height() - unit * 2),
                         QSizeF(fm.horizontalAdvance(label) + 8, fm.height() + 2))
            p.fillRect(box, QColor(0, 0, 0, 170))
            p.drawText(box, Qt.AlignmentFlag.AlignCenter, label)
