"""Parts of a construct that are not screws or rods, and bone cement.

* **Cross-links** (transverse rod connectors): a bar or plate clamped onto both rods, running
  left-right behind the canal. Straight and not cranio-caudal, it looks like a screw shaft to a
  line search; what tells it apart is where it ends: a pedicle screw has its head at one rod
  and its tip in the vertebral body, a cross-link ends at two different rods (one each side).
  A straight piece (a fitted "shaft" or a piece of leftover metal) whose two ends each lie
  within :data:`CONNECTOR_REACH_MM` of a rod, the two rods being different ones on either side
  of it, and which runs more left-right than anything else, is a cross-link.
* **Bone cement** (PMMA with barium: vertebroplasty, kyphoplasty, cement-augmented screws)
  reads 1200-3000 HU, partly above the metal threshold. Metal (titanium, steel, cobalt
  chrome, tantalum) reads above ~3000 HU and is clipped on a 12-bit scale; so a piece whose
  brightest voxels stay below :func:`metal_core_hu` is cement, never a screw, rod or cage. It is
  reported with the vertebra around it, and with the screw it wraps, if any.
"""

from __future__ import annotations

import numpy as np

from fluoroplan.model.implants import Connector
from fluoroplan.segmentation.implants_profiles import unit

CONNECTOR_REACH_MM = 15.0
"""An end of a cross-link lies this close to a rod's centreline (its clamp holds the rod)."""
CONNECTOR_MIN_LR = 0.7
"""|x| of a cross-link's direction at least (within ~45 deg of left-right)."""
CEMENT_MAX_HU = 3000.0
"""Bone cement with barium reads up to about this; metal reads above (or is clipped)."""
METAL_BELOW_CLIP_HU = 250.0
"""On a clipped scale, metal's core lies within this of the clip."""
CEMENT_AROUND_SCREW_MM = 5.0
"""Cement within this of a screw's thread (over a fifth of the piece) augments that screw."""


def metal_core_hu(clip_hu: float) -> float:
    """HU that a metal implant's core reaches (cement stays below): the clip on a 12-bit scale
    (less a margin for noise and partial volume), at most :data:`CEMENT_MAX_HU`."""
    return float(min(clip_hu - METAL_BELOW_CLIP_HU, CEMENT_MAX_HU))


def is_cement(hu_values: np.ndarray, clip_hu: float) -> bool:
    """A dense piece whose brightest tenth stays below metal: cement, not metal."""
    if hu_values.size == 0:
        return False
    return float(np.percentile(hu_values, 90)) < metal_core_hu(clip_hu)


def _r(v, nd: int = 2) -> list[float]:
    return [round(float(x), nd) for x in np.asarray(v, float).ravel()]


def _dist_to_polyline(p: np.ndarray, poly: np.ndarray) -> float:
    best = np.inf
    for a, b in zip(poly[:-1], poly[1:], strict=True):
        ab = b - a
        t = float(np.clip((p - a) @ ab / max(float(ab @ ab), 1e-9), 0.0, 1.0))
        best = min(best, float(np.linalg.norm(p - (a + t * ab))))
    return best


def bridges_rods(p0: np.ndarray, p1: np.ndarray, rod_polys: list[np.ndarray]) -> bool:
    """True when the straight piece ``p0..p1`` runs left-right from one rod to another."""
    if len(rod_polys) < 2:
        return False
    d = unit(p1 - p0)
    if abs(d[0]) < CONNECTOR_MIN_LR:
        return False
    ends = []
    for p in (p0, p1):
        dist = [_dist_to_polyline(p, poly) for poly in rod_polys]
        k = int(np.argmin(dist))
        if dist[k] > CONNECTOR_REACH_MM:
            return False
        ends.append(k)
    if ends[0] == ends[1]:
        return False
    xa = float(np.mean(rod_polys[ends[0]][:, 0]))
    xb = float(np.mean(rod_polys[ends[1]][:, 0]))
    return (xa - xb) * (p0[0] - p1[0]) > 0  # each end at the rod on its own side


def connector(p0: np.ndarray, p1: np.ndarray, screws) -> Connector:
    """A cross-link from its end points, named by the screw levels just above and below it."""
    if p0[0] > p1[0]:
        p0, p1 = p1, p0  # right end first
    c = 0.5 * (p0 + p1)
    above = [s for s in screws if s.level and s.head_lps[2] >= c[2]]
    below = [s for s in screws if s.level and s.head_lps[2] < c[2]]
    up = min(above, key=lambda s: s.head_lps[2] - c[2]).level if above else ""
    dn = max(below, key=lambda s: s.head_lps[2] - c[2]).level if below else ""
    return Connector((up, dn), c, np.array([p0, p1]), unit(p1 - p0),
                     float(np.linalg.norm(p1 - p0)))


def wrapped_screw(pts_lps: np.ndarray, screws) -> str:
    """Id of the screw that most of the cement piece's points lie around (or "")."""
    best, frac = "", 0.2
    for s in screws:
        rel = pts_lps - s.head_lps
        t = rel @ s.axis_lps
        perp = np.linalg.norm(rel - t[:, None] * s.axis_lps, axis=1)
        near = (t > -2.0) & (t < s.length_mm + 6.0) & (
            perp < 0.5 * s.diameter_mm + CEMENT_AROUND_SCREW_MM)
        f = float(near.mean()) if len(near) else 0.0
        if f > frac:
            best, frac = s.id, f
    return best
