"""Metal in a single axial CT slice: streak-robust mask and screw / rod cross-sections.

For 2-D images (a slice without geometry, e.g. a screenshot or a 2-D data set): the metal mask
is a threshold followed by a small opening (streaks are thin bright lines), and each metal
region is described by its principal axes. In an axial slice a pedicle screw whose shaft lies in
the slice is an elongated region pointing roughly antero-posteriorly (converging medially); a
rod, or a screw head with the rod in it, is a compact cross-section; an elongated region running
left-right is a cross-link or other metal. The midline is the column centroid of the bone near
the metal (the vertebra), not the image centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from fluoroplan.segmentation.implants import DEFAULT_METAL_HU

ELONGATED = 1.8
"""Length / width ratio above which a region is a shaft lying in the slice."""
AP_COS = 0.55
"""A shaft points within ~57 degrees of antero-posterior (|cos| to the AP image axis)."""
MIN_AREA_PX = 6
BONE_HU = (200.0, 1800.0)


@dataclass(frozen=True)
class MetalRegion2D:
    """One metal region of a slice (pixel units unless ``pixel_mm`` was given).

    ``kind``: ``"screw"`` (shaft in the slice), ``"rod"`` (compact cross-section: rod or screw
    head with its rod), ``"other"``. ``side``: ``-1`` left of the midline in image columns
    (lower column index), ``+1`` right of it; which is the patient's left depends on the display
    convention of the image, not known here.
    """

    kind: str
    centroid_rc: tuple[float, float]
    area_px: int
    length_px: float
    width_px: float
    direction_rc: tuple[float, float]
    side: int


def metal_mask_2d(hu: np.ndarray, threshold_hu: float | None = None) -> np.ndarray:
    """Metal pixels of an axial slice (HU >= threshold), thin streaks opened away."""
    thr = DEFAULT_METAL_HU if threshold_hu is None else float(threshold_hu)
    raw = np.asarray(hu) >= thr
    return ndi.binary_opening(raw, ndi.generate_binary_structure(2, 1))


def metal_regions_2d(
    hu: np.ndarray,
    threshold_hu: float | None = None,
    pixel_mm: float | None = None,
    ap_axis: int = 0,
) -> tuple[list[MetalRegion2D], float]:
    """Classify the metal regions of an axial slice; returns ``(regions, midline_column)``.

    Parameters
    ----------
    hu : 2-D array of HU, rows x columns.
    threshold_hu : float, optional
        Metal threshold (default ``DEFAULT_METAL_HU``).
    pixel_mm : float, optional
        Pixel size; when given, regions must also have implant-like widths (2.5..12 mm).
    ap_axis : int
        The image axis that runs antero-posterior (0 = rows, the usual axial display).
    """
    hu = np.asarray(hu)
    mask = metal_mask_2d(hu, threshold_hu)
    lab, n = ndi.label(mask)
    found = []
    for c in range(1, n + 1):
        rr, cc = np.nonzero(lab == c)
        if len(rr) < MIN_AREA_PX:
            continue
        X = np.stack([rr, cc], axis=1).astype(float)
        centre = X.mean(axis=0)
        w, v = np.linalg.eigh(np.cov((X - centre).T) + np.eye(2) / 12.0)
        length = 4.0 * float(np.sqrt(w[1]))
        width = 4.0 * float(np.sqrt(w[0]))
        d = v[:, 1]
        ap = abs(float(d[ap_axis]))
        width_ok = True
        if pixel_mm is not None:
            width_ok = 2.5 <= width * pixel_mm <= 12.0
        if length / width >= ELONGATED:
            kind = "screw" if ap >= AP_COS and width_ok else "other"
        else:
            kind = "rod" if width_ok else "other"
        proj = (X - centre) @ d
        ends = (centre + proj.min() * d, centre + proj.max() * d)
        found.append((kind, centre, len(rr), length, width, d, ends))
    midline = _midline_col(hu, mask, found, ap_axis)
    regions = []
    for kind, centre, area, length, width, d, ends in found:
        col = centre[1]
        if kind == "screw":  # the lateral end (the head: screws converge medially)
            col = max((e[1] for e in ends), key=lambda x: abs(x - midline))
        side = -1 if col < midline else 1
        regions.append(MetalRegion2D(kind, (float(centre[0]), float(centre[1])), int(area),
                                     length, width, (float(d[0]), float(d[1])), side))
    return regions, midline


def _midline_col(hu: np.ndarray, mask: np.ndarray, found: list, ap_axis: int) -> float:
    """Midline column: the middle of a symmetric pair of rod cross-sections (the construct),
    else the column centroid of the vertebra (largest bone region near the metal)."""
    rods = [f for f in found if f[0] == "rod"]
    best = None
    for a in range(len(rods)):
        for b in range(a + 1, len(rods)):
            ca, cb = rods[a][1], rods[b][1]
            sep = abs(ca[1] - cb[1])
            same_level = abs(ca[ap_axis] - cb[ap_axis]) < 0.25 * sep
            similar = max(rods[a][2], rods[b][2]) < 2.5 * min(rods[a][2], rods[b][2])
            if same_level and similar and (best is None or sep > best[0]):
                best = (sep, 0.5 * (ca[1] + cb[1]))
    if best is not None:
        return float(best[1])
    bone = (hu >= BONE_HU[0]) & (hu < BONE_HU[1])
    if mask.any():
        rr, cc = np.nonzero(mask)
        pad = max(10, int(0.15 * hu.shape[0]))
        win = np.zeros_like(bone)
        win[max(rr.min() - pad, 0): rr.max() + pad + 1, max(cc.min() - pad, 0): cc.max() + pad + 1] = True
        bone &= win
    lab, n = ndi.label(bone)
    if n == 0:
        return 0.5 * (hu.shape[1] - 1)
    sizes = np.bincount(lab.ravel())[1:]
    keep = lab == (int(np.argmax(sizes)) + 1)
    return float(np.nonzero(keep)[1].mean())
