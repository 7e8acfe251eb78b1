"""A trajectory placed by hand (``manual_trajectory``): its side, level, target, needle and id
on the small phantom's ground truth."""

from __future__ import annotations

import numpy as np
import pytest
from phantom_fixtures import small_phantom

from fluoroplan.geometry.conventions import NEEDLE_LENGTHS_MM, NEEDLE_MIN_OUTSIDE_SKIN_MM
from fluoroplan.planner.case import PlanningCase
from fluoroplan.planner.propose import manual_trajectory, recheck
from fluoroplan.planner.targets import targets_from_analysis


@pytest.fixture(scope="module")
def case():
    ph = small_phantom()
    return PlanningCase(ph.volume, ph.truth)


def _target(case, kind):
    return next(t for t in targets_from_analysis(case) if t.kind == kind)


def test_no_target_makes_a_manual_one_at_the_nearest_level(case):
    l3 = case.vertebra("L3")
    tip = l3.centroid_lps + np.array([-8.0, -5.0, 0.0])  # right of the midline
    # the entry is left of the tip but right of L3's midline: the vertebra decides (right)
    entry = tip + np.array([4.0, 60.0, 10.0])
    assert entry[0] > tip[0] and (entry - l3.centroid_lps) @ l3.left_lps < 0
    traj = manual_trajectory(case, entry, tip)
    assert traj.side == "right"
    assert traj.target.kind == "manual" and traj.level == traj.target.level == "L3"
    np.testing.assert_allclose(traj.target.point_lps, tip)
    np.testing.assert_allclose(traj.entry_lps, entry)
    np.testing.assert_allclose(traj.target_lps, tip)
    assert traj.id == "L3-right-manual"
    assert traj.approach == "manual" and traj.edited and not traj.checks
    assert traj.contact_lps is None
    depth = float(np.linalg.norm(tip - entry))
    assert traj.depth_mm == pytest.approx(depth)
    # the shortest stocked needle that reaches, leaving some outside the skin
    reaching = sorted(v for v in NEEDLE_LENGTHS_MM if v >= depth + NEEDLE_MIN_OUTSIDE_SKIN_MM)
    assert traj.needle.length_mm == reaching[0]
    # the mirrored entry is on the patient's left
    mirrored = entry.copy()
    mirrored[0] = 2 * l3.centroid_lps[0] - entry[0] + 30.0
    assert manual_trajectory(case, mirrored, tip).side == "left"


def test_a_target_with_a_side_keeps_it_and_one_without_takes_the_entry_side(case):
    screw = _target(case, "loose-screw")
    assert screw.side == "left"
    entry_right = screw.point_lps + np.array([-60.0, 60.0, 0.0])  # from the right
    traj = manual_trajectory(case, entry_right, screw.point_lps, screw)
    assert traj.side == "left" and traj.target is screw and traj.level == screw.level
    assert traj.id == f"{screw.level}-left-manual"

    fracture = _target(case, "fracture")
    assert fracture.side is None
    for dx, side in ((-40.0, "right"), (40.0, "left")):
        traj = manual_trajectory(case, fracture.point_lps + [dx, 70.0, 0.0],
                                 fracture.point_lps, fracture)
        assert traj.side == side and traj.level == fracture.level
        assert traj.id == f"{fracture.level}-{side}-manual"


def test_without_vertebrae_the_side_follows_x_and_ends_must_differ(case):
    bare = PlanningCase(case.volume, {"screws": [], "vertebrae": []})
    tip = np.array([0.0, 10.0, 0.0])
    left = manual_trajectory(bare, tip + [30.0, 60.0, 0.0], tip)
    right = manual_trajectory(bare, tip + [-30.0, 60.0, 0.0], tip)
    assert (left.side, right.side) == ("left", "right")
    assert left.level == "" and left.id == "manual-left-manual"
    # no vertebrae, no canal: the path is never passed against a canal nobody found; the
    # checks that need the canal, the levels or the midline say they could not be made
    checked = recheck(bare, left)
    by_name = {c.name: c for c in checked.checks}
    canal = by_name["spinal canal clearance"]
    assert canal.status == "unknown" and canal.value is None and "not found" in canal.detail
    assert by_name["bone in the way"].status == "unknown"
    assert by_name["skin entry from the midline"].status == "unknown"
    assert isinstance(by_name["metal clearance"].value, float)  # needs no spine: measured
    measured_fail = any(c.status == "fail" for c in checked.checks)
    assert checked.status == ("fail" if measured_fail else "unknown")
    clear = recheck(bare, manual_trajectory(bare, tip + [120.0, 60.0, 90.0], tip + [90, 0, 90]))
    if not any(c.status == "fail" for c in clear.checks):
        assert clear.status == "unknown"  # never "pass" with the canal not checked
    with pytest.raises(ValueError, match="1 mm apart"):
        manual_trajectory(case, tip + [0.3, 0.0, 0.0], tip)


def test_recheck_gives_a_hand_placed_trajectory_its_checks(case):
    screw = _target(case, "loose-screw")
    traj = manual_trajectory(case, screw.point_lps + [25.0, 70.0, 0.0], screw.point_lps, screw)
    checked = recheck(case, traj)
    assert checked.checks and checked.views
    assert checked.id == traj.id and checked.edited and checked.approach == "manual"
    np.testing.assert_allclose(checked.entry_lps, traj.entry_lps)
