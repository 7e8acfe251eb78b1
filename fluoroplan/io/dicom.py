"""Read CT series from DICOM (and NIfTI) into :class:`CTVolume`.

Two passes, as pydicom teaches: :func:`scan` reads only the headers (``stop_before_pixels``,
``specific_tags``) of every file, groups the instances into series and records where each
file's pixel data starts; :func:`load_series` then sorts the slices along the slice normal,
builds the voxel-to-LPS affine from ImagePositionPatient, ImageOrientationPatient and
PixelSpacing (never SliceThickness) and reads the pixels straight into one preallocated int16
array (uncompressed data with ``readinto`` on the raw bytes, compressed data through pydicom's
decoders). Gantry tilt and uneven slice spacing are resampled onto a regular orthogonal grid and
said so in ``CTVolume.notes``. No thread pool: the header pass is Python (GIL-bound) and
the decoders gained nothing from two threads on the 2-core machine (measured). Every refusal is a :mod:`fluoroplan.io.errors` exception whose
message tells the user what is wrong and what to do.

Public API: :class:`SeriesInfo`, :func:`scan`, :func:`default_series`, :func:`load_series`,
:func:`load_ct`.
"""

from __future__ import annotations

import math
import os
import stat
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from fluoroplan.io.errors import (
    DecodeError,
    EmptyFolder,
    InconsistentGeometry,
    InconsistentSlices,
    LoadError,
    MissingSlices,
    MixedOrientations,
    NoSeriesFound,
    NotCT,
    SeriesNotFound,
    TooFewSlices,
    TooLarge,
    UnsupportedOrientation,
)
from fluoroplan.io.limits import check_volume_size
from fluoroplan.io.progress import CancelToken, ProgressCallback, Stage, no_progress
from fluoroplan.io.volume import CTVolume

__all__ = ["SeriesInfo", "default_series", "load_ct", "load_series", "scan"]

MIN_SLICES = 3
# Plausible CT pixel spacing and extent (mm); headers beyond them are refused as wrong.
PIXEL_SPACING_RANGE_MM = (0.05, 10.0)
MAX_EXTENT_MM = 3000.0
AIR_HU = -1024
PATIENT_POSITIONS = ("HFS", "HFP", "FFS", "FFP")

# SOP classes ---------------------------------------------------------------------------------
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.2"
CT_CLASSES = {
    CT_IMAGE: "CT Image",
    ENHANCED_CT: "Enhanced CT",
    LEGACY_ENHANCED_CT: "Legacy Enhanced CT",
}
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
STRUCTURED_REPORT_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR

_NATIVE_SYNTAXES = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}

_HEADER_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "Modality",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "SeriesDescription",
    "SeriesNumber",
    "ConvolutionKernel",
    "StudyDate",
    "Manufacturer",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientPosition",
    "ImageType",
    "InstanceNumber",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "SamplesPerPixel",
    "RescaleSlope",
    "RescaleIntercept",
    "NumberOfFrames",
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
    "GantryDetectorTilt",
]


# ---------------------------------------------------------------------------------------------
# Header records
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Pixels:
    """Where and how one file stores its pixel data."""

    path: str
    transfer_syntax: str
    offset: int  # file offset of the first pixel byte (native data) or of the element
    rows: int
    columns: int
    frames: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    native: bool  # uncompressed little-endian data we read with readinto

    @property
    def frame_bytes(self) -> int:
        return self.rows * self.columns * (self.bits_allocated // 8)


@dataclass(frozen=True)
class _Frame:
    """One 2-D image: a single-frame file or one frame of a multi-frame object."""

    pixels: _Pixels
    index: int  # frame index in the file (0 for a single-frame file)
    ipp: tuple[float, float, float] | None
    iop: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns) in mm
    slope: float
    intercept: float
    instance: int
    sop_uid: str


