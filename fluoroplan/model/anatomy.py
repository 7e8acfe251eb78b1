"""A vertebra as the analysis finds it (or a label map gives it): its body planes, its
pedicles, its canal at the narrowest section. Frozen dataclasses in LPS mm, produced by
:mod:`fluoroplan.segmentation`; their JSON forms are in :mod:`fluoroplan.io.analysis_json`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# --- the label volume: each vertebra's label_value (1..n) on its bone, SACRUM_BELOW_S1 (254) on
# the fused sacrum below S1, and these values on the structures a needle must keep clear of or
# must not cross. None of them is a vertebra: an implant or a point there has no level.
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


@dataclass(frozen=True, eq=False)
class Plane:
    """A plane through ``point_lps`` with unit ``normal_lps`` (LPS mm)."""

    point_lps: np.ndarray
    normal_lps: np.ndarray


@dataclass(frozen=True, eq=False)
class Pedicle:
    """Axis and isthmus of one pedicle.

    ``axis_point_lps`` is the centre of the narrowest cross-section; ``axis_dir_lps`` is a unit
    vector along the pedicle pointing anteriorly (from the posterior elements into the body);
    ``narrowest_width_mm`` is the smallest transverse (medio-lateral) width perpendicular to the
    axis, bone plus anything occupying it (a screw).
    """

    side: str
    axis_point_lps: np.ndarray
    axis_dir_lps: np.ndarray
    narrowest_width_mm: float
    height_mm: float


@dataclass(frozen=True, eq=False)
class Vertebra:
    """A vertebra found in a CT (or read from a label map), with its measurements.

    Attributes
    ----------
    label : str
        ``"L3"``, ``"T12"``, ``"S1"`` (the sacrum), or ``"V1".."Vn"`` when no anchor is known.
    label_confident : bool
        True when the label comes from the user, an anchor in view, or a label map.
    label_source : str
        ``"anchor:T12-last-rib"``, ``"anchor:sacrum"``, ``"user"``, ``"label-map"`` or ``"none"``.
    index : int
        Position cranial to caudal (0 = most cranial found); stable under relabelling.
    label_value : int
        Value of this vertebra in :attr:`Anatomy.labels`.
    kind : str
        ``"vertebra"`` or ``"sacrum"``.
    complete : bool
        False when the body is cut by the edge of the scan (its heights are then not reliable).
    centroid_lps : ndarray (3,)
        Centroid of the vertebral *body*.
    vertebra_centroid_lps : ndarray (3,)
        Centroid of the whole vertebra label (body and posterior elements), as a TotalSegmentator
        vertebra label defines it.
    axis_lps, posterior_lps : ndarray (3,)
        Unit cranial body axis and unit posterior direction (body toward canal).
    superior_endplate, inferior_endplate, posterior_wall : Plane or None
        Fitted planes; endplate normals point out of the body (cranial / caudal), the posterior
        wall normal points posterior.
    heights_mm : dict
        ``anterior``, ``middle``, ``posterior`` body heights along the body axis, measured in the
        mid-sagittal band at 12 %, 50 % and 88 % of the body's antero-posterior depth.
    expected_height_mm : float or None
        Height expected from the neighbours (median of their largest heights).
    height_loss : float or None
        Largest fractional loss used for the grade (0..1).
    fracture_grade : int or None
        Genant semi-quantitative grade 0..3 (None if the body is incomplete).
    pedicle_left, pedicle_right : Pedicle or None
    canal_center_lps : ndarray (3,) ; canal_radius_mm : float
        Spinal canal at the level of this vertebra (equivalent-circle radius).
    rib_heads_lps : ndarray (n, 3)
        Medial ends of ribs attached to this vertebra (thoracic levels), empty otherwise.
    bbox_ijk : tuple
        ``((i0, j0, k0), (i1, j1, k1))`` half-open voxel box of the vertebra label in the CT grid.
    volume_ml : float
        Volume of the vertebra label.
    body_width_mm, body_depth_mm : float or None
        The body's left-right width and antero-posterior depth where they are known (a phantom
        draws them); None when not measured (the planner then takes the depth from the
        posterior wall).
    left_lps : ndarray (3,) or None
        The vertebra's own left axis where its whole frame is known (a phantom's drawn frame:
        then ``axis_lps``, ``posterior_lps`` and this are its axes as given); None when it
        follows from the other two (posterior x cranial).
    """

    label: str
    label_confident: bool
    label_source: str
    index: int
    label_value: int
    kind: str
    complete: bool
    centroid_lps: np.ndarray
    vertebra_centroid_lps: np.ndarray
    axis_lps: np.ndarray
    posterior_lps: np.ndarray
    superior_endplate: Plane | None
    inferior_endplate: Plane | None
    posterior_wall: Plane | None
    heights_mm: dict
    expected_height_mm: float | None
    height_loss: float | None
    fracture_grade: int | None
    pedicle_left: Pedicle | None
    pedicle_right: Pedicle | None
    canal_center_lps: np.ndarray | None
    canal_radius_mm: float | None
    rib_heads_lps: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    bbox_ijk: tuple = ((0, 0, 0), (0, 0, 0))
    volume_ml: float = 0.0
    body_width_mm: float | None = None
    body_depth_mm: float | None = None
    left_lps: np.ndarray | None = None

    @property
    def has_ribs(self) -> bool:
        return len(self.rib_heads_lps) > 0


@dataclass(frozen=True, eq=False)
class CanalLevel:
    """One vertebra's stretch of the canal, measured at its narrowest section (perpendicular to
    the centreline): area, left-right width, antero-posterior depth, the section's centre, and
    whether the bony ring is closed there (else the boundary was partly interpolated)."""

    label: str
    area_mm2: float
    width_mm: float
    depth_mm: float
    narrowest_lps: np.ndarray
    closed: bool
