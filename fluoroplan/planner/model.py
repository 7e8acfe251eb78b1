"""Needles, targets, checks, trajectories and plans: plain frozen dataclasses with JSON forms."""

from __future__ import annotations

import datetime as _dt
import getpass
import json
from dataclasses import dataclass, field, replace

import numpy as np

from fluoroplan.geometry.conventions import (
    NEEDLE_GAUGE,
    NEEDLE_LENGTHS_MM,
    NEEDLE_MIN_OUTSIDE_SKIN_MM,
    NEEDLE_OUTER_DIAMETER_MM,
)
from fluoroplan.io.errors import FluoroplanError

PLAN_SCHEMA = "fluoroplan.plan/1"
TARGET_KINDS = ("loose-screw", "fracture", "cage", "manual")
APPROACHES = (
    "transpedicular-parallel",
    "transpedicular-tip",
    "extrapedicular-cranial",
    "extrapedicular-caudal",
    "transpedicular",
    "manual",
)
STATUSES = ("pass", "warn", "fail")


class PlanFormatError(FluoroplanError, ValueError):
    """A plan document (the JSON form of a :class:`Plan`) has a missing, mistyped or
    inconsistent field. The message names the field (e.g. ``trajectories[2].entry_lps``)."""


def _fail(where: str, what: str) -> PlanFormatError:
    return PlanFormatError(f"{where} {what}")


def _obj(d, where: str) -> dict:
    if not isinstance(d, dict):
        raise _fail(where, f"must be an object, not {type(d).__name__}")
    return d


def _get(d: dict, key: str, where: str):
    if key not in d:
        raise _fail(f"{where}.{key}" if where else key, "is missing")
    return d[key]


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _num(d: dict, key: str, where: str, none_ok: bool = False) -> float | None:
    v = _get(d, key, where)
    if v is None and none_ok:
        return None
    if not _is_num(v) or not np.isfinite(v):
        raise _fail(f"{where}.{key}", f"must be a number, not {v!r}")
    return v


def _str(d: dict, key: str, where: str, none_ok: bool = False) -> str | None:
    v = _get(d, key, where)
    if v is None and none_ok:
        return None
    if not isinstance(v, str):
        raise _fail(f"{where}.{key}", f"must be text, not {v!r}")
    return v


def _bool(d: dict, key: str, where: str) -> bool:
    v = _get(d, key, where)
    if not isinstance(v, bool):
        raise _fail(f"{where}.{key}", f"must be true or false, not {v!r}")
    return v


def _list(d: dict, key: str, where: str) -> list:
    v = _get(d, key, where)
    if not isinstance(v, list):
        raise _fail(f"{where}.{key}", f"must be a list, not {type(v).__name__}")
    return v


def _vec3(d: dict, key: str, where: str, none_ok: bool = False) -> np.ndarray | None:
    v = _get(d, key, where)
    if v is None and none_ok:
        return None
    if not (isinstance(v, list) and len(v) == 3 and all(_is_num(x) for x in v)
            and all(np.isfinite(x) for x in v)):
        raise _fail(f"{where}.{key}", f"must be three numbers (mm, LPS), not {v!r}")
    return np.asarray(v, float)


def _no_extra(d: dict, known, where: str) -> None:
    extra = [k for k in d if k not in known]
    if extra:
        raise _fail(where or "the plan", f"has unexpected field(s) {extra}")


def _r(v, nd: int = 3) -> list[float]:
    return [round(float(x), nd) for x in np.asarray(v, float).ravel()]


