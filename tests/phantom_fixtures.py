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
