"""One vertebra's geometry and the spine column they stack into.

``_Vertebra`` holds a level's seeded dimensions, its local frame (u left, v posterior, w
superior) and its parts as signed distance functions (body, pedicles, articular and transverse
processes, laminae, spinous process); ``_make_column`` stacks all levels T8..L5 with the seed's
variation and centres the requested ones in the field of view.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fluoroplan.resources import phantom_sdf as S
from fluoroplan.resources.phantom.model import LEVELS, ORDER, SIDES

# --- vertebra geometry -----------------------------------------------------------------------
Part = tuple[np.ndarray, np.ndarray, Callable]  # local AABB lo, hi, sdf(u, v, w)


@dataclass
class _Vertebra:
    label: str
    index: int
    W: float
    D: float
    H: float
    pw: float
    ph: float
    cw: float
    ap: float
    tpl: float
    spl: float
    sph: float
    tilt_deg: float
    medial: dict
    disc_below: float
    cortical_hu: float
    trab_hu: float
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    axes: np.ndarray = field(default_factory=lambda: np.eye(3))  # columns u (left), v (post), w (sup)
    frac: float = 0.0  # anterior height loss fraction (fracture)
    disc_above: float = 8.0
    parts: list = field(default_factory=list)

    @property
    def thoracic(self) -> bool:
        return self.label.startswith("T")

    @property
    def v_canal(self) -> float:
        return self.D / 2 + self.ap / 2

    def top(self, v):
        """Superior endplate height (local w) at local v (wedge when fractured)."""
        return self.H / 2 - self.frac * self.H * np.clip((self.D / 2 - v) / self.D, 0.0, 1.0)

    def lps(self, p_local) -> np.ndarray:
        return self.center + self.axes @ np.asarray(p_local, float)

    def dir_lps(self, d_local) -> np.ndarray:
        return self.axes @ np.asarray(d_local, float)

    # pedicle axis (local): isthmus point and posterior->anterior direction
    def pedicle(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        s = SIDES[side]
        th = math.radians(self.medial[side])
        p = np.array([s * (self.cw / 2 + self.pw / 2 + 0.3), self.D / 2 + 0.3 * self.ap,
                      self.H / 2 - self.ph / 2 - 1.0])
        d = np.array([-s * math.sin(th), -math.cos(th), 0.0])
        return p, d

    def pedicle_part(self, side: str) -> Part:
        """The pedicle: an elliptic cylinder along its axis from the posterior arch into the
        body's posterior part."""
        D, ap = self.D, self.ap
        p, d = self.pedicle(side)
        th = math.radians(self.medial[side])
        s1 = (p[1] - (D / 2 - 9.0)) / math.cos(th)
        s0 = -((D / 2 + ap + 2.0) - p[1]) / math.cos(th)
        e1 = S.unit(np.cross(d, [0.0, 0.0, 1.0]))
        a, b = p + s0 * d, p + s1 * d
        r = max(self.pw, self.ph) / 2 + 0.5
        lo, hi = np.minimum(a, b) - r, np.maximum(a, b) + r

        def ped(u, v, w, p=p, d=d, e1=e1, s0=s0, s1=s1):
            du, dv, dw = u - p[0], v - p[1], w - p[2]
            sa = du * d[0] + dv * d[1]
            q1 = du * e1[0] + dv * e1[1]
            de = S.ellipse(q1, dw, self.pw / 2, self.ph / 2)
            return np.maximum(de, np.maximum(s0 - sa, sa - s1))

        return lo, hi, ped

    def body_sdf(self, u, v, w):
        W, D, H = self.W, self.D, self.H
        t = np.clip(2.0 * w / H, -1.0, 1.0)
        waist = 1.0 - 0.04 * (1.0 - t * t)
        de = S.ellipse(u, v - 2.0, (W / 2) * waist, (D / 2 + 2.0) * waist)
        dp = v - (D / 2 + 3.0 * (2.0 * u / W) ** 2)
        dz = np.maximum(w - self.top(v), -H / 2 - w)
        return np.maximum(np.maximum(de, dp), dz).astype(np.float32)

    def build_parts(self) -> None:
        W, D, H, cw, ap = self.W, self.D, self.H, self.cw, self.ap
        vc = self.v_canal
        lt = 5.0 if self.thoracic else 6.0
        parts: list[Part] = [(np.array([-W / 2, -D / 2, -H / 2]), np.array([W / 2, D / 2 + 3, H / 2]),
                              self.body_sdf)]
        for side, s in SIDES.items():
            parts.append(self.pedicle_part(side))
            # superior and inferior articular processes
            sap = (np.array([s * (cw / 2 + 7.0), vc + 1.0, 2.0]),
                   np.array([s * (cw / 2 + 8.0), vc + 3.0, H / 2 + self.disc_above * 0.5 + 3.0]), 4.0)
            iap = (np.array([s * (cw / 2 + 1.5), vc + ap / 2 + 2.0, -H / 4]),
                   np.array([s * (cw / 2 + 2.0), vc + ap / 2 + 3.0, -H / 2 - self.disc_below * 0.5 - 3.0]),
                   3.5)
            for a, b, r in (sap, iap):
                parts.append((np.minimum(a, b) - r, np.maximum(a, b) + r,
                              lambda u, v, w, a=a, b=b, r=r: S.capsule(u, v, w, a, b, r)))
            # transverse process: a flat plate (lumbar), short and posterolateral (thoracic)
            root = np.array([s * (cw / 2 + self.pw * 0.6), vc + 2.0, 1.0])
            if self.thoracic:
                root = np.array([s * (cw / 2 + self.pw * 0.6), vc + 3.0, 3.0])
                end = root + np.array([s * 0.75 * self.tpl, 0.65 * self.tpl, 0.0])
                hs, hu_, rr = 3.5, 4.0, 3.0
            else:
                end = root + np.array([s * self.tpl, 2.0 + 0.12 * self.tpl, -1.0])
                hs, hu_, rr = 2.8, 4.5, 2.5
            m = max(hs, hu_) + 0.5
            parts.append((np.minimum(root, end) - m, np.maximum(root, end) + m,
                          lambda u, v, w, a=root, b=end, hs=hs, hu_=hu_, rr=rr:
                          S.box_along(u, v, w, a, b, (0.0, 1.0, 0.0), hs, hu_, rr)))
        # laminae: the posterior half of a ring around the canal, sloping caudally
        w_lo = -H / 2 - 3.0 - 0.25 * (ap / 2 + lt) - 1.0

        def lamina(u, v, w):
            ring = np.maximum(S.ellipse(u, v - vc, cw / 2 + lt, ap / 2 + lt),
                              -S.ellipse(u, v - vc, cw / 2, ap / 2))
            wl = w + 3.0 + 0.25 * (v - vc)
            return np.maximum(np.maximum(ring, (vc - 1.0) - v), np.abs(wl) - (H / 2 - 2.0))

        parts.append((np.array([-(cw / 2 + lt), vc - 1.0, w_lo]),
                      np.array([cw / 2 + lt, vc + ap / 2 + lt, H / 2]), lamina))
        # spinous process
        a, b = self.spinous_ends()
        hs = 2.6 if self.thoracic else 3.2
        m = max(hs, self.sph / 2) + 0.5
        parts.append((np.minimum(a, b) - m, np.maximum(a, b) + m,
                      lambda u, v, w: S.box_along(u, v, w, a, b, (1.0, 0.0, 0.0), hs, self.sph / 2, 2.0)))
        self.parts = parts

    def spinous_ends(self) -> tuple[np.ndarray, np.ndarray]:
        lt = 5.0 if self.thoracic else 6.0
        base_v = self.v_canal + self.ap / 2 + lt - 3.0
        slope = 0.45 if self.thoracic else 0.25
        a = np.array([0.0, base_v, -1.0])
        b = np.array([0.0, base_v + self.spl, -1.0 - self.spl * slope])
        return a, b

    def sdf(self, u, v, w):
        """Union of all parts at arbitrary local points (used for the screw entry search)."""
        out = np.full(np.broadcast(u, v, w).shape, S.BIG, np.float32)
        for _, _, fn in self.parts:
            out = S.smin(out, fn(u, v, w), 1.5)
        return out

    def local_box(self) -> tuple[np.ndarray, np.ndarray]:
        los = np.array([p[0] for p in self.parts])
        his = np.array([p[1] for p in self.parts])
        return los.min(axis=0) - 2.0, his.max(axis=0) + 2.0


