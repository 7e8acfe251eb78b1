"""The CT viewed in the canonical orientation (array axes S, P, L), the ~2 mm block-averaged
working grid the vertebrae are found on, and the way back from that grid to the CT's own grid:
bounding boxes, centroids and full-resolution labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from fluoroplan.io.volume import CTVolume
from fluoroplan.segmentation.errors import AnatomyError
from fluoroplan.segmentation.vertebrae import BONE_HU

GRID_MM = 2.0
"""Block size of the working grid for finding and separating vertebrae."""
CENTROID_SUBSAMPLE_VOXELS = 20_000_000
"""Label volumes larger than this give their centroids from every second voxel."""


# --------------------------------------------------------------------------------------------
@dataclass
class _Canon:
    """The CT viewed with array axes (S, P, L) and the way back to the original axes."""

    perm: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    lps_from_cijk: np.ndarray

    def to_canon(self, a: np.ndarray) -> np.ndarray:
        c = a.transpose(self.perm)
        for ax, f in enumerate(self.flips):
            if f:
                c = np.flip(c, ax)
        return c

    def from_canon(self, c: np.ndarray) -> np.ndarray:
        for ax, f in enumerate(self.flips):
            if f:
                c = np.flip(c, ax)
        return np.ascontiguousarray(c.transpose(np.argsort(self.perm)))


def _canonical(volume: CTVolume) -> _Canon:
    A = volume.lps_from_ijk
    D = A[:3, :3]
    dom = np.argmax(np.abs(D), axis=0)  # dominant LPS axis of each of i, j, k
    if sorted(dom.tolist()) != [0, 1, 2]:
        raise AnatomyError(
            "The CT's voxel axes are too oblique to the patient axes to analyse the spine; "
            "reformat it to axial slices first."
        )
    a_of = [int(np.nonzero(dom == L)[0][0]) for L in range(3)]  # ijk axis along x, y, z
    sign = [np.sign(D[L, a_of[L]]) for L in range(3)]
    perm = (2 - a_of[2], 2 - a_of[1], 2 - a_of[0])
    flips = (sign[2] < 0, sign[1] < 0, sign[0] < 0)
    n_ijk = volume.shape_ijk
    M = np.eye(4)
    origin = A[:3, 3].copy()
    for L in range(3):
        col = A[:3, a_of[L]] * sign[L]
        M[:3, L] = col
        if sign[L] < 0:
            origin += A[:3, a_of[L]] * (n_ijk[a_of[L]] - 1)
    M[:3, 3] = origin
    return _Canon(perm, flips, M)


def _block_mean(c: np.ndarray, f: tuple[int, int, int], metal: np.ndarray | None):
    """Block mean of HU (metal replaced by bone-like 1000 HU so it occupies but never dominates)
    and block-any of metal. Reduced one axis at a time, so the full volume is read once."""
    n = tuple(s // k for s, k in zip(c.shape, f, strict=True))
    v = c[: n[0] * f[0], : n[1] * f[1], : n[2] * f[2]]
    m = metal[: n[0] * f[0], : n[1] * f[1], : n[2] * f[2]] if metal is not None else None
    acc = np.zeros((n[0],) + v.shape[1:], np.float32)
    macc = np.zeros((n[0],) + v.shape[1:], bool) if m is not None else None
    for dz in range(f[0]):
        vz = v[dz :: f[0]]
        if m is not None:
            mz = m[dz :: f[0]]
            np.add(acc, np.where(mz, np.int16(1000), vz), out=acc)
            macc |= mz
        else:
            np.add(acc, vz, out=acc)
    for ax in (1, 2):
        k = f[ax]
        if k == 1:
            continue
        sl = [slice(None)] * 3
        sl[ax] = slice(0, None, k)
        red = acc[tuple(sl)].copy()
        mred = macc[tuple(sl)].copy() if macc is not None else None
        for d in range(1, k):
            sl[ax] = slice(d, None, k)
            red += acc[tuple(sl)]
            if mred is not None:
                assert macc is not None  # mred is a copy of macc's slices
                mred |= macc[tuple(sl)]
        acc, macc = red, mred
    acc /= float(np.prod(f))
    return acc, macc


def _bbox_ijk(sl, f, canon: _Canon, volume: CTVolume):
    if sl is None:
        return ((0, 0, 0), (0, 0, 0))
    lo = np.array([s.start * k for s, k in zip(sl, f, strict=True)])
    hi = np.array([s.stop * k for s, k in zip(sl, f, strict=True)])
    # canonical (z, y, x) ranges -> original hu axes, undoing the flips
    shape_c = np.array(canon.to_canon(np.empty(volume.hu.shape, dtype=np.bool_)).shape)
    for ax, fl in enumerate(canon.flips):
        if fl:
            lo[ax], hi[ax] = shape_c[ax] - hi[ax], shape_c[ax] - lo[ax]
    lo_h = np.empty(3, int)
    hi_h = np.empty(3, int)
    for ax in range(3):
        lo_h[canon.perm[ax]] = lo[ax]
        hi_h[canon.perm[ax]] = hi[ax]
    # hu axes (k, j, i) -> (i, j, k)
    return (tuple(int(v) for v in lo_h[::-1]), tuple(int(v) for v in hi_h[::-1]))


def _label_centroids(labels: np.ndarray, n: int) -> list:
    """Centroid (canonical index z, y, x) of each label value 1..n (None when absent), inside the
    labels' bounding box only."""
    out: list = [None] * n
    if not labels.any():
        return out
    sl = ndi.find_objects((labels > 0).astype(np.uint8))[0]
    # every second voxel along each axis of a large label volume: the centroid moves < 0.5 voxel
    step = 2 if labels[sl].size > CENTROID_SUBSAMPLE_VOXELS else 1
    sl = tuple(slice(q.start, q.stop, step) for q in sl)
    z, y, x = np.nonzero(labels[sl])
    v = labels[sl][z, y, x].astype(np.intp)
    z, y, x = z * step, y * step, x * step
    cnt = np.bincount(v, minlength=n + 1)
    for q, (coord, s0) in enumerate(zip((z, y, x), sl, strict=True)):
        sums = np.bincount(v, weights=coord + s0.start, minlength=n + 1)
        for k in range(1, n + 1):
            if cnt[k] > 0:
                if out[k - 1] is None:
                    out[k - 1] = np.zeros(3)
                out[k - 1][q] = sums[k] / cnt[k]
    return out


def _full_res_labels(hu_c, metal_c, lab_grid, f, bone_hu=BONE_HU, body_grid=None):
    """Vertebra labels on the CT grid: the grid labels spread to full-resolution bone (at the
    spine's own threshold ``bone_hu``) and to the whole hole-filled body sections (dark
    cancellous bone belongs to its vertebra, as in a TotalSegmentator label)."""
    labels = np.zeros(hu_c.shape, np.uint8)
    if lab_grid.any():
        sl = ndi.find_objects((lab_grid > 0).astype(np.uint8))[0]
        full_sl = tuple(
            slice(q.start * k, min(q.stop * k, hu_c.shape[a])) for a, (q, k) in enumerate(zip(sl, f, strict=True))
        )
        # nearest-neighbour upsampling in one gather: full index // block size
        idx = np.ix_(*[np.arange(q.start, q.stop) // k for q, k in zip(full_sl, f, strict=True)])
        sub = lab_grid[idx]
        keep = body_grid[idx] if body_grid is not None else np.zeros(sub.shape, bool)
        dense = (hu_c[full_sl] >= np.int16(min(bone_hu, BONE_HU))) | metal_c[full_sl] | keep
        labels[full_sl] = np.where(dense, sub, 0)
    return labels
