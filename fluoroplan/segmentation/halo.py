"""Loosening halo around a screw shaft: width, extent along the shaft, 3-D cement target.

A loose screw is surrounded by a radiolucent rim (fibrous tissue, fluid) where it should touch
bone. Method: rays perpendicular to the fitted shaft axis (cylindrical coordinates, trilinear
sub-voxel sampling with ``scipy.ndimage.map_coordinates``) every ``DS_MM`` along the shaft and
every ``360 / N_THETA`` degrees. On each ray the halo starts at the metal surface (the outer
thread envelope measured by the screw fit) and ends where the HU climbs back to the bone level:
the threshold is halfway between the bone around the screw and fluid (20 HU), and on each ray
halfway to the bone just beyond its edge where that is lower (a blurred edge's middle). A ray
that never reaches bone within ``MAX_WIDTH_MM`` leaves the bone (soft tissue, canal) and does
not count. Per position along the shaft the width is the median over its in-bone rays, so a
dark streak crossing a few rays does not make a halo. The screw is loose when the halo is wider
than ``LOOSENING_HALO_MM`` (1 mm) over at least 30 % of the in-bone shaft or 10 mm.

Blooming: the scanner's blur spreads the metal's enormous contrast over the first millimetres
around it, a bright rim that fills a halo (and that, on a tight screw, is no halo). With the
shaft's profile model (:class:`implants_profiles.ShaftFit`) the rim is taken out voxel by voxel
(the metal replaced by the bone around it) before the rays are sampled. Where the rim is too
large for its model to be trusted (an error of a tenth of it would be a quarter of the halo's
contrast, beside the thread's crests) nothing is seen: the halo is looked for beyond, and
:attr:`Halo.blind_mm` says how far that is.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage as ndi

from fluoroplan.geometry.conventions import LOOSENING_HALO_MM
from fluoroplan.io.volume import CTVolume
from fluoroplan.model.implants import Halo
from fluoroplan.segmentation.implants_profiles import (
    CLIP_MARGIN_HU,
    FLUID_HU,
    HUSampler,
    ShaftFit,
    perpendicular_frame,
    radial_profiles,
    segment_box,
    unit,
)

DS_MM = 0.5
N_THETA = 36
DR_MM = 0.1
MAX_WIDTH_MM = 8.0
CEMENT_MIN_HU = 1200.0
CEMENT_BLUR_MM = 1.5
CEMENT_RING_MM = 12.0
"""Bone cement (PMMA with barium, 1200-3000 HU) and this far around it is left out of the bone
level a halo is compared with; where it covers the usual ring (2.5-6 mm beyond the surface),
the bone beyond it, out to CEMENT_RING_MM, stands in."""
THRESHOLD_RANGE_HU = (70.0, 350.0)
MEANINGFUL_FRACTION = 0.30
MEANINGFUL_MM = 10.0
TIP_MARGIN_MM = 3.0
HEAD_MARGIN_MM = 1.0
DIP_WITHIN_MM = 1.5
DIP_SEEN_MM = 0.5
"""...or within this of the first sample blooming leaves to be seen, when that is further out."""
RIM_MODEL_ERROR = 0.1
"""Relative error of the shaft model's rim (see :func:`_blind_radius`)."""


