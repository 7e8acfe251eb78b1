"""A damaged or odd file in a CT folder never crashes or blocks the scan (issue 13, point 4).

Each file is damaged on disk the way the hostile-user tests found (a pixel-data header cut 8-11
bytes in, element lengths beyond the file, an unknown VR, Rows 0, NumberOfFrames "inf", a named
pipe, a link to a device, a link loop): it is skipped with a note naming it, and the rest of the
series loads; or, when the series cannot be whole without it, the refusal names the file.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from test_io_dicom import AXIAL, phantom

from fluoroplan.io import dicom as dicom_mod
from fluoroplan.io import load_ct, scan
from fluoroplan.io.dicom_write import write_series
from fluoroplan.io.errors import EmptyFolder, LoadError, NoSeriesFound

ROOT = Path(__file__).resolve().parents[1]


def _series(tmp_path: Path) -> tuple[Path, np.ndarray]:
    hu = phantom()
    folder = tmp_path / "ct"
    write_series(hu, AXIAL, folder)
    return folder, hu


def _pixel_element_offset(data: bytes) -> int:
    at = data.rfind(b"\xe0\x7f\x10\x00")
    assert at > 0
    return at


def _last(folder: Path) -> Path:
    return sorted(folder.glob("*.dcm"))[-1]


@pytest.mark.parametrize("cut", [8, 9, 10, 11])
def test_pixel_header_cut_inside_its_length_is_skipped_with_a_note(tmp_path, cut):
    folder, hu = _series(tmp_path)
    path = _last(folder)  # an end slice: the rest is still one whole series
    data = path.read_bytes()
    path.write_bytes(data[: _pixel_element_offset(data) + cut])
    vol = load_ct(folder)
    assert vol.hu.shape[0] == hu.shape[0] - 1
    assert any(path.name in n and "skipped" in n for n in vol.notes), vol.notes


def test_element_length_beyond_the_file_is_skipped(tmp_path):
    folder, _ = _series(tmp_path)
    path = _last(folder)
    data = bytearray(path.read_bytes())
    at = data.find(b"\x08\x00\x3e\x10")  # SeriesDescription (0008,103E), LO: 2-byte length
    assert at > 0
    data[at + 6 : at + 8] = struct.pack("<H", 0xFFF0)
    path.write_bytes(bytes(data[: at + 200]))
    vol = load_ct(folder)
    assert any(path.name in n for n in vol.notes)


def test_unknown_value_representation_is_skipped(tmp_path):
    folder, _ = _series(tmp_path)
    path = _last(folder)
    data = bytearray(path.read_bytes())
    at = data.find(b"\x28\x00\x30\x00DS")  # PixelSpacing
    assert at > 0
    data[at + 4 : at + 6] = b"\x01\x02"
    path.write_bytes(bytes(data))
    (info,) = scan(folder)
    vol = load_ct(folder)  # loads: either the file was read regardless, or skipped with a note
    assert vol.hu.shape[0] in (info.image_count, info.image_count + 1)


@pytest.mark.parametrize(
    ("keyword", "value", "said"),
    [("Rows", 0, "Rows is"), ("Columns", 0, "Columns is"), ("NumberOfFrames", "inf", "NumberOfFrames"),
     ("NumberOfFrames", "100000000", "frame(s)")],
)
def test_impossible_image_size_in_one_file_is_skipped_naming_it(tmp_path, keyword, value, said):
    folder, hu = _series(tmp_path)
    path = _last(folder)
    if keyword == "NumberOfFrames":  # planted as bytes: pydicom would not write "inf"
        data = path.read_bytes()
        at = data.find(b"\x28\x00\x10\x00US")  # before Rows, in tag order
        text = value.encode() + (b" " if len(value) % 2 else b"")
        path.write_bytes(data[:at] + b"\x28\x00\x08\x00IS" + struct.pack("<H", len(text))
                         + text + data[at:])
    else:
        ds = pydicom.dcmread(path)
        setattr(ds, keyword, value)
        ds.save_as(path)
    vol = load_ct(folder)
    assert vol.hu.shape[0] == hu.shape[0] - 1
    note = next(n for n in vol.notes if path.name in n)
    assert "skipped" in note
    (info,) = scan(folder)
    reasons = " ".join(r for _, r in info.skipped)
    assert said in reasons, reasons


def test_impossible_size_in_every_file_is_a_refusal_not_a_crash(tmp_path):
    folder, _ = _series(tmp_path)
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.Rows = ds.Columns = 65535
        ds.save_as(path)
    with pytest.raises(NoSeriesFound) as exc:
        load_ct(folder)
    assert "damaged or truncated" in str(exc.value)


def test_named_pipe_device_link_and_link_loop_are_not_read(tmp_path):
    folder, hu = _series(tmp_path)
    os.mkfifo(folder / "pipe.dcm")
    os.symlink("/dev/zero", folder / "zero.dcm")
    os.symlink("loop.dcm", folder / "loop.dcm")
    # In a subprocess with a timeout: the old scan blocked forever on the pipe.
    proc = subprocess.run(
        [sys.executable, "-m", "fluoroplan.cli", "series", str(folder), "--load"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{hu.shape[2]} x {hu.shape[1]} x {hu.shape[0]} voxels" in proc.stdout


def test_a_pipe_given_as_the_path_is_refused(tmp_path):
    pipe = tmp_path / "ct.dcm"
    os.mkfifo(pipe)
    with pytest.raises(NoSeriesFound, match="not a regular file"):
        scan(pipe)


def test_folder_of_only_pipes_says_so(tmp_path):
    os.mkfifo(tmp_path / "a")
    with pytest.raises(EmptyFolder, match="pipe"):
        scan(tmp_path)


def test_folder_without_read_permission_says_so_not_empty(tmp_path, monkeypatch):
    folder, _ = _series(tmp_path)
    if os.geteuid() != 0:
        folder.chmod(0)
    else:  # root reads everything: stand in for a user without the permission
        monkeypatch.setattr(dicom_mod.os, "access", lambda p, mode: Path(p) != folder)
    try:
        with pytest.raises(EmptyFolder) as exc:
            scan(folder)
    finally:
        folder.chmod(0o755)
    msg = str(exc.value)
    assert "cannot be read" in msg and "permission" in msg and "contains no files" not in msg


def test_unreadable_subfolder_is_reported_when_nothing_else_is_found(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()

    def walk(top, onerror=None, **kw):
        onerror(PermissionError(13, "Permission denied", str(tmp_path / "sub")))
        yield str(tmp_path), [], []

    monkeypatch.setattr(dicom_mod.os, "walk", walk)
    with pytest.raises(EmptyFolder) as exc:
        scan(tmp_path)
    assert "sub cannot be read (Permission denied)" in str(exc.value)


def test_refusal_caused_by_a_skipped_file_names_it(tmp_path):
    folder, _ = _series(tmp_path)
    middle = sorted(folder.glob("*.dcm"))[3]
    data = middle.read_bytes()
    middle.write_bytes(data[: _pixel_element_offset(data) + 10])
    with pytest.raises(LoadError) as exc:
        load_ct(folder)
    msg = str(exc.value)
    assert "missing 1 slice" in msg and middle.name in msg and "left out" in msg
