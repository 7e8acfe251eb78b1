"""Rehearsal mode: a fluoroscopy simulator in which a trainee rehearses an access on a real
case while the expert plan is hidden, and is scored against it.

The engine is plain Python (no Qt); the GUI drives a :class:`RehearsalSession` and observes it.

Flow of an attempt (one case, one target):

1. **Task 1 - views.** The virtual C-arm starts at table rotation/angulation 0/0 and moves
   like the console's controls, in *table* terms: :meth:`RehearsalSession.rotate`,
   :meth:`~RehearsalSession.angulate`, :meth:`~RehearsalSession.move_to`, clamped to the
   C-arm's limits. Each :meth:`~RehearsalSession.shot` renders a DRR (``render_drr``, or an
   injected renderer) and is counted. The trainee declares each view reached
   (:meth:`~RehearsalSession.declare_view`): first the screw's bull's-eye when the case has a
   screw to start from (the target's screw, or a screw of the same level and side), then the
   working view = the bull's-eye of the expert trajectory. The angle between the detector
   direction and the reference view is recorded at the declaration; ``within_tolerance`` says
   whether it is within the tolerance (default 2 deg).
2. **Task 2 - needle.** The trainee picks an entry and a target (LPS points, as picked on the
   images) with :meth:`~RehearsalSession.place`, then :meth:`~RehearsalSession.advance` /
   :meth:`~RehearsalSession.withdraw` the needle (rigid and straight, from the entry along the
   picked line; its depth is the length inside the patient). Re-aiming a needle already
   inserted is a *correction*: allowed only while no part of the inserted needle is in bone
   (:class:`NeedleInBone` otherwise), counted, and scored. The tip is what the current view
   shows (:meth:`~RehearsalSession.needle_px`); on a progression (lateral) view
   :meth:`~RehearsalSession.depth_reading` gives the tip's depth in the vertebral body.
3. :meth:`~RehearsalSession.end` runs every planner check on the trainee's entry and final tip
   (``build_trajectory``) and scores the attempt (:mod:`fluoroplan.rehearsal.score`
   documents the 100-point scale).

Dose proxy: every shot is one fluoroscopy exposure of ``shot_s`` seconds (default 1 s), added
to the *fluoro time*; the *DAP proxy* (``dap_cm2s``, cm²·s) adds, per shot, the area of the
rendered field at the isocentre plane (square of the detector's short side scaled by SOD/SID)
times ``shot_s``: a dose-area product at a constant tube output, so a larger field or a longer
exposure costs more, not the patient's thickness.

The expert plan ("reference"): a trajectory of the case's plan JSON marked
``"reference": true`` (an instructor marks it with :func:`mark_reference`; the flag lives in the
plan JSON on the trajectory, one reference per target), else the lowest-cost non-failing
automatic proposal (``propose``) over the target's applicable approaches. See
:func:`reference_trajectory`.

An attempt is saved as ``fluoroplan.rehearsal/1`` JSON (:meth:`RehearsalSession.attempt_json`):
the case (series UID, fingerprint), the target, the settings, the expert reference and its
views, every event with its time stamp (C-arm moves, shots with their pose, declarations,
needle placement and steps, end), the trainee's trajectory with its checks, and the score.
:func:`replay` rebuilds every state from the events alone (the same reducer the live session
uses); :func:`score_attempt` re-scores a saved attempt.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from fluoroplan.geometry.carm import (
    CArmPose,
    bullseye_pose,
    check_reachable,
    lateral_view,
    progression_pose,
)
from fluoroplan.geometry.conventions import DEFAULT_CARM_LIMITS, CArmLimits
from fluoroplan.geometry.drr import AttenuationVolume, render_drr
from fluoroplan.geometry.projection import Projection
from fluoroplan.geometry.xray import FRAME_DOSE_NGY, ImagingChain
from fluoroplan.io.errors import FluoroplanError
from fluoroplan.io.jsonio import _plain, read_json, write_json_atomic
from fluoroplan.io.plan_json import check_to_json, pose_json, target_to_json, trajectory_to_json
from fluoroplan.io.rehearsal_json import (
    score_json,
    setup_from_json,
    setup_json,
    state_json,
    target_from_json,
)
from fluoroplan.model.plan import Target, Trajectory
from fluoroplan.model.rehearsal import (
    DEFAULT_SHOT_S,
    DEFAULT_TOLERANCE_DEG,
    Phase,
    RehearsalSetup,
    RehearsalState,
    Score,
)
from fluoroplan.planner.approaches import applicable
from fluoroplan.planner.case import BONE_HU, PlanningCase
from fluoroplan.planner.propose import build_trajectory, propose
from fluoroplan.rehearsal.score import score

REHEARSAL_SCHEMA = "fluoroplan.rehearsal/1"
CONTACT_SNAP_MM = 3.0
"""A trainee needle passing within this distance of the expert's planned screw contact is
scored as making that contact (the planner then checks the slide along the screw)."""
PROGRESSION_TOLERANCE_DEG = 10.0
"""A view within this angle of perpendicular to the needle counts as a progression view."""

__all__ = [
    "REHEARSAL_SCHEMA",
    "NeedleInBone",
    "Phase",
    "RehearsalError",
    "RehearsalSession",
    "RehearsalSetup",
    "RehearsalState",
    "DrrRenderer",
    "apply_event",
    "load_attempt",
    "mark_reference",
    "reference_trajectory",
    "replay",
    "score_attempt",
    "score_state",
]


class RehearsalError(FluoroplanError):
    """An action the rehearsal does not allow now (the message says why and what to do)."""


class NeedleInBone(RehearsalError):
    """A re-aim was asked while part of the inserted needle is in bone."""


# --- the expert reference -------------------------------------------------------------------
def mark_reference(plan_json: dict, trajectory_id: str) -> dict:
    """A copy of a plan JSON with ``"reference": true`` on one trajectory (the instructor's
    choice for rehearsals) and the flag removed from the other trajectories of its target."""
    trajs = plan_json.get("trajectories", [])
    chosen = next((t for t in trajs if t.get("id") == trajectory_id), None)
    if chosen is None:
        ids = ", ".join(str(t.get("id")) for t in trajs) or "none"
        raise RehearsalError(f"the plan has no trajectory {trajectory_id!r} (it has: {ids})")
    key = (chosen["target"]["kind"], chosen["target"]["ref"])
    out = dict(plan_json)
    out["trajectories"] = []
    for t in trajs:
        t = dict(t)
        if (t["target"]["kind"], t["target"]["ref"]) == key:
            t["reference"] = t.get("id") == trajectory_id
        out["trajectories"].append(t)
    return out



def reference_trajectory(
    case: PlanningCase, target: Target, plan_json: dict | None = None
) -> tuple[Trajectory, str]:
    """The expert trajectory a rehearsal is scored against, and where it came from.

    A trajectory of ``plan_json`` for this target with ``"reference": true`` is rebuilt (checks
    re-run) and returned with source ``"plan reference"``; without one, the lowest-cost
    proposal that fails no check over the target's applicable approaches, source
    ``"automatic proposal"``.
    """

    for t in (plan_json or {}).get("trajectories", []):
        if t.get("reference") and (t["target"]["kind"], t["target"]["ref"]) == (
            target.kind, target.ref
        ):
            contact = t.get("contact_lps")
            traj = build_trajectory(
                case, target, t["approach"], t["side"], t["entry_lps"], t["target_lps"],
                None if contact is None else np.asarray(contact, float), traj_id=t["id"],
                edited=bool(t.get("edited")),
            )
            return traj, "plan reference"
    best = None
    for approach, side in applicable(case, target):
        res = propose(case, target, approach, side)
        if isinstance(res, Trajectory) and res.status != "fail":
            if best is None or res.cost < best.cost:
                best = res
    if best is None:
        raise RehearsalError(
            f"no safe expert trajectory exists for {target.id}; an instructor must plan one and "
            "mark it as the reference before it can be rehearsed"
        )
    return best, "automatic proposal"


# --- setup, state and the reducer -------------------------------------------------------------


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, float) / np.linalg.norm(a)
    b = np.asarray(b, float) / np.linalg.norm(b)
    # atan2 form: accurate for small angles too
    return math.degrees(math.atan2(float(np.linalg.norm(np.cross(a, b))), float(a @ b)))


def _r(v) -> list[float]:
    return [round(float(x), 4) for x in np.asarray(v, float)]


def apply_event(state: RehearsalState, event: dict, setup: RehearsalSetup) -> RehearsalState:
    """The state after ``event``: the one reducer of the live session and of :func:`replay`.

    Measures (clamped angles, view errors, dose, corrections) are recomputed here from the
    state and the setup, never copied from the event, so a replay re-derives them.
    """
    kind = event["type"]
    s = replace(state, t_s=float(event.get("t_s", state.t_s)), last_event=kind, clamped=False)
    if s.ended and kind != "end":
        raise RehearsalError("the attempt has ended; start a new one to go on")
    if kind == "start":
        return s
    if kind in ("rotate", "angulate", "move_to"):
        r, a = s.table_deg
        if kind == "rotate":
            want = (r + float(event["d_deg"]), a)
        elif kind == "angulate":
            want = (r, a + float(event["d_deg"]))
        else:
            want = (float(event["table_deg"][0]), float(event["table_deg"][1]))
        got = setup.clamp(want)
        return replace(s, table_deg=got, clamped=got != want)
    if kind == "shot":
        return replace(s, shots=s.shots + 1, fluoro_s=s.fluoro_s + setup.shot_s,
                       dap_cm2s=s.dap_cm2s + setup.field_cm2 * setup.shot_s)
    if kind == "declare":
        if s.phase_index >= len(setup.phases):
            raise RehearsalError("every view of Task 1 has been declared already")
        phase = setup.phases[s.phase_index]
        err = _angle_deg(setup.pose(s.table_deg).detector_dir_lps, phase.pose.detector_dir_lps)
        return replace(s, phase_index=s.phase_index + 1,
                       declared={**s.declared, phase.name: err})
    if kind == "place":
        if s.phase_index < len(setup.phases):
            left = setup.phases[s.phase_index].label
            raise RehearsalError(f"finish Task 1 first: declare the {left} reached")
        entry = np.asarray(event["entry_lps"], float)
        aim = np.asarray(event["target_lps"], float)
        if np.linalg.norm(aim - entry) < 1.0:
            raise RehearsalError("entry and target are less than 1 mm apart; pick them again")
        direction = (aim - entry) / np.linalg.norm(aim - entry)
        inserted = s.depth_mm > 0.0
        keep = inserted and s.entry_lps is not None and np.linalg.norm(entry - s.entry_lps) < 1e-6
        return replace(s, entry_lps=entry, aim_lps=aim, dir_lps=direction,
                       depth_mm=s.depth_mm if keep else 0.0,
                       corrections=s.corrections + (1 if inserted else 0))
    if kind in ("advance", "withdraw"):
        if s.entry_lps is None:
            raise RehearsalError("place the needle first: pick an entry and a target")
        mm = float(event["mm"])
        if mm < 0:
            raise RehearsalError("a needle step must be a positive length in mm")
        depth = s.depth_mm + (mm if kind == "advance" else -mm)
        depth = min(max(depth, 0.0), setup.needle_length_mm)
        return replace(s, depth_mm=depth, steps=s.steps + 1)
    if kind == "end":
        return replace(s, ended=True)
    raise RehearsalError(f"unknown rehearsal event {kind!r}")


def initial_state(setup: RehearsalSetup) -> RehearsalState:
    return RehearsalState(table_deg=setup.clamp(setup.start_table_deg))


# --- scoring --------------------------------------------------------------------------------
def trainee_trajectory(
    case: PlanningCase, setup: RehearsalSetup, state: RehearsalState
) -> Trajectory | None:
    """The trainee's needle as a planner trajectory (entry -> final tip) with every check run;
    None when the needle is not inserted (less than 1 mm)."""

    if state.entry_lps is None or state.depth_mm < 1.0:
        return None
    assert state.dir_lps is not None  # placed with the entry
    ref = setup.reference
    tip = state.tip_lps
    contact = None
    if ref.get("contact_lps") is not None:
        c = np.asarray(ref["contact_lps"], float)
        t = float(np.clip((c - state.entry_lps) @ state.dir_lps, 0.0, state.depth_mm))
        near = state.entry_lps + t * state.dir_lps
        if np.linalg.norm(near - c) <= CONTACT_SNAP_MM and 1.0 <= t < state.depth_mm - 0.5:
            contact = near
    return build_trajectory(case, target_from_json(setup.target), ref["approach"], ref["side"],
                            state.entry_lps, tip, contact, traj_id="rehearsal", edited=True)


def score_state(setup: RehearsalSetup, state: RehearsalState, checks: list[dict] | None) -> Score:
    """Score a (final) state against the setup's reference; ``checks`` are the planner's checks
    of the trainee trajectory as JSON blocks (None: needle not inserted)."""
    ref = setup.reference
    errors = {p.name: state.declared.get(p.name) for p in setup.phases}
    labels = {p.name: p.label for p in setup.phases}
    tip = state.tip_lps if state.entry_lps is not None else None
    tip_err = None if tip is None else float(np.linalg.norm(tip - np.asarray(ref["target_lps"])))
    needle_angle = None
    if state.dir_lps is not None:
        needle_angle = round(_angle_deg(state.dir_lps, np.asarray(ref["direction_lps"])), 4)
    return score(errors, labels, setup.tolerance_deg, state.shots, state.corrections, tip_err,
                 checks, {"fluoro_s": round(state.fluoro_s, 3),
                          "dap_cm2s": round(state.dap_cm2s, 2),
                          "needle_angle_deg": needle_angle,
                          "needle_steps": state.steps})


# --- rendering ------------------------------------------------------------------------------
Renderer = Callable[[CArmPose, np.ndarray, list], object]
"""``renderer(pose, isocenter_lps, needles)`` -> image; ``needles`` is a list of (entry, tip)."""


class DrrRenderer:
    """The default renderer: ``render_drr`` of the case's CT (attenuation built on first use),
    ``size`` x ``size`` pixels, the needle drawn from its entry to its tip. Each shot is one
    fluoroscopy frame with its own quantum noise at ``frame_dose_ngy`` at the detector (the
    noise of shot n is seeded by n, so a rehearsal replays identically)."""

    def __init__(self, volume, size: int = 256, threads: int = 2,
                 frame_dose_ngy: float = FRAME_DOSE_NGY):
        self.volume, self.size, self.threads = volume, int(size), threads
        self.chain = ImagingChain(frame_dose_ngy=frame_dose_ngy)
        self._att: AttenuationVolume | None = None
        self._frames = 0

    def __call__(self, pose: CArmPose, isocenter_lps: np.ndarray, needles: list):
        if self._att is None:
            self._att = AttenuationVolume.from_ct(self.volume)
        self._frames += 1
        return render_drr(self._att, pose, isocenter_lps, size=self.size,
                          trajectories=needles or None, threads=self.threads,
                          chain=self.chain, seed=self._frames)


# --- the live session -----------------------------------------------------------------------
def _phases(case: PlanningCase, traj: Trajectory, chain: dict) -> tuple[Phase, ...]:
    pos = case.patient_position
    screw = None
    if traj.target.kind == "loose-screw":
        try:
            screw = case.screw(traj.target.ref)
        except KeyError:
            screw = None
    if screw is None:
        same = [s for s in case.screws if s.level == traj.level and s.side == traj.side]
        screw = same[0] if same else None
    out = []
    if screw is not None:
        out.append(Phase("screw-bullseye", f"screw {screw.id} bull's-eye",
                         bullseye_pose(screw.head_lps, screw.tip_lps, pos, **chain)))
    out.append(Phase("working-view", "working view (bull's-eye of the planned needle)",
                     bullseye_pose(traj.entry_lps, traj.aim_lps, pos, **chain)))
    return tuple(out)


def _reference_json(traj: Trajectory, source: str) -> dict:
    return {
        "id": traj.id, "source": source, "approach": traj.approach, "side": traj.side,
        "level": traj.level,
        "entry_lps": _r(traj.entry_lps), "target_lps": _r(traj.target_lps),
        "contact_lps": None if traj.contact_lps is None else _r(traj.contact_lps),
        "direction_lps": [round(float(v), 8) for v in traj.direction_lps],
    }


def _moved(state: RehearsalState) -> dict:
    return {"result_table_deg": list(state.table_deg), "clamped": state.clamped}


def _needle_outcome(state: RehearsalState) -> dict:
    return {"depth_mm": state.depth_mm, "tip_lps": _r(state.tip_lps)}


def _now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).astimezone().isoformat(timespec="seconds")


class RehearsalSession:
    """One trainee's attempt at one target of one case (the model the GUI observes).

    Parameters
    ----------
    case : PlanningCase
        The CT and its analysis (or a phantom's truth).
    target : Target
        What the trainee must reach.
    plan_json : dict, optional
        The case's plan JSON; a trajectory marked ``"reference": true`` for this target is
        the expert reference (else the automatic proposal, see :func:`reference_trajectory`).
    reference : Trajectory, optional
        Use this trajectory as the reference instead (source ``"given"``).
    trainee : str
        Who rehearses (shown on the summary sheet).
    renderer : callable, optional
        ``renderer(pose, isocenter_lps, needles)`` -> image, called once per shot; default
        :class:`DrrRenderer` (a 256 x 256 DRR).
    tolerance_deg : float
        Angle within which a declared view counts as reached (and loses no points).
    shot_s : float
        Fluoroscopy time charged per shot, seconds.
    limits : CArmLimits
        Table-relative rotation/angulation limits the C-arm moves are clamped to.
    clock : callable
        Seconds (monotonic); event time stamps are taken relative to the session's start.
    """

    def __init__(
        self,
        case: PlanningCase,
        target: Target,
        plan_json: dict | None = None,
        reference: Trajectory | None = None,
        trainee: str = "",
        renderer: Renderer | None = None,
        tolerance_deg: float = DEFAULT_TOLERANCE_DEG,
        shot_s: float = DEFAULT_SHOT_S,
        limits: CArmLimits = DEFAULT_CARM_LIMITS,
        clock: Callable[[], float] = time.monotonic,
        chain: dict | None = None,
        lateral_limits: CArmLimits | None = None,
    ):
        if tolerance_deg <= 0 or shot_s <= 0:
            raise ValueError("the tolerance and the time per shot must be positive")
        self.case = case
        self.target = target
        if reference is None:
            reference, source = reference_trajectory(case, target, plan_json)
        else:
            source = "given"
        self.reference = reference
        chain = dict(chain or {})
        try:
            iso = case.vertebra(target.level).centroid_lps
        except KeyError:
            iso = target.point_lps
        self.setup = RehearsalSetup(
            patient_position=case.patient_position,
            phases=_phases(case, reference, chain),
            reference=_reference_json(reference, source),
            target=target_to_json(target),
            isocenter_lps=np.asarray(iso, float),
            tolerance_deg=float(tolerance_deg), limits=limits, shot_s=float(shot_s),
            chain=chain, needle_length_mm=float(reference.needle.length_mm),
            lateral_limits=lateral_limits,
        )
        # through the saved (JSON-plain) form, so the live session and a replay agree exactly

        self.setup = setup_from_json(_plain({
            "settings": setup_json(self.setup), "reference": self.setup.reference,
            "target": self.setup.target}))
        self.trainee = trainee
        self.renderer = renderer if renderer is not None else DrrRenderer(case.volume)
        self._clock = clock
        self._t0 = clock()
        self.started = _now_iso()
        self.ended_at: str | None = None
        self.state = initial_state(self.setup)
        self.events: list[dict] = []
        self.last_image = None
        self.last_lateral_image = None
        self.trajectory: Trajectory | None = None
        self.score: Score | None = None
        self._observers: list[Callable[[RehearsalSession, dict], None]] = []
        self._emit({"type": "start", "table_deg": list(self.state.table_deg)})

    # observers
    def subscribe(self, callback: Callable[[RehearsalSession, dict], None]) -> None:
        """Call ``callback(session, event)`` after every change."""
        self._observers.append(callback)

    def unsubscribe(self, callback) -> None:
        self._observers.remove(callback)

    def _emit(self, event: dict, outcome: Callable[[RehearsalState], dict] | None = None) -> dict:
        """Apply an event (JSON-plain, as it will be saved, so a replay is exact), record it
        with the measures ``outcome`` derives from the new state, and notify observers."""

        event = _plain({"t_s": round(self._clock() - self._t0, 3), **event})
        self.state = apply_event(self.state, event, self.setup)  # raises before recording
        if outcome is not None:
            event.update(_plain(outcome(self.state)))
        self.events.append(event)
        for cb in list(self._observers):
            cb(self, event)
        return event

    # derived
    @property
    def pose(self) -> CArmPose:
        """The current C-arm pose (patient-relative angles; ``pose.table_angles_deg``)."""
        return self.setup.pose(self.state.table_deg)

    @property
    def phase(self) -> Phase | None:
        """The Task 1 view to reach next (None when Task 1 is done)."""
        i = self.state.phase_index
        return self.setup.phases[i] if i < len(self.setup.phases) else None

    def angle_to_phase_deg(self) -> float | None:
        """Angle between the current detector direction and the view to reach (the GUI may
        hide it from the trainee; the instructor's screen shows it)."""
        ph = self.phase
        return None if ph is None else _angle_deg(self.pose.detector_dir_lps,
                                                  ph.pose.detector_dir_lps)

    # C-arm
    def rotate(self, d_table_primary_deg: float) -> RehearsalState:
        """Rotate the C-arm (table-relative primary angle) by ``d`` degrees, within limits."""
        self._emit({"type": "rotate", "d_deg": float(d_table_primary_deg)}, _moved)
        return self.state

    def angulate(self, d_table_secondary_deg: float) -> RehearsalState:
        """Angulate the C-arm (table-relative secondary angle) by ``d`` degrees."""
        self._emit({"type": "angulate", "d_deg": float(d_table_secondary_deg)}, _moved)
        return self.state

    def move_to(self, table_primary_deg: float, table_secondary_deg: float) -> RehearsalState:
        """Drive the C-arm to table angles (a stored position, e.g. a lateral preset)."""
        self._emit({"type": "move_to",
                    "table_deg": [float(table_primary_deg), float(table_secondary_deg)]},
                   _moved)
        return self.state

    def shot(self):
        """Take a fluoro shot of the current view: renders (with the needle from entry to tip
        when placed), counts it, and returns the image (also in :attr:`last_image`)."""
        if self.state.ended:
            raise RehearsalError("the attempt has ended; start a new one to go on")
        pose = self.pose
        needles = []
        if self.state.entry_lps is not None and self.state.depth_mm >= 0.5:
            needles = [(self.state.entry_lps.copy(), self.state.tip_lps)]
        image = self.renderer(pose, self.setup.isocenter_lps, needles)
        self.last_image = image
        self._emit({"type": "shot", "table_deg": [round(v, 4) for v in self.state.table_deg],
                    "pose": pose_json(pose)})
        return image

    def lateral_plane_pose(self) -> CArmPose:
        """A biplane suite's lateral plane: the true lateral of the target vertebra (on the
        needle's entry side once it is placed, else on the reference's), within the lateral
        plane's limits (the nearest reachable lateral otherwise)."""
        if not self.setup.biplane:
            raise RehearsalError("this suite is monoplane: turn the C-arm to a lateral instead")
        s = self.state
        ref = self.setup.reference
        entry = s.entry_lps if s.entry_lps is not None else np.asarray(ref["entry_lps"], float)
        aim = s.aim_lps if s.aim_lps is not None else np.asarray(ref["target_lps"], float)
        try:
            lateral = self.case.vertebra(self.target.level).left_lps
        except KeyError:
            lateral = None
        assert self.setup.lateral_limits is not None  # biplane
        return lateral_view(entry, aim, lateral, self.setup.patient_position,
                            self.setup.lateral_limits, self.target.level,
                            **self.setup.chain).pose

    def lateral_shot(self):
        """On a biplane suite, a shot of the lateral plane (the frontal plane stays where it
        is): rendered, counted as one more exposure, and returned (also in
        :attr:`last_lateral_image`)."""
        if self.state.ended:
            raise RehearsalError("the attempt has ended; start a new one to go on")
        pose = self.lateral_plane_pose()
        needles = []
        if self.state.entry_lps is not None and self.state.depth_mm >= 0.5:
            needles = [(self.state.entry_lps.copy(), self.state.tip_lps)]
        image = self.renderer(pose, self.setup.isocenter_lps, needles)
        self.last_lateral_image = image
        self._emit({"type": "shot", "plane": "lateral",
                    "table_deg": [round(v, 4) for v in pose.table_angles_deg],
                    "pose": pose_json(pose)})
        return image

    def declare_view(self) -> float:
        """Declare the current Task 1 view reached; returns the angle error (deg) recorded."""
        ph = self.phase
        if ph is None:
            raise RehearsalError("every view of Task 1 has been declared already")
        tol = self.setup.tolerance_deg
        self._emit({"type": "declare", "phase": ph.name},
                   lambda st: {"angle_error_deg": st.declared[ph.name],
                               "within_tolerance": bool(st.declared[ph.name] <= tol)})
        return self.state.declared[ph.name]

    # needle
    def _inserted_in_bone(self, entry, direction, depth) -> bool:
        if depth <= 0.0:
            return False
        s = np.arange(0.0, depth + 1e-9, 0.5)
        pts = entry[None, :] + s[:, None] * direction[None, :]
        return bool(np.any(self.case.hu_at(pts) >= BONE_HU))

    def place(self, entry_lps, target_lps) -> RehearsalState:
        """Pick the needle's line (entry and target, LPS mm). With the needle already
        inserted this is a re-aim (a counted correction), allowed only while no part of the
        needle is in bone: the same entry pivots the needle about its skin entry keeping its
        depth; a new entry means a new puncture (depth 0)."""
        s = self.state
        entry = np.asarray(entry_lps, float).reshape(3)
        aim = np.asarray(target_lps, float).reshape(3)
        if s.depth_mm > 0.0 and s.entry_lps is not None:
            if self._inserted_in_bone(s.entry_lps, s.dir_lps, s.depth_mm):
                raise NeedleInBone(
                    "the needle is in bone and cannot be re-aimed; withdraw it out of the bone "
                    "first")
            if np.linalg.norm(entry - s.entry_lps) < 1e-6 and np.linalg.norm(aim - entry) >= 1.0:
                new_dir = (aim - entry) / np.linalg.norm(aim - entry)
                if self._inserted_in_bone(entry, new_dir, s.depth_mm):
                    raise NeedleInBone(
                        "pivoting the needle this way would drive it into bone; withdraw it "
                        "further first")
        self._emit({"type": "place", "entry_lps": _r(entry), "target_lps": _r(aim),
                    "correction": bool(s.depth_mm > 0.0)})
        return self.state

    def advance(self, mm: float) -> RehearsalState:
        """Advance the needle ``mm`` along its line (stops at the needle's length)."""
        self._emit({"type": "advance", "mm": float(mm)}, _needle_outcome)
        return self.state

    def withdraw(self, mm: float) -> RehearsalState:
        """Pull the needle back ``mm`` (not beyond the skin entry)."""
        self._emit({"type": "withdraw", "mm": float(mm)}, _needle_outcome)
        return self.state

    def needle_px(self, size: int = 256) -> dict | None:
        """Where the needle's entry and tip appear on the current view rendered at
        ``size`` x ``size`` (pixel ``(u, v)``), and whether the tip is in the field."""

        if self.state.entry_lps is None:
            return None
        tip = self.state.tip_lps
        assert tip is not None  # the needle is placed
        proj = Projection(self.pose.with_image_size(size), self.setup.isocenter_lps)
        uv = proj.detector_px_from_lps(np.stack([self.state.entry_lps, tip]))
        return {"entry_px": uv[0], "tip_px": uv[1],
                "tip_in_view": bool(proj.contains_px(uv[1])[0])}

    def lateral_pose(self) -> CArmPose:
        """The progression (lateral) view of the current needle line: perpendicular to it, the
        closest to the target vertebra's true lateral on the entry side, or on the other side
        when only that one is within the C-arm's reach."""
        s = self.state
        if s.entry_lps is None:
            raise RehearsalError("place the needle first: the progression view follows it")
        assert s.aim_lps is not None  # placed with the entry
        try:
            lateral = self.case.vertebra(self.target.level).left_lps
        except KeyError:
            lateral = None
        pg = progression_pose(s.entry_lps, s.aim_lps, self.setup.patient_position,
                              lateral_lps=lateral, **self.setup.chain)
        # as the plan's progression view: the lateral on the entry side, else the mirrored one
        # (the detector on the other side, the same beam line) when only that one is in reach
        lim = self.setup.limits
        if not check_reachable(pg, lim).reachable:
            other = CArmPose.from_detector_dir(-pg.detector_dir_lps, self.setup.patient_position,
                                               **self.setup.chain)
            if check_reachable(other, lim).reachable:
                pg = other
        return pg

    def depth_reading(self, plane: str = "frontal") -> dict:
        """How deep the tip is, as a progression (lateral) view shows it: mm anterior of the
        vertebral body's posterior wall (negative: not yet in the body) and the fraction of
        the body's depth (0 posterior wall, 1 anterior cortex). On the frontal plane it raises
        unless the current view is within :data:`PROGRESSION_TOLERANCE_DEG` of perpendicular
        to the needle; ``plane="lateral"`` reads it on a biplane suite's lateral plane, which
        must be within that angle of the vertebra's true lateral (the posterior wall in
        profile)."""
        s = self.state
        if s.entry_lps is None:
            raise RehearsalError("place the needle first")
        assert s.dir_lps is not None  # placed with the entry
        if plane == "lateral":
            pose = self.lateral_plane_pose()
            lat = self.case.vertebra(self.target.level).left_lps
            off = math.degrees(math.acos(min(1.0, abs(float(pose.detector_dir_lps @ lat)))))
            if off > PROGRESSION_TOLERANCE_DEG:
                raise RehearsalError(
                    f"the lateral plane is {abs(off):.0f} deg from the vertebra's true lateral "
                    "(its posterior wall is not in profile): the depth cannot be judged on it")
        elif plane != "frontal":
            raise ValueError(f"plane must be 'frontal' or 'lateral', got {plane!r}")
        else:
            off = 90.0 - _angle_deg(self.pose.detector_dir_lps, s.dir_lps)
        if plane == "frontal" and abs(off) > PROGRESSION_TOLERANCE_DEG:
            raise RehearsalError(
                f"this view is {abs(off):.0f} deg from a progression view (the needle is "
                "foreshortened); turn the C-arm to a lateral of the needle to judge depth")
        vert = self.case.vertebra(self.target.level)
        tip = s.tip_lps
        assert tip is not None  # the needle is placed
        post = float(vert.to_local(tip)[0][1])
        wall = vert.posterior_wall_offset_mm()
        ahead = wall - post
        return {"mm_anterior_of_posterior_wall": ahead,
                "fraction_of_body_depth": ahead / vert.body_depth_mm,
                "view_off_perpendicular_deg": abs(off)}

    # ending and saving
    def end(self) -> Score:
        """End the attempt: run the planner's checks on the trainee's needle, score it."""
        if self.state.ended:
            raise RehearsalError("the attempt has ended already")
        self.trajectory = trainee_trajectory(self.case, self.setup, self.state)
        self.ended_at = _now_iso()
        self._emit({"type": "end"})
        checks = None if self.trajectory is None else [check_to_json(c) for c in
                                                      self.trajectory.checks]
        self.score = score_state(self.setup, self.state, checks)
        return self.score

    def attempt_json(self) -> dict:
        """The ``fluoroplan.rehearsal/1`` record of this attempt (ended or not)."""
        vol = self.case.volume
        series = vol.series_json() if hasattr(vol, "series_json") else {}
        return {
            "schema": REHEARSAL_SCHEMA,
            "trainee": self.trainee,
            "started": self.started,
            "ended": self.ended_at,
            "case": {
                "series_instance_uid": series.get("series_instance_uid", ""),
                "study_instance_uid": series.get("study_instance_uid", ""),
                "fingerprint": series.get("fingerprint", ""),
                "patient_position": self.setup.patient_position,
                "description": getattr(vol, "identifiers", {}).get("series_description", ""),
            },
            "target": self.setup.target,
            "reference": self.setup.reference,
            "settings": setup_json(self.setup),
            "events": [dict(e) for e in self.events],
            "final_state": state_json(self.state),
            "trainee_trajectory": None if self.trajectory is None else trajectory_to_json(self.trajectory),
            "score": None if self.score is None else score_json(self.score),
        }

    def save(self, path) -> None:
        write_json_atomic(path, self.attempt_json())


# --- saved attempts -------------------------------------------------------------------------
def load_attempt(path) -> dict:
    """Read a saved attempt, checking its schema."""

    return read_json(path, REHEARSAL_SCHEMA)


def replay(attempt_json: dict) -> Iterator[RehearsalState]:
    """Every state of a saved attempt, in order (the state after each event), rebuilt from
    the events and settings alone (no CT needed)."""
    setup = setup_from_json(attempt_json)
    state = initial_state(setup)
    for event in attempt_json["events"]:
        state = apply_event(state, event, setup)
        yield state


def score_attempt(attempt_json: dict, case: PlanningCase | None = None) -> Score:
    """Re-score a saved attempt: replay its events, then score the final state. With ``case``
    the planner's checks of the trainee needle are re-run (the CT must be the attempt's);
    without it the checks saved in the attempt are used."""
    setup = setup_from_json(attempt_json)
    states = deque(replay(attempt_json), maxlen=1)
    if not states:
        raise RehearsalError("the attempt has no events")
    if case is not None:
        want = attempt_json["case"].get("fingerprint")
        vol = case.volume
        have = vol.fingerprint() if hasattr(vol, "fingerprint") else None
        if want and have and want != have:
            raise RehearsalError(
                f"this attempt was made on another CT (fingerprint {want}, this one {have})")
        traj = trainee_trajectory(case, setup, states[0])
        checks = None if traj is None else [check_to_json(c) for c in traj.checks]
    else:
        saved = attempt_json.get("trainee_trajectory")
        checks = None if saved is None else list(saved["checks"])
    return score_state(setup, states[0], checks)
