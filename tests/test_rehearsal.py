"""Rehearsal engine on the small phantom's truth: complete attempts driven through the session,
scored against an expert trajectory whose errors are built here, then saved, replayed and
re-scored; the summary sheet and the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from phantom_fixtures import small_phantom

from fluoroplan.geometry.carm import CArmPose
from fluoroplan.io.plan_json import plan_to_json
from fluoroplan.model.plan import Plan
from fluoroplan.planner.case import PlanningCase
from fluoroplan.planner.propose import propose
from fluoroplan.planner.targets import targets_from_analysis
from fluoroplan.rehearsal import score as rs
from fluoroplan.rehearsal.session import (
    REHEARSAL_SCHEMA,
    NeedleInBone,
    RehearsalError,
    RehearsalSession,
    load_attempt,
    mark_reference,
    reference_trajectory,
    replay,
    score_attempt,
)
from fluoroplan.rehearsal.summary import write_summary_pdf


@pytest.fixture(scope="module")
def phantom():
    return small_phantom()


@pytest.fixture(scope="module")
def case(phantom):
    return PlanningCase(phantom.volume, phantom.truth)


@pytest.fixture(scope="module")
def screw_target(case):
    return next(t for t in targets_from_analysis(case) if t.kind == "loose-screw")


@pytest.fixture(scope="module")
def expert(case, screw_target):
    traj = propose(case, screw_target, "extrapedicular-cranial", "left")
    assert traj.status != "fail"
    return traj


@pytest.fixture(scope="module")
def plan_json(expert, screw_target):
    plan = Plan(series={}, targets=(screw_target,), trajectories=(expert,))
    return mark_reference(json.loads(json.dumps(plan_to_json(plan))), expert.id)


class Counter:
    """A cheap renderer: records each call's pose and needles, returns a tiny image."""

    def __init__(self):
        self.calls = []

    def __call__(self, pose, isocenter_lps, needles):
        self.calls.append((pose, [tuple(np.array(x) for x in n) for n in needles]))
        return np.zeros((8, 8), np.uint8)


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        self.t += 1.5
        return self.t


def _session(case, target, plan_json, trainee="trainee A", **kw):
    kw.setdefault("renderer", Counter())
    return RehearsalSession(case, target, plan_json=plan_json, trainee=trainee, clock=Clock(),
                            **kw)


