"""The printed plan: an A4 PDF to read at arm's length in a lead apron.

Page 1 (and on, if long): patient and study (or "ANONYMISED" in a teaching export), the
indication per target, levels, screws with halos, every planned trajectory with its status,
who planned it and when. Then one page per trajectory: the bull's-eye DRR (needle as a dot,
the screw's outline), the progression DRR (needle line, 10 mm ticks from the tip), axial and
along-needle CT reformats (15-ga needle, 1 and 2 mm clearance lines), a small 3-D view, the
key numbers in large type, the entry in words and in LPS, every view's angles with its
room-terms sentence, and every check with value, limit and status.

Every number printed comes from the plan *document* (:func:`fluoroplan.io.planfile.
plan_document`), i.e. the numbers the plan file holds. Images are stored losslessly (Flate)
and the fonts (DejaVu Sans, else reportlab's bundled Vera) are embedded.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from fluoroplan.geometry.carm import signed, table_from_lps, tilt_words
from fluoroplan.geometry.drr import AttenuationVolume, render_drr
from fluoroplan.geometry.fluoro_marks import NeedleMark, ScrewMark, patient_letters
from fluoroplan.io.plan_json import pose_from_json
from fluoroplan.io.planfile import check_series, plan_document
from fluoroplan.io.progress import ProgressCallback, no_progress
from fluoroplan.model.plan import format_check_value
from fluoroplan.planner.notes import notes_from_plan_json, plan_notes
from fluoroplan.report.teaching import WITHHELD, teaching_document, teaching_volume

__all__ = ["ReportInfo", "reformat_plane", "write_plan_pdf"]

# --- colours (RGB 0-255 for images, 0-1 for the PDF) -------------------------------------
NEEDLE = (255, 205, 0)
RING_1MM = (230, 30, 30)
RING_2MM = (0, 190, 255)
TICK = (230, 30, 30)
STATUS_RGB = {"pass": (0.05, 0.55, 0.15), "warn": (0.85, 0.45, 0.0),
              "unknown": (0.25, 0.35, 0.65), "fail": (0.8, 0.0, 0.0)}

DRR_FIELD_MM = 180.0  # detector field read out for the report's DRRs (about 120 mm at the target)
DRR_PX = 448
REFORMAT_PX = 360
RENDER3D_PX = 360
CT_WINDOW = (-500.0, 1500.0)  # HU shown black .. white in the reformats


# --- small drawing helpers (numpy only) ----------------------------------------------------
def _seg_dist(px: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of (..., 2) pixel coordinates to the segment ab."""
    ab = b - a
    L2 = float(ab @ ab)
    t = np.clip(((px - a) @ ab) / L2, 0.0, 1.0) if L2 > 0 else np.zeros(px.shape[:-1])
    return np.linalg.norm(px - (a + t[..., None] * ab), axis=-1)


def _polyline_dist(shape: tuple[int, int], pts: np.ndarray, reach: float) -> np.ndarray:
    """Distance (px) of every pixel to a polyline of (u, v) points, computed only within
    ``reach`` of it (inf elsewhere)."""
    rows, cols = shape
    d = np.full(shape, np.inf)
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        lo = np.floor(np.minimum(a, b) - reach).astype(int)
        hi = np.ceil(np.maximum(a, b) + reach).astype(int)
        u0, v0 = max(lo[0], 0), max(lo[1], 0)
        u1, v1 = min(hi[0], cols - 1), min(hi[1], rows - 1)
        if u1 < u0 or v1 < v0:
            continue
        vv, uu = np.mgrid[v0: v1 + 1, u0: u1 + 1]
        px = np.stack([uu, vv], axis=-1).astype(float)
        sub = d[v0: v1 + 1, u0: u1 + 1]
        np.minimum(sub, _seg_dist(px, a, b), out=sub)
    return d


def _paint(rgb: np.ndarray, mask: np.ndarray, colour, alpha: float = 1.0) -> None:
    if alpha >= 1.0:
        rgb[mask] = colour
    else:
        rgb[mask] = (rgb[mask] * (1 - alpha) + np.asarray(colour) * alpha).astype(np.uint8)


def _grey_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(grey, np.uint8)[..., None], 3, axis=2)


# --- DRRs ----------------------------------------------------------------------------------
def _drr(att: AttenuationVolume, block: dict, patient_position: str, iso_lps: np.ndarray,
         traj: dict, screws: list[dict]):
    """The view's noise-free frame with the marks every fluoroscopy image carries (side
    letters, 10 mm scale at the target, the needle to its final tip, the screw concerned)."""
    from dataclasses import replace

    pose = replace(pose_from_json(block, patient_position), detector_mm=(DRR_FIELD_MM,) * 2)
    needle = NeedleMark(np.asarray(traj["entry_lps"], float),
                        np.asarray(traj["target_lps"], float),
                        None if traj["contact_lps"] is None
                        else np.asarray(traj["contact_lps"], float))
    screw = _screw_for(traj, screws)
    marks = [] if screw is None else [ScrewMark(
        np.asarray(screw["head_lps"], float), np.asarray(screw["tip_lps"], float),
        float(screw["diameter_mm"]), float(screw.get("halo_mm") or 0.0),
        bool(screw.get("loose")))]
    drr = render_drr(att, pose, iso_lps, size=DRR_PX, trajectories=[needle], screws=marks,
                     scale_at_lps=needle.tip_lps)
    return np.array(drr.image), drr.projection


