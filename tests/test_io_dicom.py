"""DICOM/NIfTI CT loading: small generated series for every variant, and the real scans."""

from __future__ import annotations

import math
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import shared_data
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from fluoroplan.io import CancelToken, CTVolume, default_series, load_ct, load_series, scan
from fluoroplan.io.dicom import DOSE_SR, SeriesInfo, orientation_label
from fluoroplan.io.dicom_write import new_study_uids, write_enhanced_ct, write_series
from fluoroplan.io.errors import (
    Cancelled,
    EmptyFolder,
    InconsistentGeometry,
    LoadError,
    MissingSlices,
    MixedOrientations,
    NoSeriesFound,
    NotCT,
    SeriesNotFound,
    TooFewSlices,
)

SHAPE = (8, 64, 64)  # k, j, i
LANDMARK_IJK = (41, 17, 5)
LANDMARK_HU = 2000


def phantom(shape=SHAPE) -> np.ndarray:
    """A ramp in HU (every voxel different along each axis) with one bright landmark voxel.

    Values stay in -1000..2000, representable in signed and unsigned 12-bit storage.
    """
    k, j, i = np.indices(shape)
    hu = (-1000 + 7 * i + 11 * j + 13 * k).astype(np.int16)
    li, lj, lk = LANDMARK_IJK
    if shape == SHAPE:
        hu[lk, lj, li] = LANDMARK_HU
    return hu


def make_affine(row, col, normal_step, origin, spacing=(0.8, 0.9)) -> np.ndarray:
    """4x4 lps_from_ijk from unit row/column directions, a slice step vector and an origin."""
    a = np.eye(4)
    a[:3, 0] = np.asarray(row, float) / np.linalg.norm(row) * spacing[0]
    a[:3, 1] = np.asarray(col, float) / np.linalg.norm(col) * spacing[1]
    a[:3, 2] = normal_step
    a[:3, 3] = origin
    return a


AXIAL = make_affine((1, 0, 0), (0, 1, 0), (0, 0, 2.5), (-30.0, -40.0, 100.0))


def landmark_lps(affine: np.ndarray) -> np.ndarray:
    return (affine @ np.array([*LANDMARK_IJK, 1.0]))[:3]


def found_landmark_lps(vol: CTVolume) -> np.ndarray:
    k, j, i = np.unravel_index(int(np.argmax(vol.hu)), vol.hu.shape)
    assert vol.hu[k, j, i] == LANDMARK_HU
    return vol.lps_from_ijk_points([i, j, k])[0]


def edit_files(folder: Path, fn) -> None:
    """Apply ``fn(ds, path)`` to every DICOM file in ``folder`` and save it back."""
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        fn(ds, path)
        ds.save_as(path)


