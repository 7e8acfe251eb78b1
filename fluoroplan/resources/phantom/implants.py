"""Drawing the implants: pedicle screws with tulips and rods, cement, cross-links, cages.

Threaded screws aimed along each pedicle (one loose, with a radiolucent halo; one optionally
cement-augmented), the rods through their seats, vertebroplasty cement, transverse connectors
and interbody cages (titanium or PEEK with tantalum beads). Each returns its truth records.
Metal is painted into ``metal`` and clears the vertebra labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fluoroplan.resources import phantom_sdf as S
from fluoroplan.resources.phantom.canvas import _add_capsule, _f, _local_canvas
from fluoroplan.resources.phantom.model import (
    CEMENT_HU,
    CUFF_HU,
    CUFF_MM,
    HU_GRAFT,
    HU_HALO,
    HU_METAL_DRAWN,
    HU_PEEK,
    ROD_SEAT_MM,
    SHELL_MM,
    SIDES,
    TULIP_DIAMETER_MM,
    TULIP_HEIGHT_MM,
)
from fluoroplan.resources.phantom.vertebra import _Vertebra


# --- implants --------------------------------------------------------------------------------
def _screw_sdf(X, Y, Z, head, axis, L, r_out):
    r_core = 0.78 * r_out
    pitch = 2.5
    dx, dy, dz = X - np.float32(head[0]), Y - np.float32(head[1]), Z - np.float32(head[2])
    s = dx * axis[0] + dy * axis[1] + dz * axis[2]
    radial = np.sqrt(np.maximum(dx * dx + dy * dy + dz * dz - s * s, 0.0))
    frac = (s / pitch) % 1.0
    r = r_core + (r_out - r_core) * (1.0 - 2.0 * np.abs(frac - 0.5))
    r = r * np.clip(0.25 + 0.75 * (L - s) / 5.0, 0.25, 1.0)
    return np.maximum(radial - r, np.maximum(-s, s - L)).astype(np.float32), s, radial


def _metal_paint(hu, metal, labels, grid, box, sdf, value=HU_METAL_DRAWN):
    S.paint(hu, box, S.alpha(sdf, grid.ramp_mm), value)
    inside = sdf <= 0
    metal[box] |= inside
    labels[box][inside] = 0


def _screw_entry(vt: _Vertebra, p, d2, length) -> tuple[np.ndarray, np.ndarray]:
    """Head (where the axis leaves the dorsal bone surface) and tip of a screw, local frame."""
    t = np.arange(0.0, 45.0, 0.1)
    pts = p[None, :] - t[:, None] * d2[None, :]
    inside = vt.sdf(pts[:, 0], pts[:, 1], pts[:, 2]) <= 0
    last_in = int(np.nonzero(inside)[0].max()) if inside.any() else 0
    head_local = p - (t[last_in] + 0.1) * d2
    return head_local, head_local + length * d2


def _draw_instrumentation(hu, labels, metal, grid, by_label, instrumented, loose_screw, halo_mm,
                          diameter, length, rod_d, rng, augmented=(None, None, None)):
    augmented_screw, cement_rng, cements = augmented
    screws, seats = [], {"left": [], "right": []}
    r_out = diameter / 2
    for lvl in instrumented:
        vt = by_label[lvl]
        for side in SIDES:
            p, d = vt.pedicle(side)
            # this screw's own aim: pivot at the isthmus, small medial and sagittal deviations;
            # a surgeon aims more caudally when the tip would leave a collapsed body (fracture)
            e1 = S.unit(np.cross(d, [0.0, 0.0, 1.0]))  # a positive turn about e1 lifts the tip
            tilt0, medial = rng.uniform(-4.0, 4.0), rng.uniform(-1.5, 1.5)
            for tilt in np.arange(tilt0, -20.0, -2.0):
                d2 = S.rot_axis(e1, tilt) @ S.rot_axis([0, 0, 1], medial) @ d
                head_local, tip_local = _screw_entry(vt, p, d2, length)
                tip_in_body = bool(vt.body_sdf(*[np.array([x]) for x in tip_local - d2])[0] < 0)
                if tip_in_body:
                    break
            head, tip, axis = vt.lps(head_local), vt.lps(tip_local), vt.dir_lps(d2)
            sid = f"{lvl}-{side}"
            loose = sid == loose_screw
            screws.append({
                "id": sid, "level": lvl, "side": side, "tip_lps": _f(tip), "head_lps": _f(head),
                "axis_lps": _f(axis), "diameter_mm": float(diameter), "length_mm": float(length),
                "halo_mm": float(halo_mm) if loose else 0.0, "loose": loose,
                "tulip_diameter_mm": TULIP_DIAMETER_MM, "tulip_height_mm": TULIP_HEIGHT_MM,
                "rod_seat_lps": _f(head - ROD_SEAT_MM * axis), "tip_in_body": tip_in_body,
                "cement_augmented": sid == augmented_screw,
            })
            seats[side].append(head - ROD_SEAT_MM * axis)
            m = max(r_out + (halo_mm if loose else 0.0), TULIP_DIAMETER_MM / 2) + 2.0
            if sid == augmented_screw:
                m = max(m, r_out + CUFF_MM + 6.0)
            box = grid.box(np.minimum(head - TULIP_HEIGHT_MM * axis, tip) - m,
                           np.maximum(head - TULIP_HEIGHT_MM * axis, tip) + m)
            if box is None:
                continue
            X, Y, Z = grid.coords(box)
            sdf, s, radial = _screw_sdf(X, Y, Z, head, axis, length, r_out)
            if loose:  # resorption halo: fibrous tissue / fluid around the shaft, in bone only
                halo = np.maximum(radial - np.float32(r_out + halo_mm),
                                  np.maximum(-s, s - np.float32(length + 0.5 * halo_mm)))
                bone = labels[box] == vt.index
                a = S.alpha(halo, grid.ramp_mm) * bone
                S.paint(hu, box, a.astype(np.float32), HU_HALO)
                labels[box][(halo <= 0) & bone] = 0
            if sid == augmented_screw:
                cements.append(_draw_cuff(hu, labels, grid, box, vt, sid, head, axis, length,
                                          r_out, (X, Y, Z), cement_rng))
            tulip = np.maximum(radial - np.float32(TULIP_DIAMETER_MM / 2),
                               np.maximum(-np.float32(TULIP_HEIGHT_MM) - s, s))
            _metal_paint(hu, metal, labels, grid, box, np.minimum(sdf, tulip))
    rods = []
    for side, pts in seats.items():
        if len(pts) < 2:
            continue  # no instrumentation on this side
        pts = np.array(pts)
        order = np.argsort(-pts[:, 2])
        pts = pts[order]
        ext0 = pts[0] + 7.0 * S.unit(pts[0] - pts[1])
        ext1 = pts[-1] + 7.0 * S.unit(pts[-1] - pts[-2])
        poly = np.vstack([ext0, pts, ext1])
        rods.append({"side": side, "points_lps": [_f(q) for q in poly], "diameter_mm": float(rod_d)})
        r = rod_d / 2
        box = grid.box(poly.min(axis=0) - r - 2, poly.max(axis=0) + r + 2)
        if box is None:
            continue
        X, Y, Z = grid.coords(box)
        sdf = np.full(np.broadcast(X, Y, Z).shape, S.BIG, np.float32)
        for a, b in zip(poly[:-1], poly[1:], strict=True):
            _add_capsule(grid, box, X, Y, Z, sdf, a, b, r, 2.0)
        _metal_paint(hu, metal, labels, grid, box, sdf)
    return screws, rods


def _draw_cuff(hu, labels, grid, box, vt: _Vertebra, sid, head, axis, length, r_out, xyz,
               rng) -> dict:
    """Cement around the distal half of a screw (and a few mm beyond its tip), in bone only."""
    X, Y, Z = xyz
    dx, dy, dz = X - np.float32(head[0]), Y - np.float32(head[1]), Z - np.float32(head[2])
    s = dx * axis[0] + dy * axis[1] + dz * axis[2]
    radial = np.sqrt(np.maximum(dx * dx + dy * dy + dz * dz - s * s, 0.0))
    a, b = np.float32(0.5 * length), np.float32(length + 2.0)
    along = np.maximum(np.maximum(a - s, s - b), 0.0)
    sdf = np.sqrt(along * along + np.maximum(radial - np.float32(r_out + CUFF_MM), 0.0) ** 2) \
        + np.minimum(radial - np.float32(r_out + CUFF_MM), 0.0) * (along == 0)
    e1 = S.unit(np.cross(axis, [0.0, 0.0, 1.0]))
    e2 = np.cross(axis, e1)
    lobes = []
    for t in (0.6, 0.8, 1.0):
        c = head + (t * length + rng.uniform(-1.0, 1.0)) * axis \
            + rng.uniform(-1.5, 1.5) * e1 + rng.uniform(-1.5, 1.5) * e2
        lobes.append((c, rng.uniform(r_out + 1.0, r_out + 2.0)))
    bone = (labels[box] == vt.index).astype(np.float32)
    env = sdf.astype(np.float32)
    S.paint(hu, box, S.alpha(env, grid.ramp_mm) * bone, rng.uniform(*CUFF_HU))
    for c, r in lobes:
        d = np.sqrt((X - np.float32(c[0])) ** 2 + (Y - np.float32(c[1])) ** 2
                    + (Z - np.float32(c[2])) ** 2) - np.float32(r)
        S.paint(hu, box, S.alpha(d, grid.ramp_mm) * bone, rng.uniform(*CUFF_HU))
        env = np.minimum(env, d)
    a_env = S.alpha(env, grid.ramp_mm) * bone
    return _cement_truth(grid, box, a_env, vt.label, "screw augmentation", CUFF_HU, screw=sid)


def _cement_truth(grid, box, a_env, level, kind, hu_range, **extra) -> dict:
    X, Y, Z = grid.coords(box)
    w = a_env.sum()
    centre = [float((a_env * X).sum() / w), float((a_env * Y).sum() / w),
              float((a_env * Z).sum() / w)] if w > 0 else [0.0, 0.0, 0.0]
    vox = grid.pixel_mm * grid.pixel_mm * grid.slice_mm
    return {"level": level, "kind": kind, "center_lps": _f(centre),
            "volume_ml": round(float(w) * vox / 1000.0, 3), "hu_range": list(hu_range), **extra}


def _draw_cement(hu, grid, vt: _Vertebra, rng) -> dict:
    """A vertebroplasty's PMMA: lobes in the anterior two thirds of the body, a tongue in the disc."""
    D, H = vt.D, vt.H
    c0 = np.array([rng.uniform(-3.0, 3.0), -0.17 * D + rng.uniform(-2.0, 2.0), -0.28 * H])
    lobes = [(c0, rng.uniform(6.0, 7.0), rng.uniform(2400.0, CEMENT_HU[1]))]
    for _ in range(5):
        off = rng.normal(size=3)
        off = off / np.linalg.norm(off) * rng.uniform(4.0, 7.0) * np.array([1.0, 1.0, 0.6])
        lobes.append((c0 + off, rng.uniform(3.5, 5.0), rng.uniform(*CEMENT_HU)))
    leak_a = c0 + np.array([0.0, 0.0, -2.0])
    leak_b = np.array([c0[0] + rng.uniform(-3.0, 3.0), c0[1] + rng.uniform(-3.0, 3.0),
                       -H / 2 - 0.6 * vt.disc_below])
    canvas = _local_canvas(grid, vt, [-vt.W / 2, -D / 2 - 1, -H / 2 - vt.disc_below],
                           [vt.W / 2, D / 2, 0.1 * H], 1.0)
    out: dict[str, Any] = {"level": vt.label, "kind": "vertebroplasty"}
    if canvas is None:
        return out
    box, (u, v, w) = canvas
    inner = vt.body_sdf(u, v, w) + np.float32(SHELL_MM)
    env = np.full(u.shape, S.BIG, np.float32)
    for c, r, value in lobes:
        d = np.maximum(np.sqrt((u - np.float32(c[0])) ** 2 + (v - np.float32(c[1])) ** 2
                               + (w - np.float32(c[2])) ** 2) - np.float32(r), inner)
        S.paint(hu, box, S.alpha(d, grid.ramp_mm), value)
        env = np.minimum(env, d)
    tongue = S.capsule(u, v, w, leak_a, leak_b, 1.3)
    S.paint(hu, box, S.alpha(tongue, grid.ramp_mm), rng.uniform(1800.0, 2300.0))
    env = np.minimum(env, tongue)
    out = _cement_truth(grid, box, S.alpha(env, grid.ramp_mm), vt.label, "vertebroplasty",
                        CEMENT_HU)
    out["leak_lps"] = [_f(vt.lps(leak_a)), _f(vt.lps(leak_b))]
    return out


