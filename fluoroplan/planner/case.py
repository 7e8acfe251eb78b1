"""The case a planner works on: the CT and what the analysis found, in one normalised form.

The planner plans from the analysis as stored (``fluoroplan.analysis/1``: what ``fluoroplan
analyze`` writes, its numbers rounded as in the file), so that a plan made from a saved analysis
is the plan the workstation made, and tests can plan on a phantom's ground truth as well as on
the segmentation's output. :mod:`fluoroplan.io.analysis_json` reads the stored vertebrae,
screws, rods, cages, cross-links and other metal into the model's objects
(:mod:`fluoroplan.model`), which the planner uses; :class:`VertebraGeom` is the planner's own
frame of a model vertebra (:func:`vertebra_frame`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

from fluoroplan.io.analysis_json import findings_from_json
from fluoroplan.io.volume import CTVolume
from fluoroplan.model.anatomy import CANAL_LABEL, FORAMEN_LABEL, Plane, Vertebra
from fluoroplan.model.findings import Findings
from fluoroplan.model.implants import Cage, Connector, OtherMetal, Rod, Screw
from fluoroplan.segmentation.label_volume import labels_for_analysis

PROCEDURE_POSITION = "HFP"
"""Vertebral augmentation is done prone (CONVENTIONS.md); head first unless the user says so."""
METAL_HU = 2000.0
"""Voxels at or above this are metal for clearance checks (titanium reads >= ~2500 HU)."""
BONE_HU = 150.0
AIR_HU = -400.0
BODY_HU = -300.0


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


@dataclass(frozen=True, eq=False)
class VertebraGeom:
    """The planner's frame of a vertebra: its body centroid and (left, posterior, cranial)
    axes, the body's depth, width and height, with the model's planes
    (:class:`~fluoroplan.model.anatomy.Plane`) and pedicles
    (:class:`~fluoroplan.model.anatomy.Pedicle`). Derived, by :func:`vertebra_frame`, from the
    model's :class:`~fluoroplan.model.anatomy.Vertebra`."""

    label: str
    centroid_lps: np.ndarray  # body centroid
    axis_lps: np.ndarray  # unit, cranial
    posterior_lps: np.ndarray  # unit, from the body toward the canal
    left_lps: np.ndarray  # unit, patient's left in the vertebra's frame
    body_depth_mm: float
    body_width_mm: float
    body_height_mm: float
    fracture_grade: int
    superior_endplate: Plane | None  # normal outward, toward the disc
    inferior_endplate: Plane | None
    posterior_wall: Plane | None  # normal toward posterior
    pedicles: dict  # side -> Pedicle
    canal_center_lps: np.ndarray | None  # the canal's centre at this level (the midline)
    rib_heads_lps: dict  # side -> point
    thoracic: bool

    def to_local(self, p_lps: np.ndarray) -> np.ndarray:
        """(left, posterior, cranial) mm of points relative to the body centroid."""
        d = np.atleast_2d(p_lps) - self.centroid_lps
        return np.stack([d @ self.left_lps, d @ self.posterior_lps, d @ self.axis_lps], axis=-1)

    def from_local(self, lpc: npt.ArrayLike) -> np.ndarray:
        lpc = np.atleast_2d(lpc)
        return (
            self.centroid_lps
            + lpc[:, :1] * self.left_lps
            + lpc[:, 1:2] * self.posterior_lps
            + lpc[:, 2:3] * self.axis_lps
        )

    def posterior_wall_offset_mm(self) -> float:
        """Distance from the body centroid to the posterior wall, posteriorly."""
        if self.posterior_wall is not None:
            return float((self.posterior_wall.point_lps - self.centroid_lps) @ self.posterior_lps)
        return self.body_depth_mm / 2.0

    def anterior_third_point(self) -> np.ndarray:
        """Midline point in the anterior third of the body, halfway between the endplates."""
        back = self.posterior_wall_offset_mm()
        front = back - self.body_depth_mm
        # centre of the anterior third: 1/6 of the depth behind the anterior cortex
        p = front + self.body_depth_mm / 6.0 + 1.0
        mid_height = 0.0
        if self.superior_endplate is not None and self.inferior_endplate is not None:
            sup = (self.superior_endplate.point_lps - self.centroid_lps) @ self.axis_lps
            inf = (self.inferior_endplate.point_lps - self.centroid_lps) @ self.axis_lps
            mid_height = 0.5 * (sup + inf)
        return self.from_local([0.0, p, mid_height])[0]


