"""Simulated fluoroscopy: digitally reconstructed radiographs (DRR) through the CT.

A DRR pixel holds the line integral of linear attenuation along the X-ray from the source to
that detector pixel (:class:`~fluoroplan.geometry.projection.Projection` defines the rays),
the attenuation at the fluoroscopic energy of :mod:`fluoroplan.geometry.xray` (soft tissue as
density-scaled water, bone as a soft-tissue/cortical-bone mixture, metal
``HU >= TITANIUM_MIN_HU`` as titanium). :func:`fluoroscopy_frame` makes the monitor's image:
round collimation, quantum noise at a frame dose, the log detector, automatic brightness over
the field, edge enhancement; metal saturates black (bone dark on a light background;
``invert=True`` for bone bright on dark). :func:`render_drr` adds the marks every image
carries (:mod:`fluoroplan.geometry.fluoro_marks`).

Method (chosen over VTK's vtkImageReslice slab sums, which were 3-4x slower here, and
VTK's fixed-point ray caster, which returns an 8-bit frame buffer; see bench/drr.py): a
perspective shear-warp. The volume axis closest to the beam is the
slice axis; each slice is resampled (bilinear) onto one intermediate plane parallel to the
slices, where the cone-beam projection of a slice is a pure scale and shift, and summed (the
loop compiled with numba: :mod:`fluoroplan.geometry.drr_kernel`); the summed intermediate
image is then warped once to the detector (a plane-to-plane homography) and multiplied by each
ray's path length per slice.
Attenuation is precomputed once per volume as uint16 (:class:`AttenuationVolume`) with a
2x/4x pyramid for previews; transposed copies per slice axis are cached on first use.

This module imports numpy/scipy, numba (through ``drr_kernel``) and ``fluoroplan.geometry``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from fluoroplan.geometry.carm import CArmPose
from fluoroplan.geometry.conventions import (
    BONE_CT_NUMBER,
    MU_BONE_PER_MM,
    MU_METAL_PER_MM,
    MU_WATER_PER_MM,
    NEEDLE_OUTER_DIAMETER_MM,
    TITANIUM_MIN_HU,
)
from fluoroplan.geometry.drr_kernel import accumulate_slices
from fluoroplan.geometry.fluoro_marks import (
    NEEDLE_RGB,
    TARGET_RGB,
    Marks,
    NeedleMark,
    ScrewMark,
    draw_marks,
)
from fluoroplan.geometry.projection import Projection
from fluoroplan.geometry.xray import (
    DQE,
    FLUORO_EFFECTIVE_KEV,
    SOFT_TISSUE_MAX_HU,
    ImagingChain,
    photons_per_mm2_per_ngy,
)

__all__ = [
    "AttenuationVolume",
    "DRR",
    "LandmarkVisibility",
    "attenuation_from_hu",
    "collimated_field",
    "compose_rgb",
    "default_window",
    "detected_line_integrals",
    "disc_mask",
    "fluoroscopy_display",
    "fluoroscopy_frame",
    "landmark_visibility",
    "metal_points_lps",
    "needle_mask",
    "render_drr",
    "render_line_integrals",
]

MU_UNIT_PER_MM = 1e-5  # one uint16 step of the stored attenuation, per mm
AIR_HU = -900.0  # at or below: no attenuation (air with its noise; lets empty rows be skipped)
EDGE_ENHANCE = 0.7
"""Strength of the display's unsharp mask (0: none)."""
EDGE_SIGMA_FRACTION = 0.005
"""Blur of the unsharp mask as a fraction of the image size (about 2.6 px at 512: 1.5 mm at
the detector, as :class:`~fluoroplan.geometry.xray.ImagingChain`)."""


