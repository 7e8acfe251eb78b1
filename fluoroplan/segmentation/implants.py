"""Spinal implants in a CT: metal mask, individual screws, rods, cages, other metal, halos.

Method (numpy/scipy only, no per-voxel Python loops):

1. **Metal mask.** HU >= ``threshold_hu`` (default :data:`DEFAULT_METAL_HU`) on the full grid;
   metal objects are found on a 4x4x4 block grid and each is handled in its own box. A
   morphological opening (about 1 mm) removes streaks: thin bright lines and sheets radiating
   from metal in axial slices are thinner than any implant part.
2. **Screws** (:mod:`implants_screws`). A construct (shafts, tulips, rods) is one connected blob.
   Its distance-map ridge voxels with a shaft-sized radius and a local direction are searched for
   straight runs not running cranio-caudally; each run is measured on the CT at sub-voxel
   precision: axis through the cross-sections' HU centroids, tip where the on-axis HU falls to
   the edge level, head where the cross-section widens into the tulip, outer thread diameter
   from a model of the shaft's blurred, clipped profile fitted with the scan's blur (the
   median of the screws' own), so that blooming does not widen it.
3. **Rods.** Ridge voxels not explained by a screw or its tulip, running cranio-caudally, are
   grouped (gaps at tulips bridged); the rod's seats in the tulips along its line are added
   (beyond 25 mm only where the way there reads as metal: a cross-link's clamp or a streak can
   leave little free rod between two tulips); a group spanning 25 mm with its seats is a rod:
   a polyline of binned medians and seats, its diameter from half-maximum edges at its
   narrower free sections. A straight piece from one rod to the other is a cross-link; one
   running left-right behind the screw heads is never a screw, nor a cage, even if a rod is
   missed.
4. **Cages and other metal.** Metal left over (not screw, tulip or rod) and blobs without any
   screw or rod are cages when compact, box-sized and between two vertebrae (or in front of the
   screws when no vertebra labels are given); anything else (a hip prosthesis, stents, sternal
   wires) is "other metal", never a screw.
5. **Side and level.** The midline is the vertebra's centroid (vertebra labels), else the middle
   of a screw pair at the same height, else between the rods, else the screw's medial
   convergence. The level is the vertebra label most found around the shaft.
6. **Halo** (:mod:`halo`) around every screw, seen through the metal's modelled rim.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from fluoroplan.geometry.conventions import LOOSENING_HALO_MM
from fluoroplan.io.progress import CancelToken, ProgressCallback
from fluoroplan.io.volume import CTVolume
from fluoroplan.model.anatomy import FIRST_STRUCTURE_LABEL
from fluoroplan.model.implants import (
    Cage,
    Cement,
    Implants,
    OtherMetal,
    Rod,
    Screw,
)
from fluoroplan.segmentation.halo import measure_halo
from fluoroplan.segmentation.implants_constructs import (
    bridges_rods,
    connector,
    is_cement,
    metal_core_hu,
    wrapped_screw,
)
from fluoroplan.segmentation.implants_profiles import (
    HUSampler,
    cylinder_points,
    metal_edges,
    radial_profiles,
    unit,
)
from fluoroplan.segmentation.implants_screws import (
    CRANIOCAUDAL_COS,
    Ridge,
    ScrewFit,
    find_shaft_lines,
    fit_shafts,
    measure_screw,
    ridge_of,
)
from fluoroplan.segmentation.vertebrae import SACRUM_BELOW_S1

DEFAULT_METAL_HU = 2200.0
"""Metal threshold: above dense cortical bone (<= ~1900 HU), below titanium (>= ~2500)."""
BLOCK = 4
MIN_METAL_MM3 = 15.0
"""Metal objects smaller than this are ignored (specks, markers)."""
OPENING_MM = 1.0
SCREW_DIAMETER_OK_MM = (3.0, 10.0)
SCREW_LENGTH_OK_MM = (15.0, 100.0)
ROD_MIN_LENGTH_MM = 25.0
ROD_LINK_MM = 22.0
ROD_SECTION_OFF_MM = 1.0
"""A rod's diameter is read at its ridge points no further than this from its polyline."""
SEAT_REACH_MM = 25.0
"""A tulip this far beyond a rod's ridge along its line is one of its seats."""
SEAT_CHAIN_MM = 60.0
"""... and up to this far when the rod's way to it reads as metal on the CT."""
ROD_DIAMETER_OK_MM = (3.5, 8.5)
ROD_ALONE_FRACTION = 0.8
"""A rod in an object without screws must make up this much of the object's metal."""
TRANSVERSE_BAR_LR = 0.9
"""|x| of a straight piece's direction above which it runs left-right (within ~25 deg)."""
CAGE_MAX_EXTENT_MM = 50.0
CAGE_VOLUME_MM3 = (150.0, 25000.0)
LEFTOVER_MIN_MM3 = 150.0
NO_METAL = "no metal implants found in this CT"


def _r(v, nd: int = 2) -> list[float]:
    return [round(float(x), nd) for x in np.asarray(v, float).ravel()]


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# metal mask and objects
# --------------------------------------------------------------------------------------------
def _opening_structure(spacing_kji: np.ndarray) -> np.ndarray:
    """A small ellipsoid of about OPENING_MM radius (at least the 6-neighbour cross)."""
    rad = np.maximum(np.rint(OPENING_MM / spacing_kji), 1).astype(int)
    grids = np.ogrid[tuple(slice(-n, n + 1) for n in rad)]
    d = sum((g / max(n, 1)) ** 2 for g, n in zip(grids, rad, strict=True))
    return d <= 1.0 + 1e-9


