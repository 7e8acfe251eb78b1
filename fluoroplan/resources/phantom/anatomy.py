"""Drawing the anatomy: trunk, lungs, discs, vertebrae, spinal canal and ribs, and a vertebra's truth.

Each ``_draw_*`` paints its tissue into the canonical float HU canvas (and the vertebra labels
and ``structures`` codes where it owns them); ``_vertebra_truth`` reads one vertebra's exact
geometry (centroid, endplates, pedicle axes, canal, spinous tip) back as truth data.
"""

from __future__ import annotations

import math

import numpy as np

from fluoroplan.resources import phantom_sdf as S
from fluoroplan.resources.phantom.canvas import (
    _add_capsule,
    _f,
    _local_canvas,
    _paint_sdf,
    _superellipse2,
)
from fluoroplan.resources.phantom.model import (
    HU_AIR,
    HU_CORD,
    HU_CSF,
    HU_DISC,
    HU_FAT,
    HU_LUNG,
    HU_MUSCLE,
    HU_NUCLEUS,
    HU_RIB_CORTEX,
    HU_RIB_MARROW,
    HU_SCLEROSIS,
    HU_SKIN,
    HU_SOFT,
    HU_TABLE,
    SHELL_MM,
    SIDES,
    STRUCTURE_CODES,
)
from fluoroplan.resources.phantom.vertebra import _Vertebra


# --- drawing ------------------------------------------------------------------------------
def _draw_trunk(hu, grid, ta, tb, verts, by_label, position) -> None:
    X2 = grid.x[None, :]
    Y2 = grid.y[:, None]
    img = np.full((len(grid.y), len(grid.x)), HU_AIR, np.float32)
    r = grid.ramp_mm

    def lay(sdf, value):
        img[...] += S.alpha(sdf, r) * (np.float32(value) - img)

    p = 2.4
    lay(_superellipse2(X2, Y2, ta, tb, p), HU_SKIN)
    lay(_superellipse2(X2, Y2, ta - 2.0, tb - 2.0, p), HU_FAT)
    lay(_superellipse2(X2, Y2, ta - 14.0, tb - 14.0, p), HU_MUSCLE)
    lay(_superellipse2(X2, Y2, ta - 24.0, tb - 24.0, p), HU_SOFT)
    y_body = float(np.mean([v.center[1] for v in verts]))
    d_body = float(np.mean([v.D for v in verts]))
    # retroperitoneal fat, aorta (left) and IVC (right) in front of the spine
    lay(S.ellipse(X2, Y2 - (y_body - 5.0), 80.0, 38.0), HU_FAT)
    front = y_body - d_body / 2 - 13.0
    lay(np.hypot(X2 - 18.0, Y2 - front) - 11.0, 40.0)
    lay(np.hypot(X2 + 22.0, Y2 - front) - 10.0, 35.0)
    # paraspinal (erector spinae) muscles
    yp = y_body + 58.0
    for s in (1.0, -1.0):  # each in a thin fat envelope (the thoracolumbar fascia plane)
        lay(S.ellipse(X2 - s * 38.0, Y2 - yp, 33.0, 28.0), HU_FAT)
    for s in (1.0, -1.0):
        lay(S.ellipse(X2 - s * 38.0, Y2 - yp, 30.0, 25.0), HU_MUSCLE)
    # the CT table: a curved carbon plate under the back (supine) or the belly (prone)
    R = 450.0
    sag = R - np.sqrt(np.maximum(R * R - X2.astype(np.float64) ** 2, 0.0))
    if position == "HFS":
        surf = tb + 1.0 - sag
        d = np.maximum(surf - Y2, Y2 - (surf + 7.0))
    else:
        surf = -tb - 1.0 + sag
        d = np.maximum(Y2 - surf, (surf - 7.0) - Y2)
    lay(d.astype(np.float32), HU_TABLE)
    hu[...] = img[None, :, :]
    # psoas and kidneys (lumbar, 3-D)
    if "L1" in by_label:
        l1 = by_label["L1"]
        z_top = float(l1.lps([0, 0, l1.H / 2])[2])
        zs = np.array([v.center[2] for v in by_label.values()])
        ys = np.array([v.center[1] for v in by_label.values()])
        order = np.argsort(zs)
        box = grid.box([-120, -60, grid.z[0]], [120, 80, z_top], 2.0)
        if box is not None:
            X, Y, Z = grid.coords(box)
            yc = np.interp(Z, zs[order], ys[order]).astype(np.float32)
            a = np.clip(5.0 + 0.16 * (z_top - Z), 5.0, 24.0).astype(np.float32)
            for s in (1.0, -1.0):
                xc = s * (l1.W / 2 + 6.0 + 0.6 * a)
                sdf = np.maximum(S.ellipse(X - np.float32(xc), Y - yc, a, 0.85 * a), Z - z_top)
                S.paint(hu, box, S.alpha(sdf, grid.ramp_mm), HU_MUSCLE)
        for s, dz in ((1.0, 8.0), (-1.0, -8.0)):
            c = np.array([s * (l1.W / 2 + 48.0), l1.center[1] + 22.0,
                          l1.center[2] - l1.H / 2 - l1.disc_below / 2 + dz])
            for grow, value in ((9.0, HU_FAT), (0.0, 32.0)):
                semi = np.array([24.0, 19.0, 52.0]) + grow
                box = grid.box(c - semi, c + semi, 2.0)
                if box is None:
                    continue
                X, Y, Z = grid.coords(box)
                k0 = np.sqrt(((X - c[0]) / semi[0]) ** 2 + ((Y - c[1]) / semi[1]) ** 2
                             + ((Z - c[2]) / semi[2]) ** 2)
                S.paint(hu, box, S.alpha((k0 - 1.0) * np.float32(semi.min()), grid.ramp_mm), value)


