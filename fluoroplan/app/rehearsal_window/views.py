"""Widgets of the rehearsal window: the fluoro monitor (last image hold of the last shot), the
axial reformat on which the trainee picks the needle's entry and target, and the score dialog.

They show what the rehearsal engine (:mod:`fluoroplan.rehearsal.session`) computed; none of
them computes anything of the attempt.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QLabel,
    QListWidget,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from fluoroplan.app.qtcompat import emit
from fluoroplan.app.slice_view import SliceView, ViewerState

ENTRY_COLOUR = QColor("#4cd964")
TARGET_COLOUR = QColor("#3fc5f0")
NEEDLE_COLOUR = QColor("#ffc800")
EXPERT_COLOUR = QColor("#ff5ad1")


def qimage_from_array(image: np.ndarray) -> QImage:
    """A QImage (own copy) of a uint8 grey (rows, cols) or RGB (rows, cols, 3) array."""
    a = np.ascontiguousarray(image, dtype=np.uint8)
    rows, cols = a.shape[:2]
    if a.ndim == 2:
        return QImage(a.data, cols, rows, cols, QImage.Format.Format_Grayscale8).copy()
    if a.ndim == 3 and a.shape[2] == 3:
        return QImage(a.data, cols, rows, 3 * cols, QImage.Format.Format_RGB888).copy()
    raise ValueError(f"cannot show an image of shape {a.shape}")


class FluoroView(QWidget):
    """The fluoro monitor: shows the image of the last shot only (last image hold).

    :meth:`set_shot` puts a new image up; :meth:`set_stale` says whether the C-arm or the
    needle moved since (the picture is then no longer what a shot would show).
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("fluoro_view")
        self.title = "Fluoro (last image hold)"
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        fm = self.fontMetrics()
        self.setMinimumSize(fm.height() * 18, fm.height() * 18)
        self._image: QImage | None = None
        self.projection = None
        self.caption = ""
        self.stale_text = ""
        self.empty_text = "No shot yet.\nPress Space or F (Fluoro) to take one."

    @property
    def has_image(self) -> bool:
        return self._image is not None

    def set_shot(self, image: np.ndarray | None, projection=None, caption: str = "") -> None:
        """Show a shot (``DRR.image``, its side letters, scale and needle already marked on it:
        :mod:`fluoroplan.geometry.fluoro_marks`) with the caption."""
        self._image = None if image is None else qimage_from_array(image)
        self.projection = projection
        self.caption = caption
        self.stale_text = ""
        self.update()

    def set_stale(self, text: str) -> None:
        if text != self.stale_text:
            self.stale_text = text
            self.update()

    def image_rect(self) -> QRectF:
        """Where the (square) image is drawn, widget pixels."""
        fm = self.fontMetrics()
        top = fm.height() * 2.6
        bottom = fm.height() * 2.4
        side_margin = fm.height() * 0.5
        avail_w = max(self.width() - 2 * side_margin, 1.0)
        avail_h = max(self.height() - top - bottom, 1.0)
        if self._image is None:
            w = h = min(avail_w, avail_h)
        else:
            ratio = self._image.width() / max(self._image.height(), 1)
            w = min(avail_w, avail_h * ratio)
            h = w / ratio
        return QRectF((self.width() - w) / 2, top + (avail_h - h) / 2, w, h)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt)
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(0, 0, 0))
        fm = self.fontMetrics()
        font = QFont(self.font())
        font.setBold(True)
        p.setFont(font)
        p.setPen(QColor("#f0f0f0"))
        x = fm.height() * 0.4
        p.drawText(QPointF(x, fm.ascent() + fm.height() * 0.2), self.title)
        p.setFont(self.font())
        r = self.image_rect()
        if self._image is None:
            p.setPen(QColor("#9aa0a6"))
            p.drawText(r, Qt.AlignmentFlag.AlignCenter, self.empty_text)
        else:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            p.drawImage(r, self._image)
            p.setPen(QColor("#c8ccd0"))
            p.drawText(QPointF(x, fm.ascent() + fm.height() * 1.4), self.caption)
        if self.stale_text:
            p.setPen(QColor("#ffb347"))
            p.drawText(QRectF(x, self.height() - fm.height() * 2.2, self.width() - 2 * x,
                              fm.height() * 2.0),
                       Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
                       | Qt.TextFlag.TextWordWrap, self.stale_text)
        p.end()


