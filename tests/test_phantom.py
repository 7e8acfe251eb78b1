"""The demo phantom: its truth agrees with its voxels, and it round-trips through DICOM."""

from __future__ import annotations

import json
import time

import numpy as np
import pydicom
import pytest
from phantom_fixtures import SMALL, full_phantom, small_phantom

from fluoroplan.resources.phantom import (
    SCHEMA,
    STRUCTURE_CODES,
    load_truth,
    make_phantom,
    write_phantom,
)


@pytest.fixture(scope="session")
def small():
    return small_phantom()


@pytest.fixture(scope="session")
def full():
    t0 = time.perf_counter()
    ph = full_phantom()
    print(f"\nphantom 512x512x300 generated in {time.perf_counter() - t0:.2f} s")
    return ph


def _ring_hu(ph, screw, radius_mm, s_from, s_to):
    """HU (nearest voxel) on rings of ``radius_mm`` around a screw axis, s in [s_from, s_to]."""
    head = np.array(screw["head_lps"])
    axis = np.array(screw["axis_lps"])
    e1 = np.cross(axis, [0.0, 0.0, 1.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    pts = []
    for s in np.arange(s_from, s_to, 0.7):
        for ang in np.radians(np.arange(0, 360, 12)):
            pts.append(head + s * axis + radius_mm * (np.cos(ang) * e1 + np.sin(ang) * e2))
    return ph.volume.hu_at_lps(np.array(pts)).astype(float)


def _label_at(ph, p_lps):
    ijk = np.rint(ph.volume.ijk_from_lps_points(p_lps)[0]).astype(int)
    return int(ph.labels[ijk[2], ijk[1], ijk[0]])


# --- structure ----------------------------------------------------------------------------
def test_truth_is_json_and_complete(small):
    t = json.loads(json.dumps(small.truth))
    assert t["schema"] == SCHEMA and t["patient_position"] == "HFP"
    assert [v["label"] for v in t["vertebrae"]] == ["T11", "T12", "L1", "L2", "L3", "L4"]
    assert [v["index"] for v in t["vertebrae"]] == [1, 2, 3, 4, 5, 6]
    assert len(t["screws"]) == 6 and len(t["rods"]) == 2
    assert {s["id"] for s in t["screws"] if s["loose"]} == {"L2-left"}
    for v in t["vertebrae"]:
        assert ("rib_heads_lps" in v) == v["label"].startswith("T")
    hu = small.volume.hu
    assert hu.dtype == np.int16 and small.labels.shape == hu.shape == small.metal.shape
    assert small.labels.max() == 6


def test_orientation_is_what_scanners_write(small):
    a = small.volume.lps_from_ijk
    assert np.allclose(a[:3, 0] / np.linalg.norm(a[:3, 0]), [-1, 0, 0])  # HFP row direction
    assert np.allclose(a[:3, 1] / np.linalg.norm(a[:3, 1]), [0, -1, 0])  # HFP column direction
    sup = small_phantom(patient_position="HFS").volume.lps_from_ijk
    assert np.allclose(sup[:3, 0] / np.linalg.norm(sup[:3, 0]), [1, 0, 0])
    assert np.allclose(sup[:3, 1] / np.linalg.norm(sup[:3, 1]), [0, 1, 0])


def test_anatomy_in_lps(small):
    t = small.truth
    lo, hi = small.volume.bounds_lps()
    verts = t["vertebrae"]
    z = [v["centroid_lps"][2] for v in verts]
    assert z == sorted(z, reverse=True)  # cranial to caudal = head (+z) first
    for v in verts:
        c = np.array(v["centroid_lps"])
        assert np.all(c > lo + 40) and np.all(c < hi - 40)  # whole levels in view, with margin
        # spinous process and canal posterior (+y) of the body
        assert v["canal_center_lps"][1] > c[1] + 10
        assert v["spinous_tip_lps"][1] > v["canal_center_lps"][1] + 20
        # the drawn lumen at the body's mid-height: 15-26 mm wide, 14-20 mm deep
        kji = np.argwhere(small.structures == STRUCTURE_CODES["canal"])
        pts = small.volume.lps_from_ijk_points(kji[:, ::-1].astype(float))
        loc = (pts - c) @ np.asarray(v["axes_lps"], float).T
        mid = loc[np.abs(loc[:, 2]) < 1.0]
        assert 15 <= np.ptp(mid[:, 0]) <= 26 and 13 <= np.ptp(mid[:, 1]) <= 20, v["label"]
    lumbar = [v for v in verts if v["label"].startswith("L")]
    widths = [v["pedicles"]["left"]["width_mm"] for v in lumbar]
    assert widths == sorted(widths)  # pedicles widen caudally
    assert max(v["pedicles"]["left"]["width_mm"] for v in verts[:2]) < widths[0]
    for v in lumbar:
        assert 40 <= v["body_mm"]["width"] <= 52 and 29 <= v["body_mm"]["depth"] <= 36


def test_centroids_inside_their_labels(small):
    for v in small.truth["vertebrae"]:
        assert _label_at(small, v["centroid_lps"]) == v["index"]
        hu = small.volume.hu_at_lps(np.array([v["centroid_lps"]]))[0]
        assert 100 < hu < 320  # trabecular bone (+ noise)


def test_tissue_values(small):
    t = small.truth
    v3, v4 = t["vertebrae"][2], t["vertebrae"][3]  # L1, L2
    disc = (np.array(v3["inferior_endplate"]["point_lps"]) + np.array(v4["superior_endplate"]["point_lps"])) / 2
    canal = np.array(v4["canal_center_lps"])

    def mean_hu(p, r=3.0):
        offs = np.array([[dx, dy, dz] for dx in (-r, 0, r) for dy in (-r, 0, r) for dz in (-1, 0, 1)])
        return float(small.volume.hu_at_lps(p + offs).mean())

    assert 60 < mean_hu(disc) < 100
    assert 0 < mean_hu(canal) < 45
    assert small.volume.hu_at_lps(np.array([[0.0, 0.0, 0.0]]) + [[180, 180, 0]])[0] < -900  # air
    # lung beside the T11 body, posterior
    t11 = np.array(t["vertebrae"][0]["centroid_lps"])
    assert mean_hu(t11 + [80.0, 30.0, 0.0]) < -700
    assert mean_hu(t11 + [-80.0, 30.0, 0.0]) < -700


def test_posterior_recess_reaches_thoracolumbar_junction(small):
    t12, l1 = small.truth["vertebrae"][1], small.truth["vertebrae"][2]
    z = (t12["inferior_endplate"]["point_lps"][2] + l1["superior_endplate"]["point_lps"][2]) / 2
    vol = small.volume
    k = int(round(vol.ijk_from_lps_points([[0, 0, z + 2.0]])[0][2]))
    sl = vol.hu[k]
    # count lung voxels posterior to the body (y > body y)
    jj, ii = np.nonzero(sl < -700)
    pts = vol.lps_from_ijk_points(np.c_[ii, jj, np.full(len(ii), k)])
    inside = (np.abs(pts[:, 0]) < 110) & (np.abs(pts[:, 1]) < 70) & (pts[:, 1] > t12["centroid_lps"][1])
    assert inside.sum() * 1.5**2 > 300  # mm^2 of posterior lung at T12/L1
    k_low = int(round(vol.ijk_from_lps_points([[0, 0, l1["centroid_lps"][2] - 5]])[0][2]))
    jj, ii = np.nonzero(vol.hu[k_low] < -700)
    pts = vol.lps_from_ijk_points(np.c_[ii, jj, np.full(len(ii), k_low)])
    assert ((np.abs(pts[:, 0]) < 110) & (np.abs(pts[:, 1]) < 70)).sum() == 0  # no lung at L1 mid


# --- implants ----------------------------------------------------------------------------
def test_screw_axes_are_metal(small):
    for s in small.truth["screws"]:
        head, axis = np.array(s["head_lps"]), np.array(s["axis_lps"])
        assert np.isclose(np.linalg.norm(axis), 1.0, atol=1e-3)
        tip = np.array(s["tip_lps"])
        assert np.isclose(np.linalg.norm(tip - head), s["length_mm"], atol=1e-2)
        assert np.allclose((tip - head) / s["length_mm"], axis, atol=1e-3)
        pts = head + np.arange(1.0, s["length_mm"] - 1.0, 1.0)[:, None] * axis
        hu = small.volume.hu_at_lps(pts)
        assert np.all(hu >= 2500), s["id"]
        ijk = np.rint(small.volume.ijk_from_lps_points(pts)).astype(int)
        assert small.metal[ijk[:, 2], ijk[:, 1], ijk[:, 0]].all()
        # the tulip sits outside bone, behind the head
        tulip = head - 7.0 * axis
        assert _label_at(small, [tulip]) == 0 and small.volume.hu_at_lps([tulip])[0] >= 2500
        assert s["tip_in_body"]


def test_screws_sides_and_convergence(small):
    for s in small.truth["screws"]:
        head, tip = np.array(s["head_lps"]), np.array(s["tip_lps"])
        v = next(v for v in small.truth["vertebrae"] if v["label"] == s["level"])
        c = np.array(v["centroid_lps"])
        sign = 1 if s["side"] == "left" else -1
        assert sign * (head[0] - c[0]) > 8  # patient's left is +x
        assert abs(tip[0] - c[0]) < abs(head[0] - c[0])  # converging medially
        assert tip[1] < head[1]  # heads posterior, tips anterior
        medial = np.degrees(np.arctan2(abs(head[0] - tip[0]), head[1] - tip[1]))
        assert 4 < medial < 26
    angles = {round(np.degrees(np.arccos(np.array(s["axis_lps"])[1])), 2) for s in small.truth["screws"]}
    assert len(angles) == 6  # every screw aimed differently


def test_rods_join_the_tulips(small):
    for rod in small.truth["rods"]:
        pts = np.array(rod["points_lps"])
        assert len(pts) == 3 + 2  # one seat per instrumented level, plus the two ends
        seats = [np.array(s["rod_seat_lps"]) for s in small.truth["screws"] if s["side"] == rod["side"]]
        for seat in seats:
            assert np.min(np.linalg.norm(pts - seat, axis=1)) < 1e-3
        mids = (pts[:-1] + pts[1:]) / 2
        assert np.all(small.volume.hu_at_lps(mids) >= 2500)
        assert 5.5 <= rod["diameter_mm"] <= 6.0


def test_loose_screw_halo_and_tight_screws(full):
    screws = {s["id"]: s for s in full.truth["screws"]}
    loose = screws["L2-left"]
    r, h, L = loose["diameter_mm"] / 2, loose["halo_mm"], loose["length_mm"]
    # inside the vertebral body: the last 20 mm of the shaft short of the taper
    ring = _ring_hu(full, loose, r + h / 2, L - 20, L - 6)
    assert np.median(ring) < 60 and np.mean(ring < 100) > 0.85
    outside = _ring_hu(full, loose, r + h + 1.5, L - 20, L - 6)
    assert np.median(outside) > 120  # bone again beyond the halo
    for sid, s in screws.items():
        if sid == "L2-left":
            continue
        ring = _ring_hu(full, s, s["diameter_mm"] / 2 + 0.9, s["length_mm"] - 20, s["length_mm"] - 6)
        assert np.median(ring) > 120, sid  # bone directly against metal
        assert s["halo_mm"] == 0.0 and not s["loose"]


def test_fracture_heights_match_grade(small):
    bands = {1: (0.20, 0.25), 2: (0.25, 0.40), 3: (0.40, 0.60)}
    for v in small.truth["vertebrae"]:
        hts = v["heights_mm"]
        loss = 1 - hts["anterior"] / hts["posterior"]
        if v["label"] == "L4":
            assert v["fracture_grade"] == 2
            lo, hi = bands[2]
            assert lo <= loss <= hi
            assert hts["anterior"] < hts["middle"] < hts["posterior"]
        else:
            assert v["fracture_grade"] == 0 and loss == 0
            assert 20 <= hts["posterior"] <= 30
    for grade, (lo, hi) in bands.items():
        ph = small_phantom(fracture_grade=grade, noise_hu=0.0)
        v = ph.truth["vertebrae"][5]
        assert v["fracture_grade"] == grade
        assert lo <= 1 - v["heights_mm"]["anterior"] / v["heights_mm"]["posterior"] <= hi


def test_fracture_is_in_the_voxels(small):
    """Bone height measured in the voxels near the anterior and posterior walls follows the truth."""
    v = small.truth["vertebrae"][5]
    axes = np.array(v["axes_lps"]).T
    o = np.array(v["origin_lps"])
    d = v["body_mm"]["depth"]
    for where, vloc in (("anterior", -d / 2 + 4.0), ("posterior", d / 2 - 4.0)):
        ws = np.arange(-25, 25, 0.25)
        pts = o + (axes @ np.stack([np.zeros_like(ws), np.full_like(ws, vloc), ws])).T
        lab = np.array([_label_at(small, [p]) for p in pts])
        measured = np.count_nonzero(lab == v["index"]) * 0.25
        frac = v["height_loss_fraction"]
        expected = v["heights_mm"]["posterior"] * (1 - frac * (d / 2 - vloc) / d)
        assert abs(measured - expected) < 3.5, where


# --- variants --------------------------------------------------------------------------------
def test_prone_and_supine_hold_the_same_anatomy():
    prone = small_phantom(noise_hu=0.0)
    supine = small_phantom(noise_hu=0.0, patient_position="HFS")
    a = prone.volume.hu[:, ::-1, ::-1]  # back to LPS-ascending storage
    b = supine.volume.hu
    assert np.array_equal(prone.volume.lps_from_ijk_points([[0, 0, 0]]),
                          supine.volume.lps_from_ijk_points([[255, 255, 0]]))
    y = supine.volume.lps_from_ijk_points(np.c_[np.zeros(256), np.arange(256), np.zeros(256)])[:, 1]
    x = supine.volume.lps_from_ijk_points(np.c_[np.arange(256), np.zeros(256), np.zeros(256)])[:, 0]
    body = np.ix_(np.arange(200), np.abs(y) < 90, np.abs(x) < 80)  # the curved table stays outside
    assert np.array_equal(a[body], b[body])
    assert not np.array_equal(a, b)  # the tables differ
    assert np.array_equal(prone.labels[:, ::-1, ::-1], supine.labels)
    tp, ts = dict(prone.truth), dict(supine.truth)
    for t in (tp, ts):
        t.pop("patient_position")
    assert tp == ts
    # the table is under the belly when prone and under the back when supine
    col = b[100, :, 128]
    assert (col[y > 108] > 50).any() and not (col[y < -108] > 50).any()
    col = a[100, :, 128]
    assert (col[y < -108] > 50).any() and not (col[y > 108] > 50).any()


def test_seed_changes_the_case():
    a, b = small_phantom(0), small_phantom(1)
    va, vb = a.truth["vertebrae"][3], b.truth["vertebrae"][3]
    assert va["body_mm"] != vb["body_mm"]
    assert a.truth["screws"][0]["axis_lps"] != b.truth["screws"][0]["axis_lps"]
    assert not np.array_equal(a.volume.hu, b.volume.hu)
    again = make_phantom(1, **SMALL)
    assert again.truth["vertebrae"] == b.truth["vertebrae"]
    assert np.array_equal(again.volume.hu, b.volume.hu)


@pytest.mark.parametrize("material", ["titanium", "peek"])
def test_cage(material):
    ph = small_phantom(cage=("L3", "L4"), cage_material=material, cage_subsidence_mm=2.0)
    (cage,) = ph.truth["cages"]
    assert cage["between"] == ["L3", "L4"] and cage["subsidence_mm"] == 2.0
    c = np.array(cage["center_lps"])
    ijk = np.rint(ph.volume.ijk_from_lps_points([c])[0]).astype(int)
    hu_c = ph.volume.hu[ijk[2], ijk[1], ijk[0]]
    assert 300 < hu_c < 500  # bone graft in the window
    if material == "titanium":
        axes = np.array(cage["axes_lps"])
        wall = c + axes[0] * (cage["extent_mm"][0] / 2 - 1.0)
        assert ph.volume.hu_at_lps([wall])[0] >= 2500
    else:
        assert len(cage["beads_lps"]) == 3
        assert all(ph.volume.hu_at_lps([b])[0] > 1500 for b in cage["beads_lps"])
        axes = np.array(cage["axes_lps"])
        wall = c + axes[0] * (cage["extent_mm"][0] / 2 - 1.0)
        assert 200 < ph.volume.hu_at_lps([wall])[0] < 420  # PEEK
    # subsided: the cage bottom lies below the lower level's superior endplate
    lo = ph.truth["vertebrae"][5]["superior_endplate"]
    bottom = c - np.array(cage["axes_lps"])[2] * cage["extent_mm"][2] / 2
    assert np.dot(bottom - np.array(lo["point_lps"]), lo["normal_lps"]) == pytest.approx(-2.0, abs=0.3)


def test_streaks_change_soft_tissue_not_truth():
    clean = small_phantom(noise_hu=0.0)
    streaky = small_phantom(noise_hu=0.0, streaks=True)
    assert np.array_equal(clean.metal, streaky.metal)
    assert clean.truth["screws"] == streaky.truth["screws"]
    diff = streaky.volume.hu.astype(int) - clean.volume.hu.astype(int)
    k = int(np.argmax(clean.metal.sum(axis=(1, 2))))
    assert np.abs(diff[k]).max() > 200 and (diff[k] < -100).any() and (diff[k] > 100).any()
    assert np.all(diff[clean.metal] == 0)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="loose_screw"):
        make_phantom(0, **SMALL, loose_screw="L4-left")
    with pytest.raises(ValueError, match="consecutive"):
        make_phantom(0, **SMALL, levels=("T11", "L1"))
    with pytest.raises(ValueError, match="cage"):
        make_phantom(0, **SMALL, cage=("L1", "L3"))


# --- files ---------------------------------------------------------------------------------
def test_write_and_read_back(small, tmp_path):
    paths = write_phantom(tmp_path, small)
    assert paths[-1] == tmp_path / "truth.json"
    assert load_truth(tmp_path) == json.loads(json.dumps(small.truth))
    dss = [pydicom.dcmread(p) for p in sorted((tmp_path / "dicom").glob("*.dcm"))]
    assert len(dss) == small.volume.hu.shape[0]
    dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    assert all(d.PatientPosition == "HFP" for d in dss)
    assert [float(x) for x in dss[0].ImageOrientationPatient] == [-1, 0, 0, 0, -1, 0]
    stack = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in dss])
    assert np.array_equal(stack.astype(np.int16), small.volume.hu)
    ipp0 = np.array([float(x) for x in dss[0].ImagePositionPatient])
    assert np.allclose(ipp0, small.volume.lps_from_ijk[:3, 3], atol=1e-3)
    assert str(dss[0].SeriesInstanceUID) == small.volume.identifiers["series_instance_uid"]


def test_full_size_default_case(full):
    """The default case: 512 x 512 x 300, every level in view (time printed, not asserted)."""
    assert full.volume.shape_ijk == (512, 512, 300)
    assert np.allclose(full.volume.spacing_mm, [0.75, 0.75, 1.0])
    lo, hi = full.volume.bounds_lps()
    for v in full.truth["vertebrae"]:
        top = v["superior_endplate"]["point_lps"][2]
        bottom = v["inferior_endplate"]["point_lps"][2]
        assert lo[2] + 20 < bottom < top < hi[2] - 20
