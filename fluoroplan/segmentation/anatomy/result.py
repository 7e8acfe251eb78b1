"""The analysed spine as the rest of fluoroplan sees it: :class:`Anatomy` (label map, bone
mask, vertebrae, canal centreline, warnings), with its relabelling and its JSON."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from fluoroplan.model.anatomy import Vertebra
from fluoroplan.segmentation import levels as lv


@dataclass(frozen=True, eq=False)
class Anatomy:
    """The analysed spine.

    Attributes
    ----------
    labels : ndarray uint8 (nk, nj, ni)
        On the CT grid: 0 = not a vertebra, else ``Vertebra.label_value`` on its bone voxels;
        the sacrum below S1 (not a vertebra) is ``SACRUM_BELOW_S1``.
    bone_mask : ndarray bool (nk, nj, ni)
        Bone voxels of the CT (HU >= ``BONE_HU``, metal excluded).
    vertebrae : tuple of Vertebra
        Cranial to caudal.
    canal_centerline_lps : ndarray (n, 3) ; canal_radii_mm : ndarray (n,)
        Spinal canal centre, cranial to caudal, and its equivalent-circle radius.
    warnings : tuple of str
        Sentences a user should read (labels unsure, levels merged, metal, ...).
    timings_s : dict
        Seconds per stage (for the benchmark).
    canal : segmentation.canal.Canal or None
        The spinal canal's lumen as voxels, its foramina and its size per level, once
        :func:`fluoroplan.segmentation.label_volume.add_structures` has run (the lumen and the
        foramina are then also ``structures.CANAL_LABEL`` / ``FORAMEN_LABEL`` in ``labels``).
    other_bones : segmentation.bones.OtherBones or None
        The ilia and the ribs (``ILIUM_LABEL`` / ``RIB_LABEL`` in ``labels``), likewise.
    """

    labels: np.ndarray
    bone_mask: np.ndarray
    vertebrae: tuple[Vertebra, ...]
    canal_centerline_lps: np.ndarray
    canal_radii_mm: np.ndarray
    warnings: tuple[str, ...] = ()
    timings_s: dict = field(default_factory=dict)
    canal: object | None = None
    other_bones: object | None = None

    @property
    def label_source(self) -> str:
        return self.vertebrae[0].label_source if self.vertebrae else lv.SOURCE_NONE

    def vertebra(self, label: str) -> Vertebra:
        """The vertebra labelled ``label`` (``"L3"``); KeyError if absent."""
        want = label.strip().upper()
        for v in self.vertebrae:
            if v.label.upper() == want:
                return v
        raise KeyError(f"no vertebra {label} in this CT; found {[v.label for v in self.vertebrae]}")

    def relabel(self, index_or_label: int | str, level: str) -> Anatomy:
        """A copy with every level relabelled from "this vertebra is ``level``"."""
        return replace(self, vertebrae=tuple(lv.relabel(self.vertebrae, index_or_label, level)))
