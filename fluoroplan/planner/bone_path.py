"""Bone in the way: what a path crosses between the skin and its tip that is not the target.

The target's own transverse process, crossed before the path reaches the rest of the target,
is in the way too (a lateral path must pass above or below it).

The path is sampled every 0.5 mm from the skin entry to the tip (through the planned contact of
a path that slides along a screw). A sample is bone when its HU is at or above ``BONE_HU`` and
below metal's; its label in the analysis' label volume says whose bone it is: the target
vertebra's (allowed), another vertebra's (named with the part it hits: lamina, facet,
transverse process, ...), the sacrum, an ilium, a rib, or bone no vertebra claims. A rib
crossed close to the target vertebra's rib head by a thoracic extrapedicular path is the
costovertebral corridor that route uses, allowed; its width is a check of its own.
"""

from __future__ import annotations

import numpy as np

from fluoroplan.model.anatomy import CANAL_LABEL, FORAMEN_LABEL, ILIUM_LABEL, RIB_LABEL
from fluoroplan.model.plan import Check, Trajectory
from fluoroplan.planner.case import BONE_HU, PlanningCase, VertebraGeom
from fluoroplan.segmentation.vertebrae import SACRUM_BELOW_S1

STEP_MM = 0.5
"""Sampling step along the path."""
CROSSING_FAIL_MM = 1.0
"""Bone of something else crossed for this long fails the path; less is a graze (warn)."""
TARGET_MARGIN_MM = 2.0
"""Bone no label claims within this distance of the target vertebra's label is its own (the
label map's edge on partial-volume voxels)."""
SKIN_MM = 5.0
"""The first millimetres below the skin entry are skin, never bone in the way."""
UNLABELLED_BONE_HU = 400.0
"""Bone no label claims counts from this HU (a cortex), not from ``BONE_HU``."""
METAL_RIM_MM = 1.5
"""Samples this close to metal are its bright rim (partial volume, blooming), not bone."""
CORRIDOR_REACH_MM = 15.0
"""Rib bone within this distance of the target vertebra's rib head (same side) is the
costovertebral corridor of a thoracic extrapedicular path."""
CORRIDOR_WARN_MM = 2.0
"""Free space beside the needle in the corridor (rib to vertebra, needle excluded) below which
the corridor is warned about."""


def _structure_values():
    return CANAL_LABEL, FORAMEN_LABEL, ILIUM_LABEL, RIB_LABEL, SACRUM_BELOW_S1


def target_values(case: PlanningCase, traj: Trajectory) -> set[int]:
    """Label values of the bone the path is meant to enter: the target level's vertebra, and
    for a cage both vertebrae beside its disc space."""
    names = [traj.level]
    if traj.target.kind == "cage" and "-" in traj.target.ref:
        names += traj.target.ref.split("-", 1)
    values = {case.label_value(n) for n in names}
    return {v for v in values if v is not None}


def vertebra_part(v: VertebraGeom, p_lps: np.ndarray, case: PlanningCase) -> str:
    """Which part of vertebra ``v`` a point is in (body, pedicle, lamina, spinous process,
    transverse process, superior or inferior articular process), from where it lies in the
    vertebra's own frame."""
    loc = v.to_local(p_lps)[0]
    wall = v.posterior_wall_offset_mm()
    if loc[1] <= wall:
        return "body"
    for side, ped in v.pedicles.items():
        q = p_lps - ped.axis_point_lps
        along = float(q @ ped.axis_dir_lps)
        off = float(np.linalg.norm(q - along * ped.axis_dir_lps))
        if off <= 0.5 * ped.narrowest_width_mm + 2.0 and -10.0 <= along <= 10.0:
            return f"{side} pedicle"
    mid = v.to_local(v.canal_center_lps)[0] if v.canal_center_lps is not None else np.zeros(3)
    outline = case.canal_outline(v)
    half_w = 0.5 * float(np.median(outline[1] - outline[2])) if outline is not None else 9.0
    side = "left" if loc[0] > mid[0] else "right"
    lat = abs(loc[0] - mid[0])
    if lat <= 6.0 and loc[1] > mid[1]:
        return "spinous process" if loc[1] - mid[1] > half_w + 8.0 else "lamina"
    ped_lat = max((abs(v.to_local(p.axis_point_lps)[0][0] - mid[0]) + 0.5 * p.narrowest_width_mm
                   for p in v.pedicles.values()), default=half_w + 8.0)
    if lat > ped_lat + 4.0:
        return f"{side} transverse process"
    if lat <= half_w + 1.0:
        return f"{side} lamina"
    ped_h = np.mean([v.to_local(p.axis_point_lps)[0][2] for p in v.pedicles.values()]) \
        if v.pedicles else 0.0
    return (f"{side} superior articular process (facet)" if loc[2] >= ped_h
            else f"{side} inferior articular process (facet)")