def _rot(v, axis, deg):
    """Rodrigues rotation of v about axis by deg."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    t = np.radians(deg)
    return v * np.cos(t) + np.cross(axis, v) * np.sin(t) + axis * (axis @ v) * (1 - np.cos(t))


def _go(s: RehearsalSession, pose: CArmPose) -> None:
    """Drive the C-arm to a pose with the two controls, as a trainee would (two moves)."""
    r, a = pose.table_angles_deg
    r0, a0 = s.state.table_deg
    s.rotate(r - r0)
    s.angulate(a - a0)


def _angle(a, b):
    return np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1)))


def _safe_error(s, working_off_deg: float, tip_shift_mm: float):
    """The needle direction ``working_off_deg`` off the reference and the tip ``tip_shift_mm``
    beside it, in the first of a few directions (tilt about either cross axis, shift to either
    side) whose needle passes every check on this case (measured, not assumed), so that the
    attempt's only faults are the errors built here."""
    from fluoroplan.model.plan import Target
    from fluoroplan.planner.propose import manual_trajectory, recheck

    ref = s.reference
    n = ref.direction_lps
    a = np.cross(n, [1.0, 0.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(n, a)
    first = None
    for axis in (-a, a, b, -b):
        n2 = _rot(n, axis, working_off_deg)
        perp = np.cross(n2, [1.0, 0.0, 0.0])
        perp /= np.linalg.norm(perp)
        for side in (1.0, -1.0):
            tip = ref.target_lps + side * tip_shift_mm * perp
            entry = tip - ref.depth_mm * n2
            first = first or (tip, entry, n2)
            if working_off_deg == 0.0 and tip_shift_mm == 0.0:
                return tip, entry, n2
            t = Target(kind="manual", ref="trial", level=ref.level, side=ref.side,
                       point_lps=tip, description="trial")
            trial = recheck(s.case, manual_trajectory(s.case, entry, tip, t))
            if not [c for c in trial.checks if c.status == "fail"]:
                return tip, entry, n2
    return first


def _attempt(s, working_off_deg=0.0, tip_shift_mm=0.0, shots=4, steps=4):
    """A complete attempt: the screw's bull's-eye exactly, the working view ``working_off_deg``
    off, a needle rotated by that angle with its tip shifted ``tip_shift_mm`` sideways."""
    ref = s.reference
    tip, entry, n2 = _safe_error(s, working_off_deg, tip_shift_mm)
    screw_phase, work_phase = s.setup.phases
    _go(s, screw_phase.pose)
    s.shot()
    s.declare_view()
    _go(s, CArmPose.from_detector_dir(-n2, s.setup.patient_position))
    s.shot()
    s.declare_view()
    s.place(entry, tip)
    for _ in range(steps):
        s.advance(ref.depth_mm / steps)
    lat = s.lateral_pose()
    s.move_to(*lat.table_angles_deg)
    for _ in range(shots - 2):
        s.shot()
    return tip, n2


def test_reference_is_the_marked_trajectory_else_the_proposal(case, screw_target, expert,
                                                               plan_json):
    traj, source = reference_trajectory(case, screw_target, plan_json)
    assert source == "plan reference" and traj.id == expert.id
    np.testing.assert_allclose(traj.entry_lps, expert.entry_lps, atol=1e-3)
    marked = [t for t in plan_json["trajectories"] if t.get("reference")]
    assert [t["id"] for t in marked] == [expert.id]
    with pytest.raises(RehearsalError, match="no trajectory"):
        mark_reference(plan_json, "nonexistent")
    auto, source = reference_trajectory(case, screw_target, None)
    assert source == "automatic proposal" and auto.status != "fail"


def test_known_errors_are_measured_and_scored_per_the_scale(case, screw_target, plan_json):
    s = _session(case, screw_target, plan_json)
    assert [p.name for p in s.setup.phases] == ["screw-bullseye", "working-view"]
    tip, n2 = _attempt(s, working_off_deg=4.0, tip_shift_mm=3.0, shots=12)
    sc = s.end()
    m = sc.metrics
    assert m["view_errors_deg"]["screw-bullseye"] == pytest.approx(0.0, abs=0.01)
    assert m["view_errors_deg"]["working-view"] == pytest.approx(4.0, abs=0.1)
    assert m["bullseye_error_deg"] == pytest.approx(4.0, abs=0.1)
    assert m["tip_error_mm"] == pytest.approx(3.0, abs=0.1)
    assert m["needle_angle_deg"] == pytest.approx(4.0, abs=0.1)
    assert m["shots"] == 12 and m["fluoro_s"] == pytest.approx(12.0)
    # DAP proxy: 12 x the 300 mm field scaled to the isocentre (750/1100), in cm^2, x 1 s
    assert m["dap_cm2s"] == pytest.approx(12 * (300 * 750 / 1100) ** 2 / 100, rel=1e-3)
    # the trainee needle passes every check (measured, not assumed)
    assert s.trajectory is not None
    assert not [c.name for c in s.trajectory.checks if c.status == "fail"]
    np.testing.assert_allclose(s.trajectory.target_lps, tip, atol=1e-3)
    # the scale: one of two views 4 deg off (15 * 2/10 = 3), 2 extra shots (2), tip 3 mm (10)
    assert sc.parts["bullseye"] == pytest.approx(3.0, abs=0.1)
    assert sc.parts["shots"] == pytest.approx(2.0)
    assert sc.parts["endpoint"] == pytest.approx(10.0, abs=0.05)
    assert sc.parts["safety"] == 0.0
    assert sc.total == pytest.approx(85.0, abs=0.05)
    assert sum(p for p, _ in sc.lost) == pytest.approx(100.0 - sc.total)
    reasons = " | ".join(r for _, r in sc.lost)
    assert "working view" in reasons and "4.0 deg" in reasons
    assert "12 fluoro shots" in reasons and "3.0 mm" in reasons


def test_perfect_attempt_scores_100_minus_the_shot_penalty(case, screw_target, plan_json):
    s = _session(case, screw_target, plan_json)
    _attempt(s, shots=rs.FREE_SHOTS + 3)
    sc = s.end()
    assert sc.metrics["tip_error_mm"] == pytest.approx(0.0, abs=1e-3)
    assert sc.metrics["bullseye_error_deg"] == pytest.approx(0.0, abs=1e-3)
    assert sc.total == pytest.approx(100.0 - 3 * rs.POINTS_PER_EXTRA_SHOT, abs=1e-6)
    assert [p for p, _ in sc.lost if p > 0] == [3.0]
    s2 = _session(case, screw_target, plan_json)
    _attempt(s2, shots=rs.FREE_SHOTS)
    assert s2.end().total == pytest.approx(100.0, abs=1e-6)


def test_crossing_the_canal_loses_the_safety_points_with_the_check_name(
        case, screw_target, plan_json, phantom):
    s = _session(case, screw_target, plan_json)
    for ph in s.setup.phases:
        _go(s, ph.pose)
        s.declare_view()
    level = screw_target.level
    canal = np.array(next(v for v in phantom.truth["vertebrae"]
                          if v["label"] == level)["canal_center_lps"])
    entry = s.reference.entry_lps
    s.place(entry, canal)
    s.advance(float(np.linalg.norm(canal - entry)))
    sc = s.end()
    assert s.trajectory.check("spinal canal clearance").status == "fail"
    assert sc.parts["safety"] == pytest.approx(rs.SAFETY_POINTS)
    first = next((p, r) for p, r in sc.lost if "safety check failed" in r)
    assert first[0] == pytest.approx(20.0) and "spinal canal clearance" in first[1]


def test_reaim_only_outside_bone_and_counted(case, screw_target, plan_json):
    s = _session(case, screw_target, plan_json)
    with pytest.raises(RehearsalError, match="Task 1"):
        s.place(s.reference.entry_lps, s.reference.target_lps)
    for ph in s.setup.phases:
        _go(s, ph.pose)
        s.declare_view()
    ref = s.reference
    s.place(ref.entry_lps, ref.target_lps)
    s.advance(5.0)  # soft tissue just under the skin
    assert case.hu_at(s.state.tip_lps[None])[0] < 150
    s.place(ref.entry_lps, ref.target_lps + np.array([0.0, 0.0, 2.0]))  # pivot: allowed
    assert s.state.corrections == 1 and s.state.depth_mm == pytest.approx(5.0)
    s.place(ref.entry_lps, ref.target_lps)
    s.advance(ref.depth_mm - 5.0)  # now at the target, in bone
    assert case.hu_at(s.state.tip_lps[None])[0] >= 150
    with pytest.raises(NeedleInBone):
        s.place(ref.entry_lps, ref.target_lps + np.array([0.0, 0.0, 3.0]))
    assert s.state.corrections == 2  # the refused re-aim is not recorded
    s.withdraw(1000.0)
    assert s.state.depth_mm == 0.0
    s.advance(ref.depth_mm)
    sc = s.end()
    assert sc.metrics["corrections"] == 2
    assert (2 * rs.POINTS_PER_CORRECTION, "2 needle correction(s) after insertion") in sc.lost


def test_carm_moves_in_table_terms_within_limits(case, screw_target, plan_json):
    s = _session(case, screw_target, plan_json)
    events = []
    s.subscribe(lambda sess, ev: events.append(ev["type"]))
    assert s.state.table_deg == (0.0, 0.0)
    s.rotate(10.0)
    assert s.pose.table_angles_deg == pytest.approx((10.0, 0.0), abs=1e-9)
    # prone (HFP): P_table = P_patient + 180 (CONVENTIONS.md), so table +10 is patient -170
    assert s.pose.primary_deg == pytest.approx(-170.0, abs=1e-9)
    s.rotate(500.0)
    assert s.state.table_deg[0] == 105.0 and s.state.clamped and s.events[-1]["clamped"]
    s.angulate(-80.0)
    assert s.state.table_deg == (105.0, -45.0)
    s.move_to(0.0, 10.0)
    assert s.pose.secondary_deg == pytest.approx(10.0)
    assert events == ["rotate", "rotate", "angulate", "move_to"]
    assert s.angle_to_phase_deg() > 0


def test_shots_are_counted_and_render_the_needle_to_its_tip(case, screw_target, plan_json):
    counter = Counter()
    s = _session(case, screw_target, plan_json, renderer=counter)
    tip, _ = _attempt(s, shots=5)
    assert s.state.shots == len(counter.calls) == 5
    pose, needles = counter.calls[-1]
    assert pose.table_angles_deg == pytest.approx(s.state.table_deg, abs=1e-6)
    assert needles and np.allclose(needles[0][1], tip, atol=1e-3)
    assert counter.calls[0][1] == []  # before the needle is placed
    shots = [e for e in s.events if e["type"] == "shot"]
    assert len(shots) == 5 and all("pose" in e and "t_s" in e for e in shots)
    # the needle as seen on the lateral view, and the depth it shows
    px = s.needle_px(256)
    assert px["tip_in_view"]
    reading = s.depth_reading()
    assert reading["view_off_perpendicular_deg"] < 1e-3
    assert 0.0 < reading["fraction_of_body_depth"] < 1.0
    _go(s, s.setup.phases[1].pose)  # the bull's-eye: the needle is end-on, depth unreadable
    with pytest.raises(RehearsalError, match="progression"):
        s.depth_reading()


def test_default_renderer_draws_a_drr(case, screw_target, plan_json):
    s = RehearsalSession(case, screw_target, plan_json=plan_json, trainee="drr")
    s.renderer.size = 96
    drr = s.shot()
    assert drr.image.shape[:2] == (96, 96)
    assert drr.line_integrals.max() > 1.0  # the X-ray crossed the patient
    assert s.state.shots == 1


def test_save_load_replay_rescore(case, screw_target, plan_json, tmp_path):
    s = _session(case, screw_target, plan_json)
    _attempt(s, working_off_deg=4.0, tip_shift_mm=3.0, shots=12)
    s.withdraw(2.0)
    sc = s.end()
    path = tmp_path / "attempt.json"
    s.save(path)
    js = load_attempt(path)
    assert js["schema"] == REHEARSAL_SCHEMA
    assert js["case"]["series_instance_uid"] == case.volume.identifiers["series_instance_uid"]
    assert js["case"]["fingerprint"] == case.volume.fingerprint()
    assert js["target"]["ref"] == screw_target.ref
    kinds = [e["type"] for e in js["events"]]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert {"rotate", "angulate", "move_to", "shot", "declare", "place", "advance",
            "withdraw"} <= set(kinds)
    times = [e["t_s"] for e in js["events"]]
    assert times == sorted(times) and times[-1] > 0
    states = list(replay(js))
    assert len(states) == len(js["events"])
    last = states[-1]
    assert last.ended and last.shots == 12
    np.testing.assert_allclose(last.tip_lps, s.state.tip_lps, atol=1e-9)
    assert last.table_deg == s.state.table_deg
    assert [st.shots for st in states] == sorted(st.shots for st in states)
    assert score_attempt(js).total == pytest.approx(sc.total, abs=1e-9)
    assert score_attempt(js, case).total == pytest.approx(sc.total, abs=1e-9)
    assert [r for _, r in score_attempt(js).lost] == [r for _, r in sc.lost]
    # a tampered event changes the replayed score: scores come from the events
    js["events"] = [e for e in js["events"] if e["type"] != "withdraw"]
    assert score_attempt(js).total != pytest.approx(sc.total, abs=1e-6)


def test_summary_pdf_has_a_row_per_attempt(case, screw_target, plan_json, tmp_path):
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    attempts = []
    for name, off, shift in (("Alice Trainee", 0.0, 0.0), ("Bob Resident", 4.0, 3.0)):
        s = _session(case, screw_target, plan_json, trainee=name)
        _attempt(s, working_off_deg=off, tip_shift_mm=shift, shots=12)
        s.end()
        attempts.append(s.attempt_json())
    out = write_summary_pdf(attempts, tmp_path / "summary.pdf")
    text = subprocess.run(["pdftotext", "-layout", str(out), "-"], capture_output=True,
                          text=True, check=True).stdout
    rows = [ln for ln in text.splitlines() if "loose-screw:L2-left" in ln and " deg " in ln]
    assert len(rows) == 2, text
    assert "Alice Trainee" in rows[0] and "98.0" in rows[0] and "0.0 mm" in rows[0]
    assert "Bob Resident" in rows[1] and "4.0 deg" in rows[1] and "3.0 mm" in rows[1]
    assert "Lost points" in text and "needle tip 3.0 mm from the expert target" in text


def test_cli_score_summary_and_mark_reference(case, screw_target, plan_json, tmp_path, capsys):
    from fluoroplan.cli import main

    s = _session(case, screw_target, plan_json)
    _attempt(s, working_off_deg=4.0, tip_shift_mm=3.0, shots=12)
    sc = s.end()
    path = tmp_path / "a.json"
    s.save(path)
    assert main(["rehearse", "score", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"score {sc.total:.1f} / 100" in out and "needle tip 3.0 mm" in out
    pdf = tmp_path / "s.pdf"
    assert main(["rehearse", "summary", str(path), str(path), "--pdf", str(pdf)]) == 0
    assert pdf.stat().st_size > 1000
    plan_path = tmp_path / "plan.json"
    unmarked = json.loads(json.dumps(plan_json))
    for t in unmarked["trajectories"]:
        t.pop("reference", None)
    plan_path.write_text(json.dumps(unmarked))
    tid = unmarked["trajectories"][0]["id"]
    assert main(["rehearse", "mark-reference", str(plan_path), tid]) == 0
    assert json.loads(plan_path.read_text())["trajectories"][0]["reference"] is True
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "fluoroplan.plan/1"}))
    assert main(["rehearse", "score", str(bad)]) == 2
    assert "rehearsal" in capsys.readouterr().err


# --- a biplane suite ------------------------------------------------------------------------
def test_biplane_suite_shoots_the_true_lateral_without_moving_the_frontal_plane(
        case, screw_target, plan_json):
    from fluoroplan.geometry.conventions import LATERAL_PLANE_LIMITS

    mono = _session(case, screw_target, plan_json)
    with pytest.raises(RehearsalError, match="monoplane"):
        mono.lateral_shot()
    counter = Counter()
    s = _session(case, screw_target, plan_json, renderer=counter,
                 lateral_limits=LATERAL_PLANE_LIMITS)
    assert s.setup.biplane
    tip, _ = _attempt(s, shots=2)
    frontal = s.state.table_deg
    before = (s.state.shots, s.state.fluoro_s)
    s.lateral_shot()
    assert s.state.table_deg == frontal  # the frontal plane stays where it is
    assert (s.state.shots, s.state.fluoro_s) == (before[0] + 1, before[1] + s.setup.shot_s)
    pose, needles = counter.calls[-1]
    lat = case.vertebra(screw_target.level).left_lps
    # the lateral plane's beam runs along the vertebra's own left-right axis
    assert abs(pose.detector_dir_lps @ lat) == pytest.approx(1.0, abs=1e-6)
    assert needles and np.allclose(needles[0][1], s.state.tip_lps)
    # the depth read on the lateral plane is the frontal one's reading of the same tip
    on_lateral = s.depth_reading(plane="lateral")
    assert on_lateral["mm_anterior_of_posterior_wall"] == pytest.approx(
        s.depth_reading()["mm_anterior_of_posterior_wall"])
    # the attempt replays with its lateral shot, and the suite is saved with it
    doc = json.loads(json.dumps(s.attempt_json()))
    assert doc["settings"]["lateral_limits"]["rotation_deg"] == list(
        LATERAL_PLANE_LIMITS.rotation_deg)
    assert [e.get("plane") for e in doc["events"] if e["type"] == "shot"][-1] == "lateral"
    *_, last = replay(doc)
    assert last.shots == s.state.shots