class PlacementView(SliceView):
    """The axial reformat on which the trainee picks the needle's entry and target.

    With :attr:`pick_mode` ``"entry"`` or ``"target"`` a left click (no modifier) picks that
    point on the current slice and emits ``picked(mode, lps)``; otherwise the view behaves as
    a :class:`SliceView` (click sets the crosshair, wheel scrolls slices). Draws the picked
    points, the inserted needle and, after the attempt, the expert's trajectory.
    """

    picked = Signal(str, object)  # "entry" | "target", LPS (ndarray)

    def __init__(self, state: ViewerState, parent=None):
        super().__init__("axial", state, parent)
        self.setObjectName("rehearsal_axial")
        self.pick_mode: str | None = None
        self.entry_lps: np.ndarray | None = None
        self.target_lps: np.ndarray | None = None
        self.needle: tuple[np.ndarray, np.ndarray] | None = None  # entry, tip (inserted part)
        self.expert: tuple[np.ndarray, np.ndarray] | None = None  # shown after the attempt

    def set_marks(self, entry=None, target=None, needle=None, expert=None) -> None:
        self.entry_lps = None if entry is None else np.asarray(entry, float)
        self.target_lps = None if target is None else np.asarray(target, float)
        self.needle = needle
        self.expert = expert
        self.update()

    def mousePressEvent(self, ev) -> None:  # noqa: N802 (Qt)
        if (self.pick_mode and self.grid is not None
                and ev.button() == Qt.MouseButton.LeftButton
                and not ev.modifiers() & Qt.KeyboardModifier.ShiftModifier):
            self.setFocus()
            lps = self.lps_from_widget(ev.position())
            if self.inside_volume(lps):
                emit(self.picked, self.pick_mode, lps)
            return
        super().mousePressEvent(ev)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt)
        super().paintEvent(event)
        if self.grid is None or self.state.volume is None:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        fm = self.fontMetrics()
        here = self.grid.depth_of(self.state.crosshair_lps)
        half = self.grid.depth_step_mm * 0.75
        if self.expert is not None:
            self._segment(p, self.expert[0], self.expert[1], EXPERT_COLOUR, Qt.PenStyle.DashLine)
            self._point(p, self.expert[1], EXPERT_COLOUR, "expert", here, half, fm, ring=True)
        if self.needle is not None:
            self._segment(p, self.needle[0], self.needle[1], NEEDLE_COLOUR, Qt.PenStyle.SolidLine,
                          width=3.0)
        if self.entry_lps is not None:
            self._point(p, self.entry_lps, ENTRY_COLOUR, "entry", here, half, fm)
        if self.target_lps is not None:
            self._point(p, self.target_lps, TARGET_COLOUR, "target", here, half, fm)
        if self.pick_mode:
            p.setPen(ENTRY_COLOUR if self.pick_mode == "entry" else TARGET_COLOUR)
            p.drawText(QPointF(fm.height() * 0.4, fm.height() * 2.4),
                       f"click to pick the {self.pick_mode}")
        p.end()

    def _segment(self, p, a, b, colour, style, width: float = 2.0) -> None:
        pen = QPen(colour)
        pen.setWidthF(width)
        pen.setStyle(style)
        p.setPen(pen)
        p.drawLine(self.widget_from_lps(a), self.widget_from_lps(b))

    def _point(self, p, lps, colour, label, here, half, fm, ring: bool = False) -> None:
        c = self.widget_from_lps(lps)
        off = self.grid.depth_of(lps) - here
        on_slice = abs(off) <= half
        pen = QPen(colour)
        pen.setWidthF(2.0)
        pen.setStyle(Qt.PenStyle.SolidLine if on_slice else Qt.PenStyle.DotLine)
        p.setPen(pen)
        p.setBrush(Qt.BrushStyle.NoBrush)
        rad = fm.height() * (0.55 if ring else 0.45)
        p.drawEllipse(c, rad, rad)
        if not ring:
            p.drawLine(QPointF(c.x() - rad * 1.8, c.y()), QPointF(c.x() - rad * 0.6, c.y()))
            p.drawLine(QPointF(c.x() + rad * 0.6, c.y()), QPointF(c.x() + rad * 1.8, c.y()))
        text = label if on_slice else f"{label} ({off:+.0f} mm)"
        p.drawText(QPointF(c.x() + rad * 2.0, c.y() - rad), text)


