"""One vertebra: its result type and the measurements made on it at full resolution.

Every measurement is made in a *local frame* of the vertebra, resampled from the CT at
``LOCAL_STEP_MM``: ``t`` along the body axis (cranial), ``p`` toward posterior (from the body
to the spinal canal), ``l`` toward the patient's left (``l = p x t`` in LPS). Arrays of that
frame are indexed ``[t, p, l]``. Points are returned in LPS millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from fluoroplan.model.anatomy import Pedicle, Plane

BONE_HU = 200.0
"""Cortex and normal cancellous bone; osteoporotic cancellous bone is recovered by hole filling."""
SACRUM_BELOW_S1 = 254
"""Label value of the sacrum below S1 (its fused S2..S5 segments, TotalSegmentator's "sacrum"
class) in a vertebra label volume; not a vertebra."""
LOCAL_STEP_MM = 1.0
EDGE_SEARCH = 3
"""Samples searched on either side of a body end for the endplate's half-way crossing."""
HEIGHT_AT = (0.08, 0.5, 0.92)
"""Where the anterior, middle and posterior heights are read, as fractions of the body's
antero-posterior depth in the mid-sagittal band (near the walls, clear of the rounded rims)."""
HEIGHT_INWARD_MAX = 0.25
HEIGHT_INWARD_STEP = 0.03
HEIGHT_MIDDLE_SHIFT = 0.09
"""Where the anterior (posterior) rim has no endplate, the height is read further in, in steps
of this fraction of the depth, up to HEIGHT_INWARD_MAX from the front (back); the middle height,
up to HEIGHT_MIDDLE_SHIFT either side of the middle."""
_DEBUG: list | None = None  # set to a list to collect per-body intermediate arrays
TRIM_MARGIN_MM = 1.0
"""The body is trimmed of bone beside it behind its widest part and behind its posterior wall
(pedicle roots, rib heads) beyond this margin."""

ENDPLATE_VALID_FRAC = 0.5
"""A height position is measured only when at least this fraction of its columns ends, at both
ends, in a real endplate (the darkest sample just outside is darker than the bone threshold:
a disc); else the body's end there is a wrong separation or a cut, and the height is NaN."""
BICONVEX_TOL = (1.0, 0.05)
"""The middle height may exceed both wall heights by this much (mm, fraction) before the
shape counts as one no fracture makes."""
TALLER_THAN_EXPECTED = 1.3
"""A body this much taller than its neighbours' typical height is not its own endplate pair."""

GENANT_THRESHOLDS = (0.20, 0.25, 0.40)
"""Height loss fractions that start grades 1 (mild), 2 (moderate) and 3 (severe) (Genant 1993)."""

PEDICLE_ROWS_MM = 3.0
"""A pedicle section's width is the median over the rows within this of the pedicle's mid-height."""
PEDICLE_GROUP_RANGE = (0.6, 1.35)
"""Sections whose pedicle (the rows starting at the canal wall) is this much shorter / taller than
the pedicle's usual height (a lower quartile over its sections) are no pedicle section: the
pedicle's base merging into the body, or a lamina or articular process joined below or above."""
PEDICLE_ATTACHED = 1.5
"""A row of a pedicle section whose bone runs on this much farther than the section's median row
carries something beside the pedicle (a transverse process, a rib head) and is not measured."""
PEDICLE_MIN_HEIGHT_MM = 6.0
"""A section whose pedicle rows are shorter than this is not measured (adults: 9-17 mm)."""
PEDICLE_MID_TOL_MM = 3.0
"""Sections whose pedicle middles lie this close together agree on where the pedicle is."""
PEDICLE_ISTHMUS_FRAC = (1.15, 1.3, 1.5)
"""Sections this close to the narrowest one (width ratio; the second when the first gives fewer
than three sections) form the isthmus; its axis is fitted through their centres."""
PEDICLE_AXIS_BASE_MM = 4.0
"""The isthmus sections an axis is fitted through span at least this far along it."""
PEDICLE_MAX_ANGLE_DEG = (25.0, 40.0)
"""A fitted pedicle axis steeper than this to the transverse plane (sagittal tilt) or toward the
midline (convergence) follows something beside the pedicle: that part of the fit is dropped."""
EDGE_HU_CAP = 1000.0
"""HU above this (dense cortex, a screw in the pedicle) count as this for the half-way edge level."""


# --------------------------------------------------------------------------------------------
# result types
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Genant grade
# --------------------------------------------------------------------------------------------
def genant_grade(loss: float | None) -> int | None:
    """Semi-quantitative grade from a fractional height loss: <20 % -> 0, 20-25 % -> 1,
    25-40 % -> 2, >40 % -> 3."""
    if loss is None or not np.isfinite(loss):
        return None
    g = 0
    for n, thr in enumerate(GENANT_THRESHOLDS, start=1):
        if loss >= thr:
            g = n
    return g


