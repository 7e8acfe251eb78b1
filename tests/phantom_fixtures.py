"""Cached demo phantoms for tests (import these; they are built once per test session).

``small_phantom()`` is the quick one (256 x 256 x 200 voxels of 1.5 mm, about 0.5 s);
``full_phantom()`` is the default 512 x 512 x 300 case at 0.75 x 0.75 x 1 mm (a few seconds).
Both are prone (HFP) unless asked otherwise; keyword arguments go to ``make_phantom``.
"""

from __future__ import annotations

import functools

from fluoroplan.resources.phantom import Phantom, make_phantom

SMALL = {"shape_ijk": (256, 256, 200), "pixel_mm": 1.5, "slice_mm": 1.5}


def _freeze(kwargs: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))


@functools.lru_cache(maxsize=8)
def _cached(seed: int, frozen: tuple) -> Phantom:
    return make_phantom(seed, **dict(frozen))


def small_phantom(seed: int = 0, **kwargs) -> Phantom:
    """The default phantom on a coarse 1.5 mm grid (cached per arguments). Do not mutate it."""
    return _cached(seed, _freeze({**SMALL, **kwargs}))


def full_phantom(seed: int = 0, **kwargs) -> Phantom:
    """The default full-size phantom (cached per arguments). Do not mutate it."""
    return _cached(seed, _freeze(kwargs))


def implants_of_variants(variants: dict) -> dict:
    """``{key: (phantom, Implants)}`` for phantom variants ``{key: make_phantom kwargs}``, each
    analysed by ``find_implants`` with the phantom's own vertebra labels."""
    from fluoroplan.segmentation.implants import find_implants

    out = {}
    for key, kw in variants.items():
        ph = make_phantom(**kw)
        names = {v["index"]: v["label"] for v in ph.truth["vertebrae"]}
        out[key] = (ph, find_implants(ph.volume, vertebra_labels=ph.labels, label_names=names))
    return out


def truth_labels(ph: Phantom):
    """The phantom's drawn anatomy as an analysis label volume: its vertebra labels, and the
    canal lumen, ribs and ilia it drew (``Phantom.structures``) under the analysis' structure
    values; with {level: label value}. For checking the planner's logic on drawn truth."""
    from fluoroplan.resources.phantom import STRUCTURE_CODES
    from fluoroplan.segmentation.structures import CANAL_LABEL, ILIUM_LABEL, RIB_LABEL

    lab = ph.labels.copy()
    for name, value in (("canal", CANAL_LABEL), ("rib", RIB_LABEL), ("ilium", ILIUM_LABEL)):
        lab[ph.structures == STRUCTURE_CODES[name]] = value
    return lab, {v["label"]: v["index"] for v in ph.truth["vertebrae"]}


def lumen_depth_mm(ph: Phantom, pts, radius_mm: float = 0.0):
    """How deep (mm, > 0) the deepest of ``pts`` lies inside the phantom's drawn canal lumen
    plus ``radius_mm`` (a needle's surface), from a Euclidean distance transform of the drawn
    voxels; <= 0 outside (minus the distance to the lumen). Independent of the planner."""
    import numpy as np
    from scipy import ndimage as ndi

    from fluoroplan.resources.phantom import STRUCTURE_CODES

    lumen = ph.structures == STRUCTURE_CODES["canal"]
    boxes = ndi.find_objects(lumen.view(np.uint8))
    box = tuple(slice(max(0, s.start - 40), s.stop + 40) for s in boxes[0])
    sub = lumen[box]
    sp = np.asarray(ph.volume.spacing_mm, float)[::-1]  # k, j, i
    inside = ndi.distance_transform_edt(sub, sampling=sp)
    outside = ndi.distance_transform_edt(~sub, sampling=sp)
    signed = np.where(sub, inside - 0.5 * sp.min(), -(outside - 0.5 * sp.min()))
    ijk = ph.volume.ijk_from_lps_points(np.asarray(pts, float))
    kji = ijk[:, ::-1] - np.array([s.start for s in box])
    vals = ndi.map_coordinates(signed, kji.T, order=1, mode="nearest")
    return float(np.max(vals)) + radius_mm
