"""The phantom's sacrum (issue 17, point 1): S1 with its promontory, alae, sacral canal and
foramina, S2 fused below, bilateral S1 screws converging toward the promontory, a loose S1
screw. Every check reads the drawn voxels (labels, structures, metal, HU), not the parameters
the generator used."""

from __future__ import annotations

import numpy as np
import pytest

from fluoroplan.resources.phantom import STRUCTURE_CODES, make_phantom

GRID = {"shape_ijk": (160, 160, 150), "pixel_mm": 1.5, "slice_mm": 1.5}
LEVELS = ("L3", "L4", "L5")


def _case(seed: int, position: str = "HFP", **kw):
    return make_phantom(seed, levels=LEVELS, instrumented=("L4", "L5", "S1"),
                        loose_screw="S1-left", fracture_level=None, pelvis=True, sacrum=True,
                        patient_position=position, **GRID, **kw)


@pytest.fixture(scope="module", params=[(0, "HFP"), (4, "HFS")])
def sacral(request):
    seed, position = request.param
    return _case(seed, position)


def _lps(ph, kji: np.ndarray) -> np.ndarray:
    return ph.volume.lps_from_ijk_points(kji[:, ::-1].astype(float))


def test_s1_is_drawn_wide_below_l5_with_its_canal_and_foramina(sacral):
    ph = sacral
    verts = {v["label"]: v for v in ph.truth["vertebrae"]}
    assert verts["S1"]["kind"] == "sacrum"
    s1 = _lps(ph, np.argwhere(ph.labels == verts["S1"]["index"]))
    l5 = _lps(ph, np.argwhere(ph.labels == verts["L5"]["index"]))
    assert len(s1) > 1000
    # below L5, and much wider than it (the alae out to the sacro-iliac joints)
    assert np.median(s1[:, 2]) < np.median(l5[:, 2]) - 15.0
    width = lambda p: np.percentile(p[:, 0], 99.5) - np.percentile(p[:, 0], 0.5)  # noqa: E731
    assert width(s1) > max(100.0, 1.4 * width(l5)), (width(s1), width(l5))
    # the canal runs on into the sacrum: lumen voxels beside S1's bone, at its heights
    canal = _lps(ph, np.argwhere(ph.structures == STRUCTURE_CODES["canal"]))
    lo, hi = np.percentile(s1[:, 2], [20, 80])
    assert np.count_nonzero((canal[:, 2] > lo) & (canal[:, 2] < hi)) > 50
    # foramina: soft tissue through the lateral masses, left and right of the canal, not bone
    kji = np.argwhere(ph.structures == STRUCTURE_CODES["sacral_foramen"])
    assert len(kji) > 100
    hu = ph.volume.hu[tuple(kji.T)]
    assert np.median(hu) < 150
    assert not np.any(ph.labels[tuple(kji.T)] == verts["S1"]["index"])
    fx = _lps(ph, kji)[:, 0]
    cx = np.median(canal[:, 0])
    assert np.count_nonzero(fx > cx + 10) > 30 and np.count_nonzero(fx < cx - 10) > 30


def test_promontory_is_the_front_top_of_the_s1_body(sacral):
    ph = sacral
    verts = {v["label"]: v for v in ph.truth["vertebrae"]}
    p = np.array(ph.truth["sacrum"]["promontory_lps"])
    s1 = _lps(ph, np.argwhere(ph.labels == verts["S1"]["index"]))
    near = s1[np.linalg.norm(s1 - p, axis=1) < 4.0]
    assert len(near) > 5  # bone at the promontory
    # it is the most anterior bone of S1 near the midline at its height (LPS: -y is anterior)
    mid = s1[(np.abs(s1[:, 0] - p[0]) < 5) & (np.abs(s1[:, 2] - p[2]) < 5)]
    assert p[1] - mid[:, 1].min() < 4.0


