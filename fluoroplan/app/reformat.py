"""Reformat planes of a CT volume for display (numpy only; no Qt here).

A view is defined by two unit vectors in LPS: ``right_lps`` (screen +x) and ``down_lps``
(screen +y). The direction into the screen is ``right x down``, so the viewer stands on the
opposite side. Every label drawn on a view (edge letters, "viewed from ...") is derived from
these vectors, so a label cannot disagree with the picture.

Display conventions (see :func:`display_axes`):

- supine (HFS, FFS): axial radiological, viewed from the feet (patient's right on screen left,
  anterior up); coronal viewed from the front (patient's right on screen left, head up);
- prone (HFP, FFP): axial as the patient lies, viewed from the feet with the back up (patient's
  left on screen left); coronal viewed from the back (patient's left on screen left), so the
  left-right direction agrees between axial, coronal and the operator's view of the table;
- sagittal always viewed from the patient's left (anterior on screen left, head up).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fluoroplan.geometry.fluoro_marks import patient_letters
from fluoroplan.io.volume import CTVolume

OUTSIDE_HU = -1024
VIEW_NAMES = ("axial", "sagittal", "coronal")

_SIDES = {
    "L": "patient's left",
    "R": "patient's right",
    "P": "back",
    "A": "front",
    "H": "head",
    "F": "feet",
}
PRONE_POSITIONS = ("HFP", "FFP")


def direction_letter(vec_lps: np.ndarray) -> str:
    """Letter of the LPS axis closest to ``vec_lps`` (L/R, P/A, H/F); two letters if oblique:
    the same words as the simulated fluoroscopy's edges (``geometry.fluoro_marks``)."""
    return patient_letters(vec_lps)


@dataclass(frozen=True)
class PlaneAxes:
    """Screen axes of one view in LPS (unit vectors)."""

    name: str
    right_lps: np.ndarray
    down_lps: np.ndarray

    @property
    def into_screen_lps(self) -> np.ndarray:
        return np.cross(self.right_lps, self.down_lps)

    def edge_letters(self) -> dict[str, str]:
        """Letters for the left, right, top and bottom edges of the view."""
        return {
            "left": direction_letter(-self.right_lps),
            "right": direction_letter(self.right_lps),
            "top": direction_letter(-self.down_lps),
            "bottom": direction_letter(self.down_lps),
        }

    def viewed_from(self) -> str:
        """Where the viewer stands, e.g. ``"the feet"`` or ``"the patient's left"``."""
        letter = direction_letter(-self.into_screen_lps)[0]
        return f"the {_SIDES[letter]}"


def display_axes(patient_position: str) -> dict[str, PlaneAxes]:
    """The three reformat views for a patient position (see the module docstring)."""
    prone = patient_position.upper() in PRONE_POSITIONS
    x, y, z = np.eye(3)
    h = -x if prone else x  # screen right in axial and coronal
    return {
        "axial": PlaneAxes("axial", h, -y if prone else y),
        "sagittal": PlaneAxes("sagittal", y, -z),
        "coronal": PlaneAxes("coronal", h, -z),
    }


@dataclass(frozen=True)
class PlaneGrid:
    """Pixel grid of one view: pixel (col, row) centre is at
    ``origin_lps + col * pixel_mm[0] * right + row * pixel_mm[1] * down + depth * into``,
    with ``origin_lps`` on the plane through LPS depth 0 (the depth is added per slice)."""

    axes: PlaneAxes
    origin_uv_mm: tuple[float, float]  # (u0, v0): plane coordinates of pixel (0, 0)
    pixel_mm: tuple[float, float]  # along right, along down
    shape: tuple[int, int]  # (rows, cols)
    depth_range_mm: tuple[float, float]  # min, max of the voxel centres along into_screen
    depth_step_mm: float  # one slice along into_screen

    def uv_from_lps(self, lps: np.ndarray) -> np.ndarray:
        """Plane coordinates (mm) relative to pixel (0, 0) of (N, 3) LPS points; (N, 2)."""
        p = np.atleast_2d(np.asarray(lps, float))
        u = p @ self.axes.right_lps - self.origin_uv_mm[0]
        v = p @ self.axes.down_lps - self.origin_uv_mm[1]
        return np.stack([u, v], axis=1)

    def lps_from_uv(self, uv: np.ndarray, depth_mm: float) -> np.ndarray:
        """(N, 2) plane mm (relative to pixel (0, 0)) at a depth -> (N, 3) LPS."""
        uv = np.atleast_2d(np.asarray(uv, float))
        a = self.axes
        return (
            (uv[:, :1] + self.origin_uv_mm[0]) * a.right_lps
            + (uv[:, 1:2] + self.origin_uv_mm[1]) * a.down_lps
            + depth_mm * a.into_screen_lps
        )

    def depth_of(self, lps: np.ndarray) -> float:
        return float(np.asarray(lps, float) @ self.axes.into_screen_lps)


