"""Landmarks hidden by metal, per view, judged on the simulated image; and "> 15 mm" for a value
beyond its search range.

The truth here is made another way than the checker's point splatting: the DRR ray caster
(``geometry/drr.py``) renders a metal-only copy of the CT (the target screw's voxels removed by
its truth geometry where the checker excludes it), and the metal path length at each landmark
pixel is read from that image."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess

import numpy as np
import pytest
from phantom_fixtures import small_phantom

from fluoroplan.geometry.conventions import MU_METAL_PER_MM, TITANIUM_MIN_HU
from fluoroplan.geometry.drr import AttenuationVolume, render_drr, render_line_integrals
from fluoroplan.geometry.projection import Projection
from fluoroplan.io.plan_json import PlanFormatError, check_from_json, check_to_json
from fluoroplan.model.plan import Check, Target, Trajectory
from fluoroplan.planner import visibility as V
from fluoroplan.planner.case import PlanningCase
from fluoroplan.planner.checks import views_for


@pytest.fixture(scope="module")
def phantom():
    return small_phantom()


@pytest.fixture(scope="module")
def case(phantom):
    return PlanningCase(phantom.volume, phantom.truth)


def _metal_only(phantom, exclude_screw: str | None) -> AttenuationVolume:
    """Attenuation of the CT's titanium alone, minus one screw (shaft and tulip) taken from
    the phantom's truth geometry."""
    vol = phantom.volume
    metal = vol.hu >= TITANIUM_MIN_HU
    if exclude_screw is not None:
        s = next(x for x in phantom.truth["screws"] if x["id"] == exclude_screw)
        head, tip = np.asarray(s["head_lps"]), np.asarray(s["tip_lps"])
        ax = (tip - head) / np.linalg.norm(tip - head)
        kji = np.argwhere(metal)
        p = vol.lps_from_ijk_points(kji[:, ::-1])
        t = (p - head) @ ax
        radial = np.linalg.norm(p - head - t[:, None] * ax, axis=1)
        shaft = (t >= -1.0) & (t <= s["length_mm"] + 1.5) & (radial <= s["diameter_mm"] / 2 + 1.6)
        tulip = (t < 0) & (t >= -s["tulip_height_mm"] - 1.6) & (
            radial <= s["tulip_diameter_mm"] / 2 + 1.6)
        drop = kji[shaft | tulip]
        metal[drop[:, 0], drop[:, 1], drop[:, 2]] = False
    hu = np.where(metal, np.int16(3071), np.int16(-1000))
    return AttenuationVolume(hu, vol.lps_from_ijk, levels=1)


def _truth_hidden(att: AttenuationVolume, pose, traj, points) -> float:
    """Fraction of landmark samples on whose ray the DRR finds >= 2 mm of titanium."""
    proj = Projection(pose.with_image_size(V.IMAGE_PX), traj.aim_lps)
    metal_mm = render_line_integrals(att, proj, level=0) / MU_METAL_PER_MM
    uv = np.rint(proj.detector_px_from_lps(points)).astype(int)
    return float(np.mean(metal_mm[uv[:, 1], uv[:, 0]] >= V.SATURATION_MM))


def _planned(case, ref: str, approach: str, side: str) -> Trajectory:
    from fluoroplan.planner.propose import propose
    from fluoroplan.planner.targets import targets_from_analysis

    target = next(t for t in targets_from_analysis(case) if t.ref == ref)
    traj = propose(case, target, approach, side)
    assert isinstance(traj, Trajectory), traj
    return traj


def test_parallel_path_is_not_warned_about_its_own_screw(phantom, case):
    traj = _planned(case, "L2-left", "transpedicular-parallel", "left")
    _, poses = views_for(case, traj)
    checks = {c.name: c for c in V.visibility_checks(case, traj, poses)}
    be = checks["landmarks hidden by metal: bull's-eye view"]
    wv = checks["landmarks hidden by metal: working view"]
    for c in (be, wv):
        assert c.status == "pass", c.detail
        assert "screw L2-left ->" not in c.detail  # its own end-on image is not counted
        assert "L2-left seen end-on" in c.detail
    # the truth: with its own screw the pedicle outline is mostly covered (what the old check
    # warned about); without it, less than half is, as the check says
    outline = V.landmarks(case, traj, "bullseye", -poses["bullseye"].detector_dir_lps)[
        "pedicle outline"]
    with_screw = _truth_hidden(_metal_only(phantom, None), poses["bullseye"], traj, outline)
    without = _truth_hidden(_metal_only(phantom, "L2-left"), poses["bullseye"], traj, outline)
    assert with_screw > 0.5
    assert without <= V.HIDDEN_WARN
    assert abs(without - V.assess_view(case, traj, "bullseye", poses["bullseye"]).hidden[
        "pedicle outline"]) <= 0.15