def check_volume(vol: CTVolume, hu: np.ndarray, affine: np.ndarray) -> None:
    """HU exact, affine as written, landmark where it was put."""
    assert vol.hu.dtype == np.int16
    assert vol.hu.shape == hu.shape
    np.testing.assert_array_equal(vol.hu, hu)
    np.testing.assert_allclose(vol.lps_from_ijk, affine, atol=1e-4)
    np.testing.assert_allclose(found_landmark_lps(vol), landmark_lps(affine), atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Geometry, sorting, orientation
# ---------------------------------------------------------------------------------------------
def test_axial_series_hu_affine_landmark_and_fields(tmp_path):
    hu = phantom()
    study = {
        **new_study_uids(),
        "series_description": "Spine 2.5",
        "kernel": "B70f",
        "study_date": "20240102",
    }
    write_series(
        hu,
        AXIAL,
        tmp_path,
        study=study,
        patient={"name": "DOE^JANE", "id": "P1", "birth_date": "19600101", "sex": "F"},
    )
    vol = load_ct(tmp_path)
    check_volume(vol, hu, AXIAL)
    np.testing.assert_allclose(vol.spacing_mm, [0.8, 0.9, 2.5], atol=1e-6)
    assert vol.patient_position == "HFS"
    assert vol.identifiers["series_instance_uid"] == study["series_instance_uid"]
    assert vol.identifiers["study_instance_uid"] == study["study_instance_uid"]
    assert vol.identifiers["frame_of_reference_uid"] == study["frame_of_reference_uid"]
    assert vol.identifiers["series_description"] == "Spine 2.5"
    assert vol.identifiers["kernel"] == "B70f"
    assert vol.identifiers["modality"] == "CT"
    assert vol.identifiers["study_date"] == "20240102"
    assert vol.identifiers["manufacturer"] == "fluoroplan"
    assert vol.patient == {"name": "DOE^JANE", "id": "P1", "birth_date": "19600101", "sex": "F"}
    assert vol.notes == []


def test_any_file_names_any_order_reversed_instance_numbers(tmp_path):
    hu = phantom()
    names = [f"{random.Random(k).getrandbits(40):x}" for k in range(SHAPE[0])]  # no extension
    random.Random(1).shuffle(names)
    write_series(
        hu, AXIAL, tmp_path / "a" / "deep", file_names=names, reverse_instance_numbers=True
    )
    vol = load_ct(tmp_path)
    check_volume(vol, hu, AXIAL)
    # and as a shuffled list of files
    files = [str(p) for p in (tmp_path / "a" / "deep").iterdir()]
    random.Random(2).shuffle(files)
    check_volume(load_ct(files), hu, AXIAL)
    check_volume(load_series(files), hu, AXIAL)


def test_slices_written_head_to_feet_are_sorted_along_the_normal(tmp_path):
    """A k step against the normal: the loader flips k so it runs along the normal."""
    hu = phantom()
    affine = make_affine((1, 0, 0), (0, 1, 0), (0, 0, -2.0), (0.0, 0.0, 50.0))
    write_series(hu, affine, tmp_path)
    vol = load_ct(tmp_path)
    np.testing.assert_array_equal(vol.hu, hu[::-1])
    assert vol.lps_from_ijk[2, 2] == pytest.approx(2.0)
    np.testing.assert_allclose(found_landmark_lps(vol), landmark_lps(affine), atol=1e-4)


def _rotation(axis, deg) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    x, y, z = axis
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    cross = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return c * np.eye(3) + s * cross + (1 - c) * np.outer(axis, axis)


OBLIQUE_R = _rotation((1, 2, 0.5), 35)
ORIENTATIONS = {
    # name: (row, col, patient position, expected label)
    "supine": ((1, 0, 0), (0, 1, 0), "HFS", "axial"),
    "prone": ((-1, 0, 0), (0, -1, 0), "HFP", "axial"),
    "feet-first-supine": ((-1, 0, 0), (0, 1, 0), "FFS", "axial"),
    "sagittal": ((0, 1, 0), (0, 0, -1), "HFS", "sagittal"),
    "coronal": ((1, 0, 0), (0, 0, -1), "HFS", "coronal"),
    "oblique": (OBLIQUE_R[:, 0], OBLIQUE_R[:, 1], "HFS", "oblique"),
}


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_in_plane_orientations(tmp_path, name):
    row, col, position, label = ORIENTATIONS[name]
    normal = np.cross(row, col)
    affine = make_affine(row, col, 1.7 * normal / np.linalg.norm(normal), (12.0, -7.0, 33.0))
    hu = phantom()
    write_series(hu, affine, tmp_path, patient_position=position)
    (info,) = scan(tmp_path)
    assert info.orientation == label
    assert info.spacing_mm == pytest.approx(1.7, abs=1e-4)
    vol = load_series(info)
    check_volume(vol, hu, affine)
    assert vol.patient_position == position
    assert orientation_label(vol.direction[:, 2]) == label


def test_spacing_comes_from_positions_not_slice_thickness(tmp_path):
    hu = phantom()
    write_series(hu, AXIAL, tmp_path)

    def lie(ds, path):
        ds.SliceThickness = "5"
        ds.SpacingBetweenSlices = "7"

    edit_files(tmp_path, lie)
    vol = load_ct(tmp_path)
    assert vol.spacing_mm[2] == pytest.approx(2.5, abs=1e-6)
    check_volume(vol, hu, AXIAL)


# ---------------------------------------------------------------------------------------------
# Storage and transfer syntaxes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned-1024"])
@pytest.mark.parametrize("bits", [12, 16])
def test_storage_signed_unsigned_12_16_bits(tmp_path, signed, bits):
    hu = phantom()
    write_series(hu, AXIAL, tmp_path, signed=signed, bits_stored=bits)
    ds = pydicom.dcmread(next(tmp_path.iterdir()), stop_before_pixels=True)
    assert ds.PixelRepresentation == int(signed) and ds.BitsStored == bits
    assert float(ds.RescaleIntercept) == (0.0 if signed else -1024.0)
    check_volume(load_ct(tmp_path), hu, AXIAL)


def test_garbage_in_unused_high_bits_is_ignored(tmp_path):
    """BitsStored 12: bits 12-15 may hold anything (old overlays); HU must not change."""
    hu = phantom()
    write_series(hu, AXIAL, tmp_path, signed=False, bits_stored=12)

    def dirty(ds, path):
        arr = np.frombuffer(ds.PixelData, np.uint16).copy()
        arr |= 0xA000
        ds.PixelData = arr.tobytes()

    edit_files(tmp_path, dirty)
    check_volume(load_ct(tmp_path), hu, AXIAL)


@pytest.mark.parametrize("ts", ["jpeg-lossless", "jpeg-ls", "jpeg2000", "rle"])
def test_compressed_transfer_syntaxes(tmp_path, ts):
    hu = phantom()
    write_series(hu, AXIAL, tmp_path, transfer_syntax=ts, signed=(ts != "jpeg-ls"))
    ds = pydicom.dcmread(next(tmp_path.iterdir()), stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID.is_compressed
    check_volume(load_ct(tmp_path), hu, AXIAL)


def test_compressed_12_bit_unsigned(tmp_path):
    hu = phantom()
    write_series(hu, AXIAL, tmp_path, transfer_syntax="rle", signed=False, bits_stored=12)
    check_volume(load_ct(tmp_path), hu, AXIAL)


def test_enhanced_ct_multiframe(tmp_path):
    hu = phantom()
    affine = make_affine((-1, 0, 0), (0, -1, 0), (0, 0, 1.25), (40.0, 30.0, -20.0))
    path = write_enhanced_ct(
        hu, affine, tmp_path / "enhanced.dcm", patient_position="HFP", signed=False
    )
    vol = load_ct(path)
    check_volume(vol, hu, affine)
    assert vol.patient_position == "HFP"


def test_enhanced_ct_frames_out_of_order(tmp_path):
    hu = phantom()
    path = write_enhanced_ct(hu, AXIAL, tmp_path / "e.dcm")
    ds = pydicom.dcmread(path)
    order = [3, 0, 7, 1, 6, 2, 5, 4]
    frames = np.frombuffer(ds.PixelData, np.int16).reshape(hu.shape)[order]
    ds.PixelData = frames.tobytes()
    items = list(ds.PerFrameFunctionalGroupsSequence)
    ds.PerFrameFunctionalGroupsSequence = pydicom.sequence.Sequence([items[k] for k in order])
    ds.save_as(path)
    check_volume(load_ct(path), hu, AXIAL)


def test_missing_sop_class_in_dataset_is_tolerated(tmp_path):
    hu = phantom()
    write_series(hu, AXIAL, tmp_path)
    edit_files(tmp_path, lambda ds, path: delattr(ds, "SOPClassUID"))
    assert "SOPClassUID" not in pydicom.dcmread(next(tmp_path.iterdir()))
    (info,) = scan(tmp_path)
    assert info.usable and info.kind == "CT volume"
    check_volume(load_series(info), hu, AXIAL)


# ---------------------------------------------------------------------------------------------
# Gantry tilt and uneven spacing: a linear HU field must survive resampling
# ---------------------------------------------------------------------------------------------
GRAD = np.array([2.0, 3.0, 4.0])  # HU per mm along L, P, S


def linear_field(affine: np.ndarray, shape=SHAPE) -> np.ndarray:
    k, j, i = np.indices(shape)
    ijk1 = np.stack([i, j, k, np.ones_like(i)], axis=-1).astype(float)
    lps = ijk1 @ affine[:3].T
    return np.rint(lps @ GRAD).astype(np.int16)


def check_linear_field(vol: CTVolume, inside) -> int:
    """Compare the loaded HU with the field at each voxel's LPS, where ``inside(lps)``."""
    k, j, i = np.indices(vol.hu.shape)
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)
    lps = vol.lps_from_ijk_points(ijk)
    ok = inside(lps)
    err = np.abs(vol.hu.ravel()[ok].astype(float) - lps[ok] @ GRAD)
    assert err.max() <= 1.5
    return int(ok.sum())


def inside_sheared(affine: np.ndarray, shape=SHAPE, margin=0.05):
    inv = np.linalg.inv(affine)
    nk, nj, ni = shape

    def inside(lps):
        ijk = lps @ inv[:3, :3].T + inv[:3, 3]
        lim = np.array([ni - 1, nj - 1, nk - 1]) - margin
        return np.all((ijk >= margin) & (ijk <= lim), axis=1)

    return inside


def test_gantry_tilt_detected_and_resampled(tmp_path):
    t = math.radians(20.0)
    # Image plane tilted about L; slices stacked straight along S (the table does not tilt).
    affine = make_affine((1, 0, 0), (0, math.cos(t), -math.sin(t)), (0, 0, 3.0), (-25, -30, 0))
    write_series(linear_field(affine), affine, tmp_path, gantry_tilt_deg=20.0)
    (info,) = scan(tmp_path)
    assert info.tilt_deg == pytest.approx(20.0, abs=0.05)
    assert info.usable
    vol = load_series(info)
    assert any("tilt" in n.lower() and "20.0" in n for n in vol.notes)
    d = vol.direction
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-9)  # orthogonal grid
    assert np.linalg.det(d) > 0
    # slices 3 mm apart along S are 3 cos(20) apart along the image normal
    assert vol.spacing_mm[2] == pytest.approx(3.0 * math.cos(t), abs=1e-3)
    assert vol.hu.shape[1] > SHAPE[1]  # the grid widened to hold the shifted slices
    assert check_linear_field(vol, inside_sheared(affine)) > 0.5 * np.prod(SHAPE)


