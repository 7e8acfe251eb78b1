"""The phantom's pelvis: both iliac wings beside L5.

Each ilium is a curved bony plate (cortex and marrow, like the ribs) standing beside the lowest
lumbar vertebra: from its posterior part (the posterior superior iliac spine, lateral and
posterior to L5's transverse processes, where a lateral-to-medial path to L5 meets it) it sweeps
laterally and forward, flaring outward as it rises, up to the iliac crest at about the L4-L5
disc's height (a little lower at the back). It continues down to the bottom of the field of
view (no sacrum, acetabulum or femur is drawn).
"""

from __future__ import annotations

import numpy as np

from fluoroplan.resources import phantom_sdf as S

HU_ILIUM_CORTEX = 700.0
HU_ILIUM_MARROW = 190.0
ILIUM_THICK_MM = 9.0
CORTEX_MM = 1.5
SIDES = {"left": 1.0, "right": -1.0}


def _seg_dist2(X, Y, a, b):
    """2-D distance of points (X, Y) to the segment a-b."""
    ab = np.asarray(b, float) - np.asarray(a, float)
    L2 = float(ab @ ab)
    dx, dy = X - np.float32(a[0]), Y - np.float32(a[1])
    t = np.clip((dx * ab[0] + dy * ab[1]) / L2, 0.0, 1.0)
    ex, ey = dx - t * np.float32(ab[0]), dy - t * np.float32(ab[1])
    return np.sqrt(ex * ex + ey * ey), t


def draw_pelvis(hu, grid: S.Grid, l5, structures, code: int, rng) -> dict:
    """Draw both ilia beside ``l5`` (the phantom's ``_Vertebra``) into ``hu``; mark their
    voxels ``code`` in ``structures``. Returns the truth: per side the crest's highest point,
    the posterior superior iliac spine and the polyline of the wing (LPS mm)."""
    c = np.asarray(l5.center, float)
    z_disc = float(l5.lps([0, 0, l5.H / 2])[2]) + 0.5 * float(l5.disc_above or 0.0)
    out = {}
    for side, s in SIDES.items():
        jit = rng.uniform(-3.0, 3.0, 4)
        x_tp = l5.W / 2 + l5.tpl  # the transverse process's tip beside the body's centre
        pts = np.array([
            [s * (x_tp - 8.0 + jit[0]), c[1] + 42.0 + jit[1]],  # posterior superior iliac spine
            [s * (x_tp + 12.0), c[1] + 22.0],
            [s * (x_tp + 45.0), c[1] + 2.0 + jit[2]],
            [s * (x_tp + 72.0 + jit[3]), c[1] - 30.0],
        ])
        z_top_front = z_disc + 4.0
        z_top_back = z_disc - 14.0
        flare = 0.25  # outward (lateral) per mm of rise
        z_lo = float(grid.z[0]) - 1.0
        lo = np.r_[pts.min(axis=0) - ILIUM_THICK_MM - 30.0, z_lo]
        hi = np.r_[pts.max(axis=0) + ILIUM_THICK_MM + 30.0, z_top_front + 6.0]
        box = grid.box(lo, hi)
        if box is None:
            continue
        X, Y, Z = grid.coords(box)
        Xs = X - np.float32(s * flare) * (Z - np.float32(z_lo))  # un-flare: the wing leans out
        d = np.full(np.broadcast(Xs, Y).shape, S.BIG, np.float32)
        tt = np.zeros_like(d)
        seg_len = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        acc = np.r_[0.0, np.cumsum(seg_len)] / seg_len.sum()
        for n, (a, b) in enumerate(zip(pts[:-1], pts[1:], strict=True)):
            dd, t = _seg_dist2(Xs, Y, a, b)
            better = dd < d
            d = np.where(better, dd, d)
            tt = np.where(better, acc[n] + t * (acc[n + 1] - acc[n]), tt)
        # the crest: lower at the back (tt = 0) than at the front (tt = 1), rounded
        z_crest = np.float32(z_top_back) + tt * np.float32(z_top_front - z_top_back)
        sdf = np.maximum(d - np.float32(ILIUM_THICK_MM / 2), Z - z_crest).astype(np.float32)
        S.paint(hu, box, S.alpha(sdf, grid.ramp_mm), HU_ILIUM_CORTEX)
        S.paint(hu, box, S.alpha(sdf + CORTEX_MM, grid.ramp_mm), HU_ILIUM_MARROW)
        structures[box][sdf <= 0] = code
        psis = np.r_[pts[0], z_top_back]
        psis[0] += s * flare * (z_top_back - z_lo)
        top = np.r_[pts[-1], z_top_front]
        top[0] += s * flare * (z_top_front - z_lo)
        out[side] = {
            "crest_top_lps": [round(float(v), 2) for v in top],
            "posterior_superior_iliac_spine_lps": [round(float(v), 2) for v in psis],
            "wing_polyline_xy_mm": [[round(float(v), 2) for v in p] for p in pts],
            "flare_per_mm": flare, "thickness_mm": ILIUM_THICK_MM,
        }
    return out
