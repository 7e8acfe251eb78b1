"""Targets from an analysis: loose screws (their halos), fractured bodies, subsided cages."""

from __future__ import annotations

import numpy as np

from fluoroplan.model.plan import Target
from fluoroplan.planner.case import PlanningCase

SUBSIDENCE_MM = 2.0
"""A cage sunk this far past an endplate is subsided."""


def halo_target_point(case: PlanningCase, screw_id: str) -> np.ndarray:
    """Where cement should go for a loose screw: in the halo beside the distal shaft (75% of the
    way from head to tip), at the shaft's surface plus half the halo width."""
    s = case.screw(screw_id)
    return s.head_lps + 0.75 * (s.tip_lps - s.head_lps)


def targets_from_analysis(case: PlanningCase) -> list[Target]:
    """Every target the analysis supports, in a stable order (screws, fractures, cages)."""
    out: list[Target] = []
    for s in case.screws:
        if not s.loose:
            continue
        t = np.linspace(0.3, 1.0, 15)[:, None]
        region = s.head_lps + t * (s.tip_lps - s.head_lps)
        out.append(Target(
            kind="loose-screw", ref=s.id, level=s.level, side=s.side,
            point_lps=halo_target_point(case, s.id),
            description=(f"loose screw {s.id}: halo {s.halo_mm:.1f} mm around the shaft "
                         f"({s.diameter_mm:.1f} x {s.length_mm:.0f} mm)"),
            region_lps=region, sides=(s.side,),
        ))
    for v in case.vertebrae:
        if v.fracture_grade >= 1:
            p = v.anterior_third_point()
            out.append(Target(
                kind="fracture", ref=v.label, level=v.label, side=None, point_lps=p,
                description=(f"{v.label} body fracture, Genant grade {v.fracture_grade}: cement in "
                             "the anterior third at the midline, between the endplates"),
                region_lps=p[None, :],
            ))
    for c in case.cages:
        sub = cage_subsidence(case, c)
        if sub is None or sub[0] < SUBSIDENCE_MM:
            continue
        depth, label, point = sub
        out.append(Target(
            kind="cage", ref=f"{c.between[0]}-{c.between[1]}", level=label, side=None,
            point_lps=point,
            description=(f"cage {c.between[0]}-{c.between[1]} subsided {depth:.1f} mm into "
                         f"{label}: cement at the bone-cage interface"),
            region_lps=point[None, :],
        ))
    return out


def cage_subsidence(case: PlanningCase, cage) -> tuple[float, str, np.ndarray] | None:
    """How far a cage sits past the endplate of the vertebra above or below: (mm, level, the
    interface point in that body). None when the neighbours' endplates are unknown."""
    best = None
    for label, plane_name, sign in ((cage.between[0], "inferior_endplate", -1),
                                    (cage.between[1], "superior_endplate", +1)):
        try:
            v = case.vertebra(label)
        except KeyError:
            continue
        plane = getattr(v, plane_name)
        if plane is None:
            continue
        point, normal = plane.point_lps, plane.normal_lps
        half = cage.half_extent_along(v.axis_lps)
        # face of the cage toward this vertebra
        face = cage.center_lps + (-sign) * half * v.axis_lps
        # normal points out of the body toward the disc; depth = how far the face is inside
        depth = float((point - face) @ normal)
        interface = face + (-sign) * 2.0 * v.axis_lps
        if best is None or depth > best[0]:
            best = (depth, label, interface)
    return best


def manual_target(case: PlanningCase, point_lps, name: str = "manual") -> Target:
    v = case.nearest_vertebra(np.asarray(point_lps, float)) if case.vertebrae else None
    return Target(
        kind="manual", ref=name, level=v.label if v else "", side=None,
        point_lps=np.asarray(point_lps, float),
        description=f"manual target {name}" + (f" near {v.label}" if v else ""),
    )