def _longest_stretch(s: np.ndarray, on: np.ndarray, valid: np.ndarray,
                     max_gap_mm: float) -> tuple[float, float, int]:
    """Longest run of ``on`` among the ``valid`` positions (invalid ones, out of bone, do not
    break a run; valid positions not ``on`` break it when longer than ``max_gap_mm``).

    Returns ``(from_s, to_s, number of positions in the run that are on)``: bridged gaps
    join a run but do not count toward its length.
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
    return float(s[idx[a]]), float(s[idx[b]]), int(on[idx[a:b + 1]].sum())


def _smooth_r(p: np.ndarray, n: int) -> np.ndarray:
    """Running mean over ``n`` samples along the rays; NaN where the window holds a NaN."""
    if n <= 1:
        return p
    known = np.isfinite(p)
    if known.all():
        return ndi.uniform_filter1d(p, size=n, axis=-1, mode="nearest")
    num = ndi.uniform_filter1d(np.where(known, p, 0.0), size=n, axis=-1, mode="nearest")
    den = ndi.uniform_filter1d(known.astype(np.float32), size=n, axis=-1, mode="nearest")
    return np.where(den > 1.0 - 1e-3, num / np.maximum(den, 1e-6), np.nan).astype(p.dtype)


def _edge_at_local_bone(p: np.ndarray, r: np.ndarray, known: np.ndarray, ok: np.ndarray,
                        rec_idx: np.ndarray, r_rec: np.ndarray, thr: float) -> np.ndarray:
    """The halo's outer edge on each ray at the level halfway from fluid to the bone just beyond
    it (0.5-2.5 mm past the recovery), where that is below the screw's threshold ``thr``.

    The screw's threshold comes from the bone all around (cortex included); a blurred edge
    crosses it further out than its middle. Rays whose bone beyond is brighter keep ``thr``.
    """
    idx_r = np.arange(len(r))
    first = np.clip(rec_idx + int(round(0.5 / DR_MM)), 0, len(r) - 1)
    window = np.minimum(first[..., None] + np.arange(int(round(2.0 / DR_MM)) + 1), len(r) - 1)
    vals = np.take_along_axis(np.where(known, p, np.nan), window, axis=-1)
    vals = np.sort(vals, axis=-1)  # NaN (unknown) last
    count = np.isfinite(vals).sum(axis=-1)
    local = np.take_along_axis(vals, np.maximum(count - 1, 0)[..., None] // 2, -1)[..., 0]
    local = np.where(ok & (count > 0), local, np.nan)  # the median of the known samples
    level = np.clip(0.5 * (local + FLUID_HU), THRESHOLD_RANGE_HU[0], thr)
    under = known & (p < level[..., None]) & (idx_r[None, None, :] < rec_idx[..., None])
    has = ok & np.isfinite(level) & (level < thr) & under.any(axis=-1)
    last = len(r) - 1 - np.argmax(under[..., ::-1], axis=-1)  # last sample under the level
    j = np.minimum(last + 1, len(r) - 1)
    p0 = np.take_along_axis(p, last[..., None], -1)[..., 0]
    p1 = np.take_along_axis(p, j[..., None], -1)[..., 0]
    frac = np.clip((level - p0) / np.where(p1 - p0 == 0, 1.0, p1 - p0), 0.0, 1.0)
    edge = r[last] + frac * (r[j] - r[last])
    return np.where(has & np.isfinite(edge), edge, r_rec)


def _rim_model(shaft: ShaftFit) -> ShaftFit:
    """The shaft model as far as its rim beyond the metal can be trusted.

    The fit cannot tell a blur narrower than half a voxel from the voxels' own partial volume
    and the thread's depth (the edge is as wide either way); a Gaussian has tails, a voxel's box
    has none, and a wrong tail subtracted from the rays would pass for a halo. So the blur's
    share below half a voxel is dropped (from a quarter voxel on, in proportion): a sharp scan's
    rim ends within the voxel beyond the thread, a blurred scan's keeps its Gaussian tails.
    """
    v = shaft.voxel_mm
    keep = float(np.clip((shaft.blur_mm - 0.25 * v) / (0.25 * v), 0.0, 1.0)) if v > 0 else 1.0
    return replace(shaft, blur_mm=max(keep * shaft.blur_mm, 1e-3))


def _blind_radius(shaft: ShaftFit, r_max: float) -> float:
    """Distance from the axis within which the rim model is too uncertain to look through: an
    error of :data:`RIM_MODEL_ERROR` of the rim beside a thread crest would be a quarter of the
    halo's bone-fluid contrast."""
    r = np.arange(0.5 * shaft.r_out_mm, min(r_max, shaft.rim_reach_mm()), 0.02)
    over = RIM_MODEL_ERROR * shaft.crest_rim_hu(r) > 0.25 * max(shaft.bone_hu - FLUID_HU, 50.0)
    return float(r[np.nonzero(over)[0].max()] + 0.02) if over.any() else 0.0


