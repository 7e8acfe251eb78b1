"""Signed-distance primitives and the voxel grid the demo phantom is drawn on.

Every shape of the phantom is an (approximate) signed distance function, negative inside, in
millimetres, evaluated only on the voxels of its own bounding box. A voxel's fill fraction is a
linear ramp of the distance across about one voxel, which gives the mild partial-volume blur of
a real reconstruction without smoothing the whole volume.

The grid is the *canonical* one: i along +x (patient left), j along +y (posterior), k along +z
(superior), centred on the LPS origin. The writer flips it for the prone orientation at the end.
"""

from __future__ import annotations

import math

import numpy as np

BIG = np.float32(1.0e3)  # "far outside" for distance canvases (finite so that smin is defined)

Box = tuple[slice, slice, slice]  # (k, j, i) slices into a [k, j, i] array


class Grid:
    """The canonical voxel grid: voxel ``[k, j, i]`` has its centre at ``(x[i], y[j], z[k])``."""

    def __init__(self, shape_ijk: tuple[int, int, int], pixel_mm: float, slice_mm: float):
        ni, nj, nk = (int(n) for n in shape_ijk)
        self.shape_kji = (nk, nj, ni)
        self.pixel_mm = float(pixel_mm)
        self.slice_mm = float(slice_mm)
        self.x = ((np.arange(ni) - (ni - 1) / 2.0) * pixel_mm).astype(np.float32)
        self.y = ((np.arange(nj) - (nj - 1) / 2.0) * pixel_mm).astype(np.float32)
        self.z = ((np.arange(nk) - (nk - 1) / 2.0) * slice_mm).astype(np.float32)
        # partial-volume ramp width: roughly the mean voxel size
        self.ramp_mm = float((2.0 * pixel_mm + slice_mm) / 3.0)

    def lps_from_ijk(self) -> np.ndarray:
        """Affine of the canonical grid (HFS storage order)."""
        a = np.eye(4)
        a[0, 0] = a[1, 1] = self.pixel_mm
        a[2, 2] = self.slice_mm
        a[:3, 3] = (self.x[0], self.y[0], self.z[0])
        return a

    def box(self, lo_lps, hi_lps, margin_mm: float = 0.0) -> Box | None:
        """Index slices of the voxels whose centres lie in the LPS box (grown by a margin)."""
        lo = np.asarray(lo_lps, float) - margin_mm
        hi = np.asarray(hi_lps, float) + margin_mm
        out = []
        for axis, (coords, step) in enumerate(
            ((self.x, self.pixel_mm), (self.y, self.pixel_mm), (self.z, self.slice_mm))
        ):
            n = len(coords)
            a = max(0, math.ceil((lo[axis] - coords[0]) / step))
            b = min(n, math.floor((hi[axis] - coords[0]) / step) + 1)
            if b <= a:
                return None
            out.append(slice(a, b))
        return (out[2], out[1], out[0])

    def coords(self, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable (X, Y, Z) float32 coordinate arrays of a box, shaped for [k, j, i]."""
        return (
            self.x[box[2]][None, None, :],
            self.y[box[1]][None, :, None],
            self.z[box[0]][:, None, None],
        )


def frame_box(grid: Grid, origin, axes, lo_local, hi_local, margin_mm: float) -> Box | None:
    """Grid box of a local axis-aligned box placed with ``origin`` and column ``axes`` (3x3)."""
    lo_local = np.asarray(lo_local, float)
    hi_local = np.asarray(hi_local, float)
    corners = np.array(
        [[(lo_local, hi_local)[a][0], (lo_local, hi_local)[b][1], (lo_local, hi_local)[c][2]]
         for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    )
    pts = corners @ np.asarray(axes, float).T + np.asarray(origin, float)
    return grid.box(pts.min(axis=0), pts.max(axis=0), margin_mm)


def sub_box(outer: Box, inner: Box) -> tuple[Box, Box] | None:
    """Intersection of two absolute boxes, as (absolute box, box relative to ``outer``)."""
    absolute: list[slice] = []
    relative: list[slice] = []
    for o, n in zip(outer, inner, strict=True):
        a, b = max(o.start, n.start), min(o.stop, n.stop)
        if b <= a:
            return None
        absolute.append(slice(a, b))
        relative.append(slice(a - o.start, b - o.start))
    return (absolute[0], absolute[1], absolute[2]), (relative[0], relative[1], relative[2])


def to_local(X, Y, Z, origin, axes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local coordinates (u, v, w) of grid points for a frame with column ``axes``."""
    e = np.asarray(axes, np.float32)
    dx = X - np.float32(origin[0])
    dy = Y - np.float32(origin[1])
    dz = Z - np.float32(origin[2])
    u, v, w = (dx * e[0, c] + dy * e[1, c] + dz * e[2, c] for c in range(3))
    return u, v, w


# --- primitives (all inputs broadcastable float arrays; local frame; mm) ----------------------
def ellipse(p, q, a, b):
    """Approximate signed distance to an ellipse with semi-axes a (along p) and b (along q)."""
    k0 = np.sqrt((p / a) ** 2 + (q / b) ** 2)
    k1 = np.sqrt((p / (a * a)) ** 2 + (q / (b * b)) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = k0 * (k0 - 1.0) / k1
    return np.where(k1 > 1e-6, d, -np.minimum(a, b)).astype(np.float32)


def segment_param(px, py, pz, a, b):
    """Distance to the segment a-b and the clamped parameter t in [0, 1]."""
    ab = np.asarray(b, float) - np.asarray(a, float)
    L2 = float(ab @ ab)
    dx, dy, dz = px - np.float32(a[0]), py - np.float32(a[1]), pz - np.float32(a[2])
    if L2 < 1e-12:  # a sphere
        t = np.zeros_like(dx * 0 + dy * 0 + dz * 0)
    else:
        t = np.clip((dx * ab[0] + dy * ab[1] + dz * ab[2]) / L2, 0.0, 1.0)
    ex, ey, ez = dx - t * ab[0], dy - t * ab[1], dz - t * ab[2]
    return np.sqrt(ex * ex + ey * ey + ez * ez), t


def capsule(px, py, pz, a, b, r):
    d, _ = segment_param(px, py, pz, a, b)
    return (d - np.float32(r)).astype(np.float32)


def box_along(px, py, pz, a, b, side, half_side: float, half_up: float, rounding: float):
    """Rounded box whose long axis runs from a to b (its end faces at a and b).

    ``side`` is a vector across the box (half extent ``half_side``); the third axis (half extent
    ``half_up``) is perpendicular to both.
    """
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    e1 = (b - a) / np.linalg.norm(b - a)
    e2 = np.asarray(side, float) - (np.asarray(side, float) @ e1) * e1
    e2 /= np.linalg.norm(e2)
    e3 = np.cross(e1, e2)
    c = (a + b) / 2.0
    h = np.array([np.linalg.norm(b - a) / 2.0, half_side, half_up]) - rounding
    dx, dy, dz = px - np.float32(c[0]), py - np.float32(c[1]), pz - np.float32(c[2])
    q = [np.abs(dx * e[0] + dy * e[1] + dz * e[2]) - np.float32(hh) for e, hh in zip((e1, e2, e3), h, strict=True)]
    outside = np.sqrt(sum(np.maximum(qq, 0.0) ** 2 for qq in q))
    inside = np.minimum(np.maximum(np.maximum(q[0], q[1]), q[2]), 0.0)
    return (outside + inside - np.float32(rounding)).astype(np.float32)


def smin(a, b, k: float):
    """Polynomial smooth minimum (union with a fillet of about ``k`` mm)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - np.float32(k) * h * (1.0 - h)


def alpha(sdf, ramp_mm: float):
    """Fill fraction of a voxel from its signed distance (linear partial-volume ramp)."""
    return np.clip(0.5 - sdf * np.float32(1.0 / ramp_mm), 0.0, 1.0).astype(np.float32)


def paint(hu: np.ndarray, box: Box, a: np.ndarray, value: float) -> None:
    """Blend ``value`` into ``hu[box]`` with fill fraction ``a``."""
    view = hu[box]
    view += a * (np.float32(value) - view)


def rot_x(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def rot_axis(axis, deg: float) -> np.ndarray:
    """Rotation matrix about a unit axis (Rodrigues)."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    t = math.radians(deg)
    return np.eye(3) + math.sin(t) * K + (1 - math.cos(t)) * (K @ K)


def unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)
