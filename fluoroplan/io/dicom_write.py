"""Write a CT volume as a DICOM series (the demo phantom and the loader tests use it).

The writer is general: any affine (including a non-orthogonal one, which is how a gantry tilt
is written), signed or unsigned storage, 12 or 16 stored bits, several transfer syntaxes, and a
single Enhanced CT multi-frame object.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from fluoroplan.io.progress import ProgressCallback, no_progress

TRANSFER_SYNTAXES = {
    "explicit": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg-ls": JPEGLSLossless,
    "jpeg2000": JPEG2000Lossless,
    "jpeg-lossless": JPEGLosslessSV1,
}


def _fmt(values: Sequence[float]) -> list[str]:
    # DS values are limited to 16 characters.
    return [f"{v:.10g}"[:16] for v in values]


def _base_dataset(
    patient: dict, study: dict, sop_class: UID, sop_uid: UID, ts: UID
) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ts if ts != JPEGLosslessSV1 else ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID("1.2.826.0.1.3680043.8.498.1")
    # an in-memory dataset: pydicom accepts None (no file) though its annotation does not
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)  # type: ignore[arg-type]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = patient.get("name", "PHANTOM^FLUOROPLAN")
    ds.PatientID = patient.get("id", "FP-PHANTOM")
    ds.PatientBirthDate = patient.get("birth_date", "")
    ds.PatientSex = patient.get("sex", "O")
    ds.StudyInstanceUID = study["study_instance_uid"]
    ds.SeriesInstanceUID = study["series_instance_uid"]
    ds.FrameOfReferenceUID = study["frame_of_reference_uid"]
    ds.StudyDate = study.get("study_date", _dt.date.today().strftime("%Y%m%d"))
    ds.StudyTime = "120000"
    ds.StudyDescription = study.get("study_description", "fluoroplan synthetic spine")
    ds.SeriesDescription = study.get("series_description", "Phantom spine 1mm")
    ds.Modality = study.get("modality", "CT")
    ds.Manufacturer = "fluoroplan"
    ds.ConvolutionKernel = study.get("kernel", "BONE")
    ds.SeriesNumber = study.get("series_number", 2)
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    return ds


def _store_pixels(ds, frames_hu: np.ndarray, signed: bool, bits_stored: int) -> np.ndarray:
    """Set pixel module attributes and return the stored integer array."""
    if signed:
        slope, intercept = 1.0, 0.0
        stored: np.ndarray = frames_hu.astype(np.int16)
        lo, hi = -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
    else:
        slope, intercept = 1.0, -1024.0
        stored_i = frames_hu.astype(np.int32) + 1024
        lo, hi = 0, (1 << bits_stored) - 1
        stored = stored_i
    stored = np.clip(stored, lo, hi)
    stored = stored.astype(np.int16 if signed else np.uint16)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleSlope = _fmt([slope])[0]
    ds.RescaleIntercept = _fmt([intercept])[0]
    ds.RescaleType = "HU"
    ds.WindowCenter = "400"
    ds.WindowWidth = "2000"
    return stored


def _encode(ds, arr: np.ndarray, ts: str) -> None:
    ds.PixelData = arr.tobytes()
    if ts == ExplicitVRLittleEndian:
        return
    if ts == JPEGLosslessSV1:
        _encode_with_gdcm(ds, ts)
        return
    ds.compress(ts, arr)


def _encode_with_gdcm(ds, ts: str) -> None:
    """pydicom cannot encode JPEG Lossless; GDCM (a test-only dependency) can."""
    import tempfile

    import gdcm

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.dcm", Path(tmp) / "out.dcm"
        ds.save_as(src, enforce_file_format=True)
        reader = gdcm.ImageReader()
        reader.SetFileName(str(src))
        if not reader.Read():
            raise RuntimeError("GDCM could not read the image to compress")
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        change.SetInput(reader.GetImage())
        if not change.Change():
            raise RuntimeError("GDCM could not compress to JPEG Lossless")
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(dst))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        if not writer.Write():
            raise RuntimeError("GDCM could not write the compressed image")
        out = pydicom.dcmread(dst)
    ds.file_meta.TransferSyntaxUID = out.file_meta.TransferSyntaxUID
    ds.PixelData = out.PixelData
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


def new_study_uids() -> dict:
    return {
        "study_instance_uid": generate_uid(),
        "series_instance_uid": generate_uid(),
        "frame_of_reference_uid": generate_uid(),
    }


def write_series(
    hu: np.ndarray,
    lps_from_ijk: np.ndarray,
    folder: str | Path,
    *,
    patient_position: str = "HFS",
    patient: dict | None = None,
    study: dict | None = None,
    transfer_syntax: str = "explicit",
    signed: bool = True,
    bits_stored: int = 16,
    reverse_instance_numbers: bool = False,
    file_names: Sequence[str] | None = None,
    gantry_tilt_deg: float | None = None,
    progress: ProgressCallback | None = None,
) -> list[Path]:
    """Write ``hu[k, j, i]`` as one CT image file per slice; return the paths written.

    Parameters
    ----------
    hu : int16 array (nk, nj, ni)
    lps_from_ijk : 4x4 array
        Columns 0 and 1 give the row and column directions (ImageOrientationPatient) times the
        pixel spacing; column 3 plus ``k`` times column 2 gives ImagePositionPatient of slice k.
        A column 2 that is not perpendicular to the first two describes a gantry tilt.
    transfer_syntax : one of ``TRANSFER_SYNTAXES``
    signed : bool
        Signed storage with intercept 0, or unsigned with intercept -1024.
    bits_stored : 12 or 16
    reverse_instance_numbers : bool
        Number instances from the last slice to the first.
    file_names : names for the files (default ``IM00001.dcm`` ...).
    gantry_tilt_deg : value written to GantryDetectorTilt (informational).
    """
    progress = progress or no_progress
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    patient = patient or {}
    study = {**new_study_uids(), **(study or {})}
    ts = TRANSFER_SYNTAXES[transfer_syntax]
    a = np.asarray(lps_from_ijk, float)
    spacing_ij = np.linalg.norm(a[:3, :2], axis=0)
    row_dir = a[:3, 0] / spacing_ij[0]
    col_dir = a[:3, 1] / spacing_ij[1]
    nk = hu.shape[0]
    normal = np.cross(row_dir, col_dir)
    thickness = abs(float(np.dot(a[:3, 2], normal)))
    paths = []
    stored_all = None
    for k in range(nk):
        sop_uid = generate_uid()
        ds = _base_dataset(patient, study, CTImageStorage, sop_uid, ts)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientPosition = patient_position
        ds.InstanceNumber = (nk - k) if reverse_instance_numbers else (k + 1)
        ipp = a[:3, 3] + k * a[:3, 2]
        ds.ImagePositionPatient = _fmt(ipp)
        ds.ImageOrientationPatient = _fmt(list(row_dir) + list(col_dir))
        # PixelSpacing is (row spacing = between rows = along columns, column spacing)
        ds.PixelSpacing = _fmt([spacing_ij[1], spacing_ij[0]])
        ds.SliceThickness = _fmt([thickness])[0]
        ds.SliceLocation = _fmt([float(np.dot(ipp, normal))])[0]
        ds.KVP = "120"
        if gantry_tilt_deg is not None:
            ds.GantryDetectorTilt = _fmt([gantry_tilt_deg])[0]
        ds.Rows, ds.Columns = int(hu.shape[1]), int(hu.shape[2])
        stored_all = _store_pixels(ds, hu[k], signed, bits_stored)
        _encode(ds, stored_all, ts)
        name = file_names[k] if file_names is not None else f"IM{k + 1:05d}.dcm"
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
        progress((k + 1) / nk, f"Writing slice {k + 1} of {nk}")
    return paths


def write_enhanced_ct(
    hu: np.ndarray,
    lps_from_ijk: np.ndarray,
    path: str | Path,
    *,
    patient_position: str = "HFS",
    patient: dict | None = None,
    study: dict | None = None,
    signed: bool = True,
) -> Path:
    """Write ``hu[k, j, i]`` as a single Enhanced CT Image Storage multi-frame object."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as Seq
    from pydicom.uid import EnhancedCTImageStorage

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    study = {**new_study_uids(), **(study or {})}
    ds = _base_dataset(patient or {}, study, EnhancedCTImageStorage, generate_uid(),
                       ExplicitVRLittleEndian)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.PatientPosition = patient_position
    ds.InstanceNumber = 1
    ds.ContentQualification = "PRODUCT"
    a = np.asarray(lps_from_ijk, float)
    spacing_ij = np.linalg.norm(a[:3, :2], axis=0)
    row_dir = a[:3, 0] / spacing_ij[0]
    col_dir = a[:3, 1] / spacing_ij[1]
    normal = np.cross(row_dir, col_dir)
    nk = hu.shape[0]
    ds.NumberOfFrames = nk
    ds.Rows, ds.Columns = int(hu.shape[1]), int(hu.shape[2])
    stored = _store_pixels(ds, hu, signed, 16)
    # Per-frame values: rescale and geometry go in functional groups, not the top level.
    slope, intercept = ds.RescaleSlope, ds.RescaleIntercept
    for kw in ("RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth"):
        delattr(ds, kw)
    shared = Dataset()
    po = Dataset()
    po.ImageOrientationPatient = _fmt(list(row_dir) + list(col_dir))
    shared.PlaneOrientationSequence = Seq([po])
    pm = Dataset()
    pm.PixelSpacing = _fmt([spacing_ij[1], spacing_ij[0]])
    pm.SliceThickness = _fmt([abs(float(np.dot(a[:3, 2], normal)))])[0]
    shared.PixelMeasuresSequence = Seq([pm])
    pvt = Dataset()
    pvt.RescaleSlope = slope
    pvt.RescaleIntercept = intercept
    pvt.RescaleType = "HU"
    shared.PixelValueTransformationSequence = Seq([pvt])
    ds.SharedFunctionalGroupsSequence = Seq([shared])
    per_frame = []
    for k in range(nk):
        f = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = _fmt(a[:3, 3] + k * a[:3, 2])
        f.PlanePositionSequence = Seq([pp])
        per_frame.append(f)
    ds.PerFrameFunctionalGroupsSequence = Seq(per_frame)
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
