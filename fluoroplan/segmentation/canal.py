"""The spinal canal's lumen as voxels, per level, and the lumbar neural foramina beside it.

The bony canal (CONVENTIONS.md): the lumen bounded by the back of the vertebral body, the medial
pedicle walls and the laminae; across a disc level the space between consecutive arches; the
sacral canal below S1. Its real cross-section is measured, never a fitted circle.

Method
------
1. **Sections.** The coarse centreline of the anatomy (the prior) is resampled every
   ``STEP_MM`` and smoothed; each section is perpendicular to it, with in-plane axes ``e1``
   (toward the patient's left) and ``e2`` (toward posterior).
2. **Rays.** ``N_RAYS`` rays leave each section's centre, sampled trilinearly every
   ``RAY_STEP_MM`` out to ``REACH_MM``; metal reads as dense bone. Along a ray the wall is where
   the HU crosses half-way between the lumen's own content (median near the centre) and the
   wall bone's peak just beyond the first sample denser than ``BONE_CONTRAST_HU`` above the
   content. A ray finding no such bone within reach is *open* (a disc, a foramen, an
   interlaminar gap).
3. **Bridging.** Sections whose ring is closed (``CLOSED_FRAC`` of their rays hit bone) give
   the reference wall; elsewhere a hit farther than that reference (plus a tolerance) went out
   through a gap and is open too. Open rays are interpolated along the canal between the
   accepted ones above and below, then across neighbouring angles.
4. **Re-centring.** Each section's centre moves to its boundary's centroid; the sections are
   cast again once. The track is extended caudally into the sacral canal (while its ring stays
   mostly closed) and a little cranially.
5. **Voxels.** Each voxel near the centreline takes its nearest section; it is lumen when its
   in-section radius is within the boundary at its angle. The foramina are the soft tissue just
   outside the lateral boundary where the lateral rays are open, from L1 to the top of S1, out
   to ``FORAMEN_REACH_MM``.
"""

from __future__ import annotations

import time
import warnings as _warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from fluoroplan.model.anatomy import CanalLevel
from fluoroplan.segmentation.errors import AnatomyError

STEP_MM = 1.0
"""Spacing of the sections along the centreline."""
N_RAYS = 72
RAY_STEP_MM = 0.5
REACH_MM = 24.0
"""A ray that meets no bone this far from the centre is open (the widest sacral canal's half
width is ~16 mm)."""
PRIOR_SMOOTH_MM = 4.0
"""Gaussian smoothing of the centreline (sections are perpendicular to the smoothed line)."""
CENTRE_MM = 2.0
"""The lumen's content level is the median HU within this radius of the section's centre."""
CONTENT_HU = (-150.0, 100.0)
"""The lumen's content level is clipped to this range (fat .. cord, blood-enhanced plexus)."""
BONE_CONTRAST_HU = 150.0
"""A ray meets bone where it gets this much denser than the lumen's content."""
PEAK_MM = 2.5
"""The wall bone's peak is searched this far beyond the first bone sample."""
PEAK_CAP_HU = 1000.0
"""HU above this (dense cortex, metal) count as this for the half-way level."""
METAL_HU = 3000.0
CLOSED_FRAC = 0.9
"""A section whose rays hit bone this often has a closed bony ring (reported per level)."""
RING_FRAC = 0.97
"""Sections whose rays hit bone this often (all but two) give the reference wall: the bony
ring at the pedicles; elsewhere a hit beyond it went out through a gap (a foramen, a facet)."""
OPEN_TOL = (1.5, 0.1)
"""A hit farther than the reference wall by more than max(mm, fraction) is open."""
FAR_FACTOR = (1.8, 3.0)
"""A hit farther than this (factor, mm) from the canal's median wall radius nearby is open."""
FAR_WINDOW = 31
"""Sections over which that median is taken."""
SPIKE_RAYS = 5
"""A wall farther than both neighbours over fewer than this many rays is a gap between bones."""
END_CLOSED = 0.5
"""The prior's ends are trimmed to the first and last section with this fraction closed."""
TRACK_CHUNK_MM = 4.0
SACRAL_REACH_MM = 120.0
"""The sacral canal is tracked at most this far below the prior's caudal end."""
CRANIAL_REACH_MM = 12.0
TRACK_MIN_CLOSED = 0.6
"""Tracking stops where fewer than this fraction of a chunk's rays hit bone."""
FORAMEN_REACH_MM = 12.0
"""The foramen zone reaches this far lateral of the canal wall (about a pedicle's length)."""
FORAMEN_SECTOR_DEG = 40.0
"""The foramen zone lies within this angle of the left or right ray."""
FORAMEN_BONE_HU = 200.0
"""Foramen voxels are soft tissue: below this HU (and not metal)."""
FORAMEN_LEVELS = ("L1", "L2", "L3", "L4", "L5")
COARSE_MM = 2.0
"""Cell size of the grid on which each voxel's nearest section is first found."""