def test_uneven_spacing_resampled_to_regular_grid(tmp_path):
    study = new_study_uids()
    z = np.array([0.0, 2.0, 4.0, 6.0, 11.0, 16.0, 21.0, 26.0])
    field_affine = make_affine((1, 0, 0), (0, 1, 0), (0, 0, 1.0), (-10, -20, 0))
    k, j, i = np.indices((1, *SHAPE[1:]))
    for n, zn in enumerate(z):
        a = field_affine.copy()
        a[2, 3] = zn
        write_series(
            linear_field(a, (1, *SHAPE[1:])), a, tmp_path, study=study, file_names=[f"s{n}.dcm"]
        )
    (info,) = scan(tmp_path)
    assert info.usable, info.reason
    vol = load_series(info)
    assert any("uneven" in n.lower() for n in vol.notes)
    spacing = vol.spacing_mm[2]
    assert spacing == pytest.approx(2.0)  # the finest recurring gap sets the grid
    assert vol.hu.shape[0] == round(26.0 / spacing) + 1
    np.testing.assert_allclose(vol.lps_from_ijk_points([[0, 0, vol.hu.shape[0] - 1]])[0, 2], 26.0)

    def inside(lps):
        return (lps[:, 2] >= 0) & (lps[:, 2] <= 26.0)

    assert check_linear_field(vol, inside) == vol.hu.size


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------
def test_missing_slice_is_named(tmp_path):
    write_series(phantom(), AXIAL, tmp_path)
    (tmp_path / "IM00005.dcm").unlink()  # slice k=4 at z = 100 + 4 * 2.5 = 110
    with pytest.raises(MissingSlices) as exc:
        load_ct(tmp_path)
    err = exc.value
    assert err.gap_mm == pytest.approx(5.0)
    assert err.between_mm == pytest.approx((107.5, 112.5))
    msg = str(err)
    assert "107.50 mm" in msg and "112.50 mm" in msg and "2.50 mm apart" in msg
    assert "missing 1 slice" in msg
    (info,) = scan(tmp_path)
    assert not info.usable and info.reason == "slices missing"