def _through_the_rod(case) -> Trajectory:
    """A path to the L2 left pedicle whose line runs through the left rod between the L2 and
    L3 tulips: in its bull's-eye the rod lies over the target."""
    v = case.vertebra("L2")
    ped = v.pedicles["left"]
    tip = ped.axis_point_lps + 6.0 * ped.axis_dir_lps
    rod = np.asarray(next(r for r in case.rods if r.side == "left").points_lps, float)
    z = ped.axis_point_lps[2] - 9.0  # below the L2 tulip
    k = int(np.searchsorted(-rod[:, 2], -z))  # rod points run cranial to caudal
    a, b = rod[k - 1], rod[k]
    on_rod = a + (z - a[2]) / (b[2] - a[2]) * (b - a)
    n = (tip - on_rod) / np.linalg.norm(tip - on_rod)
    entry = case.skin_entry(tip, n)
    target = Target("loose-screw", "L2-left", "L2", "left", tip, "L2-left halo")
    return Trajectory("through-rod", target, "manual", "L2", "left", entry, tip)


def test_a_rod_over_the_target_warns_names_it_and_the_tilt_clears_it(phantom, case):
    traj = _through_the_rod(case)
    _, poses = views_for(case, traj)
    pose = poses["bullseye"]
    vis = V.assess_view(case, traj, "bullseye", pose)
    check = V._check_of(vis)
    assert check.status == "warn", check.detail
    assert "target" in vis.lost
    assert vis.blockers["target"][0][0] == "the left rod (L1-L3)"
    assert "the left rod (L1-L3)" in check.detail
    sug = vis.suggestion
    assert sug is not None, check.detail
    tilt = np.hypot(sug["d_table_rotation_deg"], sug["d_table_angulation_deg"])
    assert 4.0 <= tilt <= 15.0
    assert sug["words"] in check.detail and "clears the left rod (L1-L3)" in check.detail
    # the truth at both poses, rendered by the DRR's ray caster (the target screw removed as
    # the checker excludes it in a bull's-eye of a path that concerns it)
    att = _metal_only(phantom, "L2-left")
    lm = V.landmarks(case, traj, "bullseye", -pose.detector_dir_lps)
    before = _truth_hidden(att, pose, traj, lm["target"])
    new = sug["pose"]
    lm2 = V.landmarks(case, traj, "bullseye", -new.detector_dir_lps)
    after = {k: _truth_hidden(att, new, traj, lm2[k]) for k in V.NEEDED["bullseye"]}
    assert before > V.HIDDEN_WARN
    assert all(f <= V.HIDDEN_WARN for f in after.values()), after
    # and the simulated fluoroscopy itself is saturated (black) where the rod hides the target
    full = AttenuationVolume.from_ct(phantom.volume, levels=1)
    drr = render_drr(full, pose, traj.aim_lps, size=V.IMAGE_PX, level=0)
    u, v = np.rint(drr.projection.detector_px_from_lps(traj.target_lps)).astype(int)
    assert drr.grey[v, u] <= 10


def test_each_view_lists_its_landmarks_with_whether_they_are_visible(phantom, case):
    traj = _planned(case, "L2-left", "transpedicular-parallel", "left")
    _, poses = views_for(case, traj)
    be = V.landmark_states(V.assess_view(case, traj, "bullseye", poses["bullseye"]))
    names = [lm.name for lm in be]
    assert names[:2] == ["pedicle outline", "target"]  # needed first
    assert "screw end-on" in names and "needle path" in names
    assert all(lm.needed == (lm.name in V.NEEDED["bullseye"]) for lm in be)
    pg = {lm.name: lm for lm in V.landmark_states(
        V.assess_view(case, traj, "progression", poses["progression"]))}
    assert {"posterior wall", "needle tip", "endplates"} <= set(pg)
    # each verdict agrees with the metal-only DRR's truth at the landmark's samples
    att = _metal_only(phantom, None)
    lms = V.landmarks(case, traj, "progression", -poses["progression"].detector_dir_lps)
    for name in ("posterior wall", "endplates"):
        truth = _truth_hidden(att, poses["progression"], traj, lms[name])
        assert abs(truth - pg[name].hidden_fraction) <= 0.15, (name, truth)
        assert pg[name].visible == (pg[name].hidden_fraction <= V.HIDDEN_WARN)
    # the screw end-on: only other metal can hide it (its own ring is what is aimed at)
    att_wo = _metal_only(phantom, "L2-left")
    ring = V.landmarks(case, traj, "bullseye", -poses["bullseye"].detector_dir_lps)[
        "screw end-on"]
    end_on = next(lm for lm in be if lm.name == "screw end-on")
    truth = _truth_hidden(att_wo, poses["bullseye"], traj, ring)
    assert abs(truth - end_on.hidden_fraction) <= 0.15
    check = next(c for c in V.visibility_checks(case, traj, poses) if "bull's-eye" in c.name)
    assert "landmarks: pedicle outline visible" in check.detail


