"""Projection model and DRR: orientation, beads land where the model says, screws look right."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from phantom_fixtures import small_phantom

from fluoroplan.geometry.carm import CArmPose, bullseye_pose, progression_pose
from fluoroplan.geometry.conventions import MU_METAL_PER_MM, MU_WATER_PER_MM
from fluoroplan.geometry.drr import (
    AttenuationVolume,
    collimated_field,
    compose_rgb,
    disc_mask,
    fluoroscopy_display,
    landmark_visibility,
    metal_points_lps,
    needle_mask,
    render_drr,
    render_line_integrals,
)
from fluoroplan.geometry.projection import Projection
from fluoroplan.io.png import png_bytes, read_png, write_png


# --- synthetic volumes --------------------------------------------------------------------
def make_volume(shape=(110, 120, 130), spacing=(0.9, 0.8, 1.0), flip=False, origin=None):
    """Air volume ``[k, j, i]`` and its affine; ``flip`` stores i -> -x, j -> -y (like a
    prone scan)."""
    a = np.eye(4)
    sx, sy, sz = spacing
    a[0, 0], a[1, 1], a[2, 2] = (-sx, -sy, sz) if flip else (sx, sy, sz)
    nk, nj, ni = shape
    centre = np.array([(ni - 1) / 2, (nj - 1) / 2, (nk - 1) / 2])
    a[:3, 3] = -a[:3, :3] @ centre if origin is None else origin
    return np.full(shape, -1000, np.int16), a


def ijk_grid(hu, affine):
    nk, nj, ni = hu.shape
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    ijk = np.stack([i, j, k], axis=-1).astype(float)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def paint_sphere(hu, affine, centre_lps, radius_mm, value):
    lps = ijk_grid(hu, affine)
    hu[np.linalg.norm(lps - centre_lps, axis=-1) <= radius_mm] = value


def paint_cylinder(hu, affine, head_lps, tip_lps, radius_mm, value):
    lps = ijk_grid(hu, affine)
    axis = tip_lps - head_lps
    length = np.linalg.norm(axis)
    axis = axis / length
    t = (lps - head_lps) @ axis
    radial = np.linalg.norm(lps - head_lps - t[..., None] * axis, axis=-1)
    hu[(t >= 0) & (t <= length) & (radial <= radius_mm)] = value


def weighted_centroid(img, frac=0.3):
    m = img > frac * img.max()
    vv, uu = np.nonzero(m)
    w = img[m]
    return np.array([(uu * w).sum() / w.sum(), (vv * w).sum() / w.sum()])


def region_shape(mask):
    """(area_px, roundness = minor/major axis, major axis length px) of a pixel region."""
    vv, uu = np.nonzero(mask)
    pts = np.stack([uu, vv], axis=1).astype(float)
    cov = np.cov((pts - pts.mean(axis=0)).T)
    ev = np.sort(np.linalg.eigvalsh(cov))
    return len(pts), math.sqrt(ev[0] / ev[1]), math.sqrt(12.0 * ev[1])


def largest_component_at(mask, uv):
    from scipy import ndimage

    lab, _ = ndimage.label(mask)
    v, u = int(round(uv[1])), int(round(uv[0]))
    assert lab[v, u] > 0, "no region at the predicted pixel"
    return lab == lab[v, u]


# --- projection model ---------------------------------------------------------------------
def test_isocentre_and_central_ray_land_at_centre():
    iso = np.array([5.0, -3.0, 12.0])
    pr = Projection(CArmPose(-165.0, -10.0, "HFP").with_image_size(256), iso)
    np.testing.assert_allclose(pr.detector_px_from_lps(iso), [127.5, 127.5], atol=1e-9)
    far = iso + 80.0 * pr.detector_dir_lps
    np.testing.assert_allclose(pr.detector_px_from_lps(far), [127.5, 127.5], atol=1e-9)
    assert np.linalg.norm(pr.source_lps - iso) == pytest.approx(750.0)
    assert np.linalg.norm(pr.detector_center_lps - pr.source_lps) == pytest.approx(1100.0)
    assert pr.magnification(iso)[0] == pytest.approx(1100.0 / 750.0)


@pytest.mark.parametrize(
    "p, s, position, right_of_image, head_up",
    [
        (
            180.0,
            0.0,
            "HFP",
            (-1, 0, 0),
            True,
        ),  # PA of a prone patient: patient's right on the right
        (0.0, 0.0, "HFS", (1, 0, 0), True),  # AP of a supine patient: patient's left on the right
        (90.0, 0.0, "HFP", (0, 1, 0), True),  # left lateral: back on the right
        (-90.0, 0.0, "HFS", (0, -1, 0), True),  # right lateral: front on the right
    ],
)
def test_image_orientation(p, s, position, right_of_image, head_up):
    pr = Projection(CArmPose(p, s, position).with_image_size(200), np.zeros(3))
    c = pr.detector_px_from_lps(np.zeros(3))
    side = pr.detector_px_from_lps(20.0 * np.asarray(right_of_image, float))
    head = pr.detector_px_from_lps(np.array([0.0, 0.0, 20.0]))
    assert side[0] > c[0] + 5 and abs(side[1] - c[1]) < 1e-6
    assert head[1] < c[1] - 5 and abs(head[0] - c[0]) < 1e-6


def test_inverse_ray_round_trip():
    rng = np.random.default_rng(3)
    pr = Projection(CArmPose(37.0, 21.0, "FFS").with_image_size(300), np.array([1.0, 2.0, 3.0]))
    pts = rng.uniform(-80, 80, size=(50, 3))
    uv = pr.detector_px_from_lps(pts)
    origin, direction = pr.ray_lps(uv)
    # every point lies on the ray of its own pixel
    rel = pts - origin
    off = rel - (rel * direction).sum(axis=1, keepdims=True) * direction
    assert np.abs(off).max() < 1e-9
    det = pr.lps_from_detector_px(uv)
    np.testing.assert_allclose(pr.detector_px_from_lps(det), uv, atol=1e-9)
    assert np.allclose((det - pr.detector_center_lps) @ pr.detector_dir_lps, 0.0, atol=1e-9)
    with pytest.raises(ValueError, match="behind"):
        pr.detector_px_from_lps(pr.source_lps - 10.0 * pr.detector_dir_lps)


# --- DRR geometry -------------------------------------------------------------------------
BEAD_POSES = [
    (0.0, 0.0, "HFS"),
    (180.0, 0.0, "HFP"),  # PA, prone
    (-165.0, -10.0, "HFP"),  # the worked check, oblique prone
    (150.0, 20.0, "HFP"),
    (60.0, 25.0, "HFS"),
    (90.0, 0.0, "HFP"),  # lateral
    (-120.0, -35.0, "FFS"),
    (10.0, 70.0, "FFP"),  # nearly along the body axis
]


@pytest.fixture(scope="module")
def bead_case():
    hu, a = make_volume(flip=True)
    bead = np.array([14.0, -9.0, 11.0])
    paint_sphere(hu, a, bead, 2.0, 3071)
    return AttenuationVolume(hu, a, levels=2), bead, hu, a


@pytest.mark.parametrize("p, s, position", BEAD_POSES)
def test_bead_lands_on_predicted_pixel(bead_case, p, s, position):
    vol, bead, _, _ = bead_case
    pr = Projection(CArmPose(p, s, position).with_image_size(256), np.array([3.0, 2.0, -4.0]))
    li = render_line_integrals(vol, pr, level=0)
    err = np.linalg.norm(weighted_centroid(li) - pr.detector_px_from_lps(bead))
    assert err < 1.0, f"bead off by {err:.2f} px"
    assert err < 0.3  # measured: <= 0.1 px


def test_bead_line_integral_is_conserved(bead_case):
    """Sum over the image x pixel area at the bead's depth = mu x the bead's voxel volume."""
    vol, bead, hu, a = bead_case
    pr = Projection(CArmPose(-165.0, -10.0, "HFP").with_image_size(256), np.zeros(3))
    li = render_line_integrals(vol, pr, level=0)
    px_mm_at_bead = pr.pose.pixel_mm / pr.magnification(bead)[0]
    measured = li.sum() * px_mm_at_bead**2
    voxel_mm3 = abs(np.linalg.det(a[:3, :3]))
    expected = (hu >= 2500).sum() * voxel_mm3 * MU_METAL_PER_MM
    assert measured == pytest.approx(expected, rel=0.03)


def test_water_slab_line_integral():
    hu, a = make_volume(shape=(60, 80, 90), spacing=(1.0, 1.0, 1.0))
    lps = ijk_grid(hu, a)
    hu[np.abs(lps[..., 1]) <= 20.0] = 0  # 40 mm of water across the AP direction
    vol = AttenuationVolume(hu, a, levels=2)
    pr = Projection(CArmPose(180.0, 0.0, "HFP").with_image_size(128), np.zeros(3))
    li = render_line_integrals(vol, pr, level=0)
    centre = li[60:68, 60:68]
    # linear interpolation integrates a voxel slab exactly: n voxels of 1 mm
    n_water = int((np.abs(lps[0, :, 0, 1]) <= 20.0).sum())
    assert n_water == 40
    assert centre.mean() == pytest.approx(n_water * MU_WATER_PER_MM, rel=0.01)
    # coarser pyramid levels agree on a smooth object
    li1 = render_line_integrals(vol, pr, level=1)
    assert li1[60:68, 60:68].mean() == pytest.approx(centre.mean(), rel=0.05)


@pytest.fixture(scope="module")
def screw_case():
    hu, a = make_volume(shape=(120, 120, 120), spacing=(0.7, 0.7, 0.8), flip=True)
    lps = ijk_grid(hu, a)
    hu[np.linalg.norm(lps[..., :2] / [40.0, 30.0], axis=-1) <= 1.0] = 40  # a soft-tissue trunk
    head, tip = np.array([-20.0, 25.0, 5.0]), np.array([-8.0, -15.0, 12.0])
    paint_cylinder(hu, a, head, tip, 3.25, 3071)
    return AttenuationVolume(hu, a, levels=2), head, tip, hu, a


@pytest.fixture(scope="module")
def screw_in_air(screw_case):
    """The same screw alone (so a threshold at half the maximum outlines the metal)."""
    _, head, tip, hu, a = screw_case
    only = np.where(hu >= 2500, hu, np.int16(-1000)).astype(np.int16)
    return AttenuationVolume(only, a, levels=2), head, tip


def test_screw_bullseye_is_a_disc_and_side_view_a_bar(screw_in_air):
    vol, head, tip = screw_in_air
    length = np.linalg.norm(tip - head)
    be = bullseye_pose(head, tip, "HFP").with_image_size(256)
    pr = Projection(be, (head + tip) / 2)
    li = render_line_integrals(vol, pr, level=0)
    disc = largest_component_at(li > 0.5 * li.max(), pr.detector_px_from_lps(tip))
    area, roundness, _ = region_shape(disc)
    mag = pr.magnification((head + tip) / 2)[0]
    expected_area = math.pi * (3.25 * mag / be.pixel_mm) ** 2
    assert roundness > 0.9, roundness
    assert area == pytest.approx(expected_area, rel=0.3), (area, expected_area)
    # the same screw 90 deg off: a long bar
    side = progression_pose(head, tip, "HFP").with_image_size(256)
    pr2 = Projection(side, (head + tip) / 2)
    li2 = render_line_integrals(vol, pr2, level=0)
    bar = largest_component_at(li2 > 0.5 * li2.max(), pr2.detector_px_from_lps((head + tip) / 2))
    _, roundness2, major = region_shape(bar)
    assert roundness2 < 0.2, roundness2
    assert major == pytest.approx(length * mag / side.pixel_mm, rel=0.15)


def test_display_metal_black_air_white_and_invert(screw_case):
    vol, head, tip, _, _ = screw_case
    drr = render_drr(vol, bullseye_pose(head, tip, "HFP"), (head + tip) / 2, size=128,
                     marks=False)
    img = drr.image
    assert img.dtype == np.uint8 and img.shape == (128, 128)
    field = collimated_field((128, 128))
    assert field[64, 2] and not field[0, 0]
    assert img[64, 2] == 255  # air inside the round field
    assert img[0, 0] == 0 and img[127, 127] == 0  # the collimator's lead outside it
    uv = np.rint(drr.projection.detector_px_from_lps(tip)).astype(int)
    assert img[uv[1], uv[0]] == 0  # metal saturates
    inv = render_drr(vol, bullseye_pose(head, tip, "HFP"), (head + tip) / 2, size=128,
                     invert=True, marks=False)
    np.testing.assert_array_equal(inv.image[field], 255 - img[field])
    assert not inv.image[~field].any()
    with pytest.raises(ValueError, match="window"):
        fluoroscopy_display(drr.line_integrals, window=(1.0, 1.0))


# --- overlays -----------------------------------------------------------------------------
def test_needle_is_a_dot_in_bullseye_and_a_line_otherwise():
    entry, target = np.array([-40.0, 70.0, -10.0]), np.array([-5.0, 0.0, 2.0])
    be = Projection(bullseye_pose(entry, target, "HFP").with_image_size(512), target)
    dot = needle_mask(be, entry, target)
    area, roundness, _ = region_shape(dot)
    assert roundness > 0.7 and area < 40  # 15 ga at 0.59 mm pixels: a few pixels across
    assert dot[tuple(np.rint(be.detector_px_from_lps(target))[::-1].astype(int))]
    lat = Projection(progression_pose(entry, target, "HFP").with_image_size(512), target)
    line = needle_mask(lat, entry, target)
    _, roundness, major = region_shape(line)
    uv = lat.detector_px_from_lps(np.array([entry, target]))
    assert roundness < 0.1
    assert major == pytest.approx(np.linalg.norm(uv[1] - uv[0]), rel=0.05)
    rgb = compose_rgb(np.full((512, 512), 128, np.uint8), [(line, (255, 0, 0))])
    assert rgb.shape == (512, 512, 3) and tuple(rgb[line][0]) == (255, 0, 0)
    assert disc_mask(lat, target, 3.0).sum() == pytest.approx(math.pi * 9, rel=0.35)


def test_render_drr_draws_the_trajectory(screw_case):
    vol, head, tip, _, _ = screw_case
    entry, target = np.array([25.0, 40.0, -5.0]), np.array([8.0, -5.0, 4.0])
    drr = render_drr(
        vol,
        progression_pose(entry, target, "HFP"),
        target,
        size=128,
        trajectories=[(entry, target)],
    )
    assert drr.image.shape == (128, 128, 3)
    mid = np.rint(drr.projection.detector_px_from_lps((entry + target) / 2)).astype(int)
    assert tuple(drr.image[mid[1], mid[0]]) == (255, 200, 0)


# --- landmark visibility ------------------------------------------------------------------
def test_landmark_visibility_flags_a_screw_hiding_the_pedicle(screw_case):
    vol, head, tip, hu, a = screw_case
    metal = metal_points_lps(hu, a)
    # the pedicle: a 4.5 mm radius cylinder around the screw's first 20 mm
    axis = (tip - head) / np.linalg.norm(tip - head)
    lps = ijk_grid(hu, a).reshape(-1, 3)
    t = (lps - head) @ axis
    radial = np.linalg.norm(lps - head - t[:, None] * axis, axis=1)
    pedicle = lps[(t >= 0) & (t <= 20) & (radial <= 4.5)]
    # a needle 10 mm lateral of the screw, parallel to it
    offset = np.array([-10.0, 0.0, 0.0])
    entry, target = head + offset, tip + offset
    be = Projection(bullseye_pose(head, tip, "HFP").with_image_size(256), (head + tip) / 2)
    vis = landmark_visibility(be, metal, pedicle, entry, target, voxel_mm=0.8)
    assert vis.hidden
    assert vis.pedicle_hidden_fraction == pytest.approx((3.25 / 4.5) ** 2, abs=0.2)
    assert vis.needle_hidden_fraction < 0.05
    assert "choose another view" in vis.text
    # a lateral view from the needle's side: the needle runs beside, not behind, the screw;
    # a frontal view straight down at the screw+needle plane shows neither hidden
    no_metal = landmark_visibility(be, np.empty((0, 3)), pedicle, entry, target)
    assert no_metal.pedicle_hidden_fraction == 0.0 and not no_metal.hidden


# --- the phantom ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def phantom_case():
    ph = small_phantom()
    return ph, AttenuationVolume.from_ct(ph.volume, levels=2)


def test_phantom_lateral_shows_vertebral_bodies(phantom_case):
    """The vertebrae's own contribution to a lateral DRR sits where the volume has them."""
    ph, vol = phantom_case
    no_bone = np.where(ph.labels > 0, np.int16(30), ph.volume.hu).astype(np.int16)
    vol_no_bone = AttenuationVolume(no_bone, ph.volume.lps_from_ijk, levels=1)
    cents = np.array([v["centroid_lps"] for v in ph.truth["vertebrae"]])
    iso = cents.mean(axis=0)
    pr = Projection(CArmPose(90.0, 0.0, "HFP").with_image_size(256), iso)
    bone = render_line_integrals(vol, pr, level=0) - render_line_integrals(vol_no_bone, pr, 0)

    def at(p):
        u, v = np.rint(pr.detector_px_from_lps(p)).astype(int)
        return float(bone[v - 1 : v + 2, u - 1 : u + 2].mean())

    for c in cents:
        assert at(c) > 0.1  # the body is there
        assert abs(at(c + [0.0, -45.0, 0.0])) < 0.02  # in front of it: no bone
    for c0, c1 in zip(cents[:-1], cents[1:], strict=True):
        assert at((c0 + c1) / 2) < 0.5 * min(at(c0), at(c1))  # disc spaces
    # the column runs down the image, head at the top
    assert all(np.diff([pr.detector_px_from_lps(c)[1] for c in cents]) > 0)
    # and in the full image the bodies show as darker (more attenuating) than the discs
    li = render_line_integrals(vol, pr, level=0)
    ups = [pr.detector_px_from_lps(c) for c in cents]
    for (u0, v0), (u1, v1) in zip(ups[:-1], ups[1:], strict=True):
        vm, um = int(round((v0 + v1) / 2)), int(round((u0 + u1) / 2))
        assert li[vm, um] < max(
            li[int(round(v0)), int(round(u0))], li[int(round(v1)), int(round(u1))]
        )


