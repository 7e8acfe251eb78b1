"""The linked axial / sagittal / coronal reformat views (QPainter on numpy slices).

:class:`ViewerState` holds what the views share (volume, crosshair, window/level); each
:class:`SliceView` draws one plane through the crosshair and edits the state from the mouse
and keyboard. Zoom and pan belong to each view.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPen, QTransform
from PySide6.QtWidgets import QSizePolicy, QWidget

from fluoroplan.app.qtcompat import emit
from fluoroplan.app.reformat import (
    PlaneAxes,
    PlaneGrid,
    display_axes,
    plane_grid,
    reformat,
    window_to_uint8,
)
from fluoroplan.io.volume import CTVolume

# Window presets (width, level) in HU: name -> (W, L)
PRESETS = {
    "bone": (2000.0, 500.0),
    "soft tissue": (400.0, 40.0),
    "metal": (4000.0, 1500.0),
}
DEFAULT_PRESET = "bone"

VIEW_COLOURS = {"axial": "#e0574f", "sagittal": "#e8c33a", "coronal": "#5cc46a"}
BACKGROUND = QColor(0, 0, 0)



def windowed_image(hu, width: float, level: float) -> QImage | None:
    """A grey QImage (own copy of the pixels) of a HU slice at a window width/level."""
    if hu is None:
        return None
    grey = np.ascontiguousarray(window_to_uint8(hu, width, level))
    rows, cols = grey.shape
    return QImage(grey.data, cols, rows, cols, QImage.Format.Format_Grayscale8).copy()

# the reformats' default zoom box around the vertebrae and screws (LPS: +y is posterior):
# 100 mm to each side (skin entries up to 100 mm from the midline), 50 mm in front, 110 mm
# behind (the skin the needles enter), 25 mm up and down
SPINE_MARGIN_LO_MM = np.array([100.0, 50.0, 25.0])
SPINE_MARGIN_HI_MM = np.array([100.0, 110.0, 25.0])
SCALE_BAR_MM = (1, 2, 5, 10, 20, 50, 100)


def spine_box(findings, volume) -> tuple[np.ndarray, np.ndarray] | None:
    """The box (LPS lo, hi) the reformats zoom on by default: the vertebrae and screws found,
    with the posterior soft tissue the needles cross; None without vertebrae."""
    if findings is None or not findings.vertebrae or volume is None:
        return None
    pts = np.array([v.vertebra_centroid_lps for v in findings.vertebrae]
                   + [p for s in findings.screws for p in (s.head_lps, s.tip_lps)])
    lo = pts.min(axis=0) - SPINE_MARGIN_LO_MM
    hi = pts.max(axis=0) + SPINE_MARGIN_HI_MM
    vlo, vhi = volume.bounds_lps()
    return np.maximum(lo, vlo), np.minimum(hi, vhi)  # the longest that fits in a fifth of the width


def draw_edge_letters(p: QPainter, widget, r: QRectF, letters: dict) -> None:
    """Patient-direction letters on the four edges of an image area (``letters``: left, right,
    top, bottom), in the reformats' bold amber."""
    fm = widget.fontMetrics()
    font = QFont(widget.font())
    font.setBold(True)
    font.setPointSizeF(widget.font().pointSizeF() * 1.25)
    p.setFont(font)
    p.setPen(QColor("#ffd27f"))
    m = fm.height() * 0.3
    big = QRectF(r.left() - fm.height() * 1.3 + m, r.top(),
                 r.width() + 2 * fm.height() * 1.3 - 2 * m, r.height())
    a = Qt.AlignmentFlag
    p.drawText(big, a.AlignLeft | a.AlignVCenter, letters["left"])
    p.drawText(big, a.AlignRight | a.AlignVCenter, letters["right"])
    p.drawText(r, a.AlignTop | a.AlignHCenter, letters["top"])
    p.drawText(r, a.AlignBottom | a.AlignHCenter, letters["bottom"])
    p.setFont(widget.font())


