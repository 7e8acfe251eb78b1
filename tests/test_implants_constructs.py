"""Cross-links and bone cement beside pedicle screws, against the phantom's truth.

A cross-link (transverse rod connector) is straight and not cranio-caudal like a screw shaft;
cement (PMMA with barium, 1600-2800 HU here) is partly above the metal threshold. Neither may
become a screw or a cage, and the screws around them must still be measured within the limits:
axis 1 deg, tip 1 mm, diameter 0.5 mm, halo 0.5 mm, only the truly loose screw flagged.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from phantom_fixtures import implants_of_variants

from fluoroplan.io.analysis_json import cement_json, connector_json, implants_json
from fluoroplan.resources.phantom import make_phantom
from fluoroplan.segmentation.implants import find_implants

COARSE = dict(shape_ijk=(256, 256, 160), pixel_mm=1.0, slice_mm=1.25)
VARIANTS = {
    "xlink_plate_hfs": dict(seed=1, patient_position="HFS", crosslinks=("L1",), **COARSE),
    "xlinks2_streaks": dict(seed=2, streaks=True, crosslinks=("L1", "L2"), **COARSE),
    "xlink_round_d55": dict(seed=3, crosslinks=("L2",), crosslink_section_mm=(6.0, 6.0),
                            screw_diameter_mm=5.5, loose_screw="L3-right", **COARSE),
    "xlink_round_streaks": dict(seed=7, streaks=True, crosslinks=("L3",),
                                crosslink_section_mm=(5.0, 5.0), **COARSE),
    "cement_free_body": dict(seed=4, cement=("L4",), **COARSE),
    "cement_instrumented_streaks": dict(seed=5, streaks=True, cement=("L2", "T12"), **COARSE),
    "augmented_screw": dict(seed=6, augmented_screw="L3-right", **COARSE),
    "augmented_xlink_cement": dict(seed=8, patient_position="HFS", augmented_screw="L1-left",
                                   crosslinks=("L2",), cement=("L4",), cage=("L3", "L4"),
                                   **COARSE),
}


# known failures, measured (xfail strict: they must start passing when fixed): none left.
# Fixed: a cross-link's clamp (not its streaks: the same fails without them) leaves a rod's
# free ridge between two tulips too short to be a rod (seed 7) or to measure (seed 2); the
# cement-augmented L1-left screw of seed 8 had its tip 2.1 mm out in the cement (now 0.2 mm).
_KNOWN: dict = {}


def _keys(test: str) -> list:
    return [pytest.param(k, marks=_KNOWN[(test, k)]) if (test, k) in _KNOWN else k
            for k in VARIANTS]


@pytest.fixture(scope="module")
def results():
    return implants_of_variants(VARIANTS)


def _angle_deg(a, b):
    return float(np.degrees(np.arccos(np.clip(np.dot(a, b), -1.0, 1.0))))


@pytest.mark.parametrize("key", _keys("screws"))
def test_every_screw_found_none_invented(results, key):
    ph, imp = results[key]
    assert sorted(s.id for s in imp.screws) == sorted(t["id"] for t in ph.truth["screws"])


@pytest.mark.parametrize("key", _keys("measure"))
def test_screw_measurements_within_limits(results, key):
    ph, imp = results[key]
    truth = {t["id"]: t for t in ph.truth["screws"]}
    for s in imp.screws:
        t = truth[s.id]
        assert _angle_deg(s.axis_lps, t["axis_lps"]) < 1.0, s.id
        assert np.linalg.norm(s.tip_lps - t["tip_lps"]) < 1.0, s.id
        assert abs(s.diameter_mm - t["diameter_mm"]) < 0.5, (s.id, s.diameter_mm)
        assert abs(s.halo_mm - t["halo_mm"]) < 0.5, (s.id, s.halo_mm, t["halo_mm"])
    assert [s.id for s in imp.screws if s.loose] == [t["id"] for t in truth.values() if t["loose"]]


@pytest.mark.parametrize("key", _keys("rods"))
def test_rods_unchanged_by_crosslinks_and_cement(results, key):
    ph, imp = results[key]
    assert sorted(r.side for r in imp.rods) == sorted(t["side"] for t in ph.truth["rods"])
    for r in imp.rods:
        t = next(q for q in ph.truth["rods"] if q["side"] == r.side)
        assert abs(r.diameter_mm - t["diameter_mm"]) < 0.75


@pytest.mark.parametrize("key", _keys("links"))
def test_crosslinks_are_connectors(results, key):
    ph, imp = results[key]
    truth = ph.truth["crosslinks"]
    assert len(imp.connectors) == len(truth)
    for t in truth:
        c = min(imp.connectors, key=lambda c: abs(c.center_lps[2] - t["center_lps"][2]))
        rel = np.asarray(t["center_lps"]) - c.ends_lps[0]
        along = float(rel @ c.axis_lps)
        assert np.linalg.norm(rel - along * c.axis_lps) < 3.0, (connector_json(c), t)  # on its line
        assert 0.0 < along < c.length_mm  # between its ends
        assert _angle_deg(c.axis_lps, t["axis_lps"]) < 5.0
        assert abs(c.length_mm - t["length_mm"]) < 12.0, (c.length_mm, t["length_mm"])
        assert set(c.between) == set(t["between"])
    assert not imp.other  # nothing left unexplained


@pytest.mark.parametrize("key", _keys("cement"))
def test_cement_is_cement_with_its_vertebra(results, key):
    ph, imp = results[key]
    truth = ph.truth["cement"]
    assert len(imp.cement) == len(truth)
    for t in truth:
        screw = t.get("screw", "")
        c = next((c for c in imp.cement if c.level == t["level"] and c.screw == screw), None)
        assert c is not None, (t, [cement_json(c) for c in imp.cement])
        if not screw:  # a vertebroplasty's blob: where the truth's is
            assert np.linalg.norm(c.center_lps - t["center_lps"]) < 5.0
    # never a cage: cages only between two vertebrae
    assert [list(c.between) for c in imp.cages] == [t["between"] for t in ph.truth["cages"]]


def test_cement_augmented_screw_not_loose(results):
    ph, imp = results["augmented_screw"]
    s = imp.screw("L3-right")
    assert not s.loose and s.halo_mm < 0.5


def test_json_has_connectors_and_cement(results):
    _, imp = results["augmented_xlink_cement"]
    doc = json.loads(json.dumps(implants_json(imp)))
    assert {"kind", "between", "center_lps", "ends_lps", "length_mm"} <= set(doc["connectors"][0])
    assert {"level", "screw", "center_lps", "dense_volume_mm3"} <= set(doc["cement"][0])


def test_crosslink_without_rods_is_not_a_connector():
    """Without the two rods to bridge, a transverse bar is metal of unknown kind (never a
    screw): the connector rule needs both its ends at rods."""
    ph = make_phantom(seed=1, patient_position="HFS", crosslinks=("L1",),
                      crosslink_section_mm=(6.0, 6.0), **COARSE)
    hu = ph.volume.hu.copy()
    # erase the rods outside the cross-link's clamps: keep screws and the bar
    from fluoroplan.io.volume import CTVolume

    t = ph.truth["crosslinks"][0]
    kk, jj, ii, pts, in_screw = _metal_in_screws(ph)
    near_bar = np.abs(pts[:, 2] - t["center_lps"][2]) < 8.0
    gone = ~in_screw & ~near_bar
    hu[kk[gone], jj[gone], ii[gone]] = 40
    imp = find_implants(CTVolume(hu=hu, lps_from_ijk=ph.volume.lps_from_ijk))
    assert imp.connectors == ()
    assert len(imp.screws) == len(ph.truth["screws"])


def _metal_in_screws(ph):
    """The phantom's metal voxels (k, j, i), their LPS points, and which lie in a screw (shaft
    and tulip)."""
    kk, jj, ii = np.nonzero(ph.metal)
    pts = ph.volume.lps_from_ijk_points(np.stack([ii, jj, kk], axis=1))
    heads = np.array([s["head_lps"] for s in ph.truth["screws"]])
    axes = np.array([s["axis_lps"] for s in ph.truth["screws"]])
    rel = pts[:, None, :] - heads[None]
    along = np.einsum("nsc,sc->ns", rel, axes)
    perp = np.linalg.norm(rel - along[..., None] * axes[None], axis=2)
    in_screw = ((along > -16.0) & (along < 50.0) & (perp < 7.5)).any(axis=1)
    return kk, jj, ii, pts, in_screw


def _dist_to_polyline(p, poly):
    best = np.inf
    for a, b in zip(poly[:-1], poly[1:], strict=True):
        t = np.clip((p - a) @ (b - a) / max(float((b - a) @ (b - a)), 1e-9), 0.0, 1.0)
        best = min(best, float(np.linalg.norm(p - (a + t * (b - a)))))
    return best


@pytest.mark.parametrize("key", list(VARIANTS))
def test_rods_are_whole_polylines(results, key):
    """Each rod runs its whole length through tulips and cross-link clamps: the truth's
    centreline lies on the found polyline, and its ends are the truth's ends."""
    ph, imp = results[key]
    for t in ph.truth["rods"]:
        r = next((r for r in imp.rods if r.side == t["side"]), None)
        assert r is not None, (t["side"], [r.side for r in imp.rods])
        tp = np.asarray(t["points_lps"], float)
        worst = max(_dist_to_polyline(p, r.points_lps) for p in tp)
        assert worst < 3.0, (r.side, worst)  # measured 0.4-0.9 mm, 2.7 beside the plate clamps
        # the ends read 2.7-3.4 mm beyond the truth's on every phantom (with or without links)
        assert np.linalg.norm(r.points_lps[0] - tp[0]) < 4.0, (r.side, r.points_lps[0], tp[0])
        assert np.linalg.norm(r.points_lps[-1] - tp[-1]) < 4.0, (r.side, r.points_lps[-1], tp[-1])


