"""Automatic proposals: a coarse-to-fine search over each approach's candidates, ranked by a
cost whose terms the report can explain; full checks on the winners."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from fluoroplan.io.progress import CancelToken, ProgressCallback, no_progress
from fluoroplan.model.plan import Needle, NoSafeTrajectory, Plan, Target, Trajectory
from fluoroplan.planner.approaches import Candidate, applicable, generate
from fluoroplan.planner.case import PROCEDURE_POSITION, PlanningCase
from fluoroplan.planner.checks import run_checks, views_for
from fluoroplan.planner.notes import plan_analysis_notes
from fluoroplan.planner.targets import manual_target, targets_from_analysis
from fluoroplan.planner.visibility import CHECK_PREFIX as VISIBILITY_PREFIX

# cost weights (per mm or per degree) - the report prints each term
W_METAL = 10.0  # per mm of metal clearance below 2 mm
W_CANAL = 6.0  # per mm of canal clearance below 6 mm
W_AIR = 4.0  # per mm of pleura margin below 8 mm
W_DEPTH = 0.03  # per mm of needle inside the patient
W_TILT = 0.4  # per degree away from the preferred tilt of a parallel / tip approach
W_LATERAL = 0.05  # per mm of skin entry beyond 70 mm from the midline
W_FORAMEN = 3.0  # per mm of needle-to-foramen distance below FORAMEN_COST_MM
FORAMEN_COST_MM = 4.0
W_BONE = 5.0  # per mm of another bone grazed
W_VIS = 4.0  # per unit fraction of a needed landmark hidden by metal (worst of the views)
PREFERRED_TILT_DEG = {"transpedicular-parallel": 5.0, "transpedicular-tip": 9.0}


@dataclass(frozen=True, eq=False)
class Scored:
    cand: Candidate
    entry: np.ndarray
    cost: float
    terms: dict
    hard_fail: str  # "" when none
    blocker: str = ""  # what blocks it, in words ("crosses the left ilium")


def _quick(case: PlanningCase, target: Target, cand: Candidate) -> Scored | None:
    """Screen a candidate with the fast checks (all but the C-arm ones) and score it."""
    n = cand.aim_lps - cand.params["through_lps"]
    n = n / np.linalg.norm(n)
    entry = case.skin_entry(cand.aim_lps, n)
    if entry is None or np.linalg.norm(cand.aim_lps - entry) < 10.0:
        return None
    depth = float(np.linalg.norm(cand.aim_lps - entry))
    if cand.contact_lps is not None:
        depth += float(np.linalg.norm(cand.target_lps - cand.aim_lps))
    traj = Trajectory(id="candidate", target=target, approach=cand.approach,
                      level=target.level, side=cand.side, entry_lps=entry,
                      target_lps=cand.target_lps, needle=Needle.for_depth(depth),
                      contact_lps=cand.contact_lps)
    checks = run_checks(case, traj, fast=True)
    terms = cost_terms(checks, traj, cand)
    bad = next((c for c in checks if c.status == "fail"), None)
    return Scored(cand, entry, float(sum(terms.values())), terms, bad.name if bad else "",
                  blocker(bad) if bad else "")


def blocker(check) -> str:
    """What a failed check says blocks a path, in a few words ("crosses the left ilium",
    "enters the spinal canal")."""
    if check.name == "bone in the way" and check.detail.startswith("crosses "):
        first = check.detail[len("crosses "):].split(";")[0]
        return "crosses " + first.split(" for ")[0]
    if check.name == "spinal canal clearance" and check.value is not None:
        return "enters the spinal canal"
    if check.name == "medial pedicle wall before the posterior wall":
        return "crosses the medial pedicle wall before the posterior wall"
    if check.name == "metal clearance":
        return "touches metal"
    if check.name == "lung / pleura":
        return "crosses the lung or pleura"
    return f"fails '{check.name}'"


def _plural(phrase: str) -> str:
    """"crosses the left ilium" -> "cross the left ilium" (after a count above one)."""
    verb, _, rest = phrase.partition(" ")
    for sing, plu in (("crosses", "cross"), ("touches", "touch"), ("enters", "enter"),
                      ("fails", "fail")):
        if verb == sing:
            return f"{plu} {rest}"
    return phrase


def blockers_sentence(ranked: list) -> str:
    """Per approach, what blocks its candidates: "every one of the 40 candidates crosses the
    left ilium", or the commonest blockers with their counts."""
    counts: dict[str, int] = {}
    for q in ranked:
        key = q.blocker or q.hard_fail
        counts[key] = counts.get(key, 0) + 1
    order = sorted(counts.items(), key=lambda kv: -kv[1])
    n = len(ranked)
    if len(order) == 1:
        return f"every one of the {n} candidate paths {order[0][0]}"
    return f"of {n} candidate paths, " + ", ".join(
        f"{c} {_plural(what) if c > 1 else what}" for what, c in order[:3]) + (
        f", {sum(c for _, c in order[3:])} fail otherwise" if len(order) > 3 else "")