def scale_bar_mm(px_per_mm: float, width_px: float) -> float:
    """The scale bar's length: the longest of 1, 2, 5, 10 ... 100 mm within a fifth of the
    width (at least the shortest)."""
    fits = [mm for mm in SCALE_BAR_MM if mm * px_per_mm <= width_px / 5]
    return float(fits[-1] if fits else SCALE_BAR_MM[0])


def draw_scale_bar(p: QPainter, widget, px_per_mm: float, corner: str = "right",
                   lines_up: float = 1.6) -> QRectF:
    """A bar of a round length in mm in a bottom corner (``lines_up`` text lines above the
    bottom edge, clear of the footer and legends), with its length written on it; returns
    the bar's rectangle (widget px)."""
    fm = widget.fontMetrics()
    mm = scale_bar_mm(px_per_mm, widget.width())
    length = mm * px_per_mm
    y = widget.height() - fm.height() * lines_up
    if corner == "left":
        left = fm.height() * 1.6
    else:
        left = widget.width() - fm.height() * 1.6 - length
    bar = QRectF(left, y - 3, length, 3)
    p.save()
    p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
    p.fillRect(bar.adjusted(-1, -1, 1, 1), QColor(0, 0, 0))
    p.fillRect(bar, QColor("#f0f0f0"))
    for x in (bar.left(), bar.right() - 2):  # end ticks, inside the bar's length
        p.fillRect(QRectF(x, y - 7, 2, 7), QColor("#f0f0f0"))
    p.setPen(QColor("#f0f0f0"))
    text = f"{mm:.0f} mm"
    p.drawText(QPointF(bar.center().x() - fm.horizontalAdvance(text) / 2, y - 9), text)
    p.restore()
    return bar


class ViewerState(QObject):
    """What the three views share. Emits ``crosshair_changed`` and ``window_changed``."""

    volume_changed = Signal()
    crosshair_changed = Signal()
    window_changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.volume: CTVolume | None = None
        self.axes: dict[str, PlaneAxes] = {}
        self.grids: dict[str, PlaneGrid] = {}
        self.crosshair_lps = np.zeros(3)
        self.window_width, self.window_level = PRESETS[DEFAULT_PRESET]
        # the box (LPS lo, hi) the views zoom on by default (the spine, once found), or None
        self.focus_box: tuple[np.ndarray, np.ndarray] | None = None

    def set_volume(self, volume: CTVolume | None) -> None:
        self.volume = volume
        self.focus_box = None
        if volume is None:
            self.axes, self.grids = {}, {}
        else:
            self.axes = display_axes(volume.patient_position)
            self.grids = {name: plane_grid(volume, a) for name, a in self.axes.items()}
            lo, hi = volume.bounds_lps()
            self.crosshair_lps = (lo + hi) / 2.0
        emit(self.volume_changed)
        emit(self.crosshair_changed)

    def set_crosshair(self, lps: np.ndarray) -> None:
        if self.volume is None:
            return
        lo, hi = self.volume.bounds_lps()
        self.crosshair_lps = np.clip(np.asarray(lps, float).reshape(3), lo, hi)
        emit(self.crosshair_changed)

    def set_window(self, width: float, level: float) -> None:
        self.window_width = float(min(max(width, 1.0), 8000.0))
        self.window_level = float(min(max(level, -1500.0), 4000.0))
        emit(self.window_changed)

    def hu_at(self, lps: np.ndarray) -> int:
        assert self.volume is not None
        return int(self.volume.hu_at_lps(np.asarray(lps, float).reshape(1, 3))[0])


