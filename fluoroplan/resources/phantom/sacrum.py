"""The phantom's sacrum: S1 with its promontory, alae, sacral canal and foramina, and S2 fused
below it.

``_Sacrum`` is an S1 "vertebra" (the same local frame: u left, v posterior, w superior) whose
parts are the S1 body (its anterior-superior rim is the promontory), short wide pedicles, the
alae (the lateral masses, from the body's sides out to the sacro-iliac joints, as tall as the
body), the dorsal sacral plate behind the canal (the fused laminae) with a low median crest, and
the S2 segment below (a narrower body and lateral masses, fused, no disc). The first dorsal and
ventral sacral foramina (the S1 roots' exits, between S1 and S2, lateral to the canal) and the
second ones lower down are carved through the lateral masses after the bone is painted
(``carve_foramina``); their voxels are ``STRUCTURE_CODES["sacral_foramen"]``.

It is seeded on its own generator so that the lumbar column and everything drawn after it are
the same with and without a sacrum.
"""

from __future__ import annotations

import numpy as np

from fluoroplan.resources import phantom_sdf as S
from fluoroplan.resources.phantom.model import SACRUM_LEVEL, SIDES
from fluoroplan.resources.phantom.vertebra import Part, _Vertebra

HU_FORAMEN = 25.0  # the root and its fat in the foramen
FORAMEN_RADIUS_MM = (4.0, 3.2)  # S1, S2 foramina
BASE_SLOPE = 0.8  # the sacral base falls this many mm per mm behind the body's middle


class _Sacrum(_Vertebra):
    """S1 and S2 fused: the parts of ``build_parts``; ``ala_mm`` how far each ala reaches
    beyond the body's side, ``s2_mm`` the S2 segment's height."""

    ala_mm: float = 42.0
    s2_mm: float = 24.0

    def build_parts(self) -> None:
        W, D, H, cw, ap = self.W, self.D, self.H, self.cw, self.ap
        vc = self.v_canal
        parts: list[Part] = [(np.array([-W / 2, -D / 2, -H / 2]),
                              np.array([W / 2, D / 2 + 3, H / 2]), self.body_sdf)]
        for side, s in SIDES.items():
            parts.append(self.pedicle_part(side))
            # the ala: from the body's side to the sacro-iliac joint, front of the body's
            # middle back to behind the canal, from S2's top to just under the endplate
            v_mid = (D / 2 + ap) / 2  # from the body's middle to behind the canal
            half_ap = v_mid + 2.0
            a = np.array([s * (W / 2 - 6.0), v_mid, -1.0])
            b = np.array([s * (W / 2 + self.ala_mm), v_mid, -1.0])
            parts.append((np.minimum(a, b) - [0, half_ap + 3, H / 2 + 3],
                          np.maximum(a, b) + [0, half_ap + 3, H / 2 + 3],
                          lambda u, v, w, a=a, b=b, h=half_ap, t=H / 2 - 2.0:
                          np.maximum(S.box_along(u, v, w, a, b, (0.0, 1.0, 0.0), h, t, 4.0),
                                     self._base(v, w))))
            # S2's lateral masses: narrower, below
            a2 = np.array([s * (W / 2 - 8.0), vc - 2.0, -H / 2 - self.s2_mm / 2])
            b2 = np.array([s * (W / 2 + 0.95 * self.ala_mm), vc - 2.0, -H / 2 - self.s2_mm / 2])
            parts.append((np.minimum(a2, b2) - [0, 16, self.s2_mm / 2 + 3],
                          np.maximum(a2, b2) + [0, 16, self.s2_mm / 2 + 3],
                          lambda u, v, w, a=a2, b=b2, t=self.s2_mm / 2:
                          S.box_along(u, v, w, a, b, (0.0, 1.0, 0.0), 13.0, t, 3.0)))
        # the dorsal sacral plate behind the canal (the fused laminae), over S1 and S2
        lt = 6.0
        w_lo = -H / 2 - self.s2_mm

        def plate(u, v, w):
            ring = np.maximum(S.ellipse(u, v - vc, cw / 2 + lt, ap / 2 + lt),
                              -S.ellipse(u, v - vc, cw / 2, ap / 2))
            return np.maximum(np.maximum(ring, (vc - 1.0) - v),
                              np.maximum(self._base(v, w), w_lo - w))

        parts.append((np.array([-(cw / 2 + lt), vc - 1.0, w_lo]),
                      np.array([cw / 2 + lt, vc + ap / 2 + lt, H / 2]), plate))
        # the S2 body, fused under S1's
        def s2_body(u, v, w):
            de = S.ellipse(u, v - 2.0, 0.4 * W, 0.4 * D + 2.0)
            return np.maximum(de, np.maximum(w - (-H / 2 + 1.0), (-H / 2 - self.s2_mm) - w))

        parts.append((np.array([-0.4 * W, -0.4 * D, -H / 2 - self.s2_mm]),
                      np.array([0.4 * W, 0.4 * D + 4.0, -H / 2 + 1.0]), s2_body))
        # the median sacral crest: a low ridge on the dorsal plate
        a, b = self.spinous_ends()
        parts.append((np.minimum(a, b) - 6.0, np.maximum(a, b) + 6.0,
                      lambda u, v, w: S.box_along(u, v, w, a, b, (1.0, 0.0, 0.0), 2.5,
                                                  self.sph / 2, 2.0)))
        self.parts = parts

    def _base(self, v, w):
        """The sacral base: the alae and the dorsal plate stay below a surface that runs from
        just under the S1 endplate at the body's middle down and back (BASE_SLOPE mm per mm):
        the sacrum's posterior part is below L5's arch, not beside it."""
        return w - (self.H / 2 - 3.0 - BASE_SLOPE * np.maximum(v, 0.0))

    def spinous_ends(self) -> tuple[np.ndarray, np.ndarray]:
        base_v = self.v_canal + self.ap / 2 + 3.0
        return np.array([0.0, base_v, 0.0]), np.array([0.0, base_v + self.spl, -self.H * 0.6])

    @property
    def promontory_local(self) -> np.ndarray:
        """The promontory: the anterior-superior rim of the S1 body, in the midline."""
        return np.array([0.0, -self.D / 2, float(self.top(-self.D / 2))])

    def foramina(self) -> list[dict]:
        """The S1 and S2 foramina per side: centre (local) and radius; each runs from the
        ventral to the dorsal surface (along v)."""
        out = []
        for n, (w, r) in enumerate(((-self.H / 2 - 3.0, FORAMEN_RADIUS_MM[0]),
                                    (-self.H / 2 - self.s2_mm + 5.0, FORAMEN_RADIUS_MM[1]))):
            for side, s in SIDES.items():
                u = s * (self.cw / 2 + 7.0 - 2.0 * n)
                out.append({"root": f"S{n + 1}", "side": side,
                            "centre_local": np.array([u, self.v_canal - 2.0, w]), "radius": r})
        return out


