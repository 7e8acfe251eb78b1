"""The access approaches of the seed procedure: each turns a target into candidate lines.

A candidate is ``(target_lps, aim_lps, contact_lps or None, params)``: the needle is inserted
straight from the skin toward ``aim_lps`` (the contact point on a screw shaft, or the target),
then for a parallel approach slides along the shaft to ``target_lps``. The skin entry is found
later by walking the line out to the skin. Each generator takes a ``scale`` in (0, 1] so the
search can refine around its best candidates with finer steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from fluoroplan.geometry.conventions import NEEDLE_OUTER_DIAMETER_MM
from fluoroplan.model.implants import Screw
from fluoroplan.model.plan import Target
from fluoroplan.planner.case import PlanningCase, VertebraGeom


@dataclass(frozen=True, eq=False)
class Candidate:
    approach: str
    side: str
    target_lps: np.ndarray
    aim_lps: np.ndarray
    contact_lps: np.ndarray | None
    params: dict = field(default_factory=dict)

    @property
    def direction(self) -> np.ndarray:
        """Insertion direction, skin toward the aim point."""
        return _unit(self.aim_lps - self._far_point())

    def _far_point(self) -> np.ndarray:
        return self.params["through_lps"]


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _perp_basis(axis: np.ndarray, prefer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to ``axis``; the first as close to ``prefer`` as possible."""
    a = prefer - (prefer @ axis) * axis
    if np.linalg.norm(a) < 1e-6:
        a = np.cross(axis, [0.0, 0.0, 1.0])
    a = _unit(a)
    return a, np.cross(axis, a)


# ---------------------------------------------------------------------------------------------
# 1. transpedicular, parallel to a loose screw: touch the mid-shaft, slide into the halo
# ---------------------------------------------------------------------------------------------
def transpedicular_parallel(
    case: PlanningCase, target: Target, scale: float = 1.0, around: dict | None = None
) -> Iterator[Candidate]:
    """Lines tilted ``tilt`` degrees from the screw axis, coming from the side ``phi`` (angle
    around the shaft, 0 = lateral), that meet the shaft surface at ``contact`` (fraction of the
    shaft from head to tip) and then slide along it to the target in the halo."""
    s = case.screw(target.ref)
    axis, e1, e2 = _screw_frame(case, s)
    r_touch = s.diameter_mm / 2 + case_needle_radius() + 0.1
    if around is None:
        tilts = np.array([3.0, 5.0, 7.0, 9.0])
        phis = np.radians(np.arange(0, 360, 45.0))
        contacts = np.array([0.4, 0.5, 0.6, 0.7])
    else:
        st = scale
        tilts = np.clip(
            around["tilt_deg"] + np.array([-1.0, 0, 1.0]) * st, 1.0, MAX_PARALLEL_TILT_DEG
        )
        phis = np.radians(around["phi_deg"] + np.array([-1.0, 0, 1.0]) * 15.0 * st)
        contacts = np.clip(around["contact"] + np.array([-0.05, 0, 0.05]) * st, 0.2, 0.8)
    slide_end = s.head_lps + 0.85 * (s.tip_lps - s.head_lps)
    for tilt in tilts:
        if tilt <= 0.5:
            continue
        for phi in phis:
            side_dir = np.cos(phi) * e1 + np.sin(phi) * e2
            # coming from the side: outside of the contact the line is farther from the shaft
            n = _unit(np.cos(np.radians(tilt)) * axis - np.sin(np.radians(tilt)) * side_dir)
            for c in contacts:
                contact = s.head_lps + c * (s.tip_lps - s.head_lps) + r_touch * side_dir
                tgt = slide_end + r_touch * side_dir
                yield Candidate(
                    "transpedicular-parallel",
                    s.side,
                    tgt,
                    contact,
                    contact,
                    {
                        "tilt_deg": float(tilt),
                        "phi_deg": float(np.degrees(phi)),
                        "contact": float(c),
                        "through_lps": contact - 50.0 * n,
                    },
                )


MAX_PARALLEL_TILT_DEG = 10.0
"""A parallel approach stays within this angle of its screw ("a few degrees")."""


def case_needle_radius() -> float:
    return NEEDLE_OUTER_DIAMETER_MM / 2


# ---------------------------------------------------------------------------------------------
# 2. transpedicular, at the screw tip from a slightly more oblique path
# ---------------------------------------------------------------------------------------------
TIP_CLEARANCE_MM = 2.0


