"""Step 2 of the analysis: the spinal canal's track on the working grid. Canal-sized holes of
soft-tissue density with a vertebral body in front of them, chained smoothly from slice to slice;
no such chain over several levels means no spine (:class:`NoSpineFound`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from fluoroplan.segmentation.anatomy.grid import _block_mean
from fluoroplan.segmentation.errors import NoSpineFound

CANAL_MAX_HU = 55.0
"""Smoothed HU of the canal's content (cerebrospinal fluid, cord, fat) at most."""
CANAL_WALL_HU = 75.0
"""Smoothed HU of bone around the canal (osteoporotic bodies blurred by 3 mm voxels reach ~80)."""
MIDLINE_MM = 60.0
"""The canal lies within this distance of the body outline's left-right centre."""
CANAL_AREA_MM2 = (20.0, 700.0)
"""Area of an axial canal section (mm^2), least and most."""


@dataclass
class _Canal:
    z_mm: np.ndarray  # per grid slice in [k0, k1]
    centre_mm: np.ndarray  # (n, 3) (z, y, x) mm on the grid
    radius_mm: np.ndarray
    k0: int
    k1: int
    nodes: np.ndarray  # (m, 4) chain nodes (z, y, x, r)


def _axis_distances(mask: np.ndarray, axis: int):
    """For every voxel: index distance to the nearest True voxel before it and after it along
    ``axis`` (large where none), and the length of the True run that ends at each voxel."""
    n = mask.shape[axis]
    shape = [1, 1, 1]
    shape[axis] = n
    idx = np.arange(n).reshape(shape)
    big = 10 * n
    prev = np.maximum.accumulate(np.where(mask, idx, -big), axis=axis)
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(mask, idx, big), axis), axis=axis), axis)
    last_false = np.maximum.accumulate(np.where(~mask, idx, -1), axis=axis)
    run = idx - last_false  # True run ending here (0 where False)
    return idx - prev, nxt - idx, prev, run


def _find_canal(grid_hu: np.ndarray, grid_metal: np.ndarray, sp: np.ndarray) -> _Canal:
    """The spinal canal: fluid/fat-density voxels with a vertebral body right in front, bone
    close behind and on both sides, near the left-right middle of the body outline; the longest
    smooth chain of such regions through the slices."""
    nz, ny, nx = grid_hu.shape
    sm = ndi.gaussian_filter(np.where(grid_metal, 1000.0, grid_hu), (0.75 / sp[0], 2.0 / sp[1], 2.0 / sp[2]))
    dense = sm >= CANAL_WALL_HU
    d_ant, d_post, prev_y, run_y = _axis_distances(dense, 1)
    d_right, d_left, _, _ = _axis_distances(dense, 2)
    # length of the bone run in front of the canal (the vertebral body's depth)
    body_run = np.take_along_axis(run_y, np.clip(prev_y, 0, ny - 1), axis=1) * sp[1]
    canal = (
        (sm < CANAL_MAX_HU)
        & (sm > -400)
        & (d_ant * sp[1] <= 12.0)
        & (body_run >= 18.0)
        & (d_post * sp[1] <= 40.0)
        & (d_left * sp[2] <= 25.0)
        & (d_right * sp[2] <= 25.0)
    )
    del d_ant, d_post, prev_y, run_y, d_right, d_left, body_run
    s2 = np.zeros((3, 3, 3), bool)
    s2[1] = ndi.generate_binary_structure(2, 1)
    lab, n = ndi.label(canal, structure=s2)
    if n == 0:
        raise NoSpineFound("no spinal canal on any slice")
    flat = lab.ravel()
    cnt = np.bincount(flat, minlength=n + 1).astype(float)
    zz, yy, xx = np.indices(grid_hu.shape, dtype=np.float32)
    cz = np.bincount(flat, weights=zz.ravel(), minlength=n + 1) / np.maximum(cnt, 1)
    cy = np.bincount(flat, weights=yy.ravel(), minlength=n + 1) / np.maximum(cnt, 1)
    cx = np.bincount(flat, weights=xx.ravel(), minlength=n + 1) / np.maximum(cnt, 1)
    del zz, yy, xx
    area = cnt * sp[1] * sp[2]
    ids = np.nonzero((area >= CANAL_AREA_MM2[0]) & (area <= CANAL_AREA_MM2[1]))[0]
    ids = ids[ids > 0]
    # the canal lies near the left-right middle of the body outline
    body = grid_hu > -300
    colsum = body.sum(axis=1).astype(float)  # (nz, nx)
    xmid = (colsum * np.arange(nx)[None, :]).sum(axis=1) / np.maximum(colsum.sum(axis=1), 1)
    zi = np.clip(np.rint(cz[ids]).astype(int), 0, nz - 1)
    ids = ids[np.abs(cx[ids] - xmid[zi]) * sp[2] <= MIDLINE_MM]
    if len(ids) < 3:
        raise NoSpineFound("no canal with a vertebral body in front of it")
    r_eq = np.sqrt(area[ids] / np.pi)
    nodes = np.column_stack([cz[ids] * sp[0], cy[ids] * sp[1], cx[ids] * sp[2], r_eq])
    nodes = nodes[np.argsort(nodes[:, 0], kind="stable")]
    chain = _longest_chain(nodes)
    span = chain[-1, 0] - chain[0, 0] if len(chain) else 0.0
    if len(chain) < 6 or span < 45.0:
        raise NoSpineFound(f"the longest canal-like track spans only {span:.0f} mm")
    k0 = max(0, int(np.floor(chain[0, 0] / sp[0])) - int(round(40.0 / sp[0])))
    k1 = min(nz - 1, int(np.ceil(chain[-1, 0] / sp[0])) + int(round(40.0 / sp[0])))
    z = np.arange(k0, k1 + 1) * sp[0]
    cyv = ndi.median_filter(chain[:, 1], size=5, mode="nearest")
    cxv = ndi.median_filter(chain[:, 2], size=5, mode="nearest")
    rv = ndi.median_filter(chain[:, 3], size=5, mode="nearest")
    y = _interp_extrapolate(z, chain[:, 0], cyv)
    x = _interp_extrapolate(z, chain[:, 0], cxv)
    r = np.interp(z, chain[:, 0], rv)
    sig = 4.0 / sp[0]
    y, x, r = (ndi.gaussian_filter1d(a, sig, mode="nearest") for a in (y, x, r))
    centre = np.column_stack([z, y, x])
    return _Canal(z, centre, r, k0, k1, chain)


