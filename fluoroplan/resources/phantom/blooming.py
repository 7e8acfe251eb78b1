"""Metal blooming: the scanner's Gaussian point-spread blur of the whole unclipped image.

``_blur_psf`` blurs the image in place along each axis with ``_variance_kernel``, a sampled
Gaussian whose discrete variance is exactly the requested one.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from fluoroplan.resources import phantom_sdf as S
from fluoroplan.resources.phantom.model import BLOOMING_SIGMAS


def _blur_psf(hu: np.ndarray, grid: S.Grid, blooming_mm: float) -> None:
    """Blooming: the scanner's point-spread blur, applied in place to the whole unclipped image.

    A reconstruction blurs every edge with the same point-spread function; metal blooms because
    its contrast to everything around it is enormous (and because the 12-bit clip hides the
    peak). So the whole image (metal at its drawn 6000 HU, before noise and the clip) is blurred
    with a Gaussian of sigma ``blooming_mm / BLOOMING_SIGMAS``: the metal's bright rim keeps
    more than ~2 % of the metal's contrast (about 130 HU) out to ``blooming_mm`` beyond the true
    surface, the level halfway between metal and its surroundings stays on the true surface
    (a symmetric blur), threads are smoothed along the shaft and a halo's edges are blurred like
    any other edge. The voxels' partial-volume ramp is the blur of a sharp scanner; this adds
    to it. Each axis gets a discrete kernel of exactly the Gaussian's variance (a Gaussian
    sampled at the voxels would be too narrow below a voxel).
    """
    sigma_mm = float(blooming_mm) / BLOOMING_SIGMAS
    for axis, step in enumerate((grid.slice_mm, grid.pixel_mm, grid.pixel_mm)):
        ndimage.correlate1d(hu, _variance_kernel(sigma_mm / step), axis=axis, output=hu,
                            mode="nearest")


def _variance_kernel(sigma: float) -> np.ndarray:
    """A normalized, sampled Gaussian whose discrete variance is ``sigma**2`` (in samples)."""
    half = max(1, int(math.ceil(3.5 * sigma)))
    j = np.arange(-half, half + 1, dtype=float)

    def kernel(width: float) -> np.ndarray:
        k = np.exp(-0.5 * (j / width) ** 2)
        return k / k.sum()

    lo, hi = 1e-3, max(2.0 * sigma, 1.0)
    for _ in range(60):  # the discrete variance grows with the width: bisect
        mid = 0.5 * (lo + hi)
        if float(np.sum(kernel(mid) * j * j)) < sigma * sigma:
            lo = mid
        else:
            hi = mid
    return kernel(0.5 * (lo + hi)).astype(np.float32)