def attenuation_from_hu(
    hu: np.ndarray,
    mu_water_per_mm: float = MU_WATER_PER_MM,
    metal_hu: float = TITANIUM_MIN_HU,
    mu_metal_per_mm: float = MU_METAL_PER_MM,
    air_hu: float = AIR_HU,
    mu_bone_per_mm: float = MU_BONE_PER_MM,
    bone_hu: float = BONE_CT_NUMBER,
    soft_hu: float = SOFT_TISSUE_MAX_HU,
) -> np.ndarray:
    """Linear attenuation per mm (float32) of Hounsfield units at the fluoroscopic energy
    (:mod:`fluoroplan.geometry.xray`): density-scaled water ``mu_water * (1 + HU/1000)`` up to
    ``soft_hu``, above it a mixture of soft tissue and cortical bone whose fraction is
    ``(HU - soft_hu) / (bone_hu - soft_hu)``; zero at or below ``air_hu`` (and never
    negative), ``mu_metal_per_mm`` at or above ``metal_hu``."""
    hu = np.asarray(hu)
    h = hu.astype(np.float32)
    mu = h * np.float32(mu_water_per_mm / 1000.0) + np.float32(mu_water_per_mm)
    mu_soft = mu_water_per_mm * (1.0 + soft_hu / 1000.0)
    slope = (mu_bone_per_mm - mu_soft) / (bone_hu - soft_hu)
    bone = h > soft_hu
    mu[bone] = np.float32(mu_soft) + (h[bone] - np.float32(soft_hu)) * np.float32(slope)
    np.maximum(mu, 0.0, out=mu)
    mu[hu <= air_hu] = 0.0
    mu[hu >= metal_hu] = mu_metal_per_mm
    return mu


def _mu_units_from_hu(hu: np.ndarray, **kw) -> np.ndarray:
    """Attenuation in uint16 steps of MU_UNIT_PER_MM, converted slab by slab."""
    out = np.empty(hu.shape, np.uint16)
    for k0 in range(0, hu.shape[0], 32):
        mu = attenuation_from_hu(hu[k0 : k0 + 32], **kw)
        out[k0 : k0 + 32] = np.minimum(np.rint(mu / MU_UNIT_PER_MM), 65535)
    return out