def test_mixed_orientations_refused(tmp_path):
    study = new_study_uids()
    write_series(phantom(), AXIAL, tmp_path, study=study)
    sag = make_affine((0, 1, 0), (0, 0, -1), (1.0, 0, 0), (0, 0, 0))
    write_series(phantom((2, 64, 64)), sag, tmp_path, study=study, file_names=["L1", "L2"])
    (info,) = scan(tmp_path)
    assert info.orientation == "mixed"
    with pytest.raises(MixedOrientations, match="axial, sagittal"):
        load_ct(tmp_path)


def test_mismatched_rows_columns_refused(tmp_path):
    study = new_study_uids()
    write_series(phantom(), AXIAL, tmp_path, study=study)
    other = AXIAL.copy()
    other[2, 3] += 20 * 2.5
    write_series(phantom((3, 32, 64)), other, tmp_path, study=study, file_names=["a", "b", "c"])
    with pytest.raises(InconsistentGeometry, match="32x64, 64x64"):
        load_ct(tmp_path)


def test_non_ct_modality_refused(tmp_path):
    write_series(phantom(), AXIAL, tmp_path, study={"modality": "MR"})
    (info,) = scan(tmp_path)
    assert not info.usable and "MR" in info.reason
    with pytest.raises(NotCT, match="CT only"):
        load_ct(tmp_path)


