"""Safety checks of a trajectory, each with its measured value, limit and pass/warn/fail.

All checks sample the 15-gauge needle's axis every 0.5 mm; clearances subtract the needle's
radius, so a value of 0 means the needle's surface touches the structure.
"""

from __future__ import annotations

import numpy as np

from fluoroplan.geometry.carm import (
    CArmPose,
    bullseye_pose,
    check_reachable,
    lateral_view,
    working_view,
)
from fluoroplan.geometry.conventions import NEEDLE_MIN_OUTSIDE_SKIN_MM, breach_grade
from fluoroplan.io.plan_json import pose_json
from fluoroplan.model.plan import Check, Trajectory
from fluoroplan.planner.bone_path import bone_checks, target_values
from fluoroplan.planner.case import AIR_HU, BONE_HU, PlanningCase, VertebraGeom, dist_to_segment
from fluoroplan.planner.visibility import pose_check, visibility_checks

# limits (mm unless stated)
METAL_CLEARANCE_WARN = 2.0
METAL_CLEARANCE_FAIL = 1.0
CANAL_CLEARANCE_WARN = 4.0
PLEURA_WARN = 5.0
ANTERIOR_MARGIN_WARN = 5.0
ANTERIOR_MARGIN_FAIL = 2.0
LATERAL_BREACH_WARN = 2.0
LATERAL_BREACH_FAIL = 4.0
MIDLINE_WARN = 100.0
VISIBILITY_WARN = 0.5
SCREEN_MM = 12.0
"""The search's screening (``fast``) measures distances this far only: no cost term or limit
looks beyond it, its values are never reported, and its winners are checked in full."""
FORAMEN_WARN = 3.0
"""A path whose needle surface passes this close to a lumbar neural foramen is warned about."""
AIR_SEARCH_MM = 10.0
"""Air is looked for this far around the needle."""
BONE_AHEAD_SEARCH_MM = 40.0
"""Bone ahead of the tip is followed this far."""


def _status(value: float, warn: float, fail: float, higher_is_better: bool = True) -> str:
    if higher_is_better:
        return "fail" if value < fail else ("warn" if value < warn else "pass")
    return "fail" if value > fail else ("warn" if value > warn else "pass")


def views_for(case: PlanningCase, traj: Trajectory) -> tuple[dict, dict]:
    """Bull's-eye, working (from the screw's bull's-eye) and progression poses of a trajectory:
    their JSON blocks and the pose objects."""
    pos = case.patient_position
    entry, aim = traj.entry_lps, traj.aim_lps
    be = bullseye_pose(entry, aim, pos)
    blocks = {"bullseye": pose_json(be)}
    poses = {"bullseye": be}
    ref = None
    if traj.target.kind == "loose-screw":
        ref_screw = case.screw(traj.target.ref)
        ref = bullseye_pose(ref_screw.head_lps, ref_screw.tip_lps, pos)
    else:  # the nearest screw of the same side and level, if any
        same = [s for s in case.screws if s.level == traj.level and s.side == traj.side]
        if same:
            ref = bullseye_pose(same[0].head_lps, same[0].tip_lps, pos)
    if ref is None:
        ref = CArmPose.from_table_angles(0.0, 0.0, pos)  # a straight PA (table 0/0) reference
        ref_name = "straight PA view"
    else:
        ref_name = "screw bull's-eye"
    wv = working_view(entry, aim, ref)
    blocks["working_view"] = {
        **pose_json(wv.pose),
        "delta_from_screw_bullseye_deg": [round(wv.d_primary_deg, 3), round(wv.d_secondary_deg, 3)],
        "delta_table_deg": [round(wv.d_table_primary_deg, 3), round(wv.d_table_secondary_deg, 3)],
        "reference": ref_name,
        "reference_pose": pose_json(ref),
        "how": wv.text,
    }
    poses["working_view"] = wv.pose
    try:
        vert = case.vertebra(traj.level)
        lateral = vert.left_lps
    except KeyError:
        lateral = None
    # the true lateral of the target vertebra (CONVENTIONS.md), on the entry side first, else
    # the mirrored one, else the nearest reachable lateral; the sentence says which
    lv = lateral_view(entry, aim, lateral, pos, level=traj.level)
    blocks["progression"] = {**pose_json(lv.pose), "true_lateral": lv.true_lateral,
                             "needle_length_fraction": round(lv.needle_length_fraction, 4),
                             "how": lv.text}
    poses["progression"] = lv.pose
    return blocks, poses


