"""The label volume beside the vertebrae: :func:`add_structures` segments the spinal canal's
lumen, the lumbar foramina, the ilia and the ribs into an anatomy's labels (with the values of
:mod:`fluoroplan.model.anatomy`); :func:`labels_for_analysis` builds the whole label
volume of a CT whose analysis came as JSON only (a saved analysis, a phantom's ground truth).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from fluoroplan.model.anatomy import (
    CANAL_LABEL,
    FIRST_STRUCTURE_LABEL,
    FORAMEN_LABEL,
    ILIUM_LABEL,
    RIB_LABEL,
)
from fluoroplan.segmentation.anatomy import analyze_anatomy
from fluoroplan.segmentation.bones import find_other_bones
from fluoroplan.segmentation.canal import segment_canal
from fluoroplan.segmentation.errors import AnatomyError
from fluoroplan.segmentation.implants import DEFAULT_METAL_HU


def write_structure(labels, box, mask, value: int, over_vertebrae: bool = False) -> int:
    """Write ``value`` into ``labels[box]`` where the bool sub-array ``mask`` is set: over
    background only, or (``over_vertebrae``, the canal's lumen) over vertebra labels too; never
    over another structure or the sacrum. Returns the number of voxels written."""
    view = labels[box]
    free = view == 0
    if over_vertebrae:
        free |= (view > 0) & (view < FIRST_STRUCTURE_LABEL)
    take = np.asarray(mask, bool) & free
    view[take] = value
    return int(take.sum())


def add_structures(volume, anatomy, metal_mask):
    """The anatomy with its spinal canal (lumen and lumbar foramina), ilia and ribs found and
    written into its label volume (in place: the labels are the analysis' own). A CT without
    vertebrae has none of them (its canal stays unknown, which the planner never passes)."""
    if not anatomy.vertebrae:
        return anatomy
    t0 = time.perf_counter()
    labels = anatomy.labels
    canal = segment_canal(volume, metal_mask, anatomy)
    # per level by the vertebra's index, which relabelling keeps
    canal = replace(canal, levels={v.index: canal.levels[v.label] for v in anatomy.vertebrae
                                   if v.label in canal.levels})
    write_structure(labels, canal.box, canal.lumen, CANAL_LABEL, over_vertebrae=True)
    write_structure(labels, canal.box, canal.foramina, FORAMEN_LABEL)
    t1 = time.perf_counter()
    bones = find_other_bones(volume, metal_mask, anatomy)
    write_structure(labels, bones.box, bones.ilium, ILIUM_LABEL)
    write_structure(labels, bones.box, bones.ribs, RIB_LABEL)
    t2 = time.perf_counter()
    times = {**anatomy.timings_s, "canal lumen": t1 - t0, "pelvis+ribs": t2 - t1}
    return replace(anatomy, labels=labels, canal=canal, other_bones=bones,
                   warnings=tuple(anatomy.warnings) + tuple(canal.warnings)
                   + tuple(bones.warnings), timings_s=times)


def labels_for_analysis(volume, analysis: dict, metal_hu: float | None = None):
    """The label volume of a CT whose analysis came as JSON only (a saved analysis, a
    phantom's ground truth): the anatomy is measured again on the CT (vertebrae, canal, ilia,
    ribs), and each of its vertebrae takes the name of the JSON's vertebra whose body centroid
    is within 20 mm of its own (others keep their own names).

    Returns ``(labels, values)``: the uint8 label volume and {level name: label value}. A CT
    whose spine cannot be analysed, or an analysis without vertebrae (whose canal it says is
    unknown), gives an empty label volume (the canal is then unknown)."""
    if not analysis.get("vertebrae"):
        return np.zeros(volume.hu.shape, np.uint8), {}
    thr = float(analysis.get("metal_threshold_hu") or metal_hu or DEFAULT_METAL_HU)
    metal = volume.hu >= thr
    try:
        anatomy = add_structures(volume, analyze_anatomy(volume, metal_mask=metal), metal)
    except AnatomyError:  # NoSpineFound included
        return np.zeros(volume.hu.shape, np.uint8), {}
    values: dict[str, int] = {}
    mine = {v.label_value: np.asarray(v.centroid_lps, float) for v in anatomy.vertebrae}
    for v in anatomy.vertebrae:
        values.setdefault(v.label.upper(), v.label_value)
    for jv in analysis.get("vertebrae", []):
        c = np.asarray(jv.get("body_centroid_lps", jv.get("centroid_lps")), float)
        if not mine:
            break
        value, d = min(((k, float(np.linalg.norm(p - c))) for k, p in mine.items()),
                       key=lambda kv: kv[1])
        if d <= 20.0:
            values[str(jv["label"]).upper()] = value
    return anatomy.labels, values
