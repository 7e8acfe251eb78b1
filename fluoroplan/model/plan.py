"""Needles, targets, checks, trajectories and plans: plain frozen dataclasses in LPS mm and
degrees. No Qt, no files: their JSON forms live at the file boundary
(:mod:`fluoroplan.io.plan_json`)."""

from __future__ import annotations

import datetime as _dt
import getpass
from dataclasses import dataclass, field, replace

import numpy as np

from fluoroplan.geometry.conventions import (
    NEEDLE_GAUGE,
    NEEDLE_LENGTHS_MM,
    NEEDLE_MIN_OUTSIDE_SKIN_MM,
    NEEDLE_OUTER_DIAMETER_MM,
)

TARGET_KINDS = ("loose-screw", "fracture", "cage", "manual")
APPROACHES = (
    "transpedicular-parallel",
    "transpedicular-tip",
    "extrapedicular-cranial",
    "extrapedicular-caudal",
    "transpedicular",
    "manual",
)
# "unknown": a check that could not be made on this CT (no canal or levels found): neither
# passed nor failed, said as such
STATUSES = ("pass", "warn", "unknown", "fail")


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
        if any(c.status == "unknown" for c in self.checks):
            return "unknown"  # not safe to call it passed: something could not be checked
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
    side: str = ""  # the approach's side ("left", "right"), when it has one


MEASUREMENT_KINDS = {"distance": 2, "angle": 3}  # kind -> number of points


@dataclass(frozen=True, eq=False)
class Measurement:
    """A distance (two points) or an angle (three points, the vertex second) the user measured
    on a reformat (``view``: "axial", "sagittal", "coronal"); LPS mm, kept with the plan."""

    id: str
    kind: str
    points_lps: np.ndarray
    view: str = ""

    def __post_init__(self) -> None:
        if self.kind not in MEASUREMENT_KINDS:
            raise ValueError(f"measurement kind must be one of {sorted(MEASUREMENT_KINDS)}, "
                             f"not {self.kind!r}")
        pts = np.asarray(self.points_lps, float).reshape(-1, 3)
        if len(pts) != MEASUREMENT_KINDS[self.kind]:
            raise ValueError(f"a {self.kind} has {MEASUREMENT_KINDS[self.kind]} points, "
                             f"not {len(pts)}")
        if not np.all(np.isfinite(pts)):
            raise ValueError("measurement points must be finite numbers")
        object.__setattr__(self, "points_lps", pts)

    @property
    def value(self) -> float:
        """Millimetres between the two points, or degrees at the vertex (the second point)."""
        p = self.points_lps
        if self.kind == "distance":
            return float(np.linalg.norm(p[1] - p[0]))
        a, b = p[0] - p[1], p[2] - p[1]
        na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
        if na < 1e-9 or nb < 1e-9:
            return 0.0
        return float(np.degrees(np.arccos(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))))

    @property
    def text(self) -> str:
        return (f"{self.value:.1f} mm" if self.kind == "distance"
                else f"{self.value:.1f}\u00b0")


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
    measurements: tuple[Measurement, ...] = ()  # distances and angles measured on the CT


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).astimezone().isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"