def _draw_crosslink(hu, labels, metal, grid, screws, instrumented, level, section,
                    rod_d) -> dict:
    """A transverse connector: a straight bar behind the rods, clamped onto both."""
    i = list(instrumented).index(level)
    other = instrumented[i + 1] if i + 1 < len(instrumented) else instrumented[i - 1]
    seat = {(q["level"], q["side"]): np.asarray(q["rod_seat_lps"]) for q in screws}
    p = {sd: 0.5 * (seat[(level, sd)] + seat[(other, sd)]) for sd in SIDES}
    rod_dir = S.unit(seat[(level, "left")] - seat[(other, "left")]
                     + seat[(level, "right")] - seat[(other, "right")])
    e_x = S.unit(p["left"] - p["right"])
    e_z = S.unit(rod_dir - (rod_dir @ e_x) * e_x)
    e_y = np.cross(e_z, e_x)  # posterior
    thick, width = float(section[0]), float(section[1])
    rod_r = 0.5 * rod_d
    off = e_y * (rod_r + 0.5)
    a, b = p["right"] - 4.0 * e_x + off, p["left"] + 4.0 * e_x + off
    clamps = [(p[sd] + 1.0 * e_y - 6.0 * e_z, p[sd] + 1.0 * e_y + 6.0 * e_z) for sd in SIDES]
    pts = np.array([a, b] + [q for c in clamps for q in c])
    box = grid.box(pts.min(axis=0) - 10.0, pts.max(axis=0) + 10.0)
    out = {"level": level, "between": [level, other], "center_lps": _f(0.5 * (a + b)),
           "axis_lps": _f(e_x), "ends_lps": [_f(a), _f(b)],
           "length_mm": round(float(np.linalg.norm(b - a)), 3), "section_mm": [thick, width],
           "clamps_lps": [_f(p["left"]), _f(p["right"])]}
    if box is None:
        return out
    X, Y, Z = grid.coords(box)
    if abs(thick - width) < 1e-6:
        sdf = S.capsule(X, Y, Z, a, b, 0.5 * thick)
    else:
        sdf = S.box_along(X, Y, Z, a, b, e_z, 0.5 * width, 0.5 * thick, min(1.0, 0.45 * thick))
    for c0, c1 in clamps:
        sdf = np.minimum(sdf, S.box_along(X, Y, Z, c0, c1, e_x, 4.5, rod_r + 2.0, 1.5))
    _metal_paint(hu, metal, labels, grid, box, sdf.astype(np.float32))
    return out


