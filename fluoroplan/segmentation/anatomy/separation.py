"""Steps 3-4 of the analysis: the body centreline, the discs, and the whole vertebrae separated
on the working grid (body sections between their disc planes, pedicle, laminae and articular
process seeds, a marker watershed on the bone distance map), the sacrum, a partial vertebra cut by
the top of the scan, the ribs and their heads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from fluoroplan.segmentation.anatomy.canal_track import _Canal
from fluoroplan.segmentation.anatomy.discs import (
    TUBE_FRAC,
    _body_line,
    _disc_score,
    _find_discs_frac,
    _runs_between,
    _split_long_runs,
    _SplitRun,
    _tube_profile,
)
from fluoroplan.segmentation.errors import NoSpineFound
from fluoroplan.segmentation.vertebrae import BONE_HU, SACRUM_BELOW_S1, _fill_holes_2d

sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK warnings never reach the terminal

GRID_BONE_HU = 140.0
"""Bone on the ~2 mm block-averaged grid: low enough for osteoporotic cortex blurred by 3 mm
voxels, high enough to leave muscle, disc and cerebrospinal fluid out."""
ROI_LATERAL_MM = 72.0
"""The column's working box reaches this far beside the canal track."""
_DEBUG: dict | None = None  # set to a dict to collect intermediate profiles (bench, tests)
RIB_EDGE_MM = 60.0
"""Bone this far beside the canal is rib or pelvis, never vertebra."""
RIB_EXIT_MM = 15.0
"""Bone leaving a cropped scan behind the spine this far beside the canal's edge is a rib."""
BODY_REACH = 1.3
"""The body section reaches this many body half-widths (the deepest bone distance) from its axis."""
FRONT_MARGIN_MM = 4.0
"""Labels end this far in front of the body section (osteophytes); beyond is not the column."""
SHUT_BACK_MM = 3.0
"""A body's dark interior closed by the canal's front edge is taken this far from that edge and
from the body's ends."""
PEDICLE_REACH_MM = 14.0
"""Pedicle seeds reach this far beside the canal's edge."""
ARCH_MIN_MM3 = 300.0
"""Least posterior arch, alone at the top of the scan, reported as a partial vertebra."""
BODY_HALF_WIDTH_MM = 32.0
"""Half the widest vertebral body (L5, ~60 mm)."""
ARCH_HALF_WIDTH_MM = 5.0
ARCH_DEPTH_MM = 20.0
"""Seeds of the laminae's junction: this close to the midline, this deep behind the canal."""
AXIS_SMOOTH_MM = 6.0
"""Smoothing of the body centreline before its direction (the body axis) is taken."""
SACRUM_MIN_WIDTH_MM = 110.0
"""The sacrum's slab (alae, sacro-iliac joints) is at least this wide, and 1.6x the bodies above."""
S1_SEGMENT_BODIES = 1.0
"""S1 reaches this many heights of the body above it (L5) below the sacrum's top endplate."""
IAP_FROM = 0.3
IAP_SIDE = (0.3, 4.0)
IAP_Y = (0.5, 10.0)
"""Seeds of a vertebra's inferior articular processes: from this fraction of its body's height
down to the body's lower end, between IAP_SIDE[0] canal radii and the canal's edge + IAP_SIDE[1]
mm beside the midline, from IAP_Y[0] canal radii behind the canal's centre to IAP_Y[1] mm behind
its back (medial and posterior to the superior articular processes of the vertebra below)."""


@dataclass
class _Separation:
    labels: np.ndarray  # uint8 on the ROI of the grid, values 1..n
    roi_offset: tuple[int, int, int]
    bodies: list[dict]
    rib_heads: dict  # value -> (m, 3) mm points on the grid
    bone_hu: float = BONE_HU  # the bodies' own bone threshold (adaptive, from the disc contrast)
    body_filled: np.ndarray | None = None  # bool on the ROI: hole-filled body sections
    interior: np.ndarray | None = None  # uint8 on the ROI: dark body interiors shut by the canal


