"""The demo phantom: a synthetic instrumented spine CT with its exact ground truth.

``make_phantom`` draws a lower thoracic / lumbar spine (T11, T12 with ribs; L1..L4 by default)
inside a trunk with lungs, muscle, fat, skin and a CT table, adds titanium pedicle screws with
tulip heads, rods, one loose screw with a radiolucent halo, a vertebral compression fracture,
optionally an interbody cage and metal streaks, and returns the volume with its truth as data.

Anatomy is defined in patient LPS millimetres (+x patient's left, +y posterior, +z head); the
prone (HFP) and supine (HFS) variants hold identical anatomy and differ only in the table (under
the back when supine, under the belly when prone) and in the stored orientation.

HU used (before noise and partial volume): air -1000, lung -850, fat -100, skin 30, soft tissue
30, muscle 50, disc 88 (nucleus 72), CSF 15 (cord 35 at T11..L1), vertebral cortex 850-1150,
trabecular bone 150-250 (a sclerotic band of ~380 under a fractured endplate), rib cortex 750,
halo 20, PEEK 300, bone graft 400, table 150; metal is drawn at 6000 and clipped to 3071, so
every metal voxel reads 3071 and its partial-volume rim is bright.

Only the requested levels are drawn: the column does not continue above the first or below the
last level (the field of view leaves a soft-tissue margin there).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from fluoroplan.geometry.conventions import CT_CLIP_HU
from fluoroplan.io.volume import CTVolume
from fluoroplan.resources import phantom_sdf as S
from fluoroplan.resources.phantom_artifacts import add_metal_streaks

SCHEMA = "fluoroplan.phantom-truth/1"

HU_AIR = -1000.0
HU_LUNG = -850.0
HU_FAT = -100.0
HU_SKIN = 30.0
HU_SOFT = 30.0
HU_MUSCLE = 50.0
HU_DISC = 88.0
HU_NUCLEUS = 72.0
HU_CSF = 15.0
HU_CORD = 35.0
HU_HALO = 20.0
HU_SCLEROSIS = 380.0
HU_RIB_CORTEX = 750.0
HU_RIB_MARROW = 200.0
HU_PEEK = 300.0
HU_GRAFT = 400.0
HU_TABLE = 150.0
HU_METAL_DRAWN = 6000.0  # titanium/tantalum reconstruct far above the 12-bit range: clipped
SHELL_MM = 1.2  # cortical shell of vertebrae
BLOOMING_SIGMAS = 2.0
"""``blooming_mm`` is this many standard deviations of the scanner's Gaussian point-spread blur."""
TULIP_DIAMETER_MM = 12.0
TULIP_HEIGHT_MM = 15.0
ROD_SEAT_MM = 9.5  # rod centre: this far behind the screw head, along -axis, inside the tulip
CUFF_MM = 3.0  # cement cuff of an augmented screw: this much beyond the thread, plus lobes
CEMENT_HU = (1600.0, 2800.0)  # PMMA with barium sulphate (vertebroplasty, kyphoplasty)
CUFF_HU = (1900.0, 2600.0)
GENANT_LOSS = {0: (0.0, 0.0), 1: (0.21, 0.24), 2: (0.28, 0.37), 3: (0.42, 0.50)}

ProgressCallback = Callable[[float, str], None]


@dataclass(frozen=True)
class _Level:
    """Typical adult dimensions (mm, deg) of one level; the seed scales them slightly."""

    width: float  # body, left-right
    depth: float  # body, antero-posterior (mid-sagittal)
    height: float  # body, posterior height
    disc_below: float
    ped_w: float  # pedicle transverse width (isthmus, outer)
    ped_h: float  # pedicle height
    medial_deg: float  # pedicle convergence toward the midline
    canal_w: float
    canal_ap: float
    tp_len: float
    sp_len: float
    sp_h: float
    tilt_deg: float  # sagittal tilt: + turns the superior endplate toward anterior


LEVELS: dict[str, _Level] = {
    "T8": _Level(32, 27, 20, 6.0, 5.5, 12, 3, 15.0, 15.0, 18, 30, 10, -10),
    "T9": _Level(34, 28, 21, 6.0, 6.0, 13, 3, 15.5, 15.5, 17, 30, 11, -10),
    "T10": _Level(36, 29, 22, 6.5, 6.5, 14, 4, 16.0, 15.5, 15, 30, 12, -9),
    "T11": _Level(39, 30, 23, 7.0, 7.2, 15, 5, 17.0, 16.0, 11, 30, 14, -8),
    "T12": _Level(42, 30, 24, 8.0, 7.8, 15, 7, 18.5, 16.5, 8, 30, 16, -7),
    "L1": _Level(44, 31, 25, 9.0, 8.4, 15, 10, 21.0, 17.0, 18, 30, 18, -6),
    "L2": _Level(45, 32, 26, 9.5, 9.2, 14.5, 12, 22.0, 17.0, 22, 31, 19, -3),
    "L3": _Level(47, 33, 27, 10.0, 10.4, 14.5, 15, 23.0, 17.0, 25, 31, 20, 0),
    "L4": _Level(49, 34, 27, 10.0, 12.2, 14, 18, 23.0, 18.0, 22, 30, 19, 5),
    "L5": _Level(50, 34, 26, 10.0, 14.5, 14, 25, 24.0, 18.0, 20, 25, 17, 10),
}
ORDER = tuple(LEVELS)
STRUCTURE_CODES = {"canal": 1, "rib": 2, "ilium": 3}
"""Values of ``Phantom.structures``."""
SIDES = {"left": 1.0, "right": -1.0}


@dataclass(frozen=True)
class Phantom:
    """A synthetic CT and its ground truth.

    Attributes
    ----------
    volume : CTVolume
        ``hu`` int16 ``[k, j, i]`` in the stored (scanner) orientation, ``lps_from_ijk``.
    truth : dict
        JSON-serialisable ground truth (schema ``fluoroplan.phantom-truth/1``), LPS mm.
    labels : ndarray uint8 [k, j, i]
        Vertebra index (1..n, cranial to caudal, as ``truth["vertebrae"][n]["index"]``) of each
        vertebral bone voxel; 0 elsewhere, including ribs, discs, canal, metal and halo.
    metal : ndarray bool [k, j, i]
        True metal (screws, tulips, rods, titanium cage, tantalum beads), before artifacts.
    structures : ndarray uint8 [k, j, i]
        What else was drawn, voxel by voxel (``STRUCTURE_CODES``): the spinal canal's lumen
        (where its fluid was painted and no metal later was), the ribs, the ilia. The truth a
        canal, rib or pelvis finder is measured against: what the phantom drew, never a shape
        parameter.
    """

    volume: CTVolume
    truth: dict
    labels: np.ndarray
    metal: np.ndarray
    structures: np.ndarray | None = None


# --- vertebra geometry -----------------------------------------------------------------------
Part = tuple[np.ndarray, np.ndarray, Callable]  # local AABB lo, hi, sdf(u, v, w)


