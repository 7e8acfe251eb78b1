"""The bone beside the column that is not a vertebra: the ilia and the ribs.

A needle path to L5 or S1 can cross the posterior ilium or the iliac crest, a thoracic path a
rib outside the rib-head corridor; the planner names what it crosses from the masks found here.

Method (on a block-reduced grid of about 2 mm, in a sub-box of the CT around the column):

* bone is ``HU >= BONE_HU`` (a little below the vertebrae's threshold: osteoporotic bone on
  3 mm voxels is dim), metal excluded; bone carrying a vertebra (or sacrum) label is not ours;
* **ilia**: only when the column's lowest level is lumbar or sacral. In each axial slice the
  row between the labelled sacrum's (or L5's) left and right edges is cut out, and bone that
  stays connected across the midline (the unlabelled lower sacrum, the coccyx, the pubic
  symphysis) is removed there. Large 3-D components lateral to the column, reaching up to
  the sacro-iliac level, are the ilia, their side is where their centroid lies. Going down each
  side, the ilium narrows to its body just above the acetabulum and widens again where the
  acetabulum holds the femoral head: the pelvis is kept down to that narrowest slice (the
  acetabulum's roof), so the femoral heads, a hip prosthesis's bone and the pubis are not ilium;
* **ribs**: at thoracic levels, components that come within a few mm of a thoracic vertebra's
  label (the costovertebral and costotransverse joints), lateral to its body or behind its
  centre (the aorta, contrast-filled in an angiogram, lies in front), and that run out
  laterally (a rib, not an unlabelled transverse process or an osteophyte).

Nothing is invented: a CT without a pelvis or ribs gives empty masks and ``found: False``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from fluoroplan.segmentation.anatomy import _canonical
from fluoroplan.segmentation.vertebrae import SACRUM_BELOW_S1

BONE_HU = 180.0
"""Bone of the ilia and ribs (full resolution), metal excluded."""
GRID_MM = 2.0
"""Block size of the working grid."""
ILIUM_MIN_ML = 8.0
"""A component smaller than this is not an ilium (a rib tip, an ossicle, a calcification)."""
ILIUM_MIN_LATERAL_MM = 35.0
"""An ilium's centroid lies at least this far beside the midline."""
PELVIS_ABOVE_L5_MM = 70.0
"""The pelvis is searched up to this far above the lowest lumbar vertebra's centre."""
ACETABULUM_SEARCH_MM = 150.0
"""The acetabulum's roof (narrowest slice of the ilium) is searched this far below the sacrum."""
SACRUM_PIECE_MM2 = 150.0
"""A piece of a midline-crossing slice component left beside the sacral cut smaller than this
is the sacrum's (its lateral crest), not an ilium."""
RIB_REACH_MM = 100.0
"""Ribs are kept to this far beside the canal (the needle's side of the chest)."""
RIB_CONTACT_MM = 6.0
"""A rib comes within this distance of its vertebra's label (the joints' gap)."""
RIB_THICK_MM = 14.0
"""Bone-bright blobs thicker than this in every direction are not ribs (contrast in the aorta)."""
RIB_MIN_LATERAL_MM = 40.0
"""A rib runs out at least this far beside the canal (or to the edge of the searched box)."""


@dataclass(frozen=True, eq=False)
class OtherBones:
    """Ilia and ribs on a sub-box of the CT grid.

    Attributes
    ----------
    box : (slice, slice, slice)
        Sub-box of the CT grid, ``[k, j, i]``, that the masks cover.
    ilium, ribs : ndarray bool
        On ``box``: the ilia (left and right, down to the acetabulum's roof) and the ribs
        (heads, necks, shafts up to ``RIB_REACH_MM`` beside the canal).
    pelvis : dict
        JSON-ready: ``{"found": bool, "left": {...} | None, "right": {...} | None}``; per side
        ``crest_top_lps`` (highest point of the iliac crest), ``posterior_superior_iliac_spine_lps``
        (the ilium's most posterior point), ``acetabulum_roof_z_mm``, ``volume_ml``.
    rib_levels : dict
        Vertebra label -> sides (``"left"``, ``"right"``) with a rib whose head touches it.
    warnings : tuple of str
    timings_s : dict
    """

    box: tuple[slice, slice, slice]
    ilium: np.ndarray
    ribs: np.ndarray
    pelvis: dict
    rib_levels: dict
    warnings: tuple[str, ...] = ()
    timings_s: dict = field(default_factory=dict)

    def ilium_side_mask(self, side: str, volume) -> np.ndarray:
        """The ilium voxels of one side (``"left"`` = +x) on ``box``."""
        k, j, i = np.nonzero(self.ilium)
        ijk = np.stack([i + self.box[2].start, j + self.box[1].start, k + self.box[0].start], 1)
        x = volume.lps_from_ijk_points(ijk.astype(float))[:, 0]
        out = np.zeros_like(self.ilium)
        keep = x > self.pelvis.get("midline_x_mm", 0.0) if side == "left" else \
            x <= self.pelvis.get("midline_x_mm", 0.0)
        out[k[keep], j[keep], i[keep]] = True
        return out