@dataclass(frozen=True)
class Needle:
    """A bone biopsy / augmentation needle (15 gauge, beveled, 100 or 150 mm)."""

    gauge: int = NEEDLE_GAUGE
    outer_diameter_mm: float = NEEDLE_OUTER_DIAMETER_MM
    length_mm: float = 150.0
    beveled: bool = True

    def __post_init__(self) -> None:
        if self.length_mm not in NEEDLE_LENGTHS_MM:
            raise ValueError(
                f"needle length {self.length_mm} mm is not stocked; use one of {NEEDLE_LENGTHS_MM}"
            )

    @property
    def radius_mm(self) -> float:
        return self.outer_diameter_mm / 2.0

    @property
    def max_depth_mm(self) -> float:
        """Deepest skin-to-tip path this needle reaches keeping 20 mm outside the skin."""
        return self.length_mm - NEEDLE_MIN_OUTSIDE_SKIN_MM

    @classmethod
    def for_depth(cls, depth_mm: float) -> Needle:
        """The shortest stocked needle that reaches ``depth_mm`` (else the longest)."""
        for length in sorted(NEEDLE_LENGTHS_MM):
            if depth_mm + NEEDLE_MIN_OUTSIDE_SKIN_MM <= length:
                return cls(length_mm=length)
        return cls(length_mm=max(NEEDLE_LENGTHS_MM))

    def to_json(self) -> dict:
        return {
            "gauge": self.gauge,
            "outer_diameter_mm": self.outer_diameter_mm,
            "length_mm": self.length_mm,
            "beveled": self.beveled,
        }

    @classmethod
    def from_json(cls, d: dict, where: str = "needle") -> Needle:
        _obj(d, where)
        _no_extra(d, ("gauge", "outer_diameter_mm", "length_mm", "beveled"), where)
        gauge = _num(d, "gauge", where)
        if gauge != int(gauge):
            raise _fail(f"{where}.gauge", f"must be a whole number, not {gauge!r}")
        try:
            return cls(gauge=int(gauge), outer_diameter_mm=_num(d, "outer_diameter_mm", where),
                       length_mm=_num(d, "length_mm", where), beveled=_bool(d, "beveled", where))
        except ValueError as err:
            raise _fail(where, str(err)) from None


@dataclass(frozen=True, eq=False)
class Target:
    """What a trajectory serves: a loose screw's halo, a fractured body, a cage interface, or a
    point the user placed.

    ``point_lps`` is where the needle tip should end; ``region_lps`` (n, 3) are points of the
    structure to fill (the halo, the anterior third of the body), for display and scoring.
    """

    kind: str
    ref: str
    level: str
    side: str | None
    point_lps: np.ndarray
    description: str
    region_lps: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    sides: tuple[str, ...] = ("left", "right")

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise ValueError(f"target kind must be one of {TARGET_KINDS}, not {self.kind!r}")
        object.__setattr__(self, "point_lps", np.asarray(self.point_lps, float))

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.ref}"

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "ref": self.ref,
            "level": self.level,
            "side": self.side,
            "point_lps": _r(self.point_lps),
            "description": self.description,
        }

    @classmethod
    def from_json(cls, d: dict, where: str = "target") -> Target:
        """The target of a plan document (``region_lps`` is not stored: empty)."""
        _obj(d, where)
        _no_extra(d, ("kind", "ref", "level", "side", "point_lps", "description"), where)
        kind = _str(d, "kind", where)
        if kind not in TARGET_KINDS:
            raise _fail(f"{where}.kind", f"must be one of {TARGET_KINDS}, not {kind!r}")
        side = _str(d, "side", where, none_ok=True)
        return cls(kind=kind, ref=_str(d, "ref", where), level=_str(d, "level", where),
                   side=side, point_lps=_vec3(d, "point_lps", where),
                   description=_str(d, "description", where),
                   sides=(side,) if side else ("left", "right"))