def bone_checks(case: PlanningCase, traj: Trajectory, path: np.ndarray,
                step: float = STEP_MM) -> list[Check]:
    """The 'bone in the way' check, and for a thoracic extrapedicular path the
    'costovertebral corridor' check, on ``path`` sampled every ``step`` mm from the skin."""
    canal_v, foramen_v, ilium_v, rib_v, sacrum_v = _structure_values()
    if not case.label_values:
        return [Check("bone in the way", None, CROSSING_FAIL_MM, "unknown", "mm",
                      "NOT CHECKED: the CT's bones were not labelled (no vertebrae found), so "
                      "what the path "
                      "crosses cannot be checked: give the vertebrae with a label map "
                      "(--labels) or use a CT that covers more of the spine")]
    hu = case.hu_at(path)
    bone = (hu >= BONE_HU) & (hu < case.metal_hu)
    # the bright partial-volume rim (and blooming) around metal is metal's, not bone
    bone &= ~case.metal_within(path, METAL_RIM_MM)
    # only inside the patient, below the skin: the CT table under a supine patient's back and
    # a dense dermis are not in the way
    bone &= case.in_body(path) & (np.arange(len(path)) * step > SKIN_MM)
    lab = case.label_at(path)
    own = target_values(case, traj)
    # unlabelled bone at the edge of a label (partial-volume voxels of a cortex) is that
    # bone's: the target's when it is there, else the commonest vertebra or structure around
    loose = np.nonzero(bone & (lab == 0))[0]
    if len(loose):
        g = np.array([-1.0, 0.0, 1.0]) * TARGET_MARGIN_MM
        offs = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
        around = case.label_at((path[loose, None, :] + offs[None]).reshape(-1, 3))
        around = around.reshape(len(loose), len(offs))
        for n, row in zip(loose, around, strict=True):
            row = row[row > 0]
            if not len(row):
                continue
            hit = [v for v in own if v in row]
            lab[n] = hit[0] if hit else int(np.bincount(row).argmax())
    # bone that no label claims must look like bone on its own (a cortex), not like an
    # enhanced vessel or dense soft tissue
    bone &= (lab != 0) | (hu >= UNLABELLED_BONE_HU)
    corridor_ok = np.zeros(len(path), bool)
    vert = None
    try:
        vert = case.vertebra(traj.level)
    except KeyError:
        pass
    thoracic_extra = (vert is not None and vert.thoracic
                      and traj.approach.startswith("extrapedicular"))
    if thoracic_extra and vert is not None and vert.rib_heads_lps:
        heads = np.array(list(vert.rib_heads_lps.values()), float)
        d = np.min(np.linalg.norm(path[:, None, :] - heads[None, :, :], axis=2), axis=1)
        corridor_ok = d <= CORRIDOR_REACH_MM

    crossed: dict[str, float] = {}
    first_at: dict[str, float] = {}
    allowed_rib = 0.0
    entered = False  # the path has reached the target's own bone beyond its transverse process
    for n in np.nonzero(bone)[0]:
        value = int(lab[n])
        if value in own and not entered and vert is not None:
            # the target's own transverse process crossed on the way in is in the way too
            part = vertebra_part(vert, path[n], case)
            if part.endswith("transverse process"):
                name = f"{vert.label}'s own {part}"
                crossed[name] = crossed.get(name, 0.0) + step
                first_at.setdefault(name, n * step)
                continue
            entered = True
        if value in own or value in (canal_v, foramen_v):
            continue  # the target's bone; lumen edges are the canal check's
        if value == rib_v and corridor_ok[n]:
            allowed_rib += step
            continue
        name = _name(case, value, path[n], rib_v, ilium_v, sacrum_v)
        crossed[name] = crossed.get(name, 0.0) + step
        first_at.setdefault(name, n * step)
    total = float(sum(crossed.values()))
    worst = max(crossed.values(), default=0.0)
    if not crossed:
        st = "pass"
        detail = ("from the skin to the tip the needle crosses no bone but the target's"
                  + (f" (and {allowed_rib:.1f} mm of the rib head's joint in the "
                     "costovertebral corridor)" if allowed_rib else ""))
    else:
        st = "fail" if worst >= CROSSING_FAIL_MM else "warn"
        parts = sorted(crossed.items(), key=lambda kv: first_at[kv[0]])
        detail = "crosses " + "; ".join(
            f"{k} for {v:.1f} mm ({first_at[k]:.0f} mm from the skin)" for k, v in parts)
        if st == "warn":
            detail += " - a graze: check it on the CT"
    checks = [Check("bone in the way", total, CROSSING_FAIL_MM, st, "mm", detail)]
    if thoracic_extra and vert is not None and vert.rib_heads_lps:
        checks.append(_corridor_check(case, traj, path, own, rib_v, vert, step))
    return checks