def _empty(shape, warnings, timings) -> OtherBones:
    box = (slice(0, 0), slice(0, 0), slice(0, 0))
    z = np.zeros((0, 0, 0), bool)
    return OtherBones(box, z, z.copy(), {"found": False, "left": None, "right": None}, {},
                      tuple(warnings), timings)


def _reduce_any(a: np.ndarray, f) -> np.ndarray:
    nz, ny, nx = (s // ff for s, ff in zip(a.shape, f, strict=True))
    a = a[: nz * f[0], : ny * f[1], : nx * f[2]]
    if f == (1, 1, 1):
        return np.ascontiguousarray(a)
    r = a
    for ax in (0, 1, 2):  # OR of strided slices, one axis at a time (far faster than .any)
        if f[ax] == 1:
            continue
        def part(o, ax=ax, src=r):
            sl = [slice(None)] * 3
            sl[ax] = slice(o, None, f[ax])
            return src[tuple(sl)]
        acc = part(0).copy()
        for o in range(1, f[ax]):
            acc |= part(o)
        r = acc
    return r


def _expand(r: np.ndarray, f, shape) -> np.ndarray:
    out = np.zeros(shape, bool)
    e = r
    for ax, ff in enumerate(f):
        if ff > 1:
            e = np.repeat(e, ff, axis=ax)
    out[: e.shape[0], : e.shape[1], : e.shape[2]] = e
    return out


def find_other_bones(volume, metal_mask, anatomy) -> OtherBones:
    """Find the ilia and the ribs of ``volume`` beside the vertebrae of ``anatomy``."""
    t0 = time.perf_counter()
    warnings: list[str] = []
    timings: dict = {}
    verts = [v for v in anatomy.vertebrae]
    if not verts:
        return _empty(volume.hu.shape, ["No vertebra: no pelvis or ribs searched."], timings)
    canon = _canonical(volume)
    M = canon.lps_from_cijk
    Minv = np.linalg.inv(M)
    sp = np.array([np.linalg.norm(M[:3, 2]), np.linalg.norm(M[:3, 1]), np.linalg.norm(M[:3, 0])])
    hu_c = canon.to_canon(volume.hu)
    lab_c = canon.to_canon(anatomy.labels)
    metal_c = canon.to_canon(metal_mask) if metal_mask is not None else None
    shape_c = hu_c.shape
    f = tuple(int(max(1, round(GRID_MM / s))) for s in sp)

    def to_cidx(p_lps):  # LPS -> canonical (z, y, x) index (float)
        q = Minv @ np.append(np.asarray(p_lps, float), 1.0)
        return np.array([q[2], q[1], q[0]])

    def to_lps(zyx):  # canonical (z, y, x) index -> LPS
        zyx = np.atleast_2d(np.asarray(zyx, float))
        q = np.c_[zyx[:, 2], zyx[:, 1], zyx[:, 0], np.ones(len(zyx))]
        return (q @ M.T)[:, :3]

    cen = np.array([to_cidx(v.centroid_lps) for v in verts])  # (n, 3) z y x index
    # the canal's midline x (index) along z, from the canal centreline or the bodies
    cl = np.asarray(anatomy.canal_centerline_lps, float).reshape(-1, 3)
    mid_pts = np.array([to_cidx(p) for p in cl]) if len(cl) >= 2 else cen
    o = np.argsort(mid_pts[:, 0])
    mid_z, mid_x = mid_pts[o, 0], mid_pts[o, 2]
    o = np.argsort(cen[:, 0])
    body_z, body_y = cen[o, 0], cen[o, 1]

    def window(z_lo_mm, z_hi_mm, half_x_mm, y_lo_mm, x_mid_idx):
        """Canonical window (slices) snapped to multiples of f from its start."""
        lo = np.array([z_lo_mm / sp[0], y_lo_mm / sp[1], x_mid_idx - half_x_mm / sp[2]])
        hi = np.array([z_hi_mm / sp[0], shape_c[1], x_mid_idx + half_x_mm / sp[2]])
        sl = []
        for ax in range(3):
            a = int(np.clip(np.floor(lo[ax]), 0, shape_c[ax]))
            b = int(np.clip(np.ceil(hi[ax]) + 1, 0, shape_c[ax]))
            n = (b - a) // f[ax]
            sl.append(slice(a, a + n * f[ax]))
        return tuple(sl)

    def full_bone(win):
        b = hu_c[win] >= np.int16(BONE_HU)
        if metal_c is not None:
            b &= ~metal_c[win]
        return b

    kinds = {v.label_value: v for v in verts}
    lowest = verts[-1]
    thoracic = [v for v in verts if v.kind != "sacrum" and (v.label.upper().startswith("T") or v.has_ribs)]

    jobs = {}
    pelvis: dict[str, Any] = {"found": False, "left": None, "right": None}
    # --- pelvis --------------------------------------------------------------------------------
    pel = None
    if lowest.kind == "sacrum" or lowest.label.upper() in ("L4", "L5", "L6", "S1"):
        lum = [v for v in verts if v.kind != "sacrum"]
        ref = lum[-1] if lum else lowest
        zr = to_cidx(ref.centroid_lps)
        x_mid = float(np.interp(zr[0], mid_z, mid_x))
        win = window(-1.0, zr[0] * sp[0] + PELVIS_ABOVE_L5_MM, 190.0,
                     zr[1] * sp[1] - 110.0, x_mid)
        if all(s.stop > s.start for s in win):
            t = time.perf_counter()
            pel = _pelvis(win, f, sp, full_bone(win), lab_c[win], metal_c, hu_c, verts, to_lps,
                          mid_z, mid_x, warnings)
            timings["pelvis"] = round(time.perf_counter() - t, 3)
            if pel is not None:
                jobs["ilium"] = (win, pel[0])
                pelvis = pel[1]
    # --- ribs ----------------------------------------------------------------------------------
    rib_levels: dict = {}
    if thoracic:
        t = time.perf_counter()
        zs = [to_cidx(v.centroid_lps)[0] for v in thoracic]
        heights = [abs(to_cidx(v.centroid_lps)[0] - to_cidx(w.centroid_lps)[0])
                   for v, w in zip(verts[:-1], verts[1:], strict=True)] or [25.0 / sp[0]]
        h = float(np.median(heights))
        z_lo = (min(zs) - 1.5 * h) * sp[0]
        z_hi = (max(zs) + 1.0 * h) * sp[0]
        x_mid = float(np.median([np.interp(z, mid_z, mid_x) for z in zs]))
        y_front = min(to_cidx(v.centroid_lps)[1] for v in thoracic) * sp[1] - 50.0
        win = window(z_lo, z_hi, RIB_REACH_MM, y_front, x_mid)
        if all(s.stop > s.start for s in win):
            rb = _ribs(win, f, sp, full_bone(win), lab_c[win], metal_c, thoracic, verts,
                       to_cidx, mid_z, mid_x, body_z, body_y, warnings)
            if rb is not None:
                jobs["ribs"] = (win, rb[0])
                rib_levels = rb[1]
        timings["ribs"] = round(time.perf_counter() - t, 3)
    del kinds

    if not jobs:
        timings["total"] = round(time.perf_counter() - t0, 3)
        return _empty(volume.hu.shape, warnings, timings)
    # one box (canonical) holding both, then back to the CT's own axes
    lo = np.min([[s.start for s in w] for w, _ in jobs.values()], axis=0)
    hi = np.max([[s.stop for s in w] for w, _ in jobs.values()], axis=0)
    out = {}
    for name in ("ilium", "ribs"):
        m = np.zeros(tuple(hi - lo), bool)
        if name in jobs:
            w, mm = jobs[name]
            m[tuple(slice(s.start - a, s.stop - a) for s, a in zip(w, lo, strict=True))] = mm
        out[name] = canon.from_canon(m)
    box: dict[int, slice] = {}  # CT axis -> its range; perm is a permutation: all three set
    for ax in range(3):
        orig = canon.perm[ax]
        n = volume.hu.shape[orig]
        a, b = int(lo[ax]), int(hi[ax])
        box[orig] = slice(n - b, n - a) if canon.flips[ax] else slice(a, b)
    if "ilium" in jobs and out["ilium"].any():
        pelvis["volume_ml_total"] = round(float(out["ilium"].sum() * np.prod(sp)) / 1000.0, 1)
    timings["total"] = round(time.perf_counter() - t0, 3)
    return OtherBones((box[0], box[1], box[2]), out["ilium"], out["ribs"], pelvis, rib_levels,
                      tuple(warnings), timings)


# --------------------------------------------------------------------------------------------
def _row_cut(vert: np.ndarray) -> np.ndarray:
    """True between the leftmost and rightmost labelled voxel of every (z, y) row."""
    has = np.asarray(vert.any(axis=2))
    nx = vert.shape[2]
    first = np.argmax(vert, axis=2)
    last = nx - 1 - np.argmax(vert[:, :, ::-1], axis=2)
    X = np.arange(nx)[None, None, :]
    return has[:, :, None] & (X >= first[:, :, None]) & (X <= last[:, :, None])


def _pelvis(win, f, sp, bone_full, lab_full, metal_c, hu_c, verts, to_lps, mid_z, mid_x,
            warnings):
    vert_full = lab_full > 0
    bone_r = _reduce_any(bone_full & ~vert_full, f)
    vert_r = _reduce_any(vert_full, f)
    g = sp * np.array(f)  # reduced voxel size (z, y, x) mm
    nz, ny, nx = bone_r.shape
    zc = win[0].start + (np.arange(nz) * f[0] + (f[0] - 1) / 2.0)  # canonical index
    xc = win[2].start + (np.arange(nx) * f[2] + (f[2] - 1) / 2.0)
    xm = np.interp(zc, mid_z, mid_x)  # midline per slice (index)
    dx = (xc[None, :] - xm[:, None]) * sp[2]  # (nz, nx) mm, + = patient's left
    other = bone_r & ~vert_r & ~_row_cut(vert_r)
    # bone connected across the midline in a slice: the unlabelled sacrum, coccyx, symphysis
    sac = [v for v in verts if v.kind == "sacrum"]
    sac_lab = np.isin(lab_full, [v.label_value for v in sac] + [SACRUM_BELOW_S1])
    half_w = 35.0
    if sac_lab.any():
        xs = np.nonzero(sac_lab.any(axis=(0, 1)))[0]
        xmid0 = float(np.median(xm))
        w_lab = max(abs((xs.min() + win[2].start) - xmid0), abs((xs.max() + win[2].start) - xmid0))
        half_w = float(np.clip(0.6 * w_lab * sp[2], 25.0, 45.0))
    central = np.abs(dx) < 6.0
    for k in range(nz):
        sl = other[k]
        if not sl.any():
            continue
        cc, n = ndi.label(sl, structure=np.ones((3, 3), bool))
        if n == 0:
            continue
        hit = np.unique(cc[:, central[k]])
        hit = hit[hit > 0]
        if len(hit):
            across = np.isin(cc, hit)
            sl[across & (np.abs(dx[k])[None, :] < half_w)] = False
            cc, n = ndi.label(sl, structure=np.ones((3, 3), bool))
            hit = np.unique(cc[:, central[k]])
            hit = hit[hit > 0]
            if len(hit):
                sl[np.isin(cc, hit)] = False
            # small pieces left beside the cut: the rest of the sacrum, not an ilium
            if n:
                area = ndi.sum(across, cc, np.arange(1, n + 1)) * g[1] * g[2]
                small = np.nonzero(area < SACRUM_PIECE_MM2)[0] + 1
                sl[np.isin(cc, small) & across] = False
    # 3-D components lateral to the column, large, reaching the sacro-iliac level
    cc, n = ndi.label(other)
    if n == 0:
        return None
    idx = np.arange(1, n + 1)
    cnt = ndi.sum(np.ones_like(other, np.float32), cc, idx)
    vol_ml = cnt * float(np.prod(g)) / 1000.0
    # reduced-grid slice of the lowest labelled vertebra bone: the sacro-iliac level
    z_lab = np.nonzero(vert_r.any(axis=(1, 2)))[0]
    z_si = int(z_lab.min()) if len(z_lab) else nz - 1
    DX = np.broadcast_to(dx[:, None, :], other.shape)
    mean_dx = ndi.mean(DX, cc, idx)
    zz = np.broadcast_to(np.arange(nz)[:, None, None], other.shape)
    ztop = ndi.maximum(zz, cc, idx)
    keep = {"left": [], "right": []}
    for c in range(n):
        if vol_ml[c] < ILIUM_MIN_ML or abs(mean_dx[c]) < ILIUM_MIN_LATERAL_MM:
            continue
        if ztop[c] < z_si:  # never up to the sacrum's level: a femur, the pubis
            continue
        keep["left" if mean_dx[c] > 0 else "right"].append(c + 1)
    result = np.zeros_like(other)
    pelvis = {"found": False, "left": None, "right": None,
              "midline_x_mm": None}
    z_search_lo = max(0, z_si - int(round(ACETABULUM_SEARCH_MM / g[0])))
    side_masks = {}
    for side, comps in keep.items():
        if not comps:
            continue
        m = np.isin(cc, comps)
        sign = 1.0 if side == "left" else -1.0
        m &= (sign * DX) > 0
        area = m.sum(axis=(1, 2)).astype(float)
        sm = ndi.uniform_filter1d(area, size=max(1, int(round(6.0 / g[0]))), mode="nearest")
        z_roof = None
        top_area = np.nonzero(area > 0)[0]
        hi_ = min(z_si, int(top_area.max())) if len(top_area) else z_si
        if hi_ > z_search_lo + 1:
            seg = sm[z_search_lo: hi_ + 1]
            kmin = int(np.argmin(seg)) + z_search_lo
            # a real narrowing (the acetabulum widens below it), else the scan's bottom
            below = sm[:kmin]
            if kmin > 0 and len(below) and below.max() > 1.2 * sm[kmin]:
                z_roof = kmin
                m[:kmin] = False
        if not m.any():
            continue
        # keep what stays connected to the part at the sacro-iliac level
        cm, nm = ndi.label(m)
        if nm > 1:
            sizes = ndi.sum(m, cm, np.arange(1, nm + 1))
            m = cm == (int(np.argmax(sizes)) + 1)
        side_masks[side] = (m, z_roof)
        result |= m
    if not side_masks:
        return None
    # back to full resolution: bone voxels of the chosen blocks, not on a vertebra
    full = _expand(result, f, bone_full.shape) & bone_full & ~vert_full
    off = np.array([s.start for s in win], float)
    for side, (m, z_roof) in side_masks.items():
        mf = _expand(m, f, bone_full.shape) & full
        if mf.sum() * float(np.prod(sp)) / 1000.0 < ILIUM_MIN_ML / 2:
            full &= ~mf
            continue
        # the crest's top and the most posterior point: in the highest (hindmost) blocks only
        zr_, yr_, _ = np.nonzero(m)
        a0 = int(zr_.max()) * f[0]
        z, y, x = np.nonzero(mf[a0: a0 + f[0]])
        if len(z) == 0:
            z, y, x = np.nonzero(mf)
            a0 = 0
        z = z + a0
        top = z.max()
        sel = z == top
        crest = np.array([z[sel].mean(), y[sel].mean(), x[sel].mean()]) + off
        a1 = int(yr_.max()) * f[1]
        z, y, x = np.nonzero(mf[:, a1: a1 + f[1]])
        if len(z) == 0:
            z, y, x = np.nonzero(mf)
            a1 = 0
        y = y + a1
        sel = y == y.max()
        psis = np.array([z[sel].mean(), y[sel].mean(), x[sel].mean()]) + off
        entry = {
            "crest_top_lps": [round(float(c), 1) for c in to_lps(crest)[0]],
            "posterior_superior_iliac_spine_lps": [round(float(c), 1) for c in to_lps(psis)[0]],
            "volume_ml": round(float(mf.sum() * np.prod(sp)) / 1000.0, 1),
            "acetabulum_roof_z_mm": None if z_roof is None else round(float(
                to_lps([win[0].start + z_roof * f[0], 0, 0])[0][2]), 1),
        }
        if top + win[0].start >= hu_c.shape[0] - 1 - f[0]:
            warnings.append(f"The {side} iliac crest reaches the top of the scan.")
        if z_roof is None:
            warnings.append(f"The {side} ilium: no acetabulum found above the bottom of the scan; "
                            "labelled to the scan's bottom.")
        pelvis[side] = entry
    pelvis["found"] = pelvis["left"] is not None or pelvis["right"] is not None
    if pelvis["found"] and (pelvis["left"] is None or pelvis["right"] is None):
        warnings.append("Only one ilium found beside the sacrum.")
    pelvis["midline_x_mm"] = round(float(to_lps([0, 0, float(np.median(mid_x))])[0][0]), 1)
    if not pelvis["found"]:
        return None
    return full, pelvis


def _ribs(win, f, sp, bone_full, lab_full, metal_c, thoracic, verts, to_cidx, mid_z, mid_x,
          body_z, body_y, warnings) -> tuple[np.ndarray, dict] | None:
    vert_full = lab_full > 0
    bone_r = _reduce_any(bone_full & ~vert_full, f)
    vert_r = _reduce_any(vert_full, f)
    g = sp * np.array(f)
    nz, ny, nx = bone_r.shape
    zc = win[0].start + (np.arange(nz) * f[0] + (f[0] - 1) / 2.0)
    yc = win[1].start + (np.arange(ny) * f[1] + (f[1] - 1) / 2.0)
    xc = win[2].start + (np.arange(nx) * f[2] + (f[2] - 1) / 2.0)
    xm = np.interp(zc, mid_z, mid_x)
    dx = (xc[None, :] - xm[:, None]) * sp[2]  # (nz, nx)
    yb = np.interp(zc, body_z, body_y)  # body centre (index) per slice
    dy = (yc[None, :] - yb[:, None]) * sp[1]  # (nz, ny), + = posterior of the body's centre
    other = bone_r & ~vert_r
    if metal_c is not None:  # metal's bright rim is not bone
        mr = _reduce_any(metal_c[win], f)
        if mr.any():
            other &= ~ndi.binary_dilation(mr, iterations=1)
    # thick bright blobs are not ribs: the contrast-filled aorta or heart, a stent's lumen
    h = max(1, int(round(0.6 * RIB_THICK_MM / 2.0 / g.min())))
    thick = ndi.minimum_filter(other.view(np.uint8), size=2 * h + 1)  # a cube fits in it
    if thick.any():
        other &= ~ndi.maximum_filter(thick, size=2 * h + 5).astype(bool)
    # in front of the body's centre near the column: the aorta, the oesophagus, not ribs
    front = (dy[:, :, None] < -5.0) & (np.abs(dx)[:, None, :] < 45.0)
    other &= ~front
    thor_vals = np.array([v.label_value for v in thoracic])
    lr = lab_full[f[0] // 2: nz * f[0]: f[0], f[1] // 2: ny * f[1]: f[1], f[2] // 2: nx * f[2]: f[2]]
    lab_r = np.where(np.isin(lr, thor_vals), lr, 0).astype(np.uint8)
    reach_vox = max(1, int(round(RIB_CONTACT_MM / g.min())))
    lab_near = ndi.maximum_filter(lab_r, size=2 * reach_vox + 1)  # a nearby thoracic label
    cc, n = ndi.label(other, structure=ndi.generate_binary_structure(3, 2))
    if n == 0:
        return None
    idx = np.arange(1, n + 1)
    DX = np.broadcast_to(dx[:, None, :], other.shape)
    absdx = np.abs(DX)
    lat_max = ndi.maximum(absdx, cc, idx)
    lat_min = ndi.minimum(absdx, cc, idx)
    edge = RIB_REACH_MM - 2.0 * g[2]
    # the lateral edge of the searched box (or of the scan): a rib leaves there
    x_edge_mm = min(abs(dx[:, 0]).min(), abs(dx[:, -1]).min())
    need = min(RIB_MIN_LATERAL_MM, x_edge_mm - 2.0 * g[2])
    contact = (lab_near > 0) & (cc > 0)
    touches = np.zeros(n + 1, bool)
    touches[np.unique(cc[contact])] = True
    keep = np.zeros(n + 1, bool)
    keep[1:] = touches[1:] & ((lat_max >= need) | (lat_max >= edge)) & (lat_min <= 45.0)
    result = keep[cc]
    names = {v.label_value: v.label for v in verts}
    rib_levels: dict = {}
    sel = contact & result
    if sel.any():
        comp, val, side = cc[sel], lab_near[sel].astype(np.int64), DX[sel] > 0
        key = comp.astype(np.int64) * 256 + val
        uk, cnt = np.unique(key, return_counts=True)
        best: dict = {}
        for kk, c in zip(uk.tolist(), cnt.tolist(), strict=True):
            cid = kk // 256
            if c > best.get(cid, (0, 0))[0]:
                best[cid] = (c, kk % 256)
        for cid, (_, v) in best.items():
            m = (comp == cid) & (val == v)
            sd = "left" if side[m].mean() > 0.5 else "right"
            lst = rib_levels.setdefault(names.get(int(v), str(v)), [])
            if sd not in lst:
                lst.append(sd)
    if not result.any():
        return None
    full = _expand(result, f, bone_full.shape) & bone_full & ~vert_full
    for k in rib_levels:
        rib_levels[k] = sorted(rib_levels[k])
    return full, rib_levels