@pytest.mark.parametrize("key", ["xlinks2_streaks", "xlink_round_streaks"])
def test_crosslink_with_one_rod_missing_is_neither_screw_nor_cage(key):
    """A left-right bar behind the screw heads whose second rod is not found (erased here
    outside the cross-links' clamps) is other metal: never a screw, a cage or a connector."""
    from fluoroplan.io.volume import CTVolume

    ph = make_phantom(**VARIANTS[key])
    hu = ph.volume.hu.copy()
    kk, jj, ii, pts, in_screw = _metal_in_screws(ph)
    near_bar = np.zeros(len(pts), bool)
    for t in ph.truth["crosslinks"]:
        near_bar |= np.abs(pts[:, 2] - t["center_lps"][2]) < 8.0
    gone = ~in_screw & ~near_bar & (pts[:, 0] > 0.0)  # the left rod (LPS +x is left)
    hu[kk[gone], jj[gone], ii[gone]] = 40
    names = {v["index"]: v["label"] for v in ph.truth["vertebrae"]}
    imp = find_implants(CTVolume(hu=hu, lps_from_ijk=ph.volume.lps_from_ijk),
                        vertebra_labels=ph.labels, label_names=names)
    assert sorted(s.id for s in imp.screws) == sorted(t["id"] for t in ph.truth["screws"])
    assert [r.side for r in imp.rods] == ["right"]
    assert imp.connectors == () and imp.cages == ()
    assert len(imp.other) == len(ph.truth["crosslinks"])