def cost_terms(checks, traj: Trajectory, cand: Candidate | None = None) -> dict:
    """The explained cost of a trajectory: one term per concern, in cost units."""
    # a value beyond its search range counts as "at least that far" (its at_least); a value
    # that could not be measured at all (None, no at_least) stays the worst case
    val = {c.name: (c.at_least if c.value is None and c.at_least is not None else c.value)
           for c in checks}
    present = {c.name for c in checks}

    def num(name: str, absent: float, unknown: float) -> float:
        if name not in present:
            return absent
        v = val[name]
        return unknown if v is None or isinstance(v, str) else float(v)

    terms: dict[str, float] = {}
    no_metal = any(c.name == "metal clearance" and c.value is None and c.status == "pass"
                   for c in checks)  # a CT without metal
    metal = num("metal clearance", 99.0, 99.0 if no_metal else 0.0)
    terms["metal"] = W_METAL * max(0.0, 2.0 - metal)
    canal = num("spinal canal clearance", 99.0, 0.0)  # unknown canal: the worst case
    terms["canal"] = W_CANAL * max(0.0, 6.0 - canal)
    if val.get("medial pedicle wall before the posterior wall") is not None:
        medial = num("medial pedicle wall before the posterior wall", 99.0, 99.0)
        terms["medial wall"] = W_CANAL * max(0.0, 2.0 - medial)
    pleura = num("lung / pleura", 99.0, 0.0)
    terms["pleura"] = W_AIR * max(0.0, 8.0 - pleura)
    if "neural foramen (exiting root)" in present:
        foramen = num("neural foramen (exiting root)", 99.0, 0.0)
        terms["foramen"] = W_FORAMEN * max(0.0, FORAMEN_COST_MM - foramen)
    if "bone in the way" in present:  # a graze of another bone (a fail is never proposed)
        terms["bone in the way"] = W_BONE * num("bone in the way", 0.0, 0.0)
    terms["depth"] = W_DEPTH * traj.depth_mm
    if val.get("lateral pedicle cortex breach") is not None:
        terms["lateral breach"] = 1.0 * num("lateral pedicle cortex breach", 0.0, 0.0)
    ahead = num("tip margin to the anterior cortex", 40.0, 0.0)
    terms["anterior margin"] = 1.0 * max(0.0, 5.0 - ahead)
    lat = num("skin entry from the midline", 0.0, 100.0)
    terms["lateral entry"] = W_LATERAL * max(0.0, lat - 70.0)
    if cand is not None:
        pref = PREFERRED_TILT_DEG.get(cand.approach)
        if pref is not None:
            key = "tilt_deg" if "tilt_deg" in cand.params else "obliquity_deg"
            terms["tilt"] = W_TILT * abs(cand.params[key] - pref)
    return terms


def cost_terms_of(checks, traj: Trajectory) -> dict:
    return cost_terms(checks, traj, None)


def _seg(a, b, step=0.5):
    n = max(2, int(np.ceil(np.linalg.norm(b - a) / step)) + 1)
    t = np.linspace(0, 1, n)[:, None]
    return a * (1 - t) + b * t


def _screw_for(case: PlanningCase, cand: Candidate) -> str | None:
    best, dmin = None, np.inf
    for s in case.screws:
        d = float(np.linalg.norm(np.cross(cand.contact_lps - s.head_lps, s.axis_lps)))
        if d < dmin:
            best, dmin = s.id, d
    return best


def _search(case: PlanningCase, target: Target, approach: str, side: str,
            cancel: CancelToken | None) -> list[Scored]:
    """Coarse grid, then two refinements around the five best; returns all scored, best first."""
    scored = [q for c in generate(case, target, approach, side)
              if (q := _quick(case, target, c))]
    for scale in (0.5, 0.25):
        if cancel is not None:
            cancel.check()
        ok = sorted((q for q in scored if not q.hard_fail), key=lambda q: q.cost)[:5]
        seeds = ok or sorted(scored, key=lambda q: q.cost)[:3]
        for q in seeds[:3]:
            scored += [r for c in generate(case, target, approach, side, scale, q.cand.params)
                       if _one_step(c.params, q.cand.params) and (r := _quick(case, target, c))]
    return sorted(scored, key=lambda q: (bool(q.hard_fail), q.cost))


