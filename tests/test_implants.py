"""Implants on the synthetic phantom: screws, rods, cages, halos against the phantom's truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fluoroplan.io.analysis_json import implants_json
from fluoroplan.io.errors import Cancelled
from fluoroplan.io.progress import CancelToken
from fluoroplan.io.volume import CTVolume
from fluoroplan.resources.phantom import make_phantom
from fluoroplan.segmentation.implants import NO_METAL, find_implants
from fluoroplan.segmentation.implants_2d import metal_regions_2d

COARSE = dict(shape_ijk=(256, 256, 160), pixel_mm=1.0, slice_mm=1.25)
VARIANTS = {
    "hfp_streaks_cage": dict(seed=2, patient_position="HFP", streaks=True, cage=("L3", "L4"), **COARSE),
    "hfs_clean": dict(seed=1, patient_position="HFS", **COARSE),
    "d45": dict(seed=3, screw_diameter_mm=4.5, loose_screw="L3-right", **COARSE),
    "d75_streaks_hfs": dict(seed=4, patient_position="HFS", screw_diameter_mm=7.5, streaks=True,
                            halo_mm=3.0, **COARSE),
    "fine_default": dict(seed=0, streaks=True, cage=("L3", "L4")),
}


def _names(ph):
    return {v["index"]: v["label"] for v in ph.truth["vertebrae"]}


@pytest.fixture(scope="module")
def results():
    out = {}
    for key, kw in VARIANTS.items():
        ph = make_phantom(**kw)
        out[key] = (ph, find_implants(ph.volume, vertebra_labels=ph.labels, label_names=_names(ph)))
    return out


def _match(imp, truth):
    """Truth screw id -> found screw, by nearest tip."""
    pairs = {}
    for s in imp.screws:
        t = min(truth["screws"], key=lambda q: np.linalg.norm(np.asarray(q["tip_lps"]) - s.tip_lps))
        pairs[t["id"]] = (t, s)
    return pairs


def _angle_deg(a, b):
    return float(np.degrees(np.arccos(np.clip(np.dot(a, b), -1.0, 1.0))))


@pytest.mark.parametrize("key", list(VARIANTS))
def test_every_screw_found_none_invented(results, key):
    ph, imp = results[key]
    truth = ph.truth
    assert len(imp.screws) == len(truth["screws"])
    pairs = _match(imp, truth)
    assert set(pairs) == {t["id"] for t in truth["screws"]}
    assert {s.id for s in imp.screws} == {t["id"] for t in truth["screws"]}


@pytest.mark.parametrize("key", list(VARIANTS))
def test_screw_geometry_against_truth(results, key):
    ph, imp = results[key]
    for t, s in _match(imp, ph.truth).values():
        assert _angle_deg(s.axis_lps, t["axis_lps"]) < 1.0, t["id"]
        assert np.linalg.norm(s.tip_lps - t["tip_lps"]) < 1.0, t["id"]
        assert np.linalg.norm(s.head_lps - t["head_lps"]) < 1.5, t["id"]
        assert abs(s.diameter_mm - t["diameter_mm"]) < 0.5, t["id"]
        assert abs(s.length_mm - t["length_mm"]) < 2.0, t["id"]
        assert s.side == t["side"] and s.level == t["level"], t["id"]
        assert abs(np.linalg.norm(s.axis_lps) - 1.0) < 1e-9


@pytest.mark.parametrize("key", list(VARIANTS))
def test_halo_width_and_loose_flag(results, key):
    ph, imp = results[key]
    for t, s in _match(imp, ph.truth).values():
        assert abs(s.halo_mm - t["halo_mm"]) < 0.5, (t["id"], s.halo_mm, t["halo_mm"])
        assert s.loose == t["loose"], t["id"]


def test_loose_halo_extent_and_volume(results):
    ph, imp = results["fine_default"]
    t = next(q for q in ph.truth["screws"] if q["loose"])
    s = imp.screw(t["id"])
    h = s.halo
    assert h.from_mm < 5.0 and h.to_mm > t["length_mm"] - 8.0  # runs along the whole shaft
    assert h.max_mm >= h.median_mm
    R, w = t["diameter_mm"] / 2, t["halo_mm"]
    expected = np.pi * ((R + w) ** 2 - R * R) * (h.to_mm - h.from_mm)
    assert 0.75 * expected < h.volume_mm3 < 1.25 * expected
    assert h.mask.any() and 0.5 * expected < h.mask_volume_mm3 < 1.5 * expected
    # the mask's voxels lie in the annulus around the shaft
    pts = h.points_lps(ph.volume)
    rel = pts - s.head_lps
    along = rel @ s.axis_lps
    radial = np.linalg.norm(rel - along[:, None] * s.axis_lps, axis=1)
    assert np.median(radial) > R and np.percentile(radial, 95) < R + w + 1.5
    tight = [q for q in imp.screws if not q.loose]
    assert all(q.halo.mask.size == 0 and q.halo.volume_mm3 == 0.0 for q in tight)


@pytest.mark.parametrize("key", list(VARIANTS))
def test_rods_found_with_side(results, key):
    ph, imp = results[key]
    truth_rods = ph.truth["rods"]
    assert sorted(r.side for r in imp.rods) == sorted(r["side"] for r in truth_rods)
    for r in imp.rods:
        t = next(q for q in truth_rods if q["side"] == r.side)
        seats = np.asarray(t["points_lps"])[1:-1]  # the rod seats in the tulips
        for p in seats:  # the polyline passes through every seat
            d = min(_seg_dist(p, a, b) for a, b in zip(r.points_lps[:-1], r.points_lps[1:], strict=True))
            assert d < 2.0, (r.side, p, d)
        assert abs(r.diameter_mm - t["diameter_mm"]) < 0.75
        assert r.points_lps[0, 2] > r.points_lps[-1, 2]  # cranial first


def _seg_dist(p, a, b):
    ab = b - a
    t = np.clip(np.dot(p - a, ab) / max(np.dot(ab, ab), 1e-9), 0.0, 1.0)
    return float(np.linalg.norm(p - (a + t * ab)))


@pytest.mark.parametrize("key", ["hfp_streaks_cage", "fine_default"])
def test_cage_between_levels(results, key):
    ph, imp = results[key]
    (t,) = ph.truth["cages"]
    assert len(imp.cages) == 1
    c = imp.cages[0]
    assert list(c.between) == t["between"]
    assert np.linalg.norm(c.center_lps - t["center_lps"]) < 3.0
    assert np.allclose(np.sort(c.extent_mm), np.sort(t["extent_mm"]), atol=3.0)
    assert not imp.other


def test_json_keys(results):
    _, imp = results["hfp_streaks_cage"]
    doc = json.loads(json.dumps(implants_json(imp)))
    screw_keys = {"id", "level", "side", "tip_lps", "head_lps", "axis_lps", "diameter_mm",
                  "length_mm", "halo_mm", "loose"}
    assert all(screw_keys <= set(s) for s in doc["screws"])
    assert all({"side", "points_lps", "diameter_mm"} <= set(r) for r in doc["rods"])
    assert all({"between", "center_lps", "extent_mm"} <= set(c) for c in doc["cages"])
    assert doc["screws"][0]["id"] == f"{doc['screws'][0]['level']}-{doc['screws'][0]['side']}"


@pytest.fixture(scope="module")
def phantom_nolabels(results):
    ph, _ = results["hfs_clean"]
    return ph, find_implants(ph.volume)


def test_without_labels_levels_empty_sides_kept(phantom_nolabels):
    ph, imp = phantom_nolabels
    assert len(imp.screws) == len(ph.truth["screws"])
    assert all(s.level == "" and s.id.startswith("screw") for s in imp.screws)
    for t, s in _match(imp, ph.truth).values():
        assert s.side == t["side"]
        assert s.id.endswith(f"-{t['side']}")
    assert any("levels are left empty" in w for w in imp.warnings)


def test_no_metal_is_a_message_not_an_error(results):
    ph, _ = results["hfs_clean"]
    hu = np.minimum(ph.volume.hu, 1500).astype(np.int16)
    vol = CTVolume(hu=hu, lps_from_ijk=ph.volume.lps_from_ijk)
    imp = find_implants(vol)
    assert imp.screws == () and imp.rods == () and imp.cages == () and imp.other == ()
    assert NO_METAL in imp.warnings
    assert not imp.metal_mask.any()


def test_foreign_metal_is_other_not_screw(results):
    """A hip-stem-like rod (14 mm, 110 mm) and a thin wire loop far from the spine."""
    ph, ref = results["hfs_clean"]
    vol = ph.volume
    hu = vol.hu.copy()
    nk, nj, ni = hu.shape
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij", sparse=True)
    lps = vol.lps_from_ijk
    x = lps[0, 0] * i + lps[0, 3]
    y = lps[1, 1] * j + lps[1, 3]
    z = lps[2, 2] * k + lps[2, 3]
    stem = ((x - 95.0) ** 2 + (y + 20.0) ** 2 < 7.0**2) & (np.abs(z) < 55.0)
    ring = (np.abs(np.hypot(x + 60.0, y + 70.0) - 15.0) < 0.8) & (np.abs(z - 10.0) < 0.8)
    hu[stem | ring] = 3071
    imp = find_implants(CTVolume(hu=hu, lps_from_ijk=lps))
    assert len(imp.screws) == len(ref.screws) == 6
    assert len(imp.other) >= 1
    assert any(abs(o.center_lps[0] - 95.0) < 5.0 for o in imp.other)
    assert all(abs(s.head_lps[0]) < 60.0 for s in imp.screws)


def test_cancel_and_progress(results):
    ph, _ = results["hfs_clean"]
    seen = []
    imp = find_implants(ph.volume, progress=lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    assert set(imp.timings_s) >= {"metal_mask", "screws", "total"}
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        find_implants(ph.volume, cancel=token)


def test_2d_slice_through_screws(results):
    """An axial slice of the phantom through a screw pair: two screws, one each side."""
    ph, imp = results["hfs_clean"]
    s = imp.screws[0]
    mid = 0.5 * (s.head_lps + s.tip_lps)
    k = int(round(ph.volume.ijk_from_lps_points(mid)[0, 2]))
    regions, midline = metal_regions_2d(ph.volume.hu[k], pixel_mm=1.0)
    screws = [r for r in regions if r.kind == "screw"]
    assert len(screws) == 2
    assert {r.side for r in screws} == {-1, 1}
    # nothing on a slice without metal
    k_empty = int(np.nonzero(~imp.metal_mask.any(axis=(1, 2)))[0][0])
    assert metal_regions_2d(ph.volume.hu[k_empty])[0] == []


def test_uninstrumented_phantom_has_no_metal():
    ph = make_phantom(1, instrumented=(), loose_screw=None, **COARSE)
    imp = find_implants(ph.volume)
    assert imp.screws == () and imp.rods == () and imp.other == ()
    assert imp.warnings == (NO_METAL,)
