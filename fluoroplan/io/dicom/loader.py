"""Loading: :func:`load_series` turns one :class:`~.series.SeriesInfo` into a
:class:`CTVolume` (plan the geometry, check the size against the free memory, read the pixels,
resample, and say in ``notes`` what was done); :func:`load_ct` loads a folder, files or a NIfTI
file. The top of the ``dicom`` submodules: uses all the others.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from fluoroplan.io.dicom.geometry import _check_size, _name, _plan_geometry
from fluoroplan.io.dicom.pixels import (
    _check_odd_rescale,
    _compare_duplicates,
    _read_frames,
    _resample,
)
from fluoroplan.io.dicom.series import SeriesInfo, default_series, scan
from fluoroplan.io.errors import SeriesNotFound
from fluoroplan.io.nifti import load_nifti
from fluoroplan.io.progress import CancelToken, ProgressCallback, Stage
from fluoroplan.io.volume import CTVolume

PATIENT_POSITIONS = ("HFS", "HFP", "FFS", "FFP")


def load_series(
    info_or_paths: SeriesInfo | str | os.PathLike | Iterable[str | os.PathLike],
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> CTVolume:
    """Load one series as a :class:`CTVolume`.

    Parameters
    ----------
    info_or_paths : a :class:`SeriesInfo` from :func:`scan`, or paths to scan (the default
        series among them is loaded).

    Raises
    ------
    LoadError subclasses with a message for the user; Cancelled.
    """
    if isinstance(info_or_paths, SeriesInfo):
        info = info_or_paths
        read = Stage(progress, 0.0, 1.0, cancel)
    else:
        info = default_series(scan(info_or_paths, Stage(progress, 0.0, 0.3, cancel), cancel))
        read = Stage(progress, 0.3, 1.0, cancel)
    if info._problem is not None:
        raise info._problem
    header = info._header
    geo = _plan_geometry(info._frames, header)
    _check_size(geo, _name(header), memory=True)  # free memory now, just before allocating
    notes: list[str] = []
    if geo.resample:
        stack = np.empty(
            (len(geo.frames), geo.frames[0].pixels.rows, geo.frames[0].pixels.columns), np.int16
        )
        clipped = _read_frames(geo.frames, stack, Stage(read, 0.0, 0.7))
    else:
        stack = hu = np.empty(geo.output_shape(), np.int16)
        clipped = _read_frames(geo.frames, hu, Stage(read, 0.0, 1.0))
    _compare_duplicates(geo, stack)
    rescale_note = _check_odd_rescale(geo, stack)
    if geo.resample:
        hu = _resample(geo, stack, Stage(read, 0.7, 1.0))
    del stack
    gaps = np.diff(geo.depth_mm)
    if geo.tilt_deg:
        declared = header.get("gantry_tilt") or 0.0
        notes.append(
            f"Gantry tilt of {geo.tilt_deg:.1f} deg detected"
            + (f" (the scanner recorded {declared:+.1f} deg)" if declared else "")
            + ": the slices were resampled onto an orthogonal grid in the acquired image "
            f"plane, {geo.spacing_mm:.2f} mm apart."
        )
    if geo.uneven:
        notes.append(
            f"Uneven slice spacing ({gaps.min():.2f}-{gaps.max():.2f} mm): the slices were "
            f"resampled (linear interpolation) onto a regular grid {geo.spacing_mm:.2f} mm apart."
        )
    if clipped:
        notes.append(
            f"{clipped} slice(s) held values beyond the int16 HU range; they were clipped."
        )
    if rescale_note:
        notes.append(rescale_note)
    position = header.get("patient_position", "")
    if not position:
        position = "HFS"
        notes.append(
            "The series does not record the patient position; head first supine (HFS) is assumed."
        )
    elif position not in PATIENT_POSITIONS:
        notes.append(
            f"The patient position is {position} (not HFS/HFP/FFS/FFP); check the room angles "
            "before using them."
        )
    if info.skipped:
        names = ", ".join(Path(p).name for p, _ in info.skipped[:5])
        more = "..." if len(info.skipped) > 5 else ""
        notes.append(
            f"{len(info.skipped)} unreadable or truncated file(s) were skipped ({names}{more})."
        )
    identifiers = {
        key: header.get(key, "")
        for key in (
            "study_instance_uid",
            "series_instance_uid",
            "frame_of_reference_uid",
            "series_description",
            "modality",
            "kernel",
            "study_date",
            "manufacturer",
        )
    }
    identifiers["series_number"] = header.get("series_number", "")
    patient = {
        "name": header.get("patient_name", ""),
        "id": header.get("patient_id", ""),
        "birth_date": header.get("patient_birth_date", ""),
        "sex": header.get("patient_sex", ""),
    }
    return CTVolume(
        hu=hu,
        lps_from_ijk=geo.lps_from_ijk(),
        patient_position=position,
        identifiers=identifiers,
        patient=patient,
        notes=notes,
    )


def _is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and (name.endswith(".nii") or name.endswith(".nii.gz"))


def load_ct(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    series_uid: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> CTVolume:
    """Load a CT from a folder, a list of files, one DICOM file (e.g. Enhanced CT) or NIfTI.

    Parameters
    ----------
    path : folder (searched recursively), file, list of files, or a ``.nii``/``.nii.gz`` file.
    series_uid : SeriesInstanceUID to load; default: :func:`default_series`.
    progress, cancel : see :func:`scan`.
    """
    if isinstance(path, (str, os.PathLike)) and _is_nifti(Path(path)):
        return load_nifti(path, progress=progress, cancel=cancel)
    found = scan(path, Stage(progress, 0.0, 0.3, cancel), cancel)
    if series_uid is None:
        info = default_series(found)
    else:
        matches = [s for s in found if s.series_instance_uid == series_uid]
        if not matches:
            listed = "; ".join(s.describe() for s in found[:6])
            raise SeriesNotFound(
                f"The series {series_uid} is not in {path}. Series found: {listed}. "
                "Choose one of these."
            )
        info = matches[0]
    return load_series(info, Stage(progress, 0.3, 1.0, cancel), cancel)