def _one_step(params: dict, around: dict) -> bool:
    """True for the neighbours of ``around`` that differ in exactly one search parameter."""
    diff = sum(
        1 for k, v in around.items()
        if isinstance(v, float) and abs(params.get(k, v) - v) > 1e-9
    )
    return diff == 1


def default_trajectory_id(target: Target, approach: str, side: str) -> str:
    """A readable id unique within a plan: what it treats, from which side, by which approach
    ("L2-left-transpedicular-parallel", "L4-fracture-right-transpedicular",
    "cage-L3-L4-left-transpedicular")."""
    if target.kind == "loose-screw":
        return f"{target.ref}-{approach}"
    if target.kind == "fracture":
        return f"{target.ref}-fracture-{side}-{approach}"
    return f"{target.kind}-{target.ref}-{side}-{approach}"


def build_trajectory(case: PlanningCase, target: Target, approach: str, side: str,
                     entry_lps, target_lps, contact_lps=None, traj_id: str | None = None,
                     explained: dict | None = None, edited: bool = False,
                     notes: tuple[str, ...] = ()) -> Trajectory:
    """A trajectory with its needle, views and checks computed (used by the search and by edits)."""
    entry_lps = np.asarray(entry_lps, float)
    aim = np.asarray(contact_lps if contact_lps is not None else target_lps, float)
    depth = float(np.linalg.norm(aim - entry_lps))
    if contact_lps is not None:
        depth += float(np.linalg.norm(np.asarray(target_lps, float) - aim))
    traj = Trajectory(
        id=traj_id or default_trajectory_id(target, approach, side),
        target=target, approach=approach, level=target.level, side=side,
        entry_lps=entry_lps, target_lps=np.asarray(target_lps, float),
        needle=Needle.for_depth(depth), contact_lps=contact_lps, edited=edited, notes=notes,
    )
    blocks, poses = views_for(case, traj)
    checks = run_checks(case, traj, poses)
    terms = dict(explained or {}) if explained else cost_terms_of(checks, traj)
    # the worst needed landmark metal hides in any of the three views (planner/visibility.py)
    vis = [float(c.value) for c in checks if c.name.startswith(VISIBILITY_PREFIX)
           and isinstance(c.value, (int, float))]
    terms["visibility"] = W_VIS * max(vis, default=0.0)
    for c in checks:
        if c.name.endswith("view reachable") and c.status == "fail":
            terms["unreachable view"] = terms.get("unreachable view", 0.0) + 20.0

    return replace(traj, views=blocks, checks=checks, cost=float(sum(terms.values())),
                   cost_terms=terms)


def manual_trajectory(case: PlanningCase, entry_lps, target_lps,
                      target: Target | None = None) -> Trajectory:
    """A trajectory the user placed by hand (checks not yet run: :func:`recheck` fills them).

    Parameters
    ----------
    case : PlanningCase
    entry_lps, target_lps : array (3,)
        The skin entry and the needle tip the user clicked, LPS mm.
    target : Target, optional
        What the trajectory serves; default a manual target at ``target_lps`` named after the
        nearest vertebra (:func:`~fluoroplan.planner.targets.manual_target`).

    Returns
    -------
    Trajectory
        ``approach="manual"``, ``edited=True``, the target's level, a needle long enough for
        the depth and the id ``"<level>-<side>-manual"`` (the caller makes it unique in its
        plan). The side is the target's own when it has one (a loose screw's); else the side
        of the nearest vertebra's midline the entry lies on (patient's left or right), or of
        the target's x when the case has no vertebrae.

    Raises
    ------
    ValueError
        When the entry and the target are less than 1 mm apart.
    """

    entry = np.asarray(entry_lps, float)
    tip = np.asarray(target_lps, float)
    if target is None:
        target = manual_target(case, tip)
    side = target.side
    if side is None:
        if case.vertebrae:
            v = case.nearest_vertebra(tip)
            side = "left" if float((entry - v.centroid_lps) @ v.left_lps) >= 0 else "right"
        else:
            side = "left" if entry[0] >= tip[0] else "right"
    depth = float(np.linalg.norm(tip - entry))
    return Trajectory(id=f"{target.level or 'manual'}-{side}-manual", target=target,
                      approach="manual", level=target.level, side=side, entry_lps=entry,
                      target_lps=tip, needle=Needle.for_depth(depth), edited=True)