# --------------------------------------------------------------------------------------------
# result types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Canal:
    """The spinal canal's lumen and the lumbar foramina as voxels on a sub-box of the CT grid.

    ``box`` is ``(slice_k, slice_j, slice_i)``; ``lumen`` and ``foramina`` are bool arrays of
    that box's shape. ``centerline_lps`` (n, 3) runs cranial to caudal in ~1 mm steps through the
    lumen's centre; ``levels`` maps a vertebra label to its :class:`CanalLevel`."""

    box: tuple[slice, slice, slice]
    lumen: np.ndarray
    foramina: np.ndarray
    centerline_lps: np.ndarray
    levels: dict[str, CanalLevel]
    warnings: tuple[str, ...] = ()
    timings_s: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# geometry helpers
# --------------------------------------------------------------------------------------------
def _resample(points: np.ndarray, step: float) -> np.ndarray:
    """A polyline resampled at ``step`` mm of arc length."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    keep = np.concatenate([[True], seg > 1e-6])
    points = points[keep]
    if len(points) < 2:
        return points
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    n = max(2, int(round(s[-1] / step)) + 1)
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, points[:, a]) for a in range(3)], axis=1)


def _smooth(points: np.ndarray, sigma_mm: float, step: float) -> np.ndarray:
    if len(points) < 3:
        return points
    sig = sigma_mm / step
    # reflect about the end points (mode 'mirror' bends the ends; extend linearly instead)
    pad = int(3 * sig) + 1
    head = 2 * points[0] - points[1: pad + 1][::-1]
    tail = 2 * points[-1] - points[-pad - 1: -1][::-1]
    if len(head) < pad or len(tail) < pad:
        return ndi.gaussian_filter1d(points, sig, axis=0, mode="nearest")
    ext = np.concatenate([head, points, tail])
    return ndi.gaussian_filter1d(ext, sig, axis=0, mode="nearest")[pad:-pad]


def _tangents(points: np.ndarray) -> np.ndarray:
    t = np.gradient(points, axis=0) if len(points) > 1 else np.array([[0.0, 0.0, -1.0]])
    return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)


def _frames(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """In-section axes: e1 toward the patient's left (+x), e2 toward posterior (+y)."""
    x = np.array([1.0, 0.0, 0.0])
    y = np.array([0.0, 1.0, 0.0])
    e1 = x - (t @ x)[:, None] * t
    e1 /= np.maximum(np.linalg.norm(e1, axis=1, keepdims=True), 1e-9)
    e2 = y - (t @ y)[:, None] * t - (e1 @ y)[:, None] * e1
    n2 = np.linalg.norm(e2, axis=1, keepdims=True)
    bad = n2[:, 0] < 1e-3  # the canal running antero-posterior: e2 from t x e1
    e2 = e2 / np.maximum(n2, 1e-9)
    if bad.any():
        e2[bad] = np.cross(t[bad], e1[bad])
    return e1, e2


