"""Anatomy from a vertebra label map made elsewhere (TotalSegmentator, 3D Slicer).

Three inputs are understood:

* a **TotalSegmentator folder** with one NIfTI mask per structure (``vertebrae_L3.nii.gz``,
  ``vertebrae_S1.nii.gz``, ``sacrum.nii.gz``); files of other structures are ignored;
* a **TotalSegmentator multilabel NIfTI** with the v2 class ids (25 sacrum, 26 vertebrae_S1,
  27..50 = L5..C1);
* a **3D Slicer segmentation** ``.seg.nrrd`` whose segments are named like a level
  (``SegmentN_Name`` = ``L3``, ``vertebrae_L3``, ``sacrum``) with their ``SegmentN_LabelValue``
  (and ``SegmentN_Layer`` when the file holds several layers).

The masks are brought onto the CT grid (nearest neighbour, through LPS millimetres: a RAS
file is converted at the boundary) and every vertebra is measured exactly as
:func:`~fluoroplan.segmentation.anatomy.analyze_anatomy` measures it; the labels are the
map's (``label_source="label-map"``, confident).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from fluoroplan.geometry.conventions import TITANIUM_MIN_HU
from fluoroplan.io.progress import CancelToken, ProgressCallback
from fluoroplan.io.volume import CTVolume
from fluoroplan.model.anatomy import Vertebra
from fluoroplan.segmentation import levels as lv
from fluoroplan.segmentation.anatomy import Anatomy, _report
from fluoroplan.segmentation.errors import LabelMapError, UnknownLevel
from fluoroplan.segmentation.vertebrae import (
    BONE_HU,
    SACRUM_BELOW_S1,
    VolumeSampler,
    expected_heights,
    grade_heights,
    measure_body,
)

SACRUM = "sacrum"
"""A label map's sacrum class: the sacrum below S1 when the map also has an S1 class (as
TotalSegmentator v2 does), else the whole sacrum, taken as S1."""
TOTALSEG_V2_IDS: dict[int, str] = {25: SACRUM, 26: "S1"}
TOTALSEG_V2_IDS.update({27 + n: lv.LEVELS[lv.level_index("L5") - n] for n in range(24)})
"""TotalSegmentator v2 multilabel class id -> level (25 sacrum, 26 vertebrae_S1, 27 L5 ...
50 C1)."""

_NAME_RE = re.compile(r"^(?:vertebrae?[_\s-]*)?([CTLS]\d{1,2}|sacrum)$", re.IGNORECASE)


def _level_of_name(name: str) -> str | None:
    """``vertebrae_L3`` / ``L3`` -> level, ``sacrum`` -> :data:`SACRUM`, else None (another
    structure)."""
    stem = name.strip()
    for ext in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
    if not _NAME_RE.match(stem):
        return None
    if stem.lower().endswith(SACRUM):
        return SACRUM
    try:
        return lv.normalize_level(stem)
    except UnknownLevel:
        return None


def _value_of_level(level: str) -> int:
    """A distinct label value per level (and one for the sacrum below S1)."""
    return lv.level_index("S1") + 2 if level == SACRUM else lv.level_index(level) + 1


# --------------------------------------------------------------------------------------------
# readers: each returns (label array [k, j, i], lps_from_ijk 4x4, {value: level})
# --------------------------------------------------------------------------------------------
def _read_sitk(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK warnings never reach the terminal

    try:
        im = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise LabelMapError(f"{path.name} cannot be read as a label map: {err}") from err
    if im.GetDimension() != 3:
        raise LabelMapError(f"{path.name} is not a 3-D label map (dimension {im.GetDimension()}).")
    a = sitk.GetArrayFromImage(im)
    A = np.eye(4)
    A[:3, :3] = np.array(im.GetDirection()).reshape(3, 3) * np.array(im.GetSpacing())
    A[:3, 3] = im.GetOrigin()
    return a, A


def _read_folder(folder: Path):
    files = sorted(p for p in folder.iterdir() if p.is_file() and _level_of_name(p.name))
    if not files:
        raise LabelMapError(
            f"The folder {folder} holds no vertebra masks (files named like vertebrae_L3.nii.gz)."
        )
    out = None
    A0 = None
    names: dict[int, str] = {}
    for path in files:
        level = _level_of_name(path.name)
        assert level is not None  # the files were chosen by their level's name
        a, A = _read_sitk(path)
        if out is None or A0 is None:  # the first file (both are set together)
            out = np.zeros(a.shape, np.uint8)
            A0 = A
        elif a.shape != out.shape or not np.allclose(A, A0, atol=1e-3):
            raise LabelMapError(f"{path.name} is not on the same grid as the other masks in {folder}.")
        value = _value_of_level(level)
        names[value] = level
        out[a > 0] = value
    return out, A0, names


def _read_multilabel_nifti(path: Path):
    a, A = _read_sitk(path)
    a = np.asarray(a)
    present = [int(v) for v in np.unique(a) if v in TOTALSEG_V2_IDS]
    if not present:
        raise LabelMapError(
            f"{path.name} holds no TotalSegmentator v2 vertebra classes (25..50); "
            "for another numbering use a folder of per-structure masks or a .seg.nrrd."
        )
    return a, A, {v: TOTALSEG_V2_IDS[v] for v in present}


def _read_seg_nrrd(path: Path):
    import nrrd

    try:
        data, hdr = nrrd.read(str(path), index_order="C")
    except (nrrd.NRRDError, OSError, ValueError) as err:
        raise LabelMapError(f"{path.name} cannot be read as a 3D Slicer segmentation: {err}") from err
    if data.ndim not in (3, 4):
        raise LabelMapError(f"{path.name}: expected 3-D (or layered 4-D) data, got {data.shape}.")
    dirs = np.asarray(hdr.get("space directions"), dtype=object)
    rows = [np.asarray(r, float) for r in dirs if r is not None and not (isinstance(r, float) and np.isnan(r))]
    rows = [r for r in rows if r.shape == (3,) and np.all(np.isfinite(r))]
    if len(rows) != 3:
        raise LabelMapError(f"{path.name}: 'space directions' does not describe a 3-D grid.")
    origin = np.asarray(hdr.get("space origin", np.zeros(3)), float)
    space = str(hdr.get("space", "left-posterior-superior")).lower()
    A = np.eye(4)
    A[:3, :3] = np.column_stack(rows)  # columns: i, j, k directions
    A[:3, 3] = origin
    if space in ("right-anterior-superior", "ras"):
        A = np.diag([-1.0, -1.0, 1.0, 1.0]) @ A
    elif space not in ("left-posterior-superior", "lps"):
        raise LabelMapError(f"{path.name}: unsupported space '{space}'.")
    segs = {}
    for key, val in hdr.items():
        m = re.match(r"^Segment(\d+)_Name$", key)
        if m:
            segs[int(m.group(1))] = str(val)
    if not segs:
        raise LabelMapError(f"{path.name} has no SegmentN_Name entries; is it a 3D Slicer .seg.nrrd?")
    layered = data.ndim == 4
    if layered and data.shape[0] > 16 and data.shape[-1] <= 16:
        data = np.moveaxis(data, -1, 0)
    shape = data.shape[1:] if layered else data.shape
    out = np.zeros(shape, np.uint8)
    names: dict[int, str] = {}
    for n, name in sorted(segs.items()):
        level = _level_of_name(name)
        if level is None:
            continue
        value = int(hdr.get(f"Segment{n}_LabelValue", n + 1))
        layer = int(hdr.get(f"Segment{n}_Layer", 0))
        src = data[layer] if layered else data
        out_value = _value_of_level(level)
        out[src == value] = out_value
        names[out_value] = level
    if not names:
        raise LabelMapError(f"{path.name}: no segment is named like a vertebral level (L3, vertebrae_L3, sacrum).")
    return out, A, names


def read_label_map(path_or_folder) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Read a vertebra label map: (labels ``[k, j, i]``, ``lps_from_ijk``, ``{value: level}``).

    Raises
    ------
    LabelMapError
        When the path is missing or holds no usable vertebra labels.
    """
    p = Path(path_or_folder)
    if not p.exists():
        raise LabelMapError(f"No label map at {p}.")
    if p.is_dir():
        return _read_folder(p)
    name = p.name.lower()
    if name.endswith(".seg.nrrd") or name.endswith(".nrrd"):
        return _read_seg_nrrd(p)
    level = _level_of_name(p.name)
    if level is not None:  # a single per-structure mask
        a, A = _read_sitk(p)
        value = _value_of_level(level)
        return (a > 0).astype(np.uint8) * value, A, {value: level}
    return _read_multilabel_nifti(p)