def run_checks(
    case: PlanningCase,
    traj: Trajectory,
    poses: dict | None = None,
    visibility: bool = True,
    fast: bool = False,
) -> tuple[Check, ...]:
    """Every safety check of ``traj`` on ``case``. ``fast`` skips the C-arm checks (views,
    reachability, visibility): the search screens candidates with it."""
    checks: list[Check] = []
    r = traj.needle.radius_mm
    # sampled every 0.5 mm; the search's screening every 1 mm (its winners are checked again)
    step = 1.0 if fast else 0.5
    upto = SCREEN_MM if fast else None  # screening: distances beyond it are all alike
    ins = _seg(traj.entry_lps, traj.aim_lps, step)
    slide = (_seg(traj.aim_lps, traj.target_lps, step)[1:] if traj.contact_lps is not None
             else ins[:0])
    target_screw = traj.target.ref if traj.target.kind == "loose-screw" else None

    # 1. metal clearance (all metal; the target screw only before the planned contact zone)
    if traj.contact_lps is not None and target_screw is not None:
        # the planned contact is with the target screw's threaded shaft; its tulip and rod, and
        # every other metal object, must stay clear along the whole path
        d_other = case.metal_distance(np.concatenate([ins, slide]), exclude_screw=target_screw,
                                     min_only=True, upto=upto)
        clearance = float(np.min(d_other)) - r
        detail = (f"planned contact with the shaft of {target_screw}, then a "
                  f"{traj.slide_mm:.0f} mm slide along it; its tulip, the rods and every other "
                  "metal object must stay clear")
    elif target_screw is not None:
        d = case.metal_distance(ins, min_only=True, upto=upto)
        clearance = float(np.min(d)) - r
        detail = f"the path must keep clear of {target_screw} (aimed beside its tip) and all metal"
    else:
        clearance = float(np.min(case.metal_distance(ins, min_only=True, upto=upto))) - r
        detail = "screws, rods and cages"
    if np.isfinite(clearance):
        checks.append(Check("metal clearance", clearance, METAL_CLEARANCE_FAIL,
                            _status(clearance, METAL_CLEARANCE_WARN, METAL_CLEARANCE_FAIL), "mm",
                            detail))
    else:
        checks.append(Check("metal clearance", None, METAL_CLEARANCE_FAIL, "pass", "mm",
                            "no metal in this CT"))

    # 2. spinal canal: the needle's surface against the lumen's voxels (signed: negative inside)
    path = traj.path_points(step)
    if case.canal_known:
        sd = case.canal_clearance(path, min_only=True, upto=upto) - r
        canal = float(np.min(sd))
        inside_mm = float(np.sum(sd < 0) * step)
        grade = breach_grade(-canal)
        st = "fail" if canal < 0 else ("warn" if canal < CANAL_CLEARANCE_WARN else "pass")
        where = (f"; the needle is inside the canal for {inside_mm:.1f} mm of its path, "
                 f"{-canal:.1f} mm deep" if canal < 0 else "")
        checks.append(Check("spinal canal clearance", canal, 0.0, st, "mm",
                            "needle surface to the canal's lumen (the CT's voxels); breach "
                            f"grade {grade} (A none, B <2, C 2-4, D 4-6, E >=6 mm){where}"))
    else:
        # never "pass" a path against a canal nobody found: UNKNOWN, said as such
        checks.append(Check("spinal canal clearance", None, 0.0, "unknown", "mm",
                            "NOT CHECKED: the spinal canal was not found in this CT (no "
                            "vertebrae), so the path cannot be checked against it; check it on "
                            "the reformats, give the vertebrae with a label map (--labels) or "
                            "use a CT that covers more of the spine"))

    vert = _vertebra_or_none(case, traj.level)
    # 3. medial pedicle wall (AP-view rule): before the tip reaches the posterior wall of the body
    #    (lateral view), the needle must stay lateral to the canal's outline on the AP view (its
    #    lateral boundary at the pedicle is the medial pedicle wall)
    outline = case.canal_outline(vert) if vert is not None else None
    if outline is not None and vert is not None:
        checks.append(_medial_wall_check(vert, outline, path, r))

    # 4. lateral cortex breach (transpedicular approaches): length of the pedicle passage outside bone
    if traj.approach.startswith("transpedicular") and vert is not None and traj.side in vert.pedicles:
        ped = vert.pedicles[traj.side]
        loc = vert.to_local(path)
        wall = vert.posterior_wall_offset_mm()
        ped_l = vert.to_local(ped.axis_point_lps)[0]
        in_ped = (loc[:, 1] <= ped_l[1] + 8.0) & (loc[:, 1] >= wall)
        if target_screw is not None:  # the loose screw's own halo is not a breach
            ts = case.screw(target_screw)
            d_ax, _ = dist_to_segment(path, ts.head_lps, ts.tip_lps)
            in_ped &= d_ax > ts.diameter_mm / 2 + max(ts.halo_mm, 1.0) + 1.5
        if in_ped.any():
            hu = case.hu_at(path[in_ped])
            outside_bone = (hu < BONE_HU) & (hu > AIR_HU)
            lateral = np.abs(loc[in_ped, 0]) > abs(ped_l[0])
            breach = float(np.sum(outside_bone & lateral) * step)
        else:
            breach = 0.0
        st = _status(breach, LATERAL_BREACH_WARN, LATERAL_BREACH_FAIL, False)
        note = ("needle length in the pedicle passage outside bone, lateral to the pedicle axis")
        if traj.approach != "transpedicular" and st == "fail":
            # beside a screw that fills the pedicle the needle runs partly outside it by design
            st, note = "warn", note + " (expected in part: the screw fills the pedicle)"
        checks.append(Check("lateral pedicle cortex breach", breach, LATERAL_BREACH_FAIL, st,
                            "mm", note))

    # 5. the exiting nerve root: lumbar neural foramina
    if traj.level.upper().startswith(("L", "S")) and case.foramen_known:
        dfs = case.foramen_distance(path, min_only=True, upto=upto) - r
        df = float(np.min(dfs))
        through = float(np.sum(dfs < 0) * step)
        note = ""
        if through > 0:
            note = (f": the needle runs through the foramen for {through:.1f} mm - the exiting "
                    "root lies there; check the path on the sagittal CT")
        elif df < FORAMEN_WARN:
            note = ": the path passes within 3 mm of the exiting root"
        checks.append(Check("neural foramen (exiting root)", df, FORAMEN_WARN,
                            "warn" if df < FORAMEN_WARN else "pass", "mm",
                            "needle surface to the nearest lumbar neural foramen (soft tissue "
                            "of the exiting root's zone beside the canal)" + note))

    # 6. bone in the way: every bone the path crosses from the skin to the tip that is not the
    #    target vertebra's (the costovertebral corridor of a thoracic extrapedicular path allowed)
    checks.extend(bone_checks(case, traj, path, step))

    # 7. air along the path (lung, pleura) and margin to it
    hu_path = case.hu_at(ins)
    skin_margin = 5.0
    deep = (np.linalg.norm(ins - traj.entry_lps, axis=1) > skin_margin) & case.in_body(ins)
    air_mm = float(np.sum((hu_path < AIR_HU) & deep) * step)
    margin = _air_margin(case, ins[deep])
    if air_mm > 0:
        checks.append(Check("lung / pleura", -air_mm, PLEURA_WARN, "fail", "mm",
                            f"path crosses air inside the body (lung?) for {air_mm:.1f} mm"))
    elif margin is None:
        checks.append(Check("lung / pleura", None, PLEURA_WARN, "pass", "mm",
                            "no air inside the body within 10 mm of the path (sampled 2-10 mm "
                            "around the needle)", at_least=AIR_SEARCH_MM))
    else:
        checks.append(Check("lung / pleura", margin, PLEURA_WARN,
                            "warn" if margin < PLEURA_WARN else "pass", "mm",
                            "distance from the path to air inside the body (lung, pleura), "
                            "sampled 2-10 mm around the needle"))

    # 8. depth beyond the anterior cortex / tip margin to it
    ahead = _bone_ahead(case, traj.target_lps, traj.direction_lps,
                        case.screw(target_screw) if target_screw else None,
                        own=target_values(case, traj))
    what = ("bone ahead of the tip along the needle before the anterior cortex (negative: the "
            "tip is beyond it)")
    if ahead is None:
        checks.append(Check("tip margin to the anterior cortex", None, ANTERIOR_MARGIN_FAIL,
                            "pass", "mm", what + f"; bone goes on for the whole "
                            f"{BONE_AHEAD_SEARCH_MM:.0f} mm searched", at_least=BONE_AHEAD_SEARCH_MM))
    else:
        checks.append(Check("tip margin to the anterior cortex", ahead, ANTERIOR_MARGIN_FAIL,
                            _status(ahead, ANTERIOR_MARGIN_WARN, ANTERIOR_MARGIN_FAIL), "mm", what))

    # 9. skin entry distance from the midline
    if vert is not None:
        mid = vert.canal_center_lps if vert.canal_center_lps is not None else vert.centroid_lps
        lat = float(abs((traj.entry_lps - mid) @ vert.left_lps))
        checks.append(Check("skin entry from the midline", lat, MIDLINE_WARN,
                            "pass" if lat <= MIDLINE_WARN else "warn", "mm",
                            "lateral distance of the skin entry from the spinous process line"))
    else:  # no vertebra at the target: no midline to measure from
        checks.append(Check("skin entry from the midline", None, MIDLINE_WARN, "unknown", "mm",
                            "NOT CHECKED: no vertebra was found at the target, so the "
                            "midline (spinous process line) is not known"))

    # 10. path length vs needle length (>= 20 mm outside the skin)
    outside = traj.needle.length_mm - traj.depth_mm
    # to the hundredth of a mm the ruler reads (a depth of 130.000001 mm leaves 20 mm outside)
    enough = round(outside, 2) >= NEEDLE_MIN_OUTSIDE_SKIN_MM
    checks.append(Check("needle outside the skin", outside, NEEDLE_MIN_OUTSIDE_SKIN_MM,
                        "pass" if enough else "fail", "mm",
                        f"{traj.needle.length_mm:.0f} mm needle, {traj.depth_mm:.1f} mm inside"))

    if fast:
        return tuple(checks)
    # 9. C-arm poses reachable
    if poses is None:
        _, poses = views_for(case, traj)
    for name in ("bullseye", "progression"):
        reach = check_reachable(poses[name])
        nice = "bull's-eye" if name == "bullseye" else "progression"
        checks.append(Check(f"{nice} view reachable", "yes" if reach.reachable else "no",
                            "C-arm limits", "pass" if reach.reachable else "fail", "",
                            reach.reason if not reach.reachable else poses[name].text))

    # 10. landmarks hidden by metal, per view (planner/visibility.py)
    if visibility:
        checks.extend(visibility_checks(case, traj, poses))
    return tuple(checks)