def format_check_value(value, unit: str = "", at_least=None, nd: int = 2,
                       none: str = "\u2014") -> str:
    """A check's value as every view of it shows it (PDF, GUI, terminal, rehearsal score).

    A distance searched only up to a range and not found there is ``value=None`` with
    ``at_least`` the range: "> 15 mm", never a number that was not measured. ``unit`` "fraction"
    is shown as a percentage; text values as they are; ``none`` stands for a value that could
    not be measured at all."""
    u = "" if unit == "fraction" else (unit or "")
    if value is None and at_least is not None:
        if unit == "fraction":
            return f"> {100 * float(at_least):.0f} %"
        return f"> {_short(float(at_least), nd)} {u}".strip()
    if value is None:
        return none
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float, np.integer, np.floating)):
        if unit == "fraction":
            return f"{100 * float(value):.0f} %"
        return f"{float(value):.{nd}f} {u}".strip()
    return f"{value} {u}".strip()


def _short(v: float, nd: int) -> str:
    """A range limit: whole numbers without decimals (15, not 15.00)."""
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.{nd}f}"


@dataclass(frozen=True)
class Check:
    """One safety check: the measured value, its limit, pass/warn/fail and why.

    ``at_least``: a distance searched only up to a range and not found within it has no
    measured value: ``value`` is None and ``at_least`` the range ("> 15 mm"). The two never
    come together."""

    name: str
    value: float | str | None
    limit: float | str | None
    status: str
    unit: str = ""
    detail: str = ""
    at_least: float | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check status must be one of {STATUSES}")
        if self.at_least is not None:
            if isinstance(self.at_least, bool) or not isinstance(
                    self.at_least, (int, float, np.integer, np.floating)):
                raise ValueError(f"check {self.name!r}: at_least must be a number")
            if not np.isfinite(float(self.at_least)):
                raise ValueError(f"check {self.name!r}: at_least must be finite")
            if self.value is not None:
                raise ValueError(f"check {self.name!r} has both a value ({self.value!r}) and "
                                 f"at_least ({self.at_least!r}): a value beyond the search "
                                 "range is not measured, give value=None")
            object.__setattr__(self, "at_least", float(self.at_least))

    @property
    def beyond_range(self) -> bool:
        """True when the value lies beyond the search range (only a lower bound is known)."""
        return self.value is None and self.at_least is not None

    def display(self, nd: int = 2, none: str = "\u2014") -> str:
        """The value in words: "3.20 mm", "> 15 mm", "40 %", "yes"."""
        return format_check_value(self.value, self.unit, self.at_least, nd, none)

    def limit_display(self, nd: int = 2, none: str = "\u2014") -> str:
        return format_check_value(self.limit, self.unit, None, nd, none)

    def to_json(self) -> dict:
        v = self.value
        if isinstance(v, (float, np.floating)):
            v = round(float(v), 3)
        lim = self.limit
        if isinstance(lim, (float, np.floating)):
            lim = round(float(lim), 3)
        return {
            "name": self.name,
            "value": v,
            "at_least": None if self.at_least is None else round(float(self.at_least), 3),
            "limit": lim,
            "status": self.status,
            "unit": self.unit,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, d: dict, where: str = "check") -> Check:
        """A check of a plan document; ``at_least`` may be absent (older plan files)."""
        _obj(d, where)
        _no_extra(d, ("name", "value", "at_least", "limit", "status", "unit", "detail"), where)
        for key in ("value", "limit"):
            v = _get(d, key, where)
            if not (v is None or isinstance(v, (str, bool)) or (_is_num(v) and np.isfinite(v))):
                raise _fail(f"{where}.{key}", f"must be a number, text or null, not {v!r}")
        at_least = d.get("at_least")
        if at_least is not None:
            if not (_is_num(at_least) and np.isfinite(at_least)):
                raise _fail(f"{where}.at_least", f"must be a number or null, not {at_least!r}")
            if d["value"] is not None:
                raise _fail(f"{where}.at_least", f"is {at_least!r} but the value is "
                            f"{d['value']!r}: a check is either measured (value) or beyond its "
                            "search range (value null, at_least the range), not both")
        status = _str(d, "status", where)
        if status not in STATUSES:
            raise _fail(f"{where}.status", f"must be one of {STATUSES}, not {status!r}")
        return cls(name=_str(d, "name", where), value=d["value"], limit=d["limit"],
                   status=status, unit=_str(d, "unit", where), detail=_str(d, "detail", where),
                   at_least=at_least)