def _separate(grid_hu, grid_metal, sp, canal: _Canal, warnings: list[str], native=None) -> _Separation:
    nz, ny, nx = grid_hu.shape
    # region of interest around the canal
    y_lo = max(0, int((canal.centre_mm[:, 1].min() - 90.0) / sp[1]))
    y_hi = min(ny, int((canal.centre_mm[:, 1].max() + 90.0) / sp[1]) + 1)
    x_lo = max(0, int((canal.centre_mm[:, 2].min() - ROI_LATERAL_MM) / sp[2]))
    x_hi = min(nx, int((canal.centre_mm[:, 2].max() + ROI_LATERAL_MM) / sp[2]) + 1)
    z_lo, z_hi = canal.k0, canal.k1 + 1
    roi = (slice(z_lo, z_hi), slice(y_lo, y_hi), slice(x_lo, x_hi))
    off_mm = np.array([z_lo * sp[0], y_lo * sp[1], x_lo * sp[2]])
    hu = grid_hu[roi]
    metal = grid_metal[roi]
    bone = (hu >= GRID_BONE_HU) | metal
    bone = ndi.binary_closing(bone, structure=_ball2d(), iterations=1) | bone
    filled = _fill_holes_2d(bone)
    dist = ndi.distance_transform_edt(filled, sampling=sp).astype(np.float32)
    rz, ry, rx = hu.shape
    # canal in ROI coordinates (one row per ROI slice)
    cy = canal.centre_mm[:, 1] - off_mm[1]
    cx = canal.centre_mm[:, 2] - off_mm[2]
    cr = canal.radius_mm
    Y = (np.arange(ry) * sp[1])[None, :, None]
    X = (np.arange(rx) * sp[2])[None, None, :]

    # --- body centreline: parallel to the (smooth) canal, at the middle of the body's depth ------
    zk = np.arange(rz) * sp[0]
    body_sl, gap, half_depth = _body_line(hu, metal, cy, cx, cr, sp)
    if body_sl.sum() < 4:
        raise NoSpineFound("no vertebral bodies in front of the canal")
    by = ndi.gaussian_filter1d(cy - gap, 8.0 / sp[0], mode="nearest")
    bx = ndi.gaussian_filter1d(cx, 8.0 / sp[0], mode="nearest")
    body_r = 0.8 * float(np.median(half_depth[body_sl]))  # deepest bone distance of the section
    if _DEBUG is not None:
        _DEBUG.update(gap=gap, half=half_depth, has=body_sl, by=by, cy=cy, cr=cr)

    # --- discs: short dark gaps between two bright endplates, along the centreline --------------
    P = np.column_stack([zk, by, bx])[::-1]  # cranial to caudal
    seg = np.linalg.norm(np.diff(P, axis=0), axis=1)
    s_k = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.arange(0.0, s_k[-1], 1.0)
    C = np.column_stack([np.interp(s, s_k, P[:, a]) for a in range(3)])
    T = np.gradient(ndi.gaussian_filter1d(C, AXIS_SMOOTH_MM, axis=0, mode="nearest"), axis=0)
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    e1 = np.array([0.0, 1.0, 0.0])[None, :] - T[:, 1:2] * T
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(T, e1)
    # sample an annulus near the cortex: the cortex stays brighter than the disc even where
    # osteoporotic cancellous bone is as dark as the disc
    rp = float(np.clip(body_r, 6.0, 20.0))
    g = np.arange(-rp, rp + 1e-6, 1.5)
    uu, vv = np.meshgrid(g, g, indexing="ij")
    uu0, vv0 = uu, vv
    rr2 = uu**2 + vv**2
    inside = (rr2 <= (1.05 * rp) ** 2) & (rr2 >= (0.55 * rp) ** 2)
    uu, vv = uu[inside], vv[inside]
    pts = C[:, None, :] + uu[None, :, None] * e1[:, None, :] + vv[None, :, None] * e2[:, None, :]
    idx = (pts / sp).reshape(-1, 3).T
    hu_nm = np.where(metal, np.nan, np.minimum(hu, 1200.0)).astype(np.float32)
    prof = ndi.map_coordinates(np.nan_to_num(hu_nm, nan=0.0), idx, order=1, mode="nearest")
    wgt = ndi.map_coordinates((~metal).astype(np.float32), idx, order=1, mode="nearest")
    prof = prof.reshape(len(s), -1).sum(axis=1) / np.maximum(wgt.reshape(len(s), -1).sum(axis=1), 1e-3)
    prof = ndi.gaussian_filter1d(prof, 1.0, mode="nearest")
    frac = ndi.map_coordinates(filled.astype(np.float32), idx, order=1, mode="nearest")
    frac = ndi.gaussian_filter1d(frac.reshape(len(s), -1).mean(axis=1), 1.0, mode="nearest")
    col = frac > 0.2
    if col.sum() >= 10:
        disc_level = float(np.percentile(prof[col], 10))
        body_level = float(np.median(prof[col]))
    else:
        disc_level, body_level = 60.0, GRID_BONE_HU
    thr2 = disc_level + 0.5 * (body_level - disc_level)
    bone2 = (ndi.gaussian_filter(hu, 0.6) >= thr2) | metal
    # holes are filled inside the body's own region only: in front of the canal and within a
    # body's width of the midline, so rib heads, pedicles and transverse processes cannot close
    # a ring around a disc
    body_region = (Y < (cy - cr + 1.0)[:, None, None]) & (
        np.abs(X - bx[:, None, None]) <= BODY_HALF_WIDTH_MM
    )
    filled2 = _fill_holes_2d(bone2 & body_region) | bone2
    full = (uu0**2 + vv0**2) <= (1.0 * rp) ** 2
    pts2 = C[:, None, :] + uu0[full][None, :, None] * e1[:, None, :] + vv0[full][None, :, None] * e2[:, None, :]
    f2 = ndi.map_coordinates(filled2.astype(np.float32), (pts2 / sp).reshape(-1, 3).T, order=1, mode="nearest")
    frac2 = f2.reshape(len(s), -1).mean(axis=1)
    if _DEBUG is not None:
        _DEBUG.update(frac2=frac2, thr2=thr2)
    tube = tube_metal = None
    if native is not None:
        tube, tube_metal = _tube_profile(native, C + off_mm, e1, e2, sp, TUBE_FRAC * rp)
    discs = _find_discs_frac(frac2, tube, tube_metal)
    frac = frac2
    if _DEBUG is not None:
        _DEBUG.update(tube=tube, prof=prof, frac=frac, C=C + off_mm, discs=discs, frac_col=frac, score=_disc_score(prof))
    runs = _runs_between(discs, len(s), frac)
    if len(runs) < 2:
        raise NoSpineFound("fewer than two vertebral bodies separated by discs")
    n_warnings = len(warnings)
    runs = _split_long_runs(runs, -_disc_score(prof), warnings)

    # --- sacrum: the first body whose thick bone spreads to the iliac wings --------------------
    widths = np.array([_slab_width(bone2, C, sp, a, b, rz) for a, b in runs])
    if _DEBUG is not None:
        _DEBUG.update(widths=widths, runs=list(runs))
    sacrum_at = None
    n = len(runs) - 1
    if n >= 1:
        ref = float(np.median(widths[:n]))
        # the sacrum is the last body, much wider than the bodies above it (alae, sacro-iliac
        # joints); ribs make thoracic bodies wide, so a thoracic crop never qualifies
        wide = max(SACRUM_MIN_WIDTH_MM, 1.6 * ref)
        if ref > 0 and widths[n] >= wide:
            sacrum_at = n
            # a long sacral run split at "expected levels" (no disc between S1 and S2): the
            # sacrum starts at the first of its wide, contiguous pieces, S1 is its top
            while (sacrum_at > 1 and runs[sacrum_at - 1][1] + 1 >= runs[sacrum_at][0]
                   and widths[sacrum_at - 1] >= wide):
                sacrum_at -= 1
    if sacrum_at is not None:
        if sacrum_at < n and isinstance(runs[sacrum_at], _SplitRun) \
                and len(warnings) > n_warnings:
            warnings.pop()  # the fused sacral segments are one sacrum, not a split fusion
        runs = runs[: sacrum_at + 1]
        runs[-1] = (runs[-1][0], len(s) - 1)

    # --- slabs between the discs ---------------------------------------------------------------
    n_b = len(runs)
    bounds_mm = [0.0]
    for (_, b0), (a1, _) in zip(runs[:-1], runs[1:], strict=True):
        bounds_mm.append(0.5 * (s[b0] + s[a1]))
    bounds_mm.append(s[-1])
    bounds = np.asarray(bounds_mm)
    # arc-length coordinate of every ROI voxel (first order around the centreline)
    s_z = np.interp(zk, C[::-1, 0], s[::-1])
    Tz = np.column_stack([np.interp(zk, C[::-1, 0], T[::-1, a]) for a in range(3)])
    s_vox = (
        s_z[:, None, None]
        + (Y - by[:, None, None]) * Tz[:, 1, None, None]
        + (X - bx[:, None, None]) * Tz[:, 2, None, None]
    ).astype(np.float32)

    # --- seeds and watershed -------------------------------------------------------------------
    # the whole body section in front of the canal belongs to the body between its two discs
    # (cut by the disc planes, never by the distance map, which would give the corners of a
    # body to its neighbours)
    cyl = ((Y - by[:, None, None]) ** 2 + (X - bx[:, None, None]) ** 2) <= (BODY_REACH * body_r + 4.0) ** 2
    front = Y < (cy - cr)[:, None, None]
    markers = np.zeros(hu.shape, np.uint16)
    core = (filled | filled2) & cyl & front
    # pedicles: bone beside the canal, between its front and its middle, at the level of the
    # upper half of each body; seeding them gives every posterior arch to its own body (the
    # arch touches the next vertebra only at the facet joints)
    side = np.abs(X - cx[:, None, None])
    ped_zone = (
        bone
        & (side >= 0.6 * cr[:, None, None])
        & (side <= cr[:, None, None] + PEDICLE_REACH_MM)
        & (Y >= (cy - cr - 2.0)[:, None, None])
        & (Y <= (cy + 0.3 * cr)[:, None, None])
    )
    arch_zone = (
        bone
        & (side <= ARCH_HALF_WIDTH_MM)
        & (Y >= (cy + cr + 2.0)[:, None, None])
        & (Y <= (cy + cr + ARCH_DEPTH_MM)[:, None, None])
    )
    iap_zone = (
        bone
        & (side >= IAP_SIDE[0] * cr[:, None, None])
        & (side <= cr[:, None, None] + IAP_SIDE[1])
        & (Y >= (cy + IAP_Y[0] * cr)[:, None, None])
        & (Y <= (cy + cr + IAP_Y[1])[:, None, None])
    )
    for n, (a, b) in enumerate(runs):
        m = core & (s_vox >= bounds[n] + 1.0) & (s_vox <= bounds[n + 1] - 1.0)
        markers[m] = n + 1
        if runs_kind_sacrum(n, runs, sacrum_at):
            continue
        length = s[b] - s[a]
        mp = ped_zone & (s_vox >= s[a] + 0.1 * length) & (s_vox <= s[a] + 0.55 * length)
        markers[mp & (markers == 0)] = n + 1
        # the laminae meet behind the canal at the level of the body's lower half and the disc
        # below it (the arch slopes caudally from the pedicles)
        ml = arch_zone & (s_vox >= s[a] + 0.5 * length) & (s_vox <= bounds[n + 1])
        markers[ml & (markers == 0)] = n + 1
        # the inferior articular processes hang down from the laminae behind the canal, beside
        # the midline; the vertebra below touches them only at the facet joints
        mi = iap_zone & (s_vox >= s[a] + IAP_FROM * length) & (s_vox <= s[b])
        markers[mi & (markers == 0)] = n + 1
    # the vertebra above a body cut by the top of the scan: its laminae and spinous process
    # slope caudally into view behind the cut body, above the level where that body's own
    # laminae meet (its mid-height, from the height of the whole bodies below it)
    top_cut = runs[0][0] == 0 and z_hi == nz
    bottom_cut = runs[-1][1] == len(s) - 1 and z_lo == 0
    above_val = 0
    if top_cut and n_b >= 2 and not runs_kind_sacrum(0, runs, sacrum_at):
        whole = [s[b] - s[a] for n, (a, b) in enumerate(runs) if n > 0 and not runs_kind_sacrum(n, runs, sacrum_at)]
        mid0 = s[runs[0][1]] - 0.5 * float(np.median(whole)) if whole else -np.inf
        seed = arch_zone & (s_vox < mid0) & (markers == 0)
        if seed.any():
            above_val = n_b + 1
            markers[seed] = above_val
    body_filled = filled2 & (markers > 0) & (markers != above_val)
    # a dark interior whose thin posterior wall is not bone at the threshold (the basivertebral
    # foramen, osteoporosis) is closed by the canal's front edge; only between the body's own
    # ends (a ring closed at a disc would take the disc)
    # (the edge band at least one voxel row thick on a coarse grid), and a gap of a voxel in a
    # thin osteoporotic cortex is bridged (in-plane closing with a 3 x 3 square)
    wall = body_region & (Y >= (cy - cr - max(1.5, sp[1]))[:, None, None])
    ring = (bone2 & body_region) | wall
    ring |= ndi.binary_closing(ring, structure=_square2d())
    shut = _fill_holes_2d(ring) & cyl & ~bone2
    interior = np.zeros(hu.shape, np.uint8)  # for the label map only, not for the measurements
    shut &= Y < (cy - cr - SHUT_BACK_MM)[:, None, None]
    # a body cut by the scan's edge has no disc there: its interior is taken up to the edge
    for n, (a, b) in enumerate(runs):
        lo = -np.inf if (n == 0 and top_cut) else s[a] + SHUT_BACK_MM
        hi = np.inf if (n == n_b - 1 and bottom_cut) else s[b] - SHUT_BACK_MM
        if runs_kind_sacrum(n, runs, sacrum_at):
            # S1's body (the fused segments below it are not measured or filled)
            hi = s[a] + S1_SEGMENT_BODIES * (s[runs[n - 1][1]] - s[runs[n - 1][0]]) - SHUT_BACK_MM
        m = shut & (s_vox >= lo) & (s_vox <= hi)
        m &= ((markers == 0) | (markers == n + 1)) & (interior == 0)
        interior[m] = n + 1
    bone = bone | body_filled
    bg_val = 255
    lateral = np.abs(X - cx[:, None, None]) >= RIB_EDGE_MM
    edge = np.zeros(hu.shape, bool)
    edge[:, 0, :] = edge[:, :, 0] = edge[:, :, -1] = True
    if y_hi == ny:
        # the scan ends close behind the spine (a cropped field of view): bone leaving it there
        # beside the midline is rib, not spinous process
        edge[:, -1, :] = (np.abs(X - cx[:, None, None]) > (cr + RIB_EXIT_MM)[:, None, None])[:, 0, :]
    # nothing of a vertebra lies far in front of its body: bone-like density there (a
    # contrast-filled aorta, a stent graft) touching the column is background, cut from the body
    # at the neck between them
    ahead = Y < (by - (BODY_REACH * body_r + 4.0 + FRONT_MARGIN_MM))[:, None, None]
    markers[bone & (lateral | edge | ahead) & (markers == 0)] = bg_val
    feat = sitk.GetImageFromArray(np.where(bone, -dist, 1.0).astype(np.float32))
    mk = sitk.GetImageFromArray(markers)
    ws = sitk.GetArrayFromImage(
        sitk.MorphologicalWatershedFromMarkers(feat, mk, markWatershedLine=False, fullyConnected=True)
    )
    labels = np.where(bone & (ws != bg_val), ws, 0).astype(np.uint8)
    if _DEBUG is not None:
        _DEBUG.update(ring=ring, cyl=cyl, interior=interior, shut=shut, markers=markers, ws=ws, roi=roi, bone2=bone2, s_vox=s_vox)
    # nothing beyond the scanned part of the column
    labels[(s_vox < bounds[0] - 20.0) | (s_vox > bounds[-1] + 20.0)] = 0
    # the sacrum's vertebra is S1, its top segment (about one body of the vertebra above it
    # tall); the fused segments below it are the rest of the sacrum, not a vertebra
    if sacrum_at is not None and n_b >= 2:
        (pa, pb), (a, _) = runs[-2], runs[-1]
        s1_end = s[a] + S1_SEGMENT_BODIES * (s[pb] - s[pa])
        labels[(labels == n_b) & (s_vox > s1_end)] = SACRUM_BELOW_S1

    # --- ribs: edge-reaching bone that touches a vertebra ---------------------------------------
    rib_heads: dict[int, np.ndarray] = {}
    other = bone & (ws == bg_val)
    olab, on = ndi.label(other)
    if on:
        reach = np.zeros(on + 1, bool)
        reach[np.unique(olab[(lateral | edge) & other])] = True
        reach[0] = False
        ribby = reach[olab]
        touch = ndi.binary_dilation(ribby, structure=np.ones((3, 3, 3), bool)) & (labels > 0)
        tz, ty, tx = np.nonzero(touch)
        tv = labels[tz, ty, tx]
        for n in range(n_b):
            sel = tv == n + 1
            if sel.sum() == 0:
                continue
            pz, py, px = tz[sel] * sp[0], ty[sel] * sp[1], tx[sel] * sp[2]
            heads = []
            for sgn in (1.0, -1.0):
                side = (sgn * (px - cx[tz[sel]]) > cr[tz[sel]] + 4.0) & (py > by[tz[sel]] - 5.0)
                if side.sum() >= 2:
                    heads.append([pz[side].mean(), py[side].mean(), px[side].mean()])
            # ribs come in pairs; one-sided "ribs" are streaks, osteophytes or the pelvis
            if len(heads) == 2:
                rib_heads[n + 1] = np.asarray(heads) + off_mm

    # --- per-body description -------------------------------------------------------------------
    bodies = []
    for n, (a, b) in enumerate(runs):
        is_sacrum = sacrum_at is not None and n == n_b - 1
        if is_sacrum:
            b_eff = min(b, a + int(round(1.2 * (runs[n - 1][1] - runs[n - 1][0]))))
        else:
            b_eff = b
        mid = int((a + b_eff) / 2)
        k = int(np.clip(round(C[mid, 0] / sp[0]), 0, rz - 1))
        cpt = np.array([C[mid, 0], cy[k], cx[k]])
        post = cpt - C[mid]
        post -= np.dot(post, T[mid]) * T[mid]
        off = float(np.linalg.norm(post))
        complete = (a > 0 or frac[0] < 0.5) and (b < len(s) - 1 or frac[-1] < 0.5)
        if k <= 0 or k >= rz - 1:
            complete = False
        first_edge = runs[0][0] == 0 and z_hi == nz  # cut by the top of the scan
        last_edge = runs[-1][1] == len(s) - 1 and z_lo == 0
        if (n == 0 and first_edge) or (n == n_b - 1 and last_edge and not is_sacrum):
            complete = False
        bodies.append(
            dict(
                kind="sacrum" if is_sacrum else "vertebra",
                center_mm=C[mid] + off_mm,
                axis_mm=T[mid] * np.sign(T[mid, 0] if T[mid, 0] != 0 else 1.0),
                posterior_mm=post / max(off, 1e-6) if off > 1e-6 else np.array([0.0, 1.0, 0.0]),
                half_height_mm=0.5 * (s[b_eff] - s[a]) + 2.0,
                canal_offset_mm=max(off, body_r + cr[k]),
                canal_radius_mm=float(cr[k]),
                canal_mm=np.array([C[mid, 0], cy[k], cx[k]]) + off_mm,
                complete=bool(complete),
                s_range=(float(s[a]), float(s[b_eff])),
                width_mm=float(widths[n]) if n < len(widths) else 0.0,
                split=isinstance(runs[n], _SplitRun),
            )
        )
    if above_val:
        part = labels == above_val
        if part.sum() * float(np.prod(sp)) < ARCH_MIN_MM3:
            labels[part] = 0
        else:
            # reported first (cranial), with no body: a partial vertebra, not measured
            pz, py, px = (q * d for q, d in zip(np.nonzero(part), sp, strict=True))
            k = rz - 1
            centre = np.array([pz.mean(), py.mean(), px.mean()])
            b0 = bodies[0]
            bodies.insert(
                0,
                dict(
                    b0,
                    kind="vertebra",
                    arch_only=True,
                    center_mm=centre + off_mm,
                    half_height_mm=0.0,
                    canal_mm=np.array([zk[k], cy[k], cx[k]]) + off_mm,
                    canal_radius_mm=float(cr[k]),
                    complete=False,
                    s_range=(float(s_vox[part].min()), float(s_vox[part].max())),
                    width_mm=0.0,
                    split=False,
                ),
            )
            shift = np.arange(256, dtype=np.uint8)
            shift[1 : n_b + 1] += 1
            shift[above_val] = 1
            labels = shift[labels]
            interior = shift[interior]
            rib_heads = {int(shift[v]): h for v, h in rib_heads.items()}
    return _Separation(
        labels, (z_lo, y_lo, x_lo), bodies, rib_heads, min(BONE_HU, float(thr2)), body_filled, interior
    )