def expected_heights(hmax, reach: int = 2) -> list[float | None]:
    """Height expected of each body from its neighbours: the median of the largest heights of
    the bodies within ``reach`` positions (NaN entries, e.g. incomplete bodies, are skipped)."""
    hmax = np.asarray(hmax, float)
    out: list[float | None] = []
    for n in range(len(hmax)):
        neigh = [hmax[j] for j in range(max(0, n - reach), min(len(hmax), n + reach + 1)) if j != n]
        neigh = [h for h in neigh if np.isfinite(h)]
        out.append(float(np.median(neigh)) if neigh else None)
    return out


def height_loss(heights: dict, expected_mm: float | None) -> float | None:
    """Largest fractional height loss of a body.

    Two comparisons, as a reader does on a lateral view: the smallest of the anterior, middle
    and posterior heights against the largest of them (wedge, biconcave), and the smallest
    against the height expected from the neighbours (crush).
    """
    hs = [h for h in (heights.get("anterior"), heights.get("middle"), heights.get("posterior"))
          if h is not None and np.isfinite(h) and h > 0]
    if len(hs) < 3:  # one of them missing, not finite or not positive
        return None
    hmin, hmax = min(hs), max(hs)
    loss = 1.0 - hmin / hmax
    if expected_mm is not None and np.isfinite(expected_mm) and expected_mm > 0:
        loss = max(loss, 1.0 - hmin / expected_mm)
    return float(max(loss, 0.0))


def height_problem(heights: dict, expected_mm: float | None) -> str | None:
    """Why these heights cannot be graded, or None when they can.

    Real fracture shapes are a wedge (anterior lowest), a biconcave body (middle lowest) or a
    crush (posterior or all lowered). No fracture leaves the middle the tallest part with a
    wall clearly lower (a "biconvex" body: the walls' ends were not found at the endplates), and
    no fracture makes a body much taller than its neighbours."""
    names = ("anterior", "middle", "posterior")
    missing = [k for k in names if not np.isfinite(heights.get(k, np.nan))]
    if missing:
        return (
            f"no endplate found at its {', '.join(missing)} height (bone continues past the "
            "body's end, or it is cut): not graded"
        )
    a, m, p = (float(heights[k]) for k in names)
    if m - max(a, p) > max(BICONVEX_TOL[0], BICONVEX_TOL[1] * m) and min(a, p) < (
        1.0 - GENANT_THRESHOLDS[0]
    ) * m:
        return (
            f"heights inconsistent ({a:.1f}/{m:.1f}/{p:.1f} mm anterior/middle/posterior: the "
            "middle taller than both walls is no wedge, biconcave or crush shape): not graded"
        )
    if expected_mm is not None and np.isfinite(expected_mm) and max(a, m, p) > TALLER_THAN_EXPECTED * expected_mm:
        return (
            f"tallest height {max(a, m, p):.1f} mm is more than {TALLER_THAN_EXPECTED:.1f} times "
            f"its neighbours' ({expected_mm:.1f} mm): its ends are not its own endplates: not graded"
        )
    return None


def grade_bounds(heights: dict, expected_mm: float | None, uncertainty_mm: float) -> tuple[int, int] | None:
    """The lowest and highest Genant grade the heights allow when each may be off by
    ``uncertainty_mm`` (about half the CT's coarsest voxel): equal when the grade is sure."""
    hs = [h for h in (heights.get(k) for k in ("anterior", "middle", "posterior"))
          if h is not None and np.isfinite(h) and h > 0]
    if len(hs) < 3:  # one of them missing, not finite or not positive
        return None
    u = float(uncertainty_mm)
    hmin, hmax = min(hs), max(hs)
    exp = expected_mm if expected_mm is not None and np.isfinite(expected_mm) and expected_mm > 0 else None
    # the mildest reading: the smallest height longer, the largest shorter (never crossing)
    small = min(hmin + u, hmax)
    large = max(hmax - u, small)
    low = height_loss({"anterior": small, "middle": large, "posterior": large},
                      None if exp is None else exp - u)
    # the worst reading: the smallest height shorter, the largest longer
    small, large = max(hmin - u, 0.1), hmax + u
    high = height_loss({"anterior": small, "middle": large, "posterior": large},
                       None if exp is None else exp + u)
    lo, hi = genant_grade(low), genant_grade(high)
    # both readings' heights are finite and > 0 (u finite, >= 0), so both give a loss and a grade
    assert lo is not None and hi is not None
    return lo, hi


def grade_heights(heights: dict, expected_mm: float | None) -> tuple[float | None, int | None, str | None]:
    """``(height_loss, Genant grade, reason)``: loss and grade are None, with the reason, when
    the heights are not reliable enough to grade (:func:`height_problem`)."""
    why = height_problem(heights, expected_mm)
    if why is not None:
        return None, None, why
    loss = height_loss(heights, expected_mm)
    return loss, genant_grade(loss), None