def metal_objects(hu: np.ndarray, threshold_hu: float, spacing_kji: np.ndarray):
    """Yield ``(box, mask)`` per metal object: full-res boxes of the CT and the cleaned mask."""
    raw = hu >= np.int16(min(threshold_hu, 32767))
    kk = np.nonzero(raw.any(axis=(1, 2)))[0]
    if kk.size == 0:
        return
    jj = np.nonzero(raw[kk[0]: kk[-1] + 1].any(axis=(0, 2)))[0]
    ii = np.nonzero(raw[kk[0]: kk[-1] + 1].any(axis=(0, 1)))[0]
    lo = np.array([kk[0], jj[0], ii[0]])
    hi = np.array([kk[-1], jj[-1], ii[-1]]) + 1
    crop = raw[lo[0]: hi[0], lo[1]: hi[1], lo[2]: hi[2]]
    pad = (-np.array(crop.shape)) % BLOCK
    cp = np.pad(crop, [(0, p) for p in pad])
    nb = np.array(cp.shape) // BLOCK
    blocks = cp.reshape(nb[0], BLOCK, nb[1], BLOCK, nb[2], BLOCK).any(axis=(1, 3, 5))
    blab, n = ndi.label(blocks, np.ones((3, 3, 3)))
    struct = _opening_structure(spacing_kji)
    margin = struct.shape[0] // 2 + 1
    shape = np.array(hu.shape)
    for c, sl in enumerate(ndi.find_objects(blab), start=1):
        b0 = lo + np.array([s.start for s in sl]) * BLOCK
        b1 = np.minimum(lo + np.array([s.stop for s in sl]) * BLOCK, shape)
        g0 = np.maximum(b0 - margin, 0)
        g1 = np.minimum(b1 + margin, shape)
        box = tuple(slice(a, b) for a, b in zip(g0, g1, strict=True))
        sub = raw[box].copy()
        # keep only this object's voxels (block label) so neighbouring boxes do not share metal
        kji = np.meshgrid(*[(np.arange(a, b) - lo[d]) // BLOCK for d, (a, b) in
                            enumerate(zip(g0, g1, strict=True))], indexing="ij", sparse=True)
        inside = [(x >= 0) & (x < nb[d]) for d, x in enumerate(kji)]
        own = np.zeros(sub.shape, bool)
        okk, ojj, oii = inside
        idx = tuple(np.clip(x, 0, nb[d] - 1) for d, x in enumerate(kji))
        own[...] = (blab[idx] == c) & okk & ojj & oii
        sub &= own
        yield box, ndi.binary_opening(sub, struct)