def _screw_for(traj: dict, screws: list[dict]) -> dict | None:
    """The screw a trajectory is about: its target screw, else one at its level and side."""
    tgt = traj["target"]
    if tgt["kind"] == "loose-screw":
        for s in screws:
            if s["id"] == tgt["ref"]:
                return s
    for s in screws:
        if s.get("level") == traj["level"] and s.get("side") == traj["side"]:
            return s
    return None


def bullseye_image(att, traj: dict, screws: list[dict], patient_position: str) -> np.ndarray:
    """Bull's-eye DRR centred on the final tip: the needle end-on as a ring around its dot,
    the screw concerned as a ring (screw and halo) when seen end-on, the letters and scale."""
    return _drr(att, traj["bullseye"], patient_position,
                np.asarray(traj["target_lps"], float), traj, screws)[0]


def _path_lps(traj: dict) -> np.ndarray:
    pts = [traj["entry_lps"]]
    if traj["contact_lps"] is not None:
        pts.append(traj["contact_lps"])
    pts.append(traj["target_lps"])
    return np.asarray(pts, float)


def _ticks_lps(traj: dict, step_mm: float = 10.0) -> list[tuple[float, np.ndarray]]:
    """Points every ``step_mm`` back along the path from the tip: (distance, point)."""
    path = _path_lps(traj)[::-1]  # tip first
    out, walked = [], 0.0
    for a, b in zip(path[:-1], path[1:], strict=True):
        seg = float(np.linalg.norm(b - a))
        k = int(np.floor(walked / step_mm)) + 1
        while k * step_mm <= walked + seg + 1e-9:
            s = k * step_mm - walked
            out.append((k * step_mm, a + (b - a) * (s / seg)))
            k += 1
        walked += seg
    return out


def progression_image(att, traj: dict, patient_position: str):
    """Progression DRR with the needle line and a tick every 10 mm from the tip. Returns the
    image and the ticks' (distance_mm, (u, v) px) for labels."""
    tip = np.asarray(traj["target_lps"], float)
    path = _path_lps(traj)
    rgb, proj = _drr(att, traj["progression"], patient_position, 0.5 * (path[0] + tip), traj,
                     [])
    shape = rgb.shape[:2]
    ticks = []
    for dist, p in _ticks_lps(traj):
        u = proj.detector_px_from_lps(p)
        # direction of the needle on the image at this point
        a = proj.detector_px_from_lps(p - 2.0 * _unit(np.asarray(traj["direction_lps"])))
        t = _unit(u - a) if np.linalg.norm(u - a) > 1e-6 else np.array([1.0, 0.0])
        normal = np.array([-t[1], t[0]])
        half = 11.0 if dist % 50 == 0 else 7.0
        m = _polyline_dist(shape, np.array([u - half * normal, u + half * normal]), 2.0) <= 1.3
        _paint(rgb, m, TICK)
        ticks.append((dist, u + (half + 9.0) * normal))
    return rgb, ticks


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


# --- reformats -----------------------------------------------------------------------------
def reformat_plane(volume, center_lps, right_lps, down_lps, size_px: int, px_mm: float,
                   order: int = 1) -> np.ndarray:
    """HU (float32, size x size) on the plane through ``center_lps`` spanned by the unit
    vectors ``right_lps`` (image columns) and ``down_lps`` (image rows), ``px_mm`` per pixel;
    -1024 outside the CT. Resampled with ``scipy.ndimage.map_coordinates``."""
    c = (np.arange(size_px) - (size_px - 1) / 2.0) * px_mm
    pts = (np.asarray(center_lps, float)[None, None, :]
           + c[None, :, None] * np.asarray(right_lps, float)[None, None, :]
           + c[:, None, None] * np.asarray(down_lps, float)[None, None, :])
    ijk = volume.ijk_from_lps_points(pts.reshape(-1, 3))
    kji = ijk[:, ::-1].T
    out = ndimage.map_coordinates(volume.hu, kji, order=order, mode="constant", cval=-1024.0,
                                  output=np.float32)
    return out.reshape(size_px, size_px)


def _room_axes(patient_position: str) -> tuple[np.ndarray, np.ndarray]:
    """(table-left, ceiling) directions in LPS: how the patient lies in the room."""
    lps_from_table = table_from_lps(patient_position).T
    return lps_from_table @ np.array([1.0, 0, 0]), lps_from_table @ np.array([0, -1.0, 0])


def _transverse_normal(traj: dict, screws: list[dict]) -> tuple[np.ndarray, str]:
    """Normal of the target vertebra's transverse plane: from the plane of its two screws when
    it has a converging pair, else the CT's axial plane."""
    at_level = [s for s in screws if s.get("level") == traj["level"]]
    if len(at_level) >= 2:
        a = _unit(np.subtract(at_level[0]["tip_lps"], at_level[0]["head_lps"]))
        b = _unit(np.subtract(at_level[1]["tip_lps"], at_level[1]["head_lps"]))
        n = np.cross(a, b)
        if np.linalg.norm(n) > np.sin(np.radians(8.0)):
            n = _unit(n)
            return (n if n[2] >= 0 else -n), f"{traj['level']} transverse plane"
    return np.array([0.0, 0.0, 1.0]), "CT axial plane"