CANAL_GRID_MM = 3.0
"""In-plane block size for the canal search (the canal is 12-25 mm wide)."""


def _find_canal_coarse(grid_hu: np.ndarray, grid_metal: np.ndarray, sp: np.ndarray) -> _Canal:
    """:func:`_find_canal` on a grid coarsened in-plane to about ``CANAL_GRID_MM`` (same slices),
    with the result in the millimetres of the input grid."""
    c = max(1, int(round(CANAL_GRID_MM / sp[1])))
    if c == 1:
        return _find_canal(grid_hu, grid_metal, sp)
    g2, m2 = _block_mean(grid_hu, (1, c, c), grid_metal)
    sp2 = sp * np.array([1, c, c])
    canal = _find_canal(g2, m2, sp2)
    shift = np.array([0.0, (c - 1) / 2.0 * sp[1], (c - 1) / 2.0 * sp[2]])
    canal.centre_mm = canal.centre_mm + shift
    canal.nodes = canal.nodes + np.append(shift, 0.0)
    return canal


def _interp_extrapolate(z, zc, v, reach_mm: float = 30.0):
    """Linear interpolation inside ``zc``; beyond its ends, the straight line fitted to the last
    ``reach_mm`` of the samples (a canal does not stop bending where the track stops)."""
    out = np.interp(z, zc, v)
    for end in (0, -1):
        near = np.abs(zc - zc[end]) <= reach_mm
        if near.sum() < 3 or np.ptp(zc[near]) < 5.0:
            continue
        g, c0 = np.polyfit(zc[near], v[near], 1)
        beyond = z < zc[0] if end == 0 else z > zc[-1]
        out[beyond] = g * z[beyond] + c0
    return out


def _longest_chain(nodes: np.ndarray) -> np.ndarray:
    """Longest sequence of nodes rising in z with a small in-plane step (DAG longest path)."""
    m = len(nodes)
    best = np.ones(m)
    prev = -np.ones(m, int)
    z, y, x = nodes[:, 0], nodes[:, 1], nodes[:, 2]
    start = 0
    for i in range(m):
        while z[i] - z[start] > 40.0:
            start += 1
        j = np.arange(start, i)
        if len(j) == 0:
            continue
        dz = z[i] - z[j]
        d = np.hypot(y[i] - y[j], x[i] - x[j])
        ok = (dz > 0) & (d <= 6.0 + 0.5 * dz)
        if not ok.any():
            continue
        jj = j[ok]
        # prefer long chains, then small steps
        score = best[jj] + 1.0 - 0.02 * d[ok]
        kbest = int(np.argmax(score))
        if score[kbest] > best[i]:
            best[i] = score[kbest]
            prev[i] = jj[kbest]
    i = int(np.argmax(best))
    out = []
    while i >= 0:
        out.append(i)
        i = prev[i]
    return nodes[out[::-1]]
