"""Sub-voxel HU sampling around a straight implant axis, and a model of a shaft's blurred profile.

Everything the screw, rod and halo measurements need: trilinear sampling of the CT at LPS points
(``scipy.ndimage.map_coordinates``), an orthonormal frame around an axis, radial profiles
``p[s, theta, r]`` and the metal edge on each ray.

The metal edge on a ray (:func:`metal_edges`) is the half-maximum between the metal's plateau
and the local background, not a threshold crossing (which moves outward with blooming). Titanium
reconstructs far above the 12-bit range and is clipped (3071): the plateau is the clip, and its
half lies outside the true edge by about two thirds of the blur width. That is good enough to
find heads, tulips and rods; a screw's diameter and its blooming rim come from a model instead:

* :func:`shaft_profile`: a threaded shaft (a thread's phases between core and outer radius) in
  uniform surroundings, seen through the voxels' partial volume (a box) and the scanner's
  Gaussian point spread, clipped. A clipped metal's true HU is taken at twice the clip minus its
  surroundings (:func:`clipped_metal_hu`): the half maximum then sits on the clip level, which a
  symmetric blur keeps on the true surface.
* :func:`fit_shaft`: fitted to the voxels around a shaft (their stored values, binned by
  distance: no interpolation across clipped voxels) where the metal dominates the profile; free
  are the outer radius and the blur (or only the radius, with the scan's blur).
* :class:`ShaftFit`: the fitted radius, blur and the rim the metal adds to its surroundings,
  which the halo measurement takes out before it looks for a dark band.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy import optimize, special

from fluoroplan.io.volume import CTVolume

PLATEAU_FRACTION = 0.5
DENSE_BELOW_CLIP_HU = 250.0
"""A ray leaves the clipped metal plateau where it falls this far below the clip."""
DENSE_WRAP_MM = 1.5
"""Half the clip reached this much further out than the plateau's end: dense material (bone
cement) wraps the metal (blooming alone moves it by less than a millimetre)."""


class HUSampler:
    """Trilinear HU at LPS points of a :class:`CTVolume` (``-1024`` outside)."""

    def __init__(self, volume: CTVolume):
        self.volume = volume
        self.array = volume.hu
        self.cval = -1024.0
        self.ijk_from_lps = volume.ijk_from_lps
        self.clip_hu = float(volume.hu.max()) if volume.hu.size else 0.0

    def of_box(self, array: np.ndarray, origin_ijk, cval: float = np.nan) -> HUSampler:
        """A sampler of ``array`` [k, j, i]: a box of this volume's grid starting at voxel
        ``origin_ijk`` (an image derived around one implant), ``cval`` outside the box."""
        out = HUSampler.__new__(HUSampler)
        out.volume = self.volume
        out.array = array
        out.cval = float(cval)
        shift = np.eye(4)
        shift[:3, 3] = -np.asarray(origin_ijk, float)
        out.ijk_from_lps = shift @ self.ijk_from_lps
        out.clip_hu = self.clip_hu
        return out

    def ijk(self, pts_lps: np.ndarray) -> np.ndarray:
        p = np.asarray(pts_lps, float).reshape(-1, 3)
        m = self.ijk_from_lps
        return p[:, :1] * m[:3, 0] + p[:, 1:2] * m[:3, 1] + p[:, 2:3] * m[:3, 2] + m[:3, 3]

    def _map(self, coords_kji: np.ndarray, order: int = 1) -> np.ndarray:
        return ndi.map_coordinates(self.array, coords_kji, order=order, mode="constant",
                                   cval=self.cval, prefilter=False, output=np.float32)

    def sample(self, pts_lps: np.ndarray, order: int = 1) -> np.ndarray:
        shape = np.shape(pts_lps)[:-1]
        ijk = self.ijk(pts_lps)
        return self._map(ijk[:, ::-1].T, order).reshape(shape)

    def sample_affine(self, origin_lps: np.ndarray, vectors_lps: list, coeffs: list) -> np.ndarray:
        """HU at ``origin + sum_n coeffs[n] * vectors[n]`` (coefficient arrays broadcast).

        The points are never built in LPS: origin and vectors are mapped to voxel space once and
        the voxel coordinates are assembled by broadcasting (fast for large cylindrical grids).
        """
        m = self.ijk_from_lps
        o = m[:3, :3] @ np.asarray(origin_lps, float) + m[:3, 3]
        vs = [m[:3, :3] @ np.asarray(v, float) for v in vectors_lps]
        shape = np.broadcast_shapes(*[np.shape(c) for c in coeffs])
        coords = np.empty((3, *shape), np.float64)
        for d_ijk, d_kji in ((0, 2), (1, 1), (2, 0)):
            acc = np.full(shape, o[d_ijk])
            for c, v in zip(coeffs, vs, strict=True):
                if v[d_ijk] != 0.0:
                    acc = acc + np.asarray(c) * v[d_ijk]
            coords[d_kji] = acc
        return self._map(coords)


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, float)
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def perpendicular_frame(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors completing ``axis`` to a right-handed orthonormal frame."""
    a = unit(axis)
    helper = np.array([0.0, 0.0, 1.0]) if abs(a[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = unit(np.cross(a, helper))
    e2 = np.cross(a, e1)
    return e1, e2


def cylinder_points(origin: np.ndarray, axis: np.ndarray, s: np.ndarray, theta: np.ndarray,
                    r: np.ndarray) -> np.ndarray:
    """LPS points ``origin + s*axis + r*(cos(theta) e1 + sin(theta) e2)``, shape (ns, nt, nr, 3)."""
    a = unit(axis)
    e1, e2 = perpendicular_frame(a)
    radial = np.cos(theta)[:, None] * e1 + np.sin(theta)[:, None] * e2  # (nt, 3)
    return (np.asarray(origin, float)[None, None, None, :]
            + s[:, None, None, None] * a[None, None, None, :]
            + r[None, None, :, None] * radial[None, :, None, :])


def radial_profiles(sampler: HUSampler, origin, axis, s, n_theta: int = 24, r_max: float = 12.0,
                    dr: float = 0.1, r_min: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HU on rays perpendicular to ``axis``: returns ``(p[s, theta, r], theta, r)``."""
    theta = np.arange(n_theta) * (2.0 * np.pi / n_theta)
    r = np.arange(r_min, r_max + 1e-9, dr)
    a = unit(axis)
    e1, e2 = perpendicular_frame(a)
    s = np.asarray(s, float)[:, None, None]
    c = np.cos(theta)[None, :, None] * r[None, None, :]
    sn = np.sin(theta)[None, :, None] * r[None, None, :]
    return sampler.sample_affine(origin, [a, e1, e2], [s, c, sn]), theta, r


def edge_levels(peak: np.ndarray, background: np.ndarray, clip_hu: float) -> np.ndarray:
    """Half-maximum level of each ray between its background and its plateau (the clip level
    for a clipped ray)."""
    return background + PLATEAU_FRACTION * (np.minimum(peak, clip_hu) - background)


def first_crossing(p: np.ndarray, r: np.ndarray, level: np.ndarray, start: np.ndarray | None = None,
                   rising: bool = False) -> np.ndarray:
    """Radius of the first crossing of ``level`` along the last axis of ``p`` (NaN if none).

    ``p`` (..., nr) is sampled at ``r``; falling crossings (from >= level to < level) unless
    ``rising``. Only samples at index >= ``start`` (same leading shape) count. Linear sub-sample
    interpolation.
    """
    lv = np.asarray(level, np.float32)[..., None]
    below = (p >= lv) if rising else (p < lv)
    if start is not None:
        idx_r = np.arange(p.shape[-1])
        below = below & (idx_r >= np.asarray(start)[..., None])
    has = below.any(axis=-1)
    idx = np.argmax(below, axis=-1)
    i1 = np.maximum(idx, 1)
    i0 = i1 - 1
    p0 = np.take_along_axis(p, i0[..., None], -1)[..., 0]
    p1 = np.take_along_axis(p, i1[..., None], -1)[..., 0]
    lvl = np.asarray(level, np.float32) * np.ones_like(p0)
    denom = np.where(np.abs(p1 - p0) < 1e-6, 1.0, p1 - p0)
    frac = np.clip((lvl - p0) / denom, 0.0, 1.0)
    out = r[i0] + frac * (r[i1] - r[i0])
    out = np.where(idx == 0, r[0], out)
    return np.where(has, out, np.nan)


def metal_edges(p: np.ndarray, r: np.ndarray, clip_hu: float,
                bg_window_mm: tuple[float, float] = (2.5, 5.0)) -> tuple[np.ndarray, np.ndarray]:
    """Edge radius of the metal on each ray whose axis lies in metal.

    Returns ``(edge[s, theta], background[s])``. The background of a cross-section is the median
    HU of the samples ``bg_window_mm`` beyond the cross-section's median plateau edge; where a
    dense wrap (cement) lies around the metal, the median of the first 1-2.5 mm beyond the
    clipped plateau (the wrap itself), so that the edge is the metal's and not the wrap's.
    """
    peak = p[..., : max(2, int(np.searchsorted(r, 1.0)))].max(axis=-1)
    rough = first_crossing(p, r, np.full(peak.shape, 0.5 * clip_hu, np.float32))
    rough_s = np.nanmedian(np.where(np.isnan(rough), r[-1], rough), axis=-1)
    # where the metal is wrapped in dense material (bone cement: 1200-3000 HU, up to half the
    # clip and more), half the clip is the outer edge of that wrap, not the metal's: the
    # metal's own edge begins where the clipped plateau first falls, and the wrap lies beyond it
    top = first_crossing(p, r, np.full(peak.shape, clip_hu - DENSE_BELOW_CLIP_HU, np.float32))
    top_s = np.nanmedian(np.where(np.isnan(top), r[-1], top), axis=-1)
    dense = rough_s - top_s > DENSE_WRAP_MM
    bg = np.empty(p.shape[0], np.float32)
    for n in range(p.shape[0]):  # per cross-section (tens): a window of radii beyond the edge
        if dense[n]:
            sel = (r >= top_s[n] + 1.0) & (r <= min(top_s[n] + 2.5, rough_s[n]))
        else:
            sel = (r >= rough_s[n] + bg_window_mm[0]) & (r <= rough_s[n] + bg_window_mm[1])
        vals = p[n][:, sel] if sel.any() else p[n][:, -5:]
        bg[n] = float(np.median(vals))
    level = edge_levels(peak, np.minimum(bg[:, None], peak - 1.0), clip_hu)
    edges = first_crossing(p, r, level)
    # inside a dense wrap, a ray that starts below the metal's plateau is in the wrap only
    edges[dense[:, None] & (peak < clip_hu - DENSE_BELOW_CLIP_HU)] = np.nan
    return edges, bg


# --------------------------------------------------------------------------------------------
# a threaded shaft seen through the scanner's blur: model of its radial HU profile
# --------------------------------------------------------------------------------------------
FLUID_HU = 20.0
"""HU of what fills a loosening halo (fibrous tissue, fluid)."""
THREAD_CORE_RATIO = 0.75
"""Core / outer thread diameter of a pedicle screw (6.5 mm outer, ~4.9 mm core)."""
THREAD_PITCH_MM = 2.75
"""Thread pitch of a pedicle screw (2.5-3 mm)."""
STEEP_FRACTION = 0.15
"""The shaft model is fitted where the profile is at least this far up from the surroundings
to the metal: the metal's own edge, hardly touched by anatomy or a halo."""
CLIP_MARGIN_HU = 60.0
"""Samples within this of the clip level count as clipped (noise reaches the clip first)."""


def blurred_disk(r: np.ndarray, radius, sigma: float) -> np.ndarray:
    """Fill fraction at distance ``r`` from the centre of a disk of ``radius`` blurred by an
    isotropic Gaussian of ``sigma`` (mm): the probability that a 2-D Gaussian centred ``r``
    from the disk's centre falls inside it (a non-central chi-square with 2 degrees of freedom,
    i.e. the complement of Marcum's Q). The blur pulls a small disk's edge inward: half the
    fill is reached about ``sigma**2 / (2 radius)`` inside the true edge.
    """
    s2 = max(float(sigma), 1e-3) ** 2
    r = np.asarray(r, float)
    return special.chndtr(np.square(radius) / s2, 2, r * r / s2)


def thread_fills(r: np.ndarray, r_out: float, sigma: float, voxel_mm: float = 0.0,
                 n: int = 4) -> np.ndarray:
    """Metal fill fraction at ``r`` beside each of ``n`` phases of a thread, ``(n, *r.shape)``.

    A thread of triangular profile between the core (:data:`THREAD_CORE_RATIO` ``* r_out``) and
    the outer radius ``r_out``: along one turn its surface radius runs evenly over that range.
    Each phase is a disk seen through the voxels' partial volume (a box ``voxel_mm`` wide
    across the edge) and the scanner's Gaussian point spread ``sigma``; the blur along the shaft
    mixes the phases: of the thread's depth there survives the Gaussian's and the voxel's
    attenuation at the pitch (:data:`THREAD_PITCH_MM`), the rest spreads each phase's edge.
    """
    rc = THREAD_CORE_RATIO * r_out
    mid = 0.5 * (rc + r_out)
    k = 2.0 * np.pi / THREAD_PITCH_MM
    keep = float(np.exp(-0.5 * (k * sigma) ** 2) * np.sinc(voxel_mm / THREAD_PITCH_MM))
    keep = min(max(keep, 0.0), 1.0)
    radii = mid + keep * (rc + (r_out - rc) * (np.arange(n) + 0.5) / n - mid)
    spread = np.sqrt(sigma * sigma + (1.0 - keep * keep) * (r_out - rc) ** 2 / 12.0)
    boxes = voxel_mm * ((np.arange(n) + 0.5) / n - 0.5) if voxel_mm > 0 else np.zeros(1)
    r = np.asarray(r, float)
    edge = (radii[:, None] + boxes[None, :]).reshape((n, len(boxes)) + (1,) * r.ndim)
    return blurred_disk(r[None, None, ...], edge, spread).mean(axis=1)


def shaft_profile(r: np.ndarray, r_out: float, sigma: float, metal_hu: float, bone_hu: float,
                  voxel_mm: float = 0.0, clip_hu: float = np.inf) -> np.ndarray:
    """Mean HU at ``r`` around a threaded shaft in uniform surroundings of ``bone_hu``
    (:func:`thread_fills`): the metal replaces what it displaces; each phase of the thread is
    clipped at ``clip_hu`` before the mean over the turn (as the voxels beside it are)."""
    fill = thread_fills(r, r_out, sigma, voxel_mm)
    return np.minimum(metal_hu * fill + bone_hu * (1.0 - fill), clip_hu).mean(axis=0)


def clipped_metal_hu(clip_hu: float, surround_hu: float, plateau_hu: float) -> float:
    """The metal's true HU behind its plateau.

    Unclipped (an extended-range CT): the plateau itself. Clipped: unknown, but titanium
    reconstructs at about twice the 12-bit clip, so the half maximum between the metal and its
    surroundings sits on the clip level: the metal is taken at ``2 * clip - surroundings``.
    A denser metal (steel, cobalt-chrome) would be brighter still: its edge is then read up to
    about a third of the blur width too far out.
    """
    if plateau_hu < clip_hu - CLIP_MARGIN_HU:
        return float(plateau_hu)
    return float(2.0 * clip_hu - surround_hu)


@dataclass(frozen=True)
class ShaftFit:
    """A threaded shaft's radial profile fitted with :func:`shaft_profile` (mm, HU)."""

    r_out_mm: float
    blur_mm: float
    metal_hu: float
    bone_hu: float
    rms_hu: float
    voxel_mm: float = 0.0
    r_half_mm: float = 0.0
    """The half-maximum edge radius the fit started from (for a refit)."""

    def metal_fill(self, r: np.ndarray) -> np.ndarray:
        """The blurred metal's fill fraction at ``r`` mm from the axis (mean over the turn)."""
        return thread_fills(r, self.r_out_mm, self.blur_mm, self.voxel_mm).mean(axis=0)

    def rim_reach_mm(self) -> float:
        """Distance from the axis beyond which the modelled rim is nil (six blur widths)."""
        return self.r_out_mm + 0.5 * self.voxel_mm + 6.0 * self.blur_mm + 0.1

    def rim_hu(self, r: np.ndarray) -> np.ndarray:
        """What the blurred metal adds at ``r`` over the surroundings it displaces (blooming),
        on average over the thread's turn."""
        return (self.metal_hu - self.bone_hu) * self.metal_fill(r)

    def crest_rim_hu(self, r: np.ndarray) -> np.ndarray:
        """The rim beside a thread's crest: the most the metal adds at ``r`` along the shaft."""
        crest = thread_fills(r, self.r_out_mm, self.blur_mm, self.voxel_mm)[-1]
        return (self.metal_hu - self.bone_hu) * crest


def segment_box(volume: CTVolume, origin, axis, s0: float, s1: float, r_max: float):
    """The voxel box around the segment ``origin + s * axis`` (``s0 <= s <= s1``) grown by
    ``r_max``, with each voxel's position along the axis and squared distance to it.

    Returns ``(lo_ijk, hi_ijk, s[k, j, i], r2[k, j, i])`` (half-open box) or None if empty.
    """
    o = np.asarray(origin, float)
    a = unit(axis)
    ends = np.array([o + s0 * a, o + s1 * a])
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    lo_lps, hi_lps = ends.min(axis=0) - r_max, ends.max(axis=0) + r_max
    ijk = volume.ijk_from_lps_points(lo_lps + corners * (hi_lps - lo_lps))
    shape = np.array(volume.shape_ijk)
    lo = np.clip(np.floor(ijk.min(axis=0)).astype(int), 0, shape)
    hi = np.clip(np.ceil(ijk.max(axis=0)).astype(int) + 1, 0, shape)
    if np.any(hi <= lo):
        return None
    m = volume.lps_from_ijk
    rel0 = m[:3, 3] - o
    ii, jj, kk = (np.arange(lo[c], hi[c], dtype=np.float32) for c in range(3))
    comp = [np.float32(rel0[c]) + np.float32(m[c, 0]) * ii[None, None, :]
            + np.float32(m[c, 1]) * jj[None, :, None] + np.float32(m[c, 2]) * kk[:, None, None]
            for c in range(3)]
    s = comp[0] * np.float32(a[0]) + comp[1] * np.float32(a[1]) + comp[2] * np.float32(a[2])
    r2 = comp[0] ** 2 + comp[1] ** 2 + comp[2] ** 2 - s * s
    return lo, hi, s, r2


def cylinder_voxels(volume: CTVolume, origin, axis, s0: float, s1: float,
                    r_max: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxels within ``r_max`` of the segment ``origin + s * axis``, ``s0 <= s <= s1``.

    Returns ``(s, r, hu)`` of each voxel centre (the stored values, no interpolation: a clipped
    voxel stays one clipped sample instead of darkening its interpolated neighbourhood).
    """
    box = segment_box(volume, origin, axis, s0, s1, r_max)
    if box is None:
        empty = np.zeros(0)
        return empty, empty, empty
    lo, hi, s, r2 = box
    keep = (s >= s0) & (s <= s1) & (r2 <= r_max * r_max)
    hu = volume.hu[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
    return s[keep], np.sqrt(np.maximum(r2[keep], 0.0)), hu[keep].astype(np.float32)


def binned_mean(x: np.ndarray, v: np.ndarray, edges: np.ndarray,
                min_count: int = 5) -> np.ndarray:
    """Mean of ``v`` in the bins ``edges`` of ``x`` (NaN where fewer than ``min_count``).

    A mean, not a median: beside a thread the voxels mix metal and bone in the proportion the
    model's mean fill predicts, and a median (or a trimmed mean) would sharpen the edge.
    """
    idx = np.searchsorted(edges, x, side="right") - 1
    ok = (idx >= 0) & (idx < len(edges) - 1)
    n = len(edges) - 1
    counts = np.bincount(idx[ok], minlength=n)
    sums = np.bincount(idx[ok], weights=np.asarray(v, float)[ok], minlength=n)
    return np.where(counts >= max(min_count, 1), sums / np.maximum(counts, 1), np.nan)


def fit_shaft(r: np.ndarray, hu: np.ndarray, clip_hu: float, r_guess: float,
              voxel_mm: float, blur_mm: float | None = None, start: ShaftFit | None = None,
              bin_mm: float = 0.2, reach_mm: float = 6.0) -> ShaftFit | None:
    """Fit :func:`shaft_profile` (clipped at ``clip_hu``) to voxels around a shaft.

    ``r, hu``: the voxels' distances to the axis and values (:func:`cylinder_voxels`). The
    mean per ``bin_mm`` of distance (:func:`binned_mean`) is fitted where
    the metal dominates: from the plateau down to :data:`STEEP_FRACTION` of the metal's contrast
    over its surroundings. Lower down the profile is as much anatomy (cortex, a halo) as metal
    and would pull the blur and radius. The surroundings are the voxels' median 1.5-4.5 mm
    beyond the edge once the fitted rim is taken out (two rounds). Free: the outer thread radius and
    (unless ``blur_mm`` is given) the blur; ``voxel_mm`` is the partial-volume box (the mean
    voxel spacing); the metal's HU is the plateau's or, when clipped, :func:`clipped_metal_hu`. A refit from a ``start`` fit of the same voxels takes its
    surroundings and does one round. None when too few voxels.
    """
    edges = np.arange(0.0, r_guess + reach_mm + 1e-6, bin_mm)
    med = binned_mean(r, hu, edges)
    rc = 0.5 * (edges[1:] + edges[:-1])
    ok = np.isfinite(med) & (rc >= 0.4 * r_guess)
    if ok.sum() < 10:
        return None
    rc, med = rc[ok], med[ok]
    top = float(np.max(med))
    # start the blur from the edge's width: plateau (or clip) to a sixth of the way up
    hi_r = rc[med >= top - CLIP_MARGIN_HU]
    lo_r = rc[med >= med[-1] + (top - med[-1]) / 6.0]
    width = (lo_r.max() - hi_r.max()) if hi_r.size and lo_r.size else 1.0
    x = np.array([r_guess, float(np.clip(width / 2.0, 0.1, 2.0))])
    if start is not None:
        x[:] = start.r_out_mm, start.blur_mm
    n = 2 if blur_mm is None else 1
    fit = start
    for _ in range(1 if start is not None else 2):
        ring = (r >= x[0] + 1.5) & (r <= x[0] + 4.5)
        if ring.sum() < 20:
            return None
        rim = 0.0 if fit is None else np.interp(r[ring], rc, fit.rim_hu(rc))
        bone = float(np.median(hu[ring] - rim))
        metal = clipped_metal_hu(clip_hu, bone, top)
        sel = med >= bone + STEEP_FRACTION * (metal - bone)
        if sel.sum() < 4:
            return None

        def resid(p, rs=rc[sel], ms=med[sel], metal=metal, bone=bone):
            sigma = p[1] if blur_mm is None else blur_mm
            return shaft_profile(rs, p[0], sigma, metal, bone, voxel_mm, clip_hu) - ms

        sol = optimize.least_squares(resid, x[:n], bounds=([0.5 * r_guess, 0.05][:n],
                                                           [1.6 * r_guess + 0.5, 3.0][:n]),
                                     x_scale=[0.2, 0.2][:n], xtol=1e-4, ftol=1e-4)
        x[:n] = sol.x
        sigma = float(x[1]) if blur_mm is None else float(blur_mm)
        rms = float(np.sqrt(np.mean(sol.fun ** 2)))
        fit = ShaftFit(float(x[0]), sigma, metal, bone, rms, voxel_mm)
    return fit