# --------------------------------------------------------------------------------------------
# sampling helpers
# --------------------------------------------------------------------------------------------
class VolumeSampler:
    """Samples an array indexed ``[k, j, i]`` at LPS points (trilinear or nearest)."""

    def __init__(self, array: np.ndarray, lps_from_ijk: np.ndarray, fill: float = 0.0):
        self.array = array
        self.ijk_from_lps = np.linalg.inv(lps_from_ijk)
        self.fill = fill

    def sample(self, pts_lps: np.ndarray, order: int = 1) -> np.ndarray:
        shape = pts_lps.shape[:-1]
        p = pts_lps.reshape(-1, 3)
        M = self.ijk_from_lps
        # (k, j, i) rows written out: a BLAS matmul of a tall (n, 3) array is slower and spawns
        # threads that compete with the other work on the machine
        coords = np.empty((3, len(p)), np.float64)
        for row, a in ((0, 2), (1, 1), (2, 0)):
            coords[row] = p[:, 0] * M[a, 0] + p[:, 1] * M[a, 1] + p[:, 2] * M[a, 2] + M[a, 3]
        out = ndi.map_coordinates(
            self.array, coords, order=order, mode="constant", cval=self.fill, prefilter=False
        )
        return out.reshape(shape)


def _fill_holes_2d(mask: np.ndarray) -> np.ndarray:
    """Fill holes of a 3-D mask slice by slice along axis 0 (one labelling call)."""
    s = np.zeros((3, 3, 3), bool)
    s[1] = ndi.generate_binary_structure(2, 1)
    lab, n = ndi.label(~mask, structure=s)
    if n == 0:
        return mask.copy()
    border = np.zeros(n + 1, bool)
    for sl in (lab[:, 0, :], lab[:, -1, :], lab[:, :, 0], lab[:, :, -1]):
        border[np.unique(sl)] = True
    border[0] = True
    return mask | ~border[lab]


# --------------------------------------------------------------------------------------------
# measurement of one vertebra
# --------------------------------------------------------------------------------------------
@dataclass
class LocalFrame:
    origin_lps: np.ndarray
    t_lps: np.ndarray
    p_lps: np.ndarray
    l_lps: np.ndarray
    t0: float
    p0: float
    l0: float
    shape: tuple[int, int, int]
    step: float = LOCAL_STEP_MM

    @staticmethod
    def make(origin, axis, posterior, t_range, p_range, l_range, step=LOCAL_STEP_MM):
        t = np.asarray(axis, float) / np.linalg.norm(axis)
        p = np.asarray(posterior, float) - np.dot(posterior, t) * t
        p /= np.linalg.norm(p)
        lat = np.cross(p, t)
        shape = tuple(
            int(np.ceil((r[1] - r[0]) / step)) + 1 for r in (t_range, p_range, l_range)
        )
        return LocalFrame(
            np.asarray(origin, float), t, p, lat, t_range[0], p_range[0], l_range[0], shape, step
        )

    def coords(self, axis: int) -> np.ndarray:
        start = (self.t0, self.p0, self.l0)[axis]
        return start + self.step * np.arange(self.shape[axis])

    def grid_lps(self) -> np.ndarray:
        tt, pp, ll = (self.coords(a) for a in range(3))
        return (
            self.origin_lps
            + tt[:, None, None, None] * self.t_lps
            + pp[None, :, None, None] * self.p_lps
            + ll[None, None, :, None] * self.l_lps
        )

    def lps(self, t, p, lat) -> np.ndarray:
        return self.origin_lps + t * self.t_lps + p * self.p_lps + lat * self.l_lps

    def dir_lps(self, dt, dp, dl) -> np.ndarray:
        v = dt * self.t_lps + dp * self.p_lps + dl * self.l_lps
        return v / np.linalg.norm(v)


@dataclass
class BodyMeasurements:
    centroid_lps: np.ndarray
    superior_endplate: Plane | None
    inferior_endplate: Plane | None
    posterior_wall: Plane | None
    heights_mm: dict
    pedicle_left: Pedicle | None
    pedicle_right: Pedicle | None
    axis_lps: np.ndarray
    posterior_lps: np.ndarray
    heights_at: dict = field(default_factory=dict)
    """Heights read further in than :data:`HEIGHT_AT`: name -> fraction of the depth used."""


def _fit_plane(a: np.ndarray, b: np.ndarray, c: np.ndarray):
    """Least-squares ``c = c0 + g1 * a + g2 * b`` with one round of outlier trimming."""
    if len(a) < 6:
        return None
    A = np.column_stack([np.ones_like(a), a, b])
    keep = np.ones(len(a), bool)
    coef = None
    for _ in range(2):
        coef, *_ = np.linalg.lstsq(A[keep], c[keep], rcond=None)
        res = np.abs(A @ coef - c)
        lim = max(2.0, 2.5 * np.median(res[keep]))
        keep = res <= lim
        if keep.sum() < 6:
            break
    return coef