def visibility_check(case: PlanningCase, traj: Trajectory, pose: CArmPose) -> Check:
    """Landmarks hidden by metal in any one view of ``traj`` (the C-arm pane's free pose):
    which implant hides which landmark, judged on the simulated image
    (:func:`fluoroplan.planner.visibility.pose_check`)."""

    return pose_check(case, traj, pose)


def _seg(a, b, step=0.5):
    n = max(2, int(np.ceil(np.linalg.norm(b - a) / step)) + 1)
    t = np.linspace(0, 1, n)[:, None]
    return a * (1 - t) + b * t


def _vertebra_or_none(case: PlanningCase, label: str) -> VertebraGeom | None:
    try:
        return case.vertebra(label)
    except KeyError:
        return None


def _air_margin(case: PlanningCase, pts: np.ndarray) -> float | None:
    """Smallest distance (2..10 mm, 12 directions) from path points to air inside the body;
    None when there is none within 10 mm."""
    if len(pts) == 0:
        return None
    n = pts[-1] - pts[0]
    n = n / max(np.linalg.norm(n), 1e-9)
    a = np.cross(n, [0, 0, 1.0])
    if np.linalg.norm(a) < 1e-3:
        a = np.cross(n, [1.0, 0, 0])
    a /= np.linalg.norm(a)
    b = np.cross(n, a)
    ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    dirs = np.cos(ang)[:, None] * a + np.sin(ang)[:, None] * b
    sub = pts[::4]
    radii = np.array([2.0, 4.0, 6.0, 8.0, 10.0])
    # (points, radii, directions) samples, and the same rays 15 mm further out
    offs = radii[None, :, None, None] * dirs[None, None, :, :]
    ring = sub[:, None, None, :] + offs
    hu = case.hu_at(ring.reshape(-1, 3)).reshape(ring.shape[:3])
    # air counts only inside the body outline (lung, pleural recess), not outside the skin
    lung = (hu < AIR_HU) & case.in_body(ring.reshape(-1, 3)).reshape(ring.shape[:3])
    hit = lung.any(axis=(0, 2))
    if hit.any():
        return float(radii[int(np.argmax(hit))])
    return None