def _pca_extent(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = pts.mean(axis=0)
    if len(pts) < 3:
        return c, np.zeros(3), np.eye(3)
    _, _, vt = np.linalg.svd(pts - c, full_matrices=False)
    proj = (pts - c) @ vt.T
    ext = proj.max(axis=0) - proj.min(axis=0)
    centre = c + vt.T @ (0.5 * (proj.max(axis=0) + proj.min(axis=0)))
    return centre, ext, vt.T


# --------------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------------
def _is_structure(value):
    """Label values of the structures beside the vertebrae (not the sacrum below S1)."""
    return (np.asarray(value) >= FIRST_STRUCTURE_LABEL) & (np.asarray(value) != SACRUM_BELOW_S1)


class _Labels:
    """Vertebra label volume + names; nearest-voxel look-ups at LPS points. The structures'
    values (canal, foramen, ilium, rib: ``FIRST_STRUCTURE_LABEL`` and up, but the sacrum below
    S1) are no vertebra: a point there reads 0 and has no level."""

    def __init__(self, volume: CTVolume, labels: np.ndarray | None, names):
        self.volume = volume
        self.labels = labels
        if labels is not None and labels.shape != volume.hu.shape:
            raise ValueError(f"vertebra_labels shape {labels.shape} != CT shape {volume.hu.shape}")
        self.names = names
        self._centroids: dict[int, np.ndarray] = {}

    def __bool__(self) -> bool:
        return self.labels is not None

    def name(self, value: int) -> str:
        if value <= 0 or _is_structure(value):
            return ""
        if isinstance(self.names, Mapping):
            return str(self.names.get(value, self.names.get(str(value), f"label{value}")))
        if isinstance(self.names, Sequence) and 0 < value <= len(self.names):
            return str(self.names[value - 1])
        return f"label{value}"

    def at(self, pts_lps: np.ndarray) -> np.ndarray:
        assert self.labels is not None  # looked up only when there are labels (``if labels:``)
        ijk = np.rint(self.volume.ijk_from_lps_points(pts_lps)).astype(int)
        nk, nj, ni = self.labels.shape
        ok = ((ijk >= 0) & (ijk < np.array([ni, nj, nk]))).all(axis=1)
        out = np.zeros(len(ijk), np.int64)
        out[ok] = self.labels[ijk[ok, 2], ijk[ok, 1], ijk[ok, 0]]
        out[_is_structure(out)] = 0
        return out

    def centroid(self, value: int, near_lps: np.ndarray, radius_mm: float = 45.0) -> np.ndarray:
        """Centroid of label ``value`` within a box around ``near_lps`` (LPS)."""
        if value in self._centroids:
            return self._centroids[value]
        assert self.labels is not None  # a label value > 0 was read, so there are labels
        v = self.volume
        ijk = v.ijk_from_lps_points(np.array([near_lps - radius_mm, near_lps + radius_mm]))
        lo = np.clip(np.floor(ijk.min(axis=0)).astype(int), 0, np.array(v.shape_ijk) - 1)
        hi = np.clip(np.ceil(ijk.max(axis=0)).astype(int) + 1, 1, np.array(v.shape_ijk))
        sub = self.labels[lo[2]: hi[2], lo[1]: hi[1], lo[0]: hi[0]] == value
        kji = np.argwhere(sub)
        c = v.lps_from_ijk_points(kji[:, ::-1].mean(axis=0) + lo) if len(kji) else near_lps
        self._centroids[value] = np.asarray(c).ravel()
        return self._centroids[value]


def _pieces(mask: np.ndarray, gbox, volume: CTVolume, vox_mm3: float, least_mm3: float):
    """The 26-connected pieces of ``mask`` (a box ``gbox`` of the CT) of at least
    ``least_mm3``: ``(piece, box, volume_mm3, points_lps, bbox_ijk)`` each, ``piece`` a bool
    array on the CT's sub-box ``box``."""
    if not mask.any():
        return
    lab, _ = ndi.label(mask, np.ones((3, 3, 3)))
    for c, sl in enumerate(ndi.find_objects(lab), start=1):
        piece = lab[sl] == c
        vol = float(piece.sum() * vox_mm3)
        if vol < least_mm3:
            continue
        box = tuple(slice(g.start + q.start, g.start + q.stop) for g, q in zip(gbox, sl, strict=True))
        kji = np.argwhere(piece) + np.array([b.start for b in box])
        pts = volume.lps_from_ijk_points(kji[:, ::-1])
        bbox = (tuple(int(b.start) for b in box[::-1]), tuple(int(b.stop) for b in box[::-1]))
        yield piece, box, vol, pts, bbox


# --------------------------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------------------------
@dataclass
class _Found:
    fit: ScrewFit
    component: int


def find_implants(
    volume: CTVolume,
    threshold_hu: float | None = None,
    vertebra_labels: np.ndarray | None = None,
    label_names: Mapping[int, str] | Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Implants:
    """Find and measure the metal implants of a spine CT.

    Parameters
    ----------
    volume : CTVolume
    threshold_hu : float, optional
        Metal threshold (default :data:`DEFAULT_METAL_HU`).
    vertebra_labels : int array [k, j, i], optional
        Vertebra label volume on the CT grid (0 = background), e.g. ``Anatomy.labels``.
    label_names : mapping value -> name, or sequence (``names[value - 1]``), optional
        Level names of the label values (``"L2"``).
    progress : callable ``progress(fraction, message)``, optional
    cancel : CancelToken, optional

    Returns
    -------
    Implants
        A CT without metal gives no objects and the warning :data:`NO_METAL`.
    """
    thr = float(DEFAULT_METAL_HU if threshold_hu is None else threshold_hu)
    labels = _Labels(volume, vertebra_labels, label_names)
    timings: dict[str, float] = {}
    warnings: list[str] = []

    def report(f: float, msg: str) -> None:
        if cancel is not None:
            cancel.check()
        if progress is not None:
            progress(f, msg)

    t0 = time.perf_counter()
    report(0.0, "Finding metal")
    spacing_kji = volume.spacing_mm[::-1]
    vox_mm3 = float(np.prod(volume.spacing_mm))
    mask = np.zeros(volume.hu.shape, bool)
    objects = []
    for box, sub in metal_objects(volume.hu, thr, spacing_kji):
        lab, n = ndi.label(sub, np.ones((3, 3, 3)))
        for c, sl in enumerate(ndi.find_objects(lab), start=1):
            m = lab[sl] == c
            if m.sum() * vox_mm3 < MIN_METAL_MM3:
                continue
            gbox = tuple(slice(b.start + s.start, b.start + s.stop) for b, s in
                         zip(box, sl, strict=True))
            mask[gbox] |= m
            objects.append((gbox, m))
    timings["metal_mask"] = time.perf_counter() - t0
    if not objects:
        warnings.append(NO_METAL)
        return Implants((), (), (), (), mask, thr, tuple(warnings), timings)

    sampler = HUSampler(volume)
    t1 = time.perf_counter()
    found: list[_Found] = []
    ridges: list[Ridge] = []
    for n, (gbox, m) in enumerate(objects):
        report(0.05 + 0.5 * n / len(objects), "Separating screws and rods")
        offset = np.array([s.start for s in gbox])
        ridge = ridge_of(m, spacing_kji, volume.lps_from_ijk, offset)
        ridges.append(ridge)
        tol = max(1.2, 0.8 * float(np.max(volume.spacing_mm)))
        for line in find_shaft_lines(ridge, tol):
            fit = measure_screw(sampler, line)
            if fit is None or not _plausible(fit) or not _metal_core(sampler, fit):
                continue
            found.append(_Found(fit, n))
    found = _dedupe(found)
    shafts = fit_shafts(sampler, [f.fit for f in found])
    found = [_Found(fit, f.component) for fit, f in zip(shafts, found, strict=True)]
    timings["screws"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    report(0.6, "Rods, cages and other metal")
    rods_raw, explained, links_raw = [], [], []
    for n, (gbox, m) in enumerate(objects):
        fits = [f.fit for f in found if f.component == n]
        rods = _rods_of(ridges[n], fits, sampler)
        # a straight "shaft" from one rod to the other is a cross-link, not a screw
        links = [f for f in fits if bridges_rods(f.head_lps, f.tip_lps, [r[0] for r in rods])]
        # a left-right bar behind the screw heads is never a screw, even when a rod is missed:
        # it is left over metal (a connector if it reaches both rods, else other metal)
        bars = [f for f in fits if not any(f is q for q in links) and _transverse_bar(f, fits)]
        if links or bars:
            fits = [f for f in fits if not any(f is q for q in links + bars)]
            found = [f for f in found if not any(f.fit is q for q in links + bars)]
            rods = _rods_of(ridges[n], fits, sampler)
            links_raw += [(f.head_lps, f.tip_lps) for f in links]
        ex = _explained(gbox, m, fits, rods, volume)
        for f in links:
            ex |= _explained(gbox, m, [], [(np.array([f.head_lps, f.tip_lps]),
                                            f.diameter_mm, 0)], volume)
        if rods and not fits and ex.sum() < ROD_ALONE_FRACTION * m.sum():
            # a tube that is only part of a larger object (a prosthesis stem, a stent): not a rod
            rods, ex = [], np.zeros_like(m)
        rods_raw += rods
        explained.append(ex)
    timings["rods"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    screws_geo = [f.fit for f in found]
    cages, other, cement_raw = [], [], []
    core_hu = metal_core_hu(sampler.clip_hu)
    for n, (gbox, m) in enumerate(objects):
        dense = _cement_voxels(volume.hu[gbox], m, core_hu, spacing_kji)
        # bone cement: its own pieces, whatever metal it touches
        for _piece, _box, vol, pts, bbox in _pieces(dense, gbox, volume, vox_mm3, MIN_METAL_MM3):
            centre, ext, _ = _pca_extent(pts)
            cement_raw.append((centre, ext, vol, bbox, pts))
        left = m & ~explained[n] & ~dense
        least = LEFTOVER_MIN_MM3 if explained[n].any() else MIN_METAL_MM3
        for piece, box, vol, pts, bbox in _pieces(left, gbox, volume, vox_mm3, least):
            centre, ext, axes = _pca_extent(pts)
            if is_cement(volume.hu[box][piece], sampler.clip_hu):
                cement_raw.append((centre, ext, vol, bbox, pts))
                continue
            ends = centre[None, :] + np.outer([-0.5, 0.5], ext[0] * axes[:, 0])
            if ext[0] >= 2.0 * ext[1] and bridges_rods(ends[0], ends[1],
                                                       [r[0] for r in rods_raw]):
                links_raw.append((ends[0], ends[1]))
                continue
            cage = _as_cage(centre, ext, axes, vol, labels, screws_geo)
            if cage is not None:
                cages.append(cage)
            else:
                other.append(OtherMetal(_describe(ext, vol, explained[n].any()), centre, ext, vol,
                                        bbox))
    timings["cages_other"] = time.perf_counter() - t3

    t4 = time.perf_counter()
    report(0.75, "Screw sides, levels and halos")
    screws = _finish_screws(volume, sampler, found, rods_raw, labels, mask, warnings)
    timings["sides_levels_halos"] = time.perf_counter() - t4
    rods = _finish_rods(rods_raw, screws, labels)
    connectors = sorted((connector(a, b, screws) for a, b in links_raw),
                        key=lambda c: -c.center_lps[2])
    cement = _finish_cement(cement_raw, screws, labels, volume, mask)
    if not screws and not rods and not cages and not connectors and not cement:
        warnings.append("no pedicle screws, rods or cages found; "
                        f"{len(other)} other metal object(s)")
    if cement:
        warnings.append(f"bone cement found ({', '.join(c.description for c in cement)}): its "
                        f"dense part is reported as cement, not as metal")
    if other:
        warnings.append(f"{len(other)} metal object(s) are not screws, rods or cages "
                        f"(reported as other metal)")
    if vertebra_labels is None and screws:
        warnings.append("no vertebra labels given: screw levels are left empty")
    timings["total"] = time.perf_counter() - t0
    report(1.0, "Implants done")
    return Implants(tuple(screws), tuple(rods), tuple(cages), tuple(other), mask, thr,
                    tuple(warnings), timings, tuple(connectors), tuple(cement))


def _cement_voxels(hu: np.ndarray, m: np.ndarray, core_hu: float,
                   spacing_kji: np.ndarray) -> np.ndarray:
    """Voxels of the metal mask ``m`` that are dense material, not metal: below the metal's core
    HU and more than ~1.5 mm from any voxel that reaches it (the metal's own partial-volume rim
    lies within that)."""
    core = m & (hu >= np.int16(min(core_hu, 32767)))
    low = m & ~core
    if not low.any():
        return low
    n = max(1, int(np.ceil(1.5 / float(np.min(spacing_kji)))))
    near = ndi.binary_dilation(core, ndi.generate_binary_structure(3, 1), iterations=n)
    return low & ~near


def _metal_core(sampler: HUSampler, fit: ScrewFit) -> bool:
    """The shaft's core reads as metal (bone cement, 1200-3000 HU, does not)."""
    s = np.linspace(0.25, 0.75, 11) * fit.length_mm
    core = sampler.sample(fit.head_lps[None, :] + s[:, None] * fit.axis_lps[None, :])
    return float(np.median(core)) >= metal_core_hu(sampler.clip_hu)


def _finish_cement(cement_raw, screws: list[Screw], labels: _Labels, volume: CTVolume,
                   mask: np.ndarray) -> list[Cement]:
    """Cement pieces merged per vertebra and wrapped screw (one report per deposit)."""
    groups: dict[tuple, list] = {}
    for n, (centre, ext, vol, bbox, pts) in enumerate(cement_raw):
        level = ""
        if labels:
            v = labels.at(_shell_points(pts))
            v = v[v > 0]
            level = labels.name(int(np.bincount(v).argmax())) if v.size else ""
        screw = wrapped_screw(pts, screws)
        if not level and screw:
            level = next((s.level for s in screws if s.id == screw), "")
        key = (level, screw) if (level or screw) else ("", "", n)
        groups.setdefault(key, []).append((centre, ext, vol, bbox, pts))
    out = []
    for key, items in groups.items():
        pts = np.vstack([it[4] for it in items])
        centre, ext, _ = _pca_extent(pts)
        vol = float(sum(it[2] for it in items))
        lo_k, lo_j, lo_i = (int(min(it[3][0][d] for it in items)) for d in range(3))
        hi_k, hi_j, hi_i = (int(max(it[3][1][d] for it in items)) for d in range(3))
        out.append(Cement(key[0], key[1], centre, ext, vol,
                          ((lo_k, lo_j, lo_i), (hi_k, hi_j, hi_i))))
    out.sort(key=lambda c: -c.center_lps[2])
    return out


def _shell_points(pts: np.ndarray, reach_mm: float = 3.0) -> np.ndarray:
    """The piece's points and copies moved ``reach_mm`` along the six axis directions."""
    offs = np.vstack([np.zeros(3), reach_mm * np.eye(3), -reach_mm * np.eye(3)])
    sub = pts[:: max(1, len(pts) // 2000)]
    return (sub[None, :, :] + offs[:, None, :]).reshape(-1, 3)


def _transverse_bar(fit: ScrewFit, fits: list[ScrewFit]) -> bool:
    """A straight piece within ~25 deg of left-right, behind the other shafts' heads (at the
    rods' depth): a cross-link, never a pedicle screw (those run front-back, at most ~30-40 deg
    medially or laterally, with the head behind and the tip in the body)."""
    if abs(float(fit.axis_lps[0])) < TRANSVERSE_BAR_LR:
        return False
    heads = [f.head_lps[1] for f in fits
             if f is not fit and abs(float(f.axis_lps[0])) < TRANSVERSE_BAR_LR]
    if len(heads) < 2:
        return False
    mid = 0.5 * (fit.head_lps + fit.tip_lps)
    return bool(mid[1] > np.median(heads))  # LPS: +y is posterior


def _plausible(fit: ScrewFit) -> bool:
    return (SCREW_DIAMETER_OK_MM[0] <= fit.diameter_mm <= SCREW_DIAMETER_OK_MM[1]
            and SCREW_LENGTH_OK_MM[0] <= fit.length_mm <= SCREW_LENGTH_OK_MM[1])


def _dedupe(found: list[_Found]) -> list[_Found]:
    """Two fits of one shaft (ridge broken in two): keep the longer."""
    keep: list[_Found] = []
    for f in sorted(found, key=lambda f: -f.fit.length_mm):
        dup = False
        for k in keep:
            a, b = f.fit, k.fit
            ang = np.degrees(np.arccos(min(1.0, abs(float(a.axis_lps @ b.axis_lps)))))
            mid = 0.5 * (a.head_lps + a.tip_lps)
            rel = mid - b.head_lps
            s = float(rel @ b.axis_lps)
            perp = float(np.linalg.norm(rel - s * b.axis_lps))
            if ang < 8.0 and perp < 0.5 * b.diameter_mm + 1.0 and -5.0 < s < b.length_mm + 5.0:
                dup = True
                break
        if not dup:
            keep.append(f)
    return keep


# --------------------------------------------------------------------------------------------
# rods
# --------------------------------------------------------------------------------------------
def _near_screw(pts: np.ndarray, fits: list[ScrewFit], extra_mm: float) -> np.ndarray:
    """Points inside a screw's shaft cylinder or its tulip (head side) region."""
    out = np.zeros(len(pts), bool)
    for f in fits:
        rel = pts - f.head_lps
        s = rel @ f.axis_lps
        perp = np.linalg.norm(rel - s[:, None] * f.axis_lps, axis=1)
        shaft = (s > -1.0) & (s < f.length_mm + 2.0) & (perp < 0.5 * f.diameter_mm + extra_mm)
        tr = max(f.tulip_radius_mm, 0.5 * f.diameter_mm + 2.5) + extra_mm
        tulip = (s <= 0.0) & (s > -22.0) & (perp < tr)
        out |= shaft | tulip
    return out


def _rods_of(ridge: Ridge, fits: list[ScrewFit], sampler: HUSampler) -> list:
    """Rod candidates ``(points_lps, diameter_mm, ridge_id)`` from one object's ridge."""
    pts = ridge.pts_lps
    if len(pts) == 0:
        return []
    cc = (np.abs(ridge.dirs_lps[:, 2]) >= CRANIOCAUDAL_COS) & (ridge.linearity > 0.5)
    cc &= ~_near_screw(pts, fits, 1.0)
    idx = np.nonzero(cc)[0]
    if len(idx) < 5:
        return []
    P = pts[idx]
    pairs = cKDTree(P).query_pairs(ROD_LINK_MM, output_type="ndarray")
    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(P), len(P)))
    n, comp = connected_components(g, directed=False)
    rods = []
    for c in range(n):
        q = P[comp == c]
        if len(q) < 5:
            continue
        centre = q.mean(axis=0)
        _, _, vt = np.linalg.svd(q - centre, full_matrices=False)
        d = vt[0] if vt[0][2] >= 0 else -vt[0]
        t = (q - centre) @ d
        if abs(d[2]) < CRANIOCAUDAL_COS:
            continue
        bins = np.arange(t.min(), t.max() + 6.0, 6.0)
        which = np.digitize(t, bins)
        poly = np.array([np.median(q[which == b], axis=0) for b in np.unique(which)])
        poly = _add_seats(poly, fits, d, sampler)
        # the rod's free pieces between tulips and clamps can be short: its length runs from
        # seat to seat (the tulips it passes through) as well as over its own ridge
        span = (poly - centre) @ d
        if span.max() - span.min() < ROD_MIN_LENGTH_MM:
            continue
        poly = poly[np.argsort(-(poly @ d))]  # cranial first
        poly = _extend_rod_ends(sampler, poly)
        diam = _rod_diameter(sampler, poly, q, d)
        if diam is None or not ROD_DIAMETER_OK_MM[0] <= diam <= ROD_DIAMETER_OK_MM[1]:
            continue
        rods.append((poly, diam, id(ridge)))
    return rods


def _add_seats(poly: np.ndarray, fits: list[ScrewFit], d: np.ndarray,
               sampler: HUSampler | None = None) -> np.ndarray:
    """Insert the rod's seats: inside a tulip the rod lies on the screw's axis (behind the head).

    The distance ridge has no rod voxels inside a tulip; the seat is the point of the tulip axis
    closest to the line through the rod's neighbouring pieces. A seat up to
    :data:`SEAT_REACH_MM` beyond the rod's ridge is taken; further on (the rod's free piece
    between two tulips eaten by a cross-link's clamp, or broken by a streak) only when the
    straight way to it from the rod's last point reads as metal on the CT (``sampler``), and
    seat by seat from the nearest.
    """
    t_axis = np.arange(0.0, 22.0, 0.25)
    proj = (poly - poly.mean(axis=0)) @ d
    order = np.argsort(proj)
    cands = []
    for f in fits:
        if not f.tulip_found:
            continue
        line = f.head_lps[None, :] - t_axis[:, None] * f.axis_lps[None, :]
        tq = (line - poly.mean(axis=0)) @ d
        # the rod's centreline at the tulip's height: interpolate the binned points along d
        interp = np.stack([np.interp(tq, proj[order], poly[order, c]) for c in range(3)], axis=1)
        beyond = np.clip(tq - proj.max(), 0.0, None) + np.clip(tq - proj.min(), None, 0.0)
        interp = interp + beyond[:, None] * d[None, :]  # straight on past the end pieces
        dist = np.linalg.norm(line - interp, axis=1)
        k = int(np.argmin(dist))
        if dist[k] < 6.0:
            cands.append((float(tq[k]), line[k]))
    seats: list[np.ndarray] = []
    lo, hi = float(proj.min()), float(proj.max())
    lo_pt, hi_pt = poly[order[0]], poly[order[-1]]
    for tq, p in sorted(cands, key=lambda c: max(lo - c[0], c[0] - hi, 0.0)):
        if lo - SEAT_REACH_MM < tq < hi + SEAT_REACH_MM:
            ok = True
        elif sampler is not None and lo - SEAT_CHAIN_MM < tq < hi + SEAT_CHAIN_MM:
            ok = _metal_path(sampler, lo_pt if tq < lo else hi_pt, p)
        else:
            ok = False
        if not ok:
            continue
        seats.append(p)
        if tq < lo:
            lo, lo_pt = tq, p
        elif tq > hi:
            hi, hi_pt = tq, p
    if not seats:
        return poly
    seat_pts = np.array(seats)
    far = np.min(np.linalg.norm(poly[:, None, :] - seat_pts[None, :, :], axis=2), axis=1) > 4.0
    return np.vstack([poly[far], seat_pts])


def _metal_path(sampler: HUSampler, a: np.ndarray, b: np.ndarray) -> bool:
    """The straight way from ``a`` to ``b`` reads as metal (over half the clip) nearly all along
    (a thin streak's gap may cross it)."""
    n = max(2, int(np.linalg.norm(b - a) / 0.5))
    hu = sampler.sample(a[None, :] + np.linspace(0.0, 1.0, n)[:, None] * (b - a)[None, :])
    return float(np.mean(hu >= 0.5 * sampler.clip_hu)) >= 0.9


def _extend_rod_ends(sampler: HUSampler, poly: np.ndarray) -> np.ndarray:
    """Move both end points along the rod until the on-axis HU falls to half the plateau."""
    if len(poly) < 2:
        return poly
    out = poly.copy()
    for end, prev in ((0, 1), (-1, -2)):
        d = unit(poly[end] - poly[prev])
        t = np.arange(0.0, 30.0, 0.1)
        pa = sampler.sample(poly[end][None, :] + t[:, None] * d[None, :])
        lvl = 0.5 * (min(float(pa[:5].max()), sampler.clip_hu) + float(np.median(pa[-20:])))
        below = np.nonzero(pa < lvl)[0]
        if below.size:
            out[end] = poly[end] + t[below[0]] * d
    return out


def _rod_diameter(sampler: HUSampler, poly: np.ndarray, ridge_pts: np.ndarray,
                  d: np.ndarray) -> float | None:
    """Diameter from sections of the rod where it is free (on its own ridge, not in a tulip):
    at the polyline's segment midpoints and at its ridge points (one per 3 mm along its
    direction ``d``; a rod broken into short pieces by tulips and clamps has few midpoints on
    its ridge)."""
    tree = cKDTree(ridge_pts)
    sections = []
    for a, b in zip(poly[:-1], poly[1:], strict=True):
        mid = 0.5 * (a + b)
        if tree.query(mid)[0] <= 2.0:  # not inside a tulip (no rod ridge there)
            sections.append((mid, b - a))
    # ridge points on the rod's line (not a tulip's or a clamp's edge beside it)
    on_line = ridge_pts[_near_polyline(ridge_pts, poly, ROD_SECTION_OFF_MM)]
    keep = np.unique(np.rint(on_line @ d / 3.0), return_index=True)[1]
    sections += [(p, d) for p in on_line[keep]]
    ds = []
    for mid, axis in sections:
        p, _, r = radial_profiles(sampler, mid, axis, np.array([-1.0, 0.0, 1.0]), n_theta=16,
                                  r_max=8.0, dr=0.1)
        edges, _ = metal_edges(p, r, sampler.clip_hu)
        if np.isfinite(edges).any():
            ds.append(2.0 * float(np.nanmedian(edges)))
    if not ds:
        return None
    # clamps (cross-links) and tulips only widen a rod's sections: its narrower ones are the rod
    return float(np.percentile(ds, 25))


def _explained(gbox, m: np.ndarray, fits: list[ScrewFit], rods: list, volume: CTVolume):
    """Voxels of an object accounted for by its screws (shaft, tulip) and rods."""
    kji = np.argwhere(m)
    out = np.zeros(m.shape, bool)
    if not len(kji) or (not fits and not rods):
        return out
    pts = volume.lps_from_ijk_points((kji + np.array([s.start for s in gbox]))[:, ::-1])
    hit = _near_screw(pts, fits, 2.5)
    for poly, diam, _ in rods:
        hit |= _near_polyline(pts, poly, 0.5 * diam + 2.5)
    out[tuple(kji[hit].T)] = True
    return out


def _near_polyline(pts: np.ndarray, poly: np.ndarray, radius: float) -> np.ndarray:
    out = np.zeros(len(pts), bool)
    for a, b in zip(poly[:-1], poly[1:], strict=True):
        ab = b - a
        L2 = float(ab @ ab) or 1.0
        t = np.clip((pts - a) @ ab / L2, 0.0, 1.0)
        out |= np.linalg.norm(pts - (a + t[:, None] * ab), axis=1) < radius
    return out


# --------------------------------------------------------------------------------------------
# cages and other metal
# --------------------------------------------------------------------------------------------
def _as_cage(centre, ext, axes, vol, labels: _Labels, screws: list[ScrewFit]) -> Cage | None:
    if not (CAGE_VOLUME_MM3[0] <= vol <= CAGE_VOLUME_MM3[1]):
        return None
    if ext.max() > CAGE_MAX_EXTENT_MM or ext.min() < 4.0:
        return None
    if screws and centre[1] >= np.median([f.head_lps[1] for f in screws]):
        return None  # behind the screw heads (a cross-link's plate, a lamina hook): no disc there
    between = ("", "")
    if labels:
        up_dn = []
        for sign in (1.0, -1.0):
            t = np.arange(1.0, 0.5 * ext.max() + 15.0, 1.0)
            offs = np.array([[0, 0, 0], [4, 0, 0], [-4, 0, 0], [0, 4, 0], [0, -4, 0]], float)
            pts = (centre[None, None, :] + offs[None, :, :]
                   + sign * t[:, None, None] * np.array([0, 0, 1.0])[None, None, :])
            v = labels.at(pts.reshape(-1, 3)).reshape(len(t), len(offs))
            first = [row[row > 0] for row in v]
            vals = next((r for r in first if r.size), np.zeros(0, int))
            up_dn.append(int(np.bincount(vals).argmax()) if vals.size else 0)
        if up_dn[0] and up_dn[1] and up_dn[0] != up_dn[1]:
            return Cage((labels.name(up_dn[0]), labels.name(up_dn[1])), centre, ext, axes, vol)
        # the labels do not bracket it (the disc space is often unlabelled or merged around a
        # cage): judge it by its place in the construct like an unlabelled CT; the caller names
        # the vertebrae from their centroids
    if not screws:
        return None
    heads = np.array([f.head_lps for f in screws])
    tips = np.array([f.tip_lps for f in screws])
    x_ok = heads[:, 0].min() - 10.0 <= centre[0] <= heads[:, 0].max() + 10.0
    z_ok = heads[:, 2].min() - 60.0 <= centre[2] <= heads[:, 2].max() + 60.0
    front = centre[1] < np.median(heads[:, 1]) and centre[1] > tips[:, 1].min() - 30.0
    if not (x_ok and z_ok and front):
        return None
    return Cage(between, centre, ext, axes, vol)


def _describe(ext, vol, part_of_construct: bool) -> str:
    if part_of_construct:
        return "metal attached to the screw-rod construct (cross-link, hook or unexplained part)"
    if ext.max() > 80.0 or vol > CAGE_VOLUME_MM3[1]:
        return "large metal implant (not spinal instrumentation)"
    if ext.min() < 4.0:
        return "thin metal (wire, stent or clip)"
    return "metal object (not a screw, rod or cage)"


# --------------------------------------------------------------------------------------------
# sides, levels, halos
# --------------------------------------------------------------------------------------------
def _finish_screws(volume, sampler, found: list[_Found], rods_raw, labels: _Labels, mask,
                   warnings) -> list[Screw]:
    fits = [f.fit for f in found]
    n = len(fits)
    values = [_level_value(f, labels) if labels else 0 for f in fits]
    midline = np.full(n, np.nan)
    for k, f in enumerate(fits):  # 1. the vertebra the screw sits in
        if values[k] > 0:
            midline[k] = labels.centroid(values[k], f.head_lps)[0]
    for k, f in enumerate(fits):  # 2. a screw pair at the same height
        if np.isfinite(midline[k]):
            continue
        best, bd = None, np.inf
        for m, g in enumerate(fits):
            if m == k:
                continue
            dz = abs(f.head_lps[2] - g.head_lps[2])
            dx = abs(f.head_lps[0] - g.head_lps[0])
            if dz < 15.0 and 15.0 < dx < 120.0 and dz < bd:
                best, bd = m, dz
        if best is not None:
            midline[k] = 0.5 * (f.head_lps[0] + fits[best].head_lps[0])
    if len(rods_raw) >= 2:  # 3. between the rods
        for k, f in enumerate(fits):
            if np.isfinite(midline[k]):
                continue
            xs = []
            for poly, _, _ in rods_raw:
                z = poly[:, 2]
                o = np.argsort(z)
                xs.append(np.interp(f.head_lps[2], z[o], poly[o, 0]))
            if max(xs) - min(xs) > 15.0:
                midline[k] = 0.5 * (max(xs) + min(xs))
    screws = []
    for k, f in enumerate(fits):
        if np.isfinite(midline[k]):
            side = "left" if f.head_lps[0] > midline[k] else "right"
        elif abs(f.axis_lps[0]) > 0.05:  # 4. medial convergence: a left screw points to the right
            side = "left" if f.axis_lps[0] < 0 else "right"
        else:
            side = ""
        halo = measure_halo(volume, f.head_lps, f.tip_lps, 0.5 * f.diameter_mm, metal_mask=mask,
                            bone_labels=labels.labels if labels else None, sampler=sampler,
                            shaft=f.shaft)
        screws.append(Screw.measured("", labels.name(values[k]) if labels else "", side, f.tip_lps,
                            f.head_lps, f.axis_lps, f.diameter_mm, f.length_mm, halo,
                            f.core_diameter_mm, f.tulip_found, values[k]))
    screws.sort(key=lambda s: (-s.head_lps[2], s.side))
    out, used = [], set()
    for num, s in enumerate(screws, start=1):
        base = f"{s.level}-{s.side}" if s.level else f"screw{num}-{s.side or 'unknown'}"
        sid, extra = base, 2
        while sid in used:
            sid = f"{base}-{extra}"
            extra += 1
        used.add(sid)
        out.append(replace(s, id=sid))
    if any(not s.side for s in out):
        warnings.append("the side of some screws could not be told (no midline found)")
    blind = max((s.halo.blind_mm for s in out if s.halo is not None), default=0.0)
    if blind > LOOSENING_HALO_MM:
        warnings.append(f"metal blooming hides the first {blind:.1f} mm around the screws: a "
                        f"halo narrower than that cannot be told")
    return out


def _level_value(f: ScrewFit, labels: _Labels) -> int:
    """The vertebra label most found on rings around the shaft (beyond any halo)."""
    s = np.arange(3.0, max(f.length_mm - 2.0, 4.0), 2.0)
    th = np.arange(12) * (np.pi / 6)
    vals = []
    for rr in (0.5 * f.diameter_mm + 2.0, 0.5 * f.diameter_mm + 4.0):
        pts = cylinder_points(f.head_lps, f.axis_lps, s, th, np.array([rr]))
        vals.append(labels.at(pts.reshape(-1, 3)))
    v = np.concatenate(vals)
    v = v[v > 0]
    return int(np.bincount(v).argmax()) if v.size else 0


def _finish_rods(rods_raw, screws: list[Screw], labels: _Labels) -> list[Rod]:
    rods = []
    for poly, diam, _ in rods_raw:
        votes = []
        for s in screws:
            if _near_polyline(s.head_lps[None, :], poly, 20.0)[0] and s.side:
                votes.append(s.side)
        if votes:
            side = max(set(votes), key=votes.count)
        elif len(rods_raw) >= 2:
            others = [p for p, _, _ in rods_raw if p is not poly]
            mx = np.mean([np.mean(p[:, 0]) for p in others])
            side = "left" if np.mean(poly[:, 0]) > mx else "right"
        else:
            side = ""
        rods.append(Rod(side, poly, diam))
    rods.sort(key=lambda r: (r.side, -r.points_lps[0, 2]))
    return rods