def _on_ct_grid(labels: np.ndarray, lps_from_lab: np.ndarray, volume: CTVolume) -> np.ndarray:
    """The label array on the CT grid (nearest neighbour through LPS)."""
    if labels.shape == volume.hu.shape and np.allclose(lps_from_lab, volume.lps_from_ijk, atol=1e-3):
        return np.asarray(labels)
    lab_from_ct = np.linalg.inv(lps_from_lab) @ volume.lps_from_ijk
    out = np.zeros(volume.hu.shape, labels.dtype)
    nk, nj, ni = volume.hu.shape
    jj, ii = np.mgrid[0:nj, 0:ni]
    for k in range(nk):  # slice by slice keeps memory small
        ijk = np.stack([ii.ravel(), jj.ravel(), np.full(ii.size, k)], axis=0).astype(float)
        q = lab_from_ct[:3, :3] @ ijk + lab_from_ct[:3, 3:4]
        out[k] = ndi.map_coordinates(labels, q[::-1], order=0, mode="constant", cval=0).reshape(nj, ni)
    return out


# --------------------------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------------------------
def anatomy_from_label_map(
    volume: CTVolume,
    path_or_folder,
    metal_mask: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
):
    """The spine anatomy of ``volume`` from a vertebra label map made elsewhere.

    Parameters
    ----------
    volume : CTVolume
    path_or_folder : str or Path
        A TotalSegmentator folder, a TotalSegmentator v2 multilabel NIfTI, or a 3D Slicer
        ``.seg.nrrd`` (see the module docstring).
    metal_mask : ndarray bool (nk, nj, ni), optional
        Implant voxels; default HU >= ``TITANIUM_MIN_HU``.
    progress, cancel : as for :func:`~fluoroplan.segmentation.anatomy.analyze_anatomy`.

    Returns
    -------
    Anatomy
        Vertebrae cranial to caudal, ``label_source="label-map"``, measured at full resolution.

    Raises
    ------
    LabelMapError
        Unreadable file, no vertebra labels, or labels that do not overlap the CT.
    """

    t0 = time.perf_counter()
    times: dict[str, float] = {}
    _report(progress, cancel, 0.0, "Reading the label map")
    raw, lps_from_lab, names = read_label_map(path_or_folder)
    lab = _on_ct_grid(raw, lps_from_lab, volume)
    times["read"] = time.perf_counter() - t0
    if metal_mask is None:
        metal_mask = volume.hu >= np.int16(TITANIUM_MIN_HU)
    metal_mask = np.asarray(metal_mask, bool)

    # levels present, cranial to caudal (several ids of one level merge)
    by_level: dict[str, list[int]] = {}
    for value, level in names.items():
        by_level.setdefault(level, []).append(int(value))
    boxes = ndi.find_objects(lab)

    def in_view(vals):
        return [v for v in vals if v <= len(boxes) and boxes[v - 1] is not None]

    # a sacrum class is the sacrum below S1 when S1 has its own class, else the whole sacrum (S1)
    below_s1 = []
    if SACRUM in by_level:
        sac = by_level.pop(SACRUM)
        if in_view(by_level.get("S1", [])):
            below_s1 = in_view(sac)
        else:
            by_level.setdefault("S1", []).extend(sac)
    order = sorted(by_level, key=lv.level_index)
    present = []
    for level in order:
        vals = in_view(by_level[level])
        if vals:
            present.append((level, vals))
    if not present:
        raise LabelMapError("The label map's vertebrae do not overlap this CT.")

    labels = np.zeros(volume.hu.shape, np.uint8)
    A = volume.lps_from_ijk
    hu_sampler = VolumeSampler(volume.hu, A, fill=-1024.0)
    metal_sampler = VolumeSampler(metal_mask.view(np.uint8), A)
    lab_sampler = VolumeSampler(labels, A)
    geo = []
    for n, (_level, vals) in enumerate(present):
        value = n + 1
        sl = _union_box([boxes[v - 1] for v in vals], volume.hu.shape, pad=2)
        sub = np.isin(lab[sl], vals)
        labels[sl][sub] = value
        geo.append(_geometry(sub, sl, A, volume.hu.shape))
    if below_s1:
        labels[np.isin(lab, below_s1)] = SACRUM_BELOW_S1
    # the body axis follows the column: the line through the neighbours' centroids
    cents = np.array([g["centroid"] for g in geo])
    t1 = time.perf_counter()
    found = []
    for n, (level, _vals) in enumerate(present):
        _report(progress, cancel, 0.1 + 0.8 * n / len(present), f"Measuring {level}")
        g = geo[n]
        if len(geo) >= 2:
            a_, b_ = cents[max(0, n - 1)], cents[min(len(geo) - 1, n + 1)]
            axis = a_ - b_ if n > 0 or len(geo) > 1 else np.array([0.0, 0.0, 1.0])
        else:
            axis = g["axis"]
        axis = axis / max(np.linalg.norm(axis), 1e-9)
        if axis[2] < 0:
            axis = -axis
        post = np.array([0.0, 1.0, 0.0]) - axis[1] * axis
        post /= np.linalg.norm(post)
        kind = "sacrum" if level == "S1" else "vertebra"
        meas = None
        body_c = g["body_centroid"]
        if kind == "vertebra" and body_c is not None:
            offset = float(np.dot(g["canal_center"] - body_c, post)) if g["canal_center"] is not None else 30.0
            meas = measure_body(
                hu_sampler, metal_sampler, lab_sampler, n + 1, body_c, axis, post,
                half_height_mm=g["half_height"], canal_offset_mm=max(offset, 10.0),
                canal_radius_mm=g["canal_radius"], label_is_bone=True,
            )
        found.append((level, kind, g, meas, axis, post))
    times["measure"] = time.perf_counter() - t1

    hmax = []
    for _level, kind, g, meas, _a, _p in found:
        hs = [meas.heights_mm[k] for k in ("anterior", "middle", "posterior")] if meas else []
        ok = meas is not None and g["complete"] and kind == "vertebra" and all(np.isfinite(hs))
        hmax.append(max(hs) if ok else float("nan"))
    expected = expected_heights(hmax)
    verts = []
    grade_notes: list[str] = []
    nan = float("nan")
    for n, (level, kind, g, meas, axis, post) in enumerate(found):
        heights = dict(meas.heights_mm) if meas else {"anterior": nan, "middle": nan, "posterior": nan}
        loss = grade = None
        if meas is not None and g["complete"]:
            loss, grade, why = grade_heights(heights, expected[n])
            if why is not None:
                grade_notes.append(f"{level}: {why}.")
        verts.append(
            Vertebra(
                label=level,
                label_confident=True,
                label_source=lv.SOURCE_LABEL_MAP,
                index=n,
                label_value=n + 1,
                kind=kind,
                complete=g["complete"],
                centroid_lps=meas.centroid_lps if meas else (g["body_centroid"] if g["body_centroid"] is not None else g["centroid"]),
                vertebra_centroid_lps=g["centroid"],
                axis_lps=meas.axis_lps if meas else axis,
                posterior_lps=meas.posterior_lps if meas else post,
                superior_endplate=meas.superior_endplate if meas else None,
                inferior_endplate=meas.inferior_endplate if meas else None,
                posterior_wall=meas.posterior_wall if meas else None,
                heights_mm=heights,
                expected_height_mm=expected[n],
                height_loss=loss,
                fracture_grade=grade,
                pedicle_left=meas.pedicle_left if meas else None,
                pedicle_right=meas.pedicle_right if meas else None,
                canal_center_lps=g["canal_center"],
                canal_radius_mm=g["canal_radius"],
                rib_heads_lps=np.zeros((0, 3)),
                bbox_ijk=g["bbox"],
                volume_ml=g["volume_ml"],
            )
        )
    canal = [v.canal_center_lps for v in verts if v.canal_center_lps is not None]
    radii = [v.canal_radius_mm for v in verts if v.canal_center_lps is not None]
    bone = (volume.hu >= np.int16(BONE_HU)) & ~metal_mask
    times["total"] = time.perf_counter() - t0
    warnings = list(grade_notes)
    missing = _gaps(order)
    if missing:
        warnings.append(
            "The label map skips level(s) " + ", ".join(missing) + "; the levels are the map's own."
        )
    _report(progress, cancel, 1.0, f"Label map read: {len(verts)} vertebrae")
    return Anatomy(
        labels=labels,
        bone_mask=bone,
        vertebrae=tuple(verts),
        canal_centerline_lps=np.array(canal).reshape(-1, 3),
        canal_radii_mm=np.array(radii, float),
        warnings=tuple(warnings),
        timings_s=times,
    )