def recheck(case: PlanningCase, traj: Trajectory) -> Trajectory:
    """Re-run views and checks of a (user-edited) trajectory."""
    return build_trajectory(case, traj.target, traj.approach, traj.side, traj.entry_lps,
                            traj.target_lps, traj.contact_lps, traj.id, edited=traj.edited,
                            notes=traj.notes)


def propose(case: PlanningCase, target: Target, approach: str, side: str,
            cancel: CancelToken | None = None) -> Trajectory | NoSafeTrajectory:
    """The best trajectory of one approach for a target, or why there is none."""

    res = _propose(case, target, approach, side, cancel)
    return replace(res, side=side) if isinstance(res, NoSafeTrajectory) else res


def _propose(case: PlanningCase, target: Target, approach: str, side: str,
             cancel: CancelToken | None) -> Trajectory | NoSafeTrajectory:
    if not case.canal_known:
        return NoSafeTrajectory(target, approach, "spinal canal clearance",
                                "the spinal canal was not found in this CT (no vertebrae), so no "
                                "path can be checked against it: give the vertebrae with a label "
                                "map (--labels) or use a CT that covers more of the spine")
    ranked = _search(case, target, approach, side, cancel)
    if not ranked:
        return NoSafeTrajectory(target, approach, "skin entry",
                                "every candidate line leaves the scanned volume before it "
                                "reaches the skin; a wider field of view is needed")
    failed = None
    for q in [q for q in ranked if not q.hard_fail][:8]:
        c = q.cand
        traj = build_trajectory(case, target, c.approach, c.side, q.entry, c.target_lps,
                                c.contact_lps, explained=q.terms,
                                notes=tuple(f"{k} = {v:.1f}" for k, v in c.params.items()
                                            if isinstance(v, float)))
        if traj.status != "fail":
            return traj
        failed = failed or traj
    if failed is not None:
        bad = next(c for c in failed.checks if c.status == "fail")
        return NoSafeTrajectory(target, approach, bad.name,
                                f"the best candidate fails '{bad.name}' ({bad.detail})", failed)
    counts: dict[str, int] = {}
    for q in ranked:
        counts[q.hard_fail] = counts.get(q.hard_fail, 0) + 1
    worst = max(counts, key=lambda k: counts[k])
    return NoSafeTrajectory(target, approach, worst, blockers_sentence(ranked))


def plan_case(volume, analysis: dict, targets: list[Target] | None = None,
              progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
              planner: str | None = None, procedure_position: str = PROCEDURE_POSITION,
              labels=None, label_values: dict | None = None) -> Plan:
    """Propose the best trajectory of each applicable approach for every target.

    ``labels`` (and ``label_values``) are the analysis' label volume (vertebrae, canal, ilia,
    ribs; see :class:`PlanningCase`); without them the anatomy is measured again on the CT.

    ``procedure_position`` is how the patient will lie in the angiosuite (default prone, head
    first); the C-arm's table angles and room-terms sentences refer to it, whatever position
    the CT was acquired in."""
    progress = progress or no_progress
    t0 = time.perf_counter()
    case = PlanningCase(volume, analysis, procedure_position=procedure_position, labels=labels,
                        label_values=label_values)
    targets = targets_from_analysis(case) if targets is None else targets
    trajs: list[Trajectory] = []
    unsolved: list[NoSafeTrajectory] = []
    jobs = [(t, a, s) for t in targets for a, s in applicable(case, t)]
    for n, (t, a, s) in enumerate(jobs):
        if cancel is not None:
            cancel.check()
        progress(n / max(len(jobs), 1), f"Planning {t.ref}: {a} ({s})")
        res = propose(case, t, a, s, cancel)
        if isinstance(res, Trajectory):
            trajs.append(res)
        else:
            unsolved.append(res)
    progress(1.0, "Planning done")
    series = volume.series_json() if hasattr(volume, "series_json") else {}
    plan = Plan(series=series, targets=tuple(targets), trajectories=tuple(trajs),
                unsolved=tuple(unsolved),
                procedure_position=case.procedure_position,
                analysis={"levels": [v.label for v in case.vertebrae],
                          "screws": analysis.get("screws", []),
                          **plan_analysis_notes(analysis, case.findings.vertebrae,
                                                [s.id for s in case.findings.screws]),
                          "planning_s": round(time.perf_counter() - t0, 3)})
    return plan if planner is None else replace(plan, planner=planner)