def measure_body(
    hu: VolumeSampler,
    metal: VolumeSampler | None,
    labels: VolumeSampler,
    value: int,
    center_lps: np.ndarray,
    axis_lps: np.ndarray,
    posterior_lps: np.ndarray,
    half_height_mm: float,
    canal_offset_mm: float,
    canal_radius_mm: float,
    label_is_bone: bool = False,
    bone_hu: float = BONE_HU,
) -> BodyMeasurements | None:
    """Measure the body, endplates, posterior wall, heights and pedicles of one vertebra.

    ``center_lps`` is a first estimate of the body centre, ``canal_offset_mm`` the distance from
    it to the canal centre along ``posterior_lps``; ``labels`` samples the vertebra label volume
    (value ``value``) and limits everything to this vertebra.
    ``label_is_bone``: the label covers all of the vertebra's bone including dark cancellous
    bone (a label map made elsewhere), so it is used as the body's filled bone instead of
    thresholded HU. ``bone_hu``: bone threshold (HU) of this spine (lower in osteoporotic bone).
    """
    reach_p = canal_offset_mm + canal_radius_mm + 12.0
    frame = LocalFrame.make(
        center_lps,
        axis_lps,
        posterior_lps,
        (-half_height_mm - 8.0, half_height_mm + 8.0),
        (-45.0, reach_p),
        (-42.0, 42.0),
    )
    pts = frame.grid_lps()
    h = hu.sample(pts, order=1)
    own = labels.sample(pts, order=0) == value
    bone = h >= bone_hu
    in_metal = metal.sample(pts, order=0) > 0 if metal is not None else None
    if in_metal is not None:
        bone |= in_metal
    tt, pp, ll = (frame.coords(a) for a in range(3))

    # --- body: axial hole-filled bone of this vertebra in front of the canal ------------------
    # a label map drawn elsewhere holds the cancellous bone too: it *is* the filled bone
    filled = own.copy() if label_is_bone else _fill_holes_2d(bone)
    canal_front = canal_offset_mm - canal_radius_mm
    body = filled & own & (pp[None, :, None] < canal_front + 1.0) & (np.abs(ll)[None, None, :] < 36)
    body = ndi.binary_opening(body, iterations=1)
    lab, n = ndi.label(body)
    if n == 0:
        return None
    sizes = np.bincount(lab.ravel())[1:]
    body = lab == (1 + int(np.argmax(sizes)))
    if body.sum() * frame.step**3 < 1500.0:  # < 1.5 ml is no vertebral body
        return None
    # the pedicles are found from the body's bone as it reaches back through their bases; the
    # body itself is measured without those bases (and without rib heads)
    body_bone = body
    body = _trim_protrusions(body, pp, ll)
    it, ip, il = np.nonzero(body)
    bt, bp, bl = tt[it], pp[ip], ll[il]
    centroid = frame.lps(bt.mean(), bp.mean(), bl.mean())

    # --- endplates: top / bottom surface of each (p, l) column of the body ---------------------
    col = body.any(axis=0)
    has = col & (body.sum(axis=0) >= 3)
    top = np.where(has, frame.shape[0] - 1 - np.argmax(body[::-1], axis=0), -1)
    bot = np.where(has, np.argmax(body, axis=0), -1)
    pj, lj = np.nonzero(has)
    lat_half = 0.6 * (bl.max() - bl.min()) / 2
    p_lo, p_hi = bp.min(), bp.max()
    depth = max(p_hi - p_lo, 1.0)
    central = (np.abs(ll[lj] - bl.mean()) < lat_half) & (pp[pj] > p_lo + 0.1 * depth) & (
        pp[pj] < p_hi - 0.1 * depth
    )
    sup = inf = None
    if central.sum() >= 6:
        a_, b_ = pp[pj[central]], ll[lj[central]]
        for which in ("sup", "inf"):
            idx = top if which == "sup" else bot
            c_ = tt[idx[pj[central], lj[central]]]
            coef = _fit_plane(a_, b_, c_)
            if coef is None:
                continue
            pm, lm = a_.mean(), b_.mean()
            point = frame.lps(coef[0] + coef[1] * pm + coef[2] * lm, pm, lm)
            normal = frame.dir_lps(1.0, -coef[1], -coef[2])
            if which == "sup":
                sup = Plane(point, normal)
            else:
                inf = Plane(point, -normal)

    # --- heights in the mid-sagittal band -----------------------------------------------------
    band = np.abs(ll - bl.mean()) <= 3.0
    if label_is_bone:
        ext = np.where(has, (top - bot + 1) * frame.step, 0.0)[:, band]
        at_plate = np.ones(ext.shape, bool)
    else:
        ext_all, ((_, out_top), (_, out_bot)) = _edge_extent(h, top, bot, frame.step)
        ext = np.where(has, ext_all, 0.0)[:, band]
        # both ends of the column drop into something darker than bone (a disc)
        at_plate = ((out_top < bone_hu) & (out_bot < bone_hu))[:, band]
    cnt = (ext > 0).sum(axis=1)
    ext_p = np.where(cnt > 0, ext.sum(axis=1) / np.maximum(cnt, 1), np.nan)
    heights = {"anterior": float("nan"), "middle": float("nan"), "posterior": float("nan")}
    heights_at: dict[str, float] = {}  # positions read further in than HEIGHT_AT (fraction)
    okp = np.isfinite(ext_p)
    if _DEBUG is not None:
        _DEBUG.append(dict(at_plate=at_plate, band=band, has=has, ext_p=ext_p, pp=pp, tt=tt, body=body, top=top, bot=bot, bl=bl.mean(), own=own, filled=filled, h=h))
    if okp.sum() >= 5:
        pv = pp[okp]
        front, back = pv.min(), pv.max()
        d = back - front
        for name, frac in (("anterior", HEIGHT_AT[0]), ("middle", HEIGHT_AT[1]), ("posterior", HEIGHT_AT[2])):
            # an anterior or posterior rim bridged to the next body (osteophytes, a calcified
            # annulus, a thin disc at the margin) gives no endplate there: read it a little
            # further in, never beyond HEIGHT_INWARD_MAX of the depth
            if name == "middle":  # a little either side of the middle (a Schmorl's node)
                k = np.arange(0.0, HEIGHT_MIDDLE_SHIFT + 1e-9, HEIGHT_INWARD_STEP)
                shifts = np.ravel(np.column_stack([k, -k]))[1:]
            else:
                reach = HEIGHT_INWARD_MAX - min(frac, 1 - frac)
                shifts = np.sign(0.5 - frac) * np.arange(0.0, reach + 1e-9, HEIGHT_INWARD_STEP)
            for shift in shifts:
                extra = abs(shift)
                f_used = frac + shift
                pc = front + f_used * d
                sel = okp & (np.abs(pp - pc) <= max(1.5, 0.05 * d))
                if not sel.any():
                    continue
                cols = ext[sel] > 0
                good = cols & at_plate[sel]
                if good.sum() >= max(1, ENDPLATE_VALID_FRAC * cols.sum()):
                    heights[name] = float(np.median(ext[sel][good]))
                    if extra > 0:
                        heights_at[name] = float(f_used)
                    break

    # --- posterior wall: back surface of each (t, l) row in the central part ------------------
    wall = None
    rows = body.any(axis=1)
    tj, lj2 = np.nonzero(rows)
    if len(tj) >= 6:
        back_idx = frame.shape[1] - 1 - np.argmax(body[:, ::-1, :], axis=1)
        t_lo, t_hi = bt.min(), bt.max()
        keep = (np.abs(ll[lj2] - bl.mean()) < 0.35 * (bl.max() - bl.min())) & (
            tt[tj] > t_lo + 0.15 * (t_hi - t_lo)
        ) & (tt[tj] < t_hi - 0.15 * (t_hi - t_lo))
        if keep.sum() >= 6:
            a_, b_ = tt[tj[keep]], ll[lj2[keep]]
            c_ = pp[back_idx[tj[keep], lj2[keep]]]
            coef = _fit_plane(a_, b_, c_)
            if coef is not None:
                tm, lm = a_.mean(), b_.mean()
                point = frame.lps(tm, coef[0] + coef[1] * tm + coef[2] * lm, lm)
                wall = Plane(point, frame.dir_lps(-coef[1], 1.0, -coef[2]))

    # --- pedicles ------------------------------------------------------------------------------
    # this vertebra's bone, hole-filled in (t, l) planes per p: the label map leaves out dark
    # cancellous bone, so its holes are filled after masking (a pedicle is then no open ring);
    # a label map made elsewhere may leave out a screw in the pedicle too
    src = own if label_is_bone else bone & own
    if label_is_bone and in_metal is not None:
        src = src | in_metal
    ped_mask = np.moveaxis(_fill_holes_2d(np.moveaxis(src, 1, 0)), 0, 1)
    kt, kp, kl = np.nonzero(body_bone)
    p_wall = pp[kp].max()  # the body's bone reaches to the canal's front, through the pedicle bases
    # the pedicles start at the body's own back wall: where the body ends in the midline
    mid_cols = body_bone[:, :, np.abs(ll - ll[kl].mean()) <= 3.0].any(axis=2)  # [t, p]
    rows_b = mid_cols.any(axis=1)
    p_back = p_wall - 1.0
    if rows_b.any():
        back_p = len(pp) - 1 - np.argmax(mid_cols[rows_b, ::-1], axis=1)
        p_back = min(p_back, float(np.median(pp[back_p])))
    p_end = max(canal_offset_mm + 0.6 * canal_radius_mm, p_wall + 6.0)
    peds = {}
    for side, sgn in (("left", 1.0), ("right", -1.0)):
        peds[side] = _measure_pedicle(
            frame, ped_mask, h, tt, pp, ll, sgn, side, (p_back, p_end), canal_radius_mm,
            (tt[kt].min(), tt[kt].max()),
        )
    return BodyMeasurements(
        centroid_lps=centroid,
        superior_endplate=sup,
        inferior_endplate=inf,
        posterior_wall=wall,
        heights_mm=heights,
        pedicle_left=peds["left"],
        pedicle_right=peds["right"],
        axis_lps=frame.t_lps,
        posterior_lps=frame.p_lps,
        heights_at=heights_at,
    )


