"""The marks on every simulated fluoroscopy image (the workstation's C-arm, the rehearsal, the
plan PDF, ``fluoroplan drr``): one renderer, so the operator reads the same image everywhere.

- **Side letters** at the middle of each edge, in patient terms for the pose (L/R, A/P, H/F;
  two letters when the edge points obliquely, the stronger first), and head/feet at the top and
  bottom of a frontal view (CONVENTIONS.md: the letters, not an assumed monitor flip, tell the
  operator where left is).
- **A 10 mm scale bar** at the depth of the target (its magnification), bottom right.
- **The needle** as its projected 15-gauge shaft (1.829 mm times each end's magnification), a
  short bar across its tip, its skin entry (a square) and its target (a red ring); a path that
  touches a screw and slides along it is drawn through the contact point to the final tip.
  Seen end-on (its bull's-eye) the needle is a ring the operator sees at a glance.
- **Screws** as their axis with a ring at the head (orange when loose), a ring of the screw and
  its halo when seen end-on.

Text is drawn with Pillow's own scalable font, with a dark outline so that it reads on bone,
soft tissue, air and the collimator alike. This module imports numpy, Pillow and
``fluoroplan.geometry``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fluoroplan.geometry.conventions import NEEDLE_OUTER_DIAMETER_MM
from fluoroplan.geometry.projection import Projection

__all__ = [
    "Marks",
    "NeedleMark",
    "ScrewMark",
    "draw_marks",
    "edge_letters",
    "patient_letters",
]

NEEDLE_RGB = (255, 200, 0)
OTHER_NEEDLE_RGB = (150, 150, 150)
TARGET_RGB = (255, 60, 60)
ENTRY_RGB = (80, 220, 120)
LETTER_RGB = (255, 226, 120)
LOOSE_RGB = (255, 120, 30)
TIGHT_RGB = (120, 170, 255)
OUTLINE_RGB = (20, 20, 20)
SCALE_MM = 10.0
OBLIQUE_COMPONENT = 0.38
"""An edge direction whose second component is at least this (about 22 deg) gets its letter."""
_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))


@dataclass(frozen=True)
class NeedleMark:
    """A needle to draw: skin entry, final tip, and the contact point on a screw for a path that
    slides along it (None otherwise); ``selected`` needles are drawn in colour, others grey."""

    entry_lps: np.ndarray
    tip_lps: np.ndarray
    contact_lps: np.ndarray | None = None
    selected: bool = True
    diameter_mm: float = NEEDLE_OUTER_DIAMETER_MM


@dataclass(frozen=True)
class ScrewMark:
    head_lps: np.ndarray
    tip_lps: np.ndarray
    diameter_mm: float
    halo_mm: float = 0.0
    loose: bool = False


@dataclass
class Marks:
    """Where the marks went (pixels), for the caller and the tests: each edge's letters and
    their anchor ``(x, y)``, the scale bar's length, and per needle its shaft's projected
    width at the entry and at the tip and whether it is seen end-on."""

    letters: dict = field(default_factory=dict)
    scale_px: float | None = None
    needle_width_px: list = field(default_factory=list)
    end_on: list = field(default_factory=list)


def patient_letters(direction_lps: np.ndarray) -> str:
    """Patient-terms letters of a direction: the strongest of L/R, P/A, H/F, then the second
    when it is at least ``OBLIQUE_COMPONENT`` of the unit vector ("L", "LP", "H")."""
    d = np.asarray(direction_lps, float)
    d = d / max(float(np.linalg.norm(d)), 1e-12)
    order = np.argsort(-np.abs(d))
    out = _LETTERS[order[0]][0 if d[order[0]] > 0 else 1]
    if abs(d[order[1]]) >= OBLIQUE_COMPONENT:
        out += _LETTERS[order[1]][0 if d[order[1]] > 0 else 1]
    return out


def edge_letters(proj: Projection) -> dict[str, str]:
    """The letters of each image edge (``left``, ``right``, ``top``, ``bottom``): the patient
    direction that edge of the image points to."""
    return {"left": patient_letters(-proj.right_lps), "right": patient_letters(proj.right_lps),
            "top": patient_letters(-proj.down_lps), "bottom": patient_letters(proj.down_lps)}


def _font(px: int):
    return ImageFont.load_default(size=max(int(px), 8))


def _half_width_px(proj: Projection, pts: np.ndarray, diameter_mm: float) -> np.ndarray:
    return 0.5 * diameter_mm * proj.magnification(pts) / proj.pose.pixel_mm


def _shaft(draw: ImageDraw.ImageDraw, a, b, ha: float, hb: float, fill, outline_px: float):
    """A tapered shaft from pixel ``a`` (half width ``ha``) to ``b`` (``hb``), with an outline."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    t = b - a
    n = float(np.linalg.norm(t))
    normal = np.array([-t[1], t[0]]) / n if n > 1e-9 else np.array([1.0, 0.0])

    def quad(extra: float):
        return [tuple(a + (ha + extra) * normal), tuple(b + (hb + extra) * normal),
                tuple(b - (hb + extra) * normal), tuple(a - (ha + extra) * normal)]

    if outline_px > 0:
        draw.polygon(quad(outline_px), fill=OUTLINE_RGB)
    draw.polygon(quad(0.0), fill=fill)