def test_fewer_than_three_slices_refused(tmp_path):
    write_series(phantom((2, 64, 64)), AXIAL, tmp_path)
    with pytest.raises(TooFewSlices, match="only 2 images.*at least 3"):
        load_ct(tmp_path)


def test_empty_folder_refused(tmp_path):
    with pytest.raises(EmptyFolder, match="contains no files"):
        load_ct(tmp_path)
    (tmp_path / "notes.txt").write_text("not a CT")
    with pytest.raises(NoSeriesFound, match="1 file.*not DICOM"):
        load_ct(tmp_path)
    with pytest.raises(NoSeriesFound, match="does not exist"):
        load_ct(tmp_path / "nope")


def _truncate(path: Path, keep_fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])


@pytest.mark.parametrize("ts", ["explicit", "jpeg2000"])
def test_truncated_and_unreadable_files_skipped_and_reported(tmp_path, ts):
    hu = phantom()
    write_series(hu, AXIAL, tmp_path, transfer_syntax=ts)
    _truncate(tmp_path / "IM00008.dcm", 0.9)  # last slice: pixel data cut short
    bad = tmp_path / "garbage.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + os.urandom(300))
    (tmp_path / "README.txt").write_text("exported by a PACS")
    messages = []
    vol = load_ct(tmp_path, progress=lambda f, m: messages.append(m))
    np.testing.assert_array_equal(vol.hu, hu[:7])
    note = " ".join(vol.notes)
    assert "2 unreadable or truncated file(s)" in note and "IM00008.dcm" in note
    assert any("2 unreadable or truncated" in m for m in messages)


def test_truncated_middle_slice_becomes_a_named_gap(tmp_path):
    write_series(phantom(), AXIAL, tmp_path)
    _truncate(tmp_path / "IM00003.dcm", 0.5)
    with pytest.raises(MissingSlices, match="102.50 mm and 107.50 mm"):
        load_ct(tmp_path)


def test_all_files_unreadable(tmp_path):
    write_series(phantom((3, 64, 64)), AXIAL, tmp_path)
    for p in tmp_path.iterdir():
        _truncate(p, 0.3)
    with pytest.raises(NoSeriesFound, match="3 damaged or truncated"):
        load_ct(tmp_path)


