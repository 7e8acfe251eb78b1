"""Safety verdicts measured on the anatomy itself: the spinal canal's lumen, bone in the way.

The truth of every test here is what the phantom drew (its voxels: ``Phantom.structures``, its
vertebra labels), read by code of the test's own (a distance transform of the drawn lumen, the
drawn voxels a line crosses), never a shape parameter the planner also uses. "drawn" plans on
the drawn anatomy's label volume (the planner's logic alone); "measured" on the anatomy that
fluoroplan segments from the CT (what a user gets).
"""

from __future__ import annotations

import numpy as np
import pytest
from phantom_fixtures import (
    full_phantom,
    lumen_depth_mm,
    path_through,
    small_phantom,
    truth_labels,
)

from fluoroplan.planner.case import PlanningCase
from fluoroplan.planner.propose import plan_case

NEEDLE_R = 1.829 / 2

# the two cases of the issue: a round-tube canal of radius min(width, depth) / 2 overstated the
# canal clearance of all 19 of their planned paths by 2.2-8.1 mm (against the drawn bony canal,
# measured on the code before the lumen was segmented); these tests fail there
ISSUE_CASES = {
    "seed3-L3-right": dict(seed=3, patient_position="HFP", loose_screw="L3-right",
                           instrumented=("L2", "L3", "L4"), fracture_level="L1",
                           cage=("L3", "L4")),
    "hfs-planned-prone": dict(seed=0, patient_position="HFS"),
}


def _case(ph, mode: str) -> PlanningCase:
    if mode == "drawn":
        lab, values = truth_labels(ph)
        return PlanningCase(ph.volume, ph.truth, labels=lab, label_values=values)
    return PlanningCase(ph.volume, ph.truth)  # the anatomy measured again on the CT