def _draw_lungs(hu, grid, ta, tb, by_label) -> None:
    """Lungs lateral and posterior; the posterior costophrenic recess reaches T12/L1."""
    t12, l1 = by_label["T12"], by_label["L1"]
    z_rec = float((t12.lps([0, 0, -t12.H / 2])[2] + l1.lps([0, 0, l1.H / 2])[2]) / 2 - 3.0)
    X2 = grid.x[None, :]
    Y2 = grid.y[:, None]
    y_body = float(t12.center[1])
    sdf2 = _superellipse2(X2, Y2, ta - 30.0, tb - 30.0, 2.4)
    sdf2 = np.maximum(sdf2, 27.0 - np.abs(X2))  # mediastinum and spine
    for s in (1.0, -1.0):  # stay out of the paraspinal muscles
        sdf2 = np.maximum(sdf2, -(S.ellipse(X2 - s * 38.0, Y2 - (y_body + 58.0), 33.0, 28.0)))
    a2 = S.alpha(sdf2, grid.ramp_mm)
    # diaphragm: lowest posteriorly and laterally (the recesses), domed medially and anteriorly
    y_ref = y_body + 40.0  # behind this the recess is flat at z_rec, in front it rises
    z_dia = (z_rec + 0.5 * np.clip(y_ref - Y2, 0.0, None)
             + 0.12 * np.clip(80.0 - np.abs(X2), 0.0, None) * np.clip((y_ref - Y2) / 30.0, 0.0, 1.0)
             ).astype(np.float32)
    jj = np.nonzero(a2.any(axis=1))[0]
    ii = np.nonzero(a2.any(axis=0))[0]
    kk = np.nonzero(grid.z > z_rec - 2.0)[0]
    if len(jj) == 0 or len(ii) == 0 or len(kk) == 0:
        return
    box = (slice(kk[0], kk[-1] + 1), slice(jj[0], jj[-1] + 1), slice(ii[0], ii[-1] + 1))
    a2b = a2[box[1], box[2]][None]
    zd = z_dia[box[1], box[2]][None]
    Z = grid.z[box[0]][:, None, None]
    a = a2b * np.clip(0.5 + (Z - zd) / np.float32(grid.ramp_mm), 0.0, 1.0)
    S.paint(hu, box, a.astype(np.float32), HU_LUNG)