def _rim_free(sampler: HUSampler, head, axis, s0: float, s1: float, r_max: float,
              shaft: ShaftFit, blind_r: float) -> HUSampler:
    """The CT around a shaft with the metal's blurred rim taken out, as a sampler.

    The shaft's profile model predicts, voxel by voxel, how much of each voxel's HU the blurred
    metal brings (blooming); that is replaced by the bone the shaft model sees around it, so a
    tight screw's surroundings read as plain bone and a halo as its own dark band. Within
    ``blind_r`` of the axis (metal, clipped voxels, an uncertain rim) the voxels read as that
    bone, neither dark nor bright, so that samples interpolated next to them lean on nothing
    false; beyond it a clipped voxel (other metal) holds nothing known (NaN, and so do the
    interpolated samples that lean on it), as does everything outside the box.
    """
    volume = sampler.volume
    box = segment_box(volume, head, axis, s0, s1, r_max)
    if box is None:
        return sampler
    lo, hi, _, r2 = box
    rho = np.sqrt(np.maximum(r2, 0.0))
    r_tab = np.arange(0.0, shaft.rim_reach_mm() + 0.05, 0.02)
    hu = volume.hu[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]].astype(np.float32)
    field = hu - np.interp(rho, r_tab, shaft.rim_hu(r_tab), right=0.0).astype(np.float32)
    field[hu >= np.float32(sampler.clip_hu - CLIP_MARGIN_HU)] = np.nan
    field[rho < blind_r] = np.float32(shaft.bone_hu)
    return sampler.of_box(field, lo)


def _bone_level(p: np.ndarray, r: np.ndarray, R: float) -> float:
    """Bone level around the screw: median of the bone-like HU 2.5..6 mm beyond the surface.

    Cement around the screw (an augmented screw, a vertebroplasty beside it) is not bone: on
    each ray, samples within ``CEMENT_BLUR_MM`` of one brighter than ``CEMENT_MIN_HU`` are left
    out (the cement and its blurred edge), and the bone beyond the cement stands in for them;
    else the level would come from the pedicle's cortex alone and ordinary cancellous bone
    beside the screw would look like a halo (measured: an augmented tight screw read a 1.2 mm
    "halo" and loose)."""
    hot = (np.nan_to_num(p, nan=0.0) > CEMENT_MIN_HU) & (r >= R + 1.0)
    reach = max(1, int(round(CEMENT_BLUR_MM / DR_MM)))
    near_hot = ndi.maximum_filter1d(hot.astype(np.uint8), size=2 * reach + 1, axis=-1) > 0
    p = np.where(near_hot, np.nan, p)
    # where cement covers the usual ring, the bone beyond it stands in (out to CEMENT_RING_MM)
    wrapped = near_hot[..., (r >= R + 2.5) & (r <= R + 6.0)].any(axis=-1)
    far = p[..., (r > R + 6.0) & (r <= R + CEMENT_RING_MM)]
    ring = np.concatenate([p[..., (r >= R + 2.5) & (r <= R + 6.0)],
                           np.where(wrapped[..., None], far, np.nan)], axis=-1)
    bone_like = ring[(ring > FLUID_HU + 60.0) & (ring < 1800.0)]  # NaN (unknown) drops out
    return float(np.median(bone_like)) if bone_like.size > 20 else 250.0


