"""Structures beside the vertebrae that the label volume also carries, and what they are called.

``Anatomy.labels`` holds each vertebra's ``label_value`` (1..n) on its bone, ``SACRUM_BELOW_S1``
on the fused sacrum below S1, and the values below on the structures a needle must keep clear
of or must not cross: the spinal canal's lumen, the lumbar neural foramina (the exiting roots'
zone), the pelvis (ilia) and the ribs. None of them is a vertebra: an implant or a point there
has no level (:func:`is_vertebra_value`).
"""

from __future__ import annotations

import numpy as np

from fluoroplan.io.analysis_json import canal_level_json

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
    view = labels[box]
    free = view == 0
    if over_vertebrae:
        free |= (view > 0) & (view < FIRST_STRUCTURE_LABEL)
    take = np.asarray(mask, bool) & free
    view[take] = value
    return int(take.sum())


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
                block.update(canal_level_json(lvl))
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