def _bone_ahead(case: PlanningCase, tip: np.ndarray, n: np.ndarray, screw=None,
                max_mm: float | None = None, own: set | None = None) -> float | None:
    """Length of bone ahead of the tip before it gives way to soft tissue for >= 2 mm;
    negative when the tip itself is already beyond the anterior cortex (in soft tissue after
    having crossed bone); None when bone goes on for the whole ``max_mm`` searched. Inside the
    target vertebra's label (``own``: its label values) is bone whatever its HU (an
    osteoporotic body's interior on a low-dose CT reads below 100 HU)."""
    max_mm = BONE_AHEAD_SEARCH_MM if max_mm is None else max_mm
    s = np.arange(0.0, max_mm, 0.5)
    pts = tip[None, :] + s[:, None] * n[None, :]
    hu = case.hu_at(pts)
    soft = hu < 100.0
    if own:
        soft &= ~np.isin(case.label_at(pts), list(own))
    if screw is not None:  # the loose screw's halo (and the screw) belong to the bone here
        d_ax, t = dist_to_segment(pts, screw.head_lps, screw.tip_lps)
        near = (d_ax <= screw.diameter_mm / 2 + max(screw.halo_mm, 1.0) + 1.0) & (
            t <= screw.length_mm + 3.0)
        soft &= ~near
    run = 0
    for idx, is_soft in enumerate(soft):
        run = run + 1 if is_soft else 0
        if run >= 4:
            return float(s[idx - 3])
    # never left bone within max_mm
    if soft[0]:
        back = case.hu_at(tip[None, :] - s[:20, None] * n[None, :])
        if (back >= 100).any():
            return -float(s[int(np.argmax(back >= 100))])
    return None