def transpedicular_tip(
    case: PlanningCase, target: Target, scale: float = 1.0, around: dict | None = None
) -> Iterator[Candidate]:
    """A point ``offset`` mm beside the screw tip (at angle ``phi`` around the axis), reached along
    the screw axis tilted ``obliquity`` degrees toward ``phi``, so the needle converges on the
    tip region while staying ``TIP_CLEARANCE_MM`` off the shaft."""
    s = case.screw(target.ref)
    axis, e1, e2 = _screw_frame(case, s)
    if around is None:
        obls = np.array([6.0, 9.0, 12.0, 15.0])
        phis = np.radians(np.arange(0, 360, 45.0))
        offsets = np.array([3.0, 4.5])
    else:
        obls = around["obliquity_deg"] + np.array([-1.5, 0, 1.5]) * scale
        phis = np.radians(around["phi_deg"] + np.array([-1.0, 0, 1.0]) * 15.0 * scale)
        offsets = np.clip(around["offset_mm"] + np.array([-0.5, 0, 0.5]) * scale, 2.5, 6.0)
    r = s.diameter_mm / 2
    for obl in obls:
        for phi in phis:
            side_dir = np.cos(phi) * e1 + np.sin(phi) * e2
            for off in offsets:
                tgt = s.tip_lps - 2.0 * axis + (r + off) * side_dir
                # the line leans outward toward phi as it goes back toward the skin
                n = _unit(np.cos(np.radians(obl)) * axis - np.sin(np.radians(obl)) * side_dir)
                yield Candidate(
                    "transpedicular-tip",
                    s.side,
                    tgt,
                    tgt,
                    None,
                    {
                        "obliquity_deg": float(obl),
                        "phi_deg": float(np.degrees(phi)),
                        "offset_mm": float(off),
                        "through_lps": tgt - 50.0 * n,
                    },
                )


# ---------------------------------------------------------------------------------------------
# 3. extrapedicular: lateral to medial, crossing the screw course at the pedicle-body junction
# ---------------------------------------------------------------------------------------------
def extrapedicular(
    case: PlanningCase,
    target: Target,
    variant: str,
    side: str,
    scale: float = 1.0,
    around: dict | None = None,
) -> Iterator[Candidate]:
    """Lines through a point ``J`` at the pedicle-body junction, lateral to the pedicle and
    ``dz`` mm cranial (variant "cranial") or caudal to the pedicle axis (and so to the screw in
    it), ending in the anterior third of the body near the midline. At thoracic levels that point
    lies between the pedicle and the rib head."""
    v = case.vertebra(target.level)
    ped = v.pedicles.get(side)
    sgn = 1.0 if side == "left" else -1.0
    wall = v.posterior_wall_offset_mm()
    base_t = v.to_local(target.point_lps)[0] if target.kind != "loose-screw" else None
    if ped is not None:
        pl = v.to_local(ped.axis_point_lps)[0]
        ped_lat, ped_z, half_w = abs(pl[0]), pl[2], ped.narrowest_width_mm / 2
    else:
        ped_lat, ped_z, half_w = v.body_width_mm * 0.3, 0.0, 3.5
    # thoracic levels: pass between the pedicle and the rib head (the costovertebral joint)
    max_dl = 4.0
    rib = v.rib_heads_lps.get(side)
    if rib is not None:
        rib_lat = abs(v.to_local(rib)[0][0])
        max_dl = float(np.clip(rib_lat - ped_lat - 3.0, 0.0, 4.0))
    screw = next((s for s in case.screws if s.level == v.label and s.side == side), None)
    screw_r = screw.diameter_mm / 2 if screw is not None else 0.0
    zsign = 1.0 if variant == "cranial" else -1.0
    if around is None:
        dzs = np.array([1.0, 2.5, 4.0]) + half_w + screw_r * 0.5
        dls = np.linspace(0.0, max_dl, 3)  # lateral of the pedicle axis at the junction
        dps = np.array([-2.0, 1.0])  # anterior(-)/posterior(+) of the posterior wall
        tms = np.array([-4.0, 0.0, 4.0])  # target shift across the midline
    else:
        dzs = around["dz_mm"] + np.array([-0.7, 0, 0.7]) * scale
        dls = np.clip(around["dl_mm"] + np.array([-1.0, 0, 1.0]) * scale, -1.0, max_dl)
        dps = around["dp_mm"] + np.array([-1.0, 0, 1.0]) * scale
        tms = around["tm_mm"] + np.array([-1.5, 0, 1.5]) * scale
    if base_t is None:
        base_t = v.to_local(v.anterior_third_point())[0]
    for dz in dzs:
        for dl in dls:
            for dp in dps:
                j = v.from_local([sgn * (ped_lat + dl), wall + dp, ped_z + zsign * dz])[0]
                for tm in tms:
                    # the far end: in the anterior third, past the midline toward the other side
                    tgt = v.from_local([base_t[0] - sgn * tm, base_t[1], base_t[2]])[0]
                    n = _unit(tgt - j)
                    yield Candidate(
                        f"extrapedicular-{variant}",
                        side,
                        tgt,
                        tgt,
                        None,
                        {
                            "dz_mm": float(dz),
                            "dl_mm": float(dl),
                            "dp_mm": float(dp),
                            "tm_mm": float(tm),
                            "through_lps": j - 40.0 * n,
                            "junction_lps": j,
                        },
                    )