def _corners_lps(volume: CTVolume) -> np.ndarray:
    ni, nj, nk = volume.shape_ijk
    corners = np.array(
        [[i, j, k] for i in (0, ni - 1) for j in (0, nj - 1) for k in (0, nk - 1)], float
    )
    return volume.lps_from_ijk_points(corners)


def _spacing_along(volume: CTVolume, axis_lps: np.ndarray) -> float:
    """Voxel spacing of the volume axis best aligned with ``axis_lps``."""
    cos = np.abs(volume.direction.T @ axis_lps)
    return float(volume.spacing_mm[int(np.argmax(cos))])


def plane_grid(volume: CTVolume, axes: PlaneAxes) -> PlaneGrid:
    """The pixel grid covering the volume in this view, at the volume's own resolution."""
    corners = _corners_lps(volume)
    pu = _spacing_along(volume, axes.right_lps)
    pv = _spacing_along(volume, axes.down_lps)
    u = corners @ axes.right_lps
    v = corners @ axes.down_lps
    d = corners @ axes.into_screen_lps
    cols = int(round((u.max() - u.min()) / pu)) + 1
    rows = int(round((v.max() - v.min()) / pv)) + 1
    return PlaneGrid(
        axes=axes,
        origin_uv_mm=(float(u.min()), float(v.min())),
        pixel_mm=(pu, pv),
        shape=(rows, cols),
        depth_range_mm=(float(d.min()), float(d.max())),
        depth_step_mm=_spacing_along(volume, axes.into_screen_lps),
    )


def reformat(volume: CTVolume, grid: PlaneGrid, depth_mm: float) -> np.ndarray:
    """HU image (rows, cols) int16 of the plane at ``depth_mm`` along the view direction.

    Nearest-voxel slicing when the volume axes are aligned with the view (the usual case, exact
    and fast); trilinear resampling otherwise. Outside the volume: ``OUTSIDE_HU``.
    """
    rows, cols = grid.shape
    origin = grid.lps_from_uv(np.zeros((1, 2)), depth_mm)[0]
    a = grid.axes
    ijk0 = volume.ijk_from_lps_points(origin)[0]
    lin = volume.ijk_from_lps[:3, :3]
    d_col = lin @ (a.right_lps * grid.pixel_mm[0])  # ijk step per column
    d_row = lin @ (a.down_lps * grid.pixel_mm[1])  # ijk step per row
    aligned = _aligned_axes(d_col, d_row, ijk0)
    if aligned is not None:
        return _slice_aligned(volume, ijk0, aligned, rows, cols)
    r, c = np.mgrid[0:rows, 0:cols].astype(np.float32)
    ijk = ijk0[:, None, None] + d_col[:, None, None] * c + d_row[:, None, None] * r
    coords = ijk[::-1]  # array axes are [k, j, i]
    out = ndimage.map_coordinates(
        volume.hu, coords, order=1, mode="constant", cval=OUTSIDE_HU, prefilter=False
    )
    return out.astype(np.int16)


def reformat_labels(volume: CTVolume, labels: np.ndarray, grid: PlaneGrid,
                    depth_mm: float) -> np.ndarray:
    """A label volume on the CT grid (``labels[k, j, i]``, e.g. ``Anatomy.labels``) on the plane
    at ``depth_mm``: (rows, cols) of its values, nearest voxel (labels are never blended), 0
    outside the volume. Same pixels as :func:`reformat` of that plane."""
    if labels.shape != volume.hu.shape:
        raise ValueError(f"label volume {labels.shape} is not on the CT grid {volume.hu.shape}")
    rows, cols = grid.shape
    origin = grid.lps_from_uv(np.zeros((1, 2)), depth_mm)[0]
    a = grid.axes
    ijk0 = volume.ijk_from_lps_points(origin)[0]
    lin = volume.ijk_from_lps[:3, :3]
    d_col = lin @ (a.right_lps * grid.pixel_mm[0])
    d_row = lin @ (a.down_lps * grid.pixel_mm[1])
    aligned = _aligned_axes(d_col, d_row, ijk0)
    if aligned is not None:
        return _slice_aligned(volume, ijk0, aligned, rows, cols, array=labels, outside=0)
    r, c = np.mgrid[0:rows, 0:cols].astype(np.float32)
    ijk = ijk0[:, None, None] + d_col[:, None, None] * c + d_row[:, None, None] * r
    idx = np.rint(ijk[::-1]).astype(np.intp)  # nearest voxel, array axes [k, j, i]
    shape = np.array(labels.shape)[:, None, None]
    ok = np.all((idx >= 0) & (idx < shape), axis=0)
    out = np.zeros((rows, cols), labels.dtype)
    out[ok] = labels[idx[0][ok], idx[1][ok], idx[2][ok]]
    return out