def test_s1_screws_converge_toward_the_promontory_and_the_loose_one_has_a_halo(sacral):
    ph = sacral
    screws = {s["id"]: s for s in ph.truth["screws"]}
    assert {"S1-left", "S1-right"} <= set(screws)
    p = np.array(ph.truth["sacrum"]["promontory_lps"])
    metal = _lps(ph, np.argwhere(ph.metal))
    for sid in ("S1-left", "S1-right"):
        s = screws[sid]
        head, tip = np.array(s["head_lps"]), np.array(s["tip_lps"])
        # the drawn metal along the shaft (the screw's own voxels)
        axis = (tip - head) / np.linalg.norm(tip - head)
        rel = metal - head
        along = rel @ axis
        radial = np.linalg.norm(rel - np.outer(along, axis), axis=1)
        shaft = metal[(radial < 2.0) & (along > 20.0) & (along < s["length_mm"] - 2.0)]
        assert len(shaft) > 20
        c, _, vt = np.linalg.svd(shaft - shaft.mean(axis=0), full_matrices=False)
        drawn = vt[0] * np.sign(vt[0] @ axis)
        # medial convergence: the drawn shaft runs toward the midline, tip nearer the promontory
        assert abs(tip[0] - p[0]) < abs(head[0] - p[0]) - 8.0
        assert np.linalg.norm(tip - p) < np.linalg.norm(head - p) - 20.0
        assert np.degrees(np.arccos(np.clip(drawn @ axis, -1, 1))) < 3.0
    # the loose one: radiolucent voxels around its shaft inside the sacrum, none around the
    # tight one
    def lucent(sid):
        s = screws[sid]
        head, axis = np.array(s["head_lps"]), np.array(s["axis_lps"])
        e1 = np.cross(axis, [0.0, 0.0, 1.0])
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(axis, e1)
        vals = []
        r = s["diameter_mm"] / 2 + 1.0
        for t in np.linspace(20.0, s["length_mm"] - 5.0, 12):
            for a in np.linspace(0, 2 * np.pi, 16, endpoint=False):
                q = head + t * axis + r * (np.cos(a) * e1 + np.sin(a) * e2)
                vals.append(ph.volume.hu_at_lps(q))
        return float(np.median(vals))

    assert lucent("S1-left") < 120 < lucent("S1-right")


def test_the_lumbar_spine_is_the_same_with_or_without_a_sacrum():
    """The sacrum has its own seed: everything above L4's lower endplate is drawn the same."""
    with_s = _case(2)
    without = make_phantom(2, levels=LEVELS, instrumented=("L4", "L5"), loose_screw=None,
                           fracture_level=None, pelvis=True, patient_position="HFP", **GRID)
    verts = {v["label"]: v for v in without.truth["vertebrae"]}
    z_cut = verts["L4"]["inferior_endplate"]["point_lps"][2]
    k = np.arange(with_s.volume.hu.shape[0])
    z = with_s.volume.lps_from_ijk_points(np.c_[np.zeros_like(k), np.zeros_like(k), k])[:, 2]
    above = z > z_cut + 5.0
    assert above.sum() > 20
    a, b = with_s.volume.hu[above].astype(int), without.volume.hu[above].astype(int)
    assert np.mean(a == b) > 0.999


def test_bad_sacral_requests_say_what_is_wrong():
    with pytest.raises(ValueError, match="levels must end at 'L5'"):
        make_phantom(0, levels=("L2", "L3", "L4"), instrumented=("L3", "L4"), sacrum=True,
                     fracture_level=None, loose_screw=None, **GRID)
    with pytest.raises(ValueError, match="'S1' can end instrumented only after 'L5'"):
        make_phantom(0, levels=LEVELS, instrumented=("L4", "L5", "S1"), sacrum=False,
                     fracture_level=None, loose_screw=None, **GRID)
    with pytest.raises(ValueError, match="not one of the screws"):
        make_phantom(0, levels=LEVELS, instrumented=("L4", "L5"), sacrum=True,
                     fracture_level=None, loose_screw="S1-left", **GRID)


def test_the_analysis_names_the_levels_from_the_sacrum(sacral):
    """Issue 17, point 2 (levels): S1 and S2 fused (no disc between them) are one sacrum whose
    top is S1, the anchor of the levels above it; no 'split fusion' is reported for it."""
    from fluoroplan.segmentation.analysis import analyze

    a = analyze(sacral.volume)
    verts = a.anatomy.vertebrae
    assert [v.label for v in verts] == ["L3", "L4", "L5", "S1"]
    assert verts[-1].kind == "sacrum" and verts[-1].label_source == "anchor:sacrum"
    assert not any("were split at the expected level" in w for w in a.warnings)
    # each level where its drawn body is: the vertebra's centroid (body and arch) within 8 mm
    # of the drawn body's height
    truth = {v["label"]: np.array(v["centroid_lps"]) for v in sacral.truth["vertebrae"]}
    for v in verts[:-1]:
        assert abs(float(v.vertebra_centroid_lps[2]) - truth[v.label][2]) < 8.0

