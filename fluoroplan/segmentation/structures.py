"""Structures beside the vertebrae that the label volume also carries, and what they are called.

``Anatomy.labels`` holds each vertebra's ``label_value`` (1..n) on its bone, ``SACRUM_BELOW_S1``
on the fused sacrum below S1, and the values below on the structures a needle must keep clear
of or must not cross: the spinal canal's lumen, the lumbar neural foramina (the exiting roots'
zone), the pelvis (ilia) and the ribs. None of them is a vertebra: an implant or a point there
has no level (:func:`is_vertebra_value`).
"""

from __future__ import annotations

CANAL_LABEL = 253
"""The spinal canal's lumen (dural sac and epidural space, lateral recesses, sacral canal)."""
FORAMEN_LABEL = 252
"""A lumbar neural foramen: the soft tissue of the exiting root's zone beside the canal."""
ILIUM_LABEL = 251
"""The pelvis beside the sacrum: an ilium (its side is where it lies)."""
RIB_LABEL = 250
"""A rib (head, neck and shaft)."""
STRUCTURE_NAMES = {
    CANAL_LABEL: "spinal canal",
    FORAMEN_LABEL: "neural foramen",
    ILIUM_LABEL: "ilium",
    RIB_LABEL: "rib",
}
FIRST_STRUCTURE_LABEL = min(STRUCTURE_NAMES)
"""Label values from here up are not vertebrae (``SACRUM_BELOW_S1`` = 254 included)."""


def is_vertebra_value(value: int) -> bool:
    """True for a label value that is a vertebra's (1..249)."""
    return 0 < int(value) < FIRST_STRUCTURE_LABEL


def write_structure(labels, box, mask, value: int, over_vertebrae: bool = False) -> int:
    """Write ``value`` into ``labels[box]`` where the bool sub-array ``mask`` is set: over
    background only, or (``over_vertebrae``, the canal's lumen) over vertebra labels too; never
    over another structure or the sacrum. Returns the number of voxels written."""
    import numpy as np

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
    import time
    from dataclasses import replace

    from fluoroplan.segmentation.bones import find_other_bones
    from fluoroplan.segmentation.canal import segment_canal

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


def structures_json(anatomy, doc: dict) -> dict:
    """``doc`` (the anatomy's JSON) with what the structures add: each vertebra's canal at its
    narrowest section (area, width, depth), the refined canal centreline and its label value,
    the foramina's, the pelvis, the ribs' levels."""
    canal = anatomy.canal
    if canal is not None:
        for v in doc["vertebrae"]:
            lvl = canal.levels.get(v["index"])
            block = dict(v.get("canal") or {})
            block.pop("radius_mm", None)  # a fitted circle is no canal size: the section's own
            if lvl is not None:
                block.update(lvl.to_json())
            v["canal"] = block
        doc["canal"] = {
            "label_value": CANAL_LABEL,
            "foramen_label_value": FORAMEN_LABEL,
            "centerline_lps": [[round(float(c), 2) for c in p] for p in canal.centerline_lps],
        }
    else:
        for v in doc["vertebrae"]:
            (v.get("canal") or {}).pop("radius_mm", None)
    bones = anatomy.other_bones
    if bones is not None:
        doc["pelvis"] = {"label_value": ILIUM_LABEL, **bones.pelvis}
        doc["ribs"] = {"label_value": RIB_LABEL, "levels": bones.rib_levels}
    return doc


def labels_for_analysis(volume, analysis: dict, metal_hu: float | None = None):
    """The label volume of a CT whose analysis came as JSON only (a saved analysis, a
    phantom's ground truth): the anatomy is measured again on the CT (vertebrae, canal, ilia,
    ribs), and each of its vertebrae takes the name of the JSON's vertebra whose body centroid
    is within 20 mm of its own (others keep their own names).

    Returns ``(labels, values)``: the uint8 label volume and {level name: label value}. A CT
    whose spine cannot be analysed, or an analysis without vertebrae (whose canal it says is
    unknown), gives an empty label volume (the canal is then unknown)."""
    import numpy as np

    from fluoroplan.segmentation.anatomy import analyze_anatomy
    from fluoroplan.segmentation.errors import AnatomyError
    from fluoroplan.segmentation.implants import DEFAULT_METAL_HU

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