def runs_kind_sacrum(n: int, runs, sacrum_at) -> bool:
    """Is body run ``n`` the sacrum?"""
    return sacrum_at is not None and n == len(runs) - 1


def _slab_width(bone, C, sp, a, b, rz) -> float:
    """Left-right extent (mm) of the bone connected to the body centre, projected over the axial
    slices of the body run ``a..b`` (indices along the 1 mm centreline)."""
    ks = np.clip(np.rint(C[[a, (a + b) // 2, b], 0] / sp[0]).astype(int), 0, rz - 1)
    k0, k1 = int(ks.min()), int(ks.max())
    proj = bone[k0 : k1 + 1].any(axis=0)
    lab, _ = ndi.label(proj)
    m = (a + b) // 2
    yy = int(np.clip(round(C[m, 1] / sp[1]), 0, proj.shape[0] - 1))
    xx = int(np.clip(round(C[m, 2] / sp[2]), 0, proj.shape[1] - 1))
    win = lab[max(0, yy - 2) : yy + 3, max(0, xx - 2) : xx + 3]
    ids = win[win > 0]
    if len(ids) == 0:
        return 0.0
    cols = np.nonzero((lab == np.bincount(ids).argmax()).any(axis=0))[0]
    return float((cols.max() - cols.min() + 1) * sp[2])


def _square2d():
    s = np.zeros((3, 3, 3), bool)
    s[1] = True
    return s


def _ball2d():
    s = np.zeros((3, 3, 3), bool)
    s[1] = ndi.generate_binary_structure(2, 1)
    return s