# ---------------------------------------------------------------------------------------------
# Choosing a series
# ---------------------------------------------------------------------------------------------
def _dose_report(path: Path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DOSE_SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.dataset.FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = DOSE_SR
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesDescription = "Dose Report"
    ds.SeriesNumber = 999
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory) -> Path:
    """A study as a PACS exports it: localizer, two axial series, a sagittal MPR, a dose
    report and a secondary capture."""
    root = tmp_path_factory.mktemp("study")
    hu = phantom((4, 32, 32))
    loc = make_affine((0, 1, 0), (0, 0, -1), (1, 0, 0), (0, 0, 0))
    write_series(
        hu[:3], loc, root / "s1", study={"series_description": "Topogram", "series_number": 1}
    )
    edit_files(
        root / "s1", lambda ds, p: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"])
    )
    thick = make_affine((1, 0, 0), (0, 1, 0), (0, 0, 3.0), (0, 0, 0))
    write_series(
        phantom((10, 32, 32)),
        thick,
        root / "s2",
        study={"series_description": "Spine 3mm", "series_number": 2},
    )
    thin = make_affine((1, 0, 0), (0, 1, 0), (0, 0, 1.0), (0, 0, 0))
    write_series(
        phantom((30, 32, 32)),
        thin,
        root / "s3",
        study={"series_description": "Spine 1mm", "series_number": 3},
    )
    thin_b = make_affine((1, 0, 0), (0, 1, 0), (0, 0, 1.5), (0, 0, 0))
    write_series(
        phantom((30, 32, 32)),
        thin_b,
        root / "s3b",
        study={"series_description": "Spine 1.5mm", "series_number": 4},
    )
    sag = make_affine((0, 1, 0), (0, 0, -1), (0.5, 0, 0), (0, 0, 0))
    write_series(
        phantom((40, 32, 32)),
        sag,
        root / "s4",
        study={"series_description": "Sag MPR", "series_number": 5},
    )
    write_series(hu, thin, root / "s5", study={"series_description": "Screen", "series_number": 6})

    def to_sc(ds, p):
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID

    edit_files(root / "s5", to_sc)
    (root / "sr").mkdir()
    _dose_report(root / "sr" / "dose.dcm")
    return root


def test_scan_lists_series_for_a_user(study_folder):
    found = scan(study_folder)
    by_desc = {s.description: s for s in found}
    assert [s.series_number for s in found] == ["1", "2", "3", "4", "5", "6", "999"]
    assert by_desc["Topogram"].kind == "localizer" and not by_desc["Topogram"].usable
    assert by_desc["Dose Report"].kind == "dose report" and not by_desc["Dose Report"].usable
    assert by_desc["Screen"].kind == "secondary capture" and not by_desc["Screen"].usable
    s3 = by_desc["Spine 1mm"]
    assert (s3.usable, s3.modality, s3.image_count, s3.orientation) == (True, "CT", 30, "axial")
    assert s3.spacing_mm == pytest.approx(1.0) and s3.kernel == "BONE"
    assert by_desc["Sag MPR"].orientation == "sagittal"
    row = s3.row()
    assert row["Images"] == "30" and row["Spacing"] == "1.00 mm" and row["Usable"] == "yes"
    assert s3.describe() == "Series 3 'Spine 1mm': CT, 30 images, axial, 1.00 mm, kernel BONE"
    assert "not usable: a localizer" in by_desc["Topogram"].describe()
    assert isinstance(s3, SeriesInfo)
    with pytest.raises(AttributeError):
        s3.description = "x"  # frozen


def test_default_series_is_the_thin_axial_volume(study_folder):
    found = scan(study_folder)
    best = default_series(found)
    assert best.description == "Spine 1mm"  # 30 axial slices at 1.0 beats 1.5 mm and the MPR
    vol = load_ct(study_folder)
    assert vol.identifiers["series_description"] == "Spine 1mm"
    assert vol.hu.shape == (30, 32, 32)
    # never a localizer, dose report or secondary capture, even when alone
    not_volumes = [s for s in found if s.kind != "CT volume"]
    with pytest.raises(NoSeriesFound, match="None of the 3 series"):
        default_series(not_volumes)


