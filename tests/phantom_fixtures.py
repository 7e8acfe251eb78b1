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
    """The phantom's drawn anatomy as an analysis label volume: its vertebra labels, the bony
    canal it drew (:func:`drawn_bony_canal`), the ribs and ilia it drew (``Phantom.structures``)
    under the analysis' structure values; with {level: label value}. For checking the
    planner's logic on drawn truth."""
    from fluoroplan.model.anatomy import CANAL_LABEL, ILIUM_LABEL, RIB_LABEL
    from fluoroplan.resources.phantom import STRUCTURE_CODES

    lab = ph.labels.copy()
    for name, value in (("rib", RIB_LABEL), ("ilium", ILIUM_LABEL)):
        lab[ph.structures == STRUCTURE_CODES[name]] = value
    lab[drawn_bony_canal(ph)] = CANAL_LABEL
    return lab, {v["label"]: v["index"] for v in ph.truth["vertebrae"]}


def drawn_bony_canal(ph: Phantom):
    """The bony canal's lumen the phantom drew: the fluid it painted plus the soft tissue its
    drawn bone encloses around that fluid on each axial slice (the epidural space in the
    corners between the dural sac, the back of the body and the pedicles), by hole filling of
    the drawn vertebra labels and metal - the way a label map's enclosed lumen is read, not the
    way fluoroplan segments it (rays on the CT's HU). Cached per phantom."""
    key = id(ph)
    if key not in _BONY:
        import numpy as np
        from scipy import ndimage as ndi

        from fluoroplan.resources.phantom import STRUCTURE_CODES

        lumen = ph.structures == STRUCTURE_CODES["canal"]
        ring = (ph.labels > 0) | ph.metal
        enclosed = np.zeros_like(lumen)
        ks = np.nonzero(lumen.any(axis=(1, 2)))[0]
        for k in ks:
            enclosed[k] = ndi.binary_fill_holes(ring[k]) & ~ring[k]
        both = enclosed | lumen
        lab, _ = ndi.label(both)
        keep = np.unique(lab[lumen])
        _BONY[key] = (ph, np.isin(lab, keep[keep > 0]))
    return _BONY[key][1]


_BONY: dict = {}
_SIGNED: dict = {}


def lumen_depth_mm(ph: Phantom, pts, radius_mm: float = 0.0):
    """How deep (mm, > 0) the deepest of ``pts`` lies inside the phantom's drawn bony canal
    (:func:`drawn_bony_canal`) plus ``radius_mm`` (a needle's surface); <= 0 outside (minus the
    distance to the lumen): inside from a Euclidean distance transform of the drawn voxels,
    outside from the nearest drawn lumen voxel (less half a voxel). Independent of the
    planner."""
    import numpy as np
    from scipy import ndimage as ndi
    from scipy.spatial import cKDTree

    key = id(ph)
    if key not in _SIGNED:
        lumen = drawn_bony_canal(ph)
        sp = np.asarray(ph.volume.spacing_mm, float)[::-1]  # k, j, i
        boxes = ndi.find_objects(lumen.view(np.uint8))
        box = tuple(slice(max(0, s.start - 2), s.stop + 2) for s in boxes[0])
        inside = ndi.distance_transform_edt(lumen[box], sampling=sp).astype(np.float32)
        kji = np.argwhere(lumen).astype(float)
        tree = cKDTree(ph.volume.lps_from_ijk_points(kji[:, ::-1]))
        _SIGNED[key] = (ph, box, inside, lumen, tree, 0.5 * float(sp.min()))
    _, box, inside, lumen, tree, half = _SIGNED[key]
    pts = np.asarray(pts, float)
    ijk = ph.volume.ijk_from_lps_points(pts)
    idx = np.rint(ijk).astype(int)
    shape = np.array(lumen.shape[::-1])
    ok = np.all((idx >= 0) & (idx < shape), axis=1)
    inn = np.zeros(len(pts), bool)
    inn[ok] = lumen[idx[ok, 2], idx[ok, 1], idx[ok, 0]]
    d_out, _ = tree.query(pts)
    kji = ijk[:, ::-1] - np.array([s.start for s in box])
    d_in = ndi.map_coordinates(inside, kji.T, order=1, mode="nearest")
    signed = np.where(inn, d_in - half, -(d_out - half))
    return float(np.max(signed)) + radius_mm


def path_through(case, tip, through, level: str):
    """A path placed by hand: it ends at ``tip``, its line passes through ``through`` and it
    starts on the skin; its checks run (``recheck``)."""
    import numpy as np

    from fluoroplan.model.plan import Target
    from fluoroplan.planner.propose import manual_trajectory, recheck

    n = np.asarray(tip, float) - np.asarray(through, float)
    n /= np.linalg.norm(n)
    entry = case.skin_entry(np.asarray(tip, float), n)
    assert entry is not None, "the line leaves the CT before the skin"
    target = Target(kind="manual", ref="hand", level=level, side=None,
                    point_lps=np.asarray(tip, float), description="placed by hand")
    return recheck(case, manual_trajectory(case, entry, tip, target))
