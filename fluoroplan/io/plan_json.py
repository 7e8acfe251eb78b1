"""The JSON forms of the plan's objects (``fluoroplan.plan/1``): C-arm pose, needle, target,
check, trajectory, "no safe trajectory" and plan.

``*_to_json`` turn :mod:`fluoroplan.model.plan` objects into JSON-ready dicts;
:func:`plan_from_json` (and :func:`check_from_json` for one check) builds them back from a
document, first checked against ``resources/plan.schema.json`` (its form:
:mod:`fluoroplan.io.schemas`) and then for consistency: the stored direction, depth, lengths
and status must follow from the stored points and checks, and every trajectory must name one
of the plan's targets. Any problem raises :class:`PlanFormatError` naming the field
(``trajectories[2] (L3-left-...).entry_lps``); nothing is half-built.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from fluoroplan.geometry.carm import CArmPose
from fluoroplan.io.jsonio import PLAN_SCHEMA
from fluoroplan.io.schemas import SchemaViolation, check
from fluoroplan.model.plan import (
    Check,
    Measurement,
    Needle,
    NoSafeTrajectory,
    Plan,
    Target,
    Trajectory,
)

__all__ = [
    "PlanFormatError",
    "check_from_json",
    "check_to_json",
    "needle_to_json",
    "no_safe_to_json",
    "plan_from_json",
    "plan_to_json",
    "pose_from_json",
    "pose_json",
    "target_to_json",
    "trajectory_to_json",
]

VIEW_KEYS = ("bullseye", "working_view", "progression")


class PlanFormatError(SchemaViolation):
    """A plan document (the JSON form of a :class:`Plan`) has a missing, mistyped or
    inconsistent field. The message names the field (e.g. ``trajectories[2].entry_lps``)."""


def _fail(where: str, what: str) -> PlanFormatError:
    return PlanFormatError(f"{where} {what}")


def _check(d, part: str | None, where: str) -> None:
    try:
        check(d, "plan", part, where)
    except SchemaViolation as err:
        raise PlanFormatError(str(err)) from None


def _r(v, nd: int = 3) -> list[float]:
    return [round(float(x), nd) for x in np.asarray(v, float).ravel()]


def _vec(v) -> np.ndarray:
    return np.asarray(v, float)


# --- C-arm pose (the bull's-eye, working and progression views' blocks) ---------------------
def pose_json(pose: CArmPose) -> dict:
    """The pose block of the plan JSON: detector direction, patient- and table-relative
    angles (degrees) and the room-terms sentence."""
    tp, ts = pose.table_angles_deg
    return {
        "detector_dir_lps": [round(float(v), 6) + 0.0 for v in pose.detector_dir_lps],
        "primary_deg": round(pose.primary_deg, 3) + 0.0,
        "secondary_deg": round(pose.secondary_deg, 3) + 0.0,
        "table_primary_deg": round(tp, 3) + 0.0,  # no -0.0
        "table_secondary_deg": round(ts, 3) + 0.0,
        "text": pose.text,
    }


def pose_from_json(block: dict, patient_position: str, **chain) -> CArmPose:
    """Rebuild a pose from a :func:`pose_json` block (the patient-relative pair is used)."""
    return CArmPose(
        float(block["primary_deg"]), float(block["secondary_deg"]), patient_position, **chain
    )


# --- needle ---------------------------------------------------------------------------------
def needle_to_json(needle: Needle) -> dict:
    return dataclasses.asdict(needle)  # gauge, outer_diameter_mm, length_mm, beveled


def _needle(d: dict, where: str) -> Needle:
    try:
        return Needle(gauge=int(d["gauge"]), outer_diameter_mm=d["outer_diameter_mm"],
                      length_mm=d["length_mm"], beveled=d["beveled"])
    except ValueError as err:
        raise _fail(where, str(err)) from None


# --- target ---------------------------------------------------------------------------------
def target_to_json(target: Target) -> dict:
    return {
        "kind": target.kind,
        "ref": target.ref,
        "level": target.level,
        "side": target.side,
        "point_lps": _r(target.point_lps),
        "description": target.description,
    }


def _target(d: dict) -> Target:
    side = d["side"]
    return Target(kind=d["kind"], ref=d["ref"], level=d["level"], side=side,
                  point_lps=_vec(d["point_lps"]), description=d["description"],
                  sides=(side,) if side else ("left", "right"))


# --- check ----------------------------------------------------------------------------------
def check_to_json(c: Check) -> dict:
    v = c.value
    if isinstance(v, (float, np.floating)):
        v = round(float(v), 3)
    lim = c.limit
    if isinstance(lim, (float, np.floating)):
        lim = round(float(lim), 3)
    return {
        "name": c.name,
        "value": v,
        "at_least": None if c.at_least is None else round(float(c.at_least), 3),
        "limit": lim,
        "status": c.status,
        "unit": c.unit,
        "detail": c.detail,
    }


def check_from_json(d, where: str = "check") -> Check:
    """A check of a plan document; ``at_least`` may be absent (older plan files)."""
    _check(d, "check", where)
    return _check_obj(d, where)


def _check_obj(d: dict, where: str) -> Check:
    at_least = d.get("at_least")
    if at_least is not None and d["value"] is not None:
        raise _fail(f"{where}.at_least", f"is {at_least!r} but the value is "
                    f"{d['value']!r}: a check is either measured (value) or beyond its "
                    "search range (value null, at_least the range), not both")
    return Check(name=d["name"], value=d["value"], limit=d["limit"], status=d["status"],
                 unit=d["unit"], detail=d["detail"], at_least=at_least)


# --- trajectory -----------------------------------------------------------------------------
def trajectory_to_json(t: Trajectory) -> dict:
    out = {
        "id": t.id,
        "target": {"kind": t.target.kind, "ref": t.target.ref},
        "level": t.level,
        "side": t.side,
        "approach": t.approach,
        "entry_lps": _r(t.entry_lps),
        "target_lps": _r(t.target_lps),
        "direction_lps": _r(t.direction_lps, 6),
        "depth_mm": round(t.depth_mm, 2),
        "needle": needle_to_json(t.needle),
    }
    out.update(t.views)
    out["checks"] = [check_to_json(c) for c in t.checks]
    out["cost"] = round(float(t.cost), 4)
    out["cost_terms"] = {k: round(float(v), 4) for k, v in t.cost_terms.items()}
    out["status"] = t.status
    out["contact_lps"] = None if t.contact_lps is None else _r(t.contact_lps)
    out["slide_mm"] = round(t.slide_mm, 2)
    out["insertion_mm"] = round(t.insertion_mm, 2)
    out["target_detail"] = target_to_json(t.target)
    out["notes"] = list(t.notes)
    out["edited"] = t.edited
    return out


def _trajectory(d: dict, targets: dict | None, where: str) -> Trajectory:
    tid = d["id"]
    where = f"{where} ({tid})"
    key = (d["target"]["kind"], d["target"]["ref"])
    detail = _target(d["target_detail"])
    if (detail.kind, detail.ref) != key:
        raise _fail(f"{where}.target_detail", f"names {detail.id}, not {key[0]}:{key[1]}")
    target = (targets or {}).get(key, detail)
    if targets is not None and key not in targets:
        raise _fail(f"{where}.target", f"names {key[0]}:{key[1]}, which is not among the "
                    "plan's targets")
    if target_to_json(target) != target_to_json(detail):
        raise _fail(f"{where}.target_detail", f"differs from the plan's target {target.id}")
    views = {name: json.loads(json.dumps(d[name])) for name in VIEW_KEYS if name in d}
    checks = tuple(_check_obj(c, f"{where}.checks[{n}]") for n, c in enumerate(d["checks"]))
    contact = d["contact_lps"]
    try:
        traj = Trajectory(
            id=tid, target=target, approach=d["approach"], level=d["level"], side=d["side"],
            entry_lps=_vec(d["entry_lps"]), target_lps=_vec(d["target_lps"]),
            needle=_needle(d["needle"], f"{where}.needle"),
            contact_lps=None if contact is None else _vec(contact), checks=checks,
            cost=d["cost"], cost_terms=dict(d["cost_terms"]), views=views,
            notes=tuple(d["notes"]), edited=d["edited"],
        )
    except ValueError as err:
        raise _fail(where, str(err)) from None
    # derived values must agree with the stored ones: a mismatch means a damaged or
    # hand-edited file, whose numbers cannot be trusted
    stored_dir = _vec(d["direction_lps"])
    if float(stored_dir @ traj.direction_lps) < np.cos(np.radians(0.1)):
        raise _fail(f"{where}.direction_lps", "does not point from the entry to the target")
    for name in ("depth_mm", "insertion_mm", "slide_mm"):
        stored = d[name]
        if abs(stored - getattr(traj, name)) > 0.05:
            raise _fail(f"{where}.{name}", f"is {stored} but the entry, contact and target "
                        f"give {getattr(traj, name):.2f} mm")
    if d["status"] != traj.status:
        raise _fail(f"{where}.status", f"is {d['status']!r} but its checks give "
                    f"{traj.status!r}")
    return traj


# --- no safe trajectory ---------------------------------------------------------------------
def no_safe_to_json(u: NoSafeTrajectory) -> dict:
    return {
        "target": {"kind": u.target.kind, "ref": u.target.ref},
        "level": u.target.level,
        "approach": u.approach,
        "result": "no safe trajectory",
        "failed_check": u.failed_check,
        "reason": u.reason,
    }


def _no_safe(d: dict, targets: dict, where: str) -> NoSafeTrajectory:
    key = (d["target"]["kind"], d["target"]["ref"])
    if key not in targets:
        raise _fail(f"{where}.target", f"names {key[0]}:{key[1]}, which is not among the "
                    "plan's targets")
    target = targets[key]
    if d["level"] != target.level:
        raise _fail(f"{where}.level", f"differs from its target's level {target.level!r}")
    return NoSafeTrajectory(target=target, approach=d["approach"],
                            failed_check=d["failed_check"], reason=d["reason"])


# --- plan -----------------------------------------------------------------------------------
def plan_to_json(plan: Plan) -> dict:
    return {
        "schema": PLAN_SCHEMA,
        "series": plan.series,
        "procedure_position": plan.procedure_position,
        "planner": plan.planner,
        "created": plan.created,
        "modified": plan.modified,
        "targets": [target_to_json(t) for t in plan.targets],
        "trajectories": [trajectory_to_json(t) for t in plan.trajectories],
        "no_safe_trajectory": [no_safe_to_json(u) for u in plan.unsolved],
        "analysis": plan.analysis,
        "measurements": [measurement_to_json(m) for m in plan.measurements],
    }


def measurement_to_json(m: Measurement) -> dict:
    return {"id": m.id, "kind": m.kind, "view": m.view,
            "points_lps": [_r(p) for p in m.points_lps], "value": round(m.value, 2),
            "unit": "mm" if m.kind == "distance" else "deg"}


def _measurement(d: dict, where: str) -> Measurement:
    try:
        return Measurement(id=d["id"], kind=d["kind"], points_lps=np.asarray(d["points_lps"],
                                                                             float),
                           view=d.get("view", ""))
    except ValueError as err:
        raise _fail(where, str(err)) from None


def plan_from_json(d) -> Plan:
    """A plan from its ``fluoroplan.plan/1`` document, validated completely before anything
    is returned (raises :class:`PlanFormatError` naming the first bad field)."""
    if not isinstance(d, dict):
        raise _fail("the plan", f"must be an object, not {type(d).__name__}")
    _check(d, None, "")
    targets = tuple(_target(t) for t in d["targets"])
    by_key = {(t.kind, t.ref): t for t in targets}
    if len(by_key) != len(targets):
        raise _fail("targets", "name the same target twice")
    trajs = tuple(_trajectory(t, by_key, f"trajectories[{n}]")
                  for n, t in enumerate(d["trajectories"]))
    unsolved = tuple(_no_safe(u, by_key, f"no_safe_trajectory[{n}]")
                     for n, u in enumerate(d["no_safe_trajectory"]))
    return Plan(series=json.loads(json.dumps(d["series"])), targets=targets, trajectories=trajs,
                unsolved=unsolved, planner=d["planner"], created=d["created"],
                modified=d["modified"], analysis=json.loads(json.dumps(d["analysis"])),
                procedure_position=d.get("procedure_position", "HFP"),
                measurements=tuple(_measurement(m, f"measurements[{n}]")
                                   for n, m in enumerate(d.get("measurements", []))))