# --------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------
class _Sampler:
    """Trilinear HU on a cropped box of the CT with metal as dense bone."""

    def __init__(self, volume, metal_mask, lo_ijk, hi_ijk):
        self.lo = lo_ijk
        k0, j0, i0 = lo_ijk[2], lo_ijk[1], lo_ijk[0]
        k1, j1, i1 = hi_ijk[2], hi_ijk[1], hi_ijk[0]
        hu = volume.hu[k0:k1, j0:j1, i0:i1].astype(np.float32)
        if metal_mask is not None:
            hu[np.asarray(metal_mask[k0:k1, j0:j1, i0:i1], bool)] = METAL_HU
        self.hu = hu
        inv = volume.ijk_from_lps
        self.M = inv[:3, :3]
        self.b = inv[:3, 3] - np.asarray(lo_ijk, float)

    def __call__(self, pts_lps: np.ndarray) -> np.ndarray:
        shp = pts_lps.shape[:-1]
        ijk = pts_lps.reshape(-1, 3) @ self.M.T + self.b
        out = ndi.map_coordinates(self.hu, ijk[:, ::-1].T, order=1, mode="nearest",
                                  output=np.float32)
        return out.reshape(shp)

    def rays(self, centre: np.ndarray, dirs: np.ndarray, radii: np.ndarray) -> np.ndarray:
        """HU at ``centre[n] + radii[R] * dirs[n, A]`` (LPS), shape (n, A, R)."""
        c = (centre @ self.M.T + self.b).astype(np.float32)  # n, 3 (i, j, k)
        d = (dirs @ self.M.T).astype(np.float32)  # n, A, 3
        rad = radii.astype(np.float32)[None, None, :]
        coords = np.empty((3,) + d.shape[:2] + (len(radii),), np.float32)
        for out_axis, a in enumerate((2, 1, 0)):  # array axes k, j, i
            np.multiply(d[:, :, a, None], rad, out=coords[out_axis])
            coords[out_axis] += c[:, None, None, a]
        return ndi.map_coordinates(self.hu, coords, order=1, mode="nearest", output=np.float32)


@dataclass
class _Sections:
    centre: np.ndarray  # (n, 3)
    t: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    raw_r: np.ndarray  # (n, A) wall radius, nan where the ray is open
    r: np.ndarray  # (n, A) bridged boundary
    accepted: np.ndarray  # (n, A) bool: the boundary there was measured
    closed: np.ndarray  # (n,) fraction of rays that hit bone
    content: np.ndarray  # (n,) lumen HU


_ANG = np.arange(N_RAYS) * (2 * np.pi / N_RAYS)
_COS, _SIN = np.cos(_ANG), np.sin(_ANG)
_RAD = np.arange(0.0, REACH_MM + 1e-6, RAY_STEP_MM)


def _cast(sample, centre, t):
    """Raw wall radius per (section, ray), nan where open; content level per section."""
    e1, e2 = _frames(t)
    dirs = _COS[None, :, None] * e1[:, None, :] + _SIN[None, :, None] * e2[:, None, :]  # n,A,3
    prof = sample.rays(centre, dirs, _RAD)  # n, A, R
    prof = ndi.convolve1d(prof, np.array([0.25, 0.5, 0.25], np.float32), axis=2, mode="nearest")
    n_c = max(1, int(CENTRE_MM / RAY_STEP_MM) + 1)
    content = np.clip(np.median(prof[:, :, :n_c].reshape(len(centre), -1), axis=1), *CONTENT_HU)
    bone = prof >= (content + BONE_CONTRAST_HU)[:, None, None]
    bone[:, :, 0] = False  # the centre itself in bone: no wall at 0
    hit = bone.any(axis=2)
    first = np.argmax(bone, axis=2)  # n, A
    # the wall's peak just beyond its first bone sample
    # (its first local maximum within PEAK_MM: a denser bone farther out is another wall)
    w = int(round(PEAK_MM / RAY_STEP_MM))
    capped = np.minimum(prof, PEAK_CAP_HU)
    idx = np.arange(len(_RAD))[None, None, :]
    top = np.zeros(prof.shape, bool)
    top[..., :-1] = capped[..., 1:] < capped[..., :-1]
    top[..., -1] = True
    top &= idx >= first[..., None]
    m = np.minimum(np.argmax(top, axis=2), np.minimum(first + w, len(_RAD) - 1))
    runmax = np.maximum.accumulate(np.where(idx >= first[..., None], capped, -np.inf), axis=2)
    peak = np.take_along_axis(runmax, m[..., None], axis=2)[..., 0]
    half = 0.5 * (content[:, None] + peak)
    # the half-way crossing of the edge that leads up to the bone: backward from the first
    # bone sample when that is already above half-way (a gradual rise: blurred, osteoporotic),
    # else forward to the first sample reaching half-way (a sharp rise to dense cortex)
    p_first = np.take_along_axis(prof, first[..., None], axis=2)[..., 0]
    below = (prof < half[..., None]) & (idx < first[..., None])
    j_back = np.where(below, idx, 0).max(axis=2)
    above = (prof >= half[..., None]) & (idx >= first[..., None])
    j_fwd = np.argmax(above, axis=2) - 1
    j = np.where(p_first >= half, j_back, j_fwd)
    j = np.clip(j, 0, len(_RAD) - 2)
    p0 = np.take_along_axis(prof, j[..., None], axis=2)[..., 0]
    p1 = np.take_along_axis(prof, (j + 1)[..., None], axis=2)[..., 0]
    frac = np.clip((half - p0) / np.maximum(p1 - p0, 1e-3), 0.0, 1.0)
    r = (j + frac) * RAY_STEP_MM
    r = np.where(hit & (r > 0.5 * RAY_STEP_MM), r, np.nan)
    return r.astype(np.float32), content, e1, e2