def _aligned_axes(d_col, d_row, ijk0, tol=1e-3):
    """(col_axis, col_sign, row_axis, row_sign, depth_axis) when both steps are +-1 voxel
    along single volume axes and the grid origin falls on voxel centres; else None."""

    def unit(d):
        ax = int(np.argmax(np.abs(d)))
        others = np.delete(d, ax)
        if abs(abs(d[ax]) - 1.0) > tol or np.any(np.abs(others) > tol):
            return None
        return ax, int(np.sign(d[ax]))

    uc, ur = unit(d_col), unit(d_row)
    if uc is None or ur is None or uc[0] == ur[0]:
        return None
    if abs(ijk0[uc[0]] - round(ijk0[uc[0]])) > tol or abs(ijk0[ur[0]] - round(ijk0[ur[0]])) > tol:
        return None
    depth_axis = 3 - uc[0] - ur[0]
    return uc[0], uc[1], ur[0], ur[1], depth_axis


def _slice_aligned(volume: CTVolume, ijk0, aligned, rows, cols, array: np.ndarray | None = None,
                   outside: int = OUTSIDE_HU) -> np.ndarray:
    """The plane cut from ``array`` (the CT's HU unless given: a label volume on its grid)."""
    col_ax, col_sign, row_ax, row_sign, depth_ax = aligned
    array = volume.hu if array is None else array
    dtype = np.int16 if array is volume.hu else array.dtype
    shape_ijk = volume.shape_ijk
    kd = int(round(ijk0[depth_ax]))
    if not 0 <= kd < shape_ijk[depth_ax]:
        return np.full((rows, cols), outside, dtype)
    slab = np.take(array, kd, axis=2 - depth_ax)  # 2-D, remaining array axes in order
    # remaining array axes correspond to ijk axes in descending order
    remaining = sorted((col_ax, row_ax), reverse=True)
    if remaining[0] != row_ax:
        slab = slab.T
    c0, r0 = int(round(ijk0[col_ax])), int(round(ijk0[row_ax]))
    out = np.full((rows, cols), outside, dtype)
    # index of the volume along each grid axis, clipped to where it exists
    ci = c0 + col_sign * np.arange(cols)
    ri = r0 + row_sign * np.arange(rows)
    cok = (ci >= 0) & (ci < shape_ijk[col_ax])
    rok = (ri >= 0) & (ri < shape_ijk[row_ax])
    out[np.ix_(rok, cok)] = slab[np.ix_(ri[rok], ci[cok])]
    return out


def window_to_uint8(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    """Map HU to 0..255 grey through a window (width, level)."""
    width = max(float(width), 1.0)
    lo = level - width / 2.0
    g = (hu.astype(np.float32) - lo) * (255.0 / width)
    return np.clip(g, 0, 255).astype(np.uint8)


def oblique_grid(center_lps: np.ndarray, right_lps: np.ndarray, down_lps: np.ndarray,
                 size_mm: tuple[float, float], pixel_mm: float, name: str = "oblique") -> PlaneGrid:
    """A pixel grid of an arbitrary plane through ``center_lps`` (e.g. along or across a needle).

    ``right_lps`` and ``down_lps`` are made orthonormal (``down`` is corrected against
    ``right``); the grid is ``size_mm = (width, height)`` centred on ``center_lps`` at
    ``pixel_mm``. Sample it with :func:`reformat` at ``grid.depth_of(center_lps)`` (resampled
    trilinearly unless the plane happens to align with the voxel axes).
    """
    right = np.asarray(right_lps, float)
    right = right / np.linalg.norm(right)
    down = np.asarray(down_lps, float)
    down = down - (down @ right) * right
    norm = np.linalg.norm(down)
    if norm < 1e-9:
        raise ValueError("the two plane directions are parallel")
    down = down / norm
    axes = PlaneAxes(name, right, down)
    c = np.asarray(center_lps, float).reshape(3)
    cols = max(2, int(round(size_mm[0] / pixel_mm)) + 1)
    rows = max(2, int(round(size_mm[1] / pixel_mm)) + 1)
    u0 = float(c @ right) - (cols - 1) * pixel_mm / 2.0
    v0 = float(c @ down) - (rows - 1) * pixel_mm / 2.0
    depth = float(c @ axes.into_screen_lps)
    return PlaneGrid(axes=axes, origin_uv_mm=(u0, v0), pixel_mm=(pixel_mm, pixel_mm),
                     shape=(rows, cols), depth_range_mm=(depth, depth), depth_step_mm=pixel_mm)