# ---------------------------------------------------------------------------------------------
# 4. transpedicular for a level without a screw (keeping clear of rods)
# ---------------------------------------------------------------------------------------------
def transpedicular(
    case: PlanningCase, target: Target, side: str, scale: float = 1.0, around: dict | None = None
) -> Iterator[Candidate]:
    """Lines through the pedicle isthmus (shifted ``du``/``dv`` mm inside it) to the target."""
    v = case.vertebra(target.level)
    ped = v.pedicles.get(side)
    if ped is None:
        return
    u, w = _perp_basis(ped.axis_dir_lps, v.left_lps)
    lim = max(0.0, ped.narrowest_width_mm / 2 - case_needle_radius() - 0.5)
    if around is None:
        dus = np.linspace(-lim, lim, 3) if lim > 0 else np.array([0.0])
        dws = np.array([-2.0, 0.0, 2.0])
        tms = np.array([-3.0, 0.0, 3.0])
        tzs = np.array([-3.0, 0.0, 3.0])
    else:
        dus = np.clip(around["du_mm"] + np.array([-0.5, 0, 0.5]) * scale, -lim, lim)
        dws = around["dw_mm"] + np.array([-1.0, 0, 1.0]) * scale
        tms = around["tm_mm"] + np.array([-1.0, 0, 1.0]) * scale
        tzs = around["tz_mm"] + np.array([-1.0, 0, 1.0]) * scale
    base = v.to_local(target.point_lps)[0]
    sgn = 1.0 if side == "left" else -1.0
    for du in dus:
        for dw in dws:
            through = ped.axis_point_lps + du * u + dw * w
            for tm in tms:
                for tz in tzs:
                    tgt = v.from_local([base[0] + sgn * tm, base[1], base[2] + tz])[0]
                    n = _unit(tgt - through)
                    yield Candidate(
                        "transpedicular",
                        side,
                        tgt,
                        tgt,
                        None,
                        {
                            "du_mm": float(du),
                            "dw_mm": float(dw),
                            "tm_mm": float(tm),
                            "tz_mm": float(tz),
                            "through_lps": through - 30.0 * n,
                        },
                    )


def _screw_frame(case: PlanningCase, s: Screw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The screw axis and two unit vectors around it, the first toward the screw's lateral side
    (angle ``phi`` = 0 in the generators)."""
    v = _vertebra_of(case, s)
    sign = 1.0 if s.side == "left" else -1.0
    lateral = sign * (v.left_lps if v is not None else np.array([1.0, 0.0, 0.0]))
    e1, e2 = _perp_basis(s.axis_lps, lateral)
    return s.axis_lps, e1, e2


def _vertebra_of(case: PlanningCase, s: Screw) -> VertebraGeom | None:
    try:
        return case.vertebra(s.level)
    except KeyError:
        return case.nearest_vertebra(s.tip_lps) if case.vertebrae else None


def applicable(case: PlanningCase, target: Target) -> list[tuple[str, str]]:
    """(approach, side) pairs that apply to a target."""
    out: list[tuple[str, str]] = []
    if target.kind == "loose-screw":
        s = case.screw(target.ref)
        out += [("transpedicular-parallel", s.side), ("transpedicular-tip", s.side)]
        try:
            case.vertebra(s.level)
            out += [("extrapedicular-cranial", s.side), ("extrapedicular-caudal", s.side)]
        except KeyError:
            pass
        return out
    try:
        v = case.vertebra(target.level)
    except KeyError:
        return out
    for side in ("left", "right"):
        has_screw = any(s.level == v.label and s.side == side for s in case.screws)
        if has_screw:
            out += [("extrapedicular-cranial", side), ("extrapedicular-caudal", side)]
        elif side in v.pedicles:
            out.append(("transpedicular", side))
            out += [("extrapedicular-cranial", side), ("extrapedicular-caudal", side)]
    return out


def generate(
    case: PlanningCase,
    target: Target,
    approach: str,
    side: str,
    scale: float = 1.0,
    around: dict | None = None,
) -> Iterator[Candidate]:
    if approach == "transpedicular-parallel":
        yield from transpedicular_parallel(case, target, scale, around)
    elif approach == "transpedicular-tip":
        yield from transpedicular_tip(case, target, scale, around)
    elif approach.startswith("extrapedicular-"):
        yield from extrapedicular(case, target, approach.split("-")[1], side, scale, around)
    elif approach == "transpedicular":
        yield from transpedicular(case, target, side, scale, around)
    else:
        raise ValueError(f"unknown approach {approach!r}")