def _name(case: PlanningCase, value: int, p: np.ndarray, rib_v, ilium_v, sacrum_v) -> str:
    side = _side(case, p)
    if value == ilium_v:
        return f"the {side} ilium"
    if value == rib_v:
        return f"a {side} rib outside the rib-head corridor"
    if value == sacrum_v:
        return "the sacrum"
    name = case.label_names.get(value)
    if name is None:
        return "bone outside the labelled vertebrae"
    try:
        v = case.vertebra(name)
    except KeyError:
        return name
    return f"{v.label}'s {vertebra_part(v, p, case)}"


def _side(case: PlanningCase, p: np.ndarray) -> str:
    if case.vertebrae:
        v = case.nearest_vertebra(p)
        mid = v.canal_center_lps if v.canal_center_lps is not None else v.centroid_lps
        return "left" if float((p - mid) @ v.left_lps) >= 0 else "right"
    return "left" if p[0] >= 0 else "right"


def _corridor_check(case: PlanningCase, traj: Trajectory, path: np.ndarray, own: set[int],
                    rib_v: int, vert: VertebraGeom, step: float = STEP_MM) -> Check:
    """The costovertebral corridor where the path passes the rib head (its closest approach):
    the gap from the target vertebra's bone (0 when the needle is in it there, entering at the
    pedicle-body junction) to the rib, across the needle, against the needle's diameter."""
    heads = np.array(list(vert.rib_heads_lps.values()), float)
    d_head = np.min(np.linalg.norm(path[:, None, :] - heads[None, :, :], axis=2), axis=1)
    r = traj.needle.radius_mm
    _, rib_tree = case.label_points(rib_v)
    trees = [case.label_points(v)[1] for v in own]
    trees = [t for t in trees if t is not None]
    what = ("thoracic extrapedicular route between the rib head and the pedicle: the gap from "
            "the vertebra's bone to the rib where the needle passes the rib head")
    k = int(np.argmin(d_head))
    if rib_tree is None or not trees or d_head[k] > CORRIDOR_REACH_MM + 10.0:
        return Check("costovertebral corridor", None, 0.0, "warn", "mm",
                     what + "; the rib beside this path was not found, so the corridor is "
                     "unmeasured: check it on the axial CT")
    p = path[k: k + 1]
    d_rib = float(rib_tree.query(p, k=1)[0][0])
    in_own = bool(np.isin(case.label_at(p), list(own))[0])
    d_v = 0.0 if in_own else float(min(t.query(p, k=1)[0][0] for t in trees))
    width = d_rib + d_v
    need = 2.0 * r + CORRIDOR_WARN_MM
    st = "warn" if width < need else "pass"
    return Check("costovertebral corridor", width, need, st, "mm",
                 f"{what}: {width:.1f} mm ({d_rib - r:.1f} mm from the needle's surface to the "
                 f"rib, {k * step:.0f} mm from the skin{', in the vertebra' if in_own else ''}"
                 f"); the needle needs {2 * r:.1f} mm plus {CORRIDOR_WARN_MM:.0f} mm")
