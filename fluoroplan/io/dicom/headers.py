"""The header pass: read one DICOM file's header (never its pixels) into an :class:`_Instance`.

Holds the SOP class UIDs, the header tags read for every file, the per-file records
(:class:`_Pixels`, :class:`_Frame`, :class:`_Instance`), the fast raw-element parsing
(``_fast``) and :func:`_read_instance`, which also locates the Pixel Data element (and checks
that it is not truncated) so the pixel pass can read it directly. A file that cannot be used
raises :class:`_Skip`. Imports nothing of the other ``dicom`` submodules.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
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
    ipp: tuple[float, ...] | None  # three numbers
    iop: tuple[float, ...] | None
    pixel_spacing: tuple[float, ...] | None  # (between rows, between columns) in mm
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
    per_frame: list = []
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
