"""Read a NIfTI CT (``.nii`` / ``.nii.gz``, e.g. the TotalSegmentator test scans) as a CTVolume.

SimpleITK reads NIfTI into ITK's LPS convention (it converts from NIfTI's RAS), so its origin,
spacing and direction give ``lps_from_ijk`` directly. NIfTI records no patient position:
head first supine (HFS) is assumed and a note says so.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from fluoroplan.io.errors import DecodeError, LoadError
from fluoroplan.io.limits import check_volume_size
from fluoroplan.io.progress import CancelToken, ProgressCallback, no_progress
from fluoroplan.io.volume import CTVolume

__all__ = ["load_nifti"]

_CHUNK = 1 << 22


def _open_stream(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _check_complete(path: Path, cancel: CancelToken | None) -> tuple[int, ...]:
    """Read the NIfTI header and make sure the file holds every voxel it announces.

    ITK reads a truncated ``.nii.gz`` without complaint and fills the missing slices with 0,
    so the length (and, for gzip, the checksum) is verified here first, and the size the
    header implies is checked before anything is allocated. Returns the header's dimensions.
    """
    try:
        with _open_stream(path) as fp:
            head = fp.read(540)
            if len(head) < 348:
                raise DecodeError(
                    f"The NIfTI file {path.name} is too short to hold a NIfTI header "
                    f"({len(head)} bytes). The file is damaged or incomplete; copy it again."
                )
            version = None
            for order in "<>":
                if struct.unpack(order + "i", head[:4])[0] == 348:
                    version, fmt = 1, order
                elif len(head) >= 540 and struct.unpack(order + "i", head[:4])[0] == 540:
                    version, fmt = 2, order
                if version:
                    break
            if version is None:
                raise DecodeError(
                    f"{path.name} is not a NIfTI file (its header does not start with the "
                    "NIfTI header size). Choose a .nii/.nii.gz CT or a DICOM folder."
                )
            if version == 1:
                dims = struct.unpack(fmt + "8h", head[40:56])
                datatype, bitpix = struct.unpack(fmt + "2h", head[70:74])
                vox_offset = struct.unpack(fmt + "f", head[108:112])[0]
            else:
                dims = struct.unpack(fmt + "8q", head[16:80])
                datatype, bitpix = struct.unpack(fmt + "2h", head[12:16])
                vox_offset = struct.unpack(fmt + "q", head[168:176])[0]
            ndim = dims[0]
            if not 1 <= ndim <= 7 or any(d < 1 for d in dims[1 : ndim + 1]) or bitpix <= 0:
                raise DecodeError(
                    f"The NIfTI header of {path.name} is damaged (dimensions {dims[1:ndim + 1]}, "
                    f"{bitpix} bits per voxel). Copy or convert the file again."
                )
            shape = tuple(int(d) for d in dims[1 : ndim + 1])
            grid = (shape + (1, 1, 1))[:3]
            voxels = int(np.prod(shape, dtype=object))
            if ndim > 3 and voxels > grid[0] * grid[1] * grid[2]:
                raise LoadError(
                    f"The NIfTI file {path.name} holds {ndim} dimensions "
                    f"({' x '.join(map(str, shape))}), not a single 3-D CT volume. Choose a 3-D CT."
                )
            # ITK's image plus fluoroplan's int16 copy
            check_volume_size(grid, voxels * (bitpix // 8 + 2), f"the NIfTI file {path.name}")
            start = int(max(vox_offset, 348)) if math.isfinite(vox_offset) else 348
            expected = start + voxels * bitpix // 8
            # ITK turns NaN into 0 when it reads a NIfTI file, so float voxels are checked here.
            floating = {16: "f4", 64: "f8"}.get(int(datatype))
            per_slice = grid[0] * grid[1]
            bad, bad_slices, n_slices = 0, set(), grid[2]
            got = len(head)
            pending = head[start:]  # voxel bytes already read with the header
            if got < start:  # header extensions: skip them
                got += len(fp.read(start - got))
            index = 0  # voxels checked so far
            while True:
                if cancel is not None:
                    cancel.check()
                block = fp.read(_CHUNK)
                got += len(block)
                if floating:
                    data = pending + block
                    size = int(floating[1])
                    whole = len(data) - len(data) % size
                    values = np.frombuffer(data[:whole], dtype=fmt + floating)
                    where = np.flatnonzero(~np.isfinite(values))
                    if len(where):
                        bad += len(where)
                        bad_slices.update(((where + index) // per_slice).tolist())
                    index += len(values)
                    pending = data[whole:]
                if not block:
                    break
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise DecodeError(
            f"The NIfTI file {path.name} is incomplete or damaged ({exc.__class__.__name__}: "
            f"{exc}); its slices cannot all be read. Copy the file again from its source."
        ) from None
    if bad:
        first = min(bad_slices)
        raise DecodeError(
            f"The NIfTI file {path.name} holds {bad:,} voxels that are not numbers (NaN or "
            f"infinite) in {len(bad_slices)} of its {n_slices} slices (first: slice {first}); "
            "a CT has a number in every voxel. Convert the CT again (the converter probably "
            "failed)."
        )
    if got < expected:
        raise DecodeError(
            f"The NIfTI file {path.name} is truncated: its header announces "
            f"{' x '.join(map(str, shape))} voxels ({expected:,} bytes) but it holds "
            f"{got:,} bytes, so {100 * (1 - got / expected):.0f}% of the volume is missing. "
            "Copy the file again from its source."
        )
    return shape


def load_nifti(
    path: str | os.PathLike,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> CTVolume:
    """Load a 3-D NIfTI image of HU as a :class:`CTVolume` (int16, LPS affine, HFS assumed).

    Values are rounded and clipped to int16 (a note says so if clipping was needed).
    """
    import SimpleITK as sitk
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK warnings never reach the terminal

    progress = progress or no_progress
    path = Path(path)
    if cancel is not None:
        cancel.check()
    progress(0.0, f"Reading {path.name}")
    _check_complete(path, cancel)
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
