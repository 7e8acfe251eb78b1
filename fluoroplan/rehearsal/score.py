"""Scoring of a rehearsal attempt against the expert (reference) trajectory.

The scale, out of 100 points (each part is lost, never negative, and every lost point comes
with its reason in :attr:`Score.lost`):

**30 - bull's-eye angle.** Task 1 has one or two declared views (the screw's bull's-eye when
the case has a screw to start from, then the working view = the expert trajectory's
bull's-eye). The 30 points are shared equally between them. A view declared within the
tolerance (default 2 deg between the detector direction and the reference) loses nothing;
beyond it the view's share is lost linearly, all of it at ``tolerance + 10`` deg
(:data:`BULLSEYE_FULL_LOSS_DEG`). One view, 4 deg off with the 2 deg tolerance:
``30 * (4 - 2) / 10 = 6`` points. A view never declared loses its whole share.

**15 - shots.** :data:`FREE_SHOTS` fluoro shots are free; each further shot costs
:data:`POINTS_PER_EXTRA_SHOT`, each needle correction (re-aim after insertion)
:data:`POINTS_PER_CORRECTION`; at most 15 in all.

**35 - end point.** Distance (mm) from the needle tip at the end of the attempt to the expert
target: free up to :data:`ENDPOINT_FREE_MM`, then :data:`POINTS_PER_MM` per mm, at most 35
(all of it from 8 mm). A 3 mm error costs ``5 * (3 - 1) = 10`` points.

**20 - safety.** Every check the planner runs (:func:`fluoroplan.planner.propose.
build_trajectory` on the trainee's entry and final tip). A failed check costs its weight
(:data:`SAFETY_WEIGHTS`; a check crossing the canal, the medial pedicle wall or the pleura
costs all 20), most severe first, until the 20 points are spent; a warning costs nothing but is
listed. A needle never inserted loses the 20 points (its safety cannot be judged).

Scoring is a pure function of the replayed state and the checks, so a saved attempt scores
the same when re-scored (:func:`fluoroplan.rehearsal.session.score_attempt`).
"""

from __future__ import annotations

import math

from fluoroplan.model.plan import format_check_value
from fluoroplan.model.rehearsal import Score

BULLSEYE_POINTS = 30.0
SHOT_POINTS = 15.0
ENDPOINT_POINTS = 35.0
SAFETY_POINTS = 20.0

BULLSEYE_FULL_LOSS_DEG = 10.0
"""Degrees beyond the tolerance at which a declared view's whole share is lost."""
FREE_SHOTS = 10
POINTS_PER_EXTRA_SHOT = 1.0
POINTS_PER_CORRECTION = 2.0
ENDPOINT_FREE_MM = 1.0
POINTS_PER_MM = 5.0

SAFETY_WEIGHTS = {
    "spinal canal clearance": 20.0,
    "medial pedicle wall before the posterior wall": 20.0,
    "lung / pleura": 20.0,
    "metal clearance": 10.0,
    "tip margin to the anterior cortex": 10.0,
    "lateral pedicle cortex breach": 5.0,
    "needle outside the skin": 5.0,
    "bull's-eye view reachable": 5.0,
    "progression view reachable": 5.0,
}
"""Points a failed check costs (a check not listed here costs :data:`OTHER_CHECK_WEIGHT`)."""
OTHER_CHECK_WEIGHT = 5.0


def bullseye_loss(errors_deg: dict, labels: dict, tolerance_deg: float) -> list[tuple[float, str]]:
    """Lost points of the declared views (see the module docstring)."""
    if not errors_deg:
        return []
    share = BULLSEYE_POINTS / len(errors_deg)
    out = []
    for name, err in errors_deg.items():
        label = labels.get(name, name)
        if err is None:
            out.append((share, f"{label}: never declared"))
            continue
        over = max(0.0, float(err) - tolerance_deg)
        lost = share * min(1.0, over / BULLSEYE_FULL_LOSS_DEG)
        if lost > 0:
            out.append((lost, f"{label}: declared {err:.1f} deg from the reference "
                              f"(tolerance {tolerance_deg:.1f} deg)"))
    return out


