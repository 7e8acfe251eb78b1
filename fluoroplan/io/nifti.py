"""Read a NIfTI CT (``.nii`` / ``.nii.gz``, e.g. the TotalSegmentator test scans) as a CTVolume.

SimpleITK reads NIfTI into ITK's LPS convention (it converts from NIfTI's RAS), so its origin,
spacing and direction give ``lps_from_ijk`` directly. NIfTI records no patient position:
head first supine (HFS) is assumed and a note says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fluoroplan.io.errors import DecodeError, LoadError
from fluoroplan.io.progress import CancelToken, ProgressCallback, no_progress
from fluoroplan.io.volume import CTVolume

__all__ = ["load_nifti"]


def load_nifti(
    path: str | os.PathLike,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> CTVolume:
    """Load a 3-D NIfTI image of HU as a :class:`CTVolume` (int16, LPS affine, HFS assumed).

    Values are rounded and clipped to int16 (a note says so if clipping was needed).
    """
    import SimpleITK as sitk

    progress = progress or no_progress
    path = Path(path)
    if cancel is not None:
        cancel.check()
    progress(0.0, f"Reading {path.name}")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        raise DecodeError(
            f"The NIfTI file {path.name} could not be read ({first}). The file may be damaged "
            "or incomplete; copy it again."
        ) from None
    if cancel is not None:
        cancel.check()
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise LoadError(
            f"The NIfTI file {path.name} is not a single 3-D CT volume (it has "
            f"{image.GetDimension()} dimensions and {image.GetNumberOfComponentsPerPixel()} "
            "value(s) per voxel). Choose a 3-D CT."
        )
    progress(0.6, f"Converting {path.name} to HU")
    arr = sitk.GetArrayViewFromImage(image)  # [k, j, i]
    notes = ["NIfTI records no patient position: head first supine (HFS) is assumed."]
    if arr.dtype == np.int16:
        hu = np.array(arr, dtype=np.int16, copy=True)
    else:
        values = np.rint(arr) if arr.dtype.kind == "f" else arr
        lo, hi = values.min(), values.max()
        if lo < -32768 or hi > 32767:
            notes.append(f"Values {lo:.0f}..{hi:.0f} were clipped to the int16 HU range.")
            values = np.clip(values, -32768, 32767)
        hu = values.astype(np.int16)
    spacing = np.array(image.GetSpacing(), float)
    direction = np.array(image.GetDirection(), float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing
    affine[:3, 3] = image.GetOrigin()
    del image, arr
    name = path.name
    for suffix in (".gz", ".nii"):
        name = name.removesuffix(suffix)
    progress(1.0, f"Loaded {path.name}")
    return CTVolume(
        hu=hu,
        lps_from_ijk=affine,
        patient_position="HFS",
        identifiers={
            "study_instance_uid": "",
            "series_instance_uid": "",
            "frame_of_reference_uid": "",
            "series_description": name,
            "modality": "CT",
            "kernel": "",
            "study_date": "",
            "manufacturer": "",
            "source_file": str(path),
        },
        patient={"name": "", "id": "", "birth_date": "", "sex": ""},
        notes=notes,
    )
