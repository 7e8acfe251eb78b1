"""Every image of a series must agree with the series, or the series is refused naming it.

Issue 13, point 1: one slice with another PixelRepresentation, a second file under one SOP
Instance UID with other pixels, a slice shifted sideways (not gantry tilt), an unusable rescale,
headers claiming sizes beyond what can be loaded, and damaged NIfTI files all loaded silently
before. Each case is written as real files (the truth is what is on disk), then loaded through
the real loader.
"""

from __future__ import annotations

import gzip
import math
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from test_io_dicom import AXIAL, edit_files, make_affine, phantom

from fluoroplan.io import load_ct, scan
from fluoroplan.io.dicom_write import write_series
from fluoroplan.io.errors import DecodeError, InconsistentSlices, LoadError, TooLarge


def _edit_one(folder: Path, name: str, fn) -> None:
    path = folder / name
    ds = pydicom.dcmread(path)
    fn(ds)
    ds.save_as(path)


def _refusal(folder, cls=InconsistentSlices, by_header=True) -> str:
    """The refusal's message; ``by_header``: the series table already says so (the header
    alone shows it), otherwise only reading the pixels can."""
    with pytest.raises(cls) as exc:
        load_ct(folder)
    (info,) = scan(folder)
    assert info.usable is not by_header
    return str(exc.value)


# --- pixel encoding -----------------------------------------------------------------------------
def test_one_slice_with_another_pixel_representation_is_refused_naming_it(tmp_path):
    write_series(phantom(), AXIAL, tmp_path)  # signed storage
    _edit_one(tmp_path, "IM00004.dcm", lambda ds: setattr(ds, "PixelRepresentation", 0))
    msg = _refusal(tmp_path)
    assert "IM00004.dcm" in msg and "unsigned 16-bit" in msg and "signed 16-bit" in msg
    assert "the other 7 images" in msg


def test_one_slice_with_other_bits_stored_is_refused(tmp_path):
    write_series(phantom(), AXIAL, tmp_path, bits_stored=16)
    _edit_one(tmp_path, "IM00002.dcm", lambda ds: (setattr(ds, "BitsStored", 12),
                                                   setattr(ds, "HighBit", 11)))
    msg = _refusal(tmp_path)
    assert "IM00002.dcm" in msg and "12 bits stored" in msg


# --- one SOP Instance UID, two files ------------------------------------------------------------
def test_identical_copy_of_an_image_is_one_image(tmp_path):
    hu = phantom()
    write_series(hu, AXIAL, tmp_path)
    shutil.copy(tmp_path / "IM00005.dcm", tmp_path / "copy.dcm")
    vol = load_ct(tmp_path)
    np.testing.assert_array_equal(vol.hu, hu)


def test_copy_under_the_same_uid_with_other_pixels_is_refused_naming_both(tmp_path):
    write_series(phantom(), AXIAL, tmp_path)
    ds = pydicom.dcmread(tmp_path / "IM00005.dcm")
    arr = ds.pixel_array.copy()
    arr[10:20, 10:20] += 400  # a different image, same UID and position
    ds.PixelData = arr.tobytes()
    ds.save_as(tmp_path / "AAA_copy.dcm")  # sorts first: the loader used to keep this one
    msg = _refusal(tmp_path, by_header=False)
    assert "IM00005.dcm" in msg and "AAA_copy.dcm" in msg and "100 of 4096 pixels" in msg


def test_copy_under_the_same_uid_at_another_position_is_refused(tmp_path):
    write_series(phantom(), AXIAL, tmp_path)
    ds = pydicom.dcmread(tmp_path / "IM00005.dcm")
    ds.ImagePositionPatient = [-30.0, -40.0, 300.0]
    ds.save_as(tmp_path / "moved.dcm")
    msg = _refusal(tmp_path)
    assert "same SOP Instance UID" in msg and "moved.dcm" in msg


# --- positions ----------------------------------------------------------------------------------
def test_one_slice_shifted_sideways_is_not_gantry_tilt(tmp_path):
    write_series(phantom(), AXIAL, tmp_path)

    def shift(ds):
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x + 50.0, y, z]

    _edit_one(tmp_path, "IM00004.dcm", shift)
    msg = _refusal(tmp_path)
    assert "IM00004.dcm" in msg and "50.0 mm sideways" in msg


