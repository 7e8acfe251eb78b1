"""Metal streak artifacts for the demo phantom (drawn per axial slice, as on a real CT).

A real reconstruction of a slice that holds metal shows thin bright and dark streaks radiating
from each metal object and a dark band along the line joining two metal objects (photon
starvation / beam hardening between two screws). We draw exactly that, at half resolution for
speed, with a streak pattern that is fixed per phantom so that neighbouring slices agree.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

_BINS = 2048  # angular lookup table over [0, pi)


def _angular_profile(rng: np.random.Generator, n_lobes: int, width_rad: float) -> np.ndarray:
    """Signed streak intensity as a function of direction (lines through the centre)."""
    theta = (np.arange(_BINS) + 0.5) * (math.pi / _BINS)
    prof = np.zeros(_BINS, np.float32)
    for ang, amp in zip(rng.uniform(0.0, math.pi, n_lobes), rng.uniform(-1.0, 1.0, n_lobes), strict=True):
        d = (theta - ang + math.pi / 2) % math.pi - math.pi / 2
        prof += np.float32(amp) * np.exp(-((d / width_rad) ** 2)).astype(np.float32)
    return prof


def add_metal_streaks(
    hu: np.ndarray,
    metal: np.ndarray,
    x_mm: np.ndarray,
    y_mm: np.ndarray,
    rng: np.random.Generator,
    strength_hu: float = 450.0,
    decay_mm: float = 70.0,
) -> None:
    """Add streaks in place to every axial slice of ``hu[k, j, i]`` that contains metal.

    ``x_mm``/``y_mm`` are the column/row coordinates (mm) of the canonical grid. Metal voxels
    themselves are left unchanged.
    """
    profile = _angular_profile(rng, n_lobes=14, width_rad=0.018)
    ds = 2
    xs = x_mm[::ds][None, :]
    ys = y_mm[::ds][:, None]
    px = float(abs(x_mm[1] - x_mm[0]))
    nj, ni = hu.shape[1:]
    slices = np.nonzero(metal.any(axis=(1, 2)))[0]
    for k in slices:
        m = metal[k]
        lab, n = ndimage.label(m)
        if n == 0:
            continue
        idx = np.arange(1, n + 1)
        areas = ndimage.sum_labels(m, lab, idx) * px * px
        centres = ndimage.center_of_mass(m, lab, idx)
        order = np.argsort(areas)[::-1][:6]
        field = np.zeros((len(ys[:, 0]), len(xs[0])), np.float32)
        pts = []
        for o in order:
            area = float(areas[o])
            if area < 2.0:
                continue
            cj, ci = centres[o]
            cx = float(np.interp(ci, np.arange(ni), x_mm))
            cy = float(np.interp(cj, np.arange(nj), y_mm))
            pts.append((cx, cy, area))
            dx, dy = xs - cx, ys - cy
            r = np.sqrt(dx * dx + dy * dy)
            th = np.arctan2(dy, dx) % math.pi
            b = np.minimum((th * (_BINS / math.pi)).astype(np.int32), _BINS - 1)
            amp = strength_hu * min(1.0, area / 40.0)
            field += np.float32(amp) * profile[b] * np.exp(-r / decay_mm).astype(np.float32)
        # dark band between pairs of metal objects
        for a in range(len(pts)):
            for c in range(a + 1, len(pts)):
                (ax, ay, aa), (bx, by, ba) = pts[a], pts[c]
                L = math.hypot(bx - ax, by - ay)
                if L < 8.0:
                    continue
                ux, uy = (bx - ax) / L, (by - ay) / L
                dx, dy = xs - ax, ys - ay
                t = dx * ux + dy * uy
                perp = np.abs(dx * uy - dy * ux)
                along = np.clip(np.minimum(t, L - t) / 6.0, 0.0, 1.0)
                amp = 1.2 * strength_hu * min(1.0, min(aa, ba) / 40.0)
                field -= np.float32(amp) * along * np.exp(-((perp / 3.0) ** 2)).astype(np.float32)
        full = ndimage.zoom(field, ds, order=1, prefilter=False)[:nj, :ni]
        hu[k] += np.where(m, 0.0, full).astype(np.float32)
