"""The metal in a CT and what surrounds it: a screw's halo, the screws, rods, cages,
cross-links, cement and other metal, and all of them together (:class:`Implants`). Frozen
dataclasses in LPS mm, produced by :mod:`fluoroplan.segmentation.implants`; their JSON forms
are in :mod:`fluoroplan.io.analysis_json`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class VoxelGrid(Protocol):
    """What a halo needs of a CT to place its voxels: the LPS position of voxel indices."""

    def lps_from_ijk_points(self, ijk: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class Halo:
    """The radiolucent rim around one screw shaft.

    Attributes
    ----------
    median_mm, max_mm : float
        Halo width from the metal surface to bone: median over the halo stretch (its positions
        wider than 1 mm) when the screw is loose, else over the in-bone shaft; maximum of the
        per-position widths.
    from_mm, to_mm : float
        The longest stretch where the halo is wider than 1 mm, in mm along the axis from the
        screw head (both 0 when there is none).
    in_bone_from_mm, in_bone_to_mm : float
        The part of the shaft measured inside bone.
    loose : bool
        Halo wider than ``LOOSENING_HALO_MM`` over >= 30 % of the in-bone shaft or >= 10 mm.
    s_mm, width_mm : ndarray
        Position along the axis from the head and the per-position width (NaN out of bone).
    bone_hu, threshold_hu : float
        Bone level around the screw and the threshold at which bone is deemed recovered.
    volume_mm3 : float
        Halo volume over the stretch from the measured widths (annulus integral); 0 unless loose.
    mask : ndarray bool [k, j, i] ; mask_origin_ijk : (i0, j0, k0)
        The halo voxels (HU below the threshold, outside the metal, within the stretch) in a
        box of the CT grid starting at ``mask_origin_ijk``; ``mask_volume_mm3`` their volume.
        Empty unless loose.
    blind_mm : float
        How far from the metal surface its blurred rim (blooming, and the voxels' partial
        volume: a few tenths of a mm) hides everything; the halo is looked for beyond, and a
        halo narrower than this cannot be told.
    """

    median_mm: float
    max_mm: float
    from_mm: float
    to_mm: float
    in_bone_from_mm: float
    in_bone_to_mm: float
    loose: bool
    s_mm: np.ndarray
    width_mm: np.ndarray
    bone_hu: float
    threshold_hu: float
    volume_mm3: float
    mask: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), bool))
    mask_origin_ijk: tuple[int, int, int] = (0, 0, 0)
    mask_volume_mm3: float = 0.0
    blind_mm: float = 0.0

    @property
    def mask_bbox_ijk(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """Half-open voxel box ``((i0, j0, k0), (i1, j1, k1))`` of :attr:`mask`."""
        i0, j0, k0 = self.mask_origin_ijk
        nk, nj, ni = self.mask.shape
        return (i0, j0, k0), (i0 + ni, j0 + nj, k0 + nk)

    def points_lps(self, volume: VoxelGrid) -> np.ndarray:
        """LPS centres of the halo voxels (N, 3)."""
        kji = np.argwhere(self.mask)
        ijk = kji[:, ::-1] + np.asarray(self.mask_origin_ijk)
        return volume.lps_from_ijk_points(ijk)


@dataclass(frozen=True, eq=False)
class Screw:
    """One pedicle screw (LPS mm; ``axis_lps`` is the unit vector from head to tip).

    ``halo_mm`` and ``loose`` are its halo's median width and the loosening verdict; ``halo``
    is the measurement behind them (profile along the shaft, voxel mask) when the screw was
    measured on the CT, None for a screw read from an analysis file, which stores only a
    summary of it.
    """

    id: str
    level: str
    side: str
    tip_lps: np.ndarray
    head_lps: np.ndarray
    axis_lps: np.ndarray
    diameter_mm: float
    length_mm: float
    halo_mm: float
    loose: bool
    halo: Halo | None = None
    core_diameter_mm: float = 0.0
    tulip: bool = False
    label_value: int = 0
    tulip_height_mm: float | None = None  # the tulip's size when known (a phantom draws it);
    tulip_diameter_mm: float | None = None  # the analysis does not measure it

    @classmethod
    def measured(cls, id: str, level: str, side: str, tip_lps: np.ndarray, head_lps: np.ndarray,
                 axis_lps: np.ndarray, diameter_mm: float, length_mm: float, halo: Halo,
                 core_diameter_mm: float = 0.0, tulip: bool = False,
                 label_value: int = 0) -> Screw:
        """A screw measured on the CT, its halo summary taken from its halo measurement."""
        return cls(id, level, side, tip_lps, head_lps, axis_lps, diameter_mm, length_mm,
                   float(halo.median_mm), bool(halo.loose), halo, core_diameter_mm, tulip,
                   label_value)


@dataclass(frozen=True, eq=False)
class Rod:
    """A rod: centreline polyline (cranial to caudal) and diameter."""

    side: str
    points_lps: np.ndarray
    diameter_mm: float

    @property
    def length_mm(self) -> float:
        return float(np.linalg.norm(np.diff(self.points_lps, axis=0), axis=1).sum())


@dataclass(frozen=True, eq=False)
class Cage:
    """An interbody cage: centre, extent along its principal axes, the vertebrae around it."""

    between: tuple[str, str]
    center_lps: np.ndarray
    extent_mm: np.ndarray
    axes_lps: np.ndarray  # columns: principal axes, longest first
    volume_mm3: float | None = None  # its metal's volume; None when not measured on this CT

    def half_extent_along(self, direction: np.ndarray) -> float:
        """Half the cage's size along a unit direction (a box's support half-width)."""
        return 0.5 * float(np.sum(np.abs(self.axes_lps.T @ direction) * self.extent_mm))


@dataclass(frozen=True, eq=False)
class OtherMetal:
    """Metal that is not a screw, rod or cage (prosthesis, stent, wires, cross-link ...)."""

    description: str
    center_lps: np.ndarray
    extent_mm: np.ndarray
    volume_mm3: float
    bbox_ijk: tuple[tuple[int, int, int], tuple[int, int, int]]


@dataclass(frozen=True, eq=False)
class Connector:
    """A transverse rod connector (cross-link) between the two rods (LPS mm)."""

    between: tuple[str, str]  # the instrumented levels above and below it ("" when unknown)
    center_lps: np.ndarray
    ends_lps: np.ndarray  # 2 x 3: right end, left end
    axis_lps: np.ndarray  # unit, right to left
    length_mm: float

    @property
    def level(self) -> str:
        return "-".join(x for x in self.between if x)


@dataclass(frozen=True, eq=False)
class Cement:
    """Bone cement (PMMA) in or around a vertebra: its dense part above the metal threshold."""

    level: str
    screw: str  # id of the screw it wraps (cement-augmented screw), "" if none
    center_lps: np.ndarray
    extent_mm: np.ndarray
    volume_mm3: float
    bbox_ijk: tuple[tuple[int, int, int], tuple[int, int, int]]

    @property
    def description(self) -> str:
        where = f" in {self.level}" if self.level else ""
        if self.screw:
            return f"bone cement around screw {self.screw} (cement-augmented screw){where}"
        return f"bone cement{where} (vertebroplasty / kyphoplasty)"


@dataclass(frozen=True, eq=False)
class Implants:
    """Everything metal in a CT.

    Attributes
    ----------
    screws, rods, cages, other : tuples of the objects, screws cranial to caudal.
    connectors : cross-links (transverse rod connectors), cranial to caudal.
    cement : bone cement (vertebroplasty, cement-augmented screws) above the metal threshold;
        never a screw, rod or cage, and not in ``other``.
    metal_mask : bool [k, j, i]
        Metal voxels after streak removal (all objects, including other metal).
    threshold_hu : float
    warnings : tuple of str
    timings_s : dict
        Seconds per stage (for the benchmark).
    """

    screws: tuple[Screw, ...]
    rods: tuple[Rod, ...]
    cages: tuple[Cage, ...]
    other: tuple[OtherMetal, ...]
    metal_mask: np.ndarray
    threshold_hu: float
    warnings: tuple[str, ...] = ()
    timings_s: dict = field(default_factory=dict)
    connectors: tuple[Connector, ...] = ()
    cement: tuple[Cement, ...] = ()

    def screw(self, screw_id: str) -> Screw:
        for s in self.screws:
            if s.id == screw_id:
                return s
        raise KeyError(f"no screw {screw_id!r}; found: {', '.join(s.id for s in self.screws)}")