def _downsample2(a: np.ndarray) -> np.ndarray:
    """Mean of 2x2x2 blocks (pads with zero attenuation = air)."""
    pad = [(0, n % 2) for n in a.shape]
    if any(p[1] for p in pad):
        a = np.pad(a, pad)
    k, j, i = (n // 2 for n in a.shape)
    out = np.zeros((k, j, i), np.float32)
    for dk in (0, 1):
        for dj in (0, 1):
            for di in (0, 1):
                out += a[dk::2, dj::2, di::2]
    return np.rint(out / 8.0).astype(np.uint16)


class AttenuationVolume:
    """Attenuation of a CT precomputed for DRRs: uint16 steps of 1e-5/mm, a 2x/4x pyramid.

    Parameters
    ----------
    hu : ndarray of int16, shape (nk, nj, ni)
        Hounsfield units ``[k, j, i]``.
    lps_from_ijk : ndarray (4, 4)
        Voxel index ``(i, j, k, 1)`` to LPS mm.
    levels : int
        Pyramid depth: level ``L`` has voxels ``2**L`` times larger (block means).

    A duck-typed CT (anything with ``hu`` and ``lps_from_ijk``) can be passed to
    :meth:`from_ct`. Build once per CT and keep it: levels and transposed layouts are cached.
    """

    def __init__(self, hu: np.ndarray, lps_from_ijk: np.ndarray, levels: int = 3, **mu_kw):
        hu = np.asarray(hu)
        if hu.ndim != 3:
            raise ValueError(f"CT must be 3-D, got shape {hu.shape}")
        self.lps_from_ijk = np.asarray(lps_from_ijk, dtype=float)
        self.shape = hu.shape
        self._levels: list[np.ndarray] = [_mu_units_from_hu(hu, **mu_kw)]
        for _ in range(1, levels):
            self._levels.append(_downsample2(self._levels[-1]))
        self._layouts: dict[int, np.ndarray] = {}
        self._occupied: dict[tuple[int, int], np.ndarray] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_ct(cls, ct, levels: int = 3, **mu_kw) -> AttenuationVolume:
        return cls(ct.hu, ct.lps_from_ijk, levels=levels, **mu_kw)

    @property
    def n_levels(self) -> int:
        return len(self._levels)

    def level_affine(self, level: int) -> np.ndarray:
        """``lps_from_ijk`` of a pyramid level (voxel centres of the 2**L blocks)."""
        f = 2**level
        scale = np.diag([f, f, f, 1.0]).astype(float)
        scale[:3, 3] = (f - 1) / 2.0
        return self.lps_from_ijk @ scale

    def level_voxel_mm(self, level: int, kind: str = "max") -> float:
        """Voxel edge of a level, mm: the largest (``"max"``) or the geometric mean."""
        edges = np.linalg.norm(self.level_affine(level)[:3, :3], axis=0)
        return float(np.max(edges) if kind == "max" else np.prod(edges) ** (1.0 / 3.0))

    def level_array(self, level: int) -> np.ndarray:
        return self._levels[level]

    def layout(self, level: int, slice_axis: int) -> tuple[np.ndarray, int, int, int, int]:
        """Rows of the level's attenuation for slicing along index axis ``slice_axis``
        (0=i, 1=j, 2=k): ``(rows2d, n_slices, n_r, stride_c, stride_r)``. Row
        ``c * stride_c + r * stride_r`` of ``rows2d`` is row ``r`` of slice ``c``; the columns
        are the slice's q axis (i for slices along j or k, j for slices along i).

        Slices along k or j read the array as stored; slices along i use a ``[k, i, j]`` copy
        made on first use and cached."""
        arr = self._levels[level]
        nk, nj, ni = arr.shape
        if slice_axis == 2:
            return arr.reshape(nk * nj, ni), nk, nj, nj, 1
        if slice_axis == 1:
            return arr.reshape(nk * nj, ni), nj, nk, 1, nj
        with self._lock:
            if level not in self._layouts:
                self._layouts[level] = np.ascontiguousarray(arr.transpose(0, 2, 1))
        return self._layouts[level].reshape(nk * ni, nj), ni, nk, 1, ni

    def occupied_rows(self, level: int, slice_axis: int) -> np.ndarray:
        """Per row of :meth:`layout`, whether it holds any attenuation (cached)."""
        key = (level, 0 if slice_axis == 0 else 1)
        if key not in self._occupied:
            rows2d = self.layout(level, slice_axis)[0]
            self._occupied[key] = np.asarray(rows2d.any(axis=1))
        return self._occupied[key]


# --- the projector ------------------------------------------------------------------------
_RQ_AXES = {2: (1, 0), 1: (2, 0), 0: (2, 1)}  # slice axis -> (r, q) index axes of its rows


def _interp_rows(coord: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation on 0..n-1: (lower index, weight lower, weight upper); zero
    weights outside."""
    i0 = np.floor(coord).astype(np.int64)
    f = (coord - i0).astype(np.float32)
    inside = (coord >= 0.0) & (coord <= n - 1)
    edge = i0 >= n - 1
    i0 = np.where(edge, n - 2, i0)
    f = np.where(edge, np.float32(1.0), f)
    i0 = np.clip(i0, 0, max(n - 2, 0))
    w0 = np.where(inside, 1.0 - f, 0.0).astype(np.float32)
    w1 = np.where(inside, f, 0.0).astype(np.float32)
    return i0, w0, w1


def _pick_level(vol: AttenuationVolume, proj: Projection) -> int:
    """Coarsest level whose voxels (geometric mean edge) are at most ~2 detector pixels at the
    isocentre: full resolution for a 512 image of a 0.75 mm CT, the 2x level for a 256 preview.
    """
    px_iso_mm = proj.pose.pixel_mm * proj.pose.sod_mm / proj.pose.sid_mm
    level = 0
    while level + 1 < vol.n_levels and vol.level_voxel_mm(level + 1, "mean") <= 2.1 * px_iso_mm:
        level += 1
    return level


def render_line_integrals(
    vol: AttenuationVolume, proj: Projection, level: int | None = None, threads: int = 2
) -> np.ndarray:
    """Line integrals of attenuation (dimensionless, float32, shape ``proj.shape_px``).

    Parameters
    ----------
    vol : AttenuationVolume
        Precomputed attenuation of the CT.
    proj : Projection
        Pose and isocentre: which rays.
    level : int, optional
        Pyramid level (0 = full resolution); default: the coarsest level whose voxels are
        at most about twice the detector pixel size at the isocentre.
    threads : int
        Worker threads (slices are split between them).
    """
    if level is None:
        level = _pick_level(vol, proj)
    if not 0 <= level < vol.n_levels:
        raise ValueError(f"pyramid level {level} does not exist (0..{vol.n_levels - 1})")
    lps_from_idx = vol.level_affine(level)
    idx_from_lps = np.linalg.inv(lps_from_idx)
    m3 = idx_from_lps[:3, :3]
    rows, cols = proj.shape_px
    pitch = proj.pose.pixel_mm

    # rays in index space: ray(u, v) = p(u, v) - s = base + u * du + v * dv (affine in u, v)
    s = m3 @ proj.source_lps + idx_from_lps[:3, 3]
    base_lps = proj.pose.sid_mm * proj.detector_dir_lps - pitch * (
        proj.center_px[0] * proj.right_lps + proj.center_px[1] * proj.down_lps
    )
    base, du, dv = m3 @ base_lps, pitch * (m3 @ proj.right_lps), pitch * (m3 @ proj.down_lps)
    central = m3 @ (proj.pose.sid_mm * proj.detector_dir_lps)
    c_ax = int(np.argmax(np.abs(central)))  # index axis 0=i, 1=j, 2=k
    r_ax, q_ax = _RQ_AXES[c_ax]
    data2, nc, nr, stride_c, stride_r = vol.layout(level, c_ax)
    nq = data2.shape[1]
    s_c, s_r, s_q = s[c_ax], s[r_ax], s[q_ax]
    if -0.5 <= s_c <= nc - 0.5:
        raise ValueError("the X-ray source lies inside the CT volume; increase the SOD")
    u_ = np.arange(cols, dtype=np.float64)[None, :]
    v_ = np.arange(rows, dtype=np.float64)[:, None]
    ray_c = base[c_ax] + u_ * du[c_ax] + v_ * dv[c_ax]
    if np.any(ray_c * (nc / 2.0 - s_c) <= 0):
        raise ValueError("some rays run parallel to the slices; the field of view is too wide")

    # intermediate plane: the slice farthest from the source; scale sigma_c >= 1 per slice
    c_ref = float(nc - 1) if s_c < 0 else 0.0
    sigma = (c_ref - s_c) / (np.arange(nc, dtype=float) - s_c)
    t_px = (c_ref - s_c) / ray_c
    r_px = s_r + t_px * (base[r_ax] + u_ * du[r_ax] + v_ * dv[r_ax])
    q_px = s_q + t_px * (base[q_ax] + u_ * du[q_ax] + v_ * dv[q_ax])
    # grid on the intermediate plane covering the detector's field and the volume's shadow
    smax = sigma.max()
    r_lo = max(np.floor(r_px.min()) - 1, np.floor(min(s_r - s_r * smax, 0.0)) - 1)
    r_hi = min(np.ceil(r_px.max()) + 1, np.ceil(max(s_r + (nr - 1 - s_r) * smax, nr)) + 1)
    q_lo = max(np.floor(q_px.min()) - 1, np.floor(min(s_q - s_q * smax, 0.0)) - 1)
    q_hi = min(np.ceil(q_px.max()) + 1, np.ceil(max(s_q + (nq - 1 - s_q) * smax, nq)) + 1)
    out = np.zeros((rows, cols), np.float32)
    if r_hi <= r_lo or q_hi <= q_lo:
        return out
    r_grid = np.arange(r_lo, r_hi + 1)
    q_grid = np.arange(q_lo, q_hi + 1)

    # which slice columns any slice samples
    q_src = s_q + (q_grid[None, :] - s_q) / sigma[:, None]
    col_lo = int(max(0, np.floor(q_src.min())))
    col_hi = int(min(nq - 1, np.ceil(q_src.max())))
    if col_hi < col_lo:
        return out

    occupied = vol.occupied_rows(level, c_ax)

    # every slice resampled (bilinear) onto the intermediate grid and summed (compiled loop)
    rows_w = _interp_rows(s_r + (r_grid[None, :] - s_r) / sigma[:, None], nr)  # (nc, nb)
    cols_w = _interp_rows(q_src, nq)  # (nc, na)
    inter = accumulate_slices(data2, stride_c, stride_r, occupied, rows_w, cols_w, threads)

    # warp the intermediate image to the detector (bilinear); weight by the path length (mm)
    # of one slice step along each ray: |ray_lps| / |ray_c|
    out[:] = _bilinear(inter, (r_px - r_lo).astype(np.float32), (q_px - q_lo).astype(np.float32))
    off_u = (np.arange(cols, dtype=np.float32) - np.float32(proj.center_px[0])) * pitch
    off_v = (np.arange(rows, dtype=np.float32) - np.float32(proj.center_px[1])) * pitch
    ray_len_mm = np.sqrt(
        off_v[:, None] ** 2 + off_u[None, :] ** 2 + np.float32(proj.pose.sid_mm) ** 2
    )
    out *= ray_len_mm / np.abs(ray_c).astype(np.float32) * np.float32(MU_UNIT_PER_MM)
    return out


def _bilinear(img: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Bilinear samples of a 2-D image at fractional (y, x); zero outside."""
    ny, nx = img.shape
    y0 = np.floor(y)
    x0 = np.floor(x)
    fy, fx = y - y0, x - x0
    y0 = y0.astype(np.int64)
    x0 = x0.astype(np.int64)
    pad = np.zeros((ny + 2, nx + 2), img.dtype)  # one ring of zeros: outside reads zero
    pad[1:-1, 1:-1] = img
    yi = np.clip(y0 + 1, 0, ny)
    xi = np.clip(x0 + 1, 0, nx)
    outside = (y0 < -1) | (y0 > ny - 1) | (x0 < -1) | (x0 > nx - 1)
    flat = pad.ravel()
    i00 = yi * (nx + 2) + xi
    top = flat[i00] * (1 - fx) + flat[i00 + 1] * fx
    bot = flat[i00 + nx + 2] * (1 - fx) + flat[i00 + nx + 3] * fx
    res = top * (1 - fy) + bot * fy
    res[outside] = 0.0
    return res


# --- display --------------------------------------------------------------------------------
BODY_MIN_LINE_INTEGRAL = 0.45
"""Rays attenuated at least this much (20 mm of water) pass through the patient; the exposure
control reads only those (not the air beside the body)."""


METAL_SPREAD = 1.5
"""The window's dark end lies at most this many times the median's distance from the light
end above the median: rays through metal, far beyond, do not set the grey scale."""
PLAN_CHAIN = ImagingChain()
"""The plan's images: round collimation, noise-free (the rehearsal adds quantum noise)."""
ABC_FIELD_FRACTION = 0.5
"""The exposure control's measuring field: the centre of the image, this fraction of the
collimated field's radius."""


def collimated_field(shape: tuple[int, int], collimator: str = "round") -> np.ndarray:
    """Pixels inside the collimated field: a circle of the image's short side (``"round"``)
    or the whole image (``"rect"``)."""
    rows, cols = shape
    if collimator == "rect":
        return np.ones(shape, bool)
    yy, xx = np.mgrid[0:rows, 0:cols]
    radius = 0.5 * min(rows, cols)
    return np.hypot(xx - (cols - 1) / 2.0, yy - (rows - 1) / 2.0) <= radius - 0.5


def detected_line_integrals(line_integrals: np.ndarray, field: np.ndarray, pixel_mm: float,
                            frame_dose_ngy: float, kev: float = FLUORO_EFFECTIVE_KEV,
                            seed: int = 0) -> np.ndarray:
    """What the detector's log amplifier gives for one frame: ``-ln(N / N0)`` of Poisson
    counts ``N`` of ``N0 exp(-line integral)`` photons per pixel (Beer-Lambert), the exposure
    control setting ``N0`` so that the field's median ray through the patient brings
    ``frame_dose_ngy`` to the detector (times the panel's DQE)."""
    li = np.asarray(line_integrals, np.float32)
    body = field & (li > BODY_MIN_LINE_INTEGRAL)
    ref = float(np.median(li[body])) if body.any() else 0.0
    quanta = frame_dose_ngy * photons_per_mm2_per_ngy(kev) * pixel_mm * pixel_mm * DQE
    expected = quanta * np.exp(ref - li.astype(np.float64))
    counts = np.random.default_rng(seed).poisson(expected).astype(np.float64)
    return np.where(field, -np.log(np.maximum(counts, 0.5) / (quanta * np.exp(ref))),
                    li).astype(np.float32)


def fluoroscopy_display(
    line_integrals: np.ndarray,
    invert: bool = False,
    window: tuple[float, float] | None = None,
    enhance: float = EDGE_ENHANCE,
    field: np.ndarray | None = None,
    sigma_px: float | None = None,
) -> np.ndarray:
    """Grey image (uint8) of line integrals as a fluoroscopy monitor shows it.

    Grey falls linearly with the line integral between ``window = (lo, hi)``: at or below
    ``lo`` white, at or above ``hi`` black (saturated: metal goes black as on the monitor).
    Default window: :func:`default_window` over the collimated ``field`` (the exposure
    control's reading). ``enhance`` adds the chain's edge enhancement (an unsharp mask of the
    log image, blur ``sigma_px``; default ``EDGE_SIGMA_FRACTION`` of the image size), so
    cortices, endplates and pedicle outlines stand out; 0 turns it off. Outside ``field`` (the collimator's lead) the
    image is black. ``invert=True`` shows bone bright on a dark background.
    """
    li = np.asarray(line_integrals, dtype=np.float32)
    if window is None:
        window = default_window(li, field)
    lo, hi = float(window[0]), float(window[1])
    if hi <= lo:
        raise ValueError(f"display window must have hi > lo, got {window}")
    if enhance > 0:
        from scipy.ndimage import gaussian_filter

        sigma = sigma_px if sigma_px is not None else EDGE_SIGMA_FRACTION * max(li.shape)
        # on the windowed signal, so saturated metal does not ring into its surroundings
        clipped = np.clip(li, lo, hi)
        li = li + np.float32(enhance) * (clipped - gaussian_filter(clipped, max(sigma, 0.7)))
    dark = np.clip((li - lo) / (hi - lo), 0.0, 1.0)
    grey = dark if invert else 1.0 - dark
    out = np.rint(grey * 255.0).astype(np.uint8)
    if field is not None:
        out[~field] = 0
    return out


def default_window(line_integrals: np.ndarray,
                   field: np.ndarray | None = None) -> tuple[float, float]:
    """The window the automatic brightness control gives. As on a fluoroscope it reads the
    centre of the collimated field (its measuring field: the inner ``ABC_FIELD_FRACTION`` of
    the field's radius), only the rays through the patient (not air, not the collimator): from
    a little below their 2nd percentile to a little above their 98th, or below that where rays
    cross metal (metal saturates black and does not set the grey scale). Thinner tissue toward
    the flanks then burns out white, as it does on the monitor."""
    li = np.asarray(line_integrals, dtype=np.float32)
    rows, cols = li.shape
    if field is None:
        field = np.ones(li.shape, bool)
    yy, xx = np.mgrid[0:rows, 0:cols]
    r = np.hypot(xx - (cols - 1) / 2.0, yy - (rows - 1) / 2.0)
    radius = 0.5 * min(rows, cols)
    body = field & (li > BODY_MIN_LINE_INTEGRAL)
    centre = li[body & (r <= ABC_FIELD_FRACTION * radius)]
    if centre.size < 100:
        centre = li[body]
    if centre.size < 100:
        return 0.0, max(float(li.max()), 1e-3)
    lo_c, p50, hi = np.percentile(centre, [2.0, 50.0, 98.0])
    # tissue spreads about as far above the median as below it; metal lies far beyond
    hi = min(float(hi), float(p50 + METAL_SPREAD * (p50 - lo_c)))
    # the light end: the thinnest tissue in the whole field stays just short of white
    lo = min(float(lo_c), float(np.percentile(li[body], 1.0)))
    pad = 0.1 * (hi - lo)
    return float(lo - pad), float(max(hi + pad, lo + 1e-3))


def fluoroscopy_frame(line_integrals: np.ndarray, proj: Projection,
                      chain: ImagingChain = PLAN_CHAIN, invert: bool = False,
                      window: tuple[float, float] | None = None, seed: int = 0) -> np.ndarray:
    """The monitor's grey image (uint8) of a view's line integrals through the imaging chain:
    collimation, quantum noise at the chain's frame dose (if any), the log detector, automatic
    brightness over the field, edge enhancement; black outside the field."""
    field = collimated_field(proj.shape_px, chain.collimator)
    li = line_integrals
    if chain.frame_dose_ngy is not None:
        li = detected_line_integrals(li, field, proj.pose.pixel_mm, chain.frame_dose_ngy,
                                     chain.kev, seed)
    if window is None:
        window = default_window(line_integrals, field)  # the exposure control: noise-free
    return fluoroscopy_display(li, invert=invert, window=window, enhance=chain.edge_enhance,
                               field=field, sigma_px=chain.edge_sigma_mm / proj.pose.pixel_mm)


# --- overlays (boolean masks through the projection model) ----------------------------------
def _segment_mask(
    shape: tuple[int, int], uv0: np.ndarray, uv1: np.ndarray, half0: float, half1: float
) -> np.ndarray:
    """Pixels within a (tapered) half width of the segment uv0-uv1."""
    rows, cols = shape
    lo = np.floor(np.minimum(uv0, uv1) - max(half0, half1) - 1).astype(int)
    hi = np.ceil(np.maximum(uv0, uv1) + max(half0, half1) + 1).astype(int)
    mask = np.zeros(shape, bool)
    u0, v0 = max(lo[0], 0), max(lo[1], 0)
    u1, v1 = min(hi[0], cols - 1), min(hi[1], rows - 1)
    if u1 < u0 or v1 < v0:
        return mask
    vv, uu = np.mgrid[v0 : v1 + 1, u0 : u1 + 1]
    pts = np.stack([uu, vv], axis=-1).astype(float)
    seg = uv1 - uv0
    length2 = float(seg @ seg)
    t = np.clip(((pts - uv0) @ seg) / length2, 0.0, 1.0) if length2 > 0 else np.zeros(uu.shape)
    dist = np.linalg.norm(pts - (uv0 + t[..., None] * seg), axis=-1)
    mask[v0 : v1 + 1, u0 : u1 + 1] = dist <= (half0 + t * (half1 - half0))
    return mask


def needle_mask(
    proj: Projection,
    entry_lps: np.ndarray,
    target_lps: np.ndarray,
    diameter_mm: float = NEEDLE_OUTER_DIAMETER_MM,
) -> np.ndarray:
    """Pixels covered by a needle of ``diameter_mm`` from entry to target (a 15-gauge line;
    seen end-on in its bull's-eye view it is a dot). Widths follow each end's magnification,
    at least one pixel."""
    ends = np.array([entry_lps, target_lps], dtype=float)
    uv = proj.detector_px_from_lps(ends)
    half = np.maximum(0.5 * diameter_mm * proj.magnification(ends) / proj.pose.pixel_mm, 0.5)
    return _segment_mask(proj.shape_px, uv[0], uv[1], float(half[0]), float(half[1]))


def disc_mask(proj: Projection, point_lps: np.ndarray, radius_px: float = 3.0) -> np.ndarray:
    """Pixels within ``radius_px`` of a projected LPS point (target and landmark markers)."""
    uv = proj.detector_px_from_lps(np.asarray(point_lps, float))
    return _segment_mask(proj.shape_px, uv, uv, radius_px, radius_px)


def compose_rgb(
    grey: np.ndarray, layers: list[tuple[np.ndarray, tuple[int, int, int]]]
) -> np.ndarray:
    """RGB uint8 image: ``grey`` with each (mask, colour) painted on top, in order."""
    rgb = np.repeat(np.asarray(grey, np.uint8)[..., None], 3, axis=2)
    for mask, colour in layers:
        rgb[mask] = colour
    return rgb


# --- landmark visibility --------------------------------------------------------------------
def metal_points_lps(
    hu: np.ndarray,
    lps_from_ijk: np.ndarray,
    metal_hu: float = TITANIUM_MIN_HU,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """LPS centres (N, 3) of metal voxels: ``mask`` (bool ``[k, j, i]``) or ``HU >= metal_hu``."""
    sel = np.asarray(mask, bool) if mask is not None else np.asarray(hu) >= metal_hu
    k, j, i = np.nonzero(sel)
    ijk = np.stack([i, j, k], axis=1).astype(float)
    a = np.asarray(lps_from_ijk, float)
    return ijk @ a[:3, :3].T + a[:3, 3]


@dataclass(frozen=True)
class LandmarkVisibility:
    """How much of the target pedicle and of the needle path metal hides in a view."""

    pedicle_hidden_fraction: float
    needle_hidden_fraction: float
    threshold: float
    hidden: bool
    text: str


def _footprint(proj: Projection, points_lps: np.ndarray, point_size_mm: float) -> np.ndarray:
    """Detector pixels hit by points of ``point_size_mm`` (each splatted as a small disc)."""
    rows, cols = proj.shape_px
    mask = np.zeros((rows, cols), bool)
    pts = np.atleast_2d(np.asarray(points_lps, float))
    if pts.size == 0:
        return mask
    uv = proj.detector_px_from_lps(pts)
    radius = 0.5 * point_size_mm * float(proj.magnification(pts).max()) / proj.pose.pixel_mm
    r = int(np.ceil(max(radius, 0.5)))
    base = np.rint(uv).astype(int)
    for du in range(-r, r + 1):
        for dv in range(-r, r + 1):
            if du * du + dv * dv > (r + 0.5) ** 2:
                continue
            u, v = base[:, 0] + du, base[:, 1] + dv
            ok = (u >= 0) & (u < cols) & (v >= 0) & (v < rows)
            mask[v[ok], u[ok]] = True
    return mask


def landmark_visibility(
    proj: Projection,
    metal_lps: np.ndarray,
    pedicle_lps: np.ndarray,
    entry_lps: np.ndarray,
    target_lps: np.ndarray,
    voxel_mm: float = 1.0,
    threshold: float = 0.3,
) -> LandmarkVisibility:
    """Fraction of the target pedicle and of the needle path that metal covers on the image.

    Parameters
    ----------
    proj : Projection
        The view.
    metal_lps : ndarray (N, 3)
        Metal voxel centres, LPS mm (see :func:`metal_points_lps`).
    pedicle_lps : ndarray (M, 3)
        Points filling the target pedicle (e.g. voxel centres of its mask), LPS mm.
    entry_lps, target_lps : ndarray (3,)
        The planned needle path.
    voxel_mm : float
        Size of the voxels the points stand for (each is splatted at its magnified size).
    threshold : float
        A fraction above this flags the view as hiding the landmarks.
    """
    metal = _footprint(proj, metal_lps, voxel_mm)
    ped = _footprint(proj, pedicle_lps, voxel_mm)
    entry, target = np.asarray(entry_lps, float), np.asarray(target_lps, float)
    n = max(2, int(np.ceil(np.linalg.norm(target - entry) / 0.5)) + 1)
    path = entry + np.linspace(0.0, 1.0, n)[:, None] * (target - entry)
    needle = needle_mask(proj, entry, target) | _footprint(proj, path, NEEDLE_OUTER_DIAMETER_MM)
    f_ped = float((ped & metal).sum() / ped.sum()) if ped.any() else 0.0
    f_needle = float((needle & metal).sum() / needle.sum()) if needle.any() else 0.0
    hidden = max(f_ped, f_needle) > threshold
    text = (
        f"metal covers {100 * f_ped:.0f}% of the target pedicle and {100 * f_needle:.0f}% of "
        f"the needle path on this view"
        + (f" (above {100 * threshold:.0f}%: choose another view)" if hidden else "")
    )
    return LandmarkVisibility(f_ped, f_needle, threshold, hidden, text)


# --- one call -------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class DRR:
    """A simulated fluoroscopy image: the monitor's image with its marks (RGB, or grey when
    drawn without marks), the grey frame beneath them, the raw line integrals, the projection
    and where the marks went."""

    image: np.ndarray  # uint8, (rows, cols, 3) with the marks, or (rows, cols) grey
    line_integrals: np.ndarray  # float32, (rows, cols)
    projection: Projection
    level: int
    grey: np.ndarray | None = None  # uint8 (rows, cols): the frame without marks
    marks: Marks | None = None


NEEDLE_COLOUR = NEEDLE_RGB
TARGET_COLOUR = TARGET_RGB


def _needle_marks(trajectories) -> list[NeedleMark]:
    out = []
    for t in trajectories or ():
        if isinstance(t, NeedleMark):
            out.append(t)
        elif len(t) == 3:
            out.append(NeedleMark(np.asarray(t[0], float), np.asarray(t[2], float),
                                  None if t[1] is None else np.asarray(t[1], float)))
        else:
            out.append(NeedleMark(np.asarray(t[0], float), np.asarray(t[1], float)))
    return out


def render_drr(
    vol: AttenuationVolume,
    pose: CArmPose,
    isocenter_lps: np.ndarray,
    size: int | None = 512,
    invert: bool = False,
    trajectories: list | None = None,
    level: int | None = None,
    window: tuple[float, float] | None = None,
    threads: int = 2,
    chain: ImagingChain = PLAN_CHAIN,
    seed: int = 0,
    screws: list[ScrewMark] | None = None,
    marks: bool = True,
    scale_at_lps: np.ndarray | None = None,
    mark_scale: float = 1.0,
) -> DRR:
    """Render a DRR of ``pose`` around ``isocenter_lps`` (usually the target).

    ``size`` reads a square field of the detector's short side at ``size`` x ``size``
    pixels (``None``: the pose's own detector and pitch). ``chain`` is the imaging chain
    (collimator, quantum noise at its frame dose, edge enhancement: :func:`fluoroscopy_frame`);
    ``seed`` seeds the noise. With ``marks`` (the default) the image is RGB with the marks of
    :mod:`fluoroplan.geometry.fluoro_marks`: side letters, a 10 mm scale at the depth of
    ``scale_at_lps`` (default: the isocentre), each trajectory as its 15-gauge needle
    (``(entry, tip)``, ``(entry, contact, tip)`` or a :class:`NeedleMark`) and the ``screws``;
    ``mark_scale`` enlarges letters and symbols for an image shown small.
    """
    if size is not None:
        pose = pose.with_image_size(size)
    proj = Projection(pose, isocenter_lps)
    if level is None:
        level = _pick_level(vol, proj)
    li = render_line_integrals(vol, proj, level=level, threads=threads)
    grey = fluoroscopy_frame(li, proj, chain, invert=invert, window=window, seed=seed)
    if not marks:
        return DRR(grey, li, proj, level, grey, None)
    image, where = draw_marks(grey, proj, _needle_marks(trajectories), screws or (),
                              scale_at_lps=scale_at_lps, size_scale=mark_scale)
    return DRR(image, li, proj, level, grey, where)
