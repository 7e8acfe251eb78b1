"""The entry point, :func:`analyze_anatomy`: the CT on the working grid, the canal, the bodies
and vertebrae, each vertebra measured at full resolution in its own frame, grades and levels, the
label map back on the CT grid; progress and cancellation between the stages."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from fluoroplan.geometry.conventions import TITANIUM_MIN_HU
from fluoroplan.io.progress import CancelToken, ProgressCallback
from fluoroplan.io.volume import CTVolume
from fluoroplan.segmentation import levels as lv
from fluoroplan.segmentation.anatomy.canal_track import _find_canal_coarse
from fluoroplan.segmentation.anatomy.grid import (
    GRID_MM,
    _bbox_ijk,
    _block_mean,
    _canonical,
    _full_res_labels,
    _label_centroids,
)
from fluoroplan.segmentation.anatomy.labelling import _assemble, _auto_labels, _unit
from fluoroplan.segmentation.anatomy.result import Anatomy
from fluoroplan.segmentation.anatomy.separation import _separate
from fluoroplan.segmentation.errors import AnatomyError, NoSpineFound
from fluoroplan.segmentation.vertebrae import BONE_HU, VolumeSampler, measure_body

AXIS_REFINE_DEG = (4.0, 45.0)
"""A body is measured again along its endplates' axis when it differs by this much (deg)."""
HEIGHT_UNCERTAINTY_VOXELS = 0.5
"""A body height is read to within this many of the CT's coarsest voxels (two ends at sub-voxel
half-way crossings); a grade that this uncertainty can change is flagged."""


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
    fz, fy, fx = (max(1, int(round(GRID_MM / s))) for s in sp_full)
    f = (fz, fy, fx)
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