def _draw_cage(hu, labels, metal, grid, up: _Vertebra, lo: _Vertebra, material, subsidence,
               rng) -> dict:
    # the cage rests on the lower level's superior endplate (sunk into it by ``subsidence``)
    # and reaches the upper level's inferior endplate; it sits 2 mm anterior of the middle
    f = lo.frac
    e_w = lo.dir_lps(S.unit([0.0, -f * lo.H / lo.D, 1.0]))
    e_u = lo.axes[:, 0] - np.dot(lo.axes[:, 0], e_w) * e_w
    e_u /= np.linalg.norm(e_u)
    axes = np.column_stack([e_u, np.cross(e_w, e_u), e_w])
    v0 = -2.0
    on_endplate = lo.lps([0.0, v0, float(lo.top(v0))])
    w_up = up.axes[:, 2]
    reach = float(np.dot(up.lps([0, 0, -up.H / 2]) - on_endplate, w_up) / np.dot(e_w, w_up))
    height = reach + subsidence
    bottom = on_endplate - e_w * subsidence
    center = bottom + e_w * height / 2
    extent = np.array([min(28.0, 0.6 * lo.W), min(22.0, 0.65 * lo.D), height])
    h = extent / 2
    box = S.frame_box(grid, center, axes, -h, h, 2.0)
    out = {"between": [up.label, lo.label], "center_lps": _f(center), "extent_mm": _f(extent),
           "axes_lps": [_f(axes[:, c]) for c in range(3)], "material": material,
           "subsidence_mm": float(subsidence)}
    if box is None:
        return out
    X, Y, Z = grid.coords(box)
    u, v, w = S.to_local(X, Y, Z, center, axes)

    def rbox(hx, hy, hz, rr=0.8):
        q = [np.abs(u) - (hx - rr), np.abs(v) - (hy - rr), np.abs(w) - (hz - rr)]
        outside = np.sqrt(sum(np.maximum(c, 0.0) ** 2 for c in q))
        return (outside + np.minimum(np.maximum(np.maximum(q[0], q[1]), q[2]), 0.0) - rr).astype(np.float32)

    outer = rbox(*h)
    window = np.maximum(np.maximum(np.abs(u) - (h[0] - 3.0), np.abs(v) - (h[1] - 3.0)),
                        np.abs(w) - h[2])
    # the cage displaces disc and (when subsided) endplate bone
    labels[box][outer <= 0] = 0
    if material == "titanium":
        S.paint(hu, box, S.alpha(window, grid.ramp_mm), HU_GRAFT)
        _metal_paint(hu, metal, labels, grid, box, np.maximum(outer, -window))
        out["beads_lps"] = []
    else:
        S.paint(hu, box, S.alpha(outer, grid.ramp_mm), HU_PEEK)
        S.paint(hu, box, S.alpha(window, grid.ramp_mm), HU_GRAFT)
        beads = [np.array([0.0, -h[1] + 1.5, 0.0]), np.array([h[0] - 1.5, h[1] - 1.5, 0.0]),
                 np.array([-h[0] + 1.5, h[1] - 1.5, 0.0])]
        sdf = np.full(u.shape, S.BIG, np.float32)
        for b in beads:
            sdf = np.minimum(sdf, np.sqrt((u - b[0]) ** 2 + (v - b[1]) ** 2 + (w - b[2]) ** 2) - 0.75)
        _metal_paint(hu, metal, labels, grid, box, sdf)
        out["beads_lps"] = [_f(center + axes @ b) for b in beads]
    return out
