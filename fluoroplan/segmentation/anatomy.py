"""Spine anatomy from a CT: bone, spinal canal, vertebrae separated and measured, level labels.

Method (no per-voxel Python loops; scipy.ndimage and SimpleITK filters):

1. The CT is viewed in a canonical orientation (axes S, P, L) and averaged into blocks of about
   ``GRID_MM`` (metal counts as bone-occupying, never as density).
2. **Canal.** On every axial slice, bone holes (regions of soft-tissue density enclosed by bone)
   of canal size with a thick bone mass (a body) in front of them are canal candidates; the
   longest chain of candidates that continues smoothly from slice to slice is the spinal canal.
   No chain over several levels means no spine (:class:`NoSpineFound`).
3. **Bodies.** The body centreline runs parallel to the canal at the middle of the body's depth,
   read from the density profile along the midline ray in front of the canal, averaged over
   about two vertebral periods (discs and dark osteoporotic interiors do not move it). Bone is
   thresholded half-way between the disc level and the body level of the profile along that
   line (adaptive: low in osteoporotic bone), its holes are filled slice-wise inside the body's
   own region (a dark cancellous interior inside a cortex counts; rib heads cannot close a
   ring around a disc), and the *fraction of the body section that is filled bone* is taken
   every millimetre along the line (it gives the vertebral period by autocorrelation, and
   where bone is). Discs are found on the CT's *native voxels* in a thin tube around the line
   at mid-body: a disc is a dip between two bright endplates close on either side (within
   ``DISC_REACH_MM``), both brighter than the body interior around them, while a body's dark
   interior lies between cortices a body's height apart (a thin thoracic disc vanishes on the
   block grid, where a dark interior looks like a gap). Discs are the chain of these dips whose
   spacings fit the period, with bone on both sides and a minimum body height, so a body is
   never split; metal in a disc space (cage) or a run two periods long (fusion) is split at the
   expected level. The sacrum is the last body when it is much wider than the bodies above it
   (alae, sacro-iliac joints).
4. **Whole vertebrae.** Each body section between its two disc planes is one vertebra's seed,
   with its pedicles (beside the canal, upper half of the body) and the junction of its laminae
   (behind the canal, lower half of the body to the disc below); a marker watershed on the bone
   distance map gives the rest of each posterior arch to its own body, lateral bone and bone
   well in front of the body (a contrast-filled aorta, a stent graft) to the background. The
   label map also takes each body's dark interior where its thin posterior wall is not bone at
   the threshold (closed by the canal's front edge, a voxel's gap in a thin cortex bridged; up
   to the scan's edge where the body is cut by it). A body cut by the top of the scan has the
   arch of the vertebra above behind it (laminae and spinous process slope caudally): midline
   arch bone above the cut body's mid-height (from the height of the whole bodies below) seeds
   that vertebra, reported as a partial one (``complete=False``, arch only, not measured).
   Ribs are the background bone leaving the column laterally (or the edge of a
   cropped scan beside the canal) that touches a vertebra on both sides; their medial ends are
   the rib heads.
5. **Measurements** per vertebra at full resolution in its own frame (``vertebrae.measure_body``),
   measured again along the endplates' own axis when it differs from the centreline's, and the
   Genant grade against its neighbours. A height is read only where both ends of the body drop
   into something darker than bone (a disc); a body whose heights are missing, biconvex (no
   wedge, biconcave or crush shape) or much taller than its neighbours' is not graded, with a
   warning saying why (``vertebrae.grade_heights``): never a confident grade on ends that are
   not endplates.
6. **Levels** from an anchor (the sacrum, or the last rib-bearing vertebra = T12 when every
   vertebra above it bears ribs), else V1..Vn with ``label_confident`` False.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from fluoroplan.geometry.conventions import TITANIUM_MIN_HU
from fluoroplan.io.progress import CancelToken, ProgressCallback
from fluoroplan.io.volume import CTVolume
from fluoroplan.segmentation import levels as lv
from fluoroplan.segmentation.errors import AnatomyError, NoSpineFound
from fluoroplan.segmentation.vertebrae import (
    BONE_HU,
    SACRUM_BELOW_S1,
    Vertebra,
    VolumeSampler,
    _fill_holes_2d,
    grade_bounds,
    grade_heights,
    measure_body,
)

sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK warnings never reach the terminal

GRID_MM = 2.0
"""Block size of the working grid for finding and separating vertebrae."""
GRID_BONE_HU = 140.0
"""Bone on the ~2 mm block-averaged grid: low enough for osteoporotic cortex blurred by 3 mm
voxels, high enough to leave muscle, disc and cerebrospinal fluid out."""
CANAL_MAX_HU = 55.0
"""Smoothed HU of the canal's content (cerebrospinal fluid, cord, fat) at most."""
CANAL_WALL_HU = 75.0
"""Smoothed HU of bone around the canal (osteoporotic bodies blurred by 3 mm voxels reach ~80)."""
MIDLINE_MM = 60.0
"""The canal lies within this distance of the body outline's left-right centre."""
CANAL_AREA_MM2 = (20.0, 700.0)
"""Area of an axial canal section (mm^2), least and most."""
ROI_LATERAL_MM = 72.0
"""The column's working box reaches this far beside the canal track."""
_DEBUG: dict | None = None  # set to a dict to collect intermediate profiles (bench, tests)
RIB_EDGE_MM = 60.0
"""Bone this far beside the canal is rib or pelvis, never vertebra."""
RIB_EXIT_MM = 15.0
"""Bone leaving a cropped scan behind the spine this far beside the canal's edge is a rib."""
PERIOD_MM = (20, 60)
"""Range of vertebral periods (body + disc height, mm) looked for along the column."""
MIN_BODY_MM = 15.0
"""No vertebral body (even a crushed one) is shorter than this along the column."""
MIN_GAP_FRAC = 0.65
"""Two discs are never closer than this fraction of the vertebral period."""
BODY_RAY_MM = 90.0
"""Length of the ray from the canal centre toward anterior that finds the body's depth."""
BODY_BACK_MM = 25.0
"""The body's back half lies within this distance in front of the canal."""
BODY_MAX_DEPTH_MM = 60.0
"""No vertebral body is deeper (antero-posterior) than this."""
BODY_LINE_MM = 70.0
"""Window of the running median that smooths the body centreline's distance from the canal."""
BODY_REACH = 1.3
"""The body section reaches this many body half-widths (the deepest bone distance) from its axis."""
FRONT_MARGIN_MM = 4.0
"""Labels end this far in front of the body section (osteophytes); beyond is not the column."""
SHUT_BACK_MM = 3.0
"""A body's dark interior closed by the canal's front edge is taken this far from that edge and
from the body's ends."""
PEDICLE_REACH_MM = 14.0
"""Pedicle seeds reach this far beside the canal's edge."""
ARCH_MIN_MM3 = 300.0
"""Least posterior arch, alone at the top of the scan, reported as a partial vertebra."""
CENTROID_SUBSAMPLE_VOXELS = 20_000_000
"""Label volumes larger than this give their centroids from every second voxel."""
BODY_HALF_WIDTH_MM = 32.0
"""Half the widest vertebral body (L5, ~60 mm)."""
ARCH_HALF_WIDTH_MM = 5.0
ARCH_DEPTH_MM = 20.0
"""Seeds of the laminae's junction: this close to the midline, this deep behind the canal."""
AXIS_SMOOTH_MM = 6.0
"""Smoothing of the body centreline before its direction (the body axis) is taken."""
AXIS_REFINE_DEG = (4.0, 45.0)
"""A body is measured again along its endplates' axis when it differs by this much (deg)."""
DISC_FRAC_MAX = 0.8
"""A disc candidate: the filled-bone fraction of the body section falls below this."""
SACRUM_MIN_WIDTH_MM = 110.0
"""The sacrum's slab (alae, sacro-iliac joints) is at least this wide, and 1.6x the bodies above."""
S1_SEGMENT_BODIES = 1.0
"""S1 reaches this many heights of the body above it (L5) below the sacrum's top endplate."""
HEIGHT_UNCERTAINTY_VOXELS = 0.5
"""A body height is read to within this many of the CT's coarsest voxels (two ends at sub-voxel
half-way crossings); a grade that this uncertainty can change is flagged."""
IAP_FROM = 0.3
IAP_SIDE = (0.3, 4.0)
IAP_Y = (0.5, 10.0)
"""Seeds of a vertebra's inferior articular processes: from this fraction of its body's height
down to the body's lower end, between IAP_SIDE[0] canal radii and the canal's edge + IAP_SIDE[1]
mm beside the midline, from IAP_Y[0] canal radii behind the canal's centre to IAP_Y[1] mm behind
its back (medial and posterior to the superior articular processes of the vertebra below)."""


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------
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
        :func:`fluoroplan.segmentation.structures.add_structures` has run (the lumen and the
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

    def to_json(self) -> dict:
        """Vertebrae (each with its canal's narrowest section once the lumen is known), the
        canal's centreline, the pelvis, the warnings."""
        from fluoroplan.segmentation.structures import structures_json

        return structures_json(self, {
            "vertebrae": [{**v.to_json(), "label_value": int(v.label_value)}
                          for v in self.vertebrae],
            "canal": {
                "centerline_lps": [[round(float(c), 2) for c in p] for p in self.canal_centerline_lps],
            },
            "warnings": list(self.warnings),
        })


# --------------------------------------------------------------------------------------------
# orientation and the working grid
# --------------------------------------------------------------------------------------------
@dataclass
class _Canon:
    """The CT viewed with array axes (S, P, L) and the way back to the original axes."""

    perm: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    lps_from_cijk: np.ndarray

    def to_canon(self, a: np.ndarray) -> np.ndarray:
        c = a.transpose(self.perm)
        for ax, f in enumerate(self.flips):
            if f:
                c = np.flip(c, ax)
        return c

    def from_canon(self, c: np.ndarray) -> np.ndarray:
        for ax, f in enumerate(self.flips):
            if f:
                c = np.flip(c, ax)
        return np.ascontiguousarray(c.transpose(np.argsort(self.perm)))


def _canonical(volume: CTVolume) -> _Canon:
    A = volume.lps_from_ijk
    D = A[:3, :3]
    dom = np.argmax(np.abs(D), axis=0)  # dominant LPS axis of each of i, j, k
    if sorted(dom.tolist()) != [0, 1, 2]:
        raise AnatomyError(
            "The CT's voxel axes are too oblique to the patient axes to analyse the spine; "
            "reformat it to axial slices first."
        )
    a_of = [int(np.nonzero(dom == L)[0][0]) for L in range(3)]  # ijk axis along x, y, z
    sign = [np.sign(D[L, a_of[L]]) for L in range(3)]
    perm = (2 - a_of[2], 2 - a_of[1], 2 - a_of[0])
    flips = (sign[2] < 0, sign[1] < 0, sign[0] < 0)
    n_ijk = volume.shape_ijk
    M = np.eye(4)
    origin = A[:3, 3].copy()
    for L in range(3):
        col = A[:3, a_of[L]] * sign[L]
        M[:3, L] = col
        if sign[L] < 0:
            origin += A[:3, a_of[L]] * (n_ijk[a_of[L]] - 1)
    M[:3, 3] = origin
    return _Canon(perm, flips, M)


def _block_mean(c: np.ndarray, f: tuple[int, int, int], metal: np.ndarray | None):
    """Block mean of HU (metal replaced by bone-like 1000 HU so it occupies but never dominates)
    and block-any of metal. Reduced one axis at a time, so the full volume is read once."""
    n = tuple(s // k for s, k in zip(c.shape, f, strict=True))
    v = c[: n[0] * f[0], : n[1] * f[1], : n[2] * f[2]]
    m = metal[: n[0] * f[0], : n[1] * f[1], : n[2] * f[2]] if metal is not None else None
    acc = np.zeros((n[0],) + v.shape[1:], np.float32)
    macc = np.zeros((n[0],) + v.shape[1:], bool) if m is not None else None
    for dz in range(f[0]):
        vz = v[dz :: f[0]]
        if m is not None:
            mz = m[dz :: f[0]]
            np.add(acc, np.where(mz, np.int16(1000), vz), out=acc)
            macc |= mz
        else:
            np.add(acc, vz, out=acc)
    for ax in (1, 2):
        k = f[ax]
        if k == 1:
            continue
        sl = [slice(None)] * 3
        sl[ax] = slice(0, None, k)
        red = acc[tuple(sl)].copy()
        mred = macc[tuple(sl)].copy() if macc is not None else None
        for d in range(1, k):
            sl[ax] = slice(d, None, k)
            red += acc[tuple(sl)]
            if mred is not None:
                mred |= macc[tuple(sl)]
        acc, macc = red, mred
    acc /= float(np.prod(f))
    return acc, macc


def _report(progress, cancel, fraction, message):
    if cancel is not None:
        cancel.check()
    if progress is not None:
        progress(float(fraction), message)


# --------------------------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------------------------
def analyze_anatomy(
    volume: CTVolume,
    metal_mask: np.ndarray | None = None,
    levels: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Anatomy:
    """Find, separate, measure and label the vertebrae of a CT.

    Parameters
    ----------
    volume : CTVolume
        The CT (HU int16, indexed ``[k, j, i]``).
    metal_mask : ndarray bool (nk, nj, ni), optional
        Implant voxels (from the implant segmentation). Default: HU >= ``TITANIUM_MIN_HU``.
        Metal occupies bone for the separation but never counts as bone density.
    levels : str, optional
        The level of the most cranial vertebra fully in view (e.g. ``"L1"``); overrides the
        automatic labelling (``label_source="user"``).
    progress : callable ``progress(fraction, message)``, optional
    cancel : CancelToken, optional

    Returns
    -------
    Anatomy

    Raises
    ------
    NoSpineFound
        When the CT holds no spinal column (a head, a limb).
    Cancelled
        When ``cancel`` is set.
    """
    import time

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    warnings: list[str] = []
    _report(progress, cancel, 0.0, "Preparing the CT for the spine analysis")
    canon = _canonical(volume)
    spacing_ijk = volume.spacing_mm
    hu_c = canon.to_canon(volume.hu)
    if metal_mask is None:
        metal_mask = volume.hu >= np.int16(TITANIUM_MIN_HU)
    elif metal_mask.shape != volume.hu.shape:
        raise AnatomyError(
            f"The metal mask has shape {metal_mask.shape} but the CT has {volume.hu.shape}."
        )
    metal_c = canon.to_canon(np.asarray(metal_mask, bool))
    sp_full = np.array([spacing_ijk[list(canon.perm).index(a)] for a in range(3)])
    # spacing of the canonical axes (z, y, x): canonical axis ax came from hu axis perm[ax]
    sp_full = np.array([spacing_ijk[2 - canon.perm[ax]] for ax in range(3)])
    f = tuple(max(1, int(round(GRID_MM / s))) for s in sp_full)
    if min(hu_c.shape[a] // f[a] for a in range(3)) < 8:
        raise NoSpineFound(f"the CT is too small ({volume.hu.shape} voxels)")
    grid_hu, grid_metal = _block_mean(hu_c, f, metal_c)
    sp = sp_full * np.array(f)  # grid spacing (z, y, x) mm
    # canonical grid index (x2, y2, z2) -> full canonical index -> LPS
    S = np.eye(4)
    for L, ax in ((0, 2), (1, 1), (2, 0)):
        S[L, L] = f[ax]
        S[L, 3] = (f[ax] - 1) / 2.0
    lps_from_grid = canon.lps_from_cijk @ S
    times["grid"] = time.perf_counter() - t0

    # --- 2. canal ---------------------------------------------------------------------------
    t1 = time.perf_counter()
    _report(progress, cancel, 0.1, "Looking for the spinal canal")
    canal = _find_canal_coarse(grid_hu, grid_metal, sp)
    times["canal"] = time.perf_counter() - t1

    # --- 3. bodies ----------------------------------------------------------------------------
    t1 = time.perf_counter()
    _report(progress, cancel, 0.3, "Finding the vertebral bodies and discs")
    sep = _separate(grid_hu, grid_metal, sp, canal, warnings, native=(hu_c, metal_c, f))
    times["bodies+watershed"] = time.perf_counter() - t1

    # --- 5. full-resolution measurements ----------------------------------------------------
    t1 = time.perf_counter()
    _report(progress, cancel, 0.55, "Measuring each vertebra")
    roi_off = np.array(sep.roi_offset)
    lab_grid = np.zeros(grid_hu.shape, np.uint8)
    lab_grid[
        roi_off[0] : roi_off[0] + sep.labels.shape[0],
        roi_off[1] : roi_off[1] + sep.labels.shape[1],
        roi_off[2] : roi_off[2] + sep.labels.shape[2],
    ] = sep.labels
    lab_sampler = VolumeSampler(lab_grid, lps_from_grid)
    hu_sampler = VolumeSampler(hu_c, canon.lps_from_cijk, fill=-1024.0)
    # metal is bright enough to count as bone by its HU; sample the mask only when it marks
    # darker voxels too (a mask from elsewhere, blooming edges)
    dark_metal = bool(metal_c.any()) and int(hu_c[metal_c].min()) < BONE_HU
    metal_sampler = VolumeSampler(metal_c.view(np.uint8), canon.lps_from_cijk) if dark_metal else None

    def mm_to_lps(p_mm):
        idx = np.asarray(p_mm, float) / sp  # (z, y, x) grid index
        return lps_from_grid[:3, :3] @ idx[::-1] + lps_from_grid[:3, 3]

    def dir_to_lps(d_mm):
        v = lps_from_grid[:3, :3] @ (np.asarray(d_mm, float) / sp)[::-1]
        return v / np.linalg.norm(v)

    # whole-vertebra centroids on the grid (one call)
    nval = len(sep.bodies) + 1
    lz, ly, lx = np.nonzero(sep.labels)
    lv_ = sep.labels[lz, ly, lx].astype(np.intp)
    vcount = np.bincount(lv_, minlength=nval)[1:].astype(float)
    vcent = [
        np.array([np.bincount(lv_, weights=q + o, minlength=nval)[n] for q, o in zip((lz, ly, lx), roi_off, strict=True)])
        / max(vcount[n - 1], 1.0)
        for n in range(1, nval)
    ]
    boxes = ndi.find_objects(lab_grid, max_label=nval - 1)
    voxel_ml = float(np.prod(sp_full)) * float(np.prod(f)) / 1000.0
    found: list[dict] = []
    nb = len(sep.bodies)
    for n, b in enumerate(sep.bodies):
        _report(progress, cancel, 0.55 + 0.35 * n / max(nb, 1), f"Measuring vertebra {n + 1} of {nb}")
        value = n + 1
        c_lps = mm_to_lps(b["center_mm"])
        ax_lps = dir_to_lps(b["axis_mm"])
        post_lps = dir_to_lps(b["posterior_mm"])
        meas = None
        if b["kind"] == "vertebra" and not b.get("arch_only", False):
            meas = measure_body(
                hu_sampler,
                metal_sampler,
                lab_sampler,
                value,
                c_lps,
                ax_lps,
                post_lps,
                half_height_mm=b["half_height_mm"],
                canal_offset_mm=b["canal_offset_mm"],
                canal_radius_mm=b["canal_radius_mm"],
                bone_hu=sep.bone_hu,
            )
            # the body's own axis: between its endplate normals; measure again along it when
            # the centreline's direction was off (the ends of the column, a sharp curve)
            if meas is not None and meas.superior_endplate is not None and meas.inferior_endplate is not None:
                own_axis = _unit(meas.superior_endplate.normal_lps - meas.inferior_endplate.normal_lps)
                tilt = np.degrees(np.arccos(np.clip(abs(np.dot(own_axis, ax_lps)), -1.0, 1.0)))
                if AXIS_REFINE_DEG[0] < tilt < AXIS_REFINE_DEG[1]:
                    again = measure_body(
                        hu_sampler, metal_sampler, lab_sampler, value, meas.centroid_lps,
                        own_axis * np.sign(np.dot(own_axis, ax_lps)), post_lps,
                        half_height_mm=b["half_height_mm"],
                        canal_offset_mm=b["canal_offset_mm"],
                        canal_radius_mm=b["canal_radius_mm"],
                        bone_hu=sep.bone_hu,
                    )
                    meas = again if again is not None else meas
        vc = np.array(vcent[n], float) if vcount[n] > 0 else None
        vcent_lps = c_lps if vc is None else lps_from_grid[:3, :3] @ vc[::-1] + lps_from_grid[:3, 3]
        bbox = _bbox_ijk(boxes[n], f, canon, volume)
        found.append(
            dict(
                b=b,
                meas=meas,
                centroid=meas.centroid_lps if meas is not None else c_lps,
                vcent=vcent_lps,
                bbox=bbox,
                volume_ml=float(vcount[n]) * voxel_ml,
                canal_c=mm_to_lps(b["canal_mm"]),
            )
        )
    times["measure"] = time.perf_counter() - t1

    # --- grades, levels ------------------------------------------------------------------------
    t1 = time.perf_counter()
    body_grid = np.zeros(grid_hu.shape, bool)
    if sep.body_filled is not None:
        body_grid[
            roi_off[0] : roi_off[0] + sep.labels.shape[0],
            roi_off[1] : roi_off[1] + sep.labels.shape[1],
            roi_off[2] : roi_off[2] + sep.labels.shape[2],
        ] = sep.body_filled
    lab_out = lab_grid
    if sep.interior is not None and sep.interior.any():
        # the label map (not the measurements) also takes each body's dark interior
        inner = np.zeros(grid_hu.shape, np.uint8)
        inner[
            roi_off[0] : roi_off[0] + sep.labels.shape[0],
            roi_off[1] : roi_off[1] + sep.labels.shape[1],
            roi_off[2] : roi_off[2] + sep.labels.shape[2],
        ] = sep.interior
        take = (lab_grid == 0) & (inner > 0)
        lab_out = np.where(take, inner, lab_grid)
        body_grid |= take
    labels_c = _full_res_labels(hu_c, metal_c, lab_out, f, sep.bone_hu, body_grid)
    # whole-vertebra centroids from the full-resolution labels (cancellous bone included)
    full_cent = _label_centroids(labels_c, len(found))
    for n, item in enumerate(found):
        if full_cent[n] is not None:
            item["vcent"] = canon.lps_from_cijk[:3, :3] @ full_cent[n][::-1] + canon.lps_from_cijk[:3, 3]
    # a height's two ends are read to about a quarter of a voxel each along the body axis
    verts = _assemble(found, sep, mm_to_lps, warnings,
                      height_uncertainty_mm=HEIGHT_UNCERTAINTY_VOXELS * float(np.max(spacing_ijk)))
    verts = _auto_labels(verts, levels, warnings)
    if any(v.label_source == lv.SOURCE_NONE for v in verts):
        warnings.append(
            "Level labels are unsure: neither the sacrum nor the last rib-bearing vertebra (T12) "
            "is in view; vertebrae are numbered V1..Vn from the top. Say which vertebra is which "
            "(e.g. 'this is L3') to label them all."
        )
    labels = canon.from_canon(labels_c)
    bone = volume.hu >= np.int16(BONE_HU)  # in the stored orientation: no copy back
    bone &= ~np.asarray(metal_mask, bool)
    cl_lps = np.array([mm_to_lps(p) for p in canal.centre_mm]) if len(canal.centre_mm) else np.zeros((0, 3))
    times["labels+output"] = time.perf_counter() - t1
    times["total"] = time.perf_counter() - t0
    _report(progress, cancel, 1.0, f"Spine analysed: {len(verts)} vertebrae")
    return Anatomy(
        labels=labels,
        bone_mask=bone,
        vertebrae=tuple(verts),
        canal_centerline_lps=cl_lps,
        canal_radii_mm=np.asarray(canal.radius_mm, float),
        warnings=tuple(warnings),
        timings_s=times,
    )


def _bbox_ijk(sl, f, canon: _Canon, volume: CTVolume):
    if sl is None:
        return ((0, 0, 0), (0, 0, 0))
    lo = np.array([s.start * k for s, k in zip(sl, f, strict=True)])
    hi = np.array([s.stop * k for s, k in zip(sl, f, strict=True)])
    # canonical (z, y, x) ranges -> original hu axes, undoing the flips
    shape_c = np.array(canon.to_canon(np.empty(volume.hu.shape, dtype=np.bool_)).shape)
    for ax, fl in enumerate(canon.flips):
        if fl:
            lo[ax], hi[ax] = shape_c[ax] - hi[ax], shape_c[ax] - lo[ax]
    lo_h = np.empty(3, int)
    hi_h = np.empty(3, int)
    for ax in range(3):
        lo_h[canon.perm[ax]] = lo[ax]
        hi_h[canon.perm[ax]] = hi[ax]
    # hu axes (k, j, i) -> (i, j, k)
    return (tuple(int(v) for v in lo_h[::-1]), tuple(int(v) for v in hi_h[::-1]))


def _label_centroids(labels: np.ndarray, n: int) -> list:
    """Centroid (canonical index z, y, x) of each label value 1..n (None when absent), inside the
    labels' bounding box only."""
    out: list = [None] * n
    if not labels.any():
        return out
    sl = ndi.find_objects((labels > 0).astype(np.uint8))[0]
    # every second voxel along each axis of a large label volume: the centroid moves < 0.5 voxel
    step = 2 if labels[sl].size > CENTROID_SUBSAMPLE_VOXELS else 1
    sl = tuple(slice(q.start, q.stop, step) for q in sl)
    z, y, x = np.nonzero(labels[sl])
    v = labels[sl][z, y, x].astype(np.intp)
    z, y, x = z * step, y * step, x * step
    cnt = np.bincount(v, minlength=n + 1)
    for q, (coord, s0) in enumerate(zip((z, y, x), sl, strict=True)):
        sums = np.bincount(v, weights=coord + s0.start, minlength=n + 1)
        for k in range(1, n + 1):
            if cnt[k] > 0:
                if out[k - 1] is None:
                    out[k - 1] = np.zeros(3)
                out[k - 1][q] = sums[k] / cnt[k]
    return out


def _full_res_labels(hu_c, metal_c, lab_grid, f, bone_hu=BONE_HU, body_grid=None):
    """Vertebra labels on the CT grid: the grid labels spread to full-resolution bone (at the
    spine's own threshold ``bone_hu``) and to the whole hole-filled body sections (dark
    cancellous bone belongs to its vertebra, as in a TotalSegmentator label)."""
    labels = np.zeros(hu_c.shape, np.uint8)
    if lab_grid.any():
        sl = ndi.find_objects((lab_grid > 0).astype(np.uint8))[0]
        full_sl = tuple(
            slice(q.start * k, min(q.stop * k, hu_c.shape[a])) for a, (q, k) in enumerate(zip(sl, f, strict=True))
        )
        # nearest-neighbour upsampling in one gather: full index // block size
        idx = np.ix_(*[np.arange(q.start, q.stop) // k for q, k in zip(full_sl, f, strict=True)])
        sub = lab_grid[idx]
        keep = body_grid[idx] if body_grid is not None else np.zeros(sub.shape, bool)
        dense = (hu_c[full_sl] >= np.int16(min(bone_hu, BONE_HU))) | metal_c[full_sl] | keep
        labels[full_sl] = np.where(dense, sub, 0)
    return labels


# --------------------------------------------------------------------------------------------
# 2. the spinal canal
# --------------------------------------------------------------------------------------------
@dataclass
class _Canal:
    z_mm: np.ndarray  # per grid slice in [k0, k1]
    centre_mm: np.ndarray  # (n, 3) (z, y, x) mm on the grid
    radius_mm: np.ndarray
    k0: int
    k1: int
    nodes: np.ndarray  # (m, 4) chain nodes (z, y, x, r)


def _axis_distances(mask: np.ndarray, axis: int):
    """For every voxel: index distance to the nearest True voxel before it and after it along
    ``axis`` (large where none), and the length of the True run that ends at each voxel."""
    n = mask.shape[axis]
    shape = [1, 1, 1]
    shape[axis] = n
    idx = np.arange(n).reshape(shape)
    big = 10 * n
    prev = np.maximum.accumulate(np.where(mask, idx, -big), axis=axis)
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(mask, idx, big), axis), axis=axis), axis)
    last_false = np.maximum.accumulate(np.where(~mask, idx, -1), axis=axis)
    run = idx - last_false  # True run ending here (0 where False)
    return idx - prev, nxt - idx, prev, run


def _find_canal(grid_hu: np.ndarray, grid_metal: np.ndarray, sp: np.ndarray) -> _Canal:
    """The spinal canal: fluid/fat-density voxels with a vertebral body right in front, bone
    close behind and on both sides, near the left-right middle of the body outline; the longest
    smooth chain of such regions through the slices."""
    nz, ny, nx = grid_hu.shape
    sm = ndi.gaussian_filter(np.where(grid_metal, 1000.0, grid_hu), (0.75 / sp[0], 2.0 / sp[1], 2.0 / sp[2]))
    dense = sm >= CANAL_WALL_HU
    d_ant, d_post, prev_y, run_y = _axis_distances(dense, 1)
    d_right, d_left, _, _ = _axis_distances(dense, 2)
    # length of the bone run in front of the canal (the vertebral body's depth)
    body_run = np.take_along_axis(run_y, np.clip(prev_y, 0, ny - 1), axis=1) * sp[1]
    canal = (
        (sm < CANAL_MAX_HU)
        & (sm > -400)
        & (d_ant * sp[1] <= 12.0)
        & (body_run >= 18.0)
        & (d_post * sp[1] <= 40.0)
        & (d_left * sp[2] <= 25.0)
        & (d_right * sp[2] <= 25.0)
    )
    del d_ant, d_post, prev_y, run_y, d_right, d_left, body_run
    s2 = np.zeros((3, 3, 3), bool)
    s2[1] = ndi.generate_binary_structure(2, 1)
    lab, n = ndi.label(canal, structure=s2)
    if n == 0:
        raise NoSpineFound("no spinal canal on any slice")
    flat = lab.ravel()
    cnt = np.bincount(flat, minlength=n + 1).astype(float)
    zz, yy, xx = np.indices(grid_hu.shape, dtype=np.float32)
    cz = np.bincount(flat, weights=zz.ravel(), minlength=n + 1) / np.maximum(cnt, 1)
    cy = np.bincount(flat, weights=yy.ravel(), minlength=n + 1) / np.maximum(cnt, 1)
    cx = np.bincount(flat, weights=xx.ravel(), minlength=n + 1) / np.maximum(cnt, 1)
    del zz, yy, xx
    area = cnt * sp[1] * sp[2]
    ids = np.nonzero((area >= CANAL_AREA_MM2[0]) & (area <= CANAL_AREA_MM2[1]))[0]
    ids = ids[ids > 0]
    # the canal lies near the left-right middle of the body outline
    body = grid_hu > -300
    colsum = body.sum(axis=1).astype(float)  # (nz, nx)
    xmid = (colsum * np.arange(nx)[None, :]).sum(axis=1) / np.maximum(colsum.sum(axis=1), 1)
    zi = np.clip(np.rint(cz[ids]).astype(int), 0, nz - 1)
    ids = ids[np.abs(cx[ids] - xmid[zi]) * sp[2] <= MIDLINE_MM]
    if len(ids) < 3:
        raise NoSpineFound("no canal with a vertebral body in front of it")
    r_eq = np.sqrt(area[ids] / np.pi)
    nodes = np.column_stack([cz[ids] * sp[0], cy[ids] * sp[1], cx[ids] * sp[2], r_eq])
    nodes = nodes[np.argsort(nodes[:, 0], kind="stable")]
    chain = _longest_chain(nodes)
    span = chain[-1, 0] - chain[0, 0] if len(chain) else 0.0
    if len(chain) < 6 or span < 45.0:
        raise NoSpineFound(f"the longest canal-like track spans only {span:.0f} mm")
    k0 = max(0, int(np.floor(chain[0, 0] / sp[0])) - int(round(40.0 / sp[0])))
    k1 = min(nz - 1, int(np.ceil(chain[-1, 0] / sp[0])) + int(round(40.0 / sp[0])))
    z = np.arange(k0, k1 + 1) * sp[0]
    cyv = ndi.median_filter(chain[:, 1], size=5, mode="nearest")
    cxv = ndi.median_filter(chain[:, 2], size=5, mode="nearest")
    rv = ndi.median_filter(chain[:, 3], size=5, mode="nearest")
    y = _interp_extrapolate(z, chain[:, 0], cyv)
    x = _interp_extrapolate(z, chain[:, 0], cxv)
    r = np.interp(z, chain[:, 0], rv)
    sig = 4.0 / sp[0]
    y, x, r = (ndi.gaussian_filter1d(a, sig, mode="nearest") for a in (y, x, r))
    centre = np.column_stack([z, y, x])
    return _Canal(z, centre, r, k0, k1, chain)


CANAL_GRID_MM = 3.0
"""In-plane block size for the canal search (the canal is 12-25 mm wide)."""


def _find_canal_coarse(grid_hu: np.ndarray, grid_metal: np.ndarray, sp: np.ndarray) -> _Canal:
    """:func:`_find_canal` on a grid coarsened in-plane to about ``CANAL_GRID_MM`` (same slices),
    with the result in the millimetres of the input grid."""
    c = max(1, int(round(CANAL_GRID_MM / sp[1])))
    if c == 1:
        return _find_canal(grid_hu, grid_metal, sp)
    g2, m2 = _block_mean(grid_hu, (1, c, c), grid_metal)
    sp2 = sp * np.array([1, c, c])
    canal = _find_canal(g2, m2, sp2)
    shift = np.array([0.0, (c - 1) / 2.0 * sp[1], (c - 1) / 2.0 * sp[2]])
    canal.centre_mm = canal.centre_mm + shift
    canal.nodes = canal.nodes + np.append(shift, 0.0)
    return canal


def _interp_extrapolate(z, zc, v, reach_mm: float = 30.0):
    """Linear interpolation inside ``zc``; beyond its ends, the straight line fitted to the last
    ``reach_mm`` of the samples (a canal does not stop bending where the track stops)."""
    out = np.interp(z, zc, v)
    for end in (0, -1):
        near = np.abs(zc - zc[end]) <= reach_mm
        if near.sum() < 3 or np.ptp(zc[near]) < 5.0:
            continue
        g, c0 = np.polyfit(zc[near], v[near], 1)
        beyond = z < zc[0] if end == 0 else z > zc[-1]
        out[beyond] = g * z[beyond] + c0
    return out


def _longest_chain(nodes: np.ndarray) -> np.ndarray:
    """Longest sequence of nodes rising in z with a small in-plane step (DAG longest path)."""
    m = len(nodes)
    best = np.ones(m)
    prev = -np.ones(m, int)
    z, y, x = nodes[:, 0], nodes[:, 1], nodes[:, 2]
    start = 0
    for i in range(m):
        while z[i] - z[start] > 40.0:
            start += 1
        j = np.arange(start, i)
        if len(j) == 0:
            continue
        dz = z[i] - z[j]
        d = np.hypot(y[i] - y[j], x[i] - x[j])
        ok = (dz > 0) & (d <= 6.0 + 0.5 * dz)
        if not ok.any():
            continue
        jj = j[ok]
        # prefer long chains, then small steps
        score = best[jj] + 1.0 - 0.02 * d[ok]
        kbest = int(np.argmax(score))
        if score[kbest] > best[i]:
            best[i] = score[kbest]
            prev[i] = jj[kbest]
    i = int(np.argmax(best))
    out = []
    while i >= 0:
        out.append(i)
        i = prev[i]
    return nodes[out[::-1]]


# --------------------------------------------------------------------------------------------
# 3-4. bodies, discs, whole vertebrae
# --------------------------------------------------------------------------------------------
@dataclass
class _Separation:
    labels: np.ndarray  # uint8 on the ROI of the grid, values 1..n
    roi_offset: tuple[int, int, int]
    bodies: list[dict]
    rib_heads: dict  # value -> (m, 3) mm points on the grid
    bone_hu: float = BONE_HU  # the bodies' own bone threshold (adaptive, from the disc contrast)
    body_filled: np.ndarray | None = None  # bool on the ROI: hole-filled body sections
    interior: np.ndarray | None = None  # uint8 on the ROI: dark body interiors shut by the canal


def _separate(grid_hu, grid_metal, sp, canal: _Canal, warnings: list[str], native=None) -> _Separation:
    nz, ny, nx = grid_hu.shape
    # region of interest around the canal
    y_lo = max(0, int((canal.centre_mm[:, 1].min() - 90.0) / sp[1]))
    y_hi = min(ny, int((canal.centre_mm[:, 1].max() + 90.0) / sp[1]) + 1)
    x_lo = max(0, int((canal.centre_mm[:, 2].min() - ROI_LATERAL_MM) / sp[2]))
    x_hi = min(nx, int((canal.centre_mm[:, 2].max() + ROI_LATERAL_MM) / sp[2]) + 1)
    z_lo, z_hi = canal.k0, canal.k1 + 1
    roi = (slice(z_lo, z_hi), slice(y_lo, y_hi), slice(x_lo, x_hi))
    off_mm = np.array([z_lo * sp[0], y_lo * sp[1], x_lo * sp[2]])
    hu = grid_hu[roi]
    metal = grid_metal[roi]
    bone = (hu >= GRID_BONE_HU) | metal
    bone = ndi.binary_closing(bone, structure=_ball2d(), iterations=1) | bone
    filled = _fill_holes_2d(bone)
    dist = ndi.distance_transform_edt(filled, sampling=sp).astype(np.float32)
    rz, ry, rx = hu.shape
    # canal in ROI coordinates (one row per ROI slice)
    cy = canal.centre_mm[:, 1] - off_mm[1]
    cx = canal.centre_mm[:, 2] - off_mm[2]
    cr = canal.radius_mm
    Y = (np.arange(ry) * sp[1])[None, :, None]
    X = (np.arange(rx) * sp[2])[None, None, :]

    # --- body centreline: parallel to the (smooth) canal, at the middle of the body's depth ------
    zk = np.arange(rz) * sp[0]
    body_sl, gap, half_depth = _body_line(hu, metal, cy, cx, cr, sp)
    if body_sl.sum() < 4:
        raise NoSpineFound("no vertebral bodies in front of the canal")
    by = ndi.gaussian_filter1d(cy - gap, 8.0 / sp[0], mode="nearest")
    bx = ndi.gaussian_filter1d(cx, 8.0 / sp[0], mode="nearest")
    body_r = 0.8 * float(np.median(half_depth[body_sl]))  # deepest bone distance of the section
    if _DEBUG is not None:
        _DEBUG.update(gap=gap, half=half_depth, has=body_sl, by=by, cy=cy, cr=cr)

    # --- discs: short dark gaps between two bright endplates, along the centreline --------------
    P = np.column_stack([zk, by, bx])[::-1]  # cranial to caudal
    seg = np.linalg.norm(np.diff(P, axis=0), axis=1)
    s_k = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.arange(0.0, s_k[-1], 1.0)
    C = np.column_stack([np.interp(s, s_k, P[:, a]) for a in range(3)])
    T = np.gradient(ndi.gaussian_filter1d(C, AXIS_SMOOTH_MM, axis=0, mode="nearest"), axis=0)
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    e1 = np.array([0.0, 1.0, 0.0])[None, :] - T[:, 1:2] * T
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(T, e1)
    # sample an annulus near the cortex: the cortex stays brighter than the disc even where
    # osteoporotic cancellous bone is as dark as the disc
    rp = float(np.clip(body_r, 6.0, 20.0))
    g = np.arange(-rp, rp + 1e-6, 1.5)
    uu, vv = np.meshgrid(g, g, indexing="ij")
    uu0, vv0 = uu, vv
    rr2 = uu**2 + vv**2
    inside = (rr2 <= (1.05 * rp) ** 2) & (rr2 >= (0.55 * rp) ** 2)
    uu, vv = uu[inside], vv[inside]
    pts = C[:, None, :] + uu[None, :, None] * e1[:, None, :] + vv[None, :, None] * e2[:, None, :]
    idx = (pts / sp).reshape(-1, 3).T
    hu_nm = np.where(metal, np.nan, np.minimum(hu, 1200.0)).astype(np.float32)
    prof = ndi.map_coordinates(np.nan_to_num(hu_nm, nan=0.0), idx, order=1, mode="nearest")
    wgt = ndi.map_coordinates((~metal).astype(np.float32), idx, order=1, mode="nearest")
    prof = prof.reshape(len(s), -1).sum(axis=1) / np.maximum(wgt.reshape(len(s), -1).sum(axis=1), 1e-3)
    prof = ndi.gaussian_filter1d(prof, 1.0, mode="nearest")
    frac = ndi.map_coordinates(filled.astype(np.float32), idx, order=1, mode="nearest")
    frac = ndi.gaussian_filter1d(frac.reshape(len(s), -1).mean(axis=1), 1.0, mode="nearest")
    col = frac > 0.2
    if col.sum() >= 10:
        disc_level = float(np.percentile(prof[col], 10))
        body_level = float(np.median(prof[col]))
    else:
        disc_level, body_level = 60.0, GRID_BONE_HU
    thr2 = disc_level + 0.5 * (body_level - disc_level)
    bone2 = (ndi.gaussian_filter(hu, 0.6) >= thr2) | metal
    # holes are filled inside the body's own region only: in front of the canal and within a
    # body's width of the midline, so rib heads, pedicles and transverse processes cannot close
    # a ring around a disc
    body_region = (Y < (cy - cr + 1.0)[:, None, None]) & (
        np.abs(X - bx[:, None, None]) <= BODY_HALF_WIDTH_MM
    )
    filled2 = _fill_holes_2d(bone2 & body_region) | bone2
    full = (uu0**2 + vv0**2) <= (1.0 * rp) ** 2
    pts2 = C[:, None, :] + uu0[full][None, :, None] * e1[:, None, :] + vv0[full][None, :, None] * e2[:, None, :]
    f2 = ndi.map_coordinates(filled2.astype(np.float32), (pts2 / sp).reshape(-1, 3).T, order=1, mode="nearest")
    frac2 = f2.reshape(len(s), -1).mean(axis=1)
    if _DEBUG is not None:
        _DEBUG.update(frac2=frac2, thr2=thr2)
    tube = tube_metal = None
    if native is not None:
        tube, tube_metal = _tube_profile(native, C + off_mm, e1, e2, sp, TUBE_FRAC * rp)
    discs = _find_discs_frac(frac2, tube, tube_metal)
    frac = frac2
    if _DEBUG is not None:
        _DEBUG.update(tube=tube, prof=prof, frac=frac, C=C + off_mm, discs=discs, frac_col=frac, score=_disc_score(prof))
    runs = _runs_between(discs, len(s), frac)
    if len(runs) < 2:
        raise NoSpineFound("fewer than two vertebral bodies separated by discs")
    runs = _split_long_runs(runs, -_disc_score(prof), warnings)

    # --- sacrum: the first body whose thick bone spreads to the iliac wings --------------------
    widths = np.array([_slab_width(bone2, C, sp, a, b, rz) for a, b in runs])
    if _DEBUG is not None:
        _DEBUG.update(widths=widths, runs=list(runs))
    sacrum_at = None
    n = len(runs) - 1
    if n >= 1:
        ref = float(np.median(widths[:n]))
        # the sacrum is the last body, much wider than the bodies above it (alae, sacro-iliac
        # joints); ribs make thoracic bodies wide, so a thoracic crop never qualifies
        if ref > 0 and widths[n] >= max(SACRUM_MIN_WIDTH_MM, 1.6 * ref):
            sacrum_at = n
    if sacrum_at is not None:
        runs = runs[: sacrum_at + 1]
        runs[-1] = (runs[-1][0], len(s) - 1)

    # --- slabs between the discs ---------------------------------------------------------------
    n_b = len(runs)
    bounds = [0.0]
    for (_, b0), (a1, _) in zip(runs[:-1], runs[1:], strict=True):
        bounds.append(0.5 * (s[b0] + s[a1]))
    bounds.append(s[-1])
    bounds = np.asarray(bounds)
    # arc-length coordinate of every ROI voxel (first order around the centreline)
    s_z = np.interp(zk, C[::-1, 0], s[::-1])
    Tz = np.column_stack([np.interp(zk, C[::-1, 0], T[::-1, a]) for a in range(3)])
    s_vox = (
        s_z[:, None, None]
        + (Y - by[:, None, None]) * Tz[:, 1, None, None]
        + (X - bx[:, None, None]) * Tz[:, 2, None, None]
    ).astype(np.float32)

    # --- seeds and watershed -------------------------------------------------------------------
    # the whole body section in front of the canal belongs to the body between its two discs
    # (cut by the disc planes, never by the distance map, which would give the corners of a
    # body to its neighbours)
    cyl = ((Y - by[:, None, None]) ** 2 + (X - bx[:, None, None]) ** 2) <= (BODY_REACH * body_r + 4.0) ** 2
    front = Y < (cy - cr)[:, None, None]
    markers = np.zeros(hu.shape, np.uint16)
    core = (filled | filled2) & cyl & front
    # pedicles: bone beside the canal, between its front and its middle, at the level of the
    # upper half of each body; seeding them gives every posterior arch to its own body (the
    # arch touches the next vertebra only at the facet joints)
    side = np.abs(X - cx[:, None, None])
    ped_zone = (
        bone
        & (side >= 0.6 * cr[:, None, None])
        & (side <= cr[:, None, None] + PEDICLE_REACH_MM)
        & (Y >= (cy - cr - 2.0)[:, None, None])
        & (Y <= (cy + 0.3 * cr)[:, None, None])
    )
    arch_zone = (
        bone
        & (side <= ARCH_HALF_WIDTH_MM)
        & (Y >= (cy + cr + 2.0)[:, None, None])
        & (Y <= (cy + cr + ARCH_DEPTH_MM)[:, None, None])
    )
    iap_zone = (
        bone
        & (side >= IAP_SIDE[0] * cr[:, None, None])
        & (side <= cr[:, None, None] + IAP_SIDE[1])
        & (Y >= (cy + IAP_Y[0] * cr)[:, None, None])
        & (Y <= (cy + cr + IAP_Y[1])[:, None, None])
    )
    for n, (a, b) in enumerate(runs):
        m = core & (s_vox >= bounds[n] + 1.0) & (s_vox <= bounds[n + 1] - 1.0)
        markers[m] = n + 1
        if runs_kind_sacrum(n, runs, sacrum_at):
            continue
        length = s[b] - s[a]
        mp = ped_zone & (s_vox >= s[a] + 0.1 * length) & (s_vox <= s[a] + 0.55 * length)
        markers[mp & (markers == 0)] = n + 1
        # the laminae meet behind the canal at the level of the body's lower half and the disc
        # below it (the arch slopes caudally from the pedicles)
        ml = arch_zone & (s_vox >= s[a] + 0.5 * length) & (s_vox <= bounds[n + 1])
        markers[ml & (markers == 0)] = n + 1
        # the inferior articular processes hang down from the laminae behind the canal, beside
        # the midline; the vertebra below touches them only at the facet joints
        mi = iap_zone & (s_vox >= s[a] + IAP_FROM * length) & (s_vox <= s[b])
        markers[mi & (markers == 0)] = n + 1
    # the vertebra above a body cut by the top of the scan: its laminae and spinous process
    # slope caudally into view behind the cut body, above the level where that body's own
    # laminae meet (its mid-height, from the height of the whole bodies below it)
    top_cut = runs[0][0] == 0 and z_hi == nz
    bottom_cut = runs[-1][1] == len(s) - 1 and z_lo == 0
    above_val = 0
    if top_cut and n_b >= 2 and not runs_kind_sacrum(0, runs, sacrum_at):
        whole = [s[b] - s[a] for n, (a, b) in enumerate(runs) if n > 0 and not runs_kind_sacrum(n, runs, sacrum_at)]
        mid0 = s[runs[0][1]] - 0.5 * float(np.median(whole)) if whole else -np.inf
        seed = arch_zone & (s_vox < mid0) & (markers == 0)
        if seed.any():
            above_val = n_b + 1
            markers[seed] = above_val
    body_filled = filled2 & (markers > 0) & (markers != above_val)
    # a dark interior whose thin posterior wall is not bone at the threshold (the basivertebral
    # foramen, osteoporosis) is closed by the canal's front edge; only between the body's own
    # ends (a ring closed at a disc would take the disc)
    # (the edge band at least one voxel row thick on a coarse grid), and a gap of a voxel in a
    # thin osteoporotic cortex is bridged (in-plane closing with a 3 x 3 square)
    wall = body_region & (Y >= (cy - cr - max(1.5, sp[1]))[:, None, None])
    ring = (bone2 & body_region) | wall
    ring |= ndi.binary_closing(ring, structure=_square2d())
    shut = _fill_holes_2d(ring) & cyl & ~bone2
    interior = np.zeros(hu.shape, np.uint8)  # for the label map only, not for the measurements
    shut &= Y < (cy - cr - SHUT_BACK_MM)[:, None, None]
    # a body cut by the scan's edge has no disc there: its interior is taken up to the edge
    for n, (a, b) in enumerate(runs):
        lo = -np.inf if (n == 0 and top_cut) else s[a] + SHUT_BACK_MM
        hi = np.inf if (n == n_b - 1 and bottom_cut) else s[b] - SHUT_BACK_MM
        if runs_kind_sacrum(n, runs, sacrum_at):
            # S1's body (the fused segments below it are not measured or filled)
            hi = s[a] + S1_SEGMENT_BODIES * (s[runs[n - 1][1]] - s[runs[n - 1][0]]) - SHUT_BACK_MM
        m = shut & (s_vox >= lo) & (s_vox <= hi)
        m &= ((markers == 0) | (markers == n + 1)) & (interior == 0)
        interior[m] = n + 1
    bone = bone | body_filled
    bg_val = 255
    lateral = np.abs(X - cx[:, None, None]) >= RIB_EDGE_MM
    edge = np.zeros(hu.shape, bool)
    edge[:, 0, :] = edge[:, :, 0] = edge[:, :, -1] = True
    if y_hi == ny:
        # the scan ends close behind the spine (a cropped field of view): bone leaving it there
        # beside the midline is rib, not spinous process
        edge[:, -1, :] = (np.abs(X - cx[:, None, None]) > (cr + RIB_EXIT_MM)[:, None, None])[:, 0, :]
    # nothing of a vertebra lies far in front of its body: bone-like density there (a
    # contrast-filled aorta, a stent graft) touching the column is background, cut from the body
    # at the neck between them
    ahead = Y < (by - (BODY_REACH * body_r + 4.0 + FRONT_MARGIN_MM))[:, None, None]
    markers[bone & (lateral | edge | ahead) & (markers == 0)] = bg_val
    feat = sitk.GetImageFromArray(np.where(bone, -dist, 1.0).astype(np.float32))
    mk = sitk.GetImageFromArray(markers)
    ws = sitk.GetArrayFromImage(
        sitk.MorphologicalWatershedFromMarkers(feat, mk, markWatershedLine=False, fullyConnected=True)
    )
    labels = np.where(bone & (ws != bg_val), ws, 0).astype(np.uint8)
    if _DEBUG is not None:
        _DEBUG.update(ring=ring, cyl=cyl, interior=interior, shut=shut, markers=markers, ws=ws, roi=roi, bone2=bone2, s_vox=s_vox)
    # nothing beyond the scanned part of the column
    labels[(s_vox < bounds[0] - 20.0) | (s_vox > bounds[-1] + 20.0)] = 0
    # the sacrum's vertebra is S1, its top segment (about one body of the vertebra above it
    # tall); the fused segments below it are the rest of the sacrum, not a vertebra
    if sacrum_at is not None and n_b >= 2:
        (pa, pb), (a, _) = runs[-2], runs[-1]
        s1_end = s[a] + S1_SEGMENT_BODIES * (s[pb] - s[pa])
        labels[(labels == n_b) & (s_vox > s1_end)] = SACRUM_BELOW_S1

    # --- ribs: edge-reaching bone that touches a vertebra ---------------------------------------
    rib_heads: dict[int, np.ndarray] = {}
    other = bone & (ws == bg_val)
    olab, on = ndi.label(other)
    if on:
        reach = np.zeros(on + 1, bool)
        reach[np.unique(olab[(lateral | edge) & other])] = True
        reach[0] = False
        ribby = reach[olab]
        touch = ndi.binary_dilation(ribby, structure=np.ones((3, 3, 3), bool)) & (labels > 0)
        tz, ty, tx = np.nonzero(touch)
        tv = labels[tz, ty, tx]
        for n in range(n_b):
            sel = tv == n + 1
            if sel.sum() == 0:
                continue
            pz, py, px = tz[sel] * sp[0], ty[sel] * sp[1], tx[sel] * sp[2]
            heads = []
            for sgn in (1.0, -1.0):
                side = (sgn * (px - cx[tz[sel]]) > cr[tz[sel]] + 4.0) & (py > by[tz[sel]] - 5.0)
                if side.sum() >= 2:
                    heads.append([pz[side].mean(), py[side].mean(), px[side].mean()])
            # ribs come in pairs; one-sided "ribs" are streaks, osteophytes or the pelvis
            if len(heads) == 2:
                rib_heads[n + 1] = np.asarray(heads) + off_mm

    # --- per-body description -------------------------------------------------------------------
    bodies = []
    for n, (a, b) in enumerate(runs):
        is_sacrum = sacrum_at is not None and n == n_b - 1
        if is_sacrum:
            b_eff = min(b, a + int(round(1.2 * (runs[n - 1][1] - runs[n - 1][0]))))
        else:
            b_eff = b
        mid = int((a + b_eff) / 2)
        k = int(np.clip(round(C[mid, 0] / sp[0]), 0, rz - 1))
        cpt = np.array([C[mid, 0], cy[k], cx[k]])
        post = cpt - C[mid]
        post -= np.dot(post, T[mid]) * T[mid]
        off = float(np.linalg.norm(post))
        complete = (a > 0 or frac[0] < 0.5) and (b < len(s) - 1 or frac[-1] < 0.5)
        if k <= 0 or k >= rz - 1:
            complete = False
        first_edge = runs[0][0] == 0 and z_hi == nz  # cut by the top of the scan
        last_edge = runs[-1][1] == len(s) - 1 and z_lo == 0
        if (n == 0 and first_edge) or (n == n_b - 1 and last_edge and not is_sacrum):
            complete = False
        bodies.append(
            dict(
                kind="sacrum" if is_sacrum else "vertebra",
                center_mm=C[mid] + off_mm,
                axis_mm=T[mid] * np.sign(T[mid, 0] if T[mid, 0] != 0 else 1.0),
                posterior_mm=post / max(off, 1e-6) if off > 1e-6 else np.array([0.0, 1.0, 0.0]),
                half_height_mm=0.5 * (s[b_eff] - s[a]) + 2.0,
                canal_offset_mm=max(off, body_r + cr[k]),
                canal_radius_mm=float(cr[k]),
                canal_mm=np.array([C[mid, 0], cy[k], cx[k]]) + off_mm,
                complete=bool(complete),
                s_range=(float(s[a]), float(s[b_eff])),
                width_mm=float(widths[n]) if n < len(widths) else 0.0,
                split=isinstance(runs[n], _SplitRun),
            )
        )
    if above_val:
        part = labels == above_val
        if part.sum() * float(np.prod(sp)) < ARCH_MIN_MM3:
            labels[part] = 0
        else:
            # reported first (cranial), with no body: a partial vertebra, not measured
            pz, py, px = (q * d for q, d in zip(np.nonzero(part), sp, strict=True))
            k = rz - 1
            centre = np.array([pz.mean(), py.mean(), px.mean()])
            b0 = bodies[0]
            bodies.insert(
                0,
                dict(
                    b0,
                    kind="vertebra",
                    arch_only=True,
                    center_mm=centre + off_mm,
                    half_height_mm=0.0,
                    canal_mm=np.array([zk[k], cy[k], cx[k]]) + off_mm,
                    canal_radius_mm=float(cr[k]),
                    complete=False,
                    s_range=(float(s_vox[part].min()), float(s_vox[part].max())),
                    width_mm=0.0,
                    split=False,
                ),
            )
            shift = np.arange(256, dtype=np.uint8)
            shift[1 : n_b + 1] += 1
            shift[above_val] = 1
            labels = shift[labels]
            interior = shift[interior]
            rib_heads = {int(shift[v]): h for v, h in rib_heads.items()}
    return _Separation(
        labels, (z_lo, y_lo, x_lo), bodies, rib_heads, min(BONE_HU, float(thr2)), body_filled, interior
    )


def _body_line(hu, metal, cy, cx, cr, sp):
    """Per ROI slice: is there a body in front of the canal, the distance (mm) from the canal
    centre to the body's middle, and the body's half depth.

    The density profile along the midline ray from the canal centre toward anterior is averaged
    over about two vertebral periods (a running median over slices, so discs and dark
    osteoporotic interiors do not matter); the body is the stretch of that profile above the
    level half-way between the canal's and the brightest bone's.
    """
    rz = hu.shape[0]
    d = np.arange(0.0, BODY_RAY_MM, 1.0)
    dx = np.arange(-6.0, 6.1, 2.0)
    kk = np.arange(rz, dtype=float)[:, None, None]
    yy = (cy[:, None, None] - d[None, :, None]) / sp[1]
    xx = (cx[:, None, None] + dx[None, None, :]) / sp[2]
    kk, yy, xx = np.broadcast_arrays(kk, yy, xx)
    vals = np.where(metal, 1000.0, hu).astype(np.float32)
    prof = ndi.map_coordinates(vals, [kk.ravel(), yy.ravel(), xx.ravel()], order=1, mode="nearest")
    prof = prof.reshape(kk.shape).mean(axis=2)  # (rz, nd)
    w = max(3, int(round(BODY_LINE_MM / sp[0])) | 1)
    prof = ndi.median_filter(prof, size=(w, 1), mode="nearest")
    prof = ndi.gaussian_filter1d(prof, 1.5, axis=1, mode="nearest")
    has = np.zeros(rz, bool)
    gap = np.zeros(rz)
    half = np.zeros(rz)
    for k in range(rz):
        p = prof[k]
        i_c = int(min(len(d) - 1, max(1, round(cr[k]))))
        floor = float(p[: i_c + 1].min())
        # the body's back half lies within BODY_BACK_MM of the canal; anything brighter further
        # out (a contrast-filled aorta in front of the body) must not set the level
        i_end = min(len(d), i_c + int(BODY_BACK_MM) + 1)
        i_pk = i_c + int(np.argmax(p[i_c:i_end]))
        peak = float(p[i_pk])
        if peak - floor < 60.0:
            continue
        thr = floor + 0.5 * (peak - floor)
        above = p >= thr
        i0 = i_c + int(np.argmax(above[i_c:]))
        below = np.nonzero(~above[i0:])[0]
        i1 = i0 + (int(below[0]) if len(below) else len(d) - 1 - i0)
        i1 = min(i1, i0 + int(BODY_MAX_DEPTH_MM))
        if d[i1] - d[i0] < 12.0:
            continue
        has[k] = True
        gap[k] = 0.5 * (d[i0] + d[i1])
        half[k] = 0.5 * (d[i1] - d[i0])
    if has.sum() >= 2:
        # a bright structure touching the body's front (contrast-filled aorta, stent graft) makes
        # the stretch too deep: body depth changes slowly along the spine
        typical = float(np.median(half[has]))
        deep = has & (half > 1.35 * typical)
        front = gap - half
        half[deep] = typical
        gap[deep] = front[deep] + typical
        z = np.arange(rz)
        gap = np.interp(z, z[has], gap[has])
        half = np.interp(z, z[has], half[has])
    return has, gap, half


def runs_kind_sacrum(n: int, runs, sacrum_at) -> bool:
    """Is body run ``n`` the sacrum?"""
    return sacrum_at is not None and n == len(runs) - 1


def _slab_width(bone, C, sp, a, b, rz) -> float:
    """Left-right extent (mm) of the bone connected to the body centre, projected over the axial
    slices of the body run ``a..b`` (indices along the 1 mm centreline)."""
    ks = np.clip(np.rint(C[[a, (a + b) // 2, b], 0] / sp[0]).astype(int), 0, rz - 1)
    k0, k1 = int(ks.min()), int(ks.max())
    proj = bone[k0 : k1 + 1].any(axis=0)
    lab, _ = ndi.label(proj)
    m = (a + b) // 2
    yy = int(np.clip(round(C[m, 1] / sp[1]), 0, proj.shape[0] - 1))
    xx = int(np.clip(round(C[m, 2] / sp[2]), 0, proj.shape[1] - 1))
    win = lab[max(0, yy - 2) : yy + 3, max(0, xx - 2) : xx + 3]
    ids = win[win > 0]
    if len(ids) == 0:
        return 0.0
    cols = np.nonzero((lab == np.bincount(ids).argmax()).any(axis=0))[0]
    return float((cols.max() - cols.min() + 1) * sp[2])


def _square2d():
    s = np.zeros((3, 3, 3), bool)
    s[1] = True
    return s


def _ball2d():
    s = np.zeros((3, 3, 3), bool)
    s[1] = ndi.generate_binary_structure(2, 1)
    return s


TUBE_FRAC = 0.5
"""Radius of the full-resolution tube along the body centreline, in body-section radii."""
TUBE_SMOOTH_MM = 0.7
TUBE_MAX_HU = 1200.0
DISC_CAGE_REACH_MM = 3
"""Metal in the tube this close to a dip means the disc space holds an implant."""
TUBE_INTERIOR_MM = 25
"""Window (mm) of the running median that gives the body interior's level along the tube."""
TUBE_MIN_DIP = 0.08
"""A disc dips at least this fraction of the column's contrast below its two endplates."""
DISC_REACH_MM = 7
"""A disc centre has a bright endplate within this distance on both sides; the middle of a
vertebral body (taller than twice this) does not."""


def _disc_score(prof: np.ndarray) -> np.ndarray:
    """How much darker a point is than the brightest profile within DISC_REACH_MM on *both*
    sides (HU): high at disc centres, low inside bodies and on endplates."""
    w = DISC_REACH_MM
    pad = np.pad(prof, w, mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(pad, w)
    n = len(prof)
    left = win[0:n].max(axis=1)  # prof[s-w .. s-1]
    right = win[w + 1 : w + 1 + n].max(axis=1)  # prof[s+1 .. s+w]
    return np.minimum(left, right) - prof


def _body_period(frac: np.ndarray) -> float:
    """Vertebral period (mm) along the column: the first strong peak of the autocorrelation of
    the bone-fraction profile between 20 and 60 mm."""
    col = frac > 0.2
    if col.sum() < 40:
        return 30.0
    a, b = np.nonzero(col)[0][[0, -1]]
    x = frac[a : b + 1] - frac[a : b + 1].mean()
    n = len(x)
    lags = np.arange(PERIOD_MM[0], min(PERIOD_MM[1], n // 2) + 1)
    if len(lags) < 3:
        return 30.0
    ac = np.array([np.dot(x[:-k], x[k:]) / (n - k) for k in lags])
    peaks = [i for i in range(1, len(ac) - 1) if ac[i] >= ac[i - 1] and ac[i] >= ac[i + 1] and ac[i] > 0]
    if not peaks:
        return float(lags[int(np.argmax(ac))])
    i = max(peaks, key=lambda q: ac[q])
    # a strong peak at half the lag is the fundamental (the best peak was its multiple)
    half = [q for q in peaks if abs(2 * lags[q] - lags[i]) <= 4 and ac[q] >= 0.8 * ac[i]]
    return float(lags[half[0]] if half else lags[i])


def _tube_profile(full, C, e1, e2, sp, radius) -> np.ndarray:
    """Mean HU at full resolution in a thin tube of ``radius`` mm around the body centreline
    ``C`` (1 mm steps, grid mm): the native voxels keep the thin discs and their bright endplates
    that the block average blurs away. Metal occupies like bright bone; also returns the
    fraction of each step's samples that are metal."""
    hu_c, metal_c, f = full
    r = float(max(radius, 2.0))
    g = np.arange(-r, r + 1e-6, 1.0)
    uu, vv = np.meshgrid(g, g, indexing="ij")
    inside = uu**2 + vv**2 <= r**2
    uu, vv = uu[inside], vv[inside]
    pts = C[:, None, :] + uu[None, :, None] * e1[:, None, :] + vv[None, :, None] * e2[:, None, :]
    fz = np.asarray(f, float)
    idx = (pts / sp * fz + (fz - 1.0) / 2.0).reshape(-1, 3).T
    vals = ndi.map_coordinates(hu_c, idx, output=np.float32, order=1, mode="nearest")
    metal = ndi.map_coordinates(metal_c.view(np.uint8), idx, order=0, mode="nearest") > 0
    vals = np.where(metal, TUBE_MAX_HU, np.minimum(vals, TUBE_MAX_HU))
    prof = vals.reshape(len(C), -1).mean(axis=1)
    metal_frac = metal.reshape(len(C), -1).mean(axis=1)
    return ndi.gaussian_filter1d(prof, TUBE_SMOOTH_MM, mode="nearest"), metal_frac


def _endplate_pair_depth(tube: np.ndarray, col: np.ndarray) -> np.ndarray:
    """How far the *lower* of the brightest points within ``DISC_REACH_MM`` on either side (a
    disc's two endplates) rises above both the point itself and the local body interior (the
    running median over a vertebral period), relative to the column's endplate contrast. About
    0 inside a body, whose cortices are further apart than that, and at a trabecular dip, whose
    sides are no brighter than the interior."""
    w = DISC_REACH_MM
    pad = np.pad(tube, w, mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(pad, w)
    n = len(tube)
    sides = np.minimum(win[0:n].max(axis=1), win[w + 1 : w + 1 + n].max(axis=1))
    interior = ndi.median_filter(tube, size=TUBE_INTERIOR_MM, mode="nearest")
    score = np.maximum(sides - np.maximum(tube, interior), 0.0)
    vals = tube[col] if col.sum() >= 10 else tube
    scale = float(np.percentile(vals, 95) - np.median(vals))
    return np.clip(score / max(scale, 1.0), 0.0, 1.0)


def _find_discs_frac(
    frac: np.ndarray, tube: np.ndarray | None = None, tube_metal: np.ndarray | None = None
) -> np.ndarray:
    """Disc centres (indices along the 1 mm profile) from the fraction of the body section that is
    (hole-filled) bone: the chain of local minima with the most total depth whose spacings stay
    within a vertebral period (a body is never split: spacings below ``MIN_GAP_FRAC`` periods
    are impossible; a spacing near two periods is a disc not seen, split later).

    With the full-resolution tube profile (``tube``), a candidate is a dip of the tube between
    two bright endplates close on either side and its depth is that dip; a dark body interior
    between cortices a body's height apart is no candidate, nor is a disc space holding metal
    (an interbody cage: no disc seen, the level is split where expected)."""
    period = _body_period(frac)
    if tube is not None:
        dip = _endplate_pair_depth(tube, frac > 0.2)
        if tube_metal is not None:
            near = ndi.maximum_filter1d(tube_metal, 2 * DISC_CAGE_REACH_MM + 1, mode="nearest")
            dip = np.where(near > 0.02, 0.0, dip)
        # the deepest point of each dip (a thick disc's flat floor: its middle, below)
        m = (dip >= ndi.maximum_filter1d(dip, 5, mode="nearest")) & (dip >= TUBE_MIN_DIP)
    else:
        m = (frac <= ndi.minimum_filter1d(frac, 7, mode="nearest")) & (frac < DISC_FRAC_MAX)
    # a disc lies between two bodies: bone on both sides within a period
    w = int(round(period))
    pad = np.pad(frac, w, mode="constant")
    win = np.lib.stride_tricks.sliding_window_view(pad, w)
    n = len(frac)
    before = win[0:n].max(axis=1)
    after = win[w + 1 : w + 1 + n].max(axis=1)
    m &= (before >= 0.6) & (after >= 0.6)
    cand = np.nonzero(m)[0]
    # one candidate per flat minimum
    if len(cand) == 0:
        return cand
    groups = [[cand[0]]]
    for c in cand[1:]:
        if c - groups[-1][-1] > 3:
            groups.append([c])
        else:
            groups[-1].append(c)
    if tube is not None:
        cand = np.array([int(round(0.5 * (g[0] + g[-1]))) for g in groups])
    else:
        cand = np.array([g[0] for g in groups])
    depth = dip[cand] if tube is not None else 1.0 - frac[cand]
    k = len(cand)
    best = depth.copy()
    prev = -np.ones(k, int)
    lo, hi = max(MIN_BODY_MM + 4.0, MIN_GAP_FRAC * period), 1.4 * period
    for i in range(k):
        d = cand[i] - cand[:i]
        ok = ((d >= lo) & (d <= hi)) | ((d >= 1.7 * period) & (d <= 2.4 * period))
        if not ok.any():
            continue
        js = np.nonzero(ok)[0]
        dd = d[js].astype(float)
        r = dd / period
        pen = 4.0 * (r - np.rint(r).clip(1, 2)) ** 2 + np.where(dd > hi, 0.5, 0.0)
        val = best[js] - pen + depth[i]
        j = int(np.argmax(val))
        if val[j] > best[i]:
            best[i] = val[j]
            prev[i] = js[j]
    i = int(np.argmax(best))
    out = []
    while i >= 0:
        out.append(int(cand[i]))
        i = prev[i]
    return np.array(sorted(out), int)


def _runs_between(discs: np.ndarray, n: int, frac: np.ndarray) -> list[tuple[int, int]]:
    """Body runs between consecutive discs; the runs before the first and after the last disc
    count when they hold bone."""
    edges = [0] + [int(d) for d in discs] + [n - 1]
    out = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        a1 = a if a == 0 else a + 2
        b1 = b if b == n - 1 else b - 2
        if b1 - a1 + 1 < 6:
            continue
        seg = frac[a1 : b1 + 1]
        if seg.mean() < 0.4 and (seg > 0.6).sum() < 8:
            continue
        # only the part of the run that holds bone (not the empty column beyond the spine)
        held = np.nonzero(seg > 0.3)[0]
        a1, b1 = a1 + int(held[0]), a1 + int(held[-1])
        if b1 - a1 + 1 < 6:
            continue
        out.append((a1, b1))
    return out


def _runs(mask: np.ndarray, min_len: int, max_gap: int) -> list[tuple[int, int]]:
    """Inclusive (start, stop) index runs of True, bridging gaps <= max_gap, dropping short ones."""
    m = mask.copy()
    if max_gap > 0:
        m = ndi.binary_closing(np.pad(m, max_gap, mode="edge"), np.ones(max_gap + 1, bool))[max_gap:-max_gap]
    lab, n = ndi.label(m)
    out = []
    for sl in ndi.find_objects(lab):
        a, b = sl[0].start, sl[0].stop - 1
        if b - a + 1 >= min_len:
            out.append((a, b))
    return out


class _SplitRun(tuple):
    """A body run cut at an expected level (no disc seen): its ends are not endplates."""

    def __new__(cls, a: int, b: int):
        return super().__new__(cls, (a, b))


def _split_long_runs(runs, frac, warnings):
    """Split a body run much longer than its neighbours (fused levels, interbody cage)."""
    lens = np.array([b - a + 1 for a, b in runs], float)
    inner = lens[1:-1] if len(lens) > 3 else lens
    ref = float(np.median(inner))
    starts = np.array([a for a, _ in runs], float)
    steps = np.diff(starts)
    steps = steps[steps < 1.5 * np.median(steps)] if len(steps) else steps
    period = float(np.median(steps)) if len(steps) else ref
    disc = max(0.0, period - ref)
    out = []
    for a, b in runs:
        L = b - a + 1
        # n bodies and n - 1 discs: L + disc = n periods
        k = int(round((L + disc) / period)) if period > 0 else 1
        if L > 1.6 * ref and k >= 2:
            cuts = [a + int(round(L * q / k)) for q in range(1, k)]
            # move each cut to the weakest bone fraction nearby
            w = max(2, int(0.25 * ref))
            moved = []
            for c in cuts:
                lo, hi = max(a + 3, c - w), min(b - 3, c + w)
                moved.append(lo + int(np.argmin(frac[lo : hi + 1])) if hi > lo else c)
            cuts = moved
            pieces = [a] + cuts + [b + 1]
            for p0, p1 in zip(pieces[:-1], pieces[1:], strict=True):
                out.append(_SplitRun(p0, p1 - 1))
            warnings.append(
                f"Two or more bodies without a visible disc between them ({L} mm along the spine) "
                "were split at the expected level (fusion, interbody cage or a collapsed disc)."
            )
        else:
            out.append((a, b))
    return out


# --------------------------------------------------------------------------------------------
# 5-6. assembling, grading, labelling
# --------------------------------------------------------------------------------------------
def _assemble(found: list[dict], sep: _Separation, mm_to_lps, warnings: list[str],
              height_uncertainty_mm: float = 0.5) -> list[Vertebra]:
    nan = float("nan")
    hmax = []
    for item in found:
        m = item["meas"]
        if m is None or not item["b"]["complete"] or item["b"]["kind"] != "vertebra":
            hmax.append(nan)
        else:
            hs = [m.heights_mm[k] for k in ("anterior", "middle", "posterior")]
            hmax.append(max(hs) if all(np.isfinite(hs)) else nan)
    hmax = np.asarray(hmax)
    verts = []
    for n, item in enumerate(found):
        b, m = item["b"], item["meas"]
        neigh = [hmax[j] for j in range(max(0, n - 2), min(len(found), n + 3)) if j != n]
        neigh = [h for h in neigh if np.isfinite(h)]
        expected = float(np.median(neigh)) if neigh else None
        heights = dict(m.heights_mm) if m is not None else {"anterior": nan, "middle": nan, "posterior": nan}
        loss = grade = None
        if m is not None and b["complete"] and not b.get("split", False):
            loss, grade, why = grade_heights(heights, expected)
            if why is not None:
                warnings.append(f"Vertebra {n + 1} from the top: {why}.")
            bounds = grade_bounds(heights, expected, height_uncertainty_mm) if grade is not None else None
            # said when it matters: a graded body, or one that may be a grade 2 or 3
            if bounds is not None and bounds[0] != bounds[1] and max(grade, bounds[1] - 1) >= 1:
                warnings.append(
                    f"Vertebra {n + 1} from the top: graded {grade} from a {100 * loss:.0f} % "
                    f"height loss, but heights read to +-{height_uncertainty_mm:.1f} mm on this "
                    f"CT allow grade {bounds[0]} to {bounds[1]}: check it on the sagittal view."
                )
            moved = [f"its {name} height at {100 * f:.0f} %" for name, f in m.heights_at.items()
                     if np.isfinite(heights.get(name, np.nan))]
            if moved:
                warnings.append(
                    f"Vertebra {n + 1} from the top: no endplate at the rim (osteophytes or "
                    f"bone bridging the disc's margin), so {' and '.join(moved)} of the "
                    "body's depth from the front is read; a wedge reads a little milder there."
                )
        elif b.get("split", False):
            warnings.append(
                f"Vertebra {n + 1} from the top was separated at the expected level, not at a "
                "visible disc: its heights are approximate and it is not graded."
            )
        value = n + 1
        heads = sep.rib_heads.get(value)
        heads_lps = np.array([mm_to_lps(p) for p in heads]) if heads is not None else np.zeros((0, 3))
        verts.append(
            Vertebra(
                label=lv.generic_label(n),
                label_confident=False,
                label_source=lv.SOURCE_NONE,
                index=n,
                label_value=value,
                kind=b["kind"],
                complete=b["complete"],
                centroid_lps=np.asarray(item["centroid"], float),
                vertebra_centroid_lps=np.asarray(item["vcent"], float),
                axis_lps=m.axis_lps if m is not None else _unit(mm_to_lps(b["center_mm"] + b["axis_mm"]) - mm_to_lps(b["center_mm"])),
                posterior_lps=m.posterior_lps if m is not None else _unit(mm_to_lps(b["center_mm"] + b["posterior_mm"]) - mm_to_lps(b["center_mm"])),
                superior_endplate=m.superior_endplate if m is not None else None,
                inferior_endplate=m.inferior_endplate if m is not None else None,
                posterior_wall=m.posterior_wall if m is not None else None,
                heights_mm=heights,
                expected_height_mm=expected,
                height_loss=loss,
                fracture_grade=grade,
                pedicle_left=m.pedicle_left if m is not None else None,
                pedicle_right=m.pedicle_right if m is not None else None,
                canal_center_lps=np.asarray(item["canal_c"], float),
                canal_radius_mm=float(b["canal_radius_mm"]),
                rib_heads_lps=heads_lps,
                bbox_ijk=item["bbox"],
                volume_ml=item["volume_ml"],
            )
        )
        if b.get("arch_only", False):
            warnings.append(
                f"Vertebra {n + 1} from the top is cut by the top of the scan: only part of its "
                "posterior arch is in view, so it is not measured."
            )
        elif b["kind"] == "vertebra" and m is None:
            warnings.append(f"Vertebra {n + 1} from the top could not be measured (body not found).")
    return verts


def _unit(v):
    v = np.asarray(v, float)
    return v / max(np.linalg.norm(v), 1e-9)


def _auto_labels(verts: list[Vertebra], levels: str | None, warnings: list[str]) -> list[Vertebra]:
    if not verts:
        return verts
    if levels:
        first = next((n for n, v in enumerate(verts) if v.complete), 0)
        return lv.apply_labels(verts, first, lv.normalize_level(levels), lv.SOURCE_USER, True)
    sacrum_pos = len(verts) - 1 if verts[-1].kind == "sacrum" else None
    rib_pos = None
    ribbed = [n for n, v in enumerate(verts) if v.kind == "vertebra" and v.has_ribs]
    if ribbed:
        last = ribbed[-1]
        below = [v for v in verts[last + 1 :] if v.kind == "vertebra"]
        # the thoracic cage is continuous: every complete vertebra above the last rib-bearing
        # one must bear ribs too, else the rib pattern (missed ribs, false ones) is no anchor
        above_ok = all(v.has_ribs for v in verts[:last] if v.kind == "vertebra" and v.complete)
        if below and not any(v.has_ribs for v in below) and above_ok:
            rib_pos = last
        elif below and not above_ok:
            warnings.append(
                "Ribs were found on some thoracic vertebrae but not on others above the last "
                "rib-bearing one, so the last rib cannot anchor the levels."
            )
    if sacrum_pos is not None and rib_pos is not None:
        if sacrum_pos - rib_pos != lv.level_index("S1") - lv.level_index("T12"):
            warnings.append(
                f"The sacrum and the last rib disagree on the levels ({sacrum_pos - rib_pos - 1} "
                "lumbar vertebrae between them instead of 5): a transitional vertebra or a "
                "missing/extra rib. Levels are counted from the sacrum; please confirm them."
            )
            return lv.apply_labels(verts, sacrum_pos, "S1", lv.SOURCE_SACRUM, False)
        return lv.apply_labels(verts, sacrum_pos, "S1", lv.SOURCE_SACRUM, True)
    if sacrum_pos is not None:
        return lv.apply_labels(verts, sacrum_pos, "S1", lv.SOURCE_SACRUM, True)
    if rib_pos is not None:
        return lv.apply_labels(verts, rib_pos, "T12", lv.SOURCE_LAST_RIB, True)
    return [
        replace(v, label=lv.generic_label(n), label_confident=False, label_source=lv.SOURCE_NONE)
        for n, v in enumerate(verts)
    ]