@dataclass
class _Vertebra:
    label: str
    index: int
    W: float
    D: float
    H: float
    pw: float
    ph: float
    cw: float
    ap: float
    tpl: float
    spl: float
    sph: float
    tilt_deg: float
    medial: dict
    disc_below: float
    cortical_hu: float
    trab_hu: float
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    axes: np.ndarray = field(default_factory=lambda: np.eye(3))  # columns u (left), v (post), w (sup)
    frac: float = 0.0  # anterior height loss fraction (fracture)
    disc_above: float = 8.0
    parts: list = field(default_factory=list)

    @property
    def thoracic(self) -> bool:
        return self.label.startswith("T")

    @property
    def v_canal(self) -> float:
        return self.D / 2 + self.ap / 2

    def top(self, v):
        """Superior endplate height (local w) at local v (wedge when fractured)."""
        return self.H / 2 - self.frac * self.H * np.clip((self.D / 2 - v) / self.D, 0.0, 1.0)

    def lps(self, p_local) -> np.ndarray:
        return self.center + self.axes @ np.asarray(p_local, float)

    def dir_lps(self, d_local) -> np.ndarray:
        return self.axes @ np.asarray(d_local, float)

    # pedicle axis (local): isthmus point and posterior->anterior direction
    def pedicle(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        s = SIDES[side]
        th = math.radians(self.medial[side])
        p = np.array([s * (self.cw / 2 + self.pw / 2 + 0.3), self.D / 2 + 0.3 * self.ap,
                      self.H / 2 - self.ph / 2 - 1.0])
        d = np.array([-s * math.sin(th), -math.cos(th), 0.0])
        return p, d

    def body_sdf(self, u, v, w):
        W, D, H = self.W, self.D, self.H
        t = np.clip(2.0 * w / H, -1.0, 1.0)
        waist = 1.0 - 0.04 * (1.0 - t * t)
        de = S.ellipse(u, v - 2.0, (W / 2) * waist, (D / 2 + 2.0) * waist)
        dp = v - (D / 2 + 3.0 * (2.0 * u / W) ** 2)
        dz = np.maximum(w - self.top(v), -H / 2 - w)
        return np.maximum(np.maximum(de, dp), dz).astype(np.float32)

    def build_parts(self) -> None:
        W, D, H, cw, ap = self.W, self.D, self.H, self.cw, self.ap
        vc = self.v_canal
        lt = 5.0 if self.thoracic else 6.0
        parts: list[Part] = [(np.array([-W / 2, -D / 2, -H / 2]), np.array([W / 2, D / 2 + 3, H / 2]),
                              self.body_sdf)]
        for side, s in SIDES.items():
            p, d = self.pedicle(side)
            th = math.radians(self.medial[side])
            s1 = (p[1] - (D / 2 - 9.0)) / math.cos(th)
            s0 = -((D / 2 + ap + 2.0) - p[1]) / math.cos(th)
            e1 = S.unit(np.cross(d, [0.0, 0.0, 1.0]))
            a, b = p + s0 * d, p + s1 * d
            r = max(self.pw, self.ph) / 2 + 0.5
            lo, hi = np.minimum(a, b) - r, np.maximum(a, b) + r

            def ped(u, v, w, p=p, d=d, e1=e1, s0=s0, s1=s1):
                du, dv, dw = u - p[0], v - p[1], w - p[2]
                sa = du * d[0] + dv * d[1]
                q1 = du * e1[0] + dv * e1[1]
                de = S.ellipse(q1, dw, self.pw / 2, self.ph / 2)
                return np.maximum(de, np.maximum(s0 - sa, sa - s1))

            parts.append((lo, hi, ped))
            # superior and inferior articular processes
            sap = (np.array([s * (cw / 2 + 7.0), vc + 1.0, 2.0]),
                   np.array([s * (cw / 2 + 8.0), vc + 3.0, H / 2 + self.disc_above * 0.5 + 3.0]), 4.0)
            iap = (np.array([s * (cw / 2 + 1.5), vc + ap / 2 + 2.0, -H / 4]),
                   np.array([s * (cw / 2 + 2.0), vc + ap / 2 + 3.0, -H / 2 - self.disc_below * 0.5 - 3.0]),
                   3.5)
            for a, b, r in (sap, iap):
                parts.append((np.minimum(a, b) - r, np.maximum(a, b) + r,
                              lambda u, v, w, a=a, b=b, r=r: S.capsule(u, v, w, a, b, r)))
            # transverse process: a flat plate (lumbar), short and posterolateral (thoracic)
            root = np.array([s * (cw / 2 + self.pw * 0.6), vc + 2.0, 1.0])
            if self.thoracic:
                root = np.array([s * (cw / 2 + self.pw * 0.6), vc + 3.0, 3.0])
                end = root + np.array([s * 0.75 * self.tpl, 0.65 * self.tpl, 0.0])
                hs, hu_, rr = 3.5, 4.0, 3.0
            else:
                end = root + np.array([s * self.tpl, 2.0 + 0.12 * self.tpl, -1.0])
                hs, hu_, rr = 2.8, 4.5, 2.5
            m = max(hs, hu_) + 0.5
            parts.append((np.minimum(root, end) - m, np.maximum(root, end) + m,
                          lambda u, v, w, a=root, b=end, hs=hs, hu_=hu_, rr=rr:
                          S.box_along(u, v, w, a, b, (0.0, 1.0, 0.0), hs, hu_, rr)))
        # laminae: the posterior half of a ring around the canal, sloping caudally
        w_lo = -H / 2 - 3.0 - 0.25 * (ap / 2 + lt) - 1.0

        def lamina(u, v, w):
            ring = np.maximum(S.ellipse(u, v - vc, cw / 2 + lt, ap / 2 + lt),
                              -S.ellipse(u, v - vc, cw / 2, ap / 2))
            wl = w + 3.0 + 0.25 * (v - vc)
            return np.maximum(np.maximum(ring, (vc - 1.0) - v), np.abs(wl) - (H / 2 - 2.0))

        parts.append((np.array([-(cw / 2 + lt), vc - 1.0, w_lo]),
                      np.array([cw / 2 + lt, vc + ap / 2 + lt, H / 2]), lamina))
        # spinous process
        a, b = self.spinous_ends()
        hs = 2.6 if self.thoracic else 3.2
        m = max(hs, self.sph / 2) + 0.5
        parts.append((np.minimum(a, b) - m, np.maximum(a, b) + m,
                      lambda u, v, w: S.box_along(u, v, w, a, b, (1.0, 0.0, 0.0), hs, self.sph / 2, 2.0)))
        self.parts = parts

    def spinous_ends(self) -> tuple[np.ndarray, np.ndarray]:
        lt = 5.0 if self.thoracic else 6.0
        base_v = self.v_canal + self.ap / 2 + lt - 3.0
        slope = 0.45 if self.thoracic else 0.25
        a = np.array([0.0, base_v, -1.0])
        b = np.array([0.0, base_v + self.spl, -1.0 - self.spl * slope])
        return a, b

    def sdf(self, u, v, w):
        """Union of all parts at arbitrary local points (used for the screw entry search)."""
        out = np.full(np.broadcast(u, v, w).shape, S.BIG, np.float32)
        for _, _, fn in self.parts:
            out = S.smin(out, fn(u, v, w), 1.5)
        return out

    def local_box(self) -> tuple[np.ndarray, np.ndarray]:
        los = np.array([p[0] for p in self.parts])
        his = np.array([p[1] for p in self.parts])
        return los.min(axis=0) - 2.0, his.max(axis=0) + 2.0


# --- spine layout --------------------------------------------------------------------------
def _make_column(rng: np.random.Generator, levels: tuple[str, ...], y_spine: float):
    """All levels T8..L5 stacked with seed variation; returns {label: _Vertebra} (requested)."""
    body_scale = rng.uniform(0.95, 1.05)
    ped_scale = rng.uniform(0.94, 1.06)
    lordosis = rng.uniform(0.75, 1.2)
    cortical = rng.uniform(900.0, 1100.0)
    trab = rng.uniform(170.0, 230.0)
    column = []
    for label in ORDER:
        L = LEVELS[label]
        j = lambda lo, hi: rng.uniform(lo, hi)  # noqa: E731
        vt = _Vertebra(
            label=label, index=0,
            W=L.width * body_scale * j(0.98, 1.02), D=L.depth * body_scale * j(0.98, 1.02),
            H=L.height * body_scale * j(0.98, 1.02),
            pw=L.ped_w * ped_scale * j(0.98, 1.02), ph=L.ped_h * j(0.97, 1.03),
            cw=L.canal_w * j(0.96, 1.04), ap=L.canal_ap * j(0.96, 1.04),
            tpl=L.tp_len * j(0.9, 1.1), spl=L.sp_len * j(0.9, 1.1), sph=L.sp_h * j(0.93, 1.07),
            tilt_deg=L.tilt_deg * lordosis + j(-1.0, 1.0),
            medial={"left": L.medial_deg + j(-3.0, 3.0), "right": L.medial_deg + j(-3.0, 3.0)},
            disc_below=L.disc_below * j(0.95, 1.05),
            cortical_hu=cortical + j(-50.0, 50.0), trab_hu=trab + j(-20.0, 20.0),
        )
        coronal, axial = j(-1.5, 1.5), j(-2.0, 2.0)
        vt.axes = S.rot_z(axial) @ S.rot_x(vt.tilt_deg) @ S.rot_y(coronal)
        column.append(vt)
    # stack: centre of each next body one half height + disc + half height below
    column[0].center = np.zeros(3)
    for a, b in zip(column[:-1], column[1:], strict=True):
        wa, wb = a.axes[:, 2], b.axes[:, 2]
        b.center = a.center - wa * a.H / 2 - S.unit(wa + wb) * a.disc_below - wb * b.H / 2
        b.disc_above = a.disc_below
    chosen = [v for v in column if v.label in levels]
    top = chosen[0].lps([0, 0, chosen[0].H / 2])[2]
    bottom = chosen[-1].lps([0, 0, -chosen[-1].H / 2])[2]
    shift = np.array([-np.mean([v.center[0] for v in chosen]),
                      y_spine - np.mean([v.center[1] for v in chosen]), -(top + bottom) / 2])
    for v in column:
        v.center = v.center + shift
    return column


# --- helpers -------------------------------------------------------------------------------
def _local_canvas(grid: S.Grid, vt: _Vertebra, lo, hi, margin):
    box = S.frame_box(grid, vt.center, vt.axes, lo, hi, margin)
    if box is None:
        return None
    X, Y, Z = grid.coords(box)
    return box, S.to_local(X, Y, Z, vt.center, vt.axes)


def _superellipse2(X, Y, a, b, p, cy=0.0):
    """Approximate signed distance (mm) to |x/a|^p + |(y-cy)/b|^p = 1 in 2-D."""
    ax, ay = np.abs(X) / a, np.abs(Y - cy) / b
    ax = np.maximum(ax, 1e-6)
    ay = np.maximum(ay, 1e-6)
    s = ax**p + ay**p
    n = s ** (1.0 / p)
    gx = n ** (1 - p) * ax ** (p - 1) / a
    gy = n ** (1 - p) * ay ** (p - 1) / b
    return ((n - 1.0) / np.sqrt(gx * gx + gy * gy)).astype(np.float32)


def _paint_sdf(hu, labels, grid, box, sdf, value, label=None, clear_label=False):
    a = S.alpha(sdf, grid.ramp_mm)
    S.paint(hu, box, a, value)
    if label is not None:
        labels[box][sdf <= 0] = label
    if clear_label:
        labels[box][sdf <= 0] = 0


def _f(v) -> list[float]:
    return [round(float(x), 4) for x in np.asarray(v, float).ravel()]


# --- the generator ---------------------------------------------------------------------------
def make_phantom(
    seed: int = 0,
    *,
    shape_ijk: tuple[int, int, int] = (512, 512, 300),
    pixel_mm: float = 0.75,
    slice_mm: float = 1.0,
    patient_position: str = "HFP",
    levels: tuple[str, ...] = ("T11", "T12", "L1", "L2", "L3", "L4"),
    instrumented: tuple[str, ...] = ("L1", "L2", "L3"),
    loose_screw: str | None = "L2-left",
    halo_mm: float = 2.0,
    fracture_level: str | None = "L4",
    fracture_grade: int = 2,
    cage: tuple[str, str] | None = None,
    cage_material: str = "titanium",
    cage_subsidence_mm: float = 0.0,
    screw_diameter_mm: float = 6.5,
    screw_length_mm: float = 45.0,
    rod_diameter_mm: float = 5.5,
    streaks: bool = False,
    blooming_mm: float = 0.0,
    noise_hu: float = 15.0,
    crosslinks: tuple[str, ...] = (),
    crosslink_section_mm: tuple[float, float] = (5.0, 10.0),
    cement: tuple[str, ...] = (),
    augmented_screw: str | None = None,
    pelvis: bool = False,
    progress: ProgressCallback | None = None,
) -> Phantom:
    """Generate the synthetic instrumented spine CT and its ground truth.

    Parameters
    ----------
    seed : int
        Varies dimensions (+-5 % globally, +-2 % per level), sagittal/coronal/axial alignment,
        pedicle and screw angles, bone density, trunk size and the noise.
    shape_ijk : (ni, nj, nk)
        Columns, rows, slices. The default 512 x 512 x 300 at 0.75 x 0.75 x 1 mm covers
        384 x 384 x 300 mm; the default six levels span about 200 mm, centred in z.
    pixel_mm, slice_mm : float
        In-plane pixel size and slice spacing (mm).
    patient_position : "HFP" (prone, the procedure's position) or "HFS" (supine).
        Stored orientation is the one scanners write: HFS row (1,0,0) column (0,1,0) (patient's
        back at the bottom of the image); HFP row (-1,0,0) column (0,-1,0), so that the prone
        patient is displayed as lying, back up, with the table at the bottom of the image.
        Slices run toward the head (+z) in both.
    levels : consecutive labels from T8..L5, cranial to caudal.
    instrumented : consecutive levels (2 or more) that receive bilateral screws and rods.
    loose_screw : ``"<level>-<left|right>"`` or None; that screw has a halo of ``halo_mm``
        (radiolucent, 20 HU) around its threaded shaft, inside bone only.
    fracture_level, fracture_grade : Genant grade 1 (20-25 %), 2 (25-40 %), 3 (> 40 %)
        anterior height loss, wedge shaped (posterior height kept); None or grade 0 for none.
    cage : (upper, lower) adjacent levels or None; ``cage_material`` "titanium" (open box,
        walls metal, graft inside) or "peek" (300 HU with three 1.5 mm tantalum beads);
        ``cage_subsidence_mm`` sinks it into the lower level's superior endplate.
    screw_diameter_mm, screw_length_mm : shaft (outer thread) diameter and length (head to tip).
    rod_diameter_mm : rod diameter.
    streaks : draw metal streak artifacts.
    blooming_mm : metal blooming: the whole image is blurred with the scanner's Gaussian
        point-spread function of sigma ``blooming_mm / 2`` before the 12-bit clip, so metal's
        bright rim (above ~2 % of its contrast) reaches ``blooming_mm`` beyond its surface;
        0 for the sharp scanner of the partial-volume ramp alone.
    noise_hu : standard deviation of the Gaussian noise.
    crosslinks : instrumented levels that carry a transverse rod connector (cross-link): a
        straight titanium bar running left-right between the rods, behind them, clamped onto
        both rods halfway between this level's rod seats and the next instrumented level's
        (the level above for the last one). Truth: ``truth["crosslinks"]``.
    crosslink_section_mm : (antero-posterior thickness, cranio-caudal width) of the bar; equal
        values draw a round bar of that diameter.
    cement : levels whose body holds bone cement from a previous vertebroplasty: a lobulated
        PMMA blob (1600-2800 HU, about 1.5-3 ml, its core above 2400) in the anterior two thirds of the body's lower
        half, with a thin tongue leaking into the disc below. Truth: ``truth["cement"]``.
    augmented_screw : ``"<level>-<left|right>"`` or None: that screw is cement-augmented, a
        PMMA cuff (1900-2600 HU) around its distal half and a few mm beyond its tip, in bone
        only (``truth["cement"]`` and the screw's ``"cement_augmented"``).
    Cement is not metal (not in ``Phantom.metal``) and keeps its vertebra's label.
    pelvis : draw both ilia beside L5 (``levels`` must end at "L5"): curved iliac wings, their
        crest at about the L4-L5 disc, the posterior superior iliac spine lateral and posterior
        to L5's transverse processes (``fluoroplan.resources.phantom_pelvis``); their voxels are
        ``STRUCTURE_CODES["ilium"]`` in ``structures``. Truth: ``truth["pelvis"]``.
    progress : ``progress(fraction, message)`` callback.
    """
    t_start = time.perf_counter()
    progress = progress or (lambda f, m: None)
    _validate(levels, instrumented, loose_screw, fracture_level, fracture_grade, cage,
              cage_material, patient_position)
    _validate_extras(levels, instrumented, loose_screw, crosslinks, crosslink_section_mm, cement,
                     augmented_screw)
    if pelvis and levels[-1] != "L5":
        raise ValueError(f"pelvis=True draws the ilia beside L5: levels must end at 'L5', not {levels[-1]!r}")
    rng = np.random.default_rng(seed)
    grid = S.Grid(shape_ijk, pixel_mm, slice_mm)
    hu = np.full(grid.shape_kji, HU_AIR, np.float32)
    labels = np.zeros(grid.shape_kji, np.uint8)
    metal = np.zeros(grid.shape_kji, bool)
    structures = np.zeros(grid.shape_kji, np.uint8)

    # trunk (the same along z), seeded size
    ta, tb = 150.0 * rng.uniform(0.95, 1.05), 105.0 * rng.uniform(0.95, 1.05)
    y_spine = 14.0 + rng.uniform(-4.0, 4.0)  # skin ~75-85 mm behind the posterior body wall
    column = _make_column(rng, levels, y_spine)
    by_label = {v.label: v for v in column}
    verts = [by_label[lbl] for lbl in levels]
    for n, vt in enumerate(verts, start=1):
        vt.index = n
    if fracture_level and fracture_grade:
        lo, hi = GENANT_LOSS[int(fracture_grade)]
        by_label[fracture_level].frac = float(rng.uniform(lo, hi))
    for vt in column:
        vt.build_parts()
    progress(0.05, "Drawing the trunk")

    _draw_trunk(hu, grid, ta, tb, verts, by_label, patient_position)
    progress(0.15, "Drawing the lungs")
    _draw_lungs(hu, grid, ta, tb, by_label)
    progress(0.2, "Drawing discs and ribs")
    for up, lo_ in zip(verts[:-1], verts[1:], strict=True):
        _draw_disc(hu, grid, up, lo_)
    rib_heads = {}
    for vt in verts:
        if vt.thoracic:
            rib_heads[vt.label] = _draw_ribs(hu, grid, vt, ta, tb, structures)
    pelvis_truth = None
    if pelvis:
        from fluoroplan.resources.phantom_pelvis import draw_pelvis

        pelvis_truth = draw_pelvis(hu, grid, by_label["L5"], structures, STRUCTURE_CODES["ilium"],
                                   np.random.default_rng([seed, 19]))
    progress(0.3, "Drawing vertebrae")
    for vt in verts:
        _draw_vertebra(hu, labels, grid, vt)
    # a vertebra drawn over a rib head takes it: the rib is what stays outside the vertebrae
    structures[(labels > 0) & (structures == STRUCTURE_CODES["rib"])] = 0
    if pelvis:
        structures[(labels > 0) & (structures == STRUCTURE_CODES["ilium"])] = 0
    for n, vt in enumerate(verts):
        _draw_canal(hu, labels, grid, vt, first=(n == 0), last=(n == len(verts) - 1),
                    structures=structures)
    progress(0.5, "Placing implants")

    cages = []
    if cage is not None:
        cages.append(_draw_cage(hu, labels, metal, grid, by_label[cage[0]], by_label[cage[1]],
                                cage_material, cage_subsidence_mm, rng))
    cements = [_draw_cement(hu, grid, by_label[lvl], np.random.default_rng([seed, 13, n]))
               for n, lvl in enumerate(cement)]
    screws, rods = _draw_instrumentation(
        hu, labels, metal, grid, by_label, instrumented, loose_screw, halo_mm,
        screw_diameter_mm, screw_length_mm, rod_diameter_mm, rng,
        augmented=(augmented_screw, np.random.default_rng([seed, 17]), cements))
    links = [_draw_crosslink(hu, labels, metal, grid, screws, instrumented, lvl,
                             crosslink_section_mm, rod_diameter_mm) for lvl in crosslinks]
    structures[metal] = 0  # metal drawn into the canal or a rib is metal, not lumen or bone
    progress(0.65, "Artifacts and noise")
    if streaks:
        add_metal_streaks(hu, metal, grid.x, grid.y, np.random.default_rng([seed, 7]))
    if blooming_mm > 0:
        _blur_psf(hu, grid, blooming_mm)
    # noise (chunked to bound memory), clip, store
    noise_rng = np.random.default_rng([seed, 11])
    out = np.empty(grid.shape_kji, np.int16)
    step = 16
    for k0 in range(0, grid.shape_kji[0], step):
        chunk = hu[k0:k0 + step]
        if noise_hu > 0:
            chunk += noise_rng.standard_normal(chunk.shape, dtype=np.float32) * np.float32(noise_hu)
        np.clip(chunk, -1024, CT_CLIP_HU, out=chunk)
        out[k0:k0 + step] = np.rint(chunk)
    del hu
    progress(0.9, "Writing the truth")

    if patient_position == "HFP":
        out = np.ascontiguousarray(out[:, ::-1, ::-1])
        labels = np.ascontiguousarray(labels[:, ::-1, ::-1])
        metal = np.ascontiguousarray(metal[:, ::-1, ::-1])
        structures = np.ascontiguousarray(structures[:, ::-1, ::-1])
        affine = np.eye(4)
        affine[0, 0] = affine[1, 1] = -grid.pixel_mm
        affine[2, 2] = grid.slice_mm
        affine[:3, 3] = (grid.x[-1], grid.y[-1], grid.z[0])
    else:
        affine = grid.lps_from_ijk()

    params = {
        "shape_ijk": [int(n) for n in shape_ijk], "pixel_mm": float(pixel_mm),
        "slice_mm": float(slice_mm), "levels": list(levels), "instrumented": list(instrumented),
        "loose_screw": loose_screw, "halo_mm": float(halo_mm), "fracture_level": fracture_level,
        "fracture_grade": int(fracture_grade) if fracture_level else 0,
        "cage": list(cage) if cage else None, "cage_material": cage_material,
        "cage_subsidence_mm": float(cage_subsidence_mm),
        "screw_diameter_mm": float(screw_diameter_mm), "screw_length_mm": float(screw_length_mm),
        "rod_diameter_mm": float(rod_diameter_mm), "streaks": bool(streaks),
        "blooming_mm": float(blooming_mm), "noise_hu": float(noise_hu),
        **({"crosslinks": list(crosslinks),
            "crosslink_section_mm": [float(x) for x in crosslink_section_mm]} if crosslinks else {}),
        **({"cement": list(cement)} if cement else {}),
        **({"augmented_screw": augmented_screw} if augmented_screw else {}),
        **({"pelvis": True} if pelvis else {}),
        "trunk_semi_axes_mm": [round(ta, 3), round(tb, 3)],
        "hu": {"cortex": "850-1150", "trabecular": "150-250", "disc": HU_DISC, "csf": HU_CSF,
               "halo": HU_HALO, "lung": HU_LUNG, "fat": HU_FAT, "muscle": HU_MUSCLE,
               "metal": CT_CLIP_HU},
    }
    truth = {
        "schema": SCHEMA, "seed": int(seed), "patient_position": patient_position,
        "params": params,
        "vertebrae": [_vertebra_truth(vt, rib_heads.get(vt.label)) for vt in verts],
        "screws": screws, "rods": rods, "cages": cages,
        "crosslinks": links, "cement": cements,
        **({"pelvis": pelvis_truth} if pelvis else {}),
    }
    from pydicom.uid import generate_uid

    tag = f"fluoroplan-phantom-{seed}-{patient_position}-{json.dumps(params, sort_keys=True)}"
    identifiers = {
        "study_instance_uid": str(generate_uid(entropy_srcs=[tag, "study"])),
        "series_instance_uid": str(generate_uid(entropy_srcs=[tag, "series"])),
        "frame_of_reference_uid": str(generate_uid(entropy_srcs=[tag, "for"])),
        "series_description": f"Phantom spine {slice_mm:g}mm {patient_position}",
        "modality": "CT", "kernel": "BONE", "study_date": "20260101",
    }
    patient = {"name": "PHANTOM^SPINE", "id": f"FP-PHANTOM-{seed}", "birth_date": "19500101",
               "sex": "F"}
    volume = CTVolume(hu=out, lps_from_ijk=affine, patient_position=patient_position,
                      identifiers=identifiers, patient=patient,
                      notes=["synthetic phantom (fluoroplan.resources.phantom)"])
    progress(1.0, f"Phantom ready in {time.perf_counter() - t_start:.1f} s")
    return Phantom(volume=volume, truth=truth, labels=labels, metal=metal, structures=structures)


def _validate_extras(levels, instrumented, loose_screw, crosslinks, section, cement,
                     augmented_screw) -> None:
    for lvl in crosslinks:
        if lvl not in instrumented:
            raise ValueError(f"crosslink level {lvl!r} is not instrumented")
    if len(section) != 2 or min(section) <= 0:
        raise ValueError("crosslink_section_mm must be (thickness, width), both > 0")
    for lvl in cement:
        if lvl not in levels:
            raise ValueError(f"cement level {lvl!r} is not drawn")
    if augmented_screw is not None:
        lvl, _, side = augmented_screw.rpartition("-")
        if lvl not in instrumented or side not in SIDES:
            raise ValueError(f"augmented_screw {augmented_screw!r} is not one of the screws")
        if augmented_screw == loose_screw:
            raise ValueError("a cement-augmented screw has no halo: it cannot be the loose one")


def _validate(levels, instrumented, loose_screw, fracture_level, fracture_grade, cage,
              cage_material, patient_position) -> None:
    def consecutive(seq, what):
        if not seq:
            raise ValueError(f"{what} must not be empty")
        for s in seq:
            if s not in LEVELS:
                raise ValueError(f"unknown level {s!r} in {what}; known: {', '.join(ORDER)}")
        idx = [ORDER.index(s) for s in seq]
        if idx != list(range(idx[0], idx[0] + len(idx))):
            raise ValueError(f"{what} must be consecutive, cranial to caudal: {seq}")

    consecutive(levels, "levels")
    if len(levels) < 2:
        raise ValueError("at least two levels are needed")
    if instrumented:  # () draws an uninstrumented spine: a CT without metal
        consecutive(instrumented, "instrumented")
        if len(instrumented) < 2 or not set(instrumented) <= set(levels):
            raise ValueError("instrumented must be two or more of the drawn levels, or empty")
    if loose_screw is not None:
        lvl, _, side = loose_screw.rpartition("-")
        if lvl not in instrumented or side not in SIDES:
            raise ValueError(f"loose_screw {loose_screw!r} is not one of the screws")
    if fracture_level is not None and fracture_level not in levels:
        raise ValueError(f"fracture_level {fracture_level!r} is not drawn")
    if int(fracture_grade) not in GENANT_LOSS:
        raise ValueError("fracture_grade must be 0..3")
    if cage is not None:
        if len(cage) != 2 or not set(cage) <= set(levels) or \
                ORDER.index(cage[1]) != ORDER.index(cage[0]) + 1:
            raise ValueError(f"cage must name two adjacent drawn levels, got {cage}")
    if cage_material not in ("titanium", "peek"):
        raise ValueError("cage_material must be 'titanium' or 'peek'")
    if patient_position not in ("HFS", "HFP"):
        raise ValueError("patient_position must be 'HFS' or 'HFP'")


# --- drawing ------------------------------------------------------------------------------
def _draw_trunk(hu, grid, ta, tb, verts, by_label, position) -> None:
    X2 = grid.x[None, :]
    Y2 = grid.y[:, None]
    img = np.full((len(grid.y), len(grid.x)), HU_AIR, np.float32)
    r = grid.ramp_mm

    def lay(sdf, value):
        img[...] += S.alpha(sdf, r) * (np.float32(value) - img)

    p = 2.4
    lay(_superellipse2(X2, Y2, ta, tb, p), HU_SKIN)
    lay(_superellipse2(X2, Y2, ta - 2.0, tb - 2.0, p), HU_FAT)
    lay(_superellipse2(X2, Y2, ta - 14.0, tb - 14.0, p), HU_MUSCLE)
    lay(_superellipse2(X2, Y2, ta - 24.0, tb - 24.0, p), HU_SOFT)
    y_body = float(np.mean([v.center[1] for v in verts]))
    d_body = float(np.mean([v.D for v in verts]))
    # retroperitoneal fat, aorta (left) and IVC (right) in front of the spine
    lay(S.ellipse(X2, Y2 - (y_body - 5.0), 80.0, 38.0), HU_FAT)
    front = y_body - d_body / 2 - 13.0
    lay(np.hypot(X2 - 18.0, Y2 - front) - 11.0, 40.0)
    lay(np.hypot(X2 + 22.0, Y2 - front) - 10.0, 35.0)
    # paraspinal (erector spinae) muscles
    yp = y_body + 58.0
    for s in (1.0, -1.0):  # each in a thin fat envelope (the thoracolumbar fascia plane)
        lay(S.ellipse(X2 - s * 38.0, Y2 - yp, 33.0, 28.0), HU_FAT)
    for s in (1.0, -1.0):
        lay(S.ellipse(X2 - s * 38.0, Y2 - yp, 30.0, 25.0), HU_MUSCLE)
    # the CT table: a curved carbon plate under the back (supine) or the belly (prone)
    R = 450.0
    sag = R - np.sqrt(np.maximum(R * R - X2.astype(np.float64) ** 2, 0.0))
    if position == "HFS":
        surf = tb + 1.0 - sag
        d = np.maximum(surf - Y2, Y2 - (surf + 7.0))
    else:
        surf = -tb - 1.0 + sag
        d = np.maximum(Y2 - surf, (surf - 7.0) - Y2)
    lay(d.astype(np.float32), HU_TABLE)
    hu[...] = img[None, :, :]
    # psoas and kidneys (lumbar, 3-D)
    if "L1" in by_label:
        l1 = by_label["L1"]
        z_top = float(l1.lps([0, 0, l1.H / 2])[2])
        zs = np.array([v.center[2] for v in by_label.values()])
        ys = np.array([v.center[1] for v in by_label.values()])
        order = np.argsort(zs)
        box = grid.box([-120, -60, grid.z[0]], [120, 80, z_top], 2.0)
        if box is not None:
            X, Y, Z = grid.coords(box)
            yc = np.interp(Z, zs[order], ys[order]).astype(np.float32)
            a = np.clip(5.0 + 0.16 * (z_top - Z), 5.0, 24.0).astype(np.float32)
            for s in (1.0, -1.0):
                xc = s * (l1.W / 2 + 6.0 + 0.6 * a)
                sdf = np.maximum(S.ellipse(X - np.float32(xc), Y - yc, a, 0.85 * a), Z - z_top)
                S.paint(hu, box, S.alpha(sdf, grid.ramp_mm), HU_MUSCLE)
        for s, dz in ((1.0, 8.0), (-1.0, -8.0)):
            c = np.array([s * (l1.W / 2 + 48.0), l1.center[1] + 22.0,
                          l1.center[2] - l1.H / 2 - l1.disc_below / 2 + dz])
            for grow, value in ((9.0, HU_FAT), (0.0, 32.0)):
                semi = np.array([24.0, 19.0, 52.0]) + grow
                box = grid.box(c - semi, c + semi, 2.0)
                if box is None:
                    continue
                X, Y, Z = grid.coords(box)
                k0 = np.sqrt(((X - c[0]) / semi[0]) ** 2 + ((Y - c[1]) / semi[1]) ** 2
                             + ((Z - c[2]) / semi[2]) ** 2)
                S.paint(hu, box, S.alpha((k0 - 1.0) * np.float32(semi.min()), grid.ramp_mm), value)


def _draw_lungs(hu, grid, ta, tb, by_label) -> None:
    """Lungs lateral and posterior; the posterior costophrenic recess reaches T12/L1."""
    t12, l1 = by_label["T12"], by_label["L1"]
    z_rec = float((t12.lps([0, 0, -t12.H / 2])[2] + l1.lps([0, 0, l1.H / 2])[2]) / 2 - 3.0)
    X2 = grid.x[None, :]
    Y2 = grid.y[:, None]
    y_body = float(t12.center[1])
    sdf2 = _superellipse2(X2, Y2, ta - 30.0, tb - 30.0, 2.4)
    sdf2 = np.maximum(sdf2, 27.0 - np.abs(X2))  # mediastinum and spine
    for s in (1.0, -1.0):  # stay out of the paraspinal muscles
        sdf2 = np.maximum(sdf2, -(S.ellipse(X2 - s * 38.0, Y2 - (y_body + 58.0), 33.0, 28.0)))
    a2 = S.alpha(sdf2, grid.ramp_mm)
    # diaphragm: lowest posteriorly and laterally (the recesses), domed medially and anteriorly
    y_ref = y_body + 40.0  # behind this the recess is flat at z_rec, in front it rises
    z_dia = (z_rec + 0.5 * np.clip(y_ref - Y2, 0.0, None)
             + 0.12 * np.clip(80.0 - np.abs(X2), 0.0, None) * np.clip((y_ref - Y2) / 30.0, 0.0, 1.0)
             ).astype(np.float32)
    jj = np.nonzero(a2.any(axis=1))[0]
    ii = np.nonzero(a2.any(axis=0))[0]
    kk = np.nonzero(grid.z > z_rec - 2.0)[0]
    if len(jj) == 0 or len(ii) == 0 or len(kk) == 0:
        return
    box = (slice(kk[0], kk[-1] + 1), slice(jj[0], jj[-1] + 1), slice(ii[0], ii[-1] + 1))
    a2b = a2[box[1], box[2]][None]
    zd = z_dia[box[1], box[2]][None]
    Z = grid.z[box[0]][:, None, None]
    a = a2b * np.clip(0.5 + (Z - zd) / np.float32(grid.ramp_mm), 0.0, 1.0)
    S.paint(hu, box, a.astype(np.float32), HU_LUNG)


def _draw_disc(hu, grid, up: _Vertebra, lo: _Vertebra) -> None:
    W, D, H = lo.W, lo.D, lo.H
    canvas = _local_canvas(
        grid, lo, [-W / 2 - 1, -D / 2 - 1, H / 2 - lo.frac * H - 1],
        [W / 2 + 1, D / 2 + 4, H / 2 + lo.disc_above + 6.0], 1.0)
    if canvas is None:
        return
    box, (u, v, w) = canvas
    X, Y, Z = grid.coords(box)
    uu, vv, ww = S.to_local(X, Y, Z, up.center, up.axes)
    de = S.ellipse(u, v - 2.0, W / 2 + 0.5, D / 2 + 2.5)
    dp = v - (D / 2 + 0.5 + 3.0 * (2.0 * u / W) ** 2)
    d_lo = lo.top(v) - w
    d_up = ww + up.H / 2
    sdf = np.maximum(np.maximum(de, dp), np.maximum(d_lo, d_up))
    S.paint(hu, box, S.alpha(sdf, grid.ramp_mm), HU_DISC)
    nuc = np.maximum(S.ellipse(u, v + 1.0, W * 0.27, D * 0.25), np.maximum(d_lo, d_up) + 2.0)
    S.paint(hu, box, S.alpha(nuc, grid.ramp_mm), HU_NUCLEUS)


def _draw_vertebra(hu, labels, grid, vt: _Vertebra) -> None:
    lo, hi = vt.local_box()
    canvas = _local_canvas(grid, vt, lo, hi, 1.0)
    if canvas is None:
        return
    box, (u, v, w) = canvas
    sdf = np.full(u.shape, S.BIG, np.float32)
    for plo, phi, fn in vt.parts:
        pbox = S.frame_box(grid, vt.center, vt.axes, plo, phi, 2.0)
        inter = S.sub_box(box, pbox) if pbox is not None else None
        if inter is None:
            continue
        rel = inter[1]
        sdf[rel] = S.smin(sdf[rel], fn(u[rel], v[rel], w[rel]), 1.5)
    _paint_sdf(hu, labels, grid, box, sdf, vt.cortical_hu, label=vt.index)
    S.paint(hu, box, S.alpha(sdf + SHELL_MM, grid.ramp_mm), vt.trab_hu)
    if vt.frac > 0:  # sclerotic band of impacted trabeculae under the depressed endplate
        top = vt.top(v)
        band = np.maximum(vt.body_sdf(u, v, w) + SHELL_MM, np.abs(w - (top - 4.0)) - 2.5)
        S.paint(hu, box, S.alpha(band, grid.ramp_mm), HU_SCLEROSIS)


def _draw_canal(hu, labels, grid, vt: _Vertebra, first: bool, last: bool,
                structures: np.ndarray | None = None) -> None:
    w_hi = vt.H / 2 + (25.0 if first else 1.0)
    w_lo = -vt.H / 2 - vt.disc_below - (25.0 if last else 1.0)
    vc = vt.v_canal
    canvas = _local_canvas(grid, vt, [-vt.cw / 2, vc - vt.ap / 2, w_lo],
                           [vt.cw / 2, vc + vt.ap / 2, w_hi], 1.0)
    if canvas is None:
        return
    box, (u, v, w) = canvas
    dz = np.maximum(w - w_hi, w_lo - w)
    sdf = np.maximum(S.ellipse(u, v - vc, vt.cw / 2, vt.ap / 2), dz)
    _paint_sdf(hu, labels, grid, box, sdf, HU_CSF, clear_label=True)
    if structures is not None:
        structures[box][sdf <= 0] = STRUCTURE_CODES["canal"]
    if vt.thoracic or vt.label == "L1":
        cord = np.maximum(S.ellipse(u, v - vc + 0.5, 5.0, 4.0), dz)
        S.paint(hu, box, S.alpha(cord, grid.ramp_mm), HU_CORD)


def _draw_ribs(hu, grid, vt: _Vertebra, ta, tb, structures: np.ndarray | None = None) -> dict:
    heads = {}
    length = {"T11": 150.0, "T12": 105.0}.get(vt.label, 220.0)
    for side, s in SIDES.items():
        u_edge = 0.85 * vt.W / 2
        head = vt.lps([s * (u_edge + 5.5), vt.D / 2 - 4.0, vt.H / 2 - 6.0])
        neck = vt.lps([s * (vt.W / 2 + 14.0), vt.D / 2 + 0.6 * vt.ap + 6.0, vt.H / 2 - 8.0])
        pts = [head, neck]
        angle_pt = np.array([s * 62.0, tb - 32.0, neck[2] - 6.0])
        pts.append(angle_pt)
        # then along the chest wall (inner trunk contour), descending
        a_in, b_in, p = ta - 22.0, tb - 22.0, 2.4
        used = float(np.linalg.norm(neck - head) + np.linalg.norm(angle_pt - neck))
        phi = math.atan2((angle_pt[1] / b_in), abs(angle_pt[0]) / a_in)
        z = angle_pt[2]
        prev = angle_pt
        while used < length and phi > -1.2:
            phi -= 0.06
            c, sn = math.cos(phi), math.sin(phi)
            x = a_in * math.copysign(abs(c) ** (2 / p), c)
            y = b_in * math.copysign(abs(sn) ** (2 / p), sn)
            step = math.hypot(x - abs(prev[0]), y - prev[1])
            z -= 0.3 * step
            used += step
            prev = np.array([s * x, y, z])
            pts.append(prev)
        pts = np.array(pts)
        r = 4.0
        box = grid.box(pts.min(axis=0) - r - 1.5, pts.max(axis=0) + r + 1.5)
        heads[side] = _f(head)
        if box is None:
            continue
        X, Y, Z = grid.coords(box)
        sdf = np.full(np.broadcast(X, Y, Z).shape, S.BIG, np.float32)
        for a, b in zip(pts[:-1], pts[1:], strict=True):
            _add_capsule(grid, box, X, Y, Z, sdf, a, b, r, 1.5)
        _add_capsule(grid, box, X, Y, Z, sdf, head, head, 5.0, 1.0)  # the rib head
        S.paint(hu, box, S.alpha(sdf, grid.ramp_mm), HU_RIB_CORTEX)
        S.paint(hu, box, S.alpha(sdf + 1.2, grid.ramp_mm), HU_RIB_MARROW)
        if structures is not None:
            structures[box][sdf <= 0] = STRUCTURE_CODES["rib"]
    return heads


# --- implants --------------------------------------------------------------------------------
def _screw_sdf(X, Y, Z, head, axis, L, r_out):
    r_core = 0.78 * r_out
    pitch = 2.5
    dx, dy, dz = X - np.float32(head[0]), Y - np.float32(head[1]), Z - np.float32(head[2])
    s = dx * axis[0] + dy * axis[1] + dz * axis[2]
    radial = np.sqrt(np.maximum(dx * dx + dy * dy + dz * dz - s * s, 0.0))
    frac = (s / pitch) % 1.0
    r = r_core + (r_out - r_core) * (1.0 - 2.0 * np.abs(frac - 0.5))
    r = r * np.clip(0.25 + 0.75 * (L - s) / 5.0, 0.25, 1.0)
    return np.maximum(radial - r, np.maximum(-s, s - L)).astype(np.float32), s, radial


def _add_capsule(grid, box, X, Y, Z, sdf, a, b, r: float, pad: float) -> None:
    """``sdf`` (on ``box``, coordinates ``X, Y, Z``) takes the capsule a-b of radius ``r``,
    computed only in the sub-box around it (``r + pad`` beyond its ends)."""
    seg = grid.box(np.minimum(a, b) - r - pad, np.maximum(a, b) + r + pad)
    inter = S.sub_box(box, seg) if seg is not None else None
    if inter is None:
        return
    rel = inter[1]
    sdf[rel] = np.minimum(sdf[rel], S.capsule(X[..., rel[2]], Y[:, rel[1], :], Z[rel[0]], a, b, r))


def _metal_paint(hu, metal, labels, grid, box, sdf, value=HU_METAL_DRAWN):
    S.paint(hu, box, S.alpha(sdf, grid.ramp_mm), value)
    inside = sdf <= 0
    metal[box] |= inside
    labels[box][inside] = 0


def _blur_psf(hu: np.ndarray, grid: S.Grid, blooming_mm: float) -> None:
    """Blooming: the scanner's point-spread blur, applied in place to the whole unclipped image.

    A reconstruction blurs every edge with the same point-spread function; metal blooms because
    its contrast to everything around it is enormous (and because the 12-bit clip hides the
    peak). So the whole image (metal at its drawn 6000 HU, before noise and the clip) is blurred
    with a Gaussian of sigma ``blooming_mm / BLOOMING_SIGMAS``: the metal's bright rim keeps
    more than ~2 % of the metal's contrast (about 130 HU) out to ``blooming_mm`` beyond the true
    surface, the level halfway between metal and its surroundings stays on the true surface
    (a symmetric blur), threads are smoothed along the shaft and a halo's edges are blurred like
    any other edge. The voxels' partial-volume ramp is the blur of a sharp scanner; this adds
    to it. Each axis gets a discrete kernel of exactly the Gaussian's variance (a Gaussian
    sampled at the voxels would be too narrow below a voxel).
    """
    sigma_mm = float(blooming_mm) / BLOOMING_SIGMAS
    for axis, step in enumerate((grid.slice_mm, grid.pixel_mm, grid.pixel_mm)):
        ndimage.correlate1d(hu, _variance_kernel(sigma_mm / step), axis=axis, output=hu,
                            mode="nearest")


def _variance_kernel(sigma: float) -> np.ndarray:
    """A normalized, sampled Gaussian whose discrete variance is ``sigma**2`` (in samples)."""
    half = max(1, int(math.ceil(3.5 * sigma)))
    j = np.arange(-half, half + 1, dtype=float)

    def kernel(width: float) -> np.ndarray:
        k = np.exp(-0.5 * (j / width) ** 2)
        return k / k.sum()

    lo, hi = 1e-3, max(2.0 * sigma, 1.0)
    for _ in range(60):  # the discrete variance grows with the width: bisect
        mid = 0.5 * (lo + hi)
        if float(np.sum(kernel(mid) * j * j)) < sigma * sigma:
            lo = mid
        else:
            hi = mid
    return kernel(0.5 * (lo + hi)).astype(np.float32)


def _screw_entry(vt: _Vertebra, p, d2, length) -> tuple[np.ndarray, np.ndarray]:
    """Head (where the axis leaves the dorsal bone surface) and tip of a screw, local frame."""
    t = np.arange(0.0, 45.0, 0.1)
    pts = p[None, :] - t[:, None] * d2[None, :]
    inside = vt.sdf(pts[:, 0], pts[:, 1], pts[:, 2]) <= 0
    last_in = int(np.nonzero(inside)[0].max()) if inside.any() else 0
    head_local = p - (t[last_in] + 0.1) * d2
    return head_local, head_local + length * d2


def _draw_instrumentation(hu, labels, metal, grid, by_label, instrumented, loose_screw, halo_mm,
                          diameter, length, rod_d, rng, augmented=(None, None, None)):
    augmented_screw, cement_rng, cements = augmented
    screws, seats = [], {"left": [], "right": []}
    r_out = diameter / 2
    for lvl in instrumented:
        vt = by_label[lvl]
        for side in SIDES:
            p, d = vt.pedicle(side)
            # this screw's own aim: pivot at the isthmus, small medial and sagittal deviations;
            # a surgeon aims more caudally when the tip would leave a collapsed body (fracture)
            e1 = S.unit(np.cross(d, [0.0, 0.0, 1.0]))  # a positive turn about e1 lifts the tip
            tilt0, medial = rng.uniform(-4.0, 4.0), rng.uniform(-1.5, 1.5)
            for tilt in np.arange(tilt0, -20.0, -2.0):
                d2 = S.rot_axis(e1, tilt) @ S.rot_axis([0, 0, 1], medial) @ d
                head_local, tip_local = _screw_entry(vt, p, d2, length)
                tip_in_body = bool(vt.body_sdf(*[np.array([x]) for x in tip_local - d2])[0] < 0)
                if tip_in_body:
                    break
            head, tip, axis = vt.lps(head_local), vt.lps(tip_local), vt.dir_lps(d2)
            sid = f"{lvl}-{side}"
            loose = sid == loose_screw
            screws.append({
                "id": sid, "level": lvl, "side": side, "tip_lps": _f(tip), "head_lps": _f(head),
                "axis_lps": _f(axis), "diameter_mm": float(diameter), "length_mm": float(length),
                "halo_mm": float(halo_mm) if loose else 0.0, "loose": loose,
                "tulip_diameter_mm": TULIP_DIAMETER_MM, "tulip_height_mm": TULIP_HEIGHT_MM,
                "rod_seat_lps": _f(head - ROD_SEAT_MM * axis), "tip_in_body": tip_in_body,
                "cement_augmented": sid == augmented_screw,
            })
            seats[side].append(head - ROD_SEAT_MM * axis)
            m = max(r_out + (halo_mm if loose else 0.0), TULIP_DIAMETER_MM / 2) + 2.0
            if sid == augmented_screw:
                m = max(m, r_out + CUFF_MM + 6.0)
            box = grid.box(np.minimum(head - TULIP_HEIGHT_MM * axis, tip) - m,
                           np.maximum(head - TULIP_HEIGHT_MM * axis, tip) + m)
            if box is None:
                continue
            X, Y, Z = grid.coords(box)
            sdf, s, radial = _screw_sdf(X, Y, Z, head, axis, length, r_out)
            if loose:  # resorption halo: fibrous tissue / fluid around the shaft, in bone only
                halo = np.maximum(radial - np.float32(r_out + halo_mm),
                                  np.maximum(-s, s - np.float32(length + 0.5 * halo_mm)))
                bone = labels[box] == vt.index
                a = S.alpha(halo, grid.ramp_mm) * bone
                S.paint(hu, box, a.astype(np.float32), HU_HALO)
                labels[box][(halo <= 0) & bone] = 0
            if sid == augmented_screw:
                cements.append(_draw_cuff(hu, labels, grid, box, vt, sid, head, axis, length,
                                          r_out, (X, Y, Z), cement_rng))
            tulip = np.maximum(radial - np.float32(TULIP_DIAMETER_MM / 2),
                               np.maximum(-np.float32(TULIP_HEIGHT_MM) - s, s))
            _metal_paint(hu, metal, labels, grid, box, np.minimum(sdf, tulip))
    rods = []
    for side, pts in seats.items():
        if len(pts) < 2:
            continue  # no instrumentation on this side
        pts = np.array(pts)
        order = np.argsort(-pts[:, 2])
        pts = pts[order]
        ext0 = pts[0] + 7.0 * S.unit(pts[0] - pts[1])
        ext1 = pts[-1] + 7.0 * S.unit(pts[-1] - pts[-2])
        poly = np.vstack([ext0, pts, ext1])
        rods.append({"side": side, "points_lps": [_f(q) for q in poly], "diameter_mm": float(rod_d)})
        r = rod_d / 2
        box = grid.box(poly.min(axis=0) - r - 2, poly.max(axis=0) + r + 2)
        if box is None:
            continue
        X, Y, Z = grid.coords(box)
        sdf = np.full(np.broadcast(X, Y, Z).shape, S.BIG, np.float32)
        for a, b in zip(poly[:-1], poly[1:], strict=True):
            _add_capsule(grid, box, X, Y, Z, sdf, a, b, r, 2.0)
        _metal_paint(hu, metal, labels, grid, box, sdf)
    return screws, rods


def _draw_cuff(hu, labels, grid, box, vt: _Vertebra, sid, head, axis, length, r_out, xyz,
               rng) -> dict:
    """Cement around the distal half of a screw (and a few mm beyond its tip), in bone only."""
    X, Y, Z = xyz
    dx, dy, dz = X - np.float32(head[0]), Y - np.float32(head[1]), Z - np.float32(head[2])
    s = dx * axis[0] + dy * axis[1] + dz * axis[2]
    radial = np.sqrt(np.maximum(dx * dx + dy * dy + dz * dz - s * s, 0.0))
    a, b = np.float32(0.5 * length), np.float32(length + 2.0)
    along = np.maximum(np.maximum(a - s, s - b), 0.0)
    sdf = np.sqrt(along * along + np.maximum(radial - np.float32(r_out + CUFF_MM), 0.0) ** 2) \
        + np.minimum(radial - np.float32(r_out + CUFF_MM), 0.0) * (along == 0)
    e1 = S.unit(np.cross(axis, [0.0, 0.0, 1.0]))
    e2 = np.cross(axis, e1)
    lobes = []
    for t in (0.6, 0.8, 1.0):
        c = head + (t * length + rng.uniform(-1.0, 1.0)) * axis \
            + rng.uniform(-1.5, 1.5) * e1 + rng.uniform(-1.5, 1.5) * e2
        lobes.append((c, rng.uniform(r_out + 1.0, r_out + 2.0)))
    bone = (labels[box] == vt.index).astype(np.float32)
    env = sdf.astype(np.float32)
    S.paint(hu, box, S.alpha(env, grid.ramp_mm) * bone, rng.uniform(*CUFF_HU))
    for c, r in lobes:
        d = np.sqrt((X - np.float32(c[0])) ** 2 + (Y - np.float32(c[1])) ** 2
                    + (Z - np.float32(c[2])) ** 2) - np.float32(r)
        S.paint(hu, box, S.alpha(d, grid.ramp_mm) * bone, rng.uniform(*CUFF_HU))
        env = np.minimum(env, d)
    a_env = S.alpha(env, grid.ramp_mm) * bone
    return _cement_truth(grid, box, a_env, vt.label, "screw augmentation", CUFF_HU, screw=sid)


def _cement_truth(grid, box, a_env, level, kind, hu_range, **extra) -> dict:
    X, Y, Z = grid.coords(box)
    w = a_env.sum()
    centre = [float((a_env * X).sum() / w), float((a_env * Y).sum() / w),
              float((a_env * Z).sum() / w)] if w > 0 else [0.0, 0.0, 0.0]
    vox = grid.pixel_mm * grid.pixel_mm * grid.slice_mm
    return {"level": level, "kind": kind, "center_lps": _f(centre),
            "volume_ml": round(float(w) * vox / 1000.0, 3), "hu_range": list(hu_range), **extra}


def _draw_cement(hu, grid, vt: _Vertebra, rng) -> dict:
    """A vertebroplasty's PMMA: lobes in the anterior two thirds of the body, a tongue in the disc."""
    D, H = vt.D, vt.H
    c0 = np.array([rng.uniform(-3.0, 3.0), -0.17 * D + rng.uniform(-2.0, 2.0), -0.28 * H])
    lobes = [(c0, rng.uniform(6.0, 7.0), rng.uniform(2400.0, CEMENT_HU[1]))]
    for _ in range(5):
        off = rng.normal(size=3)
        off = off / np.linalg.norm(off) * rng.uniform(4.0, 7.0) * np.array([1.0, 1.0, 0.6])
        lobes.append((c0 + off, rng.uniform(3.5, 5.0), rng.uniform(*CEMENT_HU)))
    leak_a = c0 + np.array([0.0, 0.0, -2.0])
    leak_b = np.array([c0[0] + rng.uniform(-3.0, 3.0), c0[1] + rng.uniform(-3.0, 3.0),
                       -H / 2 - 0.6 * vt.disc_below])
    canvas = _local_canvas(grid, vt, [-vt.W / 2, -D / 2 - 1, -H / 2 - vt.disc_below],
                           [vt.W / 2, D / 2, 0.1 * H], 1.0)
    out = {"level": vt.label, "kind": "vertebroplasty"}
    if canvas is None:
        return out
    box, (u, v, w) = canvas
    inner = vt.body_sdf(u, v, w) + np.float32(SHELL_MM)
    env = np.full(u.shape, S.BIG, np.float32)
    for c, r, value in lobes:
        d = np.maximum(np.sqrt((u - np.float32(c[0])) ** 2 + (v - np.float32(c[1])) ** 2
                               + (w - np.float32(c[2])) ** 2) - np.float32(r), inner)
        S.paint(hu, box, S.alpha(d, grid.ramp_mm), value)
        env = np.minimum(env, d)
    tongue = S.capsule(u, v, w, leak_a, leak_b, 1.3)
    S.paint(hu, box, S.alpha(tongue, grid.ramp_mm), rng.uniform(1800.0, 2300.0))
    env = np.minimum(env, tongue)
    out = _cement_truth(grid, box, S.alpha(env, grid.ramp_mm), vt.label, "vertebroplasty",
                        CEMENT_HU)
    out["leak_lps"] = [_f(vt.lps(leak_a)), _f(vt.lps(leak_b))]
    return out


def _draw_crosslink(hu, labels, metal, grid, screws, instrumented, level, section,
                    rod_d) -> dict:
    """A transverse connector: a straight bar behind the rods, clamped onto both."""
    i = list(instrumented).index(level)
    other = instrumented[i + 1] if i + 1 < len(instrumented) else instrumented[i - 1]
    seat = {(q["level"], q["side"]): np.asarray(q["rod_seat_lps"]) for q in screws}
    p = {sd: 0.5 * (seat[(level, sd)] + seat[(other, sd)]) for sd in SIDES}
    rod_dir = S.unit(seat[(level, "left")] - seat[(other, "left")]
                     + seat[(level, "right")] - seat[(other, "right")])
    e_x = S.unit(p["left"] - p["right"])
    e_z = S.unit(rod_dir - (rod_dir @ e_x) * e_x)
    e_y = np.cross(e_z, e_x)  # posterior
    thick, width = float(section[0]), float(section[1])
    rod_r = 0.5 * rod_d
    off = e_y * (rod_r + 0.5)
    a, b = p["right"] - 4.0 * e_x + off, p["left"] + 4.0 * e_x + off
    clamps = [(p[sd] + 1.0 * e_y - 6.0 * e_z, p[sd] + 1.0 * e_y + 6.0 * e_z) for sd in SIDES]
    pts = np.array([a, b] + [q for c in clamps for q in c])
    box = grid.box(pts.min(axis=0) - 10.0, pts.max(axis=0) + 10.0)
    out = {"level": level, "between": [level, other], "center_lps": _f(0.5 * (a + b)),
           "axis_lps": _f(e_x), "ends_lps": [_f(a), _f(b)],
           "length_mm": round(float(np.linalg.norm(b - a)), 3), "section_mm": [thick, width],
           "clamps_lps": [_f(p["left"]), _f(p["right"])]}
    if box is None:
        return out
    X, Y, Z = grid.coords(box)
    if abs(thick - width) < 1e-6:
        sdf = S.capsule(X, Y, Z, a, b, 0.5 * thick)
    else:
        sdf = S.box_along(X, Y, Z, a, b, e_z, 0.5 * width, 0.5 * thick, min(1.0, 0.45 * thick))
    for c0, c1 in clamps:
        sdf = np.minimum(sdf, S.box_along(X, Y, Z, c0, c1, e_x, 4.5, rod_r + 2.0, 1.5))
    _metal_paint(hu, metal, labels, grid, box, sdf.astype(np.float32))
    return out


def _draw_cage(hu, labels, metal, grid, up: _Vertebra, lo: _Vertebra, material, subsidence,
               rng) -> dict:
    # the cage rests on the lower level's superior endplate (sunk into it by ``subsidence``)
    # and reaches the upper level's inferior endplate; it sits 2 mm anterior of the middle
    f = lo.frac
    e_w = lo.dir_lps(S.unit([0.0, -f * lo.H / lo.D, 1.0]))
    e_u = lo.axes[:, 0] - np.dot(lo.axes[:, 0], e_w) * e_w
    e_u /= np.linalg.norm(e_u)
    axes = np.column_stack([e_u, np.cross(e_w, e_u), e_w])
    v0 = -2.0
    on_endplate = lo.lps([0.0, v0, float(lo.top(v0))])
    w_up = up.axes[:, 2]
    reach = float(np.dot(up.lps([0, 0, -up.H / 2]) - on_endplate, w_up) / np.dot(e_w, w_up))
    height = reach + subsidence
    bottom = on_endplate - e_w * subsidence
    center = bottom + e_w * height / 2
    extent = np.array([min(28.0, 0.6 * lo.W), min(22.0, 0.65 * lo.D), height])
    h = extent / 2
    box = S.frame_box(grid, center, axes, -h, h, 2.0)
    out = {"between": [up.label, lo.label], "center_lps": _f(center), "extent_mm": _f(extent),
           "axes_lps": [_f(axes[:, c]) for c in range(3)], "material": material,
           "subsidence_mm": float(subsidence)}
    if box is None:
        return out
    X, Y, Z = grid.coords(box)
    u, v, w = S.to_local(X, Y, Z, center, axes)

    def rbox(hx, hy, hz, rr=0.8):
        q = [np.abs(u) - (hx - rr), np.abs(v) - (hy - rr), np.abs(w) - (hz - rr)]
        outside = np.sqrt(sum(np.maximum(c, 0.0) ** 2 for c in q))
        return (outside + np.minimum(np.maximum(np.maximum(q[0], q[1]), q[2]), 0.0) - rr).astype(np.float32)

    outer = rbox(*h)
    window = np.maximum(np.maximum(np.abs(u) - (h[0] - 3.0), np.abs(v) - (h[1] - 3.0)),
                        np.abs(w) - h[2])
    # the cage displaces disc and (when subsided) endplate bone
    labels[box][outer <= 0] = 0
    if material == "titanium":
        S.paint(hu, box, S.alpha(window, grid.ramp_mm), HU_GRAFT)
        _metal_paint(hu, metal, labels, grid, box, np.maximum(outer, -window))
        out["beads_lps"] = []
    else:
        S.paint(hu, box, S.alpha(outer, grid.ramp_mm), HU_PEEK)
        S.paint(hu, box, S.alpha(window, grid.ramp_mm), HU_GRAFT)
        beads = [np.array([0.0, -h[1] + 1.5, 0.0]), np.array([h[0] - 1.5, h[1] - 1.5, 0.0]),
                 np.array([-h[0] + 1.5, h[1] - 1.5, 0.0])]
        sdf = np.full(u.shape, S.BIG, np.float32)
        for b in beads:
            sdf = np.minimum(sdf, np.sqrt((u - b[0]) ** 2 + (v - b[1]) ** 2 + (w - b[2]) ** 2) - 0.75)
        _metal_paint(hu, metal, labels, grid, box, sdf)
        out["beads_lps"] = [_f(center + axes @ b) for b in beads]
    return out


# --- truth -----------------------------------------------------------------------------------
def _vertebra_truth(vt: _Vertebra, rib_heads: dict | None) -> dict:
    W, D, H = vt.W, vt.D, vt.H
    step = 0.5
    u = np.arange(-W / 2, W / 2 + step, step, dtype=np.float32)[None, None, :]
    v = np.arange(-D / 2, D / 2 + 3 + step, step, dtype=np.float32)[None, :, None]
    w = np.arange(-H / 2, H / 2 + step, step, dtype=np.float32)[:, None, None]
    inside = vt.body_sdf(u, v, w) <= 0
    kk, jj, ii = np.nonzero(inside)
    centroid_local = np.array([u.ravel()[ii].mean(), v.ravel()[jj].mean(), w.ravel()[kk].mean()])
    f = vt.frac
    n_sup = S.unit([0.0, -f * H / D, 1.0])
    peds = {}
    for side in SIDES:
        p, d = vt.pedicle(side)
        peds[side] = {"axis_point_lps": _f(vt.lps(p)), "axis_dir_lps": _f(vt.dir_lps(d)),
                      "width_mm": round(vt.pw, 4), "height_mm": round(vt.ph, 4),
                      "medial_angle_deg": round(vt.medial[side], 4)}
    grade = 0
    if f > 0:
        grade = 1 if f < 0.25 else (2 if f <= 0.40 else 3)
    out = {
        "label": vt.label, "index": vt.index, "centroid_lps": _f(vt.lps(centroid_local)),
        "origin_lps": _f(vt.center), "axes_lps": [_f(vt.axes[:, c]) for c in range(3)],
        "body_mm": {"width": round(W, 4), "depth": round(D, 4), "height": round(H, 4)},
        "heights_mm": {"anterior": round(H * (1 - f), 4), "middle": round(H * (1 - f / 2), 4),
                       "posterior": round(H, 4)},
        "height_loss_fraction": round(f, 4), "fracture_grade": grade,
        "superior_endplate": {"point_lps": _f(vt.lps([0, 0, float(vt.top(0.0))])),
                              "normal_lps": _f(vt.dir_lps(n_sup))},
        "inferior_endplate": {"point_lps": _f(vt.lps([0, 0, -H / 2])),
                              "normal_lps": _f(-vt.axes[:, 2])},
        "pedicles": peds,
        "canal_center_lps": _f(vt.lps([0, vt.v_canal, 0])),
        "canal_semi_axes_mm": [round(vt.cw / 2, 4), round(vt.ap / 2, 4)],
        "spinous_tip_lps": _f(vt.lps(vt.spinous_ends()[1])),
        "disc_below_mm": round(vt.disc_below, 4),
    }
    if vt.thoracic and rib_heads is not None:
        out["rib_heads_lps"] = rib_heads
    return out


# --- files -----------------------------------------------------------------------------------
def write_phantom(folder: str | Path, phantom: Phantom, **write_series_kwargs) -> list[Path]:
    """Write ``folder/dicom/IM*.dcm`` (a CT series) and ``folder/truth.json``; return the paths."""
    from fluoroplan.io.dicom_write import write_series

    folder = Path(folder)
    vol = phantom.volume
    kwargs = {"patient_position": vol.patient_position, "patient": vol.patient,
              "study": dict(vol.identifiers)}
    kwargs.update(write_series_kwargs)
    paths = write_series(vol.hu, vol.lps_from_ijk, folder / "dicom", **kwargs)
    truth_path = folder / "truth.json"
    truth_path.write_text(json.dumps(phantom.truth, indent=1))
    return [*paths, truth_path]


def load_truth(folder: str | Path) -> dict:
    """Read ``truth.json`` written by ``write_phantom`` (a folder or the file itself)."""
    p = Path(folder)
    if p.is_dir():
        p = p / "truth.json"
    truth = json.loads(p.read_text())
    if truth.get("schema") != SCHEMA:
        raise ValueError(f"{p} is not a fluoroplan phantom truth file (schema {truth.get('schema')!r})")
    return truth
