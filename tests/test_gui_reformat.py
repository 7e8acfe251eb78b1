"""Reformat geometry of the views (numpy only): orientation labels and plane sampling."""

from __future__ import annotations

import numpy as np
import pytest

from fluoroplan.app.reformat import display_axes, plane_grid, reformat
from fluoroplan.io.volume import CTVolume


def test_supine_axial_is_radiological():
    axes = display_axes("HFS")
    assert axes["axial"].edge_letters() == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert axes["axial"].viewed_from() == "the feet"
    assert axes["coronal"].edge_letters() == {"left": "R", "right": "L", "top": "H", "bottom": "F"}
    assert axes["coronal"].viewed_from() == "the front"
    assert axes["sagittal"].viewed_from() == "the patient's left"


def test_prone_axial_as_the_patient_lies():
    axes = display_axes("HFP")
    assert axes["axial"].edge_letters() == {"left": "L", "right": "R", "top": "P", "bottom": "A"}
    assert axes["axial"].viewed_from() == "the feet"
    assert axes["coronal"].viewed_from() == "the back"


def _volume(direction: np.ndarray, spacing=(0.8, 0.9, 1.5)) -> CTVolume:
    rng = np.random.default_rng(3)
    hu = rng.integers(-1000, 2000, size=(12, 14, 16)).astype(np.int16)  # [k, j, i]
    a = np.eye(4)
    a[:3, :3] = direction * np.asarray(spacing)
    a[:3, 3] = (-5.0, 7.0, 20.0)
    return CTVolume(hu=hu, lps_from_ijk=a, patient_position="HFS")


@pytest.mark.parametrize("direction", [
    np.eye(3),
    np.diag([-1.0, -1.0, 1.0]),  # prone storage
    np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], float),  # a sagittal acquisition
])
@pytest.mark.parametrize("view", ["axial", "sagittal", "coronal"])
def test_aligned_slicing_matches_each_voxel(direction, view):
    """Every displayed pixel is the voxel at that pixel's LPS position."""
    vol = _volume(direction)
    grid = plane_grid(vol, display_axes("HFS")[view])
    lo, hi = vol.bounds_lps()
    centre = (lo + hi) / 2
    depth = grid.depth_of(vol.lps_from_ijk_points(vol.ijk_from_lps_points(centre).round())[0])
    img = reformat(vol, grid, depth)
    rows, cols = grid.shape
    rr, cc = np.mgrid[0:rows, 0:cols]
    uv = np.stack([cc.ravel() * grid.pixel_mm[0], rr.ravel() * grid.pixel_mm[1]], axis=1)
    lps = grid.lps_from_uv(uv, depth)
    np.testing.assert_array_equal(img.ravel(), vol.hu_at_lps(lps))
    # the grid covers the whole volume in plane, at its own resolution
    assert rows * cols == np.prod(vol.shape_ijk) // vol.shape_ijk[
        int(np.argmax(np.abs(vol.direction.T @ grid.axes.into_screen_lps)))]


def test_oblique_volume_is_resampled():
    t = np.deg2rad(20)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    vol = _volume(rot, spacing=(1.0, 1.0, 1.0))
    vol.hu[:] = 100
    grid = plane_grid(vol, display_axes("HFS")["axial"])
    lo, hi = vol.bounds_lps()
    img = reformat(vol, grid, grid.depth_of((lo + hi) / 2))
    # inside the rotated slab: 100; the corners of the axis-aligned grid fall outside: -1024
    assert img[img.shape[0] // 2, img.shape[1] // 2] == 100
    assert img[0, 0] == -1024