def test_phantom_screw_bullseye_shows_a_dot(phantom_case):
    ph, vol = phantom_case
    screw = ph.truth["screws"][0]
    head, tip = np.array(screw["head_lps"]), np.array(screw["tip_lps"])
    drr = render_drr(vol, bullseye_pose(head, tip, "HFP"), tip, size=256, level=0)
    pr = drr.projection
    np.testing.assert_allclose(
        pr.detector_px_from_lps(head), pr.detector_px_from_lps(tip), atol=1e-6
    )
    u, v = np.rint(pr.detector_px_from_lps(tip)).astype(int)
    assert drr.grey[v, u] == 0  # metal along the whole screw: saturated
    # and the screw is no longer black seen from the side, only a bar
    side = render_drr(vol, progression_pose(head, tip, "HFP"), tip, size=256, level=0)
    mid = np.rint(side.projection.detector_px_from_lps((head + tip) / 2)).astype(int)
    assert side.line_integrals[mid[1], mid[0]] < drr.line_integrals[v, u]


# --- PNG and CLI --------------------------------------------------------------------------
def test_png_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(17, 23), dtype=np.uint8)
    rgb = rng.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    np.testing.assert_array_equal(read_png(write_png(tmp_path / "g.png", grey)), grey)
    np.testing.assert_array_equal(read_png(write_png(tmp_path / "c.png", rgb)), rgb)
    assert png_bytes(grey)[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(grey.astype(float))


def test_cli_drr(tmp_path, phantom_case):
    import json

    from fluoroplan.resources.phantom import write_phantom

    ph, _ = phantom_case
    folder = tmp_path / "ct"
    write_phantom(folder, ph)
    screw = ph.truth["screws"][0]
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "trajectories": [
                    {"id": "T1", "entry_lps": screw["head_lps"], "target_lps": screw["tip_lps"]}
                ]
            }
        )
    )
    out = tmp_path / "view.png"
    cmd = [
        sys.executable,
        "-m",
        "fluoroplan.cli",
        "drr",
        str(folder),
        "--pose",
        "-165",
        "-10",
        "--size",
        "128",
        "--plan",
        str(plan),
        "--trajectory",
        "T1",
        "--out",
        str(out),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    block = json.loads(res.stdout.splitlines()[0])
    assert block["table_primary_deg"] == 15.0 and block["table_secondary_deg"] == -10.0
    assert "patient's back" in block["text"]
    img = read_png(out)
    assert img.shape == (128, 128, 3)
    bad = subprocess.run(
        cmd[:-4] + ["--trajectory", "NOPE", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "NOPE" in bad.stderr


def test_pyramid_level_choice():
    hu, a = make_volume(shape=(40, 48, 48), spacing=(0.75, 0.75, 0.8))
    hu[10:30, 10:30, 10:30] = 200
    vol = AttenuationVolume(hu, a, levels=3)
    pose = CArmPose(180.0, 0.0, "HFP")
    full = render_drr(vol, pose, np.zeros(3), size=512)
    preview = render_drr(vol, pose, np.zeros(3), size=256)
    assert full.level == 0 and preview.level == 1
    with pytest.raises(ValueError, match="level"):
        render_line_integrals(vol, full.projection, level=3)