def measure_halo(
    volume: CTVolume,
    head_lps: np.ndarray,
    tip_lps: np.ndarray,
    outer_radius_mm: float,
    *,
    metal_mask: np.ndarray | None = None,
    bone_labels: np.ndarray | None = None,
    sampler: HUSampler | None = None,
    shaft: ShaftFit | None = None,
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
    shaft : ShaftFit, optional
        The shaft's fitted radial profile (blur, metal HU): its predicted bright rim (blooming)
        is subtracted from the rays before the halo is looked for.
    """
    sampler = sampler or HUSampler(volume)
    head = np.asarray(head_lps, float)
    axis = unit(np.asarray(tip_lps, float) - head)
    length = float(np.linalg.norm(np.asarray(tip_lps, float) - head))
    R = float(outer_radius_mm)
    s = np.arange(HEAD_MARGIN_MM, max(length - TIP_MARGIN_MM, HEAD_MARGIN_MM + DS_MM) + 1e-6, DS_MM)
    r_max = R + MAX_WIDTH_MM + 1.0
    ray_sampler, blind_r = sampler, R
    if shaft is not None:  # blooming: look through the metal's predicted rim
        shaft = _rim_model(shaft)
        blind_r = max(R, _blind_radius(shaft, r_max))
        ray_sampler = _rim_free(sampler, head, axis, float(s[0]), float(s[-1]), r_max + 1.0,
                                shaft, blind_r)
    p, theta, r = radial_profiles(ray_sampler, head, axis, s, N_THETA, r_max=r_max, dr=DR_MM,
                                  r_min=R)
    p = _smooth_r(p, max(1, int(round(0.4 / DR_MM))))
    known = np.isfinite(p) & (r >= blind_r)

    # bone level around the screw: bone-like HU 2.5..6 mm beyond the surface
    bone = _bone_level(p, r, R)
    thr = float(np.clip(0.5 * (bone + FLUID_HU), *THRESHOLD_RANGE_HU))

    # rays: a dip below the half level next to the metal, then bone again (else the ray has
    # left the bone: soft tissue, the canal)
    below = (p < thr) & known
    dip_idx = np.argmax(below, axis=-1)
    # (next to the metal: within DIP_WITHIN_MM of its surface, or of the first sample blooming
    # leaves to be seen when that is further out)
    has_dip = below.any(axis=-1) & (r[dip_idx] <= max(R + DIP_WITHIN_MM, blind_r + DIP_SEEN_MM))
    idx_r = np.arange(len(r))
    rec = (p >= thr) & known & (idx_r[None, None, :] > dip_idx[..., None])
    has_rec = rec.any(axis=-1)
    rec_idx = np.argmax(rec, axis=-1)
    i1 = np.maximum(rec_idx, 1)
    p0 = np.take_along_axis(p, (i1 - 1)[..., None], -1)[..., 0]
    p1 = np.take_along_axis(p, i1[..., None], -1)[..., 0]
    frac = np.clip((thr - p0) / np.where(p1 - p0 == 0, 1.0, p1 - p0), 0.0, 1.0)
    # (the sample before the recovery unknown: the recovery sample itself)
    r_rec = np.where(np.isfinite(p0), r[i1 - 1] + frac * DR_MM, r[i1])
    r_rec = _edge_at_local_bone(p, r, known, has_dip & has_rec, rec_idx, r_rec, thr)
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
    width = np.where(has_dip, r_rec - R, 0.0)
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
    stretch = (s >= h0) & (s <= h1) & wide if n_run else np.zeros(len(s), bool)
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

    mask, origin, mvol = _halo_mask(volume, head, axis, R, h0, h1, wmax, thr, metal_mask,
                                    shaft, blind_r) \
        if loose else (np.zeros((0, 0, 0), bool), (0, 0, 0), 0.0)
    return Halo(median_mm=median, max_mm=wmax, from_mm=h0 if stretch_len else 0.0,
                to_mm=h1 if stretch_len else 0.0, in_bone_from_mm=b0, in_bone_to_mm=b1,
                loose=loose, s_mm=s, width_mm=w_s, bone_hu=bone, threshold_hu=thr,
                volume_mm3=vol, mask=mask, mask_origin_ijk=origin, mask_volume_mm3=mvol,
                blind_mm=max(blind_r - R, 0.0))


def _halo_mask(volume: CTVolume, head, axis, R, s0, s1, wmax, thr, metal_mask,
               shaft: ShaftFit | None = None, blind_r: float = 0.0):
    """Voxels below the threshold in the halo's annulus, connected to the shaft surface.

    With a shaft model the metal's predicted rim is taken out first, and the annulus the
    blooming hides (within ``blind_r`` of the axis) counts as halo: the halo was seen beyond it.
    """
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
    dark = hu < thr
    if shaft is not None:
        r_tab = np.arange(0.0, shaft.rim_reach_mm() + 0.05, 0.02)
        dark = (hu - np.interp(radial, r_tab, shaft.rim_hu(r_tab), right=0.0) < thr) \
            | (radial < blind_r)
    m = (s >= s0 - DS_MM) & (s <= s1 + DS_MM) & (radial >= R - 0.5) & (radial <= rmax) & dark
    if metal_mask is not None:
        m &= ~metal_mask[box]
    lab, n = ndi.label(m)
    if n:
        touching = np.unique(lab[m & (radial <= R + 1.0)])
        m = np.isin(lab, touching[touching > 0])
    vox = float(np.prod(volume.spacing_mm))
    return m, (int(i0[0]), int(i0[1]), int(i0[2])), float(m.sum() * vox)