def test_load_ct_by_series_uid(study_folder):
    found = scan(study_folder)
    sag = next(s for s in found if s.description == "Sag MPR")
    vol = load_ct(study_folder, series_uid=sag.series_instance_uid)
    assert vol.hu.shape == (40, 32, 32)
    assert orientation_label(vol.direction[:, 2]) == "sagittal"
    with pytest.raises(SeriesNotFound, match="Spine 1mm"):
        load_ct(study_folder, series_uid="1.2.3.4")
    loc = next(s for s in found if s.kind == "localizer")
    with pytest.raises(LoadError, match="localizer"):
        load_series(loc)


# ---------------------------------------------------------------------------------------------
# Progress and cancel
# ---------------------------------------------------------------------------------------------
def test_progress_reported_in_order(tmp_path):
    write_series(phantom(), AXIAL, tmp_path)
    calls = []
    load_ct(tmp_path, progress=lambda f, m: calls.append((f, m)))
    fractions = [f for f, _ in calls]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions == sorted(fractions)
    assert fractions[-1] == pytest.approx(1.0)
    assert any("Reading headers" in m for _, m in calls)
    assert any("Reading slice 8 of 8" in m for _, m in calls)


@pytest.mark.parametrize("at", [0.0, 0.2, 0.6])
def test_cancel(tmp_path, at):
    write_series(phantom(), AXIAL, tmp_path)
    token = CancelToken()
    if at == 0.0:
        token.cancel()

    def progress(fraction, message):
        if fraction >= at:
            token.cancel()

    with pytest.raises(Cancelled):
        load_ct(tmp_path, progress=progress, cancel=token)


# ---------------------------------------------------------------------------------------------
# NIfTI
# ---------------------------------------------------------------------------------------------
def test_nifti_ras_to_lps_int16(tmp_path):
    nib = pytest.importorskip("nibabel")
    hu = phantom()
    ras = np.array([[0.8, 0, 0, -30.0], [0, 0.9, 0, 40.0], [0, 0, 2.5, 100.0], [0, 0, 0, 1]])
    img = nib.Nifti1Image(np.ascontiguousarray(hu.transpose(2, 1, 0)).astype(np.float32), ras)
    path = tmp_path / "ct.nii.gz"
    nib.save(img, path)
    vol = load_ct(path)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras
    check_volume(vol, hu, lps)
    assert vol.patient_position == "HFS"
    assert any("HFS" in n and "assumed" in n for n in vol.notes)


# ---------------------------------------------------------------------------------------------
# Real scans
# ---------------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_j2k_series():
    folder = shared_data("totalseg-dicom-j2k", "dicom")
    first = pydicom.dcmread(sorted(folder.iterdir())[0], stop_before_pixels=True)
    assert not first.get("SOPClassUID")  # only in the file meta: must be tolerated
    assert first.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    vol = load_ct(folder)
    assert vol.hu.shape == (20, 512, 512)
    np.testing.assert_allclose(vol.spacing_mm, [0.977, 0.977, 2.0], atol=1e-3)
    np.testing.assert_allclose(vol.direction, np.eye(3), atol=1e-6)
    assert vol.identifiers["modality"] == "CT"
    assert -1100 <= vol.hu.min() <= -900 and 1000 <= vol.hu.max() <= 3100
    # soft tissue dominates inside the body
    body = vol.hu[vol.hu > -500]
    assert -100 < np.median(body) < 150