def _direction_letter(v: np.ndarray) -> str:
    """The one letter (the strongest of L/R, P/A, H/F) of a reformat's edge."""
    return patient_letters(v)[0]


@dataclass
class Reformat:
    image: np.ndarray
    caption: str
    letters: dict  # edge -> letter ("left", "right", "top", "bottom")


def _reformat_image(volume, traj: dict, right: np.ndarray, down: np.ndarray, center: np.ndarray,
                    field_mm: float, radius_mm: float) -> np.ndarray:
    px_mm = field_mm / REFORMAT_PX
    hu = reformat_plane(volume, center, right, down, REFORMAT_PX, px_mm)
    lo, hi = CT_WINDOW
    grey = np.rint(np.clip((hu - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    rgb = _grey_rgb(grey)
    # the needle path projected onto the plane, in pixels
    path = _path_lps(traj) - center
    half = (REFORMAT_PX - 1) / 2.0
    uv = np.stack([path @ right / px_mm + half, path @ down / px_mm + half], axis=1)
    d_mm = _polyline_dist(rgb.shape[:2], uv, (radius_mm + 3.0) / px_mm) * px_mm
    tol = 0.6 * px_mm
    _paint(rgb, np.abs(d_mm - (radius_mm + 2.0)) <= tol, RING_2MM)
    _paint(rgb, np.abs(d_mm - (radius_mm + 1.0)) <= tol, RING_1MM)
    _paint(rgb, d_mm <= radius_mm, NEEDLE)
    return rgb


def reformats(volume, traj: dict, screws: list[dict], patient_position: str):
    """The axial (transverse plane of the vertebra) and along-needle (needle + cranial axis)
    reformats through the target, each with its caption and edge letters."""
    radius = float(traj["needle"]["outer_diameter_mm"]) / 2.0
    path = _path_lps(traj)
    tip = path[-1]
    span = float(np.linalg.norm(path[0] - tip))
    field_mm = float(np.clip(1.3 * span, 90.0, 220.0))
    table_left, ceiling = _room_axes(patient_position)
    # axial: seen from the feet with the ceiling up (as the patient lies on the table)
    n, how = _transverse_normal(traj, screws)
    up = _unit(ceiling - (ceiling @ n) * n)
    right = _unit(np.cross(up, n) if np.cross(up, n) @ table_left >= 0 else -np.cross(up, n))
    proj_entry = path[0] - ((path[0] - tip) @ n) * n
    center = 0.5 * (proj_entry + tip)
    axial = Reformat(_reformat_image(volume, traj, right, -up, center, field_mm, radius),
                     f"AXIAL: {how}",
                     {"right": _direction_letter(right), "left": _direction_letter(-right),
                      "top": _direction_letter(up), "bottom": _direction_letter(-up)})
    # along the needle: the plane holding the needle and the cranial axis, head up
    d = _unit(np.asarray(traj["direction_lps"], float))
    z = np.array([0.0, 0.0, 1.0])
    h = d - (d @ z) * z
    if np.linalg.norm(h) < 0.2:  # needle nearly cranio-caudal: use the table-left axis
        h = table_left
    h = _unit(h)
    up2 = _unit(z - (z @ h) * h)
    center2 = 0.5 * (path[0] + tip)
    along = Reformat(_reformat_image(volume, traj, h, -up2, center2, field_mm, radius),
                     "ALONG THE NEEDLE (head up)",
                     {"right": _direction_letter(h), "left": _direction_letter(-h),
                      "top": "H", "bottom": "F"})
    return axial, along, field_mm


# --- the words -----------------------------------------------------------------------------
def _check_value(traj: dict, name: str):
    for c in traj["checks"]:
        if c["name"] == name:
            return c["value"]
    return None


def entry_words(traj: dict, screws: list[dict]) -> str:
    """The skin entry said from landmarks: how far left/right of the spinous process line
    (the plan's "skin entry from the midline" check) and where along the spine relative to the
    nearest level's screw heads (or to the target when there are no screws)."""
    entry = np.asarray(traj["entry_lps"], float)
    tip = np.asarray(traj["target_lps"], float)
    level_screws = [s for s in screws if s.get("level") == traj["level"]]
    if screws:
        # screws of the nearest level (by head height) stand for that level
        by_level: dict[str, list[dict]] = {}
        for s in screws:
            by_level.setdefault(str(s.get("level")), []).append(s)
        if level_screws:  # the trajectory's own level first
            name, group = str(traj["level"]), level_screws
        else:
            name, group = min(by_level.items(), key=lambda kv: abs(
                np.mean([h["head_lps"][2] for h in kv[1]]) - entry[2]))
        heads = np.array([s["head_lps"] for s in group], float)
        mid_x = float(heads[:, 0].mean()) if len(group) >= 2 else float(tip[0])
        dz = float(entry[2] - heads[:, 2].mean())
        ref = f"the {name} screw head" + ("s" if len(group) > 1 else "")
    else:
        mid_x, dz, ref = float(tip[0]), float(entry[2] - tip[2]), "the target"
    lat = _check_value(traj, "skin entry from the midline")
    lat = abs(float(entry[0] - mid_x)) if not isinstance(lat, (int, float)) else float(lat)
    side = "left" if entry[0] - mid_x > 0 else "right"  # LPS +x is the patient's left
    where = ("on the spinous process line" if lat < 2.0
             else f"{lat:.0f} mm {side.upper()} of the spinous process line")
    along = (f"at the level of {ref}" if abs(dz) < 3.0
             else f"{abs(dz):.0f} mm {'toward the HEAD' if dz > 0 else 'toward the FEET'} "
                  f"from {ref}")
    return f"{where}, {along}"


def _fmt(v, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return f"{v:.{nd}f}"
    return str(v)


def _signed(v: float) -> str:
    return signed(v)


# --- the PDF ---------------------------------------------------------------------------------
_FONT_CANDIDATES = [
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
     "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf"),
]


def _register_fonts() -> tuple[str, str]:
    """Register an embeddable TTF pair: DejaVu Sans if installed, else reportlab's Vera."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if "FPSans" in pdfmetrics.getRegisteredFontNames():
        return "FPSans", "FPSans-Bold"
    pairs = list(_FONT_CANDIDATES)
    here = Path(__file__).resolve().parents[1] / "resources" / "fonts"
    pairs.append((str(here / "DejaVuSans.ttf"), str(here / "DejaVuSans-Bold.ttf")))
    import reportlab

    rl = Path(reportlab.__file__).parent / "fonts"
    pairs.append((str(rl / "Vera.ttf"), str(rl / "VeraBd.ttf")))
    for regular, bold in pairs:
        if os.path.isfile(regular) and os.path.isfile(bold):
            pdfmetrics.registerFont(TTFont("FPSans", regular))
            pdfmetrics.registerFont(TTFont("FPSans-Bold", bold))
            return "FPSans", "FPSans-Bold"
    raise RuntimeError("no TrueType font found to embed in the PDF (install fonts-dejavu-core)")


@dataclass
class ReportInfo:
    """What :func:`write_plan_pdf` wrote."""

    path: Path
    pages: int
    seconds: float
    notes: list[str] = field(default_factory=list)


class _Doc:
    """A reportlab canvas with the house layout: header, footer, wrapped text, a y cursor."""

    MARGIN = 12.0  # mm

    def __init__(self, path: Path, title: str, author: str, header: str, anonymize: bool):
        from reportlab import rl_config
        from reportlab.lib.pagesizes import A4
        from reportlab.lib.units import mm
        from reportlab.pdfgen import canvas

        rl_config.useA85 = 0  # binary streams: smaller, and no slow pure-Python ASCII85
        self.mm = mm
        self.W, self.H = A4
        self.font, self.bold = _register_fonts()  # embedded; no base-14 font is referenced
        self.c = canvas.Canvas(str(path), pagesize=A4, pageCompression=1,
                               invariant=1 if anonymize else 0,
                               initialFontName=self.font, initialFontSize=10)
        self.c.setTitle(title)
        self.c.setAuthor(author)
        self.c.setSubject("Cement augmentation plan (fluoroplan)")
        self.c.setCreator("fluoroplan")
        self.c.setKeywords("")
        self.header = header
        self.page = 0
        self.y = 0.0
        self.new_page()

    # layout in mm from the top-left corner
    def X(self, x_mm: float) -> float:
        return x_mm * self.mm

    def Y(self, y_mm: float) -> float:
        return self.H - y_mm * self.mm

    def new_page(self) -> None:
        if self.page:
            self.c.showPage()
        self.page += 1
        c = self.c
        c.setFillColorRGB(0, 0, 0)
        c.setFont(self.font, 8.5)
        c.drawString(self.X(self.MARGIN), self.Y(7.5), self.header)
        c.drawRightString(self.X(210 - self.MARGIN), self.Y(7.5), f"page {self.page}")
        c.setFont(self.font, 7.5)
        c.drawString(self.X(self.MARGIN), self.Y(292),
                     "fluoroplan plan - a planning aid; verify every view and depth on the "
                     "patient's own fluoroscopy.")
        c.setLineWidth(0.5)
        c.line(self.X(self.MARGIN), self.Y(9.5), self.X(210 - self.MARGIN), self.Y(9.5))
        self.y = 14.0

    def need(self, h_mm: float) -> None:
        if self.y + h_mm > 288.0:
            self.new_page()

    def text(self, x_mm: float, y_mm: float, s: str, size: float = 10, bold: bool = False,
             rgb=(0, 0, 0), right: bool = False) -> None:
        c = self.c
        c.setFillColorRGB(*rgb)
        c.setFont(self.bold if bold else self.font, size)
        if right:
            c.drawRightString(self.X(x_mm), self.Y(y_mm), s)
        else:
            c.drawString(self.X(x_mm), self.Y(y_mm), s)
        c.setFillColorRGB(0, 0, 0)

    def wrap(self, s: str, width_mm: float, size: float, bold: bool = False) -> list[str]:
        from reportlab.lib.utils import simpleSplit

        return simpleSplit(s, self.bold if bold else self.font, size, width_mm * self.mm)

    def para(self, x_mm: float, s: str, width_mm: float, size: float = 10, bold: bool = False,
             rgb=(0, 0, 0), lead: float = 1.25) -> None:
        """Wrapped text at the cursor; moves the cursor down."""
        step = size * lead * 0.3528  # pt -> mm
        for line in self.wrap(s, width_mm, size, bold):
            self.need(step)
            self.y += step
            self.text(x_mm, self.y, line, size, bold, rgb)

    def badge(self, x_mm: float, y_mm: float, status: str, size: float = 14) -> float:
        """A filled status box with the word in white; returns its width (mm)."""
        from reportlab.pdfbase.pdfmetrics import stringWidth

        word = status.upper()
        w = stringWidth(word, self.bold, size) / self.mm + 5.0
        h = size * 0.3528 * 1.35
        self.c.setFillColorRGB(*STATUS_RGB.get(status, (0.3, 0.3, 0.3)))
        self.c.rect(self.X(x_mm), self.Y(y_mm + 0.3 * h), w * self.mm, h * self.mm, stroke=0,
                    fill=1)
        self.text(x_mm + 2.5, y_mm, word, size, True, (1, 1, 1))
        return w

    def image(self, rgb: np.ndarray, x_mm: float, y_top_mm: float, w_mm: float) -> float:
        """Draw a numpy RGB image losslessly (Flate); returns its height (mm)."""
        from PIL import Image
        from reportlab.lib.utils import ImageReader

        h, w = rgb.shape[:2]
        h_mm = w_mm * h / w
        img = ImageReader(Image.fromarray(np.ascontiguousarray(rgb, np.uint8), "RGB"))
        self.c.drawImage(img, self.X(x_mm), self.Y(y_top_mm + h_mm), w_mm * self.mm,
                         h_mm * self.mm)
        return h_mm

    def save(self) -> None:
        self.c.showPage()
        self.c.save()


def _patient_lines(volume, anonymize: bool) -> list[str]:
    if anonymize:
        return ["Patient: ANONYMISED (teaching export)"]
    p = volume.patient or {}
    bd = str(p.get("birth_date") or "")
    if len(bd) == 8 and bd.isdigit():
        bd = f"{bd[:4]}-{bd[4:6]}-{bd[6:]}"
    return [f"Patient: {p.get('name') or '(no name)'}",
            f"ID: {p.get('id') or '(no ID)'}   Born: {bd or '-'}   Sex: {p.get('sex') or '-'}"]


def _header(volume, anonymize: bool) -> str:
    if anonymize:
        return "fluoroplan plan - ANONYMISED teaching export"
    p = volume.patient or {}
    return f"fluoroplan plan - {p.get('name') or '(no name)'} - ID {p.get('id') or '-'}"


def _cover(doc: _Doc, plan_doc: dict, volume, anonymize: bool, notes: list[str],
           read_first=()) -> None:
    L, W = doc.MARGIN, 210 - 2 * doc.MARGIN
    doc.y += 8
    doc.text(L, doc.y, "Cement augmentation plan", 24, True)
    doc.y += 10
    for line in _patient_lines(volume, anonymize):
        doc.text(L, doc.y, line, 14, True)
        doc.y += 7
    ids = volume.identifiers or {}
    series = plan_doc["series"]
    desc = ids.get("series_description") or series.get("series_description") or "-"
    study = f"Study date {ids.get('study_date') or '-'}  |  " if not anonymize else ""
    doc.para(L, f"{study}Series: {desc if not anonymize else WITHHELD}  |  CT patient "
             f"position: {series.get('patient_position')}  |  procedure position: "
             f"{plan_doc.get('procedure_position', 'HFP')}"
             + (f"  |  CT fingerprint {series.get('fingerprint')}" if not anonymize else ""),
             W, 10)
    if not anonymize:
        doc.para(L, f"Study UID {series.get('study_instance_uid')}  |  Series UID "
                 f"{series.get('series_instance_uid')}", W, 7.5)
        doc.para(L, f"Planned by {plan_doc['planner']}; created {plan_doc['created']}, last "
                 f"modified {plan_doc['modified']}", W, 10)
    else:
        doc.para(L, f"Planner, dates, UIDs and CT fingerprint {WITHHELD}: an anonymised "
                 "teaching copy.", W, 10)
    doc.y += 3

    doc.need(12)
    doc.y += 6
    doc.text(L, doc.y, "Indication", 14, True)
    for t in plan_doc["targets"]:
        doc.para(L + 2, f"{t['level']}: {t['description']}", W - 2, 11)
    levels = plan_doc["analysis"].get("levels") or []
    doc.para(L, "Levels in view: " + (", ".join(levels) if levels else "-"), W, 11, True)
    doc.y += 2

    screws = plan_doc["analysis"].get("screws") or []
    doc.need(14)
    doc.y += 6
    doc.text(L, doc.y, "Screws", 14, True)
    cols = [L + 2, L + 30, L + 48, L + 66, L + 96, L + 122, L + 148]
    doc.y += 6
    for x, h in zip(cols, ["screw", "level", "side", "diameter mm", "length mm", "halo mm",
                           "loose"], strict=True):
        doc.text(x, doc.y, h, 9, True)
    for s in screws:
        doc.need(5.5)
        doc.y += 5.5
        length = s.get("length_mm")
        if length is None:
            length = float(np.linalg.norm(np.subtract(s["tip_lps"], s["head_lps"])))
        vals = [s["id"], s.get("level", ""), s.get("side", ""), _fmt(s["diameter_mm"]),
                _fmt(length), _fmt(s.get("halo_mm")), "LOOSE" if s.get("loose") else "no"]
        for x, v in zip(cols, vals, strict=True):
            doc.text(x, doc.y, str(v), 10.5, bool(s.get("loose")),
                     STATUS_RGB["fail"] if s.get("loose") and v == "LOOSE" else (0, 0, 0))
    if not screws:
        doc.para(L + 2, "No screws were found.", W, 10.5)
    doc.y += 3

    doc.need(14)
    doc.y += 6
    doc.text(L, doc.y, "Planned trajectories", 14, True)
    doc.y += 6
    cols = [L + 2, L + 11, L + 25, L + 41, L + 100, L + 126, L + 148]
    for x, h in zip(cols, ["#", "level", "side", "approach", "target", "depth mm", "status"],
                    strict=True):
        doc.text(x, doc.y, h, 9, True)
    for n, t in enumerate(plan_doc["trajectories"], start=1):
        doc.need(6)
        doc.y += 6
        vals = [str(n), t["level"], t["side"], t["approach"] + (" (edited)" if t["edited"]
                                                                 else ""),
                f"{t['target']['ref']}", _fmt(t["depth_mm"], 2)]
        for x, v in zip(cols, vals, strict=False):
            doc.text(x, doc.y, v, 10.5)
        doc.badge(cols[-1], doc.y, t["status"], 9.5)
    if not plan_doc["trajectories"]:
        doc.para(L + 2, "No trajectory was planned.", W, 11)
    if plan_doc["no_safe_trajectory"]:
        doc.need(12)
        doc.y += 5
        doc.text(L, doc.y, "No safe trajectory", 12, True)
        for u in plan_doc["no_safe_trajectory"]:
            doc.para(L + 2, f"{u['target']['ref']} {u['approach']}: {u['reason']}", W - 2, 9.5)
    for note in notes:
        doc.para(L, note, W, 9, rgb=STATUS_RGB["warn"])
    measured = plan_doc.get("measurements") or []
    if measured:  # what the planner measured on the CT, as saved with the plan
        doc.need(12)
        doc.y += 8
        doc.text(L, doc.y, "Measurements", 12, True)
        doc.y += 1
        for m in measured:
            unit = " mm" if m["unit"] == "mm" else "\u00b0"
            doc.para(L + 2, f"{m['id']}: {m['kind']} {m['value']:.1f}{unit}"
                     + (f" on the {m['view']} reformat" if m.get("view") else ""), W - 2, 10)
    if read_first:
        # what the CT loader, the analysis and the plan say to mind: the workstation's Notes
        doc.need(16)
        doc.y += 10
        doc.text(L, doc.y, "Notes", 14, True)
        doc.y += 2
        where = {"CT": "CT", "analysis": "Analysis", "plan": "Plan"}
        for n in read_first:  # dark amber: readable on a greyscale print
            doc.para(L + 2, f"{where[n.source]}: {n.text}", W - 2, 9.5,
                     rgb=(0.6, 0.32, 0.0) if n.severity == "warn" else (0, 0, 0))


def _letters(doc: _Doc, x: float, y_top: float, size_mm: float, letters: dict) -> None:
    s = 9
    doc.text(x + size_mm / 2 - 1, y_top + 4, letters["top"], s, True, (1, 1, 0.2))
    doc.text(x + size_mm / 2 - 1, y_top + size_mm - 1.5, letters["bottom"], s, True, (1, 1, 0.2))
    doc.text(x + 1.2, y_top + size_mm / 2 + 1, letters["left"], s, True, (1, 1, 0.2))
    doc.text(x + size_mm - 1.2, y_top + size_mm / 2 + 1, letters["right"], s, True,
             (1, 1, 0.2), right=True)


def _trajectory_page(doc: _Doc, n: int, total: int, t: dict, volume, att, scene,
                     screws: list[dict], patient_position: str, note3d: str) -> None:
    L = doc.MARGIN
    W = 210 - 2 * L
    # title and status
    doc.text(L, 19.5, f"Trajectory {n} of {total}:  {t['level']} {t['side'].upper()}  "
                      f"{t['approach']}", 16, True)
    doc.badge(210 - L - 22, 19.5, t["status"], 16)
    doc.text(L, 25, f"{t['target_detail']['description']}"
             + ("   (edited by hand)" if t["edited"] else ""), 9.5)
    # key numbers, large
    y = 36.5
    needle = t["needle"]
    cells = [("DEPTH", f"{t['depth_mm']:.1f} mm"),
             (f"NEEDLE ({needle['gauge']} G)", f"{needle['length_mm']:.0f} mm"),
             ("OUTSIDE SKIN", f"{needle['length_mm'] - t['depth_mm']:.1f} mm")]
    if t["contact_lps"] is not None:
        cells.append(("SLIDE ON SCREW", f"{t['slide_mm']:.1f} mm"))
    cw = W / len(cells)
    for k, (label, value) in enumerate(cells):
        doc.text(L + k * cw, y - 6.5, label, 8, True, (0.3, 0.3, 0.3))
        doc.text(L + k * cw, y, value, 20, True)
    doc.y = y + 2
    e = t["entry_lps"]
    doc.para(L, f"Entry: {entry_words(t, screws)}.", W, 11.5, True)
    doc.para(L, f"Entry LPS ({e[0]:.1f}, {e[1]:.1f}, {e[2]:.1f}) mm; target LPS "
             f"({t['target_lps'][0]:.1f}, {t['target_lps'][1]:.1f}, {t['target_lps'][2]:.1f}) "
             f"mm; depth {t['depth_mm']:.2f} mm"
             + (f" ({t['insertion_mm']:.2f} mm to the screw, then {t['slide_mm']:.2f} mm along "
                "it)" if t["contact_lps"] is not None else ""), W, 8.5)

    # images: row 1 bull's-eye + progression, row 2 axial, along-needle, 3-D
    big, small, gap = 70.0, 47.0, 4.0
    xb = L + (W - 2 * big - gap) / 2
    xs = L + (W - 3 * small - 2 * gap) / 2
    y1 = doc.y + 6.5
    doc.text(xb, y1 - 1.2, "BULL'S-EYE", 11, True)
    doc.text(xb + big + gap, y1 - 1.2, "PROGRESSION", 11, True)
    be = bullseye_image(att, t, screws, patient_position)
    pg, ticks = progression_image(att, t, patient_position)
    doc.image(be, xb, y1, big)
    doc.image(pg, xb + big + gap, y1, big)
    scale = big / pg.shape[1]
    for dist, uv in ticks:  # tick labels every 20 mm
        if dist % 20 == 0 and 8 <= uv[0] < pg.shape[1] - 8 and 8 <= uv[1] < pg.shape[0] - 8:
            doc.text(xb + big + gap + uv[0] * scale - 2, y1 + uv[1] * scale + 1.2,
                     f"{dist:.0f}", 8, True, (0.85, 0.05, 0.05))
    y2 = y1 + big + 3
    doc.text(xb, y2, "yellow ring: needle end-on; red: tip; orange: screw", 7.5)
    pv = t.get("progression") or {}
    lateral = ("true lateral" if pv.get("true_lateral", True) else "NOT a true lateral")
    if "needle_length_fraction" in pv:
        lateral += f", needle at {100 * pv['needle_length_fraction']:.0f}% of its length"
    doc.text(xb + big + gap, y2, f"{lateral}; ticks every 10 mm from the tip", 7.5,
             rgb=(0, 0, 0) if pv.get("true_lateral", True) else STATUS_RGB["warn"])
    y3 = y2 + 3.5
    axial, along, field_mm = reformats(volume, t, screws, patient_position)
    for k, rf in enumerate((axial, along)):
        x = xs + k * (small + gap)
        doc.image(rf.image, x, y3, small)
        _letters(doc, x, y3, small, rf.letters)
        doc.text(x, y3 + small + 3, rf.caption, 7.5)
    x3 = xs + 2 * (small + gap)
    if scene is not None:
        doc.image(_render3d(scene, t), x3, y3, small)
        doc.text(x3, y3 + small + 3, "3-D: bone, metal (blue), needle", 7.5)
    else:
        doc.c.setFillColorRGB(0.93, 0.93, 0.93)
        doc.c.rect(doc.X(x3), doc.Y(y3 + small), small * doc.mm, small * doc.mm, stroke=0,
                   fill=1)
        doc.y = y3 + 5
        doc.para(x3 + 2, f"3-D view not available: {note3d}", small - 4, 8)
    doc.text(xs, y3 + small + 6.3, f"Reformats {field_mm:.0f} mm wide through the target; "
             "needle 15-ga (yellow), 1 mm (red) and 2 mm (cyan) clearance lines", 7.5)

    # views with room-terms sentences
    doc.y = y3 + small + 7.5
    for key, label in (("bullseye", "Bull's-eye"), ("working_view", "Working view"),
                       ("progression", "Progression")):
        v = t.get(key)
        if not v:
            continue
        doc.need(10)
        doc.y += 4.4
        doc.text(L, doc.y, f"{label}:", 10.5, True)
        doc.text(L + 33, doc.y, f"DICOM primary {_signed(v['primary_deg'])} deg, secondary "
                 f"{_signed(v['secondary_deg'])} deg;  table rotation "
                 f"{_signed(v['table_primary_deg'])}, angulation "
                 f"{_signed(v['table_secondary_deg'])}", 9)
        sentence = v["text"][0].upper() + v["text"][1:]
        if key == "working_view" and "reference_pose" in v:
            # the tilt from the reference in words, each angle's part toward a patient side
            ref = pose_from_json(v["reference_pose"], patient_position)
            words = tilt_words(ref, pose_from_json(v, patient_position))
            sentence += f". From the {v.get('reference', 'reference')}: {words}"
        doc.para(L + 33, sentence + ".", W - 33, 10, True, lead=1.1)
        if key == "progression" and v.get("true_lateral") is False and v.get("how"):
            doc.para(L + 33, v["how"][0].upper() + v["how"][1:] + ".", W - 33, 9,
                     rgb=STATUS_RGB["warn"])
    # checks
    doc.y += 2.5
    doc.need(8)
    cols = [L, L + 86, L + 118, L + 150]
    doc.y += 3.5
    for x, h in zip(cols, ["check", "value", "limit", "status"], strict=True):
        doc.text(x, doc.y, h, 8, True, (0.3, 0.3, 0.3))
    for c in t["checks"]:  # rows 3.05 mm apart in 8 pt: every check of a trajectory fits its page
        doc.need(3.05)
        doc.y += 3.05
        name = c["name"]
        if len(doc.wrap(name, 84, 8)) > 1:
            name = doc.wrap(name, 80, 8)[0] + "..."
        doc.text(cols[0], doc.y, name, 8)
        # "> 15 mm" for a distance beyond its search range: never a number not measured
        doc.text(cols[1], doc.y, format_check_value(c["value"], c["unit"], c.get("at_least"),
                                                    2, "-"), 8, True)
        doc.text(cols[2], doc.y, format_check_value(c["limit"], c["unit"], None, 2, "-"), 8)
        doc.badge(cols[3], doc.y, c["status"], 7)


def _reasons_pages(doc: _Doc, trajs: list[dict]) -> None:
    """After the trajectory pages: why each failed or warned check of each trajectory is so
    (what blocks it, which implant hides which landmark and the tilt that clears it), failures
    first - the words the checks table on each page has no room for."""
    items = [(n, t, [c for st in ("fail", "unknown", "warn") for c in t["checks"]
                     if c["status"] == st])
             for n, t in enumerate(trajs, start=1)]
    items = [it for it in items if it[2]]
    if not items:
        return
    L = doc.MARGIN
    W = 210 - 2 * L
    doc.new_page()
    doc.text(L, 19.5, "Warnings, failures and checks not made explained", 16, True)
    doc.y = 22.0
    for n, t, bad in items:
        doc.need(12)
        doc.y += 5.0
        doc.text(L, doc.y, f"Trajectory {n}: {t['level']} {t['side'].upper()} {t['approach']}",
                 10.5, True)
        for c in bad:
            doc.need(4)
            doc.y += 1.0
            doc.para(L + 2, f"{c['status'].upper()}  {c['name']} "
                     f"({format_check_value(c['value'], c['unit'], c.get('at_least'), 2, '-')}): "
                     f"{c['detail']}", W - 2, 8.5)


def _render3d(scene, t: dict) -> np.ndarray:
    from fluoroplan.geometry.render3d import Needle3D

    entry = np.asarray(t["entry_lps"], float)
    tip = np.asarray(t["target_lps"], float)
    aim = np.asarray(t["contact_lps"] or t["target_lps"], float)
    d_prog = np.asarray(t["progression"]["detector_dir_lps"], float)
    view = _unit(d_prog + 0.45 * _unit(entry - tip))  # the lateral, turned toward the entry
    span = float(np.linalg.norm(entry - tip))
    return scene.render([Needle3D(entry, aim, tip)], [tip], view_dir_lps=view,
                        focus_lps=0.5 * (entry + tip), field_mm=max(90.0, 1.25 * span))


def write_plan_pdf(plan, volume, path: str | os.PathLike, anonymize: bool = False,
                   progress: ProgressCallback | None = None) -> ReportInfo:
    """Write the plan's A4 PDF report to ``path`` (the same file the GUI and the CLI write).

    Parameters
    ----------
    plan : Plan
        The plan; its numbers are printed as its plan file holds them.
    volume : CTVolume
        The CT the plan was made on (refused otherwise: ``WrongSeriesError``).
    anonymize : bool
        Teaching export: the plan and the CT's identity go through
        :mod:`fluoroplan.report.teaching` (the function ``plan --anonymize`` writes its JSON
        with): no patient name, ID, birth date, series description or file name, UIDs, CT
        fingerprint, planner or times anywhere (text, PDF metadata with reportlab's fixed
        invariant dates, images).
    progress : callable(fraction, message), optional
    """
    t0 = time.perf_counter()
    progress = progress or no_progress
    path = Path(path)
    check_series(plan, volume)
    doc_json = plan_document(plan)
    if anonymize:  # what plan --anonymize writes as JSON; the CT keeps only its voxels
        doc_json = teaching_document(doc_json)
        volume = teaching_volume(volume)
    trajs = doc_json["trajectories"]
    screws = doc_json["analysis"].get("screws") or []
    # C-arm words and the room axes of the reformats are those of the procedure (prone by
    # default), whatever position the CT was acquired in
    position = doc_json.get("procedure_position") or "HFP"
    notes: list[str] = []
    progress(0.0, "Preparing the report")
    att = AttenuationVolume.from_ct(volume, levels=1)
    scene, note3d = None, ""
    if trajs:
        try:
            from fluoroplan.geometry.render3d import Render3DUnavailable, Scene3D

            region = np.array([p for t in trajs for p in (t["entry_lps"], t["target_lps"])])
            scene = Scene3D(volume, region, margin_mm=35.0, size_px=RENDER3D_PX)
        except Render3DUnavailable as err:
            note3d = str(err)
        except (ImportError, RuntimeError) as err:
            note3d = f"3-D rendering failed ({err})"
        if note3d:
            notes.append(f"The 3-D views are missing from this report: {note3d}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    title = "fluoroplan plan (anonymised)" if anonymize else "fluoroplan plan"
    author = "fluoroplan" if anonymize else str(doc_json["planner"])
    doc = _Doc(tmp, title, author, _header(volume, anonymize), anonymize)
    try:
        # the cover lists the targets without a safe path already
        _cover(doc, doc_json, volume, anonymize, notes, notes_from_plan_json(doc_json)
               + [n for n in plan_notes(plan) if not (n.about or "").startswith("target:")])
        for n, t in enumerate(trajs, start=1):
            progress(n / (len(trajs) + 1), f"Report page for {t['id']}")
            doc.new_page()
            _trajectory_page(doc, n, len(trajs), t, volume, att, scene, screws, position,
                             note3d)
        _reasons_pages(doc, trajs)
        pages = doc.page
        doc.save()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        if scene is not None:
            scene.close()
    progress(1.0, "Report written")
    return ReportInfo(path, pages, time.perf_counter() - t0, notes)
