"""The whole analysis of a case: implants and anatomy together, levels on the screws.

Order: a quick metal mask (so the anatomy treats metal as occupied bone, never as density) ->
the anatomy (vertebrae, levels, canal) -> the implants with the vertebra labels (so each screw
knows its level, its side relative to its own vertebra's midline, and its bone for the halo).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from fluoroplan.io.progress import CancelToken, ProgressCallback, Stage
from fluoroplan.io.volume import CTVolume
from fluoroplan.model.implants import Implants
from fluoroplan.segmentation.anatomy import Anatomy, analyze_anatomy
from fluoroplan.segmentation.errors import NoSpineFound
from fluoroplan.segmentation.implants import DEFAULT_METAL_HU, find_implants
from fluoroplan.segmentation.label_volume import add_structures
from fluoroplan.segmentation.labelmaps import anatomy_from_label_map
from fluoroplan.segmentation.vertebrae import BONE_HU, SACRUM_BELOW_S1


@dataclass(frozen=True, eq=False)
class Analysis:
    """What fluoroplan found in a CT."""

    volume: CTVolume
    anatomy: Anatomy
    implants: Implants
    timings_s: dict = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        return list(self.anatomy.warnings) + list(self.implants.warnings)

    def relabel(self, index_or_label: int | str, level: str) -> Analysis:
        """The same analysis with every level renamed from "this vertebra is ``level``"; the
        screws and cages take their vertebrae's new names."""
        anatomy = self.anatomy.relabel(index_or_label, level)
        implants = find_implants(
            self.volume, self.implants.threshold_hu, anatomy.labels, _names(anatomy)
        )
        return Analysis(self.volume, anatomy, implants, dict(self.timings_s))


def _name_cage_levels(implants: Implants, anatomy: Anatomy) -> Implants:
    """Cages whose vertebrae the label volume could not give (an unlabelled or merged disc
    space) sit between the two vertebrae whose body centroids bracket them along the column."""
    if not implants.cages or len(anatomy.vertebrae) < 2:
        return implants
    cages = []
    for cage in implants.cages:
        if all(cage.between):
            cages.append(cage)
            continue
        verts = anatomy.vertebrae
        above = [v for v in verts if (cage.center_lps - v.centroid_lps) @ v.axis_lps < 0]
        below = [v for v in verts if (cage.center_lps - v.centroid_lps) @ v.axis_lps >= 0]
        if above and below:
            up = min(above, key=lambda v: np.linalg.norm(v.centroid_lps - cage.center_lps))
            dn = min(below, key=lambda v: np.linalg.norm(v.centroid_lps - cage.center_lps))
            cage = replace(cage, between=(up.label, dn.label))
        cages.append(cage)
    return replace(implants, cages=tuple(cages))


def _no_vertebrae(volume: CTVolume, metal: np.ndarray, err: Exception) -> Anatomy:
    """The anatomy of a CT whose vertebrae could not be separated: none, and why."""
    bone = (volume.hu >= np.int16(BONE_HU)) & ~metal
    why = str(err).split(": ", 1)[-1]
    return Anatomy(
        labels=np.zeros(volume.hu.shape, np.uint8),
        bone_mask=bone,
        vertebrae=(),
        canal_centerline_lps=np.zeros((0, 3)),
        canal_radii_mm=np.zeros(0),
        warnings=(
            f"The vertebrae could not be separated ({why}) The implants are listed without "
            "their levels and no trajectory can be planned. Give the levels with a label map "
            "(--labels, e.g. TotalSegmentator's output) or load a CT that covers two vertebrae "
            "or more above or below the instrumented segment.",
        ),
    )


def _names(anatomy: Anatomy) -> dict[int, str]:
    """Label value -> the level an implant there sits in (the sacrum below S1 is "sacrum")."""
    names = {v.label_value: v.label for v in anatomy.vertebrae}
    names.setdefault(SACRUM_BELOW_S1, "sacrum")
    return names


def analyze(
    volume: CTVolume,
    levels: str | None = None,
    metal_hu: float | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    label_map: str | None = None,
) -> Analysis:
    """Find every screw, rod, cage and vertebra (with levels) and measure screw halos.

    Parameters
    ----------
    volume : CTVolume
    levels : str, optional
        Label of the most cranial vertebra fully in view (e.g. ``"L1"``); overrides the
        automatic labelling.
    metal_hu : float, optional
        Metal threshold in HU (default ``DEFAULT_METAL_HU``; titanium is often clipped at 3071).
    progress, cancel : progress callback and cancel token.
    label_map : str, optional
        A vertebra label map made elsewhere (TotalSegmentator NIfTI file or folder, 3D Slicer
        ``.seg.nrrd``) to use instead of fluoroplan's own vertebra separation; its names give
        the levels (``levels`` then relabels them if given).
    """
    thr = float(DEFAULT_METAL_HU if metal_hu is None else metal_hu)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    metal = volume.hu >= thr
    implants = None
    if label_map is not None:

        anatomy = anatomy_from_label_map(volume, label_map, metal_mask=metal,
                                         progress=Stage(progress, 0.0, 0.6, cancel),
                                         cancel=cancel)
        if levels is not None and anatomy.vertebrae:
            # "the most cranial vertebra fully in view is <levels>", as analyze_anatomy reads it
            first = next((v.index for v in anatomy.vertebrae if v.complete),
                         anatomy.vertebrae[0].index)
            anatomy = anatomy.relabel(first, levels)
    else:
        try:
            anatomy = analyze_anatomy(volume, metal_mask=metal, levels=levels,
                                      progress=Stage(progress, 0.0, 0.6, cancel), cancel=cancel)
        except NoSpineFound as err:
            # a CT of the instrumented segment alone, or vertebrae the metal hides: the implants
            # are still worth reporting, without their levels; a CT with no spinal implant
            # either is not a spine CT
            implants = find_implants(volume, thr, progress=Stage(progress, 0.6, 1.0, cancel),
                                     cancel=cancel)
            if not (implants.screws or implants.rods or implants.cages):
                raise
            anatomy = _no_vertebrae(volume, metal, err)
    if implants is None:  # the canal, foramina, ilia and ribs beside the vertebrae
        anatomy = add_structures(volume, anatomy, metal)
    t1 = time.perf_counter()
    timings["vertebrae"] = t1 - t0
    if implants is None:
        implants = find_implants(volume, thr, anatomy.labels, _names(anatomy),
                                 progress=Stage(progress, 0.6, 1.0, cancel), cancel=cancel)
        implants = _name_cage_levels(implants, anatomy)
    timings["implants"] = time.perf_counter() - t1
    return Analysis(volume, anatomy, implants, timings)