@dataclass(frozen=True, eq=False)
class Trajectory:
    """A planned needle path: a straight insertion from ``entry_lps`` (skin), optionally a
    planned contact with a screw shaft (``contact_lps``) followed by a slide along it, ending at
    ``target_lps``.

    ``direction_lps`` is the insertion direction (what the bull's-eye view looks down): the unit
    vector from the entry to the contact point when there is one, else to the target.
    ``depth_mm`` is the needle length inside the patient (entry to contact plus the slide, or
    entry to target).
    """

    id: str
    target: Target
    approach: str
    level: str
    side: str
    entry_lps: np.ndarray
    target_lps: np.ndarray
    needle: Needle = field(default_factory=Needle)
    contact_lps: np.ndarray | None = None
    checks: tuple[Check, ...] = ()
    cost: float = 0.0
    cost_terms: dict = field(default_factory=dict)
    views: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    edited: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "entry_lps", np.asarray(self.entry_lps, float))
        object.__setattr__(self, "target_lps", np.asarray(self.target_lps, float))
        if self.contact_lps is not None:
            object.__setattr__(self, "contact_lps", np.asarray(self.contact_lps, float))
        if np.linalg.norm(self.aim_lps - self.entry_lps) < 1.0:
            raise ValueError("entry and target are less than 1 mm apart; move one of them")

    @property
    def aim_lps(self) -> np.ndarray:
        """End of the straight insertion: the contact point if any, else the target."""
        return self.target_lps if self.contact_lps is None else self.contact_lps

    @property
    def direction_lps(self) -> np.ndarray:
        d = self.aim_lps - self.entry_lps
        return d / np.linalg.norm(d)

    @property
    def insertion_mm(self) -> float:
        return float(np.linalg.norm(self.aim_lps - self.entry_lps))

    @property
    def slide_mm(self) -> float:
        if self.contact_lps is None:
            return 0.0
        return float(np.linalg.norm(self.target_lps - self.contact_lps))

    @property
    def depth_mm(self) -> float:
        return self.insertion_mm + self.slide_mm

    def path_points(self, step_mm: float = 0.5) -> np.ndarray:
        """Points along the whole path (insertion, then slide), ``step_mm`` apart, LPS."""
        pts = [_segment(self.entry_lps, self.aim_lps, step_mm)]
        if self.contact_lps is not None:
            pts.append(_segment(self.contact_lps, self.target_lps, step_mm)[1:])
        return np.concatenate(pts)

    @property
    def status(self) -> str:
        if any(c.status == "fail" for c in self.checks):
            return "fail"
        if any(c.status == "warn" for c in self.checks):
            return "warn"
        return "pass"

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def moved(self, entry_lps=None, target_lps=None) -> Trajectory:
        """A copy with an end moved by the user (checks must be re-run)."""
        return replace(
            self,
            entry_lps=self.entry_lps if entry_lps is None else np.asarray(entry_lps, float),
            target_lps=self.target_lps if target_lps is None else np.asarray(target_lps, float),
            contact_lps=None if (entry_lps is not None or target_lps is not None) else self.contact_lps,
            checks=(),
            edited=True,
        )

    def to_json(self) -> dict:
        out = {
            "id": self.id,
            "target": {"kind": self.target.kind, "ref": self.target.ref},
            "level": self.level,
            "side": self.side,
            "approach": self.approach,
            "entry_lps": _r(self.entry_lps),
            "target_lps": _r(self.target_lps),
            "direction_lps": _r(self.direction_lps, 6),
            "depth_mm": round(self.depth_mm, 2),
            "needle": self.needle.to_json(),
        }
        out.update(self.views)
        out["checks"] = [c.to_json() for c in self.checks]
        out["cost"] = round(float(self.cost), 4)
        out["cost_terms"] = {k: round(float(v), 4) for k, v in self.cost_terms.items()}
        out["status"] = self.status
        out["contact_lps"] = None if self.contact_lps is None else _r(self.contact_lps)
        out["slide_mm"] = round(self.slide_mm, 2)
        out["insertion_mm"] = round(self.insertion_mm, 2)
        out["target_detail"] = self.target.to_json()
        out["notes"] = list(self.notes)
        out["edited"] = self.edited
        return out

    @classmethod
    def from_json(cls, d: dict, targets: dict | None = None,
                  where: str = "trajectory") -> Trajectory:
        """A trajectory from its JSON form, checked field by field and for consistency (the
        stored direction, depth, lengths and status must follow from the stored points and
        checks). ``targets`` maps ``(kind, ref)`` to the plan's :class:`Target` objects."""
        _obj(d, where)
        _no_extra(d, TRAJECTORY_KEYS + VIEW_KEYS, where)
        tid = _str(d, "id", where)
        where = f"{where} ({tid})"
        ref = _obj(_get(d, "target", where), f"{where}.target")
        _no_extra(ref, ("kind", "ref"), f"{where}.target")
        key = (_str(ref, "kind", f"{where}.target"), _str(ref, "ref", f"{where}.target"))
        detail = Target.from_json(_get(d, "target_detail", where), f"{where}.target_detail")
        if (detail.kind, detail.ref) != key:
            raise _fail(f"{where}.target_detail", f"names {detail.id}, not {key[0]}:{key[1]}")
        target = (targets or {}).get(key, detail)
        if targets is not None and key not in targets:
            raise _fail(f"{where}.target", f"names {key[0]}:{key[1]}, which is not among the "
                        "plan's targets")
        if target.to_json() != detail.to_json():
            raise _fail(f"{where}.target_detail", f"differs from the plan's target {target.id}")
        approach = _str(d, "approach", where)
        if approach not in APPROACHES:
            raise _fail(f"{where}.approach", f"must be one of {APPROACHES}, not {approach!r}")
        views = {}
        for name in VIEW_KEYS:
            if name in d:
                views[name] = _view_block(d[name], f"{where}.{name}")
        checks = tuple(Check.from_json(c, f"{where}.checks[{n}]")
                       for n, c in enumerate(_list(d, "checks", where)))
        terms = _obj(_get(d, "cost_terms", where), f"{where}.cost_terms")
        for k in terms:
            _num(terms, k, f"{where}.cost_terms")
        notes = _list(d, "notes", where)
        if not all(isinstance(n, str) for n in notes):
            raise _fail(f"{where}.notes", "must be a list of text")
        try:
            traj = cls(
                id=tid, target=target, approach=approach, level=_str(d, "level", where),
                side=_str(d, "side", where), entry_lps=_vec3(d, "entry_lps", where),
                target_lps=_vec3(d, "target_lps", where),
                needle=Needle.from_json(_get(d, "needle", where), f"{where}.needle"),
                contact_lps=_vec3(d, "contact_lps", where, none_ok=True), checks=checks,
                cost=_num(d, "cost", where), cost_terms=dict(terms), views=views,
                notes=tuple(notes), edited=_bool(d, "edited", where),
            )
        except ValueError as err:
            raise _fail(where, str(err)) from None
        # derived values must agree with the stored ones: a mismatch means a damaged or
        # hand-edited file, whose numbers cannot be trusted
        stored_dir = _vec3(d, "direction_lps", where)
        if float(stored_dir @ traj.direction_lps) < np.cos(np.radians(0.1)):
            raise _fail(f"{where}.direction_lps", "does not point from the entry to the target")
        for name in ("depth_mm", "insertion_mm", "slide_mm"):
            stored = _num(d, name, where)
            if abs(stored - getattr(traj, name)) > 0.05:
                raise _fail(f"{where}.{name}", f"is {stored} but the entry, contact and target "
                            f"give {getattr(traj, name):.2f} mm")
        status = _str(d, "status", where)
        if status != traj.status:
            raise _fail(f"{where}.status", f"is {status!r} but its checks give {traj.status!r}")
        return traj


