"""Sub-voxel HU sampling around a straight implant axis (cylindrical coordinates).

Everything the screw, rod and halo measurements need: trilinear sampling of the CT at LPS points
(``scipy.ndimage.map_coordinates``), an orthonormal frame around an axis, radial profiles
``p[s, theta, r]`` and the metal edge on each ray.

The metal edge is the half-maximum of the ray profile between the metal's peak and the local
background, not the threshold crossing (a threshold crossing moves outward with blooming). A
clipped profile (titanium reconstructs far above the 12-bit range, e.g. 3071) has an unknown
true peak at least twice the clip level, so its half-maximum lies at or inside the plateau's
edge: there the edge level is the clip level itself (minus a small margin).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from fluoroplan.io.volume import CTVolume

PLATEAU_FRACTION = 0.5


class HUSampler:
    """Trilinear HU at LPS points of a :class:`CTVolume` (``-1024`` outside)."""

    def __init__(self, volume: CTVolume):
        self.volume = volume
        self.ijk_from_lps = volume.ijk_from_lps
        self.clip_hu = float(volume.hu.max()) if volume.hu.size else 0.0

    def ijk(self, pts_lps: np.ndarray) -> np.ndarray:
        p = np.asarray(pts_lps, float).reshape(-1, 3)
        m = self.ijk_from_lps
        return p[:, :1] * m[:3, 0] + p[:, 1:2] * m[:3, 1] + p[:, 2:3] * m[:3, 2] + m[:3, 3]

    def _map(self, coords_kji: np.ndarray, order: int = 1) -> np.ndarray:
        return ndi.map_coordinates(self.volume.hu, coords_kji, order=order, mode="constant",
                                   cval=-1024.0, prefilter=False, output=np.float32)

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
    """Half-maximum level of each ray; just under the plateau for clipped (saturated) rays."""
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
    HU of the samples ``bg_window_mm`` beyond the cross-section's median plateau edge.
    """
    peak = p[..., : max(2, int(np.searchsorted(r, 1.0)))].max(axis=-1)
    rough = first_crossing(p, r, np.full(peak.shape, 0.5 * clip_hu, np.float32))
    rough_s = np.nanmedian(np.where(np.isnan(rough), r[-1], rough), axis=-1)
    bg = np.empty(p.shape[0], np.float32)
    for n in range(p.shape[0]):  # per cross-section (tens): a window of radii beyond the edge
        sel = (r >= rough_s[n] + bg_window_mm[0]) & (r <= rough_s[n] + bg_window_mm[1])
        vals = p[n][:, sel] if sel.any() else p[n][:, -5:]
        bg[n] = float(np.median(vals))
    level = edge_levels(peak, np.minimum(bg[:, None], peak - 1.0), clip_hu)
    return first_crossing(p, r, level), bg