def vertebra_frame(v: Vertebra) -> VertebraGeom:
    """The planner's frame of a model vertebra: its own frame when it has one (``left_lps``),
    else the posterior direction made perpendicular to the body axis and left = posterior x
    cranial (LPS is right-handed); the body's depth as
    measured, else twice the centroid's distance to the posterior wall (15 mm without one);
    its width as measured, else 40 mm; its height the largest of its heights (25 mm without
    any); rib heads given sides by where they lie."""
    c = np.asarray(v.centroid_lps, float)
    cran = np.asarray(v.axis_lps, float)  # the model's directions are unit vectors
    post = np.asarray(v.posterior_lps, float)
    if v.left_lps is not None:  # the whole frame given (a phantom's): used as it is
        left = np.asarray(v.left_lps, float)
    else:
        post = _unit(post - (post @ cran) * cran)
        left = _unit(np.cross(post, cran))
    hmax = max([h for h in v.heights_mm.values() if h] or [25.0])
    pw = v.posterior_wall
    depth = v.body_depth_mm
    if depth is None:
        back = float((pw.point_lps - c) @ post) if pw is not None else 15.0
        depth = 2.0 * back
    pedicles = {p.side: p for p in (v.pedicle_left, v.pedicle_right) if p is not None}
    ribs = {("left" if (p - c) @ left > 0 else "right"): np.asarray(p, float)
            for p in np.asarray(v.rib_heads_lps, float).reshape(-1, 3)}
    return VertebraGeom(
        label=v.label,
        centroid_lps=c,
        axis_lps=cran,
        posterior_lps=post,
        left_lps=left,
        body_depth_mm=float(depth),
        body_width_mm=float(40.0 if v.body_width_mm is None else v.body_width_mm),
        body_height_mm=float(hmax),
        fracture_grade=int(v.fracture_grade or 0),
        superior_endplate=v.superior_endplate,
        inferior_endplate=v.inferior_endplate,
        posterior_wall=pw,
        pedicles=pedicles,
        canal_center_lps=v.canal_center_lps,
        rib_heads_lps=ribs,
        thoracic=v.label.upper().startswith("T") or bool(ribs),
    )