TRAJECTORY_KEYS = (
    "id", "target", "level", "side", "approach", "entry_lps", "target_lps", "direction_lps",
    "depth_mm", "needle", "checks", "cost", "cost_terms", "status", "contact_lps", "slide_mm",
    "insertion_mm", "target_detail", "notes", "edited",
)
VIEW_KEYS = ("bullseye", "working_view", "progression")
POSE_KEYS = ("detector_dir_lps", "primary_deg", "secondary_deg", "table_primary_deg",
             "table_secondary_deg", "text")


def _pose_block(b, where: str) -> dict:
    _obj(b, where)
    _vec3(b, "detector_dir_lps", where)
    for k in POSE_KEYS[1:5]:
        _num(b, k, where)
    if not -90.0 <= b["secondary_deg"] <= 90.0:
        raise _fail(f"{where}.secondary_deg", "must lie in [-90, 90] deg")
    if not _str(b, "text", where):
        raise _fail(f"{where}.text", "is empty: every angle needs its room-terms sentence")
    return b


def _view_block(b, where: str) -> dict:
    """A view block (pose keys, and for the working view its reference and deltas),
    validated and deep-copied through JSON types."""
    _pose_block(b, where)
    if "reference_pose" in b:
        _pose_block(b["reference_pose"], f"{where}.reference_pose")
    for k in ("delta_from_screw_bullseye_deg", "delta_table_deg"):
        if k in b and not (isinstance(b[k], list) and len(b[k]) == 2
                           and all(_is_num(x) for x in b[k])):
            raise _fail(f"{where}.{k}", "must be two numbers (deg)")
    for k in ("reference", "how"):
        if k in b:
            _str(b, k, where)
    _no_extra(b, POSE_KEYS + ("delta_from_screw_bullseye_deg", "delta_table_deg", "reference",
                              "reference_pose", "how"), where)
    return json.loads(json.dumps(b))