@pytest.mark.realdata
def test_real_ge_gantry_tilt():
    folder = shared_data("ge-head-gantry-tilt")
    (info,) = scan(folder)
    assert info.tilt_deg == pytest.approx(18.5, abs=0.2)
    vol = load_series(info)
    notes = " ".join(vol.notes).lower()
    assert "tilt of 18.5 deg" in notes and "uneven slice spacing (1.08-7.00 mm)" in notes
    d = vol.direction
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-9)
    # the slices span 144.1 mm along the normal (4.00 x13, 1.08, 7.00 x13), regular now
    span = (vol.hu.shape[0] - 1) * vol.spacing_mm[2]
    assert span == pytest.approx(13 * 4.002 + 1.081 + 13 * 6.999, abs=0.05)
    assert 3.5 < vol.spacing_mm[2] < 7.1
    assert vol.hu.min() >= -3100 and 1000 < vol.hu.max() < 4000
    brain = vol.hu[(vol.hu > 0) & (vol.hu < 80)]
    assert brain.size > 1e6


@pytest.mark.realdata
def test_real_singles_decode_and_refusals(tmp_path):
    from fluoroplan.io.dicom import _read_frames
    from fluoroplan.io.progress import Stage

    folder = shared_data("pydicom-ct-singles")

    def decoded(name):
        (info,) = scan(folder / name)
        out = np.empty((len(info._frames), info.rows, info.columns), np.int16)
        _read_frames(info._frames, out, Stage(None, 0, 1))
        return out

    j2k, unc = decoded("693_J2KR.dcm"), decoded("693_UNCR.dcm")
    np.testing.assert_array_equal(j2k, unc)
    assert -3100 < unc.min() and unc.max() < 3100
    for name in ("693_J2KR.dcm", "bad_sequence.dcm", "explicit_VR-UN.dcm"):
        with pytest.raises(TooFewSlices, match="only 1 image"):
            load_ct(folder / name)
    with pytest.raises(TooFewSlices, match="only 2 images"):
        load_ct(folder / "eCT_Supplemental.dcm")
    # the two copies of slice 693 are one image, not two
    shutil.copy(folder / "693_J2KR.dcm", tmp_path / "a.dcm")
    shutil.copy(folder / "693_UNCR.dcm", tmp_path / "b.dcm")
    (info,) = scan(tmp_path)
    assert info.image_count == 1


@pytest.mark.realdata
def test_real_nifti_scans():
    ct = load_ct(shared_data("totalseg-abdomen-ct", "ct.nii.gz"))
    assert ct.shape_ijk == (122, 101, 112)
    np.testing.assert_allclose(ct.spacing_mm, [3.0, 3.0, 3.0], atol=1e-3)
    assert ct.hu.min() == -1207 and ct.hu.max() == 3382
    assert ct.patient_position == "HFS"
    cta = load_ct(shared_data("totalseg-thorax-cta-stent", "ct.nii.gz"))
    assert cta.shape_ijk == (120, 126, 164)
    assert cta.hu.dtype == np.int16 and cta.hu.max() > 1500


def test_rescale_slope_and_intercept_applied(tmp_path):
    hu = phantom()
    write_series(hu, AXIAL, tmp_path)

    def rescale(ds, path):
        ds.RescaleSlope = "0.5"
        ds.RescaleIntercept = "10"

    edit_files(tmp_path, rescale)
    vol = load_ct(tmp_path)
    expected = np.rint(hu.astype(np.float32) * np.float32(0.5) + np.float32(10)).astype(np.int16)
    np.testing.assert_array_equal(vol.hu, expected)


def test_values_beyond_int16_are_clipped_and_noted(tmp_path):
    hu = phantom()
    write_series(hu, AXIAL, tmp_path, signed=False)

    def hot(ds, path):
        if path.name == "IM00003.dcm":
            arr = np.frombuffer(ds.PixelData, np.uint16).copy()
            arr[0] = 65535  # HU 64511 with intercept -1024
            ds.PixelData = arr.tobytes()

    edit_files(tmp_path, hot)
    vol = load_ct(tmp_path)
    assert vol.hu[2, 0, 0] == 32767
    expected = hu.copy()
    expected[2, 0, 0] = 32767
    np.testing.assert_array_equal(vol.hu, expected)
    assert any("clipped" in n for n in vol.notes)
