"""Planner on the phantom's ground truth: every proposal is safe by measures taken here,
independently of the planner's own checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from phantom_fixtures import full_phantom, lumen_depth_mm

from fluoroplan.geometry.carm import detector_dir_from_angles
from fluoroplan.io.plan_json import no_safe_to_json, plan_to_json, trajectory_to_json
from fluoroplan.model.plan import Needle, NoSafeTrajectory, Trajectory
from fluoroplan.planner.approaches import MAX_PARALLEL_TILT_DEG
from fluoroplan.planner.case import PlanningCase
from fluoroplan.planner.propose import plan_case, propose
from fluoroplan.planner.targets import manual_target, targets_from_analysis


@pytest.fixture(scope="module")
def phantom():
    return full_phantom()


@pytest.fixture(scope="module")
def plan(phantom):
    return plan_case(phantom.volume, phantom.truth)


def _seg_dist(p, a, b):
    ab = b - a
    t = np.clip((p - a) @ ab / (ab @ ab), 0, 1)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def _needle_axis(traj: Trajectory, upto_contact: bool) -> np.ndarray:
    end = traj.aim_lps if upto_contact else traj.target_lps
    n = int(np.linalg.norm(end - traj.entry_lps) / 0.25) + 2
    return traj.entry_lps + np.linspace(0, 1, n)[:, None] * (end - traj.entry_lps)


def test_targets_from_truth(plan, phantom):
    kinds = {(t.kind, t.ref) for t in plan.targets}
    assert ("loose-screw", phantom.truth["params"]["loose_screw"]) in kinds
    assert ("fracture", phantom.truth["params"]["fracture_level"]) in kinds
    assert all(t.kind != "cage" for t in plan.targets)  # no cage in the default case


def test_every_target_gets_each_applicable_approach(plan):
    got = {(t.target.ref, t.approach) for t in plan.trajectories}
    assert ("L2-left", "transpedicular-parallel") in got
    assert ("L2-left", "transpedicular-tip") in got
    assert {("L2-left", "extrapedicular-cranial"), ("L2-left", "extrapedicular-caudal")} & got
    assert ("L4", "transpedicular") in got  # L4 has no screws
    assert not [u for u in plan.unsolved if u.target.ref == "L4" and u.approach == "transpedicular"]


def test_proposals_pass_their_own_checks(plan):
    assert plan.trajectories
    for t in plan.trajectories:
        assert t.status in ("pass", "warn"), (t.id, [c for c in t.checks if c.status == "fail"])
        names = {c.name for c in t.checks}
        for needed in ("metal clearance", "spinal canal clearance", "lung / pleura",
                       "tip margin to the anterior cortex", "skin entry from the midline",
                       "needle outside the skin", "bull's-eye view reachable",
                       "progression view reachable", "landmarks hidden by metal: bull's-eye view",
                       "landmarks hidden by metal: working view",
                       "landmarks hidden by metal: progression view"):
            assert needed in names, (t.id, needed)


def test_independent_clearance_from_screws_and_canal(plan, phantom):
    """Measured here from the truth geometry, not the planner's look-ups: the 15-ga cylinder
    keeps >= 1 mm from every screw it must not touch, and stays out of the canal."""
    r_needle = Needle().radius_mm
    screws = phantom.truth["screws"]
    for t in plan.trajectories:
        path = _needle_axis(t, upto_contact=False)
        for s in screws:
            axis_gap = _seg_dist(path, np.array(s["head_lps"]), np.array(s["tip_lps"]))
            planned = (t.contact_lps is not None and t.target.kind == "loose-screw"
                       and s["id"] == t.target.ref)
            if planned:
                # the planned contact: the straight insertion reaches the shaft surface at the
                # contact point and never cuts into the shaft before it
                ins = _needle_axis(t, upto_contact=True)
                d = _seg_dist(ins, np.array(s["head_lps"]), np.array(s["tip_lps"]))
                gap = d.min() - s["diameter_mm"] / 2 - r_needle
                assert -0.05 <= gap <= 0.5, (t.id, s["id"], gap)
            else:
                gap = axis_gap.min() - s["diameter_mm"] / 2 - r_needle
                assert gap >= 1.0, (t.id, s["id"], gap)
        # tulips: 12 mm cups behind the head
        for s in screws:
            head, ax = np.array(s["head_lps"]), np.array(s["axis_lps"])
            d = _seg_dist(path, head - 15.0 * ax, head)
            assert d.min() - 6.0 - r_needle >= 1.0, (t.id, "tulip", s["id"], d.min())
        # the canal: the lumen the phantom drew, never a fitted tube
        assert lumen_depth_mm(phantom, path, r_needle) < 0.0, t.id


def test_parallel_runs_along_its_screw(plan, phantom):
    par = [t for t in plan.trajectories if t.approach == "transpedicular-parallel"]
    assert par
    for t in par:
        s = next(s for s in phantom.truth["screws"] if s["id"] == t.target.ref)
        angle = np.degrees(np.arccos(np.clip(t.direction_lps @ np.array(s["axis_lps"]), -1, 1)))
        assert angle <= MAX_PARALLEL_TILT_DEG + 0.5, angle
        assert t.contact_lps is not None and t.slide_mm > 3.0
        # the contact lies on the shaft surface (screw radius + needle radius from the axis)
        d = _seg_dist(t.contact_lps[None, :], np.array(s["head_lps"]), np.array(s["tip_lps"]))[0]
        assert d == pytest.approx(s["diameter_mm"] / 2 + Needle().radius_mm, abs=0.5)


def test_bullseye_pose_agrees_with_direction(plan):
    for t in plan.trajectories:
        js = trajectory_to_json(t)
        be = js["bullseye"]
        d = np.array(be["detector_dir_lps"])
        np.testing.assert_allclose(d, -t.direction_lps, atol=1e-5)
        np.testing.assert_allclose(
            detector_dir_from_angles(be["primary_deg"], be["secondary_deg"]), d, atol=1e-5)
        assert "patient's" in be["text"]
        pg = np.array(js["progression"]["detector_dir_lps"])
        assert js["progression"]["true_lateral"], js["progression"]["how"]
        assert "true lateral of" in js["progression"]["how"]
        # the needle's apparent length on the lateral, from its angle to the beam
        frac = np.sqrt(1.0 - float(pg @ t.direction_lps) ** 2)
        assert js["progression"]["needle_length_fraction"] == pytest.approx(frac, abs=2e-3)
        assert len(js["working_view"]["delta_from_screw_bullseye_deg"]) == 2


def test_plan_json_keys_and_roundtrip(plan):
    js = json.loads(json.dumps(plan_to_json(plan)))
    assert js["schema"] == "fluoroplan.plan/1"
    t = js["trajectories"][0]
    for k in ("id", "target", "level", "side", "approach", "entry_lps", "target_lps",
              "direction_lps", "depth_mm", "needle", "bullseye", "working_view", "progression",
              "checks", "cost"):
        assert k in t, k
    assert t["needle"] == {**t["needle"], "gauge": 15, "outer_diameter_mm": 1.829}
    assert t["needle"]["length_mm"] in (100.0, 150.0)
    for block in ("bullseye", "working_view", "progression"):
        for k in ("detector_dir_lps", "primary_deg", "secondary_deg", "table_primary_deg",
                  "table_secondary_deg", "text"):
            assert k in t[block], (block, k)
    for c in t["checks"]:
        assert set(c) >= {"name", "value", "limit", "status"}


def test_unreachable_target_gives_no_safe_trajectory(phantom):
    """A target inside the spinal canal can never be reached safely: the planner says so and
    names the check, never a silently bad path."""
    case = PlanningCase(phantom.volume, phantom.truth)
    v = next(v for v in phantom.truth["vertebrae"] if v["label"] == "L4")  # no screws
    t = manual_target(case, v["canal_center_lps"], "in-canal")
    # reach it as if it were a body target through the pedicle
    res = propose(case, t, "transpedicular", "left")
    assert isinstance(res, NoSafeTrajectory)
    assert res.failed_check in ("spinal canal clearance",
                                "medial pedicle wall before the posterior wall")
    assert no_safe_to_json(res)["result"] == "no safe trajectory"


def test_depth_and_needle_choice(plan):
    for t in plan.trajectories:
        outside = t.needle.length_mm - t.depth_mm
        assert outside >= 20.0 - 1e-6  # to the float's rounding
        assert t.depth_mm == pytest.approx(
            np.linalg.norm(t.aim_lps - t.entry_lps) + t.slide_mm, abs=1e-6)


def test_entry_is_on_the_skin(plan, phantom):
    vol = phantom.volume
    for t in plan.trajectories:
        outside = t.entry_lps - 2.0 * t.direction_lps
        inside = t.entry_lps + 2.0 * t.direction_lps
        assert vol.hu_at_lps(outside[None])[0] < -500, t.id
        assert vol.hu_at_lps(inside[None])[0] > -300, t.id


def test_targets_list_has_no_duplicates(phantom):
    case = PlanningCase(phantom.volume, phantom.truth)
    ts = targets_from_analysis(case)
    assert len({t.id for t in ts}) == len(ts)


@pytest.mark.parametrize("subsidence, expected", [(0.0, False), (3.0, True)])
def test_subsided_cage_becomes_a_target(subsidence, expected):
    ph = full_phantom(cage=("L3", "L4"), cage_subsidence_mm=subsidence, fracture_level=None)
    case = PlanningCase(ph.volume, ph.truth)
    cages = [t for t in targets_from_analysis(case) if t.kind == "cage"]
    assert bool(cages) == expected
    if expected:
        (t,) = cages
        assert t.ref == "L3-L4" and t.level == "L4"  # sunk into L4's superior endplate
        res = propose(case, t, "transpedicular", "left")
        assert isinstance(res, Trajectory) and res.status != "fail", res
        # the tip ends at the bone-cage interface: within a few mm of the cage's lower face
        cage = ph.truth["cages"][0]
        d = np.linalg.norm(res.target_lps - np.array(cage["center_lps"]))
        assert d < np.linalg.norm(cage["extent_mm"]) / 2 + 4.0


def test_supine_ct_is_planned_for_a_prone_procedure():
    """A CT acquired supine (HFS, the CT table behind the back) is planned for the prone
    procedure: the skin entry is on the back, not on the CT table, and the room words and table
    angles are those of the prone patient."""
    ph = full_phantom(patient_position="HFS")
    plan = plan_case(ph.volume, ph.truth)
    case = PlanningCase(ph.volume, ph.truth)
    assert plan.procedure_position == "HFP" and plan_to_json(plan)["procedure_position"] == "HFP"
    # the parallel path of this case runs close beside the canal (its best candidate used to run
    # 16 mm inside the lumen and pass): planned clear of it, or refused saying what blocks it
    par = [t for t in plan.trajectories if t.approach == "transpedicular-parallel"]
    blocked = [u for u in plan.unsolved if u.approach == "transpedicular-parallel"]
    assert par or (blocked and "candidate paths" in blocked[0].reason)
    assert len(plan.trajectories) >= 6
    for t in plan.trajectories:
        be = t.views["bullseye"]
        assert "over the patient's back" in be["text"], be["text"]
        assert abs(be["table_primary_deg"]) < 60  # a prone patient's back faces the ceiling
        assert t.check("bull's-eye view reachable").status == "pass"
        # the entry is on the skin of the back: tissue just inside; just outside is air or the
        # CT table the patient lay on (outside the body outline), never more patient
        assert ph.volume.hu_at_lps((t.entry_lps + 2 * t.direction_lps)[None])[0] > -300
        outside = t.entry_lps - 2 * t.direction_lps
        assert not case.in_body(outside[None])[0]
        assert case.in_body((t.entry_lps + 3 * t.direction_lps)[None])[0]