class ScoreDialog(QDialog):
    """The score of an ended attempt: the total, each part, every lost point with its reason,
    and the measures (shots, dose proxy, errors)."""

    PART_NAMES = (("bullseye", "Bull's-eye angle", 30), ("shots", "Shots", 15),
                  ("endpoint", "End point", 35), ("safety", "Safety checks", 20))

    def __init__(self, score, title: str = "", parent=None):
        super().__init__(parent)
        self.setObjectName("score_dialog")
        self.setWindowTitle("Rehearsal score")
        self.score = score
        lay = QVBoxLayout(self)
        head = QLabel(f"{title}" if title else "")
        head.setWordWrap(True)
        lay.addWidget(head)
        self.total_label = QLabel(f"Score {score.total:.1f} / 100")
        self.total_label.setObjectName("score_total")
        big = QFont(self.font())
        big.setPointSizeF(self.font().pointSizeF() * 1.8)
        big.setBold(True)
        self.total_label.setFont(big)
        lay.addWidget(self.total_label)
        grid = QGridLayout()
        for row, (key, name, full) in enumerate(self.PART_NAMES):
            lost = float(score.parts.get(key, 0.0))
            grid.addWidget(QLabel(name), row, 0)
            grid.addWidget(QLabel(f"{full - lost:.1f} / {full}"), row, 1)
        lay.addLayout(grid)
        lay.addWidget(QLabel("Lost points and their reasons:"))
        self.lost_list = QListWidget()
        self.lost_list.setObjectName("score_lost")
        for pts, reason in score.lost:
            self.lost_list.addItem(f"-{pts:.1f}  {reason}" if pts > 0 else f"  0.0  {reason}")
        if not score.lost:
            self.lost_list.addItem("no points lost")
        lay.addWidget(self.lost_list)
        m = score.metrics
        bits = [f"shots {m.get('shots', 0)}"]
        if m.get("fluoro_s") is not None:
            bits.append(f"fluoro time {float(m['fluoro_s']):.1f} s")
        if m.get("dap_cm2s") is not None:
            bits.append(f"DAP proxy {float(m['dap_cm2s']):.0f} cm\u00b2\u00b7s")
        if m.get("tip_error_mm") is not None:
            bits.append(f"end-point error {float(m['tip_error_mm']):.1f} mm")
        if m.get("needle_angle_deg") is not None:
            bits.append(f"needle angle to the expert's {float(m['needle_angle_deg']):.1f} deg")
        if m.get("bullseye_error_deg") is not None:
            bits.append(f"worst declared view {float(m['bullseye_error_deg']):.1f} deg off")
        measures = QLabel(", ".join(bits))
        measures.setWordWrap(True)
        measures.setObjectName("score_measures")
        lay.addWidget(measures)
        lay.addWidget(QLabel("The expert's trajectory is now drawn on the axial view (magenta)."))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        lay.addWidget(buttons)
        self.resize(self.fontMetrics().averageCharWidth() * 90, self.fontMetrics().height() * 24)

    def lost_texts(self) -> list[str]:
        return [self.lost_list.item(i).text() for i in range(self.lost_list.count())]