def _segment(a: np.ndarray, b: np.ndarray, step_mm: float) -> np.ndarray:
    n = max(2, int(np.ceil(np.linalg.norm(b - a) / step_mm)) + 1)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return a[None, :] * (1 - t) + b[None, :] * t


@dataclass(frozen=True)
class NoSafeTrajectory:
    """A target for which no candidate passed its checks: which check failed, and the best try."""

    target: Target
    approach: str
    failed_check: str
    reason: str
    best_failed: Trajectory | None = None

    def to_json(self) -> dict:
        return {
            "target": {"kind": self.target.kind, "ref": self.target.ref},
            "level": self.target.level,
            "approach": self.approach,
            "result": "no safe trajectory",
            "failed_check": self.failed_check,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, d: dict, targets: dict,
                  where: str = "no_safe_trajectory") -> NoSafeTrajectory:
        """From its JSON form; the best failed attempt is not stored (``None``)."""
        _obj(d, where)
        _no_extra(d, ("target", "level", "approach", "result", "failed_check", "reason"), where)
        ref = _obj(_get(d, "target", where), f"{where}.target")
        key = (_str(ref, "kind", f"{where}.target"), _str(ref, "ref", f"{where}.target"))
        if key not in targets:
            raise _fail(f"{where}.target", f"names {key[0]}:{key[1]}, which is not among the "
                        "plan's targets")
        target = targets[key]
        if _str(d, "level", where) != target.level:
            raise _fail(f"{where}.level", f"differs from its target's level {target.level!r}")
        if _str(d, "result", where) != "no safe trajectory":
            raise _fail(f"{where}.result", "must be 'no safe trajectory'")
        return cls(target=target, approach=_str(d, "approach", where),
                   failed_check=_str(d, "failed_check", where), reason=_str(d, "reason", where))


