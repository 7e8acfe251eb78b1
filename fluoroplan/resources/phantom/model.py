"""The phantom's vocabulary: tissue HU, implant dimensions, the level table, the result type.

The HU values drawn before noise and partial volume, the screw, tulip, rod and cement sizes, the
Genant height losses, the table of typical adult level dimensions (``LEVELS``, T8..L5), the codes
of ``Phantom.structures`` and the ``Phantom`` dataclass that ``make_phantom`` returns. Nothing here
draws.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fluoroplan.io.volume import CTVolume

SCHEMA = "fluoroplan.phantom-truth/1"

HU_AIR = -1000.0
HU_LUNG = -850.0
HU_FAT = -100.0
HU_SKIN = 30.0
HU_SOFT = 30.0
HU_MUSCLE = 50.0
HU_DISC = 88.0
HU_NUCLEUS = 72.0
HU_CSF = 15.0
HU_CORD = 35.0
HU_HALO = 20.0
HU_SCLEROSIS = 380.0
HU_RIB_CORTEX = 750.0
HU_RIB_MARROW = 200.0
HU_PEEK = 300.0
HU_GRAFT = 400.0
HU_TABLE = 150.0
HU_METAL_DRAWN = 6000.0  # titanium/tantalum reconstruct far above the 12-bit range: clipped
SHELL_MM = 1.2  # cortical shell of vertebrae
BLOOMING_SIGMAS = 2.0
"""``blooming_mm`` is this many standard deviations of the scanner's Gaussian point-spread blur."""
TULIP_DIAMETER_MM = 12.0
TULIP_HEIGHT_MM = 15.0
ROD_SEAT_MM = 9.5  # rod centre: this far behind the screw head, along -axis, inside the tulip
CUFF_MM = 3.0  # cement cuff of an augmented screw: this much beyond the thread, plus lobes
CEMENT_HU = (1600.0, 2800.0)  # PMMA with barium sulphate (vertebroplasty, kyphoplasty)
CUFF_HU = (1900.0, 2600.0)
GENANT_LOSS = {0: (0.0, 0.0), 1: (0.21, 0.24), 2: (0.28, 0.37), 3: (0.42, 0.50)}

ProgressCallback = Callable[[float, str], None]


@dataclass(frozen=True)
class _Level:
    """Typical adult dimensions (mm, deg) of one level; the seed scales them slightly."""

    width: float  # body, left-right
    depth: float  # body, antero-posterior (mid-sagittal)
    height: float  # body, posterior height
    disc_below: float
    ped_w: float  # pedicle transverse width (isthmus, outer)
    ped_h: float  # pedicle height
    medial_deg: float  # pedicle convergence toward the midline
    canal_w: float
    canal_ap: float
    tp_len: float
    sp_len: float
    sp_h: float
    tilt_deg: float  # sagittal tilt: + turns the superior endplate toward anterior


LEVELS: dict[str, _Level] = {
    "T8": _Level(32, 27, 20, 6.0, 5.5, 12, 3, 15.0, 15.0, 18, 30, 10, -10),
    "T9": _Level(34, 28, 21, 6.0, 6.0, 13, 3, 15.5, 15.5, 17, 30, 11, -10),
    "T10": _Level(36, 29, 22, 6.5, 6.5, 14, 4, 16.0, 15.5, 15, 30, 12, -9),
    "T11": _Level(39, 30, 23, 7.0, 7.2, 15, 5, 17.0, 16.0, 11, 30, 14, -8),
    "T12": _Level(42, 30, 24, 8.0, 7.8, 15, 7, 18.5, 16.5, 8, 30, 16, -7),
    "L1": _Level(44, 31, 25, 9.0, 8.4, 15, 10, 21.0, 17.0, 18, 30, 18, -6),
    "L2": _Level(45, 32, 26, 9.5, 9.2, 14.5, 12, 22.0, 17.0, 22, 31, 19, -3),
    "L3": _Level(47, 33, 27, 10.0, 10.4, 14.5, 15, 23.0, 17.0, 25, 31, 20, 0),
    "L4": _Level(49, 34, 27, 10.0, 12.2, 14, 18, 23.0, 18.0, 22, 30, 19, 5),
    "L5": _Level(50, 34, 26, 10.0, 14.5, 14, 25, 24.0, 18.0, 20, 25, 17, 10),
}
ORDER = tuple(LEVELS)
# the first sacral segment (drawn with ``sacrum=True`` below L5): a wide body whose superior
# endplate faces forward and up (sacral slope ~40 deg), wide short pedicles converging ~28 deg
# toward the promontory, a flat wide canal; no disc below (S2 is fused to it)
SACRUM_LEVEL = _Level(50, 36, 28, 0.0, 18.0, 20.0, 28, 30.0, 11.0, 0, 12, 10, 38)
STRUCTURE_CODES = {"canal": 1, "rib": 2, "ilium": 3, "sacral_foramen": 4}
"""Values of ``Phantom.structures``."""
SIDES = {"left": 1.0, "right": -1.0}


@dataclass(frozen=True)
class Phantom:
    """A synthetic CT and its ground truth.

    Attributes
    ----------
    volume : CTVolume
        ``hu`` int16 ``[k, j, i]`` in the stored (scanner) orientation, ``lps_from_ijk``.
    truth : dict
        JSON-serialisable ground truth (schema ``fluoroplan.phantom-truth/1``), LPS mm.
    labels : ndarray uint8 [k, j, i]
        Vertebra index (1..n, cranial to caudal, as ``truth["vertebrae"][n]["index"]``) of each
        vertebral bone voxel; 0 elsewhere, including ribs, discs, canal, metal and halo.
    metal : ndarray bool [k, j, i]
        True metal (screws, tulips, rods, titanium cage, tantalum beads), before artifacts.
    structures : ndarray uint8 [k, j, i]
        What else was drawn, voxel by voxel (``STRUCTURE_CODES``): the spinal canal's lumen
        (where its fluid was painted and no metal later was), the ribs, the ilia. The truth a
        canal, rib or pelvis finder is measured against: what the phantom drew, never a shape
        parameter.
    """

    volume: CTVolume
    truth: dict
    labels: np.ndarray
    metal: np.ndarray
    structures: np.ndarray | None = None