def _ring(draw, c, r: float, width: float, colour, outline: bool = True) -> None:
    c = np.asarray(c, float)
    if outline:
        draw.ellipse([c[0] - r - 1, c[1] - r - 1, c[0] + r + 1, c[1] + r + 1],
                     outline=OUTLINE_RGB, width=int(round(width + 2)))
    draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], outline=colour,
                 width=max(int(round(width)), 1))


def _text(draw, xy, text: str, font, anchor: str, colour=LETTER_RGB, stroke: int = 2) -> None:
    draw.text(xy, text, font=font, anchor=anchor, fill=colour, stroke_width=stroke,
              stroke_fill=OUTLINE_RGB)


def draw_marks(image: np.ndarray, proj: Projection, needles=(), screws=(),
               scale_at_lps: np.ndarray | None = None, letters: bool = True,
               size_scale: float = 1.0) -> tuple[np.ndarray, Marks]:
    """``image`` (grey or RGB uint8, the view's detector image) with the marks drawn on it
    (RGB uint8), and where they went. ``scale_at_lps``: the point whose depth the scale bar
    refers to (the target); None: the isocentre. ``size_scale`` enlarges the letters and
    symbols (not the needle's true width) for an image shown smaller than its pixels."""
    img = np.asarray(image, np.uint8)
    rgb = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img.copy()
    rows, cols = rgb.shape[:2]
    pil = Image.fromarray(rgb)
    draw = ImageDraw.Draw(pil)
    unit = max(cols, rows) / 512.0 * max(float(size_scale), 0.25)
    marks = Marks()
    outline = max(1.0, round(unit))

    for s in screws:
        ends = np.array([s.head_lps, s.tip_lps], float)
        try:
            uv = proj.detector_px_from_lps(ends)
        except ValueError:  # behind the source
            continue
        colour = LOOSE_RGB if s.loose else TIGHT_RGB
        r = float(_half_width_px(proj, ends, s.diameter_mm + 2 * s.halo_mm).mean())
        if np.linalg.norm(uv[1] - uv[0]) < r:  # end-on: the screw (and its halo) as a ring
            _ring(draw, uv.mean(axis=0), r, 1.5 * unit, colour)
        else:
            draw.line([tuple(uv[0]), tuple(uv[1])], fill=colour, width=max(int(1.5 * unit), 1))
            _ring(draw, uv[0], 3.0 * unit, 1.2 * unit, colour, outline=False)

    for nd in needles:
        pts = [nd.entry_lps] + ([nd.contact_lps] if nd.contact_lps is not None else []) \
            + [nd.tip_lps]
        path = np.asarray(pts, float)
        try:
            uv = proj.detector_px_from_lps(path)
        except ValueError:
            marks.needle_width_px.append(None)
            marks.end_on.append(False)
            continue
        half = _half_width_px(proj, path, nd.diameter_mm)
        colour = NEEDLE_RGB if nd.selected else OTHER_NEEDLE_RGB
        first = float(np.linalg.norm(uv[1] - uv[0]))
        end_on = first <= 2.0 * float(half[:2].max())
        marks.needle_width_px.append((2.0 * float(half[0]), 2.0 * float(half[-1])))
        marks.end_on.append(bool(end_on))
        for k in range(len(uv) - 1):
            _shaft(draw, uv[k], uv[k + 1], half[k], half[k + 1], colour, outline)
        # the final tip: a red ring (under the end-on ring, which must stay whole)
        _ring(draw, uv[-1], max(3.0 * float(half[-1]), 5.0 * unit), 1.5 * unit, TARGET_RGB)
        if end_on:
            # the operator must see the dot at a glance: a ring around it, and the dot itself
            c = uv[0] if len(uv) == 2 else uv[1]
            _ring(draw, uv[0], max(4.0 * float(half[0]), 9.0 * unit), 2.0 * unit, colour)
            rd = max(float(half[0]), 3.5 * unit)  # the dot survives an image shown small
            draw.ellipse([c[0] - rd, c[1] - rd, c[0] + rd, c[1] + rd], fill=colour)
        else:
            # a bar across the tip
            t = uv[-1] - uv[-2]
            n = float(np.linalg.norm(t))
            if n > 1e-6:
                normal = np.array([-t[1], t[0]]) / n
                bar = 2.0 * float(half[-1]) + 4.0 * unit
                draw.line([tuple(uv[-1] - bar * normal), tuple(uv[-1] + bar * normal)],
                          fill=colour, width=max(int(round(1.5 * unit)), 1))
            e = uv[0]
            s_ = 3.5 * unit
            draw.rectangle([e[0] - s_, e[1] - s_, e[0] + s_, e[1] + s_], outline=ENTRY_RGB,
                           width=max(int(round(1.5 * unit)), 1))

    font = _font(round(20 * unit))
    if letters:
        m = 6 * unit
        spots = {"left": ((m, rows / 2), "lm"), "right": ((cols - m, rows / 2), "rm"),
                 "top": ((cols / 2, m), "mt"), "bottom": ((cols / 2, rows - m), "mb")}
        for edge, text in edge_letters(proj).items():
            xy, anchor = spots[edge]
            _text(draw, xy, text, font, anchor, stroke=max(int(round(2 * unit)), 1))
            marks.letters[edge] = (text, xy)

    at = proj.isocenter_lps if scale_at_lps is None else np.asarray(scale_at_lps, float)
    length = SCALE_MM * float(proj.magnification(at[None])[0]) / proj.pose.pixel_mm
    if length < 0.6 * cols:
        x1, y = cols - 10 * unit, round(rows - 12 * unit)
        x0 = x1 - length
        w = max(int(round(2 * unit)), 1)
        # rectangles cover their corner pixels: the bar spans round(length) pixels
        x0, x1 = round(x0), round(x0) + round(length) - 1
        draw.rectangle([x0 - 1, y - 1, x1 + 1, y + w], fill=OUTLINE_RGB)
        draw.rectangle([x0, y, x1, y + w - 1], fill=(255, 255, 255))
        for x in (x0, x1 - w + 1):  # end ticks inside the bar's length
            draw.rectangle([x, y - 4 * unit, x + w - 1, y], fill=(255, 255, 255))
        _text(draw, ((x0 + x1) / 2, y - 5 * unit), f"{SCALE_MM:.0f} mm", _font(round(14 * unit)),
              "mb", colour=(255, 255, 255), stroke=max(int(round(1.5 * unit)), 1))
        marks.scale_px = length
    return np.asarray(pil), marks
