"""Screw shafts in a metal blob: distance-ridge voxels, straight-line search, HU measurement.

A pedicle-screw construct is one connected blob (shafts, tulip heads, rods). Its medial axis is
found as the ridge of the Euclidean distance map (voxels whose distance to the background is a
local maximum); ridge voxels whose local radius fits a screw shaft or a rod keep a local
direction (PCA of the ridge voxels within a few mm). Shafts are straight runs of ridge voxels
not running cranio-caudally, found one after another by a consensus line search seeded with the
local directions; what runs cranio-caudally is left for the rods. Each shaft is then measured
on the CT itself at sub-voxel precision (:func:`measure_screw`): the axis from the intensity
centroids of its cross-sections, the tip where the on-axis HU falls to the edge level, the head
where the cross-section widens into the tulip, the outer thread diameter from the half-maximum
edges at the thread crests. :func:`fit_shafts` then fits each shaft's blurred profile (with the
scan's blur) for a diameter that blooming does not widen and for the rim the halo looks through.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from fluoroplan.segmentation.implants_constructs import metal_core_hu
from fluoroplan.segmentation.implants_profiles import (
    HUSampler,
    ShaftFit,
    cylinder_voxels,
    edge_levels,
    first_crossing,
    fit_shaft,
    metal_edges,
    perpendicular_frame,
    radial_profiles,
    unit,
)

RIDGE_RADIUS_MM = (1.2, 4.6)
"""Local radius (distance-map value) of ridge voxels kept: screw shafts and rods."""
CRANIOCAUDAL_COS = 0.6
"""|cos| to the z axis above which a straight piece counts as running cranio-caudally (a rod)."""
MIN_SHAFT_RUN_MM = 12.0
GAP_MM = 4.0
SHAFT_FIT_MARGIN_MM = (3.0, 6.0)
"""The shaft's profile is fitted this far from the head (tulip) and the tip (taper)."""
DENSE_SURROUNDINGS_HU = 1000.0
"""Around a shaft, above this is dense material (bone cement), not bone."""
RIDGE_SLACK = 0.5
WRAP_PLATEAU_MM = 1.0
"""A dense wrap beyond a screw's tip is a plateau on the axis at least this long ..."""
WRAP_FLAT_HU = 250.0
"""... over which the HU change by less than this per millimetre (a blurred edge falls faster)."""
"""A voxel is on the ridge when its distance is within this many voxels of its neighbours' max."""


@dataclass
class Ridge:
    """Ridge (medial axis) voxels of a metal blob, in LPS, with radius and local direction."""

    pts_lps: np.ndarray
    radius_mm: np.ndarray
    dirs_lps: np.ndarray
    linearity: np.ndarray


def ridge_of(mask: np.ndarray, spacing_kji: np.ndarray, lps_from_ijk: np.ndarray,
             offset_kji: np.ndarray, neighbourhood_mm: float = 5.0) -> Ridge:
    """Distance-ridge voxels of ``mask`` (a crop at ``offset_kji`` of the CT grid)."""
    pad = np.pad(mask, 1)
    dist = ndi.distance_transform_edt(pad, sampling=spacing_kji).astype(np.float32)
    dmax = ndi.maximum_filter(dist, size=3)
    tol = np.float32(RIDGE_SLACK * float(np.min(spacing_kji)))
    keep = (dist >= dmax - tol) & (dist >= RIDGE_RADIUS_MM[0]) & (dist <= RIDGE_RADIUS_MM[1])
    kji = np.argwhere(keep)
    radius = dist[keep]
    ijk = (kji - 1 + offset_kji)[:, ::-1].astype(float)
    pts = ijk @ lps_from_ijk[:3, :3].T + lps_from_ijk[:3, 3]
    dirs, lin = local_directions(pts, neighbourhood_mm)
    return Ridge(pts, radius, dirs, lin)