def _trim_protrusions(body: np.ndarray, pp: np.ndarray, ll: np.ndarray) -> np.ndarray:
    """The body without what sticks out behind it: rib heads at the costovertebral joints, the
    roots of the pedicles. Per axial section (t): bone behind the middle third of the depth and
    further from the midline than the section's width across that middle third, and bone
    behind the posterior wall (the back of the section's central band, where the canal is
    behind it), each beyond ``TRIM_MARGIN_MM``."""
    out = body.copy()
    for k in range(body.shape[0]):
        sec = body[k]
        if not sec.any():
            continue
        jp, jl = np.nonzero(sec)
        p0, p1 = pp[jp].min(), pp[jp].max()
        mid = (pp[jp] >= p0 + (p1 - p0) / 3) & (pp[jp] <= p0 + 2 * (p1 - p0) / 3)
        if mid.sum() < 3:
            continue
        lm = ll[jl[mid]]
        lo, hi = lm.min() - TRIM_MARGIN_MM, lm.max() + TRIM_MARGIN_MM
        behind = pp[jp] > p0 + 2 * (p1 - p0) / 3
        cut = behind & ((ll[jl] < lo) | (ll[jl] > hi))
        # the posterior wall is the back of the section's central band (the canal is behind
        # it there); beside it, bone further back is a pedicle root or a rib head
        lc, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
        central = np.abs(ll[jl] - lc) <= 0.3 * half
        if central.sum() >= 3:
            cut |= pp[jp] > pp[jp[central]].max() + TRIM_MARGIN_MM
        out[k, jp[cut], jl[cut]] = False
    return out