def test_a_cement_augmented_tight_screw_is_not_loose_full_grid():
    """Full-size phantom (0.75 mm, seed 0) with an augmented L3-right screw, a cross-link and
    cement in L4: the cement around the screw's distal half must not raise the bone level the
    halo is compared with (before: the pedicle's cortex alone set it, cancellous bone beside the
    shaft read as a 1.2 mm halo and the screw was flagged loose). Only L2-left is loose."""
    from fluoroplan.segmentation.analysis import analyze

    ph = make_phantom(0, crosslinks=("L1",), cement=("L4",), augmented_screw="L3-right")
    an = analyze(ph.volume)
    assert [s.id for s in an.implants.screws if s.loose] == ["L2-left"]
    aug = an.implants.screw("L3-right")
    assert aug.halo_mm < 0.5
    assert abs(an.implants.screw("L2-left").halo_mm - 2.0) < 0.5


@pytest.mark.parametrize("crosslinks", [(), ("L1",)])
def test_rods_on_coarse_1_5mm_voxels(crosslinks):
    """On 1.5 mm voxels a 5.5 mm rod is under four voxels across: both rods are still found,
    their diameters within 0.75 mm (measured 5.57 and 5.62 mm; sections at ridge points off the
    rod's line read 2.7-3.1 mm and lost both rods before), and the cross-link bridges them."""
    ph = make_phantom(0, shape_ijk=(192, 192, 160), pixel_mm=1.5, slice_mm=1.5,
                      crosslinks=crosslinks)
    imp = find_implants(ph.volume)
    assert sorted(r.side for r in imp.rods) == ["left", "right"]
    for r in imp.rods:
        assert abs(r.diameter_mm - 5.5) < 0.75, r.diameter_mm
    assert len(imp.connectors) == len(crosslinks)
    assert len(imp.screws) == len(ph.truth["screws"])