def _gaps(order: list[str]) -> list[str]:
    idx = [lv.level_index(x) for x in order]
    return [lv.LEVELS[i] for i in range(min(idx), max(idx) + 1) if i not in idx] if idx else []


def _union_box(slices, shape, pad: int):
    lo = [min(s[a].start for s in slices) for a in range(3)]
    hi = [max(s[a].stop for s in slices) for a in range(3)]
    return tuple(slice(max(0, lo[a] - pad), min(shape[a], hi[a] + pad)) for a in range(3))


def _geometry(sub: np.ndarray, sl, A: np.ndarray, shape) -> dict:
    """Centroid, canal (the vertebral foramen: the hole the mask encloses on axial slices),
    body (mask in front of the canal) and extent of one vertebra mask ``sub`` inside box ``sl``."""
    off = np.array([s.start for s in sl], float)  # (k, j, i)
    sp = np.linalg.norm(A[:3, :3], axis=0)  # i, j, k mm

    def lps(kji):
        kji = np.atleast_2d(kji) + off
        return kji[:, ::-1] @ A[:3, :3].T + A[:3, 3]

    kk, jj, ii = np.nonzero(sub)
    centroid = lps(np.array([kk.mean(), jj.mean(), ii.mean()]))[0]
    # the foramen: holes of the (slightly closed) mask, slice by slice
    s2 = np.zeros((3, 3, 3), bool)
    s2[1] = ndi.generate_binary_structure(2, 1)
    closed = ndi.binary_closing(sub, structure=s2, iterations=2)
    holes = ndi.binary_fill_holes(closed, structure=s2) & ~closed
    canal_center = None
    canal_radius = 8.0
    if holes.sum() >= 5:
        hk, hj, hi_ = np.nonzero(holes)
        canal_center = lps(np.array([hk.mean(), hj.mean(), hi_.mean()]))[0]
        nslices = max(len(np.unique(hk)), 1)
        area = holes.sum() / nslices * sp[0] * sp[1]
        canal_radius = float(np.sqrt(area / np.pi))
    pts = lps(np.column_stack([kk, jj, ii]))
    # body: the mask voxels anterior of the canal's front edge (LPS -y is anterior)
    body_c = None
    half_h = 14.0
    if canal_center is not None:
        front = pts[:, 1] < canal_center[1] - 0.8 * canal_radius
        if front.sum() >= 20:
            bp = pts[front]
            body_c = bp.mean(axis=0)
            half_h = 0.5 * float(np.ptp(bp[:, 2])) + 2.0
    nk, nj, ni = shape
    lo = np.array([kk.min(), jj.min(), ii.min()]) + off
    hi = np.array([kk.max(), jj.max(), ii.max()]) + off + 1
    complete = bool(lo[0] > 0 and hi[0] < nk and lo[1] > 0 and hi[1] < nj and lo[2] > 0 and hi[2] < ni)
    return {
        "centroid": centroid,
        "canal_center": canal_center,
        "canal_radius": canal_radius,
        "body_centroid": body_c,
        "half_height": half_h,
        "complete": complete,
        "axis": np.array([0.0, 0.0, 1.0]),
        "bbox": (tuple(int(x) for x in lo[::-1]), tuple(int(x) for x in hi[::-1])),
        "volume_ml": float(len(kk) * np.prod(sp) / 1000.0),
    }
