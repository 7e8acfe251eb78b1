"""Loosening halo around a screw shaft: width, extent along the shaft, 3-D cement target.

A loose screw is surrounded by a radiolucent rim (fibrous tissue, fluid) where it should touch
bone. Method: rays perpendicular to the fitted shaft axis (cylindrical coordinates, trilinear
sub-voxel sampling with ``scipy.ndimage.map_coordinates``) every ``DS_MM`` along the shaft and
every ``360 / N_THETA`` degrees. On each ray the halo starts at the metal surface (the outer
thread envelope, i.e. the half-maximum edge measured by the screw fit, so blooming and partial
volume of the metal do not count) and ends where the HU climbs back to the bone level: the
threshold is halfway between the bone around the screw and fluid (20 HU). A ray that never
reaches bone within ``MAX_WIDTH_MM`` leaves the bone (soft tissue, canal) and does not count.
Per position along the shaft the width is the median over its in-bone rays, so a dark streak
crossing a few rays does not make a halo. The screw is loose when the halo is wider than
``LOOSENING_HALO_MM`` (1 mm) over at least 30 % of the in-bone shaft or 10 mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from fluoroplan.geometry.conventions import LOOSENING_HALO_MM
from fluoroplan.io.volume import CTVolume
from fluoroplan.segmentation.implants_profiles import (
    HUSampler,
    perpendicular_frame,
    radial_profiles,
    unit,
)

DS_MM = 0.5
N_THETA = 36
DR_MM = 0.1
MAX_WIDTH_MM = 8.0
FLUID_HU = 20.0
"""Reference HU of what fills a halo (fibrous tissue, fluid)."""
THRESHOLD_RANGE_HU = (70.0, 350.0)
MEANINGFUL_FRACTION = 0.30
MEANINGFUL_MM = 10.0
TIP_MARGIN_MM = 3.0
HEAD_MARGIN_MM = 1.0
DIP_WITHIN_MM = 1.5


@dataclass(frozen=True, eq=False)
class Halo:
    """The radiolucent rim around one screw shaft.

    Attributes
    ----------
    median_mm, max_mm : float
        Halo width from the metal surface to bone: median over the halo stretch when the screw
        is loose, else over the in-bone shaft; maximum of the per-position widths.
    from_mm, to_mm : float
        The longest stretch where the halo is wider than 1 mm, in mm along the axis from the
        screw head (both 0 when there is none).
    in_bone_from_mm, in_bone_to_mm : float
        The part of the shaft measured inside bone.
    loose : bool
        Halo wider than ``LOOSENING_HALO_MM`` over >= 30 % of the in-bone shaft or >= 10 mm.
    s_mm, width_mm : ndarray
        Position along the axis from the head and the per-position width (NaN out of bone).
    bone_hu, threshold_hu : float
        Bone level around the screw and the threshold at which bone is deemed recovered.
    volume_mm3 : float
        Halo volume over the stretch from the measured widths (annulus integral); 0 unless loose.
    mask : ndarray bool [k, j, i] ; mask_origin_ijk : (i0, j0, k0)
        The halo voxels (HU below the threshold, outside the metal, within the stretch) in a
        box of the CT grid starting at ``mask_origin_ijk``; ``mask_volume_mm3`` their volume.
        Empty unless loose.
    """

    median_mm: float
    max_mm: float
    from_mm: float
    to_mm: float
    in_bone_from_mm: float
    in_bone_to_mm: float
    loose: bool
    s_mm: np.ndarray
    width_mm: np.ndarray
    bone_hu: float
    threshold_hu: float
    volume_mm3: float
    mask: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), bool))
    mask_origin_ijk: tuple[int, int, int] = (0, 0, 0)
    mask_volume_mm3: float = 0.0

    @property
    def mask_bbox_ijk(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """Half-open voxel box ``((i0, j0, k0), (i1, j1, k1))`` of :attr:`mask`."""
        i0, j0, k0 = self.mask_origin_ijk
        nk, nj, ni = self.mask.shape
        return (i0, j0, k0), (i0 + ni, j0 + nj, k0 + nk)

    def points_lps(self, volume: CTVolume) -> np.ndarray:
        """LPS centres of the halo voxels (N, 3)."""
        kji = np.argwhere(self.mask)
        ijk = kji[:, ::-1] + np.asarray(self.mask_origin_ijk)
        return volume.lps_from_ijk_points(ijk)

    def to_json(self) -> dict:
        lo, hi = self.mask_bbox_ijk
        return {
            "median_mm": round(float(self.median_mm), 2), "max_mm": round(float(self.max_mm), 2),
            "from_mm": round(float(self.from_mm), 1), "to_mm": round(float(self.to_mm), 1),
            "in_bone_from_mm": round(float(self.in_bone_from_mm), 1),
            "in_bone_to_mm": round(float(self.in_bone_to_mm), 1),
            "loose": bool(self.loose), "bone_hu": round(float(self.bone_hu), 1),
            "threshold_hu": round(float(self.threshold_hu), 1),
            "volume_mm3": round(float(self.volume_mm3), 1),
            "mask_volume_mm3": round(float(self.mask_volume_mm3), 1),
            "mask_bbox_ijk": [list(lo), list(hi)],
        }


def _longest_stretch(s: np.ndarray, on: np.ndarray, valid: np.ndarray,
                     max_gap_mm: float) -> tuple[float, float, int]:
    """Longest run of ``on`` among the ``valid`` positions (invalid ones, out of bone, do not
    break a run; valid positions not ``on`` break it when longer than ``max_gap_mm``).

    Returns ``(from_s, to_s, number of valid positions in the run)``.
    """
    idx = np.nonzero(valid)[0]
    if idx.size == 0 or not on[idx].any():
        return 0.0, 0.0, 0
    ov = on[idx].copy()
    k = np.nonzero(ov)[0]
    for a, b in zip(k[:-1], k[1:], strict=True):  # bridge short valid gaps
        if b - a > 1 and s[idx[b - 1]] - s[idx[a + 1]] <= max_gap_mm:
            ov[a:b] = True
    m = np.concatenate([[False], ov, [False]]).astype(np.int8)
    starts = np.nonzero(np.diff(m) == 1)[0]
    ends = np.nonzero(np.diff(m) == -1)[0] - 1
    best = int(np.argmax(ends - starts))
    a, b = starts[best], ends[best]
    return float(s[idx[a]]), float(s[idx[b]]), int(b - a + 1)


def _smooth_r(p: np.ndarray, n: int) -> np.ndarray:
    return ndi.uniform_filter1d(p, size=n, axis=-1, mode="nearest") if n > 1 else p


def measure_halo(
    volume: CTVolume,
    head_lps: np.ndarray,
    tip_lps: np.ndarray,
    outer_radius_mm: float,
    *,
    metal_mask: np.ndarray | None = None,
    bone_labels: np.ndarray | None = None,
    sampler: HUSampler | None = None,
) -> Halo:
    """Measure the halo around the shaft from ``head_lps`` to ``tip_lps`` (LPS mm).

    Parameters
    ----------
    volume : CTVolume
    head_lps, tip_lps : (3,) LPS mm
        Ends of the threaded shaft.
    outer_radius_mm : float
        Outer thread radius (the metal surface the halo is measured from).
    metal_mask : bool [k, j, i], optional
        Metal voxels of the CT (excluded from the 3-D halo mask).
    bone_labels : int [k, j, i], optional
        Vertebra label volume; when given a ray counts as in bone only if it recovers in a
        labelled voxel.
    sampler : HUSampler, optional
        Reuse a sampler of ``volume``.
    """
    sampler = sampler or HUSampler(volume)
    head = np.asarray(head_lps, float)
    axis = unit(np.asarray(tip_lps, float) - head)
    length = float(np.linalg.norm(np.asarray(tip_lps, float) - head))
    R = float(outer_radius_mm)
    s = np.arange(HEAD_MARGIN_MM, max(length - TIP_MARGIN_MM, HEAD_MARGIN_MM + DS_MM) + 1e-6, DS_MM)
    p, theta, r = radial_profiles(sampler, head, axis, s, N_THETA, r_max=R + MAX_WIDTH_MM + 1.0,
                                  dr=DR_MM, r_min=R)
    p = _smooth_r(p, max(1, int(round(0.4 / DR_MM))))

    # bone level around the screw: bone-like HU 2.5..6 mm beyond the surface
    ring = p[..., (r >= R + 2.5) & (r <= R + 6.0)]
    bone_like = ring[(ring > FLUID_HU + 60.0) & (ring < 1800.0)]
    bone = float(np.median(bone_like)) if bone_like.size > 20 else 250.0
    thr = float(np.clip(0.5 * (bone + FLUID_HU), *THRESHOLD_RANGE_HU))

    below = p < thr
    dip_idx = np.argmax(below, axis=-1)
    has_dip = below.any(axis=-1) & (r[dip_idx] - R <= DIP_WITHIN_MM)
    # recovery: the first sample at or above the threshold after the dip
    idx_r = np.arange(len(r))
    rec = (~below) & (idx_r[None, None, :] > dip_idx[..., None])
    has_rec = rec.any(axis=-1)
    rec_idx = np.argmax(rec, axis=-1)
    i1 = np.maximum(rec_idx, 1)
    p0 = np.take_along_axis(p, (i1 - 1)[..., None], -1)[..., 0]
    p1 = np.take_along_axis(p, i1[..., None], -1)[..., 0]
    frac = np.clip((thr - p0) / np.where(p1 - p0 == 0, 1.0, p1 - p0), 0.0, 1.0)
    r_rec = r[i1 - 1] + frac * DR_MM
    width = np.where(has_dip, r_rec - R, 0.0)
    in_bone = np.where(has_dip, has_rec & (r_rec - R <= MAX_WIDTH_MM), True)
    if bone_labels is not None:
        base_r = np.where(has_dip & has_rec, r_rec, R)
        e1, e2 = perpendicular_frame(axis)
        radial_dir = (np.cos(theta)[:, None] * e1 + np.sin(theta)[:, None] * e2)[None, :, :]
        nk, nj, ni = bone_labels.shape
        labelled = np.zeros(in_bone.shape, bool)
        for extra in (1.0, 2.0):  # just beyond the recovery point (labels exclude the halo)
            probe = (head[None, None, :] + s[:, None, None] * axis[None, None, :]
                     + (base_r + extra)[..., None] * radial_dir)
            ijk = np.rint(sampler.ijk(probe.reshape(-1, 3))).astype(int)
            ok = ((ijk >= 0) & (ijk < np.array([ni, nj, nk]))).all(axis=1)
            lab = np.zeros(len(ijk), bool)
            lab[ok] = bone_labels[ijk[ok, 2], ijk[ok, 1], ijk[ok, 0]] > 0
            labelled |= lab.reshape(in_bone.shape)
        in_bone &= labelled
    w_rays = np.where(in_bone, width, np.nan)
    valid = in_bone.mean(axis=1) >= 0.5
    w_s = np.full(len(s), np.nan)
    if valid.any():
        w_s[valid] = np.nanmedian(w_rays[valid], axis=1)

    if valid.any():
        b0, b1 = float(s[valid].min()), float(s[valid].max())
        in_bone_len = float(valid.sum() * DS_MM)
    else:
        b0 = b1 = in_bone_len = 0.0
    wide = valid & (np.nan_to_num(w_s) > LOOSENING_HALO_MM)
    h0, h1, n_run = _longest_stretch(s, wide, valid, max_gap_mm=1.5)
    stretch = (s >= h0) & (s <= h1) & valid if n_run else np.zeros(len(s), bool)
    stretch_len = float(n_run * DS_MM)
    loose = bool(stretch_len >= MEANINGFUL_MM
                 or (in_bone_len > 0 and stretch_len >= MEANINGFUL_FRACTION * in_bone_len))
    if loose and stretch.any():
        median = float(np.nanmedian(w_s[stretch]))
        span = (s >= h0) & (s <= h1)  # out-of-bone gaps inside the stretch: interpolated
        w_fill = np.interp(s[span], s[stretch], w_s[stretch])
        vol = float(np.sum(np.pi * ((R + w_fill) ** 2 - R * R)) * DS_MM)
    else:
        median = float(np.nanmedian(w_s[valid])) if valid.any() else 0.0
        vol = 0.0
    wmax = float(np.nanmax(w_s[valid])) if valid.any() else 0.0

    mask, origin, mvol = _halo_mask(volume, head, axis, R, h0, h1, wmax, thr, metal_mask) \
        if loose else (np.zeros((0, 0, 0), bool), (0, 0, 0), 0.0)
    return Halo(median_mm=median, max_mm=wmax, from_mm=h0 if stretch_len else 0.0,
                to_mm=h1 if stretch_len else 0.0, in_bone_from_mm=b0, in_bone_to_mm=b1,
                loose=loose, s_mm=s, width_mm=w_s, bone_hu=bone, threshold_hu=thr,
                volume_mm3=vol, mask=mask, mask_origin_ijk=origin, mask_volume_mm3=mvol)


def _halo_mask(volume: CTVolume, head, axis, R, s0, s1, wmax, thr, metal_mask):
    """Voxels below the threshold in the halo's annulus, connected to the shaft surface."""
    rmax = R + wmax + 1.0
    a, b = head + s0 * axis, head + s1 * axis
    lo = np.minimum(a, b) - rmax
    hi = np.maximum(a, b) + rmax
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    ijk = volume.ijk_from_lps_points(corners)
    shape = np.array(volume.shape_ijk)
    i0 = np.clip(np.floor(ijk.min(axis=0)).astype(int), 0, shape - 1)
    i1 = np.clip(np.ceil(ijk.max(axis=0)).astype(int) + 1, 1, shape)
    box = (slice(i0[2], i1[2]), slice(i0[1], i1[1]), slice(i0[0], i1[0]))
    hu = volume.hu[box]
    kk, jj, ii = np.meshgrid(np.arange(i0[2], i1[2]), np.arange(i0[1], i1[1]),
                             np.arange(i0[0], i1[0]), indexing="ij")
    pts = volume.lps_from_ijk_points(np.stack([ii.ravel(), jj.ravel(), kk.ravel()], axis=1))
    rel = pts - head
    s = rel @ axis
    radial = np.sqrt(np.maximum((rel * rel).sum(1) - s * s, 0.0))
    s = s.reshape(hu.shape)
    radial = radial.reshape(hu.shape)
    m = (s >= s0 - DS_MM) & (s <= s1 + DS_MM) & (radial >= R - 0.5) & (radial <= rmax) & (hu < thr)
    if metal_mask is not None:
        m &= ~metal_mask[box]
    lab, n = ndi.label(m)
    if n:
        touching = np.unique(lab[m & (radial <= R + 1.0)])
        m = np.isin(lab, touching[touching > 0])
    vox = float(np.prod(volume.spacing_mm))
    return m, (int(i0[0]), int(i0[1]), int(i0[2])), float(m.sum() * vox)