def test_a_hidden_landmark_is_listed_as_hidden(case):
    traj = _through_the_rod(case)
    _, poses = views_for(case, traj)
    vis = V.assess_view(case, traj, "bullseye", poses["bullseye"], search=False)
    target = next(lm for lm in V.landmark_states(vis) if lm.name == "target")
    assert target.needed and not target.visible and target.hidden_fraction > V.HIDDEN_WARN
    assert "target HIDDEN" in V._check_of(vis).detail


def test_visibility_checks_are_fast(case):
    import time

    traj = _planned(case, "L2-left", "transpedicular-tip", "left")
    _, poses = views_for(case, traj)
    V.visibility_checks(case, traj, poses)  # metal assignment, once per case
    t0 = time.perf_counter()
    for _ in range(5):
        V.visibility_checks(case, traj, poses)
    assert (time.perf_counter() - t0) / 5 < 0.15


# --- "> 15 mm": a value beyond the search range is never a number -----------------------------
def test_at_least_validation_and_display():
    c = Check("metal clearance", None, 1.0, "pass", "mm", "searched up to 15 mm", at_least=15.0)
    assert c.display() == "> 15 mm"
    d = check_to_json(c)
    assert d["value"] is None and d["at_least"] == 15.0
    assert check_from_json(json.loads(json.dumps(d))).display() == "> 15 mm"
    with pytest.raises(ValueError):
        Check("metal clearance", 3.0, 1.0, "pass", "mm", at_least=15.0)
    with pytest.raises(PlanFormatError, match="at_least"):
        check_from_json({**d, "value": 3.0})
    with pytest.raises(PlanFormatError, match="at_least"):
        check_from_json({**d, "at_least": "far"})
    old = {k: v for k, v in d.items() if k != "at_least"}  # an older plan file
    assert check_from_json({**old, "value": 4.5}).display() == "4.50 mm"
    assert Check("x", 0.25, 0.5, "pass", "fraction").display() == "25 %"


@pytest.fixture(scope="module")
def far_plan(phantom):
    from fluoroplan.model.plan import Plan
    from fluoroplan.planner.propose import plan_case

    plan = plan_case(phantom.volume, phantom.truth,
                     targets=None)
    traj = plan.trajectories[0]
    far = Check("metal clearance", None, 1.0, "pass", "mm", "nothing within 15 mm",
                at_least=15.0)
    checks = tuple(far if c.name == "metal clearance" else c for c in traj.checks)
    traj = dataclasses.replace(traj, checks=checks)
    assert isinstance(plan, Plan)
    return dataclasses.replace(plan, trajectories=(traj,))


def test_at_least_round_trips_through_the_plan_file(far_plan, tmp_path):
    from fluoroplan.io.planfile import load_plan, save_plan

    doc = save_plan(far_plan, tmp_path / "plan.json")
    stored = next(c for c in doc["trajectories"][0]["checks"] if c["name"] == "metal clearance")
    assert stored["value"] is None and stored["at_least"] == 15.0
    raw = json.loads((tmp_path / "plan.json").read_text())
    assert next(c for c in raw["trajectories"][0]["checks"]
                if c["name"] == "metal clearance")["at_least"] == 15.0
    back = load_plan(tmp_path / "plan.json")
    c = back.trajectories[0].check("metal clearance")
    assert c.value is None and c.at_least == 15.0 and c.display() == "> 15 mm"


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext not installed")
def test_at_least_shown_in_the_pdf(far_plan, phantom, tmp_path):
    from fluoroplan.report.pdf import write_plan_pdf

    info = write_plan_pdf(far_plan, phantom.volume, tmp_path / "plan.pdf")
    text = subprocess.run(["pdftotext", "-layout", str(info.path), "-"], capture_output=True,
                          text=True, check=True).stdout
    line = next(ln for ln in text.splitlines() if "metal clearance" in ln)
    assert "> 15 mm" in line, line
    assert "landmarks hidden by metal: bull" in text


def test_at_least_shown_in_the_gui_panel(far_plan, qtbot):
    from fluoroplan.app.panels import checks_table, fill_checks

    table = checks_table("checks")
    qtbot.addWidget(table)
    fill_checks(table, far_plan.trajectories[0].checks)
    row = next(r for r in range(table.rowCount()) if table.item(r, 0).text() == "metal clearance")
    assert table.item(row, 1).text() == "> 15 mm"