class SliceView(QWidget):
    """One reformat plane through the crosshair.

    Mouse: click / drag sets the crosshair; wheel scrolls slices; Ctrl+wheel or right-drag
    zooms; middle-drag pans; Shift+left-drag sets window (horizontal) and level (vertical).
    Keys: Up/Down one slice, PageUp/PageDown ten slices.
    """

    hovered = Signal(object)  # LPS (ndarray) under the cursor, or None when outside
    activated = Signal(str)  # this view was clicked or scrolled (name)
    context_requested = Signal(object, object)  # LPS, global QPoint (right click, no drag)

    def __init__(self, name: str, state: ViewerState, parent=None):
        super().__init__(parent)
        self.name = name
        self.state = state
        self.colour = QColor(VIEW_COLOURS[name])
        self.setObjectName(f"view_{name}")
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMinimumSize(self.fontMetrics().height() * 8, self.fontMetrics().height() * 7)
        self._hu: np.ndarray | None = None
        self._image: QImage | None = None
        self._depth_shown: float | None = None
        self._zoom = 1.0  # widget px per mm, relative to "fit"
        self._pan = QPointF(0.0, 0.0)  # widget px
        self._drag: tuple | None = None
        # later features: ``overlays`` are objects with ``paint(painter, view)``, drawn over the
        # image; ``tool`` (one object or None) may take left-button presses first, with
        # ``press(view, pos) -> bool``, ``move(view, pos)``, ``release(view, pos)``.
        self.overlays: list = []
        self.tool = None
        state.volume_changed.connect(self._on_volume)
        state.crosshair_changed.connect(self._on_crosshair)
        state.window_changed.connect(self._on_window)

    # --- state -> picture -------------------------------------------------------------------
    @property
    def grid(self) -> PlaneGrid | None:
        return self.state.grids.get(self.name)

    def _on_volume(self) -> None:
        self._hu, self._image, self._depth_shown = None, None, None
        self.reset_view()

    def _on_crosshair(self) -> None:
        grid = self.grid
        if grid is None:
            self.update()
            return
        depth = grid.depth_of(self.state.crosshair_lps)
        if self._depth_shown is None or abs(depth - self._depth_shown) > 1e-6:
            self._hu = reformat(self.state.volume, grid, depth)
            self._depth_shown = depth
            self._make_image()
        self.update()

    def _on_window(self) -> None:
        self._make_image()
        self.update()

    def _make_image(self) -> None:
        self._image = windowed_image(self._hu, self.state.window_width, self.state.window_level)

    def reset_view(self) -> None:
        """The default zoom: on the focus box (the spine) when there is one, else the whole
        field of view."""
        self._zoom, self._pan = 1.0, QPointF(0.0, 0.0)
        box, grid = self.state.focus_box, self.grid
        if box is not None and grid is not None:
            lo, hi = (np.asarray(b, float) for b in box)
            corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                                for z in (lo[2], hi[2])])
            uv = grid.uv_from_lps(corners)
            size = uv.max(axis=0) - uv.min(axis=0)
            w_mm, h_mm = self._extent_mm()
            r = self._view_rect()
            if size[0] > 0 and size[1] > 0:
                # zoom in until the box fills the view (never out beyond the whole field)
                fit_all = min(r.width() / w_mm, r.height() / h_mm)
                fit_box = min(r.width() / size[0], r.height() / size[1])
                self._zoom = float(max(1.0, fit_box / fit_all))
                centre_uv = (uv.max(axis=0) + uv.min(axis=0)) / 2
                c = self.transform().map(QPointF(float(centre_uv[0]), float(centre_uv[1])))
                self._pan = QPointF(self._view_rect().center() - c)
        self._default_view = True
        self.update()

    def resizeEvent(self, ev) -> None:  # noqa: N802
        super().resizeEvent(ev)
        if self.at_default_zoom:  # the pan is in pixels: keep the focus box centred
            self.reset_view()

    @property
    def at_default_zoom(self) -> bool:
        """True while the user has not zoomed or panned since the last reset."""
        return getattr(self, "_default_view", True)

    # --- geometry: plane mm <-> widget px ---------------------------------------------------
    def _extent_mm(self) -> tuple[float, float]:
        g = self.grid
        rows, cols = g.shape
        return cols * g.pixel_mm[0], rows * g.pixel_mm[1]

    def _view_rect(self) -> QRectF:
        """The area available for the image (below the title line)."""
        fm = self.fontMetrics()
        m = fm.height() * 1.3
        return QRectF(m, m * 1.2, max(self.width() - 2 * m, 1.0), max(self.height() - 2.2 * m, 1.0))

    def transform(self) -> QTransform:
        """Plane mm (relative to the centre of pixel (0, 0)) -> widget pixels."""
        g = self.grid
        w_mm, h_mm = self._extent_mm()
        r = self._view_rect()
        scale = min(r.width() / w_mm, r.height() / h_mm) * self._zoom
        t = QTransform()
        cx = r.center().x() + self._pan.x()
        cy = r.center().y() + self._pan.y()
        t.translate(cx, cy)
        t.scale(scale, scale)
        # centre of the image extent at the view centre; pixel centres at (c + 0.5) * size
        t.translate(-w_mm / 2 + g.pixel_mm[0] / 2, -h_mm / 2 + g.pixel_mm[1] / 2)
        return t

    def widget_from_lps(self, lps: np.ndarray) -> QPointF:
        uv = self.grid.uv_from_lps(lps)[0]
        return self.transform().map(QPointF(float(uv[0]), float(uv[1])))

    def lps_from_widget(self, pos: QPointF) -> np.ndarray:
        inv, ok = self.transform().inverted()
        p = inv.map(QPointF(pos))
        depth = self.grid.depth_of(self.state.crosshair_lps)
        return self.grid.lps_from_uv(np.array([[p.x(), p.y()]]), depth)[0]

    def inside_volume(self, lps: np.ndarray) -> bool:
        vol = self.state.volume
        ijk = vol.ijk_from_lps_points(lps)[0]
        return bool(np.all(ijk > -0.5) and np.all(ijk < np.array(vol.shape_ijk) - 0.5))

    # --- painting ---------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 (Qt)
        p = QPainter(self)
        p.fillRect(self.rect(), BACKGROUND)
        fm = self.fontMetrics()
        if self.grid is None or self._image is None:
            p.setPen(QColor("#9aa0a6"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._empty_text())
            self._draw_title(p)
            p.end()
            return
        g = self.grid
        t = self.transform()
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self._zoom < 4)
        p.save()
        p.setTransform(t)
        rows, cols = g.shape
        target = QRectF(-g.pixel_mm[0] / 2, -g.pixel_mm[1] / 2, cols * g.pixel_mm[0],
                        rows * g.pixel_mm[1])
        p.drawImage(target, self._image)
        p.restore()
        self._draw_crosshair(p)
        for overlay in self.overlays:
            overlay.paint(p, self)
        self._draw_letters(p, fm)
        # bottom left, above the footer line (the structures' legend is at the bottom right)
        draw_scale_bar(p, self, self.pixels_per_mm(), corner="left", lines_up=1.5)
        self._draw_title(p)
        self._draw_footer(p, fm)
        if self.hasFocus():
            pen = QPen(self.colour)
            pen.setWidthF(max(1.0, fm.height() / 8))
            p.setPen(pen)
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5))
        p.end()

    def _empty_text(self) -> str:
        return "Open a CT folder (Ctrl+O), drop one here,\nor open the demo case"

    def _draw_crosshair(self, p: QPainter) -> None:
        c = self.widget_from_lps(self.state.crosshair_lps)
        gap = self.fontMetrics().height() * 0.6
        others = [n for n in ("axial", "sagittal", "coronal") if n != self.name]
        w, h = self.width(), self.height()
        a = self.grid.axes
        for other in others:
            n = self.state.axes[other].into_screen_lps
            # the other plane is a line here: vertical if its normal lies along screen-right
            vertical = abs(np.dot(n, a.right_lps)) > abs(np.dot(n, a.down_lps))
            pen = QPen(QColor(VIEW_COLOURS[other]))
            pen.setWidthF(max(1.0, self.fontMetrics().height() / 14))
            pen.setCosmetic(True)
            p.setPen(pen)
            if vertical:
                p.drawLine(QPointF(c.x(), 0), QPointF(c.x(), c.y() - gap))
                p.drawLine(QPointF(c.x(), c.y() + gap), QPointF(c.x(), h))
            else:
                p.drawLine(QPointF(0, c.y()), QPointF(c.x() - gap, c.y()))
                p.drawLine(QPointF(c.x() + gap, c.y()), QPointF(w, c.y()))

    def _draw_letters(self, p: QPainter, fm) -> None:
        draw_edge_letters(p, self, self._view_rect(), self.grid.axes.edge_letters())

    def pixels_per_mm(self) -> float:
        return float(self.transform().m11())

    def _draw_title(self, p: QPainter) -> None:
        fm = self.fontMetrics()
        p.setPen(self.colour)
        font = QFont(self.font())
        font.setBold(True)
        p.setFont(font)
        x = fm.height() * 0.4
        title = self.name.capitalize()
        p.drawText(QPointF(x, fm.ascent() + fm.height() * 0.2), title)
        p.setFont(self.font())
        if self.grid is not None:
            p.setPen(QColor("#c8ccd0"))
            where = f"  viewed from {self.grid.axes.viewed_from()}"
            if self.name == "axial" and self.state.volume is not None:
                pos = self.state.volume.patient_position
                prone = pos.upper() in ("HFP", "FFP")
                where += f" ({pos}: as the patient lies)" if prone else f" ({pos}: radiological)"
            p.drawText(QPointF(x + QFontMetrics(font).horizontalAdvance(title) + fm.averageCharWidth(),
                               fm.ascent() + fm.height() * 0.2), where)

    def _draw_footer(self, p: QPainter, fm) -> None:
        g = self.grid
        depth = g.depth_of(self.state.crosshair_lps)
        n = self.grid.axes.into_screen_lps
        axis = int(np.argmax(np.abs(n)))
        coord = float(self.state.crosshair_lps[axis])
        name = "xyz"[axis]
        lo, hi = g.depth_range_mm
        index = int(round((depth - lo) / g.depth_step_mm)) + 1
        total = int(round((hi - lo) / g.depth_step_mm)) + 1
        text = (f"{name} = {coord:.1f} mm   slice {index}/{total}   "
                f"W {self.state.window_width:.0f} L {self.state.window_level:.0f}")
        p.setPen(QColor("#c8ccd0"))
        p.drawText(QPointF(fm.height() * 0.4, self.height() - fm.descent() - fm.height() * 0.15), text)

    # --- interaction ------------------------------------------------------------------------
    def scroll_slices(self, n: int) -> None:
        g = self.grid
        if g is None:
            return
        c = np.array(self.state.crosshair_lps, float)
        c += n * g.depth_step_mm * g.axes.into_screen_lps
        self.state.set_crosshair(c)

    def zoom_by(self, factor: float, about: QPointF | None = None) -> None:
        if self.grid is None:
            return
        about = about if about is not None else QPointF(self.width() / 2, self.height() / 2)
        new_zoom = min(max(self._zoom * factor, 0.25), 40.0)
        factor = new_zoom / self._zoom
        r = self._view_rect()
        centre = QPointF(r.center().x() + self._pan.x(), r.center().y() + self._pan.y())
        # keep the point under ``about`` fixed
        self._pan += (centre - about) * (factor - 1.0)
        self._zoom = new_zoom
        self._default_view = False
        self.update()

    def mousePressEvent(self, ev) -> None:  # noqa: N802
        self.setFocus()
        emit(self.activated, self.name)
        if self.grid is None:
            return
        pos = ev.position()
        mods = ev.modifiers()
        if ev.button() == Qt.MouseButton.LeftButton and mods & Qt.KeyboardModifier.ShiftModifier:
            self._drag = ("window", pos, self.state.window_width, self.state.window_level)
        elif (ev.button() == Qt.MouseButton.LeftButton and self.tool is not None
              and self.tool.press(self, pos)):
            self._drag = ("tool",)
        elif ev.button() == Qt.MouseButton.LeftButton:
            self._drag = ("crosshair",)
            self._set_crosshair_at(pos)
        elif ev.button() == Qt.MouseButton.RightButton:
            self._drag = ("zoom", pos, self._zoom)
        elif ev.button() == Qt.MouseButton.MiddleButton:
            self._drag = ("pan", pos, QPointF(self._pan))

    def mouseMoveEvent(self, ev) -> None:  # noqa: N802
        if self.grid is None:
            return
        pos = ev.position()
        if self._drag:
            kind = self._drag[0]
            if kind == "tool":
                self.tool.move(self, pos)
            elif kind == "crosshair":
                self._set_crosshair_at(pos)
            elif kind == "window":
                _, start, w0, l0 = self._drag
                d = pos - start
                self.state.set_window(w0 * math.exp(d.x() / 200.0), l0 - d.y() * w0 / 400.0)
            elif kind == "zoom":
                _, start, z0 = self._drag
                target = z0 * math.exp(-(pos.y() - start.y()) / 150.0)
                self.zoom_by(target / self._zoom, start)
            elif kind == "pan":
                _, start, pan0 = self._drag
                self._pan = pan0 + (pos - start)
                self._default_view = False
                self.update()
        elif self.tool is not None and hasattr(self.tool, "hover"):
            self.tool.hover(self, pos)
        lps = self.lps_from_widget(pos)
        emit(self.hovered, lps if self.inside_volume(lps) else None)

    def mouseReleaseEvent(self, ev) -> None:  # noqa: N802
        drag, self._drag = self._drag, None
        if drag and drag[0] == "tool" and self.tool is not None:
            self.tool.release(self, ev.position())
        elif drag and drag[0] == "zoom" and self.grid is not None:
            moved = ev.position() - drag[1]
            if abs(moved.x()) + abs(moved.y()) < 4:  # a right click, not a zoom drag
                self._zoom = drag[2]
                emit(self.context_requested, self.lps_from_widget(ev.position()),
                     ev.globalPosition().toPoint())

    def leaveEvent(self, ev) -> None:  # noqa: N802
        emit(self.hovered, None)

    def _set_crosshair_at(self, pos: QPointF) -> None:
        lps = self.lps_from_widget(pos)
        self.state.set_crosshair(lps)
        emit(self.hovered, self.state.crosshair_lps.copy())

    def wheelEvent(self, ev) -> None:  # noqa: N802
        emit(self.activated, self.name)
        steps = ev.angleDelta().y() / 120.0
        if not steps:
            return
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom_by(1.15**steps, ev.position())
        else:
            self.scroll_slices(int(math.copysign(max(1, round(abs(steps))), steps)))

    def keyPressEvent(self, ev) -> None:  # noqa: N802
        k = Qt.Key
        step = {k.Key_Up: 1, k.Key_Down: -1, k.Key_PageUp: 10, k.Key_PageDown: -10,
                k.Key_Right: 1, k.Key_Left: -1}.get(ev.key())
        if step is not None and self.grid is not None:
            emit(self.activated, self.name)
            self.scroll_slices(step)
        else:
            super().keyPressEvent(ev)

    def focusInEvent(self, ev) -> None:  # noqa: N802
        self.update()
        super().focusInEvent(ev)

    def focusOutEvent(self, ev) -> None:  # noqa: N802
        self.update()
        super().focusOutEvent(ev)