@dataclass(eq=False)
class PlanningCase:
    """The CT plus the analysis, with the spatial look-ups the checks need (built once).

    ``labels`` is the analysis' label volume (each vertebra's value on its bone, the spinal
    canal's lumen, the lumbar foramina, the ilia and the ribs: ``model.anatomy``);
    ``label_values`` names the vertebrae's values ({"L2": 4}). Without them (a saved analysis,
    a phantom's ground truth) the anatomy is measured again on the CT
    (:func:`fluoroplan.segmentation.label_volume.labels_for_analysis`): the canal and the bone a
    path crosses are always the CT's own voxels, never a shape stand-in.
    """

    volume: CTVolume  # hu [k,j,i] int16, lps_from_ijk
    analysis: dict
    vertebrae: list[VertebraGeom] = field(default_factory=list)
    screws: list[Screw] = field(default_factory=list)
    rods: list[Rod] = field(default_factory=list)
    cages: list[Cage] = field(default_factory=list)
    connectors: list[Connector] = field(default_factory=list)
    other_metal: list[OtherMetal] = field(default_factory=list)
    findings: Findings = field(default_factory=Findings)
    metal_hu: float = METAL_HU
    procedure_position: str = PROCEDURE_POSITION
    labels: np.ndarray | None = None
    label_values: dict | None = None

    def __post_init__(self) -> None:
        a = self.analysis
        self.findings = findings_from_json(a)
        f = self.findings
        self.vertebrae = [vertebra_frame(v) for v in f.vertebrae]
        self.screws = list(f.screws)
        self.rods = list(f.rods)
        self.cages = list(f.cages)
        self.connectors = list(f.connectors)
        self.other_metal = list(f.other_metal)
        self._build_labels()
        self._build_metal()
        self._build_canal()
        self._build_body()

    # --- look-ups -------------------------------------------------------------------------
    @property
    def patient_position(self) -> str:
        """How the patient lies on the angiosuite table for the procedure (default prone, head
        first), which is what C-arm table angles and room-terms sentences refer to. The CT may
        have been acquired in another position (``volume.patient_position``): patient-relative
        anatomy does not change, the room words do."""
        return self.procedure_position

    def vertebra(self, label: str) -> VertebraGeom:
        for v in self.vertebrae:
            if v.label.upper() == label.upper():
                return v
        raise KeyError(f"no vertebra {label}; the analysis has {[v.label for v in self.vertebrae]}")

    def screw(self, screw_id: str) -> Screw:
        return self.findings.screw(screw_id)

    def nearest_vertebra(self, p_lps: np.ndarray) -> VertebraGeom:
        d = [np.linalg.norm(v.centroid_lps - p_lps) for v in self.vertebrae]
        return self.vertebrae[int(np.argmin(d))]

    # --- the label volume -----------------------------------------------------------------
    def _build_labels(self) -> None:
        if self.labels is None:
            self.labels, values = labels_for_analysis(self.volume, self.analysis, self.metal_hu)
            self.label_values = {**values, **(self.label_values or {})}
        elif self.labels.shape != self.volume.hu.shape:
            raise ValueError(f"the label volume has shape {self.labels.shape} but the CT has "
                             f"{self.volume.hu.shape}")
        if not self.label_values:
            self.label_values = {str(v["label"]).upper(): int(v["label_value"])
                                 for v in self.analysis.get("vertebrae", [])
                                 if v.get("label_value") is not None}
        self.label_values = {str(k).upper(): int(v) for k, v in self.label_values.items()}
        self.label_names = {v: k for k, v in self.label_values.items()}
        self._label_points: dict[tuple[int, bool], tuple] = {}

    def label_at(self, pts_lps: np.ndarray) -> np.ndarray:
        """Label value at the nearest voxel of each point (0 outside the CT)."""
        ijk = np.rint(self.volume.ijk_from_lps_points(np.atleast_2d(pts_lps))).astype(int)
        assert self.labels is not None  # built in __post_init__
        nk, nj, ni = self.labels.shape
        ok = ((ijk >= 0) & (ijk < np.array([ni, nj, nk]))).all(axis=1)
        out = np.zeros(len(ijk), np.int64)
        out[ok] = self.labels[ijk[ok, 2], ijk[ok, 1], ijk[ok, 0]]
        return out

    def label_value(self, level: str) -> int | None:
        """The label value of the vertebra named ``level`` (None when the labels lack it)."""
        return (self.label_values or {}).get(str(level).upper())

    def label_points(self, value: int, surface: bool = False):
        """(LPS points, KD-tree) of the voxels of one label value, or of the faces between its
        voxels and the rest (``surface``: each face centre half a voxel from both voxels), so
        that a distance to them is a distance to the structure's boundary. Cached."""
        key = (int(value), bool(surface))
        if key not in self._label_points:
            assert self.labels is not None  # built in __post_init__
            self._label_points[key] = _label_points(self.labels, self.volume, int(value), surface)
        return self._label_points[key]

    # --- metal ----------------------------------------------------------------------------
    def _build_metal(self) -> None:
        hu = self.volume.hu
        kji = np.argwhere(hu >= self.metal_hu)
        self.metal_voxel_mm = float(np.max(self.volume.spacing_mm))
        if len(kji) > 400_000:  # keep the tree small: a surface-ish subsample suffices
            kji = kji[:: int(np.ceil(len(kji) / 400_000))]
        self.metal_lps = self.volume.lps_from_ijk_points(kji[:, ::-1]) if len(kji) else np.zeros((0, 3))
        self._metal_tree = cKDTree(self.metal_lps) if len(self.metal_lps) else None
        # which screw shaft (if any) each metal point belongs to
        owner = np.full(len(self.metal_lps), -1, int)
        for n, s in enumerate(self.screws):
            d, t = _dist_to_segment(self.metal_lps, s.head_lps, s.tip_lps)
            on_shaft = (d <= s.diameter_mm / 2 + 1.0) & (t >= -0.5) & (t <= s.length_mm + 1.5)
            owner[on_shaft] = n
        self.metal_owner = owner
        self._trees_without: dict[int, cKDTree | None] = {}

    def metal_distance(self, pts_lps: np.ndarray, exclude_screw: str | None = None,
                       min_only: bool = False, upto: float | None = None) -> np.ndarray:
        """Distance (mm) from points to the nearest metal voxel *surface* (voxel centre minus half
        a voxel), optionally ignoring one screw's shaft; +inf without metal. Always measured
        (no search range). ``min_only``: only the smallest of them is exact (the others are
        at least it; see :func:`_nearest`), which is all a clearance needs and much faster
        for a path far from all metal."""
        tree = self._metal_tree
        if exclude_screw is not None:
            n = [s.id for s in self.screws].index(exclude_screw)
            if n not in self._trees_without:
                keep = self.metal_owner != n
                self._trees_without[n] = cKDTree(self.metal_lps[keep]) if keep.any() else None
            tree = self._trees_without[n]
        if tree is None:
            return np.full(len(pts_lps), np.inf)
        return _nearest(tree, pts_lps, min_only, upto) - 0.5 * self.metal_voxel_mm

    def metal_within(self, pts_lps: np.ndarray, mm: float) -> np.ndarray:
        """True for points whose distance to a metal voxel's surface is at most ``mm``."""
        if self._metal_tree is None:
            return np.zeros(len(pts_lps), bool)
        d, _ = self._metal_tree.query(pts_lps, k=1,
                                      distance_upper_bound=mm + 0.5 * self.metal_voxel_mm)
        return np.isfinite(d)

    # --- canal ----------------------------------------------------------------------------
    def _build_canal(self) -> None:
        self._canal_pts, self._canal_tree = self.label_points(CANAL_LABEL, surface=True)
        self._foramen_pts, self._foramen_tree = self.label_points(FORAMEN_LABEL)
        self._outline: dict[str, tuple | None] = {}

    @property
    def canal_known(self) -> bool:
        """Is the spinal canal's lumen known (segmented in the label volume)?"""
        return self._canal_tree is not None

    def canal_clearance(self, pts_lps: np.ndarray, min_only: bool = False,
                        upto: float | None = None) -> np.ndarray:
        """Signed distance (mm) from points to the lumen's boundary: > 0 outside the canal,
        < 0 inside (the depth inside it); +inf when the canal is unknown. ``min_only``: the
        smallest and every negative value are exact, the others at least the smallest."""

        pts_lps = np.atleast_2d(pts_lps)
        if self._canal_tree is None:
            return np.full(len(pts_lps), np.inf)
        d = _nearest(self._canal_tree, pts_lps, min_only, upto)
        inside = self.label_at(pts_lps) == CANAL_LABEL
        if inside.any() and min_only:  # the depth of every point inside, exactly
            d[inside], _ = self._canal_tree.query(pts_lps[inside], k=1)
        return np.where(inside, -d, d)

    @property
    def foramen_known(self) -> bool:
        """Were lumbar neural foramina found (in the label volume)?"""
        return self._foramen_tree is not None

    def foramen_distance(self, pts_lps: np.ndarray, min_only: bool = False,
                         upto: float | None = None) -> np.ndarray:
        """Distance (mm) from points to the nearest lumbar neural foramen voxel's surface;
        +inf when none was found (``min_only`` as for :meth:`metal_distance`)."""
        if self._foramen_tree is None:
            return np.full(len(np.atleast_2d(pts_lps)), np.inf)
        d = _nearest(self._foramen_tree, np.atleast_2d(pts_lps), min_only, upto)
        return d - 0.5 * float(np.min(self.volume.spacing_mm))

    def canal_outline(self, vert: VertebraGeom):
        """The canal's outline on a straight AP view of ``vert``: per 1 mm of height along its
        axis, the most left and most right (vertebra frame) of the lumen's boundary within its
        span - the medial pedicle walls at the pedicles. ``(heights, left, right)`` in the
        vertebra's local mm, or None when no lumen lies there."""
        if vert.label in self._outline:
            return self._outline[vert.label]
        out = None
        if self._canal_pts is not None and len(self._canal_pts):
            half = 0.5 * vert.body_height_mm + 6.0
            wall = vert.posterior_wall_offset_mm()
            loc = vert.to_local(self._canal_pts)
            near = ((np.abs(loc[:, 2]) <= half) & (loc[:, 1] >= wall - 6.0)
                    & (loc[:, 1] <= wall + 35.0) & (np.abs(loc[:, 0]) <= 30.0))
            loc = loc[near]
            if len(loc):
                b = np.floor(loc[:, 2]).astype(int)
                lo = int(b.min())
                idx = b - lo
                n = int(idx.max()) + 1
                left = np.full(n, -np.inf)
                right = np.full(n, np.inf)
                np.maximum.at(left, idx, loc[:, 0])
                np.minimum.at(right, idx, loc[:, 0])
                ok = np.isfinite(left)
                h = lo + np.arange(n) + 0.5
                out = (h[ok], left[ok], right[ok])
        self._outline[vert.label] = out
        return out

    # --- body (skin) -----------------------------------------------------------------------
    def _build_body(self) -> None:
        """The patient's body on a ~3 mm grid: per slice, the largest connected region of tissue
        after a small opening (which detaches the CT table and mattress), holes filled (lungs
        and bowel gas are inside the body)."""
        from scipy import ndimage as ndi

        sp = np.asarray(self.volume.spacing_mm, dtype=float)  # i, j, k
        f = np.maximum(1, np.round(3.0 / sp).astype(int))
        hu = self.volume.hu[:: f[2], :: f[1], :: f[0]]
        tissue = hu > BODY_HU
        body = np.zeros_like(tissue)
        st = ndi.generate_binary_structure(2, 1)
        for k in range(tissue.shape[0]):
            sl = ndi.binary_opening(tissue[k], structure=st, iterations=1)
            lab, n = ndi.label(sl)
            if n == 0:
                continue
            sizes = np.bincount(lab.ravel())[1:]
            body[k] = ndi.binary_fill_holes(lab == (1 + int(np.argmax(sizes))))
        self._body = body
        self._body_step = f

    def in_body(self, pts_lps: np.ndarray) -> np.ndarray:
        """True for points inside the patient's body (skin outline, table excluded)."""
        ijk = np.rint(self.volume.ijk_from_lps_points(pts_lps) / self._body_step).astype(int)
        nk, nj, ni = self._body.shape
        ok = ((ijk >= 0) & (ijk < np.array([ni, nj, nk]))).all(axis=1)
        out = np.zeros(len(ijk), bool)
        out[ok] = self._body[ijk[ok, 2], ijk[ok, 1], ijk[ok, 0]]
        return out

    # --- HU sampling ----------------------------------------------------------------------
    def hu_at(self, pts_lps: np.ndarray) -> np.ndarray:
        return self.volume.hu_at_lps(pts_lps, outside=-1024).astype(np.float32)

    def inside_volume(self, pts_lps: np.ndarray, margin: float = 0.0) -> np.ndarray:
        ijk = self.volume.ijk_from_lps_points(pts_lps)
        n = np.asarray(self.volume.shape_ijk, dtype=float)
        return np.all((ijk >= -0.5 + margin) & (ijk <= n - 0.5 - margin), axis=1)

    def skin_entry(self, target_lps: np.ndarray, n_lps: np.ndarray, max_mm: float = 260.0):
        """Where the line ending at ``target_lps`` along ``n_lps`` crosses the skin.

        Walks in from outside (``max_mm`` back along the line) to the first voxel of the body
        outline, so the CT table is not taken for the patient and air inside the body (lung,
        bowel) not for the outside; then refines the skin to the first tissue voxel (HU) within
        that outline. Returns None when the line leaves the scanned volume before reaching
        the skin.
        """
        n_lps = _unit(n_lps)
        s = np.arange(max_mm, 0.0, -0.5)
        pts = target_lps[None, :] - s[:, None] * n_lps[None, :]
        inside = self.inside_volume(pts)
        body = self.in_body(pts) & inside
        if not body.any():
            return None
        first = int(np.argmax(body))
        if first == 0 or not inside[first - 1]:
            return None  # the far end is already in the body: the skin is out of the field of view
        # the skin is the outer end of the run of tissue that leads into the body outline's
        # first voxel (not a CT table or a mattress a few mm outside it, across an air gap)
        lo = max(0, first - 6)
        tissue = self.hu_at(pts[lo: first + 7]) > BODY_HU
        j = first - lo
        if not tissue[j]:
            after = np.nonzero(tissue[j:])[0]
            return pts[lo + j + int(after[0])] if len(after) else pts[first]
        while j > 0 and tissue[j - 1]:
            j -= 1
        return pts[lo + j]


