"""Painting helpers shared by the anatomy and the implants.

A vertebra's local canvas (the voxels of its box with their local coordinates), a 2-D
superellipse distance, painting a distance field with its label, a capsule added into a distance
canvas on its own sub-box, and ``_f``: a point or vector as a rounded list for the truth.
"""

from __future__ import annotations

import numpy as np

from fluoroplan.resources import phantom_sdf as S
from fluoroplan.resources.phantom.vertebra import _Vertebra


# --- helpers -------------------------------------------------------------------------------
def _local_canvas(grid: S.Grid, vt: _Vertebra, lo, hi, margin):
    box = S.frame_box(grid, vt.center, vt.axes, lo, hi, margin)
    if box is None:
        return None
    X, Y, Z = grid.coords(box)
    return box, S.to_local(X, Y, Z, vt.center, vt.axes)


def _superellipse2(X, Y, a, b, p, cy=0.0):
    """Approximate signed distance (mm) to |x/a|^p + |(y-cy)/b|^p = 1 in 2-D."""
    ax, ay = np.abs(X) / a, np.abs(Y - cy) / b
    ax = np.maximum(ax, 1e-6)
    ay = np.maximum(ay, 1e-6)
    s = ax**p + ay**p
    n = s ** (1.0 / p)
    gx = n ** (1 - p) * ax ** (p - 1) / a
    gy = n ** (1 - p) * ay ** (p - 1) / b
    return ((n - 1.0) / np.sqrt(gx * gx + gy * gy)).astype(np.float32)


def _paint_sdf(hu, labels, grid, box, sdf, value, label=None, clear_label=False):
    a = S.alpha(sdf, grid.ramp_mm)
    S.paint(hu, box, a, value)
    if label is not None:
        labels[box][sdf <= 0] = label
    if clear_label:
        labels[box][sdf <= 0] = 0


def _f(v) -> list[float]:
    return [round(float(x), 4) for x in np.asarray(v, float).ravel()]


def _add_capsule(grid, box, X, Y, Z, sdf, a, b, r: float, pad: float) -> None:
    """``sdf`` (on ``box``, coordinates ``X, Y, Z``) takes the capsule a-b of radius ``r``,
    computed only in the sub-box around it (``r + pad`` beyond its ends)."""
    seg = grid.box(np.minimum(a, b) - r - pad, np.maximum(a, b) + r + pad)
    inter = S.sub_box(box, seg) if seg is not None else None
    if inter is None:
        return
    rel = inter[1]
    sdf[rel] = np.minimum(sdf[rel], S.capsule(X[..., rel[2]], Y[:, rel[1], :], Z[rel[0]], a, b, r))
