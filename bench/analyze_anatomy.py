"""Benchmark: anatomy analysis time per stage and accuracy. Prints one parseable line per case.

Cases: the full-size phantom (default 512 x 512 x 400 at 0.75 x 0.75 x 1 mm) against its
truth, and, when ../shared/data is present, the TotalSegmentator abdomen CT (whole-vertebra
centroids against its reference labels) and the thorax CTA crop (no sacrum may be claimed; the
vertebra nearest the reference T12 and its whole-vertebra centroid error).

Usage: .venv/bin/python bench/analyze_anatomy.py [--phantom-shape 512 512 400] [--no-real]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from fluoroplan.io.volume import CTVolume
from fluoroplan.resources.phantom import make_phantom
from fluoroplan.segmentation.anatomy import analyze_anatomy
from fluoroplan.segmentation.errors import AnatomyError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TOTALSEG_V2 = {26: "S1", 27: "L5", 28: "L4", 29: "L3", 30: "L2", 31: "L1", 32: "T12", 33: "T11"}


def _line(case: str, payload: dict) -> None:
    print("bench analyze_anatomy", json.dumps({"case": case, **payload}))


def _summary(an, seconds: float) -> dict:
    return {
        "anatomy_s": round(seconds, 3),
        "stages_s": {k: round(v, 3) for k, v in an.timings_s.items()},
        "vertebrae": [v.label for v in an.vertebrae],
        "complete": [bool(v.complete) for v in an.vertebrae],
        "confident": [bool(v.label_confident) for v in an.vertebrae],
        "label_source": an.label_source,
        "grades": [v.fracture_grade for v in an.vertebrae],
    }


def _read_nifti(path: Path) -> tuple[CTVolume, np.ndarray]:
    import SimpleITK as sitk

    im = sitk.ReadImage(str(path))
    a = np.clip(sitk.GetArrayFromImage(im), -1024, 3071).astype(np.int16)
    A = np.eye(4)
    A[:3, :3] = np.array(im.GetDirection()).reshape(3, 3) * np.array(im.GetSpacing())
    A[:3, 3] = im.GetOrigin()
    return CTVolume(a, A), A


def _phantom_case(args) -> None:
    t = time.perf_counter()
    ph = make_phantom(
        args.seed, shape_ijk=tuple(args.phantom_shape), pixel_mm=args.pixel_mm, slice_mm=args.slice_mm
    )
    t_make = time.perf_counter() - t
    t = time.perf_counter()
    try:
        an = analyze_anatomy(ph.volume, metal_mask=ph.metal)
    except AnatomyError as err:
        _line("phantom", {"error": str(err)})
        return
    dt = time.perf_counter() - t
    errs = {}
    for tv in ph.truth["vertebrae"]:
        try:
            v = an.vertebra(tv["label"])
        except KeyError:
            continue
        errs[tv["label"]] = round(float(np.linalg.norm(v.centroid_lps - tv["centroid_lps"])), 2)
    _line(
        "phantom",
        {
            "shape_ijk": list(ph.volume.shape_ijk),
            "voxels": int(np.prod(ph.volume.hu.shape)),
            "phantom_s": round(t_make, 2),
            **_summary(an, dt),
            "truth": [v["label"] for v in ph.truth["vertebrae"]],
            "truth_grades": [v["fracture_grade"] for v in ph.truth["vertebrae"]],
            "body_centroid_err_mm": errs,
        },
    )


def _abdomen_case() -> None:
    import SimpleITK as sitk
    from scipy import ndimage as ndi

    folder = DATA / "totalseg-abdomen-ct"
    if not (folder / "ct.nii.gz").exists():
        return
    vol, A = _read_nifti(folder / "ct.nii.gz")
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labels_totalseg.nii.gz")))
    t = time.perf_counter()
    an = analyze_anatomy(vol)
    dt = time.perf_counter() - t
    errs = {}
    for value, name in TOTALSEG_V2.items():
        try:
            v = an.vertebra(name)
        except KeyError:
            continue
        c = np.array(ndi.center_of_mass(ref == value))[::-1]
        p = A[:3, :3] @ c + A[:3, 3]
        errs[name] = round(float(np.linalg.norm(v.vertebra_centroid_lps - p)), 2)
    _line("totalseg-abdomen-ct", {**_summary(an, dt), "vertebra_centroid_err_mm": errs})


def _thorax_case() -> None:
    folder = DATA / "totalseg-thorax-cta-stent"
    if not (folder / "ct.nii.gz").exists():
        return
    vol, _ = _read_nifti(folder / "ct.nii.gz")
    t = time.perf_counter()
    try:
        an = analyze_anatomy(vol)
    except AnatomyError as err:
        _line("totalseg-thorax-cta-stent", {"error": str(err)})
        return
    dt = time.perf_counter() - t
    err = None
    if (folder / "vertebrae_T12.nii.gz").exists():
        import SimpleITK as sitk
        from scipy import ndimage as ndi

        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "vertebrae_T12.nii.gz")))
        p = vol.lps_from_ijk[:3, :3] @ np.array(ndi.center_of_mass(ref > 0))[::-1] + vol.lps_from_ijk[:3, 3]
        # the vertebra nearest the reference T12 (whatever its label) and its distance
        near = min(an.vertebrae, key=lambda v: np.linalg.norm(v.vertebra_centroid_lps - p), default=None)
        if near is not None:
            err = {near.label: round(float(np.linalg.norm(near.vertebra_centroid_lps - p)), 2)}
    _line(
        "totalseg-thorax-cta-stent",
        {
            **_summary(an, dt),
            "sacrum_claimed": any(v.kind == "sacrum" for v in an.vertebrae),
            "ref_T12_nearest_centroid_err_mm": err,
        },
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phantom-shape", type=int, nargs=3, default=(512, 512, 400))
    ap.add_argument("--pixel-mm", type=float, default=0.75)
    ap.add_argument("--slice-mm", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-real", action="store_true", help="skip the real scans in ../shared/data")
    args = ap.parse_args()
    _phantom_case(args)
    if not args.no_real:
        _abdomen_case()
        _thorax_case()


if __name__ == "__main__":
    main()