NEAR_MM = 20.0
"""Distances are first searched this far; a path with nothing that close is measured on every
eighth point and then refined (:func:`_nearest`)."""


def _nearest(tree: cKDTree, pts: np.ndarray, min_only: bool, upto: float | None = None
             ) -> np.ndarray:
    """Distance from each point to the tree's nearest point. With ``min_only`` only the
    smallest is guaranteed exact and every other value is at least that smallest (never a
    number below a true distance): points nearer than ``NEAR_MM`` are exact; when there is
    none, the exact distances of every eighth point bound the minimum from above, and a search
    bounded by it finds the exact minimum among all points. ``upto``: search only that far,
    a point with nothing nearer reads ``upto`` (at least that: the search's quick screening,
    whose values are never reported)."""
    if upto is not None:
        d, _ = tree.query(pts, k=1, distance_upper_bound=upto)
        return np.where(np.isfinite(d), d, upto)
    if not min_only or len(pts) <= 8:
        return tree.query(pts, k=1)[0]
    d, _ = tree.query(pts, k=1, distance_upper_bound=NEAR_MM)
    if np.isfinite(d).any():
        return np.where(np.isfinite(d), d, NEAR_MM)
    coarse = tree.query(pts[::8], k=1)[0]
    m = float(coarse.min())
    d, _ = tree.query(pts, k=1, distance_upper_bound=m + 1e-6)
    d[::8] = np.minimum(d[::8], coarse)
    return np.where(np.isfinite(d), d, m)