@pytest.fixture(scope="module", params=[(c, m) for c in ISSUE_CASES for m in ("drawn", "measured")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def planned(request):
    name, mode = request.param
    ph = full_phantom(**ISSUE_CASES[name])
    case = _case(ph, mode)
    plan = plan_case(ph.volume, ph.truth, labels=case.labels, label_values=case.label_values)
    return ph, plan


def test_no_planned_needle_enters_the_drawn_lumen(planned):
    ph, plan = planned
    assert plan.trajectories
    for t in plan.trajectories:
        depth = lumen_depth_mm(ph, t.path_points(), NEEDLE_R)
        assert depth < 0.0, f"{t.id} ({t.status}) runs {depth:.1f} mm inside the drawn lumen"


def test_canal_clearance_is_the_distance_to_the_drawn_lumen(planned, request):
    """Never overstated (the safety side): at most two voxels (1.5 mm) more than the distance
    to the drawn bony canal (its corner pockets beside the back of the body, narrower than two
    voxels, are below what a half-maximum wall resolves). On the drawn anatomy within 1.5 mm; measured on the CT it may be up to 4 mm
    less, where the lumen is bridged across a disc level between the arches (the lateral
    recess out to the facets there, which the phantom paints as plain soft tissue)."""
    ph, plan = planned
    measured = "measured" in request.node.callspec.id
    errors = []
    for t in plan.trajectories:
        check = t.check("spinal canal clearance")
        truth = -lumen_depth_mm(ph, t.path_points(), NEEDLE_R)
        assert check.value <= truth + 1.5, (t.id, check.value, truth)
        assert check.value >= truth - (4.0 if measured else 1.5), (t.id, check.value, truth)
        errors.append(truth - check.value)
    assert np.median(np.abs(errors)) <= (2.5 if measured else 1.0), errors


def _small_case(mode="drawn", **kw):
    ph = small_phantom(**kw)
    return ph, _case(ph, mode)


def _vertebra_voxels(ph, label):
    index = next(v["index"] for v in ph.truth["vertebrae"] if v["label"] == label)
    kji = np.argwhere(ph.labels == index)
    return ph.volume.lps_from_ijk_points(kji[:, ::-1].astype(float))


def _local(ph, label, pts):
    v = next(v for v in ph.truth["vertebrae"] if v["label"] == label)
    axes = np.asarray(v["axes_lps"], float)  # rows: left, posterior, cranial
    return (np.atleast_2d(pts) - np.asarray(v["centroid_lps"], float)) @ axes.T


def _drawn_crossing_mm(ph, traj, code_or_labels):
    """mm of the path on drawn voxels of a structure code (or a set of vertebra indices)."""
    pts = traj.path_points()
    ijk = np.rint(ph.volume.ijk_from_lps_points(pts)).astype(int)
    if isinstance(code_or_labels, set):
        vals = ph.labels[ijk[:, 2], ijk[:, 1], ijk[:, 0]]
        return 0.5 * float(np.isin(vals, list(code_or_labels)).sum())
    vals = ph.structures[ijk[:, 2], ijk[:, 1], ijk[:, 0]]
    return 0.5 * float((vals == code_or_labels).sum())


@pytest.mark.parametrize("mode", ["drawn", "measured"])
def test_a_path_through_the_canal_fails(mode):
    ph, case = _small_case(mode)
    l3 = case.vertebra("L3")
    tip = l3.centroid_lps
    through = tip + 60.0 * l3.posterior_lps  # straight down the midline, through the canal
    t = path_through(case, tip, through, "L3")
    assert lumen_depth_mm(ph, t.path_points(), NEEDLE_R) > 5.0  # truth: it crosses the lumen
    canal = t.check("spinal canal clearance")
    assert canal.status == "fail" and canal.value < -5.0
    assert "breach grade E" in canal.detail
    assert t.check("medial pedicle wall before the posterior wall").status == "fail"
    assert t.status == "fail"


@pytest.mark.parametrize("mode", ["drawn", "measured"])
def test_a_path_through_another_levels_transverse_process_fails_and_names_it(mode):
    ph, case = _small_case(mode)
    pts = _vertebra_voxels(ph, "L2")
    loc = _local(ph, "L2", pts)
    tp = pts[loc[:, 0] > 30.0]  # the drawn left transverse process: the only L2 bone that far left
    assert len(tp) > 20
    through = tp.mean(axis=0)
    tip = case.vertebra("L3").centroid_lps + 5.0 * case.vertebra("L3").axis_lps
    t = path_through(case, tip, through, "L3")
    l2 = next(v["index"] for v in ph.truth["vertebrae"] if v["label"] == "L2")
    assert _drawn_crossing_mm(ph, t, {l2}) >= 2.0  # truth: it crosses drawn L2 bone
    bone = t.check("bone in the way")
    assert bone.status == "fail", bone.detail
    assert "L2's left transverse process" in bone.detail


@pytest.mark.parametrize("mode", ["drawn", "measured"])
def test_a_path_in_through_the_targets_own_transverse_process_fails(mode):
    ph, case = _small_case(mode)
    pts = _vertebra_voxels(ph, "L3")
    loc = _local(ph, "L3", pts)
    tp = pts[loc[:, 0] > 33.0]  # the drawn left transverse process's outer part
    assert len(tp) > 10
    t = path_through(case, case.vertebra("L3").centroid_lps, tp.mean(axis=0), "L3")
    bone = t.check("bone in the way")
    assert bone.status == "fail", bone.detail
    assert "L3's own left transverse process" in bone.detail


@pytest.mark.parametrize("mode", ["drawn", "measured"])
def test_a_path_through_a_rib_fails_and_names_it(mode):
    from fluoroplan.resources.phantom import STRUCTURE_CODES

    ph, case = _small_case(mode)
    kji = np.argwhere(ph.structures == STRUCTURE_CODES["rib"])
    ribs = ph.volume.lps_from_ijk_points(kji[:, ::-1].astype(float))
    loc = _local(ph, "T12", ribs)
    # the drawn right twelfth rib, 45-55 mm from the midline behind the body: far from its head
    far = ribs[(loc[:, 0] < -45.0) & (loc[:, 0] > -55.0) & (np.abs(loc[:, 2]) < 12.0)
               & (loc[:, 1] > 0.0)]
    assert len(far) > 10
    through = far.mean(axis=0)
    tip = case.vertebra("T12").centroid_lps
    t = path_through(case, tip, through, "T12")
    assert _drawn_crossing_mm(ph, t, STRUCTURE_CODES["rib"]) >= 2.0
    bone = t.check("bone in the way")
    assert bone.status == "fail", bone.detail
    assert "right rib outside the rib-head corridor" in bone.detail


@pytest.mark.parametrize("mode", ["drawn", "measured"])
def test_a_real_parallel_path_beside_the_loose_screw_passes(mode):
    ph = full_phantom()
    case = _case(ph, mode)
    plan = plan_case(ph.volume, ph.truth, labels=case.labels, label_values=case.label_values)
    t = next(t for t in plan.trajectories if t.id == "L2-left-transpedicular-parallel")
    assert t.status != "fail"
    assert t.check("bone in the way").status == "pass"
    assert t.check("spinal canal clearance").status == "pass"
    assert lumen_depth_mm(ph, t.path_points(), NEEDLE_R) < 0.0


def test_metal_clearance_is_measured_beyond_15_mm():
    ph, case = _small_case("drawn")
    l4 = case.vertebra("L4")  # the uninstrumented fractured level
    tip = l4.centroid_lps
    through = tip + 50.0 * l4.posterior_lps + 35.0 * l4.left_lps
    t = path_through(case, tip, through, "L4")
    metal = np.argwhere(ph.metal)
    metal_lps = ph.volume.lps_from_ijk_points(metal[:, ::-1].astype(float))
    pts = t.path_points()
    from scipy.spatial import cKDTree

    truth = float(cKDTree(metal_lps).query(pts)[0].min())
    value = t.check("metal clearance").value
    assert truth > 15.0
    assert value == pytest.approx(truth - NEEDLE_R, abs=1.5)


PELVIS = dict(levels=("T12", "L1", "L2", "L3", "L4", "L5"), pelvis=True,
              instrumented=("L3", "L4"), loose_screw="L4-left", fracture_level="L5")


def _drawn_ilium(ph, side):
    from fluoroplan.resources.phantom import STRUCTURE_CODES

    kji = np.argwhere(ph.structures == STRUCTURE_CODES["ilium"])
    pts = ph.volume.lps_from_ijk_points(kji[:, ::-1].astype(float))
    loc = _local(ph, "L5", pts)
    return pts[(loc[:, 0] > 0) == (side == "left")], loc[(loc[:, 0] > 0) == (side == "left")]


@pytest.mark.parametrize("mode", ["drawn", "measured"])
def test_a_path_through_the_ilium_fails_and_names_it(mode):
    from fluoroplan.resources.phantom import STRUCTURE_CODES

    ph, case = _small_case(mode, **PELVIS)
    pts, loc = _drawn_ilium(ph, "left")
    # the drawn posterior ilium at L5's mid-height, behind the body's back wall
    post = pts[(np.abs(loc[:, 2]) < 8.0) & (loc[:, 1] > 10.0)]
    assert len(post) > 10
    l5 = case.vertebra("L5")
    t = path_through(case, l5.centroid_lps, post.mean(axis=0), "L5")
    assert _drawn_crossing_mm(ph, t, STRUCTURE_CODES["ilium"]) >= 2.0
    bone = t.check("bone in the way")
    assert bone.status == "fail", bone.detail
    assert "the left ilium" in bone.detail


def test_no_proposal_at_l5_crosses_the_drawn_ilium():
    from fluoroplan.resources.phantom import STRUCTURE_CODES

    ph = small_phantom(**PELVIS)
    plan = plan_case(ph.volume, ph.truth)  # the anatomy measured on the CT
    l5 = [t for t in plan.trajectories if t.level == "L5"]
    for t in l5:
        assert _drawn_crossing_mm(ph, t, STRUCTURE_CODES["ilium"]) == 0.0, t.id
        assert t.status != "fail"
    for u in plan.unsolved:
        assert "candidate" in u.reason or u.best_failed is not None
    assert l5 or [u for u in plan.unsolved if u.target.level == "L5"]


def test_the_thoracic_extrapedicular_corridor_is_allowed_and_measured():
    """A T12 fracture's extrapedicular paths pass between the rib head and the pedicle: the rib
    head's bone there is the corridor's (allowed), the corridor's width is measured, and no
    proposal crosses a drawn rib outside it."""
    from fluoroplan.resources.phantom import STRUCTURE_CODES

    ph = small_phantom(fracture_level="T12")
    plan = plan_case(ph.volume, ph.truth)
    extra = [t for t in plan.trajectories
             if t.level == "T12" and t.approach.startswith("extrapedicular")]
    assert extra, [u.reason for u in plan.unsolved]
    heads = {s: np.asarray(p, float) for s, p in
             next(v for v in ph.truth["vertebrae"] if v["label"] == "T12")["rib_heads_lps"].items()}
    for t in extra:
        assert t.status != "fail", t.id
        corridor = t.check("costovertebral corridor")
        assert corridor.value is not None and corridor.value >= 0.0, corridor
        # truth: any drawn rib the path crosses lies near that side's rib head
        pts = t.path_points()
        ijk = np.rint(ph.volume.ijk_from_lps_points(pts)).astype(int)
        on_rib = ph.structures[ijk[:, 2], ijk[:, 1], ijk[:, 0]] == STRUCTURE_CODES["rib"]
        if on_rib.any():
            d = np.linalg.norm(pts[on_rib] - heads[t.side], axis=1)
            assert d.max() <= 20.0, (t.id, d.max())