@pytest.mark.parametrize("dz", [0.5, -1.0, 4.0])  # 4.0: beyond its neighbour, 2.5 mm away
def test_one_slice_off_the_regular_spacing_is_named_not_resampled(tmp_path, dz):
    """The fuzzer's finding: one slice's position moved along the normal was taken for uneven
    spacing and resampled (its pixels put at the wrong depth, the grid halved)."""
    write_series(phantom(), AXIAL, tmp_path)

    def move(ds):
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + dz]

    _edit_one(tmp_path, "IM00004.dcm", move)
    msg = _refusal(tmp_path)
    assert "IM00004.dcm" in msg and "off the regular 2.50 mm spacing" in msg


def test_truly_uneven_spacing_is_still_resampled(tmp_path):
    """Two spacings (thin then thick slices, as some protocols acquire) are no lie."""
    from fluoroplan.io.dicom_write import new_study_uids

    hu = phantom()
    study = new_study_uids()
    for n in range(hu.shape[0]):
        a = AXIAL.copy()
        a[2, 3] = 100.0 + (2.5 * n if n < 4 else 10.0 + 5.0 * (n - 4))
        write_series(hu[n:n + 1], a, tmp_path, study=study, file_names=[f"s{n}.dcm"])
    vol = load_ct(tmp_path)
    assert any("Uneven slice spacing" in n for n in vol.notes)


def test_gantry_tilt_still_loads(tmp_path):
    t = math.radians(15.0)
    affine = make_affine((1, 0, 0), (0, math.cos(t), -math.sin(t)), (0, 0, 3.0), (-25, -30, 0))
    write_series(phantom(), affine, tmp_path, gantry_tilt_deg=15.0)
    vol = load_ct(tmp_path)
    assert any("tilt of 15.0 deg" in n for n in vol.notes)


def test_an_end_slice_a_kilometre_away_is_named(tmp_path):
    write_series(phantom(), AXIAL, tmp_path)
    _edit_one(tmp_path, "IM00003.dcm",
              lambda ds: setattr(ds, "ImagePositionPatient", [-30.0, -40.0, 1e6]))
    msg = _refusal(tmp_path)
    assert "IM00003.dcm" in msg and "beyond the other slices" in msg


@pytest.mark.parametrize("spacing", [[1e-9, 1e-9], [0.0001, 0.8], [50.0, 50.0]])
def test_implausible_pixel_spacing_is_refused(tmp_path, spacing):
    write_series(phantom(), AXIAL, tmp_path)
    edit_files(tmp_path, lambda ds, p: setattr(ds, "PixelSpacing", spacing))
    msg = _refusal(tmp_path)
    assert "pixel spacing" in msg and "0.05-10 mm" in msg


# --- rescale ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "slope, intercept, words",
    [("0", "0", "RescaleSlope 0"), ("-1", "0", "RescaleSlope -1"),
     ("NaN", "0", "RescaleSlope nan"), ("1", "inf", "RescaleIntercept inf")],
)
def test_unusable_rescale_is_refused_naming_the_image(tmp_path, slope, intercept, words):
    write_series(phantom(), AXIAL, tmp_path)

    def bad(ds):
        ds["RescaleSlope"] = pydicom.DataElement(0x00281053, "DS", slope, validation_mode=0)
        ds["RescaleIntercept"] = pydicom.DataElement(0x00281052, "DS", intercept,
                                                     validation_mode=0)

    _edit_one(tmp_path, "IM00006.dcm", bad)
    msg = _refusal(tmp_path)
    assert words in msg and "IM00006.dcm" in msg and "No spinal column" not in msg


def test_a_wrong_intercept_on_one_slice_is_refused_by_what_it_reads(tmp_path):
    write_series(phantom(), AXIAL, tmp_path)
    _edit_one(tmp_path, "IM00004.dcm", lambda ds: setattr(ds, "RescaleIntercept", "1024"))
    msg = _refusal(tmp_path, by_header=False)
    assert "IM00004.dcm" in msg and "1024" in msg and "neighbouring slices" in msg