def _label_points(labels: np.ndarray, volume, value: int, surface: bool):
    """LPS points of a label's voxels (or of its boundary faces) and their KD-tree; (None,
    None) when the label is absent."""
    from scipy import ndimage as ndi

    mask = labels == value
    boxes = ndi.find_objects(mask.view(np.uint8))
    if not boxes or boxes[0] is None:
        return None, None
    box = boxes[0]
    sub = np.pad(mask[box], 1)
    off = np.array([sl.start for sl in box], float) - 1.0  # k, j, i of sub[0, 0, 0]
    if not surface:
        kji = np.argwhere(sub).astype(float) + off
    else:
        faces = []
        for ax in range(3):
            diff = np.diff(sub.view(np.int8), axis=ax) != 0
            f = np.argwhere(diff).astype(float)
            f[:, ax] += 0.5
            faces.append(f)
        kji = np.concatenate(faces) + off
    pts = volume.lps_from_ijk_points(kji[:, ::-1])
    return pts, cKDTree(pts)


def _dist_to_segment(p: np.ndarray, a: np.ndarray, b: np.ndarray):
    """Distance of points to segment ab and the position (mm from a) of their projection."""
    ab = b - a
    L = float(np.linalg.norm(ab))
    u = ab / L
    t = (p - a) @ u
    tc = np.clip(t, 0.0, L)
    closest = a[None, :] + tc[:, None] * u[None, :]
    return np.linalg.norm(p - closest, axis=1), t


dist_to_segment = _dist_to_segment
