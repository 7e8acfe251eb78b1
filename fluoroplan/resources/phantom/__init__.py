"""The demo phantom: a synthetic instrumented spine CT with its exact ground truth.

``make_phantom`` draws a lower thoracic / lumbar spine (T11, T12 with ribs; L1..L4 by default)
inside a trunk with lungs, muscle, fat, skin and a CT table, adds titanium pedicle screws with
tulip heads, rods, one loose screw with a radiolucent halo, a vertebral compression fracture,
optionally an interbody cage and metal streaks, and returns the volume with its truth as data.

Anatomy is defined in patient LPS millimetres (+x patient's left, +y posterior, +z head); the
prone (HFP) and supine (HFS) variants hold identical anatomy and differ only in the table (under
the back when supine, under the belly when prone) and in the stored orientation.

HU used (before noise and partial volume): air -1000, lung -850, fat -100, skin 30, soft tissue
30, muscle 50, disc 88 (nucleus 72), CSF 15 (cord 35 at T11..L1), vertebral cortex 850-1150,
trabecular bone 150-250 (a sclerotic band of ~380 under a fractured endplate), rib cortex 750,
halo 20, PEEK 300, bone graft 400, table 150; metal is drawn at 6000 and clipped to 3071, so
every metal voxel reads 3071 and its partial-volume rim is bright.

Only the requested levels are drawn: the column does not continue above the first or below the
last level (the field of view leaves a soft-tissue margin there).

Submodules, lower ones first (each imports only those above it; shapes come from
``fluoroplan.resources.phantom_sdf``):

- ``model``: the HU values, implant dimensions, level table, structure codes and ``Phantom``.
- ``vertebra``: one vertebra's geometry (``_Vertebra``) and the stacked column (``_make_column``).
- ``canvas``: painting helpers shared by the anatomy and the implants.
- ``anatomy``: trunk, lungs, discs, vertebrae, canal and ribs, and a vertebra's truth.
- ``pelvis``: both iliac wings beside L5.
- ``sacrum``: S1 (promontory, alae, canal, foramina) and S2 fused below L5 (``sacrum=True``).
- ``implants``: screws, rods, cement, cross-links and cages.
- ``artifacts``: metal streaks; ``blooming``: the scanner's point-spread blur.
- ``generator``: ``make_phantom``, which puts it all together.
- ``files``: ``write_phantom`` and ``load_truth``.

The names other modules use are re-exported here.
"""

from __future__ import annotations

from fluoroplan.resources.phantom.blooming import _blur_psf, _variance_kernel
from fluoroplan.resources.phantom.files import load_truth, write_phantom
from fluoroplan.resources.phantom.generator import make_phantom
from fluoroplan.resources.phantom.model import (
    BLOOMING_SIGMAS,
    CEMENT_HU,
    CUFF_HU,
    CUFF_MM,
    GENANT_LOSS,
    HU_AIR,
    HU_CORD,
    HU_CSF,
    HU_DISC,
    HU_FAT,
    HU_GRAFT,
    HU_HALO,
    HU_LUNG,
    HU_METAL_DRAWN,
    HU_MUSCLE,
    HU_NUCLEUS,
    HU_PEEK,
    HU_RIB_CORTEX,
    HU_RIB_MARROW,
    HU_SCLEROSIS,
    HU_SKIN,
    HU_SOFT,
    HU_TABLE,
    LEVELS,
    ORDER,
    ROD_SEAT_MM,
    SCHEMA,
    SHELL_MM,
    SIDES,
    STRUCTURE_CODES,
    TULIP_DIAMETER_MM,
    TULIP_HEIGHT_MM,
    Phantom,
    ProgressCallback,
)
from fluoroplan.resources.phantom.vertebra import Part

__all__ = [
    "BLOOMING_SIGMAS", "CEMENT_HU", "CUFF_HU", "CUFF_MM", "GENANT_LOSS", "HU_AIR", "HU_CORD",
    "HU_CSF", "HU_DISC", "HU_FAT", "HU_GRAFT", "HU_HALO", "HU_LUNG", "HU_METAL_DRAWN",
    "HU_MUSCLE", "HU_NUCLEUS", "HU_PEEK", "HU_RIB_CORTEX", "HU_RIB_MARROW", "HU_SCLEROSIS",
    "HU_SKIN", "HU_SOFT", "HU_TABLE", "LEVELS", "ORDER", "ROD_SEAT_MM", "SCHEMA", "SHELL_MM",
    "SIDES", "STRUCTURE_CODES", "TULIP_DIAMETER_MM", "TULIP_HEIGHT_MM", "Part", "Phantom",
    "ProgressCallback", "load_truth", "make_phantom", "write_phantom",
    # private, used by tests/test_implants_blooming.py
    "_blur_psf", "_variance_kernel",
]