def shot_loss(shots: int, corrections: int) -> list[tuple[float, str]]:
    out, left = [], SHOT_POINTS
    extra = max(0, int(shots) - FREE_SHOTS)
    if extra:
        p = min(left, extra * POINTS_PER_EXTRA_SHOT)
        left -= p
        out.append((p, f"{shots} fluoro shots ({extra} beyond the {FREE_SHOTS} free ones)"))
    if corrections and left > 0:
        p = min(left, corrections * POINTS_PER_CORRECTION)
        out.append((p, f"{corrections} needle correction(s) after insertion"))
    return out


def endpoint_loss(tip_error_mm: float | None) -> list[tuple[float, str]]:
    if tip_error_mm is None:
        return [(ENDPOINT_POINTS, "no needle placed: end point missed")]
    over = max(0.0, float(tip_error_mm) - ENDPOINT_FREE_MM)
    lost = min(ENDPOINT_POINTS, POINTS_PER_MM * over)
    if lost <= 0:
        return []
    return [(lost, f"needle tip {tip_error_mm:.1f} mm from the expert target "
                   f"({ENDPOINT_FREE_MM:.0f} mm free)")]


def safety_loss(checks: list[dict] | None) -> list[tuple[float, str]]:
    """Lost safety points of check blocks (``check_to_json``: name, status, value, unit)."""
    if checks is None:
        return [(SAFETY_POINTS, "needle not inserted: its safety cannot be judged")]
    failed = [c for c in checks if c["status"] == "fail"]
    failed.sort(key=lambda c: -SAFETY_WEIGHTS.get(c["name"], OTHER_CHECK_WEIGHT))
    out, left = [], SAFETY_POINTS
    for c in failed:
        w = SAFETY_WEIGHTS.get(c["name"], OTHER_CHECK_WEIGHT)
        p = min(left, w)
        left -= p
        tail = "" if p == w else f" (weight {w:.0f}; the safety points were already spent)"
        out.append((p, f"safety check failed: {c['name']} = {_value(c)}{tail}"))
    for c in checks:
        if c["status"] == "warn":
            out.append((0.0, f"safety check warning: {c['name']} = {_value(c)}"))
    return out


def _value(c: dict) -> str:
    return format_check_value(c.get("value"), c.get("unit", ""), c.get("at_least"), 1, "None")


def score(
    view_errors_deg: dict,
    view_labels: dict,
    tolerance_deg: float,
    shots: int,
    corrections: int,
    tip_error_mm: float | None,
    checks: list[dict] | None,
    extra_metrics: dict | None = None,
) -> Score:
    """Score an attempt from its measures (see the module docstring for the scale).

    Parameters
    ----------
    view_errors_deg : dict
        Phase name -> angle (deg) between the detector direction at declaration and the
        phase's reference view; None for a phase never declared.
    view_labels : dict
        Phase name -> the words used in reasons ("screw L2-left bull's-eye").
    tolerance_deg : float
        Angle within which a declared view loses nothing.
    shots, corrections : int
        Fluoro shots taken and needle corrections after insertion.
    tip_error_mm : float or None
        Distance from the final tip to the expert target (None: no needle placed).
    checks : list of dict or None
        The planner's checks of the trainee trajectory (``check_to_json``), None when no
        needle was inserted.
    """
    parts = {
        "bullseye": bullseye_loss(view_errors_deg, view_labels, tolerance_deg),
        "shots": shot_loss(shots, corrections),
        "endpoint": endpoint_loss(tip_error_mm),
        "safety": safety_loss(checks),
    }
    lost = tuple(x for k in ("bullseye", "shots", "endpoint", "safety") for x in parts[k])
    total = 100.0 - sum(p for p, _ in lost)
    declared = [e for e in view_errors_deg.values() if e is not None]
    metrics = {
        "view_errors_deg": {k: _round(v) for k, v in view_errors_deg.items()},
        "bullseye_error_deg": _round(max(declared)) if declared else None,
        "shots": int(shots),
        "corrections": int(corrections),
        "tip_error_mm": _round(tip_error_mm),
        **(extra_metrics or {}),
    }
    return Score(
        total=max(0.0, total),
        lost=lost,
        parts={k: sum(p for p, _ in v) for k, v in parts.items()},
        metrics=metrics,
    )


def _round(v, nd: int = 4):
    if v is None:
        return None
    v = float(v)
    return round(v, nd) if math.isfinite(v) else None