@dataclass(frozen=True, eq=False)
class Plan:
    """A case's plan: the series it belongs to, its targets and trajectories, who and when."""

    series: dict
    targets: tuple[Target, ...] = ()
    trajectories: tuple[Trajectory, ...] = ()
    unsolved: tuple[NoSafeTrajectory, ...] = ()
    planner: str = field(default_factory=lambda: _user())
    created: str = field(default_factory=lambda: _now())
    modified: str = field(default_factory=lambda: _now())
    analysis: dict = field(default_factory=dict)
    procedure_position: str = "HFP"  # how the patient lies in the angiosuite (C-arm room terms)

    def to_json(self) -> dict:
        return {
            "schema": PLAN_SCHEMA,
            "series": self.series,
            "procedure_position": self.procedure_position,
            "planner": self.planner,
            "created": self.created,
            "modified": self.modified,
            "targets": [t.to_json() for t in self.targets],
            "trajectories": [t.to_json() for t in self.trajectories],
            "no_safe_trajectory": [u.to_json() for u in self.unsolved],
            "analysis": self.analysis,
        }

    @classmethod
    def from_json(cls, d: dict) -> Plan:
        """A plan from its ``fluoroplan.plan/1`` document, validated completely before anything
        is returned (raises :class:`PlanFormatError` naming the first bad field)."""
        _obj(d, "the plan")
        _no_extra(d, PLAN_KEYS, "")
        if d.get("schema") != PLAN_SCHEMA:
            raise _fail("schema", f"must be {PLAN_SCHEMA!r}, not {d.get('schema')!r}")
        series = _obj(_get(d, "series", ""), "series")
        for k in ("series_instance_uid", "study_instance_uid", "fingerprint"):
            _str(series, k, "series")
        analysis = _obj(_get(d, "analysis", ""), "analysis")
        if "levels" in analysis:
            levels = _list(analysis, "levels", "analysis")
            if not all(isinstance(x, str) for x in levels):
                raise _fail("analysis.levels", "must be a list of level names")
        for n, sc in enumerate(analysis.get("screws", [])):
            w = f"analysis.screws[{n}]"
            _obj(sc, w)
            _str(sc, "id", w)
            _vec3(sc, "head_lps", w)
            _vec3(sc, "tip_lps", w)
            _num(sc, "diameter_mm", w)
            if "halo_mm" in sc:
                _num(sc, "halo_mm", w, none_ok=True)
        targets = tuple(Target.from_json(t, f"targets[{n}]")
                        for n, t in enumerate(_list(d, "targets", "")))
        by_key = {(t.kind, t.ref): t for t in targets}
        if len(by_key) != len(targets):
            raise _fail("targets", "name the same target twice")
        trajs = tuple(Trajectory.from_json(t, by_key, f"trajectories[{n}]")
                      for n, t in enumerate(_list(d, "trajectories", "")))
        unsolved = tuple(NoSafeTrajectory.from_json(u, by_key, f"no_safe_trajectory[{n}]")
                         for n, u in enumerate(_list(d, "no_safe_trajectory", "")))
        position = d.get("procedure_position", "HFP")
        if position not in ("HFS", "HFP", "FFS", "FFP"):
            raise _fail("procedure_position", f"must be HFS, HFP, FFS or FFP, not {position!r}")
        return cls(series=json.loads(json.dumps(series)), targets=targets, trajectories=trajs,
                   unsolved=unsolved, planner=_str(d, "planner", ""),
                   created=_str(d, "created", ""), modified=_str(d, "modified", ""),
                   analysis=json.loads(json.dumps(analysis)), procedure_position=position)


PLAN_KEYS = ("schema", "series", "procedure_position", "planner", "created", "modified",
             "targets", "trajectories", "no_safe_trajectory", "analysis")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).astimezone().isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"