def test_a_different_but_right_rescale_on_one_slice_is_used(tmp_path):
    hu = phantom()
    write_series(hu, AXIAL, tmp_path)

    def halve(ds):
        arr = ds.pixel_array.astype(np.int32)
        ds.PixelData = ((arr + 1000) // 2).astype(np.int16).tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = "2", "-1000"

    _edit_one(tmp_path, "IM00004.dcm", halve)
    vol = load_ct(tmp_path)
    assert np.abs(vol.hu.astype(int) - hu).max() <= 1
    assert any("rescale different" in n for n in vol.notes)


# --- sizes --------------------------------------------------------------------------------------
def test_a_volume_beyond_the_limit_is_refused_before_allocation(tmp_path):
    # Slices 1000 mm apart sideways, 2.5 mm along the normal: a straight line (a "tilt" of
    # 89.9 deg) whose grid would be thousands of voxels wide.
    affine = make_affine((1, 0, 0), (0, 1, 0), (1000.0, 0, 2.5), (0, 0, 0))
    write_series(phantom((3, 64, 64)), affine, tmp_path)
    msg = _refusal(tmp_path, TooLarge)
    assert "fluoroplan loads at most 2048 x 2048 x 4000" in msg


def test_a_volume_beyond_free_memory_is_refused(tmp_path, monkeypatch):
    write_series(phantom(), AXIAL, tmp_path)
    monkeypatch.setattr("fluoroplan.io.limits.available_memory", lambda: 10_000)
    with pytest.raises(TooLarge, match=r"needs 0.0 GiB of memory and this computer has"):
        load_ct(tmp_path)


# --- messages -----------------------------------------------------------------------------------
def test_files_cut_before_their_pixels_say_so(tmp_path):
    write_series(phantom((3, 64, 64)), AXIAL, tmp_path)
    for p in tmp_path.iterdir():
        data = p.read_bytes()
        p.write_bytes(data[: len(data) - 64 * 64 * 2 - 12])  # cut before the pixel element
    with pytest.raises(LoadError) as exc:
        load_ct(tmp_path)
    msg = str(exc.value)
    assert "is holds" not in msg and ("truncated" in msg or "damaged" in msg)


# --- NIfTI --------------------------------------------------------------------------------------
def _nifti(path: Path, data: np.ndarray) -> None:
    nib = pytest.importorskip("nibabel")
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data.transpose(2, 1, 0)), affine), path)


def test_truncated_nifti_gz_is_refused(tmp_path):
    path = tmp_path / "ct.nii.gz"
    _nifti(path, phantom((40, 64, 64)).astype(np.int16))
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw)[: len(gzip.compress(raw)) // 3])
    with pytest.raises(DecodeError, match="incomplete or damaged"):
        load_ct(path)
    short = tmp_path / "short.nii.gz"  # a complete gzip stream of too few bytes
    short.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(DecodeError, match=r"truncated: .* 50% of the volume is missing"):
        load_ct(short)
    plain = tmp_path / "plain.nii"
    plain.write_bytes(raw[: len(raw) - 1000])
    with pytest.raises(DecodeError, match="truncated"):
        load_ct(plain)


def test_nifti_with_nan_voxels_is_refused(tmp_path):
    data = phantom((10, 64, 64)).astype(np.float32)
    data[3, 5:9, 5:9] = np.nan
    data[7, 0, 0] = np.inf
    path = tmp_path / "ct.nii.gz"
    _nifti(path, data)
    with pytest.raises(DecodeError, match=r"17 voxels that are not numbers .* 2 of its 10 slices"):
        load_ct(path)


def test_nifti_claiming_a_huge_volume_is_refused_before_reading(tmp_path):
    path = tmp_path / "ct.nii"
    _nifti(path, phantom((4, 64, 64)).astype(np.int16))
    raw = bytearray(path.read_bytes())
    raw[42:48] = np.array([30000, 30000, 30000], "<i2").tobytes()  # dim[1..3]
    path.write_bytes(bytes(raw))
    with pytest.raises(TooLarge, match="30000 x 30000 x 30000 voxels"):
        load_ct(path)


# --- through the command ------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["pixel-representation", "same-uid-other-pixels", "sideways"])
def test_analyze_and_plan_refuse_the_damaged_phantom_series(tmp_path, damage):
    """The issue's cases on the generated spine CT: rc 2, the file named on stderr, no JSON."""
    import subprocess
    import sys

    from phantom_fixtures import small_phantom

    from fluoroplan.resources.phantom import write_phantom

    write_phantom(tmp_path / "case", small_phantom())
    folder = tmp_path / "case" / "dicom"
    files = sorted(folder.glob("*.dcm"))
    victim = files[len(files) // 2]
    ds = pydicom.dcmread(victim)
    if damage == "pixel-representation":
        ds.PixelRepresentation = 0
    elif damage == "same-uid-other-pixels":
        arr = ds.pixel_array.copy()
        arr[: arr.shape[0] // 4] += 300
        ds.PixelData = arr.tobytes()
        victim = folder / "AAAA.dcm"
    else:
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x + 50.0, y, z]
    ds.save_as(victim)
    for command in ("analyze", "plan"):
        out = tmp_path / f"{command}.json"
        r = subprocess.run([sys.executable, "-m", "fluoroplan.cli", command, str(folder), "--quiet",
                            "--json", str(out)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "Traceback" not in r.stderr and victim.name in r.stderr
        assert not out.exists()