def _floats(value, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        return None
    return out


def _get(ds, keyword: str, default=None):
    try:
        value = ds.get(keyword, default)
    except Exception:  # a malformed element must not sink the whole file  # noqa: BLE001
        return default
    return default if value is None else value


def _text(ds, keyword: str) -> str:
    value = _get(ds, keyword, "")
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


_KIND = {  # how to parse the raw bytes of the per-file elements read for every file
    "SOPClassUID": "str",
    "SOPInstanceUID": "str",
    "SeriesInstanceUID": "str",
    "Modality": "str",
    "ImageType": "str",
    "ImagePositionPatient": "num",
    "ImageOrientationPatient": "num",
    "PixelSpacing": "num",
    "RescaleSlope": "num",
    "RescaleIntercept": "num",
    "InstanceNumber": "num",
    "NumberOfFrames": "num",
    "Rows": "us",
    "Columns": "us",
    "BitsAllocated": "us",
    "BitsStored": "us",
    "PixelRepresentation": "us",
    "SamplesPerPixel": "us",
}
_TAGS = {kw: pydicom.datadict.tag_for_keyword(kw) for kw in _KIND}


def _fast(ds, keyword: str, default=None):
    """Value of a per-file element, parsed straight from its raw bytes.

    pydicom's value conversion (DS objects, validation) is most of a header scan's time; these
    elements are plain ASCII numbers/codes or unsigned shorts, so parse them directly. Numbers
    come back as a tuple of floats, codes as a str (multiple values joined by a backslash).
    """
    try:
        elem = ds.get_item(_TAGS[keyword])
    except Exception:  # noqa: BLE001 - a malformed element reads as absent
        return default
    if elem is None:
        return default
    kind = _KIND[keyword]
    if not isinstance(elem, pydicom.dataelem.RawDataElement):
        value = _get(ds, keyword, default)
        if kind == "num" and value is not None and value != "":
            try:
                seq = (
                    value
                    if isinstance(value, (list, tuple, pydicom.multival.MultiValue))
                    else [value]
                )
                return tuple(float(v) for v in seq)
            except (TypeError, ValueError):
                return default
        if kind == "str" and value is not None and not isinstance(value, str):
            return (
                "\\".join(str(v) for v in value)
                if isinstance(value, (list, pydicom.multival.MultiValue))
                else str(value)
            )
        return value
    raw = elem.value
    if raw is None or len(raw) == 0:
        return default
    try:
        if kind == "us":
            return int.from_bytes(raw[:2], "little" if elem.is_little_endian else "big")
        text = raw.decode("latin-1").strip(" \0")
        if kind == "str":
            return text
        return tuple(float(v) for v in text.split("\\"))
    except (ValueError, UnicodeDecodeError):
        return default


def _first(value, default: float) -> float:
    if isinstance(value, tuple):
        return value[0] if value else default
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _number(ds, keyword: str, default: float) -> float:
    try:
        return float(_get(ds, keyword, default))
    except (TypeError, ValueError):
        return default


@dataclass
class _Instance:
    """Everything :func:`scan` keeps of one file."""

    path: str
    series_uid: str
    sop_class: str
    header: dict
    frames: list[_Frame]
    has_pixels: bool
    image_type: tuple[str, ...]


class _Skip(Exception):
    """A file that cannot be used; ``damaged`` tells a damaged DICOM from a non-DICOM file."""

    def __init__(self, reason: str, damaged: bool, series_uid: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.damaged = damaged
        self.series_uid = series_uid


def _looks_like_dicom_without_preamble(path: str) -> bool:
    with open(path, "rb") as fp:
        head = fp.read(8)
    # An ACR-NEMA style file starts with a group 0x0008 (or 0x0002) element, little endian.
    return len(head) == 8 and head[1] == 0 and head[0] in (0x02, 0x08)


def _read_dataset(path: str):
    """Header dataset and the file offset where the pixel data element starts."""
    try:
        with open(path, "rb") as fp:
            ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
            return ds, fp.tell(), os.fstat(fp.fileno()).st_size
    except InvalidDicomError:
        if not _looks_like_dicom_without_preamble(path):
            raise _Skip("not a DICOM file", damaged=False) from None
    except PermissionError:
        raise _Skip("no permission to read it", damaged=True) from None
    except Exception as exc:  # noqa: BLE001 - struct.error, BytesLengthException, bad VRs...
        raise _Skip(f"unreadable header ({_why(exc)})", damaged=True) from None
    try:
        with open(path, "rb") as fp:
            ds = pydicom.dcmread(
                fp, stop_before_pixels=True, specific_tags=_HEADER_TAGS, force=True
            )
            return ds, fp.tell(), os.fstat(fp.fileno()).st_size
    except Exception as exc:  # noqa: BLE001 - any parser failure means "skip this file"
        raise _Skip(f"unreadable header ({_why(exc)})", damaged=True) from None


def _why(exc: BaseException) -> str:
    """A short reason for a parser failure: the exception's class and the start of its text."""
    text = " ".join(str(exc).split())[:80]
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def _pixel_element(path: str, offset: int, size: int, ts: str) -> tuple[int, int] | None:
    """(value offset, value length) of the Pixel Data element at ``offset``; None if absent.

    The length is -1 for encapsulated (compressed) data, whose fragments are walked to make
    sure the file is not truncated.
    """
    if offset >= size:
        return None
    with open(path, "rb") as fp:
        fp.seek(offset)
        head = fp.read(12)
        if len(head) < 8:
            return None
        big = ts == ExplicitVRBigEndian
        order = ">" if big else "<"
        group, elem = np.frombuffer(head[:4], dtype=f"{order}u2")
        if (int(group), int(elem)) != (0x7FE0, 0x0010):
            return None
        if ts == ImplicitVRLittleEndian:
            length = int(np.frombuffer(head[4:8], "<u4")[0])
            start = offset + 8
        else:
            if len(head) < 12:
                raise _Skip("truncated pixel data", damaged=True)
            length = int(np.frombuffer(head[8:12], f"{order}u4")[0])
            start = offset + 12
        if length != 0xFFFFFFFF:
            if start + length > size:
                raise _Skip(
                    f"truncated: the pixel data needs {length} bytes, the file holds "
                    f"{max(size - start, 0)}",
                    damaged=True,
                )
            return start, length
        # Encapsulated: items (FFFE,E000) until the sequence delimiter (FFFE,E0DD).
        pos = start
        while True:
            fp.seek(pos)
            item = fp.read(8)
            if len(item) < 8:
                raise _Skip("truncated compressed pixel data", damaged=True)
            g, e = np.frombuffer(item[:4], "<u2")
            n = int(np.frombuffer(item[4:8], "<u4")[0])
            if (int(g), int(e)) == (0xFFFE, 0xE0DD):
                return start, -1
            if (int(g), int(e)) != (0xFFFE, 0xE000) or pos + 8 + n > size:
                raise _Skip("truncated compressed pixel data", damaged=True)
            pos += 8 + n


def _frame_geometry(item) -> dict:
    """Geometry/rescale keywords found in one functional-groups item."""
    out = {}
    for seq_kw, kws in (
        ("PlanePositionSequence", ("ImagePositionPatient",)),
        ("PlaneOrientationSequence", ("ImageOrientationPatient",)),
        ("PixelMeasuresSequence", ("PixelSpacing",)),
        ("PixelValueTransformationSequence", ("RescaleSlope", "RescaleIntercept")),
    ):
        seq = _get(item, seq_kw)
        if seq:
            for kw in kws:
                value = _get(seq[0], kw)
                if value is not None:
                    out[kw] = value
    return out


def _series_header(ds, series_uid: str) -> dict:
    """Fields shared by a whole series (read once per series, with pydicom's decoding)."""
    return {
        "study_instance_uid": str(_get(ds, "StudyInstanceUID", "")),
        "series_instance_uid": series_uid,
        "frame_of_reference_uid": str(_get(ds, "FrameOfReferenceUID", "")),
        "series_description": _text(ds, "SeriesDescription"),
        "series_number": _text(ds, "SeriesNumber"),
        "modality": _text(ds, "Modality").upper(),
        "kernel": _text(ds, "ConvolutionKernel"),
        "study_date": _text(ds, "StudyDate"),
        "manufacturer": _text(ds, "Manufacturer"),
        "patient_name": _text(ds, "PatientName"),
        "patient_id": _text(ds, "PatientID"),
        "patient_birth_date": _text(ds, "PatientBirthDate"),
        "patient_sex": _text(ds, "PatientSex"),
        "patient_position": _text(ds, "PatientPosition").upper(),
        "gantry_tilt": _number(ds, "GantryDetectorTilt", 0.0),
    }


def _read_instance(path: str, headers: dict[str, dict] | None = None) -> _Instance:
    """Read one file's header; ``headers`` caches the series-level fields by series UID."""
    ds, offset, size = _read_dataset(path)
    meta = getattr(ds, "file_meta", None)
    ts = str(_get(meta, "TransferSyntaxUID", "")) if meta is not None else ""
    if not ts:
        ts = ImplicitVRLittleEndian
    sop_class = _fast(ds, "SOPClassUID", "") or str(_get(meta, "MediaStorageSOPClassUID", ""))
    sop_uid = _fast(ds, "SOPInstanceUID", "") or str(_get(meta, "MediaStorageSOPInstanceUID", ""))
    series_uid = _fast(ds, "SeriesInstanceUID", "")
    if not (sop_class or sop_uid or series_uid):
        raise _Skip("damaged header: no DICOM identifiers could be read", damaged=True)
    key = series_uid or f"no-uid:{Path(path).parent}"
    if headers is None:
        headers = {}
    header = headers.get(key)
    if header is None or header.get("modality") != (_fast(ds, "Modality", "") or "").upper():
        header = headers[key] = _series_header(ds, series_uid)
    image_type = tuple(
        v.strip().upper() for v in (_fast(ds, "ImageType", "") or "").split("\\") if v
    )
    try:
        if ts == DeflatedExplicitVRLittleEndian:  # offsets refer to the inflated stream
            element = (offset, -1) if _get(ds, "Rows") else None
        else:
            element = _pixel_element(path, offset, size, ts)
    except _Skip as skip:
        skip.series_uid = series_uid
        raise
    if element is None and not series_uid and sop_class in CT_CLASSES:
        # A CT image without pixel data or a series: cut (or damaged) inside its header.
        raise _Skip("truncated: the file ends inside its header, before the pixel data",
                    damaged=True)
    if element is None or sop_class == MEDIA_DIRECTORY:
        return _Instance(path, series_uid, sop_class, header, [], False, image_type)

    def count(keyword: str, default: int, low: int, high: int) -> int:
        value = _first(_fast(ds, keyword), default)
        if not (math.isfinite(value) and low <= value <= high and value == int(value)):
            raw = _fast(ds, keyword)
            said = "missing" if raw is None else f"{str(raw)[:40]!r}"
            raise _Skip(
                f"damaged header: {keyword} is {said}, not a whole number from {low} to {high}",
                damaged=True,
                series_uid=series_uid,
            )
        return int(value)

    rows, cols = count("Rows", 0, 1, 65535), count("Columns", 0, 1, 65535)
    n_frames = count("NumberOfFrames", 1, 0, 2**31 - 1) or 1
    bits_allocated = count("BitsAllocated", 16, 1, 64)
    bits_stored = count("BitsStored", bits_allocated, 1, 64)
    signed = count("PixelRepresentation", 0, 0, 1) == 1
    samples = count("SamplesPerPixel", 1, 1, 4)
    start, length = element
    native = ts in _NATIVE_SYNTAXES and bits_allocated == 16 and samples == 1
    if native and length < rows * cols * n_frames * 2:
        raise _Skip(
            f"truncated or a lying header: {length} bytes of pixel data for {n_frames} "
            f"frame(s) of {rows}x{cols}",
            damaged=True,
            series_uid=series_uid,
        )
    if samples != 1:
        header["colour"] = True
    pixels = _Pixels(
        path,
        ts,
        start if native else offset,
        rows,
        cols,
        n_frames,
        bits_allocated,
        bits_stored,
        signed,
        native,
    )
    base = {
        kw: _fast(ds, kw)
        for kw in (
            "ImagePositionPatient",
            "ImageOrientationPatient",
            "PixelSpacing",
            "RescaleSlope",
            "RescaleIntercept",
        )
    }
    per_frame = []
    if n_frames > 1 or "SharedFunctionalGroupsSequence" in ds:
        shared_seq = _get(ds, "SharedFunctionalGroupsSequence")
        if shared_seq:
            base.update(_frame_geometry(shared_seq[0]))
        per_frame = _get(ds, "PerFrameFunctionalGroupsSequence") or []
    number = _first(_fast(ds, "InstanceNumber"), 0)
    instance = int(number) if math.isfinite(number) and abs(number) < 1e12 else 0
    frames = []
    for f in range(n_frames):
        g = dict(base)
        if f < len(per_frame):
            g.update(_frame_geometry(per_frame[f]))
        ps = _floats(g["PixelSpacing"], 2)
        frames.append(
            _Frame(
                pixels=pixels,
                index=f,
                ipp=_floats(g["ImagePositionPatient"], 3),
                iop=_floats(g["ImageOrientationPatient"], 6),
                pixel_spacing=ps if ps and min(ps) > 0 else None,
                slope=_first(g["RescaleSlope"], 1.0),
                intercept=_first(g["RescaleIntercept"], 0.0),
                instance=instance * 100000 + f,
                sop_uid=f"{sop_uid}#{f}" if n_frames > 1 else sop_uid,
            )
        )
    return _Instance(path, series_uid, sop_class, header, frames, True, image_type)


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Geometry:
    """How the sorted frames map onto the output grid."""

    frames: tuple[_Frame, ...]  # sorted along the slice normal
    row_dir: np.ndarray  # unit LPS direction of increasing column index i
    col_dir: np.ndarray  # unit LPS direction of increasing row index j
    normal: np.ndarray
    pixel_spacing: tuple[float, float]  # (along i, along j) mm
    depth_mm: np.ndarray  # each frame's position along the normal, relative to the first
    shift_mm: np.ndarray  # (n, 2) each frame's in-plane offset (along i, along j)
    spacing_mm: float  # output slice spacing
    tilt_deg: float
    uneven: bool
    resample: bool
    # (kept, other) frames that share one SOP Instance UID and position: their pixels are
    # compared when the series is read, and the series refused if they differ.
    duplicates: tuple[tuple[_Frame, _Frame], ...] = ()
    # frames whose rescale differs from the series' most common one: read, they must agree
    # with their neighbouring slices.
    odd_rescale: tuple[_Frame, ...] = ()

    @property
    def n_out(self) -> int:
        if not self.resample:
            return len(self.frames)
        return int(round(self.depth_mm[-1] / self.spacing_mm)) + 1

    def output_shape(self) -> tuple[int, int, int]:
        rows, cols = self.frames[0].pixels.rows, self.frames[0].pixels.columns
        if not self.resample:
            return (len(self.frames), rows, cols)
        (si0, sj0), (si1, sj1) = self.shift_mm.min(axis=0), self.shift_mm.max(axis=0)
        extra_i = int(math.ceil((si1 - si0) / self.pixel_spacing[0] - 1e-6))
        extra_j = int(math.ceil((sj1 - sj0) / self.pixel_spacing[1] - 1e-6))
        return (self.n_out, rows + extra_j, cols + extra_i)

    def lps_from_ijk(self) -> np.ndarray:
        first = np.asarray(self.frames[0].ipp, float)
        origin = first
        if self.resample:
            si0, sj0 = self.shift_mm.min(axis=0)
            origin = first + si0 * self.row_dir + sj0 * self.col_dir
        a = np.eye(4)
        a[:3, 0] = self.row_dir * self.pixel_spacing[0]
        a[:3, 1] = self.col_dir * self.pixel_spacing[1]
        a[:3, 2] = self.normal * self.spacing_mm
        a[:3, 3] = origin
        return a


def orientation_label(normal: np.ndarray) -> str:
    """'axial', 'coronal', 'sagittal' (slice normal within ~25 deg of an axis) or 'oblique'."""
    n = np.abs(np.asarray(normal, float))
    axis = int(np.argmax(n))
    if n[axis] < 0.9:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _name(header: dict) -> str:
    desc = header.get("series_description") or "(no description)"
    num = header.get("series_number")
    return f"series {num} '{desc}'" if num else f"series '{desc}'"


def _short(reason: str, exc: LoadError) -> LoadError:
    """Attach the short phrase shown in the series table (``SeriesInfo.reason``)."""
    exc.short_reason = reason  # type: ignore[attr-defined]
    return exc


def _unique(frames: Sequence[_Frame]) -> list[_Frame]:
    """Drop repeated instances (e.g. a compressed and an uncompressed copy of one image)."""
    return _split_duplicates(frames)[0]


def _split_duplicates(frames: Sequence[_Frame]) -> tuple[list[_Frame], list[tuple[_Frame, _Frame]]]:
    """(frames with each SOP Instance UID once, [(kept, repeated copy), ...])."""
    seen: dict[str, _Frame] = {}
    unique, repeats = [], []
    for f in frames:
        if f.sop_uid and f.sop_uid in seen:
            repeats.append((seen[f.sop_uid], f))
            continue
        seen[f.sop_uid] = f
        unique.append(f)
    return unique, repeats


def _label(frame: _Frame) -> str:
    """How a message names one image: its file (and frame), e.g. ``image IM00042.dcm``."""
    name = Path(frame.pixels.path).name
    if frame.pixels.frames > 1:
        return f"frame {frame.index + 1} of {name}"
    return f"image {name}"


def _encoding(frame: _Frame) -> tuple[int, int, bool]:
    px = frame.pixels
    return (px.bits_allocated, px.bits_stored, px.signed)


def _describe_encoding(key: tuple[int, int, bool]) -> str:
    allocated, stored, signed = key
    return f"{'signed' if signed else 'unsigned'} {allocated}-bit values ({stored} bits stored)"


def _others(n: int) -> str:
    return f"the other {n} image{'s' if n != 1 else ''}"


def _check_slices_agree(frames: Sequence[_Frame], name: str) -> tuple[_Frame, ...]:
    """Refuse a series whose images disagree on pixel encoding or carry an unusable rescale.

    Returns the frames whose (valid) rescale differs from the series' most common one.
    """
    for f in frames:
        slope, intercept = f.slope, f.intercept
        if not (math.isfinite(slope) and slope > 0 and slope < 1e4):
            raise _short(
                "invalid rescale slope",
                InconsistentSlices(
                    f"The {_label(f)} of the {name} has RescaleSlope {slope:g}: its pixel values "
                    "cannot be converted to CT numbers (HU = stored value x slope + intercept "
                    "needs a positive slope). The file's header is damaged; export the series "
                    "again from the scanner or PACS."
                ),
            )
        if not (math.isfinite(intercept) and abs(intercept) < 1e5):
            raise _short(
                "invalid rescale intercept",
                InconsistentSlices(
                    f"The {_label(f)} of the {name} has RescaleIntercept {intercept:g}: its pixel "
                    "values cannot be converted to CT numbers (HU). The file's header is "
                    "damaged; export the series again from the scanner or PACS."
                ),
            )
    counts = Counter(_encoding(f) for f in frames)
    if len(counts) > 1:
        common, n_common = counts.most_common(1)[0]
        odd = [f for f in frames if _encoding(f) != common]
        more = f" (and {len(odd) - 1} more)" if len(odd) > 1 else ""
        raise _short(
            "images encoded differently",
            InconsistentSlices(
                f"The {_label(odd[0])}{more} of the {name} stores "
                f"{_describe_encoding(_encoding(odd[0]))} where {_others(n_common)} store "
                f"{_describe_encoding(common)}, so its CT numbers would be read wrongly and "
                "the series is not loaded. Export the series again from the scanner or PACS, "
                "or remove that file."
            ),
        )
    rescales = Counter((f.slope, f.intercept) for f in frames)
    if len(rescales) == 1:
        return ()
    common = rescales.most_common(1)[0][0]
    if rescales[common] <= len(frames) // 2:
        return ()  # no majority: a scanner that sets the rescale per image
    return tuple(f for f in frames if (f.slope, f.intercept) != common)


def _check_positions_on_line(
    frames: Sequence[_Frame], depth: np.ndarray, shift: np.ndarray, spacing_ij, name: str
) -> None:
    """Refuse images lying off the straight line the slice origins of the series follow.

    Gantry tilt moves every slice's origin in-plane steadily with depth (a straight line);
    a single image shifted sideways is a damaged or foreign header, not tilt.
    """
    n = len(frames)
    tol = max(0.3 * min(spacing_ij), 0.1)
    keep = np.ones(n, bool)
    design = np.stack([np.ones(n), depth], axis=1)
    for _ in range(min(n - 2, 5)):
        coef, *_ = np.linalg.lstsq(design[keep], shift[keep], rcond=None)
        resid = np.linalg.norm(shift - design @ coef, axis=1)
        if resid[keep].max() <= tol:
            break
        keep[np.flatnonzero(keep)[int(np.argmax(resid[keep]))]] = False
    else:
        coef, *_ = np.linalg.lstsq(design[keep], shift[keep], rcond=None)
        resid = np.linalg.norm(shift - design @ coef, axis=1)
    off = np.flatnonzero(resid > tol)
    if len(off) == 0:
        return
    if len(off) > max(2, n // 10) or resid[keep].max() > tol:
        k = int(np.argmax(resid))
        raise _short(
            "slice positions scattered",
            InconsistentSlices(
                f"The slice positions of the {name} do not lie on a straight line (the "
                f"{_label(frames[k])} is {resid[k]:.1f} mm off it, {len(off)} images in all): "
                "neither a straight nor a gantry-tilted acquisition places slices so. The "
                "positions in the headers are damaged or the folder mixes series; export the "
                "series again."
            ),
        )
    k = int(off[np.argmax(resid[off])])
    more = f" ({len(off)} images in all)" if len(off) > 1 else ""
    raise _short(
        "an image out of line",
        InconsistentSlices(
            f"The {_label(frames[k])} of the {name} lies {resid[k]:.1f} mm sideways from the "
            f"line the other slices follow{more}. A gantry tilt shifts every slice steadily, "
            "not one: its position in the header is wrong or it belongs to another series. "
            "Remove that file or export the series again."
        ),
    )


def _check_size(geo: _Geometry, name: str, memory: bool) -> None:
    """Refuse a volume beyond ``MAX_GRID`` (and, with ``memory``, beyond the free memory)
    before anything is allocated; the resampled case also holds the original slices."""
    nk, nj, ni = geo.output_shape()
    need = nk * nj * ni * 2
    if geo.resample:
        px = geo.frames[0].pixels
        need += len(geo.frames) * px.rows * px.columns * 2
    try:
        check_volume_size((ni, nj, nk), need if memory else 0, f"the {name}")
    except TooLarge as exc:
        raise _short("too large", exc) from None


def _displaced_slice(depth: np.ndarray, irregular: np.ndarray, median: float,
                     tol: float) -> tuple[int, float] | None:
    """(index, mm off the grid) of the one slice whose removal leaves a regular series (with at
    most one empty slot, where it belongs) and which lies off that series' grid; else None.
    Only the slices beside an irregular gap can be it; an end slice may end a scan at its own
    gap."""
    if len(depth) < 6:
        return None
    odd = np.flatnonzero(irregular)
    for k in sorted({int(i) for i in odd} | {int(i) + 1 for i in odd}):
        if not 0 < k < len(depth) - 1:
            continue
        rest = np.delete(depth, k)
        gaps = np.diff(rest)
        steps = np.round(gaps / median)
        if np.any(np.abs(gaps - steps * median) > tol) or np.any(steps < 1):
            continue
        if np.sum(steps > 1) > 1 or np.any(steps > 2):
            continue
        grid = rest[0] + median * np.round((depth[k] - rest[0]) / median)
        off = float(abs(depth[k] - grid))
        if off > tol:
            return k, off
    return None


def _finest_common_gap(gaps: np.ndarray, fallback: float) -> float:
    """The smallest slice gap that recurs (so a single overlap slice does not set the grid)."""
    tol = max(0.02, 0.02 * fallback)
    common = [g for g in np.sort(gaps) if np.count_nonzero(np.abs(gaps - g) <= tol) >= 2]
    return float(common[0]) if common else fallback


def _plan_geometry(frames: Sequence[_Frame], header: dict) -> _Geometry:
    """Sort, validate and describe the frames of one series; raise a LoadError if unusable."""
    name = _name(header)
    # Same instance twice (e.g. a compressed and an uncompressed copy): keep one, and compare
    # the copies' pixels when the series is read.
    frames, repeats = _split_duplicates(frames)
    if len(frames) < MIN_SLICES:
        raise _short(
            f"only {len(frames)} image{'s' if len(frames) != 1 else ''}",
            TooFewSlices(
                f"The {name} has only {len(frames)} image{'s' if len(frames) != 1 else ''}; a CT "
                f"volume needs at least {MIN_SLICES} slices. Choose a series with more images "
                "(a thin-slice axial series), or export the complete series again."
            ),
        )
    missing = [f for f in frames if f.ipp is None or f.iop is None or f.pixel_spacing is None]
    if missing:
        raise _short(
            "no position information",
            UnsupportedOrientation(
                f"{len(missing)} image(s) of the {name} carry no position, orientation or pixel "
                "spacing (e.g. " + Path(missing[0].pixels.path).name + "), so the volume cannot be "
                "placed in the patient. Choose another series or export the original images."
            ),
        )
    for kept, other in repeats:
        if other.ipp is None or kept.ipp is None or (
            np.abs(np.subtract(other.ipp, kept.ipp)).max() > 0.01
            or (other.pixels.rows, other.pixels.columns) != (kept.pixels.rows, kept.pixels.columns)
        ):
            raise _short(
                "one image UID used twice",
                InconsistentSlices(
                    f"Two files of the {name} carry the same SOP Instance UID "
                    f"({kept.sop_uid.split('#')[0]}) but differ in position or size: "
                    f"{Path(kept.pixels.path).name} and {Path(other.pixels.path).name}. One of "
                    "them is a damaged or foreign copy; remove it or export the series again."
                ),
            )
    for f in frames:
        lo, hi = PIXEL_SPACING_RANGE_MM
        if not all(lo <= v <= hi for v in f.pixel_spacing):
            raise _short(
                "implausible pixel spacing",
                InconsistentSlices(
                    f"The {_label(f)} of the {name} gives a pixel spacing of "
                    f"{f.pixel_spacing[0]:g} x {f.pixel_spacing[1]:g} mm; a CT's pixels are "
                    f"{lo:g}-{hi:g} mm. The header is damaged; export the series again."
                ),
            )
    odd_rescale = _check_slices_agree(frames, name)
    iops = np.array([f.iop for f in frames], float)
    if np.abs(iops - iops[0]).max() > 1e-3:
        labels = sorted({orientation_label(np.cross(v[:3], v[3:])) for v in iops})
        raise _short(
            "mixed orientations",
            MixedOrientations(
                f"The {name} mixes images of different orientations ({', '.join(labels)}); a "
                "volume needs parallel slices. It probably contains localizer images: choose "
                "another series, or export only the axial images."
            ),
        )
    sizes = {(f.pixels.rows, f.pixels.columns) for f in frames}
    if len(sizes) > 1:
        listed = ", ".join(f"{r}x{c}" for r, c in sorted(sizes))
        raise _short(
            "images of different sizes",
            InconsistentGeometry(
                f"The images of the {name} do not all have the same size ({listed} pixels), so "
                "they cannot be stacked into one volume. Choose another series, or export only "
                "the axial images of this one."
            ),
        )
    ps = np.array([f.pixel_spacing for f in frames], float)
    if np.abs(ps - ps[0]).max() > 1e-3 * ps[0].max():
        raise _short(
            "different pixel spacings",
            InconsistentGeometry(
                f"The images of the {name} have different pixel spacings, so they cannot be "
                "stacked into one volume. Choose another series."
            ),
        )
    row = iops[0, :3] / np.linalg.norm(iops[0, :3])
    col = iops[0, 3:] / np.linalg.norm(iops[0, 3:])
    if (
        abs(float(row @ col)) > 1e-3
        or min(np.linalg.norm(iops[0, :3]), np.linalg.norm(iops[0, 3:])) < 0.5
    ):
        raise _short(
            "invalid orientation",
            UnsupportedOrientation(
                f"The image orientation of the {name} is not a valid pair of perpendicular "
                "directions, so the volume cannot be placed in the patient. Choose another series."
            ),
        )
    col = col - (col @ row) * row
    col /= np.linalg.norm(col)
    normal = np.cross(row, col)
    ipps = np.array([f.ipp for f in frames], float)
    depth = ipps @ normal
    order = np.lexsort((np.array([f.instance for f in frames]), depth))
    frames = [frames[i] for i in order]
    ipps, depth = ipps[order], depth[order]
    gaps = np.diff(depth)
    spacing_ij = (float(ps[0, 1]), float(ps[0, 0]))  # along i (columns), along j (rows)
    if gaps.min() < 0.01:
        k = int(np.argmin(gaps))
        raise _short(
            "several images at one position",
            InconsistentGeometry(
                f"The {name} holds more than one image at the same slice position "
                f"({depth[k]:.2f} mm along the slice normal): it mixes several acquisitions or "
                "phases. Choose another series, or export a single phase."
            ),
        )
    rel = ipps - ipps[0]
    shift = np.stack([rel @ row, rel @ col], axis=1)
    depth_rel = depth - depth[0]
    median = float(np.median(gaps))
    for k, lone in ((0, frames[0]), (len(gaps) - 1, frames[-1])):  # an end image far away
        if gaps[k] > max(50.0, 20.0 * median):
            raise _short(
                "an image far from the others",
                InconsistentSlices(
                    f"In the {name} the {_label(lone)} lies {gaps[k]:.0f} mm beyond the other "
                    f"slices, which are {median:.2f} mm apart: the position in its header is "
                    "wrong, or it belongs to another scan. Remove that file or export the "
                    "series again."
                ),
            )
    if depth_rel[-1] > MAX_EXTENT_MM:
        raise _short(
            "implausible extent",
            InconsistentSlices(
                f"The slices of the {name} span {depth_rel[-1]:.0f} mm, longer than any body "
                "scan: the positions in the headers are damaged. Export the series again."
            ),
        )
    _check_positions_on_line(frames, depth_rel, shift, spacing_ij, name)
    drift = np.abs(shift - shift[0]).max(axis=0)
    tilted = bool(drift[0] > 0.1 * spacing_ij[0] or drift[1] > 0.1 * spacing_ij[1])
    tilt_deg = 0.0
    if tilted:
        lateral = float(np.hypot(*(shift[-1] - shift[0])))
        tilt_deg = math.degrees(math.atan2(lateral, depth_rel[-1]))
    tol = max(0.02, 0.02 * median)
    irregular = np.abs(gaps - median) > tol
    lone = _displaced_slice(depth, irregular, median, tol) if 0 < irregular.sum() <= 3 else None
    if lone is not None:
        # One slice off the regular spacing all the others keep (with a gap where it belongs):
        # its recorded position is wrong, or it is of another acquisition. Resampling would put
        # its pixels at the wrong depth; say which file it is instead.
        k, off = lone
        raise _short(
            "one slice off the spacing",
            InconsistentSlices(
                f"In the {name} the {_label(frames[k])} lies {off:.2f} mm off the regular "
                f"{median:.2f} mm spacing of all the other slices: the position in its header "
                "is wrong, or it belongs to another acquisition. Remove that file or export "
                "the series again."
            ),
        )
    uneven = False
    if irregular.any():
        ratio = gaps[irregular] / median
        whole = np.abs(ratio - np.round(ratio)) < 0.15
        idx = np.flatnonzero(irregular)
        isolated = len(idx) < 2 or np.diff(idx).min() > 1
        if np.all(whole & (np.round(ratio) >= 2)) and isolated:
            k = int(idx[0])
            n_missing = int(round(gaps[k] / median)) - 1
            lo, hi = float(depth[k]), float(depth[k + 1])
            more = f" ({len(idx)} gaps in all)" if len(idx) > 1 else ""
            raise _short(
                "slices missing",
                MissingSlices(
                    f"The {name} is missing {n_missing} slice{'s' if n_missing > 1 else ''} "
                    f"between the positions {lo:.2f} mm and {hi:.2f} mm (a {gaps[k]:.2f} mm gap "
                    f"where the slices are {median:.2f} mm apart){more}. Export the complete "
                    "series again from the scanner or PACS, or choose another series.",
                    gap_mm=float(gaps[k]),
                    between_mm=(lo, hi),
                ),
            )
        uneven = True
    resample = tilted or uneven
    if resample:
        spacing = _finest_common_gap(gaps, median)
        n_out = int(round(depth_rel[-1] / spacing)) + 1
        spacing = float(depth_rel[-1] / (n_out - 1))
    else:
        spacing = float(depth_rel[-1] / (len(frames) - 1))
    geo = _Geometry(
        frames=tuple(frames),
        row_dir=row,
        col_dir=col,
        normal=normal,
        pixel_spacing=spacing_ij,
        depth_mm=depth_rel,
        shift_mm=shift,
        spacing_mm=spacing,
        tilt_deg=tilt_deg,
        uneven=uneven,
        resample=resample,
        duplicates=tuple(repeats),
        odd_rescale=odd_rescale,
    )
    _check_size(geo, name, memory=False)  # the series table: the grid limit only
    return geo


# ---------------------------------------------------------------------------------------------
# Series listing
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeriesInfo:
    """One series found by :func:`scan`, for a user to choose from.

    ``usable`` tells whether it can be loaded as a CT volume; ``reason`` says why not.
    ``spacing_mm`` is the median slice spacing along the slice normal (None if unknown).
    """

    series_instance_uid: str
    study_instance_uid: str
    series_number: str
    description: str
    modality: str
    kind: str  # "CT volume", "localizer", "dose report", "secondary capture", ...
    image_count: int
    orientation: str  # "axial", "sagittal", "coronal", "oblique", "mixed" or ""
    spacing_mm: float | None
    tilt_deg: float
    kernel: str
    rows: int
    columns: int
    study_date: str
    usable: bool
    reason: str
    files: tuple[str, ...] = field(repr=False)
    skipped: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    _frames: tuple[_Frame, ...] = field(default=(), repr=False, compare=False)
    _header: dict = field(default_factory=dict, repr=False, compare=False)
    _problem: LoadError | None = field(default=None, repr=False, compare=False)

    def row(self) -> dict[str, str]:
        """Column name -> text, for a table in the series chooser."""
        return {
            "Series": self.series_number,
            "Description": self.description or "(no description)",
            "Modality": self.modality or "?",
            "Images": str(self.image_count),
            "Orientation": self.orientation or "-",
            "Spacing": f"{self.spacing_mm:.2f} mm" if self.spacing_mm else "-",
            "Kernel": self.kernel or "-",
            "Size": f"{self.columns}x{self.rows}" if self.rows else "-",
            "Usable": "yes" if self.usable else f"no: {self.reason}",
        }

    def describe(self) -> str:
        """One line, e.g. ``Series 2 'Spine 1mm': CT, 400 images, axial, 1.00 mm, kernel BONE``."""
        parts = [self.modality or "?", f"{self.image_count} image{'s' * (self.image_count != 1)}"]
        if self.orientation:
            parts.append(self.orientation)
        if self.spacing_mm:
            parts.append(f"{self.spacing_mm:.2f} mm")
        if self.tilt_deg:
            parts.append(f"gantry tilt {self.tilt_deg:.1f} deg")
        if self.kernel:
            parts.append(f"kernel {self.kernel}")
        head = f"Series {self.series_number} " if self.series_number else "Series "
        text = f"{head}'{self.description or '(no description)'}': " + ", ".join(parts)
        if not self.usable:
            text += f" - not usable: {self.reason}"
        return text


def _kind(instances: Sequence[_Instance], header: dict) -> tuple[str, str]:
    """(kind, reason-not-usable or '') of a series from its SOP class, modality and type."""
    sop = instances[0].sop_class
    image_type = set(instances[0].image_type)
    desc = header.get("series_description", "").lower()
    if sop == DOSE_SR or (sop.startswith(STRUCTURED_REPORT_PREFIX) and "dose" in desc):
        return "dose report", "a radiation dose report, not images"
    if sop.startswith(STRUCTURED_REPORT_PREFIX):
        return "report", "a structured report, not images"
    if not any(i.has_pixels for i in instances):
        return "non-image object", "holds no images"
    if sop.startswith(SECONDARY_CAPTURE_PREFIX):
        if "dose" in desc:
            return "dose report", "a screenshot of the dose report, not a CT volume"
        return "secondary capture", "a secondary capture (screenshot), not a CT volume"
    if "LOCALIZER" in image_type or "SCOUT" in image_type or "TOPOGRAM" in desc:
        return "localizer", "a localizer (scout) image, not a volume"
    if "dose" in desc and ("SECONDARY" in image_type or "SCREEN SAVE" in image_type):
        return "dose report", "a screenshot of the dose report, not a CT volume"
    modality = header.get("modality", "")
    if modality != "CT":
        return (modality or "unknown") + " images", (f"modality {modality or 'unknown'}, not CT")
    if header.get("colour"):
        return "colour images", "colour images, not a CT volume"
    if sop and sop not in CT_CLASSES:
        return "other images", "not a CT image storage object"
    return "CT volume", ""


def _problem_for(kind: str, reason: str, header: dict) -> LoadError:
    name = _name(header)
    if kind.endswith(" images") and "modality" in reason:
        return NotCT(
            f"The {name} is {reason.replace('modality ', '')}: its modality is "
            f"{header.get('modality') or 'not given'}. fluoroplan plans on CT only; choose a "
            "CT series."
        )
    if kind == "damaged images":
        return NoSeriesFound(
            f"The {name} has no readable image: {reason}. Export the series again from the "
            "scanner or PACS."
        )
    verb = "" if reason.startswith("holds") else "is "
    return NoSeriesFound(
        f"The {name} {verb}{reason}, so it cannot be used to plan. Choose the axial CT series."
    )


def _build_series(instances: Sequence[_Instance], skipped: Sequence[tuple[str, str]]) -> SeriesInfo:
    header = dict(instances[0].header)
    if any(i.header.get("colour") for i in instances):
        header["colour"] = True
    frames = tuple(f for i in instances for f in i.frames)
    kind, reason = _kind(instances, header)
    if kind == "non-image object" and not skipped and all(
        i.sop_class in CT_CLASSES for i in instances
    ):  # a CT image object always holds pixel data: these files were cut before it
        skipped = [(i.path, "truncated: the file ends before its pixel data") for i in instances]
    if kind == "non-image object" and skipped:
        names = ", ".join(Path(p).name for p, _ in skipped[:3]) + (
            "..." if len(skipped) > 3 else ""
        )
        kind = "damaged images"
        reason = (
            f"{len(skipped)} of its file(s) are damaged or truncated ({names}; "
            f"{skipped[0][1]})"
        )
    problem: LoadError | None = None
    orientation, spacing, tilt = "", None, 0.0
    if frames:
        iops = [f.iop for f in frames if f.iop is not None]
        if iops:
            labels = {orientation_label(np.cross(np.array(v[:3]), np.array(v[3:]))) for v in iops}
            orientation = labels.pop() if len(labels) == 1 else "mixed"
    if kind == "CT volume":
        try:
            geo = _plan_geometry(frames, header)
        except LoadError as exc:
            problem, reason = exc, getattr(exc, "short_reason", str(exc))
        else:
            spacing = float(np.median(np.diff(geo.depth_mm)))
            tilt = round(geo.tilt_deg, 2)
    else:
        problem = _problem_for(kind, reason, header)
    if problem is not None and skipped and kind != "damaged images":
        # The refusal may follow from the files left out (a gap, too few slices): name them.
        names = ", ".join(Path(p).name for p, _ in skipped[:3]) + (
            "..." if len(skipped) > 3 else ""
        )
        problem.args = (
            f"{problem} ({len(skipped)} file(s) of this folder could not be read and were left "
            f"out: {names}: {skipped[0][1]}.)",
        )
    rows = frames[0].pixels.rows if frames else 0
    cols = frames[0].pixels.columns if frames else 0
    return SeriesInfo(
        series_instance_uid=header["series_instance_uid"],
        study_instance_uid=header["study_instance_uid"],
        series_number=header.get("series_number", ""),
        description=header.get("series_description", ""),
        modality=header.get("modality", ""),
        kind=kind,
        image_count=len(_unique(frames)) if frames else len(instances),
        orientation=orientation,
        spacing_mm=spacing,
        tilt_deg=tilt,
        kernel=header.get("kernel", ""),
        rows=rows,
        columns=cols,
        study_date=header.get("study_date", ""),
        usable=problem is None,
        reason=reason if problem is not None else "",
        files=tuple(sorted({i.path for i in instances})),
        skipped=tuple(skipped),
        _frames=frames,
        _header=header,
        _problem=problem,
    )


def _regular(path: str) -> bool:
    """True for a regular file (after symbolic links); pipes, devices, sockets and broken or
    looping links are not read: a named pipe would block the scan forever."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _gather_files(paths) -> tuple[list[str], str]:
    """All regular files under ``paths`` (a folder, a file, or several), and a label for them."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise NoSeriesFound("No files were given. Choose the folder that holds the CT images.")
    files: list[str] = []
    unreadable: list[OSError] = []
    others = 0
    for p in paths:
        if p.is_dir():
            if not os.access(p, os.R_OK | os.X_OK):
                raise EmptyFolder(
                    f"The folder {p} cannot be read (no permission to list it). Ask for read "
                    "access to it, or copy the CT images to a folder you can read."
                )
            for root, dirs, names in os.walk(p, onerror=unreadable.append):
                dirs.sort()
                for n in sorted(names):
                    if n.startswith("."):
                        continue
                    full = os.path.join(root, n)
                    if _regular(full):
                        files.append(full)
                    else:
                        others += 1
        elif p.exists() and not p.is_file():
            raise NoSeriesFound(
                f"{p} is not a regular file (a pipe, device or socket) and cannot hold CT "
                "images. Choose the folder that holds the CT images."
            )
        elif p.is_file():
            files.append(str(p))
        else:
            raise NoSeriesFound(
                f"{p} does not exist. Check the path, or choose the folder that holds the CT "
                "images."
            )
    label = str(paths[0]) if len(paths) == 1 else f"the {len(paths)} selected paths"
    if not files:
        if unreadable:
            where = unreadable[0].filename or label
            raise EmptyFolder(
                f"The folder {where} cannot be read ({unreadable[0].strerror or unreadable[0]}), "
                f"and no readable files were found in {label}. Ask for read access, or copy the "
                "CT images to a folder you can read."
            )
        extra = f" (only {others} pipe(s), device(s) or broken link(s))" if others else ""
        raise EmptyFolder(
            f"The folder {label} contains no files{extra}. Choose the folder that holds the CT "
            "images (the .dcm files or the DICOM export of the study)."
        )
    return files, label


def scan(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> list[SeriesInfo]:
    """Read the headers of every file under ``paths`` and list the series found.

    Parameters
    ----------
    paths : a folder (searched recursively), a file, or an iterable of them.
    progress : ``progress(fraction, message)``.
    cancel : polled between files; raises :class:`~fluoroplan.io.errors.Cancelled`.

    Returns
    -------
    list of SeriesInfo, ordered by series number then description. Unreadable and truncated
    files are skipped and listed in each series' ``skipped``; non-DICOM files are ignored.

    Raises
    ------
    EmptyFolder, NoSeriesFound
    """
    progress = progress or no_progress
    files, label = _gather_files(paths)
    instances: dict[str, list[_Instance]] = {}
    headers: dict[str, dict] = {}
    damaged: list[tuple[str, str, str]] = []  # (path, reason, series uid or "")
    not_dicom = 0
    n = len(files)
    step = max(1, n // 100)
    for k, path in enumerate(files):
        if cancel is not None:
            cancel.check()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom's complaints about odd values
                inst = _read_instance(path, headers)
        except _Skip as skip:
            if skip.damaged:
                damaged.append((path, skip.reason, skip.series_uid))
            else:
                not_dicom += 1
        else:
            if inst.sop_class != MEDIA_DIRECTORY:
                key = inst.series_uid or f"no-uid:{Path(path).parent}"
                instances.setdefault(key, []).append(inst)
        if k % step == 0 or k == n - 1:
            msg = f"Reading headers: {k + 1} of {n} files"
            if damaged:
                msg += f" ({len(damaged)} damaged or truncated file(s) skipped)"
            progress((k + 1) / n, msg)
    if damaged:
        progress(1.0, f"Skipped {len(damaged)} unreadable or truncated file(s)")
    if not instances:
        what = []
        if damaged:
            what.append(f"{len(damaged)} damaged or truncated DICOM file(s)")
        if not_dicom:
            what.append(f"{not_dicom} file(s) that are not DICOM")
        raise NoSeriesFound(
            f"No readable DICOM images were found in {label} ({' and '.join(what)}). Choose "
            "the folder that holds the CT images, or export the study again."
        )
    out = []
    for uid, insts in instances.items():
        mine = [(p, r) for p, r, s in damaged if s == uid or not s]
        out.append(_build_series(insts, mine))

    def order(s: SeriesInfo):
        try:
            num = int(s.series_number)
        except ValueError:
            num = 1 << 30
        return (num, s.description, s.series_instance_uid)

    return sorted(out, key=order)


def default_series(series_list: Sequence[SeriesInfo]) -> SeriesInfo:
    """The series to load unless the user chooses: the axial CT volume with the most slices
    (then the thinnest spacing). Localizers, dose reports, secondary captures and non-image
    objects are never chosen.

    Raises
    ------
    NoSeriesFound, or the specific error of the only series when there is just one.
    """
    series_list = list(series_list)
    usable = [s for s in series_list if s.usable]
    if not usable:
        if len(series_list) == 1 and series_list[0]._problem is not None:
            raise series_list[0]._problem
        if not series_list:
            raise NoSeriesFound("No series was found. Choose the folder that holds the CT images.")
        listed = "; ".join(
            f"'{s.description or s.series_number or '?'}' ({s.reason})" for s in series_list[:6]
        )
        raise NoSeriesFound(
            f"None of the {len(series_list)} series found is a CT volume that can be loaded: "
            f"{listed}. Choose the folder of the thin-slice axial CT series."
        )

    def rank(s: SeriesInfo):
        return (s.orientation == "axial", s.image_count, -(s.spacing_mm or 1e9))

    return max(usable, key=rank)


# ---------------------------------------------------------------------------------------------
# Pixel reading
# ---------------------------------------------------------------------------------------------
def _to_hu(
    stored: np.ndarray,
    slope: float,
    intercept: float,
    out: np.ndarray,
    bounds: tuple[int, int] | None = None,
) -> bool:
    """Write ``stored * slope + intercept`` into int16 ``out``; True if values were clipped.

    ``bounds`` (lowest, highest possible stored value, known from BitsStored once the unused
    bits are masked) lets the common case (slope 1, integer intercept, result within int16)
    run in place in int16 without a wider temporary.
    """
    if slope == 1.0 and float(intercept).is_integer() and stored.dtype.itemsize == 2:
        c = int(intercept)
        if c == 0 and stored.dtype == np.int16:
            if not np.shares_memory(stored, out):
                out[...] = stored
            return False
        lo, hi = bounds if bounds is not None else (int(stored.min()), int(stored.max()))
        if -32768 <= c <= 32767 and hi <= 32767 and lo + c >= -32768 and hi + c <= 32767:
            if not np.shares_memory(stored, out):
                out[...] = stored  # values fit int16, so the cast is exact
            if c:
                np.add(out, np.int16(c), out=out)  # int16 view of the same values
            return False
        tmp = stored.astype(np.int32)
        tmp += c
    else:
        tmp = np.rint(stored.astype(np.float32) * np.float32(slope) + np.float32(intercept))
    lo, hi = tmp.min(), tmp.max()
    clipped = bool(lo < -32768 or hi > 32767)
    if clipped:
        np.clip(tmp, -32768, 32767, out=tmp)
    out[...] = tmp
    return clipped


def _stored_bounds(pixels: _Pixels) -> tuple[int, int] | None:
    """Range of stored values implied by BitsStored (after masking), if narrower than 16 bits."""
    bs = pixels.bits_stored
    if bs <= 0 or bs >= 16:
        return None
    if pixels.signed:
        return -(1 << (bs - 1)), (1 << (bs - 1)) - 1
    return 0, (1 << bs) - 1


def _mask_bits(raw: np.ndarray, pixels: _Pixels) -> np.ndarray:
    """Honour BitsStored: drop the unused high bits (sign-extending signed data)."""
    bs = pixels.bits_stored
    if bs >= 16 or bs <= 0:
        return raw
    if pixels.signed:
        v = raw.view(np.int16)
        np.left_shift(v, 16 - bs, out=v)
        np.right_shift(v, 16 - bs, out=v)
        return v
    v = raw.view(np.uint16)
    np.bitwise_and(v, (1 << bs) - 1, out=v)
    return v


def _read_native(frame: _Frame, out: np.ndarray) -> np.ndarray:
    """Read one uncompressed frame's raw bytes into ``out`` (int16 buffer); return a typed view."""
    px = frame.pixels
    with open(px.path, "rb", buffering=0) as fp:
        fp.seek(px.offset + frame.index * px.frame_bytes)
        got = fp.readinto(memoryview(out).cast("B"))
    if got != px.frame_bytes:
        raise DecodeError(
            f"The file {Path(px.path).name} ended before its image data did (truncated). "
            "Export the series again."
        )
    return out if px.signed else out.view(np.uint16)


def _decode(frame: _Frame, cache: dict) -> np.ndarray:
    """Decode one frame through pydicom (compressed or unusual encodings)."""
    px = frame.pixels
    try:
        if px.frames == 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(px.path, force=True)
                arr = ds.pixel_array
        else:
            arr = cache.get(px.path)
            if arr is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    arr = pydicom.dcmread(px.path, force=True).pixel_array
                cache.clear()
                cache[px.path] = arr
            arr = arr[frame.index]
    except Exception as exc:  # noqa: BLE001 - any decoder failure becomes a DecodeError
        raise DecodeError(
            f"The image data of {Path(px.path).name} could not be decoded "
            f"({exc.__class__.__name__}: {exc}). The file may be damaged or use a compression "
            "fluoroplan cannot read; export the series uncompressed and try again."
        ) from None
    if arr.shape != (px.rows, px.columns):
        raise DecodeError(
            f"The image in {Path(px.path).name} decoded to {arr.shape} pixels instead of "
            f"{px.rows}x{px.columns}. Export the series again."
        )
    if arr.dtype.kind not in "iu":
        raise DecodeError(f"The image in {Path(px.path).name} does not hold integer CT values.")
    return arr


def _read_frames(frames: Sequence[_Frame], out: np.ndarray, progress: Stage) -> int:
    """Fill ``out[k]`` with the HU of ``frames[k]``; return the number of slices clipped."""
    n = len(frames)
    cache: dict = {}
    clipped = 0
    step = max(1, n // 50)
    for k, frame in enumerate(frames):
        if frame.pixels.native:
            raw = _read_native(frame, out[k])
        else:
            raw = _decode(frame, cache)
            if raw.dtype.itemsize != 2:
                raw = raw.astype(np.int32)
        if raw.dtype.itemsize == 2:
            raw = _mask_bits(raw, frame.pixels)
        bounds = _stored_bounds(frame.pixels) if raw.dtype.itemsize == 2 else None
        clipped += _to_hu(raw, frame.slope, frame.intercept, out[k], bounds)
        if k % step == 0 or k == n - 1:
            progress((k + 1) / n, f"Reading slice {k + 1} of {n}")
    return clipped


def _resample(geo: _Geometry, stack: np.ndarray, progress: Stage) -> np.ndarray:
    """Resample the sorted original slices onto the regular orthogonal output grid.

    Original slice k lies in a plane parallel to the output slices, at ``depth_mm[k]`` along
    the normal and shifted in-plane by ``shift_mm[k]``. Each output slice blends the two
    original slices around its depth (linear), each shifted into place (bilinear).
    """
    from scipy import ndimage

    nk, nj, ni = geo.output_shape()
    out = np.empty((nk, nj, ni), np.int16)
    si0, sj0 = geo.shift_mm.min(axis=0)
    off_i = (geo.shift_mm[:, 0] - si0) / geo.pixel_spacing[0]
    off_j = (geo.shift_mm[:, 1] - sj0) / geo.pixel_spacing[1]
    depth = geo.depth_mm
    placed: dict[int, np.ndarray] = {}

    def place(k: int) -> np.ndarray:
        if k not in placed:
            for old in [key for key in placed if key < k - 1]:
                del placed[old]
            placed[k] = ndimage.affine_transform(
                stack[k].astype(np.float32),
                [1.0, 1.0],
                offset=(-off_j[k], -off_i[k]),
                output_shape=(nj, ni),
                order=1,
                mode="constant",
                cval=float(AIR_HU),
            )
        return placed[k]

    for kk in range(nk):
        d = kk * geo.spacing_mm
        k1 = int(np.clip(np.searchsorted(depth, d, side="right"), 1, len(depth) - 1))
        k0 = k1 - 1
        w = float(np.clip((d - depth[k0]) / (depth[k1] - depth[k0]), 0.0, 1.0))
        if w < 1e-6:
            sl = place(k0)
        elif w > 1 - 1e-6:
            sl = place(k1)
        else:
            sl = (1.0 - w) * place(k0) + w * place(k1)
        out[kk] = np.rint(sl)
        progress((kk + 1) / nk, f"Resampling slice {kk + 1} of {nk}")
    return out


def _compare_duplicates(geo: _Geometry, stack: np.ndarray) -> int:
    """Read every repeated copy of an image and refuse the series if its pixels differ.

    ``stack[k]`` holds the HU of ``geo.frames[k]`` (the copy kept). Returns the number of
    identical copies dropped.
    """
    if not geo.duplicates:
        return 0
    index = {id(f): k for k, f in enumerate(geo.frames)}
    buf = np.empty(stack.shape[1:], np.int16)
    quiet = Stage(None, 0.0, 1.0)
    for kept, other in geo.duplicates:
        _read_frames([other], buf[None], quiet)
        k = index[id(kept)]
        differ = int(np.count_nonzero(buf != stack[k]))
        if differ:
            raise _short(
                "one image UID used twice",
                InconsistentSlices(
                    f"Two files carry the same SOP Instance UID ({kept.sop_uid.split('#')[0]}) "
                    f"at one position but hold different images ({differ} of {buf.size} pixels "
                    f"differ): {Path(kept.pixels.path).name} and {Path(other.pixels.path).name}. "
                    "fluoroplan cannot tell which one is right; remove the wrong copy or export "
                    "the series again."
                ),
            )
    return len(geo.duplicates)


def _slice_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute HU difference of two slices (every 4th pixel: a quick, robust sample)."""
    return float(np.mean(np.abs(a[::4, ::4].astype(np.float32) - b[::4, ::4])))


def _check_odd_rescale(geo: _Geometry, stack: np.ndarray) -> str | None:
    """Refuse images whose own rescale makes them disagree with their neighbouring slices.

    DICOM lets every image carry its own RescaleSlope/Intercept, so a different rescale is
    legal; a wrong one shows as a slice whose CT numbers jump against both neighbours (air and
    soft tissue move by hundreds of HU). Neighbouring slices of one scan differ by a few tens
    of HU on average; a slice that differs from both by more than max(150 HU, 5 x the series'
    typical difference) is refused. Returns a note for an accepted different rescale.
    """
    if not geo.odd_rescale:
        return None
    n = len(geo.frames)
    step = max(1, (n - 1) // 60)
    typical = float(
        np.median([_slice_difference(stack[k], stack[k + 1]) for k in range(0, n - 1, step)])
    )
    limit = max(150.0, 5.0 * typical)
    index = {id(f): k for k, f in enumerate(geo.frames)}
    for f in geo.odd_rescale:
        k = index[id(f)]
        diffs = [_slice_difference(stack[k], stack[m]) for m in (k - 1, k + 1) if 0 <= m < n]
        if diffs and min(diffs) > limit:
            raise _short(
                "an image with a wrong rescale",
                InconsistentSlices(
                    f"The {_label(f)} has its own rescale (slope {f.slope:g}, intercept "
                    f"{f.intercept:g}, unlike the rest of the series) and its CT numbers then "
                    f"differ from the neighbouring slices by {min(diffs):.0f} HU on average "
                    f"(neighbouring slices differ by {typical:.0f} HU): its header is wrong. "
                    "Remove that file or export the series again."
                ),
            )
    return (
        f"{len(geo.odd_rescale)} image(s) carry a rescale different from the rest of the series; "
        "their CT numbers agree with the neighbouring slices, so they were used as recorded."
    )


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
        from fluoroplan.io.nifti import load_nifti

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
