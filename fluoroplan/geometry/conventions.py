"""The facts every part of fluoroplan agrees on (../shared/CONVENTIONS.md), stated once.

World frame: DICOM patient coordinates, LPS (+x patient's Left, +y Posterior, +z Superior), mm.
Angles are degrees in every interface; radians only inside functions.
Voxel arrays are indexed ``[k, j, i]`` (slice, row, column); affines map ``(i, j, k, 1)`` to LPS.
"""

from __future__ import annotations

from dataclasses import dataclass

from fluoroplan.geometry.xray import (
    CT_EFFECTIVE_KEV,
    FLUORO_EFFECTIVE_KEV,
    bone_ct_number,
    mu_per_mm,
)

# --- patient positions -------------------------------------------------------------------
PATIENT_POSITIONS = ("HFS", "HFP", "FFS", "FFP")

# --- C-arm (DICOM PS3.3 C.8.7.5.1.2; GE Innova 3100 limits) ------------------------------
DEFAULT_SID_MM = 1100.0
DEFAULT_SOD_MM = 750.0
DEFAULT_DETECTOR_MM = (300.0, 400.0)  # width (u), height (v)
DEFAULT_DETECTOR_PIXEL_MM = 0.2  # flat-panel pixel pitch

# Patient position -> how the LPS axes lie along the table axes (+Xt table left, +Yt floor,
# +Zt table head): L = sx*Xt, P = sy*Yt, S = sz*Zt. HFP: P_table = P -+ 180, S_table = S;
# FFS: P_table = -P, S_table = -S; FFP: P_table = 180 - P, S_table = -S.
LPS_AXES_IN_TABLE = {
    "HFS": (1, 1, 1),
    "HFP": (-1, -1, 1),
    "FFS": (-1, 1, -1),
    "FFP": (1, -1, -1),
}


@dataclass(frozen=True)
class CArmLimits:
    """Reachable range of a C-arm, table-relative angles in degrees, SID in mm."""

    rotation_deg: tuple[float, float] = (-117.0, 105.0)
    angulation_deg: tuple[float, float] = (-45.0, 50.0)
    sid_mm: tuple[float, float] = (890.0, 1190.0)


DEFAULT_CARM_LIMITS = CArmLimits()
# A biplane suite's lateral plane has limits of its own (CONVENTIONS.md): configurable; the
# default assumes the lateral plane reaches the true laterals either side (table rotation
# +-90 deg, the plane's own range +-115 deg) and tilts +-30 deg cranio-caudally. Set it from
# the suite's data sheet.
LATERAL_PLANE_LIMITS = CArmLimits(rotation_deg=(-115.0, 115.0), angulation_deg=(-30.0, 30.0))

# --- simulated fluoroscopy (DRR) ---------------------------------------------------------
# Linear attenuation per mm at the fluoroscopic effective energy (50 keV) of water and of
# titanium (voxels at or above TITANIUM_MIN_HU: CT numbers of metal are clipped and streaky);
# bone follows the two-material model of fluoroplan.geometry.xray (NIST XCOM tables).
MU_WATER_PER_MM = mu_per_mm("water", FLUORO_EFFECTIVE_KEV)  # 0.0227
MU_METAL_PER_MM = mu_per_mm("titanium", FLUORO_EFFECTIVE_KEV)  # 0.547
MU_BONE_PER_MM = mu_per_mm("cortical bone", FLUORO_EFFECTIVE_KEV)  # 0.0814 (ICRU-44 cortical)
BONE_CT_NUMBER = bone_ct_number(CT_EFFECTIVE_KEV)  # ~1590 HU: cortical bone at 120 kVp

# --- needle --------------------------------------------------------------------------------
NEEDLE_GAUGE = 15
NEEDLE_OUTER_DIAMETER_MM = 1.829
NEEDLE_INNER_DIAMETER_MM = 1.372
NEEDLE_LENGTHS_MM = (100.0, 150.0)
NEEDLE_MIN_OUTSIDE_SKIN_MM = 20.0

# --- implants --------------------------------------------------------------------------------
SCREW_DIAMETER_RANGE_MM = (4.5, 7.5)
SCREW_LENGTH_RANGE_MM = (30.0, 55.0)
ROD_DIAMETER_RANGE_MM = (5.5, 6.0)
TITANIUM_MIN_HU = 2500.0
CT_CLIP_HU = 3071
LOOSENING_HALO_MM = 1.0  # a radiolucent halo wider than this is loosening (Aghayev 2014; Wu 2019)

def breach_grade(depth_mm: float) -> str:
    """Gertzbein-Robbins grade of a cortical breach ``depth_mm`` deep (<= 0 means none)."""
    if depth_mm <= 0.0:
        return "A"
    if depth_mm < 2.0:
        return "B"
    if depth_mm < 4.0:
        return "C"
    if depth_mm < 6.0:
        return "D"
    return "E"