def make_sacrum(l5: _Vertebra, seed: int) -> _Sacrum:
    """S1 under ``l5`` (its own seeded size and a sacral slope of about 40 deg)."""
    rng = np.random.default_rng([seed, 29])
    L = SACRUM_LEVEL
    j = lambda lo, hi: rng.uniform(lo, hi)  # noqa: E731
    scale = l5.W / 50.0  # the patient's size, from L5
    sac = _Sacrum(
        label="S1", index=0, W=L.width * scale * j(0.97, 1.03),
        D=L.depth * scale * j(0.97, 1.03), H=L.height * scale * j(0.97, 1.03),
        pw=L.ped_w * j(0.95, 1.05), ph=L.ped_h * j(0.95, 1.05), cw=L.canal_w * j(0.95, 1.05),
        ap=L.canal_ap * j(0.95, 1.05), tpl=0.0, spl=L.sp_len * j(0.9, 1.1),
        sph=L.sp_h * j(0.9, 1.1), tilt_deg=l5.tilt_deg + 28.0 + j(-3.0, 3.0),
        medial={"left": L.medial_deg + j(-3.0, 3.0), "right": L.medial_deg + j(-3.0, 3.0)},
        disc_below=0.0, cortical_hu=l5.cortical_hu + j(-30.0, 30.0),
        trab_hu=l5.trab_hu + j(-15.0, 15.0))
    sac.ala_mm = 42.0 * scale * j(0.95, 1.05)
    sac.s2_mm = 24.0 * scale * j(0.95, 1.05)
    coronal, axial = j(-1.5, 1.5), j(-2.0, 2.0)
    sac.axes = S.rot_z(axial) @ S.rot_x(sac.tilt_deg) @ S.rot_y(coronal)
    wa, wb = l5.axes[:, 2], sac.axes[:, 2]
    sac.center = l5.center - wa * l5.H / 2 - S.unit(wa + wb) * l5.disc_below - wb * sac.H / 2
    sac.disc_above = l5.disc_below
    return sac


def carve_foramina(hu, labels, grid, sac: _Sacrum, structures, code: int) -> list[dict]:
    """Carve the sacral foramina through the painted bone (soft tissue, no label, ``code`` in
    ``structures``); returns their truth (LPS centre, axis, radius)."""
    truth = []
    for f in sac.foramina():
        c = f["centre_local"]
        a_loc, b_loc = c + [0.0, -30.0, 0.0], c + [0.0, 25.0, 0.0]  # ventral to dorsal
        a, b = sac.lps(a_loc), sac.lps(b_loc)
        r = f["radius"]
        box = grid.box(np.minimum(a, b) - r - 2.0, np.maximum(a, b) + r + 2.0)
        if box is None:
            continue
        X, Y, Z = grid.coords(box)
        sdf = S.capsule(X, Y, Z, a, b, r).astype(np.float32)
        inside = sdf <= 0
        S.paint(hu, box, S.alpha(sdf, grid.ramp_mm), HU_FORAMEN)
        labels[box][inside & (labels[box] == sac.index)] = 0
        structures[box][inside] = code
        truth.append({"root": f["root"], "side": f["side"],
                      "centre_lps": [round(float(x), 3) for x in sac.lps(c)],
                      "axis_lps": [round(float(x), 4) for x in S.unit(b - a)],
                      "radius_mm": r})
    return truth