def _edge_extent(
    h: np.ndarray, top: np.ndarray, bot: np.ndarray, step: float
) -> tuple[np.ndarray, tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]]:
    """Body extent along t of every (p, l) column with its two ends at the half-way crossing
    between the endplate's brightest sample and the darkest sample just outside it (disc), to a
    fraction of a sample: a fixed bone threshold puts the end of a blurred endplate too far out.

    ``h`` is the HU frame ``[t, p, l]``, ``top``/``bot`` the first/last body sample of each column
    (-1 where none).

    Also returns, for the top end and the bottom end, per column, the endplate's peak and the
    darkest sample just outside it (``((peak_top, out_top), (peak_bot, out_bot))``): an end that
    is a real endplate drops into a disc; a body cut by a wrong separation (bone going on past
    the end) hardly drops."""
    nt = h.shape[0]
    pj, lj = np.meshgrid(np.arange(h.shape[1]), np.arange(h.shape[2]), indexing="ij")

    def crossing(end: np.ndarray, outward: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        k = np.arange(-EDGE_SEARCH, EDGE_SEARCH + 1)
        ts = np.clip(end[..., None] + outward * k, 0, nt - 1)  # inward (k<0) .. outward (k>0)
        prof = h[ts, pj[..., None], lj[..., None]].astype(float)
        inner = prof[..., : EDGE_SEARCH + 1]  # inside and at the end sample
        outer = prof[..., EDGE_SEARCH:]  # at the end sample and outside
        level = 0.5 * (inner.max(axis=-1) + outer.min(axis=-1))
        i_pk = inner.argmax(axis=-1)
        # first sample after the peak (going outward) below the level
        after = np.arange(prof.shape[-1]) > i_pk[..., None]
        below = after & (prof < level[..., None])
        has_below = below.any(axis=-1)
        j = np.where(has_below, below.argmax(axis=-1), EDGE_SEARCH)
        jm = np.clip(j - 1, 0, prof.shape[-1] - 1)
        a = np.take_along_axis(prof, jm[..., None], -1)[..., 0]
        b = np.take_along_axis(prof, j[..., None], -1)[..., 0]
        frac = np.where(a != b, (a - level) / np.where(a != b, a - b, 1.0), 0.5)
        pos = (jm + np.clip(frac, 0.0, 1.0)) - EDGE_SEARCH  # samples outward from the end
        pos = np.where(has_below, pos, 0.5)
        return end + outward * pos, (inner.max(axis=-1), outer.min(axis=-1))

    t_top, d_top = crossing(top, +1)
    t_bot, d_bot = crossing(bot, -1)
    return (t_top - t_bot) * step, (d_top, d_bot)


def _first_runs(sec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a section ``[t, lat]`` (``lat`` growing away from the midline): first and last
    index of the row's first run of True; -1 for a row without any."""
    has = sec.any(axis=1)
    start = np.where(has, np.argmax(sec, axis=1), -1)
    gap = (np.arange(sec.shape[1])[None, :] >= start[:, None]) & ~sec
    end = np.where(gap.any(axis=1), np.argmax(gap, axis=1) - 1, sec.shape[1] - 1)
    return start, np.where(has, end, -1)


def _half_way_edges(prof: np.ndarray, last: np.ndarray, outward: int) -> np.ndarray:
    """Sub-sample positions of the bone edges of rows of ``prof`` ``[row, sample]``, each at
    ``last[row]`` (the run's last bone sample going ``outward`` = +1 or -1): where the row
    crosses half-way between the brightest of the three samples inside (capped at
    ``EDGE_HU_CAP``) and the darkest of the two outside. A fixed bone threshold puts the edge of
    blurred cortex too far out."""
    n = prof.shape[1]
    rows = np.arange(len(last))[:, None]
    prof = np.minimum(prof, EDGE_HU_CAP)
    inside = np.clip(last[:, None] - outward * np.arange(3)[None, :], 0, n - 1)
    outside = np.clip(last[:, None] + outward * np.array([1, 2])[None, :], 0, n - 1)
    v_in = prof[rows, inside]
    peak = inside[rows[:, 0], np.argmax(v_in, axis=1)]  # the brightest, nearest the edge on ties
    level = 0.5 * (v_in.max(axis=1) + prof[rows, outside].min(axis=1))
    i = peak.copy()
    for _ in range(4):  # walk outward while still at or above the level, at most 2 past the end
        nxt = i + outward
        go = (np.abs(nxt - last) <= 2) & (nxt >= 0) & (nxt < n)
        go &= prof[rows[:, 0], np.clip(nxt, 0, n - 1)] >= level
        i = np.where(go, nxt, i)
    j = np.clip(i + outward, 0, n - 1)
    a, b = prof[rows[:, 0], i], prof[rows[:, 0], j]
    frac = np.where(a != b, (a - level) / np.where(a != b, a - b, 1.0), 0.5)
    return np.where(j != i, i + outward * np.clip(frac, 0.0, 1.0), i + 0.5 * outward)


def _pedicle_section(sec: np.ndarray, hu: np.ndarray, step: float) -> dict | None:
    """Width and centre of the pedicle in one section ``[t, lat]`` across it (bool bone, HU).

    The pedicle is the bone next to the canal: in each row the first run of bone going away from
    the midline, when it starts at the canal wall (the most common start; rows whose bone reaches
    the section's medial border are body or lamina). Its rows are the longest stack of such rows;
    the width is the median, over the rows within ``PEDICLE_ROWS_MM`` of their middle, of that
    run from its medial edge to where the bone first ends laterally, both edges half-way between
    bone and outside (:func:`_half_way_edges`). Bone beyond the first lateral gap (a rib head,
    a transverse process) does not count; rows where such bone touches the pedicle run on much
    farther than the others (``PEDICLE_ATTACHED``) and are left out, as are rows whose run stops
    short of the pedicle's centre (an open cortical ring) or is a cortex alone.

    Returns the width (mm), the middle row and the centre (sub-sample index along ``lat``), the
    first and last pedicle row, the canal wall's index and the pedicle rows' height (mm); None
    when no such stack of rows is found."""
    start, end = _first_runs(sec)
    ok = start > 0
    if ok.sum() < 3:
        return None
    vals, cnt = np.unique(start[ok], return_counts=True)
    near = np.abs(vals[:, None] - vals[None, :]) <= 1
    wall = vals[np.argmax(near @ cnt)]
    at_wall = ok & (np.abs(start - wall) <= 2)
    lab, _ = ndi.label(at_wall)
    sizes = np.bincount(lab)
    sizes[0] = 0
    rows = np.nonzero(lab == np.argmax(sizes))[0]
    if len(rows) < 3:
        return None
    mid = float(rows.mean())
    sel = rows[np.abs(rows - mid) <= PEDICLE_ROWS_MM / step + 1e-6]
    # rows much wider than the pedicle's usual row carry something beside it (a transverse
    # process, a rib head) and are not measured
    run = end[rows] - start[rows] + 1
    sel = sel[end[sel] - start[sel] + 1 <= PEDICLE_ATTACHED * np.median(run)]
    if len(sel) < 2:
        return None
    centre = int(round(np.median(0.5 * (start[sel] + end[sel]))))
    # a row whose run stops short of the centre is an open ring, one of two samples a cortex
    # alone; one cut by the section's lateral border has no lateral edge
    sel = sel[(end[sel] >= centre) & (end[sel] - start[sel] >= 2) & (end[sel] < sec.shape[1] - 1)]
    if len(sel) < 2:
        return None
    a = _half_way_edges(hu[sel], start[sel], -1)
    b = _half_way_edges(hu[sel], end[sel], +1)
    return dict(
        width=float(np.median(np.maximum(b - a, 0.0))) * step,
        t_idx=mid,
        t_span=(float(rows[0]), float(rows[-1])),
        lat_idx=float(np.mean(0.5 * (a + b))),
        wall=int(wall),
        rows=len(rows) * step,
    )


def _theil_sen(x: np.ndarray, y: np.ndarray) -> float:
    """Median of the pairwise slopes of ``y`` over ``x`` (one outlying point does not tilt it)."""
    i, j = np.triu_indices(len(x), 1)
    dx = x[j] - x[i]
    ok = dx != 0
    return float(np.median((y[j] - y[i])[ok] / dx[ok]))


def _measure_pedicle(frame, mask, hu, tt, pp, ll, sgn, side, p_range, canal_r, t_range):
    """Axis and isthmus of the pedicle on one side, in sections across it (planes of constant
    ``p``) from the body's back wall to behind the canal's centre (``p_range``).

    ``mask`` is the vertebra's hole-filled bone and ``hu`` the HU, both ``[t, p, l]``. Each
    section is measured by :func:`_pedicle_section`. Left out are the sections at the ends of the
    band, those whose canal wall is elsewhere, those whose pedicle rows are much shorter or
    taller than usual (``PEDICLE_GROUP_RANGE``: its base in the body, a lamina or articular
    process joined to it) and those measured outside the middle half of the pedicle's rows where
    most sections place them. The isthmus is the narrowest remaining section. The
    axis is fitted (Theil-Sen) through the centres of the sections within
    ``PEDICLE_ISTHMUS_FRAC`` of it, where nothing beside the pedicle pulls the centres aside; the
    width, read along ``l``, is brought perpendicular to it. Without three such sections, or
    with an implausibly steep fit (``PEDICLE_MAX_ANGLE_DEG``), the axis is ``-p`` (in part)."""
    psel = (pp >= p_range[0]) & (pp <= p_range[1])
    lsel = (sgn * ll >= max(2.0, 0.5 * canal_r)) & (sgn * ll <= canal_r + 30.0)
    tsel = (tt >= t_range[0] - 2) & (tt <= t_range[1] + 2)
    lat_i = np.nonzero(lsel)[0]
    if sgn < 0:
        lat_i = lat_i[::-1]  # index grows away from the midline
    region = mask[:, :, lat_i] & psel[None, :, None] & tsel[:, None, None]
    lab, n = ndi.label(region)
    if n == 0:
        return None
    # the pedicle is the component present across most of the band
    present = lab.transpose(1, 0, 2).reshape(len(pp), -1)  # [p, t*lat]
    pairs = np.zeros((n + 1, len(pp)), bool)
    jp, _ = np.nonzero(present)
    pairs[present[present > 0], jp] = True
    comp = lab == (1 + int(np.argmax(pairs[1:].sum(axis=1))))
    ps = np.nonzero(comp.any(axis=(0, 2)))[0]
    secs = []
    for j in ps:
        m = _pedicle_section(comp[:, j, :], hu[:, j, lat_i], frame.step)
        if m is not None:
            m["p"] = pp[j]
            m["end"] = j in (ps[0], ps[-1]) and len(ps) >= 5
            secs.append(m)
    if not secs:
        return None
    width = np.array([s["width"] for s in secs])
    rows = np.array([s["rows"] for s in secs])
    wall = np.array([s["wall"] for s in secs])
    keep = ~np.array([s["end"] for s in secs]) & (rows >= PEDICLE_MIN_HEIGHT_MM)
    keep &= np.abs(wall - np.median(wall[keep] if keep.any() else wall)) <= 2
    if not keep.any():
        return None
    usual = np.percentile(rows[keep], 25)
    keep &= (rows >= PEDICLE_GROUP_RANGE[0] * usual) & (rows <= PEDICLE_GROUP_RANGE[1] * usual)
    if not keep.any():
        return None
    # the pedicle's middle row, as most sections place it (the front one on a tie): a section
    # measured outside the middle half of the pedicle's rows there is measuring a lamina or an
    # articular process joined below or above the pedicle
    mid = np.array([s["t_idx"] for s in secs]) * frame.step
    span = np.array([s["t_span"] for s in secs]) * frame.step
    kept = np.nonzero(keep)[0]
    near = np.abs(mid[kept][:, None] - mid[kept][None, :]) <= PEDICLE_MID_TOL_MM
    group = kept[near[int(np.argmax(near.sum(axis=1)))]]
    height = float(np.median(span[group, 1] - span[group, 0]))
    keep &= np.abs(mid - np.median(mid[group])) <= 0.25 * height + 0.5 * frame.step
    if not keep.any():
        return None
    k = int(np.argmin(np.where(keep, width, np.inf)))
    p_c = np.array([s["p"] for s in secs])
    t_c = np.interp([s["t_idx"] for s in secs], np.arange(len(tt)), tt)
    lat_c = np.interp([s["lat_idx"] for s in secs], np.arange(len(lat_i)), sgn * ll[lat_i])
    slope_t = slope_lat = 0.0  # too short an isthmus for an axis: along -p, width as read
    for frac in PEDICLE_ISTHMUS_FRAC:
        fit = keep & (width <= frac * width[k])
        if fit.sum() >= 3 and np.ptp(p_c[fit]) >= PEDICLE_AXIS_BASE_MM:
            break
    if fit.sum() >= 3 and np.ptp(p_c[fit]) >= PEDICLE_AXIS_BASE_MM:
        slope_t = _theil_sen(p_c[fit], t_c[fit])
        slope_lat = _theil_sen(p_c[fit], lat_c[fit])
        # beyond these the fit follows something beside the pedicle, not the pedicle
        if abs(slope_t) > np.tan(np.radians(PEDICLE_MAX_ANGLE_DEG[0])):
            slope_t = 0.0
        if abs(slope_lat) > np.tan(np.radians(PEDICLE_MAX_ANGLE_DEG[1])):
            slope_lat = 0.0
    cos_axial = 1.0 / np.hypot(1.0, slope_lat)  # width along l -> perpendicular to the axis
    point = frame.lps(t_c[k], p_c[k], sgn * lat_c[k])
    direction = frame.dir_lps(-slope_t, -1.0, -sgn * slope_lat)  # anterior, into the body
    return Pedicle(side, point, direction, float(width[k] * cos_axial), float(rows[k]))