def _medial_wall_check(vert: VertebraGeom, outline, path: np.ndarray, r: float) -> Check:
    """The AP-view rule measured on the canal's own outline: for every point of the path still
    behind the posterior wall of the body (the lateral view), how far the needle's surface stays
    lateral to the lumen's outline at that height on the AP view (negative: medial to it, i.e.
    across the medial pedicle wall)."""
    heights, left, right = outline
    loc = vert.to_local(path)
    wall = vert.posterior_wall_offset_mm()
    before = loc[:, 1] > wall  # still posterior of the posterior wall
    what = ("AP-view rule: the tip must not cross the medial pedicle wall (the canal's outline "
            "on the AP view) before it reaches the posterior wall of the body on the lateral view")
    if not before.any():
        return Check("medial pedicle wall before the posterior wall", None, 0.0, "pass", "mm",
                     what + "; the path never runs behind the posterior wall")
    idx = np.clip(np.searchsorted(heights, loc[before, 2]), 0, len(heights) - 1)
    # nearest outline row to each point's height
    prev = np.clip(idx - 1, 0, len(heights) - 1)
    use = np.where(np.abs(heights[prev] - loc[before, 2]) < np.abs(heights[idx] - loc[before, 2]),
                   prev, idx)
    lat = loc[before, 0]
    gap = np.maximum(lat - left[use], right[use] - lat) - r
    m = float(np.min(gap))
    st = "pass" if m >= 1.0 else ("warn" if m >= 0.0 else "fail")
    return Check("medial pedicle wall before the posterior wall", m, 0.0, st, "mm",
                 f"{what}; breach grade {breach_grade(-m)}")