# --- spine layout --------------------------------------------------------------------------
def _make_column(rng: np.random.Generator, levels: tuple[str, ...], y_spine: float):
    """All levels T8..L5 stacked with seed variation; returns {label: _Vertebra} (requested)."""
    body_scale = rng.uniform(0.95, 1.05)
    ped_scale = rng.uniform(0.94, 1.06)
    lordosis = rng.uniform(0.75, 1.2)
    cortical = rng.uniform(900.0, 1100.0)
    trab = rng.uniform(170.0, 230.0)
    column = []
    for label in ORDER:
        L = LEVELS[label]
        j = lambda lo, hi: rng.uniform(lo, hi)  # noqa: E731
        vt = _Vertebra(
            label=label, index=0,
            W=L.width * body_scale * j(0.98, 1.02), D=L.depth * body_scale * j(0.98, 1.02),
            H=L.height * body_scale * j(0.98, 1.02),
            pw=L.ped_w * ped_scale * j(0.98, 1.02), ph=L.ped_h * j(0.97, 1.03),
            cw=L.canal_w * j(0.96, 1.04), ap=L.canal_ap * j(0.96, 1.04),
            tpl=L.tp_len * j(0.9, 1.1), spl=L.sp_len * j(0.9, 1.1), sph=L.sp_h * j(0.93, 1.07),
            tilt_deg=L.tilt_deg * lordosis + j(-1.0, 1.0),
            medial={"left": L.medial_deg + j(-3.0, 3.0), "right": L.medial_deg + j(-3.0, 3.0)},
            disc_below=L.disc_below * j(0.95, 1.05),
            cortical_hu=cortical + j(-50.0, 50.0), trab_hu=trab + j(-20.0, 20.0),
        )
        coronal, axial = j(-1.5, 1.5), j(-2.0, 2.0)
        vt.axes = S.rot_z(axial) @ S.rot_x(vt.tilt_deg) @ S.rot_y(coronal)
        column.append(vt)
    # stack: centre of each next body one half height + disc + half height below
    column[0].center = np.zeros(3)
    for a, b in zip(column[:-1], column[1:], strict=True):
        wa, wb = a.axes[:, 2], b.axes[:, 2]
        b.center = a.center - wa * a.H / 2 - S.unit(wa + wb) * a.disc_below - wb * b.H / 2
        b.disc_above = a.disc_below
    chosen = [v for v in column if v.label in levels]
    top = chosen[0].lps([0, 0, chosen[0].H / 2])[2]
    bottom = chosen[-1].lps([0, 0, -chosen[-1].H / 2])[2]
    shift = np.array([-np.mean([v.center[0] for v in chosen]),
                      y_spine - np.mean([v.center[1] for v in chosen]), -(top + bottom) / 2])
    for v in column:
        v.center = v.center + shift
    return column