def local_directions(pts: np.ndarray, radius_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Principal direction and linearity ``(l1 - l2) / l1`` of the points within ``radius_mm``."""
    n = len(pts)
    if n == 0:
        return np.zeros((0, 3)), np.zeros(0)
    tree = cKDTree(pts)
    pairs = tree.query_pairs(radius_mm, output_type="ndarray")
    i = np.concatenate([pairs[:, 0], pairs[:, 1], np.arange(n)])
    j = np.concatenate([pairs[:, 1], pairs[:, 0], np.arange(n)])
    cnt = np.bincount(i, minlength=n).astype(float)
    q = pts[j]
    mean = np.stack([np.bincount(i, q[:, c], minlength=n) for c in range(3)], axis=1) / cnt[:, None]
    d = q - mean[i]
    cov = np.empty((n, 3, 3))
    for a in range(3):
        for b in range(a, 3):
            v = np.bincount(i, d[:, a] * d[:, b], minlength=n) / cnt
            cov[:, a, b] = cov[:, b, a] = v
    w, v = np.linalg.eigh(cov)
    dirs = v[:, :, 2]
    lin = np.where(w[:, 2] > 1e-9, (w[:, 2] - w[:, 1]) / np.maximum(w[:, 2], 1e-9), 0.0)
    lin[cnt < 4] = 0.0
    return dirs, lin


def _longest_run(s: np.ndarray, gap: float) -> tuple[float, float, np.ndarray]:
    order = np.argsort(s)
    ss = s[order]
    breaks = np.nonzero(np.diff(ss) > gap)[0]
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(ss) - 1]])
    best = int(np.argmax(ss[ends] - ss[starts] + 1e-3 * (ends - starts)))
    sel = np.zeros(len(s), bool)
    sel[order[starts[best]: ends[best] + 1]] = True
    return float(ss[starts[best]]), float(ss[ends[best]]), sel


@dataclass
class ShaftLine:
    point_lps: np.ndarray
    axis_lps: np.ndarray
    s0: float
    s1: float
    radius_mm: float


def find_shaft_lines(ridge: Ridge, tol_mm: float, max_lines: int = 40,
                     rng: np.random.Generator | None = None) -> list[ShaftLine]:
    """Straight, non cranio-caudal runs of ridge voxels (screw shaft candidates)."""
    rng = rng or np.random.default_rng(0)
    pts, dirs = ridge.pts_lps, ridge.dirs_lps
    alive = np.ones(len(pts), bool)
    seed_ok = (ridge.linearity > 0.7) & (np.abs(dirs[:, 2]) < CRANIOCAUDAL_COS)
    lines: list[ShaftLine] = []
    while len(lines) < max_lines:
        cand = np.nonzero(seed_ok & alive)[0]
        live = np.nonzero(alive)[0]
        if len(cand) == 0 or len(live) < 5:
            break
        if len(cand) > 300:
            cand = rng.choice(cand, 300, replace=False)
        P = pts[live]
        best_score, best = 0, None
        for chunk in np.array_split(cand, max(1, len(cand) // 60)):
            o = pts[chunk][:, None, :]
            d = dirs[chunk][:, None, :]
            rel = P[None, :, :] - o
            s = np.einsum("abc,abc->ab", rel, np.broadcast_to(d, rel.shape))
            perp2 = np.einsum("abc,abc->ab", rel, rel) - s * s
            score = ((perp2 < tol_mm * tol_mm) & (np.abs(s) < 35.0)).sum(axis=1)
            k = int(np.argmax(score))
            if score[k] > best_score:
                best_score, best = int(score[k]), int(chunk[k])
        if best is None or best_score < 6:
            break
        o, d = pts[best], dirs[best]
        inl = None
        for _ in range(3):  # refine by PCA of the inliers' longest run
            rel = P - o
            s = rel @ d
            perp = np.sqrt(np.maximum((rel * rel).sum(1) - s * s, 0.0))
            near = perp < tol_mm
            if near.sum() < 3:
                break
            _, _, run = _longest_run(s[near], GAP_MM)
            inl = np.nonzero(near)[0][run]
            q = P[inl]
            o = q.mean(axis=0)
            _, _, vt = np.linalg.svd(q - o, full_matrices=False)
            d = vt[0] * np.sign(vt[0] @ d or 1.0)
        if inl is None or len(inl) < 3:
            alive[best] = False
            continue
        s_in = (P[inl] - o) @ d
        s0, s1 = float(s_in.min()), float(s_in.max())
        # drop what this line explains (its run, a little beyond) from further searches
        rel = P - o
        s = rel @ d
        perp = np.sqrt(np.maximum((rel * rel).sum(1) - s * s, 0.0))
        gone = (perp < max(tol_mm, 1.5)) & (s > s0 - 3.0) & (s < s1 + 3.0)
        alive[live[gone]] = False
        alive[best] = False
        if s1 - s0 >= MIN_SHAFT_RUN_MM and abs(d[2]) < CRANIOCAUDAL_COS:
            lines.append(ShaftLine(o + s0 * d, d, 0.0, s1 - s0,
                                   float(np.median(ridge.radius_mm[live[inl]]))))
    return lines


# --------------------------------------------------------------------------------------------
# measuring one screw on the CT
# --------------------------------------------------------------------------------------------
@dataclass
class ScrewFit:
    tip_lps: np.ndarray
    head_lps: np.ndarray
    axis_lps: np.ndarray  # head -> tip
    diameter_mm: float
    length_mm: float
    core_diameter_mm: float
    tulip_found: bool
    tulip_radius_mm: float
    edge_radius_mm: np.ndarray  # per s (median over angles), s from the head
    s_mm: np.ndarray
    background_hu: np.ndarray
    shaft: ShaftFit | None = None  # the shaft's radial profile model (blur, metal HU, radius)


def _median_edge(p, r, clip):
    edges, bg = metal_edges(p, r, clip)
    return np.nanmedian(np.where(np.isnan(edges), 0.0, edges), axis=1), edges, bg


def _runs_true(mask: np.ndarray) -> list[tuple[int, int]]:
    m = np.concatenate([[False], mask, [False]])
    d = np.diff(m.astype(np.int8))
    return list(zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0] - 1, strict=True))


def _refine_axis(sampler: HUSampler, origin, axis, s_lo, s_hi, radius, clip):
    """Line through the HU-weighted centroids of cross-sections ``s_lo..s_hi``."""
    if s_hi - s_lo < 4.0:
        return origin, axis
    s = np.arange(s_lo, s_hi + 1e-6, 0.5)
    half = radius + 2.0
    g = np.arange(-half, half + 1e-6, 0.35)
    U, V = np.meshgrid(g, g, indexing="ij")
    disk = (U * U + V * V) <= half * half
    e1, e2 = perpendicular_frame(axis)
    p = sampler.sample_affine(origin, [axis, e1, e2], [s[:, None], U[disk][None], V[disk][None]])
    ring = (U[disk] ** 2 + V[disk] ** 2) >= (half - 1.0) ** 2
    bg = np.median(p[:, ring], axis=1)
    w = np.clip((p - bg[:, None]) / np.maximum(clip - bg[:, None], 1.0), 0.0, 1.0)
    wsum = w.sum(axis=1)
    ok = wsum > 0.3 * np.median(wsum)
    if ok.sum() < 4:
        return origin, axis
    cu = (w * U[disk][None]).sum(1)[ok] / wsum[ok]
    cv = (w * V[disk][None]).sum(1)[ok] / wsum[ok]
    A = np.stack([np.ones(ok.sum()), s[ok]], axis=1)
    (u0, u1), *_ = np.linalg.lstsq(A, cu, rcond=None)
    (v0, v1), *_ = np.linalg.lstsq(A, cv, rcond=None)
    new_origin = origin + u0 * e1 + v0 * e2
    new_axis = unit(axis + u1 * e1 + v1 * e2)
    return new_origin, new_axis


def _tip_inside_wrap(pa: np.ndarray, st: np.ndarray, peak: float, t: float,
                     clip: float) -> float:
    """The tip where the metal core ends, when dense material (bone cement) continues past it.

    On the axis, metal falls to a plateau of dense material (below metal's core HU, above
    :data:`DENSE_SURROUNDINGS_HU`) before it falls to bone or soft tissue; the half level to the
    background then lies in the wrap. A blurred edge falls steeply all the way; a plateau is
    flat over at least :data:`WRAP_PLATEAU_MM`. With one, the tip is the half level between the
    metal and the plateau's HU."""
    core = metal_core_hu(clip)
    k = np.nonzero((st <= t) & (pa < core))[0]
    if k.size == 0:
        return t
    step = float(st[1] - st[0])
    seg = (st >= st[k[0]]) & (st <= t)
    hu = pa[seg]
    if hu.size * step < WRAP_PLATEAU_MM:
        return t
    n = max(2, int(round(WRAP_PLATEAU_MM / step)))
    win = np.lib.stride_tricks.sliding_window_view(hu, n)
    flat = ((win.max(axis=1) - win.min(axis=1)) < WRAP_FLAT_HU * WRAP_PLATEAU_MM) & (
        win.min(axis=1) >= DENSE_SURROUNDINGS_HU)
    if not flat.any():
        return t
    plateau = float(np.median(win[int(np.argmax(flat))]))
    lvl = edge_levels(np.array(peak), np.array(min(plateau, peak - 1.0)), clip)
    t2 = first_crossing(pa[None, :], st, np.array([lvl]))[0]
    return float(t2) if np.isfinite(t2) and t2 < t else t


def measure_screw(sampler: HUSampler, line: ShaftLine) -> ScrewFit | None:
    """Tip, head, axis, diameter and length of the screw around ``line`` (None if not a screw).

    The diameter is the half-maximum one here; :func:`fit_shafts` refines it with a model of the
    shaft's blurred profile.
    """
    clip = sampler.clip_hu
    o, d = np.asarray(line.point_lps, float), unit(line.axis_lps)
    s0, s1 = line.s0, line.s1
    # 1. coarse profiles beyond both ends of the ridge run: which end carries the tulip?
    half_n = int(np.ceil((0.5 * (s1 - s0) + 24.0) / 0.5))
    s = 0.5 * (s0 + s1) + 0.5 * np.arange(-half_n, half_n + 1)  # symmetric: flips onto itself
    p, _, r = radial_profiles(sampler, o, d, s, n_theta=12, r_max=10.0, dr=0.25)
    rmed, edges0, _ = _median_edge(p, r, clip)
    inside = (s >= s0) & (s <= s1)
    R = float(np.median(rmed[inside]))
    if not 1.0 <= R <= 5.0:
        return None
    # a shaft is round: the edge radius hardly depends on the angle (a plate's does)
    e_in = np.where(np.isnan(edges0[inside]), 0.0, edges0[inside])
    spread = float(np.median(np.percentile(e_in, 90, axis=1) - np.percentile(e_in, 10, axis=1)))
    if spread > max(1.0, 0.4 * R):
        return None
    wide = rmed > R + max(1.2, 0.35 * R)
    metal = rmed > 0.3 * R
    i_mid = int(np.argmin(np.abs(s - 0.5 * (s0 + s1))))
    run = next(((a, b) for a, b in _runs_true(metal) if a <= i_mid <= b), None)
    if run is None:
        return None
    before = wide[run[0]: i_mid + 1][::-1]  # from the middle toward s0
    after = wide[i_mid: run[1] + 1]
    wide_before, wide_after = bool(before.any()), bool(after.any())
    if wide_before != wide_after:
        head_at_start = wide_before
    else:  # no tulip (or both ends wide): pedicle screws enter from behind (+y posterior)
        head_at_start = (o + s[run[0]] * d)[1] > (o + s[run[1]] * d)[1]
    if not head_at_start:  # flip: s -> s0 + s1 - s maps the same grid onto itself
        o = o + (s0 + s1) * d
        d = -d
        rmed, wide, metal = rmed[::-1], wide[::-1], metal[::-1]
        i_mid = len(s) - 1 - i_mid
        run = (len(s) - 1 - run[1], len(s) - 1 - run[0])
        before = wide[run[0]: i_mid + 1][::-1]
    # coarse head: first wide cross-section going from the middle toward the head
    k = int(np.argmax(before)) if before.any() else None
    s_head = float(s[i_mid - k]) if k is not None else float(s[run[0]])
    s_tip = float(s[run[1]])
    if s_tip - s_head < MIN_SHAFT_RUN_MM:
        return None
    # 2. axis from cross-section centroids over the shaft (clear of tulip and tapered tip)
    for _ in range(2):
        o, d = _refine_axis(sampler, o, d, s_head + 3.0, s_tip - 6.0, R, clip)
    # 3. final profiles along the refined axis
    s = np.arange(s_head - 6.0, s_tip + 4.0 + 1e-6, 0.5)
    p, _, r = radial_profiles(sampler, o, d, s, n_theta=24, r_max=9.0, dr=0.1)
    rmed, edges, bg = _median_edge(p, r, clip)
    shaft = (s >= s_head + 2.0) & (s <= s_tip - 6.0)
    if shaft.sum() < 4:
        shaft = (s >= s_head + 1.0) & (s <= s_tip - 2.0)
    if shaft.sum() < 2:
        return None
    e = edges[shaft]
    e = e[np.isfinite(e) & (e > 0)]
    if e.size < 8:
        return None
    R_out = float(np.percentile(e, 90))
    R_core = float(np.percentile(e, 10))
    # tip: the on-axis profile falls to the edge level
    st = np.arange(s_tip - 6.0, s_tip + 6.0 + 1e-6, 0.1)
    pa = sampler.sample(o[None, :] + st[:, None] * d[None, :])
    peak = float(np.max(pa[: 40]))
    far = pa[st >= s_tip + 3.0]
    bg_tip = float(np.median(far)) if far.size else float(np.median(bg))
    lvl = edge_levels(np.array(peak), np.array(min(bg_tip, peak - 1.0)), clip)
    t = first_crossing(pa[None, :], st, np.array([lvl]))[0]
    if np.isfinite(t):
        t = _tip_inside_wrap(pa, st, peak, float(t), clip)
    tip_s = float(t) if np.isfinite(t) else s_tip
    # head: the cross-section widens into the tulip (or the metal ends)
    jump = R_out + max(1.0, 0.3 * R_out)
    mid = int(np.argmin(np.abs(s - 0.5 * (s_head + tip_s))))
    back = rmed[: mid + 1][::-1]
    sb = s[: mid + 1][::-1]
    over = (back > jump) | (back < 0.3 * R_out)
    tulip_found = bool(((back > jump)).any())
    if over.any():
        k = int(np.argmax(over))
        if k == 0:
            head_s = float(sb[0])
        else:
            a, b = back[k - 1], back[k]
            target = jump if back[k] > jump else 0.3 * R_out
            f = (target - a) / (b - a) if b != a else 0.0
            head_s = float(sb[k - 1] + np.clip(f, 0, 1) * (sb[k] - sb[k - 1]))
    else:
        head_s = float(s[0])
    tulip_r = float(np.percentile(rmed[(s < head_s) & (s > head_s - 15.0)], 90)) \
        if tulip_found and ((s < head_s) & (s > head_s - 15.0)).any() else 0.0
    head = o + head_s * d
    tip = o + tip_s * d
    length = float(tip_s - head_s)
    return ScrewFit(tip_lps=tip, head_lps=head, axis_lps=d, diameter_mm=2.0 * R_out,
                    length_mm=length, core_diameter_mm=2.0 * R_core, tulip_found=tulip_found,
                    tulip_radius_mm=tulip_r, edge_radius_mm=rmed, s_mm=s - head_s,
                    background_hu=bg)


def fit_shaft_profile(sampler: HUSampler, fit: ScrewFit, blur_mm: float | None = None) -> ScrewFit:
    """The outer thread diameter from a model of the shaft's blurred, clipped radial profile.

    Blooming moves the half-maximum edges of a clipped profile outward by about two thirds of
    the blur width; the model (:func:`implants_profiles.fit_shaft`) puts the edge where the
    blurred metal's half maximum is. ``blur_mm`` fixes the blur (the scan's, shared by its
    screws); otherwise it is fitted. The fit's radius replaces the half-maximum one unless it
    strays far from it (a failed fit: the half-maximum diameter and no model are kept).
    """
    lo, hi = SHAFT_FIT_MARGIN_MM
    if fit.length_mm < lo + hi + 4.0:
        return replace(fit, shaft=None)
    s_lo, s_hi = _undense_stretch(fit, lo, fit.length_mm - hi)
    if s_hi - s_lo < 4.0:
        return replace(fit, shaft=None)
    r_half = 0.5 * fit.diameter_mm if fit.shaft is None else fit.shaft.r_half_mm
    _, rv, hv = cylinder_voxels(sampler.volume, fit.head_lps, fit.axis_lps, s_lo, s_hi,
                                r_half + 6.5)
    voxel = float(np.mean(sampler.volume.spacing_mm))
    shaft = fit_shaft(rv, hv, sampler.clip_hu, r_half, voxel, blur_mm=blur_mm, start=fit.shaft)
    if shaft is None or abs(shaft.r_out_mm - r_half) > max(1.0, 0.4 * r_half):
        return replace(fit, diameter_mm=2.0 * r_half, shaft=None)
    return replace(fit, diameter_mm=2.0 * shaft.r_out_mm, shaft=replace(shaft, r_half_mm=r_half))


def _undense_stretch(fit: ScrewFit, s_lo: float, s_hi: float) -> tuple[float, float]:
    """The longest stretch of ``s_lo..s_hi`` (mm from the head) where the shaft is surrounded by
    bone or soft tissue, not by dense material (cement): the profile model's surroundings are
    uniform and far below the metal."""
    s = fit.s_mm
    sel = (s >= s_lo) & (s <= s_hi)
    ok = sel & (np.asarray(fit.background_hu) < DENSE_SURROUNDINGS_HU)
    if ok[sel].all() or not ok.any():
        return s_lo, s_hi
    a, b = max(_runs_true(ok), key=lambda ab: s[ab[1]] - s[ab[0]])
    return float(s[a]), float(s[b])


def fit_shafts(sampler: HUSampler, fits: list[ScrewFit]) -> list[ScrewFit]:
    """Each screw's shaft profile model (:func:`fit_shaft_profile`), with the scan's blur.

    Each shaft is first fitted with its own blur; then all are refitted with the median of
    those. One scanner, one point spread: a loose screw's halo and a narrower blur look alike
    near the metal, and the tight screws (most of them) tell which it is.
    """
    fits = [fit_shaft_profile(sampler, f) for f in fits]
    blurs = [f.shaft.blur_mm for f in fits if f.shaft is not None]
    if len(blurs) < 2:
        return fits
    blur = float(np.median(blurs))
    return [fit_shaft_profile(sampler, f, blur) if f.shaft is not None else f for f in fits]
