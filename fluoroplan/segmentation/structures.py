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