def _draw_disc(hu, grid, up: _Vertebra, lo: _Vertebra) -> None:
    W, D, H = lo.W, lo.D, lo.H
    canvas = _local_canvas(
        grid, lo, [-W / 2 - 1, -D / 2 - 1, H / 2 - lo.frac * H - 1],
        [W / 2 + 1, D / 2 + 4, H / 2 + lo.disc_above + 6.0], 1.0)
    if canvas is None:
        return
    box, (u, v, w) = canvas
    X, Y, Z = grid.coords(box)
    uu, vv, ww = S.to_local(X, Y, Z, up.center, up.axes)
    de = S.ellipse(u, v - 2.0, W / 2 + 0.5, D / 2 + 2.5)
    dp = v - (D / 2 + 0.5 + 3.0 * (2.0 * u / W) ** 2)
    d_lo = lo.top(v) - w
    d_up = ww + up.H / 2
    sdf = np.maximum(np.maximum(de, dp), np.maximum(d_lo, d_up))
    S.paint(hu, box, S.alpha(sdf, grid.ramp_mm), HU_DISC)
    nuc = np.maximum(S.ellipse(u, v + 1.0, W * 0.27, D * 0.25), np.maximum(d_lo, d_up) + 2.0)
    S.paint(hu, box, S.alpha(nuc, grid.ramp_mm), HU_NUCLEUS)


def _draw_vertebra(hu, labels, grid, vt: _Vertebra) -> None:
    lo, hi = vt.local_box()
    canvas = _local_canvas(grid, vt, lo, hi, 1.0)
    if canvas is None:
        return
    box, (u, v, w) = canvas
    sdf = np.full(u.shape, S.BIG, np.float32)
    for plo, phi, fn in vt.parts:
        pbox = S.frame_box(grid, vt.center, vt.axes, plo, phi, 2.0)
        inter = S.sub_box(box, pbox) if pbox is not None else None
        if inter is None:
            continue
        rel = inter[1]
        sdf[rel] = S.smin(sdf[rel], fn(u[rel], v[rel], w[rel]), 1.5)
    _paint_sdf(hu, labels, grid, box, sdf, vt.cortical_hu, label=vt.index)
    S.paint(hu, box, S.alpha(sdf + SHELL_MM, grid.ramp_mm), vt.trab_hu)
    if vt.frac > 0:  # sclerotic band of impacted trabeculae under the depressed endplate
        top = vt.top(v)
        band = np.maximum(vt.body_sdf(u, v, w) + SHELL_MM, np.abs(w - (top - 4.0)) - 2.5)
        S.paint(hu, box, S.alpha(band, grid.ramp_mm), HU_SCLEROSIS)


def _draw_canal(hu, labels, grid, vt: _Vertebra, first: bool, last: bool,
                structures: np.ndarray | None = None) -> None:
    w_hi = vt.H / 2 + (25.0 if first else 1.0)
    w_lo = -vt.H / 2 - vt.disc_below - (25.0 if last else 1.0)
    vc = vt.v_canal
    canvas = _local_canvas(grid, vt, [-vt.cw / 2, vc - vt.ap / 2, w_lo],
                           [vt.cw / 2, vc + vt.ap / 2, w_hi], 1.0)
    if canvas is None:
        return
    box, (u, v, w) = canvas
    dz = np.maximum(w - w_hi, w_lo - w)
    sdf = np.maximum(S.ellipse(u, v - vc, vt.cw / 2, vt.ap / 2), dz)
    _paint_sdf(hu, labels, grid, box, sdf, HU_CSF, clear_label=True)
    if structures is not None:
        structures[box][sdf <= 0] = STRUCTURE_CODES["canal"]
    if vt.thoracic or vt.label == "L1":
        cord = np.maximum(S.ellipse(u, v - vc + 0.5, 5.0, 4.0), dz)
        S.paint(hu, box, S.alpha(cord, grid.ramp_mm), HU_CORD)