def _bridge(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accepted walls (hits no farther than the closed rings' reference) and the boundary
    with the open rays interpolated along the canal and across angles."""
    n, A = raw.shape
    # a hit far beyond the canal's usual size here went out through a gap (an interlaminar
    # space, a foramen) to the next bone: open
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", RuntimeWarning)
        size = np.nanmedian(raw, axis=1)
    size = np.where(np.isfinite(raw).mean(axis=1) >= END_CLOSED, size, np.nan)
    if np.isfinite(size).any():
        w = min(n, FAR_WINDOW)
        pad = np.pad(size, w // 2, mode="edge")
        win = np.lib.stride_tricks.sliding_window_view(pad, w)[:n]
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", RuntimeWarning)
            local = np.nanmedian(win, axis=1)
        local = np.where(np.isfinite(local), local, np.nanmedian(size))
        raw = np.where(raw <= FAR_FACTOR[0] * local[:, None] + FAR_FACTOR[1], raw, np.nan)
    hit = np.isfinite(raw)
    closed = hit.mean(axis=1)
    # a ray that went out through a narrow gap between two bones is a spike of the wall's
    # radius over angle: the wall's grey-scale opening removes it; such a ray is open too
    big = np.where(hit, raw, 2.0 * REACH_MM)
    opened = ndi.maximum_filter1d(ndi.minimum_filter1d(big, SPIKE_RAYS, axis=1, mode="wrap"),
                                  SPIKE_RAYS, axis=1, mode="wrap")
    raw = np.where(hit & (big <= opened + np.maximum(OPEN_TOL[0], OPEN_TOL[1] * opened)),
                   raw, np.nan)
    ring = closed >= RING_FRAC
    if ring.sum() < 2:
        ring = closed >= max(0.5, np.quantile(closed, 0.9) - 0.02)
    s = np.arange(n, dtype=float)
    ref = np.full((n, A), np.nan, np.float32)
    for a in range(A):
        ok = ring & np.isfinite(raw[:, a])
        if ok.sum() >= 1:
            ref[:, a] = np.interp(s, s[ok], raw[ok, a])
    ref = _fill_angles(ref)
    tol = np.maximum(OPEN_TOL[0], OPEN_TOL[1] * ref)
    acc = np.isfinite(raw) & (~np.isfinite(ref) | (raw <= ref + tol))
    r = np.full((n, A), np.nan, np.float32)
    for a in range(A):
        ok = acc[:, a]
        if ok.sum() >= 1:
            r[:, a] = np.interp(s, s[ok], raw[ok, a])
    r = _fill_angles(r)
    if not np.isfinite(r).all():
        r = np.where(np.isfinite(r), r, np.nanmedian(raw) if np.isfinite(raw).any() else 8.0)
    # light smoothing: across angles and along the canal
    r = ndi.convolve1d(r, np.array([0.25, 0.5, 0.25], np.float32), axis=1, mode="wrap")
    r = ndi.gaussian_filter1d(r, 1.0, axis=0, mode="nearest")
    return r.astype(np.float32), acc, closed


def _fill_angles(r: np.ndarray) -> np.ndarray:
    """Rays with no value interpolated (circularly) between the nearest valid angles."""
    bad = ~np.isfinite(r)
    if not bad.any():
        return r
    out = r.copy()
    A = r.shape[1]
    ang = np.arange(A, dtype=float)
    for i in np.nonzero(bad.any(axis=1))[0]:
        ok = ~bad[i]
        if not ok.any():
            continue
        xa = ang[ok]
        ya = r[i, ok]
        xp = np.concatenate([xa - A, xa, xa + A])
        yp = np.concatenate([ya, ya, ya])
        out[i, bad[i]] = np.interp(ang[bad[i]], xp, yp)
    return out


def _polygon(r: np.ndarray):
    """Area, centroid (in-section x, y), width and depth of each boundary polygon."""
    x = r * _COS[None, :]
    y = r * _SIN[None, :]
    x1, y1 = np.roll(x, -1, axis=1), np.roll(y, -1, axis=1)
    cr = x * y1 - x1 * y
    area = 0.5 * cr.sum(axis=1)
    safe = np.where(np.abs(area) > 1e-6, area, 1e-6)
    cx = ((x + x1) * cr).sum(axis=1) / (6 * safe)
    cy = ((y + y1) * cr).sum(axis=1) / (6 * safe)
    width = x.max(axis=1) - x.min(axis=1)
    depth = y.max(axis=1) - y.min(axis=1)
    return area, cx, cy, width, depth


def _sections(sample, centre: np.ndarray) -> _Sections:
    t = _tangents(centre)
    raw, content, e1, e2 = _cast(sample, centre, t)
    r, acc, closed = _bridge(raw)
    return _Sections(centre, t, e1, e2, raw, r, acc, closed, content)


def _track(sample, centre: np.ndarray, direction: int, reach_mm: float, inside) -> np.ndarray:
    """Points beyond one end of ``centre`` (direction +1: past the last, -1: before the
    first), followed chunk by chunk while the ring stays mostly closed."""
    pts = centre if direction > 0 else centre[::-1]
    added: list[np.ndarray] = []
    n_chunk = int(round(TRACK_CHUNK_MM / STEP_MM))
    travelled = 0.0
    while travelled < reach_mm:
        tail = np.concatenate([pts] + added)[-10:]
        d = tail[-1] - tail[0]
        d = d / max(np.linalg.norm(d), 1e-9)
        new = tail[-1] + STEP_MM * np.arange(1, n_chunk + 1)[:, None] * d[None, :]
        if not inside(new).all():
            break
        t = np.repeat(d[None, :], len(new), axis=0)
        raw, _, e1, e2 = _cast(sample, new, t)
        closed = np.isfinite(raw).mean(axis=1)
        if closed.mean() < TRACK_MIN_CLOSED:
            break
        r = _fill_angles(np.where(np.isfinite(raw), raw, np.nan))
        if not np.isfinite(r).all():
            break
        _, cx, cy, _, _ = _polygon(r)
        shift = np.clip(np.median(cx), -3, 3) * e1.mean(0) + np.clip(np.median(cy), -3, 3) * e2.mean(0)
        added.append(new + shift[None, :])
        travelled += TRACK_CHUNK_MM
    if not added:
        return np.zeros((0, 3))
    out = np.concatenate(added)
    return out if direction > 0 else out[::-1]


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def segment_canal(volume, metal_mask, anatomy) -> Canal:
    """The spinal canal's lumen (voxels), the lumbar foramina and the per-level sizes, from the
    CT and its analysed ``anatomy`` (whose coarse canal centreline is the prior)."""
    times: dict = {}
    t0 = time.perf_counter()
    warnings: list[str] = []
    prior = np.asarray(anatomy.canal_centerline_lps, float).reshape(-1, 3)
    if len(prior) < 2:
        raise AnatomyError(
            "The spinal canal could not be segmented: the anatomy gives fewer than two points "
            "of the canal's centreline."
        )
    if prior[0, 2] < prior[-1, 2]:
        prior = prior[::-1]
    line = _smooth(_resample(prior, STEP_MM), PRIOR_SMOOTH_MM, STEP_MM)

    # working box on the CT grid: the prior, its extensions and the foramina
    ni, nj, nk = volume.shape_ijk
    shape = np.array([ni, nj, nk])
    sp = volume.spacing_mm
    margin = REACH_MM + FORAMEN_REACH_MM + 6.0
    ext_lo = line.min(axis=0) - margin
    ext_hi = line.max(axis=0) + margin
    ext_lo[2] -= SACRAL_REACH_MM
    ext_hi[2] += CRANIAL_REACH_MM
    corners = np.array([[x, y, z] for x in (ext_lo[0], ext_hi[0]) for y in (ext_lo[1], ext_hi[1])
                        for z in (ext_lo[2], ext_hi[2])])
    cijk = volume.ijk_from_lps_points(corners)
    lo = np.clip(np.floor(cijk.min(axis=0)).astype(int), 0, shape - 1)
    hi = np.clip(np.ceil(cijk.max(axis=0)).astype(int) + 1, 1, shape)
    sample = _Sampler(volume, metal_mask, lo, hi)

    def inside(p):
        q = volume.ijk_from_lps_points(p)
        return ((q >= lo) & (q <= hi - 1)).all(axis=1)

    line = line[inside(line)]
    if len(line) < 3:
        raise AnatomyError("The spinal canal could not be segmented: its centreline lies "
                           "outside the CT.")
    times["setup"] = time.perf_counter() - t0

    # pass 1, re-centre, extend, pass 2
    t1 = time.perf_counter()
    sec = _sections(sample, line)
    # the prior's ends beyond any bony ring (no vertebra there) are dropped
    ringed = np.nonzero(sec.closed >= END_CLOSED)[0]
    if len(ringed):
        keep = slice(max(0, ringed[0] - 2), min(len(line), ringed[-1] + 3))
    else:
        keep = slice(0, len(line))
        warnings.append("No closed bony ring was found around the spinal canal's track: the "
                        "canal's boundary is a guess.")
    _, cx, cy, _, _ = _polygon(sec.r)
    lim = 0.5 * np.median(np.nanmedian(sec.r, axis=1))
    shift = np.clip(cx, -lim, lim)[:, None] * sec.e1 + np.clip(cy, -lim, lim)[:, None] * sec.e2
    line = _smooth((sec.centre + shift)[keep], 3.0, STEP_MM)
    caudal = _track(sample, line, +1, SACRAL_REACH_MM, inside)
    cranial = _track(sample, line, -1, CRANIAL_REACH_MM, inside)
    line = np.concatenate([cranial, line, caudal])
    line = _smooth(_resample(line, STEP_MM), 2.0, STEP_MM)
    line = line[inside(line)]
    sec = _sections(sample, line)
    _, cx, cy, _, _ = _polygon(sec.r)
    shift = np.clip(cx, -lim, lim)[:, None] * sec.e1 + np.clip(cy, -lim, lim)[:, None] * sec.e2
    line = _smooth(sec.centre + shift, 2.0, STEP_MM)
    sec = _sections(sample, line)
    times["sections"] = time.perf_counter() - t1
    if float(np.mean(sec.closed >= CLOSED_FRAC)) < 0.1:
        warnings.append(
            "The spinal canal's bony ring is closed on few sections: its boundary is mostly "
            "interpolated (laminectomy, osteoporosis or a coarse CT)."
        )

    # voxels
    t2 = time.perf_counter()
    levels = _levels(sec, anatomy)
    lumen, foramina, box = _voxelise(volume, sample, sec, anatomy, lo, hi, sp)
    times["voxels"] = time.perf_counter() - t2
    if not lumen.any():
        raise AnatomyError("The spinal canal could not be segmented: no lumen voxel found.")
    times["total"] = time.perf_counter() - t0
    return Canal(box=box, lumen=lumen, foramina=foramina, centerline_lps=sec.centre,
                 levels=levels, warnings=tuple(warnings), timings_s=times)


# --------------------------------------------------------------------------------------------
# levels
# --------------------------------------------------------------------------------------------
def _stretch(v, centre: np.ndarray) -> np.ndarray:
    """Sections within vertebra ``v``'s body span along its axis (endplates, else its height
    about the centroid)."""
    inside = np.ones(len(centre), bool)
    sup, inf = v.superior_endplate, v.inferior_endplate
    heights = [h for h in (v.heights_mm or {}).values() if h is not None and np.isfinite(h)]
    half = 0.5 * max(heights) if heights else 12.0
    ax = np.asarray(v.axis_lps, float)
    tt = (centre - np.asarray(v.centroid_lps, float)) @ ax
    if sup is not None:
        inside &= (centre - sup.point_lps) @ sup.normal_lps <= 0
    else:
        inside &= tt <= half
    if inf is not None:
        inside &= (centre - inf.point_lps) @ inf.normal_lps <= 0
    else:
        inside &= tt >= -half
    # and near the vertebra at all (the canal behind its body)
    inside &= np.linalg.norm(centre - np.asarray(v.centroid_lps, float), axis=1) < 80.0
    return inside


def _levels(sec: _Sections, anatomy) -> dict[str, CanalLevel]:
    area, _, _, width, depth = _polygon(sec.r)
    ring = sec.closed >= CLOSED_FRAC
    out = {}
    for v in anatomy.vertebrae:
        mask = _stretch(v, sec.centre)
        if not mask.any():
            continue
        # the narrowest of the full rings (the pedicles' level), else of the closed sections
        cand = mask & (sec.closed >= RING_FRAC)
        if not cand.any():
            cand = mask & ring
        closed = bool(cand.any())
        if not closed:
            cand = mask
        idx = np.nonzero(cand)[0]
        i = int(idx[np.argmin(area[idx])])
        out[v.label] = CanalLevel(v.label, float(area[i]), float(width[i]), float(depth[i]),
                                  sec.centre[i].copy(), closed)
    return out


def _foramen_sections(sec: _Sections, anatomy) -> np.ndarray:
    """Sections from the pedicles of L1 down to the top of S1 (the lumbar exiting roots)."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(sec.centre, axis=0), axis=1))])
    verts = {v.label: v for v in anatomy.vertebrae}

    def arc_at(p):
        return arc[int(np.argmin(np.linalg.norm(sec.centre - p, axis=1)))]

    present = [lab for lab in FORAMEN_LEVELS if lab in verts]
    if not present:
        return np.zeros(len(arc), bool)
    top = verts[present[0]]
    peds = [p for p in (top.pedicle_left, top.pedicle_right) if p is not None]
    start = arc_at(np.mean([p.axis_point_lps for p in peds], axis=0) if peds
                   else np.asarray(top.centroid_lps, float))
    if "S1" in verts and verts["S1"].superior_endplate is not None:
        end = arc_at(verts["S1"].superior_endplate.point_lps) + 5.0
    else:
        last = verts[present[-1]]
        end = arc_at(np.asarray(last.centroid_lps, float)) + 30.0
    return (arc >= start) & (arc <= end)


# --------------------------------------------------------------------------------------------
# voxels
# --------------------------------------------------------------------------------------------
def _voxelise(volume, sample: _Sampler, sec: _Sections, anatomy, lo, hi, sp):
    n = len(sec.centre)
    fsec = _foramen_sections(sec, anatomy)
    # how far from each section's centre its voxels reach: its lumen, or out to the foramina
    need = np.nanmax(sec.r, axis=1) + 1.0 + np.where(fsec, FORAMEN_REACH_MM, 0.0)
    pts = np.concatenate([sec.centre + need[:, None] * d for d in
                          (sec.e1, -sec.e1, sec.e2, -sec.e2)] + [sec.centre])
    q = volume.ijk_from_lps_points(pts)
    blo = np.maximum(np.floor(q.min(axis=0)).astype(int) - 1, lo)
    bhi = np.minimum(np.ceil(q.max(axis=0)).astype(int) + 2, hi)
    box = (slice(blo[2], bhi[2]), slice(blo[1], bhi[1]), slice(blo[0], bhi[0]))
    bshape = np.array([bhi[2] - blo[2], bhi[1] - blo[1], bhi[0] - blo[0]])
    # nearest section on a coarse grid (~2 mm cells), refined along the tangent per voxel
    fk = np.maximum(1, np.round(COARSE_MM / sp[::-1]).astype(int))  # k, j, i
    cshape = tuple(int(c) for c in np.ceil(bshape / fk).astype(int))
    cq = (volume.ijk_from_lps_points(sec.centre) - blo)[:, ::-1]  # k, j, i voxel coordinates
    ck = np.clip(np.floor((cq + 0.5) / fk).astype(int), 0, np.array(cshape) - 1)
    seed_id = np.full(cshape, -1, np.int32)
    seed_id[ck[:, 0], ck[:, 1], ck[:, 2]] = np.arange(n)
    csp = fk * sp[::-1]
    dist, ind = ndi.distance_transform_edt(seed_id < 0, sampling=csp, return_indices=True)
    near = seed_id[ind[0], ind[1], ind[2]]
    cells = np.nonzero(dist <= need[near] + float(csp.max()))
    # full-resolution voxels of those cells
    offs = np.stack(np.meshgrid(*[np.arange(f) for f in fk], indexing="ij"), -1).reshape(-1, 3)
    vox = (np.stack(cells, 1)[:, None, :] * fk + offs[None, :, :]).reshape(-1, 3)
    s_idx = np.repeat(near[cells], len(offs))
    ok = (vox < bshape).all(axis=1)
    vox, s_idx = vox[ok], s_idx[ok]
    kk, jj, ii = vox[:, 0], vox[:, 1], vox[:, 2]
    # in-section coordinates as linear functions of the voxel index, per section
    A = volume.lps_from_ijk
    gi, gj, gk = ii.astype(np.float32), jj.astype(np.float32), kk.astype(np.float32)
    origin = A[:3, 3] + A[:3, :3] @ blo.astype(float)

    def coef(e):  # (n, 4): value = c0 i + c1 j + c2 k + c3 for (p - centre) . e
        return np.concatenate([e @ A[:3, :3], ((origin - sec.centre) * e).sum(1)[:, None]],
                              axis=1).astype(np.float32)

    def lin(c, s_):
        cs = c[s_]
        return cs[:, 0] * gi + cs[:, 1] * gj + cs[:, 2] * gk + cs[:, 3]

    ct, c1, c2 = coef(sec.t), coef(sec.e1), coef(sec.e2)
    for _ in range(2):  # move to the section whose plane holds the voxel
        s_idx = np.clip(s_idx + np.rint(lin(ct, s_idx) / STEP_MM).astype(np.int32), 0, n - 1)
    u = lin(ct, s_idx)
    x = lin(c1, s_idx)
    y = lin(c2, s_idx)
    rr = np.hypot(x, y)
    ang = np.mod(np.arctan2(y, x), 2 * np.pi) * (N_RAYS / (2 * np.pi))
    a0 = np.floor(ang).astype(np.int32) % N_RAYS
    fa = ang - np.floor(ang)
    rb = (1 - fa) * sec.r[s_idx, a0] + fa * sec.r[s_idx, (a0 + 1) % N_RAYS]
    along = np.abs(u) <= 0.5 * STEP_MM + 0.75 * float(sp.max())
    inl = along & (rr <= rb)
    lumen = np.zeros(tuple(bshape), bool)
    lumen[kk[inl], jj[inl], ii[inl]] = True
    # foramina: soft tissue beside the lateral wall where the lateral rays are open
    foramina = np.zeros(tuple(bshape), bool)
    if fsec.any():
        a_near = np.rint(ang).astype(np.int32) % N_RAYS
        cand = along & fsec[s_idx] & (rr > rb) & (rr <= rb + FORAMEN_REACH_MM)
        cand &= np.degrees(np.arctan2(np.abs(y), np.abs(x))) <= FORAMEN_SECTOR_DEG
        # between the levels of the canal's front (the body, the disc) and back (the facets)
        q = N_RAYS // 4
        cand &= (y >= -sec.r[s_idx, 3 * q]) & (y <= sec.r[s_idx, q])
        cand &= ~sec.accepted[s_idx, a_near]
        sel = np.nonzero(cand)[0]
        if len(sel):
            hu = sample.hu[kk[sel] + blo[2] - sample.lo[2], jj[sel] + blo[1] - sample.lo[1],
                           ii[sel] + blo[0] - sample.lo[0]]
            sel = sel[hu < FORAMEN_BONE_HU]
            # never a vertebra's own bone (osteoporotic cancellous bone is below that HU)
            lab = np.asarray(anatomy.labels)[kk[sel] + blo[2], jj[sel] + blo[1], ii[sel] + blo[0]]
            sel = sel[lab == 0]
            foramina[kk[sel], jj[sel], ii[sel]] = True
            foramina &= ~lumen
    return lumen, foramina, box