def _draw_ribs(hu, grid, vt: _Vertebra, ta, tb, structures: np.ndarray | None = None) -> dict:
    heads = {}
    length = {"T11": 150.0, "T12": 105.0}.get(vt.label, 220.0)
    for side, s in SIDES.items():
        u_edge = 0.85 * vt.W / 2
        head = vt.lps([s * (u_edge + 5.5), vt.D / 2 - 4.0, vt.H / 2 - 6.0])
        neck = vt.lps([s * (vt.W / 2 + 14.0), vt.D / 2 + 0.6 * vt.ap + 6.0, vt.H / 2 - 8.0])
        pts = [head, neck]
        angle_pt = np.array([s * 62.0, tb - 32.0, neck[2] - 6.0])
        pts.append(angle_pt)
        # then along the chest wall (inner trunk contour), descending
        a_in, b_in, p = ta - 22.0, tb - 22.0, 2.4
        used = float(np.linalg.norm(neck - head) + np.linalg.norm(angle_pt - neck))
        phi = math.atan2((angle_pt[1] / b_in), abs(angle_pt[0]) / a_in)
        z = angle_pt[2]
        prev = angle_pt
        while used < length and phi > -1.2:
            phi -= 0.06
            c, sn = math.cos(phi), math.sin(phi)
            x = a_in * math.copysign(abs(c) ** (2 / p), c)
            y = b_in * math.copysign(abs(sn) ** (2 / p), sn)
            step = math.hypot(x - abs(prev[0]), y - prev[1])
            z -= 0.3 * step
            used += step
            prev = np.array([s * x, y, z])
            pts.append(prev)
        path = np.array(pts)
        r = 4.0
        box = grid.box(path.min(axis=0) - r - 1.5, path.max(axis=0) + r + 1.5)
        heads[side] = _f(head)
        if box is None:
            continue
        X, Y, Z = grid.coords(box)
        sdf = np.full(np.broadcast(X, Y, Z).shape, S.BIG, np.float32)
        for a, b in zip(path[:-1], path[1:], strict=True):
            _add_capsule(grid, box, X, Y, Z, sdf, a, b, r, 1.5)
        _add_capsule(grid, box, X, Y, Z, sdf, head, head, 5.0, 1.0)  # the rib head
        S.paint(hu, box, S.alpha(sdf, grid.ramp_mm), HU_RIB_CORTEX)
        S.paint(hu, box, S.alpha(sdf + 1.2, grid.ramp_mm), HU_RIB_MARROW)
        if structures is not None:
            structures[box][sdf <= 0] = STRUCTURE_CODES["rib"]
    return heads


# --- truth -----------------------------------------------------------------------------------
def _vertebra_truth(vt: _Vertebra, rib_heads: dict | None) -> dict:
    W, D, H = vt.W, vt.D, vt.H
    step = 0.5
    u = np.arange(-W / 2, W / 2 + step, step, dtype=np.float32)[None, None, :]
    v = np.arange(-D / 2, D / 2 + 3 + step, step, dtype=np.float32)[None, :, None]
    w = np.arange(-H / 2, H / 2 + step, step, dtype=np.float32)[:, None, None]
    inside = vt.body_sdf(u, v, w) <= 0
    kk, jj, ii = np.nonzero(inside)
    centroid_local = np.array([u.ravel()[ii].mean(), v.ravel()[jj].mean(), w.ravel()[kk].mean()])
    f = vt.frac
    n_sup = S.unit([0.0, -f * H / D, 1.0])
    peds = {}
    for side in SIDES:
        p, d = vt.pedicle(side)
        peds[side] = {"axis_point_lps": _f(vt.lps(p)), "axis_dir_lps": _f(vt.dir_lps(d)),
                      "width_mm": round(vt.pw, 4), "height_mm": round(vt.ph, 4),
                      "medial_angle_deg": round(vt.medial[side], 4)}
    grade = 0
    if f > 0:
        grade = 1 if f < 0.25 else (2 if f <= 0.40 else 3)
    out = {
        "label": vt.label, "index": vt.index, "centroid_lps": _f(vt.lps(centroid_local)),
        "origin_lps": _f(vt.center), "axes_lps": [_f(vt.axes[:, c]) for c in range(3)],
        "body_mm": {"width": round(W, 4), "depth": round(D, 4), "height": round(H, 4)},
        "heights_mm": {"anterior": round(H * (1 - f), 4), "middle": round(H * (1 - f / 2), 4),
                       "posterior": round(H, 4)},
        "height_loss_fraction": round(f, 4), "fracture_grade": grade,
        "superior_endplate": {"point_lps": _f(vt.lps([0, 0, float(vt.top(0.0))])),
                              "normal_lps": _f(vt.dir_lps(n_sup))},
        "inferior_endplate": {"point_lps": _f(vt.lps([0, 0, -H / 2])),
                              "normal_lps": _f(-vt.axes[:, 2])},
        "pedicles": peds,
        "canal_center_lps": _f(vt.lps([0, vt.v_canal, 0])),
        "canal_semi_axes_mm": [round(vt.cw / 2, 4), round(vt.ap / 2, 4)],
        "spinous_tip_lps": _f(vt.lps(vt.spinous_ends()[1])),
        "disc_below_mm": round(vt.disc_below, 4),
    }
    if vt.thoracic and rib_heads is not None:
        out["rib_heads_lps"] = rib_heads
    return out
